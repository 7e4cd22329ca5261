//! Voice (issue 17), with real peers only: Kamailio as the PBX, baresip as
//! the far end playing a 1 kHz tone and recording what it hears (its
//! `sndfile` module), and the web turret in headless Chromium whose fake
//! microphone plays 440 Hz. What is asserted is what was heard: the
//! frequency of each tone, measured in the page (the speech unit's
//! analyser) and in baresip's recording (a Goertzel filter).

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use common::desk::{FAR, MIC, Mlc, desk, phone};
use common::sip::{
    Baresip, BaresipOpts, PBX_PASSWORD, Sipp, free_port, goertzel, hears, sine_ulaw,
};
use serde_json::json;

/// The last ~85 ms a speech unit played, and the rate.
async fn unit_samples(b: &Browser, unit: &str) -> (Vec<f64>, u32) {
    let v = b
        .eval(&format!(
            "const s = window.turretVoice && window.turretVoice.samples({unit:?}); return s;"
        ))
        .await;
    if v.is_null() {
        return (Vec::new(), 48_000);
    }
    let rate = v["rate"].as_f64().unwrap() as u32;
    let data = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap_or(0.0))
        .collect();
    (data, rate)
}

/// Waits until the page's speech unit plays `hz` (`true`) or plays no `hz`
/// for a whole second (`false`).
async fn page_hears(b: &Browser, unit: &str, hz: f64, want: bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut since: Option<Instant> = None;
    loop {
        let (s, rate) = unit_samples(b, unit).await;
        let heard = !s.is_empty() && hears(&s, rate, hz);
        if want && heard {
            return;
        }
        if !want {
            if heard {
                since = None;
            } else if since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(1) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{unit} {} {hz} Hz",
            if want { "never played" } else { "kept playing" }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What baresip hears from now on, for `secs`: its recording past the
/// current end. The file is written in blocks, so what is in it lags by up
/// to a block: the first 1.2 s past the mark are skipped.
async fn phone_heard(phone: &Baresip, secs: f64) -> (Vec<f64>, u32) {
    let (now, rate) = phone.heard();
    let from = now.len() + (1.2 * f64::from(rate)) as usize;
    let to = from + (secs * f64::from(rate)) as usize;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (all, _) = phone.heard();
        if all.len() >= to {
            return (all[from..to].to_vec(), rate);
        }
        if secs == 0.0 {
            // Held: baresip decodes nothing while the call is held (it was
            // offered sendonly); whatever it did decode is what counts.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let (all, _) = phone.heard();
            return (all.get(from..).unwrap_or_default().to_vec(), rate);
        }
        assert!(
            Instant::now() < deadline,
            "baresip's recording stopped growing at {} samples; {:?}\n{}",
            all.len(),
            phone.recordings(),
            phone.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn phone_hears(phone: &Baresip, hz: f64, want: bool) {
    let (s, rate) = phone_heard(phone, 1.0).await;
    assert!(
        s.len() > (rate as usize / 2),
        "baresip recorded too little: {} samples at {rate}; {:?}",
        s.len(),
        phone.recordings()
    );
    assert_eq!(
        hears(&s, rate, hz),
        want,
        "baresip {} {hz} Hz",
        if want { "did not hear" } else { "heard" }
    );
}

/// The id of the one call shown in the queue.
async fn call_id(b: &Browser) -> String {
    b.eval("return document.querySelector('li.call').dataset.call;")
        .await
        .as_str()
        .unwrap()
        .to_string()
}

/// An incoming call in `codec`, answered on handset 1: both tones both
/// ways; the microphone mute, hold and retrieve, and a move to a speaker
/// channel (and its push-to-talk) each do what they should to the sound.
async fn incoming_call_both_ways(codec: &'static str, mlc: Mlc) {
    let d = desk(mlc).await;
    let b = &d.b;
    let mut phone = phone(&d, "2000", FAR, codec, false);
    phone.command("dial", &format!("sip:1001@127.0.0.1:{}", d.pbx.port));
    b.wait_text("li.call[data-state=ringing]", "2000").await;
    // The turret rings.
    page_hears_tone(b, "ring").await;
    b.click("li.call [data-op=answer]").await;
    phone.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));
    b.wait_text("li.call[data-state=connected]", "connected")
        .await;
    let id = call_id(b).await;

    // Both ways, on handset 1.
    page_hears(b, "handset-1", FAR, true).await;
    phone_hears(&phone, MIC, true).await;

    // The handset's microphone mute: the far end hears nothing of the
    // trader; the trader still hears the far end.
    b.click(".unit[data-unit=handset-1] .mic-mute").await;
    phone_hears(&phone, MIC, false).await;
    page_hears(b, "handset-1", FAR, true).await;
    b.click(".unit[data-unit=handset-1] .mic-mute").await;
    phone_hears(&phone, MIC, true).await;

    // Moved to speaker 1: heard there and no longer on the handset; the
    // trader speaks on a speaker channel only while holding its talk key.
    b.choose(&format!("#move-unit-{id}"), "Speaker 1").await;
    b.wait_text(".unit[data-unit=speaker-1] .state", "connected")
        .await;
    page_hears(b, "speaker-1", FAR, true).await;
    page_hears(b, "handset-1", FAR, false).await;
    phone_hears(&phone, MIC, false).await;
    b.eval(
        "document.querySelector('.unit[data-unit=speaker-1] .talk')\
         .dispatchEvent(new PointerEvent('pointerdown', {bubbles: true})); return true;",
    )
    .await;
    phone_hears(&phone, MIC, true).await;
    b.eval(
        "document.querySelector('.unit[data-unit=speaker-1] .talk')\
         .dispatchEvent(new PointerEvent('pointerup', {bubbles: true})); return true;",
    )
    .await;
    phone_hears(&phone, MIC, false).await;
    // And back to the handset.
    b.choose(&format!("#move-unit-{id}"), "Handset 1").await;
    page_hears(b, "handset-1", FAR, true).await;
    page_hears(b, "speaker-1", FAR, false).await;
    phone_hears(&phone, MIC, true).await;

    // Hold stops the sound both ways; retrieve brings it back. (baresip
    // 1.0 stops decoding once it is held and does not start again when the
    // call is retrieved, so what it hears is checked while held only; the
    // MLC's side of retrieve is `a_held_leg_carries_silence_both_ways_...`
    // in the MLC crate.)
    b.click("li.call [data-op=hold]").await;
    b.wait_text("li.call[data-state=held]", "on hold").await;
    page_hears(b, "handset-1", FAR, false).await;
    let (s, rate) = phone_heard(&phone, 0.0).await;
    assert!(!hears(&s, rate, MIC), "baresip heard the trader while held");
    b.click("li.call [data-op=retrieve]").await;
    b.wait_text("li.call[data-state=connected]", "connected")
        .await;
    page_hears(b, "handset-1", FAR, true).await;

    let seen = phone.event_count();
    b.click("li.call [data-op=hangup]").await;
    phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
    b.wait_text("#queue", "No calls.").await;
    page_hears(b, "handset-1", FAR, false).await;
}

/// Waits until the turret plays `tone` (its own ring, ringback, busy).
async fn page_hears_tone(b: &Browser, tone: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = b
            .eval("return window.turretVoice ? window.turretVoice.tone() : null;")
            .await;
        if now == json!(tone) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the turret never played {tone} ({now})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And it is sound, not a name: the tone's first frequency is there.
    let hz = match tone {
        "ring" | "priority" => 400.0,
        "ringback" => 440.0,
        "busy" => 480.0,
        _ => 950.0,
    };
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let (s, rate) = unit_samples(b, "tones").await;
        if !s.is_empty() && hears(&s, rate, hz) {
            return;
        }
        assert!(Instant::now() < deadline, "the {tone} tone made no {hz} Hz");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_pcmu_call_is_heard_both_ways_on_the_speech_units() {
    incoming_call_both_ways("PCMU", Mlc::InProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_pcma_call_is_heard_both_ways_on_the_speech_units() {
    incoming_call_both_ways("PCMA", Mlc::InProcess).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_carried_by_a_separate_mlc_is_heard_both_ways() {
    incoming_call_both_ways("PCMU", Mlc::Separate).await;
}

/// The turret on one node, the call carried by the other's MLC: the
/// offer and answer pass between the nodes, the audio goes straight
/// between the browser and the carrier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_carried_by_the_other_of_two_nodes_is_heard_both_ways() {
    incoming_call_both_ways("PCMU", Mlc::OtherNode).await;
}

/// An outgoing call: a local ringback while the far end rings (it sends no
/// early media), then both tones both ways; a busy far end and an unknown
/// number each give their short tone, which stops by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outgoing_call_rings_back_and_is_heard_both_ways() {
    let d = desk(Mlc::InProcess).await;
    let b = &d.b;
    let mut far = phone(&d, "3000", FAR, "PCMA", false);
    b.fill("#dial-number", "3000").await;
    b.click("#dial").await;
    far.wait_event("CALL_INCOMING", 0, Duration::from_secs(10));
    page_hears_tone(b, "ringback").await;
    far.command("accept", "");
    let (_, seen) = far.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));
    b.wait_text("li.call[data-state=connected]", "3000").await;
    page_hears(b, "handset-1", FAR, true).await;
    phone_hears(&far, MIC, true).await;
    assert_eq!(
        b.eval("return window.turretVoice.tone();").await,
        serde_json::Value::Null,
        "the ringback stopped when the call was answered"
    );
    // The handset's keypad: each key reaches the far end as a DTMF event.
    for (i, d) in ["1", "5", "#"].iter().enumerate() {
        b.click(&format!(".unit[data-unit=handset-1] [data-digit='{d}']"))
            .await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while far.events_of("CALL_DTMF_START").len() <= i {
            assert!(
                Instant::now() < deadline,
                "baresip got no DTMF for {d}\n{}",
                far.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let digits: Vec<String> = far
        .events_of("CALL_DTMF_START")
        .into_iter()
        .map(|v| v["param"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(digits, ["1", "5", "#"], "what baresip received");
    far.command("hangup", "");
    far.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
    b.wait_text("#queue", "No calls.").await;

    // Busy: the far end refuses.
    let seen = far.event_count();
    b.fill("#dial-number", "3000").await;
    b.click("#dial").await;
    far.wait_event("CALL_INCOMING", seen, Duration::from_secs(10));
    far.command("hangup", "");
    b.wait_text("li.call[data-state=failed]", "failed").await;
    page_hears_tone(b, "busy").await;
    page_hears_tone_stops(b).await;
    b.click("li.call [data-op=dismiss]").await;

    // An unknown number: the failure tone.
    b.fill("#dial-number", "9999").await;
    b.click("#dial").await;
    b.wait_text("li.call[data-state=failed]", "number not found")
        .await;
    page_hears_tone(b, "failure").await;
    page_hears_tone_stops(b).await;
}

/// An outgoing call whose far end sends early media: a 180 without SDP,
/// then a 183 with SDP and the far end's own sound (sipp playing a 1 kHz
/// tone, as a PBX plays its ringback or an announcement). The turret plays
/// that sound while the call still rings, instead of its own ringback,
/// and keeps it when the far end answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outgoing_call_plays_the_far_ends_early_media() {
    let d = desk(Mlc::InProcess).await;
    let b = &d.b;
    let dir = tempfile::tempdir().unwrap();
    let tone = dir.path().join("tone.ulaw");
    sine_ulaw(&tone, FAR, 10);
    let (uas_port, media_port) = (free_port(), free_port());
    let mut uas = Sipp::start(
        dir.path(),
        "uas",
        &early_media_uas(&tone.display().to_string()),
        &[
            "-i",
            "127.0.0.1",
            "-p",
            &uas_port.to_string(),
            "-mp",
            &media_port.to_string(),
        ],
    );
    let mut reg = Sipp::start(
        dir.path(),
        "register",
        &register_as("3100", uas_port),
        &["-i", "127.0.0.1", &format!("127.0.0.1:{}", d.pbx.port)],
    );
    assert!(
        reg.wait(Duration::from_secs(10)),
        "sipp did not register 3100\n{}",
        reg.log()
    );
    b.fill("#dial-number", "3100").await;
    b.click("#dial").await;
    b.wait_text("li.call[data-state=alerting]", "3100").await;
    page_hears(b, "handset-1", FAR, true).await;
    assert_eq!(
        b.eval("return document.querySelector('li.call').dataset.state;")
            .await,
        json!("alerting"),
        "the far end's sound is heard while the call still rings\n{}",
        uas.log()
    );
    assert_ne!(
        b.eval("return window.turretVoice.tone();").await,
        json!("ringback"),
        "no local ringback over the far end's own"
    );
    b.wait_text("li.call[data-state=connected]", "3100").await;
    page_hears(b, "handset-1", FAR, true).await;
    b.click("li.call [data-op=hangup]").await;
    assert!(
        uas.wait(Duration::from_secs(10)),
        "the far end's scenario did not complete\n{}",
        uas.log()
    );
    b.wait_text("#queue", "No calls.").await;
}

/// A sipp client scenario registering `user` on the PBX with its contact
/// at `contact_port` (where another sipp answers).
fn register_as(user: &str, contact_port: u16) -> String {
    let register = |cseq: u32, auth: &str| {
        format!(
            r#"<send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@[remote_ip]:[remote_port]>;tag=[pid]reg
To: <sip:{user}@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: {cseq} REGISTER
Contact: <sip:{user}@127.0.0.1:{contact_port}>
{auth}Max-Forwards: 70
Expires: 120
Content-Length: 0

]]></send>"#
        )
    };
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register">
{}
<recv response="401" auth="true"/>
{}
<recv response="200"/>
</scenario>
"#,
        register(1, ""),
        register(
            2,
            &format!("[authentication username={user} password={PBX_PASSWORD}]\n")
        )
    )
}

/// A sipp server scenario: answers an INVITE with 180 (no SDP), then 183
/// with SDP while it streams `tone` (raw μ-law) as early media, answers
/// after a few seconds and waits for the BYE.
fn early_media_uas(tone: &str) -> String {
    let reply = |status: &str, sdp: bool| {
        let (ctype, body) = if sdp {
            (
                "Content-Type: application/sdp\n",
                "v=0\no=- 1 1 IN IP[media_ip_type] [media_ip]\ns=-\nc=IN IP[media_ip_type] [media_ip]\nt=0 0\nm=audio [media_port] RTP/AVP 0\na=rtpmap:0 PCMU/8000\na=sendrecv\n",
            )
        } else {
            ("", "")
        };
        format!(
            r#"<send><![CDATA[
SIP/2.0 {status}
[last_Via:]
[last_Record-Route:]
[last_From:]
[last_To:];tag=[pid]uas[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:3100@[local_ip]:[local_port]>
{ctype}Content-Length: [len]

{body}]]></send>"#
        )
    };
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="early media">
<recv request="INVITE"/>
{}
<pause milliseconds="500"/>
{}
<nop><action><exec rtp_stream="{tone},-1,0"/></action></nop>
<pause milliseconds="6000"/>
{}
<recv request="ACK"/>
<recv request="BYE"/>
<send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"#,
        reply("180 Ringing", false),
        reply("183 Session Progress", true),
        reply("200 OK", true),
    )
}

/// Waits until the turret plays no tone (a busy or failure tone stops by
/// itself within a few seconds).
async fn page_hears_tone_stops(b: &Browser) {
    let deadline = Instant::now() + Duration::from_secs(6);
    while b.eval("return window.turretVoice.tone();").await != serde_json::Value::Null {
        assert!(Instant::now() < deadline, "the tone did not stop by itself");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The power of `hz` in what a speech unit plays now (averaged over a few
/// reads).
async fn unit_power(b: &Browser, unit: &str, hz: f64) -> f64 {
    let mut sum = 0.0;
    for _ in 0..5 {
        let (s, rate) = unit_samples(b, unit).await;
        sum += goertzel(&s, rate, hz);
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    sum / 5.0
}

/// Two calls at once, answered on two speaker channels: each channel plays
/// its caller's tone; turning one channel down lowers that tone only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_calls_on_two_speaker_channels_are_heard_at_once_each_at_its_own_volume() {
    const OTHER: f64 = 1500.0;
    let d = desk(Mlc::InProcess).await;
    let b = &d.b;
    // A priority line: its calls ring with their own cadence.
    let (st, l) = d
        .api
        .patch(
            &format!("/api/v1/lines/{}", d.line),
            json!({"priority": true}),
        )
        .await;
    assert!(st.is_success() && l["priority"] == true, "{l}");
    let mut first = phone(&d, "2000", FAR, "PCMU", false);
    let mut second = phone(&d, "2001", OTHER, "PCMU", false);
    first.command("dial", &format!("sip:1001@127.0.0.1:{}", d.pbx.port));
    b.wait_text("li.call[data-state=ringing]", "2000").await;
    page_hears_tone(b, "priority").await;
    let id = call_id(b).await;
    b.choose(&format!("#answer-unit-{id}"), "Speaker 1").await;
    b.click(&format!("li.call[data-call='{id}'] [data-op=answer]"))
        .await;
    first.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));
    second.command("dial", &format!("sip:1001@127.0.0.1:{}", d.pbx.port));
    b.wait_text("li.call[data-state=ringing]", "2001").await;
    let id2 = b
        .eval("return document.querySelector('li.call[data-state=ringing]').dataset.call;")
        .await
        .as_str()
        .unwrap()
        .to_string();
    b.choose(&format!("#answer-unit-{id2}"), "Speaker 2").await;
    b.click(&format!("li.call[data-call='{id2}'] [data-op=answer]"))
        .await;
    second.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));

    page_hears(b, "speaker-1", FAR, true).await;
    page_hears(b, "speaker-2", OTHER, true).await;
    b.screenshot("turret-voice").await;
    assert!(!hears(&unit_samples(b, "speaker-1").await.0, 48_000, OTHER));
    assert!(!hears(&unit_samples(b, "speaker-2").await.0, 48_000, FAR));

    let (one, two) = (
        unit_power(b, "speaker-1", FAR).await,
        unit_power(b, "speaker-2", OTHER).await,
    );
    b.eval(
        "const r = document.getElementById('volume-speaker-1'); r.value = '0.25';\
         r.dispatchEvent(new Event('input', {bubbles: true})); return true;",
    )
    .await;
    // Once the analyser's window holds only the quieter sound.
    let deadline = Instant::now() + Duration::from_secs(5);
    while unit_power(b, "speaker-1", FAR).await / one >= 0.12 && Instant::now() < deadline {}
    let (one_after, two_after) = (
        unit_power(b, "speaker-1", FAR).await,
        unit_power(b, "speaker-2", OTHER).await,
    );
    // A quarter of the amplitude is a sixteenth of the power.
    let drop = one_after / one;
    assert!(
        (0.03..0.12).contains(&drop),
        "speaker 1 at a quarter volume kept {drop:.3} of its power"
    );
    let kept = two_after / two;
    assert!(
        (0.6..1.6).contains(&kept),
        "speaker 2 changed with speaker 1's volume: {kept:.3}"
    );
}

/// Audio that cannot connect is said beside the call, not left silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turret_says_when_its_audio_cannot_connect() {
    let d = desk(Mlc::Unreachable).await;
    let b = &d.b;
    let mut phone = phone(&d, "2000", FAR, "PCMU", false);
    phone.command("dial", &format!("sip:1001@127.0.0.1:{}", d.pbx.port));
    b.wait_text("li.call[data-state=ringing]", "2000").await;
    b.click("li.call [data-op=answer]").await;
    phone.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));
    let id = call_id(b).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let said = b
            .eval(&format!(
                "const e = document.getElementById('call-audio-{id}'); return e ? e.textContent : '';"
            ))
            .await;
        if said
            .as_str()
            .is_some_and(|t| t.contains("Audio cannot connect"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing said about the audio: {said}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A line over TLS whose PBX offers SRTP (SDES): the call's RTP is
/// encrypted both ways (baresip takes nothing else: `srtp-mand`), and both
/// tones are heard; the same for a call placed on that line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_offered_on_a_tls_line_is_taken_and_heard_both_ways() {
    let d = desk(Mlc::Tls).await;
    let b = &d.b;
    let mut phone = Baresip::start_with(
        "2000",
        d.pbx.port,
        false,
        BaresipOpts {
            tone_hz: FAR,
            codec: "PCMU",
            record: true,
            srtp: true,
        },
    );
    phone.command("dial", &format!("sip:1001@127.0.0.1:{}", d.pbx.port));
    b.wait_text("li.call[data-state=ringing]", "2000").await;
    b.click("li.call [data-op=answer]").await;
    phone.wait_event("CALL_ESTABLISHED", 0, Duration::from_secs(10));
    let encrypted = |phone: &Baresip| {
        phone
            .events_of("CALL_MENC")
            .iter()
            .filter(|e| {
                e["param"]
                    .as_str()
                    .is_some_and(|p| p.contains("AES_CM_128_HMAC_SHA1_80"))
            })
            .count()
    };
    assert_eq!(
        encrypted(&phone),
        1,
        "baresip's media encryption: {}",
        phone.log()
    );
    page_hears(b, "handset-1", FAR, true).await;
    phone_hears(&phone, MIC, true).await;
    let seen = phone.event_count();
    b.click("li.call [data-op=hangup]").await;
    phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
    b.wait_text("#queue", "No calls.").await;

    // Calling out on the TLS line: the MLC offers SRTP, which the far end
    // (taking nothing else) accepts.
    let seen = phone.event_count();
    b.fill("#dial-number", "2000").await;
    b.click("#dial").await;
    phone.wait_event("CALL_INCOMING", seen, Duration::from_secs(10));
    phone.command("accept", "");
    phone.wait_event("CALL_ESTABLISHED", seen, Duration::from_secs(10));
    b.wait_text("li.call[data-state=connected]", "2000").await;
    assert_eq!(encrypted(&phone), 2, "the call placed was SRTP too");
    page_hears(b, "handset-1", FAR, true).await;
    phone_hears(&phone, MIC, true).await;
    // And hung up from the turret: the BYE follows the TLS route.
    let seen = phone.event_count();
    b.click("li.call [data-op=hangup]").await;
    phone.wait_event("CALL_CLOSED", seen, Duration::from_secs(10));
}

//! The media seam: a leg carries what its endpoint gives and takes.

use super::*;

/// An endpoint that sends a known byte and keeps what it hears.
struct Pattern {
    heard: Mutex<Vec<(u8, Vec<u8>)>>,
}

impl crate::rtp::Endpoint for Pattern {
    fn next_frame(&self, _: openturret_sip::sdp::Codec, payload: &mut [u8]) {
        payload.fill(0x5A);
    }
    fn heard(&self, p: &crate::rtp::Packet<'_>) {
        self.heard
            .lock()
            .unwrap()
            .push((p.payload_type, p.payload.to_vec()));
    }
}

#[tokio::test]
async fn a_legs_media_is_its_endpoints_both_ways_without_touching_the_dialog() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let made: Arc<Mutex<Vec<(crate::rtp::Leg, Arc<Pattern>)>>> = Arc::default();
    let keep = made.clone();
    rig.mlc.set_media(Arc::new(move |leg| {
        let p = Arc::new(Pattern {
            heard: Mutex::new(Vec::new()),
        });
        keep.lock().unwrap().push((leg, p.clone()));
        p
    }));
    let far = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let Answered { view, ok, .. } = rig.answered("1001", far.local_addr().unwrap().port()).await;
    assert_eq!(
        made.lock().unwrap()[0].0,
        crate::rtp::Leg {
            call: view.id,
            line: LineId(1)
        }
    );
    let ours = openturret_sip::sdp::parse(&ok.body).unwrap().rtp.unwrap();
    // What the far end gets is the endpoint's, in RTP.
    let mut buf = [0u8; 512];
    let (n, from) = tokio::time::timeout(WAIT, far.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, ours);
    assert_eq!((n, buf[0] >> 6, buf[1] & 0x7f), (12 + 160, 2, 0));
    assert!(buf[12..n].iter().all(|b| *b == 0x5A));
    // What the far end sends reaches the endpoint.
    let mut packet = vec![0x80, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9];
    packet.extend_from_slice(&[0x11; 160]);
    far.send_to(&packet, ours).await.unwrap();
    let pattern = made.lock().unwrap()[0].1.clone();
    let deadline = std::time::Instant::now() + WAIT;
    while pattern.heard.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the endpoint heard nothing"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(pattern.heard.lock().unwrap()[0], (0, vec![0x11; 160]));
}

/// Makes every new leg's endpoint a [`Pattern`]; returns them as made.
fn patterned(rig: &Rig) -> Arc<Mutex<Vec<Arc<Pattern>>>> {
    let made: Arc<Mutex<Vec<Arc<Pattern>>>> = Arc::default();
    let keep = made.clone();
    rig.mlc.set_media(Arc::new(move |_| {
        let p = Arc::new(Pattern {
            heard: Mutex::new(Vec::new()),
        });
        keep.lock().unwrap().push(p.clone());
        p
    }));
    made
}

/// Waits for the next RTP packet at `far` and returns its payload.
async fn next_payload(far: &tokio::net::UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(WAIT, far.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf[12..n].to_vec()
}

#[tokio::test]
async fn a_held_leg_carries_silence_both_ways_and_retrieve_gives_it_back_to_its_endpoint() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let made = patterned(&rig);
    let far = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let Answered { view, ok, .. } = rig.answered("1001", far.local_addr().unwrap().port()).await;
    let ours = openturret_sip::sdp::parse(&ok.body).unwrap().rtp.unwrap();
    let pattern = made.lock().unwrap()[0].clone();
    assert!(next_payload(&far).await.iter().all(|b| *b == 0x5A));
    rig.hold(view.id, true).await;
    // Held: what the far end gets is silence (μ-law 0xFF), never the
    // endpoint's; what it sends reaches no endpoint.
    let mut silent = 0;
    for _ in 0..20 {
        let p = next_payload(&far).await;
        if p.iter().all(|b| *b == 0xFF) {
            silent += 1;
        } else {
            assert_eq!(silent, 0, "the endpoint's sound came back while held");
        }
    }
    assert!(
        silent >= 15,
        "the held leg kept sending its endpoint's sound"
    );
    let before = pattern.heard.lock().unwrap().len();
    let mut packet = vec![0x80, 0x00, 0, 9, 0, 0, 0, 160, 0, 0, 0, 9];
    packet.extend_from_slice(&[0x22; 160]);
    far.send_to(&packet, ours).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        pattern.heard.lock().unwrap().len(),
        before,
        "heard while held"
    );
    // Retrieved: both ways again.
    rig.hold(view.id, false).await;
    let deadline = std::time::Instant::now() + WAIT;
    while !next_payload(&far).await.iter().all(|b| *b == 0x5A) {
        assert!(std::time::Instant::now() < deadline, "never given back");
    }
    packet[3] = 10;
    far.send_to(&packet, ours).await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while pattern.heard.lock().unwrap().len() == before {
        assert!(std::time::Instant::now() < deadline, "deaf after retrieve");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn hostile_rtp_at_a_leg_changes_nothing() {
    let mut rig = Rig::registered(vec![line(1, "1001", "manual")]).await;
    let made = patterned(&rig);
    let far = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let Answered { view, ok, .. } = rig.answered("1001", far.local_addr().unwrap().port()).await;
    let ours = openturret_sip::sdp::parse(&ok.body).unwrap().rtp.unwrap();
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..2000u32 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let len = (rng % 300) as usize;
        let mut p: Vec<u8> = (0..len).map(|k| (rng >> (k % 56)) as u8).collect();
        if i % 2 == 0 && !p.is_empty() {
            p[0] = 0x80 | (p[0] & 0x3f); // version 2, any flags and CSRC count
        }
        let _ = far.send_to(&p, ours).await;
    }
    // Still a call, still carrying: a good packet is heard.
    let pattern = made.lock().unwrap()[0].clone();
    let before = pattern.heard.lock().unwrap().len();
    let mut packet = vec![0x80, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9];
    packet.extend_from_slice(&[0x33; 160]);
    far.send_to(&packet, ours).await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !pattern.heard.lock().unwrap()[before..]
        .iter()
        .any(|(_, p)| p == &vec![0x33; 160])
    {
        assert!(std::time::Instant::now() < deadline, "deaf after garbage");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        crate::call::line_of(&rig.mlc, view.id).is_some(),
        "the call is up"
    );
}

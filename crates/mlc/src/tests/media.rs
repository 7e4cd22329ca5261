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

//! Where a call's media lives: the endpoint each new leg gets (the voice
//! bridge unless [`Mlc::set_media`] says otherwise), the address and ports
//! its sockets take (`[media]`), and a turret's WebRTC offer for a call.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::{MediaConfig, Mlc, call, rtp, voice};

impl Mlc {
    /// Connects every new call leg's media to what `endpoints` makes for
    /// it (the media seam, see [`Endpoint`]) instead of the voice bridge.
    pub fn set_media(&self, endpoints: rtp::Endpoints) {
        *self.endpoints.lock().unwrap() = Some(endpoints);
    }

    /// Sets where media sockets bind, what they advertise and their ports
    /// (before [`Mlc::start`]).
    pub fn set_media_config(&self, media: MediaConfig) {
        *self.media.lock().unwrap() = media;
    }

    /// Turret audio sessions open now on this MLC.
    pub fn voice_sessions(&self) -> usize {
        self.voices.sessions()
    }

    pub(crate) fn media_config(&self) -> MediaConfig {
        self.media.lock().unwrap().clone()
    }

    /// The media endpoint of a new leg.
    pub(crate) fn endpoint(&self, leg: rtp::Leg) -> Arc<dyn rtp::Endpoint> {
        match &*self.endpoints.lock().unwrap() {
            Some(make) => make(leg),
            None => self.voices.bridge(leg.call),
        }
    }

    /// Makes a new leg's endpoint and binds its RTP socket towards `peer`
    /// (the PBX): on `media.address` or the address we reach it from,
    /// advertising `media.public_address` when set. A leg that cannot bind
    /// leaves no voice bridge behind.
    pub(crate) async fn bind_leg(
        &self,
        peer: SocketAddr,
        leg: rtp::Leg,
    ) -> std::io::Result<rtp::Media> {
        let endpoint = self.endpoint(leg);
        let (bind, advertise, ports) = self.media_place(peer);
        match rtp::Media::bind(bind, ports, endpoint).await {
            Ok(mut m) => {
                m.local = SocketAddr::new(advertise, m.local.port());
                Ok(m)
            }
            Err(e) => {
                self.voices.remove(leg.call);
                self.raise(
                    openturret_domain::model::Event::error(
                        "media.no_port",
                        "",
                        "a call could not get a media port (is the media port range used up?)",
                    )
                    .with("ports", format!("{}-{}", ports.0, ports.1))
                    .with("error", e.kind()),
                );
                Err(e)
            }
        }
    }

    /// Where a media socket towards `peer` binds, what it advertises, and
    /// the port range.
    pub(crate) fn media_place(&self, peer: SocketAddr) -> (IpAddr, IpAddr, (u16, u16)) {
        let m = self.media_config();
        let reach = if peer.ip().is_unspecified() {
            peer.ip()
        } else {
            self.advertised_ip(peer)
        };
        let bind = m.address.unwrap_or(reach);
        let advertise =
            m.public_address
                .unwrap_or(if bind.is_unspecified() { reach } else { bind });
        (bind, advertise, (m.port_min, m.port_max))
    }

    /// Answers the WebRTC `offer` of a turret at `turret` for call `call`,
    /// which profile `by` holds (answered or placed): the turret's speech
    /// unit hears the call and the far end hears the turret. Returns the
    /// SDP answer. A new offer for the same call replaces the last.
    pub async fn attach_voice(
        &self,
        call: u64,
        by: openturret_domain::ProfileId,
        offer: &str,
        turret: IpAddr,
    ) -> Result<String, call::OpError> {
        let codec = call::voice_codec(self, call, by)?;
        let (bind, advertise, ports) = self.media_place(SocketAddr::new(turret, 9));
        let answer = voice::attach(
            &self.voices,
            call,
            codec,
            offer,
            voice::Place {
                bind,
                advertise,
                ports,
            },
        )
        .await;
        if let Err(e) = &answer
            && matches!(e.code, "no_media_port" | "internal")
        {
            self.raise(
                openturret_domain::model::Event::warning(
                    "media.voice_failed",
                    "",
                    "a turret's audio for a call could not be set up",
                )
                .with("code", e.code),
            );
        }
        answer
    }
}

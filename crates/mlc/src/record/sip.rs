//! A recording session's SIP: the dialog's requests (the INVITE that
//! makes it, re-INVITEs, OPTIONS, BYE) with their ACKs and one digest
//! answer, and the multipart body of RFC 7866.

use std::time::Duration;

use openturret_sip::message::{self, Builder, Message};

use super::{ANSWER_WITHIN, Dialog, Session};

impl Session {
    /// The first INVITE: answers a digest challenge once; returns the
    /// recorder's SDP answer.
    pub(super) async fn invite(
        &self,
        d: &mut Dialog,
        sdp: &[u8],
        xml: &[u8],
    ) -> Result<Vec<u8>, String> {
        let r = self
            .request(d, "INVITE", Some(multipart(sdp, xml)), ANSWER_WITHIN)
            .await?;
        sdp_of(&r).ok_or_else(|| "the answer holds no SDP".to_string())
    }

    /// Sends `method` in the dialog (an INVITE makes it, the first time),
    /// with one digest retry; returns the final 2xx or why not.
    pub(super) async fn request(
        &self,
        d: &mut Dialog,
        method: &str,
        body: Option<(String, Vec<u8>)>,
        within: Duration,
    ) -> Result<Box<Message>, String> {
        for attempt in 0..2 {
            d.cseq += 1;
            let branch = self.mlc.branch();
            let mut b = Builder::request(method, &d.remote_target)
                .header("Via", self.mlc.via(d.peer, &branch))
                .header("Max-Forwards", "70");
            for r in &d.route_set {
                b = b.header("Route", r);
            }
            let to = match &d.remote_tag {
                Some(t) => format!("<{}>;tag={t}", d.remote_uri),
                None => format!("<{}>", d.remote_uri),
            };
            b = b
                .header("From", format!("<{}>;tag={}", d.local_uri, d.local_tag))
                .header("To", to)
                .header("Call-ID", &d.call_id)
                .header("CSeq", format!("{} {method}", d.cseq))
                .header("User-Agent", self.mlc.user_agent());
            if method == "INVITE" {
                b = b
                    .header("Contact", &d.contact)
                    .header("Require", "siprec")
                    .header("Accept", "application/sdp, application/rs-metadata+xml");
            }
            if let Some((h, v)) = &d.credentials {
                b = b.header(h, v);
            }
            if let Some((ct, bytes)) = &body {
                b = b.body(ct, bytes.clone());
            }
            let mut rx = self.mlc.transact(
                d.peer,
                branch.clone(),
                b.build(),
                method == "INVITE",
                within,
            );
            let mut last = None;
            while let Some(r) = rx.recv().await {
                if r.code().unwrap_or(0) >= 200 {
                    last = Some(r);
                }
            }
            let send_error = self.mlc.take_send_error(&branch);
            let Some(r) = last else {
                return Err(send_error.unwrap_or_else(|| "no answer".into()));
            };
            let code = r.code().unwrap_or(0);
            // A ping: any answer but "no such dialog" shows it is there.
            if method == "OPTIONS" && code != 481 && code != 408 {
                return Ok(r);
            }
            if (200..300).contains(&code) {
                if d.remote_tag.is_none() {
                    d.remote_tag = r.to.tag().map(str::to_string);
                    if let Some(c) = r.contact() {
                        d.remote_target = c.uri.to_string();
                    }
                    d.route_set = r
                        .header_values("record-route")
                        .iter()
                        .rev()
                        .map(|s| s.to_string())
                        .collect();
                }
                if method == "INVITE" {
                    self.ack(d, r.cseq.number).await;
                }
                return Ok(r);
            }
            if method == "INVITE" {
                let from = format!("<{}>;tag={}", d.local_uri, d.local_tag);
                crate::call::ack_non_2xx(&self.mlc, d.peer, &branch, &d.remote_target, &from, &r)
                    .await;
            }
            if (code == 401 || code == 407)
                && attempt == 0
                && let Some(pw) = &self.target.password
                && let Some((h, v)) = crate::call::digest_answer(
                    &self.mlc,
                    &r,
                    method,
                    &d.remote_target,
                    &self.target.username,
                    pw.expose(),
                )
            {
                d.credentials = Some((h.to_string(), v));
                continue;
            }
            return Err(crate::call::reason_of(&r).chars().take(80).collect());
        }
        Err("authentication failed".into())
    }

    async fn ack(&self, d: &Dialog, cseq: u32) {
        let branch = self.mlc.branch();
        let mut b = Builder::request("ACK", &d.remote_target)
            .header("Via", self.mlc.via(d.peer, &branch))
            .header("Max-Forwards", "70");
        for r in &d.route_set {
            b = b.header("Route", r);
        }
        let b = b
            .header("From", format!("<{}>;tag={}", d.local_uri, d.local_tag))
            .header(
                "To",
                format!(
                    "<{}>;tag={}",
                    d.remote_uri,
                    d.remote_tag.as_deref().unwrap_or_default()
                ),
            )
            .header("Call-ID", &d.call_id)
            .header("CSeq", format!("{cseq} ACK"));
        self.mlc.send(d.peer, &b.build()).await;
    }
}

/// The INVITE body: the SDP offer and the metadata (RFC 7866 §9.1).
pub(super) fn multipart(sdp: &[u8], xml: &[u8]) -> (String, Vec<u8>) {
    message::multipart(&[
        ("application/sdp", None, sdp),
        (
            "application/rs-metadata+xml",
            Some("recording-session"),
            xml,
        ),
    ])
}

/// The SDP of an answer, alone or as a part of a multipart body.
pub(super) fn sdp_of(r: &Message) -> Option<Vec<u8>> {
    match r.content_type().as_deref() {
        Some("application/sdp") => Some(r.body.clone()),
        Some("multipart/mixed") => message::multipart_parts(r.header("content-type")?, &r.body)?
            .into_iter()
            .find(|(ct, _)| ct.eq_ignore_ascii_case("application/sdp"))
            .map(|(_, b)| b),
        _ => None,
    }
}

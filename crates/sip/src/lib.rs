//! SIP for the OpenTurret Multi-Line Controller, without I/O: the message
//! parser and builder ([`message`]), URIs ([`uri`]), the endpoint checks a
//! request passes before it is acted on ([`check`]), digest authentication
//! ([`digest`]), G.711 SDP offer/answer ([`sdp`]) and the G.711 laws
//! themselves ([`g711`]).
//!
//! Why our own and not a SIP crate: the MLC must answer every RFC 4475
//! torture message as that RFC says (400/416/420/505 with the right
//! headers, silent discard where required), bound every allocation by the
//! input size, and set its own Call-IDs and User-Agent. Owning the parser
//! makes each of those a tested line here rather than a patch on someone
//! else's; the I/O side (transports, transactions, dialogs) lives in the
//! server's `mlc` module behind its `SipTransport` trait.
#![forbid(unsafe_code)]

pub mod check;
pub mod digest;
pub mod g711;
pub mod message;
pub mod sdp;
pub mod uri;

pub use message::{Builder, Framing, Message, ParseError, Start, parse};

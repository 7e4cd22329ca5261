//! What this MLC tells the error log (issue 20): a PBX that stops
//! answering and comes back, a line that keeps failing to register, the
//! link to the System Manager lost and restored, strangers refused, media
//! that cannot be set up. Raising an event never waits: it is folded into
//! a bounded queue ([`Pending`]) that a task hands to the host every
//! [`FLUSH_EVERY`], so a storm of ten thousand identical failures is one
//! item with a count. Events name lines by id and PBXs by address, never a
//! number, a person or a password.

use std::sync::Mutex;
use std::time::Duration;

use openturret_domain::Timestamp;
use openturret_domain::model::{Event, Folded, Pending};
use tokio::sync::Notify;

use crate::Mlc;

/// How often what was raised is handed on.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Distinct items held at most between two flushes.
const CAPACITY: usize = 1024;

pub struct Events {
    pending: Mutex<Pending>,
    wake: Notify,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            pending: Mutex::new(Pending::new(CAPACITY)),
            wake: Notify::new(),
        }
    }
}

impl Events {
    fn raise(&self, e: Event) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .raise(e, Timestamp::now());
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<Folded> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_all("", Timestamp::now())
    }
}

impl Mlc {
    /// Raises an event for the error log; never blocks.
    pub fn raise(&self, e: Event) {
        self.events.raise(e);
    }
}

/// Hands what was raised to the host, until the process ends.
pub(crate) async fn run(mlc: Mlc) {
    loop {
        mlc.events.wake.notified().await;
        // Gathers what comes in the same moment into one hand-over.
        tokio::time::sleep(FLUSH_EVERY).await;
        let items = mlc.events.take();
        if let (false, Some(host)) = (items.is_empty(), mlc.host()) {
            host.events(items).await;
        }
    }
}

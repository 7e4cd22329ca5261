//! The log of an in-process server, captured: a test that handles secrets
//! and personal values installs it first and searches it at the end, so a
//! value that reaches the log fails the test instead of passing unread.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// What the process logged since [`capture`], at every level down to debug.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The warnings and errors logged so far, for a failure's message.
    pub fn warnings(&self) -> String {
        self.text()
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Panics naming each of `values` the log holds.
    pub fn assert_holds_none(&self, values: &[&str]) {
        let text = self.text();
        assert!(
            !text.is_empty(),
            "nothing was logged: the capture is not working"
        );
        let found: Vec<&&str> = values.iter().filter(|v| text.contains(**v)).collect();
        assert!(found.is_empty(), "the log holds {found:?}");
    }
}

struct Sink(Captured);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.0.lock().unwrap().extend_from_slice(buf);
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the process's log subscriber (debug and above, every crate)
/// writing into the returned buffer as well as to standard error.
pub fn capture() -> Captured {
    // Once per process: a later call gets the same capture.
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let sink = captured.clone();
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
                .with_writer(move || Sink(sink.clone()))
                .with_ansi(false)
                .init();
            captured
        })
        .clone()
}

//! The error log (SPEC §2, audit/error log): what the components
//! themselves report — a failed backup, a PBX that stops answering, an MLC
//! whose link drops — at a level, for administrators to read beside the
//! audit log of what people did.
//!
//! An event names its component (the System Manager's host or an MLC's
//! name), its type, the object it is about (a line, a PBX, a backup, a
//! recorder) and a message an administrator understands, with a few
//! properties. It never holds a secret or a personal value in clear: the
//! code that raises one names lines by id and PBXs by address, never a
//! number, a person or a password.
//!
//! A storm of identical events is one entry with a count and the first
//! and last time ([`Pending`] folds them before they are written), so
//! nothing can flood the log.

use std::collections::BTreeMap;

use crate::Timestamp;

/// How bad it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventLevel {
    Error,
    Warning,
    Info,
}

impl EventLevel {
    pub const ALL: [EventLevel; 3] = [EventLevel::Error, EventLevel::Warning, EventLevel::Info];

    pub fn as_str(self) -> &'static str {
        match self {
            EventLevel::Error => "error",
            EventLevel::Warning => "warning",
            EventLevel::Info => "info",
        }
    }

    pub fn parse(s: &str) -> Option<EventLevel> {
        EventLevel::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// Bounds of one event, so that no caller can make an entry large.
pub const MAX_MESSAGE: usize = 500;
pub const MAX_PROPERTIES: usize = 12;
pub const MAX_TEXT: usize = 200;

/// What a component reports. Identical events (same component, level,
/// type, object and message) fold into one entry; properties are those of
/// the latest occurrence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// `sm:<host>` for the System Manager, `mlc:<name>` for an MLC. An MLC
    /// leaves it empty; the System Manager names the MLC from its link.
    pub component: String,
    pub level: EventLevel,
    /// Dotted, like the audit log's: `pbx.unreachable`, `backup.failed`.
    pub event_type: String,
    /// What it is about, `kind:id` (`line:7`, `pbx:10.0.0.5:5060`,
    /// `backup`, `recorder:2`), or empty.
    pub object: String,
    pub message: String,
    pub properties: BTreeMap<String, String>,
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Event {
    pub fn new(
        level: EventLevel,
        event_type: &str,
        object: impl Into<String>,
        message: impl AsRef<str>,
    ) -> Event {
        Event {
            component: String::new(),
            level,
            event_type: cut(event_type, MAX_TEXT),
            object: cut(&object.into(), MAX_TEXT),
            message: cut(message.as_ref(), MAX_MESSAGE),
            properties: BTreeMap::new(),
        }
    }

    pub fn error(event_type: &str, object: impl Into<String>, message: impl AsRef<str>) -> Event {
        Event::new(EventLevel::Error, event_type, object, message)
    }

    pub fn warning(event_type: &str, object: impl Into<String>, message: impl AsRef<str>) -> Event {
        Event::new(EventLevel::Warning, event_type, object, message)
    }

    pub fn info(event_type: &str, object: impl Into<String>, message: impl AsRef<str>) -> Event {
        Event::new(EventLevel::Info, event_type, object, message)
    }

    /// Adds a property (at most [`MAX_PROPERTIES`], each value cut to
    /// [`MAX_TEXT`]).
    pub fn with(mut self, key: &str, value: impl ToString) -> Event {
        if self.properties.len() < MAX_PROPERTIES || self.properties.contains_key(key) {
            self.properties
                .insert(cut(key, 40), cut(&value.to_string(), MAX_TEXT));
        }
        self
    }

    /// Names the component (`sm:<host>`, `mlc:<name>`).
    pub fn from_component(mut self, component: &str) -> Event {
        self.component = cut(component, MAX_TEXT);
        self
    }

    fn key(&self) -> (&str, EventLevel, &str, &str, &str) {
        (
            &self.component,
            self.level,
            &self.event_type,
            &self.object,
            &self.message,
        )
    }

    fn same(&self, other: &Event) -> bool {
        self.key() == other.key()
    }

    /// [`Self::subject`], owned: events with the same key are about the
    /// same thing.
    pub fn subject_key(&self) -> (String, String) {
        let (c, o) = self.subject();
        (c.to_string(), o.to_string())
    }

    /// What the event is about, for folding: its component and object, or
    /// for an event about no object, its type (so that unrelated events
    /// without an object do not end each other's folds).
    fn subject(&self) -> (&str, &str) {
        let about = if self.object.is_empty() {
            &self.event_type
        } else {
            &self.object
        };
        (&self.component, about)
    }
}

/// One or more identical events, as they are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folded {
    pub event: Event,
    pub count: u64,
    pub first_at: Timestamp,
    pub last_at: Timestamp,
}

/// An entry of the error log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventEntry {
    pub id: i64,
    /// Grows at every write of any entry (a new one, or a fold into it):
    /// what changed since a reader last looked is `seq > last`.
    pub seq: i64,
    pub event: Event,
    pub count: u64,
    pub first_at: Timestamp,
    pub last_at: Timestamp,
}

/// What to list.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub level: Option<EventLevel>,
    /// At least this bad (`warning`: errors and warnings).
    pub at_least: Option<EventLevel>,
    pub component: Option<String>,
    pub event_type: Option<String>,
    pub object: Option<String>,
    /// Last occurrence in `[from, to)`.
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Paging backwards (newest first): written before this `seq`.
    pub before_seq: Option<i64>,
    /// Following (oldest first): written after this `seq`.
    pub after_seq: Option<i64>,
    pub limit: i64,
}

/// Events raised but not yet written, folded: identical events that come
/// one after another for the same object are one item with a count. An
/// event for the same object of another kind ends the fold (so "PBX down,
/// up, down" stays three items, in order). Bounded: beyond `capacity`
/// items, new kinds of events are counted as dropped, never queued.
#[derive(Debug)]
pub struct Pending {
    items: Vec<Folded>,
    capacity: usize,
    dropped: u64,
}

impl Pending {
    pub fn new(capacity: usize) -> Pending {
        Pending {
            items: Vec::new(),
            capacity,
            dropped: 0,
        }
    }

    /// Adds one event (or `count` identical ones seen from `first_at` to
    /// `last_at`, as another component folded them). Never blocks and
    /// never grows beyond the capacity.
    pub fn add(&mut self, f: Folded) {
        // The newest item about the same component and object decides:
        // the same event folds into it, another one ends the fold.
        let newest = self
            .items
            .iter()
            .rposition(|i| i.event.subject() == f.event.subject());
        if let Some(at) = newest
            && self.items[at].event.same(&f.event)
        {
            let i = &mut self.items[at];
            i.count += f.count;
            i.first_at = i.first_at.min(f.first_at);
            i.last_at = i.last_at.max(f.last_at);
            i.event.properties = f.event.properties;
            return;
        }
        if self.items.len() >= self.capacity {
            self.dropped += f.count;
            return;
        }
        self.items.push(f);
    }

    pub fn raise(&mut self, event: Event, at: Timestamp) {
        self.add(Folded {
            event,
            count: 1,
            first_at: at,
            last_at: at,
        })
    }

    /// Everything pending, in order, and how many events were dropped
    /// since the last take.
    pub fn take(&mut self) -> (Vec<Folded>, u64) {
        (
            std::mem::take(&mut self.items),
            std::mem::take(&mut self.dropped),
        )
    }

    /// Everything pending, in order, with one `events.dropped` warning of
    /// `component` at the end when some were dropped.
    pub fn take_all(&mut self, component: &str, now: Timestamp) -> Vec<Folded> {
        let (mut items, dropped) = self.take();
        if dropped > 0 {
            items.push(Folded {
                event: Event::warning(
                    "events.dropped",
                    "",
                    "too many different events at once; some were not recorded",
                )
                .from_component(component),
                count: dropped,
                first_at: now,
                last_at: now,
            });
        }
        items
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.dropped == 0
    }
}

/// Where the folds of written entries stand: which entry an event folds
/// into once written. An event folds into the newest entry about its
/// component and object when it is the same event and that entry's last
/// occurrence is within `window`; otherwise it starts a new entry.
#[derive(Debug)]
pub struct OpenEntries {
    /// (component, object or type) → the newest entry's id, its event,
    /// its last occurrence.
    open: BTreeMap<(String, String), (i64, Event, Timestamp)>,
    window_ms: i64,
    capacity: usize,
}

impl OpenEntries {
    pub fn new(window_ms: i64, capacity: usize) -> OpenEntries {
        OpenEntries {
            open: BTreeMap::new(),
            window_ms,
            capacity,
        }
    }

    /// The entry `f` folds into, if any.
    pub fn fold_target(&self, f: &Folded) -> Option<i64> {
        let (c, o) = f.event.subject();
        let (id, e, last) = self.open.get(&(c.to_string(), o.to_string()))?;
        (e.same(&f.event) && f.first_at.0 - last.0 < self.window_ms).then_some(*id)
    }

    /// Notes that entry `id` now holds `f`'s event, last seen at `last`.
    pub fn written(&mut self, id: i64, f: &Folded, last: Timestamp) {
        if self.open.len() >= self.capacity {
            // Folds older than the window can go; if that is not enough,
            // all go (the next events start new entries: a count split in
            // two, nothing lost).
            let edge = last.0 - self.window_ms;
            self.open.retain(|_, (_, _, l)| l.0 >= edge);
            if self.open.len() >= self.capacity {
                self.open.clear();
            }
        }
        let (c, o) = f.event.subject();
        self.open
            .insert((c.to_string(), o.to_string()), (id, f.event.clone(), last));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    #[test]
    fn identical_events_fold_into_one_with_a_count_and_both_times() {
        let mut p = Pending::new(8);
        for i in 0..10_000 {
            p.raise(
                Event::warning("tls.handshake_failed", "", "a TLS handshake failed")
                    .from_component("sm:a")
                    .with("last_reason", i),
                at(i),
            );
        }
        let (items, dropped) = p.take();
        assert_eq!((items.len(), dropped), (1, 0));
        assert_eq!(items[0].count, 10_000);
        assert_eq!((items[0].first_at, items[0].last_at), (at(0), at(9_999)));
        assert_eq!(items[0].event.properties["last_reason"], "9999");
        assert!(p.is_empty());
    }

    #[test]
    fn another_event_for_the_same_object_ends_the_fold_and_order_is_kept() {
        let mut p = Pending::new(8);
        let down = || Event::warning("pbx.unreachable", "pbx:10.0.0.1:5060", "no answer");
        let up = || Event::info("pbx.reachable", "pbx:10.0.0.1:5060", "answers again");
        p.raise(down(), at(1));
        p.raise(down(), at(2));
        p.raise(up(), at(3));
        p.raise(down(), at(4));
        // Another object does not end the fold of the first, nor does an
        // event about no object.
        p.raise(
            Event::warning("pbx.unreachable", "pbx:10.0.0.2:5060", "no answer"),
            at(5),
        );
        p.raise(Event::warning("tls.handshake_failed", "", "failed"), at(5));
        p.raise(down(), at(6));
        p.raise(Event::warning("admin.login_refused", "", "refused"), at(7));
        p.raise(Event::warning("tls.handshake_failed", "", "failed"), at(8));
        let (items, _) = p.take();
        let seen: Vec<(&str, u64)> = items
            .iter()
            .map(|i| (i.event.event_type.as_str(), i.count))
            .collect();
        assert_eq!(
            seen,
            [
                ("pbx.unreachable", 2),
                ("pbx.reachable", 1),
                ("pbx.unreachable", 2),
                ("pbx.unreachable", 1),
                ("tls.handshake_failed", 2),
                ("admin.login_refused", 1)
            ]
        );
    }

    #[test]
    fn pending_is_bounded_and_counts_what_it_dropped() {
        let mut p = Pending::new(3);
        for i in 0..10 {
            p.raise(Event::error("x", format!("line:{i}"), "m"), at(i));
        }
        // Folds still work when full.
        p.raise(Event::error("x", "line:0", "m"), at(20));
        let (items, dropped) = p.take();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].count, 2);
        assert_eq!(dropped, 7);
    }

    #[test]
    fn written_entries_take_folds_within_the_window_only() {
        let mut o = OpenEntries::new(1_000, 100);
        let f = |t| Folded {
            event: Event::error("backup.failed", "backup", "cannot write"),
            count: 1,
            first_at: at(t),
            last_at: at(t),
        };
        assert_eq!(o.fold_target(&f(0)), None);
        o.written(7, &f(0), at(0));
        assert_eq!(o.fold_target(&f(500)), Some(7));
        assert_eq!(o.fold_target(&f(1_500)), None);
        let other = Folded {
            event: Event::info("backup.written", "backup", "ok"),
            ..f(600)
        };
        o.written(8, &other, at(600));
        assert_eq!(o.fold_target(&f(700)), None);
    }

    #[test]
    fn events_are_bounded_in_size() {
        let e = Event::error("t", "o", "x".repeat(10_000));
        assert!(e.message.len() <= MAX_MESSAGE + 3);
        let mut e = Event::info("t", "", "m");
        for i in 0..100 {
            e = e.with(&format!("k{i}"), "v".repeat(1_000));
        }
        assert_eq!(e.properties.len(), MAX_PROPERTIES);
        assert!(e.properties.values().all(|v| v.len() <= MAX_TEXT + 3));
        assert_eq!(EventLevel::parse("warning"), Some(EventLevel::Warning));
        assert_eq!(EventLevel::parse("fatal"), None);
    }
}

//! Spreadsheet-safe CSV cells (issue 14, point 11). A cell that begins
//! with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to
//! Excel, LibreOffice and Google Sheets (`=HYPERLINK(...)`, `@SUM(...)`,
//! `-2+3`); every CSV the system writes puts a `'` before such a cell, and
//! every CSV it reads takes that `'` off again, so an exported file
//! imports back exactly.
//!
//! To keep the round trip exact for values that themselves begin with `'`
//! followed by one of those characters (or by another `'`), those get the
//! `'` too: [`escape`] and [`unescape`] are inverse for every string.

use std::borrow::Cow;

fn trigger(c: char) -> bool {
    matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r')
}

/// Whether `rest` (what follows a leading `'`) makes that `'` ours.
fn escaped_rest(rest: &str) -> bool {
    rest.starts_with(|c: char| trigger(c) || c == '\'')
}

/// The cell as written to a CSV file.
pub fn escape(v: &str) -> Cow<'_, str> {
    let needs = v.starts_with(trigger) || v.strip_prefix('\'').is_some_and(escaped_rest);
    if needs {
        Cow::Owned(format!("'{v}"))
    } else {
        Cow::Borrowed(v)
    }
}

/// The value of a cell read from a CSV file.
pub fn unescape(c: &str) -> &str {
    match c.strip_prefix('\'') {
        Some(rest) if escaped_rest(rest) => rest,
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused_and_everything_round_trips() {
        assert_eq!(
            escape("=HYPERLINK(\"http://x\")"),
            "'=HYPERLINK(\"http://x\")"
        );
        assert_eq!(escape("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(escape("-2+3"), "'-2+3");
        assert_eq!(escape("+44 20 7946 0000"), "'+44 20 7946 0000");
        assert_eq!(escape("\tx"), "'\tx");
        assert_eq!(escape("Alice"), "Alice");
        assert_eq!(escape("O'Neill"), "O'Neill");
        assert_eq!(escape("'quoted"), "'quoted");
        for v in [
            "", "=1", "'=1", "''=1", "'", "''", "'a", "a'", "-", "@", "+1", "\r\n=", "Bob", "'+44",
            "é=", " =1",
        ] {
            assert_eq!(unescape(&escape(v)), v, "{v:?}");
            assert!(!escape(v).starts_with(trigger), "{v:?}");
        }
    }
}

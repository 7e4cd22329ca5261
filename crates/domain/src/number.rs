//! Phone-number normalisation: the key under which numbers are searched and
//! matched (caller identification, SPEC §5).
//!
//! The key is the international number as digits only: `+49 69 1234-5`,
//! `0049 69 12345` and (with country code 49) `069 12345` all become
//! `496912345`. Numbers that are neither international nor national (short
//! internal extensions) keep their digits as they are.

/// How national numbers are turned into international ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NumberPlan {
    /// Country calling code without `+`, e.g. `"49"`. `None`: national
    /// numbers keep their leading zero and are matched as written.
    pub country_code: Option<String>,
}

impl NumberPlan {
    /// The search/match key of `number`.
    pub fn key(&self, number: &str) -> String {
        let trimmed = number.trim_start();
        let international = trimmed.starts_with('+');
        let mut digits = String::with_capacity(trimmed.len());
        digits.extend(trimmed.chars().filter(char::is_ascii_digit));
        if international {
            return digits;
        }
        if let Some(rest) = digits.strip_prefix("00") {
            return rest.to_string();
        }
        match (&self.country_code, digits.strip_prefix('0')) {
            (Some(cc), Some(rest)) => format!("{cc}{rest}"),
            _ => digits,
        }
    }
}

/// True when a search term looks like a number rather than a name.
pub fn looks_like_number(term: &str) -> bool {
    let t = term.trim();
    !t.is_empty()
        && t.chars().any(|c| c.is_ascii_digit())
        && t.chars()
            .all(|c| c.is_ascii_digit() || " +-.()/".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn international_forms_share_one_key() {
        let plan = NumberPlan {
            country_code: Some("49".into()),
        };
        assert_eq!(plan.key("+49 69 1234-5"), "496912345");
        assert_eq!(plan.key("0049 69 12345"), "496912345");
        assert_eq!(plan.key("069 12345"), "496912345");
        assert_eq!(plan.key("2001"), "2001");
    }

    #[test]
    fn without_country_code_national_numbers_stay_as_written() {
        assert_eq!(NumberPlan::default().key("069 123"), "069123");
    }

    #[test]
    fn numbers_and_names_are_told_apart() {
        assert!(looks_like_number("+44 20"));
        assert!(!looks_like_number("Smith"));
        assert!(!looks_like_number("R2D2"));
    }
}

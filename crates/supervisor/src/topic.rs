//! Topic names and filters as MQTT 3.1.1 section 4.7 defines them, and the
//! characters MQTT strings may hold (section 1.5.3).

use crate::untrusted;

/// Longest MQTT string in bytes (UTF-8 with a 16-bit length).
pub const MAX_STRING_BYTES: usize = 65_535;

/// Longest topic or filter in bytes.
pub const MAX_TOPIC_BYTES: usize = MAX_STRING_BYTES;

/// Why a topic or filter cannot be used. The topic is quoted cleaned and
/// shortened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Zero length.
    #[error("is empty")]
    Empty,
    /// Longer than MQTT can encode.
    #[error("is {0} bytes long; MQTT allows at most {MAX_TOPIC_BYTES}")]
    TooLong(usize),
    /// A character MQTT forbids (NUL) or brokers reject (control characters,
    /// Unicode non-characters).
    #[error("`{topic}` contains the character {character}, which MQTT does not allow")]
    Forbidden {
        /// The topic, cleaned and shortened.
        topic: String,
        /// The character, escaped.
        character: String,
    },
    /// `#` not alone in the last level.
    #[error("`{0}`: `#` must be the last level and alone in it")]
    MisplacedHash(String),
    /// `+` not a whole level.
    #[error("`{0}`: `+` must stand alone in its level")]
    MisplacedPlus(String),
    /// A wildcard in a topic name.
    #[error("`{0}`: wildcards are not allowed in a topic name")]
    Wildcard(String),
}

/// The first character of `s` that an MQTT UTF-8 string must not hold:
/// U+0000, the C0 and C1 controls, and the Unicode non-characters
/// (Mosquitto closes the connection on any of them).
pub fn forbidden_char(s: &str) -> Option<char> {
    s.chars().find(|&c| {
        let u = u32::from(c);
        c.is_control() || (0xFDD0..=0xFDEF).contains(&u) || (u & 0xFFFE) == 0xFFFE
    })
}

/// Checks a subscription filter: non-empty, at most 65,535 bytes, only
/// allowed characters, `#` only as the last level and alone in it, `+` only
/// as a whole level.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != last) {
            return Err(TopicError::MisplacedHash(shorten(filter)));
        }
        if level.contains('+') && *level != "+" {
            return Err(TopicError::MisplacedPlus(shorten(filter)));
        }
    }
    Ok(())
}

/// Checks a topic name (where a message is published): like a filter but
/// with no wildcards at all.
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    check_common(topic)?;
    if topic.contains(['+', '#']) {
        return Err(TopicError::Wildcard(shorten(topic)));
    }
    Ok(())
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong(s.len()));
    }
    if let Some(c) = forbidden_char(s) {
        return Err(TopicError::Forbidden {
            topic: shorten(s),
            character: untrusted::clean(&c.to_string()),
        });
    }
    Ok(())
}

/// A value quoted in a message: cleaned and at most about 80 bytes.
pub(crate) fn shorten(s: &str) -> String {
    untrusted::cap(s, 80)
}

/// Whether `topic` matches the subscription `filter` (MQTT 3.1.1 section
/// 4.7): `+` is one level, `#` the rest (including the parent level), and
/// a wildcard in the first level does not match topics starting with `$`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut levels = topic.split('/');
    for want in filter.split('/') {
        match (want, levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (want, Some(got)) if want == got => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_follow_section_4_7() {
        for ok in [
            "#",
            "+",
            "a/#",
            "a/+/b",
            "+/+",
            "/",
            "a//b",
            "site_88/#",
            "+/#",
            "with space/ünï",
        ] {
            assert!(validate_filter(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a#",
            "a/#/b",
            "a/b#",
            "a+/b",
            "a/+b",
            "#/a",
            "a/\0",
            "sport+",
            "a\tb",
            "a/\n",
            "a\u{85}",
            "a\u{fffe}",
            "a\u{fdd0}",
            "\u{1fffe}",
        ] {
            assert!(validate_filter(bad).is_err(), "{bad:?}");
        }
        assert!(validate_filter(&"a".repeat(65_536)).is_err());
        assert!(validate_filter(&"a".repeat(65_535)).is_ok());
    }

    #[test]
    fn topics_have_no_wildcards() {
        assert!(validate_topic("site/backend/status").is_ok());
        assert!(validate_topic("site/+/status").is_err());
        assert!(validate_topic("site/#").is_err());
        assert!(validate_topic("").is_err());
    }

    #[test]
    fn messages_quote_the_topic_safely() {
        let e = validate_filter("a\tb/\nFAKE LOG LINE")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\\t"), "{e}");
        assert!(!e.contains('\n') && !e.contains('\t'), "{e}");
        let e = validate_filter(&format!("{}\0", "x".repeat(500)))
            .unwrap_err()
            .to_string();
        assert!(e.len() < 250, "{e}");
    }

    #[test]
    fn filters_match_as_mqtt_says() {
        for (filter, topic, expected) in [
            ("site/#", "site/a/b", true),
            ("site/#", "site", true),
            ("site/#", "sites/a", false),
            ("site/+/status", "site/x/status", true),
            ("site/+/status", "site/x/y/status", false),
            ("site/+", "site/", true),
            ("+/+", "a/b", true),
            ("+", "a/b", false),
            ("#", "$SYS/broker", false),
            ("+/broker", "$SYS/broker", false),
            ("$SYS/#", "$SYS/broker", true),
            ("a/b", "a/b", true),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
        ] {
            assert_eq!(matches(filter, topic), expected, "{filter} ~ {topic}");
        }
    }
}

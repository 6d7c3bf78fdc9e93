//! Topic names and filters as MQTT 3.1.1 section 4.7 defines them.

/// Longest topic or filter in bytes (a UTF-8 string with a 16-bit length).
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// Checks a subscription filter: non-empty, at most 65,535 bytes, no NUL,
/// `#` only as the last level and alone in it, `+` only as a whole level.
pub fn validate_filter(filter: &str) -> Result<(), String> {
    check_common(filter)?;
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != last) {
            return Err(format!(
                "`{}`: `#` must be the last level and alone in it",
                shorten(filter)
            ));
        }
        if level.contains('+') && *level != "+" {
            return Err(format!(
                "`{}`: `+` must stand alone in its level",
                shorten(filter)
            ));
        }
    }
    Ok(())
}

/// Checks a topic name (where a message is published): like a filter but
/// with no wildcards at all.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    check_common(topic)?;
    if topic.contains(['+', '#']) {
        return Err(format!(
            "`{}`: wildcards are not allowed in a topic name",
            shorten(topic)
        ));
    }
    Ok(())
}

fn check_common(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty topic".to_owned());
    }
    if s.len() > MAX_TOPIC_BYTES {
        return Err(format!(
            "topic of {} bytes; at most {MAX_TOPIC_BYTES}",
            s.len()
        ));
    }
    if s.contains('\0') {
        return Err(format!(
            "`{}`: contains a NUL character",
            shorten(s).replace('\0', "\\0")
        ));
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 80 {
        let head: String = s.chars().take(77).collect();
        format!("{head}...")
    } else {
        s.to_owned()
    }
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
        ] {
            assert!(validate_filter(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "a#", "a/#/b", "a/b#", "a+/b", "a/+b", "#/a", "a/\0", "sport+",
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
}

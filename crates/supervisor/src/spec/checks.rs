//! Field checks of the row validator: host names and MQTT strings.

use super::row_error::{HostProblem, RowError, quote};
use crate::topic::{self, MAX_STRING_BYTES};
use crate::untrusted;
use std::net::IpAddr;

/// Accepts exactly a host name or an IP literal, as rumqttc will resolve it
/// (`{host}:{port}`): no scheme, user info, port, path, brackets or spaces.
pub(super) fn host(raw: &str) -> Result<(), RowError> {
    if raw.trim().is_empty() {
        return Err(RowError::Empty("broker_host"));
    }
    let problem = |p| Err(RowError::Host(p));
    if raw.contains("://") {
        return problem(HostProblem::Scheme);
    }
    if raw.contains('@') {
        return problem(HostProblem::UserInfo);
    }
    if raw
        .chars()
        .any(|c| c.is_whitespace() || untrusted::is_unsafe(c))
    {
        return problem(HostProblem::Whitespace);
    }
    if let Some(c) = raw.chars().find(|c| matches!(c, '/' | '?' | '#')) {
        return problem(HostProblem::Path(c));
    }
    if raw.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if raw.starts_with('[') {
        return problem(HostProblem::Brackets);
    }
    if let Some((head, port)) = raw.rsplit_once(':') {
        // `127.0.0.1:28883` or `broker:1883`: name the port, which is no secret.
        if !port.is_empty()
            && port.len() <= 5
            && port.chars().all(|c| c.is_ascii_digit())
            && !head.contains(':')
        {
            return problem(HostProblem::Port(port.to_owned()));
        }
        return problem(HostProblem::Character(":".to_owned()));
    }
    let name = raw.strip_suffix('.').unwrap_or(raw);
    if name.len() > 253 {
        return problem(HostProblem::TooLong);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return problem(HostProblem::EmptyLabel);
        }
        if label.len() > 63 {
            return problem(HostProblem::TooLong);
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return problem(HostProblem::Character(untrusted::clean(&c.to_string())));
        }
    }
    Ok(())
}

/// Whether a column may be quoted in messages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Quote {
    /// Names, topics: quoted, cleaned.
    Value,
    /// Credentials: never quoted.
    Never,
}

/// An MQTT UTF-8 string (user name, name): at most 65,535 bytes, none of the
/// characters MQTT forbids or brokers reject.
pub(super) fn mqtt_string(column: &'static str, value: &str, q: Quote) -> Result<(), RowError> {
    if value.len() > MAX_STRING_BYTES {
        return Err(RowError::TooLong {
            column,
            len: value.len(),
        });
    }
    if let Some(c) = topic::forbidden_char(value) {
        return Err(RowError::ControlCharacter {
            column,
            quoted: if q == Quote::Value {
                quote(value)
            } else {
                String::new()
            },
            character: untrusted::clean(&c.to_string()),
        });
    }
    Ok(())
}

/// The password: binary data in MQTT, but a control character in it is a
/// paste accident (a trailing newline), never quoted.
pub(super) fn password(value: &str) -> Result<(), RowError> {
    if value.len() > MAX_STRING_BYTES {
        return Err(RowError::TooLong {
            column: "password",
            len: value.len(),
        });
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(RowError::ControlCharacter {
            column: "password",
            quoted: String::new(),
            character: untrusted::clean(&c.to_string()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_names_or_addresses_only() {
        for ok in [
            "127.0.0.1",
            "::1",
            "fe80::1",
            "broker",
            "mqtt.site88.example",
            "mqtt.site88.example.",
            "mqtt_broker",
            "a-b.c",
        ] {
            assert_eq!(host(ok), Ok(()), "{ok}");
        }
        let cases = [
            ("", "is empty"),
            ("mqtt://h", "URL scheme"),
            ("mqtt://app:S3cretPW@127.0.0.1", "URL scheme"),
            ("app:S3cretPW@127.0.0.1", "user info"),
            ("127.0.0.1:28883", "port (`:28883`)"),
            ("broker:1883", "port (`:1883`)"),
            ("h/x", "path"),
            ("h?x=1", "path"),
            ("[::1]", "brackets"),
            ("h h", "whitespace"),
            ("h\n", "whitespace"),
            ("ex%61mple", "contains `%`"),
            ("bücher.example", "xn--"),
            ("a..b", "empty label"),
            (".a", "empty label"),
            ("::1::2", "contains `:`"),
        ];
        for (raw, expected) in cases {
            let e = host(raw).unwrap_err().to_string();
            assert!(e.contains(expected), "{raw:?}: {e}");
        }
        assert!(host(&"a".repeat(64)).is_err());
        assert!(host(&["a"; 130].join(".")).is_err());
    }

    #[test]
    fn host_errors_never_quote_the_value() {
        for raw in [
            "mqtt://app:S3cretPW@h",
            "app:S3cretPW@h",
            "S3cretPW h",
            "S3cretPW/h",
        ] {
            let e = host(raw).unwrap_err().to_string();
            assert!(!e.contains("S3cretPW"), "{e}");
        }
    }

    #[test]
    fn credentials_are_checked_but_never_quoted() {
        let e = password("S3cret\n").unwrap_err().to_string();
        assert!(e.contains("\\n") && !e.contains("S3cret"), "{e}");
        let e = mqtt_string("username", "S3cret\t", Quote::Never)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\\t") && !e.contains("S3cret"), "{e}");
        let e = mqtt_string("name", "site_88\n", Quote::Value)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`site_88\\n`"), "{e}");
        assert!(password(&"p".repeat(65_536)).is_err());
        assert!(password(&"p".repeat(65_535)).is_ok());
    }
}

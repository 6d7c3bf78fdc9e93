//! A string that never prints itself.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A secret value (password, URL with credentials, HMAC key). Debug, Display
/// and Serialize print `***`; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself; call only where it is used, never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// A database URL with every value that may be secret replaced by `***`, for
/// logs and `check-config`:
///
/// - the password in the user info (`postgres://app:***@db/x`), however it
///   is percent-encoded;
/// - query parameters that can carry secrets, whatever their case or
///   percent-encoding: `password`, `sslpassword`, and any name containing
///   `password`, `passwd`, `secret`, `token` or `key` (`sslkey`, `api_key`);
/// - a fragment, which libpq does not use but a mistyped password can end up in.
///
/// A URL that does not parse, or that parses with an `@` after the host (a
/// password holding `/`, `?` or `#` unescaped spills there), is `***` whole.
pub fn redact_url(raw: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(raw) else {
        return "***".to_owned();
    };
    let spilled = [Some(parsed.path()), parsed.query(), parsed.fragment()]
        .into_iter()
        .flatten()
        .any(|part| part.contains('@'));
    if spilled || parsed.cannot_be_a_base() {
        return "***".to_owned();
    }
    if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
        return "***".to_owned();
    }
    if let Some(query) = parsed.query().map(redact_query) {
        parsed.set_query(Some(&query));
    }
    if parsed.fragment().is_some() {
        parsed.set_fragment(Some("***"));
    }
    parsed.to_string()
}

/// Whether a URL query parameter (its decoded name) may carry a secret.
fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "key"]
        .iter()
        .any(|word| name.contains(word))
}

/// The query with the values of secret parameters replaced; other pairs are
/// kept exactly as written.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let raw_name = pair.split_once('=').map_or(pair, |(name, _)| name);
            let name = url::form_urlencoded::parse(raw_name.as_bytes())
                .next()
                .map(|(name, _)| name.into_owned())
                .unwrap_or_default();
            if is_secret_parameter(&name) {
                format!("{raw_name}=***")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_every_form_of_secret() {
        const CANARY: &str = "canary-7c1d";
        let cases = [
            // (URL, what the redacted form must still show)
            (
                format!("postgres://app:{CANARY}@db:5432/x"),
                "postgres://app:***@db:5432/x",
            ),
            // Percent-encoded password (`p@ss/w:rd` + canary).
            (
                format!("postgres://app:p%40ss%2Fw%3Ard{CANARY}@db/x"),
                "postgres://app:***@db/x",
            ),
            (
                format!("postgres://db/x?password={CANARY}"),
                "postgres://db/x?password=***",
            ),
            (
                format!("postgres://db/x?PassWord={CANARY}&sslmode=require"),
                "?PassWord=***&sslmode=require",
            ),
            (
                format!("postgres://db/x?pass%77ord={CANARY}"),
                "?pass%77ord=***",
            ),
            (
                format!("postgres://db/x?sslmode=verify-full&sslpassword={CANARY}"),
                "sslmode=verify-full&sslpassword=***",
            ),
            (format!("postgres://db/x?sslkey={CANARY}"), "sslkey=***"),
            (format!("postgres://db/x?ssl-key={CANARY}"), "ssl-key=***"),
            (
                format!("postgres://db/x?client_secret={CANARY}"),
                "client_secret=***",
            ),
            (
                format!("postgres://db/x?api_key={CANARY}&application_name=mqtt"),
                "api_key=***&application_name=mqtt",
            ),
            (
                format!("postgres://db/x?auth_token={CANARY}"),
                "auth_token=***",
            ),
            (
                format!("postgres://u:{CANARY}@db/x?password={CANARY}&password={CANARY}"),
                "postgres://u:***@db/x?password=***&password=***",
            ),
            (
                format!("postgres:///x?host=/run/postgresql&password={CANARY}"),
                "host=/run/postgresql&password=***",
            ),
            (format!("postgres://db/x#{CANARY}"), "postgres://db/x#***"),
        ];
        for (url, shown) in &cases {
            let redacted = redact_url(url);
            assert!(!redacted.contains(CANARY), "{url} -> {redacted}");
            assert!(
                redacted.contains(shown),
                "{url} -> {redacted}, expected {shown}"
            );
        }
        // Harmless parameters stay as written.
        let plain = "postgres://app@db/x?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem";
        assert_eq!(redact_url(plain), plain);
        // Not a URL, or a password that spilled out of the user info: *** whole.
        for url in [
            format!("host=db password={CANARY}"),
            format!("postgres://app:{CANARY}@db:port/x"),
            format!("postgres://app:12#{CANARY}@db/x"),
            format!("postgres://app:12/{CANARY}@db/x"),
            format!("postgres://app:12?{CANARY}@db/x"),
            format!("postgres:{CANARY}"),
        ] {
            assert_eq!(redact_url(&url), "***", "{url}");
        }
    }
}

//! Why a row cannot be run, in words an operator can act on.
//!
//! Messages quote only values that cannot hold a secret (names, topics,
//! filters, the protocol), cleaned and shortened. `broker_host`, `username`,
//! `password` and `hmac_secret` are never quoted: a password pasted into the
//! wrong column must not end up in a log line, the state table or health.

use crate::tls::CaError;
use crate::topic::TopicError;

/// A row that fails validation, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// A required text column is empty or blank.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// A character MQTT or the log cannot carry. `quoted` is the cleaned
    /// value for columns that cannot hold secrets, else empty.
    #[error("{column}{quoted} contains the control character {character}; remove it")]
    ControlCharacter {
        /// The column.
        column: &'static str,
        /// ` `value`` or empty.
        quoted: String,
        /// The character, escaped.
        character: String,
    },
    /// Longer than MQTT's 16-bit string length.
    #[error("{column} is {len} bytes long; MQTT allows at most 65535")]
    TooLong {
        /// The column.
        column: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// `broker_host` is not a bare host name or IP address.
    #[error("broker_host {0}")]
    Host(HostProblem),
    /// Port outside 1-65535.
    #[error("broker_port {0} is outside 1-65535")]
    Port(i32),
    /// Unknown protocol.
    #[error("protocol `{0}` is not `3.1.1` or `5`")]
    Protocol(String),
    /// Keep-alive out of range for the protocol.
    #[error("keep_alive_secs {secs} is outside {min}-65535 for protocol {protocol}")]
    KeepAlive {
        /// The value.
        secs: i32,
        /// The protocol's minimum.
        min: i32,
        /// `3.1.1` or `5`.
        protocol: &'static str,
    },
    /// The CA bundle cannot be used.
    #[error("ca_cert_pem: {0}")]
    Ca(#[from] CaError),
    /// A CA without TLS.
    #[error("ca_cert_pem is set but use_tls is false")]
    CaWithoutTls,
    /// MQTT has no password without a user name.
    #[error("password is set without username (MQTT needs both)")]
    PasswordWithoutUser,
    /// An empty HMAC secret would sign with an empty key.
    #[error("hmac_secret is empty: set a secret, or NULL to sign nothing")]
    HmacSecretEmpty,
    /// HMAC verification without a secret.
    #[error("verify_inbound_hmac is on but hmac_secret is empty")]
    HmacSecretMissing,
    /// A topic or filter that MQTT does not allow.
    #[error("{place} {error}")]
    Topic {
        /// `topic_prefix`, `status topic`, `subscription 2`.
        place: String,
        /// What is wrong with it.
        error: TopicError,
    },
    /// The CONNECT would exceed MQTT_MAX_PACKET_SIZE.
    #[error(
        "the CONNECT packet would be {size} bytes, above MQTT_MAX_PACKET_SIZE ({limit} bytes); shorten the name, topic prefix or credentials"
    )]
    ConnectTooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: u32,
    },
    /// The SUBSCRIBE would exceed MQTT_MAX_PACKET_SIZE.
    #[error(
        "the SUBSCRIBE packet for {filters} filter(s) would be {size} bytes, above MQTT_MAX_PACKET_SIZE ({limit} bytes); use fewer or shorter filters"
    )]
    SubscribeTooLarge {
        /// Number of filters.
        filters: usize,
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: u32,
    },
    /// Another row has the same client ID after sanitising.
    #[error("client ID {client_id} is already used by row {id} ({name}); rename one of them")]
    ClientIdTaken {
        /// The shared client ID.
        client_id: String,
        /// The other row's id.
        id: i64,
        /// The other row's name, cleaned.
        name: String,
    },
}

/// What is wrong with `broker_host`. The value itself is never quoted: it
/// may hold user info with a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostProblem {
    /// `mqtt://…`, `ssl://…`.
    #[error(
        "contains a URL scheme (`://`): write only the host name or address; use_tls turns TLS on and broker_port holds the port"
    )]
    Scheme,
    /// `user:password@host`.
    #[error(
        "contains user info (`@`): write only the host name or address; put the user in username and the password in password"
    )]
    UserInfo,
    /// `host:1883`.
    #[error(
        "contains a port (`:{0}`): write only the host name or address and put the port in broker_port"
    )]
    Port(String),
    /// `host/path`, `host?x`.
    #[error("contains a path or query (`{0}`): write only the host name or address")]
    Path(char),
    /// `[::1]`.
    #[error("has brackets: write an IPv6 address without `[` and `]`")]
    Brackets,
    /// Whitespace, control characters.
    #[error("contains whitespace or a control character")]
    Whitespace,
    /// Anything else outside `[A-Za-z0-9._-]`.
    #[error(
        "contains `{0}`, which a host name cannot hold (letters, digits, `-`, `_` and `.` only; write an internationalised name in its ASCII `xn--` form)"
    )]
    Character(String),
    /// An empty label (`a..b`, `.a`).
    #[error("has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    /// A label over 63 bytes, or a name over 253.
    #[error("is too long for a host name (at most 253 bytes, 63 per label)")]
    TooLong,
}

/// The column quoted, for columns that cannot hold secrets.
pub(crate) fn quote(value: &str) -> String {
    format!(" `{}`", crate::topic::shorten(value))
}

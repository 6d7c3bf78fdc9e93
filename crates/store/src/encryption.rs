//! Whether the database connection is encrypted, as the server reports it,
//! and whether that matters: the rows hold brokers' passwords, which must
//! not cross a network in clear.

use crate::StoreError;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use std::net::IpAddr;

/// TLS of a database session, from `pg_stat_ssl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encryption {
    /// `TLSv1.3` and the like.
    pub version: String,
    /// The cipher suite, e.g. `TLS_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// The TLS of one of the pool's sessions; `None` when it is not encrypted.
/// Every session of a pool is opened with the same options, so one speaks
/// for all.
pub async fn connection_encryption(pool: &PgPool) -> Result<Option<Encryption>, StoreError> {
    let row: Option<(bool, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_optional(pool)
            .await?;
    Ok(match row {
        Some((true, version, cipher)) => Some(Encryption {
            version: version.unwrap_or_default(),
            cipher: cipher.unwrap_or_default(),
        }),
        _ => None,
    })
}

/// Whether the options reach a database on this machine (a Unix socket, a
/// loopback address or `localhost`), where an unencrypted connection never
/// crosses a network.
pub fn is_local(options: &PgConnectOptions) -> bool {
    let host = options.get_host();
    if options.get_socket().is_some() || host.starts_with('/') {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect_options;

    #[test]
    fn loopback_and_sockets_are_local() {
        for url in [
            "postgres://localhost/x",
            "postgres://LOCALHOST/x",
            "postgres://127.0.0.1/x",
            "postgres://127.0.0.53:6543/x",
            "postgres://[::1]/x",
            "postgres:///x?host=/run/postgresql",
            "postgres://%2Frun%2Fpostgresql/x",
        ] {
            assert!(is_local(&connect_options(url).unwrap()), "{url}");
        }
        for url in [
            "postgres://db.internal/x",
            "postgres://10.0.0.5/x",
            "postgres://[2001:db8::1]/x",
            "postgres://localhost.example.com/x",
        ] {
            assert!(!is_local(&connect_options(url).unwrap()), "{url}");
        }
    }
}

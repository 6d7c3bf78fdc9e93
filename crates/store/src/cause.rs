//! The cause of a database failure in one line of words, said once.
//!
//! sqlx's errors print their cause in their own message *and* expose it as
//! their source, so a chain printed with `{:#}` says it twice (`Connection
//! refused (os error 111): Connection refused (os error 111)`); Postgres's
//! errors add ` at line N`, a line of the server's own C source that reads
//! like a line of the user's file. [`describe`] gives the cause alone, and
//! [`crate::StoreError`] prints it without a source chain.

use sqlx::migrate::MigrateError;
use std::io;

/// One line: what went wrong with the database, without sqlx's prefixes,
/// repeated sources or Postgres's ` at line N`. Never the URL.
pub fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Io(io) => describe_io(io),
        sqlx::Error::Tls(source) => format!("TLS: {}", without_line(&source.to_string())),
        sqlx::Error::PoolTimedOut => {
            "no database connection became free in time (pool timed out)".to_owned()
        }
        other => without_line(&other.to_string()),
    }
}

/// A failed migration in one line; a clash with an existing table is
/// [`table_clash`]'s business, not this one's.
pub fn describe_migrate(e: &MigrateError) -> String {
    match e {
        MigrateError::Execute(e) => describe(e),
        MigrateError::ExecuteMigration(e, version) => {
            format!("migration {version}: {}", describe(e))
        }
        other => without_line(&other.to_string()),
    }
}

/// The relation a migration could not create because one of that name is
/// there already (SQLSTATE 42P07, duplicate_table): a table this service
/// did not create, since sqlx records every migration it applied.
pub fn table_clash(e: &MigrateError) -> Option<String> {
    let (MigrateError::Execute(sqlx::Error::Database(db))
    | MigrateError::ExecuteMigration(sqlx::Error::Database(db), _)) = e
    else {
        return None;
    };
    if db.code().as_deref() != Some("42P07") {
        return None;
    }
    // `relation "mqtt_connections" already exists`
    let message = db.message();
    let name = message
        .split('"')
        .nth(1)
        .filter(|name| !name.is_empty())
        .unwrap_or(message);
    Some(name.to_owned())
}

/// An I/O error in words: `connection refused`, `no such host`, … without
/// `(os error 111)`.
fn describe_io(e: &io::Error) -> String {
    let text = e.to_string();
    // std's resolver: "failed to lookup address information: Name or
    // service not known" (the kind is not a stable ErrorKind).
    if let Some(rest) = text.strip_prefix("failed to lookup address information: ") {
        return format!("no such host ({})", lower_first(rest));
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            "connection refused (is Postgres running and listening on that host and port?)"
                .to_owned()
        }
        io::ErrorKind::ConnectionReset => "connection reset by the server".to_owned(),
        io::ErrorKind::ConnectionAborted => "connection closed by the server".to_owned(),
        // Ours say how long they waited ("no answer within 3 s").
        io::ErrorKind::TimedOut if e.raw_os_error().is_none() => text,
        io::ErrorKind::TimedOut => "timed out".to_owned(),
        io::ErrorKind::NotFound => format!("no such socket ({})", lower_first(&without_os(&text))),
        io::ErrorKind::PermissionDenied => {
            format!("permission denied ({})", lower_first(&without_os(&text)))
        }
        io::ErrorKind::UnexpectedEof => "the server closed the connection".to_owned(),
        _ => lower_first(&without_os(&text)),
    }
}

/// `Connection refused (os error 111)` → `Connection refused`.
fn without_os(text: &str) -> String {
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_owned(),
        _ => text.to_owned(),
    }
}

/// Drops every ` at line N` (Postgres's source line in its own C code).
pub(crate) fn without_line(text: &str) -> String {
    const MARK: &str = " at line ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(MARK) {
        let after = &rest[i + MARK.len()..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        out.push_str(&rest[..i]);
        if digits == 0 {
            out.push_str(MARK);
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        // Keep acronyms (`TLS`, `DNS`) as they are.
        Some(c) if !chars.next().is_some_and(char::is_uppercase) => c
            .to_lowercase()
            .chain(text[c.len_utf8()..].chars())
            .collect(),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_in_words_once() {
        let refused = sqlx::Error::Io(io::Error::from_raw_os_error(111));
        let line = describe(&refused);
        assert!(line.starts_with("connection refused"), "{line}");
        assert!(!line.contains("os error"), "{line}");
        let dns = sqlx::Error::Io(io::Error::other(
            "failed to lookup address information: Name or service not known",
        ));
        assert_eq!(describe(&dns), "no such host (name or service not known)");
        let other = sqlx::Error::Io(io::Error::other("Broken pipe (os error 32)"));
        assert_eq!(describe(&other), "broken pipe");
    }

    #[test]
    fn postgres_line_numbers_are_dropped() {
        assert_eq!(
            without_line(r#"relation "t" already exists at line 1454: x at line 7"#),
            r#"relation "t" already exists: x"#
        );
        assert_eq!(without_line("stop at line end"), "stop at line end");
        assert_eq!(without_line("no mark"), "no mark");
    }

    #[test]
    fn acronyms_keep_their_case() {
        assert_eq!(lower_first("TLS handshake"), "TLS handshake");
        assert_eq!(lower_first("Name or service"), "name or service");
        assert_eq!(lower_first(""), "");
    }
}

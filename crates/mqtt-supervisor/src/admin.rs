//! `mqtt-supervisor connections list|add|enable|disable|remove`: the table,
//! edited by a person at a terminal. Every change is a plain write to
//! `mqtt_connections`, so the running service applies it at once via NOTIFY.

use anyhow::Context;
use chrono::Utc;
use settings::Settings;
use std::time::Duration;
use store::{ConnectionRow, NewConnection, PgPool, StoreError};
use supervisor::untrusted::clean;

/// Why an admin command failed; the binary maps it to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The input cannot be used (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// Anything else: unknown name, database trouble (exit 1).
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Connects for a one-shot command: one connection, a short timeout.
pub async fn connect(settings: &Settings) -> anyhow::Result<PgPool> {
    let options = store::connect_options(settings.database_url.expose())?;
    let address = store::database_address(&options);
    // One direct attempt first: the pool would only say "timed out" and hide
    // the cause (connection refused, bad password, no such database).
    let probe = tokio::time::timeout(
        Duration::from_secs(5),
        <sqlx::PgConnection as sqlx::Connection>::connect_with(&options),
    )
    .await
    .map_err(|_| anyhow::anyhow!("cannot connect to database {address}: no answer within 5 s"))?;
    let conn = probe.map_err(|e| connect_error(&address, &e))?;
    let _ = sqlx::Connection::close(conn).await;
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(|e| connect_error(&address, &e))
}

/// One line, shared with `run` ([`store::describe_connect_error`]): the
/// cause once, and what to do about an unknown role, a wrong password or a
/// missing database. Never the URL, which may hold a password.
fn connect_error(address: &str, e: &sqlx::Error) -> anyhow::Error {
    anyhow::anyhow!(store::describe_connect_error(address, e))
}

/// Prints the table: name, enabled, broker, status, client ID, last error.
pub async fn list(pool: &PgPool, settings: &Settings) -> anyhow::Result<()> {
    let rows = store::list_connections(pool)
        .await
        .context("cannot read mqtt_connections (did you run `mqtt-supervisor migrate`?)")?;
    if rows.is_empty() {
        println!(
            "No connections. Add one with `mqtt-supervisor connections add NAME --host HOST`."
        );
        return Ok(());
    }
    let mut table = vec![[
        "NAME".to_owned(),
        "ENABLED".to_owned(),
        "BROKER".to_owned(),
        "STATUS".to_owned(),
        "CLIENT ID".to_owned(),
        "LAST ERROR".to_owned(),
    ]];
    for r in rows {
        let tls = if r.use_tls { " tls" } else { "" };
        table.push([
            clean(&r.name),
            if r.is_enabled { "yes" } else { "no" }.to_owned(),
            format!(
                "{}:{} ({}{tls})",
                supervisor::spec::host_for_display(&r.broker_host),
                r.broker_port,
                clean(&r.protocol)
            ),
            r.status.unwrap_or_else(|| "-".to_owned()),
            r.client_id
                .unwrap_or_else(|| supervisor::spec::client_id(&r.name, &settings.instance_id)),
            r.last_error
                .map(|e| shorten(&e, 60))
                .unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    print_table(&table);
    Ok(())
}

/// Prints rows of six cells in aligned columns.
fn print_table(table: &[[String; 6]]) {
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            table
                .iter()
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// Prints the replicas of the instance: id, alive, heartbeat, share.
pub async fn replicas(pool: &PgPool, settings: &Settings) -> anyhow::Result<()> {
    let scope = settings::sanitize_client_id_part(&settings.instance_id);
    let rows = store::list_replicas(pool, &scope)
        .await
        .context("cannot read mqtt_replicas (did you run `mqtt-supervisor migrate`?)")?;
    if rows.is_empty() {
        println!(
            "No replica of instance {} is running.",
            settings.instance_id
        );
        return Ok(());
    }
    let now = Utc::now();
    let mut table = vec![[
        "REPLICA".to_owned(),
        "ALIVE".to_owned(),
        "HEARTBEAT".to_owned(),
        "OWNED".to_owned(),
        "VERSION".to_owned(),
        "STARTED".to_owned(),
    ]];
    for r in rows {
        let ago = (now - r.heartbeat_at).num_milliseconds() as f64 / 1000.0;
        table.push([
            clean(&r.replica_id),
            if r.alive { "yes" } else { "no" }.to_owned(),
            format!("{ago:.1} s ago"),
            r.owned.to_string(),
            clean(&r.version),
            r.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        ]);
    }
    print_table(&table);
    Ok(())
}

/// Validates `new` as the service would, then inserts it.
pub async fn add(pool: &PgPool, settings: &Settings, new: NewConnection) -> Result<(), AdminError> {
    let row = ConnectionRow {
        id: 0,
        name: new.name.clone(),
        is_enabled: new.is_enabled,
        broker_host: new.broker_host.clone(),
        broker_port: new.broker_port.unwrap_or(1883),
        protocol: new.protocol.clone().unwrap_or_else(|| "3.1.1".to_owned()),
        use_tls: new.use_tls,
        ca_cert_pem: new.ca_cert_pem.clone(),
        username: new.username.clone(),
        password: new.password.clone(),
        keep_alive_secs: None,
        clean_session: None,
        topic_prefix: None,
        subscriptions: new.subscriptions.clone(),
        store_inbound: true,
        hmac_secret: None,
        verify_inbound_hmac: false,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    };
    // The same validator as the service, and the client ID must be free.
    let existing = store::load_connections(pool)
        .await
        .context("cannot read mqtt_connections (did you run `mqtt-supervisor migrate`?)")?;
    if existing.iter().any(|r| r.name == new.name) {
        return Err(AdminError::Failed(
            StoreError::Exists(new.name.clone()).into(),
        ));
    }
    let spec = supervisor::validate_candidate(&row, &existing, settings).map_err(|e| {
        AdminError::Invalid(format!(
            "connection `{}`: {}",
            supervisor::untrusted::clean(&new.name),
            e.reason
        ))
    })?;
    match store::add_connection(pool, &new).await {
        Ok(_) => {
            println!(
                "Added {} ({}, client ID {}){}.",
                spec.name,
                spec.broker(),
                spec.client_id,
                if new.is_enabled { "" } else { ", disabled" }
            );
            Ok(())
        }
        Err(e @ StoreError::Rejected(_)) => Err(AdminError::Invalid(e.to_string())),
        Err(e) => Err(AdminError::Failed(e.into())),
    }
}

/// Enables or disables a connection by name.
pub async fn set_enabled(pool: &PgPool, name: &str, enabled: bool) -> anyhow::Result<()> {
    store::set_enabled(pool, name, enabled).await?;
    println!("{} {name}.", if enabled { "Enabled" } else { "Disabled" });
    Ok(())
}

/// Removes a connection by name.
pub async fn remove(pool: &PgPool, name: &str) -> anyhow::Result<()> {
    store::remove_connection(pool, name).await?;
    println!("Removed {name}.");
    Ok(())
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let head: String = s.chars().take(max - 1).collect();
        format!("{head}…")
    }
}

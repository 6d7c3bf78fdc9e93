//! The schema migrations in `migrations/` and what applying them did.

use crate::{PgPool, StoreError, cause};

/// The schema migrations in `migrations/` at the repository root.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// A migration that [`migrate`] applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    /// Its version (the file name's number).
    pub version: i64,
    /// Its description (the rest of the file name).
    pub description: String,
}

/// Applies pending migrations; returns the ones it applied (none when the
/// schema was up to date).
pub async fn migrate(pool: &PgPool) -> Result<Vec<AppliedMigration>, StoreError> {
    let before = applied_versions(pool).await?;
    if let Err(e) = MIGRATOR.run(pool).await {
        return Err(match cause::table_clash(&e) {
            Some(table) => StoreError::TableExists(table),
            None => StoreError::Migrate(e),
        });
    }
    let after = applied_versions(pool).await?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .filter(|m| after.contains(&m.version) && !before.contains(&m.version))
        .map(|m| AppliedMigration {
            version: m.version,
            description: m.description.to_string(),
        })
        .collect())
}

/// One sentence for the log: what [`migrate`] applied.
pub fn migration_summary(applied: &[AppliedMigration]) -> String {
    match applied {
        [] => "Database schema is up to date; nothing to apply.".to_owned(),
        _ => {
            let list: Vec<String> = applied
                .iter()
                .map(|m| format!("{} {}", m.version, m.description))
                .collect();
            let plural = if applied.len() == 1 { "" } else { "s" };
            format!(
                "Applied {} migration{plural}: {}.",
                applied.len(),
                list.join(", ")
            )
        }
    }
}

/// Versions recorded in sqlx's `_sqlx_migrations`, none before the first run.
async fn applied_versions(pool: &PgPool) -> Result<Vec<i64>, StoreError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    Ok(
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_says_what_was_applied() {
        assert_eq!(
            migration_summary(&[]),
            "Database schema is up to date; nothing to apply."
        );
        let one = AppliedMigration {
            version: 20261122000001,
            description: "connections".to_owned(),
        };
        assert_eq!(
            migration_summary(std::slice::from_ref(&one)),
            "Applied 1 migration: 20261122000001 connections."
        );
        let two = AppliedMigration {
            version: 20261122000002,
            description: "inbox".to_owned(),
        };
        assert_eq!(
            migration_summary(&[one, two]),
            "Applied 2 migrations: 20261122000001 connections, 20261122000002 inbox."
        );
    }
}

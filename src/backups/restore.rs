//! What a restore would overwrite, and clearing the way for it.
//!
//! A restore goes into an empty database: one with no tables at all outside
//! PostgreSQL's own schemas (a database just created, or the managed cluster
//! before anything ran on it). Anything else — even wechat-ticket's tables
//! with nothing in them yet — is refused unless forced, and the refusal says
//! what is there, so nobody replaces a live database by mistake.

use sqlx::PgConnection;

use crate::error::AppError;

/// What the product's tables hold, in the words an operator uses.
const COUNTED: &[(&str, &str)] = &[
    ("activities", "activities"),
    ("tickets", "tickets"),
    ("students", "bound students"),
    ("roster", "roster entries"),
    ("lottery_entries", "lottery entries"),
    ("admin_users", "admin accounts"),
    ("admin_sessions", "admin sessions"),
    ("images", "posters"),
    ("audit_log", "audit entries"),
];

/// What a database holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    /// Tables outside PostgreSQL's own schemas.
    pub tables: i64,
    /// Rows in the product's tables that exist, as (what, how many).
    pub counts: Vec<(&'static str, i64)>,
    /// The last migration applied, if the database has wechat-ticket's migrations.
    pub migration: Option<i64>,
}

impl Contents {
    pub fn is_empty(&self) -> bool {
        self.tables == 0
    }

    /// `activities: 3, tickets: 120, … (wechat-ticket migration 20)`; the empty counts left out.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> =
            self.counts.iter().filter(|(_, n)| *n > 0).map(|(what, n)| format!("{what}: {n}")).collect();
        if parts.is_empty() {
            parts.push(format!("{} tables but no activities, tickets, students or accounts yet", self.tables));
        }
        match self.migration {
            Some(m) => format!("{} (wechat-ticket migration {m})", parts.join(", ")),
            None => format!("{} (no wechat-ticket migrations)", parts.join(", ")),
        }
    }
}

pub async fn contents(conn: &mut PgConnection) -> Result<Contents, AppError> {
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'",
    )
    .fetch_one(&mut *conn)
    .await?;
    let mut counts = Vec::new();
    for (table, what) in COUNTED {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("public.{table}"))
            .fetch_one(&mut *conn)
            .await?;
        if exists {
            // The table names are the constants above, never input.
            let n: i64 =
                sqlx::query_scalar(&format!("SELECT count(*) FROM public.{table}")).fetch_one(&mut *conn).await?;
            counts.push((*what, n));
        }
    }
    let migrated: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL").fetch_one(&mut *conn).await?;
    let migration = if migrated {
        sqlx::query_scalar("SELECT max(version) FROM public._sqlx_migrations WHERE success")
            .fetch_one(&mut *conn)
            .await?
    } else {
        None
    };
    Ok(Contents { tables, counts, migration })
}

/// The other sessions on this database (their application names): a restore
/// under a running `serve` would pull the tables from under it.
pub async fn other_sessions(conn: &mut PgConnection) -> Result<Vec<String>, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(nullif(application_name, ''), 'unnamed') FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
    )
    .fetch_all(conn)
    .await?)
}

/// Drops everything in the database outside PostgreSQL's own schemas (the
/// app's tables, the job queue's schema) and leaves an empty `public`, in one
/// transaction: what `restore --force` does before restoring.
pub async fn clear(conn: &mut PgConnection) -> Result<(), AppError> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%'",
    )
    .fetch_all(&mut *tx)
    .await?;
    for schema in schemas {
        sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", schema.replace('"', "\"\""))).execute(&mut *tx).await?;
    }
    sqlx::query("CREATE SCHEMA public").execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

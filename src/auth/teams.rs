//! Teams (社团/部门): every activity belongs to one; an organizer account is a
//! member of one or more and manages only their activities.

use sqlx::{FromRow, PgConnection};

use crate::error::AppError;

/// The team the migration made and moved every earlier activity to: an
/// activity made without naming a team lands here (the column's default).
pub const DEFAULT_TEAM: i64 = 1;

/// The longest team name, in characters (the table's limit).
pub const MAX_NAME_CHARS: usize = 64;

#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct Team {
    pub id: i64,
    pub name: String,
}

pub async fn add(conn: &mut PgConnection, name: &str) -> Result<Team, AppError> {
    let name = name.trim();
    if !(1..=MAX_NAME_CHARS).contains(&name.chars().count()) {
        return Err(AppError::Invalid(format!("team name: 1 to {MAX_NAME_CHARS} characters")));
    }
    sqlx::query_as("INSERT INTO teams (name) VALUES ($1) RETURNING id, name").bind(name).fetch_one(conn).await.map_err(
        |e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                AppError::Invalid(format!("team `{name}` already exists"))
            }
            _ => e.into(),
        },
    )
}

/// Every team, the default first (then in the order they were made).
pub async fn list(conn: &mut PgConnection) -> Result<Vec<Team>, AppError> {
    Ok(sqlx::query_as("SELECT id, name FROM teams ORDER BY id").fetch_all(conn).await?)
}

/// The teams with these ids, in the order of `list`.
pub async fn by_ids(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<Team>, AppError> {
    Ok(sqlx::query_as("SELECT id, name FROM teams WHERE id = ANY($1) ORDER BY id").bind(ids).fetch_all(conn).await?)
}

/// The ids of these team names; an unknown name is refused by name, so a typo
/// never leaves an organizer in fewer teams than meant.
pub async fn ids_of(conn: &mut PgConnection, names: &[String]) -> Result<Vec<i64>, AppError> {
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM teams WHERE name = $1")
            .bind(name.trim())
            .fetch_optional(&mut *conn)
            .await?;
        match id {
            Some(id) if !ids.contains(&id) => ids.push(id),
            Some(_) => {}
            None => return Err(AppError::Invalid(format!("no team named `{}` (see `team list`)", name.trim()))),
        }
    }
    Ok(ids)
}

/// Every team with its activity and member counts (`team list`).
pub async fn with_counts(conn: &mut PgConnection) -> Result<Vec<(i64, String, i64, i64)>, AppError> {
    Ok(sqlx::query_as(
        "SELECT t.id, t.name, (SELECT count(*) FROM activities a WHERE a.team_id = t.id), \
             (SELECT count(*) FROM team_members m WHERE m.team_id = t.id) \
         FROM teams t ORDER BY t.id",
    )
    .fetch_all(conn)
    .await?)
}

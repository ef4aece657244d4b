//! Admin users: an `admin` may do everything; an `organizer` manages only the
//! activities of their teams (README "Teams and roles").

use sqlx::{Acquire, FromRow, PgConnection, PgPool};

use crate::{auth::passwords, error::AppError};

/// What an account may do, as the database stores it (a text column with a CHECK).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Role {
    Admin,
    Organizer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Organizer => "organizer",
        }
    }

    /// As the console shows it.
    pub fn label(self) -> &'static str {
        match self {
            Role::Admin => "管理员",
            Role::Organizer => "组织者",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text.trim() {
            "admin" => Some(Role::Admin),
            "organizer" => Some(Role::Organizer),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct Admin {
    pub id: i64,
    pub username: String,
    pub role: Role,
}

impl Admin {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Which activities an account sees: all of them, or its teams' only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Teams(Vec<i64>),
}

impl Scope {
    /// For a query's `($n::bigint[] IS NULL OR a.team_id = ANY($n))`: NULL means every team.
    pub fn team_filter(&self) -> Option<&[i64]> {
        match self {
            Scope::All => None,
            Scope::Teams(ids) => Some(ids),
        }
    }

    pub fn includes(&self, team_id: i64) -> bool {
        match self {
            Scope::All => true,
            Scope::Teams(ids) => ids.contains(&team_id),
        }
    }
}

/// The scope of an account: an admin's is everything; an organizer's, the
/// teams they are a member of now (read on every request, so a change of
/// teams applies at once).
pub async fn scope_of(conn: &mut PgConnection, admin: &Admin) -> Result<Scope, AppError> {
    Ok(match admin.role {
        Role::Admin => Scope::All,
        Role::Organizer => Scope::Teams(team_ids(conn, admin.id).await?),
    })
}

pub async fn team_ids(conn: &mut PgConnection, admin_id: i64) -> Result<Vec<i64>, AppError> {
    Ok(sqlx::query_scalar("SELECT team_id FROM team_members WHERE admin_id = $1 ORDER BY team_id")
        .bind(admin_id)
        .fetch_all(conn)
        .await?)
}

/// The longest password taken (typed or set). Hashing cost grows with the
/// input; no one types more, so more is refused unread.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// The longest username (the `admin_users` table's limit).
pub const MAX_USERNAME_BYTES: usize = 64;

pub fn valid_username(name: &str) -> bool {
    (1..=MAX_USERNAME_BYTES).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Creates an admin, or sets a new password when the username exists (its
/// role and teams unchanged). A new password ends every session of that
/// account: whoever knew the old one is out.
pub async fn add(conn: &mut PgConnection, username: &str, password: &str) -> Result<Admin, AppError> {
    add_with(conn, username, password, None, &[]).await
}

/// As [`add`], with a role and teams. `role` None keeps an existing account's
/// role (a password reset never promotes an organizer) and makes a new one an
/// admin; teams given replace the account's teams. An organizer must end in at
/// least one team: one in none could see nothing and would only puzzle. Setting
/// a password from the shell also lifts a disable: the shell is where access is
/// given back.
pub async fn add_with(
    conn: &mut PgConnection,
    username: &str,
    password: &str,
    role: Option<Role>,
    teams: &[i64],
) -> Result<Admin, AppError> {
    if !valid_username(username) {
        return Err(AppError::Invalid("username: letters, digits, `_`, `.` and `-`, at most 64".into()));
    }
    if !(8..=MAX_PASSWORD_CHARS).contains(&password.chars().count()) {
        return Err(AppError::Invalid(format!("password: 8 to {MAX_PASSWORD_CHARS} characters")));
    }
    let hash = passwords::hash(password.to_string()).await?;
    let mut tx = conn.begin().await?;
    let admin: Admin = sqlx::query_as(
        "INSERT INTO admin_users (username, password_hash, role) VALUES ($1, $2, coalesce($3, 'admin')) \
         ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash, \
             role = coalesce($3, admin_users.role), disabled_at = NULL \
         RETURNING id, username, role",
    )
    .bind(username)
    .bind(hash)
    .bind(role)
    .fetch_one(&mut *tx)
    .await?;
    if !teams.is_empty() {
        set_teams(&mut tx, admin.id, teams).await?;
    }
    check_organizer_has_team(&mut tx, &admin).await?;
    sqlx::query("DELETE FROM admin_sessions WHERE user_id = $1").bind(admin.id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(admin)
}

async fn set_teams(conn: &mut PgConnection, admin_id: i64, teams: &[i64]) -> Result<(), AppError> {
    sqlx::query("DELETE FROM team_members WHERE admin_id = $1").bind(admin_id).execute(&mut *conn).await?;
    // Ids of no team (a stale or crafted form) are dropped, not an error page.
    sqlx::query("INSERT INTO team_members (admin_id, team_id) SELECT $1, id FROM teams WHERE id = ANY($2)")
        .bind(admin_id)
        .bind(teams)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn check_organizer_has_team(conn: &mut PgConnection, admin: &Admin) -> Result<(), AppError> {
    if admin.role == Role::Organizer && team_ids(conn, admin.id).await?.is_empty() {
        return Err(AppError::Invalid("an organizer needs at least one team (--team <name>)".into()));
    }
    Ok(())
}

/// Changes an account's role and teams (the accounts page). Its sessions
/// stay: the layer reads role and teams on every request, so the change
/// applies to them at once.
pub async fn set_role_and_teams(
    conn: &mut PgConnection,
    admin_id: i64,
    role: Role,
    teams: &[i64],
) -> Result<Admin, AppError> {
    let mut tx = conn.begin().await?;
    let admin: Admin = sqlx::query_as("UPDATE admin_users SET role = $2 WHERE id = $1 RETURNING id, username, role")
        .bind(admin_id)
        .bind(role)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(AppError::NotFound)?;
    set_teams(&mut tx, admin.id, teams).await?;
    check_organizer_has_team(&mut tx, &admin).await?;
    tx.commit().await?;
    Ok(admin)
}

/// Disables an account: it can no longer log in, and its sessions end now.
pub async fn disable(conn: &mut PgConnection, admin_id: i64) -> Result<Option<Admin>, AppError> {
    let mut tx = conn.begin().await?;
    let admin: Option<Admin> = sqlx::query_as(
        "UPDATE admin_users SET disabled_at = coalesce(disabled_at, now()) WHERE id = $1 RETURNING id, username, role",
    )
    .bind(admin_id)
    .fetch_optional(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM admin_sessions WHERE user_id = $1").bind(admin_id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(admin)
}

/// An account as the accounts page lists it.
#[derive(Debug, Clone, FromRow)]
pub struct Listed {
    pub id: i64,
    pub username: String,
    pub role: Role,
    /// Team names, comma-separated, in team order.
    pub teams: String,
    pub team_ids: Vec<i64>,
    pub disabled: bool,
}

pub async fn list(conn: &mut PgConnection) -> Result<Vec<Listed>, AppError> {
    Ok(sqlx::query_as(
        "SELECT u.id, u.username, u.role, u.disabled_at IS NOT NULL AS disabled, \
             coalesce(string_agg(t.name, '、' ORDER BY t.id), '') AS teams, \
             coalesce(array_agg(t.id ORDER BY t.id) FILTER (WHERE t.id IS NOT NULL), '{}') AS team_ids \
         FROM admin_users u LEFT JOIN team_members m ON m.admin_id = u.id LEFT JOIN teams t ON t.id = m.team_id \
         GROUP BY u.id ORDER BY u.disabled_at IS NOT NULL, u.username",
    )
    .fetch_all(conn)
    .await?)
}

/// Whether an admin with this username exists (`add` would overwrite its password).
pub async fn exists(conn: &mut PgConnection, username: &str) -> Result<bool, AppError> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM admin_users WHERE username = $1)")
        .bind(username)
        .fetch_one(conn)
        .await?)
}

/// The account (not disabled) whose username and password these are. The connection goes back
/// to the pool before the (slow) hash is checked, so a flood of logins cannot
/// hold the connections the students' requests need.
pub async fn check_password(pool: &PgPool, username: &str, password: &str) -> Result<Option<Admin>, AppError> {
    // A disabled account is read as a missing one: the same answer, the same time.
    let row: Option<(i64, String, Role, String)> = sqlx::query_as(
        "SELECT id, username, role, password_hash FROM admin_users WHERE username = $1 AND disabled_at IS NULL",
    )
    .bind(username)
    .fetch_optional(pool)
    .await?;
    let (admin, stored) = match row {
        Some((id, username, role, hash)) => (Some(Admin { id, username, role }), hash),
        None => (None, passwords::DUMMY_HASH.to_string()),
    };
    let ok = passwords::verify(password.to_string(), stored).await;
    Ok(admin.filter(|_| ok))
}

//! "账号" (admins only, as the access layer has it): the accounts with their
//! role and teams; add one, change its role and teams, disable it (its
//! sessions end at once). Every change is audited.

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Form, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};

use super::{AdminSession, CsrfForm, activities::parse_id};
use crate::{
    AppState, audit,
    auth::{
        accounts::{self, Listed, Role},
        teams::{self, Team},
    },
    error::AppError,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/accounts", get(page).post(add))
        .route("/admin/accounts/{id}", post(change))
        .route("/admin/accounts/{id}/disable", post(disable))
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/accounts.html")]
struct AccountsPage {
    session: AdminSession,
    accounts: Vec<Listed>,
    teams: Vec<Team>,
    error: Option<String>,
}

async fn render(state: &AppState, session: AdminSession, error: Option<String>) -> Result<Response, AppError> {
    let mut conn = state.pool.acquire().await?;
    let accounts = accounts::list(&mut conn).await?;
    let teams = teams::list(&mut conn).await?;
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok((status, AccountsPage { session, accounts, teams, error }).into_response())
}

async fn page(State(state): State<AppState>, session: AdminSession) -> Result<Response, AppError> {
    render(&state, session, None).await
}

/// A form's fields as sent: the team checkboxes repeat one name, which a
/// struct cannot hold.
struct Fields(Vec<(String, String)>);

impl Fields {
    fn one(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }
    fn teams(&self) -> Vec<i64> {
        self.0.iter().filter(|(k, _)| k == "team").filter_map(|(_, v)| v.parse().ok()).collect()
    }
    /// The role picked; an organizer must be given a team (said here in the page's words).
    fn role(&self) -> Result<Role, AppError> {
        match Role::parse(self.one("role")) {
            None => Err(AppError::Invalid("请选择管理员或组织者。".into())),
            Some(Role::Organizer) if self.teams().is_empty() => {
                Err(AppError::Invalid("组织者至少要属于一个团队。".into()))
            }
            Some(role) => Ok(role),
        }
    }
}

/// The page again with the refusal, or the error itself when it is not one to show there.
async fn refused(state: &AppState, session: AdminSession, e: AppError) -> Result<Response, AppError> {
    match e {
        AppError::Invalid(why) => render(state, session, Some(why)).await,
        e => Err(e),
    }
}

async fn add(
    State(state): State<AppState>,
    session: AdminSession,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let fields = Fields(fields);
    session.check_csrf(fields.one("csrf"))?;
    let username = fields.one("username").trim().to_string();
    let added = async {
        let role = fields.role()?;
        let mut tx = state.pool.begin().await?;
        // Here only a new account: a password reset belongs to its owner's shell.
        if accounts::exists(&mut tx, &username).await? {
            return Err(AppError::Invalid(format!("账号 {username} 已存在。")));
        }
        let admin = accounts::add_with(&mut tx, &username, fields.one("password"), Some(role), &fields.teams()).await?;
        let detail = format!("{} {}", admin.username, admin.role.as_str());
        audit::record(&mut tx, &session.admin.username, "添加账号", &detail).await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    match added {
        Ok(()) => Ok(Redirect::to("/admin/accounts").into_response()),
        Err(e) => refused(&state, session, e).await,
    }
}

async fn change(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let fields = Fields(fields);
    session.check_csrf(fields.one("csrf"))?;
    let id = parse_id(&id)?;
    let changed = async {
        let role = fields.role()?;
        // An admin cannot demote themselves: the last admin would lock everyone out.
        if id == session.admin.id && role != Role::Admin {
            return Err(AppError::Invalid("不能改变自己的角色，请让另一位管理员操作。".into()));
        }
        let mut tx = state.pool.begin().await?;
        let admin = accounts::set_role_and_teams(&mut tx, id, role, &fields.teams()).await?;
        let names: Vec<String> = teams::by_ids(&mut tx, &fields.teams()).await?.into_iter().map(|t| t.name).collect();
        let detail = format!("{} {} {}", admin.username, admin.role.as_str(), names.join(","));
        audit::record(&mut tx, &session.admin.username, "修改账号", detail.trim_end()).await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    match changed {
        Ok(()) => Ok(Redirect::to("/admin/accounts").into_response()),
        Err(e) => refused(&state, session, e).await,
    }
}

async fn disable(
    State(state): State<AppState>,
    session: AdminSession,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, AppError> {
    session.check_csrf(&form.csrf)?;
    let id = parse_id(&id)?;
    if id == session.admin.id {
        return render(&state, session, Some("不能停用自己的账号，请让另一位管理员操作。".into())).await;
    }
    let mut tx = state.pool.begin().await?;
    let admin = accounts::disable(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    audit::record(&mut tx, &session.admin.username, "停用账号", &admin.username).await?;
    tx.commit().await?;
    Ok(Redirect::to("/admin/accounts").into_response())
}

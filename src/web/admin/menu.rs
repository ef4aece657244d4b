//! The custom menu page: what WeChat shows now, a composer (up to five
//! activities under "抢票", plus "查票" and the service button), a preview, and
//! the push. WeChat's refusals are shown in words.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::{
    Form, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};

use super::AdminSession;
use crate::{
    AppState, audit,
    booking::{Activity, activities},
    error::AppError,
    menu,
    wechat::menu::Menu,
};

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/menu", get(page).post(compose_or_push))
}

/// A menu drawn as the bar at the bottom of a WeChat chat.
pub struct Bar {
    pub buttons: Vec<BarButton>,
}

pub struct BarButton {
    pub name: String,
    /// The click key of a button without a submenu.
    pub key: Option<String>,
    /// (name, what it does: a click key or a URL)
    pub items: Vec<(String, String)>,
}

impl Bar {
    pub fn of(menu: &Menu) -> Bar {
        let does = |key: &Option<String>, url: &Option<String>| key.clone().or(url.clone()).unwrap_or_default();
        Bar {
            buttons: menu
                .button
                .iter()
                .map(|b| BarButton {
                    name: b.name.clone(),
                    key: b.sub_button.is_empty().then(|| does(&b.key, &b.url)),
                    items: b.sub_button.iter().map(|s| (s.name.clone(), does(&s.key, &s.url))).collect(),
                })
                .collect(),
        }
    }
}

struct Choice {
    activity: Activity,
    chosen: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/menu.html")]
struct MenuPage {
    session: AdminSession,
    /// The menu on WeChat now, or why it could not be read.
    current: Result<Option<Bar>, String>,
    choices: Vec<Choice>,
    preview: Option<(Bar, String)>,
    notice: Option<String>,
    error: Option<String>,
}

/// Published activities a student could still book, to choose from.
async fn candidates(state: &AppState) -> Result<Vec<Activity>, AppError> {
    let all = activities::all(&mut *state.pool.acquire().await?).await?;
    let now = time::OffsetDateTime::now_utc();
    Ok(all.into_iter().filter(|a| menu::offerable(a, now)).collect())
}

async fn current(state: &AppState) -> Result<Option<Bar>, String> {
    let api = menu::wechat_api(&state.config, state.pool.clone()).map_err(|e| e.to_string())?;
    match menu::current(&api).await {
        Ok(m) => Ok(m.as_ref().map(Bar::of)),
        Err(e) => Err(e.to_string()),
    }
}

async fn page(State(state): State<AppState>, session: AdminSession) -> Result<MenuPage, AppError> {
    // The page starts from the last choice made here (the simulator shows the same).
    let default: Vec<i64> = menu::current_choice(&state.pool).await?.iter().map(|a| a.id).collect();
    let choices = candidates(&state)
        .await?
        .into_iter()
        .map(|a| Choice { chosen: default.contains(&a.id), activity: a })
        .collect();
    Ok(MenuPage { session, current: current(&state).await, choices, preview: None, notice: None, error: None })
}

async fn compose_or_push(
    State(state): State<AppState>,
    session: AdminSession,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    session.check_csrf(form.get("csrf").map(String::as_str).unwrap_or_default())?;
    let push = form.get("action").is_some_and(|a| a == "push");
    // Checkboxes are named `activity_<id>`; their order is the list's order.
    let candidates = candidates(&state).await?;
    let chosen: Vec<Activity> =
        candidates.iter().filter(|a| form.contains_key(&format!("activity_{}", a.id))).cloned().collect();
    let choices = candidates
        .into_iter()
        .map(|a| Choice { chosen: chosen.iter().any(|c| c.id == a.id), activity: a })
        .collect::<Vec<_>>();
    let mut page = MenuPage { session, current: Ok(None), choices, preview: None, notice: None, error: None };
    let composed = match menu::compose_for(&state.config, &chosen) {
        Ok(m) => m,
        Err(e) => {
            page.error = Some(e.to_string());
            page.current = current(&state).await;
            return Ok((StatusCode::BAD_REQUEST, page).into_response());
        }
    };
    page.preview = Some((Bar::of(&composed), composed.to_pretty_json()));
    menu::remember_choice(&state.pool, &chosen).await?;
    if push {
        let pushed = match menu::wechat_api(&state.config, state.pool.clone()) {
            Ok(api) => menu::push(&api, &state.pool, &composed).await,
            Err(e) => Err(e.into()),
        };
        match pushed {
            Ok(()) => {
                let names: Vec<&str> = chosen.iter().map(|a| a.key.as_str()).collect();
                audit::record(
                    &mut *state.pool.acquire().await?,
                    &page.session.admin.username,
                    "推送菜单",
                    &names.join(", "),
                )
                .await?;
                page.notice = Some("菜单已推送到微信。微信客户端可能要几分钟后才显示新菜单。".into());
            }
            Err(e) => page.error = Some(format!("推送失败：{e}")),
        }
    }
    page.current = current(&state).await;
    let status = if page.error.is_some() { StatusCode::BAD_GATEWAY } else { StatusCode::OK };
    Ok((status, page).into_response())
}

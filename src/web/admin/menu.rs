//! The custom menu page: what WeChat shows now, a composer (up to five
//! activities under "抢票", plus "查票" and the service button), a preview, and
//! the push. WeChat's refusals are shown in words. With `MENU_AUTO=on` it
//! also shows the automatic menu's rule and its last push, and a push here
//! sets that rule (`menu::auto`).

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
    local_time,
    menu::{
        self,
        auto::{self as menu_auto, Outcome, Rule},
    },
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

/// The automatic menu, in words.
pub struct AutoState {
    /// Which activities it puts under 抢票.
    rule: String,
    /// The last automatic push: when, and how it went.
    last: Option<String>,
    /// The last failure's words, while it is the latest outcome.
    error: Option<String>,
    /// Whether WeChat has the menu the rule composes now, or when it will.
    next: String,
}

async fn auto_state(state: &AppState) -> Result<Option<AutoState>, AppError> {
    let config = &state.config;
    if !config.menu_auto {
        return Ok(None);
    }
    let tz = config.timezone;
    let at = |t| local_time::precise(t, tz);
    let rule = match menu_auto::rule(&state.pool).await? {
        Rule::Default => "已发布、最近开抢的活动（至多 5 个）".to_string(),
        Rule::Pinned(ids) if ids.is_empty() => "不放活动：「抢票」发送活动列表".to_string(),
        Rule::Pinned(_) => {
            "上次在这里（或用 menu push --activity）推送时选的活动；它们都截止后改回最近开抢的活动".into()
        }
    };
    let last = menu_auto::last_push(&state.pool).await?;
    let up_to_date = menu::last_pushed(&state.pool).await? == Some(menu_auto::wanted(&state.pool, config).await?);
    let next_at = last.as_ref().map(|l| l.next_at(config.menu_auto_debounce_seconds));
    let next = match (up_to_date, next_at) {
        (true, _) => "微信上的菜单已是最新。".to_string(),
        (false, Some(next)) if next > time::OffsetDateTime::now_utc() => {
            format!(
                "菜单有变化，{} 之后推送（两次自动推送至少相隔 {} 秒）。",
                at(next),
                config.menu_auto_debounce_seconds
            )
        }
        (false, _) => "菜单有变化，下一次时钟检查时推送。".to_string(),
    };
    let (last, error) = match last {
        None => (None, None),
        Some(l) => {
            let when = match l.outcome {
                Outcome::Pending => format!("{} 开始推送，还在进行", at(l.attempted_at)),
                Outcome::Pushed => format!("{} 自动推送成功", at(l.finished_at.unwrap_or(l.attempted_at))),
                Outcome::Failed => format!("{} 自动推送失败（连续第 {} 次）", at(l.attempted_at), l.failures),
            };
            (Some(when), l.error.filter(|_| l.outcome != Outcome::Pushed))
        }
    };
    Ok(Some(AutoState { rule, last, error, next }))
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
    auto: Option<AutoState>,
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
    let auto = auto_state(&state).await?;
    Ok(MenuPage { session, current: current(&state).await, choices, preview: None, notice: None, error: None, auto })
}

async fn compose_or_push(
    State(state): State<AppState>,
    session: AdminSession,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, AppError> {
    session.check_csrf(form.get("csrf").map(String::as_str).unwrap_or_default())?;
    let action = form.get("action").map(String::as_str).unwrap_or_default();
    let push = action == "push";
    if action == "auto_default" {
        menu_auto::remember_rule(&state.pool, None).await?;
        audit::record(&mut *state.pool.acquire().await?, &session.admin.username, "菜单改回自动选择", "").await?;
        let mut page = page(State(state), session).await?;
        page.notice = Some("自动菜单改回「最近开抢的活动」，一分钟内推送。".into());
        return Ok(page.into_response());
    }
    // Checkboxes are named `activity_<id>`; their order is the list's order.
    let candidates = candidates(&state).await?;
    let chosen: Vec<Activity> =
        candidates.iter().filter(|a| form.contains_key(&format!("activity_{}", a.id))).cloned().collect();
    let choices = candidates
        .into_iter()
        .map(|a| Choice { chosen: chosen.iter().any(|c| c.id == a.id), activity: a })
        .collect::<Vec<_>>();
    let mut page =
        MenuPage { session, current: Ok(None), choices, preview: None, notice: None, error: None, auto: None };
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
                // What an admin pushes is what the automatic menu keeps up from now on.
                menu_auto::remember_rule(&state.pool, Some(&chosen)).await?;
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
    page.auto = auto_state(&state).await?;
    let status = if page.error.is_some() { StatusCode::BAD_GATEWAY } else { StatusCode::OK };
    Ok((status, page).into_response())
}

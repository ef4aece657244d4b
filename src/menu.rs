//! The account's custom menu (SPEC §5): "抢票" with up to five chosen
//! activities, "查票", and a service button. Plain functions, shared by the
//! admin menu page and `wechat-ticket menu`: choose activities, compose,
//! validate, push. The click keys are the ones `bot::commands` understands.

pub mod auto;

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use crate::{
    Config,
    booking::{Activity, ActivityStatus, activities, lottery::Mode},
    error::AppError,
    settings,
    wechat::{
        api::{ApiClient, ApiError, Credentials},
        menu::{self, Button, MAX_SUB_BUTTONS, MAX_SUB_NAME_BYTES, Menu},
        token_store::{PgTokenStore, WechatApi},
    },
};

/// As many activities as fit under one button.
pub const MAX_ACTIVITIES: usize = MAX_SUB_BUTTONS;

/// The menu for `chosen` activities, in the order given (a repeat is dropped).
/// With none chosen, "抢票" lists what can be booked instead.
pub fn compose(chosen: &[Activity]) -> Result<Menu, AppError> {
    let mut unique: Vec<&Activity> = Vec::new();
    for activity in chosen {
        if !unique.iter().any(|a| a.id == activity.id) {
            unique.push(activity);
        }
    }
    if unique.len() > MAX_ACTIVITIES {
        return Err(too_many(unique.len()));
    }
    let book = if unique.is_empty() {
        Button::click("抢票", "LIST_ACTIVITIES")
    } else {
        Button::parent("抢票", unique.iter().map(|a| book_button(a)).collect())
    };
    let menu = Menu {
        button: vec![
            book,
            Button::click("查票", "MY_TICKETS"),
            Button::parent(
                "服务",
                vec![
                    Button::click("活动列表", "LIST_ACTIVITIES"),
                    Button::click("绑定学号", "BIND"),
                    Button::click("帮助", "HELP"),
                ],
            ),
        ],
    };
    validate(&menu)?;
    Ok(menu)
}

/// What a sold-out activity's button says after its name: the click joins its waiting list.
const WAITING_SUFFIX: &str = "（候补）";

/// An activity's button under "抢票": `BOOK_<id>`, or, once a first-come
/// activity is sold out, `WAIT_<id>` — booking would only answer "sold out,
/// send 候补", so the button joins the waiting list at once. The list is
/// open until `book_end`, when the choice ([`offerable`]) lets the activity go.
fn book_button(activity: &Activity) -> Button {
    if activity.mode == Mode::Rush && activity.remaining == 0 {
        let name = menu::fit_name(&activity.name, MAX_SUB_NAME_BYTES - WAITING_SUFFIX.len()) + WAITING_SUFFIX;
        Button::click(name, format!("WAIT_{}", activity.id))
    } else {
        Button::click(menu::fit_name(&activity.name, MAX_SUB_NAME_BYTES), format!("BOOK_{}", activity.id))
    }
}

/// The menu for `chosen`, as [`compose`], with the pages opened from the
/// menu bar when WeChat web authorization is on: 查票 and the activity list
/// become `view` buttons to `/m/tickets` and `/m/activities` (and so does
/// 抢票 when no activity is chosen under it).
pub fn compose_for(config: &Config, chosen: &[Activity]) -> Result<Menu, AppError> {
    let mut menu = compose(chosen)?;
    if !config.wechat_oauth {
        return Ok(menu);
    }
    let page = |path: &str| format!("{}{path}", config.public_url);
    for button in menu.button.iter_mut() {
        rewire(button, &page);
        for sub in button.sub_button.iter_mut() {
            rewire(sub, &page);
        }
    }
    validate(&menu)?;
    Ok(menu)
}

fn rewire(button: &mut Button, page: &impl Fn(&str) -> String) {
    let path = match button.key.as_deref() {
        Some("MY_TICKETS") => "/m/tickets",
        Some("LIST_ACTIVITIES") => "/m/activities",
        _ => return,
    };
    *button = Button::view(button.name.clone(), page(path));
}

/// WeChat's limits, as an error the admin reads.
pub fn validate(menu: &Menu) -> Result<(), AppError> {
    menu::validate(menu).map_err(|e| AppError::Invalid(e.to_string()))
}

fn too_many(n: usize) -> AppError {
    AppError::Invalid(format!("「抢票」下最多放 {MAX_ACTIVITIES} 个活动，现在选了 {n} 个"))
}

/// The activities named by key or numeric id, in that order. Only published
/// activities: a student clicking a draft or archived one would get "no such activity".
pub async fn choose(conn: &mut PgConnection, keys_or_ids: &[String]) -> Result<Vec<Activity>, AppError> {
    if keys_or_ids.len() > MAX_ACTIVITIES {
        return Err(too_many(keys_or_ids.len()));
    }
    let mut chosen = Vec::new();
    for wanted in keys_or_ids {
        let wanted = wanted.trim();
        let mut found = activities::by_key(conn, wanted).await?;
        if found.is_none()
            && let Ok(id) = wanted.parse::<i64>()
        {
            found = activities::by_id(conn, id).await?;
        }
        let activity = found.ok_or_else(|| AppError::Invalid(format!("没有代号或编号为「{wanted}」的活动")))?;
        match activity.status {
            ActivityStatus::Published => chosen.push(activity),
            ActivityStatus::Archived => {
                return Err(AppError::Invalid(format!("活动「{}」已归档，不能放进菜单", activity.name)));
            }
            _ => return Err(AppError::Invalid(format!("活动「{}」还没有发布，不能放进菜单", activity.name))),
        }
    }
    Ok(chosen)
}

/// The choice when the admin makes none: the published activities whose
/// booking opens soonest (or is open now), at most five.
pub async fn default_choice(conn: &mut PgConnection) -> Result<Vec<Activity>, AppError> {
    let mut bookable = activities::bookable(conn).await?;
    bookable.truncate(MAX_ACTIVITIES);
    Ok(bookable)
}

/// Where the menu page keeps the activities last chosen and the last menu
/// pushed, so the simulator shows the bar students see (or will see).
const CHOSEN: &str = "menu_chosen";
const PUSHED: &str = "menu_pushed";

/// Whether an activity can go under "抢票": published, booking not over.
pub fn offerable(activity: &Activity, now: OffsetDateTime) -> bool {
    activity.is_published() && activity.book_end > now
}

/// Remembers the activities last chosen on the menu page (ids, in order).
pub async fn remember_choice(pool: &PgPool, chosen: &[Activity]) -> Result<(), AppError> {
    let ids: Vec<String> = chosen.iter().map(|a| a.id.to_string()).collect();
    settings::set(pool, CHOSEN, &ids.join(",")).await
}

/// The activities as chosen on the menu page: the last choice there (less
/// any no longer offerable), or the default choice the page starts from.
pub async fn current_choice(pool: &PgPool) -> Result<Vec<Activity>, AppError> {
    let remembered = settings::get(pool, CHOSEN).await?;
    let mut conn = pool.acquire().await?;
    let Some(remembered) = remembered else {
        return default_choice(&mut conn).await;
    };
    let now = OffsetDateTime::now_utc();
    let mut chosen = Vec::new();
    for id in remembered.split(',').filter_map(|id| id.parse::<i64>().ok()) {
        if let Some(activity) = activities::by_id(&mut conn, id).await?.filter(|a| offerable(a, now)) {
            chosen.push(activity);
        }
    }
    chosen.truncate(MAX_ACTIVITIES);
    Ok(chosen)
}

/// The menu as composed on the menu page.
pub async fn composed(pool: &PgPool) -> Result<Menu, AppError> {
    compose(&current_choice(pool).await?)
}

/// Remembers the menu last pushed to WeChat.
pub async fn remember_pushed(pool: &PgPool, menu: &Menu) -> Result<(), AppError> {
    let json = serde_json::to_string(menu).map_err(|e| AppError::Internal(e.to_string()))?;
    settings::set(pool, PUSHED, &json).await
}

/// The menu last pushed from this server, if any. A stored value this
/// version cannot read (written by another) counts as none.
pub async fn last_pushed(pool: &PgPool) -> Result<Option<Menu>, AppError> {
    Ok(settings::get(pool, PUSHED).await?.and_then(|json| serde_json::from_str(&json).ok()))
}

/// The menu is what calls the WeChat API: its client's errors become the
/// app's here, as the sentence the admin reads, so the one error type needs
/// nothing from the protocol layer.
impl From<ApiError> for AppError {
    fn from(e: ApiError) -> AppError {
        AppError::External(e.to_string())
    }
}

/// `WECHAT_APPID` and `WECHAT_SECRET`, or an error naming the missing one.
pub fn credentials(config: &Config) -> Result<Credentials, ApiError> {
    Credentials::new(config.wechat_appid.as_deref(), config.wechat_secret.as_deref())
}

/// The WeChat API client, sharing its token with every instance through `pool`.
pub fn wechat_api(config: &Config, pool: PgPool) -> Result<WechatApi, ApiError> {
    ApiClient::new(&config.wechat_api_base, credentials(config)?, PgTokenStore::new(pool))
}

/// The menu on WeChat now (`None`: the account has no menu).
pub async fn current(api: &WechatApi) -> Result<Option<Menu>, AppError> {
    Ok(api.get_menu().await?)
}

/// Checks `menu` against WeChat's limits, then makes it the account's menu
/// and remembers it as the last pushed.
pub async fn push(api: &WechatApi, pool: &PgPool, menu: &Menu) -> Result<(), AppError> {
    validate(menu)?;
    api.create_menu(menu).await?;
    remember_pushed(pool, menu).await?;
    tracing::info!(buttons = menu.button.len(), "custom menu pushed to WeChat");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::OffsetDateTime;

    fn activity(id: i64, name: &str) -> Activity {
        let now = OffsetDateTime::now_utc();
        Activity {
            id,
            key: format!("a{id}"),
            name: name.into(),
            place: "新清华学堂".into(),
            description: String::new(),
            poster_id: None,
            book_start: now,
            book_end: now,
            start_at: now,
            end_at: now,
            capacity: 10,
            status: ActivityStatus::Published,
            remaining: 10,
            live_qr: false,
            mode: Default::default(),
            team_id: crate::auth::teams::DEFAULT_TEAM,
        }
    }

    #[test]
    fn with_web_authorization_the_pages_are_view_buttons() {
        let vars = |oauth: &str| {
            let vars = [
                ("WECHAT_OAUTH", oauth.to_string()),
                ("WECHAT_APPID", "wx1".into()),
                ("WECHAT_SECRET", "s".into()),
                ("PUBLIC_URL", "https://t.example.edu".into()),
            ];
            Config::from_lookup(move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap()
        };
        let menu = compose_for(&vars("on"), &[]).unwrap();
        let json = serde_json::to_value(&menu).unwrap();
        assert_eq!(
            json["button"][0],
            json!({"type": "view", "name": "抢票", "url": "https://t.example.edu/m/activities"})
        );
        assert_eq!(
            json["button"][1],
            json!({"type": "view", "name": "查票", "url": "https://t.example.edu/m/tickets"})
        );
        assert_eq!(json["button"][2]["sub_button"][0]["url"], "https://t.example.edu/m/activities");
        assert_eq!(json["button"][2]["sub_button"][1]["key"], "BIND", "binding stays a click: it needs a signed link");
        let with_activity = compose_for(&vars("on"), &[activity(7, "话剧")]).unwrap();
        assert_eq!(with_activity.button[0].sub_button[0].key.as_deref(), Some("BOOK_7"));
        assert_eq!(compose_for(&vars("off"), &[]).unwrap(), compose(&[]).unwrap());
        let long = Config::from_lookup(|k| match k {
            "WECHAT_OAUTH" => Some("on".into()),
            "WECHAT_APPID" | "WECHAT_SECRET" => Some("x".into()),
            "PUBLIC_URL" => Some(format!("https://{}.example", "a".repeat(1020))),
            _ => None,
        })
        .unwrap();
        assert!(compose_for(&long, &[]).unwrap_err().to_string().contains("1024"));
    }

    #[test]
    fn chosen_activities_go_under_the_book_button_with_names_cut() {
        let long = "清华大学学生艺术团二零二五年新年音乐会暨优秀节目展演专场";
        let menu = compose(&[activity(7, "话剧《雷雨》"), activity(3, long)]).unwrap();
        assert_eq!(
            serde_json::to_value(&menu).unwrap(),
            json!({"button": [
                {"name": "抢票", "sub_button": [
                    {"name": "话剧《雷雨》", "type": "click", "key": "BOOK_7"},
                    {"name": "清华大学学生艺术团二零二五年新年音乐会…", "type": "click", "key": "BOOK_3"},
                ]},
                {"name": "查票", "type": "click", "key": "MY_TICKETS"},
                {"name": "服务", "sub_button": [
                    {"name": "活动列表", "type": "click", "key": "LIST_ACTIVITIES"},
                    {"name": "绑定学号", "type": "click", "key": "BIND"},
                    {"name": "帮助", "type": "click", "key": "HELP"},
                ]},
            ]})
        );
    }

    #[test]
    fn a_sold_out_activity_stays_with_a_button_that_joins_its_waiting_list() {
        let mut sold_out = activity(7, "清华大学学生艺术团二零二五年新年音乐会暨优秀节目展演专场");
        sold_out.remaining = 0;
        let mut lottery = activity(8, "抽签");
        (lottery.remaining, lottery.mode) = (0, Mode::Lottery);
        let menu = compose(&[sold_out, lottery, activity(9, "话剧")]).unwrap();
        let subs = &menu.button[0].sub_button;
        assert_eq!(subs[0].key.as_deref(), Some("WAIT_7"));
        assert!(subs[0].name.ends_with("…（候补）") && subs[0].name.len() <= MAX_SUB_NAME_BYTES, "{}", subs[0].name);
        assert_eq!(subs[1].key.as_deref(), Some("BOOK_8"), "a lottery's list is made by its draw");
        assert_eq!((subs[2].name.as_str(), subs[2].key.as_deref()), ("话剧", Some("BOOK_9")));
    }

    #[test]
    fn no_activity_makes_book_a_list_button() {
        let menu = compose(&[]).unwrap();
        assert_eq!(menu.button[0], Button::click("抢票", "LIST_ACTIVITIES"));
    }

    #[test]
    fn more_than_five_is_refused_and_repeats_count_once() {
        let six: Vec<Activity> = (1..=6).map(|id| activity(id, "音乐会")).collect();
        let err = compose(&six).unwrap_err().to_string();
        assert!(err.contains("最多放 5 个") && err.contains("选了 6 个"), "{err}");
        let repeated: Vec<Activity> = [1, 2, 1, 3, 4, 5, 5].iter().map(|&id| activity(id, "音乐会")).collect();
        let keys: Vec<String> =
            compose(&repeated).unwrap().button[0].sub_button.iter().map(|b| b.key.clone().unwrap()).collect();
        assert_eq!(keys, ["BOOK_1", "BOOK_2", "BOOK_3", "BOOK_4", "BOOK_5"]);
    }
}

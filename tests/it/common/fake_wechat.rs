//! A fake WeChat API server on 127.0.0.1: it issues tokens for the test
//! account, keeps one menu, records every request, and answers from a script
//! when a test wants a particular error.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, State},
    http::{StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::{APPID, Settings};

pub const SECRET: &str = "test-app-secret";
pub const TOKEN_PATH: &str = "/cgi-bin/token";
pub const CREATE_PATH: &str = "/cgi-bin/menu/create";
pub const GET_PATH: &str = "/cgi-bin/menu/get";
pub const TICKET_PATH: &str = "/cgi-bin/ticket/getticket";
pub const CUSTOM_SEND_PATH: &str = "/cgi-bin/message/custom/send";
pub const TEMPLATE_SEND_PATH: &str = "/cgi-bin/message/template/send";
pub const MASS_PREVIEW_PATH: &str = "/cgi-bin/message/mass/preview";
pub const MASS_SENDALL_PATH: &str = "/cgi-bin/message/mass/sendall";
pub const AUTHORIZE_PATH: &str = "/connect/oauth2/authorize";
pub const OAUTH_TOKEN_PATH: &str = "/sns/oauth2/access_token";

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub query: HashMap<String, String>,
    pub body: Option<Value>,
}

#[derive(Default)]
struct Fake {
    requests: Vec<Recorded>,
    /// Replies to give instead of the normal behaviour, per path, in order.
    scripted: HashMap<String, VecDeque<Value>>,
    issued: u32,
    valid: HashSet<String>,
    expired: HashSet<String>,
    menu: Option<Value>,
    token_delay: Duration,
    tickets_issued: u32,
    ticket_delay: Duration,
    /// Whoever opens the authorize page is this WeChat user.
    oauth_user: Option<String>,
    /// Codes issued by the authorize page, until exchanged once.
    codes: HashMap<String, String>,
    codes_issued: u32,
    /// 群发 jobs by `clientmsgid`: a second submission names the first job (45065).
    mass_jobs: HashMap<String, i64>,
    next_mass_msg_id: i64,
}

#[derive(Clone)]
pub struct FakeWechat {
    pub base: String,
    fake: Arc<Mutex<Fake>>,
}

impl FakeWechat {
    pub async fn start() -> FakeWechat {
        let fake = Arc::new(Mutex::new(Fake::default()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = Router::new().fallback(answer).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        FakeWechat { base, fake }
    }

    /// `settings` with web authorization on, its authorize page on this fake.
    pub fn oauth_settings(&self, settings: Settings) -> Settings {
        self.settings(settings).set("WECHAT_OAUTH", "on").set("WECHAT_OAUTH_BASE", &self.base)
    }

    /// The WeChat user the authorize page signs in from now on.
    pub fn oauth_as(&self, openid: &str) {
        self.fake.lock().unwrap().oauth_user = Some(openid.into());
    }

    /// `settings` pointed at this fake, with the test account's AppID and AppSecret.
    pub fn settings(&self, settings: Settings) -> Settings {
        settings.set("WECHAT_API_BASE", &self.base).set("WECHAT_APPID", APPID).set("WECHAT_SECRET", SECRET)
    }

    /// The next request to `path` gets `reply` (several calls queue up).
    pub fn script(&self, path: &str, reply: Value) {
        self.fake.lock().unwrap().scripted.entry(path.into()).or_default().push_back(reply);
    }

    /// Every token issued so far is now answered with `42001` (expired).
    pub fn expire_tokens(&self) {
        let mut fake = self.fake.lock().unwrap();
        let valid: Vec<String> = fake.valid.drain().collect();
        fake.expired.extend(valid);
    }

    /// Token requests take this long to answer, so concurrent callers overlap.
    pub fn slow_tokens(&self, delay: Duration) {
        self.fake.lock().unwrap().token_delay = delay;
    }

    /// jsapi_ticket requests take this long to answer, so concurrent callers overlap.
    pub fn slow_tickets(&self, delay: Duration) {
        self.fake.lock().unwrap().ticket_delay = delay;
    }

    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        self.fake.lock().unwrap().requests.iter().filter(|r| r.path == path).cloned().collect()
    }

    pub fn count(&self, path: &str) -> usize {
        self.requests(path).len()
    }

    pub fn total_requests(&self) -> usize {
        self.fake.lock().unwrap().requests.len()
    }

    /// The menu last created, as it was posted.
    pub fn menu(&self) -> Option<Value> {
        self.fake.lock().unwrap().menu.clone()
    }
}

/// WeChat's authorize page for `snsapi_base`: no question asked, straight
/// back to `redirect_uri` with a fresh code and the state.
fn authorize(fake: &Mutex<Fake>, query: &HashMap<String, String>) -> Response {
    let param = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
    if param("appid") != APPID || param("response_type") != "code" || param("scope") != "snsapi_base" {
        return (StatusCode::BAD_REQUEST, "参数错误").into_response();
    }
    let mut f = fake.lock().unwrap();
    let Some(openid) = f.oauth_user.clone() else {
        return (StatusCode::FORBIDDEN, "请在微信客户端打开链接").into_response();
    };
    f.codes_issued += 1;
    let code = format!("CODE{}x{}", f.codes_issued, openid.len());
    f.codes.insert(code.clone(), openid);
    let redirect = param("redirect_uri");
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let to = format!("{redirect}{sep}code={code}&state={}", param("state"));
    (StatusCode::FOUND, [("location", to)]).into_response()
}

fn error(errcode: i64, errmsg: &str) -> Response {
    Json(json!({"errcode": errcode, "errmsg": errmsg})).into_response()
}

async fn answer(
    State(fake): State<Arc<Mutex<Fake>>>,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let body = serde_json::from_slice(&body).ok();
    let (scripted, delay, ticket_delay) = {
        let mut f = fake.lock().unwrap();
        f.requests.push(Recorded { path: path.clone(), query: query.clone(), body: body.clone() });
        (f.scripted.get_mut(&path).and_then(VecDeque::pop_front), f.token_delay, f.ticket_delay)
    };
    if let Some(reply) = scripted {
        return Json(reply).into_response();
    }
    let param = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();
    if path == AUTHORIZE_PATH {
        return authorize(&fake, &query);
    }
    if path == OAUTH_TOKEN_PATH {
        if param("appid") != APPID || param("secret") != SECRET || param("grant_type") != "authorization_code" {
            return error(40125, "invalid appid, secret or grant_type");
        }
        // As WeChat: a code is good for one exchange.
        return match fake.lock().unwrap().codes.remove(param("code")) {
            Some(openid) => Json(json!({
                "access_token": "OAUTH_ACCESS_TOKEN", "expires_in": 7200, "refresh_token": "REFRESH",
                "openid": openid, "scope": "snsapi_base"
            }))
            .into_response(),
            None => error(40163, "code been used"),
        };
    }
    if path == TOKEN_PATH {
        if param("grant_type") != "client_credential" {
            return error(40002, "invalid grant_type");
        }
        if param("appid") != APPID {
            return error(40013, "invalid appid");
        }
        if param("secret") != SECRET {
            return error(40125, "invalid appsecret");
        }
        tokio::time::sleep(delay).await;
        let mut f = fake.lock().unwrap();
        f.issued += 1;
        let token = format!("ACCESS_TOKEN_{}", f.issued);
        f.valid.insert(token.clone());
        return Json(json!({"access_token": token, "expires_in": 7200})).into_response();
    }
    if path == TICKET_PATH {
        tokio::time::sleep(ticket_delay).await;
    }
    let mut f = fake.lock().unwrap();
    let token = param("access_token");
    if f.expired.contains(token) {
        return error(42001, "access_token expired");
    }
    if !f.valid.contains(token) {
        return error(40001, "invalid credential, access_token is invalid or not latest");
    }
    match path.as_str() {
        CREATE_PATH => match body {
            Some(menu) => {
                f.menu = Some(menu);
                error(0, "ok")
            }
            None => error(40016, "invalid button size"),
        },
        GET_PATH => match &f.menu {
            Some(menu) => Json(json!({"menu": menu})).into_response(),
            None => error(46003, "menu no exist"),
        },
        TICKET_PATH if param("type") == "jsapi" => {
            f.tickets_issued += 1;
            let ticket = format!("JSAPI_TICKET_{}", f.tickets_issued);
            Json(json!({"errcode": 0, "errmsg": "ok", "ticket": ticket, "expires_in": 7200})).into_response()
        }
        TICKET_PATH => error(40097, "invalid args"),
        "/cgi-bin/menu/delete" => {
            f.menu = None;
            error(0, "ok")
        }
        // Recorded above; a test scripts 45015 or -1 when it wants a refusal.
        CUSTOM_SEND_PATH => error(0, "ok"),
        TEMPLATE_SEND_PATH => Json(json!({"errcode": 0, "errmsg": "ok", "msgid": f.requests.len()})).into_response(),
        MASS_PREVIEW_PATH => {
            let body = body.unwrap_or_default();
            if body["touser"].as_str().is_none_or(str::is_empty) {
                return error(40130, "invalid openid list size, at least two openid");
            }
            if body["msgtype"] != "text" || body["text"]["content"].as_str().is_none_or(str::is_empty) {
                return error(44004, "empty content");
            }
            f.next_mass_msg_id += 1;
            Json(json!({"errcode": 0, "errmsg": "preview success", "msg_id": 1_000_000_000 + f.next_mass_msg_id}))
                .into_response()
        }
        MASS_SENDALL_PATH => {
            let body = body.unwrap_or_default();
            if body["filter"]["is_to_all"] != true {
                return error(40130, "invalid openid list size, at least two openid");
            }
            if body["msgtype"] != "text" || body["text"]["content"].as_str().is_none_or(str::is_empty) {
                return error(44004, "empty content");
            }
            let client = body["clientmsgid"].as_str().unwrap_or_default().to_string();
            if let Some(first) = f.mass_jobs.get(&client).filter(|_| !client.is_empty()) {
                return Json(json!({"errcode": 45065, "errmsg": "clientmsgid exist", "msg_id": first})).into_response();
            }
            f.next_mass_msg_id += 1;
            let msg_id = 1_000_000_000 + f.next_mass_msg_id;
            f.mass_jobs.insert(client, msg_id);
            Json(json!({
                "errcode": 0, "errmsg": "send job submission success", "msg_id": msg_id, "msg_data_id": 2_000_000_000 + msg_id
            }))
            .into_response()
        }
        _ => (StatusCode::NOT_FOUND, "no such API").into_response(),
    }
}

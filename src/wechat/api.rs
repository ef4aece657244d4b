//! The WeChat server API (`WECHAT_API_BASE`): the `access_token`, the custom
//! menu and the JS-SDK's `jsapi_ticket`.
//!
//! WeChat allows a limited number of token fetches a day, and a new token
//! invalidates the old one a few minutes later, so every instance must share
//! one token: where it is kept is the caller's business ([`TokenStore`]), and
//! the store must let only one refresh run at a time across instances.
//! Neither the AppSecret nor a token is ever logged (both travel in query
//! strings, so transport errors are stripped of their URL too).

use std::{future::Future, sync::OnceLock, time::Duration};

use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::menu::Menu;

/// A stored token counts as expired this long before WeChat says it does,
/// so no call goes out with a token that dies in flight.
pub const EXPIRY_MARGIN: time::Duration = time::Duration::minutes(5);
/// Pauses before the retries of a call WeChat answered with `-1` (system busy).
const BUSY_BACKOFF: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(400)];

/// The Official Account's AppID and AppSecret.
#[derive(Clone)]
pub struct Credentials {
    appid: String,
    secret: String,
}

impl Credentials {
    /// Both must be set; which is missing is named in the error.
    pub fn new(appid: Option<&str>, secret: Option<&str>) -> Result<Credentials, ApiError> {
        match (appid, secret) {
            (Some(appid), Some(secret)) => Ok(Credentials { appid: appid.into(), secret: secret.into() }),
            (None, Some(_)) => Err(ApiError::MissingCredentials("WECHAT_APPID")),
            (Some(_), None) => Err(ApiError::MissingCredentials("WECHAT_SECRET")),
            (None, None) => Err(ApiError::MissingCredentials("WECHAT_APPID 和 WECHAT_SECRET")),
        }
    }

    pub fn appid(&self) -> &str {
        &self.appid
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("appid", &self.appid).field("secret", &"<set>").finish()
    }
}

/// An `access_token` (or a `jsapi_ticket`) and when WeChat said it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: String,
    pub expires_at: OffsetDateTime,
}

impl AccessToken {
    /// Still good for a call made now (with [`EXPIRY_MARGIN`] to spare).
    pub fn is_fresh(&self) -> bool {
        OffsetDateTime::now_utc() + EXPIRY_MARGIN < self.expires_at
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken").field("token", &"<hidden>").field("expires_at", &self.expires_at).finish()
    }
}

/// What a refresh decided once it held the lock.
#[derive(Debug)]
pub enum Refreshed {
    /// Another caller refreshed while we waited: its token is good.
    Reused(AccessToken),
    /// A new token from WeChat: the store keeps it.
    Fetched(AccessToken),
}

pub type StoreError = Box<dyn std::error::Error + Send + Sync>;

/// The two shared secrets a store keeps per appid. Both are rationed by
/// WeChat and both are replaced by a fetch, so both need one refresh at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    AccessToken,
    /// The JS-SDK's `jsapi_ticket` (`wx.config` signatures), fetched with an access token.
    JsapiTicket,
}

/// Where the shared token lives (PostgreSQL in this app).
pub trait TokenStore: Send + Sync {
    /// The stored token of `appid`, if any, read without waiting for a refresh.
    fn current(&self, kind: Kind, appid: &str) -> impl Future<Output = Result<Option<AccessToken>, StoreError>> + Send;

    /// Runs `refresh` with the stored token while holding a lock that every
    /// instance respects, and stores what it fetched before releasing it. So
    /// callers that queued behind a refresh see its token and reuse it.
    ///
    /// `refresh`'s future owns what it uses (`'static`): one that borrows the
    /// caller makes the caller's future impossible for rustc to prove `Send`
    /// (a higher-ranked lifetime limit), and axum handlers must be `Send`.
    fn refresh_locked<F, Fut>(
        &self,
        kind: Kind,
        appid: &str,
        refresh: F,
    ) -> impl Future<Output = Result<AccessToken, ApiError>> + Send
    where
        F: FnOnce(Option<AccessToken>) -> Fut + Send,
        Fut: Future<Output = Result<Refreshed, ApiError>> + Send + 'static;
}

/// What went wrong talking to WeChat, in words an admin can act on.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "没有设置 {0}，不能调用微信接口（如推送菜单）：请在环境变量或 .env 里填上公众号的 AppID（WECHAT_APPID）和 AppSecret（WECHAT_SECRET）"
    )]
    MissingCredentials(&'static str),
    /// WeChat answered with a non-zero `errcode`.
    #[error("{}", explain(*.errcode, .errmsg))]
    Wechat { errcode: i64, errmsg: String },
    #[error("连不上微信接口服务器：{0}")]
    Unreachable(String),
    #[error("微信接口的回复看不懂：{0}")]
    BadReply(String),
    #[error("微信接口服务器出错：HTTP {0}")]
    Status(u16),
    #[error("读写共享的 access_token 失败：{0}")]
    Storage(StoreError),
}

impl ApiError {
    /// WeChat's `errcode`, when WeChat refused the call.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            ApiError::Wechat { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// Worth trying again later: WeChat busy (`-1`), unreachable or timed out, or a 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Wechat { errcode, .. } => *errcode == -1,
            ApiError::Unreachable(_) => true,
            ApiError::Status(status) => *status >= 500,
            _ => false,
        }
    }

    /// The token was refused as invalid (`40001`, `40014`) or expired (`42001`):
    /// worth one refresh, e.g. after someone fetched a token by hand elsewhere.
    fn token_rejected(&self) -> bool {
        matches!(self.errcode(), Some(40001 | 40014 | 42001))
    }
}

/// An `errcode` as a sentence: what happened and what to do, then WeChat's own words.
fn explain(errcode: i64, errmsg: &str) -> String {
    let (what, todo) = match errcode {
        -1 => ("微信系统繁忙", "请稍后再试"),
        40001 | 40014 | 42001 => (
            "微信不认这个 access_token",
            "刷新后仍然失败：请确认 AppSecret 没有被重置，且没有别的程序在用同一个公众号取 token",
        ),
        40013 => ("AppID 无效", "请检查 WECHAT_APPID 是否是这个公众号的 AppID"),
        40125 => ("AppSecret 无效", "请检查 WECHAT_SECRET，或在公众平台「基本配置」里重置后更新"),
        40164 => ("本服务器的 IP 不在公众号的 IP 白名单中", "请在公众平台「基本配置」里添加"),
        45009 => ("今天调用这个接口的次数已经用完", "请明天再试，或在公众平台清零接口调用次数"),
        46003 => ("公众号现在没有自定义菜单", "推送一个菜单即可"),
        48001 => {
            ("公众号没有这个接口的权限", "未认证的公众号不能用自定义菜单接口和群发接口，请确认公众号类型和认证状态")
        }
        45028 => {
            ("群发次数已经用完", "订阅号每天只能群发 1 次，服务号每月 4 次（含在公众平台上发的）；请等次数恢复后再发")
        }
        45065 => ("这条群发已经提交过（clientmsgid 相同）", "不会重复发送，请到公众平台查看群发记录"),
        45066 => ("同一条群发重试太快", "请一分钟后再试"),
        45067 => ("群发的 clientmsgid 太长", "最多 64 个字节"),
        40130 => ("接收人不对", "预览要填一个关注了本公众号的用户的 openid；按 openid 群发至少要 2 个"),
        45002 => ("消息内容太长", "请删短一些再发"),
        45004 => ("消息的描述太长", "请删短一些再发"),
        40016 => ("菜单按钮个数不对", "一级按钮要有 1 到 3 个"),
        40017 => ("菜单按钮类型不对", "请检查菜单内容"),
        40018 => ("菜单按钮名字太长", "一级按钮最多 16 字节，请检查菜单内容"),
        40019 => ("菜单按钮的 key 太长", "最多 128 字节，请检查菜单内容"),
        40020 => ("菜单按钮的链接太长", "最多 1024 字节，请检查菜单内容"),
        40021 => ("菜单版本号不对", "请检查菜单内容"),
        40022 => ("子菜单级数不对", "子按钮下不能再有按钮"),
        40023 => ("子菜单按钮个数不对", "每个一级按钮下要有 1 到 5 个子按钮"),
        40024 => ("子菜单按钮类型不对", "请检查菜单内容"),
        40025 => ("子菜单按钮名字太长", "子按钮最多 60 字节，请检查菜单内容"),
        40026 => ("子菜单按钮的 key 太长", "最多 128 字节，请检查菜单内容"),
        40027 => ("子菜单按钮的链接太长", "最多 1024 字节，请检查菜单内容"),
        40003 => ("openid 无效", "这个用户不是本公众号的粉丝"),
        40037 => ("模板消息的 template_id 无效", "请检查 WECHAT_TEMPLATE_* 是否是公众平台「模板消息」里的模板 ID"),
        43004 => ("用户没有关注公众号", "用户重新关注后才能收到消息"),
        45015 => ("已超过客服消息的 48 小时回复时限", "用户发消息或点菜单后才能再发客服消息"),
        45047 => ("客服消息条数已达上限", "用户再次互动后才能继续发送"),
        47003 => ("模板消息的字段不合要求", "每个字段最多 20 个字，请检查模板的字段名"),
        _ => ("微信接口返回了错误", "请对照微信的全局返回码说明"),
    };
    format!("{what}（{errcode}），{todo}。微信原话：{errmsg}")
}

/// WeChat's answer to a 群发 it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MassSent {
    /// Names the send job; the `MASSSENDJOBFINISH` event carries it back.
    pub msg_id: i64,
    /// The article's id in the account's history (absent for some kinds).
    pub msg_data_id: Option<i64>,
    /// WeChat already had a job under this `clientmsgid`: this is that job,
    /// nothing new was sent.
    pub repeated: bool,
}

/// `45065`: a 群发 with this `clientmsgid` was already submitted.
const CLIENTMSGID_EXISTS: i64 = 45065;

/// A client for one Official Account, sharing its token through `S`. Cheap to
/// clone: the HTTP client is shared.
#[derive(Clone)]
pub struct ApiClient<S> {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    store: S,
}

impl<S: TokenStore + Clone + 'static> ApiClient<S> {
    /// `base` is `WECHAT_API_BASE` (`https://api.weixin.qq.com` in production).
    pub fn new(base: &str, credentials: Credentials, store: S) -> Result<ApiClient<S>, ApiError> {
        Ok(ApiClient { http: shared_http()?, base: base.trim_end_matches('/').to_string(), credentials, store })
    }

    /// The menu on WeChat now; `None` when the account has none (`46003`).
    pub async fn get_menu(&self) -> Result<Option<Menu>, ApiError> {
        #[derive(Deserialize)]
        struct Reply {
            menu: Menu,
        }
        let url = self.url("cgi-bin/menu/get");
        match self.call("menu/get", |token| self.http.get(&url).query(&[("access_token", token)])).await {
            Ok(value) => {
                let reply: Reply = serde_json::from_value(value).map_err(|e| ApiError::BadReply(e.to_string()))?;
                Ok(Some(reply.menu))
            }
            Err(e) if e.errcode() == Some(46003) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the menu. The caller validates it first ([`super::menu::validate`]).
    pub async fn create_menu(&self, menu: &Menu) -> Result<(), ApiError> {
        let url = self.url("cgi-bin/menu/create");
        self.call("menu/create", |token| self.http.post(&url).query(&[("access_token", token)]).json(menu)).await?;
        Ok(())
    }

    /// Removes the menu (and every conditional menu).
    pub async fn delete_menu(&self) -> Result<(), ApiError> {
        let url = self.url("cgi-bin/menu/delete");
        self.call("menu/delete", |token| self.http.get(&url).query(&[("access_token", token)])).await?;
        Ok(())
    }

    /// A fresh `jsapi_ticket`: the stored one, else one fetched under the
    /// store's lock (one fetch across instances). A refused access token is
    /// refreshed once outside that lock, so a refresh never waits on a
    /// database connection while holding it.
    pub async fn jsapi_ticket(&self) -> Result<AccessToken, ApiError> {
        let appid = self.credentials.appid();
        if let Some(ticket) = self.store.current(Kind::JsapiTicket, appid).await.map_err(ApiError::Storage)?
            && ticket.is_fresh()
        {
            return Ok(ticket);
        }
        let token = self.token(None).await?;
        match self.refresh_jsapi_ticket(token.token.clone()).await {
            Err(e) if e.token_rejected() => {
                tracing::warn!(
                    errcode = e.errcode(),
                    "WeChat refused the access_token for getticket; refreshing it once"
                );
                let fresh = self.token(Some(&token.token)).await?;
                self.refresh_jsapi_ticket(fresh.token).await
            }
            other => other,
        }
    }

    async fn refresh_jsapi_ticket(&self, access_token: String) -> Result<AccessToken, ApiError> {
        let this = self.clone();
        self.store
            .refresh_locked(Kind::JsapiTicket, self.credentials.appid(), move |stored| async move {
                match stored {
                    Some(ticket) if ticket.is_fresh() => Ok(Refreshed::Reused(ticket)),
                    _ => busy_retry("ticket/getticket", || this.fetch_jsapi_ticket(&access_token))
                        .await
                        .map(Refreshed::Fetched),
                }
            })
            .await
    }

    async fn fetch_jsapi_ticket(&self, access_token: &str) -> Result<AccessToken, ApiError> {
        #[derive(Deserialize)]
        struct Reply {
            ticket: String,
            expires_in: i64,
        }
        let request = self
            .http
            .get(self.url("cgi-bin/ticket/getticket"))
            .query(&[("access_token", access_token), ("type", "jsapi")]);
        let reply: Reply = serde_json::from_value(send(request).await?)
            .map_err(|e| ApiError::BadReply(format!("cgi-bin/ticket/getticket: {e}")))?;
        tracing::info!(expires_in = reply.expires_in, "fetched a new WeChat jsapi_ticket");
        meters::refreshed("jsapi_ticket");
        Ok(AccessToken {
            token: reply.ticket,
            expires_at: OffsetDateTime::now_utc() + time::Duration::seconds(reply.expires_in),
        })
    }

    /// A customer-service text message: allowed within 48 hours of the user's
    /// last message or menu click (`45015` after that, `45047` past the count).
    pub async fn send_custom_text(&self, openid: &str, content: &str) -> Result<(), ApiError> {
        let url = self.url("cgi-bin/message/custom/send");
        let body = serde_json::json!({"touser": openid, "msgtype": "text", "text": {"content": content}});
        self.call("message/custom/send", |token| self.http.post(&url).query(&[("access_token", token)]).json(&body))
            .await?;
        Ok(())
    }

    /// A template message with `data` as `{field: value}` (WeChat takes at most
    /// 20 characters a field); `link` opens when the student taps it.
    pub async fn send_template(
        &self,
        openid: &str,
        template_id: &str,
        link: Option<&str>,
        data: &serde_json::Map<String, Value>,
    ) -> Result<(), ApiError> {
        let url = self.url("cgi-bin/message/template/send");
        let data: serde_json::Map<String, Value> =
            data.iter().map(|(field, value)| (field.clone(), serde_json::json!({"value": value}))).collect();
        let mut body = serde_json::json!({"touser": openid, "template_id": template_id, "data": data});
        if let Some(link) = link {
            body["url"] = Value::String(link.into());
        }
        self.call("message/template/send", |token| self.http.post(&url).query(&[("access_token", token)]).json(&body))
            .await?;
        Ok(())
    }

    /// 群发 preview: the message as followers will get it, to one follower
    /// only (`40130`/`40003` when the openid is not a follower of this account).
    /// Previews do not count against the 群发 quota.
    pub async fn mass_preview_text(&self, openid: &str, content: &str) -> Result<(), ApiError> {
        let url = self.url("cgi-bin/message/mass/preview");
        let body = serde_json::json!({"touser": openid, "msgtype": "text", "text": {"content": content}});
        self.call("message/mass/preview", |token| self.http.post(&url).query(&[("access_token", token)]).json(&body))
            .await?;
        Ok(())
    }

    /// 群发 a text to every follower (`is_to_all`). `clientmsgid` (at most 64
    /// bytes) names this send to WeChat: a second submission with it is
    /// refused with `45065` and the first job's `msg_id`, returned here as
    /// [`MassSent::repeated`], so a retry after a lost answer never sends twice.
    /// WeChat rations these (`45028`: subscription accounts once a day,
    /// service accounts four a month).
    pub async fn mass_send_text_to_all(&self, content: &str, clientmsgid: &str) -> Result<MassSent, ApiError> {
        let url = self.url("cgi-bin/message/mass/sendall");
        let body = serde_json::json!({
            "filter": {"is_to_all": true},
            "msgtype": "text",
            "text": {"content": content},
            "clientmsgid": clientmsgid,
        });
        let reply = self
            .call("message/mass/sendall", |token| self.http.post(&url).query(&[("access_token", token)]).json(&body))
            .await?;
        let number =
            |field: &str| reply.get(field).and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())));
        let msg_id = number("msg_id")
            .ok_or_else(|| ApiError::BadReply("message/mass/sendall: no msg_id in the reply".into()))?;
        let repeated = reply.get("errcode").and_then(Value::as_i64) == Some(CLIENTMSGID_EXISTS);
        Ok(MassSent { msg_id, msg_data_id: number("msg_data_id"), repeated })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// One API call with the shared token: on a rejected token, one refresh
    /// and one retry; on `-1`, a short backoff (inside [`busy_retry`]).
    async fn call(
        &self,
        api: &'static str,
        request: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<Value, ApiError> {
        let token = self.token(None).await?;
        match busy_retry(api, || send(request(&token.token))).await {
            Err(e) if e.token_rejected() => {
                tracing::warn!(api, errcode = e.errcode(), "WeChat refused the access_token; refreshing it once");
                let fresh = self.token(Some(&token.token)).await?;
                busy_retry(api, || send(request(&fresh.token))).await
            }
            other => other,
        }
    }

    /// A fresh token: the stored one, else one refreshed under the store's
    /// lock. `rejected` is a token WeChat just refused, never to be reused.
    async fn token(&self, rejected: Option<&str>) -> Result<AccessToken, ApiError> {
        let appid = self.credentials.appid();
        if rejected.is_none()
            && let Some(token) = self.store.current(Kind::AccessToken, appid).await.map_err(ApiError::Storage)?
            && token.is_fresh()
        {
            return Ok(token);
        }
        // Owned copies for the refresh's future (see `TokenStore::refresh_locked`).
        let (this, rejected) = (self.clone(), rejected.map(str::to_owned));
        self.store
            .refresh_locked(Kind::AccessToken, appid, move |stored| async move {
                match stored {
                    // Someone refreshed while we waited for the lock.
                    Some(token) if token.is_fresh() && Some(token.token.as_str()) != rejected.as_deref() => {
                        Ok(Refreshed::Reused(token))
                    }
                    _ => busy_retry("token", || this.fetch_token()).await.map(Refreshed::Fetched),
                }
            })
            .await
    }

    async fn fetch_token(&self) -> Result<AccessToken, ApiError> {
        #[derive(Deserialize)]
        struct Reply {
            access_token: String,
            expires_in: i64,
        }
        let request = self.http.get(self.url("cgi-bin/token")).query(&[
            ("grant_type", "client_credential"),
            ("appid", &self.credentials.appid),
            ("secret", &self.credentials.secret),
        ]);
        let reply: Reply = serde_json::from_value(send(request).await?)
            .map_err(|e| ApiError::BadReply(format!("cgi-bin/token: {e}")))?;
        tracing::info!(expires_in = reply.expires_in, "fetched a new WeChat access_token");
        meters::refreshed("access_token");
        Ok(AccessToken {
            token: reply.access_token,
            expires_at: OffsetDateTime::now_utc() + time::Duration::seconds(reply.expires_in),
        })
    }
}

/// The operator's counts of calls to WeChat (through the `metrics` facade;
/// `/metrics` shows them when an exporter is installed, else they cost nothing).
pub mod meters {
    pub const TOKEN_REFRESHES: &str = "wechat_ticket_wechat_token_refreshes_total";
    pub const API_ERRORS: &str = "wechat_ticket_wechat_api_errors_total";

    pub(super) fn refreshed(kind: &'static str) {
        metrics::counter!(TOKEN_REFRESHES, "kind" => kind).increment(1);
    }

    /// One failed attempt of `api`: WeChat's `errcode`, or why no answer came.
    pub(super) fn failed(api: &'static str, error: &super::ApiError) {
        // "No menu" is an answer, not a failure.
        if error.errcode() == Some(46003) {
            return;
        }
        let why = match error {
            super::ApiError::Wechat { errcode, .. } => errcode.to_string(),
            super::ApiError::Status(status) => format!("http_{status}"),
            super::ApiError::Unreachable(_) => "unreachable".into(),
            super::ApiError::BadReply(_) => "bad_reply".into(),
            super::ApiError::Storage(_) => "token_store".into(),
            super::ApiError::MissingCredentials(_) => "no_credentials".into(),
        };
        metrics::counter!(API_ERRORS, "api" => api, "errcode" => why).increment(1);
    }
}

/// Runs `attempt`, again after each pause of [`BUSY_BACKOFF`] while WeChat answers `-1`.
async fn busy_retry<T, F, Fut>(api: &'static str, mut attempt: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    for pause in BUSY_BACKOFF {
        match attempt().await.inspect_err(|e| meters::failed(api, e)) {
            Err(e) if e.errcode() == Some(-1) => {
                tracing::warn!(api, pause_ms = pause.as_millis() as u64, "WeChat is busy (-1); retrying");
                tokio::time::sleep(pause).await;
            }
            other => return other,
        }
    }
    attempt().await.inspect_err(|e| meters::failed(api, e))
}

/// Sends one request; a non-zero `errcode` becomes [`ApiError::Wechat`].
async fn send(request: reqwest::RequestBuilder) -> Result<Value, ApiError> {
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let body = response.bytes().await.map_err(unreachable)?;
    if !status.is_success() {
        return Err(ApiError::Status(status.as_u16()));
    }
    // WeChat labels JSON as text/plain at times, so the body is parsed whatever its type.
    let value: Value = serde_json::from_slice(&body).map_err(|e| ApiError::BadReply(format!("不是 JSON（{e}）")))?;
    match value.get("errcode").and_then(Value::as_i64) {
        None | Some(0) => Ok(value),
        // The 群发 was submitted before (a retry after a lost answer): the
        // reply names the first job, which is the answer the caller wants.
        Some(CLIENTMSGID_EXISTS) if value.get("msg_id").is_some() => {
            tracing::info!("WeChat already had this 群发 (45065); taking its msg_id");
            Ok(value)
        }
        Some(errcode) => {
            let errmsg = value.get("errmsg").and_then(Value::as_str).unwrap_or_default().to_string();
            // "No menu" is an answer, not a failure.
            if errcode == 46003 {
                tracing::debug!(errcode, errmsg, "WeChat API refused a call");
            } else {
                tracing::warn!(errcode, errmsg, "WeChat API refused a call");
            }
            Err(ApiError::Wechat { errcode, errmsg })
        }
    }
}

/// A transport failure in words, without the URL (its query holds the secret or token).
fn unreachable(e: reqwest::Error) -> ApiError {
    if e.is_timeout() {
        return ApiError::Unreachable(format!(
            "超时（连接限 {} 秒，整个请求限 {} 秒）",
            CONNECT_TIMEOUT.as_secs(),
            CALL_TIMEOUT.as_secs()
        ));
    }
    let e = e.without_url();
    let mut words = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        words.push_str(&format!("：{cause}"));
        source = cause.source();
    }
    ApiError::Unreachable(words)
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP client for the process, so calls reuse connections to WeChat
/// even though a page builds an [`ApiClient`] per request.
fn shared_http() -> Result<reqwest::Client, ApiError> {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(http) = HTTP.get() {
        return Ok(http.clone());
    }
    // reqwest panics without a process-wide rustls provider.
    super::install_crypto_provider();
    let http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .build()
        .map_err(|e| ApiError::Unreachable(format!("无法创建 HTTP 客户端：{e}")))?;
    Ok(HTTP.get_or_init(|| http).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_sentences_with_wechats_own_words() {
        let err = ApiError::Wechat { errcode: 40164, errmsg: "invalid ip 1.2.3.4, not in whitelist".into() };
        assert_eq!(
            err.to_string(),
            "本服务器的 IP 不在公众号的 IP 白名单中（40164），请在公众平台「基本配置」里添加。\
             微信原话：invalid ip 1.2.3.4, not in whitelist"
        );
        for (code, words) in [
            (40013, "AppID 无效"),
            (40125, "AppSecret 无效"),
            (45009, "次数已经用完"),
            (48001, "没有这个接口的权限"),
            (45028, "群发次数已经用完"),
            (45066, "一分钟后再试"),
            (40130, "openid"),
            (40018, "名字太长"),
            (40025, "子菜单按钮名字太长"),
            (99999, "微信接口返回了错误（99999）"),
        ] {
            let shown = ApiError::Wechat { errcode: code, errmsg: "raw words".into() }.to_string();
            assert!(
                shown.contains(words) && shown.contains(&code.to_string()) && shown.ends_with("raw words"),
                "{shown}"
            );
        }
    }

    #[test]
    fn missing_credentials_are_named() {
        let named =
            |appid: Option<&str>, secret: Option<&str>| Credentials::new(appid, secret).unwrap_err().to_string();
        assert!(named(None, Some("s")).starts_with("没有设置 WECHAT_APPID，"));
        assert!(named(Some("wx1"), None).starts_with("没有设置 WECHAT_SECRET，"));
        assert!(named(None, None).starts_with("没有设置 WECHAT_APPID 和 WECHAT_SECRET，"));
        let credentials = Credentials::new(Some("wx1"), Some("s3cr3t")).unwrap();
        assert!(!format!("{credentials:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_token_is_stale_five_minutes_before_it_expires() {
        let token = |minutes: i64| AccessToken {
            token: "t0ken".into(),
            expires_at: OffsetDateTime::now_utc() + time::Duration::minutes(minutes),
        };
        assert!(token(6).is_fresh());
        assert!(!token(4).is_fresh());
        assert!(!token(-1).is_fresh());
        assert!(!format!("{:?}", token(6)).contains("t0ken"));
    }

    #[test]
    fn only_busy_unreachable_and_server_errors_are_transient() {
        let wechat = |errcode| ApiError::Wechat { errcode, errmsg: String::new() };
        assert!(wechat(-1).is_transient() && ApiError::Unreachable("timeout".into()).is_transient());
        assert!(ApiError::Status(502).is_transient() && !ApiError::Status(404).is_transient());
        for code in [45015, 45047, 43004, 40003, 40037] {
            assert!(!wechat(code).is_transient(), "{code}");
        }
    }

    #[test]
    fn only_token_errors_earn_a_refresh() {
        for code in [40001, 40014, 42001] {
            assert!(ApiError::Wechat { errcode: code, errmsg: String::new() }.token_rejected());
        }
        for code in [-1, 40013, 40125, 40164, 45009, 46003] {
            assert!(!ApiError::Wechat { errcode: code, errmsg: String::new() }.token_rejected());
        }
    }
}

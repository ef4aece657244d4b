//! WeChat web authorization (网页授权, `snsapi_base`): the authorize redirect
//! and the code exchange. A code is exchanged at most once — WeChat answers a
//! second exchange with 40163 — so what it proved is remembered for a few
//! minutes: WeChat's own double callback, or the back button, gets the same
//! openid without asking again. Only the browser that started the
//! authorization (same `state`) gets it.

use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{AppState, error::AppError};

/// The authorize URL, parameters in the order WeChat documents them: its
/// page refuses (or silently mishandles) others.
pub fn authorize_url(base: &str, appid: &str, redirect_uri: &str, state: &str) -> String {
    let redirect: String = form_urlencoded::byte_serialize(redirect_uri.as_bytes()).collect();
    format!(
        "{base}/connect/oauth2/authorize?appid={appid}&redirect_uri={redirect}&response_type=code\
         &scope=snsapi_base&state={state}#wechat_redirect"
    )
}

/// What a code proved.
#[derive(Debug, PartialEq, Eq)]
pub enum Exchange {
    Openid(String),
    /// WeChat refused the code, or it was brought by another browser.
    Refused(String),
    /// WeChat could not be asked; the code is spent all the same.
    Unreachable(String),
}

#[derive(Deserialize)]
struct TokenAnswer {
    openid: Option<String>,
    errcode: Option<i64>,
    errmsg: Option<String>,
}

/// A remembered code proves its openid for this long after its exchange
/// (WeChat's codes live five minutes).
const REMEMBERED_FOR: &str = "5 minutes";

/// Exchanges `code` (brought with `state`) for the openid it proves, once.
pub async fn exchange(state: &AppState, code: &str, oauth_state: &str) -> Result<Exchange, AppError> {
    let hash = hex::encode(Sha256::digest(code.as_bytes()));
    let claimed = sqlx::query("INSERT INTO oauth_codes (code_hash, state) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(&hash)
        .bind(oauth_state)
        .execute(&state.pool)
        .await?
        .rows_affected()
        == 1;
    if claimed {
        let answer = ask_wechat(state, code).await;
        let openid = match answer {
            Ok(TokenAnswer { openid: Some(openid), .. }) if !openid.is_empty() => openid,
            Ok(TokenAnswer { errcode, errmsg, .. }) => {
                let why = format!("{} {}", errcode.unwrap_or_default(), errmsg.unwrap_or_default());
                sqlx::query("UPDATE oauth_codes SET state = '' WHERE code_hash = $1")
                    .bind(&hash)
                    .execute(&state.pool)
                    .await?;
                return Ok(Exchange::Refused(why));
            }
            Err(why) => {
                sqlx::query("UPDATE oauth_codes SET state = '' WHERE code_hash = $1")
                    .bind(&hash)
                    .execute(&state.pool)
                    .await?;
                return Ok(Exchange::Unreachable(why));
            }
        };
        sqlx::query("UPDATE oauth_codes SET openid = $2 WHERE code_hash = $1")
            .bind(&hash)
            .bind(&openid)
            .execute(&state.pool)
            .await?;
        return Ok(Exchange::Openid(openid));
    }
    // The second of a double callback may arrive while the first is still
    // asking WeChat: wait a little for its answer.
    for _ in 0..40 {
        let row: Option<(Option<String>, String)> = sqlx::query_as(&format!(
            "SELECT openid, state FROM oauth_codes WHERE code_hash = $1 AND exchanged_at > now() - interval '{REMEMBERED_FOR}'"
        ))
        .bind(&hash)
        .fetch_optional(&state.pool)
        .await?;
        match row {
            None => return Ok(Exchange::Refused("code expired".into())),
            Some((_, remembered)) if remembered.is_empty() || remembered != oauth_state => {
                return Ok(Exchange::Refused("code used by another authorization".into()));
            }
            Some((Some(openid), _)) => return Ok(Exchange::Openid(openid)),
            Some((None, _)) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    Ok(Exchange::Refused("code exchange did not finish".into()))
}

async fn ask_wechat(state: &AppState, code: &str) -> Result<TokenAnswer, String> {
    let config = &state.config;
    let (Some(appid), Some(secret)) = (&config.wechat_appid, &config.wechat_secret) else {
        return Err("WECHAT_OAUTH needs WECHAT_APPID and WECHAT_SECRET".into());
    };
    let response = super::http()
        .map_err(|e| e.to_string())?
        .get(format!("{}/sns/oauth2/access_token", config.wechat_api_base))
        .query(&[("appid", appid.as_str()), ("secret", secret), ("code", code), ("grant_type", "authorization_code")])
        .send()
        .await
        // without_url: the URL carries the AppSecret.
        .map_err(|e| format!("WeChat OAuth exchange: {}", e.without_url()))?;
    response.json().await.map_err(|e| format!("WeChat OAuth answer: {}", e.without_url()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorize_url_has_the_documented_parameter_order() {
        let url = authorize_url("https://open.weixin.qq.com", "wx1", "https://t.example/m/oauth?next=tickets", "ab12");
        assert_eq!(
            url,
            "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wx1\
             &redirect_uri=https%3A%2F%2Ft.example%2Fm%2Foauth%3Fnext%3Dtickets&response_type=code\
             &scope=snsapi_base&state=ab12#wechat_redirect"
        );
    }
}

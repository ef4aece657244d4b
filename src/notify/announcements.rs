//! 群发: an activity announced to every follower of the account (README
//! "Announcements to followers"), through WeChat's mass send.
//!
//! A 群发 cannot be taken back and WeChat rations it (a subscription account
//! once a day, a service account four times a month), so the text is first
//! sent as a preview to one follower, and only the previewed text may go to
//! all. A send claims its row (`previewed → sending`) before it calls WeChat:
//! two instances or a double-submitted form send one 群发. WeChat is told the
//! announcement's `clientmsgid`, so even a retry after an answer that never
//! came back (or a claim taken over from a crashed instance) sends nothing
//! twice: WeChat answers it with the first job's `msg_id`. A refusal (the
//! quota, say) puts the row back to `previewed` with the refusal in words,
//! to be tried again later. WeChat's `MASSSENDJOBFINISH` event, posted to
//! `/wechat`, fills in the counts, once.

use sqlx::{FromRow, PgConnection, PgPool};
use time::OffsetDateTime;
use time_tz::Tz;

use crate::{
    audit,
    booking::{Activity, lottery::Mode},
    error::AppError,
    local_time,
    wechat::{message::MassSendResult, token_store::WechatApi},
};

/// WeChat takes long texts in a 群发, but a chat bubble is read at a glance.
pub const MAX_CHARS: usize = 600;
/// A claim older than this was left by an instance that died mid-send (a
/// call to WeChat gives up after 10 s): it may be taken over.
pub const STALE_CLAIM: time::Duration = time::Duration::minutes(2);

/// `draft → previewed → sending → sent → finished`; a refused send goes back
/// from `sending` to `previewed` (with the refusal kept in `error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Status {
    /// Composed, never previewed: cannot be sent.
    Draft,
    /// The current text went to one follower as a preview: may be sent.
    Previewed,
    /// One instance is calling WeChat's mass send now.
    Sending,
    /// WeChat accepted the job (`msg_id` known); its result is to come.
    Sent,
    /// WeChat reported the job done, with its counts.
    Finished,
}

impl Status {
    /// The stored value, also a CSS class.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Previewed => "previewed",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Finished => "finished",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Draft => "未预览",
            Status::Previewed => "已预览，可群发",
            Status::Sending => "正在群发",
            Status::Sent => "已提交群发，等微信的结果",
            Status::Finished => "群发完成",
        }
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct Announcement {
    pub id: i64,
    pub activity_id: i64,
    pub activity_key: String,
    pub activity_name: String,
    pub body: String,
    pub status: Status,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub preview_openid: Option<String>,
    pub previewed_at: Option<OffsetDateTime>,
    pub claimed_at: Option<OffsetDateTime>,
    pub sent_by: Option<String>,
    pub sent_at: Option<OffsetDateTime>,
    pub msg_id: Option<i64>,
    pub msg_data_id: Option<i64>,
    pub error: Option<String>,
    pub result: Option<String>,
    pub total_count: Option<i32>,
    pub filter_count: Option<i32>,
    pub sent_count: Option<i32>,
    pub error_count: Option<i32>,
    pub finished_at: Option<OffsetDateTime>,
}

const SELECT: &str = "SELECT n.id, n.activity_id, a.key AS activity_key, a.name AS activity_name, n.body, n.status, \
     n.created_by, n.created_at, n.preview_openid, n.previewed_at, n.claimed_at, n.sent_by, n.sent_at, n.msg_id, n.msg_data_id, \
     n.error, n.result, n.total_count, n.filter_count, n.sent_count, n.error_count, n.finished_at \
     FROM announcements n JOIN activities a ON a.id = n.activity_id";

impl Announcement {
    /// Its send may be tried (again): previewed, or claimed by a send that never finished.
    pub fn sendable(&self) -> bool {
        match self.status {
            Status::Previewed => true,
            Status::Sending => self.claimed_at.is_some_and(|at| at + STALE_CLAIM < OffsetDateTime::now_utc()),
            _ => false,
        }
    }
}

/// The text an announcement starts from: what, when, where, how to book, and the activity's page.
pub fn default_text(activity: &Activity, public_url: &str, tz: &Tz) -> String {
    let word = match activity.mode {
        Mode::Rush => "抢票",
        Mode::Lottery => "报名",
    };
    format!(
        "【{name}】\n时间：{start}\n地点：{place}\n{open} 开始{word}：给公众号回复「{word} {key}」即可。\n详情：{url}/activities/{id}",
        name = activity.name,
        start = local_time::full(activity.start_at, tz),
        place = activity.place,
        open = local_time::full(activity.book_start, tz),
        key = activity.key,
        url = public_url.trim_end_matches('/'),
        id = activity.id,
    )
}

/// The text as it is stored and sent: trimmed, with a browser's CRLF line
/// ends as WeChat's `\n`, so the same words compare equal however they came.
pub fn normalized(text: &str) -> String {
    text.replace("\r\n", "\n").trim().to_string()
}

/// Why a text cannot be announced, in words; `None` when it can.
fn refusal_of(text: &str) -> Option<String> {
    if text.is_empty() {
        Some("群发的内容是空的。".into())
    } else if text.chars().count() > MAX_CHARS {
        Some(format!("群发的内容太长了：最多 {MAX_CHARS} 个字。"))
    } else {
        None
    }
}

/// A new, unpreviewed announcement of `activity`, starting from `text`.
pub async fn create(conn: &mut PgConnection, activity: &Activity, text: &str, by: &str) -> Result<i64, AppError> {
    let text = normalized(text);
    if let Some(why) = refusal_of(&text) {
        return Err(AppError::Invalid(why));
    }
    let id = sqlx::query_scalar(
        "INSERT INTO announcements (activity_id, body, created_by) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(activity.id)
    .bind(&text)
    .bind(by)
    .fetch_one(&mut *conn)
    .await?;
    audit::record_for(conn, activity.id, by, "新建群发", &format!("#{id}")).await?;
    Ok(id)
}

pub async fn by_id(conn: &mut PgConnection, id: i64) -> Result<Option<Announcement>, AppError> {
    Ok(sqlx::query_as(&format!("{SELECT} WHERE n.id = $1")).bind(id).fetch_optional(conn).await?)
}

/// The newest announcements first.
pub async fn recent(conn: &mut PgConnection, limit: i64) -> Result<Vec<Announcement>, AppError> {
    Ok(sqlx::query_as(&format!("{SELECT} ORDER BY n.created_at DESC, n.id DESC LIMIT $1"))
        .bind(limit)
        .fetch_all(conn)
        .await?)
}

/// What became of a preview or a send.
#[derive(Debug)]
pub enum Outcome {
    /// The preview went to the openid.
    Previewed,
    /// WeChat accepted the 群发 (`repeated`: it had it already, nothing new went out).
    Sent { msg_id: i64, repeated: bool },
    /// Nothing was asked of WeChat, for this reason (in words).
    Refused(String),
    /// Another request is sending it now, or it has been sent: nothing was asked of WeChat.
    Taken(Status),
    /// WeChat (or the way to it) refused; the words are recorded on the announcement too.
    Failed(String),
}

/// Sends `text` as a preview to `openid` (one follower), and makes it the
/// text that may be sent to all. Once sent, an announcement takes no previews.
pub async fn preview(
    pool: &PgPool,
    api: Result<WechatApi, AppError>,
    id: i64,
    text: &str,
    openid: &str,
    by: &str,
) -> Result<Outcome, AppError> {
    let text = normalized(text);
    let openid = openid.trim();
    let current = by_id(&mut *pool.acquire().await?, id).await?.ok_or(AppError::NotFound)?;
    if !matches!(current.status, Status::Draft | Status::Previewed) {
        return Ok(Outcome::Taken(current.status));
    }
    if let Some(why) = refusal_of(&text) {
        return Ok(Outcome::Refused(why));
    }
    // A WeChat openid is 28 characters of base64url; a test student's is ours.
    if openid.is_empty()
        || openid.len() > 64
        || !openid.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        return Ok(Outcome::Refused("请填写接收预览的关注者的 openid。".into()));
    }
    let called = match api {
        Ok(api) => api.mass_preview_text(openid, &text).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let mut tx = pool.begin().await?;
    let outcome = match called {
        Ok(()) => {
            let updated = sqlx::query(
                "UPDATE announcements SET body = $2, status = 'previewed', preview_openid = $3, \
                 previewed_at = now(), error = NULL WHERE id = $1 AND status IN ('draft', 'previewed')",
            )
            .bind(id)
            .bind(&text)
            .bind(openid)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                // Sent by someone else while the preview was on its way: that send stands.
                return Ok(Outcome::Taken(Status::Sending));
            }
            audit::record_for(&mut tx, current.activity_id, by, "群发预览", &format!("#{id} → {openid}：{text}"))
                .await?;
            Outcome::Previewed
        }
        Err(why) => {
            sqlx::query("UPDATE announcements SET error = $2 WHERE id = $1")
                .bind(id)
                .bind(&why)
                .execute(&mut *tx)
                .await?;
            audit::record_for(&mut tx, current.activity_id, by, "群发预览失败", &format!("#{id} → {openid}：{why}"))
                .await?;
            Outcome::Failed(why)
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// The name WeChat knows this announcement's send by: the same on every
/// try, so WeChat refuses a second job for it.
pub fn clientmsgid(id: i64) -> String {
    format!("wechat-ticket-announcement-{id}")
}

/// Sends the previewed text to every follower, once. `text` is what the
/// admin's form held: it must be the text last previewed.
pub async fn send(
    pool: &PgPool,
    api: Result<WechatApi, AppError>,
    id: i64,
    text: &str,
    by: &str,
) -> Result<Outcome, AppError> {
    let text = normalized(text);
    // The claim: only one request gets the row, whichever instance it reaches.
    let claimed: Option<i64> = sqlx::query_scalar(
        "UPDATE announcements SET status = 'sending', claimed_at = now(), sent_by = $3 \
         WHERE id = $1 AND body = $2 AND (status = 'previewed' \
             OR (status = 'sending' AND claimed_at < now() - make_interval(secs => $4))) \
         RETURNING activity_id",
    )
    .bind(id)
    .bind(&text)
    .bind(by)
    .bind(STALE_CLAIM.as_seconds_f64())
    .fetch_optional(pool)
    .await?;
    let Some(activity_id) = claimed else {
        let current = by_id(&mut *pool.acquire().await?, id).await?.ok_or(AppError::NotFound)?;
        return Ok(match current.status {
            Status::Draft => Outcome::Refused("还没有发送预览：请先把这段内容发送预览，确认无误后再群发。".into()),
            Status::Previewed | Status::Sending if current.sendable() => {
                Outcome::Refused("内容在预览之后改过了：请先把改后的内容发送预览，确认无误后再群发。".into())
            }
            other => Outcome::Taken(other),
        });
    };
    let called = match api {
        Ok(api) => api.mass_send_text_to_all(&text, &clientmsgid(id)).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let mut tx = pool.begin().await?;
    let outcome = match called {
        Ok(sent) => {
            sqlx::query(
                "UPDATE announcements SET status = 'sent', msg_id = $2, msg_data_id = $3, sent_at = now(), \
                 error = NULL WHERE id = $1 AND status = 'sending'",
            )
            .bind(id)
            .bind(sent.msg_id)
            .bind(sent.msg_data_id)
            .execute(&mut *tx)
            .await?;
            let again = if sent.repeated { "（微信已有这次群发，未重复发送）" } else { "" };
            audit::record_for(
                &mut tx,
                activity_id,
                by,
                "群发",
                &format!("#{id} msg_id {}{again}：{text}", sent.msg_id),
            )
            .await?;
            Outcome::Sent { msg_id: sent.msg_id, repeated: sent.repeated }
        }
        Err(why) => {
            sqlx::query(
                "UPDATE announcements SET status = 'previewed', claimed_at = NULL, error = $2 \
                 WHERE id = $1 AND status = 'sending'",
            )
            .bind(id)
            .bind(&why)
            .execute(&mut *tx)
            .await?;
            audit::record_for(&mut tx, activity_id, by, "群发失败", &format!("#{id}：{why}")).await?;
            Outcome::Failed(why)
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Records WeChat's report of a finished 群发 against the announcement it
/// names, once: a repeated report, or one about a 群发 made elsewhere (on
/// the WeChat platform), changes nothing. True when it was recorded.
pub async fn record_finished(conn: &mut PgConnection, result: &MassSendResult) -> Result<bool, AppError> {
    let Ok(msg_id) = result.msg_id.parse::<i64>() else { return Ok(false) };
    let clamp = |n: i64| n.clamp(0, i32::MAX as i64) as i32;
    let recorded = sqlx::query(
        "UPDATE announcements SET status = 'finished', result = $2, total_count = $3, filter_count = $4, \
         sent_count = $5, error_count = $6, finished_at = now() WHERE msg_id = $1 AND status = 'sent'",
    )
    .bind(msg_id)
    .bind(result.status.chars().take(200).collect::<String>())
    .bind(clamp(result.total))
    .bind(clamp(result.filter))
    .bind(clamp(result.sent))
    .bind(clamp(result.error))
    .execute(conn)
    .await?;
    if recorded.rows_affected() > 0 {
        tracing::info!(msg_id, sent = result.sent, errors = result.error, "a 群发 finished");
    }
    Ok(recorded.rows_affected() > 0)
}

/// WeChat's status words of a finished 群发, read for an admin.
pub fn result_words(result: &str) -> String {
    match result {
        "send success" => "成功".into(),
        "send fail" => "失败".into(),
        "err(10001)" => "涉嫌广告".into(),
        "err(20001)" => "涉嫌政治".into(),
        "err(20004)" => "涉嫌社会".into(),
        "err(20002)" => "涉嫌色情".into(),
        "err(20006)" => "涉嫌违法犯罪".into(),
        "err(20008)" => "涉嫌欺诈".into(),
        "err(20013)" => "涉嫌版权".into(),
        "err(22000)" => "涉嫌互推（互相宣传）".into(),
        "err(21000)" => "涉嫌其他".into(),
        "err(30001)" | "err(30002)" | "err(30003)" => "原创校验出现系统错误且用户选择了被判为转载就不群发".into(),
        "err(40001)" | "err(40002)" => "原创校验被判定为不能群发".into(),
        other => format!("微信原话：{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_compare_as_sent_whatever_the_line_ends() {
        assert_eq!(normalized("  第一行\r\n第二行\n "), "第一行\n第二行");
        assert!(refusal_of("").is_some());
        assert!(refusal_of(&"字".repeat(MAX_CHARS + 1)).is_some());
        assert!(refusal_of(&"字".repeat(MAX_CHARS)).is_none());
    }

    #[test]
    fn the_clientmsgid_fits_wechats_64_bytes() {
        assert!(clientmsgid(i64::MAX).len() <= 64);
        assert_eq!(clientmsgid(7), clientmsgid(7));
        assert_ne!(clientmsgid(7), clientmsgid(8));
    }

    #[test]
    fn wechats_status_words_are_read() {
        assert_eq!(result_words("send success"), "成功");
        assert_eq!(result_words("err(10001)"), "涉嫌广告");
        assert_eq!(result_words("something new"), "微信原话：something new");
    }
}

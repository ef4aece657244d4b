//! How one notification reaches its student: the simulator's chat for a test
//! student; else a customer-service message inside WeChat's 48-hour window;
//! else (or when WeChat refuses it with 45015/45047/43004) a template message
//! if one is configured for its kind; else it is undelivered, with the reason.

use time::{Duration, OffsetDateTime};

use super::{
    Context,
    notifications::{Channel, Kind, Pending},
};
use crate::{
    booking::students,
    links::{self, Purpose},
    menu::wechat_api,
    transcripts::{self, Entry},
    wechat::api::ApiError,
};

/// WeChat accepts customer-service messages this long after the user's last
/// message or menu click.
pub const WINDOW: Duration = Duration::hours(48);

/// The `errcode`s of `message/custom/send` that a template message may get past:
/// outside the window, too many messages in it, or WeChat wants a fresh follow.
const TRY_TEMPLATE_INSTEAD: [i64; 3] = [45015, 45047, 43004];

#[derive(Debug, PartialEq, Eq)]
pub enum Delivered {
    Sent(Channel),
    Undelivered(String),
}

/// A failure worth another try later (WeChat busy, unreachable, a 5xx).
#[derive(Debug)]
pub struct Transient(pub String);

pub async fn deliver(ctx: &Context, conn: &mut sqlx::PgConnection, n: &Pending) -> Result<Delivered, Transient> {
    let Some(openid) = n.openid.as_deref() else {
        let who = n.student_id.as_deref().unwrap_or_default();
        return Ok(Delivered::Undelivered(format!("学号 {who} 现在没有绑定微信")));
    };
    if n.ticket_cancelled {
        return Ok(Delivered::Undelivered("票已退，不再通知".into()));
    }
    let link = n.ticket_code.as_deref().map(|code| ticket_url(ctx, openid, code));
    let text = match &link {
        Some(link) => format!("{}\n<a href=\"{link}\">查看我的票</a>", n.body),
        None => n.body.clone(),
    };
    if students::is_test(openid) {
        // The simulator shows a pushed message in the chat, as WeChat would.
        return match transcripts::add(&mut *conn, openid, &Entry::of("text", text)).await {
            Ok(()) => Ok(Delivered::Sent(Channel::Simulator)),
            Err(e) => Err(Transient(e.to_string())),
        };
    }
    let api = match wechat_api(&ctx.config, ctx.pool.clone()) {
        Ok(api) => api,
        Err(e) => return Ok(Delivered::Undelivered(e.to_string())),
    };
    let in_window = n.last_interaction_at.is_some_and(|at| at + WINDOW > OffsetDateTime::now_utc());
    let why_not_custom = if in_window {
        match api.send_custom_text(openid, &text).await {
            Ok(()) => return Ok(Delivered::Sent(Channel::CustomerService)),
            Err(e) if e.errcode().is_some_and(|code| TRY_TEMPLATE_INSTEAD.contains(&code)) => e.to_string(),
            Err(e) => return refused(e),
        }
    } else {
        "同学 48 小时内没有给公众号发消息或点菜单，不能发客服消息".to_string()
    };
    let Some(template_id) = template(ctx, n.kind) else {
        return Ok(Delivered::Undelivered(format!("{why_not_custom}；也没有设置模板消息（{}）", template_var(n.kind))));
    };
    match api.send_template(openid, template_id, link.as_deref(), &n.template_data).await {
        Ok(()) => Ok(Delivered::Sent(Channel::Template)),
        Err(e) => refused(e),
    }
}

fn refused(e: ApiError) -> Result<Delivered, Transient> {
    if e.is_transient() { Err(Transient(e.to_string())) } else { Ok(Delivered::Undelivered(e.to_string())) }
}

/// The variable that holds `kind`'s template id.
pub fn template_var(kind: Kind) -> &'static str {
    match kind {
        Kind::ActivityChanged
        | Kind::WaitingPromoted
        | Kind::WaitingClosed
        | Kind::LotteryWon
        | Kind::LotteryLost
        | Kind::PlaceAssigned
        | Kind::HolderMessage => "WECHAT_TEMPLATE_CHANGE",
        Kind::Reminder => "WECHAT_TEMPLATE_REMINDER",
        Kind::Test => "测试消息只发给模拟器里的测试同学",
    }
}

fn template(ctx: &Context, kind: Kind) -> Option<&str> {
    match kind {
        // The change template's fields (activity, time, place, note) fit these too.
        Kind::ActivityChanged
        | Kind::WaitingPromoted
        | Kind::WaitingClosed
        | Kind::LotteryWon
        | Kind::LotteryLost
        | Kind::PlaceAssigned
        | Kind::HolderMessage => ctx.config.template_change.as_deref(),
        Kind::Reminder => ctx.config.template_reminder.as_deref(),
        Kind::Test => None,
    }
}

/// The ticket page, signed for its holder as the bot's replies are.
fn ticket_url(ctx: &Context, openid: &str, code: &str) -> String {
    let expires = OffsetDateTime::now_utc().unix_timestamp() + Purpose::Ticket.lifetime();
    let query = links::sign(&ctx.secret_key, Purpose::Ticket, openid, code, expires);
    format!("{}{}", ctx.config.public_url, links::ticket_path(code, &query))
}

/// WeChat takes at most 20 characters in a template field; longer values are
/// cut with an ellipsis rather than refused.
pub fn field(value: &str) -> String {
    const MAX: usize = 20;
    let value = value.trim();
    if value.chars().count() <= MAX {
        return value.to_string();
    }
    let mut cut: String = value.chars().take(MAX - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_fields_hold_at_most_twenty_characters() {
        assert_eq!(field("  音乐会  "), "音乐会");
        let long = "一二三四五六七八九十一二三四五六七八九十一";
        assert_eq!(field(long).chars().count(), 20);
        assert!(field(long).ends_with('…'));
        assert_eq!(field(&long[..long.len() - 3]), &long[..long.len() - 3]);
    }
}

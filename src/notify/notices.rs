//! What happened, in the words a student reads: each kind of notification and
//! who receives it. Each function runs in the caller's transaction, so the
//! notices commit with the change that caused them, or not at all.

use serde_json::{Map, Value};
use sqlx::PgConnection;
use time::OffsetDateTime;
use time_tz::Tz;
use uuid::Uuid;

use super::{
    Notifier,
    channels::field,
    notifications::{Kind, NewNotification},
};
use crate::{
    booking::{
        Activity, ActivityStatus, seats, students,
        waiting::{Dropped, Promoted},
    },
    error::AppError,
    local_time,
};

/// The template fields every kind fills (README "Notifications").
fn template_data(activity_name: &str, start: &str, place: &str, note: &str) -> Map<String, Value> {
    [("thing1", activity_name), ("time2", start), ("thing3", place), ("thing4", note)]
        .into_iter()
        .map(|(name, value)| (name.to_string(), Value::String(field(value))))
        .collect()
}

/// The holders of `activity_id`'s valid tickets: (ticket id, student ID).
async fn holders(conn: &mut PgConnection, activity_id: i64) -> Result<Vec<(i64, String)>, AppError> {
    Ok(sqlx::query_as("SELECT id, student_id FROM tickets WHERE activity_id = $1 AND status = 'valid' ORDER BY id")
        .bind(activity_id)
        .fetch_all(conn)
        .await?)
}

/// One notice per holder of a valid ticket, for one event.
async fn tell_holders(
    conn: &mut PgConnection,
    notifier: &Notifier,
    activity: &Activity,
    event: &str,
    body: &str,
    data: Map<String, Value>,
) -> Result<usize, AppError> {
    let notices: Vec<NewNotification> = holders(conn, activity.id)
        .await?
        .into_iter()
        .map(|(ticket_id, student_id)| NewNotification {
            key: format!("{event}:ticket-{ticket_id}"),
            kind: Kind::ActivityChanged,
            student_id: Some(student_id),
            openid: None,
            activity_id: Some(activity.id),
            ticket_id: Some(ticket_id),
            body: body.to_string(),
            template_data: data.clone(),
        })
        .collect();
    notifier.enqueue(conn, &notices).await
}

/// After an edit: tells every valid ticket's holder what changed, if the time
/// or the place did. Returns how many were told.
pub async fn activity_changed(
    conn: &mut PgConnection,
    notifier: &Notifier,
    before: &Activity,
    after: &Activity,
    tz: &Tz,
) -> Result<usize, AppError> {
    // Forms carry minutes: a time saved back unchanged is no news.
    let moved =
        |a: OffsetDateTime, b: OffsetDateTime| a.unix_timestamp().div_euclid(60) != b.unix_timestamp().div_euclid(60);
    let mut lines = Vec::new();
    if moved(before.start_at, after.start_at) || moved(before.end_at, after.end_at) {
        lines.push(format!(
            "时间改为 {} – {}（原为 {} – {}）",
            local_time::short(after.start_at, tz),
            local_time::clock(after.end_at, tz),
            local_time::short(before.start_at, tz),
            local_time::clock(before.end_at, tz),
        ));
    }
    if before.place != after.place {
        lines.push(format!("地点改为 {}（原为 {}）", after.place, before.place));
    }
    if lines.is_empty() {
        return Ok(0);
    }
    let body = format!("【活动变更】{}\n{}", after.name, lines.join("\n"));
    let note = if lines.len() == 2 {
        "时间和地点有变"
    } else if before.place != after.place {
        "地点有变"
    } else {
        "时间有变"
    };
    let data = template_data(&after.name, &local_time::full(after.start_at, tz), &after.place, note);
    tell_holders(conn, notifier, after, &format!("changed-{}", Uuid::new_v4()), &body, data).await
}

/// Before an archive: an activity withdrawn before it ended is news to its
/// holders; archiving one that is over is housekeeping and tells nobody.
pub async fn activity_archived(
    conn: &mut PgConnection,
    notifier: &Notifier,
    before: &Activity,
    tz: &Tz,
) -> Result<usize, AppError> {
    if before.status != ActivityStatus::Published || before.end_at <= OffsetDateTime::now_utc() {
        return Ok(0);
    }
    let body = format!(
        "【活动取消】{}（{}，{}）已被主办方撤下，不再举行。如有疑问请联系主办方。",
        before.name,
        local_time::short(before.start_at, tz),
        before.place
    );
    let data = template_data(&before.name, &local_time::full(before.start_at, tz), &before.place, "活动已取消");
    let event = format!("archived-{}", before.id);
    let told = tell_holders(conn, notifier, before, &event, &body, data.clone()).await?;
    // A lottery not drawn yet has registrants and no tickets: they are told too.
    let registrants: Vec<String> = sqlx::query_scalar(
        "SELECT e.student_id FROM lottery_entries e JOIN lotteries l ON l.activity_id = e.activity_id \
         WHERE e.activity_id = $1 AND l.drawn_at IS NULL ORDER BY e.entered_at",
    )
    .bind(before.id)
    .fetch_all(&mut *conn)
    .await?;
    let notices: Vec<NewNotification> = registrants
        .into_iter()
        .map(|student_id| NewNotification {
            key: format!("{event}:entry-{student_id}"),
            kind: Kind::ActivityChanged,
            student_id: Some(student_id),
            openid: None,
            activity_id: Some(before.id),
            ticket_id: None,
            body: format!("{body}你的抽签报名随之作废，不会抽签。"),
            template_data: data.clone(),
        })
        .collect();
    Ok(told + notifier.enqueue(conn, &notices).await?)
}

/// A valid ticket whose activity starts within the reminder window.
#[derive(sqlx::FromRow)]
struct Due {
    ticket_id: i64,
    student_id: String,
    activity_id: i64,
    name: String,
    place: String,
    start_at: OffsetDateTime,
}

/// The reminder sweep: queues one reminder per valid ticket of a published
/// activity starting within `hours`, once per ticket whichever instance or
/// sweep gets there first (the key is the ticket's).
pub async fn remind_due(conn: &mut PgConnection, notifier: &Notifier, hours: u32, tz: &Tz) -> Result<usize, AppError> {
    let due: Vec<Due> = sqlx::query_as(
        "SELECT t.id AS ticket_id, t.student_id, a.id AS activity_id, a.name, a.place, a.start_at \
         FROM activities a JOIN tickets t ON t.activity_id = a.id AND t.status = 'valid' \
         WHERE a.status = 'published' AND a.start_at > now() AND a.start_at <= now() + make_interval(hours => $1) \
         AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.idempotency_key = 'reminder:ticket-' || t.id) \
         ORDER BY t.id LIMIT 5000",
    )
    .bind(hours as i32)
    .fetch_all(&mut *conn)
    .await?;
    let notices: Vec<NewNotification> = due
        .into_iter()
        .map(|d| NewNotification {
            key: format!("reminder:ticket-{}", d.ticket_id),
            kind: Kind::Reminder,
            student_id: Some(d.student_id),
            openid: None,
            activity_id: Some(d.activity_id),
            ticket_id: Some(d.ticket_id),
            body: format!(
                "【开始提醒】{} 将于 {} 在 {} 开始，请带好入场二维码准时到场。",
                d.name,
                local_time::short(d.start_at, tz),
                d.place
            ),
            template_data: template_data(&d.name, &local_time::full(d.start_at, tz), &d.place, "活动即将开始"),
        })
        .collect();
    notifier.enqueue(conn, &notices).await
}

/// The longest test message the console sends.
pub const MAX_TEST_TEXT: usize = 300;

/// A message from the console to one of the simulator's test students.
pub async fn test_message(
    conn: &mut PgConnection,
    notifier: &Notifier,
    openid: &str,
    text: &str,
) -> Result<usize, AppError> {
    if !students::is_test(openid) {
        return Err(AppError::Invalid("测试消息只能发给模拟器里的测试同学。".into()));
    }
    let text = text.trim();
    if text.is_empty() || text.chars().count() > MAX_TEST_TEXT {
        return Err(AppError::Invalid(format!("测试消息要有 1 到 {MAX_TEST_TEXT} 个字。")));
    }
    let student_id = students::bound(conn, openid).await?.map(|s| s.student_id);
    let notice = NewNotification {
        key: format!("test:{}", Uuid::new_v4()),
        kind: Kind::Test,
        student_id,
        openid: Some(openid.to_string()),
        activity_id: None,
        ticket_id: None,
        body: text.to_string(),
        template_data: Map::new(),
    };
    notifier.enqueue(conn, &[notice]).await
}

/// What a waiting-list notice says about its activity.
#[derive(sqlx::FromRow)]
struct Named {
    name: String,
    place: String,
    start_at: OffsetDateTime,
}

async fn named(conn: &mut PgConnection, activity_id: i64) -> Result<Named, AppError> {
    Ok(sqlx::query_as("SELECT name, place, start_at FROM activities WHERE id = $1")
        .bind(activity_id)
        .fetch_one(conn)
        .await?)
}

/// Tells each student promoted from a waiting list that the ticket is theirs
/// (the sender adds the ticket link), in the promotion's transaction.
pub async fn waiting_promoted(
    conn: &mut PgConnection,
    notifier: &Notifier,
    promoted: &[Promoted],
) -> Result<usize, AppError> {
    let tz = notifier.timezone();
    let mut notices = Vec::new();
    for p in promoted {
        let a = named(conn, p.activity_id).await?;
        // Promoted after the seat deadline, the ticket was placed at once: say where.
        let seat = seats::place_of(conn, p.ticket_id).await?.map(|place| place.label());
        let (seat_line, remark) = match &seat {
            Some(label) => (format!("你的位置是：{label}。"), format!("你候补到票了，位置：{label}")),
            None => (String::new(), "你候补到票了".to_string()),
        };
        notices.push(NewNotification {
            key: format!("waiting-promoted:ticket-{}", p.ticket_id),
            kind: Kind::WaitingPromoted,
            student_id: Some(p.student_id.clone()),
            openid: None,
            activity_id: Some(p.activity_id),
            ticket_id: Some(p.ticket_id),
            body: format!(
                "【候补成功】你候补到票了：{}（{}，{}）。{seat_line}不能来请提前退票，名额会给下一位同学。",
                a.name,
                local_time::short(a.start_at, tz),
                a.place
            ),
            template_data: template_data(&a.name, &local_time::full(a.start_at, tz), &a.place, &remark),
        });
    }
    notifier.enqueue(conn, &notices).await
}

/// Tells each student still waiting when a list closed that no place came free.
pub async fn waiting_closed(
    conn: &mut PgConnection,
    notifier: &Notifier,
    dropped: &[Dropped],
) -> Result<usize, AppError> {
    let tz = notifier.timezone();
    let mut notices = Vec::new();
    for d in dropped {
        let a = named(conn, d.activity_id).await?;
        notices.push(NewNotification {
            key: format!("waiting-closed:entry-{}", d.entry_id),
            kind: Kind::WaitingClosed,
            student_id: Some(d.student_id.clone()),
            openid: None,
            activity_id: Some(d.activity_id),
            ticket_id: None,
            body: format!("【候补结束】{} 的抢票已经结束，这次没有候补到票。", a.name),
            template_data: template_data(&a.name, &local_time::full(a.start_at, tz), &a.place, "候补未成功"),
        });
    }
    notifier.enqueue(conn, &notices).await
}

/// After a draw: tells each winner their ticket is ready (the sender adds the
/// link) and everyone else their place on the waiting list, with the draw's
/// public page, in the draw's transaction. `won` is (ticket id, student ID),
/// `queued` (entry id, student ID, position).
pub async fn lottery_drawn(
    conn: &mut PgConnection,
    notifier: &Notifier,
    activity_id: i64,
    won: &[(i64, String)],
    queued: &[(i64, String, i64)],
) -> Result<usize, AppError> {
    let tz = notifier.timezone();
    let a = named(conn, activity_id).await?;
    let (start, full_start) = (local_time::short(a.start_at, tz), local_time::full(a.start_at, tz));
    let draw_page = format!("<a href=\"{}/activities/{activity_id}/draw\">核对抽签结果</a>", notifier.public_url());
    let mut notices = Vec::new();
    for (ticket_id, student_id) in won {
        notices.push(NewNotification {
            key: format!("lottery-won:ticket-{ticket_id}"),
            kind: Kind::LotteryWon,
            student_id: Some(student_id.clone()),
            openid: None,
            activity_id: Some(activity_id),
            ticket_id: Some(*ticket_id),
            body: format!(
                "【中签】恭喜，你抽中了 {}（{start}，{}）。不能来请提前退票，名额会给候补的同学。{draw_page}",
                a.name, a.place
            ),
            template_data: template_data(&a.name, &full_start, &a.place, "你中签了"),
        });
    }
    for (entry_id, student_id, position) in queued {
        notices.push(NewNotification {
            key: format!("lottery-lost:entry-{entry_id}"),
            kind: Kind::LotteryLost,
            student_id: Some(student_id.clone()),
            openid: None,
            activity_id: Some(activity_id),
            ticket_id: None,
            body: format!(
                "【未中签】{} 的抽签结果出来了，这次没有抽中。你在候补名单第 {position} 位：有人退票就按顺序补上，补上会通知你。{draw_page}",
                a.name
            ),
            template_data: template_data(&a.name, &full_start, &a.place, &format!("未中签，候补第{position}位")),
        });
    }
    notifier.enqueue(conn, &notices).await
}

/// After the seat deadline: tells each student the place the sweep gave
/// them, in the sweep's transaction. `placed` is (ticket id, student ID, place).
pub async fn places_assigned(
    conn: &mut PgConnection,
    notifier: &Notifier,
    activity_id: i64,
    placed: &[(i64, String, String)],
) -> Result<usize, AppError> {
    let tz = notifier.timezone();
    let a = named(conn, activity_id).await?;
    let full_start = local_time::full(a.start_at, tz);
    let notices: Vec<NewNotification> = placed
        .iter()
        .map(|(ticket_id, student_id, place)| NewNotification {
            key: format!("place-assigned:ticket-{ticket_id}"),
            kind: Kind::PlaceAssigned,
            student_id: Some(student_id.clone()),
            openid: None,
            activity_id: Some(activity_id),
            ticket_id: Some(*ticket_id),
            body: format!(
                "【座位已分配】{}（{}，{}）选座已经截止，你的位置是：{place}。入场时出示电子票即可。",
                a.name,
                local_time::short(a.start_at, tz),
                a.place
            ),
            template_data: template_data(&a.name, &full_start, &a.place, &format!("你的位置：{place}")),
        })
        .collect();
    notifier.enqueue(conn, &notices).await
}

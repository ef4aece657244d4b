//! Check-in at the door: a valid ticket becomes used, once, and says by whom;
//! each scan is answered once per client nonce.

use serde::Serialize;
use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;
use time_tz::Tz;

use crate::{
    audit,
    booking::{
        Activity, TicketStatus,
        seats::{self, TicketPlace},
        students::MAX_STUDENT_ID_CHARS,
        tickets::{self, Ticket},
    },
    error::AppError,
    links, local_time,
};

#[derive(Debug)]
pub enum CheckinOutcome {
    CheckedIn(Ticket),
    /// Used already: when, and by whom (the gate, or the admin).
    AlreadyUsed(Ticket, OffsetDateTime, String),
    Cancelled(Ticket),
    /// A real ticket, for another activity.
    OtherActivity(Ticket),
    UnknownTicket,
    /// A student ID with no live ticket for this activity.
    NoTicketForStudent(String),
    /// A live-QR activity's ticket shown as anything but a current live code:
    /// an old one (a screenshot), the static credential, the ticket page URL
    /// or the bare code. One answer for all of them, so whoever holds a copy
    /// learns nothing from trying each.
    QrExpired(Ticket),
    /// A student ID typed at a volunteer's gate of a live-QR activity: it
    /// would let anyone who knows a classmate's ID in without the phone, so
    /// there it is an admin's call only.
    StudentIdNeedsAdmin,
}

/// Why a live-QR activity's door refuses anything but a current live code.
pub const QR_EXPIRED: &str = "二维码已过期，请让同学刷新电子票";

/// Why a volunteer's gate of a live-QR activity refuses a student ID.
pub const STUDENT_ID_NEEDS_ADMIN: &str =
    "本活动使用动态二维码，志愿者入口不能按学号检票：请让同学打开电子票，或请管理员检票";

/// The most a scan may carry. The longest thing a ticket QR or a USB scanner
/// sends is a ticket page URL with its signed query (well under 300
/// characters); anything longer is not a ticket and is refused unread.
pub const MAX_SCAN_CHARS: usize = 512;

/// What the door staff scanned or typed: a ticket's QR code (its check-in
/// credential, as a URL or bare), a ticket URL, a bare code, or a student ID.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented {
    /// A genuine check-in credential: the ticket with this id.
    Credential(i64),
    /// A genuine live credential: the ticket, and the 30 s step it was shown in.
    LiveCredential {
        ticket_id: i64,
        step: i64,
    },
    Code(String),
    StudentId(String),
    /// Something shaped like a credential that is not genuine, or longer than
    /// any student ID: no ticket either way.
    Forged,
    Nothing,
}

/// The path prefix of a check-in credential URL (the QR code's content).
pub const CREDENTIAL_PATH: &str = "/c/";

pub fn read_input(input: &str, secret: &[u8]) -> Presented {
    let input = input.trim();
    if input.is_empty() {
        return Presented::Nothing;
    }
    let credential = match input.rfind(CREDENTIAL_PATH) {
        Some(at) => Some(input[at + CREDENTIAL_PATH.len()..].split(['?', '#', '/']).next().unwrap_or_default()),
        // A bare credential: `{ticket id}.{mac}`.
        None => input.split_once('.').filter(|(id, _)| id.bytes().all(|b| b.is_ascii_digit())).map(|_| input),
    };
    if let Some(credential) = credential {
        if let Some((ticket_id, step)) = links::open_live_credential(secret, credential) {
            return Presented::LiveCredential { ticket_id, step };
        }
        return match links::open_checkin_credential(secret, credential) {
            Some(id) => Presented::Credential(id),
            None => Presented::Forged,
        };
    }
    // A scanned QR code is the ticket URL: take the code after `/tickets/`.
    let candidate = match input.rfind("/tickets/") {
        Some(at) => input[at + "/tickets/".len()..].split(['?', '#', '/']).next().unwrap_or_default(),
        None => input,
    };
    if tickets::looks_like_code(candidate) || input.contains("/tickets/") {
        Presented::Code(candidate.to_string())
    } else if input.chars().count() <= MAX_STUDENT_ID_CHARS && !input.chars().any(char::is_control) {
        Presented::StudentId(input.to_string())
    } else {
        // Longer than any student ID: no ticket, and not looked up or repeated back to the door.
        Presented::Forged
    }
}

/// Who is scanning: an admin logged in, or a gate's volunteer link.
#[derive(Debug, Clone)]
pub enum Scanner {
    Admin(String),
    Gate { link_id: i64, gate: String },
}

impl Scanner {
    /// The key a scan's nonce is unique under: one scanner cannot replay another's answers.
    fn key(&self) -> String {
        match self {
            Scanner::Admin(username) => format!("admin:{username}"),
            Scanner::Gate { link_id, .. } => format!("gate:{link_id}"),
        }
    }

    /// How a verdict names this scanner: the gate, or the admin's username.
    pub fn name(&self) -> &str {
        match self {
            Scanner::Admin(username) => username,
            Scanner::Gate { gate, .. } => gate,
        }
    }

    fn link_id(&self) -> Option<i64> {
        match self {
            Scanner::Admin(_) => None,
            Scanner::Gate { link_id, .. } => Some(*link_id),
        }
    }
}

/// Checks the presented ticket in for `activity_id`, attributed to `by`.
///
/// At a live-QR activity only a live code of this step or the last checks a
/// ticket in. Everything else that names a ticket (an older live code, the
/// static credential, the ticket page URL, the bare code) is refused with
/// [`QR_EXPIRED`] and changes nothing; a student ID is taken from an admin
/// only (whose judgement it is), never at a volunteer's gate.
pub async fn check_in(
    conn: &mut PgConnection,
    activity_id: i64,
    presented: Presented,
    by: &Scanner,
) -> Result<CheckinOutcome, AppError> {
    let live_qr: bool = sqlx::query_scalar("SELECT live_qr FROM activities WHERE id = $1")
        .bind(activity_id)
        .fetch_one(&mut *conn)
        .await?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    // What may check a ticket in at a live-QR door: a current live code, or an admin's typed student ID.
    let proves_presence = match &presented {
        Presented::LiveCredential { step, .. } => links::live_step_is_current(*step, now),
        Presented::StudentId(_) => matches!(by, Scanner::Admin(_)),
        _ => false,
    };
    let code = match presented {
        Presented::Nothing | Presented::Forged => return Ok(CheckinOutcome::UnknownTicket),
        Presented::Credential(id) | Presented::LiveCredential { ticket_id: id, .. } => {
            match tickets::by_id(conn, id).await? {
                Some(ticket) => ticket.code,
                None => return Ok(CheckinOutcome::UnknownTicket),
            }
        }
        Presented::Code(code) => code,
        Presented::StudentId(_) if live_qr && !proves_presence => {
            // Refused before the lookup: a gate cannot probe who holds a ticket.
            return Ok(CheckinOutcome::StudentIdNeedsAdmin);
        }
        Presented::StudentId(student_id) => {
            // The student's ticket for this activity only; a live one if there is one.
            let code: Option<String> = sqlx::query_scalar(
                "SELECT code FROM tickets WHERE activity_id = $1 AND student_id = $2 \
                 ORDER BY (status <> 'cancelled') DESC, booked_at DESC LIMIT 1",
            )
            .bind(activity_id)
            .bind(&student_id)
            .fetch_optional(&mut *conn)
            .await?;
            match code {
                Some(code) => code,
                None => return Ok(CheckinOutcome::NoTicketForStudent(student_id)),
            }
        }
    };
    let Some(ticket) = tickets::by_code(conn, &code).await? else {
        return Ok(CheckinOutcome::UnknownTicket);
    };
    if ticket.activity_id != activity_id {
        return Ok(CheckinOutcome::OtherActivity(ticket));
    }
    if live_qr && !proves_presence {
        return Ok(CheckinOutcome::QrExpired(ticket));
    }
    // Only a valid ticket turns used; two scanners at once cannot both succeed
    // (the second waits for the first's row lock, then finds it used).
    let done = sqlx::query(
        "UPDATE tickets SET status = 'used', checked_in_at = now(), checked_in_link = $2, checked_in_by = $3 \
         WHERE code = $1 AND status = 'valid'",
    )
    .bind(&code)
    .bind(by.link_id())
    .bind(by.name())
    .execute(&mut *conn)
    .await?;
    let ticket = tickets::by_code(conn, &code).await?.ok_or(AppError::NotFound)?;
    if done.rows_affected() == 1 {
        return Ok(CheckinOutcome::CheckedIn(ticket));
    }
    Ok(match (ticket.status, ticket.checked_in_at) {
        (TicketStatus::Used, Some(at)) => {
            let by: Option<String> = sqlx::query_scalar("SELECT checked_in_by FROM tickets WHERE id = $1")
                .bind(ticket.id)
                .fetch_one(&mut *conn)
                .await?;
            // Check-ins from before gates were recorded were all made by admins.
            CheckinOutcome::AlreadyUsed(ticket, at, by.unwrap_or_else(|| "管理员".into()))
        }
        _ => CheckinOutcome::Cancelled(ticket),
    })
}

/// What the door sees after a scan: green or red, a headline and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub good: bool,
    pub headline: String,
    pub detail: String,
}

impl Verdict {
    /// The verdict on `outcome`; `place` is what the ticket holds, which the
    /// door names on a check-in and on a ticket used already (so the volunteer
    /// can point the way, or see whose seat it was).
    pub fn of(outcome: &CheckinOutcome, place: &TicketPlace, tz: &Tz) -> Verdict {
        let bad = |headline: String, detail: String| Verdict { good: false, headline, detail };
        let with_place = |text: String| match place.label() {
            Some(label) => format!("{text} · {label}"),
            None => text,
        };
        match outcome {
            CheckinOutcome::CheckedIn(t) => {
                Verdict { good: true, headline: with_place("检票成功".into()), detail: t.holder() }
            }
            CheckinOutcome::AlreadyUsed(t, at, by) => {
                bad(with_place(format!("已检票 {}（{by}）", local_time::clock(*at, tz))), t.holder())
            }
            CheckinOutcome::Cancelled(t) => bad("票已退".into(), format!("{} 的这张票已经退掉了", t.holder())),
            CheckinOutcome::OtherActivity(t) => {
                bad("不是本活动的票".into(), format!("这是「{}」的票", t.activity_name))
            }
            CheckinOutcome::UnknownTicket => bad("没有这张票".into(), "票号无效，请让同学重新打开电子票".into()),
            CheckinOutcome::NoTicketForStudent(id) => bad("没有票".into(), format!("学号 {id} 没有本活动的票")),
            CheckinOutcome::QrExpired(t) => bad("二维码已过期".into(), format!("{QR_EXPIRED}（{}）", t.holder())),
            CheckinOutcome::StudentIdNeedsAdmin => bad("请扫动态二维码".into(), STUDENT_ID_NEEDS_ADMIN.into()),
        }
    }
}

/// A scan as the door's history lists it.
#[derive(Debug, Clone, FromRow)]
pub struct Scan {
    pub good: bool,
    pub headline: String,
    pub detail: String,
    pub scanned_at: OffsetDateTime,
}

/// Whether a nonce is one a client could have made: 16 to 64 URL-safe characters.
pub fn nonce_is_well_formed(nonce: &str) -> bool {
    (16..=64).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One scan, idempotent by its client nonce: the first request under a nonce
/// checks in (or not) and records its verdict in the same transaction; any
/// repeat gets that verdict back and changes nothing. Run it in a transaction.
pub async fn scan(
    conn: &mut PgConnection,
    activity: &Activity,
    input: &str,
    nonce: &str,
    by: &Scanner,
    secret: &[u8],
    tz: &Tz,
) -> Result<Verdict, AppError> {
    if !nonce_is_well_formed(nonce) {
        return Err(AppError::BadRequest("扫码请求缺少有效的 nonce，请刷新页面后重试。".into()));
    }
    // Before anything is written: an over-long scan leaves no nonce, no verdict and no echo behind.
    if input.chars().count() > MAX_SCAN_CHARS {
        return Err(AppError::BadRequest(format!("扫到的内容超过 {MAX_SCAN_CHARS} 个字符，不是电子票。")));
    }
    // Claims the nonce; a concurrent request with the same one waits here for
    // this transaction, then finds the nonce taken and reads its verdict.
    let claimed: Option<i64> = sqlx::query_scalar(
        "INSERT INTO checkin_scans (scanner, nonce, activity_id) VALUES ($1, $2, $3) \
         ON CONFLICT (scanner, nonce) DO NOTHING RETURNING id",
    )
    .bind(by.key())
    .bind(nonce)
    .bind(activity.id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(scan_id) = claimed else {
        let (good, headline, detail): (bool, String, String) =
            sqlx::query_as("SELECT good, headline, detail FROM checkin_scans WHERE scanner = $1 AND nonce = $2")
                .bind(by.key())
                .bind(nonce)
                .fetch_one(&mut *conn)
                .await?;
        return Ok(Verdict { good, headline, detail });
    };
    let outcome = check_in(conn, activity.id, read_input(input, secret), by).await?;
    let place = match &outcome {
        CheckinOutcome::CheckedIn(t) | CheckinOutcome::AlreadyUsed(t, ..) => seats::ticket_place(conn, t.id).await?,
        _ => TicketPlace::StandingRoom,
    };
    let verdict = Verdict::of(&outcome, &place, tz);
    let ticket_id = match &outcome {
        CheckinOutcome::CheckedIn(t)
        | CheckinOutcome::AlreadyUsed(t, ..)
        | CheckinOutcome::Cancelled(t)
        | CheckinOutcome::QrExpired(t) => Some(t.id),
        _ => None,
    };
    sqlx::query("UPDATE checkin_scans SET good = $2, headline = $3, detail = $4, ticket_id = $5 WHERE id = $1")
        .bind(scan_id)
        .bind(verdict.good)
        .bind(&verdict.headline)
        .bind(&verdict.detail)
        .bind(ticket_id)
        .execute(&mut *conn)
        .await?;
    if let CheckinOutcome::CheckedIn(t) = &outcome {
        let actor = match by {
            Scanner::Admin(username) => username.clone(),
            Scanner::Gate { gate, .. } => format!("入口 {gate}"),
        };
        // A guest by name: their synthetic student ID means nothing in the log.
        let who = if t.guest_name.is_some() { t.holder() } else { t.student_id.clone() };
        audit::record_for(conn, activity.id, &actor, "检票", &format!("{} {}", activity.key, who)).await?;
    }
    Ok(verdict)
}

/// How long a door scan (its nonce and verdict) is kept.
pub const KEEP_SCANS_DAYS: i32 = 30;

/// Forgets scans older than [`KEEP_SCANS_DAYS`] (housekeeping): a nonce only
/// has to outlive a phone's retries, and a month covers any door's history.
pub async fn forget_old_scans(conn: &mut PgConnection) -> Result<u64, AppError> {
    Ok(sqlx::query("DELETE FROM checkin_scans WHERE scanned_at < now() - make_interval(days => $1)")
        .bind(KEEP_SCANS_DAYS)
        .execute(conn)
        .await?
        .rows_affected())
}

/// The last `limit` scans at this activity, newest first: one scanner's, or everyone's.
pub async fn recent_scans(
    conn: &mut PgConnection,
    activity_id: i64,
    by: Option<&Scanner>,
    limit: i64,
) -> Result<Vec<Scan>, AppError> {
    Ok(sqlx::query_as(
        "SELECT good, headline, detail, scanned_at FROM checkin_scans \
         WHERE activity_id = $1 AND ($2::text IS NULL OR scanner = $2) ORDER BY scanned_at DESC, id DESC LIMIT $3",
    )
    .bind(activity_id)
    .bind(by.map(Scanner::key))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// (booked, checked in) for the check-in page's counter; the simulator's test
/// tickets count only when `include_test` (they still check in like any other).
pub async fn counts(conn: &mut PgConnection, activity_id: i64, include_test: bool) -> Result<(i64, i64), AppError> {
    Ok(sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status <> 'cancelled'), count(*) FILTER (WHERE status = 'used') \
         FROM tickets WHERE activity_id = $1 AND ($2 OR NOT simulated)",
    )
    .bind(activity_id)
    .bind(include_test)
    .fetch_one(conn)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_urls_codes_and_student_ids() {
        let key = b"key";
        let read_input = |input: &str| read_input(input, key);
        let credential = links::checkin_credential(key, 7);
        assert_eq!(read_input(&format!("https://t.example/c/{credential}")), Presented::Credential(7));
        assert_eq!(read_input(&credential), Presented::Credential(7));
        assert_eq!(read_input(&format!("https://t.example/c/{}", credential.replacen('7', "8", 1))), Presented::Forged);
        assert_eq!(read_input("8.AAAAAAAAAAAAAAAAAAAAAA"), Presented::Forged);
        let code = "AbCdEfGhIjKlMnOpQrSt_-";
        assert_eq!(read_input(&format!("https://t.example/tickets/{code}")), Presented::Code(code.into()));
        assert_eq!(read_input(&format!(" https://t.example/tickets/{code}?x=1#y ")), Presented::Code(code.into()));
        assert_eq!(read_input(code), Presented::Code(code.into()));
        assert_eq!(read_input("2024010001"), Presented::StudentId("2024010001".into()));
        assert_eq!(read_input("https://t.example/tickets/short"), Presented::Code("short".into()));
        assert_eq!(read_input("   "), Presented::Nothing);
        assert_eq!(read_input(&"2".repeat(32)), Presented::StudentId("2".repeat(32)));
        assert_eq!(read_input(&"2".repeat(33)), Presented::Forged, "longer than any student ID");
        let live = links::live_credential(key, 7, 56_000_000);
        let as_live = Presented::LiveCredential { ticket_id: 7, step: 56_000_000 };
        assert_eq!(read_input(&format!("https://t.example/c/{live}")), as_live);
        assert_eq!(read_input(&live), as_live);
        assert_eq!(read_input(&format!("https://t.example/c/{}", live.replacen("56", "57", 1))), Presented::Forged);
    }
}

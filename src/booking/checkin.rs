//! Check-in at the door: a valid ticket becomes used, once.

use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::{
    booking::{
        TicketStatus,
        tickets::{self, Ticket},
    },
    error::AppError,
    links,
};

#[derive(Debug)]
pub enum CheckinOutcome {
    CheckedIn(Ticket),
    AlreadyUsed(Ticket, OffsetDateTime),
    Cancelled(Ticket),
    /// A real ticket, for another activity.
    OtherActivity(Ticket),
    UnknownTicket,
    /// A student ID with no live ticket for this activity.
    NoTicketForStudent(String),
    /// A live-QR activity's ticket shown as a static or an old code (a screenshot).
    QrExpired(Ticket),
}

/// Why a live-QR activity's door refuses a static or an old code.
pub const QR_EXPIRED: &str = "二维码已过期，请让同学刷新电子票";

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
    /// Something shaped like a credential that is not genuine.
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
    } else {
        Presented::StudentId(input.to_string())
    }
}

pub async fn check_in(
    conn: &mut PgConnection,
    activity_id: i64,
    presented: Presented,
) -> Result<CheckinOutcome, AppError> {
    let shown_step = match presented {
        Presented::LiveCredential { step, .. } => Some(step),
        _ => None,
    };
    let static_credential = matches!(presented, Presented::Credential(_));
    let code = match presented {
        Presented::Nothing | Presented::Forged => return Ok(CheckinOutcome::UnknownTicket),
        Presented::Credential(id) | Presented::LiveCredential { ticket_id: id, .. } => {
            match tickets::by_id(conn, id).await? {
                Some(ticket) => ticket.code,
                None => return Ok(CheckinOutcome::UnknownTicket),
            }
        }
        Presented::Code(code) => code,
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
    if (static_credential || shown_step.is_some()) && !live_qr_accepts(conn, activity_id, shown_step).await? {
        return Ok(CheckinOutcome::QrExpired(ticket));
    }
    // Only a valid ticket turns used; two scanners at once cannot both succeed.
    let done =
        sqlx::query("UPDATE tickets SET status = 'used', checked_in_at = now() WHERE code = $1 AND status = 'valid'")
            .bind(&code)
            .execute(&mut *conn)
            .await?;
    let ticket = tickets::by_code(conn, &code).await?.ok_or(AppError::NotFound)?;
    Ok(match (done.rows_affected(), ticket.status, ticket.checked_in_at) {
        (1, _, _) => CheckinOutcome::CheckedIn(ticket),
        (_, TicketStatus::Used, Some(at)) => CheckinOutcome::AlreadyUsed(ticket, at),
        _ => CheckinOutcome::Cancelled(ticket),
    })
}

/// Whether the activity takes a QR code shown in `step` (`None`: the static
/// credential). Only a live-QR activity is particular; a typed code or student
/// ID is the door staff's own judgement and is not asked about.
async fn live_qr_accepts(conn: &mut PgConnection, activity_id: i64, step: Option<i64>) -> Result<bool, AppError> {
    let live: bool = sqlx::query_scalar("SELECT live_qr FROM activities WHERE id = $1")
        .bind(activity_id)
        .fetch_one(&mut *conn)
        .await?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    Ok(!live || step.is_some_and(|step| links::live_step_is_current(step, now)))
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
        let live = links::live_credential(key, 7, 56_000_000);
        let as_live = Presented::LiveCredential { ticket_id: 7, step: 56_000_000 };
        assert_eq!(read_input(&format!("https://t.example/c/{live}")), as_live);
        assert_eq!(read_input(&live), as_live);
        assert_eq!(read_input(&format!("https://t.example/c/{}", live.replacen("56", "57", 1))), Presented::Forged);
    }
}

//! `GET /wechat` (server verification) and `POST /wechat` (messages), per SPEC §2.

mod batch;
pub mod records;

use std::{sync::Arc, time::Duration};

use axum::{
    Extension, Router,
    body::Body,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;

use crate::{
    AppState, bot,
    config::MessageMode,
    error::AppError,
    meters,
    wechat::{crypto, message, reply, signature},
};
use records::{Recorded, SignedPair};

/// WeChat's messages are a few hundred bytes; anything near this is not WeChat.
const MAX_BODY: usize = 64 * 1024;

/// WeChat gives up after 5 s and retries; answer well before that.
const DEADLINE: Duration = Duration::from_millis(4000);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/wechat", get(verify_server).post(receive))
        .layer(Extension(Arc::new(batch::Batches::default())))
}

#[derive(Deserialize)]
struct SignedQuery {
    signature: Option<String>,
    timestamp: Option<String>,
    nonce: Option<String>,
    echostr: Option<String>,
    encrypt_type: Option<String>,
    msg_signature: Option<String>,
}

impl SignedQuery {
    fn timestamp(&self) -> &str {
        self.timestamp.as_deref().unwrap_or_default()
    }
    fn nonce(&self) -> &str {
        self.nonce.as_deref().unwrap_or_default()
    }
    fn signed_by(&self, token: &str) -> bool {
        match (&self.signature, &self.timestamp, &self.nonce) {
            (Some(sig), Some(ts), Some(nonce)) => signature::verify(token, ts, nonce, sig),
            _ => false,
        }
    }

    /// The signed `timestamp`, when it is within the freshness window of now.
    fn fresh_timestamp(&self) -> Option<i64> {
        signature::fresh(self.timestamp(), time::OffsetDateTime::now_utc().unix_timestamp())
    }

    /// Signed by WeChat, recently: the check every request must pass first.
    fn check(&self, token: &str) -> Result<i64, &'static str> {
        if !self.signed_by(token) {
            return Err("bad signature");
        }
        self.fresh_timestamp().ok_or("stale timestamp")
    }
}

fn plain(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body.into()).into_response()
}

async fn verify_server(State(state): State<AppState>, Query(q): Query<SignedQuery>) -> Response {
    if let Err(why) = q.check(&state.wechat_token) {
        return plain(StatusCode::FORBIDDEN, why);
    }
    plain(StatusCode::OK, q.echostr.unwrap_or_default())
}

async fn receive(
    State(state): State<AppState>,
    Extension(batches): Extension<Arc<batch::Batches>>,
    Query(q): Query<SignedQuery>,
    body: Body,
) -> Response {
    // Refused before its command is known: counted under `none`.
    let refused = |outcome: &'static str, status: StatusCode, why: &'static str| {
        meters::wechat_message("none", outcome);
        plain(status, why)
    };
    let timestamp = match q.check(&state.wechat_token) {
        Ok(timestamp) => timestamp,
        Err(why @ "stale timestamp") => return refused("stale", StatusCode::FORBIDDEN, why),
        Err(why) => return refused("bad_signature", StatusCode::FORBIDDEN, why),
    };
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return refused("malformed", StatusCode::BAD_REQUEST, "body too large or unreadable");
    };
    let Ok(body) = std::str::from_utf8(&bytes) else {
        return refused("malformed", StatusCode::BAD_REQUEST, "body is not UTF-8");
    };

    let encrypted = q.encrypt_type.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("aes"));
    // In safe mode only the encrypted envelope counts: a plaintext body (a
    // compatible-mode one included) could have been rewritten by anyone who
    // saw one signed query, since `signature` does not cover the body.
    if state.config.message_mode == MessageMode::Safe && !encrypted {
        return refused("plaintext_refused", StatusCode::FORBIDDEN, "safe mode: only encrypted messages are accepted");
    }
    let inner = if encrypted {
        match open_envelope(&state, &q, body) {
            Ok(xml) => xml,
            Err((status, why)) => return refused("envelope_refused", status, why),
        }
    } else {
        body.to_string()
    };
    let msg = match message::parse(&inner) {
        Ok(msg) => msg,
        Err(e) => {
            tracing::debug!(error = %e, "malformed WeChat message");
            return refused("malformed", StatusCode::BAD_REQUEST, "malformed message");
        }
    };

    let signed = SignedPair { timestamp, nonce: q.nonce() };
    // A database known to be down cannot answer: busy at once, also for a
    // message already waiting on it, instead of at the deadline.
    let answer = async {
        tokio::select! {
            biased;
            () = state.database.went_down() => None,
            answer = async {
                // Bookings (the rush) are answered many at once; everything else alone.
                match bot::booking_of(&msg) {
                    Some(activity) => batches.answer(&state, &msg, activity, &signed).await,
                    None => answer_once(&state, &msg, &signed).await,
                }
            } => Some(answer),
        }
    };
    // The command's name only where no handling named it (the busy answers, a replay).
    let command = || bot::command_name(&msg);
    let (xml, command, outcome) = match tokio::time::timeout(DEADLINE, answer).await {
        Ok(None) => {
            tracing::debug!("the database is down; answered busy");
            (busy_reply(&msg), command(), "database_down")
        }
        Ok(Some(Ok(Answer::Reply { xml, command, outcome }))) => (xml, command, outcome),
        Ok(Some(Ok(Answer::Replayed))) => {
            tracing::warn!("a signed query was replayed with another message; refused");
            meters::wechat_message(command(), "replay_refused");
            return plain(StatusCode::FORBIDDEN, "this signature was already used for another message");
        }
        Ok(Some(Err(AppError::Busy))) => {
            tracing::warn!("a WeChat message found every place held; answered busy");
            (busy_reply(&msg), command(), "busy")
        }
        Ok(Some(Err(e))) => {
            tracing::error!(error = %e, "could not answer a WeChat message");
            (busy_reply(&msg), command(), "error")
        }
        Err(_) => {
            tracing::warn!("a WeChat message missed the deadline");
            (busy_reply(&msg), command(), "deadline")
        }
    };
    meters::wechat_message(command, outcome);

    let out = match (&state.cipher, encrypted) {
        (Some(cipher), true) if xml != "success" => {
            crypto::reply_envelope(cipher, &state.wechat_token, &xml, q.timestamp(), q.nonce())
        }
        _ => xml,
    };
    let content_type = if out == "success" { "text/plain; charset=utf-8" } else { "application/xml; charset=utf-8" };
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], out).into_response()
}

/// Checks `msg_signature` over the `Encrypt` element and decrypts it.
fn open_envelope(state: &AppState, q: &SignedQuery, body: &str) -> Result<String, (StatusCode, &'static str)> {
    let Some(cipher) = &state.cipher else {
        return Err((StatusCode::BAD_REQUEST, "encrypted messages need WECHAT_AES_KEY"));
    };
    let envelope = message::parse_envelope(body).map_err(|_| (StatusCode::BAD_REQUEST, "malformed envelope"))?;
    let Some(encrypt) = envelope.encrypt else {
        return Err((StatusCode::BAD_REQUEST, "no Encrypt element"));
    };
    let signed = q
        .msg_signature
        .as_deref()
        .is_some_and(|sig| signature::verify_msg(&state.wechat_token, q.timestamp(), q.nonce(), &encrypt, sig));
    if !signed {
        return Err((StatusCode::FORBIDDEN, "bad msg_signature"));
    }
    cipher.decrypt(&encrypt).map_err(|e| {
        tracing::debug!(error = %e, "undecryptable WeChat message");
        (StatusCode::BAD_REQUEST, "cannot decrypt")
    })
}

enum Answer {
    /// The reply, and the command and outcome counted for it.
    Reply { xml: String, command: &'static str, outcome: &'static str },
    /// The signed query already carried another message.
    Replayed,
}

/// Handles a message at most once, whichever instance or retry gets it first:
/// the handling, the record of its reply and the record of the signed query
/// that carried it commit together. A loser of the race for the reply rolls
/// its handling back and answers with the winner's reply; a message under a
/// signed query that carried another one rolls back and is refused.
async fn answer_once(state: &AppState, msg: &message::Message, signed: &SignedPair<'_>) -> Result<Answer, AppError> {
    let key = msg.dedup_key();
    let waiting = meters::waiting_for_pool();
    let mut tx = state.pool.begin().await?;
    drop(waiting);
    let handled = bot::handle(state, &mut tx, msg).await?;
    let xml =
        reply::render(&handled.reply, &msg.from_user, &msg.to_user, time::OffsetDateTime::now_utc().unix_timestamp());
    match records::record(&mut tx, &key, &msg.from_user, signed, &xml).await? {
        Recorded::First => {
            tx.commit().await?;
            // Counted once committed: a retry that lost the race above counts as a duplicate.
            match handled.outcome {
                "booked" => meters::booked(meters::Via::Wechat),
                "cancelled" => meters::cancelled(meters::Via::Wechat),
                _ => {}
            }
            return Ok(Answer::Reply { xml, command: handled.command, outcome: handled.outcome });
        }
        Recorded::Replayed => {
            tx.rollback().await?;
            return Ok(Answer::Replayed);
        }
        Recorded::Again => tx.rollback().await?,
    }
    records::stored_reply(&mut *state.pool.acquire().await?, &key)
        .await?
        .map(|xml| Answer::Reply { xml, command: handled.command, outcome: DUPLICATE })
        .ok_or_else(|| AppError::Internal("a recorded reply vanished".into()))
}

/// A retry (or a second delivery) of a message already answered: the first reply again.
const DUPLICATE: &str = "duplicate";

/// Not recorded, so WeChat's retry gets a real second chance.
fn busy_reply(msg: &message::Message) -> String {
    reply::render(
        &reply::Reply::Text(bot::replies::BUSY.into()),
        &msg.from_user,
        &msg.to_user,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    )
}

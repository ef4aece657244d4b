//! Many booking messages, one transaction. In a rush nine answers in ten are
//! "sold out", and each used to pay for its own `BEGIN`, check, records and
//! `COMMIT`. Here the booking messages arriving on one instance wait in a
//! queue while earlier batches are at the database; whatever has gathered
//! when a batch's turn comes (at most `MOST`) is handled in one transaction:
//! one statement claims every message (`records::claim_many`: its signed
//! query, its reply's row, first or not), the booking rules check them all
//! in one and take the places of each activity in one more
//! (`bot::handle_bookings`), one statement stores the replies, and one
//! `COMMIT` — six round trips for the batch, instead of five per message.
//!
//! Each message gets the answer it would have got alone, in the batch's
//! order: a retry of a message in the same batch gets its original's reply,
//! a signed query carrying a second message in the same batch is refused,
//! two messages of one student are booked one after the other (the second
//! holds the first's ticket). A batch that fails (a statement's error, a
//! deadlock, a panic, the deadline) is rolled back as a whole and each of its
//! messages is answered again alone, as before batching (`answer_once`), so a
//! member that cannot be answered fails alone and delays the others by that
//! one retry. Any number of instances batch at once; capacity stays exact,
//! since the places are taken under the same constraints as one booking.
//!
//! Only bookings are gathered: they are the rush. Every other command is
//! answered alone, as before.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{
    Answer, DUPLICATE, answer_once,
    records::{self, Claim, Recorded, SignedPair},
};
use crate::{
    AppState, booking::tickets::ActivityRef, bot, db, error::AppError, meters, wechat::message::Message, wechat::reply,
};

/// Batches at the database at once, per instance. While they are there, new
/// messages gather for the next; more at once would only split the same
/// messages into smaller batches that queue for the same two cores.
const AT_ONCE: usize = 2;

/// At most this many messages in one batch (a few kilobytes of parameters).
const MOST: usize = 256;

/// A batch that has not committed by then is abandoned (rolled back) and its
/// messages are answered alone, inside the 4 s `/wechat` gives each.
const DEADLINE: Duration = Duration::from_millis(2500);

/// No statement of a batch runs longer (milliseconds; a batch's statements
/// take a few, and `DEADLINE` is a little longer). Aborting a batch at its deadline drops its connection but
/// cannot stop a statement PostgreSQL is running — one waiting for a lock,
/// say — which would keep every member's claim, and the members answered
/// alone would wait behind it. With this, such a statement fails within a
/// couple of seconds and the batch's claims go with its transaction.
const STATEMENT_TIMEOUT_MS: &str = "2000";

/// The queue of booking messages waiting for their batch; one per router.
#[derive(Default)]
pub struct Batches {
    queue: OnceLock<mpsc::UnboundedSender<Job>>,
}

struct Job {
    state: AppState,
    member: Member,
    done: oneshot::Sender<Result<Answer, AppError>>,
}

/// One message of a batch: what it is, what it books, and the signed query it came under.
struct Member {
    msg: Message,
    activity: ActivityRef,
    timestamp: i64,
    nonce: String,
}

impl Member {
    fn signed(&self) -> SignedPair<'_> {
        SignedPair { timestamp: self.timestamp, nonce: &self.nonce }
    }
}

impl Batches {
    /// Answers a booking message with the next batch; the same guarantees as `answer_once`.
    pub async fn answer(
        &self,
        state: &AppState,
        msg: &Message,
        activity: ActivityRef,
        signed: &SignedPair<'_>,
    ) -> Result<Answer, AppError> {
        let queue = self.queue.get_or_init(start);
        let (done, answer) = oneshot::channel();
        let member = Member { msg: msg.clone(), activity, timestamp: signed.timestamp, nonce: signed.nonce.into() };
        if queue.send(Job { state: state.clone(), member, done }).is_err() {
            return answer_once(state, msg, signed).await;
        }
        answer.await.unwrap_or_else(|_| Err(AppError::Internal("a batch ended without answering".into())))
    }
}

/// Starts the batches' own thread, with a runtime and a pool of its own
/// (`AT_ONCE` connections beside the app's pool). On the server's runtime a
/// batch's every round trip waited its turn behind hundreds of requests
/// being parsed — measured: over a millisecond for a `BEGIN` — and six per
/// batch made its messages wait. The thread ends when the queue's sender
/// (the router) is dropped. Without it (a thread that cannot start), every
/// booking is answered alone.
fn start() -> mpsc::UnboundedSender<Job> {
    let (queue, waiting) = mpsc::unbounded_channel();
    let server = tokio::runtime::Handle::current();
    let started = std::thread::Builder::new().name("wechat-batches".into()).spawn(move || {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(gather(waiting, server)),
            Err(e) => tracing::error!(error = %e, "no runtime for batches; bookings are answered alone"),
        }
    });
    if let Err(e) = started {
        tracing::error!(error = %e, "no thread for batches; bookings are answered alone");
    }
    queue
}

/// Takes whatever has gathered each time a batch may start.
async fn gather(mut waiting: mpsc::UnboundedReceiver<Job>, server: tokio::runtime::Handle) {
    let turns = Arc::new(Semaphore::new(AT_ONCE));
    let mut pool: Option<PgPool> = None;
    loop {
        let Ok(turn) = turns.clone().acquire_owned().await else { return };
        let Some(first) = waiting.recv().await else { return };
        let pool = pool
            .get_or_insert_with(|| {
                let options = first.state.pool.connect_options().as_ref().clone();
                db::lazy_pool(options.options([("statement_timeout", STATEMENT_TIMEOUT_MS)]), AT_ONCE as u32)
            })
            .clone();
        let mut jobs = vec![first];
        while jobs.len() < MOST {
            match waiting.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let server = server.clone();
        tokio::spawn(async move {
            run(jobs, pool, server).await;
            drop(turn);
        });
    }
}

async fn run(jobs: Vec<Job>, pool: PgPool, server: tokio::runtime::Handle) {
    let state = jobs[0].state.clone();
    let (members, dones): (Vec<Member>, Vec<_>) = jobs.into_iter().map(|j| (j.member, j.done)).unzip();
    let members = Arc::new(members);
    meters::wechat_batch(members.len());
    // Its own task, so a panic inside is caught here; aborted at the deadline (which rolls it back).
    let task = tokio::spawn(answer_batch(state.clone(), pool, members.clone()));
    let abort = task.abort_handle();
    let answers = match tokio::time::timeout(DEADLINE, task).await {
        Ok(Ok(Ok(answers))) => answers,
        failed => {
            abort.abort();
            match failed {
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, size = members.len(), "a batch failed; answering alone"),
                Ok(Err(_)) => tracing::error!(size = members.len(), "a batch panicked; answering alone"),
                _ => tracing::warn!(size = members.len(), "a batch missed its deadline; answering alone"),
            }
            // Alone, on the server's runtime and pool, as before batching.
            for (i, done) in dones.into_iter().enumerate() {
                let (state, members) = (state.clone(), members.clone());
                server.spawn(async move {
                    let member = &members[i];
                    let mut done = done;
                    // Given up when `/wechat` has answered busy at its own
                    // deadline: rolled back then, as a message answered alone is.
                    let signed = member.signed();
                    let answer = tokio::select! {
                        () = done.closed() => return,
                        answer = answer_once(&state, &member.msg, &signed) => answer,
                    };
                    let _ = done.send(answer);
                });
            }
            return;
        }
    };
    for (done, answer) in dones.into_iter().zip(answers) {
        let _ = done.send(answer);
    }
}

/// What a member is within its batch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Claimed in the database (how it went: `recorded`).
    Lead,
    /// The same message as an earlier lead (a retry in the same batch): that one's answer.
    Copy(usize),
    /// The signed query of an earlier lead, carrying another message.
    Replayed,
}

/// Each member's role, in order, as answering them one after the other
/// would decide it: only earlier leads the database did not refuse count
/// (`refused`: a forged message under a spent query must neither spend that
/// query for a later genuine retry nor stand for a later genuine delivery).
fn roles(members: &[Member], keys: &[String], refused: &[bool]) -> Vec<Role> {
    let mut roles: Vec<Role> = Vec::with_capacity(members.len());
    for (i, member) in members.iter().enumerate() {
        let counts = |j: &usize| roles[*j] == Role::Lead && !refused[*j];
        let same_pair = |j: &usize| members[*j].timestamp == member.timestamp && members[*j].nonce == member.nonce;
        // A query already carrying another message refuses this one (even a
        // copy of a third); the same message again gets its first answer.
        let role = if (0..i).filter(counts).any(|j| same_pair(&j) && keys[j] != keys[i]) {
            Role::Replayed
        } else if let Some(j) = (0..i).filter(counts).find(|j| keys[*j] == keys[i]) {
            Role::Copy(j)
        } else {
            Role::Lead
        };
        roles.push(role);
    }
    roles
}

/// One transaction for the whole batch; each member's answer in order.
async fn answer_batch(
    state: AppState,
    pool: PgPool,
    members: Arc<Vec<Member>>,
) -> Result<Vec<Result<Answer, AppError>>, AppError> {
    let keys: Vec<String> = members.iter().map(|m| m.msg.dedup_key()).collect();
    let mut tx = pool.begin().await?;
    // Claimed in rounds: a lead the database refuses as a replay no longer
    // counts, so the members it decided are decided again and the new leads
    // claimed. Leads stay leads (fewer leads count, never more), so this ends;
    // a second round needs a forged message in the batch.
    let mut recorded: Vec<Option<Recorded>> = members.iter().map(|_| None).collect();
    let mut refused = vec![false; members.len()];
    let roles = loop {
        let roles = roles(&members, &keys, &refused);
        let new: Vec<usize> = (0..members.len()).filter(|&i| roles[i] == Role::Lead && recorded[i].is_none()).collect();
        if new.is_empty() {
            break roles;
        }
        let claims: Vec<Claim> = new
            .iter()
            .map(|&i| Claim { dedup_key: &keys[i], openid: &members[i].msg.from_user, signed: members[i].signed() })
            .collect();
        for (&i, r) in new.iter().zip(records::claim_many(&mut tx, &claims).await?) {
            refused[i] = r == Recorded::Replayed;
            recorded[i] = Some(r);
        }
    };
    let leads: Vec<usize> = (0..members.len()).filter(|&i| roles[i] == Role::Lead).collect();
    let fresh: Vec<usize> = leads.iter().copied().filter(|&i| recorded[i] == Some(Recorded::First)).collect();
    let bookings: Vec<(&Message, ActivityRef)> =
        fresh.iter().map(|&i| (&members[i].msg, members[i].activity.clone())).collect();
    let handled = bot::handle_bookings(&state, &mut tx, &bookings).await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut answers: Vec<Option<Result<Answer, AppError>>> = members.iter().map(|_| None).collect();
    let mut replies: Vec<(&str, String)> = Vec::new();
    let mut unanswered: Vec<Claim> = Vec::new();
    for (&i, handled) in fresh.iter().zip(handled.handled) {
        let member = &members[i];
        answers[i] = Some(match handled {
            Ok(handled) => {
                let xml = reply::render(&handled.reply, &member.msg.from_user, &member.msg.to_user, now);
                replies.push((&keys[i], xml.clone()));
                Ok(Answer::Reply { xml, command: handled.command, outcome: handled.outcome })
            }
            Err(e) => {
                unanswered.push(Claim { dedup_key: &keys[i], openid: &member.msg.from_user, signed: member.signed() });
                Err(e)
            }
        });
    }
    let texts: Vec<(&str, &str)> = replies.iter().map(|(k, x)| (*k, x.as_str())).collect();
    records::answer_many(&mut tx, &texts, &unanswered, handled.changed).await?;
    tx.commit().await?;
    // Counted once committed, as `answer_once` does.
    for &i in &fresh {
        if let Some(Ok(Answer::Reply { outcome: "booked", .. })) = answers[i] {
            meters::booked(meters::Via::Wechat);
        }
    }

    // Answered before (a retry that another transaction answered first): its first reply.
    let again: Vec<&str> =
        leads.iter().filter(|&&i| recorded[i] == Some(Recorded::Again)).map(|&i| keys[i].as_str()).collect();
    let stored = if again.is_empty() {
        Default::default()
    } else {
        records::stored_replies(&mut *pool.acquire().await?, &again).await?
    };
    let command = bot::BOOKING;
    for (i, role) in roles.iter().enumerate() {
        if answers[i].is_some() {
            continue;
        }
        answers[i] = Some(match *role {
            Role::Lead if recorded[i] == Some(Recorded::Replayed) => Ok(Answer::Replayed),
            Role::Lead => stored
                .get(&keys[i])
                .map(|xml| Answer::Reply { xml: xml.clone(), command, outcome: DUPLICATE })
                .ok_or_else(|| AppError::Internal("a recorded reply vanished".into())),
            Role::Replayed => Ok(Answer::Replayed),
            Role::Copy(j) => match &answers[j] {
                Some(Ok(Answer::Reply { xml, .. })) => {
                    Ok(Answer::Reply { xml: xml.clone(), command, outcome: DUPLICATE })
                }
                Some(Ok(Answer::Replayed)) => Ok(Answer::Replayed),
                _ => Err(AppError::Busy),
            },
        });
    }
    Ok(answers.into_iter().map(|a| a.unwrap_or(Err(AppError::Busy))).collect())
}

//! Failed-login throttling, in PostgreSQL so it holds across instances.
//!
//! Two limits, neither of which lets one address lock an admin out elsewhere:
//! - per (username, address): after [`FREE_FAILURES`] failures, each further
//!   attempt waits [`FIRST_DELAY_SECS`], doubling per failure up to [`MAX_DELAY_SECS`];
//! - per address, across usernames: at most [`PER_ADDRESS`] failures in
//!   [`ADDRESS_WINDOW_MINUTES`], so spraying usernames buys nothing.
//!
//! An IPv6 address counts as its /64: one host usually holds a whole /64, and
//! would otherwise get a fresh allowance from every address in it.
//!
//! An attempt is recorded as a failure *before* its password is checked, under
//! an advisory lock on its address, and forgotten if the password was right:
//! so parallel guesses see each other and none slips past the limit.

use std::{
    net::{IpAddr, Ipv6Addr},
    sync::LazyLock,
    time::Duration,
};

use sqlx::{PgConnection, PgPool};
use tokio::sync::Semaphore;

use crate::error::AppError;

/// Failures of one (username, address) that cost nothing.
pub const FREE_FAILURES: i64 = 5;
/// The wait after the first failure beyond the free ones; it doubles with each further one.
pub const FIRST_DELAY_SECS: i64 = 5;
/// The longest wait between two attempts of one (username, address).
pub const MAX_DELAY_SECS: i64 = 15 * 60;
/// How long a (username, address)'s failures count, unless a login succeeds.
pub const MEMORY_HOURS: i32 = 24;
/// Failures from one address (across usernames) allowed in [`ADDRESS_WINDOW_MINUTES`].
pub const PER_ADDRESS: i64 = 20;
pub const ADDRESS_WINDOW_MINUTES: i32 = 15;

/// Attempts from one address queue on one advisory lock, each holding a
/// pooled connection while it waits; this caps how many connections a login
/// flood can take from the students' requests at any moment.
const CHECKING_AT_ONCE: usize = 2;
static CHECKING: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(CHECKING_AT_ONCE));

/// Whether the password may be checked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Checked: the attempt is already recorded as a failure (see [`succeeded`]).
    Check,
    /// Refused unchecked; try again after this long.
    Wait(Duration),
}

/// What an address is throttled as: an IPv4 address itself, an IPv6 address its /64.
pub fn bucket(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("{}/64", Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
    }
}

/// How long (username, address) must wait after its latest failure, having failed `failures` times.
fn delay_after(failures: i64) -> i64 {
    if failures < FREE_FAILURES {
        return 0;
    }
    let doublings = (failures - FREE_FAILURES).min(32) as u32;
    FIRST_DELAY_SECS.saturating_mul(1 << doublings).min(MAX_DELAY_SECS)
}

/// Decides whether `username` may try a password from `address` (a [`bucket`])
/// and, if so, records the attempt as a failure in the same transaction.
pub async fn begin_attempt(pool: &PgPool, username: &str, address: &str) -> Result<Verdict, AppError> {
    let _slot = CHECKING.acquire().await.map_err(|e| AppError::Internal(e.to_string()))?;
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('login_failures'), hashtext($1))")
        .bind(address)
        .execute(&mut *tx)
        .await?;
    // Seconds since the pair's latest failure; age of the address's
    // PER_ADDRESS-th latest failure in its window (none while under the ceiling).
    let (failures, since_last, ceiling_age): (i64, Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT count(*), extract(epoch FROM clock_timestamp() - max(at))::float8, \
                (SELECT extract(epoch FROM clock_timestamp() - at)::float8 FROM login_failures \
                 WHERE address = $2 AND at > clock_timestamp() - make_interval(mins => $4) \
                 ORDER BY at DESC OFFSET $5 - 1 LIMIT 1) \
         FROM login_failures \
         WHERE username = $1 AND address = $2 AND at > clock_timestamp() - make_interval(hours => $3)",
    )
    .bind(username)
    .bind(address)
    .bind(MEMORY_HOURS)
    .bind(ADDRESS_WINDOW_MINUTES)
    .bind(PER_ADDRESS)
    .fetch_one(&mut *tx)
    .await?;
    let pair_wait = since_last.map_or(0.0, |since| delay_after(failures) as f64 - since);
    let address_wait = ceiling_age.map_or(0.0, |age| f64::from(ADDRESS_WINDOW_MINUTES * 60) - age);
    let wait = pair_wait.max(address_wait);
    if wait > 0.0 {
        // Nothing written; the transaction only held the lock.
        tx.rollback().await?;
        return Ok(Verdict::Wait(Duration::from_secs(wait.ceil() as u64)));
    }
    sqlx::query("INSERT INTO login_failures (username, address, at) VALUES ($1, $2, clock_timestamp())")
        .bind(username)
        .bind(address)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Verdict::Check)
}

/// The password was right: this (username, address)'s failures, the attempt
/// just recorded included, are forgotten. Other addresses' are not.
pub async fn succeeded(conn: &mut PgConnection, username: &str, address: &str) -> Result<(), AppError> {
    sqlx::query("DELETE FROM login_failures WHERE username = $1 AND address = $2")
        .bind(username)
        .bind(address)
        .execute(conn)
        .await?;
    Ok(())
}

/// Forgets failures too old to count for anything (housekeeping).
pub async fn forget_old(conn: &mut PgConnection) -> Result<u64, AppError> {
    Ok(sqlx::query("DELETE FROM login_failures WHERE at < now() - make_interval(hours => $1)")
        .bind(MEMORY_HOURS)
        .execute(conn)
        .await?
        .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_after_the_free_failures_up_to_the_cap() {
        let delays: Vec<i64> = (0..=16).map(delay_after).collect();
        assert_eq!(&delays[..5], &[0; 5]);
        assert_eq!(&delays[5..12], &[5, 10, 20, 40, 80, 160, 320]);
        assert_eq!(&delays[12..], &[640, 900, 900, 900, 900]);
        assert_eq!(delay_after(i64::MAX), MAX_DELAY_SECS);
    }

    #[test]
    fn an_ipv6_address_counts_as_its_64() {
        let b = |s: &str| bucket(s.parse().unwrap());
        assert_eq!(b("198.51.100.7"), "198.51.100.7");
        assert_eq!(b("::ffff:198.51.100.7"), "198.51.100.7");
        assert_eq!(b("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
        assert_eq!(b("2001:db8:1:2::1"), b("2001:db8:1:2:ffff::9"));
        assert_ne!(b("2001:db8:1:2::1"), b("2001:db8:1:3::1"));
    }
}

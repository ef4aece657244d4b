//! The draw's arithmetic, exactly as README "The lottery" states it, and its
//! check from the published `draw.json` alone. No database here: the server
//! draws with these functions and `wechat-ticket lottery verify` re-runs them,
//! so what is published is what was computed.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// `hex(sha256(server_seed))`, shown from publication on.
pub fn commitment(server_seed: &[u8]) -> String {
    hex::encode(sha256(&[server_seed]))
}

/// How many random bytes an entry's secret has.
pub const SECRET_BYTES: usize = 16;

/// An entry's public id: `hex(sha256(server_seed ‖ entry_secret ‖ utf8(student_id)))`.
/// The secret is the entry's and only its student is given it: the draw
/// publishes `server_seed` and every eid, and student IDs are easy to guess,
/// so without it anyone could tell who registered and who won.
pub fn eid(server_seed: &[u8], entry_secret: &[u8], student_id: &str) -> String {
    hex::encode(sha256(&[server_seed, entry_secret, student_id.as_bytes()]))
}

/// `hex(sha256(utf8(join("\n", sorted(eids)))))`.
pub fn pool_hash(eids: &[String]) -> String {
    let mut sorted: Vec<&str> = eids.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    hex::encode(sha256(&[sorted.join("\n").as_bytes()]))
}

/// `sha256(server_seed ‖ ascii(pool_hash) ‖ utf8(public_value))`; no public
/// value is the empty string.
pub fn draw_seed(server_seed: &[u8], pool_hash: &str, public_value: Option<&str>) -> [u8; 32] {
    sha256(&[server_seed, pool_hash.as_bytes(), public_value.unwrap_or("").as_bytes()])
}

/// The entries in draw order: by `hex(sha256(seed ‖ ascii(eid)))` ascending.
pub fn ranked(seed: &[u8; 32], eids: &[String]) -> Vec<String> {
    let mut keyed: Vec<(String, &String)> =
        eids.iter().map(|eid| (hex::encode(sha256(&[seed, eid.as_bytes()])), eid)).collect();
    keyed.sort();
    keyed.into_iter().map(|(_, eid)| eid.clone()).collect()
}

/// What `/activities/{id}/draw.json` publishes after the draw.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Published {
    /// The activity's key, so a file is checked against the activity it claims.
    pub activity: String,
    pub commitment: String,
    /// Hex, revealed by the draw.
    pub server_seed: String,
    pub pool_hash: String,
    /// The value the seed used (`null`: none).
    pub public_value: Option<String>,
    /// What the admin announced before the close, for comparison with `public_value`.
    #[serde(default)]
    pub public_value_announced: Option<String>,
    pub entries: usize,
    pub capacity: usize,
    /// Every entry's eid, in draw order: the first `capacity` won.
    pub eids: Vec<String>,
}

/// What a successful check found.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub entries: usize,
    pub winners: usize,
}

impl Published {
    /// Recomputes everything that can be recomputed and says every mismatch.
    pub fn verify(&self) -> Result<Verified, Vec<String>> {
        let mut wrong = Vec::new();
        let seed = match hex::decode(&self.server_seed) {
            Ok(seed) if seed.len() == 32 => seed,
            _ => return Err(vec!["server_seed is not 32 bytes of hex".into()]),
        };
        if commitment(&seed) != self.commitment {
            wrong.push("sha256(server_seed) is not the commitment published before the draw".into());
        }
        if self
            .eids
            .iter()
            .any(|e| e.len() != 64 || !e.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        {
            wrong.push("an eid is not 64 lower-case hex digits".into());
        }
        let distinct: std::collections::HashSet<&String> = self.eids.iter().collect();
        if distinct.len() != self.eids.len() {
            wrong.push("an eid appears twice".into());
        }
        if self.eids.len() != self.entries {
            wrong.push(format!("entries says {} but {} eids are listed", self.entries, self.eids.len()));
        }
        let pool = pool_hash(&self.eids);
        if pool != self.pool_hash {
            wrong.push(format!("pool_hash of the listed eids is {pool}, not {}", self.pool_hash));
        }
        let order = ranked(&draw_seed(&seed, &self.pool_hash, self.public_value.as_deref()), &self.eids);
        if order != self.eids {
            let first = order.iter().zip(&self.eids).position(|(a, b)| a != b).unwrap_or(0);
            wrong.push(format!("the eids are not in draw order (first difference at rank {})", first + 1));
        }
        if wrong.is_empty() {
            Ok(Verified { entries: self.entries, winners: self.entries.min(self.capacity) })
        } else {
            Err(wrong)
        }
    }

    /// A student's eid, recomputed from what only they hold (their student
    /// ID and their entry's secret, hex) and the published seed.
    pub fn eid_of(&self, student_id: &str, entry_secret: &str) -> Option<String> {
        let seed = hex::decode(&self.server_seed).ok()?;
        let secret = hex::decode(entry_secret.trim()).ok().filter(|s| s.len() == SECRET_BYTES)?;
        Some(eid(&seed, &secret, student_id))
    }

    /// An eid's rank (1 is first) and whether it won.
    pub fn rank_of(&self, eid: &str) -> Option<(usize, bool)> {
        let rank = self.eids.iter().position(|e| e == eid)? + 1;
        Some((rank, rank <= self.capacity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entry `i`'s secret, in the tests.
    fn secret(i: usize) -> [u8; SECRET_BYTES] {
        [i as u8; SECRET_BYTES]
    }

    fn published(n: usize, capacity: usize, public_value: Option<&str>) -> Published {
        let seed = [7u8; 32];
        let eids: Vec<String> = (0..n).map(|i| eid(&seed, &secret(i), &format!("2026{i:06}"))).collect();
        let pool = pool_hash(&eids);
        let order = ranked(&draw_seed(&seed, &pool, public_value), &eids);
        Published {
            activity: "gala".into(),
            commitment: commitment(&seed),
            server_seed: hex::encode(seed),
            pool_hash: pool,
            public_value: public_value.map(str::to_string),
            public_value_announced: public_value.map(str::to_string),
            entries: n,
            capacity,
            eids: order,
        }
    }

    #[test]
    fn the_formulas_are_the_readmes() {
        // Known answers, computed by hand with sha256sum (README shows the commands).
        let seed = [0u8; 32];
        assert_eq!(commitment(&seed), "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925");
        let secret = [9u8; SECRET_BYTES];
        assert_eq!(
            eid(&seed, &secret, "2026000001"),
            hex::encode(Sha256::digest([&seed[..], &secret[..], b"2026000001"].concat()))
        );
        let eids = vec!["b".repeat(64), "a".repeat(64)];
        assert_eq!(pool_hash(&eids), hex::encode(Sha256::digest(format!("{}\n{}", "a".repeat(64), "b".repeat(64)))));
        let with = draw_seed(&seed, &"c".repeat(64), Some("福彩 123"));
        let by_hand: [u8; 32] =
            Sha256::digest([&seed[..], "c".repeat(64).as_bytes(), "福彩 123".as_bytes()].concat()).into();
        assert_eq!(with, by_hand);
        assert_eq!(draw_seed(&seed, "x", None), draw_seed(&seed, "x", Some("")));
    }

    #[test]
    fn a_true_draw_verifies_and_every_tampering_is_caught() {
        let good = published(500, 50, Some("2026-12-05 体彩 07 12 19 24 31"));
        assert_eq!(good.verify(), Ok(Verified { entries: 500, winners: 50 }));
        assert_eq!(published(3, 50, None).verify(), Ok(Verified { entries: 3, winners: 3 }));

        let mut swapped = good.clone();
        swapped.eids.swap(10, 60);
        assert!(swapped.verify().is_err());
        let mut value = good.clone();
        value.public_value = Some("2026-12-05 体彩 07 12 19 24 32".into());
        assert!(value.verify().is_err());
        let mut seed = good.clone();
        seed.server_seed = hex::encode([8u8; 32]);
        assert!(seed.verify().unwrap_err().iter().any(|w| w.contains("commitment")));
        let mut dropped = good.clone();
        dropped.eids.remove(3);
        dropped.entries -= 1;
        assert!(dropped.verify().unwrap_err().iter().any(|w| w.contains("pool_hash")));
        let mut twice = good.clone();
        twice.eids[1] = twice.eids[0].clone();
        assert!(twice.verify().is_err());
    }

    #[test]
    fn a_student_finds_their_rank_by_their_student_id_and_secret_and_nobody_else_can() {
        let p = published(20, 5, None);
        let mine = p.eid_of("2026000007", &hex::encode(secret(7))).unwrap();
        let (rank, won) = p.rank_of(&mine).unwrap();
        assert_eq!(p.eids[rank - 1], eid(&[7u8; 32], &secret(7), "2026000007"));
        assert_eq!(won, rank <= 5);
        assert_eq!(p.rank_of(&p.eid_of("2026000007", &hex::encode(secret(8))).unwrap()), None, "another's secret");
        assert_eq!(p.eid_of("2026000007", "not hex"), None);
        // The published seed and a guessed student ID alone find nobody.
        let seed = hex::decode(&p.server_seed).unwrap();
        let guesses =
            (0..20).map(|i| hex::encode(Sha256::digest([&seed[..], format!("2026{i:06}").as_bytes()].concat())));
        assert!(guesses.into_iter().all(|g| p.rank_of(&g).is_none()));
    }
}

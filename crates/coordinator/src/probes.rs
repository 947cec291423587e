//! The masked-value ledger: how hard each consumer has probed the values
//! it sees masked, per grant and day.
//!
//! A masked field accepts only `=` and `IN`, but each value in such a
//! predicate still asks "is the hidden value this one?". Pinning one row by
//! an unmasked field and halving a list of candidate birth dates once
//! recovered a masked resident ID in 13 queries. Two bounds stop that:
//!
//! - **breadth**: distinct values tested per grant and day, at most the
//!   grant's budget (the owner sets it when approving; default 500).
//!   Recovering an ID means testing a candidate list of about 2,700 birth
//!   dates (about 1,700 for a plausible age range), so it takes days; a
//!   search among fewer candidates than the budget stays possible.
//! - **depth**: the same value tested at most [`MAX_TESTS_PER_VALUE`]
//!   times per grant and day, so a list within the budget cannot be
//!   halved over and over with the same values.
//!
//! A query over either bound is refused before its ticket is signed, and
//! every decision record carries the count, so the owner sees the probing
//! in `exchange audit log`. Values are kept only as keyed digests: in
//! memory for the day, and in one store tree per day
//! (`probes-YYYY-MM-DD`), written behind the queries once a second
//! ([`ProbeLedger::write_behind`]) and read back at start; earlier days'
//! trees are dropped. A kill -9 can forget the last second or so of probes
//! (like the row quota, the ledger does not wait for the disk on the query
//! path).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use exchange_storage::{Db, StorageError, Tree};

/// How often one value may be tested against a masked field per grant and
/// day: a caseworker may look the same person up again, but no more.
pub const MAX_TESTS_PER_VALUE: u32 = 3;

/// Why a query's probes were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeRefusal {
    /// The query would take the day's distinct values past the budget.
    Budget { tested_today: u64, new: u64 },
    /// A value has been tested as often as allowed today.
    Repeated { field: String },
}

/// Per-day counts of tested values, by grant.
pub struct ProbeLedger {
    db: Db,
    key: ring::hmac::Key,
    today: Mutex<Day>,
}

/// One day's counts, and the entries not yet written to the store.
#[derive(Default)]
struct Day {
    day: String,
    tree: Option<Tree>,
    grants: HashMap<String, GrantProbes>,
}

#[derive(Default)]
struct GrantProbes {
    distinct: u64,
    tests: HashMap<[u8; 16], u32>,
    /// Values whose count changed since the last write-behind.
    dirty: HashSet<[u8; 16]>,
}

impl std::fmt::Debug for ProbeLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProbeLedger(..)")
    }
}

impl ProbeLedger {
    /// `secret` keys the digests, so the store does not hold values that a
    /// dictionary of IDs could match.
    pub fn open(db: &Db, secret: [u8; 32]) -> ProbeLedger {
        ProbeLedger {
            db: db.clone(),
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
            today: Mutex::new(Day::default()),
        }
    }

    /// Counts the values `(field, value)` tested by one query under
    /// `grant_id` on `day`, if that keeps within `budget` distinct values
    /// and [`MAX_TESTS_PER_VALUE`] tests of each; otherwise counts nothing.
    /// Returns the distinct values tested that day after this query.
    pub fn admit(
        &self,
        grant_id: &str,
        day: &str,
        budget: u64,
        values: &[(String, String)],
    ) -> Result<Result<u64, ProbeRefusal>, StorageError> {
        let mut digests: Vec<([u8; 16], &str)> = values
            .iter()
            .map(|(field, value)| (self.digest(grant_id, field, value), field.as_str()))
            .collect();
        digests.sort_unstable();
        digests.dedup_by_key(|(d, _)| *d);
        let mut today = self.today.lock().unwrap_or_else(|p| p.into_inner());
        self.turn_to(&mut today, day)?;
        let Day { grants, .. } = &mut *today;
        if !grants.contains_key(grant_id) {
            grants.insert(grant_id.to_string(), GrantProbes::default());
        }
        let probes = grants.get_mut(grant_id).expect("inserted above");
        let tests = |d: &[u8; 16]| probes.tests.get(d).copied().unwrap_or(0);
        if let Some((_, field)) = digests
            .iter()
            .find(|(d, _)| tests(d) >= MAX_TESTS_PER_VALUE)
        {
            return Ok(Err(ProbeRefusal::Repeated {
                field: field.to_string(),
            }));
        }
        let new = digests.iter().filter(|(d, _)| tests(d) == 0).count() as u64;
        if probes.distinct + new > budget {
            return Ok(Err(ProbeRefusal::Budget {
                tested_today: probes.distinct,
                new,
            }));
        }
        for (digest, _) in &digests {
            *probes.tests.entry(*digest).or_insert(0) += 1;
            probes.dirty.insert(*digest);
        }
        probes.distinct += new;
        Ok(Ok(probes.distinct))
    }

    /// Writes the counts changed since the last call to the day's tree
    /// (without waiting for the disk). The coordinator calls it once a
    /// second and when it stops.
    pub fn write_behind(&self) -> Result<usize, StorageError> {
        let mut today = self.today.lock().unwrap_or_else(|p| p.into_inner());
        let Day { tree, grants, .. } = &mut *today;
        let Some(tree) = tree else {
            return Ok(0);
        };
        let mut written = 0;
        for (grant, probes) in grants.iter_mut() {
            if probes.dirty.is_empty() {
                continue;
            }
            for digest in probes.dirty.drain() {
                let tests = probes.tests.get(&digest).copied().unwrap_or(0);
                tree.insert_relaxed(&format!("{grant}:{}", hex::encode(digest)), &tests)?;
                written += 1;
            }
            tree.insert_relaxed(&format!("{grant}:distinct"), &probes.distinct)?;
        }
        Ok(written)
    }

    /// Makes `day` the current one: on the first call, or when the date
    /// changes, other days' trees are dropped (with any of their counts not
    /// yet written: they no longer bound anything) and the day's tree is
    /// read into memory.
    fn turn_to(&self, today: &mut Day, day: &str) -> Result<(), StorageError> {
        if today.tree.is_some() && today.day == day {
            return Ok(());
        }
        let name = format!("probes-{day}");
        for old in self.db.tree_names()? {
            if old.starts_with("probes-") && old != name {
                self.db.drop_tree(&old)?;
            }
        }
        let tree = self.db.tree(&name)?;
        let mut grants: HashMap<String, GrantProbes> = HashMap::new();
        for (key, count) in tree.entries::<u64>()? {
            let Some((grant, rest)) = key.rsplit_once(':') else {
                continue;
            };
            let probes = grants.entry(grant.to_string()).or_default();
            if rest == "distinct" {
                probes.distinct = count;
            } else if let Ok(Ok(d)) = hex::decode(rest).map(<[u8; 16]>::try_from) {
                probes.tests.insert(d, count as u32);
            }
        }
        *today = Day {
            day: day.to_string(),
            tree: Some(tree),
            grants,
        };
        Ok(())
    }

    fn digest(&self, grant_id: &str, field: &str, value: &str) -> [u8; 16] {
        let mut context = ring::hmac::Context::with_key(&self.key);
        for part in [grant_id, field, value] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part.as_bytes());
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&context.sign().as_ref()[..16]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(ids: std::ops::Range<u32>) -> Vec<(String, String)> {
        ids.map(|i| ("owner_id".to_string(), format!("id-{i}")))
            .collect()
    }

    #[test]
    fn breadth_and_depth_are_bounded_per_grant_and_day() {
        let db = Db::temporary().unwrap();
        let ledger = ProbeLedger::open(&db, [7; 32]);
        let day = "2026-11-30";
        assert_eq!(
            ledger.admit("G-1", day, 100, &values(0..60)).unwrap(),
            Ok(60)
        );
        // 60 + 50 new would pass 100: refused, and nothing counted.
        assert_eq!(
            ledger.admit("G-1", day, 100, &values(50..110)).unwrap(),
            Err(ProbeRefusal::Budget {
                tested_today: 60,
                new: 50
            })
        );
        assert_eq!(
            ledger.admit("G-1", day, 100, &values(0..40)).unwrap(),
            Ok(60)
        );
        // Repeats within one query count once.
        let twice = [values(0..1), values(0..1)].concat();
        assert_eq!(ledger.admit("G-1", day, 100, &twice).unwrap(), Ok(60));
        // id-0 has now been tested three times: a fourth is refused.
        assert_eq!(
            ledger.admit("G-1", day, 100, &values(0..1)).unwrap(),
            Err(ProbeRefusal::Repeated {
                field: "owner_id".into()
            })
        );
        // Another grant, or another day, starts afresh; the old day's tree
        // is dropped.
        assert_eq!(ledger.admit("G-2", day, 100, &values(0..1)).unwrap(), Ok(1));
        assert_eq!(
            ledger
                .admit("G-1", "2026-12-01", 100, &values(0..1))
                .unwrap(),
            Ok(1)
        );
        assert!(!db
            .tree_names()
            .unwrap()
            .iter()
            .any(|n| n == "probes-2026-11-30"));
    }

    #[test]
    fn counts_written_behind_are_read_back_by_a_new_ledger() {
        let db = Db::temporary().unwrap();
        let day = "2026-11-30";
        let ledger = ProbeLedger::open(&db, [7; 32]);
        assert_eq!(
            ledger.admit("G-1", day, 100, &values(0..60)).unwrap(),
            Ok(60)
        );
        for _ in 0..2 {
            ledger
                .admit("G-1", day, 100, &values(0..1))
                .unwrap()
                .unwrap();
        }
        assert_eq!(ledger.write_behind().unwrap(), 60);
        assert_eq!(ledger.write_behind().unwrap(), 0);
        // As after a restart: the day's counts come back from the store.
        let again = ProbeLedger::open(&db, [7; 32]);
        assert_eq!(
            again.admit("G-1", day, 100, &values(50..110)).unwrap(),
            Err(ProbeRefusal::Budget {
                tested_today: 60,
                new: 50
            })
        );
        assert_eq!(
            again.admit("G-1", day, 100, &values(0..1)).unwrap(),
            Err(ProbeRefusal::Repeated {
                field: "owner_id".into()
            })
        );
    }
}

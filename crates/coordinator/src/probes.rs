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
//! in `exchange audit log`. Values are kept only as keyed digests, one tree
//! per day (`probes-YYYY-MM-DD`); earlier days are dropped. Counts are
//! written without waiting for the disk, like the row quota: a kill -9 can
//! forget the last 500 ms of probes.

use std::collections::BTreeMap;
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

/// Per-day trees of tested values.
pub struct ProbeLedger {
    db: Db,
    secret: [u8; 32],
    today: Mutex<Option<(String, Tree)>>,
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
            secret,
            today: Mutex::new(None),
        }
    }

    /// Counts the values `(field, value)` tested by one query under
    /// `grant_id` today, if that keeps within `budget` distinct values and
    /// [`MAX_TESTS_PER_VALUE`] tests of each; otherwise counts nothing.
    /// Returns the distinct values tested today after this query.
    pub fn admit(
        &self,
        grant_id: &str,
        day: &str,
        budget: u64,
        values: &[(String, String)],
    ) -> Result<Result<u64, ProbeRefusal>, StorageError> {
        let mut today = self.today.lock().unwrap_or_else(|p| p.into_inner());
        let tree = self.tree_for(&mut today, day)?;
        let mut counts: BTreeMap<String, (u32, &str)> = BTreeMap::new();
        for (field, value) in values {
            let key = format!("{grant_id}:{}", self.digest(grant_id, field, value));
            if let std::collections::btree_map::Entry::Vacant(slot) = counts.entry(key) {
                let before = tree.get::<u32>(slot.key())?.unwrap_or(0);
                slot.insert((before, field.as_str()));
            }
        }
        if let Some((_, field)) = counts.values().find(|(n, _)| *n >= MAX_TESTS_PER_VALUE) {
            return Ok(Err(ProbeRefusal::Repeated {
                field: field.to_string(),
            }));
        }
        let total_key = format!("{grant_id}:distinct");
        let tested_today = tree.get::<u64>(&total_key)?.unwrap_or(0);
        let new = counts.values().filter(|(n, _)| *n == 0).count() as u64;
        if tested_today + new > budget {
            return Ok(Err(ProbeRefusal::Budget { tested_today, new }));
        }
        for (key, (before, _)) in &counts {
            tree.insert_relaxed(key, &(before + 1))?;
        }
        tree.insert_relaxed(&total_key, &(tested_today + new))?;
        Ok(Ok(tested_today + new))
    }

    /// Today's tree, opened once per day; earlier days' trees are dropped.
    fn tree_for<'a>(
        &self,
        today: &'a mut Option<(String, Tree)>,
        day: &str,
    ) -> Result<&'a Tree, StorageError> {
        let name = format!("probes-{day}");
        if today.as_ref().is_none_or(|(d, _)| d != day) {
            for old in self.db.tree_names() {
                if old.starts_with("probes-") && old != name {
                    self.db.drop_tree(&old)?;
                }
            }
            *today = Some((day.to_string(), self.db.tree(&name)?));
        }
        Ok(&today.as_ref().expect("set above").1)
    }

    fn digest(&self, grant_id: &str, field: &str, value: &str) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.secret);
        let mut context = ring::hmac::Context::with_key(&key);
        for part in [grant_id, field, value] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part.as_bytes());
        }
        hex::encode(&context.sign().as_ref()[..16])
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
        assert!(!db.tree_names().iter().any(|n| n == "probes-2026-11-30"));
    }
}

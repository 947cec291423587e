//! The audit view on sled: the embedded counterpart of PostgreSQL's
//! `exchange_audit_queries`, for a coordinator that runs alone. One entry
//! per query (or access decision) under its key, merged key by key as the
//! parts arrive, with ordered index trees so that `audit log` reads only
//! the entries it lists:
//!
//! - `by-time`: time, then key, for every query;
//! - `by-party`: department, time, then key, once for the consumer and
//!   once for the owner;
//! - `changes`: a change number, then key, for the entry's latest version,
//!   which is what the change feed reads.
//!
//! Everything here is derived from the coordinator's audit log and can be
//! rebuilt from it, so writes are not flushed one by one (sled writes them
//! within 500 ms) and the trees are left out of `state export`.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::postgres::{AuditChange, AuditCursor, AuditEntry, AuditFilter};
use crate::{Result, StorageError};

/// Names of trees derived from the audit logs start with this; they are
/// neither exported nor counted as state.
pub const DERIVED_PREFIX: &str = "audit-index/";

const ENTRIES: &str = "audit-index/entries";
const BY_TIME: &str = "audit-index/by-time";
const BY_PARTY: &str = "audit-index/by-party";
const CHANGES: &str = "audit-index/changes";

/// One entry as held: the columns it is found by and the merged JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Held {
    kind: String,
    time_ms: Option<i64>,
    consumer: Option<String>,
    owner: Option<String>,
    dataset: Option<String>,
    purpose: Option<String>,
    entry: Map<String, Value>,
    /// The change number of this version.
    changed: u64,
}

impl Held {
    /// Index keys of this entry: `(tree, key)`. Only queries with a known
    /// time are listed.
    fn index_keys(&self, key: &str) -> Vec<(usize, Vec<u8>)> {
        let Some(time_ms) = self.time_ms.filter(|_| self.kind == "query") else {
            return Vec::new();
        };
        let mut keys = vec![(0, [&time_key(time_ms)[..], key.as_bytes()].concat())];
        let mut parties: Vec<&String> = self.consumer.iter().chain(&self.owner).collect();
        parties.dedup();
        for party in parties {
            keys.push((1, party_key(party, time_ms, key)));
        }
        keys
    }

    fn selected_by(&self, filter: &AuditFilter) -> bool {
        let is = |column: &Option<String>, value: &str| column.as_deref() == Some(value);
        filter
            .viewer
            .as_ref()
            .is_none_or(|me| is(&self.consumer, me) || is(&self.owner, me))
            && (filter.dataset.is_empty() || is(&self.dataset, &filter.dataset))
            && (filter.consumer.is_empty() || is(&self.consumer, &filter.consumer))
            && (filter.owner.is_empty() || is(&self.owner, &filter.owner))
            && (filter.purpose.is_empty()
                || self
                    .purpose
                    .as_ref()
                    .is_some_and(|p| p.contains(&filter.purpose)))
    }
}

/// A time as 8 bytes that sort as the times do.
fn time_key(time_ms: i64) -> [u8; 8] {
    ((time_ms as u64) ^ (1 << 63)).to_be_bytes()
}

fn party_key(party: &str, time_ms: i64, key: &str) -> Vec<u8> {
    [party.as_bytes(), &[0], &time_key(time_ms), key.as_bytes()].concat()
}

fn decode(bytes: &[u8]) -> Result<Held> {
    serde_json::from_slice(bytes).map_err(|source| StorageError::Decode {
        tree: ENTRIES.into(),
        key: String::new(),
        source,
    })
}

pub(crate) struct SledAudit {
    db: sled::Db,
    /// entries, by-time, by-party, changes.
    trees: [sled::Tree; 4],
    /// One writer at a time: each write reads what is held, then merges.
    writing: Mutex<()>,
}

impl SledAudit {
    pub(crate) fn open(db: &sled::Db) -> Result<SledAudit> {
        Ok(SledAudit {
            db: db.clone(),
            trees: [
                db.open_tree(ENTRIES)?,
                db.open_tree(BY_TIME)?,
                db.open_tree(BY_PARTY)?,
                db.open_tree(CHANGES)?,
            ],
            writing: Mutex::new(()),
        })
    }

    /// Merges each entry (distinct keys) into what is held under its key,
    /// as PostgreSQL's `put_audit_entries` does: JSON keys and known
    /// columns are added, and an entry that adds nothing changes nothing.
    pub(crate) fn put(&self, entries: Vec<AuditEntry>) -> Result<()> {
        let _one_writer = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let mut batches: [sled::Batch; 4] = Default::default();
        for e in entries {
            let held = match self.trees[0].get(e.query_id.as_bytes())? {
                Some(bytes) => Some(decode(&bytes)?),
                None => None,
            };
            let Some(next) = self.merged(held.as_ref(), &e)? else {
                continue;
            };
            if let Some(old) = &held {
                for (tree, key) in old.index_keys(&e.query_id) {
                    batches[tree + 1].remove(key);
                }
                batches[3].remove(&old.changed.to_be_bytes());
            }
            for (tree, key) in next.index_keys(&e.query_id) {
                batches[tree + 1].insert(key, &[]);
            }
            batches[3].insert(&next.changed.to_be_bytes(), e.query_id.as_bytes());
            let bytes = serde_json::to_vec(&next).map_err(StorageError::Encode)?;
            batches[0].insert(e.query_id.as_bytes(), bytes);
        }
        // The entry before its index keys and its change number, so that
        // whoever finds the key finds the entry.
        for (tree, batch) in self.trees.iter().zip(batches) {
            tree.apply_batch(batch)?;
        }
        Ok(())
    }

    /// `held` with `e` merged in, or `None` when `e` adds nothing.
    fn merged(&self, held: Option<&Held>, e: &AuditEntry) -> Result<Option<Held>> {
        let add: Map<String, Value> =
            serde_json::from_slice(&e.entry).map_err(|source| StorageError::Decode {
                tree: ENTRIES.into(),
                key: e.query_id.clone(),
                source,
            })?;
        if let Some(h) = held {
            if add.iter().all(|(k, v)| h.entry.get(k) == Some(v)) {
                return Ok(None);
            }
        }
        let mut next = held.cloned().unwrap_or_else(|| Held {
            kind: e.kind.clone(),
            ..Held::default()
        });
        next.time_ms = e.time_ms.or(next.time_ms);
        for (column, value) in [
            (&mut next.consumer, &e.consumer),
            (&mut next.owner, &e.owner),
            (&mut next.dataset, &e.dataset),
            (&mut next.purpose, &e.purpose),
        ] {
            if value.is_some() {
                column.clone_from(value);
            }
        }
        next.entry.extend(add);
        next.changed = self.db.generate_id()?;
        Ok(Some(next))
    }

    /// The entries `filter` selects, oldest first: read through the
    /// department index when the filter names one, else the time index.
    pub(crate) fn select(&self, filter: &AuditFilter) -> Result<Vec<Vec<u8>>> {
        let party = [&filter.consumer, &filter.owner]
            .into_iter()
            .find(|p| !p.is_empty())
            .or(filter.viewer.as_ref());
        let (tree, prefix) = match party {
            Some(p) => (&self.trees[2], [p.as_bytes(), &[0]].concat()),
            None => (&self.trees[1], Vec::new()),
        };
        let low = [&prefix[..], &time_key(filter.since_ms.max(0))].concat();
        let high = match filter.until_ms {
            0 => [&prefix[..], &[0xff; 9]].concat(),
            until => [&prefix[..], &time_key(until)].concat(),
        };
        let keys = tree.range(low..high).keys();
        let keys: Box<dyn Iterator<Item = sled::Result<sled::IVec>>> = match filter.newest {
            Some(_) => Box::new(keys.rev()),
            None => Box::new(keys),
        };
        let mut out = Vec::new();
        for key in keys {
            let key = key?;
            let query_id = &key[prefix.len() + 8..];
            let Some(bytes) = self.trees[0].get(query_id)? else {
                continue;
            };
            let held = decode(&bytes)?;
            if !held.selected_by(filter) {
                continue;
            }
            out.push(serde_json::to_vec(&held.entry).map_err(StorageError::Encode)?);
            if filter.newest.is_some_and(|n| out.len() >= n as usize) {
                break;
            }
        }
        if filter.newest.is_some() {
            out.reverse();
        }
        Ok(out)
    }

    /// Entries changed after `cursor`, oldest change first, at most
    /// `limit`, and where the next call starts.
    pub(crate) fn changes(
        &self,
        cursor: &AuditCursor,
        limit: i64,
    ) -> Result<(Vec<AuditChange>, AuditCursor)> {
        // Change numbers start at 0; no cursor reads from the first.
        let start = cursor
            .changed
            .as_deref()
            .and_then(|c| c.parse::<u64>().ok())
            .map_or(0, |after| after.saturating_add(1));
        let mut next = cursor.clone();
        let mut out = Vec::new();
        for item in self.trees[3]
            .range(start.to_be_bytes()..)
            .take(limit.max(0) as usize)
        {
            let (number, key) = item?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let number = u64::from_be_bytes(number.as_ref().try_into().unwrap_or_default());
            next = AuditCursor {
                changed: Some(number.to_string()),
                key: key.clone(),
            };
            let Some(bytes) = self.trees[0].get(key.as_bytes())? else {
                continue;
            };
            let held = decode(&bytes)?;
            out.push(AuditChange {
                key,
                kind: held.kind,
                entry: serde_json::to_vec(&held.entry).map_err(StorageError::Encode)?,
            });
        }
        Ok((out, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Db;

    fn part(
        key: &str,
        time_ms: Option<i64>,
        parties: Option<(&str, &str)>,
        json: &str,
    ) -> AuditEntry {
        AuditEntry {
            query_id: key.into(),
            kind: "query".into(),
            time_ms,
            consumer: parties.map(|p| p.0.into()),
            owner: parties.map(|p| p.1.into()),
            dataset: parties.map(|p| format!("{}/people", p.1)),
            purpose: parties.map(|_| "benefit review".into()),
            entry: json.as_bytes().to_vec(),
        }
    }

    fn keys_of(entries: Vec<Vec<u8>>) -> Vec<String> {
        entries
            .iter()
            .map(|e| {
                serde_json::from_slice::<Value>(e).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn parts_merge_in_either_order_and_indexes_find_them() {
        let db = Db::temporary().unwrap();
        let table = db.audit_table().unwrap();
        // A completion before its decision, then the decision.
        table
            .put(vec![part("q2", None, None, r#"{"completion":1}"#)])
            .unwrap();
        table
            .put(vec![
                part(
                    "q2",
                    Some(2_000),
                    Some(("civil", "tax")),
                    r#"{"id":"q2","decision":1}"#,
                ),
                part(
                    "q1",
                    Some(1_000),
                    Some(("tax", "health")),
                    r#"{"id":"q1","decision":1}"#,
                ),
                part(
                    "q3",
                    Some(3_000),
                    Some(("civil", "health")),
                    r#"{"id":"q3","decision":1}"#,
                ),
            ])
            .unwrap();
        let all = table.select(AuditFilter::default()).unwrap();
        assert_eq!(keys_of(all.clone()), ["q1", "q2", "q3"]);
        let q2: Value = serde_json::from_slice(&all[1]).unwrap();
        assert_eq!(
            q2["completion"], 1,
            "the completion written first is kept: {q2}"
        );
        let tax = |newest, since_ms, until_ms| AuditFilter {
            viewer: Some("tax".into()),
            newest,
            since_ms,
            until_ms,
            ..AuditFilter::default()
        };
        assert_eq!(
            keys_of(table.select(tax(None, 0, 0)).unwrap()),
            ["q1", "q2"]
        );
        assert_eq!(keys_of(table.select(tax(Some(1), 0, 0)).unwrap()), ["q2"]);
        assert_eq!(keys_of(table.select(tax(None, 1_500, 0)).unwrap()), ["q2"]);
        assert_eq!(keys_of(table.select(tax(None, 0, 2_000)).unwrap()), ["q1"]);
        let by_owner = AuditFilter {
            owner: "health".into(),
            purpose: "benefit".into(),
            ..AuditFilter::default()
        };
        assert_eq!(keys_of(table.select(by_owner).unwrap()), ["q1", "q3"]);
        let nobody = AuditFilter {
            consumer: "tax".into(),
            purpose: "audit".into(),
            ..AuditFilter::default()
        };
        assert!(table.select(nobody).unwrap().is_empty());
        // Derived trees are not state.
        assert!(db
            .tree_names()
            .unwrap()
            .iter()
            .all(|n| !n.starts_with(DERIVED_PREFIX)));
    }

    #[test]
    fn the_change_feed_reads_each_latest_version_once() {
        let db = Db::temporary().unwrap();
        let table = db.audit_table().unwrap();
        table
            .put(vec![
                part("q1", Some(1_000), Some(("tax", "health")), r#"{"id":"q1"}"#),
                part("q2", Some(2_000), Some(("tax", "health")), r#"{"id":"q2"}"#),
            ])
            .unwrap();
        let (first, cursor) = table.changes(&AuditCursor::default(), 1).unwrap();
        assert_eq!(first.len(), 1);
        // A part that adds nothing is no change; one that adds is.
        table
            .put(vec![part("q1", None, None, r#"{"id":"q1"}"#)])
            .unwrap();
        table
            .put(vec![part("q1", None, None, r#"{"done":true}"#)])
            .unwrap();
        let (rest, cursor) = table.changes(&cursor, 100).unwrap();
        let keys: Vec<&str> = rest.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["q2", "q1"]);
        assert!(String::from_utf8_lossy(&rest[1].entry).contains("done"));
        assert!(table.changes(&cursor, 100).unwrap().0.is_empty());
    }
}

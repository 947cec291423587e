//! The node's subject index: which queries named a person or company (by
//! a digest of the key, never the key itself), and what each query served,
//! so that a data-subject report reads the few entries it answers with
//! instead of every segment of the node's audit log.
//!
//! It is derived from the log, which stays the record: every record the
//! log appends is indexed as it is appended, and the index notes how far
//! through the log it holds every record (its mark). A node that starts
//! indexes the log after its mark, so a crash loses nothing from the
//! index; lost altogether, the index is rebuilt from the whole log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use exchange_audit::{Event, Observer, QueryServed, Record};
use exchange_storage::{Batch, Db, StorageError, Tree};
use serde::{Deserialize, Serialize};

/// Query ids by subject: `{key_type}/{digest}/{query_id}`.
const SUBJECTS: &str = "audit-index/subjects";
/// What each query served, by query id.
const SERVED: &str = "audit-index/served";
/// How far through the log the index holds every record.
const MARK: &str = "audit-index/mark";
/// How often the mark moves.
const MARK_EVERY: Duration = Duration::from_secs(1);

/// A query as the node served it, at its time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Served {
    pub time_ms: i64,
    pub query: QueryServed,
}

/// The last sequence number of the node's log.
pub type LogSequence = Box<dyn Fn() -> u64 + Send + Sync>;

pub struct SubjectIndex {
    subjects: Tree,
    served: Tree,
    mark: Tree,
    log_sequence: LogSequence,
    /// Set when a record could not be indexed: the mark then stays where
    /// it is, so the next start indexes that record again.
    stalled: AtomicBool,
}

impl std::fmt::Debug for SubjectIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectIndex").finish_non_exhaustive()
    }
}

/// The subject key as the index holds it: a digest, so that the index
/// does not become one more list of the people queried.
fn subject_key(key_type: &str, key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    format!("{key_type}/{}/", hex::encode(&digest.as_ref()[..16]))
}

impl SubjectIndex {
    /// The index in `db`, with a thread that moves its mark for as long
    /// as it lives.
    pub fn open(db: &Db, log_sequence: LogSequence) -> Result<Arc<SubjectIndex>, StorageError> {
        let index = Arc::new(SubjectIndex {
            subjects: db.tree(SUBJECTS)?,
            served: db.tree(SERVED)?,
            mark: db.tree(MARK)?,
            log_sequence,
            stalled: AtomicBool::new(false),
        });
        let weak: Weak<SubjectIndex> = Arc::downgrade(&index);
        std::thread::Builder::new()
            .name("subject-index".into())
            .spawn(move || {
                let mut seen = 0;
                loop {
                    std::thread::sleep(MARK_EVERY);
                    let Some(index) = weak.upgrade() else { return };
                    // Everything through the sequence read a round ago
                    // was indexed as it was appended.
                    let now = (index.log_sequence)();
                    if seen > 0 && !index.stalled.load(Ordering::Acquire) {
                        if let Err(e) = index.mark.insert_relaxed("through", &seen) {
                            tracing::warn!(error = %e, "could not record how far the subject index holds the log");
                        }
                    }
                    seen = now;
                }
            })
            .map_err(|e| StorageError::Transfer(format!("starting the subject index: {e}")))?;
        Ok(index)
    }

    /// Indexes the log (at `roots`) after the mark; returns how many
    /// records were read. The mark then stands at the log's end.
    pub fn catch_up(&self, roots: &[std::path::PathBuf]) -> Result<usize, StorageError> {
        let last = (self.log_sequence)();
        let through = self
            .mark
            .get::<u64>("through")?
            .filter(|t| *t <= last)
            .unwrap_or(0);
        let mut read = 0;
        let mut newest = last;
        let mut failed = None;
        exchange_audit::read::scan_after(roots, through, |seq, record| {
            read += 1;
            newest = newest.max(seq);
            if let Err(e) = self.index(&record) {
                failed.get_or_insert(e);
            }
        })
        .map_err(|e| StorageError::Transfer(format!("reading the audit log: {e}")))?;
        if let Some(e) = failed {
            return Err(e);
        }
        self.mark.insert_relaxed("through", &newest)?;
        Ok(read)
    }

    /// Rebuilds the index in `db` from the whole log at `roots` (the node
    /// stopped); returns how many records were read.
    pub fn rebuild(db: &Db, roots: &[std::path::PathBuf]) -> Result<usize, StorageError> {
        db.drop_derived()?;
        SubjectIndex::open(db, Box::new(|| 0))?.catch_up(roots)
    }

    fn index(&self, record: &Record) -> Result<(), StorageError> {
        match &record.event {
            Event::QueryKeys(k) => {
                let mut batch = Batch::default();
                for key in &k.keys {
                    let at = format!("{}{}", subject_key(&k.key_type, key), k.query_id);
                    batch.insert(&at, &k.query_id)?;
                }
                self.subjects.apply_relaxed(batch)
            }
            Event::QueryServed(s) => self.served.insert_relaxed(
                &s.query_id,
                &Served {
                    time_ms: record.time_ms,
                    query: s.clone(),
                },
            ),
            _ => Ok(()),
        }
    }

    /// The queries served here that named `key`, oldest first.
    pub fn served_for(&self, key_type: &str, key: &str) -> Result<Vec<Served>, StorageError> {
        let mut out = Vec::new();
        for query_id in self
            .subjects
            .scan_prefix::<String>(&subject_key(key_type, key))?
        {
            if let Some(served) = self.served.get::<Served>(&query_id)? {
                out.push(served);
            }
        }
        out.sort_by_key(|s| s.time_ms);
        Ok(out)
    }
}

impl Observer for SubjectIndex {
    fn observe(&self, record: &Record) {
        if let Err(e) = self.index(record) {
            self.stalled.store(true, Ordering::Release);
            tracing::warn!(error = %e, "could not index an audit record for subject reports; it is indexed again at the next start");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exchange_audit::QueryKeys;

    fn at(time_ms: i64, event: Event) -> Record {
        Record { time_ms, event }
    }

    fn served(query_id: &str) -> Event {
        Event::QueryServed(QueryServed {
            query_id: query_id.into(),
            consumer: "civil-affairs".into(),
            dataset: "vehicle-admin/vehicles".into(),
            ..Default::default()
        })
    }

    #[test]
    fn a_subject_finds_the_queries_served_that_named_it_and_only_those() {
        let db = Db::temporary().unwrap();
        let index = SubjectIndex::open(&db, Box::new(|| 0)).unwrap();
        let person = "110101199003070012";
        for (time_ms, query_id, keys) in [
            (3_000, "Q-2", vec![person, "110101199003070039"]),
            (1_000, "Q-1", vec![person]),
            (2_000, "Q-3", vec!["110101199003070039"]),
        ] {
            index.observe(&at(
                time_ms,
                Event::QueryKeys(QueryKeys {
                    query_id: query_id.into(),
                    key_type: "person_id".into(),
                    keys: keys.into_iter().map(String::from).collect(),
                }),
            ));
            index.observe(&at(time_ms, served(query_id)));
        }
        let found: Vec<String> = index
            .served_for("person_id", person)
            .unwrap()
            .into_iter()
            .map(|s| s.query.query_id)
            .collect();
        assert_eq!(found, ["Q-1", "Q-2"]);
        assert!(index.served_for("org_code", person).unwrap().is_empty());
        // The index holds digests of the keys, never the keys.
        let keys: Vec<(String, String)> = db.tree(SUBJECTS).unwrap().entries().unwrap();
        assert_eq!(keys.len(), 4);
        assert!(keys.iter().all(|(k, _)| !k.contains(person)), "{keys:?}");
    }
}

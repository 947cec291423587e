//! The node's subject index: which queries named a person or company (by
//! a digest of the key, never the key itself), and what each query served,
//! so that a data-subject report reads the few entries it answers with
//! instead of every segment of the node's audit log.
//!
//! It is derived from the log, which stays the record: what the log
//! appends is queued as it is appended and written in batches every
//! 200 ms, off the query path, and the index notes how far
//! through the log it holds every record (its mark). A node that starts
//! indexes the log after its mark, so a crash loses nothing from the
//! index; lost altogether, the index is rebuilt from the whole log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use exchange_audit::{Event, Observer, Record};
use exchange_storage::{Batch, Db, StorageError, Tree};
use serde::{Deserialize, Serialize};

/// Query ids by subject: `{key_type}/{digest}/{query_id}`.
const SUBJECTS: &str = "audit-index/subjects";
/// What each query served, by query id.
const SERVED: &str = "audit-index/served";
/// How far through the log the index holds every record.
const MARK: &str = "audit-index/mark";
/// How often what was observed is written, and the mark moved.
const WRITE_EVERY: Duration = Duration::from_millis(200);

/// What a subject report shows of a query the node served.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Served {
    pub time_ms: i64,
    pub query_id: String,
    pub consumer: String,
    pub user: String,
    pub purpose: String,
    pub dataset: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub embargo_until: String,
}

/// The last sequence number of the node's log.
pub type LogSequence = Box<dyn Fn() -> u64 + Send + Sync>;

pub struct SubjectIndex {
    subjects: Tree,
    served: Tree,
    mark: Tree,
    log_sequence: LogSequence,
    /// Writes observed and not yet written: subjects, served.
    pending: Mutex<(Batch, Batch)>,
    /// One write at a time, so that when a write returns, every record
    /// taken before it began is written (the mark relies on it).
    writing: Mutex<()>,
    /// The log's sequence when the last write began.
    seq_at_last_write: Mutex<u64>,
    /// Set when a write failed: its records are lost from the index, so
    /// the mark stays where it was and the next start indexes them again.
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
    /// The index in `db`, with a thread that writes what the log appends,
    /// in batches behind it, for as long as the index lives.
    pub fn open(db: &Db, log_sequence: LogSequence) -> Result<Arc<SubjectIndex>, StorageError> {
        let index = Arc::new(SubjectIndex {
            subjects: db.tree(SUBJECTS)?,
            served: db.tree(SERVED)?,
            mark: db.tree(MARK)?,
            log_sequence,
            pending: Mutex::new((Batch::default(), Batch::default())),
            writing: Mutex::new(()),
            seq_at_last_write: Mutex::new(0),
            stalled: AtomicBool::new(false),
        });
        let weak: Weak<SubjectIndex> = Arc::downgrade(&index);
        std::thread::Builder::new()
            .name("subject-index".into())
            .spawn(move || loop {
                std::thread::sleep(WRITE_EVERY);
                let Some(index) = weak.upgrade() else { return };
                if let Err(e) = index.write_and_mark() {
                    tracing::warn!(error = %e, "could not write the subject index; it is written again at the next start");
                }
            })
            .map_err(|e| StorageError::Transfer(format!("starting the subject index: {e}")))?;
        Ok(index)
    }

    /// Writes what waits, then records that the index holds the log
    /// through the sequence read when the previous write began: every
    /// record through it was observed before this one began.
    fn write_and_mark(&self) -> Result<(), StorageError> {
        let seq = (self.log_sequence)();
        self.write()?;
        let through = std::mem::replace(&mut *self.lock_seq(), seq);
        if through > 0 && !self.stalled.load(Ordering::Acquire) {
            self.mark.insert_relaxed("through", &through)?;
        }
        Ok(())
    }

    fn lock_seq(&self) -> std::sync::MutexGuard<'_, u64> {
        self.seq_at_last_write
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, (Batch, Batch)> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the records observed so far. After a failure the mark
    /// stays where it was, so the next start indexes those records again.
    fn write(&self) -> Result<(), StorageError> {
        let _one_write = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let (subjects, served) = std::mem::take(&mut *self.lock_pending());
        let written = [(&self.subjects, subjects), (&self.served, served)]
            .into_iter()
            .filter(|(_, batch)| !batch.is_empty())
            .try_for_each(|(tree, batch)| tree.apply_relaxed(batch));
        if written.is_err() {
            self.stalled.store(true, Ordering::Release);
        }
        written
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
            self.observe(&record);
            if read % 10_000 == 0 && failed.is_none() {
                failed = self.write().err();
            }
        })
        .map_err(|e| StorageError::Transfer(format!("reading the audit log: {e}")))?;
        if let Some(e) = failed {
            return Err(e);
        }
        self.write()?;
        self.mark.insert_relaxed("through", &newest)?;
        Ok(read)
    }

    /// Rebuilds the index in `db` from the whole log at `roots` (the node
    /// stopped); returns how many records were read.
    pub fn rebuild(db: &Db, roots: &[std::path::PathBuf]) -> Result<usize, StorageError> {
        db.drop_derived()?;
        SubjectIndex::open(db, Box::new(|| 0))?.catch_up(roots)
    }

    /// The queries served here that named `key`, oldest first.
    pub fn served_for(&self, key_type: &str, key: &str) -> Result<Vec<Served>, StorageError> {
        self.write()?;
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
    /// Queued for the next write: nothing on the query path touches the
    /// store.
    fn observe(&self, record: &Record) {
        let added = match &record.event {
            Event::QueryKeys(k) => {
                let mut pending = self.lock_pending();
                k.keys.iter().try_for_each(|key| {
                    let at = format!("{}{}", subject_key(&k.key_type, key), k.query_id);
                    pending.0.insert(&at, &k.query_id)
                })
            }
            Event::QueryServed(s) => {
                let served = Served {
                    time_ms: record.time_ms,
                    query_id: s.query_id.clone(),
                    consumer: s.consumer.clone(),
                    user: s.user.clone(),
                    purpose: s.purpose.clone(),
                    dataset: s.dataset.clone(),
                    embargo_until: s.embargo_until.clone(),
                };
                self.lock_pending().1.insert(&s.query_id, &served)
            }
            _ => Ok(()),
        };
        if let Err(e) = added {
            tracing::warn!(error = %e, "could not queue an audit record for the subject index");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exchange_audit::{QueryKeys, QueryServed};

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
            .map(|s| s.query_id)
            .collect();
        assert_eq!(found, ["Q-1", "Q-2"]);
        assert!(index.served_for("org_code", person).unwrap().is_empty());
        // The index holds digests of the keys, never the keys.
        index.write().unwrap();
        let keys: Vec<(String, String)> = db.tree(SUBJECTS).unwrap().entries().unwrap();
        assert_eq!(keys.len(), 4);
        assert!(keys.iter().all(|(k, _)| !k.contains(person)), "{keys:?}");
    }
}

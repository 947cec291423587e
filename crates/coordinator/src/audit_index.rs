//! The audit index: one entry per query (its decision and completion) and
//! per approval or refusal, found by department, dataset, purpose and
//! time, so that `audit log`, `report` and `reconcile` read only what they
//! answer with, never the whole log.
//!
//! On PostgreSQL the index is the view every replica shares
//! (`exchange_audit_queries`): each replica copies in what it logs, so
//! views asked of any replica cover the queries of all of them, and a
//! query decided on one replica and completed on another is one entry,
//! merged in SQL. On sled it is the coordinator's own, in the embedded
//! store, merged the same way.
//!
//! The index is derived, never the record: each replica's hash-chained log
//! stays the evidence (`audit verify` reads only the logs), and
//! `coordinator audit reindex` rebuilds the index from the log. Copies are
//! written behind the log, in batches every 200 ms, so the query path
//! waits for nothing more than the log. Each replica records how far
//! through its log its copies are written (its mark, under its replica
//! id); a replica that starts again copies the rest of its log from there,
//! so a crash loses nothing from the index either.
//!
//! Report statistics are fed from the index's change feed (see
//! [`AuditIndex::feed`]) rather than from the log.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use exchange_audit::{AccessEvent, Event, Observer, QueryCompletion, QueryDecision, Record};
use exchange_proto::v1 as pb;
use exchange_storage::postgres::{AuditCursor, AuditEntry, AuditFilter};
use exchange_storage::{AuditTable, Db, StorageError, Tree};
use serde::{Deserialize, Serialize};

use crate::audit_service::{complete_row, decision_row};
use crate::statistics::Statistics;

/// How often the copies waiting in memory are written, and the change
/// feed read.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Entries read from the change feed per statement.
const FEED_PAGE: i64 = 20_000;
/// Records copied per statement when the view is rebuilt.
const REINDEX_CHUNK: usize = 10_000;
/// How far behind the logs the view may be: its own copies plus another
/// replica's, each written up to 200 ms late.
pub const VIEW_LAG: Duration = Duration::from_secs(2);
/// The kind of entry an approval or refusal is.
const ACCESS_KIND: &str = "access";

/// One entry as the shared view holds it; the parts a replica does not
/// know are left out, so that merging adds what it knows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexedQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<QueryDecision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<QueryCompletion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessEvent>,
}

impl IndexedQuery {
    fn merge(&mut self, other: IndexedQuery) {
        if other.decision.is_some() || other.access.is_some() {
            self.time_ms = other.time_ms;
        }
        self.decision = other.decision.or(self.decision.take());
        self.completion = other.completion.or(self.completion.take());
        self.access = other.access.or(self.access.take());
    }

    /// The records this entry stands for: its decision (or access
    /// decision) at its time, then its completion.
    pub fn records(&self) -> Vec<Record> {
        let time_ms = self.time_ms.unwrap_or_default();
        let mut out = Vec::new();
        if let Some(d) = &self.decision {
            out.push(Record {
                time_ms,
                event: Event::QueryDecision(d.clone()),
            });
        }
        if let Some(a) = &self.access {
            out.push(Record {
                time_ms,
                event: Event::Access(a.clone()),
            });
        }
        if let Some(c) = &self.completion {
            out.push(Record {
                time_ms,
                event: Event::QueryCompletion(c.clone()),
            });
        }
        out
    }

    fn entry(key: String, copy: &IndexedQuery) -> Result<AuditEntry, StorageError> {
        let (kind, consumer, owner, dataset, purpose) = match (&copy.decision, &copy.access) {
            (Some(d), _) => ("query", &d.consumer, &d.owner, &d.dataset, &d.purpose),
            (None, Some(a)) => (ACCESS_KIND, &a.consumer, &a.owner, &a.dataset, &a.purpose),
            // A completion alone: its decision comes from another replica
            // or an earlier batch, and brings the columns.
            (None, None) => {
                return Ok(AuditEntry {
                    query_id: key,
                    kind: "query".into(),
                    time_ms: None,
                    consumer: None,
                    owner: None,
                    dataset: None,
                    purpose: None,
                    entry: serde_json::to_vec(copy).map_err(StorageError::Encode)?,
                })
            }
        };
        Ok(AuditEntry {
            query_id: key,
            kind: kind.into(),
            time_ms: copy.time_ms,
            consumer: Some(consumer.clone()),
            owner: Some(owner.clone()),
            dataset: Some(dataset.clone()),
            purpose: Some(purpose.clone()),
            entry: serde_json::to_vec(copy).map_err(StorageError::Encode)?,
        })
    }
}

/// Who this replica is, as its mark in the index records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    pub id: String,
    /// The host and audit directory of its log.
    pub host: String,
    pub audit_dir: String,
    /// Its listen address as configured, for the operator.
    pub address: String,
}

impl Replica {
    /// Whether `other` writes the same log (its address may have changed).
    fn same_log(&self, other: &Replica) -> bool {
        (&self.host, &self.audit_dir) == (&other.host, &other.audit_dir)
    }
}

/// How far through a replica's log the index holds every record, and
/// when that replica last said so.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Mark {
    replica: Replica,
    through_seq: u64,
    seen_ms: i64,
}

/// Where marks are kept: derived, so never exported.
const MARKS_TREE: &str = "audit-index/replicas";
/// A replica that has not renewed its mark for this long is gone, and its
/// id may be taken by another.
const MARK_ALIVE_MS: i64 = 30_000;
/// How often a mark that has not moved is renewed.
const MARK_RENEW_MS: i64 = 5_000;

/// The last sequence number of this replica's log.
pub type LogSequence = Box<dyn Fn() -> u64 + Send + Sync>;

pub struct AuditIndex {
    table: AuditTable,
    /// Whether other replicas write to the index too.
    shared: bool,
    marks: Tree,
    replica: Replica,
    log_sequence: LogSequence,
    /// Copies not yet written, by key.
    pending: Mutex<BTreeMap<String, IndexedQuery>>,
    /// One write at a time, so that when a write returns, every copy
    /// taken before it began is written (the mark relies on it).
    writing: Mutex<()>,
    /// The log's sequence at the last write, and the mark last recorded.
    progress: Mutex<Progress>,
    /// The statistics fed from the change feed, and where the feed stands.
    feed: Mutex<Option<(Arc<Statistics>, AuditCursor)>>,
}

#[derive(Debug, Default)]
struct Progress {
    seq_at_last_write: u64,
    recorded: u64,
    recorded_ms: i64,
}

impl std::fmt::Debug for AuditIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditIndex")
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

impl AuditIndex {
    /// The index in `db` for `replica`, with a thread that writes the
    /// copies behind the log (and follows the change feed) for as long as
    /// the index lives. Refused when another running coordinator, with
    /// another log, holds the same replica id.
    pub fn open(
        db: &Db,
        replica: Replica,
        log_sequence: LogSequence,
    ) -> Result<Arc<AuditIndex>, StorageError> {
        let marks = db.tree(MARKS_TREE)?;
        let index = Arc::new(AuditIndex {
            table: db.audit_table()?,
            shared: db.is_shared(),
            marks,
            replica,
            log_sequence,
            pending: Mutex::new(BTreeMap::new()),
            writing: Mutex::new(()),
            progress: Mutex::new(Progress::default()),
            feed: Mutex::new(None),
        });
        index.claim_replica_id()?;
        let weak: Weak<AuditIndex> = Arc::downgrade(&index);
        std::thread::Builder::new()
            .name("audit-index".into())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_EVERY);
                let Some(index) = weak.upgrade() else { return };
                index.tick();
            })
            .map_err(|e| StorageError::Transfer(format!("starting the audit index: {e}")))?;
        Ok(index)
    }

    /// How far behind the logs the index may be: on PostgreSQL another
    /// replica's copies may be [`VIEW_LAG`] late; on sled, this
    /// coordinator's own are written before each read.
    pub fn lag(&self) -> Duration {
        if self.shared {
            VIEW_LAG
        } else {
            Duration::ZERO
        }
    }

    /// Refuses an id a live replica with another log holds.
    fn claim_replica_id(&self) -> Result<(), StorageError> {
        let Some(held) = self.marks.get::<Mark>(&self.replica.id)? else {
            return Ok(());
        };
        let other_log = !held.replica.same_log(&self.replica);
        let age_ms = exchange_audit::record::now_ms() - held.seen_ms;
        if other_log && age_ms < MARK_ALIVE_MS {
            return Err(StorageError::Transfer(format!(
                "replica_id {:?} is in use by the coordinator listening on {} (audit log {} on {}), seen {} s ago: give each coordinator its own replica_id (`replica_id` in coordinator.toml, --replica-id or EXCHANGE_COORDINATOR_REPLICA_ID)",
                self.replica.id,
                held.replica.address,
                held.replica.audit_dir,
                held.replica.host,
                age_ms / 1000
            )));
        }
        Ok(())
    }

    /// Copies what the index lacks of this replica's log (at `roots`):
    /// every record after its mark, or the whole log when the mark is
    /// another log's. Returns how many entries were written.
    pub fn catch_up(&self, roots: &[std::path::PathBuf]) -> Result<usize, StorageError> {
        let last = (self.log_sequence)();
        let through = match self.marks.get::<Mark>(&self.replica.id)? {
            Some(m) if m.replica.same_log(&self.replica) && m.through_seq <= last => m.through_seq,
            _ => 0,
        };
        self.copy_after(roots, through)
    }

    /// Copies this replica's whole log (at `roots`) into the index: how it
    /// is rebuilt. Returns how many entries were written.
    pub fn rebuild(&self, roots: &[std::path::PathBuf]) -> Result<usize, StorageError> {
        self.copy_after(roots, 0)
    }

    /// Copies the log's entries after sequence `through`, a chunk at a
    /// time, and records the mark at the log's end. Returns how many
    /// entries were written.
    fn copy_after(
        &self,
        roots: &[std::path::PathBuf],
        through: u64,
    ) -> Result<usize, StorageError> {
        let mut newest = (self.log_sequence)();
        let (mut read, mut written) = (0, 0);
        let mut failed = None;
        exchange_audit::read::scan_after(roots, through, |seq, record| {
            self.observe(&record);
            newest = newest.max(seq);
            read += 1;
            if read % REINDEX_CHUNK == 0 && failed.is_none() {
                match self.flush() {
                    Ok(n) => written += n,
                    Err(e) => failed = Some(e),
                }
            }
        })
        .map_err(|e| StorageError::Transfer(format!("reading the audit log: {e}")))?;
        if let Some(e) = failed {
            return Err(e);
        }
        written += self.flush()?;
        self.record_mark(newest)?;
        Ok(written)
    }

    /// Every 200 ms: the copies written, the mark moved, the feed read.
    fn tick(&self) {
        let seq = (self.log_sequence)();
        match self.flush() {
            Ok(_) => {
                // Everything through the sequence read one round ago was
                // observed before this write began.
                let through = std::mem::replace(&mut self.lock_progress().seq_at_last_write, seq);
                if let Err(e) = self.record_mark(through) {
                    tracing::warn!(error = %e, "could not record how far the audit index holds this log");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not write the audit index; copies are kept and tried again")
            }
        }
        if let Err(e) = self.follow() {
            tracing::warn!(error = %e, "could not read the audit index's changes; reports wait for them");
        }
    }

    fn lock_progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that the index holds this log through `through`, when that
    /// moved, or to say the replica is alive.
    fn record_mark(&self, through: u64) -> Result<(), StorageError> {
        let now = exchange_audit::record::now_ms();
        let mut progress = self.lock_progress();
        if through <= progress.recorded && now - progress.recorded_ms < MARK_RENEW_MS {
            return Ok(());
        }
        let through = through.max(progress.recorded);
        let mark = Mark {
            replica: self.replica.clone(),
            through_seq: through,
            seen_ms: now,
        };
        // A lost mark only means more to copy again at start.
        self.marks.insert_relaxed(&self.replica.id, &mark)?;
        progress.recorded = through;
        progress.recorded_ms = now;
        Ok(())
    }

    /// Writes the copies waiting in memory; each is merged into what the
    /// index holds for the same key. Copies that could not be written wait
    /// for the next round.
    pub fn flush(&self) -> Result<usize, StorageError> {
        let _one_write = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let pending = std::mem::take(&mut *self.lock_pending());
        let count = pending.len();
        let entries = pending
            .iter()
            .map(|(key, copy)| IndexedQuery::entry(key.clone(), copy))
            .collect::<Result<Vec<_>, _>>();
        let written = match entries {
            Ok(entries) if entries.is_empty() => Ok(()),
            Ok(entries) => self.table.put(entries),
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            let mut waiting = self.lock_pending();
            for (key, copy) in pending {
                let mut restored = copy;
                if let Some(newer) = waiting.remove(&key) {
                    restored.merge(newer);
                }
                waiting.insert(key, restored);
            }
            return Err(e);
        }
        Ok(count)
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, IndexedQuery>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn entries(&self, filter: AuditFilter) -> Result<Vec<IndexedQuery>, StorageError> {
        Ok(self
            .table
            .select(filter)?
            .iter()
            .filter_map(|bytes| serde_json::from_slice::<IndexedQuery>(bytes).ok())
            .collect())
    }

    /// The queries `filter` selects (every replica's), as audit-log rows,
    /// oldest first. This replica's copies still waiting are written first.
    pub fn rows(&self, filter: AuditFilter) -> Result<Vec<pb::AuditQueryRow>, StorageError> {
        self.flush()?;
        Ok(self
            .entries(filter)?
            .iter()
            .filter_map(|q| {
                let (mut row, _) = decision_row(q.time_ms?, q.decision.as_ref()?);
                if let Some(c) = &q.completion {
                    complete_row(&mut row, c);
                }
                Some(row)
            })
            .collect())
    }

    /// The decision and completion records of the queries `filter`
    /// selects (every replica's), for reconciliation. This replica's
    /// copies still waiting are written first.
    pub fn records(&self, filter: AuditFilter) -> Result<Vec<Record>, StorageError> {
        self.flush()?;
        Ok(self
            .entries(filter)?
            .iter()
            .flat_map(IndexedQuery::records)
            .collect())
    }

    /// Feeds `statistics` every entry of the index, then every change to
    /// it: within 200 ms on the index's thread, and at once when
    /// [`AuditIndex::refresh`] is called. So reports count every
    /// replica's queries and decisions.
    pub fn feed(&self, statistics: Arc<Statistics>) -> Result<(), StorageError> {
        let cursor = feed_changes(&self.table, &statistics, AuditCursor::default())?;
        *self.lock_feed() = Some((statistics, cursor));
        Ok(())
    }

    /// Writes this replica's waiting copies and reads the changes since
    /// the last read into the statistics: what a report does first.
    pub fn refresh(&self) -> Result<(), StorageError> {
        self.flush()?;
        self.follow()
    }

    fn follow(&self) -> Result<(), StorageError> {
        let mut feed = self.lock_feed();
        if let Some((statistics, cursor)) = feed.as_mut() {
            *cursor = feed_changes(&self.table, statistics, cursor.clone())?;
        }
        Ok(())
    }

    fn lock_feed(&self) -> std::sync::MutexGuard<'_, Option<(Arc<Statistics>, AuditCursor)>> {
        self.feed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads the changes after `cursor` into `statistics`, page by page, and
/// returns where the next read starts.
fn feed_changes(
    table: &AuditTable,
    statistics: &Statistics,
    mut cursor: AuditCursor,
) -> Result<AuditCursor, StorageError> {
    loop {
        let (changes, next) = table.changes(&cursor, FEED_PAGE)?;
        let read = changes.len();
        let entries: Vec<(String, IndexedQuery)> = changes
            .into_iter()
            .filter_map(|c| Some((c.key, serde_json::from_slice(&c.entry).ok()?)))
            .collect();
        statistics.apply_shared(&entries);
        cursor = next;
        if read < FEED_PAGE as usize {
            return Ok(cursor);
        }
    }
}

impl Drop for AuditIndex {
    /// A coordinator that stops writes the copies still waiting.
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "could not write the last copies to the audit index; they are copied again at the next start");
        }
    }
}

impl Observer for AuditIndex {
    fn observe(&self, record: &Record) {
        let (key, copy) = match &record.event {
            Event::QueryDecision(d) => (
                d.query_id.clone(),
                IndexedQuery {
                    time_ms: Some(record.time_ms),
                    decision: Some(d.clone()),
                    ..IndexedQuery::default()
                },
            ),
            Event::QueryCompletion(c) => (
                c.query_id.clone(),
                IndexedQuery {
                    completion: Some(c.clone()),
                    ..IndexedQuery::default()
                },
            ),
            Event::Access(a) if a.action == "approve" || a.action == "refuse" => (
                format!("{ACCESS_KIND}:{}:{}", a.request_id, a.action),
                IndexedQuery {
                    time_ms: Some(record.time_ms),
                    access: Some(a.clone()),
                    ..IndexedQuery::default()
                },
            ),
            _ => return,
        };
        self.lock_pending().entry(key).or_default().merge(copy);
    }
}

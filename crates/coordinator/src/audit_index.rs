//! The audit view several coordinators share: with `state` on PostgreSQL,
//! each replica copies the decision and completion of every query it
//! logs, and every approval and refusal, into the shared table
//! (`exchange_audit_queries`, keyed by query id and indexed by consumer,
//! owner and time). So `audit log`, `report` and `reconcile` asked of any
//! replica cover the queries of all of them: a query decided on one
//! replica and completed on another is one entry, merged in SQL.
//!
//! The copy is derived, never the record: each replica's own hash-chained
//! log stays the evidence (`audit verify` reads only the logs), and
//! `coordinator audit reindex` rebuilds a replica's share of the copy from
//! its log. Copies are written behind the log, in batches every 200 ms, so
//! the query path waits for nothing more than the log; a crash can lose
//! the last batch of the copy (not of the log), which a reindex restores.
//!
//! Every replica's report statistics are fed from the view's change feed
//! (see [`AuditIndex::feed`]) rather than from its own log.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use exchange_audit::{AccessEvent, Event, Observer, QueryCompletion, QueryDecision, Record};
use exchange_proto::v1 as pb;
use exchange_storage::postgres::{AuditCursor, AuditEntry, AuditFilter};
use exchange_storage::{AuditTable, Db, StorageError};
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

pub struct AuditIndex {
    table: AuditTable,
    /// Copies not yet written, by key.
    pending: Mutex<BTreeMap<String, IndexedQuery>>,
}

impl std::fmt::Debug for AuditIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditIndex").finish_non_exhaustive()
    }
}

impl AuditIndex {
    /// The shared view on `db` (which must be shared), with a thread that
    /// writes the copies behind the log for as long as the index lives.
    pub fn open(db: &Db) -> Result<Arc<AuditIndex>, StorageError> {
        let table = db.audit_table().ok_or_else(|| {
            StorageError::Transfer("the shared audit view needs the state on PostgreSQL".into())
        })?;
        let index = Arc::new(AuditIndex {
            table,
            pending: Mutex::new(BTreeMap::new()),
        });
        let weak: Weak<AuditIndex> = Arc::downgrade(&index);
        std::thread::Builder::new()
            .name("audit-index".into())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_EVERY);
                let Some(index) = weak.upgrade() else { return };
                if let Err(e) = index.flush() {
                    tracing::warn!(error = %e, "could not write the shared audit view; `coordinator audit reindex` restores it");
                }
            })
            .map_err(|e| StorageError::Transfer(format!("starting the audit index: {e}")))?;
        Ok(index)
    }

    /// Writes the copies waiting in memory; the database merges each into
    /// what it holds for the same key.
    pub fn flush(&self) -> Result<usize, StorageError> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let count = pending.len();
        let entries = pending
            .into_iter()
            .map(|(key, copy)| IndexedQuery::entry(key, &copy))
            .collect::<Result<Vec<_>, _>>()?;
        if !entries.is_empty() {
            self.table.put(entries)?;
        }
        Ok(count)
    }

    fn entries(&self, filter: AuditFilter) -> Result<Vec<IndexedQuery>, StorageError> {
        Ok(self
            .table
            .select(filter)?
            .iter()
            .filter_map(|bytes| serde_json::from_slice::<IndexedQuery>(bytes).ok())
            .collect())
    }

    /// The queries of every replica that `filter` selects, as audit-log
    /// rows, oldest first.
    pub fn rows(&self, filter: AuditFilter) -> Result<Vec<pb::AuditQueryRow>, StorageError> {
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

    /// The decision and completion records of every replica's queries
    /// that `filter` selects, for reconciliation. This replica's copies
    /// still waiting are written first.
    pub fn records(&self, filter: AuditFilter) -> Result<Vec<Record>, StorageError> {
        self.flush()?;
        Ok(self
            .entries(filter)?
            .iter()
            .flat_map(IndexedQuery::records)
            .collect())
    }

    /// Copies every query in `records` (a replica's whole log) into the
    /// shared view: how the view is rebuilt. Returns how many.
    pub fn reindex(&self, records: &[Record]) -> Result<usize, StorageError> {
        let mut copied = 0;
        for chunk in records.chunks(REINDEX_CHUNK) {
            for record in chunk {
                self.observe(record);
            }
            copied += self.flush()?;
        }
        Ok(copied)
    }

    /// Feeds `statistics` every entry of the view, then (on a thread, for
    /// as long as the index lives) every change to it within 200 ms, so a
    /// replica's reports count every replica's queries and decisions.
    pub fn feed(self: &Arc<Self>, statistics: Arc<Statistics>) -> Result<(), StorageError> {
        let mut cursor = self.feed_once(&statistics, AuditCursor::default())?;
        let weak: Weak<AuditIndex> = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("audit-feed".into())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_EVERY);
                let Some(index) = weak.upgrade() else { return };
                match index.feed_once(&statistics, cursor.clone()) {
                    Ok(next) => cursor = next,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the shared audit view's changes; reports wait for them")
                    }
                }
            })
            .map_err(|e| StorageError::Transfer(format!("starting the audit feed: {e}")))?;
        Ok(())
    }

    /// Reads the changes after `cursor` into `statistics`, page by page.
    fn feed_once(
        &self,
        statistics: &Statistics,
        mut cursor: AuditCursor,
    ) -> Result<AuditCursor, StorageError> {
        loop {
            let (changes, next) = self.table.changes(&cursor, FEED_PAGE)?;
            let entries: Vec<(String, IndexedQuery)> = changes
                .into_iter()
                .filter_map(|c| Some((c.key, serde_json::from_slice(&c.entry).ok()?)))
                .collect();
            statistics.apply_shared(&entries);
            cursor = next;
            if entries.len() < FEED_PAGE as usize {
                return Ok(cursor);
            }
        }
    }
}

impl Drop for AuditIndex {
    /// A coordinator that stops writes the copies still waiting.
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "could not write the last copies to the shared audit view; `coordinator audit reindex` restores them");
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
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .merge(copy);
    }
}

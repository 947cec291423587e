//! The audit view several coordinators share: with `state` on PostgreSQL,
//! each replica copies the decision and completion of every query it
//! logs into the shared table (`exchange_audit_queries`, keyed by query id
//! and indexed by consumer, owner and time), so `audit log` asked of any
//! replica shows the queries of all of them, found through the indexes
//! rather than by reading every log segment.
//!
//! The copy is derived, never the record: each replica's own hash-chained
//! log stays the evidence (`audit verify` reads only the logs), and
//! `coordinator audit reindex` rebuilds a replica's share of the copy from
//! its log. Copies are written behind the log, in batches every 200 ms, so
//! the query path waits for nothing more than the log; a crash can lose
//! the last batch of the copy (not of the log), which a reindex restores.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use exchange_audit::{Event, Observer, QueryCompletion, QueryDecision, Record};
use exchange_proto::v1 as pb;
use exchange_storage::postgres::{AuditEntry, AuditFilter};
use exchange_storage::{AuditTable, Db, StorageError};
use serde::{Deserialize, Serialize};

use crate::audit_service::{complete_row, decision_row};

/// How often the copies waiting in memory are written.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// One query as the shared view holds it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct IndexedQuery {
    time_ms: i64,
    decision: Option<QueryDecision>,
    completion: Option<QueryCompletion>,
}

impl IndexedQuery {
    fn merge(&mut self, other: IndexedQuery) {
        if other.decision.is_some() {
            self.time_ms = other.time_ms;
            self.decision = other.decision;
        }
        if other.completion.is_some() {
            self.completion = other.completion;
        }
    }
}

pub struct AuditIndex {
    table: AuditTable,
    /// Copies not yet written, by query id.
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

    /// Writes the copies waiting in memory, merged with what the table
    /// holds for the same queries.
    pub fn flush(&self) -> Result<usize, StorageError> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let count = pending.len();
        let mut entries = Vec::new();
        for (query_id, mut copy) in pending {
            // A completion alone: its decision was written in an earlier batch.
            if copy.decision.is_none() {
                let held = self.table.get(&query_id)?;
                match held.and_then(|bytes| serde_json::from_slice::<IndexedQuery>(&bytes).ok()) {
                    Some(mut held) => {
                        held.merge(copy);
                        copy = held;
                    }
                    None => continue,
                }
            }
            let Some(d) = &copy.decision else { continue };
            entries.push(AuditEntry {
                query_id: query_id.clone(),
                time_ms: copy.time_ms,
                consumer: d.consumer.clone(),
                owner: d.owner.clone(),
                dataset: d.dataset.clone(),
                purpose: d.purpose.clone(),
                entry: serde_json::to_vec(&copy).map_err(StorageError::Encode)?,
            });
        }
        if !entries.is_empty() {
            self.table.put(entries)?;
        }
        Ok(count)
    }

    /// The queries of every replica that `filter` selects, as audit-log
    /// rows, oldest first.
    pub fn rows(&self, filter: AuditFilter) -> Result<Vec<pb::AuditQueryRow>, StorageError> {
        Ok(self
            .table
            .select(filter)?
            .iter()
            .filter_map(|bytes| serde_json::from_slice::<IndexedQuery>(bytes).ok())
            .filter_map(|q| {
                let (mut row, _) = decision_row(q.time_ms, q.decision.as_ref()?);
                if let Some(c) = &q.completion {
                    complete_row(&mut row, c);
                }
                Some(row)
            })
            .collect())
    }

    /// Copies every query in `records` (a replica's whole log) into the
    /// shared view: how the view is rebuilt. Returns how many.
    pub fn reindex(&self, records: &[Record]) -> Result<usize, StorageError> {
        for record in records {
            self.observe(record);
        }
        self.flush()
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
        let (query_id, copy) = match &record.event {
            Event::QueryDecision(d) => (
                d.query_id.clone(),
                IndexedQuery {
                    time_ms: record.time_ms,
                    decision: Some(d.clone()),
                    completion: None,
                },
            ),
            Event::QueryCompletion(c) => (
                c.query_id.clone(),
                IndexedQuery {
                    completion: Some(c.clone()),
                    ..IndexedQuery::default()
                },
            ),
            _ => return,
        };
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(query_id)
            .or_default()
            .merge(copy);
    }
}

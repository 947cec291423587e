//! SQLite reads through rusqlite, on the caller's thread when they are short.
//!
//! A key lookup on an indexed SQLite file takes tens of microseconds, less
//! than handing it to another thread and back. So [`read`] first runs the
//! statement right where it is called, within a budget of
//! [`INLINE_ROWS`] rows and [`INLINE_BUDGET`] of time (SQLite's progress
//! handler interrupts it past that). A read that fits leaves its one batch
//! in the channel before the caller even looks, with no task, thread or
//! wake-up involved. A read that does not fit is thrown away unsent and
//! run again from the start on a blocking thread, which streams batches
//! through the bounded channel as the consumer takes them; at most
//! [`INLINE_ROWS`] rows are read twice, and nothing is ever sent twice.
//!
//! Connections are read-only, opened on demand up to the manifest's
//! `max_connections` and kept for reuse; statements are cached per
//! connection. A connection that failed is dropped rather than reused.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exchange_policy::FieldType;
use exchange_query::Value;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::read::{parse_date, parse_timestamp, Assembler, ColumnBuilder};
use crate::{SourceBatch, SourceError};

/// The most rows a read may return and still be read on the caller's thread.
pub const INLINE_ROWS: usize = 512;
/// The longest a read may run on the caller's thread.
pub const INLINE_BUDGET: Duration = Duration::from_millis(2);
/// SQLite virtual-machine steps between two looks at the clock (or at
/// whether the consumer has gone).
const PROGRESS_STEPS: i32 = 4_000;

type Sender = mpsc::Sender<Result<SourceBatch, SourceError>>;

/// The read-only connections to one SQLite file.
pub(crate) struct SqliteReaders {
    name: String,
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    /// Reads that went to a blocking thread (the rest finished inline).
    streamed: AtomicU64,
}

impl SqliteReaders {
    pub(crate) fn new(
        name: &str,
        path: &str,
        max_connections: u32,
        busy_timeout: Duration,
    ) -> SqliteReaders {
        SqliteReaders {
            name: name.to_string(),
            path: PathBuf::from(path),
            busy_timeout,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max_connections.max(1) as usize)),
            streamed: AtomicU64::new(0),
        }
    }

    /// An idle connection, or a new one. The caller holds a permit.
    fn take(&self) -> Result<Connection, SourceError> {
        if let Some(conn) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| SourceError::Unreachable {
            name: self.name.clone(),
            reason: format!("cannot open {}: {e}", self.path.display()),
        })?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
    }

    /// The error a failed read reports: trouble with the file itself makes
    /// the source unreachable, anything else is the query's.
    fn failed(&self, e: rusqlite::Error) -> SourceError {
        let name = self.name.clone();
        let reason = e.to_string();
        if is_reusable(&e) {
            SourceError::Query { name, reason }
        } else {
            SourceError::Unreachable { name, reason }
        }
    }
}

/// How a read on the caller's thread ended.
enum Inline {
    /// Every row was read; the batch (if any row came) is in the channel.
    Done,
    /// The read failed; the error is in the channel.
    Failed { reusable: bool },
    /// Too many rows or too long: nothing was sent.
    TooLong,
}

/// Starts a read of `sql`: inline when a connection is free and the result
/// is short, otherwise on a blocking thread. Batches (or one error) arrive
/// on `tx`'s receiver.
pub(crate) fn read(
    readers: Arc<SqliteReaders>,
    sql: String,
    params: Vec<(Value, FieldType)>,
    mut assembler: Assembler,
    tx: Sender,
) {
    if let Ok(permit) = readers.permits.clone().try_acquire_owned() {
        let conn = match readers.take() {
            Ok(conn) => conn,
            Err(e) => {
                let _ = tx.try_send(Err(e));
                return;
            }
        };
        match read_inline(&readers, &conn, &sql, &params, &mut assembler, &tx) {
            Inline::Done => readers.give_back(conn),
            Inline::Failed { reusable } => {
                if reusable {
                    readers.give_back(conn)
                }
            }
            Inline::TooLong => {
                readers.streamed.fetch_add(1, Ordering::Relaxed);
                assembler.discard();
                tokio::task::spawn_blocking(move || {
                    stream(&readers, conn, permit, &sql, &params, assembler, &tx)
                });
            }
        }
        return;
    }
    // Every connection is busy: wait for one (as long as SQLite would wait
    // for a lock), then stream on a blocking thread.
    readers.streamed.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let waited = tokio::time::timeout(
            readers.busy_timeout,
            readers.permits.clone().acquire_owned(),
        )
        .await;
        let Ok(Ok(permit)) = waited else {
            let _ = tx
                .send(Err(SourceError::Unreachable {
                    name: readers.name.clone(),
                    reason: format!(
                        "no connection became free within {:?}; raise max_connections in the manifest",
                        readers.busy_timeout
                    ),
                }))
                .await;
            return;
        };
        tokio::task::spawn_blocking(move || {
            let conn = match readers.take() {
                Ok(conn) => conn,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            stream(&readers, conn, permit, &sql, &params, assembler, &tx)
        });
    });
}

/// Runs the statement within the inline budget.
fn read_inline(
    readers: &SqliteReaders,
    conn: &Connection,
    sql: &str,
    params: &[(Value, FieldType)],
    assembler: &mut Assembler,
    tx: &Sender,
) -> Inline {
    // Inline reads send one batch at most, and only once every row is read.
    let most = INLINE_ROWS.min(assembler.batch_rows);
    // Never wait for a writer's lock here: a busy file goes to a blocking
    // thread, which waits as long as the manifest allows.
    if let Err(e) = conn.busy_timeout(Duration::ZERO) {
        let _ = tx.try_send(Err(readers.failed(e)));
        return Inline::Failed { reusable: false };
    }
    let deadline = Instant::now() + INLINE_BUDGET;
    conn.progress_handler(PROGRESS_STEPS, Some(move || Instant::now() > deadline));
    let outcome = run(conn, sql, params, assembler, |rows, _, _| {
        if rows > most {
            Err(Ended::Stopped)
        } else {
            Ok(())
        }
    });
    conn.progress_handler(0, None::<fn() -> bool>);
    match outcome {
        Ok(()) => {
            if assembler.pending() > 0 {
                let _ = tx.try_send(assembler.emit());
            }
            Inline::Done
        }
        Err(Ended::Stopped) => Inline::TooLong,
        Err(Ended::Sqlite(e))
            if matches!(
                e.sqlite_error_code(),
                Some(
                    rusqlite::ErrorCode::OperationInterrupted
                        | rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                )
            ) =>
        {
            Inline::TooLong
        }
        Err(Ended::Sqlite(e)) => {
            let reusable = is_reusable(&e);
            let _ = tx.try_send(Err(readers.failed(e)));
            Inline::Failed { reusable }
        }
    }
}

/// Streams every row on a blocking thread, batch by batch, until the
/// result ends or the receiver is dropped.
fn stream(
    readers: &SqliteReaders,
    conn: Connection,
    permit: OwnedSemaphorePermit,
    sql: &str,
    params: &[(Value, FieldType)],
    mut assembler: Assembler,
    tx: &Sender,
) {
    if let Err(e) = conn.busy_timeout(readers.busy_timeout) {
        let _ = tx.blocking_send(Err(readers.failed(e)));
        return;
    }
    // A consumer that goes away stops even a scan that finds no rows.
    let watched = tx.clone();
    conn.progress_handler(PROGRESS_STEPS, Some(move || watched.is_closed()));
    let outcome = run(&conn, sql, params, &mut assembler, |_, full, assembler| {
        if full {
            tx.blocking_send(assembler.emit())
                .map_err(|_| Ended::Stopped)?;
        }
        Ok(())
    });
    conn.progress_handler(0, None::<fn() -> bool>);
    let reusable = match outcome {
        Ok(()) => {
            if assembler.pending() > 0 {
                let _ = tx.blocking_send(assembler.emit());
            }
            true
        }
        Err(Ended::Stopped) => true,
        Err(Ended::Sqlite(e)) => {
            let reusable = is_reusable(&e);
            if !tx.is_closed() {
                let _ = tx.blocking_send(Err(readers.failed(e)));
            }
            reusable
        }
    };
    if reusable {
        readers.give_back(conn);
    }
    drop(permit);
}

/// Whether a connection whose read failed this way can serve again: not
/// after trouble with the file itself (which [`SqliteReaders::failed`]
/// reports as the source being unreachable).
fn is_reusable(e: &rusqlite::Error) -> bool {
    !matches!(
        e.sqlite_error_code(),
        Some(
            rusqlite::ErrorCode::CannotOpen
                | rusqlite::ErrorCode::NotADatabase
                | rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::DatabaseCorrupt
        )
    )
}

enum Ended {
    /// The row callback (or the progress handler) stopped the read.
    Stopped,
    Sqlite(rusqlite::Error),
}

/// Runs `sql` with `params` bound, appending each row to the assembler and
/// then calling `after_row(rows so far, batch full, assembler)`.
fn run(
    conn: &Connection,
    sql: &str,
    params: &[(Value, FieldType)],
    assembler: &mut Assembler,
    mut after_row: impl FnMut(usize, bool, &mut Assembler) -> Result<(), Ended>,
) -> Result<(), Ended> {
    let mut statement = conn.prepare_cached(sql).map_err(Ended::Sqlite)?;
    for (i, (value, _)) in params.iter().enumerate() {
        let bound = match value {
            Value::Text(s) => statement.raw_bind_parameter(i + 1, s.as_str()),
            Value::Integer(n) => statement.raw_bind_parameter(i + 1, *n),
            Value::Float(x) => statement.raw_bind_parameter(i + 1, *x),
            Value::Bool(b) => statement.raw_bind_parameter(i + 1, i64::from(*b)),
        };
        bound.map_err(Ended::Sqlite)?;
    }
    let mut rows = statement.raw_query();
    let mut count = 0usize;
    while let Some(row) = rows.next().map_err(Ended::Sqlite)? {
        append_row(row, assembler.builders()).map_err(Ended::Sqlite)?;
        count += 1;
        let full = assembler.row_added();
        after_row(count, full, assembler)?;
    }
    Ok(())
}

/// Appends one row to the column builders. The SELECT casts every column
/// to the storage class its field type expects (see `build_select`).
fn append_row(row: &rusqlite::Row<'_>, builders: &mut [ColumnBuilder]) -> rusqlite::Result<()> {
    for (i, b) in builders.iter_mut().enumerate() {
        let value = row.get_ref(i)?;
        let text = || -> rusqlite::Result<Option<&str>> {
            match value {
                ValueRef::Null => Ok(None),
                ValueRef::Text(t) | ValueRef::Blob(t) => std::str::from_utf8(t)
                    .map(Some)
                    .map_err(rusqlite::Error::Utf8Error),
                _ => Err(rusqlite::Error::InvalidColumnType(
                    i,
                    String::new(),
                    value.data_type(),
                )),
            }
        };
        let integer = || -> rusqlite::Result<Option<i64>> {
            match value {
                ValueRef::Null => Ok(None),
                ValueRef::Integer(n) => Ok(Some(n)),
                _ => Err(rusqlite::Error::InvalidColumnType(
                    i,
                    String::new(),
                    value.data_type(),
                )),
            }
        };
        match b {
            ColumnBuilder::Text(b) => b.append_option(text()?),
            ColumnBuilder::Int(b) => b.append_option(integer()?),
            ColumnBuilder::Float(b) => b.append_option(match value {
                ValueRef::Null => None,
                ValueRef::Real(x) => Some(x),
                ValueRef::Integer(n) => Some(n as f64),
                _ => {
                    return Err(rusqlite::Error::InvalidColumnType(
                        i,
                        String::new(),
                        value.data_type(),
                    ))
                }
            }),
            ColumnBuilder::Bool(b) => b.append_option(integer()?.map(|v| v != 0)),
            ColumnBuilder::Date(b) => b.append_option(text()?.and_then(parse_date)),
            ColumnBuilder::Timestamp(b) => b.append_option(text()?.and_then(parse_timestamp)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use arrow_array::{Array, Int64Array, StringArray};
    use exchange_catalog::manifest::{DatabaseConfig, DatasetSpec, SourceKind};
    use exchange_catalog::Manifest;
    use exchange_policy::mask::HashKey;
    use exchange_policy::Mask;
    use exchange_query::FieldInfo;

    use crate::{BatchStream, Pool, Projection, ReadPlan, Source};

    /// How many reads of `source` went to a blocking thread.
    fn streamed(source: &Source) -> u64 {
        match &source.pool {
            Pool::Sqlite(_, readers) => readers.streamed.load(super::Ordering::Relaxed),
            _ => unreachable!("a SQLite source"),
        }
    }

    const MANIFEST: &str = r#"
department = "test-dept"
[databases.main]
kind = "sqlite"
path = "PATH"
[[datasets]]
id = "items"
title = "items"
update_cycle = "daily"
sharing = "conditional"
[datasets.source]
database = "main"
table = "items"
key_columns = ["id"]
[[datasets.fields]]
name = "id"
type = "integer"
sensitivity = "public"
[[datasets.fields]]
name = "label"
type = "string"
sensitivity = "public"
"#;

    /// A SQLite file with `rows` items (id 1.., label "item-N"), and its
    /// manifest's dataset and database.
    fn database(dir: &Path, rows: i64) -> (DatasetSpec, DatabaseConfig) {
        let path = dir.join("items.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE items (id INTEGER PRIMARY KEY, label TEXT)")
            .unwrap();
        conn.execute(
            "INSERT INTO items WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) SELECT i, 'item-' || i FROM n",
            [rows],
        )
        .unwrap();
        let text = MANIFEST.replace("PATH", &path.display().to_string());
        let m = Manifest::parse(&text, Path::new("m.toml"), &|_| None).unwrap();
        let mut db = m.databases["main"].clone();
        db.max_connections = 1;
        (m.datasets[0].clone(), db)
    }

    fn plan(ds: &DatasetSpec, filter: Option<&str>, batch_rows: usize) -> ReadPlan {
        let columns: Vec<Projection> = ds
            .fields
            .iter()
            .map(|f| Projection {
                field: f.clone(),
                mask: Mask::None,
            })
            .collect();
        let lookup = |name: &str| {
            ds.fields
                .iter()
                .find(|f| f.name == name)
                .map(|f| FieldInfo {
                    field_type: f.field_type,
                    masked: false,
                })
        };
        ReadPlan {
            dataset: ds.clone(),
            columns,
            filter: filter.map(|f| exchange_query::parse(f).unwrap().check(&lookup).unwrap()),
            limit: None,
            batch_rows,
            subject_keys: vec![],
        }
    }

    fn key() -> HashKey {
        HashKey::new(&[7u8; 32]).unwrap()
    }

    /// Every id received, in order, and the size of each batch.
    async fn drain(mut rx: BatchStream) -> Result<(Vec<i64>, Vec<usize>), String> {
        let mut ids = Vec::new();
        let mut sizes = Vec::new();
        while let Some(b) = rx.recv().await {
            let b = b.map_err(|e| e.to_string())?;
            let id = b
                .batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            let label = b
                .batch
                .column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            for i in 0..id.len() {
                assert_eq!(label.value(i), format!("item-{}", id.value(i)));
                ids.push(id.value(i));
            }
            sizes.push(b.batch.num_rows());
        }
        Ok((ids, sizes))
    }

    #[tokio::test]
    async fn a_short_read_is_ready_when_read_returns() {
        let dir = tempfile::tempdir().unwrap();
        let (ds, db) = database(dir.path(), 100);
        let source = Source::open(&db).await.unwrap();
        assert_eq!(source.kind(), SourceKind::Sqlite);
        let (_, mut rx) = source
            .read(plan(&ds, Some("id IN (3, 5, 99)"), 8192), key())
            .unwrap();
        // Read inline: the batch and the end of the stream are already there.
        let batch = rx.try_recv().unwrap().unwrap();
        assert_eq!(batch.batch.num_rows(), 3);
        assert!(matches!(
            rx.try_recv(),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected)
        ));
        // No rows at all: nothing but the end.
        let (_, rx) = source
            .read(plan(&ds, Some("id = 1000"), 8192), key())
            .unwrap();
        assert_eq!(drain(rx).await.unwrap(), (vec![], vec![]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_read_streams_every_row_once_in_full_batches() {
        let dir = tempfile::tempdir().unwrap();
        let (ds, db) = database(dir.path(), 20_000);
        let source = Source::open(&db).await.unwrap();
        let (_, rx) = source.read(plan(&ds, None, 3_000), key()).unwrap();
        let (ids, sizes) = drain(rx).await.unwrap();
        assert_eq!(ids, (1..=20_000).collect::<Vec<_>>());
        assert_eq!(sizes, [3_000, 3_000, 3_000, 3_000, 3_000, 3_000, 2_000]);
        assert_eq!(streamed(&source), 1);
        // Just past the inline limit, with batches smaller than it.
        let (_, rx) = source
            .read(plan(&ds, Some("id <= 513"), 200), key())
            .unwrap();
        let (ids, sizes) = drain(rx).await.unwrap();
        assert_eq!(ids, (1..=513).collect::<Vec<_>>());
        assert_eq!(sizes, [200, 200, 113]);
        assert_eq!(streamed(&source), 2);
        // At the inline limit: read inline, in one batch.
        let (_, rx) = source
            .read(plan(&ds, Some("id <= 512"), 8192), key())
            .unwrap();
        assert_eq!(drain(rx).await.unwrap().1, [512]);
        assert_eq!(streamed(&source), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_scan_leaves_the_callers_thread_and_still_answers() {
        let dir = tempfile::tempdir().unwrap();
        let (ds, db) = database(dir.path(), 400_000);
        let source = Source::open(&db).await.unwrap();
        // `label` has no index: the scan takes longer than the inline budget
        // and returns one row.
        let started = std::time::Instant::now();
        let (_, rx) = source
            .read(plan(&ds, Some("label = 'item-399999'"), 8192), key())
            .unwrap();
        let returned = started.elapsed();
        let (ids, _) = drain(rx).await.unwrap();
        assert_eq!(ids, [399_999]);
        assert_eq!(
            streamed(&source),
            1,
            "interrupted inline, run on a blocking thread"
        );
        assert!(
            returned < std::time::Duration::from_millis(500),
            "read blocked its caller for {returned:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_stream_frees_its_connection() {
        let dir = tempfile::tempdir().unwrap();
        let (ds, db) = database(dir.path(), 50_000);
        // One connection only: a stream that kept it would starve the next.
        let source = Source::open(&db).await.unwrap();
        let (_, mut rx) = source.read(plan(&ds, None, 1_000), key()).unwrap();
        assert_eq!(rx.recv().await.unwrap().unwrap().batch.num_rows(), 1_000);
        drop(rx);
        for _ in 0..3 {
            let (_, rx) = source
                .read(plan(&ds, Some("id = 7"), 1_000), key())
                .unwrap();
            assert_eq!(drain(rx).await.unwrap().0, [7]);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_locked_file_is_waited_for_off_the_callers_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (ds, db) = database(dir.path(), 100);
        let source = Source::open(&db).await.unwrap();
        // A writer of the department's own holds an exclusive lock.
        let writer = rusqlite::Connection::open(dir.path().join("items.db")).unwrap();
        writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let started = std::time::Instant::now();
        let (_, rx) = source.read(plan(&ds, Some("id = 7"), 8192), key()).unwrap();
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
        let reading = tokio::spawn(drain(rx));
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!reading.is_finished(), "the read waits for the lock");
        writer.execute_batch("COMMIT").unwrap();
        assert_eq!(reading.await.unwrap().unwrap().0, [7]);
        assert_eq!(streamed(&source), 1);
    }

    #[tokio::test]
    async fn a_bad_statement_is_a_query_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ds, db) = database(dir.path(), 10);
        ds.table = "no_such_table".into();
        let source = Source::open(&db).await.unwrap();
        let (_, rx) = source.read(plan(&ds, None, 8192), key()).unwrap();
        let err = drain(rx).await.unwrap_err();
        assert!(
            err.contains("query failed") && err.contains("no_such_table"),
            "{err}"
        );
        // The connection still serves.
        ds.table = "items".into();
        let (_, rx) = source.read(plan(&ds, Some("id = 3"), 8192), key()).unwrap();
        assert_eq!(drain(rx).await.unwrap().0, [3]);
    }
}

//! Joins across owners: a small declared specification of which datasets
//! to read (and how they match each other), and one SQL query that turns
//! them into the answer.
//!
//! ```toml
//! purpose = "低保资格核查"
//! answer = """
//! SELECT m.household_id, COUNT(DISTINCT v.plate_no) AS vehicles
//! FROM members m JOIN vehicles v ON v.owner_id = m.person_id
//! GROUP BY m.household_id ORDER BY m.household_id
//! """
//!
//! [[tables]]
//! name = "members"
//! dataset = "civil-affairs/relief-members"   # or file = "list.csv"
//! fields = ["household_id", "person_id"]
//!
//! [[tables]]
//! name = "vehicles"
//! dataset = "vehicle-admin/vehicles"
//! fields = ["owner_id", "plate_no"]
//! match = { field = "owner_id", keys = "members.person_id" }
//! ```
//!
//! Every dataset is checked against this department's grants before
//! anything is read: one missing grant (or field outside it) refuses the
//! whole join. Each read is an ordinary query, so the coordinator and the
//! owner node authorize, mask and audit it as usual. A table with `match`
//! is read as chunked `IN` lookups of the keys found in an earlier table,
//! never in full. The rows land in a private SQLite file in the temporary
//! directory, the answer query runs there, and the file is deleted.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use exchange_proto::v1 as pb;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Column, Connection, Row, SqliteConnection, TypeInfo, ValueRef};

use crate::{Client, ClientError, Result};

/// A join specification, as written in its TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinSpec {
    /// Recorded with every dataset read.
    pub purpose: String,
    /// One SELECT (or WITH ... SELECT) over the tables, by their names.
    pub answer: String,
    pub tables: Vec<TableSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// The table's name in the answer query.
    pub name: String,
    /// A federation dataset, `<department>/<dataset>`.
    pub dataset: Option<String>,
    /// Or a local CSV file with a header row (the consumer's own list).
    pub file: Option<PathBuf>,
    /// The fields to read (default: every field of the grant).
    #[serde(default)]
    pub fields: Vec<String>,
    /// A filter sent to the owner with the query.
    #[serde(default, rename = "where")]
    pub filter: String,
    /// Read only the rows whose `field` is among the values of an earlier
    /// table's column (`keys = "table.column"`).
    #[serde(rename = "match")]
    pub matching: Option<MatchSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    pub field: String,
    pub keys: String,
}

/// How one table was filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRead {
    pub name: String,
    /// The dataset, or the local file's path.
    pub source: String,
    pub rows: u64,
    /// Queries sent to the owner (one per chunk of keys for a match table).
    pub queries: u64,
}

/// The answer of a join.
#[derive(Debug, Clone)]
pub struct JoinAnswer {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub reads: Vec<TableRead>,
}

/// Keys per IN query for match tables.
const MATCH_CHUNK: usize = 1_000;
/// IN queries in flight at once.
const MATCH_PARALLEL: usize = 6;

fn invalid(message: impl Into<String>) -> ClientError {
    ClientError::Config(message.into())
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 64
}

fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

impl JoinSpec {
    pub fn load(path: &Path) -> Result<JoinSpec> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("cannot read the join spec {}: {e}", path.display())))?;
        let mut spec: JoinSpec = toml::from_str(&text).map_err(|e| {
            invalid(format!(
                "the join spec {} is not valid: {e}",
                path.display()
            ))
        })?;
        // Local files are relative to the spec.
        let base = path.parent().unwrap_or(Path::new("."));
        for t in &mut spec.tables {
            if let Some(f) = &t.file {
                if f.is_relative() {
                    t.file = Some(base.join(f));
                }
            }
        }
        spec.check()?;
        Ok(spec)
    }

    /// Structural checks: names, sources, match references, the answer.
    pub fn check(&self) -> Result<()> {
        if self.purpose.trim().is_empty() {
            return Err(invalid("the join spec must state its purpose"));
        }
        if self.tables.is_empty() || self.tables.len() > 16 {
            return Err(invalid("a join reads 1 to 16 tables"));
        }
        let mut seen: Vec<(&str, Option<&Vec<String>>)> = Vec::new();
        for t in &self.tables {
            if !is_identifier(&t.name) {
                return Err(invalid(format!(
                    "table name {:?} must be lower-case letters, digits and _",
                    t.name
                )));
            }
            if seen.iter().any(|(n, _)| *n == t.name) {
                return Err(invalid(format!("table name {:?} is used twice", t.name)));
            }
            match (&t.dataset, &t.file) {
                (Some(_), None) => {}
                (None, Some(_)) if t.matching.is_none() && t.filter.is_empty() => {}
                (None, Some(_)) => {
                    return Err(invalid(format!(
                        "table {:?} is a local file: `where` and `match` apply to datasets",
                        t.name
                    )))
                }
                _ => {
                    return Err(invalid(format!(
                        "table {:?} needs exactly one of dataset = \"<department>/<dataset>\" or file = \"list.csv\"",
                        t.name
                    )))
                }
            }
            if let Some(m) = &t.matching {
                let Some((table, column)) = m.keys.split_once('.') else {
                    return Err(invalid(format!(
                        "table {:?}: match keys must be \"table.column\"",
                        t.name
                    )));
                };
                let Some((_, fields)) = seen.iter().find(|(n, _)| *n == table) else {
                    return Err(invalid(format!(
                        "table {:?} matches {table:?}, which must be listed before it",
                        t.name
                    )));
                };
                if let Some(fields) = fields {
                    if !fields.is_empty() && !fields.iter().any(|f| f == column) {
                        return Err(invalid(format!(
                            "table {:?} matches {}, but {table:?} does not read {column:?}",
                            t.name, m.keys
                        )));
                    }
                }
                if !t.fields.is_empty() && !t.fields.contains(&m.field) {
                    return Err(invalid(format!(
                        "table {:?} matches on {:?}, which must be among its fields",
                        t.name, m.field
                    )));
                }
            }
            seen.push((&t.name, t.dataset.as_ref().map(|_| &t.fields)));
        }
        let head = self.answer.trim_start().to_ascii_lowercase();
        if !(head.starts_with("select") || head.starts_with("with")) {
            return Err(invalid(
                "the answer must be one SELECT (or WITH ... SELECT) query",
            ));
        }
        Ok(())
    }
}

/// A private SQLite file, deleted when dropped.
struct Scratch {
    path: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

fn sql_error(e: sqlx::Error) -> ClientError {
    invalid(format!("the local join store: {e}"))
}

impl Client {
    /// Runs a join: checks every dataset against this department's grants
    /// (refusing before anything is read), reads the tables, and answers.
    pub async fn join(&self, spec: &JoinSpec) -> Result<JoinAnswer> {
        spec.check()?;
        // 1. Every dataset must be granted, with every field asked for.
        let me = self.identity().member_id.clone();
        let grants = self.grants().await?;
        let mut fields_of = Vec::new();
        for t in &spec.tables {
            let Some(dataset) = &t.dataset else {
                fields_of.push(Vec::new());
                continue;
            };
            let grant = grants
                .iter()
                .find(|g| g.consumer == me && &g.dataset == dataset && g.state() == pb::GrantState::Active)
                .ok_or_else(|| {
                    invalid(format!(
                        "join refused before any data was read: {me} holds no active grant on {dataset} (table {:?}); ask with `exchange access request {dataset} --purpose ...`",
                        t.name
                    ))
                })?;
            let granted: Vec<String> = grant.fields.iter().map(|f| f.name.clone()).collect();
            let fields = if t.fields.is_empty() {
                granted.clone()
            } else {
                t.fields.clone()
            };
            for f in &fields {
                if !granted.contains(f) {
                    return Err(invalid(format!(
                        "join refused before any data was read: field {f:?} of {dataset} is outside your grant (granted: {})",
                        granted.join(", ")
                    )));
                }
            }
            if let Some(m) = &t.matching {
                if !fields.contains(&m.field) {
                    return Err(invalid(format!(
                        "join refused before any data was read: {dataset} matches on {:?}, which is outside your grant",
                        m.field
                    )));
                }
            }
            fields_of.push(fields);
        }

        // 2. A private store for the rows.
        let scratch = Scratch {
            path: std::env::temp_dir().join(format!(
                "exchange-join-{}-{}.sqlite",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            )),
        };
        let options = SqliteConnectOptions::new()
            .filename(&scratch.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Off)
            .synchronous(SqliteSynchronous::Off);
        let mut db = SqliteConnection::connect_with(&options)
            .await
            .map_err(sql_error)?;

        // 3. Read each table in order.
        let mut reads = Vec::new();
        for (t, fields) in spec.tables.iter().zip(&fields_of) {
            let read = match (&t.dataset, &t.file) {
                (_, Some(file)) => load_file(&mut db, &t.name, file).await?,
                (Some(dataset), None) => {
                    create_table(&mut db, &t.name, fields).await?;
                    let read = self
                        .load_dataset(&mut db, t, dataset, fields, &spec.purpose)
                        .await?;
                    if let Some(m) = &t.matching {
                        let index = format!(
                            "CREATE INDEX {} ON {} ({})",
                            quoted(&format!("{}_{}_idx", t.name, m.field)),
                            quoted(&t.name),
                            quoted(&m.field)
                        );
                        sqlx::query(&index)
                            .execute(&mut db)
                            .await
                            .map_err(sql_error)?;
                    }
                    read
                }
                (None, None) => {
                    return Err(invalid(format!(
                        "table {:?} needs a dataset or a file",
                        t.name
                    )))
                }
            };
            reads.push(read);
        }

        // 4. The answer.
        let rows = sqlx::query(&spec.answer)
            .fetch_all(&mut db)
            .await
            .map_err(|e| invalid(format!("the answer query failed: {e}")))?;
        let columns: Vec<String> = rows
            .first()
            .map(|r| r.columns().iter().map(|c| c.name().to_string()).collect())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut values = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                values.push(sqlite_value(row, i));
            }
            out.push(values);
        }
        drop(db);
        drop(scratch);
        Ok(JoinAnswer {
            columns,
            rows: out,
            reads,
        })
    }

    async fn load_dataset(
        &self,
        db: &mut SqliteConnection,
        t: &TableSpec,
        dataset: &str,
        fields: &[String],
        purpose: &str,
    ) -> Result<TableRead> {
        let command = |filter: String| exchange_query::QueryCommand {
            dataset: dataset.to_string(),
            fields: fields.to_vec(),
            filter,
            purpose: purpose.to_string(),
            user: String::new(),
            limit: None,
        };
        let mut read = TableRead {
            name: t.name.clone(),
            source: dataset.to_string(),
            rows: 0,
            queries: 0,
        };
        let Some(m) = &t.matching else {
            read.queries = 1;
            let mut stream = self.query(command(t.filter.clone())).await?;
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(flight_error)?;
                read.rows += insert_batch(db, &t.name, &batch).await?;
            }
            return Ok(read);
        };
        let (table, column) = m.keys.split_once('.').unwrap_or_default();
        // Key-set paging over the distinct keys: memory stays one chunk per query in flight.
        let page = format!(
            "SELECT DISTINCT {c} FROM {t} WHERE {c} IS NOT NULL AND {c} > ? ORDER BY {c} LIMIT {MATCH_CHUNK}",
            c = quoted(column),
            t = quoted(table)
        );
        let mut last = String::new();
        let mut in_flight = FuturesUnordered::new();
        let mut exhausted = false;
        loop {
            while !exhausted && in_flight.len() < MATCH_PARALLEL {
                let keys: Vec<String> = sqlx::query_scalar::<_, String>(&page)
                    .bind(&last)
                    .fetch_all(&mut *db)
                    .await
                    .map_err(|e| invalid(format!("reading the keys of {}: {e}", m.keys)))?;
                let Some(end) = keys.last() else {
                    exhausted = true;
                    break;
                };
                last = end.clone();
                let list: Vec<String> = keys
                    .iter()
                    .map(|k| format!("'{}'", k.replace('\'', "''")))
                    .collect();
                let mut filter = format!("{} IN ({})", m.field, list.join(","));
                if !t.filter.trim().is_empty() {
                    filter = format!("({}) AND ({filter})", t.filter);
                }
                read.queries += 1;
                let cmd = command(filter);
                in_flight.push(async move {
                    let mut batches: Vec<RecordBatch> = Vec::new();
                    let mut stream = self.query(cmd).await?;
                    while let Some(batch) = stream.next().await {
                        batches.push(batch.map_err(flight_error)?);
                    }
                    Ok::<_, ClientError>(batches)
                });
            }
            let Some(done) = in_flight.next().await else {
                break;
            };
            for batch in done? {
                read.rows += insert_batch(db, &t.name, &batch).await?;
            }
        }
        Ok(read)
    }
}

fn flight_error(e: arrow_flight::error::FlightError) -> ClientError {
    match e {
        arrow_flight::error::FlightError::Tonic(status) => ClientError::Status(*status),
        other => invalid(other.to_string()),
    }
}

async fn create_table(db: &mut SqliteConnection, name: &str, columns: &[String]) -> Result<()> {
    let columns: Vec<String> = columns.iter().map(|c| quoted(c)).collect();
    sqlx::query(&format!(
        "CREATE TABLE {} ({})",
        quoted(name),
        columns.join(", ")
    ))
    .execute(db)
    .await
    .map_err(sql_error)?;
    Ok(())
}

async fn insert_batch(db: &mut SqliteConnection, table: &str, batch: &RecordBatch) -> Result<u64> {
    if batch.num_rows() == 0 {
        return Ok(0);
    }
    let schema = batch.schema();
    let names: Vec<String> = schema.fields().iter().map(|f| quoted(f.name())).collect();
    let marks = vec!["?"; names.len()].join(", ");
    let insert = format!(
        "INSERT INTO {} ({}) VALUES ({marks})",
        quoted(table),
        names.join(", ")
    );
    let mut tx = db.begin().await.map_err(sql_error)?;
    for r in 0..batch.num_rows() {
        let mut q = sqlx::query(&insert);
        for c in batch.columns() {
            q = match crate::values::json_cell(c.as_ref(), r) {
                Value::Null => q.bind(None::<String>),
                Value::Number(n) if n.is_i64() => q.bind(n.as_i64()),
                Value::Number(n) => q.bind(n.as_f64()),
                Value::Bool(b) => q.bind(b),
                Value::String(s) => q.bind(s),
                other => q.bind(other.to_string()),
            };
        }
        q.execute(&mut *tx).await.map_err(sql_error)?;
    }
    tx.commit().await.map_err(sql_error)?;
    Ok(batch.num_rows() as u64)
}

/// A local CSV list with a header row, every value as text. Read with the
/// csv crate, so quoted values (`"Zhang, San"`, as the exchange's own CSV
/// output writes them) keep their commas and quotes.
async fn load_file(db: &mut SqliteConnection, name: &str, file: &Path) -> Result<TableRead> {
    let cannot = |e: csv::Error| invalid(format!("cannot read {}: {e}", file.display()));
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(file)
        .map_err(cannot)?;
    let columns: Vec<String> = reader
        .headers()
        .map_err(cannot)?
        .iter()
        .map(|c| c.trim_start_matches('\u{feff}').to_string())
        .collect();
    if columns.is_empty() {
        return Err(invalid(format!(
            "{} is empty: it needs a header row",
            file.display()
        )));
    }
    let unique: HashSet<&String> = columns.iter().collect();
    if columns.iter().any(|c| c.is_empty()) || unique.len() != columns.len() {
        return Err(invalid(format!(
            "{}: the header row must name every column once",
            file.display()
        )));
    }
    create_table(db, name, &columns).await?;
    let insert = format!(
        "INSERT INTO {} VALUES ({})",
        quoted(name),
        vec!["?"; columns.len()].join(", ")
    );
    let mut rows = 0u64;
    let mut tx = db.begin().await.map_err(sql_error)?;
    for record in reader.records() {
        let record = record.map_err(|e| match e.kind() {
            csv::ErrorKind::UnequalLengths {
                pos,
                expected_len,
                len,
            } => invalid(format!(
                "{} line {}: {len} value(s) where the header names {expected_len}",
                file.display(),
                pos.as_ref().map_or(0, |p| p.line())
            )),
            _ => invalid(format!("cannot read {}: {e}", file.display())),
        })?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        let mut q = sqlx::query(&insert);
        for v in &record {
            q = q.bind(v.to_string());
        }
        q.execute(&mut *tx).await.map_err(sql_error)?;
        rows += 1;
    }
    tx.commit().await.map_err(sql_error)?;
    Ok(TableRead {
        name: name.to_string(),
        source: file.display().to_string(),
        rows,
        queries: 0,
    })
}

fn sqlite_value(row: &sqlx::sqlite::SqliteRow, i: usize) -> Value {
    let Ok(raw) = row.try_get_raw(i) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    match raw.type_info().name() {
        "INTEGER" => row
            .try_get::<i64, _>(i)
            .map(Value::from)
            .unwrap_or(Value::Null),
        "REAL" => row
            .try_get::<f64, _>(i)
            .map(Value::from)
            .unwrap_or(Value::Null),
        _ => row
            .try_get::<String, _>(i)
            .map(Value::String)
            .unwrap_or(Value::Null),
    }
}

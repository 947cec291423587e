//! Reading a dataset: a projection and a filter become one parameterized
//! SELECT; rows stream from the database cursor into Arrow record batches
//! through a bounded channel (backpressure: at most two batches wait), and
//! masks are applied to each batch before it leaves this crate.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{Field, Schema, SchemaRef};
use exchange_catalog::manifest::{DatasetSpec, FieldSpec, SourceKind};
use exchange_policy::mask::{apply, HashKey, MaskedValue};
use exchange_policy::{FieldType, Mask};
use exchange_query::{Filter, Value};
use futures::StreamExt;
use sqlx::{ColumnIndex, Decode, Row, Type};
use tokio::sync::mpsc;

use crate::{Pool, Source, SourceError};

/// Rows per Arrow batch unless asked otherwise.
pub const DEFAULT_BATCH_ROWS: usize = 8_192;

/// Rows the column builders have room for before their first growth.
const INITIAL_BUILDER_ROWS: usize = 64;

/// One output column: the manifest field and the mask to apply to it.
#[derive(Debug, Clone)]
pub struct Projection {
    pub field: FieldSpec,
    pub mask: Mask,
}

/// What to read. The filter must already be checked
/// ([`exchange_query::Filter::check`]) against the same fields.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    pub dataset: DatasetSpec,
    pub columns: Vec<Projection>,
    pub filter: Option<Filter>,
    pub limit: Option<u64>,
    pub batch_rows: usize,
    /// Subject-key fields (person IDs, company codes) read alongside the
    /// output, never sent: the node records whose rows it returned.
    pub subject_keys: Vec<FieldSpec>,
}

/// One batch ready to leave, and the raw subject keys of its rows (one
/// list per [`ReadPlan::subject_keys`] field, nulls left out).
#[derive(Debug, Clone)]
pub struct SourceBatch {
    pub batch: RecordBatch,
    pub subject_keys: Vec<Vec<String>>,
}

pub use exchange_policy::arrow::output_type;

/// The schema of what a plan returns.
pub fn output_schema(columns: &[Projection]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|p| Field::new(&p.field.name, output_type(p.field.field_type, p.mask), true))
            .collect::<Vec<_>>(),
    ))
}

#[derive(Clone, Copy)]
struct Dialect(SourceKind);

impl Dialect {
    fn ident(self, name: &str) -> String {
        // Names come from the validated manifest ([A-Za-z_][A-Za-z0-9_]*);
        // quoting is still applied so reserved words work.
        match self.0 {
            SourceKind::Mysql => format!("`{name}`"),
            _ => format!("\"{name}\""),
        }
    }

    fn table(self, table: &str) -> String {
        table
            .split('.')
            .map(|p| self.ident(p))
            .collect::<Vec<_>>()
            .join(".")
    }

    fn placeholder(self, n: usize, t: FieldType) -> String {
        match (self.0, t) {
            (SourceKind::Postgres, FieldType::Date) => format!("${n}::date"),
            (SourceKind::Postgres, FieldType::Timestamp) => format!("${n}::timestamp"),
            (SourceKind::Postgres, _) => format!("${n}"),
            _ => "?".to_string(),
        }
    }

    /// A select expression that every backend returns in the same wire
    /// type: text for strings and dates, 64-bit integers, doubles.
    fn select_expr(self, column: &str, t: FieldType) -> String {
        let c = self.ident(column);
        match (self.0, t) {
            (SourceKind::Sqlite, FieldType::String | FieldType::Date | FieldType::Timestamp) => {
                format!("CAST({c} AS TEXT)")
            }
            (SourceKind::Sqlite, FieldType::Integer | FieldType::Boolean) => {
                format!("CAST({c} AS INTEGER)")
            }
            (SourceKind::Sqlite, FieldType::Float) => format!("CAST({c} AS REAL)"),
            (SourceKind::Postgres, FieldType::String) => format!("{c}::text"),
            (SourceKind::Postgres, FieldType::Integer) => format!("{c}::bigint"),
            (SourceKind::Postgres, FieldType::Boolean) => format!("({c})::int::bigint"),
            (SourceKind::Postgres, FieldType::Float) => format!("{c}::double precision"),
            (SourceKind::Postgres, FieldType::Date) => format!("to_char({c}, 'YYYY-MM-DD')"),
            (SourceKind::Postgres, FieldType::Timestamp) => {
                format!("to_char({c}, 'YYYY-MM-DD HH24:MI:SS.US')")
            }
            (SourceKind::Mysql, FieldType::String) => format!("CAST({c} AS CHAR)"),
            (SourceKind::Mysql, FieldType::Integer | FieldType::Boolean) => {
                format!("CAST({c} AS SIGNED)")
            }
            (SourceKind::Mysql, FieldType::Float) => format!("CAST({c} AS DOUBLE)"),
            (SourceKind::Mysql, FieldType::Date) => format!("DATE_FORMAT({c}, '%Y-%m-%d')"),
            (SourceKind::Mysql, FieldType::Timestamp) => {
                format!("DATE_FORMAT({c}, '%Y-%m-%d %H:%i:%s.%f')")
            }
        }
    }
}

/// Builds the SELECT for a plan: identifiers from the manifest, every value a
/// bound parameter. Returns the SQL and the parameters in order.
pub fn build_select(
    kind: SourceKind,
    plan: &ReadPlan,
) -> Result<(String, Vec<(Value, FieldType)>), SourceError> {
    let d = Dialect(kind);
    let mut sql = String::from("SELECT ");
    if plan.columns.is_empty() {
        return Err(SourceError::Plan("a read needs at least one field".into()));
    }
    let fields = plan
        .columns
        .iter()
        .map(|p| &p.field)
        .chain(plan.subject_keys.iter());
    for (i, f) in fields.enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&d.select_expr(&f.column, f.field_type));
    }
    sql.push_str(" FROM ");
    sql.push_str(&d.table(&plan.dataset.table));
    let mut params = Vec::new();
    if let Some(filter) = &plan.filter {
        sql.push_str(" WHERE ");
        write_filter(d, filter, &plan.dataset, &mut sql, &mut params)?;
    }
    if let Some(limit) = plan.limit {
        sql.push_str(&format!(" LIMIT {}", limit.min(i64::MAX as u64)));
    }
    Ok((sql, params))
}

fn write_filter(
    d: Dialect,
    filter: &Filter,
    dataset: &DatasetSpec,
    sql: &mut String,
    params: &mut Vec<(Value, FieldType)>,
) -> Result<(), SourceError> {
    let field = |name: &str| -> Result<&FieldSpec, SourceError> {
        dataset
            .fields
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| SourceError::Plan(format!("no field {name:?} in {}", dataset.id)))
    };
    let mut bind = |sql: &mut String, v: &Value, t: FieldType| {
        params.push((v.clone(), t));
        sql.push_str(&d.placeholder(params.len(), t));
    };
    match filter {
        Filter::Compare {
            field: name,
            op,
            value,
        } => {
            let f = field(name)?;
            sql.push_str(&d.ident(&f.column));
            sql.push(' ');
            sql.push_str(op.sql());
            sql.push(' ');
            bind(sql, value, f.field_type);
        }
        Filter::In {
            field: name,
            values,
        } => {
            let f = field(name)?;
            sql.push_str(&d.ident(&f.column));
            sql.push_str(" IN (");
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                bind(sql, v, f.field_type);
            }
            sql.push(')');
        }
        Filter::Between {
            field: name,
            low,
            high,
        } => {
            let f = field(name)?;
            sql.push_str(&d.ident(&f.column));
            sql.push_str(" BETWEEN ");
            bind(sql, low, f.field_type);
            sql.push_str(" AND ");
            bind(sql, high, f.field_type);
        }
        Filter::Prefix {
            field: name,
            prefix,
        } => {
            let f = field(name)?;
            let escaped: String = prefix
                .chars()
                .flat_map(|c| {
                    if matches!(c, '!' | '%' | '_') {
                        vec!['!', c]
                    } else {
                        vec![c]
                    }
                })
                .collect();
            sql.push_str(&d.ident(&f.column));
            sql.push_str(" LIKE ");
            bind(sql, &Value::Text(format!("{escaped}%")), FieldType::String);
            sql.push_str(" ESCAPE '!'");
        }
        Filter::And(parts) | Filter::Or(parts) => {
            let sep = if matches!(filter, Filter::And(_)) {
                " AND "
            } else {
                " OR "
            };
            sql.push('(');
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    sql.push_str(sep);
                }
                write_filter(d, p, dataset, sql, params)?;
            }
            sql.push(')');
        }
    }
    Ok(())
}

pub(crate) enum ColumnBuilder {
    Text(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl ColumnBuilder {
    fn new(t: FieldType, capacity: usize) -> ColumnBuilder {
        match t {
            FieldType::String => {
                ColumnBuilder::Text(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            FieldType::Integer => ColumnBuilder::Int(Int64Builder::with_capacity(capacity)),
            FieldType::Float => ColumnBuilder::Float(Float64Builder::with_capacity(capacity)),
            FieldType::Boolean => ColumnBuilder::Bool(BooleanBuilder::with_capacity(capacity)),
            FieldType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(capacity)),
            FieldType::Timestamp => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity))
            }
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` prefix (a real calendar date:
/// 2023-02-30 is not one).
pub(crate) fn parse_date(text: &str) -> Option<i32> {
    let date = time::Date::parse(text.get(..10)?, DATE).ok()?;
    Some((date - time::macros::date!(1970 - 01 - 01)).whole_days() as i32)
}

/// Microseconds since the epoch of `YYYY-MM-DD[ T]HH:MM:SS[.ffffff]`.
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    let days = parse_date(text)? as i64;
    let rest = text.get(10..).unwrap_or("");
    if rest.is_empty() {
        return Some(days * 86_400_000_000);
    }
    if !matches!(rest.as_bytes()[0], b' ' | b'T') {
        return None;
    }
    let rest = rest.get(1..)?;
    let clock = rest.get(..8)?;
    let t = time::Time::parse(clock, TIME).ok()?;
    let frac = rest.get(8..).unwrap_or("");
    let micros = match frac.strip_prefix('.') {
        Some(f) => {
            let digits: String = f
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .take(6)
                .collect();
            format!("{digits:0<6}").parse::<i64>().unwrap_or(0)
        }
        None => 0,
    };
    let (h, m, sec) = t.as_hms();
    let seconds = days * 86_400 + h as i64 * 3_600 + m as i64 * 60 + sec as i64;
    Some(seconds * 1_000_000 + micros)
}

const DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");
const TIME: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[hour]:[minute]:[second]");

fn append_row<'r, R>(row: &'r R, builders: &mut [ColumnBuilder]) -> Result<(), sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    f64: Decode<'r, R::Database> + Type<R::Database>,
{
    for (i, b) in builders.iter_mut().enumerate() {
        match b {
            ColumnBuilder::Text(b) => b.append_option(row.try_get::<Option<&str>, _>(i)?),
            ColumnBuilder::Int(b) => b.append_option(row.try_get::<Option<i64>, _>(i)?),
            ColumnBuilder::Float(b) => b.append_option(row.try_get::<Option<f64>, _>(i)?),
            ColumnBuilder::Bool(b) => {
                b.append_option(row.try_get::<Option<i64>, _>(i)?.map(|v| v != 0))
            }
            ColumnBuilder::Date(b) => {
                b.append_option(row.try_get::<Option<&str>, _>(i)?.and_then(parse_date))
            }
            ColumnBuilder::Timestamp(b) => {
                b.append_option(row.try_get::<Option<&str>, _>(i)?.and_then(parse_timestamp))
            }
        }
    }
    Ok(())
}

/// Applies one column's mask to a finished array.
pub fn mask_array(array: &ArrayRef, field_type: FieldType, mask: Mask, key: &HashKey) -> ArrayRef {
    if mask == Mask::None {
        return array.clone();
    }
    if mask == Mask::Null {
        return arrow_array::new_null_array(array.data_type(), array.len());
    }
    if mask == Mask::Year {
        let mut out = Int32Builder::with_capacity(array.len());
        for i in 0..array.len() {
            let year = if array.is_null(i) {
                None
            } else {
                match field_type {
                    FieldType::Date => array
                        .as_any()
                        .downcast_ref::<arrow_array::Date32Array>()
                        .and_then(|a| a.value_as_date(i))
                        .map(|d| chrono_year(d.to_string())),
                    FieldType::Timestamp => array
                        .as_any()
                        .downcast_ref::<arrow_array::TimestampMicrosecondArray>()
                        .and_then(|a| a.value_as_datetime(i))
                        .map(|d| chrono_year(d.to_string())),
                    _ => None,
                }
                .flatten()
            };
            out.append_option(year);
        }
        return Arc::new(out.finish());
    }
    let texts = text_values(array, field_type);
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * 16);
    for v in texts.iter() {
        match apply(mask, v.as_deref(), key) {
            MaskedValue::Text(t) => out.append_value(t),
            MaskedValue::Null => out.append_null(),
        }
    }
    Arc::new(out.finish())
}

fn chrono_year(text: String) -> Option<i32> {
    text.get(..4).and_then(|y| y.parse().ok())
}

/// The canonical text of each value, for masks that work on text.
fn text_values(array: &ArrayRef, field_type: FieldType) -> Vec<Option<String>> {
    if let Some(a) = array.as_any().downcast_ref::<StringArray>() {
        return a.iter().map(|v| v.map(str::to_string)).collect();
    }
    (0..array.len())
        .map(|i| {
            if array.is_null(i) {
                return None;
            }
            let any = array.as_any();
            Some(match field_type {
                FieldType::Integer => any
                    .downcast_ref::<arrow_array::Int64Array>()
                    .map(|a| a.value(i).to_string())
                    .unwrap_or_default(),
                FieldType::Float => any
                    .downcast_ref::<arrow_array::Float64Array>()
                    .map(|a| a.value(i).to_string())
                    .unwrap_or_default(),
                FieldType::Boolean => any
                    .downcast_ref::<arrow_array::BooleanArray>()
                    .map(|a| a.value(i).to_string())
                    .unwrap_or_default(),
                FieldType::Date => any
                    .downcast_ref::<arrow_array::Date32Array>()
                    .and_then(|a| a.value_as_date(i))
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                FieldType::Timestamp => any
                    .downcast_ref::<arrow_array::TimestampMicrosecondArray>()
                    .and_then(|a| a.value_as_datetime(i))
                    .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default(),
                FieldType::String => String::new(),
            })
        })
        .collect()
}

/// A stream of masked record batches.
pub type BatchStream = mpsc::Receiver<Result<SourceBatch, SourceError>>;

/// Turns rows into masked batches of at most `batch_rows` rows: column
/// builders for the output fields and the subject keys, filled row by row
/// by whichever driver reads the cursor.
pub(crate) struct Assembler {
    builders: Vec<ColumnBuilder>,
    columns: Vec<Projection>,
    subject_keys: Vec<FieldSpec>,
    schema: SchemaRef,
    key: HashKey,
    rows: usize,
    pub(crate) batch_rows: usize,
}

impl Assembler {
    pub(crate) fn new(plan: ReadPlan, schema: SchemaRef, key: HashKey) -> Assembler {
        let batch_rows = plan.batch_rows.clamp(1, 1 << 20);
        // Builders start small and double as rows come: a key lookup
        // returning one row must not allocate (and fault in) room for a
        // full batch of every column.
        let initial_rows = batch_rows
            .min(INITIAL_BUILDER_ROWS)
            .min(plan.limit.map_or(usize::MAX, |l| l.max(1) as usize));
        let builders = plan
            .columns
            .iter()
            .map(|p| p.field.field_type)
            .chain(plan.subject_keys.iter().map(|f| f.field_type))
            .map(|t| ColumnBuilder::new(t, initial_rows))
            .collect();
        Assembler {
            builders,
            columns: plan.columns,
            subject_keys: plan.subject_keys,
            schema,
            key,
            rows: 0,
            batch_rows,
        }
    }

    pub(crate) fn builders(&mut self) -> &mut [ColumnBuilder] {
        &mut self.builders
    }

    /// Counts a row just appended; true when the batch is full.
    pub(crate) fn row_added(&mut self) -> bool {
        self.rows += 1;
        self.rows == self.batch_rows
    }

    /// Drops the rows appended since the last batch.
    pub(crate) fn discard(&mut self) {
        for b in &mut self.builders {
            b.finish();
        }
        self.rows = 0;
    }

    /// Rows appended since the last batch.
    pub(crate) fn pending(&self) -> usize {
        self.rows
    }

    /// Finishes the rows appended so far into one masked batch.
    pub(crate) fn emit(&mut self) -> Result<SourceBatch, SourceError> {
        self.rows = 0;
        let outputs = self.columns.len();
        let key = &self.key;
        let arrays: Vec<ArrayRef> = self.builders[..outputs]
            .iter_mut()
            .zip(&self.columns)
            .map(|(b, p)| mask_array(&b.finish(), p.field.field_type, p.mask, key))
            .collect();
        let subject_keys = self.builders[outputs..]
            .iter_mut()
            .zip(&self.subject_keys)
            .map(|(b, f)| {
                text_values(&b.finish(), f.field_type)
                    .into_iter()
                    .flatten()
                    .collect()
            })
            .collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| SourceError::Plan(e.to_string()))?;
        Ok(SourceBatch {
            batch,
            subject_keys,
        })
    }
}

/// Reads a sqlx cursor into batches sent on `tx`, stopping when the
/// receiver is gone.
macro_rules! read_sqlx {
    ($pool:expr, $bind:ident, $name:expr, $sql:expr, $params:expr, $assembler:expr, $tx:expr) => {{
        let name = $name;
        let mut assembler = $assembler;
        let tx = $tx;
        let failed = |e: sqlx::Error| match e {
            sqlx::Error::PoolTimedOut => SourceError::Unreachable {
                name: name.clone(),
                reason: format!(
                    "no connection within {} s: the database server is down or unreachable, or all of the node's connections to it are busy",
                    crate::SERVER_CONNECT_TIMEOUT.as_secs()
                ),
            },
            sqlx::Error::Io(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => SourceError::Unreachable {
                name: name.clone(),
                reason: e.to_string(),
            },
            other => SourceError::Query {
                name: name.clone(),
                reason: other.to_string(),
            },
        };
        let mut q = sqlx::query(&$sql);
        for (v, t) in &$params {
            q = $bind(q, v, *t);
        }
        let mut rows = q.fetch($pool);
        while let Some(row) = rows.next().await {
            let appended = row
                .map_err(failed)
                .and_then(|r| append_row(&r, assembler.builders()).map_err(failed));
            if let Err(e) = appended {
                let _ = tx.send(Err(e)).await;
                return;
            }
            if assembler.row_added() && tx.send(assembler.emit()).await.is_err() {
                return;
            }
        }
        if assembler.pending() > 0 {
            let _ = tx.send(assembler.emit()).await;
        }
    }};
}

impl Source {
    /// Runs the plan and streams masked batches. The database cursor is
    /// read until the receiver is dropped; at most two batches wait in the
    /// channel, so memory stays bounded whatever the result size.
    ///
    /// SQLite is read by [`crate::sqlite`]: a short result is read here and
    /// now, a long one on a blocking thread. PostgreSQL and MySQL are read
    /// by a task through sqlx.
    pub fn read(
        &self,
        plan: ReadPlan,
        key: HashKey,
    ) -> Result<(SchemaRef, BatchStream), SourceError> {
        let (sql, params) = build_select(self.kind(), &plan)?;
        let schema = output_schema(&plan.columns);
        let (tx, rx) = mpsc::channel(2);
        let assembler = Assembler::new(plan, schema.clone(), key);
        let name = self.name.clone();
        match &self.pool {
            Pool::Sqlite(_, readers) => {
                crate::sqlite::read(readers.clone(), sql, params, assembler, tx)
            }
            Pool::Postgres(p) => {
                let p = p.clone();
                tokio::spawn(async move {
                    read_sqlx!(&p, bind_postgres, name, sql, params, assembler, tx)
                });
            }
            Pool::MySql(p) => {
                let p = p.clone();
                tokio::spawn(async move {
                    read_sqlx!(&p, bind_mysql, name, sql, params, assembler, tx)
                });
            }
        }
        Ok((schema, rx))
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;
type MySqlQuery<'q> = sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments>;

fn bind_postgres<'q>(q: PgQuery<'q>, v: &'q Value, t: FieldType) -> PgQuery<'q> {
    match (v, t) {
        (Value::Bool(b), _) => q.bind(*b),
        (Value::Text(s), _) => q.bind(s.as_str()),
        (Value::Integer(i), _) => q.bind(*i),
        (Value::Float(x), _) => q.bind(*x),
    }
}

fn bind_mysql<'q>(q: MySqlQuery<'q>, v: &'q Value, _t: FieldType) -> MySqlQuery<'q> {
    match v {
        Value::Text(s) => q.bind(s.as_str()),
        Value::Integer(i) => q.bind(*i),
        Value::Float(x) => q.bind(*x),
        Value::Bool(b) => q.bind(*b),
    }
}

#[cfg(test)]
mod date_tests {
    use super::{parse_date, parse_timestamp};

    #[test]
    fn dates_and_times_are_real_calendar_values() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("2023-02-30"), None, "no such day");
        assert_eq!(parse_date("2023-13-01"), None);
        assert_eq!(parse_date("2023-1-1"), None);
        assert_eq!(parse_date("登记日期2023"), None);
        assert_eq!(
            parse_timestamp("1970-01-02 00:00:01.5"),
            Some(86_401_500_000)
        );
        assert_eq!(parse_timestamp("1970-01-01T10:00:00"), Some(36_000_000_000));
        assert_eq!(parse_timestamp("1970-01-01"), Some(0));
        assert_eq!(parse_timestamp("1970-01-01 25:00:00"), None);
    }
}

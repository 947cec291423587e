//! What a Flight descriptor or ticket asks for, and the Flight SQL
//! catalog answers.
//!
//! One Flight endpoint serves three kinds of client:
//! - the exchange's own JSON command (`proto/query-command.schema.json`);
//! - a path descriptor `["vehicle-admin", "vehicles"]`, for every field of
//!   the caller's grant;
//! - Flight SQL (ADBC, JDBC, DBeaver): a `SELECT` translated by
//!   [`crate::sql`], and the catalog as one schema per department and one
//!   table per dataset, with the column types the caller actually receives
//!   under its grant's masks.
//!
//! A path or an SQL statement carries no purpose, so the purpose (and the
//! user) come from the call headers `x-exchange-purpose` and
//! `x-exchange-user`, UTF-8, percent-encoded where not plain ASCII.

use std::sync::{Arc, LazyLock};

use exchange_transport::refusal::Refusal;

use arrow_array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{Any, Command, CommandGetPrimaryKeys, CommandGetTables, SqlInfo};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use exchange_policy::arrow::output_type;
use exchange_policy::ticket::TicketField;
use exchange_policy::{FieldType, Mask};
use exchange_proto::v1 as pb;
use exchange_query::QueryCommand;
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::sql::CATALOG;

/// The call header that carries a query's purpose for path descriptors
/// and Flight SQL.
pub const PURPOSE_HEADER: &str = "x-exchange-purpose";
/// The call header that names the person asking.
pub const USER_HEADER: &str = "x-exchange-user";
/// Flight SQL messages are `Any` values whose type URL starts so.
const FLIGHT_SQL_TYPE_PREFIX: &str = "type.googleapis.com/arrow.flight.protocol.sql.";

/// What a descriptor or `DoGet` ticket asks for.
#[derive(Debug)]
pub enum Asked {
    /// A query of one dataset, from JSON, a path or SQL.
    Query(QueryCommand),
    /// A Flight SQL catalog request.
    Catalog(Command),
}

/// A header's text, percent-decoded; empty when absent.
pub fn header_text(meta: &MetadataMap, name: &str) -> Result<String, Status> {
    let Some(value) = meta.get(name) else {
        return Ok(String::new());
    };
    let decoded: Vec<u8> = percent_encoding::percent_decode(value.as_bytes()).collect();
    String::from_utf8(decoded).map_err(|_| {
        Status::invalid_argument(format!(
            "the {name} header is not UTF-8 text; percent-encode it (for example urllib.parse.quote)"
        ))
    })
}

/// Refuses a query with no purpose, naming where a purpose goes for this
/// kind of client.
fn require_purpose(cmd: &QueryCommand, how: &str) -> Result<(), Status> {
    if cmd.purpose.trim().is_empty() {
        return Err(Refusal::PurposeRequired.status(format!(
            "a query must state its purpose: {how} carries none, so set the {PURPOSE_HEADER} call header (ADBC: the option adbc.flight.sql.rpc.call_header.{PURPOSE_HEADER}; JDBC: the connection property {PURPOSE_HEADER}), percent-encoded where not ASCII"
        )));
    }
    Ok(())
}

/// Reads a `GetFlightInfo`/`GetSchema` descriptor.
pub fn asked_by_descriptor(d: &FlightDescriptor, meta: &MetadataMap) -> Result<Asked, Status> {
    use arrow_flight::flight_descriptor::DescriptorType;
    match d.r#type() {
        DescriptorType::Path => {
            let dataset = match d.path.as_slice() {
                [dept, local] => format!("{dept}/{local}"),
                [one] if one.contains('/') => one.clone(),
                _ => {
                    return Err(Status::invalid_argument(
                        "a path descriptor names one dataset: [\"department\", \"dataset\"]",
                    ))
                }
            };
            Ok(Asked::Query(QueryCommand {
                dataset,
                fields: Vec::new(),
                filter: String::new(),
                purpose: header_text(meta, PURPOSE_HEADER)?,
                user: header_text(meta, USER_HEADER)?,
                limit: None,
            }))
        }
        _ => asked_by_bytes(&d.cmd, meta, "descriptor command"),
    }
}

/// Reads a descriptor command or a `DoGet` ticket that is not a sealed
/// ticket: JSON, or a Flight SQL message.
pub fn asked_by_bytes(bytes: &[u8], meta: &MetadataMap, what: &str) -> Result<Asked, Status> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        let cmd: QueryCommand = serde_json::from_slice(bytes).map_err(|e| {
            Status::invalid_argument(format!(
                "the {what} is JSON but not a query command (see proto/query-command.schema.json): {e}"
            ))
        })?;
        return Ok(Asked::Query(cmd));
    }
    let any = Any::decode(bytes)
        .ok()
        .filter(|a| a.type_url.starts_with(FLIGHT_SQL_TYPE_PREFIX))
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "the {what} is neither a JSON query command such as {{\"dataset\": \"tax/taxpayers\", \"purpose\": \"...\"}} (see proto/query-command.schema.json) nor a Flight SQL command"
            ))
        })?;
    let command = Command::try_from(any)
        .map_err(|e| Status::invalid_argument(format!("the Flight SQL {what}: {e}")))?;
    match command {
        Command::CommandStatementQuery(q) => {
            let select = crate::sql::translate(&q.query)?;
            let cmd = QueryCommand {
                dataset: select.dataset,
                fields: select.fields,
                filter: select.filter,
                purpose: header_text(meta, PURPOSE_HEADER)?,
                user: header_text(meta, USER_HEADER)?,
                limit: select.limit,
            };
            require_purpose(&cmd, "SQL")?;
            Ok(Asked::Query(cmd))
        }
        c @ (Command::CommandGetCatalogs(_)
        | Command::CommandGetDbSchemas(_)
        | Command::CommandGetTables(_)
        | Command::CommandGetTableTypes(_)
        | Command::CommandGetPrimaryKeys(_)
        | Command::CommandGetSqlInfo(_)) => Ok(Asked::Catalog(c)),
        Command::CommandPreparedStatementQuery(_)
        | Command::CommandStatementSubstraitPlan(_) => Err(Status::unimplemented(
            "prepared statements and Substrait plans are not supported: send the SELECT as a plain statement",
        )),
        Command::CommandStatementUpdate(_)
        | Command::CommandStatementIngest(_)
        | Command::CommandPreparedStatementUpdate(_) => Err(Status::unimplemented(
            "writes are not supported: the exchange only reads; each department changes its own data in its own systems",
        )),
        other => Err(Status::unimplemented(format!(
            "the Flight SQL request {} is not supported; supported: statements (SELECT), GetCatalogs, GetDbSchemas, GetTables, GetTableTypes, GetPrimaryKeys, GetSqlInfo",
            other.type_url().trim_start_matches(FLIGHT_SQL_TYPE_PREFIX)
        ))),
    }
}

/// Where a path descriptor's purpose goes, checked before authorization
/// so the refusal names the header, not a command-line flag.
pub fn check_path_purpose(d: &FlightDescriptor, cmd: &QueryCommand) -> Result<(), Status> {
    if d.r#type() == arrow_flight::flight_descriptor::DescriptorType::Path {
        require_purpose(cmd, "a path descriptor")?;
    }
    Ok(())
}

/// The schema of what the owner node sends for these fields: each field's
/// Arrow type after its mask, in the order asked.
pub fn result_schema(dataset: &pb::Dataset, fields: &[TicketField]) -> Result<Schema, Status> {
    let columns = fields
        .iter()
        .map(|f| {
            let spec = dataset
                .fields
                .iter()
                .find(|d| d.name == f.name)
                .ok_or_else(|| Status::internal(format!("{} lost field {}", dataset.id, f.name)))?;
            let t: FieldType = spec
                .r#type
                .parse()
                .map_err(|_| Status::internal(format!("{}: unknown type", f.name)))?;
            let m: Mask = f
                .mask
                .parse()
                .map_err(|_| Status::internal(format!("{}: unknown mask", f.name)))?;
            Ok(Field::new(&f.name, output_type(t, m), true))
        })
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(Schema::new(columns))
}

/// The fields a default grant on `dataset` gives: every field but the
/// secret ones, under the owner's masks.
pub fn default_fields(dataset: &pb::Dataset) -> Vec<TicketField> {
    dataset
        .fields
        .iter()
        .filter(|f| f.sensitivity != "secret")
        .map(|f| TicketField {
            name: f.name.clone(),
            mask: if f.mask.is_empty() {
                "none".into()
            } else {
                f.mask.clone()
            },
        })
        .collect()
}

static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Exchange coordinator");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "60");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.build().expect("static SQL info")
});

/// A catalog request's schema, for its `FlightInfo`.
pub fn catalog_schema(c: &Command) -> Result<SchemaRef, Status> {
    Ok(match c {
        Command::CommandGetCatalogs(q) => (*q).into_builder().schema(),
        Command::CommandGetDbSchemas(q) => q.clone().into_builder().schema(),
        Command::CommandGetTables(q) => q.clone().into_builder().schema(),
        Command::CommandGetTableTypes(q) => (*q).into_builder().schema(),
        Command::CommandGetSqlInfo(q) => q.clone().into_builder(&SQL_INFO).schema(),
        Command::CommandGetPrimaryKeys(_) => PRIMARY_KEYS_SCHEMA.clone(),
        _ => return Err(Status::internal("not a catalog request")),
    })
}

/// The `FlightInfo` of a catalog request: its schema and one endpoint whose
/// ticket is the request itself.
pub fn catalog_info(c: &Command, descriptor: FlightDescriptor) -> Result<FlightInfo, Status> {
    let schema = catalog_schema(c)?;
    let ticket = Ticket::new(c.clone().into_any().encode_to_vec());
    FlightInfo::new()
        .try_with_schema(&schema)
        .map_err(|e| Status::internal(e.to_string()))
        .map(|i| {
            i.with_descriptor(descriptor)
                .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        })
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// One table of the catalog: a dataset and the schema the caller sees.
pub struct Table<'a> {
    pub dataset: &'a pb::Dataset,
    pub schema: Schema,
}

/// Answers a catalog request. `tables` lists every dataset with the schema
/// the caller would receive.
pub fn catalog_answer(c: Command, tables: &[Table<'_>]) -> Result<RecordBatch, Status> {
    match c {
        Command::CommandGetCatalogs(q) => {
            let mut b = q.into_builder();
            b.append(CATALOG);
            b.build().map_err(internal)
        }
        Command::CommandGetDbSchemas(q) => {
            let mut b = q.into_builder();
            let mut departments: Vec<&str> = tables
                .iter()
                .map(|t| t.dataset.department.as_str())
                .collect();
            departments.dedup();
            for d in departments {
                b.append(CATALOG, d);
            }
            b.build().map_err(internal)
        }
        Command::CommandGetTables(q) => tables_answer(q, tables),
        Command::CommandGetTableTypes(q) => {
            let mut b = q.into_builder();
            b.append("TABLE");
            b.build().map_err(internal)
        }
        Command::CommandGetSqlInfo(q) => q.into_builder(&SQL_INFO).build().map_err(internal),
        Command::CommandGetPrimaryKeys(q) => primary_keys_answer(&q, tables),
        _ => Err(Status::internal("not a catalog request")),
    }
}

/// The schema Flight SQL fixes for `GetPrimaryKeys`.
static PRIMARY_KEYS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
});

/// A table's key columns (the dataset's `key_columns`) that the caller
/// receives; a key column the grant withholds is not listed.
fn primary_keys_answer(
    q: &CommandGetPrimaryKeys,
    tables: &[Table<'_>],
) -> Result<RecordBatch, Status> {
    let mut rows: Vec<(&str, &str, &str, i32)> = Vec::new();
    for t in tables {
        let (department, local) = t.dataset.id.split_once('/').unwrap_or(("", &t.dataset.id));
        let wanted = local == q.table
            && q.db_schema.as_deref().is_none_or(|s| s == department)
            && q.catalog.as_deref().is_none_or(|c| c == CATALOG);
        if !wanted {
            continue;
        }
        let visible = t
            .dataset
            .key_columns
            .iter()
            .filter(|c| t.schema.field_with_name(c).is_ok());
        for (i, column) in visible.enumerate() {
            rows.push((department, local, column, i as i32 + 1));
        }
    }
    let text = |column: Vec<&str>| -> ArrayRef { Arc::new(StringArray::from(column)) };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![Some(CATALOG); rows.len()])),
        text(rows.iter().map(|r| r.0).collect()),
        text(rows.iter().map(|r| r.1).collect()),
        text(rows.iter().map(|r| r.2).collect()),
        Arc::new(StringArray::from(vec![None::<&str>; rows.len()])),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.3))),
    ];
    RecordBatch::try_new(PRIMARY_KEYS_SCHEMA.clone(), columns).map_err(internal)
}

fn tables_answer(q: CommandGetTables, tables: &[Table<'_>]) -> Result<RecordBatch, Status> {
    let mut b = q.into_builder();
    for t in tables {
        let local = t
            .dataset
            .id
            .split_once('/')
            .map(|(_, l)| l)
            .unwrap_or(&t.dataset.id);
        b.append(CATALOG, &t.dataset.department, local, "TABLE", &t.schema)
            .map_err(internal)?;
    }
    b.build().map_err(internal)
}

/// Whether a ticket is a Flight SQL message (rather than JSON or a sealed
/// ticket, which are text).
pub fn is_flight_sql_ticket(bytes: &[u8]) -> bool {
    Any::decode(bytes).is_ok_and(|a| a.type_url.starts_with(FLIGHT_SQL_TYPE_PREFIX))
}

#[cfg(test)]
mod tests;

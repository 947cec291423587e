//! The department's own databases, behind one interface.
//!
//! Only this crate builds SQL against department data (architecture
//! invariant). Identifiers come from the validated manifest, never from
//! request text, and every value is a bound parameter.
//!
//! It opens SQLite (the embedded default, read-only), PostgreSQL and
//! MySQL/MariaDB sources with connection pools, and describes tables so the
//! node can check its manifest against the real columns. [`Source::read`]
//! turns a projection and a checked filter into one parameterized SELECT
//! and streams the rows as masked Arrow record batches with bounded memory.
//! SQLite is read with rusqlite, a short read right on the caller's thread
//! (module `sqlite`); PostgreSQL and MySQL through sqlx.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use exchange_catalog::manifest::{DatabaseConfig, SourceKind};
use exchange_catalog::{ColumnClass, SourceColumn};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::Row;

mod read;
mod sqlite;

pub use read::{
    build_select, mask_array, output_schema, output_type, BatchStream, Projection, ReadPlan,
    SourceBatch, DEFAULT_BATCH_ROWS,
};

/// How long a read waits for a connection to a PostgreSQL or MySQL server
/// (a new one, or a free one from the pool) before it reports the database
/// unreachable: inside a lookup's default 3-second deadline.
pub const SERVER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot plan the read: {0}")]
    Plan(String),
    #[error("database {name:?} is unreachable: {reason}")]
    Unreachable { name: String, reason: String },
    #[error("database {name:?}: query failed: {reason}")]
    Query { name: String, reason: String },
}

#[derive(Clone)]
enum Pool {
    /// sqlx for describing tables, rusqlite ([`sqlite`]) for reads.
    Sqlite(SqlitePool, Arc<sqlite::SqliteReaders>),
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// An open, pooled connection to one configured source database.
#[derive(Clone)]
pub struct Source {
    name: String,
    pool: Pool,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// Opens the database with a connection pool (SQLite read-only). The
    /// connection URL may hold a password: it never appears in errors.
    pub async fn open(config: &DatabaseConfig) -> Result<Source, SourceError> {
        let unreachable = |reason: String| SourceError::Unreachable {
            name: config.name.clone(),
            reason,
        };
        let acquire = Duration::from_secs(5);
        // A server database that is down must be reported inside a
        // lookup's default 3-second deadline, with its reason.
        let connect = SERVER_CONNECT_TIMEOUT;
        let pool = match config.kind {
            SourceKind::Sqlite => {
                if !std::path::Path::new(&config.location).exists() {
                    return Err(unreachable(format!(
                        "file {} does not exist; check databases.{}.path in the manifest",
                        config.location, config.name
                    )));
                }
                let options =
                    SqliteConnectOptions::from_str(&format!("sqlite://{}", config.location))
                        .map_err(|e| unreachable(e.to_string()))?
                        .read_only(true)
                        .busy_timeout(acquire);
                // sqlx describes tables (rarely: at start and on reload);
                // reads go through rusqlite, see the `sqlite` module.
                let describer = SqlitePoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(acquire)
                    .connect_with(options)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                let readers = sqlite::SqliteReaders::new(
                    &config.name,
                    &config.location,
                    config.max_connections,
                    acquire,
                );
                Pool::Sqlite(describer, Arc::new(readers))
            }
            SourceKind::Postgres => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(connect)
                    .connect(&config.location)
                    .await
                    .map_err(|e| unreachable(redact(&e.to_string(), &config.location)))?,
            ),
            SourceKind::Mysql => Pool::MySql(
                MySqlPoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(connect)
                    .connect(&config.location)
                    .await
                    .map_err(|e| unreachable(redact(&e.to_string(), &config.location)))?,
            ),
        };
        Ok(Source {
            name: config.name.clone(),
            pool,
        })
    }

    pub fn kind(&self) -> SourceKind {
        match self.pool {
            Pool::Sqlite(..) => SourceKind::Sqlite,
            Pool::Postgres(_) => SourceKind::Postgres,
            Pool::MySql(_) => SourceKind::Mysql,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Columns of `table` (`name` or `schema.name`); empty if it does not exist.
    /// The table name is a bound parameter, never spliced into SQL.
    pub async fn describe(&self, table: &str) -> Result<Vec<SourceColumn>, SourceError> {
        let (schema, name) = split_table(table);
        let failed = |e: sqlx::Error| self.query_failed(e);
        let pairs: Vec<(String, String)> = match &self.pool {
            Pool::Sqlite(pool, _) => sqlx::query("SELECT name, type FROM pragma_table_info(?1, ?2) ORDER BY cid")
                .bind(name)
                .bind(schema.unwrap_or("main"))
                .fetch_all(pool)
                .await
                .map_err(failed)?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
            Pool::Postgres(pool) => sqlx::query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns
                 WHERE table_schema = COALESCE($1, current_schema()) AND table_name = $2 ORDER BY ordinal_position",
            )
            .bind(schema)
            .bind(name)
            .fetch_all(pool)
            .await
            .map_err(failed)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
            Pool::MySql(pool) => sqlx::query(
                "SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR) FROM information_schema.COLUMNS
                 WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            )
            .bind(schema)
            .bind(name)
            .fetch_all(pool)
            .await
            .map_err(failed)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
        };
        let classify = match self.pool {
            Pool::Sqlite(..) => sqlite_class,
            Pool::Postgres(_) => postgres_class,
            Pool::MySql(_) => mysql_class,
        };
        Ok(pairs
            .into_iter()
            .map(|(name, declared)| SourceColumn {
                name,
                class: classify(&declared),
                declared_type: if declared.is_empty() {
                    "(no type)".into()
                } else {
                    declared
                },
            })
            .collect())
    }
}

impl Source {
    fn query_failed(&self, e: sqlx::Error) -> SourceError {
        SourceError::Query {
            name: self.name.clone(),
            reason: e.to_string(),
        }
    }

    /// Columns of `table` that lead an index, the primary key's included: a
    /// filter on one of them is read by index instead of scanning the
    /// table. Lower-cased; the table name is a bound parameter.
    pub async fn indexed_columns(&self, table: &str) -> Result<BTreeSet<String>, SourceError> {
        let (schema, name) = split_table(table);
        let failed = |e: sqlx::Error| self.query_failed(e);
        let rows: Vec<String> = match &self.pool {
            Pool::Sqlite(pool, _) => sqlx::query(
                "SELECT name FROM pragma_table_info(?1, ?2) WHERE pk = 1
                 UNION
                 SELECT ii.name FROM pragma_index_list(?1, ?2) AS il,
                        pragma_index_info(il.name, ?2) AS ii
                 WHERE ii.seqno = 0",
            )
            .bind(name)
            .bind(schema.unwrap_or("main"))
            .fetch_all(pool)
            .await
            .map_err(failed)?
            .iter()
            .filter_map(|r| r.get::<Option<String>, _>(0))
            .collect(),
            Pool::Postgres(pool) => sqlx::query(
                "SELECT a.attname::text FROM pg_index i
                 JOIN pg_class c ON c.oid = i.indrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
                 WHERE n.nspname = COALESCE($1, current_schema()) AND c.relname = $2",
            )
            .bind(schema)
            .bind(name)
            .fetch_all(pool)
            .await
            .map_err(failed)?
            .iter()
            .map(|r| r.get(0))
            .collect(),
            Pool::MySql(pool) => sqlx::query(
                "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.STATISTICS
                 WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND SEQ_IN_INDEX = 1",
            )
            .bind(schema)
            .bind(name)
            .fetch_all(pool)
            .await
            .map_err(failed)?
            .iter()
            .map(|r| r.get(0))
            .collect(),
        };
        Ok(rows.into_iter().map(|c| c.to_lowercase()).collect())
    }
}

/// `schema.table` as (schema, table); a bare name has no schema.
fn split_table(table: &str) -> (Option<&str>, &str) {
    match table.split_once('.') {
        Some((schema, name)) => (Some(schema), name),
        None => (None, table),
    }
}

/// Removes the password of a connection URL from a message, should a driver echo it.
fn redact(message: &str, url: &str) -> String {
    match url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(auth, _)| auth.split_once(':'))
    {
        Some((_, password)) if !password.is_empty() => message.replace(password, "****"),
        _ => message.to_string(),
    }
}

fn postgres_class(declared: &str) -> ColumnClass {
    match declared {
        "smallint" | "integer" | "bigint" => ColumnClass::Integer,
        "real" | "double precision" => ColumnClass::Real,
        "numeric" => ColumnClass::Numeric,
        "boolean" => ColumnClass::Boolean,
        "date" => ColumnClass::Date,
        t if t.starts_with("timestamp") => ColumnClass::Timestamp,
        "text" | "character varying" | "character" | "uuid" | "citext" => ColumnClass::Text,
        "bytea" => ColumnClass::Blob,
        _ => ColumnClass::Other,
    }
}

fn mysql_class(declared: &str) -> ColumnClass {
    match declared.to_ascii_lowercase().as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
            ColumnClass::Integer
        }
        "float" | "double" | "real" => ColumnClass::Real,
        "decimal" | "numeric" => ColumnClass::Numeric,
        "bit" | "bool" | "boolean" => ColumnClass::Boolean,
        "date" => ColumnClass::Date,
        "datetime" | "timestamp" => ColumnClass::Timestamp,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" => {
            ColumnClass::Text
        }
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            ColumnClass::Blob
        }
        _ => ColumnClass::Other,
    }
}

/// SQLite's type-affinity rules (section 3.1 of its datatype documentation),
/// refined for dates and booleans, which SQLite stores by convention.
fn sqlite_class(declared: &str) -> ColumnClass {
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        ColumnClass::Integer
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        ColumnClass::Text
    } else if t.is_empty() || t.contains("BLOB") {
        ColumnClass::Blob
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        ColumnClass::Real
    } else if t.contains("BOOL") {
        ColumnClass::Boolean
    } else if t.contains("TIMESTAMP") || t.contains("DATETIME") {
        ColumnClass::Timestamp
    } else if t == "DATE" {
        ColumnClass::Date
    } else {
        ColumnClass::Numeric
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn describes_sqlite_tables_and_reports_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let rw = SqlitePool::connect_with(
            SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
                .unwrap()
                .create_if_missing(true),
        )
        .await
        .unwrap();
        sqlx::query("CREATE TABLE vehicles (plate_no TEXT PRIMARY KEY, seats INTEGER, price REAL, registered_on DATE, note)")
            .execute(&rw)
            .await
            .unwrap();
        rw.close().await;
        let config = DatabaseConfig {
            name: "main".into(),
            kind: SourceKind::Sqlite,
            location: path.display().to_string(),
            max_connections: 2,
        };
        let source = Source::open(&config).await.unwrap();
        let cols = source.describe("vehicles").await.unwrap();
        let classes: Vec<_> = cols.iter().map(|c| (c.name.as_str(), c.class)).collect();
        assert_eq!(
            classes,
            vec![
                ("plate_no", ColumnClass::Text),
                ("seats", ColumnClass::Integer),
                ("price", ColumnClass::Real),
                ("registered_on", ColumnClass::Date),
                ("note", ColumnClass::Blob),
            ]
        );
        assert!(source.describe("missing").await.unwrap().is_empty());
        assert!(source
            .describe("vehicles'; DROP TABLE vehicles; --")
            .await
            .unwrap()
            .is_empty());
        assert_eq!(source.describe("vehicles").await.unwrap().len(), 5);

        let missing = DatabaseConfig {
            location: dir.path().join("nope.db").display().to_string(),
            ..config
        };
        let err = Source::open(&missing).await.unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}

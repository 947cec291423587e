//! The department's own databases, behind one interface.
//!
//! Only this crate builds SQL against department data (architecture
//! invariant). Identifiers come from the validated manifest, never from
//! request text, and every value is a bound parameter.
//!
//! Today it opens SQLite sources (the embedded default) read-only, and
//! describes tables so the node can check its manifest against the real
//! columns. PostgreSQL and MySQL/MariaDB sources are declared in the manifest
//! format but are refused at start with a clear error until their drivers
//! land with the query path.

use std::str::FromStr;
use std::time::Duration;

use exchange_catalog::manifest::{DatabaseConfig, SourceKind};
use exchange_catalog::{ColumnClass, SourceColumn};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::Row;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("database {name:?}: {kind} sources are not supported by this build yet; use sqlite")]
    Unsupported { name: String, kind: &'static str },
    #[error("database {name:?} is unreachable: {reason}")]
    Unreachable { name: String, reason: String },
    #[error("database {name:?}: query failed: {reason}")]
    Query { name: String, reason: String },
}

/// An open, pooled connection to one configured source database.
#[derive(Clone)]
pub struct Source {
    name: String,
    pool: SqlitePool,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// Opens the database read-only with a connection pool.
    pub async fn open(config: &DatabaseConfig) -> Result<Source, SourceError> {
        match config.kind {
            SourceKind::Sqlite => {}
            other => {
                return Err(SourceError::Unsupported {
                    name: config.name.clone(),
                    kind: other.as_str(),
                })
            }
        }
        let unreachable = |reason: String| SourceError::Unreachable {
            name: config.name.clone(),
            reason,
        };
        if !std::path::Path::new(&config.location).exists() {
            return Err(unreachable(format!(
                "file {} does not exist; check databases.{}.path in the manifest",
                config.location, config.name
            )));
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", config.location))
            .map_err(|e| unreachable(e.to_string()))?
            .read_only(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Source {
            name: config.name.clone(),
            pool,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Columns of `table` (`name` or `schema.name`); empty if it does not exist.
    /// The table name is a bound parameter, never spliced into SQL.
    pub async fn describe(&self, table: &str) -> Result<Vec<SourceColumn>, SourceError> {
        let (schema, name) = match table.split_once('.') {
            Some((s, n)) => (s, n),
            None => ("main", table),
        };
        let rows = sqlx::query("SELECT name, type FROM pragma_table_info(?1, ?2) ORDER BY cid")
            .bind(name)
            .bind(schema)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| SourceError::Query {
                name: self.name.clone(),
                reason: e.to_string(),
            })?;
        Ok(rows
            .iter()
            .map(|r| {
                let declared: String = r.get(1);
                SourceColumn {
                    name: r.get(0),
                    class: sqlite_class(&declared),
                    declared_type: if declared.is_empty() {
                        "(no type)".into()
                    } else {
                        declared
                    },
                }
            })
            .collect())
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

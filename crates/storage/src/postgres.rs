//! The PostgreSQL engine behind [`crate::Db`]: every tree's keys and JSON
//! values in one table, `exchange_state (tree, key, value, version)`, so
//! several coordinators can share one database.
//!
//! The store's interface is synchronous (its callers run on blocking
//! threads, or briefly on the runtime, as with sled's `fsync`). Each call
//! is therefore handed to a small runtime of this store's own and waited on
//! over a channel, which is safe from any thread, async or not.
//!
//! A write returns once PostgreSQL has committed it, which (with the
//! server's default `synchronous_commit = on`) means it is on disk.
//! `update` is a compare-and-swap on the row's `version`, retried while
//! another writer, on this process or another replica, got there first.

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Row;

use crate::{Result, StorageError};

/// The schema versions this build knows, oldest first: each one's number,
/// what it changes, and its SQL. A database at a higher version than the
/// last one here was written by a newer coordinator; it is refused.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "exchange_state: every tree's keys and JSON values, with a row version for compare-and-swap",
        sql: &["CREATE TABLE exchange_state (
            tree text NOT NULL,
            key text COLLATE \"C\" NOT NULL,
            value bytea NOT NULL,
            version bigint NOT NULL DEFAULT 1,
            PRIMARY KEY (tree, key)
        )"],
    },
    Migration {
        version: 2,
        description: "change notifications: a write to a watched tree notifies channel exchange_state with tree TAB key",
        sql: &[
            "CREATE TABLE exchange_watched_trees (tree text PRIMARY KEY)",
            "CREATE FUNCTION exchange_state_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            changed_tree text := COALESCE(NEW.tree, OLD.tree);
            changed_key text := COALESCE(NEW.key, OLD.key);
        BEGIN
            IF EXISTS (SELECT 1 FROM exchange_watched_trees WHERE tree = changed_tree) THEN
                PERFORM pg_notify('exchange_state', changed_tree || chr(9) || changed_key);
            END IF;
            RETURN NULL;
        END $$",
            "CREATE TRIGGER exchange_state_changed AFTER INSERT OR UPDATE OR DELETE ON exchange_state
            FOR EACH ROW EXECUTE FUNCTION exchange_state_notify()",
        ],
    },
    Migration {
        version: 3,
        description: "exchange_audit_queries: the replicas' shared audit view, indexed by consumer, owner and time",
        sql: &[
            "CREATE TABLE exchange_audit_queries (
            query_id text PRIMARY KEY,
            time_ms bigint NOT NULL,
            consumer text NOT NULL,
            owner text NOT NULL,
            dataset text NOT NULL,
            purpose text NOT NULL,
            entry bytea NOT NULL
        )",
            "CREATE INDEX exchange_audit_queries_consumer ON exchange_audit_queries (consumer, time_ms)",
            "CREATE INDEX exchange_audit_queries_owner ON exchange_audit_queries (owner, time_ms)",
            "CREATE INDEX exchange_audit_queries_time ON exchange_audit_queries (time_ms)",
        ],
    },
    Migration {
        version: 4,
        description: "exchange_audit_queries: entries merged key by key in SQL, access decisions beside queries, and a change feed by transaction id",
        sql: &[
            "ALTER TABLE exchange_audit_queries
                ALTER COLUMN entry TYPE jsonb USING jsonb_strip_nulls(convert_from(entry, 'UTF8')::jsonb),
                ALTER COLUMN time_ms DROP NOT NULL,
                ALTER COLUMN consumer DROP NOT NULL,
                ALTER COLUMN owner DROP NOT NULL,
                ALTER COLUMN dataset DROP NOT NULL,
                ALTER COLUMN purpose DROP NOT NULL,
                ADD COLUMN kind text NOT NULL DEFAULT 'query',
                ADD COLUMN changed xid8 NOT NULL DEFAULT pg_current_xact_id()",
            "CREATE INDEX exchange_audit_queries_changed ON exchange_audit_queries (changed, query_id)",
        ],
    },
];

/// The channel on which the store announces changes to watched trees.
const CHANGE_CHANNEL: &str = "exchange_state";

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub description: &'static str,
    /// Its statements, run in order in one transaction.
    pub sql: &'static [&'static str],
}

/// Where the schema of a database stands against this build.
#[derive(Debug, Clone)]
pub struct SchemaStatus {
    /// The version the database is at (0: never migrated).
    pub current: i32,
    /// The migrations that would bring it to this build's version.
    pub pending: Vec<Migration>,
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// Connections kept open. Default 8.
    pub pool_size: u32,
    /// How long a call waits for a connection before it fails. Default 3 s.
    pub connect_timeout: Duration,
}

impl PgSettings {
    pub fn new(url: &str) -> PgSettings {
        PgSettings {
            url: url.to_string(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// A connection pool on a runtime of its own.
pub(crate) struct PgStore {
    pool: PgPool,
    /// Always `Some` until dropped; taken out by `Drop`, which cannot wait
    /// for the runtime's threads when the store is dropped on an async task.
    runtime: Option<tokio::runtime::Runtime>,
    /// The URL without its password, for messages.
    shown: String,
    /// Whether the database answered the last calls.
    health: std::sync::Arc<Health>,
}

/// The deadline of one database call: a database that accepted the
/// connection and then stopped answering fails the call, and the caller
/// with it, instead of holding it (and the thread it runs on) forever.
pub const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// The deadline of a schema migration or the drop of a whole tree.
const LONG_CALL_DEADLINE: Duration = Duration::from_secs(3600);

/// How often an unreachable database is tried again.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Whether the database is reachable. Once a call finds it unreachable,
/// every call fails at once (rather than each waiting for its connection
/// to time out, on a thread a request needs) until a probe, once a
/// second, finds it answering again.
#[derive(Debug, Default)]
struct Health {
    /// When the outage began, as Unix seconds; 0 while reachable.
    down_since_unix: std::sync::atomic::AtomicI64,
    /// When the last outage began and ended (0: none yet).
    last_since_unix: std::sync::atomic::AtomicI64,
    last_until_unix: std::sync::atomic::AtomicI64,
}

impl Health {
    /// The outage going on (its start, no end), else the last one.
    fn last_outage(&self) -> Option<(i64, Option<i64>)> {
        use std::sync::atomic::Ordering::Acquire;
        if let Some(since) = self.down_since() {
            return Some((since, None));
        }
        match self.last_since_unix.load(Acquire) {
            0 => None,
            since => Some((since, Some(self.last_until_unix.load(Acquire)))),
        }
    }

    fn down_since(&self) -> Option<i64> {
        match self
            .down_since_unix
            .load(std::sync::atomic::Ordering::Acquire)
        {
            0 => None,
            since => Some(since),
        }
    }

    /// Notes the outage (once, logged) and starts, on `runtime`, the probe
    /// that ends it when the database answers again.
    fn mark_unreachable(
        self: &std::sync::Arc<Self>,
        runtime: &tokio::runtime::Handle,
        pool: &PgPool,
        shown: &str,
        why: &str,
    ) {
        let started = self
            .down_since_unix
            .compare_exchange(
                0,
                exchange_now(),
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
            )
            .is_ok();
        if !started {
            return;
        }
        tracing::error!(database = %shown, reason = %why, "the state database is unreachable: changes fail with UNAVAILABLE; queries on grants held in memory go on");
        let (pool, health, shown) = (pool.clone(), self.clone(), shown.to_string());
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let probe = sqlx::query("SELECT 1").execute(&pool);
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), probe).await {
                    let since = health
                        .down_since_unix
                        .swap(0, std::sync::atomic::Ordering::AcqRel);
                    health
                        .last_since_unix
                        .store(since, std::sync::atomic::Ordering::Release);
                    health
                        .last_until_unix
                        .store(exchange_now(), std::sync::atomic::Ordering::Release);
                    tracing::warn!(database = %shown, unreachable_secs = exchange_now() - since, "the state database answers again");
                    return;
                }
            }
        });
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({})", self.shown)
    }
}

/// A URL with any password replaced by `***`, for messages and logs.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a postgres:// URL)".into();
    };
    match rest.split_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

impl PgStore {
    /// Connects and checks the schema: a database at a newer version than
    /// this build's is refused; with `migrate`, pending migrations run
    /// (under an advisory lock, so replicas starting together take turns),
    /// otherwise pending migrations are an error.
    pub(crate) fn open(settings: &PgSettings, migrate: bool) -> Result<PgStore> {
        let store = PgStore::connect(settings)?;
        let status = store.schema_status()?;
        if !status.pending.is_empty() {
            if !migrate {
                return Err(store.fail(format!(
                    "the database's schema is at version {}, this coordinator needs {}: run `coordinator state migrate`",
                    status.current,
                    latest_version()
                )));
            }
            store.migrate()?;
        }
        Ok(store)
    }

    pub(crate) fn connect(settings: &PgSettings) -> Result<PgStore> {
        let shown = redacted(&settings.url);
        let options: PgConnectOptions =
            settings.url.parse().map_err(|e| StorageError::Postgres {
                url: shown.clone(),
                message: format!("state is not a valid PostgreSQL URL: {e}"),
            })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("state-postgres")
            .enable_all()
            .build()
            .map_err(|e| StorageError::Postgres {
                url: shown.clone(),
                message: format!("could not start the database runtime: {e}"),
            })?;
        let pool = {
            let _entered = runtime.enter();
            PgPoolOptions::new()
                .max_connections(settings.pool_size.max(1))
                .acquire_timeout(settings.connect_timeout)
                .connect_lazy_with(options)
        };
        let store = PgStore {
            pool,
            runtime: Some(runtime),
            shown,
            health: Default::default(),
        };
        store
            .run(|pool| async move { sqlx::query("SELECT 1").execute(&pool).await.map(|_| ()) })?;
        Ok(store)
    }

    fn fail(&self, message: String) -> StorageError {
        StorageError::Postgres {
            url: self.shown.clone(),
            message,
        }
    }

    /// When the database became unreachable, while it is (Unix seconds).
    pub(crate) fn unreachable_since(&self) -> Option<i64> {
        self.health.down_since()
    }

    /// The outage going on (its start in Unix seconds, no end), else the
    /// last one (start and end); `None` if there was none.
    pub(crate) fn last_outage(&self) -> Option<(i64, Option<i64>)> {
        self.health.last_outage()
    }

    /// Runs one database call on the store's runtime and waits for it, at
    /// most [`CALL_DEADLINE`]; at once with an error while the database is
    /// known to be unreachable.
    fn run<T, F, Fut>(&self, call: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(PgPool) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>> + Send + 'static,
    {
        self.run_within(CALL_DEADLINE, call)
    }

    /// [`Self::run`] with a deadline of its own, for the few calls that may
    /// rightly take long (schema migrations, dropping a whole tree).
    fn run_within<T, F, Fut>(&self, deadline: Duration, call: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(PgPool) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>> + Send + 'static,
    {
        if let Some(since) = self.health.down_since() {
            return Err(self.fail(format!(
                "the state database has been unreachable for {} s; the coordinator tries it again every second",
                (exchange_now() - since).max(0)
            )));
        }
        match self.call(deadline, call) {
            Err(CallError::Failed(e)) if is_connection_failure(&e) => {
                let message = describe(&e);
                self.mark_unreachable(&message);
                Err(self.fail(message))
            }
            Err(CallError::Failed(e)) => Err(self.fail(describe(&e))),
            Err(CallError::TimedOut) => {
                let message = format!(
                    "the state database did not answer within {} s",
                    deadline.as_secs()
                );
                self.mark_unreachable(&message);
                Err(self.fail(message))
            }
            Err(CallError::Abandoned) => Err(self.fail("the database call was abandoned".into())),
            Ok(value) => Ok(value),
        }
    }

    /// One call on the store's runtime, within `deadline`.
    fn call<T, F, Fut>(&self, deadline: Duration, call: F) -> Result<T, CallError>
    where
        T: Send + 'static,
        F: FnOnce(PgPool) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let future = call(self.pool.clone());
        let Some(runtime) = &self.runtime else {
            return Err(CallError::Abandoned);
        };
        runtime.spawn(async move {
            let answer = match tokio::time::timeout(deadline, future).await {
                Ok(answer) => answer.map_err(CallError::Failed),
                Err(_) => Err(CallError::TimedOut),
            };
            let _ = tx.send(answer);
        });
        match rx.recv_timeout(deadline + Duration::from_secs(1)) {
            Ok(answer) => answer,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(CallError::TimedOut),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(CallError::Abandoned),
        }
    }

    /// Notes the outage (once) and starts the probe that ends it.
    fn mark_unreachable(&self, why: &str) {
        if let Some(runtime) = &self.runtime {
            self.health
                .mark_unreachable(runtime.handle(), &self.pool, &self.shown, why);
        }
    }

    pub(crate) fn schema_status(&self) -> Result<SchemaStatus> {
        let current = self.run(|pool| async move {
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS exchange_schema (
                    version integer PRIMARY KEY,
                    description text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .execute(&pool)
            .await?;
            let row = sqlx::query("SELECT coalesce(max(version), 0) AS v FROM exchange_schema")
                .fetch_one(&pool)
                .await?;
            row.try_get::<i32, _>("v")
        })?;
        if current > latest_version() {
            return Err(self.fail(format!(
                "the database's schema is at version {current}, newer than this coordinator's {}: upgrade the coordinator, or set state to another database",
                latest_version()
            )));
        }
        let pending = MIGRATIONS
            .iter()
            .filter(|m| m.version > current)
            .copied()
            .collect();
        Ok(SchemaStatus { current, pending })
    }

    /// Applies the pending migrations, each in its own transaction.
    pub(crate) fn migrate(&self) -> Result<Vec<Migration>> {
        let applied = self.run_within(LONG_CALL_DEADLINE, |pool| async move {
            let mut tx = pool.begin().await?;
            // Replicas starting together: one migrates, the others wait.
            sqlx::query("SELECT pg_advisory_xact_lock(7400001)")
                .execute(&mut *tx)
                .await?;
            let current: i32 =
                sqlx::query("SELECT coalesce(max(version), 0) AS v FROM exchange_schema")
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("v")?;
            let mut applied = Vec::new();
            for m in MIGRATIONS.iter().filter(|m| m.version > current) {
                for statement in m.sql {
                    sqlx::query(statement).execute(&mut *tx).await?;
                }
                sqlx::query("INSERT INTO exchange_schema (version, description) VALUES ($1, $2)")
                    .bind(m.version)
                    .bind(m.description)
                    .execute(&mut *tx)
                    .await?;
                applied.push(*m);
            }
            tx.commit().await?;
            Ok(applied)
        })?;
        Ok(applied)
    }

    pub(crate) fn get(&self, tree: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let (tree, key) = (tree.to_string(), key.to_string());
        self.run(|pool| async move {
            let row = sqlx::query("SELECT value FROM exchange_state WHERE tree = $1 AND key = $2")
                .bind(tree)
                .bind(key)
                .fetch_optional(&pool)
                .await?;
            row.map(|r| r.try_get::<Vec<u8>, _>("value")).transpose()
        })
    }

    /// The value and its row version, for compare-and-swap.
    pub(crate) fn get_versioned(&self, tree: &str, key: &str) -> Result<Option<(Vec<u8>, i64)>> {
        let (tree, key) = (tree.to_string(), key.to_string());
        self.run(|pool| async move {
            let row = sqlx::query(
                "SELECT value, version FROM exchange_state WHERE tree = $1 AND key = $2",
            )
            .bind(tree)
            .bind(key)
            .fetch_optional(&pool)
            .await?;
            row.map(|r| Ok((r.try_get("value")?, r.try_get("version")?)))
                .transpose()
        })
    }

    pub(crate) fn put(&self, tree: &str, key: &str, value: Vec<u8>) -> Result<()> {
        self.apply(tree, vec![(key.to_string(), Some(value))])
    }

    pub(crate) fn remove(&self, tree: &str, key: &str) -> Result<bool> {
        let (tree, key) = (tree.to_string(), key.to_string());
        self.run(|pool| async move {
            let done = sqlx::query("DELETE FROM exchange_state WHERE tree = $1 AND key = $2")
                .bind(tree)
                .bind(key)
                .execute(&pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Replaces `key`'s value if its row is still at `expected` (`None`:
    /// still absent); `new` `None` removes it. Returns whether it did.
    pub(crate) fn compare_and_swap(
        &self,
        tree: &str,
        key: &str,
        expected: Option<i64>,
        new: Option<Vec<u8>>,
    ) -> Result<bool> {
        let (tree, key) = (tree.to_string(), key.to_string());
        self.run(move |pool| async move {
            let done = match (expected, new) {
                (None, Some(value)) => sqlx::query(
                    "INSERT INTO exchange_state (tree, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (tree, key) DO NOTHING",
                )
                .bind(tree)
                .bind(key)
                .bind(value)
                .execute(&pool)
                .await?
                .rows_affected(),
                (Some(version), Some(value)) => sqlx::query(
                    "UPDATE exchange_state SET value = $3, version = version + 1
                     WHERE tree = $1 AND key = $2 AND version = $4",
                )
                .bind(tree)
                .bind(key)
                .bind(value)
                .bind(version)
                .execute(&pool)
                .await?
                .rows_affected(),
                (Some(version), None) => sqlx::query(
                    "DELETE FROM exchange_state WHERE tree = $1 AND key = $2 AND version = $3",
                )
                .bind(tree)
                .bind(key)
                .bind(version)
                .execute(&pool)
                .await?
                .rows_affected(),
                (None, None) => {
                    let row = sqlx::query(
                        "SELECT 1 AS present FROM exchange_state WHERE tree = $1 AND key = $2",
                    )
                    .bind(tree)
                    .bind(key)
                    .fetch_optional(&pool)
                    .await?;
                    u64::from(row.is_none())
                }
            };
            Ok(done == 1)
        })
    }

    /// Writes and removals in one transaction.
    pub(crate) fn apply(&self, tree: &str, ops: Vec<(String, Option<Vec<u8>>)>) -> Result<()> {
        let tree = tree.to_string();
        self.run(|pool| async move {
            let mut tx = pool.begin().await?;
            for (key, value) in ops {
                match value {
                    Some(value) => {
                        sqlx::query(
                            "INSERT INTO exchange_state (tree, key, value) VALUES ($1, $2, $3)
                             ON CONFLICT (tree, key)
                             DO UPDATE SET value = EXCLUDED.value, version = exchange_state.version + 1",
                        )
                        .bind(&tree)
                        .bind(key)
                        .bind(value)
                        .execute(&mut *tx)
                        .await?;
                    }
                    None => {
                        sqlx::query("DELETE FROM exchange_state WHERE tree = $1 AND key = $2")
                            .bind(&tree)
                            .bind(key)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            tx.commit().await
        })
    }

    /// Keys starting with `prefix` and their values, in byte order (as
    /// sled keeps them: the key column collates as "C").
    pub(crate) fn scan_prefix(&self, tree: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let (tree, prefix) = (tree.to_string(), prefix.to_string());
        self.run(|pool| async move {
            let rows = sqlx::query(
                "SELECT key, value FROM exchange_state
                 WHERE tree = $1 AND starts_with(key, $2) ORDER BY key",
            )
            .bind(tree)
            .bind(prefix)
            .fetch_all(&pool)
            .await?;
            rows.iter()
                .map(|r| Ok((r.try_get("key")?, r.try_get("value")?)))
                .collect()
        })
    }

    pub(crate) fn len(&self, tree: &str) -> Result<usize> {
        let tree = tree.to_string();
        self.run(|pool| async move {
            let n: i64 = sqlx::query("SELECT count(*) AS n FROM exchange_state WHERE tree = $1")
                .bind(tree)
                .fetch_one(&pool)
                .await?
                .try_get("n")?;
            Ok(n.max(0) as usize)
        })
    }

    pub(crate) fn tree_names(&self) -> Result<Vec<String>> {
        self.run(|pool| async move {
            let rows = sqlx::query("SELECT DISTINCT tree FROM exchange_state ORDER BY tree")
                .fetch_all(&pool)
                .await?;
            rows.iter().map(|r| r.try_get("tree")).collect()
        })
    }

    pub(crate) fn drop_tree(&self, tree: &str) -> Result<bool> {
        let tree = tree.to_string();
        self.run_within(LONG_CALL_DEADLINE, |pool| async move {
            let done = sqlx::query("DELETE FROM exchange_state WHERE tree = $1")
                .bind(tree)
                .execute(&pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }
}

/// A change another writer (or this one) made to a watched tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `key` in `tree` was written or removed.
    Key { tree: String, key: String },
    /// The notification connection was (re)established: changes may have
    /// been missed, so everything watched should be read again.
    Resync,
}

/// What a watcher calls for each change.
pub type ChangeHandler = std::sync::Arc<dyn Fn(Change) + Send + Sync>;

impl PgStore {
    /// Calls `on_change` for every change to `trees`, from any writer,
    /// until the store is dropped; and with [`Change::Resync`] each time the
    /// notification connection is (re)opened, the first time included.
    /// Calls run on blocking threads, one at a time, and may use the store.
    pub(crate) fn watch(&self, trees: &[&str], on_change: ChangeHandler) -> Result<()> {
        let names: Vec<String> = trees.iter().map(|t| t.to_string()).collect();
        self.run(|pool| async move {
            for tree in names {
                sqlx::query(
                    "INSERT INTO exchange_watched_trees (tree) VALUES ($1) ON CONFLICT DO NOTHING",
                )
                .bind(tree)
                .execute(&pool)
                .await?;
            }
            Ok(())
        })?;
        let Some(runtime) = &self.runtime else {
            return Err(self.fail("the store is closed".into()));
        };
        let pool = self.pool.clone();
        let shown = self.shown.clone();
        let health = self.health.clone();
        runtime.spawn(async move {
            loop {
                if let Err(e) = listen(&pool, &on_change).await {
                    let why = describe(&e);
                    tracing::warn!(database = %shown, error = %why, "lost the state change notifications; reconnecting");
                    // A replica that makes no other call learns of an
                    // outage here, and judges node liveness accordingly.
                    if is_connection_failure(&e) {
                        let here = tokio::runtime::Handle::current();
                        health.mark_unreachable(&here, &pool, &shown, &why);
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Ok(())
    }
}

/// Listens for changes until the connection fails.
async fn listen(pool: &PgPool, on_change: &ChangeHandler) -> Result<(), sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen(CHANGE_CHANNEL).await?;
    deliver(on_change, Change::Resync).await;
    loop {
        let change = match listener.try_recv().await? {
            Some(note) => match note.payload().split_once('\t') {
                Some((tree, key)) => Change::Key {
                    tree: tree.to_string(),
                    key: key.to_string(),
                },
                None => continue,
            },
            // The connection dropped and came back: some may be lost.
            None => Change::Resync,
        };
        deliver(on_change, change).await;
    }
}

async fn deliver(on_change: &ChangeHandler, change: Change) {
    let callback = on_change.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || callback(change)).await {
        tracing::error!(error = %e, "a state change handler failed");
    }
}

/// One entry of the shared audit view (a query, or an access decision):
/// the columns it is found by, each `None` when this part of the entry
/// does not know it, and the entry itself, a JSON object merged key by key
/// into what the view already holds under the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// The query id, or another key unique to the entry.
    pub query_id: String,
    /// `query` (what `audit log` lists) or another kind of entry.
    pub kind: String,
    pub time_ms: Option<i64>,
    pub consumer: Option<String>,
    pub owner: Option<String>,
    pub dataset: Option<String>,
    pub purpose: Option<String>,
    pub entry: Vec<u8>,
}

/// Audit entries as columns, for one multi-row insert.
#[derive(Default)]
struct AuditColumns {
    query_id: Vec<String>,
    kind: Vec<String>,
    time_ms: Vec<Option<i64>>,
    consumer: Vec<Option<String>>,
    owner: Vec<Option<String>>,
    dataset: Vec<Option<String>>,
    purpose: Vec<Option<String>>,
    entry: Vec<String>,
}

/// Where a reader of the view's changes stands: after this entry version
/// (transaction id, then key). Start from `AuditCursor::default()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditCursor {
    pub(crate) changed: Option<String>,
    pub(crate) key: String,
}

/// One entry as it stands after a change: its key, kind and whole JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditChange {
    pub key: String,
    pub kind: String,
    pub entry: Vec<u8>,
}

/// Which entries of the shared audit view to read. Empty texts and zero
/// times do not filter.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only queries this department made or answered; `None`: all.
    pub viewer: Option<String>,
    pub dataset: String,
    pub consumer: String,
    pub owner: String,
    /// A substring of the purpose.
    pub purpose: String,
    pub since_ms: i64,
    pub until_ms: i64,
    /// Only the newest this many (still returned oldest first); `None`: all.
    pub newest: Option<u32>,
}

impl PgStore {
    /// Writes entries (distinct keys) in one statement, the columns going
    /// as arrays. Each is merged into what the view holds under its key:
    /// JSON keys and known columns are added, nothing known is forgotten,
    /// and an entry that adds nothing leaves the row (and the change feed)
    /// as it was. So a completion written by one replica and its decision
    /// by another make one entry, in either order.
    pub(crate) fn put_audit_entries(&self, entries: Vec<AuditEntry>) -> Result<()> {
        let mut columns = AuditColumns::default();
        for e in entries {
            columns.query_id.push(e.query_id);
            columns.kind.push(e.kind);
            columns.time_ms.push(e.time_ms);
            columns.consumer.push(e.consumer);
            columns.owner.push(e.owner);
            columns.dataset.push(e.dataset);
            columns.purpose.push(e.purpose);
            columns
                .entry
                .push(String::from_utf8_lossy(&e.entry).into_owned());
        }
        self.run(|pool| async move {
            sqlx::query(
                "INSERT INTO exchange_audit_queries AS held
                    (query_id, kind, time_ms, consumer, owner, dataset, purpose, entry)
                 SELECT k, kind, t, c, o, d, p, e::jsonb
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                             $6::text[], $7::text[], $8::text[]) AS u(k, kind, t, c, o, d, p, e)
                 ON CONFLICT (query_id) DO UPDATE SET
                    time_ms = COALESCE(EXCLUDED.time_ms, held.time_ms),
                    consumer = COALESCE(EXCLUDED.consumer, held.consumer),
                    owner = COALESCE(EXCLUDED.owner, held.owner),
                    dataset = COALESCE(EXCLUDED.dataset, held.dataset),
                    purpose = COALESCE(EXCLUDED.purpose, held.purpose),
                    entry = held.entry || EXCLUDED.entry,
                    changed = pg_current_xact_id()
                 WHERE NOT held.entry @> EXCLUDED.entry",
            )
            .bind(columns.query_id)
            .bind(columns.kind)
            .bind(columns.time_ms)
            .bind(columns.consumer)
            .bind(columns.owner)
            .bind(columns.dataset)
            .bind(columns.purpose)
            .bind(columns.entry)
            .execute(&pool)
            .await
            .map(drop)
        })
    }

    /// Entries changed after `cursor`, oldest change first, at most
    /// `limit`, and where the next call starts. Only changes by
    /// transactions older than every one still running are read (they can
    /// no longer appear behind the cursor), so each version of an entry is
    /// read once, whatever order the replicas' writes commit in.
    pub(crate) fn audit_changes(
        &self,
        cursor: &AuditCursor,
        limit: i64,
    ) -> Result<(Vec<AuditChange>, AuditCursor)> {
        let cursor = cursor.clone();
        self.run(|pool| async move {
            let horizon: String =
                sqlx::query("SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS h")
                    .fetch_one(&pool)
                    .await?
                    .try_get("h")?;
            // The alias differs from the column: ORDER BY must sort by the
            // xid8 column (through its index), not by its text.
            let rows = sqlx::query(
                "SELECT query_id, kind, entry::text AS entry, changed::text AS changed_text
                 FROM exchange_audit_queries
                 WHERE (changed, query_id) > ($1::text::xid8, $2) AND changed < $3::text::xid8
                 ORDER BY changed, query_id LIMIT $4",
            )
            .bind(cursor.changed.clone().unwrap_or_else(|| "0".into()))
            .bind(&cursor.key)
            .bind(horizon)
            .bind(limit)
            .fetch_all(&pool)
            .await?;
            let mut next = cursor;
            let mut changes = Vec::with_capacity(rows.len());
            for row in rows {
                let key: String = row.try_get("query_id")?;
                next = AuditCursor {
                    changed: Some(row.try_get("changed_text")?),
                    key: key.clone(),
                };
                changes.push(AuditChange {
                    key,
                    kind: row.try_get("kind")?,
                    entry: row.try_get::<String, _>("entry")?.into_bytes(),
                });
            }
            Ok((changes, next))
        })
    }

    /// The entries `filter` selects, oldest first, found through the
    /// indexes on consumer, owner and time.
    pub(crate) fn audit_entries(&self, filter: AuditFilter) -> Result<Vec<Vec<u8>>> {
        self.run(|pool| async move {
            let mut sql = String::from(
                "SELECT entry::text AS entry, time_ms, query_id FROM exchange_audit_queries
                 WHERE kind = 'query' AND time_ms IS NOT NULL",
            );
            let mut texts: Vec<String> = Vec::new();
            let mut bind = |sql: &mut String, clause: &str, value: String| {
                texts.push(value);
                sql.push_str(&clause.replace('?', &format!("${}", texts.len())));
            };
            if let Some(viewer) = &filter.viewer {
                bind(&mut sql, " AND (consumer = ? OR owner = ?)", viewer.clone());
            }
            for (column, value) in [
                ("dataset", &filter.dataset),
                ("consumer", &filter.consumer),
                ("owner", &filter.owner),
            ] {
                if !value.is_empty() {
                    bind(&mut sql, &format!(" AND {column} = ?"), value.clone());
                }
            }
            if !filter.purpose.is_empty() {
                bind(
                    &mut sql,
                    " AND strpos(purpose, ?) > 0",
                    filter.purpose.clone(),
                );
            }
            if filter.since_ms > 0 {
                sql.push_str(&format!(" AND time_ms >= {}", filter.since_ms));
            }
            if filter.until_ms > 0 {
                sql.push_str(&format!(" AND time_ms < {}", filter.until_ms));
            }
            match filter.newest {
                Some(n) => {
                    sql.push_str(&format!(" ORDER BY time_ms DESC, query_id DESC LIMIT {n}"))
                }
                None => sql.push_str(" ORDER BY time_ms, query_id"),
            }
            let mut query = sqlx::query(&sql);
            for text in texts {
                query = query.bind(text);
            }
            let rows = query.fetch_all(&pool).await?;
            let mut entries: Vec<Vec<u8>> = rows
                .iter()
                .map(|r| r.try_get::<String, _>("entry").map(String::into_bytes))
                .collect::<Result<_, _>>()?;
            if filter.newest.is_some() {
                entries.reverse();
            }
            Ok(entries)
        })
    }
}

/// Where the schema of the database `settings` names stands.
pub fn schema_status(settings: &PgSettings) -> Result<SchemaStatus> {
    PgStore::connect(settings)?.schema_status()
}

/// Applies the pending migrations to the database `settings` names; a
/// newer schema than this build's is refused.
pub fn migrate(settings: &PgSettings) -> Result<Vec<Migration>> {
    let store = PgStore::connect(settings)?;
    store.schema_status()?;
    store.migrate()
}

/// The newest schema version this build knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

fn tls_advice(error: &str) -> String {
    format!(
        "TLS with PostgreSQL failed ({error}): check `sslrootcert` in `state` (the CA that signed the server's certificate) and `sslmode`"
    )
}

/// A database error in words that point at the setting to check.
/// Why one call did not answer.
enum CallError {
    Failed(sqlx::Error),
    TimedOut,
    Abandoned,
}

fn exchange_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Whether an error says the database cannot be reached (rather than that
/// it refused this one statement).
fn is_connection_failure(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // 08: connection exceptions; 57P01-57P03: the server is shutting
        // down, crashed, or cannot take connections now.
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::PoolTimedOut => {
            "PostgreSQL did not answer in time: is it running and reachable at the host and port in `state`?".into()
        }
        sqlx::Error::Tls(tls) => tls_advice(&tls.to_string()),
        sqlx::Error::Io(io) if io.to_string().contains("certificate") => tls_advice(&io.to_string()),
        sqlx::Error::Io(io) => format!(
            "cannot reach PostgreSQL ({io}): check the host and port in `state`, and that the server is running"
        ),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            match code.as_ref() {
                "28P01" | "28000" => format!(
                    "PostgreSQL refused the login ({}): check the user and password in `state`",
                    db.message()
                ),
                "3D000" => format!(
                    "{}: create it (createdb) or fix the database name in `state`",
                    db.message()
                ),
                _ => format!("PostgreSQL error {code}: {}", db.message()),
            }
        }
        other => format!("PostgreSQL: {other}"),
    }
}

//! Durable state for the coordinator and the nodes.
//!
//! This is the only crate that touches a state engine (architecture
//! invariant): sled, embedded, the default; or PostgreSQL
//! ([`postgres`]), which several coordinators can share. It offers a small
//! typed interface, [`Db`], [`Tree`] and [`Batch`], with values stored as
//! JSON so that state stays inspectable and the engine can be swapped
//! without touching callers. [`transfer`] moves a whole store between
//! engines. [`AuditTable`] is the audit index derived from the audit logs:
//! a table every replica shares on PostgreSQL, trees of the coordinator's
//! own on sled (`embedded_audit`); derived trees are not state, so they
//! are left out of exports.
//!
//! **Every write is durable when it returns.** On sled, `insert`, `remove`,
//! `update` and `apply` flush sled's log to disk (`fsync`) before they
//! return, so a change the caller acknowledges survives a kill -9 the
//! moment after (sled alone flushes every 500 ms, and lost grants,
//! revocations and certificate serials to crashes inside that window).
//! Concurrent writers share flushes where sled allows. The exceptions are
//! [`Tree::update_relaxed`] and [`Tree::insert_relaxed`], for counters on
//! the query path whose callers say why a crash may forget their last
//! 500 ms. On PostgreSQL every write returns after its commit.

use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

mod embedded_audit;
pub mod postgres;
pub mod transfer;

pub use embedded_audit::DERIVED_PREFIX;

use postgres::{PgSettings, PgStore};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("could not open the state store at {path}: {source}. Is another process using this data directory?")]
    Open { path: String, source: sled::Error },
    #[error("state store failure: {0}")]
    Engine(#[from] sled::Error),
    #[error("state database {url}: {message}")]
    Postgres { url: String, message: String },
    #[error("corrupt record in tree {tree} at key {key:?}: {source}")]
    Decode {
        tree: String,
        key: String,
        source: serde_json::Error,
    },
    #[error("could not encode a record: {0}")]
    Encode(serde_json::Error),
    #[error("{0}")]
    Transfer(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// How long [`Db::open`] waits for a lock held by a store that is closing.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// sled's own default tree, which holds nothing of ours.
const SLED_DEFAULT_TREE: &str = "__sled__default";

#[derive(Clone)]
enum Engine {
    Sled(sled::Db),
    Postgres(Arc<PgStore>),
}

/// An open state store.
#[derive(Clone)]
pub struct Db {
    engine: Engine,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.engine {
            Engine::Sled(_) => f.write_str("Db(sled)"),
            Engine::Postgres(store) => write!(f, "Db({store:?})"),
        }
    }
}

impl Db {
    /// Opens the sled store at `path`, waiting up to [`LOCK_WAIT`] for a file
    /// lock that a store closed a moment ago in this process still holds:
    /// sled's background threads release it shortly after the last handle
    /// drops, so a component restarted in place would otherwise fail. A
    /// store held by another process is refused after that wait.
    pub fn open(path: &Path) -> Result<Db> {
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(64 * 1024 * 1024);
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match config.open() {
                Ok(inner) => return Ok(Db::sled(inner)),
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(source) => {
                    return Err(StorageError::Open {
                        path: path.display().to_string(),
                        source,
                    })
                }
            }
        }
    }

    /// Opens the PostgreSQL store `settings` names. Its schema must be at
    /// this build's version, or older with `migrate` (the migrations then
    /// run); a newer schema is refused.
    pub fn open_postgres(settings: &PgSettings, migrate: bool) -> Result<Db> {
        Ok(Db {
            engine: Engine::Postgres(Arc::new(PgStore::open(settings, migrate)?)),
        })
    }

    fn sled(inner: sled::Db) -> Db {
        Db {
            engine: Engine::Sled(inner),
        }
    }

    /// A throw-away store for tests and benchmarks.
    pub fn temporary() -> Result<Db> {
        Ok(Db::sled(sled::Config::new().temporary(true).open()?))
    }

    /// Calls `on_change` for each change any writer makes to `trees`, when
    /// the store is shared (PostgreSQL): how several coordinators keep
    /// their in-memory views in step. On sled, which one process holds,
    /// there is nobody else to hear from and this does nothing.
    pub fn watch(
        &self,
        trees: &[&str],
        on_change: impl Fn(postgres::Change) + Send + Sync + 'static,
    ) -> Result<()> {
        match &self.engine {
            Engine::Sled(_) => Ok(()),
            Engine::Postgres(store) => store.watch(trees, Arc::new(on_change)),
        }
    }

    /// The audit view's table: shared by every coordinator on
    /// PostgreSQL, this coordinator's alone on sled.
    pub fn audit_table(&self) -> Result<AuditTable> {
        Ok(match &self.engine {
            Engine::Sled(db) => AuditTable(AuditEngine::Sled(Arc::new(
                embedded_audit::SledAudit::open(db)?,
            ))),
            Engine::Postgres(store) => AuditTable(AuditEngine::Postgres(store.clone())),
        })
    }

    /// While a shared (PostgreSQL) store cannot be reached: since when, in
    /// Unix seconds. Calls fail at once meanwhile; the store probes the
    /// database every second and ends the outage when it answers. An
    /// embedded store is never unreachable.
    pub fn unreachable_since(&self) -> Option<i64> {
        match &self.engine {
            Engine::Sled(_) => None,
            Engine::Postgres(pg) => pg.unreachable_since(),
        }
    }

    /// Whether several processes may share this store.
    pub fn is_shared(&self) -> bool {
        matches!(self.engine, Engine::Postgres(_))
    }

    /// Which engine holds this store: `sled` or `postgres`.
    pub fn engine_name(&self) -> &'static str {
        match self.engine {
            Engine::Sled(_) => "sled",
            Engine::Postgres(_) => "postgres",
        }
    }

    pub fn tree(&self, name: &str) -> Result<Tree> {
        let inner = match &self.engine {
            Engine::Sled(db) => TreeEngine::Sled(db.open_tree(name)?),
            Engine::Postgres(store) => TreeEngine::Postgres(store.clone()),
        };
        Ok(Tree {
            name: name.to_string(),
            inner,
        })
    }

    /// The names of the trees that hold state: everything of ours but
    /// what is derived from the audit logs ([`DERIVED_PREFIX`]).
    pub fn tree_names(&self) -> Result<Vec<String>> {
        let names: Vec<String> = match &self.engine {
            Engine::Sled(db) => db
                .tree_names()
                .iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .filter(|n| n != SLED_DEFAULT_TREE)
                .collect(),
            Engine::Postgres(store) => store.tree_names()?,
        };
        Ok(names
            .into_iter()
            .filter(|n| !n.starts_with(DERIVED_PREFIX))
            .collect())
    }

    /// Removes a tree and everything in it; returns whether it existed.
    pub fn drop_tree(&self, name: &str) -> Result<bool> {
        match &self.engine {
            Engine::Sled(db) => {
                let dropped = db.drop_tree(name.as_bytes())?;
                db.flush()?;
                Ok(dropped)
            }
            Engine::Postgres(store) => store.drop_tree(name),
        }
    }

    /// Removes everything derived from the audit logs ([`DERIVED_PREFIX`])
    /// from a sled store, to rebuild it. On PostgreSQL, where the derived
    /// view holds every replica's copies, nothing is removed.
    pub fn drop_derived(&self) -> Result<()> {
        if let Engine::Sled(db) = &self.engine {
            for name in db.tree_names() {
                if name.starts_with(DERIVED_PREFIX.as_bytes()) {
                    db.drop_tree(&name)?;
                }
            }
            db.flush()?;
        }
        Ok(())
    }

    /// Waits until everything written so far is on disk.
    pub fn flush(&self) -> Result<()> {
        if let Engine::Sled(db) = &self.engine {
            db.flush()?;
        }
        Ok(())
    }
}

/// The audit view: one entry per query, found by consumer, owner, dataset,
/// purpose and time through indexes. On PostgreSQL every coordinator
/// shares it; on sled it is this coordinator's own.
#[derive(Clone)]
pub struct AuditTable(AuditEngine);

#[derive(Clone)]
enum AuditEngine {
    Postgres(Arc<PgStore>),
    Sled(Arc<embedded_audit::SledAudit>),
}

impl std::fmt::Debug for AuditTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditTable(..)")
    }
}

impl AuditTable {
    /// Writes entries at once, each merged into the one held under its key.
    pub fn put(&self, entries: Vec<postgres::AuditEntry>) -> Result<()> {
        match &self.0 {
            AuditEngine::Postgres(store) => store.put_audit_entries(entries),
            AuditEngine::Sled(audit) => audit.put(entries),
        }
    }

    /// Entries changed after `cursor` (at most `limit`), and where the
    /// next call starts: every version of every entry, each read once.
    pub fn changes(
        &self,
        cursor: &postgres::AuditCursor,
        limit: i64,
    ) -> Result<(Vec<postgres::AuditChange>, postgres::AuditCursor)> {
        match &self.0 {
            AuditEngine::Postgres(store) => store.audit_changes(cursor, limit),
            AuditEngine::Sled(audit) => audit.changes(cursor, limit),
        }
    }

    /// The entries `filter` selects, oldest first.
    pub fn select(&self, filter: postgres::AuditFilter) -> Result<Vec<Vec<u8>>> {
        match &self.0 {
            AuditEngine::Postgres(store) => store.audit_entries(filter),
            AuditEngine::Sled(audit) => audit.select(&filter),
        }
    }
}

#[derive(Clone)]
enum TreeEngine {
    Sled(sled::Tree),
    Postgres(Arc<PgStore>),
}

/// A named keyspace holding JSON values.
#[derive(Clone)]
pub struct Tree {
    name: String,
    inner: TreeEngine,
}

impl Tree {
    /// The shared store's outage going on (its start in Unix seconds, no
    /// end), else its last one (start and end); `None` if there was none,
    /// and always for an embedded store.
    pub fn last_outage(&self) -> Option<(i64, Option<i64>)> {
        match &self.inner {
            TreeEngine::Sled(_) => None,
            TreeEngine::Postgres(pg) => pg.last_outage(),
        }
    }
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tree({})", self.name)
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(StorageError::Encode)
}

impl Tree {
    fn decode<T: DeserializeOwned>(&self, key: &[u8], bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|source| StorageError::Decode {
            tree: self.name.clone(),
            key: String::from_utf8_lossy(key).into_owned(),
            source,
        })
    }

    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let bytes = match &self.inner {
            TreeEngine::Sled(t) => t.get(key.as_bytes())?.map(|b| b.to_vec()),
            TreeEngine::Postgres(store) => store.get(&self.name, key)?,
        };
        bytes.map(|b| self.decode(key.as_bytes(), &b)).transpose()
    }

    /// Stores `value` under `key`, durably.
    pub fn insert<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        self.insert_relaxed(key, value)?;
        self.sync()
    }

    /// [`Self::insert`] without waiting for the disk (see
    /// [`Self::update_relaxed`] for when that is acceptable).
    pub fn insert_relaxed<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = encode(value)?;
        match &self.inner {
            TreeEngine::Sled(t) => {
                t.insert(key.as_bytes(), bytes)?;
            }
            TreeEngine::Postgres(store) => store.put(&self.name, key, bytes)?,
        }
        Ok(())
    }

    /// Removes `key`, durably; returns whether it was there.
    pub fn remove(&self, key: &str) -> Result<bool> {
        let removed = match &self.inner {
            TreeEngine::Sled(t) => t.remove(key.as_bytes())?.is_some(),
            TreeEngine::Postgres(store) => store.remove(&self.name, key)?,
        };
        self.sync()?;
        Ok(removed)
    }

    /// Atomically replaces `key`'s value with `f(old)`, durably; `f` may run
    /// more than once under contention and must be pure. Returns the new
    /// value.
    pub fn update<T, F>(&self, key: &str, f: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Option<T>,
    {
        let new = self.update_relaxed(key, f)?;
        self.sync()?;
        Ok(new)
    }

    /// [`Self::update`] without waiting for the disk: the change reaches it
    /// with the next durable write or sled's own flush (within 500 ms), and
    /// a crash before then loses it. Only for values whose loss the caller
    /// can tolerate or repair, such as a counter on the query path.
    pub fn update_relaxed<T, F>(&self, key: &str, mut f: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Option<T>,
    {
        loop {
            let (old_bytes, version) = match &self.inner {
                TreeEngine::Sled(t) => (t.get(key.as_bytes())?.map(|b| b.to_vec()), None),
                TreeEngine::Postgres(store) => match store.get_versioned(&self.name, key)? {
                    Some((bytes, version)) => (Some(bytes), Some(version)),
                    None => (None, None),
                },
            };
            let old: Option<T> = match &old_bytes {
                Some(b) => Some(self.decode(key.as_bytes(), b)?),
                None => None,
            };
            let new = f(old);
            let new_bytes = new.as_ref().map(encode).transpose()?;
            let swapped = match &self.inner {
                TreeEngine::Sled(t) => t
                    .compare_and_swap(key.as_bytes(), old_bytes, new_bytes)?
                    .is_ok(),
                TreeEngine::Postgres(store) => {
                    store.compare_and_swap(&self.name, key, version, new_bytes)?
                }
            };
            if swapped {
                return Ok(new);
            }
        }
    }

    /// All values in key order.
    pub fn values<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        self.scan_prefix("")
    }

    pub fn scan_prefix<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>> {
        self.raw_prefix(prefix)?
            .iter()
            .map(|(k, v)| self.decode(k.as_bytes(), v))
            .collect()
    }

    /// Keys and encoded values under `prefix`, in key order.
    fn raw_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        match &self.inner {
            TreeEngine::Sled(t) => t
                .scan_prefix(prefix.as_bytes())
                .map(|item| {
                    let (k, v) = item?;
                    Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
                })
                .collect(),
            TreeEngine::Postgres(store) => store.scan_prefix(&self.name, prefix),
        }
    }

    /// All keys and values in key order.
    pub fn entries<T: DeserializeOwned>(&self) -> Result<Vec<(String, T)>> {
        self.raw_prefix("")?
            .into_iter()
            .map(|(k, v)| {
                let value = self.decode(k.as_bytes(), &v)?;
                Ok((k, value))
            })
            .collect()
    }

    /// How many keys the tree holds (0 when the engine cannot be asked;
    /// [`Self::count`] says why).
    pub fn len(&self) -> usize {
        self.count().unwrap_or(0)
    }

    /// How many keys the tree holds, or why the engine could not say.
    pub fn count(&self) -> Result<usize> {
        match &self.inner {
            TreeEngine::Sled(t) => Ok(t.len()),
            TreeEngine::Postgres(store) => store.len(&self.name),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies a batch atomically and durably.
    pub fn apply(&self, batch: Batch) -> Result<()> {
        self.apply_relaxed(batch)?;
        self.sync()
    }

    /// [`Tree::apply`] without waiting for the disk: for what is derived
    /// and can be rebuilt (indexes of the audit log), whose callers say
    /// how a crash's last 500 ms is restored.
    pub fn apply_relaxed(&self, batch: Batch) -> Result<()> {
        match &self.inner {
            TreeEngine::Sled(t) => {
                let mut sled_batch = sled::Batch::default();
                for (key, value) in batch.ops {
                    match value {
                        Some(v) => sled_batch.insert(key.as_bytes(), v),
                        None => sled_batch.remove(key.as_bytes()),
                    }
                }
                t.apply_batch(sled_batch)?;
            }
            TreeEngine::Postgres(store) => store.apply(&self.name, batch.ops)?,
        }
        Ok(())
    }

    /// Waits until every write so far, this tree's and others', is on disk
    /// (PostgreSQL's writes already are when they return).
    fn sync(&self) -> Result<()> {
        if let TreeEngine::Sled(t) = &self.inner {
            t.flush()?;
        }
        Ok(())
    }
}

/// Writes applied to one tree atomically, in order.
#[derive(Default)]
pub struct Batch {
    ops: Vec<(String, Option<Vec<u8>>)>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Batch({} writes)", self.ops.len())
    }
}

impl Batch {
    pub fn insert<T: Serialize>(&mut self, key: &str, value: &T) -> Result<()> {
        self.ops.push((key.to_string(), Some(encode(value)?)));
        Ok(())
    }

    pub fn remove(&mut self, key: &str) {
        self.ops.push((key.to_string(), None));
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_reopen_and_update_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(dir.path()).unwrap();
            let t = db.tree("members").unwrap();
            t.insert("tax", &("税务局".to_string(), 1u32)).unwrap();
            let new = t
                .update::<(String, u32), _>("tax", |old| old.map(|(n, v)| (n, v + 1)))
                .unwrap();
            assert_eq!(new.unwrap().1, 2);
            let mut batch = Batch::default();
            batch
                .insert("vehicle-admin", &("车管所".to_string(), 1u32))
                .unwrap();
            batch.remove("missing");
            t.apply(batch).unwrap();
            db.flush().unwrap();
        }
        let db = Db::open(dir.path()).unwrap();
        let t = db.tree("members").unwrap();
        let all: Vec<(String, u32)> = t.values().unwrap();
        assert_eq!(all, vec![("税务局".into(), 2), ("车管所".into(), 1)]);
        assert_eq!(t.scan_prefix::<(String, u32)>("veh").unwrap().len(), 1);
        assert!(t.remove("tax").unwrap());
        assert!(t.get::<(String, u32)>("tax").unwrap().is_none());
    }

    #[test]
    fn a_second_opener_gets_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _db = Db::open(dir.path()).unwrap();
        let err = Db::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("another process"), "{err}");
    }

    #[test]
    fn corrupt_records_name_their_tree_and_key() {
        let db = Db::temporary().unwrap();
        let t = db.tree("tokens").unwrap();
        t.insert("k", &"text").unwrap();
        let err = t.get::<u64>("k").unwrap_err().to_string();
        assert!(err.contains("tokens") && err.contains("\"k\""), "{err}");
    }
}

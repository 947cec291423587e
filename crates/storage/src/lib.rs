//! Durable state for the coordinator and the nodes.
//!
//! This is the only crate that touches sled (architecture invariant). It
//! offers a small typed interface, [`Db`], [`Tree`] and [`Batch`], with values
//! stored as JSON so that state stays inspectable and the engine can be
//! swapped without touching callers.
//!
//! **Every write is durable when it returns.** `insert`, `remove`,
//! `update` and `apply` flush sled's log to disk (`fsync`) before they
//! return, so a change the caller acknowledges survives a kill -9 the
//! moment after (sled alone flushes every 500 ms, and lost grants,
//! revocations and certificate serials to crashes inside that window).
//! Concurrent writers share flushes where sled allows. The exceptions are
//! [`Tree::update_relaxed`] and [`Tree::insert_relaxed`], for counters on
//! the query path whose callers say why a crash may forget their last
//! 500 ms.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("could not open the state store at {path}: {source}. Is another process using this data directory?")]
    Open { path: String, source: sled::Error },
    #[error("state store failure: {0}")]
    Engine(#[from] sled::Error),
    #[error("corrupt record in tree {tree} at key {key:?}: {source}")]
    Decode {
        tree: String,
        key: String,
        source: serde_json::Error,
    },
    #[error("could not encode a record: {0}")]
    Encode(serde_json::Error),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// How long [`Db::open`] waits for a lock held by a store that is closing.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// An open state store.
#[derive(Clone)]
pub struct Db {
    inner: sled::Db,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Db(..)")
    }
}

impl Db {
    /// Opens the store at `path`, waiting up to [`LOCK_WAIT`] for a file
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
                Ok(inner) => return Ok(Db { inner }),
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

    /// A throw-away store for tests and benchmarks.
    pub fn temporary() -> Result<Db> {
        Ok(Db {
            inner: sled::Config::new().temporary(true).open()?,
        })
    }

    pub fn tree(&self, name: &str) -> Result<Tree> {
        Ok(Tree {
            name: name.to_string(),
            inner: self.inner.open_tree(name)?,
        })
    }

    /// The names of the trees in the store (sled's own default tree
    /// included).
    pub fn tree_names(&self) -> Vec<String> {
        self.inner
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    /// Removes a tree and everything in it; returns whether it existed.
    pub fn drop_tree(&self, name: &str) -> Result<bool> {
        let dropped = self.inner.drop_tree(name.as_bytes())?;
        self.inner.flush()?;
        Ok(dropped)
    }

    /// Waits until everything written so far is on disk.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush()?;
        Ok(())
    }
}

/// A named keyspace holding JSON values.
#[derive(Clone)]
pub struct Tree {
    name: String,
    inner: sled::Tree,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tree({})", self.name)
    }
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
        match self.inner.get(key.as_bytes())? {
            Some(bytes) => Ok(Some(self.decode(key.as_bytes(), &bytes)?)),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key`, durably.
    pub fn insert<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(StorageError::Encode)?;
        self.inner.insert(key.as_bytes(), bytes)?;
        self.sync()
    }

    /// [`Self::insert`] without waiting for the disk (see
    /// [`Self::update_relaxed`] for when that is acceptable).
    pub fn insert_relaxed<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(StorageError::Encode)?;
        self.inner.insert(key.as_bytes(), bytes)?;
        Ok(())
    }

    /// Removes `key`, durably; returns whether it was there.
    pub fn remove(&self, key: &str) -> Result<bool> {
        let removed = self.inner.remove(key.as_bytes())?.is_some();
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
            let old_bytes = self.inner.get(key.as_bytes())?;
            let old: Option<T> = match &old_bytes {
                Some(b) => Some(self.decode(key.as_bytes(), b)?),
                None => None,
            };
            let new = f(old);
            let new_bytes = match &new {
                Some(v) => Some(serde_json::to_vec(v).map_err(StorageError::Encode)?),
                None => None,
            };
            match self
                .inner
                .compare_and_swap(key.as_bytes(), old_bytes, new_bytes)?
            {
                Ok(()) => return Ok(new),
                Err(_) => continue,
            }
        }
    }

    /// All values in key order.
    pub fn values<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        self.scan_prefix("")
    }

    pub fn scan_prefix<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for item in self.inner.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item?;
            out.push(self.decode(&k, &v)?);
        }
        Ok(out)
    }

    /// All keys and values in key order.
    pub fn entries<T: DeserializeOwned>(&self) -> Result<Vec<(String, T)>> {
        let mut out = Vec::new();
        for item in self.inner.iter() {
            let (k, v) = item?;
            out.push((
                String::from_utf8_lossy(&k).into_owned(),
                self.decode(&k, &v)?,
            ));
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Applies a batch atomically and durably.
    pub fn apply(&self, batch: Batch) -> Result<()> {
        self.inner.apply_batch(batch.inner)?;
        self.sync()
    }

    /// Waits until every write so far, this tree's and others', is on disk.
    fn sync(&self) -> Result<()> {
        self.inner.flush()?;
        Ok(())
    }
}

/// Writes applied to one tree atomically.
#[derive(Default)]
pub struct Batch {
    inner: sled::Batch,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Batch(..)")
    }
}

impl Batch {
    pub fn insert<T: Serialize>(&mut self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(StorageError::Encode)?;
        self.inner.insert(key.as_bytes(), bytes);
        Ok(())
    }

    pub fn remove(&mut self, key: &str) {
        self.inner.remove(key.as_bytes());
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

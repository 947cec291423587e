//! Moving a whole store between engines (sled to PostgreSQL and back):
//! [`export`] writes every tree's keys and JSON values as JSON lines after
//! a header line, trees in name order and keys in byte order (so two
//! exports of the same state are identical whatever the engine);
//! [`import`] reads them into an empty store, a batch at a
//! time, and checks the count the export ends with, so a truncated file is
//! refused rather than half-imported without notice.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::{Batch, Db, Result, StorageError};

/// The format's name and version, in the header line.
const FORMAT: &str = "exchange-state-export";
const VERSION: u32 = 1;
/// Writes per transaction on import.
const BATCH: usize = 500;

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    engine: String,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    tree: String,
    key: String,
    value: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct Trailer {
    entries: u64,
}

/// What an export or import moved: the number of keys in each tree.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub trees: BTreeMap<String, u64>,
}

impl Summary {
    pub fn entries(&self) -> u64 {
        self.trees.values().sum()
    }
}

fn io(e: std::io::Error) -> StorageError {
    StorageError::Transfer(format!("writing the export: {e}"))
}

/// Writes every tree of `db` to `out`.
pub fn export(db: &Db, out: &mut impl Write) -> Result<Summary> {
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        engine: db.engine_name().into(),
    };
    writeln!(out, "{}", json_line(&header)?).map_err(io)?;
    let mut summary = Summary::default();
    let mut names = db.tree_names()?;
    names.sort();
    for name in names {
        let tree = db.tree(&name)?;
        for (key, value) in tree.entries::<serde_json::Value>()? {
            let entry = Entry {
                tree: name.clone(),
                key,
                value,
            };
            writeln!(out, "{}", json_line(&entry)?).map_err(io)?;
            *summary.trees.entry(name.clone()).or_default() += 1;
        }
    }
    let trailer = Trailer {
        entries: summary.entries(),
    };
    writeln!(out, "{}", json_line(&trailer)?).map_err(io)?;
    out.flush().map_err(io)?;
    Ok(summary)
}

fn json_line<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(StorageError::Encode)
}

/// Reads an [`export`] into `db`, which must hold nothing yet.
pub fn import(db: &Db, input: impl BufRead) -> Result<Summary> {
    let mut occupied = Vec::new();
    for name in db.tree_names()? {
        if db.tree(&name)?.count()? > 0 {
            occupied.push(name);
        }
    }
    if !occupied.is_empty() {
        return Err(StorageError::Transfer(format!(
            "the target state store already holds data (trees {}): import into an empty one",
            occupied.join(", ")
        )));
    }
    let mut lines = input.lines().enumerate();
    let header: Header = match lines.next() {
        Some((_, line)) => parse(&read(line)?, 1)?,
        None => return Err(StorageError::Transfer("the export file is empty".into())),
    };
    if header.format != FORMAT || header.version != VERSION {
        return Err(StorageError::Transfer(format!(
            "not an export this coordinator reads: format {:?} version {} (expected {FORMAT} version {VERSION})",
            header.format, header.version
        )));
    }
    let mut summary = Summary::default();
    let mut pending: BTreeMap<String, Batch> = BTreeMap::new();
    for (index, line) in lines {
        let line = read(line)?;
        if let Ok(trailer) = serde_json::from_str::<Trailer>(&line) {
            flush_all(db, &mut pending)?;
            if trailer.entries != summary.entries() {
                return Err(StorageError::Transfer(format!(
                    "the export says {} entries but holds {}: it is damaged",
                    trailer.entries,
                    summary.entries()
                )));
            }
            return Ok(summary);
        }
        let entry: Entry = parse(&line, index + 1)?;
        let batch = pending.entry(entry.tree.clone()).or_default();
        batch.insert(&entry.key, &entry.value)?;
        *summary.trees.entry(entry.tree.clone()).or_default() += 1;
        if batch.len() >= BATCH {
            let full = std::mem::take(batch);
            db.tree(&entry.tree)?.apply(full)?;
        }
    }
    Err(StorageError::Transfer(
        "the export file ends without its closing count: it was cut short; nothing after the last batch was imported".into(),
    ))
}

fn flush_all(db: &Db, pending: &mut BTreeMap<String, Batch>) -> Result<()> {
    for (tree, batch) in std::mem::take(pending) {
        if !batch.is_empty() {
            db.tree(&tree)?.apply(batch)?;
        }
    }
    Ok(())
}

fn read(line: std::io::Result<String>) -> Result<String> {
    line.map_err(|e| StorageError::Transfer(format!("reading the export: {e}")))
}

fn parse<T: for<'de> Deserialize<'de>>(line: &str, number: usize) -> Result<T> {
    serde_json::from_str(line)
        .map_err(|e| StorageError::Transfer(format!("line {number} of the export: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_survives_export_and_import() {
        let from = Db::temporary().unwrap();
        let members = from.tree("members").unwrap();
        members.insert("tax", &("税务局", 1u32)).unwrap();
        members.insert("vehicle-admin", &("车管所", 2u32)).unwrap();
        from.tree("counters")
            .unwrap()
            .insert("grant", &41u64)
            .unwrap();
        let mut file = Vec::new();
        let exported = export(&from, &mut file).unwrap();
        assert_eq!(exported.entries(), 3);

        let to = Db::temporary().unwrap();
        let imported = import(&to, file.as_slice()).unwrap();
        assert_eq!(imported, exported);
        let again: Vec<(String, u32)> = to.tree("members").unwrap().values().unwrap();
        assert_eq!(again, vec![("税务局".into(), 1), ("车管所".into(), 2)]);
        let mut second = Vec::new();
        export(&to, &mut second).unwrap();
        assert_eq!(second, file, "a round trip changes nothing");

        // Into a store that holds data; a file cut short; not an export.
        let err = import(&to, file.as_slice()).unwrap_err().to_string();
        assert!(err.contains("already holds data"), "{err}");
        let cut = &file[..file.len() - 20];
        let err = import(&Db::temporary().unwrap(), cut)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line") || err.contains("cut short"), "{err}");
        let err = import(&Db::temporary().unwrap(), &b"{\"a\":1}\n"[..])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}

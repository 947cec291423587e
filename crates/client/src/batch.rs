//! Batch lookups: thousands of keys from a file against chosen datasets.
//!
//! [`KeyReader`] reads a key file line by line (one key per line, or the
//! first column of a CSV file with an optional header), checks every key's
//! check characters and reports each malformed or repeated line by its
//! number, so nothing is dropped silently. [`Client::batch_lookup`] sends
//! the valid keys in chunks as `IN` lookups — one ordinary, authorized,
//! masked and audited query per chunk and dataset — several at a time across
//! departments, and hands each answer to the caller as it arrives. Memory
//! stays bounded by the chunks in flight, whatever the file size; only the
//! set of keys already seen (for duplicate detection) grows with the file.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use arrow_array::RecordBatch;
use futures::stream::FuturesUnordered;
use futures::StreamExt;

use crate::lookup::{check_key, SourceStatus};
use crate::{Client, ClientError, Result};

/// A line of the key file that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedLine {
    pub line: u64,
    pub text: String,
    pub reason: String,
}

/// Reads and checks keys from a file, a chunk at a time.
pub struct KeyReader {
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
    key_type: String,
    line_no: u64,
    seen: HashMap<String, u64>,
    /// Lines that were not keys (malformed) or repeated an earlier key.
    pub rejected: Vec<RejectedLine>,
    pub blank_lines: u64,
    pub header: Option<String>,
    pub valid: u64,
    total_lines: u64,
}

impl KeyReader {
    pub fn open(path: &Path, key_type: &str) -> Result<KeyReader> {
        check_key_type(key_type)?;
        let open = || {
            std::fs::File::open(path).map_err(|e| {
                ClientError::Config(format!("cannot read the key file {}: {e}", path.display()))
            })
        };
        // Count the lines first so progress can be shown against a total.
        let total_lines = std::io::BufReader::new(open()?).lines().count() as u64;
        Ok(KeyReader {
            lines: std::io::BufReader::new(open()?).lines(),
            key_type: key_type.to_string(),
            line_no: 0,
            seen: HashMap::new(),
            rejected: Vec::new(),
            blank_lines: 0,
            header: None,
            valid: 0,
            total_lines,
        })
    }

    pub fn total_lines(&self) -> u64 {
        self.total_lines
    }

    pub fn lines_read(&self) -> u64 {
        self.line_no
    }

    /// The next at most `n` valid, first-seen keys; empty at the end.
    pub fn next_chunk(&mut self, n: usize) -> Result<Vec<String>> {
        let mut chunk = Vec::with_capacity(n);
        while chunk.len() < n {
            let Some(line) = self.lines.next() else { break };
            self.line_no += 1;
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    self.rejected.push(RejectedLine {
                        line: self.line_no,
                        text: String::new(),
                        reason: format!("unreadable line ({e}); the file must be UTF-8 text"),
                    });
                    continue;
                }
            };
            let line = line.trim_start_matches('\u{feff}');
            let first = line
                .split([',', '\t', ';'])
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"')
                .trim();
            if first.is_empty() {
                self.blank_lines += 1;
                continue;
            }
            let shown: String = first.chars().take(40).collect();
            match check_key(&self.key_type, first) {
                Ok(key) => {
                    if let Some(earlier) = self.seen.get(&key) {
                        self.rejected.push(RejectedLine {
                            line: self.line_no,
                            text: shown,
                            reason: format!("duplicate of line {earlier}; looked up once"),
                        });
                    } else {
                        self.seen.insert(key.clone(), self.line_no);
                        self.valid += 1;
                        chunk.push(key);
                    }
                }
                Err(_) if self.line_no == 1 && !first.chars().any(|c| c.is_ascii_digit()) => {
                    self.header = Some(shown);
                }
                Err(e) => self.rejected.push(RejectedLine {
                    line: self.line_no,
                    text: shown,
                    reason: e.to_string(),
                }),
            }
        }
        Ok(chunk)
    }
}

fn check_key_type(key_type: &str) -> Result<()> {
    match key_type {
        "person_id" | "org_code" => Ok(()),
        other => Err(ClientError::Config(format!(
            "batch lookups by {other:?} are not supported: use person_id or org_code"
        ))),
    }
}

/// A dataset a batch lookup reads, and the field matched against the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchTarget {
    pub dataset: String,
    pub department: String,
    pub key_field: String,
    /// The mask the grant applies to the key field ("none" when raw).
    pub key_mask: String,
}

/// How to run a batch lookup.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub purpose: String,
    /// Keys per `IN` query (at most the filter language's IN limit).
    pub chunk_size: usize,
    /// Queries in flight at once, across chunks and departments.
    pub parallel: usize,
    /// How long one chunk's query may take before it counts as timed out.
    pub query_deadline: Duration,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            purpose: String::new(),
            chunk_size: 1_000,
            parallel: 6,
            query_deadline: Duration::from_secs(60),
        }
    }
}

/// What arrives while a batch lookup runs.
#[derive(Debug)]
pub enum BatchEvent {
    /// Rows of one target for keys of one chunk.
    Rows { target: usize, batch: RecordBatch },
    /// One chunk of keys finished against one target.
    ChunkDone {
        target: usize,
        keys: usize,
        status: SourceStatus,
    },
}

/// Per-target totals of a finished batch lookup.
#[derive(Debug, Clone, Default)]
pub struct TargetTotals {
    pub rows: u64,
    pub keys_asked: u64,
    /// Keys in chunks that did not answer, with the first failure's status.
    pub keys_failed: u64,
    pub first_failure: Option<SourceStatus>,
}

#[derive(Debug, Clone, Default)]
pub struct BatchSummary {
    pub keys: u64,
    pub totals: Vec<TargetTotals>,
}

impl Client {
    /// The datasets among `datasets` (all granted datasets carrying the
    /// key type, when empty) that this department can look `key_type` up
    /// in. A named dataset without an active grant that includes a field of
    /// that key type is an error that names it: nothing is read.
    pub async fn key_targets(
        &self,
        key_type: &str,
        datasets: &[String],
    ) -> Result<Vec<BatchTarget>> {
        let me = self.identity().member_id.clone();
        let grants: Vec<_> = self
            .grants()
            .await?
            .into_iter()
            .filter(|g| g.consumer == me && g.status == "active")
            .collect();
        let mut targets = Vec::new();
        for name in datasets {
            if !grants.iter().any(|g| &g.dataset == name) {
                return Err(ClientError::Config(format!(
                    "{me} holds no active grant on {name:?}; nothing was read. Ask with `exchange access request {name} --purpose ...`"
                )));
            }
        }
        for grant in &grants {
            if !datasets.is_empty() && !datasets.contains(&grant.dataset) {
                continue;
            }
            // The coordinator names each granted field's key type.
            match grant.fields.iter().find(|f| f.key_type == key_type) {
                Some(field) => targets.push(BatchTarget {
                    dataset: grant.dataset.clone(),
                    department: grant.owner.clone(),
                    key_field: field.name.clone(),
                    key_mask: field.mask.clone(),
                }),
                None if !datasets.is_empty() => {
                    return Err(ClientError::Config(format!(
                        "{} has no {key_type} field in your grant; nothing was read",
                        grant.dataset
                    )))
                }
                None => {}
            }
        }
        targets.sort_by(|a, b| a.dataset.cmp(&b.dataset));
        Ok(targets)
    }

    /// Looks every key of `reader` up in every target, in chunks, handing
    /// each answer to `on_event` as it arrives.
    pub async fn batch_lookup(
        &self,
        reader: &mut KeyReader,
        targets: &[BatchTarget],
        options: &BatchOptions,
        mut on_event: impl FnMut(BatchEvent) -> Result<()>,
    ) -> Result<BatchSummary> {
        if options.purpose.trim().is_empty() {
            return Err(ClientError::Config(
                "a batch lookup must state its purpose (--purpose)".into(),
            ));
        }
        if !(1..=exchange_query::MAX_IN_VALUES).contains(&options.chunk_size) {
            return Err(ClientError::Config(format!(
                "the chunk size must be 1 to {}",
                exchange_query::MAX_IN_VALUES
            )));
        }
        if targets.is_empty() {
            return Err(ClientError::Config(
                "no dataset to look the keys up in: you hold no grant on a dataset carrying this key type".into(),
            ));
        }
        let mut summary = BatchSummary {
            keys: 0,
            totals: vec![TargetTotals::default(); targets.len()],
        };
        let mut in_flight = FuturesUnordered::new();
        let mut exhausted = false;
        loop {
            while !exhausted && in_flight.len() < options.parallel.max(1) {
                let chunk = reader.next_chunk(options.chunk_size)?;
                if chunk.is_empty() {
                    exhausted = true;
                    break;
                }
                summary.keys += chunk.len() as u64;
                let chunk = std::sync::Arc::new(chunk);
                for (i, target) in targets.iter().enumerate() {
                    in_flight.push(self.read_chunk(i, target, chunk.clone(), options));
                }
            }
            let Some((target, keys, result)) = in_flight.next().await else {
                break;
            };
            let totals = &mut summary.totals[target];
            totals.keys_asked += keys as u64;
            let status = match result {
                Ok(batches) => {
                    for batch in batches {
                        totals.rows += batch.num_rows() as u64;
                        on_event(BatchEvent::Rows { target, batch })?;
                    }
                    SourceStatus::Ok
                }
                Err(status) => {
                    totals.keys_failed += keys as u64;
                    totals.first_failure.get_or_insert(status.clone());
                    status
                }
            };
            on_event(BatchEvent::ChunkDone {
                target,
                keys,
                status,
            })?;
        }
        Ok(summary)
    }

    async fn read_chunk(
        &self,
        index: usize,
        target: &BatchTarget,
        keys: std::sync::Arc<Vec<String>>,
        options: &BatchOptions,
    ) -> (
        usize,
        usize,
        std::result::Result<Vec<RecordBatch>, SourceStatus>,
    ) {
        // Keys passed their check characters: digits and capital letters only.
        let list: Vec<String> = keys.iter().map(|k| format!("'{k}'")).collect();
        let command = exchange_query::QueryCommand {
            dataset: target.dataset.clone(),
            fields: vec![],
            filter: format!("{} IN ({})", target.key_field, list.join(",")),
            purpose: options.purpose.clone(),
            user: String::new(),
            limit: None,
        };
        let run = async {
            let mut stream = self.query(command).await.map_err(|e| match e {
                ClientError::Status(s) => crate::lookup::classify(&s),
                other => SourceStatus::Error(other.to_string()),
            })?;
            let mut batches = Vec::new();
            while let Some(b) = stream.next().await {
                batches.push(b.map_err(|e| crate::lookup::classify_flight(&e))?);
            }
            Ok(batches)
        };
        let result = tokio::time::timeout(options.query_deadline, run)
            .await
            .unwrap_or(Err(SourceStatus::TimedOut));
        (index, keys.len(), result)
    }
}

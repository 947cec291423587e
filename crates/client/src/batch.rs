//! Batch lookups: thousands of keys from a file against chosen datasets.
//!
//! [`KeyReader`] reads a key file line by line (one key per line, or the
//! first column of a CSV file with an optional header), checks every key's
//! check characters and reports each malformed or repeated line by its
//! number, so nothing is dropped silently. [`Client::batch_lookup`] streams
//! the valid keys to the coordinator's `Lookups.BatchLookup`, which reads
//! them in chunks as `IN` lookups — one ordinary, authorized, masked and
//! audited query per chunk and dataset — several at a time across
//! departments; each answer reaches the caller as it arrives. Memory stays
//! bounded by the chunks in flight, whatever the file size; only the set of
//! keys already seen (for duplicate detection) grows with the file.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use arrow_array::RecordBatch;
use exchange_proto::v1 as pb;
use tokio::sync::mpsc;

use crate::lookup::{self, check_key, decode_ipc, SourceStatus};
use crate::{status_text, Client, ClientError, Result};

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
        other => Err(ClientError::Config(
            exchange_catalog::policy::ids::unsupported_key_type(other),
        )),
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

impl BatchTarget {
    fn from_message(target: pb::LookupTarget) -> BatchTarget {
        BatchTarget {
            dataset: target.dataset,
            department: target.department,
            key_field: target.key_field,
            key_mask: target.key_mask,
        }
    }
}

/// Waits for room to send the next keys, or forever once they are all sent.
async fn room_to_send(
    tx: &Option<mpsc::Sender<pb::BatchLookupRequest>>,
) -> Option<mpsc::Permit<'_, pb::BatchLookupRequest>> {
    match tx {
        Some(tx) => tx.reserve().await.ok(),
        None => std::future::pending().await,
    }
}

fn keys_message(keys: Vec<String>) -> pb::BatchLookupRequest {
    pb::BatchLookupRequest {
        message: Some(pb::batch_lookup_request::Message::Keys(pb::KeyList {
            keys,
        })),
    }
}

/// A batch whose coordinator went away after it took keys: some answers
/// have been handed over, so it is not repeated behind the caller's back.
fn lost_midway(status: tonic::Status, summary: &BatchSummary) -> ClientError {
    if !lookup::coordinator_lost(&status) {
        return status.into();
    }
    ClientError::Config(format!(
        "the coordinator was lost during the batch, after {} keys were sent ({}); the answers so far are in the output. Run the batch again: it goes to the next coordinator, as a new set of logged queries",
        summary.keys,
        status_text(&status)
    ))
}

impl Client {
    /// Opens a `Lookups.BatchLookup` call with `start` as its first
    /// message; keys follow through the sender.
    async fn open_batch(
        &self,
        start: &pb::BatchLookupStart,
    ) -> (
        mpsc::Sender<pb::BatchLookupRequest>,
        std::result::Result<tonic::Response<tonic::Streaming<pb::BatchLookupEvent>>, tonic::Status>,
    ) {
        let (tx, rx) = mpsc::channel(4);
        let _ = tx
            .send(pb::BatchLookupRequest {
                message: Some(pb::batch_lookup_request::Message::Start(start.clone())),
            })
            .await;
        let outbound = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|message| (message, rx))
        });
        let events = self.lookups().batch_lookup(outbound).await;
        (tx, events)
    }

    /// The datasets among `datasets` (all granted datasets carrying the
    /// key type, when empty) that this department can look `key_type` up
    /// in (`Lookups.Targets`). A named dataset without an active grant that
    /// includes a field of that key type is an error that names it: nothing
    /// is read.
    pub async fn key_targets(
        &self,
        key_type: &str,
        datasets: &[String],
    ) -> Result<Vec<BatchTarget>> {
        let request = pb::LookupTargetsRequest {
            key_type: key_type.to_string(),
            datasets: datasets.to_vec(),
        };
        let list = match self.lookups().targets(request.clone()).await {
            // Reads nothing: asked again of the next replica.
            Err(status) if lookup::coordinator_lost(&status) => {
                self.channel().reconnect();
                self.lookups().targets(request).await?
            }
            answer => answer?,
        }
        .into_inner();
        Ok(list
            .targets
            .into_iter()
            .map(BatchTarget::from_message)
            .collect())
    }

    /// Looks every key of `reader` up in every target through the
    /// coordinator's `Lookups.BatchLookup`, handing each answer to
    /// `on_event` as it arrives. Keys are sent as the coordinator takes
    /// them, so memory stays bounded whatever the file's size.
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
        let start = pb::BatchLookupStart {
            key_type: reader.key_type.clone(),
            purpose: options.purpose.clone(),
            user: self.user().to_string(),
            datasets: targets.iter().map(|t| t.dataset.clone()).collect(),
            chunk_size: options.chunk_size as u32,
            parallel: options.parallel.min(u32::MAX as usize) as u32,
            query_deadline_ms: options.query_deadline.as_millis().min(u32::MAX as u128) as u32,
        };
        let (tx, events) = match self.open_batch(&start).await {
            // The coordinator went away before it took the batch (no key
            // was sent yet): once more, on the next replica when several
            // are configured.
            (_, Err(status)) if lookup::coordinator_lost(&status) => {
                self.channel().reconnect();
                self.open_batch(&start).await
            }
            opened => opened,
        };
        let mut events = events?.into_inner();
        let mut summary = BatchSummary {
            keys: 0,
            totals: vec![TargetTotals::default(); targets.len()],
        };
        // The coordinator's target order, mapped onto the caller's.
        let mut order: Vec<usize> = Vec::new();
        let mut tx = Some(tx);
        loop {
            let all_sent = tokio::select! {
                permit = room_to_send(&tx) => {
                    let chunk = reader.next_chunk(options.chunk_size)?;
                    match permit {
                        Some(permit) if !chunk.is_empty() => {
                            summary.keys += chunk.len() as u64;
                            permit.send(keys_message(chunk));
                            false
                        }
                        // All sent (or the call ended).
                        _ => true,
                    }
                }
                event = events.message() => match event.map_err(|s| lost_midway(s, &summary))? {
                    None => break,
                    Some(event) => {
                        if let Some(event) = event.event {
                            handle_event(event, targets, &mut order, &mut summary, reader, &mut on_event)?;
                        }
                        false
                    }
                }
            };
            if all_sent {
                // Closing our side tells the coordinator no more keys come.
                tx = None;
            }
        }
        Ok(summary)
    }
}

/// Applies one event of the coordinator's batch lookup.
fn handle_event(
    event: pb::batch_lookup_event::Event,
    targets: &[BatchTarget],
    order: &mut Vec<usize>,
    summary: &mut BatchSummary,
    reader: &mut KeyReader,
    on_event: &mut impl FnMut(BatchEvent) -> Result<()>,
) -> Result<()> {
    use pb::batch_lookup_event::Event;
    let unexpected = || {
        ClientError::Config(
            "the coordinator named a dataset this batch lookup did not ask for".into(),
        )
    };
    let ours =
        |order: &[usize], index: u32| order.get(index as usize).copied().ok_or_else(unexpected);
    match event {
        Event::Targets(list) => {
            *order = list
                .targets
                .iter()
                .map(|t| {
                    targets
                        .iter()
                        .position(|ours| ours.dataset == t.dataset)
                        .ok_or_else(unexpected)
                })
                .collect::<Result<_>>()?;
        }
        Event::Rows(rows) => {
            let target = ours(order, rows.target)?;
            for batch in decode_ipc(&rows.arrow_ipc)? {
                summary.totals[target].rows += batch.num_rows() as u64;
                on_event(BatchEvent::Rows { target, batch })?;
            }
        }
        Event::ChunkDone(done) => {
            let target = ours(order, done.target)?;
            let keys = done.keys as usize;
            let status = SourceStatus::from_answer(done.status, done.detail);
            let totals = &mut summary.totals[target];
            totals.keys_asked += keys as u64;
            if status != SourceStatus::Ok {
                totals.keys_failed += keys as u64;
                totals.first_failure.get_or_insert(status.clone());
            }
            on_event(BatchEvent::ChunkDone {
                target,
                keys,
                status,
            })?;
        }
        // Our reader checked every key already; the coordinator checks again.
        Event::Rejected(rejected) => reader.rejected.push(RejectedLine {
            line: 0,
            text: rejected.key,
            reason: rejected.reason,
        }),
    }
    Ok(())
}

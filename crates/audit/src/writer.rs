//! The writer: one thread per log, group commit, fsync before acknowledging.
//!
//! Appenders hand an encoded record to the writer thread and wait for its
//! acknowledgement. The thread takes everything that queued while the last
//! `fsync` ran, writes it as one buffer, syncs once, and acknowledges every
//! entry of the group: one disk flush pays for many entries under load.
//! Every `checkpoint_every` entries or `checkpoint_interval`, and when a
//! segment is sealed or the log is closed, the thread appends a checkpoint
//! signed with the writer's certificate key and records it in `CHECKPOINT`.
//!
//! On open, the last segment is scanned: an incomplete final frame (a crash
//! mid-write) is cut off and logged; any other damage refuses to open, so a
//! tampered log is never silently extended.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exchange_pki::MemberSigner;
use tokio::sync::oneshot;

use crate::format::{
    encode_frame, frame_hash, read_frame, torn_in_zeroed_space, Checkpoint, FrameError, Hash,
    SegmentHeader, KIND_CHECKPOINT, KIND_ENTRY, MAX_PAYLOAD,
};
use crate::metrics::Metrics;
use crate::record::{now_ms, Record};
use crate::segments::{list_segments, segment_path, CHECKPOINT_FILE};
use crate::{fault_point, AuditError};

/// Where and how a log is written.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The live segments.
    pub dir: PathBuf,
    /// Where sealed segments older than `retain` are moved.
    pub archive_dir: PathBuf,
    /// A segment is sealed and a new one started past this size.
    pub segment_max_bytes: u64,
    /// A checkpoint is signed at least every this many entries...
    pub checkpoint_every: u64,
    /// ...and at least this often while entries arrive.
    pub checkpoint_interval: Duration,
    /// Sealed segments whose last write is older than this are archived.
    pub retain: Duration,
    /// `fsync` before acknowledging. Only benchmarks measuring what the
    /// write-ahead rule costs turn this off; no configuration file can.
    pub durable: bool,
}

impl AuditOptions {
    pub fn new(dir: impl Into<PathBuf>) -> AuditOptions {
        let dir = dir.into();
        AuditOptions {
            archive_dir: dir.join("archive"),
            dir,
            segment_max_bytes: 64 << 20,
            checkpoint_every: 10_000,
            checkpoint_interval: Duration::from_secs(5),
            retain: Duration::from_secs(180 * 86_400),
            durable: true,
        }
    }
}

enum Command {
    Append {
        payload: Vec<u8>,
        reply: Option<oneshot::Sender<Result<u64, AuditError>>>,
    },
    Checkpoint(oneshot::Sender<Result<u64, AuditError>>),
}

/// Something fed every record once the log has taken it: durable for
/// [`AuditLog::append`], queued for [`AuditLog::append_detached`].
/// Derived views (metrics, report statistics) stay in step with the log
/// this way, without reading it back.
pub trait Observer: Send + Sync {
    fn observe(&self, record: &Record);
}

impl Observer for Metrics {
    fn observe(&self, record: &Record) {
        Metrics::observe(self, record);
    }
}

struct Shared {
    last_seq: AtomicU64,
    failure: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
    observers: std::sync::RwLock<Vec<Arc<dyn Observer>>>,
}

impl Shared {
    fn observe(&self, record: &Record) {
        self.metrics.observe(record);
        let observers = self.observers.read().unwrap_or_else(|p| p.into_inner());
        for o in observers.iter() {
            o.observe(record);
        }
    }
}

/// An open audit log. Cheap to share behind an `Arc`.
pub struct AuditLog {
    sender: Mutex<Option<mpsc::Sender<Command>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    shared: Arc<Shared>,
    dir: PathBuf,
    archive_dir: PathBuf,
    writer: String,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (or creates) the log in `options.dir`, recovering from a crash
    /// mid-write, and starts the writer thread.
    pub fn open(
        options: AuditOptions,
        signer: MemberSigner,
        metrics: Arc<Metrics>,
    ) -> Result<AuditLog, AuditError> {
        let writer = exchange_pki::certificate_identity(signer.certificate_der()).map_err(|e| {
            AuditError::Unwritable {
                dir: options.dir.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        let state = WriterState::open(options, signer, writer.clone(), metrics.clone())?;
        let shared = Arc::new(Shared {
            last_seq: AtomicU64::new(state.last_seq),
            failure: Mutex::new(None),
            metrics,
            observers: Default::default(),
        });
        let (tx, rx) = mpsc::channel();
        let dir = state.options.dir.clone();
        let archive_dir = state.options.archive_dir.clone();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || state.run(rx, thread_shared))
            .map_err(|e| AuditError::Unwritable {
                dir: dir.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok(AuditLog {
            sender: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            shared,
            dir,
            archive_dir,
            writer,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The archive and live directories, oldest first, for readers.
    pub fn roots(&self) -> Vec<PathBuf> {
        vec![self.archive_dir.clone(), self.dir.clone()]
    }

    pub fn writer(&self) -> &str {
        &self.writer
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Feeds `observer` every record appended from now on. To see the
    /// records already in the log too, read them before adding it and
    /// before anything else appends.
    pub fn add_observer(&self, observer: Arc<dyn Observer>) {
        self.shared
            .observers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(observer);
    }

    /// The sequence number of the last durable entry.
    pub fn last_seq(&self) -> u64 {
        self.shared.last_seq.load(Ordering::Acquire)
    }

    fn send(&self, command: Command) -> Result<(), AuditError> {
        let guard = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .ok_or(AuditError::Closed)?
            .send(command)
            .map_err(|_| AuditError::Closed)
    }

    fn encode(record: &Record) -> Result<Vec<u8>, AuditError> {
        let payload = serde_json::to_vec(record).expect("a record serializes");
        if payload.len() > MAX_PAYLOAD {
            return Err(AuditError::TooLarge(payload.len()));
        }
        Ok(payload)
    }

    /// Appends `record` and returns its sequence number once it is durable.
    pub async fn append(&self, record: &Record) -> Result<u64, AuditError> {
        let payload = Self::encode(record)?;
        let (tx, rx) = oneshot::channel();
        self.send(Command::Append {
            payload,
            reply: Some(tx),
        })?;
        let seq = rx.await.map_err(|_| AuditError::Closed)??;
        self.shared.observe(record);
        Ok(seq)
    }

    /// Appends several records and returns once all are durable. Queued
    /// together, they normally share one flush.
    pub async fn append_all(&self, records: &[Record]) -> Result<(), AuditError> {
        let mut waits = Vec::with_capacity(records.len());
        for record in records {
            let payload = Self::encode(record)?;
            let (tx, rx) = oneshot::channel();
            self.send(Command::Append {
                payload,
                reply: Some(tx),
            })?;
            waits.push(rx);
        }
        for rx in waits {
            rx.await.map_err(|_| AuditError::Closed)??;
        }
        for record in records {
            self.shared.observe(record);
        }
        Ok(())
    }

    /// Like [`AuditLog::append`], for callers outside an async context.
    pub fn append_blocking(&self, record: &Record) -> Result<u64, AuditError> {
        let payload = Self::encode(record)?;
        let (tx, rx) = oneshot::channel();
        self.send(Command::Append {
            payload,
            reply: Some(tx),
        })?;
        let seq = rx.blocking_recv().map_err(|_| AuditError::Closed)??;
        self.shared.observe(record);
        Ok(seq)
    }

    /// Queues `record` without waiting: it is written with the next group.
    /// For records that follow data already sent (completions), where
    /// waiting would only delay the caller. A failure is logged.
    pub fn append_detached(&self, record: &Record) {
        match Self::encode(record).and_then(|payload| {
            self.send(Command::Append {
                payload,
                reply: None,
            })
        }) {
            Ok(()) => self.shared.observe(record),
            Err(e) => tracing::error!(error = %e, "audit record could not be queued"),
        }
    }

    /// Signs a checkpoint now (if anything is unsigned) and returns the
    /// sequence number it covers.
    pub async fn checkpoint(&self) -> Result<u64, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Checkpoint(tx))?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// The last write failure, if the log is currently failing.
    pub fn failure(&self) -> Option<String> {
        self.shared
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Flushes, signs a final checkpoint and stops the writer thread.
    pub fn close(&self) {
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

struct WriterState {
    options: AuditOptions,
    signer: MemberSigner,
    writer: String,
    segment: u64,
    file: File,
    len: u64,
    /// The file's physical size: bytes from `len` to here are zeros written
    /// ahead (see [`WriterState::write_group`]).
    allocated: u64,
    last_seq: u64,
    head: Hash,
    unsigned: u64,
    last_checkpoint: Instant,
    metrics: Arc<Metrics>,
}

fn io_error(dir: &Path, e: impl std::fmt::Display) -> AuditError {
    AuditError::Unwritable {
        dir: dir.display().to_string(),
        reason: e.to_string(),
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl WriterState {
    fn open(
        options: AuditOptions,
        signer: MemberSigner,
        writer: String,
        metrics: Arc<Metrics>,
    ) -> Result<WriterState, AuditError> {
        let dir = options.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        let segments = list_segments(&dir).map_err(|e| io_error(&dir, e))?;
        let Some(last) = segments.last().cloned() else {
            let (file, len) = create_segment(&dir, &writer, 1, 1, &[0u8; 32])?;
            return Ok(WriterState {
                options,
                signer,
                writer,
                segment: 1,
                file,
                len,
                allocated: len,
                last_seq: 0,
                head: [0u8; 32],
                unsigned: 0,
                last_checkpoint: Instant::now(),
                metrics,
            });
        };
        let bytes = std::fs::read(&last.path).map_err(|e| io_error(&dir, e))?;
        let damaged = |seq: u64, reason: String| AuditError::Damaged {
            dir: dir.display().to_string(),
            file: last.path.display().to_string(),
            seq,
            reason,
        };
        let (header, mut offset) = SegmentHeader::decode(&bytes).map_err(|e| damaged(0, e))?;
        if header.writer != writer {
            return Err(damaged(
                0,
                format!(
                    "the log was written by {}, not by {writer}; give each member its own audit directory",
                    header.writer
                ),
            ));
        }
        let mut head = header.prev_hash().map_err(|e| damaged(0, e))?;
        let mut last_seq = header.first_seq.saturating_sub(1);
        let mut unsigned = 0u64;
        loop {
            if offset == bytes.len() {
                break;
            }
            let frame = match read_frame(&bytes, offset) {
                Ok(f) => f,
                Err(FrameError::Incomplete) => {
                    tracing::warn!(file = %last.path.display(), offset, after_seq = last_seq, "audit log ends in an incomplete frame (a crash mid-write); cutting it off");
                    break;
                }
                Err(FrameError::Malformed(reason)) => {
                    if bytes[offset..].iter().all(|b| *b == 0) {
                        tracing::warn!(file = %last.path.display(), offset, after_seq = last_seq, "audit log ends in zeroed space (a crash mid-write); cutting it off");
                        break;
                    }
                    return Err(damaged(last_seq + 1, reason));
                }
            };
            let expected = frame_hash(&head, frame.kind, frame.seq, frame.payload);
            if frame.seq != last_seq + 1 || frame.hash != expected {
                if torn_in_zeroed_space(&bytes, frame.offset + frame.len) {
                    tracing::warn!(file = %last.path.display(), offset, after_seq = last_seq, "audit log ends in an entry cut short in space written ahead (a crash mid-write); cutting it off");
                    break;
                }
                return Err(damaged(
                    last_seq + 1,
                    "the entry does not match the hash chain (modified, deleted, inserted or reordered)".into(),
                ));
            }
            head = expected;
            last_seq = frame.seq;
            if frame.kind == KIND_CHECKPOINT {
                unsigned = 0;
            } else {
                unsigned += 1;
            }
            offset += frame.len;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&last.path)
            .map_err(|e| io_error(&dir, e))?;
        if (offset as u64) < bytes.len() as u64 {
            file.set_len(offset as u64).map_err(|e| io_error(&dir, e))?;
            file.sync_all().map_err(|e| io_error(&dir, e))?;
        }
        let mut state = WriterState {
            options,
            signer,
            writer,
            segment: header.segment,
            file,
            len: offset as u64,
            allocated: offset as u64,
            last_seq,
            head,
            unsigned,
            last_checkpoint: Instant::now(),
            metrics,
        };
        // Entries left unsigned by a crash are signed now.
        if state.unsigned > 0 {
            state.write_group(&mut Vec::new(), true, true)?;
        }
        state.archive_old_segments();
        Ok(state)
    }

    fn run(mut self, rx: mpsc::Receiver<Command>, shared: Arc<Shared>) {
        loop {
            let wait = self
                .options
                .checkpoint_interval
                .saturating_sub(self.last_checkpoint.elapsed())
                .max(Duration::from_millis(1));
            let first = match rx.recv_timeout(wait) {
                Ok(c) => c,
                Err(RecvTimeoutError::Timeout) => {
                    if self.unsigned > 0 {
                        let _ = self.commit(Vec::new(), true, &shared);
                    }
                    self.last_checkpoint = Instant::now();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut group = vec![first];
            while group.len() < 8192 {
                match rx.try_recv() {
                    Ok(c) => group.push(c),
                    Err(_) => break,
                }
            }
            let force_checkpoint = group.iter().any(|c| matches!(c, Command::Checkpoint(_)));
            let _ = self.commit(group, force_checkpoint, &shared);
        }
        if self.unsigned > 0 {
            let _ = self.commit(Vec::new(), true, &shared);
        }
        if let Err(e) = self.trim() {
            tracing::warn!(error = %e, "could not cut the audit segment's preallocated tail; it is cut when the log is next opened");
        }
    }

    /// Writes a group and acknowledges each of its commands.
    fn commit(
        &mut self,
        group: Vec<Command>,
        force_checkpoint: bool,
        shared: &Shared,
    ) -> Result<(), ()> {
        let mut payloads = Vec::with_capacity(group.len());
        let mut replies = Vec::with_capacity(group.len());
        let mut checkpoint_replies = Vec::new();
        for c in group {
            match c {
                Command::Append { payload, reply } => {
                    payloads.push(payload);
                    replies.push(reply);
                }
                Command::Checkpoint(reply) => checkpoint_replies.push(reply),
            }
        }
        let first_seq = self.last_seq + 1;
        let started = Instant::now();
        // A group of detached records only (completions, written after
        // their data) needs no flush of its own: the next acknowledged
        // group or checkpoint flushes it, within `checkpoint_interval`.
        let sync = force_checkpoint
            || !checkpoint_replies.is_empty()
            || replies.iter().any(Option::is_some);
        let result = self.write_group(&mut payloads, force_checkpoint, sync);
        match result {
            Ok(()) => {
                self.metrics
                    .observe_commit(replies.len() as u64, started.elapsed());
                shared.last_seq.store(self.last_seq, Ordering::Release);
                *shared.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
                for (i, reply) in replies.into_iter().enumerate() {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(first_seq + i as u64));
                    }
                }
                for reply in checkpoint_replies {
                    let _ = reply.send(Ok(self.last_seq));
                }
                if self.len >= self.options.segment_max_bytes {
                    if let Err(e) = self.roll() {
                        tracing::error!(error = %e, "could not start a new audit segment");
                    }
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "audit write failed; the entries were not acknowledged");
                self.metrics.observe_failure();
                *shared.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(e.clone()));
                }
                for reply in checkpoint_replies {
                    let _ = reply.send(Err(e.clone()));
                }
                Err(())
            }
        }
    }

    /// Encodes the entries (and a checkpoint when due), writes and syncs.
    /// On failure the file is cut back to its last good length and the
    /// chain state is unchanged, so a later attempt continues cleanly.
    fn write_group(
        &mut self,
        payloads: &mut [Vec<u8>],
        force_checkpoint: bool,
        sync: bool,
    ) -> Result<(), AuditError> {
        let dir = self.options.dir.clone();
        let size: usize = payloads.iter().map(|p| p.len() + 64).sum();
        let mut buf = Vec::with_capacity(size + 2048);
        let mut head = self.head;
        let mut seq = self.last_seq;
        for payload in payloads.iter() {
            seq += 1;
            head = encode_frame(&mut buf, &head, KIND_ENTRY, seq, payload);
        }
        let mut unsigned = self.unsigned + payloads.len() as u64;
        let due = force_checkpoint
            || unsigned >= self.options.checkpoint_every
            || (unsigned > 0 && self.last_checkpoint.elapsed() >= self.options.checkpoint_interval);
        let mut checkpoint = None;
        if due && unsigned > 0 {
            let cp = Checkpoint::sign(&self.signer, &self.writer, seq, &head, now_ms())
                .map_err(|e| io_error(&dir, e))?;
            let payload = serde_json::to_vec(&cp).expect("a checkpoint serializes");
            seq += 1;
            head = encode_frame(&mut buf, &head, KIND_CHECKPOINT, seq, &payload);
            unsigned = 0;
            checkpoint = Some(cp);
        }
        if buf.is_empty() {
            return Ok(());
        }
        // Zeros are written ahead of the entries, so that most flushes
        // overwrite space the file already has: the file's size does not
        // change, and `fdatasync` need not write the inode as well (a third
        // of a flush's cost on the project's disk). Readers stop at the
        // zeros; the writer cuts them off when it seals a segment or stops.
        let end = self.len + buf.len() as u64;
        let allocate_to = (end > self.allocated)
            .then(|| end + (self.len / 4).clamp(PREALLOCATE_MIN, PREALLOCATE_MAX));
        let written = allocate_to
            .map_or(Ok(()), |to| write_zeros(&self.file, self.allocated, to))
            .and_then(|_| self.file.write_all_at(&buf, self.len))
            .and_then(|_| {
                fault_point("audit-before-sync");
                if self.options.durable && (sync || checkpoint.is_some()) {
                    self.file.sync_data()
                } else {
                    Ok(())
                }
            });
        if let Err(e) = written {
            let _ = self.file.set_len(self.len);
            self.allocated = self.len;
            return Err(io_error(&dir, e));
        }
        fault_point("audit-after-sync");
        if let Some(to) = allocate_to {
            self.allocated = to;
        }
        self.len += buf.len() as u64;
        self.head = head;
        self.last_seq = seq;
        self.unsigned = unsigned;
        if let Some(cp) = checkpoint {
            self.last_checkpoint = Instant::now();
            self.write_checkpoint_file(&cp);
        }
        Ok(())
    }

    /// `CHECKPOINT` names the newest signed head, so a verifier can tell
    /// that signed entries were cut off the end of the log.
    fn write_checkpoint_file(&self, cp: &Checkpoint) {
        let path = self.options.dir.join(CHECKPOINT_FILE);
        let tmp = self.options.dir.join(format!("{CHECKPOINT_FILE}.tmp"));
        let body = serde_json::to_vec_pretty(cp).expect("a checkpoint serializes");
        let done = File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(&body)?;
                if self.options.durable {
                    f.sync_all()?;
                }
                Ok(())
            })
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = done {
            tracing::warn!(error = %e, "could not record the latest audit checkpoint");
        }
    }

    /// Cuts the zeros written ahead off the end of the current segment.
    fn trim(&mut self) -> Result<(), AuditError> {
        if self.allocated > self.len {
            self.file
                .set_len(self.len)
                .and_then(|_| {
                    if self.options.durable {
                        self.file.sync_all()
                    } else {
                        Ok(())
                    }
                })
                .map_err(|e| io_error(&self.options.dir, e))?;
            self.allocated = self.len;
        }
        Ok(())
    }

    /// Seals the current segment (it already ends with a checkpoint when it
    /// was just signed) and starts the next one.
    fn roll(&mut self) -> Result<(), AuditError> {
        if self.unsigned > 0 {
            self.write_group(&mut Vec::new(), true, true)?;
        }
        self.trim()?;
        let next = self.segment + 1;
        let (file, len) = create_segment(
            &self.options.dir,
            &self.writer,
            next,
            self.last_seq + 1,
            &self.head,
        )?;
        self.file = file;
        self.len = len;
        self.allocated = len;
        self.segment = next;
        self.archive_old_segments();
        Ok(())
    }

    /// Moves sealed segments older than the retention period to the archive.
    fn archive_old_segments(&self) {
        let Ok(segments) = list_segments(&self.options.dir) else {
            return;
        };
        for seg in segments.iter().filter(|s| s.number < self.segment) {
            let old_enough = std::fs::metadata(&seg.path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= self.options.retain);
            if !old_enough {
                continue;
            }
            if let Err(e) = std::fs::create_dir_all(&self.options.archive_dir) {
                tracing::warn!(error = %e, "could not create the audit archive directory");
                return;
            }
            let name = format!(
                "{}-{:08}.audit",
                crate::segments::writer_slug(&self.writer),
                seg.number
            );
            let target = self.options.archive_dir.join(name);
            // Copy, sync, then remove: a crash never loses a segment.
            let moved = std::fs::copy(&seg.path, &target)
                .and_then(|_| File::open(&target)?.sync_all())
                .and_then(|_| std::fs::remove_file(&seg.path));
            match moved {
                Ok(()) => {
                    sync_dir(&self.options.archive_dir);
                    sync_dir(&self.options.dir);
                    tracing::info!(segment = seg.number, archive = %target.display(), "audit segment archived");
                }
                Err(e) => {
                    tracing::warn!(error = %e, segment = seg.number, "could not archive an audit segment")
                }
            }
        }
    }
}

/// Creates a segment atomically (written under a temporary name, synced,
/// renamed), so a crash never leaves a segment without its header.
/// Zeros written ahead of the entries: at least this much...
const PREALLOCATE_MIN: u64 = 64 << 10;
/// ...and at most this much at a time (a quarter of the segment so far
/// between the two).
const PREALLOCATE_MAX: u64 = 4 << 20;

/// Writes zeros to `file` from `from` up to `to`.
fn write_zeros(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    static ZEROS: [u8; 64 << 10] = [0u8; 64 << 10];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

fn create_segment(
    dir: &Path,
    writer: &str,
    number: u64,
    first_seq: u64,
    prev: &Hash,
) -> Result<(File, u64), AuditError> {
    let header = SegmentHeader {
        version: 1,
        writer: writer.to_string(),
        segment: number,
        first_seq,
        prev_hash: hex::encode(prev),
        created_ms: now_ms(),
    }
    .encode();
    let path = segment_path(dir, number);
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(|e| io_error(dir, e))?;
    file.write_all(&header)
        .and_then(|_| file.sync_all())
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_error(dir, e)
        })?;
    sync_dir(dir);
    let file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| io_error(dir, e))?;
    Ok((file, header.len() as u64))
}

/// The `[audit]` table of the coordinator's and the nodes' configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Live segments. Default `<data_dir>/audit`.
    pub dir: Option<PathBuf>,
    /// Where sealed segments past `retain_days` go. Default `<dir>/archive`.
    pub archive_dir: Option<PathBuf>,
    /// Days a sealed segment stays live before it is archived. Default 180.
    pub retain_days: u32,
    /// Size at which a segment is sealed and a new one started. Default 64 MiB.
    pub segment_max_mb: u32,
    /// Skips `fsync`, so a benchmark can measure what the write-ahead rule
    /// costs. Not readable from any configuration file.
    #[serde(skip)]
    pub benchmark_without_fsync: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            dir: None,
            archive_dir: None,
            retain_days: 180,
            segment_max_mb: 64,
            benchmark_without_fsync: false,
        }
    }
}

impl AuditConfig {
    /// Makes relative paths relative to `base` (the config file's folder).
    pub fn rebase(&mut self, base: &Path) {
        for p in [self.dir.as_mut(), self.archive_dir.as_mut()]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1..=4096).contains(&self.segment_max_mb) {
            return Err("audit.segment_max_mb must be 1 to 4096 (fix: segment_max_mb = 64)".into());
        }
        Ok(())
    }

    pub fn options(&self, data_dir: &Path) -> AuditOptions {
        let dir = self.dir.clone().unwrap_or_else(|| data_dir.join("audit"));
        let mut o = AuditOptions::new(dir);
        if let Some(a) = &self.archive_dir {
            o.archive_dir = a.clone();
        }
        o.retain = Duration::from_secs(self.retain_days as u64 * 86_400);
        o.segment_max_bytes = self.segment_max_mb as u64 * (1 << 20);
        o.durable = !self.benchmark_without_fsync;
        o
    }
}

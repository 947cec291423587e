//! Offline verification of a log, live or archived.
//!
//! Walks every frame in order and recomputes the hash chain, checks that
//! sequence numbers run without gaps across segments, and checks every
//! checkpoint's signature against the certificate it carries (and, given
//! the federation CA, that the certificate was issued by it). The
//! `CHECKPOINT` file of a live log names the newest signed head: a log that
//! ends before it was truncated. The first bad entry is named; nothing after
//! it is trusted.

use std::path::{Path, PathBuf};

use crate::format::{
    frame_hash, parse_hash, read_frame, torn_in_zeroed_space, zeroed_space, Checkpoint, Frame,
    FrameError, Hash, SegmentHeader, KIND_CHECKPOINT,
};
use crate::segments::{collect_segment_files, resolve, CHECKPOINT_FILE};

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub offset: usize,
    /// The sequence number of the first entry that cannot be trusted.
    pub seq: u64,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "entry {} ({} at byte {}): {}",
            self.seq, self.file, self.offset, self.what
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub writer: String,
    pub files: usize,
    pub entries: u64,
    pub checkpoints: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The highest sequence number covered by a valid signed checkpoint.
    pub last_signed_seq: u64,
    /// Entries after the last checkpoint: chained but not yet signed.
    pub unsigned_tail: u64,
    pub warnings: Vec<String>,
    pub problem: Option<Problem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// Verifies the log at `path` (a data directory, an audit directory, an
/// archive directory or one segment file). `ca_der`, when given, must have
/// issued every checkpoint's certificate. Errors only when `path` holds no
/// segment at all; everything found wrong in a log is in the report.
pub fn verify(path: &Path, ca_der: Option<&[u8]>) -> Result<VerifyReport, String> {
    let roots = resolve(path);
    let (files, duplicate) = segment_files(path, &roots)?;
    if let Some(problem) = duplicate {
        return Ok(VerifyReport {
            writer: files[0].0.writer.clone(),
            files: files.len(),
            problem: Some(problem),
            ..Default::default()
        });
    }
    let mut walk = Walk::new(&files, ca_der);
    let last_index = files.len() - 1;
    for (i, (header, file)) in files.iter().enumerate() {
        match walk.segment(header, file, i == last_index) {
            Ok(Flow::Next) => {}
            Ok(Flow::Stop) => break,
            Err(problem) => {
                walk.report.problem = Some(problem);
                break;
            }
        }
    }
    let Walk {
        mut report,
        signed_heads,
        ..
    } = walk;
    if report.problem.is_none() {
        check_latest_checkpoint(&roots, &report.clone(), &signed_heads, ca_der, &mut report);
    }
    if report.problem.is_none() && report.unsigned_tail > 0 {
        report.warnings.push(format!(
            "the last {} entries are chained but not yet covered by a signed checkpoint (the writer signs every few seconds and when it stops)",
            report.unsigned_tail
        ));
    }
    Ok(report)
}

type SegmentFiles = Vec<(SegmentHeader, PathBuf)>;

/// The segments under `roots` in order, each once. The same segment live
/// and archived (a crash between copy and removal) counts once if both
/// copies are identical; two different files claiming one segment number
/// are the returned problem.
fn segment_files(
    path: &Path,
    roots: &[PathBuf],
) -> Result<(SegmentFiles, Option<Problem>), String> {
    let mut files =
        collect_segment_files(roots).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut duplicate = None;
    files.dedup_by(|later, earlier| {
        if later.0.segment != earlier.0.segment {
            return false;
        }
        let same = std::fs::read(&later.1).ok() == std::fs::read(&earlier.1).ok();
        if !same && duplicate.is_none() {
            duplicate = Some((later.0.segment, later.1.clone(), earlier.1.clone()));
        }
        same
    });
    if files.is_empty() {
        return Err(format!(
            "no audit segments found in {}: give a node's or the coordinator's data directory, its audit directory, or an archived .audit file",
            path.display()
        ));
    }
    let problem = duplicate.map(|(segment, a, b)| Problem {
        file: a.display().to_string(),
        offset: 0,
        seq: 0,
        what: format!(
            "two different files claim to be segment {segment} ({} and {}): one was forged or edited",
            a.display(),
            b.display()
        ),
    });
    Ok((files, problem))
}

/// Whether the walk goes on to the next segment.
enum Flow {
    Next,
    /// The log ends here (the open segment's unwritten space, or a torn
    /// last entry, which is a warning in the report).
    Stop,
}

/// The state carried from entry to entry and segment to segment.
struct Walk<'a> {
    report: VerifyReport,
    ca_der: Option<&'a [u8]>,
    /// The hash of the last verified entry.
    head: Hash,
    next_seq: u64,
    /// (last sequence number covered, head) of every valid checkpoint.
    signed_heads: Vec<(u64, Hash)>,
    previous_segment: Option<u64>,
}

impl<'a> Walk<'a> {
    fn new(files: &SegmentFiles, ca_der: Option<&'a [u8]>) -> Self {
        let first = &files[0].0;
        let mut report = VerifyReport {
            writer: first.writer.clone(),
            files: files.len(),
            first_seq: first.first_seq,
            ..Default::default()
        };
        if first.segment > 1 {
            report.warnings.push(format!(
                "the log starts at segment {} (seq {}): earlier segments are not here; verify them from the archive",
                first.segment, first.first_seq
            ));
        }
        Walk {
            report,
            ca_der,
            head: [0u8; 32],
            next_seq: first.first_seq,
            signed_heads: Vec::new(),
            previous_segment: None,
        }
    }

    /// Checks that the segment continues the one before it, then walks
    /// its entries.
    fn segment(
        &mut self,
        header: &SegmentHeader,
        file: &Path,
        last: bool,
    ) -> Result<Flow, Problem> {
        let name = file.display().to_string();
        let problem = |offset: usize, seq: u64, what: String| Problem {
            file: name.clone(),
            offset,
            seq,
            what,
        };
        if header.writer != self.report.writer {
            return Err(problem(
                0,
                header.first_seq,
                format!(
                "segment {} was written by {}, the rest by {}: logs of different members are mixed",
                header.segment, header.writer, self.report.writer
            ),
            ));
        }
        let prev = header
            .prev_hash()
            .map_err(|e| problem(0, header.first_seq, format!("bad segment header: {e}")))?;
        if let Some(p) = self.previous_segment {
            if header.segment != p + 1 || header.first_seq != self.next_seq || prev != self.head {
                return Err(problem(0, self.next_seq, format!(
                    "segment {} does not continue segment {p}: a segment was removed, replaced or edited",
                    header.segment
                )));
            }
        } else {
            self.head = prev;
        }
        self.previous_segment = Some(header.segment);
        let bytes = std::fs::read(file)
            .map_err(|e| problem(0, self.next_seq, format!("cannot read: {e}")))?;
        let offset = SegmentHeader::decode(&bytes)
            .map(|(_, n)| n)
            .map_err(|e| problem(0, self.next_seq, e))?;
        self.entries(&bytes, offset, &name, last)
    }

    /// Walks the frames of one segment from `offset`.
    fn entries(
        &mut self,
        bytes: &[u8],
        mut offset: usize,
        name: &str,
        last: bool,
    ) -> Result<Flow, Problem> {
        let problem = |offset: usize, seq: u64, what: String| Problem {
            file: name.to_string(),
            offset,
            seq,
            what,
        };
        let torn = |offset: usize| {
            format!(
            "{name} ends in an incomplete entry at byte {offset} (a crash mid-write, or a write in progress); everything before it verifies"
        )
        };
        while offset < bytes.len() {
            // A live writer writes zeros ahead of its entries; the open
            // segment ends where they begin.
            if last && zeroed_space(bytes, offset) {
                return Ok(Flow::Stop);
            }
            let frame = match read_frame(bytes, offset) {
                Ok(f) => f,
                Err(FrameError::Incomplete) if last => {
                    self.report.warnings.push(format!(
                        "{name} ends in an incomplete entry at byte {offset} (a crash mid-write); everything before it verifies"
                    ));
                    return Ok(Flow::Stop);
                }
                Err(FrameError::Incomplete) => {
                    return Err(problem(
                        offset,
                        self.next_seq,
                        "a sealed segment is cut short (truncated)".into(),
                    ))
                }
                Err(FrameError::Malformed(what)) => {
                    return Err(problem(
                        offset,
                        self.next_seq,
                        format!("malformed entry ({what}): the file was edited"),
                    ))
                }
            };
            if last
                && torn_in_zeroed_space(bytes, frame.offset + frame.len)
                && (frame.seq != self.next_seq
                    || frame.hash != frame_hash(&self.head, frame.kind, frame.seq, frame.payload))
            {
                self.report.warnings.push(torn(offset));
                return Ok(Flow::Stop);
            }
            self.entry(&frame)
                .map_err(|(seq, what)| problem(offset, seq, what))?;
            offset += frame.len;
        }
        Ok(Flow::Next)
    }

    /// One entry: its place in the sequence, its link in the hash chain,
    /// and a checkpoint's signature. Errs with (seq, what was wrong).
    fn entry(&mut self, frame: &Frame<'_>) -> Result<(), (u64, String)> {
        let next_seq = self.next_seq;
        if frame.seq != next_seq {
            let what = if frame.seq > next_seq {
                format!(
                    "expected entry {next_seq} but found {}: entries were deleted",
                    frame.seq
                )
            } else {
                format!(
                    "expected entry {next_seq} but found {}: entries were reordered or inserted",
                    frame.seq
                )
            };
            return Err((next_seq, what));
        }
        let expected = frame_hash(&self.head, frame.kind, frame.seq, frame.payload);
        if frame.hash != expected {
            return Err((next_seq, "the entry does not match the hash chain: it was modified (or an entry before it was)".into()));
        }
        let report = &mut self.report;
        if frame.kind == KIND_CHECKPOINT {
            check_checkpoint(
                frame.payload,
                frame.seq,
                &self.head,
                &report.writer,
                self.ca_der,
            )
            .map_err(|what| (frame.seq, what))?;
            report.checkpoints += 1;
            report.last_signed_seq = frame.seq - 1;
            report.unsigned_tail = 0;
            self.signed_heads.push((frame.seq - 1, self.head));
        } else {
            report.entries += 1;
            report.unsigned_tail += 1;
        }
        self.head = expected;
        report.last_seq = frame.seq;
        self.next_seq += 1;
        Ok(())
    }
}

fn check_checkpoint(
    payload: &[u8],
    seq: u64,
    head: &Hash,
    writer: &str,
    ca_der: Option<&[u8]>,
) -> Result<(), String> {
    let cp: Checkpoint =
        serde_json::from_slice(payload).map_err(|e| format!("malformed checkpoint: {e}"))?;
    if cp.covers_seq + 1 != seq || parse_hash(&cp.head)? != *head {
        return Err("the checkpoint does not cover the entries before it".into());
    }
    if cp.writer != writer {
        return Err(format!(
            "the checkpoint names writer {}, the log {writer}",
            cp.writer
        ));
    }
    cp.verify_signature()
        .map_err(|e| format!("bad checkpoint signature: {e}"))?;
    if let Some(ca) = ca_der {
        let cert = cp.certificate_der()?;
        exchange_pki::CertificateInfo::verify_issued_by(&cert, ca).map_err(|_| {
            "the checkpoint was signed with a certificate this federation's CA did not issue"
                .to_string()
        })?;
    }
    Ok(())
}

/// A live log's `CHECKPOINT` file must name a head that is in the log.
fn check_latest_checkpoint(
    roots: &[PathBuf],
    snapshot: &VerifyReport,
    signed_heads: &[(u64, Hash)],
    ca_der: Option<&[u8]>,
    report: &mut VerifyReport,
) {
    let Some(path) = roots
        .iter()
        .map(|r| r.join(CHECKPOINT_FILE))
        .find(|p| p.is_file())
    else {
        return;
    };
    let name = path.display().to_string();
    let cp: Checkpoint = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(cp) => cp,
        Err(e) => {
            report.warnings.push(format!(
                "{name} is unreadable ({e}); truncation of the tail cannot be checked"
            ));
            return;
        }
    };
    let valid = cp.writer == snapshot.writer
        && cp.verify_signature().is_ok()
        && ca_der.is_none_or(|ca| {
            cp.certificate_der()
                .is_ok_and(|c| exchange_pki::CertificateInfo::verify_issued_by(&c, ca).is_ok())
        });
    if !valid {
        report.problem = Some(Problem {
            file: name,
            offset: 0,
            seq: cp.covers_seq,
            what: "the latest-checkpoint record is not validly signed by the log's writer".into(),
        });
        return;
    }
    if cp.covers_seq > snapshot.last_seq {
        report.problem = Some(Problem {
            file: name,
            offset: 0,
            seq: snapshot.last_seq + 1,
            what: format!(
                "the log was truncated: a signed checkpoint covers entries up to {}, but the log ends at {}",
                cp.covers_seq, snapshot.last_seq
            ),
        });
        return;
    }
    let head = parse_hash(&cp.head).unwrap_or([0u8; 32]);
    if let Some((_, h)) = signed_heads.iter().find(|(s, _)| *s == cp.covers_seq) {
        if *h != head {
            report.problem = Some(Problem {
                file: name,
                offset: 0,
                seq: cp.covers_seq,
                what: "the log differs from the one the latest checkpoint signed: it was rewritten"
                    .into(),
            });
        }
    }
}

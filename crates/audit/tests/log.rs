//! The audit log against crashes and hex editors.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use exchange_audit::format::{read_frame, SegmentHeader};
use exchange_audit::{verify, AuditLog, AuditOptions, Event, Metrics, QueryKeys, Record};
use exchange_pki::{CertificateAuthority, Identity, MemberSigner, Role};

struct Pki {
    ca: CertificateAuthority,
}

impl Pki {
    fn new() -> Pki {
        Pki {
            ca: CertificateAuthority::generate("audit test ca").unwrap(),
        }
    }
    fn signer(&self, member: &str) -> MemberSigner {
        let (issued, key) = self
            .ca
            .issue_with_new_key(
                &Identity::new(member, Role::Node).unwrap(),
                &["localhost".to_string()],
                time::Duration::hours(1),
            )
            .unwrap();
        MemberSigner::new(&key.private_key_der(), &issued.der).unwrap()
    }
}

fn record(i: u64) -> Record {
    Record {
        time_ms: 1_700_000_000_000 + i as i64,
        event: Event::QueryKeys(QueryKeys {
            query_id: format!("Q-{i:06}"),
            key_type: "person_id".into(),
            keys: vec![format!("11010119900307{i:04}")],
        }),
    }
}

fn options(dir: &Path) -> AuditOptions {
    let mut o = AuditOptions::new(dir);
    o.checkpoint_every = 10;
    o
}

fn write(dir: &Path, signer: MemberSigner, from: u64, n: u64) {
    let log = AuditLog::open(options(dir), signer, Arc::new(Metrics::default())).unwrap();
    for i in from..from + n {
        log.append_blocking(&record(i)).unwrap();
    }
    log.close();
}

/// Byte ranges of every frame in the first segment: (offset, len, kind).
fn frames(dir: &Path) -> (std::path::PathBuf, Vec<(usize, usize, u8)>) {
    let path = dir.join("seg-00000001.log");
    let bytes = std::fs::read(&path).unwrap();
    let (_, mut offset) = SegmentHeader::decode(&bytes).unwrap();
    let mut out = Vec::new();
    while let Ok(f) = read_frame(&bytes, offset) {
        out.push((offset, f.len, f.kind));
        offset += f.len;
    }
    (path, out)
}

#[test]
fn a_clean_log_verifies_and_reopens_where_it_stopped() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), pki.signer("tax"), 0, 25);
    write(dir.path(), pki.signer("tax"), 25, 5);
    let report = verify(dir.path(), Some(pki.ca.cert_der())).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.entries, 30);
    assert!(report.checkpoints >= 3, "{report:?}");
    assert_eq!(report.unsigned_tail, 0, "close signs the tail");
    assert_eq!(report.writer, "exchange://tax/node");
    let mut seen = Vec::new();
    exchange_audit::read::scan(dir.path(), |_, r| {
        seen.push(r);
        true
    })
    .unwrap();
    assert_eq!(seen, (0..30).map(record).collect::<Vec<_>>());
    // Another federation's CA did not issue the signing certificate.
    let other = Pki::new();
    let report = verify(dir.path(), Some(other.ca.cert_der())).unwrap();
    assert!(report.problem.unwrap().what.contains("did not issue"));
}

fn tampered(edit: impl FnOnce(&mut Vec<u8>, &[(usize, usize, u8)])) -> exchange_audit::Problem {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), pki.signer("tax"), 0, 30);
    assert!(verify(dir.path(), None).unwrap().ok());
    let (path, frames) = frames(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    edit(&mut bytes, &frames);
    std::fs::write(&path, &bytes).unwrap();
    let report = verify(dir.path(), None).unwrap();
    report.problem.expect("verify must find the edit")
}

#[test]
fn a_modified_byte_is_found_and_named() {
    // Entry 5 is frame index 4; flip one digit inside its JSON.
    let p = tampered(|bytes, frames| {
        let (offset, len, _) = frames[4];
        let at = offset + 13 + (len - 45) / 2;
        bytes[at] ^= 0x01;
    });
    assert_eq!(p.seq, 5, "{p}");
    assert!(p.what.contains("modified"), "{p}");
}

#[test]
fn a_deleted_entry_is_found() {
    let p = tampered(|bytes, frames| {
        let (offset, len, _) = frames[6];
        bytes.drain(offset..offset + len);
    });
    assert_eq!(p.seq, 7, "{p}");
    assert!(p.what.contains("deleted"), "{p}");
}

#[test]
fn reordered_entries_are_found() {
    let p = tampered(|bytes, frames| {
        let (a, alen, _) = frames[2];
        let (b, blen, _) = frames[3];
        let first = bytes[a..a + alen].to_vec();
        let second = bytes[b..b + blen].to_vec();
        let mut swapped = second;
        swapped.extend_from_slice(&first);
        bytes.splice(a..b + blen, swapped);
    });
    assert_eq!(p.seq, 3, "{p}");
    assert!(p.what.contains("expected entry 3 but found 4"), "{p}");
}

#[test]
fn an_inserted_entry_is_found() {
    let p = tampered(|bytes, frames| {
        // A copy of entry 2 inserted after it.
        let (offset, len, _) = frames[1];
        let copy = bytes[offset..offset + len].to_vec();
        bytes.splice(offset + len..offset + len, copy);
    });
    assert_eq!(p.seq, 3, "{p}");
    assert!(p.what.contains("reordered or inserted"), "{p}");
}

#[test]
fn a_truncated_tail_beyond_the_last_checkpoint_is_found() {
    // Cutting whole entries off the end leaves a valid-looking chain; the
    // signed CHECKPOINT record shows entries are missing.
    let p = tampered(|bytes, frames| {
        let (offset, _, _) = frames[20];
        bytes.truncate(offset);
    });
    assert!(p.what.contains("truncated"), "{p}");
}

#[test]
fn a_forged_checkpoint_is_found() {
    let p = tampered(|bytes, frames| {
        let (offset, len, kind) = *frames.iter().find(|f| f.2 == 2).unwrap();
        assert_eq!(kind, 2);
        // Claim the checkpoint covers one entry more than it does.
        let payload = &mut bytes[offset + 13..offset + len - 32];
        let text = String::from_utf8(payload.to_vec()).unwrap();
        let edited = text.replacen("\"covers_seq\":10", "\"covers_seq\":11", 1);
        assert_ne!(text, edited);
        payload.copy_from_slice(edited.as_bytes());
    });
    assert_eq!(p.seq, 11, "{p}");
}

#[test]
fn a_crash_mid_write_verifies_up_to_the_last_durable_entry_and_reopens_cleanly() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), pki.signer("tax"), 0, 12);
    let (path, frames) = frames(dir.path());
    // Half of a frame, as a crash in the middle of write(2) leaves it.
    let mut bytes = std::fs::read(&path).unwrap();
    let (offset, len, _) = frames[3];
    let half = bytes[offset..offset + len / 2].to_vec();
    bytes.extend_from_slice(&half);
    std::fs::write(&path, &bytes).unwrap();
    assert_torn_tail_is_cut_off(dir.path(), &pki);
}

/// The log of 12 entries in `dir` ends in a torn write: verify accepts the
/// 12 with a warning, and the writer cuts the torn bytes off and continues
/// the chain cleanly.
fn assert_torn_tail_is_cut_off(dir: &Path, pki: &Pki) {
    let report = verify(dir, None).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert!(
        report.warnings.iter().any(|w| w.contains("incomplete")),
        "{:?}",
        report.warnings
    );
    write(dir, pki.signer("tax"), 12, 3);
    let report = verify(dir, None).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.entries, 15);
}

#[test]
fn a_damaged_log_is_not_silently_extended() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), pki.signer("tax"), 0, 12);
    let (path, frames) = frames(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[frames[2].0 + 20] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let err = AuditLog::open(
        options(dir.path()),
        pki.signer("tax"),
        Arc::new(Metrics::default()),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("damaged at entry 3"), "{err}");
    assert!(err.contains("exchange audit verify"), "{err}");
}

/// A log of 60 records in segments of 2,000 bytes, sealed ones archived.
fn sixty_in_small_segments(dir: &Path, pki: &Pki) -> AuditLog {
    let mut o = options(dir);
    o.segment_max_bytes = 2_000;
    o.retain = Duration::ZERO;
    let log = AuditLog::open(o, pki.signer("tax"), Arc::new(Metrics::default())).unwrap();
    for i in 0..60 {
        log.append_blocking(&record(i)).unwrap();
    }
    log
}

#[test]
fn sealed_segments_are_archived_and_archives_verify() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let log = sixty_in_small_segments(dir.path(), &pki);
    log.close();
    let archive = dir.path().join("archive");
    let archived: Vec<_> = std::fs::read_dir(&archive)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(archived.len() >= 3, "{archived:?}");
    let live = exchange_audit::segments::list_segments(dir.path()).unwrap();
    assert_eq!(live.len(), 1, "only the open segment stays live");
    // The whole log (archive + live) verifies and reads back in order.
    let report = verify(dir.path(), Some(pki.ca.cert_der())).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.entries, 60);
    let mut n = 0;
    exchange_audit::read::scan(dir.path(), |_, r| {
        assert_eq!(r, record(n));
        n += 1;
        true
    })
    .unwrap();
    assert_eq!(n, 60);
    // One archive file verifies alone (it ends with a signed checkpoint).
    let one = archived.iter().min().unwrap();
    let report = verify(one, Some(pki.ca.cert_der())).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.unsigned_tail, 0);
    // Removing an archived segment from the middle breaks continuity.
    let mut sorted = archived.clone();
    sorted.sort();
    std::fs::remove_file(&sorted[1]).unwrap();
    let report = verify(dir.path(), None).unwrap();
    assert!(report.problem.unwrap().what.contains("does not continue"));
}

#[test]
fn concurrent_appends_share_fsyncs_and_all_land() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        AuditLog::open(
            AuditOptions::new(dir.path()),
            pki.signer("tax"),
            Arc::new(Metrics::default()),
        )
        .unwrap(),
    );
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    log.append_blocking(&record(t * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(log.last_seq(), 1600);
    let metrics = log.metrics().render();
    assert!(
        metrics.contains("exchange_audit_entries_total 1600"),
        "{metrics}"
    );
    log.close();
    let report = verify(dir.path(), None).unwrap();
    assert!(report.ok());
    assert_eq!(report.entries, 1600);
}

#[test]
fn a_segment_both_live_and_archived_counts_once_unless_the_copies_differ() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path());
    o.segment_max_bytes = 2_000;
    o.retain = Duration::ZERO;
    let log = AuditLog::open(o, pki.signer("tax"), Arc::new(Metrics::default())).unwrap();
    for i in 0..30 {
        log.append_blocking(&record(i)).unwrap();
    }
    log.close();
    let mut archived: Vec<_> = std::fs::read_dir(dir.path().join("archive"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    archived.sort();
    // As if the writer crashed between copying segment 1 and removing it.
    let live_copy = dir.path().join("seg-00000001.log");
    std::fs::copy(&archived[0], &live_copy).unwrap();
    let report = verify(dir.path(), None).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.entries, 30);
    let mut n = 0;
    exchange_audit::read::scan(dir.path(), |_, _| {
        n += 1;
        true
    })
    .unwrap();
    assert_eq!(n, 30);
    // A different file claiming the same segment is flagged.
    let mut bytes = std::fs::read(&live_copy).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&live_copy, &bytes).unwrap();
    let problem = verify(dir.path(), None).unwrap().problem.unwrap();
    assert!(problem.what.contains("claim to be segment 1"), "{problem}");
}

#[test]
fn zeros_written_ahead_are_invisible_to_readers_and_cut_off_at_close() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg-00000001.log");
    let log = AuditLog::open(
        options(dir.path()),
        pki.signer("tax"),
        Arc::new(Metrics::default()),
    )
    .unwrap();
    for i in 0..15 {
        log.append_blocking(&record(i)).unwrap();
    }
    // Live: the file holds zeros past its last entry, and readers stop
    // there without a problem or a warning beyond the unsigned tail.
    let bytes = std::fs::read(&path).unwrap();
    let (_, live) = frames(dir.path());
    let (offset, len, _) = *live.last().unwrap();
    let end = offset + len;
    assert!(bytes.len() > end, "zeros are written ahead");
    assert!(bytes[end..].iter().all(|b| *b == 0));
    let report = verify(dir.path(), None).unwrap();
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.entries, 15);
    assert!(
        !report.warnings.iter().any(|w| w.contains("incomplete")),
        "{:?}",
        report.warnings
    );
    let mut n = 0;
    exchange_audit::read::scan(dir.path(), |_, _| {
        n += 1;
        true
    })
    .unwrap();
    assert_eq!(n, 15);
    // Closed: the file ends with its last entry (the closing checkpoint).
    log.close();
    drop(log);
    let bytes = std::fs::read(&path).unwrap();
    let (_, closed) = frames(dir.path());
    let (offset, len, _) = *closed.last().unwrap();
    assert_eq!(bytes.len(), offset + len, "no zeros left after close");
    assert!(verify(dir.path(), None).unwrap().ok());
}

#[test]
fn an_entry_cut_short_in_zeros_written_ahead_is_a_crash_and_the_last_entry_edited_is_not() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), pki.signer("tax"), 0, 12);
    let (path, written) = frames(dir.path());
    let clean = std::fs::read(&path).unwrap();
    // A crash mid-write into space written ahead: a whole frame's length
    // and the start of its bytes, then the zeros that were already there.
    let (offset, len, _) = written[3];
    let mut bytes = clean.clone();
    bytes.extend_from_slice(&clean[offset..offset + len / 2]);
    bytes.extend(std::iter::repeat_n(0u8, len - len / 2 + (64 << 10)));
    std::fs::write(&path, &bytes).unwrap();
    assert_torn_tail_is_cut_off(dir.path(), &pki);

    // An edit of the last entry of a closed log (no zeros after it) is
    // found, and the writer refuses to extend the log.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), pki.signer("tax"), 0, 12);
    let (path, written) = frames(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let (offset, _, _) = *written.last().unwrap();
    bytes[offset + 20] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    assert!(verify(dir.path(), None).unwrap().problem.is_some());
    assert!(AuditLog::open(
        options(dir.path()),
        pki.signer("tax"),
        Arc::new(Metrics::default()),
    )
    .is_err());
}

/// Collects what it is fed.
#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<Record>>);

impl exchange_audit::Observer for Seen {
    fn observe(&self, record: &Record) {
        self.0.lock().unwrap().push(record.clone());
    }
}

#[test]
fn observers_are_fed_every_record_the_log_takes_and_read_back_matches() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(
        options(dir.path()),
        pki.signer("tax"),
        Arc::new(Metrics::default()),
    )
    .unwrap();
    log.append_blocking(&record(0)).unwrap();
    let seen = Arc::new(Seen::default());
    log.add_observer(seen.clone());
    log.append_blocking(&record(1)).unwrap();
    log.append_detached(&record(2));
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async {
            log.append(&record(3)).await.unwrap();
            log.append_all(&[record(4), record(5)]).await.unwrap();
        });
    log.close();
    // Only what came after the observer was added, in order.
    let fed = seen.0.lock().unwrap().clone();
    assert_eq!(fed, (1..=5).map(record).collect::<Vec<_>>());
    let mut back = Vec::new();
    exchange_audit::read::scan(dir.path(), |_, r| {
        back.push(r);
        true
    })
    .unwrap();
    assert_eq!(back, (0..=5).map(record).collect::<Vec<_>>());
}

#[test]
fn scanning_after_a_sequence_number_reads_exactly_the_entries_after_it() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let log = sixty_in_small_segments(dir.path(), &pki);
    let roots = log.roots();
    log.close();
    let mut all = Vec::new();
    exchange_audit::read::scan_roots(&roots, |seq, r| {
        all.push((seq, r));
        true
    })
    .unwrap();
    assert_eq!(all.len(), 60);
    // From the start, from inside an archived segment, from the last entry.
    for after in [0, all[25].0, all[59].0] {
        let mut read = Vec::new();
        exchange_audit::read::scan_after(&roots, after, |seq, r| read.push((seq, r))).unwrap();
        let expected: Vec<_> = all.iter().filter(|(s, _)| *s > after).cloned().collect();
        assert_eq!(read, expected, "after {after}");
    }
}

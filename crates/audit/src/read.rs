//! Reading records back, for views, reports and reconciliation.

use std::path::{Path, PathBuf};

use crate::format::{read_frame, SegmentHeader, KIND_ENTRY};
use crate::record::Record;
use crate::segments::{collect_segment_files, resolve};

/// Calls `visit` with every entry (sequence number and record) in order,
/// from the archive and the live segments under `path`. Stops early when
/// `visit` returns `false`. Hashes are not checked here: that is
/// [`crate::verify`]'s job. An incomplete final frame (a write in progress)
/// ends the scan.
pub fn scan(path: &Path, visit: impl FnMut(u64, Record) -> bool) -> std::io::Result<u64> {
    scan_roots(&resolve(path), visit)
}

/// [`scan`] over explicit directories (e.g. [`crate::AuditLog::roots`]).
pub fn scan_roots(
    roots: &[PathBuf],
    mut visit: impl FnMut(u64, Record) -> bool,
) -> std::io::Result<u64> {
    let mut files = collect_segment_files(roots)?;
    // A segment archived while still live (a crash between the copy and
    // the removal) is read once.
    files.dedup_by_key(|(h, _)| h.segment);
    let mut count = 0;
    for (_, file) in files {
        if !scan_file(&file, &mut visit, &mut count)? {
            break;
        }
    }
    Ok(count)
}

/// Calls `visit` with every entry after sequence number `after`, in
/// order, reading only the segments that can hold them: how a derived
/// index catches up with the log's tail without reading the whole log.
pub fn scan_after(
    roots: &[PathBuf],
    after: u64,
    mut visit: impl FnMut(u64, Record),
) -> std::io::Result<()> {
    let mut files = collect_segment_files(roots)?;
    files.dedup_by_key(|(h, _)| h.segment);
    // A segment ends where the next begins.
    let ends: Vec<u64> = files
        .iter()
        .skip(1)
        .map(|(h, _)| h.first_seq)
        .chain([u64::MAX])
        .collect();
    let mut count = 0;
    for ((_, file), next_first) in files.iter().zip(ends) {
        if next_first <= after.saturating_add(1) {
            continue;
        }
        scan_file(
            file,
            &mut |seq, r| {
                if seq > after {
                    visit(seq, r);
                }
                true
            },
            &mut count,
        )?;
    }
    Ok(())
}

fn scan_file(
    file: &PathBuf,
    visit: &mut impl FnMut(u64, Record) -> bool,
    count: &mut u64,
) -> std::io::Result<bool> {
    let bytes = std::fs::read(file)?;
    let Ok((_, mut offset)) = SegmentHeader::decode(&bytes) else {
        return Ok(true);
    };
    while let Ok(frame) = read_frame(&bytes, offset) {
        offset += frame.len;
        if frame.kind != KIND_ENTRY {
            continue;
        }
        if let Ok(r) = serde_json::from_slice::<Record>(frame.payload) {
            *count += 1;
            if !visit(frame.seq, r) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

//! Finding segments on disk: live ones (`seg-00000001.log`) and archived
//! ones (`<writer>-00000001.audit`).

use std::path::{Path, PathBuf};

use crate::format::SegmentHeader;

/// The newest signed checkpoint of a live log.
pub const CHECKPOINT_FILE: &str = "CHECKPOINT";

#[derive(Debug, Clone)]
pub struct SegmentFile {
    pub number: u64,
    pub path: PathBuf,
}

pub fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("seg-{number:08}.log"))
}

/// `exchange://tax/node` becomes `tax-node`.
pub fn writer_slug(writer: &str) -> String {
    writer
        .trim_start_matches("exchange://")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Live segments in `dir`, by number.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<SegmentFile>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix("seg-")
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push(SegmentFile {
                number: n,
                path: entry.path(),
            });
        }
    }
    out.sort_by_key(|s| s.number);
    Ok(out)
}

/// Every segment file (live or archived) under `paths`, ordered by the
/// segment number in its header. Files that are not segments are skipped.
pub fn collect_segment_files(paths: &[PathBuf]) -> std::io::Result<Vec<(SegmentHeader, PathBuf)>> {
    let mut out = Vec::new();
    for path in paths {
        if !path.exists() {
            continue;
        }
        let candidates: Vec<PathBuf> = if path.is_dir() {
            let mut v = Vec::new();
            for entry in std::fs::read_dir(path)? {
                let p = entry?.path();
                let is_segment = p
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| e == "log" || e == "audit");
                if is_segment && p.is_file() {
                    v.push(p);
                }
            }
            v
        } else {
            vec![path.clone()]
        };
        for p in candidates {
            let mut head = vec![0u8; 64 << 10];
            let n = {
                use std::io::Read;
                let mut f = std::fs::File::open(&p)?;
                let mut total = 0;
                loop {
                    let k = f.read(&mut head[total..])?;
                    if k == 0 {
                        break;
                    }
                    total += k;
                    if total == head.len() {
                        break;
                    }
                }
                total
            };
            if let Ok((header, _)) = SegmentHeader::decode(&head[..n]) {
                out.push((header, p));
            }
        }
    }
    out.sort_by_key(|(h, _)| h.segment);
    Ok(out)
}

/// The live and archive directories to read for a data directory, an audit
/// directory, an archive directory or a single file.
pub fn resolve(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let audit = if path.join("audit").is_dir() {
        path.join("audit")
    } else {
        path.to_path_buf()
    };
    let mut out = vec![audit.clone()];
    if audit.join("archive").is_dir() {
        out.insert(0, audit.join("archive"));
    }
    out
}

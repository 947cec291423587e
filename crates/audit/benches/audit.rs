//! Audit-log benchmark (prints figures; not a timed test).
//!
//! 1. Durable appends per second with group commit, for 1, 8 and 64
//!    concurrent writers, against the direct baseline measured in the same
//!    run on the same disk: one `write` + `fdatasync` per entry, which is
//!    what write-ahead costs without group commit.
//! 2. Offline verification throughput (entries/s) over a 2,000,000-entry log.
//!
//! Run: `cargo bench -p exchange-audit --bench audit` (`AUDIT_DIR=...` to
//! measure another disk; default under /var/tmp, a real disk, not tmpfs).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use exchange_audit::{AuditLog, AuditOptions, Event, Metrics, QueryServed, Record};
use exchange_pki::{CertificateAuthority, Identity, MemberSigner, Role};

fn signer() -> MemberSigner {
    let ca = CertificateAuthority::generate("bench ca").unwrap();
    let (issued, key) = ca
        .issue_with_new_key(
            &Identity::new("tax", Role::Node).unwrap(),
            &["localhost".into()],
            time::Duration::hours(1),
        )
        .unwrap();
    MemberSigner::new(&key.private_key_der(), &issued.der).unwrap()
}

/// A record the size of a real node `query_served` entry (~330 bytes).
fn record(i: u64) -> Record {
    Record::now(Event::QueryServed(QueryServed {
        query_id: format!("Q-{i:012x}"),
        ticket_id: format!("{:032x}", i * 7919),
        consumer: "civil-affairs".into(),
        user: "王小明".into(),
        purpose: "低保家庭财产核查".into(),
        dataset: "vehicle-admin/vehicles".into(),
        grant_id: "G-000001".into(),
        fields: vec![],
        filter_digest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        embargo_until: String::new(),
        masked_values: 1,
    }))
}

fn base_dir() -> tempfile::TempDir {
    let base = std::env::var("AUDIT_DIR").unwrap_or_else(|_| "/var/tmp".into());
    tempfile::tempdir_in(base).unwrap()
}

fn appends(writers: usize, run_for: Duration) -> (f64, f64) {
    let dir = base_dir();
    let log = Arc::new(
        AuditLog::open(
            AuditOptions::new(dir.path()),
            signer(),
            Arc::new(Metrics::default()),
        )
        .unwrap(),
    );
    let start = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while start.elapsed() < run_for {
                    log.append_blocking(&record(w as u64 * 1_000_000_000 + n))
                        .unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let secs = start.elapsed().as_secs_f64();
    let text = log.metrics().render();
    let groups: f64 = text
        .lines()
        .find(|l| l.starts_with("exchange_audit_commit_seconds_count"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    log.close();
    (total as f64 / secs, total as f64 / groups)
}

/// One write + fdatasync per entry, no group commit: the direct cost.
fn direct_fsync(run_for: Duration) -> f64 {
    let dir = base_dir();
    let mut f = std::fs::File::create(dir.path().join("direct.log")).unwrap();
    let payload = serde_json::to_vec(&record(1)).unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < run_for {
        f.write_all(&payload).unwrap();
        f.sync_data().unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn verify_throughput(entries: u64) -> (f64, f64, u64) {
    let dir = base_dir();
    let mut options = AuditOptions::new(dir.path());
    options.durable = false; // building the fixture only
    options.checkpoint_every = 10_000;
    let log = AuditLog::open(options, signer(), Arc::new(Metrics::default())).unwrap();
    for i in 0..entries {
        log.append_detached(&record(i));
        if i % 100_000 == 0 {
            // Bound the queue.
            log.append_blocking(&record(i)).unwrap();
        }
    }
    log.close();
    let bytes: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    // Warm the page cache once, then measure.
    let _ = exchange_audit::verify(dir.path(), None).unwrap();
    let start = Instant::now();
    let report = exchange_audit::verify(dir.path(), None).unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!(report.ok(), "{:?}", report.problem);
    let counted = report.entries + report.checkpoints;
    (
        counted as f64 / secs,
        bytes as f64 / secs / 1e6,
        report.entries,
    )
}

fn main() {
    let run_for = Duration::from_secs(3);
    println!(
        "audit appends, durable (fdatasync before acknowledging), {} s per run:",
        run_for.as_secs()
    );
    let direct = direct_fsync(run_for);
    println!("  direct baseline, one write+fdatasync per entry: {direct:>10.0} entries/s");
    for writers in [1, 8, 64] {
        let (rate, per_group) = appends(writers, run_for);
        println!(
            "  {writers:>2} writers, group commit:                  {rate:>10.0} entries/s  ({per_group:.1} entries per fsync, {:.1}x direct)",
            rate / direct
        );
    }
    let (rate, mb, entries) = verify_throughput(2_000_000);
    println!("verify: {entries} entries at {rate:.0} entries/s ({mb:.0} MB/s), hash chain and checkpoint signatures");
}

//! Tamper-evident, write-ahead audit logs.
//!
//! Both ends of every query keep one: the coordinator logs each decision
//! (query, access request, grant, revocation) and each query's completion;
//! each node logs every ticket it served or refused, with the subject keys
//! of the rows it returned. An entry is durable (`fsync`) before the caller
//! goes on, so no row leaves before its record; a writer thread batches
//! concurrent appends into one flush (group commit).
//!
//! - [`format`]: segments of hash-chained frames, signed checkpoints.
//! - [`AuditLog`] ([`writer`]): appending, crash recovery, segment roll,
//!   archiving of old segments.
//! - [`verify()`]: offline verification of a live log or an archive.
//! - [`read`]: scanning records for views, reports and reconciliation.
//! - [`Metrics`]: Prometheus counters fed by the same records.
//!
//! The log is plain files in its own directory, not sled: an append-only
//! file is what makes `fsync` group commit cheap and what an auditor can
//! copy and check offline.

pub mod format;
pub mod metrics;
pub mod read;
pub mod record;
pub mod segments;
pub mod verify;
pub mod writer;

pub use metrics::Metrics;
pub use record::{
    AccessEvent, Event, FieldMask, QueryCompletion, QueryDecision, QueryKeys, QueryRefused,
    QueryServed, Record, SubjectRequest,
};
pub use verify::{verify, Problem, VerifyReport};
pub use writer::{AuditConfig, AuditLog, AuditOptions, Observer};

/// Why an audit write failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("the audit log in {dir} cannot be written ({reason}); queries are refused until it can be: free disk space or fix the directory's permissions")]
    Unwritable { dir: String, reason: String },
    #[error("the audit log in {dir} is damaged at entry {seq} of {file}: {reason}; run `exchange audit verify {dir}`, keep the damaged segment as evidence and move it aside before restarting")]
    Damaged {
        dir: String,
        file: String,
        seq: u64,
        reason: String,
    },
    #[error("the audit log is closed")]
    Closed,
    #[error("an audit record of {0} bytes exceeds the 16 MiB limit")]
    TooLarge(usize),
}

/// Crash testing: when the environment variable `EXCHANGE_FAULT` names
/// this point, the process aborts here, as a power cut or `kill -9` would.
///
/// Compiled in only with the `fault-injection` feature, which the crash
/// tests enable through a dev-dependency; in a release binary this is a
/// no-op and the variable is never read.
pub fn fault_point(name: &str) {
    if fault_armed(name) {
        eprintln!("EXCHANGE_FAULT: aborting at {name}");
        std::process::abort();
    }
}

/// Whether `EXCHANGE_FAULT` names this point (always false without the
/// `fault-injection` feature).
#[cfg(not(feature = "fault-injection"))]
pub fn fault_armed(_name: &str) -> bool {
    false
}

/// Whether `EXCHANGE_FAULT` names this point.
#[cfg(feature = "fault-injection")]
pub fn fault_armed(name: &str) -> bool {
    static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let armed = FAULT.get_or_init(|| {
        std::env::var("EXCHANGE_FAULT")
            .ok()
            .filter(|v| !v.is_empty())
    });
    armed.as_deref() == Some(name)
}

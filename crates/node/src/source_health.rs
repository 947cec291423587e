//! Which of the department's databases are down, so that an outage is
//! logged once (a WARN when the first query finds it down) and its end once
//! (an INFO when a query is answered again), however many queries fail in
//! between; and the status a consumer gets, which says why.

use std::collections::HashSet;
use std::sync::Mutex;

use exchange_source::SourceError;
use tonic::Status;

pub use exchange_transport::completion::SOURCE_STATUS_KEY;

#[derive(Debug, Default)]
pub struct SourceHealth {
    down: Mutex<HashSet<String>>,
}

impl SourceHealth {
    /// A read of `database` failed: logs the start of an outage once, and
    /// returns the status for the consumer.
    pub fn failed(&self, member: &str, database: &str, error: &SourceError) -> Status {
        let reason = error.to_string();
        if let SourceError::Unreachable { .. } = error {
            let first = self.lock().insert(database.to_string());
            if first {
                tracing::warn!(
                    database,
                    reason = %exchange_policy::text::for_log(&reason, 500),
                    "source database unreachable: queries on its datasets fail until it answers again"
                );
            }
        }
        source_status(member, error)
    }

    /// A read of `database` was answered: logs the end of an outage once.
    pub fn answered(&self, database: &str) {
        if self.lock().remove(database) {
            tracing::info!(database, "source database reachable again");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.down.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The consumer's status for a failed read: `UNAVAILABLE` when the
/// database cannot be reached (try again later), `INTERNAL` when it
/// answered with an error; the message names the department and the cause.
pub fn source_status(member: &str, error: &SourceError) -> Status {
    let mut status = match error {
        SourceError::Unreachable { .. } => Status::unavailable(format!(
            "{member}'s {error}; the department's node is up, its database is not: try again later"
        )),
        SourceError::Query { .. } => Status::internal(format!("{member}'s {error}")),
        SourceError::Plan(_) => Status::failed_precondition(format!("{member}: {error}")),
    };
    status.metadata_mut().insert(
        SOURCE_STATUS_KEY,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_marked_and_says_why() {
        let health = SourceHealth::default();
        let down = SourceError::Unreachable {
            name: "main".into(),
            reason: "connection refused".into(),
        };
        let status = health.failed("tax", "main", &down);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status.message().contains("connection refused"),
            "{}",
            status.message()
        );
        assert!(status.metadata().get(SOURCE_STATUS_KEY).is_some());
        assert!(health.lock().contains("main"));
        health.failed("tax", "main", &down);
        health.answered("main");
        assert!(health.lock().is_empty());
    }
}

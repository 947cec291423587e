//! One person or company across every department: the datasets carrying
//! the key type that the caller holds a grant on are queried in parallel,
//! each as a normal audited query, and the answers come back grouped by
//! department with a status each. A deadline bounds the whole lookup:
//! whatever has not answered by then is reported as timed out, so a dead
//! or slow node never holds the others back.

use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use futures::StreamExt;
use tonic::Code;

use crate::{Client, ClientError, Result};

/// How one dataset answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceStatus {
    Ok,
    /// Refused by a rule (the coordinator's or the owner node's), with its message.
    Denied(String),
    /// The owner node is offline or unreachable.
    Offline(String),
    /// No complete answer within the deadline.
    TimedOut,
    Error(String),
}

impl SourceStatus {
    pub fn label(&self) -> &'static str {
        match self {
            SourceStatus::Ok => "ok",
            SourceStatus::Denied(_) => "denied",
            SourceStatus::Offline(_) => "offline",
            SourceStatus::TimedOut => "timed out",
            SourceStatus::Error(_) => "error",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            SourceStatus::Denied(d) | SourceStatus::Offline(d) | SourceStatus::Error(d) => d,
            SourceStatus::TimedOut => {
                "no complete answer before the deadline (--deadline-ms): the owner or its database is slow"
            }
            SourceStatus::Ok => "",
        }
    }
}

/// One dataset's answer.
#[derive(Debug, Clone)]
pub struct DatasetAnswer {
    pub dataset: String,
    pub department: String,
    /// The field matched against the key.
    pub key_field: String,
    pub status: SourceStatus,
    pub batches: Vec<RecordBatch>,
    pub elapsed: Duration,
}

impl DatasetAnswer {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

#[derive(Debug, Clone)]
pub struct LookupReport {
    pub key_type: String,
    pub key: String,
    /// Sorted by department, then dataset.
    pub answers: Vec<DatasetAnswer>,
    pub elapsed: Duration,
}

/// The default deadline of a lookup.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(3);

pub(crate) fn classify(status: &tonic::Status) -> SourceStatus {
    let message = status.message().to_string();
    match status.code() {
        Code::PermissionDenied | Code::ResourceExhausted => SourceStatus::Denied(message),
        Code::Unavailable => SourceStatus::Offline(message),
        Code::DeadlineExceeded => SourceStatus::TimedOut,
        _ => SourceStatus::Error(message),
    }
}

pub(crate) fn classify_flight(e: &arrow_flight::error::FlightError) -> SourceStatus {
    match e {
        arrow_flight::error::FlightError::Tonic(status) => classify(status),
        other => SourceStatus::Error(other.to_string()),
    }
}

/// Checks a key against its type's check characters.
pub fn check_key(key_type: &str, key: &str) -> Result<String> {
    let key = key.trim().to_ascii_uppercase();
    let ok = match key_type {
        "person_id" => exchange_catalog::policy::ids::is_valid_resident_id(&key),
        "org_code" => exchange_catalog::policy::ids::is_valid_uscc(&key),
        other => {
            return Err(ClientError::Config(format!(
                "lookups by {other:?} are not supported: use person_id or org_code"
            )))
        }
    };
    if !ok {
        let what = if key_type == "person_id" {
            "a resident identity number (18 characters, GB 11643 check character)"
        } else {
            "a unified social credit code (18 characters, GB 32100 check characters)"
        };
        return Err(ClientError::Config(format!(
            "{:?} is not {what}: check for a mistyped digit",
            key.chars().take(40).collect::<String>()
        )));
    }
    Ok(key)
}

impl Client {
    /// Looks `key` up in every dataset carrying `key_type` that this
    /// department holds an active grant on, in parallel, within `deadline`.
    pub async fn lookup(
        &self,
        key_type: &str,
        key: &str,
        purpose: &str,
        deadline: Duration,
    ) -> Result<LookupReport> {
        let started = Instant::now();
        let key = check_key(key_type, key)?;
        if purpose.trim().is_empty() {
            return Err(ClientError::Config(
                "a lookup must state its purpose (--purpose)".into(),
            ));
        }
        let me = self.identity().member_id.clone();
        let grants: Vec<_> = tokio::time::timeout(deadline, self.grants())
            .await
            .map_err(|_| {
                ClientError::Config("the coordinator did not answer within the deadline".into())
            })??
            .into_iter()
            .filter(|g| g.consumer == me && g.status == "active")
            .collect();
        // Which granted datasets carry the key type, and in which field:
        // the coordinator names each granted field's key type.
        let targets: Vec<(String, String, String)> = grants
            .iter()
            .filter_map(|grant| {
                let field = grant.fields.iter().find(|f| f.key_type == key_type)?;
                Some((
                    grant.dataset.clone(),
                    grant.owner.clone(),
                    field.name.clone(),
                ))
            })
            .collect();
        let remaining = deadline.saturating_sub(started.elapsed());
        let asks = targets.into_iter().map(|(dataset, department, key_field)| {
            let key = key.clone();
            async move {
                let t = Instant::now();
                let mut batches = Vec::new();
                let run = async {
                    let cmd = exchange_query::QueryCommand {
                        dataset: dataset.clone(),
                        fields: vec![],
                        filter: format!("{key_field} = '{key}'"),
                        purpose: purpose.to_string(),
                        user: String::new(),
                        limit: None,
                    };
                    let mut stream = match self.query(cmd).await {
                        Ok(s) => s,
                        Err(ClientError::Status(status)) => return classify(&status),
                        Err(e) => return SourceStatus::Error(e.to_string()),
                    };
                    while let Some(b) = stream.next().await {
                        match b {
                            Ok(b) => batches.push(b),
                            Err(e) => return classify_flight(&e),
                        }
                    }
                    SourceStatus::Ok
                };
                let status = tokio::time::timeout(remaining, run)
                    .await
                    .unwrap_or(SourceStatus::TimedOut);
                if status != SourceStatus::Ok {
                    batches.clear();
                }
                DatasetAnswer {
                    dataset,
                    department,
                    key_field,
                    status,
                    batches,
                    elapsed: t.elapsed(),
                }
            }
        });
        let mut answers = futures::future::join_all(asks).await;
        answers.sort_by(|a, b| (&a.department, &a.dataset).cmp(&(&b.department, &b.dataset)));
        Ok(LookupReport {
            key_type: key_type.to_string(),
            key,
            answers,
            elapsed: started.elapsed(),
        })
    }
}

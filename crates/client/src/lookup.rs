//! One person or company across every department, through the
//! coordinator's `Lookups.Lookup`: the datasets carrying the key type that
//! the caller holds a grant on are queried in parallel, each as a normal
//! audited query, and the answers come back grouped by department with a
//! status each. A deadline bounds the whole lookup: whatever has not
//! answered by then is reported as timed out, so a dead or slow node never
//! holds the others back.

use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use exchange_proto::v1 as pb;
use exchange_transport::AnyChannel;

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

impl SourceStatus {
    /// The status of one dataset as the coordinator's lookup reported it.
    pub(crate) fn from_answer(status: i32, detail: String) -> SourceStatus {
        match pb::LookupStatus::try_from(status) {
            Ok(pb::LookupStatus::Ok) => SourceStatus::Ok,
            Ok(pb::LookupStatus::Denied) => SourceStatus::Denied(detail),
            Ok(pb::LookupStatus::Offline) => SourceStatus::Offline(detail),
            Ok(pb::LookupStatus::TimedOut) => SourceStatus::TimedOut,
            _ if detail.is_empty() => {
                SourceStatus::Error(format!("unknown lookup status {status}"))
            }
            _ => SourceStatus::Error(detail),
        }
    }
}

/// Record batches from an Arrow IPC stream the coordinator sent.
pub(crate) fn decode_ipc(bytes: &[u8]) -> Result<Vec<RecordBatch>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let bad = |e: arrow_schema::ArrowError| {
        ClientError::Config(format!(
            "the coordinator sent rows that are not Arrow IPC: {e}"
        ))
    };
    let reader =
        arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).map_err(bad)?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(bad)
}

/// Checks a key against its type's check characters (the same check the
/// coordinator makes again), so a mistyped key is refused before any call.
pub fn check_key(key_type: &str, key: &str) -> Result<String> {
    exchange_catalog::policy::ids::checked_key(key_type, key).map_err(ClientError::Config)
}

impl Client {
    pub(crate) fn lookups(&self) -> pb::lookups_client::LookupsClient<AnyChannel> {
        pb::lookups_client::LookupsClient::new(self.channel()).max_decoding_message_size(64 << 20)
    }

    /// Looks `key` up in every dataset carrying `key_type` that this
    /// department holds an active grant on, within `deadline`: the
    /// coordinator's `Lookups.Lookup`, which reads every dataset in
    /// parallel as an ordinary audited query.
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
        let message = pb::LookupRequest {
            key_type: key_type.to_string(),
            key,
            purpose: purpose.to_string(),
            user: self.user().to_string(),
            deadline_ms: deadline.as_millis().min(u32::MAX as u128) as u32,
            datasets: vec![],
        };
        let ask = |message: pb::LookupRequest| {
            let mut request = tonic::Request::new(message);
            // The coordinator answers within the deadline; allow for the trip.
            request.set_timeout(deadline + Duration::from_secs(5));
            let mut lookups = self.lookups();
            async move { lookups.lookup(request).await }
        };
        let response = match ask(message.clone()).await {
            // The coordinator went away (it died, or its connection broke):
            // once more, which dials the next replica when several are
            // configured. It is a new lookup, decided and logged anew.
            Err(status) if coordinator_lost(&status) => {
                self.channel().reconnect();
                ask(message).await?
            }
            answer => answer?,
        }
        .into_inner();
        let mut answers = Vec::with_capacity(response.answers.len());
        for answer in response.answers {
            let target = answer.target.unwrap_or_default();
            let status = SourceStatus::from_answer(answer.status, answer.detail);
            answers.push(DatasetAnswer {
                dataset: target.dataset,
                department: target.department,
                key_field: target.key_field,
                batches: decode_ipc(&answer.arrow_ipc)?,
                status,
                elapsed: Duration::from_millis(answer.elapsed_ms as u64),
            });
        }
        Ok(LookupReport {
            key_type: response.key_type,
            key: response.key,
            answers,
            elapsed: started.elapsed(),
        })
    }
}

/// Whether a call failed because its coordinator went away (could not be
/// reached, or the connection broke before the answer), rather than
/// because the coordinator answered with an error.
pub(crate) fn coordinator_lost(status: &tonic::Status) -> bool {
    if status.code() == tonic::Code::Unavailable {
        return true;
    }
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        // A connection reset mid-stream reaches us as HTTP/2's own error,
        // which keeps only the kind of the I/O error.
        if error
            .downcast_ref::<h2::Error>()
            .is_some_and(|e| e.is_io() || e.is_go_away())
        {
            return true;
        }
        source = error.source();
    }
    false
}

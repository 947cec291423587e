//! Lookups served by the coordinator: one key, or a stream of keys, across
//! every dataset the caller may read it in (`exchange.v1.Lookups`).
//!
//! The targets are the caller's active grants that include a field of the
//! key's type. Each target is read through [`CoordinatorFlight::run_query`],
//! the same path as a Flight `DoGet`: authorized against the grant, its
//! decision logged before the owner is asked, masked at the owner node and
//! completed in the audit log. Nothing here decides who may read what.
//!
//! - `Lookup` asks every target in parallel within one deadline; whatever
//!   has not answered by then is reported as timed out, so a dead or slow
//!   node never holds the others back.
//! - `BatchLookup` reads keys from the caller's stream, checks each key's
//!   check characters, and sends them in chunks as `IN` queries, a few in
//!   flight at a time. Memory stays bounded by the chunks in flight and the
//!   outgoing channel, whatever the number of keys.
//!
//! Rows travel as Arrow IPC streams ([`ipc_bytes`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_schema::SchemaRef;
use exchange_pki::{Identity, Role};
use exchange_policy::ids::{checked_key, unsupported_key_type};
use exchange_proto::v1 as pb;
use exchange_query::QueryCommand;
use exchange_transport::refusal::Refusal;
use exchange_transport::require_role;
use futures::stream::{BoxStream, FuturesUnordered};
use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::flight::CoordinatorFlight;
use crate::service::{access_status, State};

/// A lookup's deadline when the request gives none.
pub const DEFAULT_DEADLINE_MS: u32 = 3_000;
/// The longest deadline a lookup may ask for.
pub const MAX_DEADLINE_MS: u32 = 60_000;
/// The most keys in one `KeyList` message.
pub const MAX_KEYS_PER_MESSAGE: usize = 10_000;
/// The most queries a batch lookup keeps in flight.
pub const MAX_PARALLEL: u32 = 16;
/// The longest a batch lookup's chunk query may take.
pub const MAX_QUERY_DEADLINE_MS: u32 = 600_000;

/// Cheap to clone: a batch lookup's task holds its own.
#[derive(Clone)]
pub struct LookupService {
    state: Arc<State>,
    flight: Arc<CoordinatorFlight>,
}

impl LookupService {
    pub fn new(state: Arc<State>, flight: Arc<CoordinatorFlight>) -> LookupService {
        LookupService { state, flight }
    }
}

/// The datasets a lookup by `key_type` reads for `member`: its active
/// grants that include a field of that key type (the first such field in
/// the dataset's order), sorted by department and dataset. A dataset named
/// in `only` without such a grant is refused, naming it.
pub fn lookup_targets(
    state: &State,
    member: &str,
    key_type: &str,
    only: &[String],
) -> Result<Vec<pb::LookupTarget>, Status> {
    if !matches!(key_type, "person_id" | "org_code") {
        return Err(Status::invalid_argument(unsupported_key_type(key_type)));
    }
    let grants: Vec<_> = state
        .access
        .grants_of(member)
        .map_err(access_status)?
        .into_iter()
        .filter(|g| g.consumer == member && g.status == "active")
        .filter(|g| only.is_empty() || only.contains(&g.dataset))
        .collect();
    for name in only {
        if !grants.iter().any(|g| &g.dataset == name) {
            return Err(Refusal::GrantMissing.status(format!(
                "{member} holds no active grant on {:?}; nothing was read. Ask for one with Access.RequestAccess (`exchange access request {name} --purpose ...`)",
                name.chars().take(200).collect::<String>()
            )));
        }
    }
    let mut targets = Vec::new();
    for grant in &grants {
        let Some(dataset) = state.federation.dataset(&grant.dataset) else {
            continue;
        };
        let key_field = dataset.fields.iter().find(|spec| {
            spec.key_type == key_type && grant.fields.iter().any(|(name, _)| name == &spec.name)
        });
        match key_field {
            Some(spec) => targets.push(pb::LookupTarget {
                dataset: grant.dataset.clone(),
                department: grant.owner.clone(),
                key_field: spec.name.clone(),
                key_mask: grant
                    .fields
                    .iter()
                    .find(|(name, _)| name == &spec.name)
                    .map(|(_, mask)| mask.clone())
                    .unwrap_or_default(),
            }),
            None if !only.is_empty() => {
                return Err(Status::invalid_argument(format!(
                    "{} has no {key_type} field in your grant; nothing was read",
                    grant.dataset
                )))
            }
            None => {}
        }
    }
    targets.sort_by(|a, b| (&a.department, &a.dataset).cmp(&(&b.department, &b.dataset)));
    Ok(targets)
}

/// How a failed query counts in a lookup.
fn classify(status: &Status) -> (pb::LookupStatus, String) {
    let kind = match status.code() {
        Code::PermissionDenied | Code::ResourceExhausted => pb::LookupStatus::Denied,
        Code::Unavailable => pb::LookupStatus::Offline,
        Code::DeadlineExceeded => pb::LookupStatus::TimedOut,
        _ => pb::LookupStatus::Error,
    };
    (kind, status.message().to_string())
}

fn flight_failure(e: FlightError) -> (pb::LookupStatus, String) {
    match e {
        FlightError::Tonic(status) => classify(&status),
        other => (pb::LookupStatus::Error, other.to_string()),
    }
}

fn timed_out(setting: &str) -> (pb::LookupStatus, String) {
    (
        pb::LookupStatus::TimedOut,
        format!(
            "no complete answer before the deadline ({setting}): the owner or its database is slow"
        ),
    )
}

/// Record batches as one Arrow IPC stream: the schema, then the batches.
pub fn ipc_bytes(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, Status> {
    let encode = || {
        let mut writer = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), schema)?;
        for batch in batches {
            writer.write(batch)?;
        }
        writer.into_inner()
    };
    encode().map_err(|e| Status::internal(format!("encoding rows as Arrow IPC: {e}")))
}

/// One query's answer: its schema and batches, or why it failed.
type Answer = Result<(SchemaRef, Vec<RecordBatch>), (pb::LookupStatus, String)>;

impl LookupService {
    /// Runs `filter` on a target as `caller` and collects its answer.
    async fn read(
        &self,
        caller: &Identity,
        target: &pb::LookupTarget,
        filter: String,
        purpose: &str,
        user: &str,
    ) -> Answer {
        let command = QueryCommand {
            dataset: target.dataset.clone(),
            fields: vec![],
            filter,
            purpose: purpose.to_string(),
            user: user.to_string(),
            limit: None,
        };
        let frames = self
            .flight
            .run_query(caller, &command)
            .await
            .map_err(|s| classify(&s))?;
        let mut stream = FlightRecordBatchStream::new_from_flight_data(
            frames.map(|f| f.map_err(|s| FlightError::Tonic(Box::new(s)))),
        );
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            batches.push(batch.map_err(flight_failure)?);
        }
        let schema = match (batches.first(), stream.schema()) {
            (Some(b), _) => b.schema(),
            (None, Some(s)) => s.clone(),
            (None, None) => Arc::new(arrow_schema::Schema::empty()),
        };
        Ok((schema, batches))
    }

    async fn answer_one(
        &self,
        caller: &Identity,
        target: pb::LookupTarget,
        key: &str,
        req: &pb::LookupRequest,
        deadline: Instant,
    ) -> pb::DatasetAnswer {
        let started = Instant::now();
        // The key passed its check characters: digits and capital letters only.
        let filter = format!("{} = '{key}'", target.key_field);
        let remaining = deadline.saturating_duration_since(started);
        let answer = tokio::time::timeout(
            remaining,
            self.read(caller, &target, filter, &req.purpose, &req.user),
        )
        .await
        .unwrap_or_else(|_| {
            Err(timed_out(
                "deadline_ms; `--deadline-ms` on the command line",
            ))
        });
        let mut message = pb::DatasetAnswer {
            target: Some(target),
            elapsed_ms: started.elapsed().as_millis() as u32,
            ..Default::default()
        };
        match answer.and_then(|(schema, batches)| {
            let bytes = ipc_bytes(&schema, &batches).map_err(|s| classify(&s))?;
            Ok((batches.iter().map(|b| b.num_rows() as u64).sum(), bytes))
        }) {
            Ok((rows, bytes)) => {
                message.set_status(pb::LookupStatus::Ok);
                message.rows = rows;
                message.arrow_ipc = bytes;
            }
            Err((status, detail)) => {
                message.set_status(status);
                message.detail = detail;
            }
        }
        message
    }
}

fn check_purpose(purpose: &str, what: &str) -> Result<(), Status> {
    if purpose.trim().is_empty() {
        return Err(Refusal::PurposeRequired.status(format!(
            "a {what} must state its purpose (the request's \"purpose\"; `--purpose` on the command line): who uses the data answers for it"
        )));
    }
    Ok(())
}

/// Keys waiting to be sent as chunks.
struct PendingKeys {
    keys: Vec<String>,
    chunk_size: usize,
}

impl PendingKeys {
    /// A full chunk, or what is left once no more keys will come.
    fn take_chunk(&mut self, finished: bool) -> Option<Arc<Vec<String>>> {
        if self.keys.len() >= self.chunk_size || (finished && !self.keys.is_empty()) {
            let n = self.chunk_size.min(self.keys.len());
            Some(Arc::new(self.keys.drain(..n).collect()))
        } else {
            None
        }
    }
}

/// A batch lookup's settings, checked.
struct BatchPlan {
    caller: Identity,
    key_type: String,
    purpose: String,
    user: String,
    targets: Vec<pb::LookupTarget>,
    parallel: usize,
    query_deadline: Duration,
}

fn bounded(value: u32, default: u32, max: u32, name: &str) -> Result<u32, Status> {
    match value {
        0 => Ok(default),
        v if v <= max => Ok(v),
        v => Err(Status::invalid_argument(format!(
            "{name} {v} is too large: give 1 to {max}, or 0 for {default}"
        ))),
    }
}

type EventSender = mpsc::Sender<Result<pb::BatchLookupEvent, Status>>;

fn event(e: pb::batch_lookup_event::Event) -> Result<pb::BatchLookupEvent, Status> {
    Ok(pb::BatchLookupEvent { event: Some(e) })
}

impl LookupService {
    /// Reads keys from `inbound` and answers them chunk by chunk until the
    /// caller has sent its last key and every chunk has answered, or the
    /// caller has gone.
    async fn run_batch(
        self,
        plan: BatchPlan,
        mut pending: PendingKeys,
        mut inbound: Streaming<pb::BatchLookupRequest>,
        tx: EventSender,
    ) {
        let mut in_flight = FuturesUnordered::new();
        let mut finished = false;
        loop {
            while in_flight.len() < plan.parallel {
                let Some(chunk) = pending.take_chunk(finished) else {
                    break;
                };
                for index in 0..plan.targets.len() {
                    in_flight.push(self.read_chunk(&plan, index, chunk.clone()));
                }
            }
            if finished && in_flight.is_empty() {
                return;
            }
            let wants_keys = !finished && pending.keys.len() < 2 * pending.chunk_size;
            tokio::select! {
                message = inbound.message(), if wants_keys => match message {
                    Ok(Some(pb::BatchLookupRequest { message: Some(pb::batch_lookup_request::Message::Keys(list)) })) => {
                        if let Err(status) = accept_keys(&plan.key_type, list, &mut pending, &tx).await {
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    }
                    Ok(Some(_)) => {
                        let _ = tx.send(Err(Status::invalid_argument("only the first BatchLookup message is `start`; send the keys as `keys` messages"))).await;
                        return;
                    }
                    Ok(None) => finished = true,
                    // The caller has gone, or broke its stream: stop.
                    Err(_) => return,
                },
                Some((target, keys, answer)) = in_flight.next(), if !in_flight.is_empty() => {
                    if self.send_chunk(target, keys, answer, &tx).await.is_err() {
                        return;
                    }
                }
                // Not reached (with keys waiting, a chunk is in flight), but
                // a loop with nothing to wait on must end, not spin or panic.
                else => return,
            }
        }
    }

    async fn read_chunk(
        &self,
        plan: &BatchPlan,
        index: usize,
        keys: Arc<Vec<String>>,
    ) -> (usize, usize, Answer) {
        let target = &plan.targets[index];
        let list: Vec<String> = keys.iter().map(|k| format!("'{k}'")).collect();
        let filter = format!("{} IN ({})", target.key_field, list.join(","));
        let answer = tokio::time::timeout(
            plan.query_deadline,
            self.read(&plan.caller, target, filter, &plan.purpose, &plan.user),
        )
        .await
        .unwrap_or_else(|_| Err(timed_out("the batch lookup's query_deadline_ms")));
        (index, keys.len(), answer)
    }

    async fn send_chunk(
        &self,
        target: usize,
        keys: usize,
        answer: Answer,
        tx: &EventSender,
    ) -> Result<(), mpsc::error::SendError<Result<pb::BatchLookupEvent, Status>>> {
        use pb::batch_lookup_event::Event;
        let mut done = pb::ChunkDone {
            target: target as u32,
            keys: keys as u32,
            ..Default::default()
        };
        match answer {
            Ok((schema, batches)) => {
                for batch in &batches {
                    let rows = match ipc_bytes(&schema, std::slice::from_ref(batch)) {
                        Ok(bytes) => pb::BatchRows {
                            target: target as u32,
                            rows: batch.num_rows() as u64,
                            arrow_ipc: bytes,
                        },
                        Err(status) => return tx.send(Err(status)).await,
                    };
                    tx.send(event(Event::Rows(rows))).await?;
                }
                done.set_status(pb::LookupStatus::Ok);
            }
            Err((status, detail)) => {
                done.set_status(status);
                done.detail = detail;
            }
        }
        tx.send(event(Event::ChunkDone(done))).await
    }
}

/// Checks each key of one `KeyList`: valid keys wait for their chunk, and
/// malformed ones are reported back.
async fn accept_keys(
    key_type: &str,
    list: pb::KeyList,
    pending: &mut PendingKeys,
    tx: &EventSender,
) -> Result<(), Status> {
    use pb::batch_lookup_event::Event;
    if list.keys.len() > MAX_KEYS_PER_MESSAGE {
        return Err(Status::invalid_argument(format!(
            "a keys message holds {} keys; send at most {MAX_KEYS_PER_MESSAGE} per message",
            list.keys.len()
        )));
    }
    for key in list.keys {
        match checked_key(key_type, &key) {
            Ok(key) => pending.keys.push(key),
            Err(reason) => {
                let rejected = pb::RejectedKey {
                    key: key.chars().take(40).collect(),
                    reason,
                };
                tx.send(event(Event::Rejected(rejected)))
                    .await
                    .map_err(|_| Status::cancelled("the caller has gone"))?;
            }
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl pb::lookups_server::Lookups for LookupService {
    type BatchLookupStream = BoxStream<'static, Result<pb::BatchLookupEvent, Status>>;

    async fn targets(
        &self,
        request: Request<pb::LookupTargetsRequest>,
    ) -> Result<Response<pb::LookupTargetList>, Status> {
        let peer = require_role(&request, &[Role::Client])?;
        let req = request.into_inner();
        let targets = lookup_targets(
            &self.state,
            &peer.identity.member_id,
            &req.key_type,
            &req.datasets,
        )?;
        Ok(Response::new(pb::LookupTargetList { targets }))
    }

    async fn lookup(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::LookupResponse>, Status> {
        let started = Instant::now();
        let peer = require_role(&request, &[Role::Client])?;
        let req = request.into_inner();
        let key = checked_key(&req.key_type, &req.key).map_err(Status::invalid_argument)?;
        check_purpose(&req.purpose, "lookup")?;
        let deadline_ms = bounded(
            req.deadline_ms,
            DEFAULT_DEADLINE_MS,
            MAX_DEADLINE_MS,
            "deadline_ms",
        )?;
        let deadline = started + Duration::from_millis(deadline_ms as u64);
        let targets = lookup_targets(
            &self.state,
            &peer.identity.member_id,
            &req.key_type,
            &req.datasets,
        )?;
        let asks = targets
            .into_iter()
            .map(|target| self.answer_one(&peer.identity, target, &key, &req, deadline));
        let answers = futures::future::join_all(asks).await;
        Ok(Response::new(pb::LookupResponse {
            key_type: req.key_type.clone(),
            key,
            answers,
            elapsed_ms: started.elapsed().as_millis() as u32,
        }))
    }

    async fn batch_lookup(
        &self,
        request: Request<Streaming<pb::BatchLookupRequest>>,
    ) -> Result<Response<Self::BatchLookupStream>, Status> {
        use pb::batch_lookup_event::Event;
        let peer = require_role(&request, &[Role::Client])?;
        let mut inbound = request.into_inner();
        let start = match inbound.message().await? {
            Some(pb::BatchLookupRequest {
                message: Some(pb::batch_lookup_request::Message::Start(start)),
            }) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "the first BatchLookup message must be `start` (key_type, purpose, ...); the keys follow as `keys` messages",
                ))
            }
        };
        check_purpose(&start.purpose, "batch lookup")?;
        let chunk_size = bounded(
            start.chunk_size,
            1_000,
            exchange_query::MAX_IN_VALUES as u32,
            "chunk_size",
        )?;
        let parallel = bounded(start.parallel, 6, MAX_PARALLEL, "parallel")?;
        let query_deadline_ms = bounded(
            start.query_deadline_ms,
            60_000,
            MAX_QUERY_DEADLINE_MS,
            "query_deadline_ms",
        )?;
        let targets = lookup_targets(
            &self.state,
            &peer.identity.member_id,
            &start.key_type,
            &start.datasets,
        )?;
        if targets.is_empty() {
            return Err(Status::failed_precondition(format!(
                "no dataset to look the keys up in: {} holds no active grant on a dataset with a {} field",
                peer.identity.member_id, start.key_type
            )));
        }
        let (tx, rx) = mpsc::channel(16);
        let _ = tx
            .send(event(Event::Targets(pb::LookupTargetList {
                targets: targets.clone(),
            })))
            .await;
        let plan = BatchPlan {
            caller: peer.identity.clone(),
            key_type: start.key_type,
            purpose: start.purpose,
            user: start.user,
            targets,
            parallel: parallel as usize,
            query_deadline: Duration::from_millis(query_deadline_ms as u64),
        };
        let pending = PendingKeys {
            keys: Vec::new(),
            chunk_size: chunk_size as usize,
        };
        tokio::spawn(self.clone().run_batch(plan, pending, inbound, tx));
        Ok(Response::new(
            tokio_stream::wrappers::ReceiverStream::new(rx).boxed(),
        ))
    }
}

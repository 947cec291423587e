//! The node's Arrow Flight endpoint: `DoGet` with a coordinator-signed ticket.
//!
//! Only the coordinator may redeem tickets here (it relays the frames to the
//! consumer). For each ticket the node:
//!
//! 1. verifies the coordinator's signature, the validity window and that the
//!    ticket is for this department, and refuses a ticket it served before;
//! 2. applies its **own** policy on top: the local veto list, and secret
//!    fields, which never leave whatever the ticket says;
//! 3. reads the source with the ticket's fields, masks and filters, and
//!    streams masked Arrow batches back as Flight data.

use std::sync::{Arc, Mutex};

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use exchange_audit::{
    Event, FieldMask, QueryCompletion, QueryKeys, QueryRefused, QueryServed, Record,
};
use exchange_pki::Role;
use exchange_policy::ticket::{ReplayGuard, Ticket as QueryTicket};
use exchange_policy::{Mask, Sensitivity};
use exchange_query::{FieldInfo, Filter};
use exchange_source::{Projection, ReadPlan, DEFAULT_BATCH_ROWS};
use exchange_transport::completion::watch_completion;
use exchange_transport::prefetch::ready_first;
use exchange_transport::require_role;
use futures::stream::BoxStream;
use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::NodeState;

/// The node's Flight service.
pub struct NodeFlight {
    state: Arc<NodeState>,
    replay: Mutex<ReplayGuard>,
}

impl std::fmt::Debug for NodeFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeFlight")
    }
}

impl NodeFlight {
    fn finish(
        &self,
        ticket: &QueryTicket,
        rows: u64,
        bytes: u64,
        started: std::time::Instant,
        status: String,
    ) {
        finish_record(&self.state, ticket, rows, bytes, started, status);
    }

    pub fn new(state: Arc<NodeState>) -> NodeFlight {
        NodeFlight {
            state,
            replay: Mutex::new(ReplayGuard::default()),
        }
    }

    /// Everything between the ticket and the read plan, so it can be tested
    /// without a network.
    /// Also answers how many values the consumer's filter tests against
    /// fields it receives masked, for the served record.
    pub fn plan(
        &self,
        envelope: &str,
        now_unix: i64,
    ) -> Result<(QueryTicket, ReadPlan, u64), Status> {
        let verifier = self
            .state
            .ticket_key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| Status::unavailable("this node has not yet received the coordinator's ticket key; retry after its next heartbeat"))?;
        let ticket = QueryTicket::open(envelope, &verifier, &self.state.member_id, now_unix)
            .map_err(|e| Status::permission_denied(e.to_string()))?;
        let config = &self.state.config;
        if config.veto_consumers.iter().any(|c| c == &ticket.consumer) {
            return Err(Status::permission_denied(format!(
                "{} refuses queries from {} (local veto)",
                self.state.member_id, ticket.consumer
            )));
        }
        let current = self.state.current();
        let local = ticket
            .dataset
            .split_once('/')
            .map(|(_, d)| d)
            .unwrap_or_default();
        if config
            .veto_datasets
            .iter()
            .any(|d| d == local || d == &ticket.dataset)
        {
            return Err(Status::permission_denied(format!(
                "{} does not currently release {} (local veto)",
                self.state.member_id, ticket.dataset
            )));
        }
        let dataset = current
            .manifest
            .datasets
            .iter()
            .find(|d| d.id == local)
            .ok_or_else(|| {
                Status::not_found(format!("{} is not in this node's catalog", ticket.dataset))
            })?
            .clone();
        let dataset_fields = dataset.fields.clone();
        let mut columns = Vec::with_capacity(ticket.fields.len());
        for tf in &ticket.fields {
            let field = dataset
                .fields
                .iter()
                .find(|f| f.name == tf.name)
                .ok_or_else(|| {
                    Status::not_found(format!("{} has no field {}", ticket.dataset, tf.name))
                })?;
            if field.sensitivity == Sensitivity::Secret {
                return Err(Status::permission_denied(format!(
                    "field {} of {} is secret: this node never releases it, whatever a ticket says",
                    tf.name, ticket.dataset
                )));
            }
            let mask: Mask = tf
                .mask
                .parse()
                .map_err(|e: String| Status::invalid_argument(e))?;
            columns.push(Projection {
                field: field.clone(),
                mask,
            });
        }
        // The consumer's filter may use the fields it selected, masked as
        // its ticket says; the owner's row filter may use any field that is
        // not secret, unmasked, whatever the consumer selected: exactly
        // what the coordinator checked it against when the owner approved.
        let consumer_lookup = |name: &str| -> Option<FieldInfo> {
            let p = columns.iter().find(|p| p.field.name == name)?;
            Some(FieldInfo {
                field_type: p.field.field_type,
                masked: p.mask != Mask::None,
            })
        };
        let owner_lookup = |name: &str| -> Option<FieldInfo> {
            let f = dataset_fields
                .iter()
                .find(|f| f.name == name && f.sensitivity != Sensitivity::Secret)?;
            Some(FieldInfo {
                field_type: f.field_type,
                masked: false,
            })
        };
        let checked = |text: &str, lookup: &dyn Fn(&str) -> Option<FieldInfo>| {
            exchange_query::parse(text)
                .and_then(|f| f.check(lookup))
                .map_err(|e| Status::invalid_argument(e.to_string()))
        };
        let mut parts = Vec::new();
        let mut masked_values = 0;
        if !ticket.filter.is_empty() {
            let filter = checked(&ticket.filter, &consumer_lookup)?;
            let masked = |name: &str| consumer_lookup(name).is_some_and(|f| f.masked);
            masked_values = filter.values_on(&masked).len() as u64;
            parts.push(filter);
        }
        if !ticket.row_filter.is_empty() {
            parts.push(checked(&ticket.row_filter, &owner_lookup)?);
        }
        let filter = match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(Filter::And(parts)),
        };
        self.replay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(&ticket, now_unix)
            .map_err(|e| Status::permission_denied(e.to_string()))?;
        let plan = ReadPlan {
            dataset,
            columns,
            filter,
            limit: ticket.limit,
            batch_rows: DEFAULT_BATCH_ROWS,
            subject_keys: plan_subject_keys(&dataset_fields),
        };
        Ok((ticket, plan, masked_values))
    }
}

/// The manifest fields whose values identify data subjects.
fn plan_subject_keys(
    fields: &[exchange_catalog::manifest::FieldSpec],
) -> Vec<exchange_catalog::manifest::FieldSpec> {
    fields
        .iter()
        .filter(|f| matches!(f.key_type.as_deref(), Some("person_id") | Some("org_code")))
        .cloned()
        .collect()
}

fn clip(text: &str) -> String {
    text.chars().take(200).collect()
}

fn filter_digest(filter: &str, row_filter: &str) -> String {
    if filter.is_empty() && row_filter.is_empty() {
        return String::new();
    }
    let text = format!("{filter}\n{row_filter}");
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}

/// Turns source batches into batches that may leave: each one only after
/// its audit records are durable.
struct WriteAhead {
    rx: exchange_source::BatchStream,
    /// The served record, until it is written with the first batch.
    served: Option<Record>,
    query_id: String,
    key_types: Vec<String>,
    tally: Arc<Mutex<(u64, usize)>>,
    done: bool,
    /// The node: its audit log, and its sources' health.
    node: Arc<NodeState>,
    /// The source database read.
    database: String,
}

impl WriteAhead {
    fn audit_failed(e: exchange_audit::AuditError) -> FlightError {
        FlightError::Tonic(Box::new(Status::internal(format!(
            "the owner's audit log could not record the query, so it stopped before any more rows left: {e}"
        ))))
    }

    async fn next(&mut self) -> Option<Result<arrow_array::RecordBatch, FlightError>> {
        if self.done {
            return None;
        }
        let Some(item) = self.rx.recv().await else {
            self.done = true;
            self.node.source_health.answered(&self.database);
            // No rows at all: the served record is still written.
            if let Some(served) = self.served.take() {
                if let Err(e) = self.node.audit.append(&served).await {
                    return Some(Err(Self::audit_failed(e)));
                }
            }
            return None;
        };
        let batch = match item {
            Ok(b) => b,
            Err(e) => {
                self.done = true;
                if let Some(served) = self.served.take() {
                    let _ = self.node.audit.append(&served).await;
                }
                let status =
                    self.node
                        .source_health
                        .failed(&self.node.member_id, &self.database, &e);
                return Some(Err(FlightError::Tonic(Box::new(status))));
            }
        };
        let batch_no = {
            let mut t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
            t.0 += batch.batch.num_rows() as u64;
            t.1 += 1;
            t.1
        };
        if batch_no == 2 && exchange_audit::fault_armed("node-mid-stream") {
            // Let the first batch reach the consumer, then die.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            exchange_audit::fault_point("node-mid-stream");
        }
        let mut records: Vec<Record> = self.served.take().into_iter().collect();
        for (key_type, keys) in self.key_types.iter().zip(batch.subject_keys) {
            if !keys.is_empty() {
                records.push(Record::now(Event::QueryKeys(QueryKeys {
                    query_id: self.query_id.clone(),
                    key_type: key_type.clone(),
                    keys,
                })));
            }
        }
        if let Err(e) = self.node.audit.append_all(&records).await {
            self.done = true;
            return Some(Err(Self::audit_failed(e)));
        }
        if batch_no == 1 {
            exchange_audit::fault_point("node-before-first-batch");
        }
        Some(Ok(batch.batch))
    }
}

/// A frame that carries no rows yet: the schema (an error is an answer).
fn is_schema_frame(frame: &Result<FlightData, Status>) -> bool {
    frame.as_ref().is_ok_and(|f| f.data_body.is_empty())
}

fn finish_record(
    state: &NodeState,
    ticket: &QueryTicket,
    rows: u64,
    bytes: u64,
    started: std::time::Instant,
    status: String,
) {
    state
        .audit
        .append_detached(&Record::now(Event::QueryFinished(QueryCompletion {
            query_id: ticket.query_id.clone(),
            ticket_id: ticket.id.clone(),
            dataset: ticket.dataset.clone(),
            consumer: ticket.consumer.clone(),
            rows,
            bytes,
            duration_ms: started.elapsed().as_millis() as u64,
            status,
        })));
}

fn unsupported<T>(method: &str) -> Result<T, Status> {
    exchange_transport::completion::unsupported(
        method,
        "a node answers only tickets relayed by the coordinator; query through the coordinator",
    )
}

#[tonic::async_trait]
impl FlightService for NodeFlight {
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let peer = require_role(&request, &[Role::Coordinator])?;
        let envelope = std::str::from_utf8(&request.get_ref().ticket)
            .map_err(|_| Status::invalid_argument("the ticket is not text"))?
            .to_string();
        let (ticket, plan, masked_values) = match self.plan(&envelope, exchange_pki::now_unix()) {
            Ok(p) => p,
            Err(status) => {
                tracing::warn!(relay = %peer.identity, reason = %exchange_policy::text::for_log(status.message(), 500), "query refused");
                // What the (possibly forged) ticket claims, for the record.
                let claimed: Option<QueryTicket> = envelope
                    .split_once('.')
                    .and_then(|(p, _)| {
                        use base64::Engine;
                        base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .decode(p)
                            .ok()
                    })
                    .and_then(|b| serde_json::from_slice(&b).ok());
                let refused = QueryRefused {
                    query_id: claimed
                        .as_ref()
                        .map(|t| clip(&t.query_id))
                        .unwrap_or_default(),
                    ticket_id: claimed.as_ref().map(|t| clip(&t.id)).unwrap_or_default(),
                    consumer: claimed
                        .as_ref()
                        .map(|t| clip(&t.consumer))
                        .unwrap_or_default(),
                    dataset: claimed
                        .as_ref()
                        .map(|t| clip(&t.dataset))
                        .unwrap_or_default(),
                    reason: status.message().to_string(),
                };
                if let Err(e) = self
                    .state
                    .audit
                    .append(&Record::now(Event::QueryRefused(refused)))
                    .await
                {
                    tracing::error!(error = %e, "a refusal could not be audited");
                }
                return Err(status);
            }
        };
        let hash_key = self.state.mask_key_for(&ticket.consumer).await?;
        let current = self.state.current();
        let source = current
            .sources
            .get(&plan.dataset.database)
            .ok_or_else(|| Status::internal("the dataset's database is not open"))?
            .clone();
        let served = Record::now(Event::QueryServed(QueryServed {
            query_id: ticket.query_id.clone(),
            ticket_id: ticket.id.clone(),
            consumer: ticket.consumer.clone(),
            user: ticket.user.clone(),
            purpose: ticket.purpose.clone(),
            dataset: ticket.dataset.clone(),
            grant_id: ticket.grant_id.clone(),
            fields: plan
                .columns
                .iter()
                .map(|p| FieldMask {
                    name: p.field.name.clone(),
                    mask: p.mask.to_string(),
                })
                .collect(),
            filter_digest: filter_digest(&ticket.filter, &ticket.row_filter),
            embargo_until: ticket.embargo_until.clone(),
            masked_values,
        }));
        let key_types: Vec<String> = plan
            .subject_keys
            .iter()
            .map(|f| f.key_type.clone().unwrap_or_default())
            .collect();
        let started = std::time::Instant::now();
        let database = plan.dataset.database.clone();
        let (schema, rx) = match source.read(plan, hash_key) {
            Ok(r) => r,
            Err(e) => {
                let status = self
                    .state
                    .source_health
                    .failed(&self.state.member_id, &database, &e);
                if let Err(e) = self.state.audit.append(&served).await {
                    tracing::error!(error = %e, "a failed query could not be audited");
                }
                self.finish(&ticket, 0, 0, started, format!("error: {e}"));
                return Err(status);
            }
        };
        tracing::info!(query = %ticket.query_id, ticket = %ticket.id, consumer = %ticket.consumer, user = %ticket.user, purpose = %ticket.purpose, dataset = %ticket.dataset, "serving query");
        // Write-ahead: the served record, together with the first batch's
        // subject keys, is durable before that batch leaves (one flush);
        // each later batch's keys are durable before it leaves. The source
        // is read meanwhile, but nothing leaves the node unrecorded.
        let tally = Arc::new(Mutex::new((0u64, 0usize)));
        let state = WriteAhead {
            rx,
            served: Some(served),
            query_id: ticket.query_id.clone(),
            key_types,
            tally: tally.clone(),
            done: false,
            node: self.state.clone(),
            database,
        };
        let batches = futures::stream::unfold(state, |mut w| async move {
            let item = w.next().await?;
            Some((item, w))
        });
        let frames = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map(|r| r.map_err(Status::from));
        let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = bytes.clone();
        let check = move |frame: &FlightData| {
            let size = (frame.data_body.len() + frame.data_header.len()) as u64;
            counted.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        };
        let node = self.state.clone();
        let finish = move |status: String| {
            let rows = tally.lock().unwrap_or_else(|p| p.into_inner()).0;
            let bytes = bytes.load(std::sync::atomic::Ordering::Relaxed);
            finish_record(&node, &ticket, rows, bytes, started, status);
        };
        let frames = watch_completion(frames, check, finish);
        // Leave with the first batch (and the end, when it is the only one)
        // rather than with the headers alone.
        let frames = ready_first(frames.boxed(), 4, is_schema_frame).await;
        Ok(Response::new(frames))
    }

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        unsupported("Handshake")
    }
    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        unsupported("ListFlights")
    }
    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        unsupported("GetFlightInfo")
    }
    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unsupported("PollFlightInfo")
    }
    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        unsupported("GetSchema")
    }
    async fn do_put(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        unsupported("DoPut")
    }
    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unsupported("DoExchange")
    }
    async fn do_action(
        &self,
        _: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        unsupported("DoAction")
    }
    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        unsupported("ListActions")
    }
}

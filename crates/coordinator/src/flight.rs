//! The coordinator's Arrow Flight endpoint, where consumers query.
//!
//! - `GetFlightInfo` takes a [`QueryCommand`] (JSON in the descriptor's
//!   command, `proto/query-command.schema.json`), a path descriptor, or a
//!   Flight SQL statement ([`crate::flight_sql`]); checks it against the
//!   caller's active grant (dataset, fields, expiry, filter on granted
//!   fields), and answers with the result's masked schema and one endpoint
//!   whose ticket is signed by the coordinator and valid for 60 seconds.
//! - `DoGet` accepts only a ticket issued to the caller's own department,
//!   forwards it to the owning node over mutual TLS and relays the node's
//!   Flight frames untouched. A denial names the rule that denied it.
//!   `DoGet` also accepts the JSON query command itself as its ticket; it is
//!   authorized exactly as by `GetFlightInfo`, saving one round trip. Flight
//!   SQL catalog tickets are answered here, from the federation's catalog.
//! - `GetSchema` answers the schema a query would return, checked against
//!   the grant but not run; `ListFlights` lists the caller's grants.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use arrow_schema::Schema;
use exchange_audit::{Event, QueryCompletion, QueryDecision, Record};
use exchange_pki::{Identity, Role};
use exchange_policy::text::{for_log, request_text, TextRule};
use exchange_policy::ticket::{ReplayGuard, Ticket as QueryTicket, TicketField};
use exchange_policy::FieldType;
use exchange_proto::v1 as pb;
use exchange_query::{FieldInfo, QueryCommand};
use exchange_transport::client::{connect, ClientOptions, ExpectedServer};
use exchange_transport::completion::{watch_completion, SOURCE_STATUS_KEY};
use exchange_transport::prefetch::ready_first;
use exchange_transport::refusal::Refusal;
use exchange_transport::require_role;
use exchange_transport::Channel;
use futures::stream::BoxStream;
use futures::StreamExt;
use prost::bytes::Bytes;
use tonic::{Request, Response, Status, Streaming};

use crate::access::GrantRecord;
use crate::flight_sql::{
    asked_by_bytes, asked_by_descriptor, catalog_answer, catalog_info, catalog_schema,
    check_path_purpose, default_fields, is_flight_sql_ticket, result_schema, Asked, Table,
};
use crate::probes::{ProbeRefusal, MAX_TESTS_PER_VALUE};
use crate::registry::now_unix;
use crate::service::State;

/// A query's purpose: who uses the data answers for it.
const PURPOSE_RULE: TextRule = TextRule::required_line(
    500,
    "a query must state its purpose (the command's \"purpose\"; `--purpose` on the command line): who uses the data answers for it",
);

/// How long a ticket stays valid.
pub const TICKET_LIFETIME_SECS: i64 = 60;
/// The largest row limit a query may ask for.
pub const MAX_LIMIT: u64 = 100_000_000;

pub struct CoordinatorFlight {
    state: Arc<State>,
    nodes: Mutex<HashMap<String, (String, Channel)>>,
    /// Tickets already presented to `DoGet`: a replay is refused here,
    /// before it reaches the node, and writes no second completion record
    /// for the query it copies.
    relayed: Mutex<ReplayGuard>,
}

impl std::fmt::Debug for CoordinatorFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CoordinatorFlight")
    }
}

fn random_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the operating system's random source failed");
    hex::encode(b)
}

impl CoordinatorFlight {
    pub fn new(state: Arc<State>) -> CoordinatorFlight {
        CoordinatorFlight {
            state,
            nodes: Mutex::new(HashMap::new()),
            relayed: Mutex::new(ReplayGuard::default()),
        }
    }

    /// Checks a query against the consumer's grant and builds its ticket;
    /// also answers how many values it tests against masked fields.
    pub fn authorize(
        &self,
        consumer: &Identity,
        cmd: &QueryCommand,
    ) -> Result<(QueryTicket, u64), Status> {
        let purpose = request_text("purpose", &cmd.purpose, PURPOSE_RULE).map_err(|e| {
            let kind = if cmd.purpose.trim().is_empty() {
                Refusal::PurposeRequired
            } else {
                Refusal::InvalidRequest
            };
            kind.status(e.to_string())
        })?;
        let user = request_text("user", &cmd.user, TextRule::line(100))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (dataset, grant, fields) = self.granted_fields(consumer, &cmd.dataset, &cmd.fields)?;
        let (filter, masked_values) = consumer_filter(&cmd.filter, &dataset, &fields)?;
        if cmd.limit.is_some_and(|l| l == 0 || l > MAX_LIMIT) {
            return Err(Status::invalid_argument(format!(
                "limit must be 1 to {MAX_LIMIT}"
            )));
        }
        let mut limit = cmd.limit;
        if grant.quota_rows_per_day > 0 {
            let served = self
                .state
                .access
                .rows_served_today(&grant.id)
                .map_err(|e| Status::internal(e.to_string()))?;
            let remaining = grant.quota_rows_per_day.saturating_sub(served);
            if remaining == 0 {
                return Err(Refusal::QuotaExhausted.status(format!(
                    "denied by rule `daily quota`: grant {} has served its {} rows for today",
                    grant.id, grant.quota_rows_per_day
                )));
            }
            limit = Some(limit.map_or(remaining, |l| l.min(remaining)));
        }
        if !masked_values.is_empty() {
            self.spend_masked_value_budget(&grant, &masked_values)?;
        }
        let now = now_unix();
        let ticket = QueryTicket {
            version: 1,
            id: random_id(),
            query_id: format!("Q-{}", &random_id()[..12]),
            dataset: dataset.id.clone(),
            owner: dataset.department.clone(),
            consumer: consumer.member_id.clone(),
            user,
            purpose,
            grant_id: grant.id.clone(),
            fields,
            filter,
            row_filter: grant.row_filter.clone(),
            limit,
            issued_unix: now,
            expires_unix: now + TICKET_LIFETIME_SECS,
            embargo_until: grant.embargo_until.clone(),
        };
        Ok((ticket, masked_values.len() as u64))
    }

    /// The dataset, the caller's active grant on it, and the fields (with
    /// their masks) a query asking for `requested` would return; all of
    /// the grant's fields when `requested` is empty.
    fn granted_fields(
        &self,
        consumer: &Identity,
        dataset_id: &str,
        requested: &[String],
    ) -> Result<(pb::Dataset, GrantRecord, Vec<TicketField>), Status> {
        let dataset = self.state.federation.dataset(dataset_id).ok_or_else(|| {
            Refusal::DatasetUnknown.status(format!(
                "no dataset {:?}; find ids with Catalog.Search (`exchange catalog search`)",
                dataset_id.chars().take(100).collect::<String>()
            ))
        })?;
        let grant = self
            .state
            .access
            .active_grant(&consumer.member_id, &dataset.id)
            .ok_or_else(|| {
                Refusal::GrantMissing.status(format!(
                    "denied by rule `grant required`: {} holds no active grant on {}; ask with Access.RequestAccess (`exchange access request {} --purpose ...`)",
                    consumer.member_id, dataset.id, dataset.id
                ))
            })?;
        let mut fields = Vec::new();
        if requested.is_empty() {
            fields = grant
                .fields
                .iter()
                .map(|(n, m)| TicketField {
                    name: n.clone(),
                    mask: m.clone(),
                })
                .collect();
        } else {
            if requested.len() > 500 {
                return Err(Status::invalid_argument("too many fields"));
            }
            for name in requested {
                let Some((_, mask)) = grant.fields.iter().find(|(n, _)| n == name) else {
                    let known = dataset.fields.iter().any(|f| &f.name == name);
                    return Err(if known {
                        Refusal::FieldNotGranted.status(format!("denied by rule `fields within grant`: field {name} is outside grant {}", grant.id))
                    } else {
                        Refusal::FieldUnknown.status(format!(
                            "{} has no field {:?}",
                            dataset.id,
                            name.chars().take(64).collect::<String>()
                        ))
                    });
                };
                if !fields.iter().any(|f: &TicketField| &f.name == name) {
                    fields.push(TicketField {
                        name: name.clone(),
                        mask: mask.clone(),
                    });
                }
            }
        }
        Ok((dataset, grant, fields))
    }

    /// The schema a query would return, checked against the caller's grant
    /// like the query itself but not run, logged or counted.
    pub fn describe(&self, consumer: &Identity, cmd: &QueryCommand) -> Result<Schema, Status> {
        let (dataset, _, fields) = self.granted_fields(consumer, &cmd.dataset, &cmd.fields)?;
        result_schema(&dataset, &fields)
    }

    /// The schema of what a ticket's owner node will send.
    fn ticket_schema(&self, ticket: &QueryTicket) -> Result<Schema, Status> {
        let dataset = self
            .state
            .federation
            .dataset(&ticket.dataset)
            .ok_or_else(|| Status::not_found(format!("no dataset {}", ticket.dataset)))?;
        result_schema(&dataset, &ticket.fields)
    }

    /// Counts the values a query tests against fields its consumer sees
    /// masked in the grant's probe ledger, or refuses the query when they
    /// would exceed the day's budget of distinct values or test one value
    /// too often (see `crate::probes`).
    fn spend_masked_value_budget(
        &self,
        grant: &crate::access::GrantRecord,
        values: &[(String, String)],
    ) -> Result<(), Status> {
        let day = crate::access::date_text(crate::access::today());
        let budget = grant.masked_value_budget();
        let counted = self
            .state
            .probes
            .admit(&grant.id, &day, budget, values)
            .map_err(|e| Status::internal(e.to_string()))?;
        match counted {
            Ok(_) => Ok(()),
            Err(ProbeRefusal::Budget { tested_today, new }) => Err(Refusal::MaskedValueBudget.status(format!(
                "denied by rule `masked value budget`: this query tests {new} new values against fields masked for you; grant {} has tested {tested_today} today and its owner allows {budget} a day. Ask {} to raise it (access approve ... --masked-value-budget), or to unmask the field",
                grant.id, grant.owner
            ))),
            Err(ProbeRefusal::Repeated { field }) => Err(Refusal::MaskedValueBudget.status(format!(
                "denied by rule `masked value repeats`: a value of {field}, which is masked for you, was already tested {MAX_TESTS_PER_VALUE} times today under grant {} (testing one hidden value again and again is how a mask is bisected); ask {} to unmask the field if your work needs it",
                grant.id, grant.owner
            ))),
        }
    }

    /// [`Self::authorize`], with the decision made durable in the audit log
    /// either way before the caller goes on: no ticket leaves, and no node
    /// is asked, before its record is on disk.
    async fn authorize_logged(
        &self,
        consumer: &Identity,
        cmd: &QueryCommand,
    ) -> Result<QueryTicket, Status> {
        let decided = self.authorize(consumer, cmd);
        let decision = match &decided {
            Ok((t, masked_values)) => QueryDecision {
                query_id: t.query_id.clone(),
                ticket_id: t.id.clone(),
                consumer: t.consumer.clone(),
                user: t.user.clone(),
                purpose: t.purpose.clone(),
                dataset: t.dataset.clone(),
                owner: t.owner.clone(),
                fields: t.fields.iter().map(|f| f.name.clone()).collect(),
                filter_digest: filter_digest(&t.filter),
                allowed: true,
                rule: "grant".into(),
                reason: String::new(),
                grant_id: t.grant_id.clone(),
                embargo_until: t.embargo_until.clone(),
                masked_values: *masked_values,
            },
            Err(status) => QueryDecision {
                query_id: format!("Q-{}", &random_id()[..12]),
                consumer: consumer.member_id.clone(),
                user: clip(&cmd.user, 100),
                purpose: clip(&cmd.purpose, 500),
                dataset: clip(&cmd.dataset, 200),
                owner: self
                    .state
                    .federation
                    .dataset(&cmd.dataset)
                    .map(|d| d.department)
                    .unwrap_or_default(),
                fields: cmd.fields.iter().take(500).map(|f| clip(f, 100)).collect(),
                filter_digest: filter_digest(&cmd.filter),
                allowed: false,
                rule: denial_rule(status),
                reason: status.message().to_string(),
                ..Default::default()
            },
        };
        let record = Record::now(Event::QueryDecision(decision));
        if let Err(e) = self.state.audit.append(&record).await {
            tracing::error!(error = %e, "query refused: its audit record could not be written");
            return Err(Status::unavailable(format!("query refused: {e}")));
        }
        match decided {
            Ok((ticket, _)) => {
                tracing::info!(query = %ticket.query_id, %consumer, user = %ticket.user, dataset = %ticket.dataset, grant = %ticket.grant_id, purpose = %ticket.purpose, "query authorized");
                Ok(ticket)
            }
            Err(status) => {
                tracing::warn!(%consumer, dataset = %for_log(&cmd.dataset, 200), reason = %for_log(status.message(), 500), "query denied");
                Err(status)
            }
        }
    }

    /// Answers a Flight SQL catalog request given as a `DoGet` ticket.
    fn catalog_stream(
        &self,
        caller: &Identity,
        request: &Request<Ticket>,
    ) -> Result<Response<BoxStream<'static, Result<FlightData, Status>>>, Status> {
        let Asked::Catalog(command) =
            asked_by_bytes(&request.get_ref().ticket, request.metadata(), "ticket")?
        else {
            return Err(Status::invalid_argument(
                "a Flight SQL statement is not a ticket: ask GetFlightInfo for one",
            ));
        };
        let datasets = self.state.federation.datasets();
        let tables = self.tables_for(caller, &datasets);
        let batch = catalog_answer(command, &tables)?;
        let stream = arrow_flight::encode::FlightDataEncoderBuilder::new()
            .build(futures::stream::once(async { Ok(batch) }))
            .map(|r| r.map_err(|e| Status::internal(e.to_string())));
        Ok(Response::new(stream.boxed()))
    }

    /// Every dataset as a Flight SQL table, with the columns this caller
    /// receives: its grant's fields and masks, or where it holds no grant,
    /// what a default grant would give.
    fn tables_for<'a>(&self, caller: &Identity, datasets: &'a [pb::Dataset]) -> Vec<Table<'a>> {
        datasets
            .iter()
            .filter_map(|d| {
                let fields = match self.granted_fields(caller, &d.id, &[]) {
                    Ok((_, _, fields)) => fields,
                    Err(_) => default_fields(d),
                };
                let schema = result_schema(d, &fields).ok()?;
                Some(Table { dataset: d, schema })
            })
            .collect()
    }

    /// One `FlightInfo` per dataset the caller holds an active grant on,
    /// with a path descriptor and the schema it would receive.
    fn granted_flights(&self, caller: &Identity) -> Result<Vec<FlightInfo>, Status> {
        let grants = self
            .state
            .access
            .grants_of(&caller.member_id)
            .map_err(crate::service::access_status)?;
        let mut infos = Vec::new();
        for g in grants
            .iter()
            .filter(|g| g.consumer == caller.member_id && g.status == "active")
        {
            let Ok((dataset, _, fields)) = self.granted_fields(caller, &g.dataset, &[]) else {
                continue;
            };
            let path: Vec<String> = dataset.id.split('/').map(str::to_string).collect();
            let info = FlightInfo::new()
                .try_with_schema(&result_schema(&dataset, &fields)?)
                .map_err(|e| Status::internal(e.to_string()))?
                .with_descriptor(FlightDescriptor::new_path(path));
            infos.push(info);
        }
        Ok(infos)
    }

    async fn node_channel(&self, member: &str) -> Result<Channel, Status> {
        let view = self.state.federation.node_view(member);
        if !view.online || view.address.is_empty() {
            return Err(Status::unavailable(format!(
                "the owner node {member} is offline; its data cannot be served now"
            )));
        }
        if let Some((addr, channel)) = self
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(member)
        {
            if addr == &view.address {
                return Ok(channel.clone());
            }
        }
        let expected = ExpectedServer::Identity(
            Identity::new(member, Role::Node).map_err(|e| Status::internal(e.to_string()))?,
        );
        let options = ClientOptions {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(3600),
        };
        let channel = connect(&view.address, &self.state.tls, expected, options)
            .await
            .map_err(|e| {
                Status::unavailable(format!("the owner node {member} cannot be reached: {e}"))
            })?;
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(member.to_string(), (view.address, channel.clone()));
        Ok(channel)
    }
}

/// The consumer's filter, checked against the fields it selected (masked
/// ones accept only `=` and `IN`), as canonical text within the limits the
/// node holds it to, and the values it tests against masked fields (field,
/// canonical value).
fn consumer_filter(
    text: &str,
    dataset: &exchange_proto::v1::Dataset,
    fields: &[TicketField],
) -> Result<(String, Vec<(String, String)>), Status> {
    if text.trim().is_empty() {
        return Ok((String::new(), Vec::new()));
    }
    let lookup = |name: &str| -> Option<FieldInfo> {
        let f = fields.iter().find(|f| f.name == name)?;
        let field_type = dataset
            .fields
            .iter()
            .find(|d| d.name == name)?
            .r#type
            .parse::<FieldType>()
            .ok()?;
        Some(FieldInfo {
            field_type,
            masked: f.mask != "none",
        })
    };
    let checked = exchange_query::parse(text)
        .and_then(|f| f.check(&lookup))
        .map_err(|e| {
            let kind = if e.field_masked {
                Refusal::FieldMasked
            } else {
                Refusal::InvalidRequest
            };
            kind.status(format!("{e} (a filter may use the fields you select)"))
        })?;
    let masked = |name: &str| lookup(name).is_some_and(|f| f.masked);
    let masked_values = checked
        .values_on(&masked)
        .into_iter()
        .map(|(field, value)| (field.to_string(), value.to_string()))
        .collect();
    let canonical = checked
        .canonical()
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok((canonical, masked_values))
}

fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// SHA-256 of a filter's text (empty for none): the log shows which filter
/// ran without copying its values (which may be IDs) into one more place.
pub fn filter_digest(filter: &str) -> String {
    if filter.trim().is_empty() {
        return String::new();
    }
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        filter.as_bytes(),
    ))
}

/// Whether the node refused a ticket because it was used before (the
/// text of [`TicketError::Replayed`]).
fn is_replay_refusal(status: &Status) -> bool {
    status.code() == tonic::Code::PermissionDenied && status.message().contains(REPLAY_TEXT)
}

const REPLAY_TEXT: &str = "was already used: tickets are single-use";

/// The rule a denial names (`denied by rule `x``), or the kind of error.
fn denial_rule(status: &Status) -> String {
    let message = status.message();
    if let Some(rest) = message.split("rule `").nth(1) {
        if let Some(rule) = rest.split('`').next() {
            return rule.to_string();
        }
    }
    match status.code() {
        tonic::Code::NotFound => "unknown dataset or field".into(),
        tonic::Code::InvalidArgument => "invalid query".into(),
        tonic::Code::PermissionDenied => "permission".into(),
        other => format!("{other:?}"),
    }
}

/// The row count of a Flight frame carrying a record batch (0 for schema
/// and dictionary frames), read from its IPC message header.
fn rows_in_frame(frame: &FlightData) -> u64 {
    arrow_ipc::root_as_message(&frame.data_header)
        .ok()
        .and_then(|m| m.header_as_record_batch())
        .map_or(0, |b| b.length().max(0) as u64)
}

fn unsupported<T>(method: &str) -> Result<T, Status> {
    exchange_transport::completion::unsupported(
        method,
        "send a query command to DoGet, or to GetFlightInfo then DoGet",
    )
}

#[cfg(test)]
#[test]
fn the_replay_text_is_the_node_s() {
    let text = exchange_policy::ticket::TicketError::Replayed("t".into()).to_string();
    assert!(text.contains(REPLAY_TEXT), "{text}");
}

/// The steps of a relayed query, in the order `do_get` takes them.
impl CoordinatorFlight {
    /// Runs one query as `caller`, exactly as a `DoGet` of the JSON command
    /// would: authorized, its decision logged before the owner is asked,
    /// and its answer relayed, counted and completed in the audit log.
    /// The lookups are built on this.
    pub async fn run_query(
        &self,
        caller: &Identity,
        cmd: &QueryCommand,
    ) -> Result<BoxStream<'static, Result<FlightData, Status>>, Status> {
        let started = std::time::Instant::now();
        let ticket = self.authorize_logged(caller, cmd).await?;
        let sealed = ticket.seal(&self.state.ticket_signer).into();
        let frames = self.node_answer(&ticket, sealed, started).await?;
        Ok(self.relay(&ticket, frames, started).boxed())
    }

    /// A DoGet ticket: a JSON query command sent straight to DoGet (one
    /// round trip instead of GetFlightInfo + DoGet), authorized exactly as
    /// GetFlightInfo would; or a sealed ticket this coordinator issued to
    /// the caller, admitted once. Returns the ticket and its sealed form
    /// for the node.
    async fn open_ticket(
        &self,
        caller: &Identity,
        bytes: Bytes,
    ) -> Result<(QueryTicket, Bytes), Status> {
        if bytes.first() == Some(&b'{') {
            let cmd: QueryCommand = serde_json::from_slice(&bytes).map_err(|e| {
                Status::invalid_argument(format!(
                    "a DoGet ticket starting with {{ must be a JSON query command: {e}"
                ))
            })?;
            let ticket = self.authorize_logged(caller, &cmd).await?;
            let sealed = ticket.seal(&self.state.ticket_signer).into();
            return Ok((ticket, sealed));
        }
        let envelope = std::str::from_utf8(&bytes)
            .map_err(|_| Status::invalid_argument("the ticket is not text"))?;
        let payload = self
            .state
            .ticket_signer
            .verifier()
            .open(envelope)
            .map_err(|e| Status::permission_denied(e.to_string()))?;
        let ticket: QueryTicket = serde_json::from_slice(&payload)
            .map_err(|_| Status::invalid_argument("the ticket is malformed"))?;
        if ticket.consumer != caller.member_id {
            return Err(Status::permission_denied(format!(
                "this ticket was issued to {}, not to {}",
                ticket.consumer, caller.member_id
            )));
        }
        self.relayed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(&ticket, now_unix())
            .map_err(|e| Status::permission_denied(e.to_string()))?;
        // Issued under the grant as it was; redeemed only under the grant
        // as it is now (revoked since, on this replica or another).
        grant_still_holds(&self.state, &ticket.grant_id)?;
        Ok((ticket, bytes))
    }

    /// Presents the sealed ticket to the owner node and returns its
    /// answer's frames. A failure here is the query's completion record.
    async fn node_answer(
        &self,
        ticket: &QueryTicket,
        sealed: Bytes,
        started: std::time::Instant,
    ) -> Result<Streaming<FlightData>, Status> {
        let failed = |status: Status| {
            let record = QueryCompletion {
                duration_ms: started.elapsed().as_millis() as u64,
                status: format!("error: {}", status.message()),
                ..completion_of(ticket)
            };
            self.state
                .audit
                .append_detached(&Record::now(Event::QueryCompletion(record)));
            status
        };
        let channel = self.node_channel(&ticket.owner).await.map_err(failed)?;
        match FlightServiceClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .do_get(Ticket::new(sealed))
            .await
        {
            Ok(response) => Ok(response.into_inner()),
            // The node is up but its database is not: its words, unchanged.
            Err(status) if status.metadata().get(SOURCE_STATUS_KEY).is_some() => {
                Err(failed(status))
            }
            Err(status) if status.code() == tonic::Code::Unavailable => {
                self.nodes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&ticket.owner);
                Err(failed(Status::unavailable(format!(
                    "the owner node {} cannot be reached: {}",
                    ticket.owner,
                    status.message()
                ))))
            }
            // A ticket the node has served already (presented again after
            // this coordinator restarted): the query it copies keeps its
            // one completion record.
            Err(status) if is_replay_refusal(&status) => Err(status),
            Err(status) => Err(failed(status)),
        }
    }

    /// Relays the node's frames, counting rows and bytes for the completion
    /// record and the rows against the grant's daily quota: the stream is
    /// cut when concurrent queries together would exceed it.
    fn relay(
        &self,
        ticket: &QueryTicket,
        frames: Streaming<FlightData>,
        started: std::time::Instant,
    ) -> impl futures::Stream<Item = Result<FlightData, Status>> + Send + 'static {
        let state = self.state.clone();
        let quota = self
            .state
            .access
            .grant(&ticket.grant_id)
            .ok()
            .flatten()
            .map_or(0, |g| g.quota_rows_per_day);
        let grant_id = ticket.grant_id.clone();
        let tally = Arc::new(Mutex::new((0u64, 0u64)));
        let counted = tally.clone();
        let check = move |frame: &FlightData| {
            let rows = rows_in_frame(frame);
            {
                let mut t = counted.lock().unwrap_or_else(|p| p.into_inner());
                t.0 += rows;
                t.1 += (frame.data_body.len() + frame.data_header.len()) as u64;
            }
            if quota == 0 || rows == 0 {
                return Ok(());
            }
            match state.access.add_rows_served(&grant_id, rows) {
                Err(e) => Err(Status::internal(e.to_string())),
                Ok(total) if total > quota => Err(Status::resource_exhausted(format!(
                    "denied by rule `daily quota`: grant {grant_id} reached its {quota} rows for today"
                ))),
                Ok(_) => Ok(()),
            }
        };
        let audit_state = self.state.clone();
        let record = completion_of(ticket);
        let finish = move |status: String| {
            let (rows, bytes) = *tally.lock().unwrap_or_else(|p| p.into_inner());
            let record = QueryCompletion {
                rows,
                bytes,
                status,
                duration_ms: started.elapsed().as_millis() as u64,
                ..record
            };
            audit_state
                .audit
                .append_detached(&Record::now(Event::QueryCompletion(record)));
        };
        let frames = until_revoked(frames, &self.state, &ticket.grant_id);
        watch_completion(frames, check, finish)
    }
}

/// How often a flowing answer looks at its grant again.
const REVOCATION_CHECK: Duration = Duration::from_millis(250);

/// `frames`, ended with the owner's reason once the grant no longer holds.
fn until_revoked<S>(frames: S, state: &Arc<State>, grant_id: &str) -> UntilRevoked<S> {
    let mut tick = tokio::time::interval(REVOCATION_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    UntilRevoked {
        inner: frames,
        tick,
        state: state.clone(),
        grant_id: grant_id.to_string(),
        done: false,
    }
}

/// Whether the grant a ticket names still holds: present, active and
/// unexpired. A revoked grant is refused with its owner's reason.
fn grant_still_holds(state: &State, grant_id: &str) -> Result<(), Status> {
    let grant = match state.access.grant(grant_id) {
        Ok(Some(grant)) => grant,
        Ok(None) => {
            return Err(Refusal::GrantRevoked.status(format!(
                "grant {grant_id} no longer exists: ask for access again"
            )))
        }
        Err(e) => return Err(Status::unavailable(e.to_string())),
    };
    if grant.status == "revoked" {
        return Err(Refusal::GrantRevoked.status(format!(
            "grant {grant_id} on {} was revoked by {} at {}: {}",
            grant.dataset,
            grant.revoked_by,
            crate::registry::rfc3339(grant.revoked_unix),
            grant.revocation_reason
        )));
    }
    if grant.status != "active" || grant.until < crate::access::date_text(crate::access::today()) {
        return Err(Refusal::GrantRevoked.status(format!(
            "grant {grant_id} on {} expired on {}: ask for access again",
            grant.dataset, grant.until
        )));
    }
    Ok(())
}

/// A node's answer that ends, with the reason, at its next frame after its
/// grant is revoked (and within [`REVOCATION_CHECK`] while the source is
/// slow); dropping the node's stream then cancels the node's read.
struct UntilRevoked<S> {
    inner: S,
    tick: tokio::time::Interval,
    state: Arc<State>,
    grant_id: String,
    done: bool,
}

impl<S> futures::Stream for UntilRevoked<S>
where
    S: futures::Stream<Item = Result<FlightData, Status>> + Unpin,
{
    type Item = Result<FlightData, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.done {
            return Poll::Ready(None);
        }
        // The ticks wake a stream whose source is slow; every frame is
        // looked at as it passes.
        while self.tick.poll_tick(cx).is_ready() {}
        if let Err(status) = grant_still_holds(&self.state, &self.grant_id) {
            self.done = true;
            tracing::info!(grant = %self.grant_id, "a flowing answer was cut: its grant no longer holds");
            return Poll::Ready(Some(Err(status)));
        }
        std::pin::Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// A completion record for the ticket's query, with nothing counted yet.
fn completion_of(ticket: &QueryTicket) -> QueryCompletion {
    QueryCompletion {
        query_id: ticket.query_id.clone(),
        ticket_id: ticket.id.clone(),
        dataset: ticket.dataset.clone(),
        consumer: ticket.consumer.clone(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl FlightService for CoordinatorFlight {
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let peer = require_role(&request, &[Role::Client])?;
        let asked = asked_by_descriptor(request.get_ref(), request.metadata())?;
        let descriptor = request.into_inner();
        let cmd = match asked {
            Asked::Catalog(c) => return Ok(Response::new(catalog_info(&c, descriptor)?)),
            Asked::Query(cmd) => cmd,
        };
        check_path_purpose(&descriptor, &cmd)?;
        let ticket = self.authorize_logged(&peer.identity, &cmd).await?;
        let schema = self.ticket_schema(&ticket)?;
        let sealed = ticket.seal(&self.state.ticket_signer);
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_descriptor(descriptor)
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(sealed)))
            .with_ordered(false);
        Ok(Response::new(info))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let started = std::time::Instant::now();
        let peer = require_role(&request, &[Role::Client])?;
        if is_flight_sql_ticket(&request.get_ref().ticket) {
            return self.catalog_stream(&peer.identity, &request);
        }
        let (ticket, sealed) = self
            .open_ticket(&peer.identity, request.into_inner().ticket)
            .await?;
        let frames = self.node_answer(&ticket, sealed, started).await?;
        let counted = self.relay(&ticket, frames, started);
        // Relay the node's answer with its first batch (and its end, when
        // that came along), not the headers alone.
        let counted = ready_first(counted.boxed(), 4, |frame: &Result<FlightData, Status>| {
            frame.as_ref().is_ok_and(|f| f.data_body.is_empty())
        })
        .await;
        // Frames taken ahead are looked at again as they leave.
        let leaving = until_revoked(counted, &self.state, &ticket.grant_id);
        Ok(Response::new(leaving.boxed()))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let peer = require_role(&request, &[Role::Client])?;
        let schema = match asked_by_descriptor(request.get_ref(), request.metadata())? {
            Asked::Catalog(c) => (*catalog_schema(&c)?).clone(),
            Asked::Query(cmd) => self.describe(&peer.identity, &cmd)?,
        };
        let options = arrow_ipc::writer::IpcWriteOptions::default();
        let result = SchemaResult::try_from(arrow_flight::SchemaAsIpc::new(&schema, &options))
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(result))
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let peer = require_role(&request, &[Role::Client])?;
        let infos = self.granted_flights(&peer.identity)?;
        Ok(Response::new(
            futures::stream::iter(infos.into_iter().map(Ok)).boxed(),
        ))
    }

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        unsupported("Handshake")
    }
    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unsupported("PollFlightInfo")
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

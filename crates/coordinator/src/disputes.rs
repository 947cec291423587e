//! Disputes over values: a consumer that holds a grant on a dataset files a
//! dispute about one field of one entity; the owning department resolves or
//! rejects it with a note. Kept in the coordinator's state store; every step
//! is also an audit record (an access event with action `dispute-*`).

use exchange_pki::{Identity, Role};
use exchange_policy::text::{request_text, TextRule};
use exchange_proto::v1 as pb;
use exchange_storage::{Db, Tree};
use exchange_transport::require_role;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tonic::{Request, Response, Status};

use crate::service::State;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DisputeRecord {
    id: String,
    dataset: String,
    owner: String,
    filed_by: String,
    user: String,
    key: String,
    field: String,
    value_seen: String,
    proposed: String,
    note: String,
    status: String,
    resolution_note: String,
    resolved_by: String,
    filed_unix: i64,
    resolved_unix: i64,
}

impl DisputeRecord {
    fn message(&self) -> pb::Dispute {
        pb::Dispute {
            id: self.id.clone(),
            dataset: self.dataset.clone(),
            owner: self.owner.clone(),
            filed_by: if self.user.is_empty() {
                self.filed_by.clone()
            } else {
                format!("{} ({})", self.filed_by, self.user)
            },
            key: self.key.clone(),
            field: self.field.clone(),
            value_seen: self.value_seen.clone(),
            proposed: self.proposed.clone(),
            note: self.note.clone(),
            status: self.status.clone(),
            resolution_note: self.resolution_note.clone(),
            resolved_by: self.resolved_by.clone(),
            filed_unix: self.filed_unix,
            resolved_unix: self.resolved_unix,
            state: exchange_proto::v1::typed::dispute_state(&self.status).into(),
            filed_at: exchange_proto::v1::typed::timestamp(self.filed_unix),
            resolved_at: exchange_proto::v1::typed::timestamp(self.resolved_unix),
        }
    }
}

/// The dispute store.
#[derive(Debug)]
pub struct DisputeBook {
    disputes: Tree,
    counters: Tree,
}

impl DisputeBook {
    pub fn open(db: &Db) -> anyhow::Result<DisputeBook> {
        Ok(DisputeBook {
            disputes: db.tree("disputes")?,
            counters: db.tree("counters")?,
        })
    }

    fn next_id(&self) -> Result<String, Status> {
        let n = self
            .counters
            .update::<u64, _>("dispute", |n| Some(n.unwrap_or(0) + 1))
            .map_err(store_failed)?
            .unwrap_or(1);
        Ok(format!("D-{n:06}"))
    }
}

/// A failure of the dispute store, mapped as every store failure is.
fn store_failed(e: exchange_storage::StorageError) -> Status {
    crate::service::storage_status(&e)
}

/// Plain text of at most `max` characters (see `exchange_policy::text`):
/// no control, invisible or direction-changing characters; a note may
/// have line breaks.
fn plain(name: &str, value: &str, max: usize, required: bool) -> Result<String, Status> {
    let multiline = name.starts_with("note");
    let rule = TextRule {
        max_chars: max,
        required: required.then_some("it cannot be left out"),
        multiline,
    };
    request_text(name, value, rule).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn actor(identity: &Identity, user: &str) -> String {
    if user.is_empty() {
        identity.uri()
    } else {
        format!("{} ({user})", identity.uri())
    }
}

#[derive(Debug, Clone)]
pub struct DisputeService(pub Arc<State>);

impl DisputeService {
    async fn audit(&self, action: &str, d: &DisputeRecord, actor: &str) -> Result<(), Status> {
        let key = if exchange_catalog::policy::ids::is_valid_resident_id(&d.key) {
            exchange_catalog::policy::ids::mask_subject(&d.key)
        } else {
            d.key.clone()
        };
        let event = exchange_audit::AccessEvent {
            action: action.into(),
            request_id: d.id.clone(),
            grant_id: String::new(),
            dataset: d.dataset.clone(),
            owner: d.owner.clone(),
            consumer: d.filed_by.clone(),
            actor: actor.into(),
            purpose: format!("dispute over {} of {key}", d.field),
            fields: vec![d.field.clone()],
            status: d.status.clone(),
            reason: if d.resolution_note.is_empty() {
                d.note.clone()
            } else {
                d.resolution_note.clone()
            },
            turnaround_secs: 0,
        };
        let record = exchange_audit::Record::now(exchange_audit::Event::Access(event));
        self.0.audit.append(&record).await.map(|_| ()).map_err(|e| {
            Status::unavailable(format!(
                "the dispute was stored but its audit record failed: {e}"
            ))
        })
    }
}

#[tonic::async_trait]
impl pb::disputes_server::Disputes for DisputeService {
    async fn file(
        &self,
        request: Request<pb::FileDisputeRequest>,
    ) -> Result<Response<pb::Dispute>, Status> {
        let peer = require_role(&request, &[Role::Client])?;
        let req = request.into_inner();
        let me = peer.identity.member_id.clone();
        let dataset = self.0.federation.dataset(&req.dataset).ok_or_else(|| {
            Status::not_found(format!(
                "no dataset {:?}; find ids with `exchange catalog search`",
                req.dataset.chars().take(100).collect::<String>()
            ))
        })?;
        if !dataset.fields.iter().any(|f| f.name == req.field) {
            return Err(Status::invalid_argument(format!(
                "{} has no field {:?}",
                dataset.id,
                req.field.chars().take(100).collect::<String>()
            )));
        }
        if dataset.department == me {
            return Err(Status::invalid_argument(
                "this is your own dataset: correct it in your own systems",
            ));
        }
        // Only a department that was shown the value can dispute it.
        let grants = self
            .0
            .access
            .grants_of(&me)
            .map_err(crate::service::access_status)?;
        if !grants
            .iter()
            .any(|g| g.dataset == dataset.id && g.consumer == me)
        {
            return Err(Status::permission_denied(format!(
                "{me} holds no grant on {}: only a department that received the value can dispute it",
                dataset.id
            )));
        }
        let record = DisputeRecord {
            id: self.0.disputes.next_id()?,
            dataset: dataset.id.clone(),
            owner: dataset.department.clone(),
            filed_by: me,
            user: plain("user", &req.user, 100, false)?,
            key: plain("key", &req.key, 64, true)?,
            field: req.field.clone(),
            value_seen: plain("value seen", &req.value_seen, 1000, false)?,
            proposed: plain("proposed value", &req.proposed, 1000, false)?,
            note: plain("note (why the value looks wrong)", &req.note, 2000, true)?,
            status: "open".into(),
            resolution_note: String::new(),
            resolved_by: String::new(),
            filed_unix: exchange_pki::now_unix(),
            resolved_unix: 0,
        };
        self.0
            .disputes
            .disputes
            .insert(&record.id, &record)
            .map_err(store_failed)?;
        let who = actor(&peer.identity, &record.user);
        self.audit("dispute-file", &record, &who).await?;
        tracing::info!(dispute = %record.id, dataset = %record.dataset, filed_by = %record.filed_by, "dispute filed");
        Ok(Response::new(record.message()))
    }

    async fn list(
        &self,
        request: Request<pb::ListDisputesRequest>,
    ) -> Result<Response<pb::DisputeList>, Status> {
        let peer = require_role(&request, &[Role::Client, Role::Admin])?;
        let mut req = request.into_inner();
        let paging = crate::service::take_paging!(req);
        let status = req.status.clone();
        let me = peer.identity.member_id.clone();
        let all = peer.identity.role == Role::Admin;
        let mut records: Vec<DisputeRecord> =
            self.0.disputes.disputes.values().map_err(store_failed)?;
        records.retain(|d| {
            (all || d.owner == me || d.filed_by == me) && (status.is_empty() || d.status == status)
        });
        records.sort_by(|a, b| a.id.cmp(&b.id));
        let (records, next_page_token) =
            crate::service::page_of(&self.0, &me, "Disputes.List", &req, paging, records)?;
        Ok(Response::new(pb::DisputeList {
            disputes: records.iter().map(|d| d.message()).collect(),
            next_page_token,
        }))
    }

    async fn resolve(
        &self,
        request: Request<pb::ResolveDisputeRequest>,
    ) -> Result<Response<pb::Dispute>, Status> {
        let peer = require_role(&request, &[Role::Client])?;
        let req = request.into_inner();
        if !matches!(req.outcome.as_str(), "resolved" | "rejected") {
            return Err(Status::invalid_argument(
                "the outcome is resolved (the data was corrected) or rejected (the value stands)",
            ));
        }
        let note = plain("note", &req.note, 2000, true)?;
        let user = plain("user", &req.user, 100, false)?;
        let id = plain("dispute id", &req.id, 20, true)?;
        let mut record: DisputeRecord = self
            .0
            .disputes
            .disputes
            .get(&id)
            .map_err(store_failed)?
            .ok_or_else(|| Status::not_found(format!("no dispute {id}")))?;
        if record.owner != peer.identity.member_id {
            return Err(Status::permission_denied(format!(
                "dispute {id} is about {}'s data: only its owner decides",
                record.owner
            )));
        }
        if record.status != "open" {
            return Err(Status::failed_precondition(format!(
                "dispute {id} was already {}",
                record.status
            )));
        }
        record.status = req.outcome.clone();
        record.resolution_note = note;
        record.resolved_by = actor(&peer.identity, &user);
        record.resolved_unix = exchange_pki::now_unix();
        self.0
            .disputes
            .disputes
            .insert(&record.id, &record)
            .map_err(store_failed)?;
        let action = format!(
            "dispute-{}",
            if record.status == "resolved" {
                "resolve"
            } else {
                "reject"
            }
        );
        self.audit(&action, &record, &record.resolved_by.clone())
            .await?;
        Ok(Response::new(record.message()))
    }
}

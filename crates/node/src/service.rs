//! The node's gRPC handlers.

use std::sync::Arc;

use exchange_pki::Role;
use exchange_proto::v1 as pb;
use exchange_transport::{caller, require_role};
use tonic::{Request, Response, Status};

use crate::NodeState;

#[derive(Debug, Clone)]
pub struct NodeService(pub Arc<NodeState>);

#[tonic::async_trait]
impl pb::node_server::Node for NodeService {
    async fn describe(
        &self,
        request: Request<pb::DescribeRequest>,
    ) -> Result<Response<pb::DescribeResponse>, Status> {
        caller(&request)?;
        let current = self.0.current();
        Ok(Response::new(pb::DescribeResponse {
            member_id: self.0.member_id.clone(),
            crl_number: self.0.revocations.number(),
            catalog_digest: current.manifest.digest.clone(),
            datasets: current.manifest.to_published(),
        }))
    }

    async fn subject_accesses(
        &self,
        request: Request<pb::NodeSubjectRequest>,
    ) -> Result<Response<pb::NodeSubjectResponse>, Status> {
        require_role(&request, &[Role::Coordinator])?;
        let req = request.into_inner();
        valid_subject_key(&req.key_type, &req.key)?;
        let masked = exchange_policy::ids::mask_subject(&req.key);
        let record = exchange_audit::Record::now(exchange_audit::Event::SubjectRequest(
            exchange_audit::SubjectRequest {
                requester: req.requester.chars().take(200).collect(),
                key_type: req.key_type.clone(),
                subject: masked,
                include_embargoed: req.include_embargoed,
            },
        ));
        self.0
            .audit
            .append(&record)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let state = self.0.clone();
        let accesses = tokio::task::spawn_blocking(move || {
            subject_accesses(&state, &req.key_type, &req.key, req.include_embargoed)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(format!("reading the subject index: {e}")))?;
        Ok(Response::new(pb::NodeSubjectResponse { accesses }))
    }

    async fn audit_records(
        &self,
        request: Request<pb::NodeAuditRequest>,
    ) -> Result<Response<pb::NodeAuditResponse>, Status> {
        require_role(&request, &[Role::Coordinator])?;
        let since = request.into_inner().since_ms;
        let roots = self.0.audit.roots();
        let records = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut too_many = false;
            exchange_audit::read::scan_roots(&roots, |_, r| {
                use exchange_audit::Event;
                if r.time_ms >= since
                    && matches!(
                        r.event,
                        Event::QueryServed(_) | Event::QueryRefused(_) | Event::QueryFinished(_)
                    )
                {
                    if out.len() >= MAX_AUDIT_RECORDS {
                        too_many = true;
                        return false;
                    }
                    out.push(serde_json::to_string(&r).unwrap_or_default());
                }
                true
            })
            .map(|_| (out, too_many))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(format!("reading the audit log: {e}")))?;
        if records.1 {
            return Err(Status::resource_exhausted(format!(
                "more than {MAX_AUDIT_RECORDS} query records since that time: reconcile a shorter period (a later `since`; `--since` on the command line)"
            )));
        }
        Ok(Response::new(pb::NodeAuditResponse {
            records_json: records.0,
        }))
    }
}

/// The most query records one reconciliation call returns.
pub const MAX_AUDIT_RECORDS: usize = 200_000;

/// A subject key as the audit stores it: digits and capital letters (IDs
/// end in `X`, company codes use letters), at most 32.
pub fn valid_subject_key(key_type: &str, key: &str) -> Result<(), Status> {
    if key_type != "person_id" && key_type != "org_code" {
        return Err(Status::invalid_argument(
            "key_type must be person_id or org_code",
        ));
    }
    if key.is_empty() || key.len() > 32 || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Status::invalid_argument(
            "the subject key must be 1 to 32 letters and digits",
        ));
    }
    Ok(())
}

fn today() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

/// Who accessed `key` here, from the node's subject index.
pub fn subject_accesses(
    state: &NodeState,
    key_type: &str,
    key: &str,
    include_embargoed: bool,
) -> Result<Vec<pb::SubjectAccess>, exchange_storage::StorageError> {
    let today = today();
    let mut out = Vec::new();
    for s in state.subjects.served_for(key_type, key)? {
        let embargoed = !s.embargo_until.is_empty() && s.embargo_until >= today;
        if embargoed && !include_embargoed {
            continue;
        }
        let embargo_until = if embargoed {
            s.embargo_until
        } else {
            String::new()
        };
        out.push(pb::SubjectAccess {
            time_ms: s.time_ms,
            time: exchange_proto::v1::typed::timestamp_ms(s.time_ms),
            owner: state.member_id.clone(),
            dataset: s.dataset,
            consumer: s.consumer,
            user: s.user,
            purpose: s.purpose,
            query_id: s.query_id,
            embargo_until_date: exchange_proto::v1::typed::date(&embargo_until),
            embargo_until,
        });
    }
    Ok(out)
}

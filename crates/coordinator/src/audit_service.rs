//! The Audit service: views of the coordinator's log, data-subject
//! reports fanned out to the owner nodes, statistics, and reconciliation
//! against one node's log.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use exchange_audit::{Event, Record};
use exchange_pki::{Identity, Role};
use exchange_proto::v1 as pb;
use exchange_proto::v1::typed::{settle_seconds, Timestamp};
use exchange_storage::postgres::AuditFilter;
use exchange_transport::client::{connect, ClientOptions, ExpectedServer};
use exchange_transport::require_role;
use tonic::{Request, Response, Status};

use crate::registry::MemberStatus;
use crate::service::State;
use crate::statistics::Viewer;

/// Settles a time window given as `since_unix`/`until_unix`, as `since`/
/// `until` Timestamps, or both (they must then agree).
fn settle_window(
    since_unix: &mut i64,
    until_unix: &mut i64,
    (since, until): (Option<Timestamp>, Option<Timestamp>),
) -> Result<(), Status> {
    settle_seconds(since_unix, since.as_ref(), "since").map_err(crate::service::invalid)?;
    settle_seconds(until_unix, until.as_ref(), "until").map_err(crate::service::invalid)
}

#[derive(Debug, Clone)]
pub struct AuditService(pub Arc<State>);

/// The most rows one `Log` call returns.
pub const MAX_LOG_ROWS: u32 = 100_000;
/// How long a subject report waits for the nodes.
pub const SUBJECT_DEADLINE: Duration = Duration::from_secs(5);

/// A query's audit-log row as its decision record gives it, and the owner.
pub fn decision_row(
    time_ms: i64,
    d: &exchange_audit::QueryDecision,
) -> (pb::AuditQueryRow, String) {
    (
        pb::AuditQueryRow {
            time_ms,
            time: exchange_proto::v1::typed::timestamp_ms(time_ms),
            query_id: d.query_id.clone(),
            consumer: d.consumer.clone(),
            user: d.user.clone(),
            purpose: d.purpose.clone(),
            dataset: d.dataset.clone(),
            fields: d.fields.clone(),
            allowed: d.allowed,
            rule: d.rule.clone(),
            reason: d.reason.clone(),
            grant_id: d.grant_id.clone(),
            filter_digest: d.filter_digest.clone(),
            masked_values: d.masked_values,
            ..Default::default()
        },
        d.owner.clone(),
    )
}

/// Adds what a completion record says to a query's row.
pub fn complete_row(row: &mut pb::AuditQueryRow, c: &exchange_audit::QueryCompletion) {
    row.rows += c.rows;
    row.duration_ms = c.duration_ms;
    row.status = c.status.clone();
}

/// Compares the coordinator's records with one node's.
pub fn reconcile(
    coordinator: &[Record],
    node: &[Record],
    node_id: &str,
    since_ms: i64,
    settle_before_ms: i64,
) -> pb::ReconcileResponse {
    let mut authorized: HashMap<String, (i64, String)> = HashMap::new();
    let mut relayed_rows: HashMap<String, (u64, String)> = HashMap::new();
    for r in coordinator.iter().filter(|r| r.time_ms >= since_ms) {
        match &r.event {
            Event::QueryDecision(d) if d.allowed && d.owner == node_id => {
                authorized.insert(d.query_id.clone(), (r.time_ms, d.ticket_id.clone()));
            }
            Event::QueryCompletion(c) => {
                relayed_rows.insert(c.query_id.clone(), (c.rows, c.status.clone()));
            }
            _ => {}
        }
    }
    let mut served: HashMap<String, (i64, String)> = HashMap::new();
    let mut node_rows: HashMap<String, u64> = HashMap::new();
    let mut refused: HashSet<String> = HashSet::new();
    for r in node {
        match &r.event {
            Event::QueryServed(s) => {
                served.insert(s.query_id.clone(), (r.time_ms, s.ticket_id.clone()));
            }
            Event::QueryFinished(f) => {
                node_rows.insert(f.query_id.clone(), f.rows);
            }
            Event::QueryRefused(f) => {
                refused.insert(f.query_id.clone());
            }
            _ => {}
        }
    }
    let mut discrepancies = Vec::new();
    for (q, (time_ms, ticket)) in &served {
        match authorized.get(q) {
            None => discrepancies.push(pb::Discrepancy {
                kind: "served_without_authorization".into(),
                query_id: q.clone(),
                detail: format!(
                    "{node_id} served ticket {ticket} but the coordinator authorized no such query"
                ),
                time_ms: *time_ms,
                ..Default::default()
            }),
            Some((_, t)) if t != ticket => discrepancies.push(pb::Discrepancy {
                kind: "served_without_authorization".into(),
                query_id: q.clone(),
                detail: format!("{node_id} served ticket {ticket}; the coordinator issued {t}"),
                time_ms: *time_ms,
                ..Default::default()
            }),
            Some(_) => {}
        }
    }
    let mut explained: HashMap<String, u64> = HashMap::new();
    for (q, (time_ms, _)) in &authorized {
        if served.contains_key(q) || *time_ms > settle_before_ms {
            continue;
        }
        let relayed = relayed_rows.get(q);
        let reason = unserved_reason(
            refused.contains(q),
            node_rows.get(q).copied(),
            relayed.map(|(rows, status)| (*rows, status.as_str())),
        );
        match reason {
            Ok(reason) => *explained.entry(reason.to_string()).or_default() += 1,
            Err(detail) => discrepancies.push(pb::Discrepancy {
                kind: "authorized_not_served".into(),
                query_id: q.clone(),
                detail: format!("no served record at {node_id}; {detail}"),
                time_ms: *time_ms,
                ..Default::default()
            }),
        }
    }
    for (q, rows) in &node_rows {
        if let Some((relayed, _)) = relayed_rows.get(q) {
            if relayed != rows {
                discrepancies.push(pb::Discrepancy {
                    kind: "row_count_mismatch".into(),
                    query_id: q.clone(),
                    detail: format!(
                        "{node_id} recorded {rows} rows, the coordinator relayed {relayed}"
                    ),
                    time_ms: served.get(q).map_or(0, |s| s.0),
                    ..Default::default()
                });
            }
        }
    }
    discrepancies.sort_by(|a, b| a.time_ms.cmp(&b.time_ms).then(a.query_id.cmp(&b.query_id)));
    for d in &mut discrepancies {
        d.time = (d.time_ms != 0)
            .then(|| exchange_proto::v1::typed::timestamp_ms(d.time_ms))
            .flatten();
    }
    pb::ReconcileResponse {
        authorized: authorized.len() as u64,
        served: served.len() as u64,
        discrepancies,
        explained,
    }
}

/// Why an authorized query has no served record at the node, when both
/// ends agree that no row left (`Ok`, a reason counted apart), or what the
/// coordinator recorded when they do not (`Err`, a discrepancy): the
/// coordinator relayed rows, or reported success, for a query the node
/// never recorded serving.
fn unserved_reason(
    node_refused: bool,
    node_finished_rows: Option<u64>,
    relayed: Option<(u64, &str)>,
) -> Result<&'static str, String> {
    let relayed_rows = relayed.map_or(0, |(rows, _)| rows);
    if relayed_rows > 0 {
        return Err(format!(
            "the coordinator relayed {relayed_rows} rows for it"
        ));
    }
    if node_refused {
        return Ok("refused_by_node");
    }
    if node_finished_rows == Some(0) {
        return Ok("cancelled");
    }
    match relayed {
        None => Ok("never_redeemed"),
        Some((_, "cancelled")) => Ok("cancelled"),
        Some((_, status))
            if status.contains("is offline") || status.contains("cannot be reached") =>
        {
            Ok("owner_unreachable")
        }
        Some((_, status)) => Err(format!("the coordinator recorded status {status:?}")),
    }
}

impl AuditService {
    async fn node_client(
        &self,
        member: &str,
    ) -> Result<pb::node_client::NodeClient<exchange_transport::Channel>, Status> {
        let view = self.0.federation.node_view(member);
        if !view.online || view.address.is_empty() {
            return Err(Status::unavailable(format!("{member}'s node is offline")));
        }
        let expected = ExpectedServer::Identity(
            Identity::new(member, Role::Node).map_err(|e| Status::internal(e.to_string()))?,
        );
        let options = ClientOptions {
            connect_timeout: Duration::from_secs(3),
            request_timeout: SUBJECT_DEADLINE,
        };
        let channel = connect(&view.address, &self.0.tls, expected, options)
            .await
            .map_err(|e| Status::unavailable(format!("{member}'s node cannot be reached: {e}")))?;
        Ok(pb::node_client::NodeClient::new(channel).max_decoding_message_size(256 << 20))
    }
}

/// The rows `filter` selects, oldest first, from the audit index (on
/// PostgreSQL, every replica's).
async fn blocking_log_rows(
    state: Arc<State>,
    filter: AuditFilter,
) -> Result<Vec<pb::AuditQueryRow>, Status> {
    tokio::task::spawn_blocking(move || {
        state
            .audit_index
            .rows(filter)
            .map_err(|e| crate::service::storage_status(&e))
    })
    .await
    .map_err(|e| Status::internal(e.to_string()))?
}

/// The records, in the audit index, of the queries `owner` answered since
/// `since_ms` (on PostgreSQL, every replica's).
async fn blocking_index_records(
    state: Arc<State>,
    owner: &str,
    since_ms: i64,
) -> Result<Vec<Record>, Status> {
    let filter = AuditFilter {
        owner: owner.to_string(),
        since_ms,
        ..Default::default()
    };
    tokio::task::spawn_blocking(move || {
        state
            .audit_index
            .records(filter)
            .map_err(|e| crate::service::storage_status(&e))
    })
    .await
    .map_err(|e| Status::internal(e.to_string()))?
}

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditService {
    async fn log(
        &self,
        request: Request<pb::AuditLogRequest>,
    ) -> Result<Response<pb::AuditLogResponse>, Status> {
        let peer = require_role(&request, &[Role::Client, Role::Admin])?;
        let mut req = request.into_inner();
        settle_window(
            &mut req.since_unix,
            &mut req.until_unix,
            (req.since, req.until),
        )?;
        let paging = crate::service::take_paging!(req);
        let bureau = peer.identity.role == Role::Admin;
        let me = peer.identity.member_id.clone();
        let limit = match req.limit {
            0 => 1000,
            n if n > MAX_LOG_ROWS => {
                return Err(Status::invalid_argument(format!(
                    "limit must be at most {MAX_LOG_ROWS} (`--limit` on the command line); page through more with page_size"
                )))
            }
            n => n,
        } as usize;
        let paged = paging.0 > 0 || !paging.1.is_empty();
        let filter = AuditFilter {
            viewer: (!bureau).then(|| me.clone()),
            dataset: req.dataset.clone(),
            consumer: req.consumer.clone(),
            owner: req.owner.clone(),
            purpose: req.purpose.clone(),
            since_ms: req.since_unix.max(0).saturating_mul(1000),
            until_ms: req.until_unix.max(0).saturating_mul(1000),
            // Without pages, the newest `limit` (and one, to tell truncation).
            newest: (!paged).then_some(limit as u32 + 1),
        };
        let mut rows = blocking_log_rows(self.0.clone(), filter).await?;
        if paged {
            // Pages walk the log oldest first; it only grows at its end.
            let (rows, next_page_token) =
                crate::service::page_of(&self.0, &me, "Audit.Log", &req, paging, rows)?;
            let truncated = !next_page_token.is_empty();
            return Ok(Response::new(pb::AuditLogResponse {
                rows,
                truncated,
                next_page_token,
            }));
        }
        let truncated = rows.len() > limit;
        if truncated {
            rows.drain(..rows.len() - limit);
        }
        Ok(Response::new(pb::AuditLogResponse {
            rows,
            truncated,
            next_page_token: String::new(),
        }))
    }

    async fn subject(
        &self,
        request: Request<pb::SubjectReportRequest>,
    ) -> Result<Response<pb::SubjectReportResponse>, Status> {
        let peer = require_role(&request, &[Role::Admin])?;
        let req = request.into_inner();
        let key = req.key.trim().to_ascii_uppercase();
        match req.key_type.as_str() {
            "person_id" => {
                if !exchange_policy::ids::is_valid_resident_id(&key) {
                    return Err(Status::invalid_argument(format!(
                        "{:?} is not a valid resident identity number: 18 characters with a matching GB 11643 check character",
                        key.chars().take(40).collect::<String>()
                    )));
                }
            }
            "org_code" => {
                if !exchange_policy::ids::is_valid_uscc(&key) {
                    return Err(Status::invalid_argument(format!(
                        "{:?} is not a valid unified social credit code: 18 characters with matching GB 32100 check characters",
                        key.chars().take(40).collect::<String>()
                    )));
                }
            }
            _ => {
                return Err(Status::invalid_argument(
                    "key_type must be person_id or org_code (`--person-id` or `--org-code` on the command line)",
                ))
            }
        }
        let subject = exchange_policy::ids::mask_subject(&key);
        self.0
            .audit
            .append(&Record::now(Event::SubjectRequest(
                exchange_audit::SubjectRequest {
                    requester: peer.identity.uri(),
                    key_type: req.key_type.clone(),
                    subject,
                    include_embargoed: req.include_embargoed,
                },
            )))
            .await
            .map_err(|e| Status::unavailable(format!("refused: {e}")))?;
        let members: Vec<String> = self
            .0
            .registry
            .members()
            .map_err(crate::service::registry_status)?
            .into_iter()
            .filter(|m| m.status == MemberStatus::Active)
            .map(|m| m.id)
            .filter(|m| !self.0.federation.node_view(m).address.is_empty())
            .collect();
        let asks = members.into_iter().map(|member| {
            let req = pb::NodeSubjectRequest {
                key_type: req.key_type.clone(),
                key: key.clone(),
                include_embargoed: req.include_embargoed,
                requester: peer.identity.uri(),
            };
            async move {
                let answer = tokio::time::timeout(SUBJECT_DEADLINE, async {
                    let mut client = self.node_client(&member).await?;
                    client.subject_accesses(req).await.map(|r| r.into_inner())
                })
                .await;
                (member, answer)
            }
        });
        let mut accesses = Vec::new();
        let mut departments = Vec::new();
        for (member, answer) in futures::future::join_all(asks).await {
            let (status, detail) = match answer {
                Ok(Ok(r)) => {
                    let n = r.accesses.len();
                    accesses.extend(r.accesses.into_iter().map(|mut a| {
                        a.owner = member.clone();
                        a.time = exchange_proto::v1::typed::timestamp_ms(a.time_ms);
                        a
                    }));
                    (
                        "ok",
                        format!("{n} access{}", if n == 1 { "" } else { "es" }),
                    )
                }
                Ok(Err(s)) if s.code() == tonic::Code::Unavailable => {
                    ("offline", s.message().to_string())
                }
                Ok(Err(s)) => ("error", s.message().to_string()),
                Err(_) => (
                    "timeout",
                    format!("no answer within {} s", SUBJECT_DEADLINE.as_secs()),
                ),
            };
            departments.push(pb::DepartmentStatus {
                department: member,
                status: status.into(),
                detail,
            });
        }
        accesses.sort_by_key(|a| a.time_ms);
        Ok(Response::new(pb::SubjectReportResponse {
            accesses,
            departments,
        }))
    }

    async fn report(
        &self,
        request: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let peer = require_role(&request, &[Role::Client, Role::Admin])?;
        let mut req = request.into_inner();
        settle_window(
            &mut req.since_unix,
            &mut req.until_unix,
            (req.since, req.until),
        )?;
        // A department sees statistics of its own queries and its own data.
        let me = peer.identity.member_id.clone();
        let viewer = match peer.identity.role {
            Role::Admin => Viewer::Federation,
            _ => Viewer::Department(&me),
        };
        let overdue = if req.kind == "departments" {
            self.0
                .access
                .overdue_by_owner(|owner, consumer| match viewer {
                    Viewer::Federation => true,
                    Viewer::Department(m) => owner == m || consumer == m,
                })
                .map_err(crate::service::access_status)?
        } else {
            Default::default()
        };
        // What this replica logged a moment ago, and what the index
        // changed since the feed's last read, are counted too.
        let state = self.0.clone();
        tokio::task::spawn_blocking(move || state.audit_index.refresh())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| crate::service::storage_status(&e))?;
        let table = self.0.statistics.report(
            viewer,
            &req.kind,
            (req.since_unix, req.until_unix),
            &overdue,
        )?;
        Ok(Response::new(table))
    }

    async fn reconcile(
        &self,
        request: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::ReconcileResponse>, Status> {
        require_role(&request, &[Role::Admin])?;
        let mut req = request.into_inner();
        settle_window(&mut req.since_unix, &mut 0, (req.since, None))?;
        exchange_pki::validate_member_id(&req.node)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let since_ms = req.since_unix.saturating_mul(1000);
        let mut client = self.node_client(&req.node).await?;
        let node_records: Vec<Record> = client
            .audit_records(pb::NodeAuditRequest { since_ms })
            .await?
            .into_inner()
            .records_json
            .iter()
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect();
        let now = exchange_audit::record::now_ms();
        let mine = blocking_index_records(self.0.clone(), &req.node, since_ms).await?;
        // With replicas, a query another replica decided in the last
        // moments may not be copied into the view yet.
        let lag = self.0.audit_index.lag().as_millis() as i64;
        let node_records: Vec<Record> = node_records
            .into_iter()
            .filter(|r| !matches!(r.event, Event::QueryServed(_)) || r.time_ms < now - lag)
            .collect();
        // Tickets still within their lifetime may yet be redeemed.
        let settle = now - crate::flight::TICKET_LIFETIME_SECS * 1000;
        Ok(Response::new(reconcile(
            &mine,
            &node_records,
            &req.node,
            since_ms,
            settle,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exchange_audit::{QueryCompletion, QueryDecision, QueryRefused, QueryServed};

    fn at(time_ms: i64, event: Event) -> Record {
        Record { time_ms, event }
    }

    fn allowed(q: &str, t: &str, time_ms: i64) -> Record {
        at(
            time_ms,
            Event::QueryDecision(QueryDecision {
                query_id: q.into(),
                ticket_id: t.into(),
                owner: "tax".into(),
                allowed: true,
                ..Default::default()
            }),
        )
    }

    fn served(q: &str, t: &str) -> Record {
        at(
            1_000,
            Event::QueryServed(QueryServed {
                query_id: q.into(),
                ticket_id: t.into(),
                ..Default::default()
            }),
        )
    }

    fn rows(q: &str, n: u64, node: bool) -> Record {
        let c = QueryCompletion {
            query_id: q.into(),
            rows: n,
            status: "ok".into(),
            ..Default::default()
        };
        at(
            1_000,
            if node {
                Event::QueryFinished(c)
            } else {
                Event::QueryCompletion(c)
            },
        )
    }

    #[test]
    fn reconciliation_finds_each_kind_of_discrepancy() {
        let coordinator = vec![
            allowed("Q-ok", "t1", 100),
            rows("Q-ok", 5, false),
            allowed("Q-unredeemed", "t2", 100),
            allowed("Q-refused", "t3", 100),
            allowed("Q-recent", "t4", 9_000),
            allowed("Q-short", "t5", 100),
            rows("Q-short", 3, false),
            allowed("Q-swapped", "t6", 100),
            allowed("Q-offline", "t7", 100),
            completion(
                "Q-offline",
                0,
                "error: the owner node tax is offline; its data cannot be served now",
            ),
            allowed("Q-cancelled", "t8", 100),
            completion("Q-cancelled", 0, "cancelled"),
            allowed("Q-lost", "t9", 100),
            completion("Q-lost", 7, "ok"),
        ];
        let node = vec![
            served("Q-ok", "t1"),
            rows("Q-ok", 5, true),
            at(
                1_000,
                Event::QueryRefused(QueryRefused {
                    query_id: "Q-refused".into(),
                    ..Default::default()
                }),
            ),
            served("Q-short", "t5"),
            rows("Q-short", 4, true),
            served("Q-bypass", "tx"),
            served("Q-swapped", "t-other"),
            at(
                1_000,
                Event::QueryFinished(QueryCompletion {
                    query_id: "Q-cancelled".into(),
                    status: "cancelled".into(),
                    ..Default::default()
                }),
            ),
        ];
        let r = reconcile(&coordinator, &node, "tax", 0, 5_000);
        let mut found: Vec<(String, String)> = r
            .discrepancies
            .iter()
            .map(|d| (d.kind.clone(), d.query_id.clone()))
            .collect();
        found.sort();
        let expected: Vec<(String, String)> = [
            ("authorized_not_served", "Q-lost"),
            ("row_count_mismatch", "Q-short"),
            ("served_without_authorization", "Q-bypass"),
            ("served_without_authorization", "Q-swapped"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(found, expected);
        // A ticket still inside its lifetime (Q-recent) is not reported yet.
        assert_eq!(r.authorized, 9);
        assert_eq!(r.served, 4);
        let lost = r
            .discrepancies
            .iter()
            .find(|d| d.query_id == "Q-lost")
            .unwrap();
        assert!(lost.detail.contains("relayed 7 rows"), "{}", lost.detail);
        // What both ends agree on is counted apart, not reported.
        let mut explained: Vec<(&str, u64)> =
            r.explained.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        explained.sort();
        assert_eq!(
            explained,
            [
                ("cancelled", 1),
                ("never_redeemed", 1),
                ("owner_unreachable", 1),
                ("refused_by_node", 1)
            ]
        );
    }

    fn completion(q: &str, rows: u64, status: &str) -> Record {
        at(
            1_000,
            Event::QueryCompletion(QueryCompletion {
                query_id: q.into(),
                rows,
                status: status.into(),
                ..Default::default()
            }),
        )
    }
}

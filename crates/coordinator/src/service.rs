//! gRPC handlers. Every handler on the mutual-TLS listener learns its caller
//! only from [`exchange_transport::caller`]; request fields never name it.

use std::sync::Arc;

use exchange_catalog::SearchQuery;
use exchange_pki::{Identity, Role};
use exchange_proto::v1 as pb;
use exchange_proto::v1::typed;
use exchange_transport::{caller, require_role, Revocations};
use time::Duration;
use tonic::{Request, Response, Status};

use crate::access::{grant_message, AccessBook, AccessError};
use crate::federation::{Federation, PublishError};
use crate::registry::{MemberRecord, MemberStatus, Registry, RegistryError};

/// Shared by every service.
pub struct State {
    pub registry: Registry,
    pub access: AccessBook,
    /// Signs query tickets; nodes receive its public key with each heartbeat.
    pub ticket_signer: exchange_pki::TicketSigner,
    /// Sent to nodes with each heartbeat; never logged.
    pub mask_hash_key: Vec<u8>,
    /// The coordinator's own certificate, used to reach nodes.
    pub tls: exchange_transport::TlsIdentity,
    pub federation: Federation,
    pub revocations: Revocations,
    pub advertise_addr: String,
    /// The enrolment listener as members dial it: the advertised host and
    /// the enrolment port.
    pub enroll_address: String,
    pub heartbeat_interval_secs: u32,
    /// attribute -> the dataset the bureau declared authoritative for it.
    pub authoritative: std::collections::BTreeMap<String, String>,
    pub disputes: crate::disputes::DisputeBook,
    /// Every member's `hash` mask key and when they were derived.
    pub mask_key_cache: MaskKeyCache,
    /// How hard each grant's consumer has probed its masked values today.
    pub probes: crate::probes::ProbeLedger,
    /// The coordinator's audit log: every decision is durable here first.
    pub audit: Arc<exchange_audit::AuditLog>,
    /// Report statistics, fed by the audit index.
    pub statistics: Arc<crate::statistics::Statistics>,
    /// Page tokens of the list RPCs.
    pub pages: crate::pages::Pages,
    /// The audit index: in the embedded store on sled, the view every
    /// replica shares on PostgreSQL.
    pub audit_index: Arc<crate::audit_index::AuditIndex>,
}

/// The page of `items` a list request asks for, and the next page's token.
/// `rest` is the request with its paging fields cleared: the token is bound
/// to it.
pub(crate) fn page_of<T>(
    state: &State,
    caller: &str,
    rpc: &str,
    rest: &impl prost::Message,
    (page_size, page_token): (u32, String),
    items: Vec<T>,
) -> Result<(Vec<T>, String), Status> {
    let request = rest.encode_to_vec();
    state.pages.page(
        &crate::pages::PageAsk {
            caller,
            rpc,
            request: &request,
            page_size,
            page_token: &page_token,
        },
        items,
    )
}

/// Takes a request's paging fields out, leaving the rest to identify it.
macro_rules! take_paging {
    ($req:expr) => {
        (
            std::mem::take(&mut $req.page_size),
            std::mem::take(&mut $req.page_token),
        )
    };
}
pub(crate) use take_paging;

/// Derived `hash` mask keys by member, when they were derived, and the
/// digest naming the set.
pub type MaskKeyCache = std::sync::Mutex<
    Option<(
        std::time::Instant,
        Arc<std::collections::BTreeMap<String, [u8; 32]>>,
        String,
    )>,
>;

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

/// The one place that maps registry errors to gRPC status codes.
/// A state store failure: UNAVAILABLE while the state database cannot be
/// reached (the call may be tried again shortly; the coordinator
/// reconnects by itself), INTERNAL otherwise. Details go to the log.
pub(crate) fn storage_status(err: &exchange_storage::StorageError) -> Status {
    tracing::error!(error = %err, "state store failure");
    match err {
        exchange_storage::StorageError::Postgres { .. } => Status::unavailable(
            "the coordinator cannot reach its state database at the moment; try again shortly (the operator sees why in the coordinator log)",
        ),
        _ => Status::internal("internal storage error; the coordinator log has details"),
    }
}

pub fn registry_status(e: RegistryError) -> Status {
    use RegistryError as E;
    match e {
        E::Storage(err) => storage_status(&err),
        E::UnknownMember(_) => Status::not_found(e.to_string()),
        E::MemberExists(_) => Status::already_exists(e.to_string()),
        E::MemberRevoked(_) => Status::failed_precondition(e.to_string()),
        E::UnknownToken | E::TokenUsed(_) | E::TokenExpired(_) | E::TokenRole { .. } => {
            Status::permission_denied(e.to_string())
        }
        E::Pki(_) | E::BadText(_) | E::TokenRoleNotAllowed | E::BadTtl => {
            Status::invalid_argument(e.to_string())
        }
    }
}

fn publish_status(e: PublishError) -> Status {
    match e {
        PublishError::Storage(err) => storage_status(&err),
        PublishError::Invalid(msg) => Status::invalid_argument(msg),
    }
}

pub(crate) fn access_status(e: AccessError) -> Status {
    match e {
        AccessError::Storage(err) => storage_status(&err),
        AccessError::NotFound(m) => Status::not_found(m),
        AccessError::Invalid(m) => Status::invalid_argument(m),
        AccessError::Forbidden(m) => Status::permission_denied(m),
        AccessError::Conflict(m) => Status::failed_precondition(m),
        AccessError::Refused(kind, m) => kind.status(m),
    }
}

/// A malformed request field, with the `INVALID_REQUEST` reason.
pub(crate) fn invalid(message: String) -> Status {
    exchange_transport::refusal::Refusal::InvalidRequest.status(message)
}

fn role_arg(text: &str) -> Result<Role, Status> {
    Role::parse(text).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn ttl(secs: u32) -> Option<Duration> {
    (secs > 0).then(|| Duration::seconds(secs as i64))
}

pub fn member_message(state: &State, m: &MemberRecord) -> pb::Member {
    let node = state.federation.node_view(&m.id);
    pb::Member {
        id: m.id.clone(),
        display_name: m.display_name.clone(),
        status: m.status.as_str().into(),
        created_unix: m.created_unix,
        revoked_unix: m.revoked_unix.unwrap_or(0),
        certificates: m.certificates.len() as u32,
        revocation_reason: m.revocation_reason.clone(),
        node: Some(pb::NodeStatus {
            online: node.online,
            last_seen_unix: node.last_seen_unix,
            catalog_version: node.catalog_version,
            datasets: node.datasets,
            address: node.address,
            last_seen_at: typed::timestamp(node.last_seen_unix),
        }),
        state: match m.status {
            MemberStatus::Pending => pb::MemberState::Pending,
            MemberStatus::Active => pb::MemberState::Active,
            MemberStatus::Revoked => pb::MemberState::Revoked,
        }
        .into(),
        created_at: typed::timestamp(m.created_unix),
        revoked_at: m.revoked_unix.and_then(typed::timestamp),
    }
}

/// Runs store work (sled, signing) off the async executor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Status::internal("internal task failed"))?
}

// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct EnrollmentService(pub Arc<State>);

#[tonic::async_trait]
impl pb::enrollment_server::Enrollment for EnrollmentService {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let remote = request.remote_addr();
        let req = request.into_inner();
        let role = role_arg(&req.role)?;
        if req.csr_der.len() > 16 * 1024 || req.token.len() > 256 || req.server_names.len() > 16 {
            return Err(Status::invalid_argument("enrolment request too large"));
        }
        let state = self.0.clone();
        let enrolled = blocking(move || {
            state
                .registry
                .enroll(&req.token, role, &req.csr_der, &req.server_names)
                .map_err(registry_status)
        })
        .await;
        match &enrolled {
            Ok(e) => tracing::info!(identity = %e.identity, "member enrolled"),
            Err(status) => {
                tracing::warn!(?remote, reason = %exchange_policy::text::for_log(status.message(), 500), "enrolment refused")
            }
        }
        let enrolled = enrolled?;
        Ok(Response::new(pb::EnrollResponse {
            member_id: enrolled.identity.member_id.clone(),
            role: enrolled.identity.role.to_string(),
            identity: enrolled.identity.uri(),
            certificate_der: enrolled.certificate_der,
            ca_certificate_der: self.0.registry.ca().cert_der().to_vec(),
            coordinator_address: self.0.advertise_addr.clone(),
            not_after_unix: enrolled.not_after_unix,
            not_after: typed::timestamp(enrolled.not_after_unix),
        }))
    }
}

// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct AdminService(pub Arc<State>);

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn add_member(
        &self,
        request: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::AddMemberResponse>, Status> {
        let admin = require_role(&request, &[Role::Admin])?;
        let req = request.into_inner();
        let state = self.0.clone();
        let (member, token) = blocking(move || {
            let member = state
                .registry
                .add_member(&req.member_id, &req.display_name)
                .map_err(registry_status)?;
            let token = state
                .registry
                .issue_token(&member.id, Role::Node, ttl(req.token_ttl_secs))
                .map_err(registry_status)?;
            Ok((member, token))
        })
        .await?;
        tracing::info!(by = %admin.identity, member = %member.id, "member added");
        Ok(Response::new(pb::AddMemberResponse {
            member: Some(member_message(&self.0, &member)),
            token: Some(pb::EnrolmentToken {
                token: token.token,
                role: token.role.to_string(),
                expires_unix: token.expires_unix,
                expires_at: typed::timestamp(token.expires_unix),
            }),
            ca_fingerprint: self.0.registry.ca().fingerprint(),
            enroll_address: self.0.enroll_address.clone(),
        }))
    }

    async fn issue_token(
        &self,
        request: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::IssueTokenResponse>, Status> {
        let admin = require_role(&request, &[Role::Admin])?;
        let req = request.into_inner();
        let role = role_arg(&req.role)?;
        let state = self.0.clone();
        let member = req.member_id.clone();
        let token = blocking(move || {
            state
                .registry
                .issue_token(&req.member_id, role, ttl(req.ttl_secs))
                .map_err(registry_status)
        })
        .await?;
        tracing::info!(by = %admin.identity, %member, %role, "enrolment token issued");
        Ok(Response::new(pb::IssueTokenResponse {
            token: Some(pb::EnrolmentToken {
                token: token.token,
                role: token.role.to_string(),
                expires_unix: token.expires_unix,
                expires_at: typed::timestamp(token.expires_unix),
            }),
            ca_fingerprint: self.0.registry.ca().fingerprint(),
            enroll_address: self.0.enroll_address.clone(),
        }))
    }

    async fn revoke_member(
        &self,
        request: Request<pb::RevokeMemberRequest>,
    ) -> Result<Response<pb::RevokeMemberResponse>, Status> {
        let admin = require_role(&request, &[Role::Admin])?;
        let req = request.into_inner();
        let state = self.0.clone();
        let (member, count, number) = blocking(move || {
            let out = state
                .registry
                .revoke(&req.member_id, &req.reason)
                .map_err(registry_status)?;
            let list = state.registry.revocation_list().map_err(registry_status)?;
            state.revocations.update(list);
            state.federation.withdraw(&req.member_id);
            Ok(out)
        })
        .await?;
        tracing::warn!(by = %admin.identity, member = %member.id, certificates = count, crl = number, "member revoked");
        Ok(Response::new(pb::RevokeMemberResponse {
            member: Some(member_message(&self.0, &member)),
            revoked_certificates: count as u32,
            crl_number: number,
        }))
    }
}

// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct RegistryService(pub Arc<State>);

#[tonic::async_trait]
impl pb::registry_server::Registry for RegistryService {
    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        caller(&request)?;
        let members = self.0.registry.members().map_err(registry_status)?;
        Ok(Response::new(pb::ListMembersResponse {
            members: members.iter().map(|m| member_message(&self.0, m)).collect(),
        }))
    }

    async fn get_crl(
        &self,
        request: Request<pb::GetCrlRequest>,
    ) -> Result<Response<pb::GetCrlResponse>, Status> {
        caller(&request)?;
        let (number, der) = self.0.registry.crl().map_err(registry_status)?;
        Ok(Response::new(pb::GetCrlResponse {
            crl_number: number,
            crl_der: der,
        }))
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let peer = caller(&request)?;
        Ok(Response::new(pb::WhoAmIResponse {
            member_id: peer.identity.member_id.clone(),
            role: peer.identity.role.to_string(),
            identity: peer.identity.uri(),
            certificate_serial: peer.serial,
        }))
    }
}

// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct CatalogService(pub Arc<State>);

fn node_member(identity: &Identity) -> &str {
    &identity.member_id
}

impl CatalogService {
    /// One heartbeat: liveness noted (in memory, and in the store for the
    /// other replicas), and what the node lacks: the CRL, its catalog's
    /// republication, the consumers' mask keys.
    fn beat(
        &self,
        node: &Identity,
        req: pb::HeartbeatRequest,
    ) -> Result<pb::HeartbeatResponse, Status> {
        let republish =
            self.0
                .federation
                .heartbeat(node_member(node), &req.node_address, &req.catalog_digest);
        // While the state database is unreachable the node is told nothing
        // new (it keeps its CRL and keys), but its heartbeat still counts:
        // liveness is held in memory.
        let (number, der) = match self.0.registry.crl() {
            Ok(crl) => crl,
            Err(RegistryError::Storage(e)) => {
                tracing::debug!(error = %e, "heartbeat answered without the CRL: the state store failed");
                (req.crl_number, Vec::new())
            }
            Err(e) => return Err(registry_status(e)),
        };
        let (mut consumer_mask_keys, mask_keys_digest) =
            match self.consumer_mask_keys(node_member(node), false) {
                Ok(keys) => keys,
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    (Default::default(), req.mask_keys_digest.clone())
                }
                Err(status) => return Err(status),
            };
        // The node holds these keys already.
        if req.mask_keys_digest == mask_keys_digest {
            consumer_mask_keys.clear();
        }
        Ok(pb::HeartbeatResponse {
            republish,
            crl_number: number,
            crl_der: if req.crl_number < number {
                der
            } else {
                Vec::new()
            },
            interval_secs: self.0.heartbeat_interval_secs,
            ticket_public_key: self.0.ticket_signer.public_key(),
            mask_hash_key: Vec::new(),
            consumer_mask_keys,
            mask_keys_digest,
        })
    }

    /// The `hash` mask's key of every member but `node_member` (see
    /// `exchange_policy::mask::consumer_mask_secret`): what that node needs
    /// to hash values it sends to any other department, and never the key
    /// of its own department's answers.
    ///
    /// Every member's key is derived at most once every 10 seconds (a
    /// federation of hundreds of nodes heartbeats many times a second); a
    /// node that meets a consumer added since asks `MaskKeys`, which reads
    /// the registry afresh (`fresh`).
    /// Every member's mask key but `node_member`'s, and the digest naming
    /// the whole set (derived again when 10 s old, or when `fresh`).
    fn consumer_mask_keys(
        &self,
        node_member: &str,
        fresh: bool,
    ) -> Result<(std::collections::HashMap<String, Vec<u8>>, String), Status> {
        let mut cache = self
            .0
            .mask_key_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let stale = cache
            .as_ref()
            .is_none_or(|(at, _, _)| fresh || at.elapsed() > std::time::Duration::from_secs(10));
        if stale {
            let members = self.0.registry.members().map_err(registry_status)?;
            let keys: std::collections::BTreeMap<String, [u8; 32]> = members
                .into_iter()
                .map(|m| {
                    let secret =
                        exchange_policy::mask::consumer_mask_secret(&self.0.mask_hash_key, &m.id);
                    (m.id, secret)
                })
                .collect();
            let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
            for (member, secret) in &keys {
                digest.update(member.as_bytes());
                digest.update(b"\0");
                digest.update(secret);
            }
            let digest = hex::encode(&digest.finish().as_ref()[..16]);
            *cache = Some((std::time::Instant::now(), Arc::new(keys), digest));
        }
        let (_, keys, digest) = cache.as_ref().expect("filled above");
        let keys = keys
            .iter()
            .filter(|(member, _)| member.as_str() != node_member)
            .map(|(member, secret)| (member.clone(), secret.to_vec()))
            .collect();
        Ok((keys, digest.clone()))
    }
}

#[tonic::async_trait]
impl pb::catalog_server::Catalog for CatalogService {
    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let peer = require_role(&request, &[Role::Node])?;
        let req = request.into_inner();
        let member = node_member(&peer.identity).to_string();
        let state = self.0.clone();
        let (version, changed, count) = blocking(move || {
            let record = state.registry.member(&member).map_err(registry_status)?;
            let out = state
                .federation
                .publish(&member, &record.display_name, &req.digest, req.datasets)
                .map_err(publish_status)?;
            state
                .federation
                .heartbeat(&member, &req.node_address, &req.digest);
            Ok(out)
        })
        .await?;
        if changed {
            tracing::info!(member = %peer.identity.member_id, version, datasets = count, "catalog published");
        }
        Ok(Response::new(pb::PublishResponse {
            version,
            changed,
            datasets: count,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let peer = require_role(&request, &[Role::Node])?;
        let req = request.into_inner();
        // The store calls run off the request threads: while the state
        // database fails, the first calls may wait for it (up to 3 s), and
        // they must not hold up answers that need no database.
        let service = self.clone();
        tokio::task::spawn_blocking(move || service.beat(&peer.identity, req))
            .await
            .map_err(|e| Status::internal(format!("the heartbeat failed: {e}")))?
            .map(Response::new)
    }

    async fn mask_keys(
        &self,
        request: Request<pb::MaskKeysRequest>,
    ) -> Result<Response<pb::MaskKeysResponse>, Status> {
        let peer = require_role(&request, &[Role::Node])?;
        Ok(Response::new(pb::MaskKeysResponse {
            consumer_mask_keys: self
                .consumer_mask_keys(node_member(&peer.identity), true)?
                .0,
        }))
    }

    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let peer = caller(&request)?;
        let mut req = request.into_inner();
        let paging = take_paging!(req);
        let rest = req.clone();
        if req.text.len() > 1024 {
            return Err(Status::invalid_argument(
                "search text longer than 1024 bytes",
            ));
        }
        let opt = |s: String| (!s.is_empty()).then_some(s);
        let query = SearchQuery {
            text: req.text,
            department: opt(req.department),
            sharing: opt(req.sharing),
            key_type: opt(req.key_type),
            limit: req.limit as usize,
        };
        let (hits, total) = self.0.federation.search(&query);
        let (hits, next_page_token) = page_of(
            &self.0,
            &peer.identity.member_id,
            "Catalog.Search",
            &rest,
            paging,
            hits,
        )?;
        Ok(Response::new(pb::SearchResponse {
            hits: hits
                .into_iter()
                .map(|h| pb::SearchHit {
                    dataset: Some(h.dataset),
                    score: h.score,
                    matched_fields: h.matched_fields,
                })
                .collect(),
            total: total as u32,
            next_page_token,
        }))
    }

    async fn get_dataset(
        &self,
        request: Request<pb::GetDatasetRequest>,
    ) -> Result<Response<pb::GetDatasetResponse>, Status> {
        caller(&request)?;
        let id = request.into_inner().id;
        match self.0.federation.dataset(&id) {
            Some(mut d) => {
                d.authoritative_for = self
                    .0
                    .authoritative
                    .iter()
                    .filter(|(_, dataset)| **dataset == d.id)
                    .map(|(attribute, _)| attribute.clone())
                    .collect();
                Ok(Response::new(pb::GetDatasetResponse { dataset: Some(d) }))
            }
            None => Err(Status::not_found(format!(
                "no dataset {:?}; dataset ids look like department/dataset, find them with `exchange catalog search`",
                id.chars().take(100).collect::<String>()
            ))),
        }
    }
}

// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct AccessService(pub Arc<State>);

impl AccessService {
    fn request_list(
        &self,
        caller: &str,
        rpc: &str,
        rest: &impl prost::Message,
        paging: (u32, String),
        records: Result<Vec<crate::access::RequestRecord>, AccessError>,
    ) -> Result<Response<pb::AccessRequestList>, Status> {
        let records = records.map_err(access_status)?;
        let (records, next_page_token) = page_of(&self.0, caller, rpc, rest, paging, records)?;
        Ok(Response::new(pb::AccessRequestList {
            requests: records
                .iter()
                .map(|r| self.0.access.request_message(r))
                .collect(),
            next_page_token,
        }))
    }

    fn dataset(&self, id: &str) -> Result<pb::Dataset, Status> {
        self.0.federation.dataset(id).ok_or_else(|| {
            Status::not_found(format!(
                "no dataset {:?} in the catalog; find ids with `exchange catalog search`",
                id.chars().take(100).collect::<String>()
            ))
        })
    }
}

impl AccessService {
    async fn audit_access(&self, event: exchange_audit::AccessEvent) -> Result<(), Status> {
        let record = exchange_audit::Record::now(exchange_audit::Event::Access(event));
        self.0.audit.append(&record).await.map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "access decision recorded in the state store but not in the audit log");
            Status::unavailable(format!("the decision was stored but its audit record failed: {e}"))
        })
    }

    async fn audit_request(
        &self,
        action: &str,
        r: &crate::access::RequestRecord,
        actor: &str,
    ) -> Result<(), Status> {
        self.audit_access(exchange_audit::AccessEvent {
            action: action.into(),
            request_id: r.id.clone(),
            grant_id: r.grant_id.clone(),
            dataset: r.dataset.clone(),
            owner: r.owner.clone(),
            consumer: r.consumer.clone(),
            actor: actor.into(),
            purpose: r.purpose.clone(),
            fields: r.fields.clone(),
            status: r.status.clone(),
            reason: r.reason.clone(),
            turnaround_secs: if r.decided_unix > 0 {
                r.decided_unix - r.created_unix
            } else {
                0
            },
        })
        .await
    }
}

#[tonic::async_trait]
impl pb::access_server::Access for AccessService {
    async fn request_access(
        &self,
        request: Request<pb::AccessRequest>,
    ) -> Result<Response<pb::AccessRequestRecord>, Status> {
        let peer = require_role(&request, &[Role::Client])?;
        let mut req = request.into_inner();
        typed::settle_date(&mut req.until, req.until_date.as_ref(), "until").map_err(invalid)?;
        let dataset = self.dataset(&req.dataset)?;
        let state = self.0.clone();
        let (record, created) = blocking(move || {
            state
                .access
                .request_once(&peer.identity, &req, &dataset)
                .map_err(access_status)
        })
        .await?;
        if created {
            tracing::info!(request = %record.id, dataset = %record.dataset, consumer = %record.consumer, status = %record.status, "access requested");
            self.audit_request("request", &record, &record.consumer_actor())
                .await?;
        }
        Ok(Response::new(self.0.access.request_message(&record)))
    }

    async fn pending(
        &self,
        request: Request<pb::PendingRequest>,
    ) -> Result<Response<pb::AccessRequestList>, Status> {
        let peer = require_role(&request, &[Role::Client])?;
        let mut req = request.into_inner();
        let paging = take_paging!(req);
        let records = self.0.access.pending(&peer.identity.member_id);
        self.request_list(
            &peer.identity.member_id,
            "Access.Pending",
            &req,
            paging,
            records,
        )
    }

    async fn list_requests(
        &self,
        request: Request<pb::ListRequestsRequest>,
    ) -> Result<Response<pb::AccessRequestList>, Status> {
        let peer = require_role(&request, &[Role::Client])?;
        let mut req = request.into_inner();
        let paging = take_paging!(req);
        let records = self.0.access.requests_of(&peer.identity.member_id);
        self.request_list(
            &peer.identity.member_id,
            "Access.ListRequests",
            &req,
            paging,
            records,
        )
    }

    async fn approve(
        &self,
        request: Request<pb::ApproveRequest>,
    ) -> Result<Response<pb::AccessRequestRecord>, Status> {
        let peer = require_role(&request, &[Role::Client])?;
        let mut req = request.into_inner();
        typed::settle_date(&mut req.until, req.until_date.as_ref(), "until").map_err(invalid)?;
        let embargo = req.embargo_until_date;
        typed::settle_date(&mut req.embargo_until, embargo.as_ref(), "embargo_until")
            .map_err(invalid)?;
        let record = self
            .0
            .access
            .request_record(&req.request_id)
            .map_err(access_status)?;
        let dataset = self.dataset(&record.dataset)?;
        let state = self.0.clone();
        let record = blocking(move || {
            state
                .access
                .approve(&peer.identity, &req, &dataset)
                .map_err(access_status)
        })
        .await?;
        tracing::info!(request = %record.id, grant = %record.grant_id, by = %record.decided_by, "access approved");
        self.audit_request("approve", &record, &record.decided_by)
            .await?;
        Ok(Response::new(self.0.access.request_message(&record)))
    }

    async fn refuse(
        &self,
        request: Request<pb::RefuseRequest>,
    ) -> Result<Response<pb::AccessRequestRecord>, Status> {
        let peer = require_role(&request, &[Role::Client])?;
        let req = request.into_inner();
        let state = self.0.clone();
        let record = blocking(move || {
            state
                .access
                .refuse(&peer.identity, &req)
                .map_err(access_status)
        })
        .await?;
        tracing::info!(request = %record.id, by = %record.decided_by, "access refused");
        self.audit_request("refuse", &record, &record.decided_by)
            .await?;
        Ok(Response::new(self.0.access.request_message(&record)))
    }

    async fn list_grants(
        &self,
        request: Request<pb::ListGrantsRequest>,
    ) -> Result<Response<pb::GrantList>, Status> {
        let peer = require_role(&request, &[Role::Client])?;
        let mut req = request.into_inner();
        let paging = take_paging!(req);
        let grants = self
            .0
            .access
            .grants_of(&peer.identity.member_id)
            .map_err(access_status)?;
        let (grants, next_page_token) = page_of(
            &self.0,
            &peer.identity.member_id,
            "Access.ListGrants",
            &req,
            paging,
            grants,
        )?;
        let federation = &self.0.federation;
        Ok(Response::new(pb::GrantList {
            next_page_token,
            grants: grants
                .iter()
                .map(|g| {
                    let mut message = grant_message(g);
                    // Name each granted field's key type, so a lookup by
                    // key knows its targets from this one answer, and list
                    // the fields in the dataset's own order.
                    if let Some(dataset) = federation.dataset(&g.dataset) {
                        let position =
                            |name: &str| dataset.fields.iter().position(|f| f.name == name);
                        message
                            .fields
                            .sort_by_key(|f| position(&f.name).unwrap_or(usize::MAX));
                        for field in &mut message.fields {
                            if let Some(spec) = dataset.fields.iter().find(|f| f.name == field.name)
                            {
                                field.key_type = spec.key_type.clone();
                            }
                        }
                    }
                    message
                })
                .collect(),
        }))
    }

    async fn revoke_grant(
        &self,
        request: Request<pb::RevokeGrantRequest>,
    ) -> Result<Response<pb::Grant>, Status> {
        let peer = require_role(&request, &[Role::Client])?;
        let req = request.into_inner();
        let state = self.0.clone();
        let grant = blocking(move || {
            state
                .access
                .revoke(&peer.identity, &req.grant_id, &req.reason)
                .map_err(access_status)
        })
        .await?;
        tracing::warn!(grant = %grant.id, by = %grant.revoked_by, "grant revoked");
        let event = exchange_audit::AccessEvent {
            action: "revoke".into(),
            request_id: grant.request_id.clone(),
            grant_id: grant.id.clone(),
            dataset: grant.dataset.clone(),
            owner: grant.owner.clone(),
            consumer: grant.consumer.clone(),
            actor: grant.revoked_by.clone(),
            purpose: grant.purpose.clone(),
            fields: grant.fields.iter().map(|(n, _)| n.clone()).collect(),
            status: grant.status.clone(),
            reason: grant.revocation_reason.clone(),
            turnaround_secs: 0,
        };
        self.audit_access(event).await?;
        Ok(Response::new(grant_message(&grant)))
    }
}

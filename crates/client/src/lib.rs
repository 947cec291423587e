//! The Rust client library for the Exchange federation.
//!
//! - [`enroll`]: generate a key locally, send only its CSR with a one-time
//!   token to the coordinator's enrolment listener (pinning the CA by
//!   fingerprint), and store the certificate beside the key.
//! - [`Client`]: a mutual-TLS connection to the coordinator with typed calls
//!   for the catalog, the member registry and (for bureau operators) member
//!   administration.
//! - [`ClientConfig`]: the `exchange.toml` file the command line reads.

pub mod batch;
pub mod conflicts;
pub mod join;
pub mod lookup;
pub mod values;

use std::path::{Path, PathBuf};

use exchange_pki::{files, normalize_fingerprint, CertificateInfo, Identity, LocalKey, Role};
use exchange_proto::v1 as pb;
use exchange_transport::client::{connect, connect_pinned, ClientOptions, ExpectedServer};
use exchange_transport::{AnyChannel, LocalChannel};
use exchange_transport::{TlsIdentity, TransportError};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Pki(#[from] exchange_pki::PkiError),
    /// Not marked as the error's source: its message is already in ours.
    #[error("{}", status_text(.0))]
    Status(tonic::Status),
    #[error("{0}")]
    Config(String),
    #[error("the coordinator answered with a CA that does not match the pinned fingerprint; do not trust it")]
    CaMismatch,
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        ClientError::Status(status)
    }
}

/// A status in the words the command line uses: what kind of failure, then
/// the server's message (never gRPC's own code names).
pub fn status_text(status: &tonic::Status) -> String {
    let code = match status.code() {
        tonic::Code::Unauthenticated => "not authenticated",
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::NotFound => "not found",
        tonic::Code::InvalidArgument => "invalid request",
        tonic::Code::AlreadyExists => "already exists",
        tonic::Code::FailedPrecondition => "refused",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::DeadlineExceeded => "timed out",
        _ => "error",
    };
    let message = status.message();
    if message.is_empty() {
        format!("{code} ({:?})", status.code())
    } else {
        format!("{code}: {message}")
    }
}

/// An error from a query's stream in the same words as [`status_text`]
/// (arrow-flight's own display prefixes "Tonic error: code: ...").
pub fn flight_error_text(e: &arrow_flight::error::FlightError) -> String {
    match e {
        arrow_flight::error::FlightError::Tonic(status) => status_text(status),
        other => other.to_string(),
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Items per page when the client walks a list RPC.
pub const PAGE_SIZE: u32 = 1_000;

/// Every item of a paged list RPC: `call` fetches the page a token names
/// (the first page for an empty one) and returns it with the next token.
async fn all_pages<T, F, Fut>(mut call: F) -> Result<Vec<T>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String)>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = call(token.clone()).await?;
        items.extend(page);
        if next.is_empty() {
            return Ok(items);
        }
        if next == token {
            return Err(ClientError::Config(
                "the coordinator sent the same page token twice; stopping".into(),
            ));
        }
        token = next;
    }
}

/// `exchange.toml`: where the coordinator is and which certificate to use.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The coordinator's mutual-TLS address, `host:port`.
    pub coordinator: String,
    /// Directory holding `ca.crt`, `<cert_name>.crt` and `<cert_name>.key`;
    /// relative paths are relative to the config file.
    #[serde(default = "default_cert_dir")]
    pub cert_dir: PathBuf,
    #[serde(default = "default_cert_name")]
    pub cert_name: String,
    /// The person using this certificate, asserted in every query's audit record.
    #[serde(default)]
    pub user: Option<String>,
}

fn default_cert_dir() -> PathBuf {
    PathBuf::from(".")
}

fn default_cert_name() -> String {
    "client".into()
}

impl ClientConfig {
    pub fn load(path: &Path) -> Result<ClientConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ClientError::Config(format!(
                "{}: cannot read client config: {e}. Enrol with `exchange enroll`, or point --config / EXCHANGE_CONFIG at an exchange.toml",
                path.display()
            ))
        })?;
        let mut config: ClientConfig = toml::from_str(&text).map_err(|e| {
            ClientError::Config(format!("{}: {}", path.display(), e.message().trim()))
        })?;
        if config.cert_dir.is_relative() {
            config.cert_dir = path
                .parent()
                .unwrap_or(Path::new("."))
                .join(&config.cert_dir);
        }
        Ok(config)
    }

    /// Writes `exchange.toml` into `dir`, for a certificate kept in that same directory.
    pub fn write_beside_certificate(
        dir: &Path,
        coordinator: &str,
        cert_name: &str,
        user: Option<&str>,
    ) -> Result<PathBuf> {
        let config = ClientConfig {
            coordinator: coordinator.into(),
            cert_dir: PathBuf::from("."),
            cert_name: cert_name.into(),
            user: user.filter(|u| !u.is_empty()).map(str::to_string),
        };
        let text = toml::to_string(&config).map_err(|e| ClientError::Config(e.to_string()))?;
        let path = dir.join("exchange.toml");
        std::fs::write(&path, text)
            .map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))?;
        Ok(path)
    }

    pub fn tls(&self) -> Result<TlsIdentity> {
        Ok(TlsIdentity::load(&self.cert_dir, &self.cert_name)?)
    }
}

/// What to enrol.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// The coordinator's enrolment listener, `host:port`.
    pub enroll_addr: String,
    pub token: String,
    pub ca_fingerprint: String,
    pub role: Role,
    /// Names the node serves on (node role only).
    pub server_names: Vec<String>,
    /// Where to write `ca.crt`, `<role>.crt` and `<role>.key`.
    pub out_dir: PathBuf,
    /// Replace existing key material.
    pub force: bool,
}

/// The outcome of [`enroll`].
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub identity: Identity,
    pub coordinator_address: String,
    pub certificate_path: PathBuf,
    pub key_path: PathBuf,
    pub not_after_unix: i64,
}

/// Enrols this machine: the key is generated here and never sent.
pub async fn enroll(options: &EnrollOptions) -> Result<Enrolled> {
    let pinned = normalize_fingerprint(&options.ca_fingerprint)?;
    let key_path = options.out_dir.join(format!("{}.key", options.role));
    let cert_path = options.out_dir.join(format!("{}.crt", options.role));
    if key_path.exists() && !options.force {
        return Err(ClientError::Config(format!(
            "{} already exists: this directory is enrolled. Use --force to replace its key and certificate",
            key_path.display()
        )));
    }
    let channel = connect_pinned(&options.enroll_addr, &pinned, ClientOptions::default()).await?;
    let key = LocalKey::generate()?;
    let csr = key.certificate_request()?;
    let response = pb::enrollment_client::EnrollmentClient::new(channel)
        .enroll(pb::EnrollRequest {
            token: options.token.trim().to_string(),
            csr_der: csr,
            role: options.role.to_string(),
            server_names: options.server_names.clone(),
        })
        .await?
        .into_inner();
    if exchange_pki::fingerprint(&response.ca_certificate_der) != pinned {
        return Err(ClientError::CaMismatch);
    }
    CertificateInfo::verify_issued_by(&response.certificate_der, &response.ca_certificate_der)?;
    let info = CertificateInfo::parse(&response.certificate_der)?;
    if info.identity.role != options.role {
        return Err(ClientError::Config(format!(
            "the coordinator issued a {} certificate, not {}",
            info.identity.role, options.role
        )));
    }
    files::write_secret(&key_path, &key.private_key_pem())?;
    files::write_public(
        &cert_path,
        &files::to_pem("CERTIFICATE", &response.certificate_der),
    )?;
    files::write_public(
        &options.out_dir.join("ca.crt"),
        &files::to_pem("CERTIFICATE", &response.ca_certificate_der),
    )?;
    // The key and certificate must load together before we call it done.
    TlsIdentity::load(&options.out_dir, options.role.as_str())?;
    Ok(Enrolled {
        identity: info.identity,
        coordinator_address: response.coordinator_address,
        certificate_path: cert_path,
        key_path,
        not_after_unix: response.not_after_unix,
    })
}

/// A mutual-TLS connection to the coordinator.
#[derive(Debug, Clone)]
pub struct Client {
    channel: AnyChannel,
    identity: Identity,
    user: String,
}

impl Client {
    pub async fn connect(addr: &str, tls: &TlsIdentity) -> Result<Client> {
        Self::connect_with(addr, tls, ClientOptions::default()).await
    }

    pub async fn connect_with(
        addr: &str,
        tls: &TlsIdentity,
        options: ClientOptions,
    ) -> Result<Client> {
        let channel = connect(addr, tls, ExpectedServer::Role(Role::Coordinator), options).await?;
        Ok(Client {
            channel: AnyChannel::Network(channel),
            identity: tls.identity().clone(),
            user: String::new(),
        })
    }

    /// Connects with the config's certificate; its `user` is asserted on requests and decisions.
    pub async fn from_config(config: &ClientConfig) -> Result<Client> {
        let client = Self::connect(&config.coordinator, &config.tls()?).await?;
        Ok(client.with_user(config.user.as_deref().unwrap_or("")))
    }

    /// The person using this client, recorded with their requests and decisions.
    pub fn with_user(mut self, user: &str) -> Client {
        self.user = user.to_string();
        self
    }

    /// The person using this client, as asserted with [`Client::with_user`].
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Who our certificate says we are.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// A client that calls the coordinator's services in this process, as
    /// the certificate holder `channel` names (the web console's sessions).
    pub fn in_process(channel: LocalChannel, identity: Identity) -> Client {
        Client {
            channel: AnyChannel::Local(channel),
            identity,
            user: String::new(),
        }
    }

    /// The channel, for any tonic client (network or in process).
    pub fn channel(&self) -> AnyChannel {
        self.channel.clone()
    }

    fn catalog(&self) -> pb::catalog_client::CatalogClient<AnyChannel> {
        pb::catalog_client::CatalogClient::new(self.channel.clone())
    }

    fn registry(&self) -> pb::registry_client::RegistryClient<AnyChannel> {
        pb::registry_client::RegistryClient::new(self.channel.clone())
    }

    fn access(&self) -> pb::access_client::AccessClient<AnyChannel> {
        pb::access_client::AccessClient::new(self.channel.clone())
    }

    fn disputes_client(&self) -> pb::disputes_client::DisputesClient<AnyChannel> {
        pb::disputes_client::DisputesClient::new(self.channel.clone())
    }

    /// Tells the owner of a dataset that a value looks wrong.
    pub async fn file_dispute(&self, mut request: pb::FileDisputeRequest) -> Result<pb::Dispute> {
        if request.user.is_empty() {
            request.user = self.user.clone();
        }
        Ok(self.disputes_client().file(request).await?.into_inner())
    }

    /// Disputes filed by, or about the datasets of, this department.
    pub async fn disputes(&self, status: &str) -> Result<Vec<pb::Dispute>> {
        all_pages(|page_token| async move {
            let list = self
                .disputes_client()
                .list(pb::ListDisputesRequest {
                    status: status.into(),
                    page_size: PAGE_SIZE,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((list.disputes, list.next_page_token))
        })
        .await
    }

    /// The owner's decision on a dispute: `resolved` or `rejected`, with a note.
    pub async fn resolve_dispute(
        &self,
        mut request: pb::ResolveDisputeRequest,
    ) -> Result<pb::Dispute> {
        if request.user.is_empty() {
            request.user = self.user.clone();
        }
        Ok(self.disputes_client().resolve(request).await?.into_inner())
    }

    fn audit(&self) -> pb::audit_client::AuditClient<AnyChannel> {
        pb::audit_client::AuditClient::new(self.channel.clone())
            .max_decoding_message_size(256 << 20)
    }

    /// Query decisions and outcomes visible to this department (all, for the bureau).
    pub async fn audit_log(&self, request: pb::AuditLogRequest) -> Result<pb::AuditLogResponse> {
        Ok(self.audit().log(request).await?.into_inner())
    }

    /// Which departments accessed one subject's records (bureau only).
    pub async fn subject_report(
        &self,
        request: pb::SubjectReportRequest,
    ) -> Result<pb::SubjectReportResponse> {
        Ok(self.audit().subject(request).await?.into_inner())
    }

    /// A statistics table: `departments`, `datasets` or `daily`.
    pub async fn report(&self, request: pb::ReportRequest) -> Result<pb::ReportResponse> {
        Ok(self.audit().report(request).await?.into_inner())
    }

    /// Compares the coordinator's and one node's audit records (bureau only).
    pub async fn reconcile(&self, node: &str, since_unix: i64) -> Result<pb::ReconcileResponse> {
        Ok(self
            .audit()
            .reconcile(pb::ReconcileRequest {
                node: node.into(),
                since: pb::typed::timestamp(since_unix),
                ..Default::default()
            })
            .await?
            .into_inner())
    }

    pub async fn request_access(
        &self,
        mut request: pb::AccessRequest,
    ) -> Result<pb::AccessRequestRecord> {
        if request.user.is_empty() {
            request.user = self.user.clone();
        }
        Ok(self.access().request_access(request).await?.into_inner())
    }

    pub async fn pending(&self) -> Result<Vec<pb::AccessRequestRecord>> {
        all_pages(|page_token| async move {
            let list = self
                .access()
                .pending(pb::PendingRequest {
                    page_size: PAGE_SIZE,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((list.requests, list.next_page_token))
        })
        .await
    }

    pub async fn access_requests(&self) -> Result<Vec<pb::AccessRequestRecord>> {
        all_pages(|page_token| async move {
            let list = self
                .access()
                .list_requests(pb::ListRequestsRequest {
                    page_size: PAGE_SIZE,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((list.requests, list.next_page_token))
        })
        .await
    }

    pub async fn approve(
        &self,
        mut request: pb::ApproveRequest,
    ) -> Result<pb::AccessRequestRecord> {
        if request.user.is_empty() {
            request.user = self.user.clone();
        }
        Ok(self.access().approve(request).await?.into_inner())
    }

    pub async fn refuse(&self, request_id: &str, reason: &str) -> Result<pb::AccessRequestRecord> {
        let request = pb::RefuseRequest {
            request_id: request_id.into(),
            reason: reason.into(),
            user: self.user.clone(),
        };
        Ok(self.access().refuse(request).await?.into_inner())
    }

    pub async fn grants(&self) -> Result<Vec<pb::Grant>> {
        all_pages(|page_token| async move {
            let list = self
                .access()
                .list_grants(pb::ListGrantsRequest {
                    page_size: PAGE_SIZE,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((list.grants, list.next_page_token))
        })
        .await
    }

    pub async fn revoke_grant(&self, grant_id: &str, reason: &str) -> Result<pb::Grant> {
        Ok(self
            .access()
            .revoke_grant(pb::RevokeGrantRequest {
                grant_id: grant_id.into(),
                reason: reason.into(),
            })
            .await?
            .into_inner())
    }

    /// Runs a query through the coordinator's Flight endpoint and returns
    /// the stream of record batches as they arrive. The asserted user is
    /// filled in from the client when the command leaves it empty.
    pub async fn query(
        &self,
        mut command: exchange_query::QueryCommand,
    ) -> Result<arrow_flight::decode::FlightRecordBatchStream> {
        use futures::TryStreamExt;
        if command.user.is_empty() {
            command.user = self.user.clone();
        }
        let body = serde_json::to_vec(&command).map_err(|e| ClientError::Config(e.to_string()))?;
        let mut flight =
            arrow_flight::flight_service_client::FlightServiceClient::new(self.channel.clone())
                .max_decoding_message_size(64 << 20);
        // One round trip: the coordinator authorizes the command given as
        // the DoGet ticket exactly as it would in GetFlightInfo.
        let ticket = arrow_flight::Ticket::new(body);
        let answer = match flight.do_get(ticket.clone()).await {
            // The coordinator went away before it answered (it answers
            // only with the first rows in hand): once more, on the next
            // replica when several are configured; a new query, decided and
            // logged anew. Once rows have arrived a failure is not retried,
            // which could repeat them.
            Err(status) if lookup::coordinator_lost(&status) => {
                self.channel.reconnect();
                flight.do_get(ticket).await?
            }
            answer => answer?,
        };
        let frames = answer
            .into_inner()
            .map_err(arrow_flight::error::FlightError::from);
        Ok(arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(frames))
    }

    fn admin(&self) -> pb::admin_client::AdminClient<AnyChannel> {
        pb::admin_client::AdminClient::new(self.channel.clone())
    }

    /// A call that changes nothing, made once more (after a reconnect,
    /// so on the next replica when several are configured) when its
    /// coordinator was lost before it answered.
    async fn read<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        match call().await {
            Err(status) if lookup::coordinator_lost(&status) => {
                self.channel.reconnect();
                Ok(call().await?.into_inner())
            }
            answer => Ok(answer?.into_inner()),
        }
    }

    pub async fn search(&self, request: pb::SearchRequest) -> Result<pb::SearchResponse> {
        self.read(|| {
            let request = request.clone();
            async move { self.catalog().search(request).await }
        })
        .await
    }

    pub async fn dataset(&self, id: &str) -> Result<pb::Dataset> {
        let response = self
            .read(|| async {
                self.catalog()
                    .get_dataset(pb::GetDatasetRequest { id: id.to_string() })
                    .await
            })
            .await?;
        response
            .dataset
            .ok_or_else(|| ClientError::Config("empty answer from coordinator".into()))
    }

    pub async fn members(&self) -> Result<Vec<pb::Member>> {
        Ok(self
            .read(|| async {
                self.registry()
                    .list_members(pb::ListMembersRequest {})
                    .await
            })
            .await?
            .members)
    }

    pub async fn who_am_i(&self) -> Result<pb::WhoAmIResponse> {
        self.read(|| async { self.registry().who_am_i(pb::WhoAmIRequest {}).await })
            .await
    }

    pub async fn add_member(
        &self,
        id: &str,
        display_name: &str,
        token_ttl_secs: u32,
    ) -> Result<pb::AddMemberResponse> {
        Ok(self
            .admin()
            .add_member(pb::AddMemberRequest {
                member_id: id.into(),
                display_name: display_name.into(),
                token_ttl_secs,
            })
            .await?
            .into_inner())
    }

    pub async fn issue_token(
        &self,
        id: &str,
        role: Role,
        ttl_secs: u32,
    ) -> Result<pb::IssueTokenResponse> {
        Ok(self
            .admin()
            .issue_token(pb::IssueTokenRequest {
                member_id: id.into(),
                role: role.to_string(),
                ttl_secs,
            })
            .await?
            .into_inner())
    }

    pub async fn revoke_member(&self, id: &str, reason: &str) -> Result<pb::RevokeMemberResponse> {
        Ok(self
            .admin()
            .revoke_member(pb::RevokeMemberRequest {
                member_id: id.into(),
                reason: reason.into(),
            })
            .await?
            .into_inner())
    }
}

//! The bureau's coordinator.
//!
//! It is the federation's certificate authority and member registry, keeps
//! the federation-wide catalog that nodes publish to, and tracks each node's
//! liveness. It serves two listeners:
//!
//! - the **main listener** (mutual TLS): `Admin`, `Registry`, `Catalog`,
//!   `Access` (requests and grants, see [`access`]), `Disputes`
//!   ([`disputes`]), `Audit` (views, reports, reconciliation, see
//!   [`audit_service`]), Arrow Flight (authorized, relayed queries, see
//!   [`flight`]) and the standard gRPC health service. Every connection must present a
//!   certificate issued by the federation CA; every request passes the
//!   revocation and expiry check before any handler runs;
//! - the **enrolment listener** (server-authenticated TLS only): `Enrollment`,
//!   where a department exchanges a one-time token and a CSR for a
//!   certificate. The caller pins the CA by fingerprint.
//!
//! Offline operations ([`init`], [`write_dev_pki`]) work on the data
//! directory directly and must not run while the coordinator does.

pub mod access;
pub mod audit_index;
pub mod audit_service;
mod config;
pub mod disputes;
pub mod federation;
pub mod flight;
pub mod flight_sql;
pub mod lookups;
pub mod pages;
pub mod probes;
pub mod registry;
pub mod replicas;
pub mod service;
pub mod sql;
pub mod statistics;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use exchange_pki::{files, CertificateAuthority, Identity, Role};
use exchange_proto::v1 as pb;
use exchange_transport::limits::{BodyLimitLayer, ListenerLimits};
use exchange_transport::serve::{serve_grpc, Http2Limits};
use exchange_transport::{server, Revocations, TlsIdentity};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::CoordinatorConfig;
use registry::{CertRecord, Registry, RegistryPolicy};
use service::State;

/// What [`init`] created.
#[derive(Debug, Clone)]
pub struct InitReport {
    pub pki_dir: PathBuf,
    pub ca_fingerprint: String,
}

/// Creates the federation CA, the coordinator's certificate (for
/// `server_names`) and the bureau operator's admin certificate. Refuses to
/// overwrite an existing CA.
pub fn init(pki_dir: &Path, server_names: &[String]) -> anyhow::Result<InitReport> {
    let pki = pki_dir.to_path_buf();
    if pki.join("ca.key").exists() {
        bail!(
            "{} already holds a federation CA; refusing to overwrite it (move the directory away to start a new federation)",
            pki.display()
        );
    }
    let ca = CertificateAuthority::generate("Exchange federation CA")?;
    let validity = time::Duration::days(825);
    let (coord, coord_key) =
        ca.issue_with_new_key(&Identity::coordinator(), server_names, validity)?;
    let (admin, admin_key) = ca.issue_with_new_key(&Identity::admin(), &[], validity)?;
    files::write_secret(&pki.join("ca.key"), &ca.key_pem())?;
    files::write_public(&pki.join("ca.crt"), ca.cert_pem())?;
    files::write_secret(&pki.join("coordinator.key"), &coord_key.private_key_pem())?;
    files::write_public(&pki.join("coordinator.crt"), &coord.pem)?;
    files::write_secret(&pki.join("admin.key"), &admin_key.private_key_pem())?;
    files::write_secret(
        &pki.join("ticket.key"),
        &exchange_pki::TicketSigner::generate()?.private_key_pem(),
    )?;
    files::write_secret(&pki.join("mask-hash.key"), &new_mask_hash_key())?;
    files::write_public(&pki.join("admin.crt"), &admin.pem)?;
    Ok(InitReport {
        pki_dir: pki,
        ca_fingerprint: ca.fingerprint(),
    })
}

fn new_mask_hash_key() -> String {
    use ring::rand::SecureRandom;
    let mut secret = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut secret)
        .expect("the operating system's random source failed");
    hex::encode(secret)
}

/// The key of the probe ledger's digests, derived from the mask key so it
/// survives restarts without another file to keep.
fn probe_secret(mask_hash_key: &[u8]) -> [u8; 32] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, mask_hash_key);
    let tag = ring::hmac::sign(&key, b"exchange probe ledger v1");
    let mut out = [0u8; 32];
    out.copy_from_slice(&tag.as_ref()[..32]);
    out
}

/// Loads the master secret of the `hash` mask (hex), creating it for
/// federations initialised before it existed. Only the coordinator holds
/// it; nodes receive keys derived from it, one per consumer
/// (`exchange_policy::mask::consumer_mask_secret`).
fn load_mask_hash_key(pki: &Path) -> anyhow::Result<Vec<u8>> {
    let path = pki.join("mask-hash.key");
    if !path.exists() {
        files::write_secret(&path, &new_mask_hash_key())?;
    }
    let secret =
        hex::decode(files::read_text(&path)?.trim()).context("mask-hash.key is not hex")?;
    if secret.len() < 32 {
        bail!("{} holds fewer than 32 bytes", path.display());
    }
    Ok(secret)
}

/// Rebuilds the audit index from this coordinator's own log; returns how
/// many entries it wrote. On sled the whole embedded index is dropped and
/// rebuilt (the coordinator must be stopped: it holds the store). On
/// PostgreSQL this replica's queries are copied into the view the replicas
/// share; the log is read as it stands, so this may run beside `serve`.
pub fn reindex_audit(config: &CoordinatorConfig) -> anyhow::Result<usize> {
    let db = config.open_state()?;
    if !db.is_shared() {
        db.drop_derived()?;
    }
    let options = config.audit.options(&config.data_dir);
    let replica = replica(config, &config.listen);
    let index = audit_index::AuditIndex::open(&db, replica, Box::new(|| 0))?;
    index
        .rebuild(&[options.archive_dir.clone(), options.dir.clone()])
        .with_context(|| format!("copying the audit log in {}", options.dir.display()))
}

/// Who this coordinator is among the replicas, as the audit index records it.
fn replica(config: &CoordinatorConfig, address: &str) -> audit_index::Replica {
    let audit_dir = config.audit.options(&config.data_dir).dir;
    audit_index::Replica {
        id: config.replica_id(),
        host: config::host_name(),
        audit_dir: std::fs::canonicalize(&audit_dir)
            .unwrap_or(audit_dir)
            .display()
            .to_string(),
        address: address.to_string(),
    }
}

/// The audit index, fed every record `audit` appends from now on, after
/// copying what it lacks of the log so far.
fn open_audit_index(
    db: &exchange_storage::Db,
    config: &CoordinatorConfig,
    audit: &Arc<exchange_audit::AuditLog>,
    address: &str,
) -> anyhow::Result<Arc<audit_index::AuditIndex>> {
    let log = Arc::downgrade(audit);
    let index = audit_index::AuditIndex::open(
        db,
        replica(config, address),
        Box::new(move || log.upgrade().map_or(0, |l| l.last_seq())),
    )?;
    audit.add_observer(index.clone());
    let copied = index
        .catch_up(&audit.roots())
        .context("copying the audit log's newest records into the audit index")?;
    if copied > 0 {
        tracing::info!(
            records = copied,
            "the audit index took in the log's records it lacked"
        );
    }
    Ok(index)
}

/// The secrets in the pki directory that every replica holds.
const SHARED_SECRETS: [&str; 4] = ["ca.key", "ticket.key", "mask-hash.key", "coordinator.key"];

/// Refuses to start while a shared secret is readable by anyone but its
/// owner (a copy made with `cp` or an archive tool can loosen the mode).
fn check_secret_modes(pki: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for name in SHARED_SECRETS {
        let path = pki.join(name);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "{} is readable by group or others (mode {mode:o}); it holds key material every replica shares and must be its owner's alone: run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
    Ok(())
}

/// Loads the ticket-signing key, creating it for federations initialised
/// before tickets existed.
fn load_ticket_signer(pki: &Path) -> anyhow::Result<exchange_pki::TicketSigner> {
    let path = pki.join("ticket.key");
    if !path.exists() {
        let signer = exchange_pki::TicketSigner::generate()?;
        files::write_secret(&path, &signer.private_key_pem())?;
        tracing::info!(path = %path.display(), "created the ticket-signing key");
        return Ok(signer);
    }
    let der = files::read_pem_der(&path, "PRIVATE KEY")?;
    Ok(exchange_pki::TicketSigner::from_pkcs8(&der)?)
}

fn load_ca(pki: &Path) -> anyhow::Result<CertificateAuthority> {
    if !pki.join("ca.key").exists() {
        bail!(
            "{} has no federation CA; run `coordinator init` first (with the same --data-dir or --pki-dir)",
            pki.display()
        );
    }
    let cert = files::read_text(&pki.join("ca.crt"))?;
    let key = files::read_text(&pki.join("ca.key"))?;
    Ok(CertificateAuthority::from_pem(&cert, &key)?)
}

/// A member's files in a development PKI.
#[derive(Debug, Clone)]
pub struct DevMember {
    pub id: String,
    pub dir: PathBuf,
}

/// Writes a complete development PKI without any network: the CA and
/// bureau certificates in `config.pki_dir()`, and for each member a directory
/// `out/<member>/` holding `ca.crt`, `node.{crt,key}` (for `server_names`)
/// and `client.{crt,key}`. Every certificate is recorded in the registry, so
/// revocation works exactly as for enrolled members. For demos and tests;
/// real departments enrol and keep their keys on their own machines.
pub fn write_dev_pki(
    config: &CoordinatorConfig,
    out: &Path,
    members: &[(&str, &str)],
    server_names: &[String],
) -> anyhow::Result<(InitReport, Vec<DevMember>)> {
    let report = init(&config.pki_dir(), server_names)?;
    let ca = Arc::new(load_ca(&config.pki_dir())?);
    let db = config.open_state()?;
    let registry = Registry::open(&db, ca.clone(), RegistryPolicy::default())?;
    files::write_public(&out.join("ca.crt"), ca.cert_pem())?;
    let mut written = Vec::new();
    for (id, name) in members {
        registry.add_member(id, name)?;
        let dir = out.join(id);
        files::write_public(&dir.join("ca.crt"), ca.cert_pem())?;
        for role in [Role::Node, Role::Client] {
            let identity = Identity::new(id, role)?;
            let names = if role == Role::Node {
                server_names
            } else {
                &[]
            };
            let validity = time::Duration::days(90);
            let (cert, key) = ca.issue_with_new_key(&identity, names, validity)?;
            registry.record_certificate(
                id,
                CertRecord {
                    serial: cert.serial.clone(),
                    role,
                    issued_unix: registry::now_unix(),
                    not_after_unix: cert.not_after.unix_timestamp(),
                },
            )?;
            files::write_secret(&dir.join(format!("{role}.key")), &key.private_key_pem())?;
            files::write_public(&dir.join(format!("{role}.crt")), &cert.pem)?;
        }
        written.push(DevMember {
            id: id.to_string(),
            dir,
        });
    }
    db.flush()?;
    Ok((report, written))
}

/// A coordinator serving in this process.
pub struct RunningCoordinator {
    pub addr: SocketAddr,
    pub enroll_addr: SocketAddr,
    /// The Prometheus endpoint, when `metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// The web console, when one was started for this coordinator
    /// (`exchange_console::serve`).
    pub console_addr: Option<SocketAddr>,
    pub ca_fingerprint: String,
    pub state: Arc<State>,
    /// The main listener's gRPC routes and layers, callable in process.
    local_routes: exchange_transport::LocalRoutes,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningCoordinator")
            .field("addr", &self.addr)
            .field("enroll_addr", &self.enroll_addr)
            .finish_non_exhaustive()
    }
}

impl RunningCoordinator {
    /// The main listener's gRPC routes under the same authentication and
    /// body-limit layers, callable in process: a
    /// [`exchange_transport::LocalChannel`] over them acts as the peer it
    /// names, through the same authorization, masking, quotas and audit as
    /// over the network. The web console acts through them.
    pub fn local_routes(&self) -> exchange_transport::LocalRoutes {
        self.local_routes.clone()
    }

    /// Resolves when the coordinator begins to shut down.
    pub fn stopping(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    }

    /// A task (such as the console's listener) stopped with the coordinator.
    pub fn attach(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// Stops both listeners and waits for in-flight calls to finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let mut tasks = self.tasks;
        for t in tasks.drain(2..) {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        if let Err(e) = self.state.probes.write_behind() {
            tracing::error!(error = %e, "the probe ledger's last counts could not be written");
        }
        // Sign the tail of the audit log.
        let audit = self.state.audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.close()).await;
        tracing::info!(addr = %self.addr, "coordinator stopped");
    }

    /// Runs until Ctrl-C or SIGTERM, then shuts down.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// The enrolment listener as members dial it: the host members reach the
/// coordinator at, and the enrolment port.
fn enroll_address(advertise_addr: &str, enroll_addr: SocketAddr) -> String {
    match advertise_addr.rsplit_once(':') {
        Some((host, _)) if !host.is_empty() && host != "0.0.0.0" && host != "[::]" => {
            format!("{host}:{}", enroll_addr.port())
        }
        _ => enroll_addr.to_string(),
    }
}

/// Writes the probe ledger's changed counts to the store once a second.
fn write_probes_behind(state: Arc<State>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let state = state.clone();
            let written = tokio::task::spawn_blocking(move || state.probes.write_behind()).await;
            if let Ok(Err(e)) = written {
                tracing::error!(error = %e, "the probe ledger could not be written");
            }
        }
    })
}

/// The largest request to the catalog service but a published catalog
/// (whose service decodes up to [`MAX_CATALOG_BYTES`]): a search is small.
/// Other services keep tonic's 4 MiB decoding limit, or a smaller one of
/// their own (Flight: 1 MiB).
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// The largest catalog a node may publish.
pub const MAX_CATALOG_BYTES: usize = 64 << 20;

/// Per-path request body limits of the main listener's services.
const BODY_LIMITS: &[(&str, usize)] = &[
    ("/exchange.v1.Catalog/Publish", MAX_CATALOG_BYTES),
    ("/exchange.v1.Catalog/", MAX_REQUEST_BYTES),
];

/// Methods only some roles may call, refused on their headers before the
/// body is read (the handlers check again).
const ROLE_RULES: &[exchange_transport::serve::RoleRule] = &[
    ("/exchange.v1.Admin/", &[Role::Admin]),
    ("/exchange.v1.Catalog/Publish", &[Role::Node]),
    ("/exchange.v1.Catalog/Heartbeat", &[Role::Node]),
    ("/exchange.v1.Catalog/MaskKeys", &[Role::Node]),
    ("/exchange.v1.Audit/Subject", &[Role::Admin]),
    ("/exchange.v1.Audit/Reconcile", &[Role::Admin]),
    ("/exchange.v1.Lookups/", &[Role::Client]),
    ("/arrow.flight.protocol.FlightService/", &[Role::Client]),
];

/// Every service of the main listener. The listener serves them over mutual
/// TLS; the web console calls the same routes in process
/// ([`RunningCoordinator::local_routes`]).
fn grpc_routes(
    state: &Arc<State>,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> tonic::service::Routes {
    let (reflection, reflection_alpha) = server::reflection(&[pb::FILE_DESCRIPTOR_SET])
        .expect("the compiled-in descriptor sets decode");
    // One Flight service, whose node connections and replay guard the
    // lookups share.
    let flight = Arc::new(flight::CoordinatorFlight::new(state.clone()));
    tonic::service::Routes::new(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(pb::admin_server::AdminServer::new(service::AdminService(
            state.clone(),
        )))
        .add_service(pb::registry_server::RegistryServer::new(
            service::RegistryService(state.clone()),
        ))
        .add_service(
            arrow_flight::flight_service_server::FlightServiceServer::from_arc(flight.clone())
                .max_decoding_message_size(1 << 20)
                .max_encoding_message_size(64 << 20),
        )
        .add_service(
            pb::lookups_server::LookupsServer::new(lookups::LookupService::new(
                state.clone(),
                flight,
            ))
            .max_decoding_message_size(1 << 20)
            .max_encoding_message_size(64 << 20),
        )
        .add_service(pb::access_server::AccessServer::new(
            service::AccessService(state.clone()),
        ))
        .add_service(pb::disputes_server::DisputesServer::new(
            disputes::DisputeService(state.clone()),
        ))
        .add_service(
            pb::audit_server::AuditServer::new(audit_service::AuditService(state.clone()))
                .max_encoding_message_size(256 << 20),
        )
        .add_service(
            pb::catalog_server::CatalogServer::new(service::CatalogService(state.clone()))
                .max_decoding_message_size(MAX_CATALOG_BYTES),
        )
}

/// Starts the coordinator on the configured listeners.
pub async fn start(config: &CoordinatorConfig) -> anyhow::Result<RunningCoordinator> {
    config.validate().map_err(|e| anyhow::anyhow!(e))?;
    let pki = config.pki_dir();
    check_secret_modes(&pki)?;
    let ca = Arc::new(load_ca(&pki)?);
    let tls =
        TlsIdentity::load(&pki, "coordinator").context("loading the coordinator certificate")?;
    if tls.identity() != &Identity::coordinator() {
        bail!(
            "{}/coordinator.crt is not a coordinator certificate",
            pki.display()
        );
    }
    let db = config.open_state()?;
    let ticket_signer = load_ticket_signer(&pki)?;
    let mask_hash_key = load_mask_hash_key(&pki)?;
    if db.is_shared() {
        let mine = replicas::SharedKeys::of(
            &ca.fingerprint(),
            &ticket_signer.public_key(),
            &mask_hash_key,
        );
        replicas::check_shared_keys(&db, &mine)?;
    }
    let policy = RegistryPolicy {
        default_token_ttl: time::Duration::seconds(config.token_ttl_secs as i64),
        certificate_validity: time::Duration::days(config.certificate_validity_days as i64),
        ..RegistryPolicy::default()
    };
    let registry = Registry::open(&db, ca.clone(), policy)?;
    let revoked: std::collections::HashSet<String> = registry
        .members()?
        .into_iter()
        .filter(|m| m.status == registry::MemberStatus::Revoked)
        .map(|m| m.id)
        .collect();
    let federation = federation::Federation::open(
        &db,
        Duration::from_secs(config.offline_after_secs as u64),
        &|m| !revoked.contains(m),
    )?;
    let revocations = Revocations::default();
    revocations.update(registry.revocation_list()?);

    let access = access::AccessBook::open(&db, config.decision_sla_working_days)?;
    let probes = probes::ProbeLedger::open(&db, probe_secret(&mask_hash_key));
    let metrics = Arc::new(exchange_audit::Metrics::default());
    let audit_options = config.audit.options(&config.data_dir);
    let audit = Arc::new(
        exchange_audit::AuditLog::open(audit_options, tls.member_signer()?, metrics.clone())
            .context("opening the audit log")?,
    );
    // The audit index takes in what the log appends from now on, and
    // copies what it lacks of the log so far; report statistics are fed
    // from it (every replica's queries, on PostgreSQL).
    let audit_index = open_audit_index(&db, config, &audit, &config.listen)?;
    let statistics = Arc::new(statistics::Statistics::default());
    audit_index
        .feed(statistics.clone())
        .context("reading the audit index for reports")?;
    // Listening only now: a replica whose port answers is ready to serve
    // (a load balancer's TCP check would otherwise send it connections
    // while it copies its log).
    let main_listener = server::bind(&config.listen).await?;
    let enroll_listener = server::bind(&config.enroll_listen).await?;
    let addr = main_listener.local_addr()?;
    let enroll_addr = enroll_listener.local_addr()?;
    let advertise_addr = config
        .advertise_addr
        .clone()
        .unwrap_or_else(|| addr.to_string());
    let state = Arc::new(State {
        registry,
        access,
        ticket_signer,
        mask_hash_key,
        tls: tls.clone(),
        federation,
        revocations: revocations.clone(),
        enroll_address: enroll_address(&advertise_addr, enroll_addr),
        advertise_addr,
        heartbeat_interval_secs: config.heartbeat_interval_secs,
        authoritative: config.authoritative.clone(),
        disputes: disputes::DisputeBook::open(&db)?,
        probes,
        mask_key_cache: Default::default(),
        audit,
        statistics,
        pages: pages::Pages::for_store(&db)?,
        audit_index,
    });
    if db.is_shared() {
        replicas::follow(&db, &state).context("following the shared state")?;
    }
    // Quotas' row counts reach the store every 200 ms (counted in memory
    // on the query path).
    let counting = Arc::downgrade(&state);
    std::thread::Builder::new()
        .name("quota-counts".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(200));
            let Some(state) = counting.upgrade() else {
                return;
            };
            if let Err(e) = state.access.flush_usage() {
                tracing::warn!(error = %e, "could not store quota row counts; retrying");
            }
        })
        .context("starting the quota counter")?;

    let (stop, stop_rx) = watch::channel(false);
    let signal = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::admin_server::AdminServer<service::AdminService>>()
        .await;
    health
        .set_serving::<pb::registry_server::RegistryServer<service::RegistryService>>()
        .await;
    health
        .set_serving::<pb::catalog_server::CatalogServer<service::CatalogService>>()
        .await;
    health
        .set_serving::<pb::access_server::AccessServer<service::AccessService>>()
        .await;
    health
        .set_serving::<pb::disputes_server::DisputesServer<disputes::DisputeService>>()
        .await;
    health
        .set_serving::<pb::audit_server::AuditServer<audit_service::AuditService>>()
        .await;
    health
        .set_serving::<pb::lookups_server::LookupsServer<lookups::LookupService>>()
        .await;
    health
        .set_serving::<arrow_flight::flight_service_server::FlightServiceServer<flight::CoordinatorFlight>>()
        .await;

    let main_tls = server::mutual_tls_config(&tls)?;
    let routes = grpc_routes(&state, health_service);
    let local_routes = exchange_transport::local::local_routes(
        tower::ServiceBuilder::new()
            .layer(server::authenticate(revocations.clone()))
            .layer(BodyLimitLayer { rules: BODY_LIMITS })
            .service(routes.clone()),
    );
    let main_incoming = server::incoming(main_listener, main_tls, ListenerLimits::MUTUAL_TLS);
    let main_task = tokio::spawn(serve_grpc(
        main_incoming,
        local_routes.clone(),
        Http2Limits::GRPC,
        ROLE_RULES,
        signal(stop_rx.clone()),
    ));

    let enroll_tls = server::server_only_tls_config(&tls)?;
    let enroll_routes = exchange_transport::local::local_routes(
        tower::ServiceBuilder::new()
            .layer(BodyLimitLayer {
                rules: &[("/", 64 << 10)],
            })
            .service(tonic::service::Routes::new(
                pb::enrollment_server::EnrollmentServer::new(service::EnrollmentService(
                    state.clone(),
                )),
            )),
    );
    let enroll_incoming = server::incoming(enroll_listener, enroll_tls, ListenerLimits::ENROLMENT);
    let enroll_task = tokio::spawn(serve_grpc(
        enroll_incoming,
        enroll_routes,
        Http2Limits::ENROLMENT,
        &[],
        signal(stop_rx.clone()),
    ));

    let mut tasks = vec![main_task, enroll_task, write_probes_behind(state.clone())];
    let mut metrics_addr = None;
    if let Some(listen) = &config.metrics_listen {
        let render = metrics.clone();
        let (maddr, task) =
            exchange_transport::metrics::serve_metrics(listen, Arc::new(move || render.render()))
                .await?;
        metrics_addr = Some(maddr);
        tasks.push(task);
    }
    tracing::info!(%addr, %enroll_addr, metrics = ?metrics_addr, ca_fingerprint = %ca.fingerprint(), "coordinator serving");
    Ok(RunningCoordinator {
        addr,
        enroll_addr,
        metrics_addr,
        console_addr: None,
        ca_fingerprint: ca.fingerprint(),
        state,
        local_routes,
        stop,
        tasks,
    })
}

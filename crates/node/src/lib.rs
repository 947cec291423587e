//! A department's exchange node.
//!
//! It runs beside the department's own database and:
//!
//! - loads the catalog manifest and checks it against the real source
//!   tables (columns exist, types match) before it publishes anything;
//! - publishes the catalog to the coordinator at start and whenever the
//!   manifest file changes (an invalid change is refused and logged, and the
//!   previous catalog stays published);
//! - heartbeats, and receives with each heartbeat the federation CRL
//!   (verified against the CA, persisted, enforced on every request), the
//!   coordinator's ticket-signing key and the federation mask secret;
//! - serves a mutual-TLS listener with the `Node` service, the standard
//!   gRPC health service and Arrow Flight ([`flight`]): `DoGet` redeems a
//!   coordinator-signed ticket, applies this node's own policy on top, and
//!   streams masked batches from the source;
//! - indexes its audit log by subject ([`subject_index`]), so that a
//!   data-subject report reads only the queries that named the person.

mod config;
pub mod flight;
pub mod mask_keys;
mod publisher;
mod service;
pub mod source_health;
pub mod subject_index;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context};
use exchange_catalog::manifest::ManifestErrors;
use exchange_catalog::Manifest;
use exchange_pki::{RevocationList, Role};
use exchange_proto::v1 as pb;
use exchange_source::Source;
use exchange_storage::{Db, Tree};
use exchange_transport::limits::ListenerLimits;
use exchange_transport::serve::{serve_grpc, Http2Limits, RoleRule};
use exchange_transport::{server, Revocations, TlsIdentity};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::NodeConfig;

/// Methods only the coordinator calls (`Describe` is open to every member):
/// any other certificate is refused on the call's headers, before the body
/// is read.
const ROLE_RULES: &[RoleRule] = &[
    ("/exchange.v1.Node/SubjectAccesses", &[Role::Coordinator]),
    ("/exchange.v1.Node/AuditRecords", &[Role::Coordinator]),
    (
        "/arrow.flight.protocol.FlightService/",
        &[Role::Coordinator],
    ),
];

/// The manifest in force, with its open sources.
pub struct Published {
    pub manifest: Manifest,
    pub sources: BTreeMap<String, Source>,
    /// What serves but should be fixed: key fields whose column leads no
    /// index (every lookup by that key would read the whole table).
    pub warnings: Vec<String>,
}

impl Published {
    /// Logs each warning.
    pub fn log_warnings(&self) {
        for warning in &self.warnings {
            tracing::warn!("{warning}");
        }
    }
}

/// State shared by the node's tasks and handlers.
pub struct NodeState {
    pub member_id: String,
    pub tls: TlsIdentity,
    pub revocations: Revocations,
    pub catalog: RwLock<Arc<Published>>,
    /// The coordinator's ticket-signing public key, learned over mutual TLS.
    pub ticket_key: RwLock<Option<exchange_pki::TicketVerifier>>,
    /// The `hash` mask's key for each consumer, learned the same way.
    pub mask_keys: mask_keys::MaskKeys,
    /// The coordinator, for keys of consumers enrolled since the last
    /// heartbeat.
    coordinator: exchange_transport::Channel,
    pki_tree: Tree,
    pub config: NodeConfig,
    pub advertise_addr: String,
    /// The node's own audit log: what it served, to whom, and whose records.
    pub audit: Arc<exchange_audit::AuditLog>,
    /// Which databases are down, so an outage is logged once.
    pub source_health: source_health::SourceHealth,
    /// Who was looked up in which query, for data-subject reports.
    pub subjects: Arc<subject_index::SubjectIndex>,
}

impl std::fmt::Debug for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeState")
            .field("member_id", &self.member_id)
            .finish_non_exhaustive()
    }
}

impl NodeState {
    /// The `hash` mask's key for values sent to `consumer`; asks the
    /// coordinator once when the consumer enrolled after the last
    /// heartbeat.
    pub async fn mask_key_for(
        &self,
        consumer: &str,
    ) -> Result<exchange_policy::HashKey, tonic::Status> {
        if let Some(key) = self.mask_keys.get(consumer) {
            return Ok(key);
        }
        let keys = pb::catalog_client::CatalogClient::new(self.coordinator.clone())
            .mask_keys(pb::MaskKeysRequest {})
            .await
            .map_err(|e| {
                tonic::Status::unavailable(format!(
                    "this node holds no mask key for {consumer} and could not ask the coordinator: {}",
                    e.message()
                ))
            })?
            .into_inner()
            .consumer_mask_keys;
        self.mask_keys
            .replace(&keys)
            .map_err(|e| tonic::Status::internal(format!("storing the mask keys: {e:#}")))?;
        self.mask_keys.get(consumer).ok_or_else(|| {
            tonic::Status::permission_denied(format!(
                "the coordinator holds no mask key for {consumer}: it is not a member this node may serve"
            ))
        })
    }

    pub fn current(&self) -> Arc<Published> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the coordinator's ticket key (received over mutual TLS from
    /// the verified coordinator) and persists it.
    pub fn set_ticket_key(&self, key: &[u8]) -> anyhow::Result<()> {
        let verifier = exchange_pki::TicketVerifier::new(key)
            .context("the coordinator sent a ticket key that is not a valid Ed25519 public key")?;
        let mut current = self.ticket_key.write().unwrap_or_else(|p| p.into_inner());
        if current.as_ref() != Some(&verifier) {
            self.pki_tree.insert("ticket_key", &hex::encode(key))?;
            *current = Some(verifier);
            tracing::info!("coordinator ticket key installed");
        }
        Ok(())
    }

    /// Verifies a CRL from the coordinator, persists it and enforces it.
    pub fn apply_crl(&self, der: &[u8]) -> anyhow::Result<bool> {
        let list = RevocationList::parse_verified(der, &self.tls.ca_der)?;
        let number = list.number;
        let newer = self.revocations.update(list);
        if newer {
            self.pki_tree.insert("crl", &hex::encode(der))?;
            tracing::info!(crl = number, "revocation list updated");
        }
        Ok(newer)
    }
}

/// Loads the manifest, opens its sources and checks every dataset against
/// the real tables. All problems are reported together.
pub async fn load_and_check(path: &std::path::Path, member_id: &str) -> anyhow::Result<Published> {
    let manifest = Manifest::load(path).map_err(anyhow::Error::new)?;
    if manifest.department != member_id {
        bail!(
            "{}: department = {:?}, but this node's certificate is for member {:?} (fix: set department = \"{}\")",
            path.display(),
            manifest.department,
            member_id,
            member_id
        );
    }
    let mut sources = BTreeMap::new();
    for (name, db) in &manifest.databases {
        let source = Source::open(db)
            .await
            .with_context(|| format!("{}: databases.{name}", path.display()))?;
        sources.insert(name.clone(), source);
    }
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for ds in &manifest.datasets {
        let source = &sources[&ds.database];
        let columns = source.describe(&ds.table).await?;
        let problems = manifest.check_columns(ds, &columns);
        if problems.is_empty() {
            let indexed = source.indexed_columns(&ds.table).await?;
            warnings.extend(manifest.unindexed_keys(ds, &indexed));
        }
        errors.extend(problems);
    }
    if !errors.is_empty() {
        return Err(anyhow::Error::new(ManifestErrors(errors)));
    }
    Ok(Published {
        manifest,
        sources,
        warnings,
    })
}

/// A node serving in this process.
pub struct RunningNode {
    pub addr: SocketAddr,
    /// The Prometheus endpoint, when `metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub state: Arc<NodeState>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningNode")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RunningNode {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let mut tasks = self.tasks;
        for t in tasks.drain(2..) {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        // Sign the tail of the audit log.
        let audit = self.state.audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.close()).await;
        tracing::info!(member = %self.state.member_id, "node stopped");
    }
}

/// The subject index, fed every record `audit` appends from now on, after
/// indexing what it lacks of the log so far.
fn open_subject_index(
    db: &Db,
    audit: &Arc<exchange_audit::AuditLog>,
) -> anyhow::Result<Arc<subject_index::SubjectIndex>> {
    let log = Arc::downgrade(audit);
    let index = subject_index::SubjectIndex::open(
        db,
        Box::new(move || log.upgrade().map_or(0, |l| l.last_seq())),
    )?;
    audit.add_observer(index.clone());
    let read = index
        .catch_up(&audit.roots())
        .context("indexing the audit log's newest records for subject reports")?;
    if read > 0 {
        tracing::info!(
            records = read,
            "the subject index took in the log's records it lacked"
        );
    }
    Ok(index)
}

/// Starts a node: checks the manifest, serves, and begins publishing.
pub async fn start(config: NodeConfig) -> anyhow::Result<RunningNode> {
    let tls = TlsIdentity::load(&config.cert_dir, "node").with_context(|| {
        format!(
            "loading the node certificate from {}",
            config.cert_dir.display()
        )
    })?;
    if tls.identity().role != Role::Node {
        bail!(
            "{}/node.crt is a {} certificate; enrol with `exchange-node enroll`",
            config.cert_dir.display(),
            tls.identity().role
        );
    }
    let member_id = tls.identity().member_id.clone();
    let published = load_and_check(&config.manifest, &member_id).await?;
    published.log_warnings();

    let db = Db::open(&config.data_dir)?;
    let pki_tree = db.tree("pki")?;
    // Earlier versions kept one federation-wide mask key here, in clear.
    pki_tree.remove("mask_hash_key")?;
    let mask_keys = mask_keys::MaskKeys::load(&config.data_dir)?;
    let revocations = Revocations::default();
    if let Some(hex_der) = pki_tree.get::<String>("crl")? {
        match hex::decode(&hex_der)
            .map_err(anyhow::Error::new)
            .and_then(|der| Ok(RevocationList::parse_verified(&der, &tls.ca_der)?))
        {
            Ok(list) => {
                revocations.update(list);
            }
            Err(e) => tracing::warn!(error = %e, "ignoring the stored revocation list"),
        }
    }

    let metrics = Arc::new(exchange_audit::Metrics::default());
    let audit = Arc::new(
        exchange_audit::AuditLog::open(
            config.audit.options(&config.data_dir),
            tls.member_signer()?,
            metrics.clone(),
        )
        .context("opening the audit log")?,
    );
    let subjects = open_subject_index(&db, &audit)?;
    let listener = server::bind(&config.listen).await?;
    let addr = listener.local_addr()?;
    let advertise_addr = config
        .advertise_addr
        .clone()
        .unwrap_or_else(|| addr.to_string());
    let state = Arc::new(NodeState {
        member_id: member_id.clone(),
        tls: tls.clone(),
        revocations: revocations.clone(),
        catalog: RwLock::new(Arc::new(published)),
        ticket_key: RwLock::new(
            pki_tree
                .get::<String>("ticket_key")?
                .and_then(|h| hex::decode(h).ok())
                .and_then(|k| exchange_pki::TicketVerifier::new(&k).ok()),
        ),
        mask_keys,
        coordinator: exchange_transport::client::connect_lazy(
            &config.coordinator,
            &tls,
            exchange_transport::client::ExpectedServer::Role(Role::Coordinator),
            exchange_transport::client::ClientOptions {
                connect_timeout: Duration::from_secs(3),
                request_timeout: Duration::from_secs(3),
            },
        )?,
        pki_tree,
        config,
        advertise_addr,
        audit,
        source_health: Default::default(),
        subjects,
    });

    let (stop, stop_rx) = watch::channel(false);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::node_server::NodeServer<service::NodeService>>()
        .await;
    health
        .set_serving::<arrow_flight::flight_service_server::FlightServiceServer<flight::NodeFlight>>()
        .await;
    let (reflection, reflection_alpha) = server::reflection(&[pb::FILE_DESCRIPTOR_SET])
        .context("building the reflection service")?;
    let routes = tonic::service::Routes::new(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(pb::node_server::NodeServer::new(service::NodeService(
            state.clone(),
        )))
        .add_service(
            arrow_flight::flight_service_server::FlightServiceServer::new(flight::NodeFlight::new(
                state.clone(),
            ))
            .max_decoding_message_size(1 << 20),
        );
    let routes = exchange_transport::local::local_routes(
        tower::ServiceBuilder::new()
            .layer(server::authenticate(revocations))
            .service(routes),
    );
    let mut metrics_addr = None;
    let mut tasks = Vec::new();
    if let Some(listen) = &state.config.metrics_listen {
        let render = metrics.clone();
        let (maddr, task) =
            exchange_transport::metrics::serve_metrics(listen, Arc::new(move || render.render()))
                .await?;
        metrics_addr = Some(maddr);
        tasks.push(task);
    }
    let incoming = server::incoming(
        listener,
        server::mutual_tls_config(&tls)?,
        ListenerLimits::MUTUAL_TLS,
    );
    let mut rx = stop_rx.clone();
    let serve = tokio::spawn(serve_grpc(
        incoming,
        routes,
        Http2Limits::GRPC,
        ROLE_RULES,
        async move {
            let _ = rx.wait_for(|v| *v).await;
        },
    ));
    let publish = tokio::spawn(publisher::run(state.clone(), stop_rx));
    tracing::info!(member = %member_id, %addr, metrics = ?metrics_addr, "node serving");
    tasks.insert(0, publish);
    tasks.insert(0, serve);
    Ok(RunningNode {
        addr,
        metrics_addr,
        state,
        stop,
        tasks,
    })
}

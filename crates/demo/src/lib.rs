//! Whole federations in one process: the demo (`exchange demo`) and the
//! end-to-end tests start them here.
//!
//! [`ClusterBuilder`] goes through the same steps a bureau and its
//! departments would: `coordinator init`, start the coordinator, add each
//! member, enrol each node with its one-time token (keys generated locally,
//! CA pinned by fingerprint), start the nodes on their demo databases, and
//! wait until every catalog is published. Everything listens on `127.0.0.1`,
//! on port 0 unless asked otherwise.

pub mod scenarios;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use exchange_client::{enroll, Client, ClientConfig, EnrollOptions};
use exchange_coordinator::{CoordinatorConfig, RunningCoordinator};
use exchange_demo_data::{Options, Planted, DEPARTMENTS};
use exchange_node::{NodeConfig, RunningNode};
use exchange_pki::Role;
use exchange_proto::v1 as pb;
use exchange_transport::TlsIdentity;

/// Configures a federation to start.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    members: Vec<(String, String)>,
    /// Members without a node: they only consume.
    consumers: Vec<(String, String)>,
    /// attribute -> authoritative dataset, for the coordinator's config.
    authoritative: BTreeMap<String, String>,
    persons: usize,
    seed: u64,
    dir: Option<PathBuf>,
    pki_out: Option<PathBuf>,
    coordinator_listen: String,
    enroll_listen: String,
    /// The web console's listener.
    console_listen: String,
    heartbeat_secs: u32,
    analysts: bool,
    /// member -> (consumers vetoed, datasets vetoed) at that member's node.
    vetoes: BTreeMap<String, (Vec<String>, Vec<String>)>,
    /// member -> audit directory of that member's node (default: under its data dir).
    audit_dirs: BTreeMap<String, PathBuf>,
    audit_fsync: bool,
    /// The coordinator's state engine (`sled` or a PostgreSQL URL).
    state: String,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            members: Vec::new(),
            consumers: Vec::new(),
            authoritative: BTreeMap::new(),
            persons: 2_000,
            seed: Options::default().seed,
            dir: None,
            pki_out: None,
            coordinator_listen: "127.0.0.1:0".into(),
            enroll_listen: "127.0.0.1:0".into(),
            console_listen: "127.0.0.1:0".into(),
            heartbeat_secs: 1,
            analysts: true,
            vetoes: BTreeMap::new(),
            audit_dirs: BTreeMap::new(),
            audit_fsync: true,
            state: "sled".into(),
        }
    }
}

impl ClusterBuilder {
    pub fn new() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Adds a node for one of the demo departments (see [`DEPARTMENTS`]).
    pub fn add_node(mut self, member_id: &str) -> ClusterBuilder {
        let name = DEPARTMENTS
            .iter()
            .find(|(id, _)| *id == member_id)
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|| member_id.to_string());
        self.members.push((member_id.to_string(), name));
        self
    }

    /// Adds a department that consumes only: a member with an analyst, no node.
    pub fn add_consumer(mut self, member_id: &str, name: &str) -> ClusterBuilder {
        self.consumers.push((member_id.into(), name.into()));
        self
    }

    /// Declares `dataset` the authoritative source of `attribute` (coordinator config).
    pub fn authoritative(mut self, attribute: &str, dataset: &str) -> ClusterBuilder {
        self.authoritative.insert(attribute.into(), dataset.into());
        self
    }

    /// The nine demo departments, the consumer-only departments of the
    /// scenarios, and the bureau's authoritative sources.
    pub fn demo_federation(mut self) -> ClusterBuilder {
        self = self.demo_departments();
        for (id, name) in scenarios::SCENARIO_CONSUMERS {
            self = self.add_consumer(id, name);
        }
        self.authoritative("registered_address", "market-regulation/companies")
    }

    /// Adds all nine demo departments.
    pub fn demo_departments(mut self) -> ClusterBuilder {
        for (id, _) in DEPARTMENTS {
            self = self.add_node(id);
        }
        self
    }

    pub fn persons(mut self, persons: usize) -> ClusterBuilder {
        self.persons = persons;
        self
    }

    pub fn seed(mut self, seed: u64) -> ClusterBuilder {
        self.seed = seed;
        self
    }

    /// Keeps state and data in `dir` instead of a temporary directory.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> ClusterBuilder {
        self.dir = Some(dir.into());
        self
    }

    /// Writes the bureau's keys and every member's certificates here
    /// (`<out>/bureau`, `<out>/<member>`), as the demo does into `certs-dev/`.
    pub fn pki_out(mut self, out: impl Into<PathBuf>) -> ClusterBuilder {
        self.pki_out = Some(out.into());
        self
    }

    pub fn coordinator_listen(mut self, main: &str, enroll: &str) -> ClusterBuilder {
        self.coordinator_listen = main.into();
        self.enroll_listen = enroll.into();
        self
    }

    /// Where the coordinator's web console listens (default: any free port).
    pub fn console_listen(mut self, addr: &str) -> ClusterBuilder {
        self.console_listen = addr.to_string();
        self
    }

    pub fn heartbeat_secs(mut self, secs: u32) -> ClusterBuilder {
        self.heartbeat_secs = secs;
        self
    }

    /// Sets a node's local veto list (consumers it refuses, datasets it withholds).
    pub fn veto(mut self, member: &str, consumers: &[&str], datasets: &[&str]) -> ClusterBuilder {
        self.vetoes.insert(
            member.to_string(),
            (
                consumers.iter().map(|c| c.to_string()).collect(),
                datasets.iter().map(|d| d.to_string()).collect(),
            ),
        );
        self
    }

    /// Puts `member`'s node audit log in `dir` (e.g. a small file system, to test a full disk).
    pub fn node_audit_dir(mut self, member: &str, dir: impl Into<PathBuf>) -> ClusterBuilder {
        self.audit_dirs.insert(member.to_string(), dir.into());
        self
    }

    /// Benchmarks only: `false` skips the audit `fsync` everywhere, to
    /// measure what the write-ahead rule adds to a query.
    pub fn audit_fsync(mut self, yes: bool) -> ClusterBuilder {
        self.audit_fsync = yes;
        self
    }

    /// Whether to enrol an analyst client certificate for every member (default yes).
    /// The coordinator's state engine: `sled` (the default) or a
    /// PostgreSQL URL.
    pub fn state(mut self, state: &str) -> ClusterBuilder {
        self.state = state.to_string();
        self
    }

    pub fn analysts(mut self, yes: bool) -> ClusterBuilder {
        self.analysts = yes;
        self
    }

    pub async fn start(self) -> anyhow::Result<Cluster> {
        let temp = match &self.dir {
            Some(_) => None,
            None => Some(tempfile::tempdir()?),
        };
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| temp.as_ref().expect("temp dir").path().to_path_buf());
        let pki_out = self.pki_out.clone().unwrap_or_else(|| dir.join("certs"));
        std::fs::create_dir_all(&dir)?;

        // The bureau initialises its CA and starts the coordinator.
        let coordinator_config = CoordinatorConfig {
            data_dir: dir.join("coordinator"),
            pki_dir: Some(pki_out.join("bureau")),
            listen: self.coordinator_listen.clone(),
            enroll_listen: self.enroll_listen.clone(),
            heartbeat_interval_secs: self.heartbeat_secs,
            offline_after_secs: self.heartbeat_secs * 3,
            metrics_listen: Some("127.0.0.1:0".into()),
            console_listen: Some(self.console_listen.clone()),
            audit: exchange_audit::AuditConfig {
                benchmark_without_fsync: !self.audit_fsync,
                ..Default::default()
            },
            authoritative: self.authoritative.clone(),
            state: self.state.clone(),
            ..CoordinatorConfig::default()
        };
        let init = exchange_coordinator::init(
            &coordinator_config.pki_dir(),
            &["127.0.0.1".into(), "localhost".into()],
        )?;
        let coordinator = exchange_console::start_coordinator(&coordinator_config).await?;
        let admin_tls = TlsIdentity::load(&coordinator_config.pki_dir(), "admin")?;
        let admin = Client::connect(&coordinator.addr.to_string(), &admin_tls).await?;
        ClientConfig::write_beside_certificate(
            &coordinator_config.pki_dir(),
            &coordinator.addr.to_string(),
            "admin",
            Some("bureau operator"),
        )?;

        // Demo data for the departments.
        let data_dir = dir.join("data");
        let planted = exchange_demo_data::generate(
            &data_dir,
            &Options {
                persons: self.persons,
                seed: self.seed,
            },
        )
        .await?;

        // Each department is added, enrols its node with a one-time token, and starts it.
        let mut nodes = BTreeMap::new();
        for (id, name) in &self.members {
            let added = admin.add_member(id, name, 0).await?;
            let token = added.token.context("no token in answer")?.token;
            let member_dir = pki_out.join(id);
            enroll(&EnrollOptions {
                enroll_addr: coordinator.enroll_addr.to_string(),
                token,
                ca_fingerprint: added.ca_fingerprint.clone(),
                role: Role::Node,
                server_names: vec!["127.0.0.1".into()],
                out_dir: member_dir.clone(),
                force: true,
            })
            .await
            .with_context(|| format!("enrolling the {id} node"))?;
            let manifest = data_dir.join(format!("{id}.toml"));
            if !manifest.exists() {
                bail!("no demo manifest for {id}: use one of the demo departments");
            }
            let node = exchange_node::start(NodeConfig {
                manifest,
                coordinator: coordinator.addr.to_string(),
                listen: "127.0.0.1:0".into(),
                advertise_addr: None,
                cert_dir: member_dir.clone(),
                data_dir: dir.join("nodes").join(id),
                heartbeat_interval_secs: self.heartbeat_secs,
                manifest_poll_secs: 1,
                veto_consumers: self.vetoes.get(id).map(|v| v.0.clone()).unwrap_or_default(),
                veto_datasets: self.vetoes.get(id).map(|v| v.1.clone()).unwrap_or_default(),
                audit: exchange_audit::AuditConfig {
                    dir: self.audit_dirs.get(id).cloned(),
                    benchmark_without_fsync: !self.audit_fsync,
                    ..Default::default()
                },
                metrics_listen: Some("127.0.0.1:0".into()),
            })
            .await
            .with_context(|| format!("starting the {id} node"))?;
            nodes.insert(id.clone(), node);
            if self.analysts {
                enroll_analyst(&admin, &coordinator, id, &added.ca_fingerprint, &member_dir)
                    .await?;
            }
        }
        // Departments that only consume: a member and an analyst, no node.
        for (id, name) in &self.consumers {
            let added = admin.add_member(id, name, 0).await?;
            enroll_analyst(
                &admin,
                &coordinator,
                id,
                &added.ca_fingerprint,
                &pki_out.join(id),
            )
            .await?;
        }
        let cluster = Cluster {
            coordinator,
            nodes,
            dir,
            pki_out,
            admin,
            ca_fingerprint: init.ca_fingerprint,
            planted,
            coordinator_config,
            _temp: temp,
        };
        cluster.wait_for_catalogs(Duration::from_secs(30)).await?;
        Ok(cluster)
    }
}

/// Enrols an analyst certificate for `id` and writes its `exchange.toml`.
async fn enroll_analyst(
    admin: &Client,
    coordinator: &RunningCoordinator,
    id: &str,
    ca_fingerprint: &str,
    member_dir: &Path,
) -> anyhow::Result<()> {
    let token = admin
        .issue_token(id, Role::Client, 0)
        .await?
        .token
        .context("no token")?
        .token;
    enroll(&EnrollOptions {
        enroll_addr: coordinator.enroll_addr.to_string(),
        token,
        ca_fingerprint: ca_fingerprint.to_string(),
        role: Role::Client,
        server_names: vec![],
        out_dir: member_dir.to_path_buf(),
        force: true,
    })
    .await
    .with_context(|| format!("enrolling an analyst of {id}"))?;
    ClientConfig::write_beside_certificate(
        member_dir,
        &coordinator.addr.to_string(),
        "client",
        Some(&format!("{id} analyst")),
    )?;
    Ok(())
}

/// A running federation.
pub struct Cluster {
    pub coordinator: RunningCoordinator,
    pub nodes: BTreeMap<String, RunningNode>,
    pub dir: PathBuf,
    pub pki_out: PathBuf,
    /// A client holding the bureau operator's admin certificate.
    pub admin: Client,
    pub ca_fingerprint: String,
    pub planted: Planted,
    pub coordinator_config: CoordinatorConfig,
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir)
            .field("nodes", &self.nodes.keys())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// The directory holding a member's certificates and `exchange.toml`.
    pub fn member_dir(&self, member: &str) -> PathBuf {
        self.pki_out.join(member)
    }

    /// Another coordinator, in process, on this cluster's key material and
    /// state (useful with a PostgreSQL `state`): its own data directory
    /// `<dir>/<name>` (its audit log) and listeners on free ports.
    pub async fn replica(&self, name: &str) -> anyhow::Result<RunningCoordinator> {
        exchange_coordinator::start(&CoordinatorConfig {
            data_dir: self.dir.join(name),
            listen: "127.0.0.1:0".into(),
            enroll_listen: "127.0.0.1:0".into(),
            console_listen: None,
            metrics_listen: None,
            replica_id: Some(name.to_string()),
            ..self.coordinator_config.clone()
        })
        .await
    }

    /// A client using the analyst certificate enrolled for `member`.
    pub async fn analyst(&self, member: &str) -> anyhow::Result<Client> {
        let tls = TlsIdentity::load(&self.member_dir(member), "client")?;
        Ok(Client::connect(&self.coordinator.addr.to_string(), &tls).await?)
    }

    /// Gives `consumer` a grant on `dataset` the way departments do: the
    /// consumer's analyst requests these fields (empty: all shared ones),
    /// and if the request waits, the owner's analyst approves it with
    /// `approve` (its `request_id` is filled in). Returns the grant id.
    pub async fn grant(
        &self,
        consumer: &str,
        dataset: &str,
        fields: &[&str],
        approve: pb::ApproveRequest,
    ) -> anyhow::Result<String> {
        self.grant_for(consumer, dataset, fields, "test grant", approve)
            .await
    }

    /// [`Cluster::grant`] with the purpose the consumer states in its request.
    pub async fn grant_for(
        &self,
        consumer: &str,
        dataset: &str,
        fields: &[&str],
        purpose: &str,
        approve: pb::ApproveRequest,
    ) -> anyhow::Result<String> {
        let request = self
            .analyst(consumer)
            .await?
            .request_access(pb::AccessRequest {
                dataset: dataset.into(),
                fields: fields.iter().map(|f| f.to_string()).collect(),
                purpose: purpose.into(),
                ..Default::default()
            })
            .await?;
        if request.status != "pending" {
            return Ok(request.grant_id);
        }
        let owner = dataset.split('/').next().unwrap_or_default();
        let decided = self
            .analyst(owner)
            .await?
            .approve(pb::ApproveRequest {
                request_id: request.id,
                ..approve
            })
            .await?;
        Ok(decided.grant_id)
    }

    /// Waits until the coordinator holds a catalog from every node.
    pub async fn wait_for_catalogs(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let missing: Vec<&String> = self
                .nodes
                .keys()
                .filter(|m| {
                    self.coordinator
                        .state
                        .federation
                        .node_view(m)
                        .catalog_version
                        == 0
                })
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("nodes never published their catalogs: {missing:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn shutdown(self) {
        for (_, node) in self.nodes {
            node.shutdown().await;
        }
        self.coordinator.shutdown().await;
    }
}

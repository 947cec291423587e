//! The node's configuration file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `node.toml`. Relative paths are relative to the file. Environment
/// variables and flags override it (see `exchange-node serve --help`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// The catalog manifest. Default `catalog.toml`.
    pub manifest: PathBuf,
    /// The coordinator's mutual-TLS address. Default `127.0.0.1:7400`.
    pub coordinator: String,
    /// This node's mutual-TLS listener. Default `127.0.0.1:7410`.
    pub listen: String,
    /// Address the coordinator should use to reach this node. Default: the bound address.
    pub advertise_addr: Option<String>,
    /// Holds `ca.crt`, `node.crt` and `node.key`. Default `pki`.
    pub cert_dir: PathBuf,
    /// Node state (last CRL) and, by default, the audit log. Default `node-data`.
    pub data_dir: PathBuf,
    /// Heartbeat period until the coordinator says otherwise. Default 5 s.
    pub heartbeat_interval_secs: u32,
    /// How often the manifest file is checked for changes. Default 2 s.
    pub manifest_poll_secs: u32,
    /// Consumer departments this node refuses, whatever their grants (local veto).
    pub veto_consumers: Vec<String>,
    /// Datasets this node does not release for now, whatever the grants (local veto).
    pub veto_datasets: Vec<String>,
    /// The audit log (`[audit]` table; defaults under `<data_dir>/audit`).
    pub audit: exchange_audit::AuditConfig,
    /// Prometheus metrics over plain HTTP (`GET /metrics`), e.g. `127.0.0.1:9410`. Default: off.
    pub metrics_listen: Option<String>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            manifest: PathBuf::from("catalog.toml"),
            coordinator: "127.0.0.1:7400".into(),
            listen: "127.0.0.1:7410".into(),
            advertise_addr: None,
            cert_dir: PathBuf::from("pki"),
            data_dir: PathBuf::from("node-data"),
            heartbeat_interval_secs: 5,
            manifest_poll_secs: 2,
            veto_consumers: Vec::new(),
            veto_datasets: Vec::new(),
            audit: exchange_audit::AuditConfig::default(),
            metrics_listen: None,
        }
    }
}

impl NodeConfig {
    pub fn load(path: &Path) -> anyhow::Result<NodeConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot read config: {e}", path.display()))?;
        let mut config: NodeConfig = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message().trim()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.manifest,
            &mut config.cert_dir,
            &mut config.data_dir,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        config.audit.rebase(base);
        config
            .audit
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if config.heartbeat_interval_secs == 0 || config.manifest_poll_secs == 0 {
            anyhow::bail!(
                "{}: heartbeat_interval_secs and manifest_poll_secs must be at least 1",
                path.display()
            );
        }
        Ok(config)
    }
}

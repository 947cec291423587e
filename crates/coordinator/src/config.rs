//! The coordinator's configuration file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `coordinator.toml`. Every key is optional; defaults are documented here
/// and in `deploy/coordinator.toml`. Environment variables and flags
/// override the file (see `coordinator serve --help`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorConfig {
    /// State (the member registry and catalog). Default `./coordinator-data`.
    pub data_dir: PathBuf,
    /// Key material: `ca.key`, `ca.crt`, `coordinator.*`, `admin.*`. Default `<data_dir>/pki`.
    pub pki_dir: Option<PathBuf>,
    /// Mutual-TLS listener. Default `127.0.0.1:7400`.
    pub listen: String,
    /// Enrolment listener (server TLS only). Default `127.0.0.1:7401`.
    pub enroll_listen: String,
    /// Address given to enrolled members for the main listener. Default: the bound address.
    pub advertise_addr: Option<String>,
    /// How often nodes heartbeat. Default 5 s.
    pub heartbeat_interval_secs: u32,
    /// A node with no heartbeat for this long is offline. Default 15 s.
    pub offline_after_secs: u32,
    /// Lifetime of enrolment tokens. Default 86,400 s (one day).
    pub token_ttl_secs: u32,
    /// Lifetime of issued member certificates. Default 365 days.
    pub certificate_validity_days: u32,
    /// Access requests waiting longer than this many working days are shown overdue. Default 5.
    pub decision_sla_working_days: u32,
    /// The audit log (`[audit]` table; defaults under `<data_dir>/audit`).
    pub audit: exchange_audit::AuditConfig,
    /// The web console over HTTPS, e.g. `127.0.0.1:7443`; browsers sign in
    /// with a client certificate from the federation CA. Default: off.
    pub console_listen: Option<String>,
    /// Prometheus metrics over plain HTTP (`GET /metrics`), e.g. `127.0.0.1:9400`. Default: off.
    pub metrics_listen: Option<String>,
    /// Which dataset is the authoritative source of an attribute, e.g.
    /// `registered_address = "market-regulation/companies"` under `[authoritative]`.
    /// Conflict reports name it.
    pub authoritative: std::collections::BTreeMap<String, String>,
    /// The state engine: `"sled"` (default: embedded, under
    /// `<data_dir>/state`) or a PostgreSQL URL,
    /// `"postgres://user:password@host:5432/exchange"`.
    pub state: String,
    /// Connections to PostgreSQL kept open. Default 8.
    pub state_pool_size: u32,
    /// This coordinator's name among the replicas sharing a PostgreSQL
    /// state: letters, digits, `-` and `_`, at most 63. Two running
    /// coordinators may not share one. Default: the host's name.
    pub replica_id: Option<String>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            data_dir: PathBuf::from("coordinator-data"),
            pki_dir: None,
            listen: "127.0.0.1:7400".into(),
            enroll_listen: "127.0.0.1:7401".into(),
            advertise_addr: None,
            heartbeat_interval_secs: 5,
            offline_after_secs: 15,
            token_ttl_secs: 86_400,
            certificate_validity_days: 365,
            decision_sla_working_days: 5,
            audit: exchange_audit::AuditConfig::default(),
            console_listen: None,
            metrics_listen: None,
            authoritative: Default::default(),
            state: "sled".into(),
            state_pool_size: 8,
            replica_id: None,
        }
    }
}

impl CoordinatorConfig {
    /// Reads a config file; errors name the file and the offending key.
    pub fn load(path: &Path) -> anyhow::Result<CoordinatorConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot read config: {e}", path.display()))?;
        let mut config: CoordinatorConfig = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message().trim()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        if config.data_dir.is_relative() {
            config.data_dir = base.join(&config.data_dir);
        }
        config.audit.rebase(base);
        if let Some(p) = config.pki_dir.as_mut() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(config)
    }

    /// Where the key material lives.
    pub fn pki_dir(&self) -> PathBuf {
        self.pki_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("pki"))
    }

    /// This coordinator's replica id: the configured one, else the host's
    /// name.
    pub fn replica_id(&self) -> String {
        self.replica_id.clone().unwrap_or_else(host_name)
    }

    /// Where the state store lives.
    pub fn state_dir(&self) -> PathBuf {
        self.data_dir.join("state")
    }

    /// The PostgreSQL settings when `state` names a database.
    pub fn postgres_state(&self) -> Option<exchange_storage::postgres::PgSettings> {
        is_postgres_url(&self.state).then(|| exchange_storage::postgres::PgSettings {
            pool_size: self.state_pool_size,
            ..exchange_storage::postgres::PgSettings::new(&self.state)
        })
    }

    /// Opens the configured state store. On PostgreSQL, pending schema
    /// migrations run (a newer schema is refused).
    pub fn open_state(&self) -> Result<exchange_storage::Db, exchange_storage::StorageError> {
        match self.postgres_state() {
            Some(settings) => exchange_storage::Db::open_postgres(&settings, true),
            None => exchange_storage::Db::open(&self.state_dir()),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_interval_secs == 0 || self.heartbeat_interval_secs > 3600 {
            return Err(
                "heartbeat_interval_secs must be 1 to 3600 (fix: heartbeat_interval_secs = 5)"
                    .into(),
            );
        }
        if self.offline_after_secs <= self.heartbeat_interval_secs {
            return Err("offline_after_secs must exceed heartbeat_interval_secs (fix: three times the interval)".into());
        }
        if !(60..=30 * 86_400).contains(&self.token_ttl_secs) {
            return Err("token_ttl_secs must be 60 to 2592000".into());
        }
        if !(1..=3650).contains(&self.certificate_validity_days) {
            return Err("certificate_validity_days must be 1 to 3650".into());
        }
        self.audit.validate()?;
        if self.state != "sled" && !is_postgres_url(&self.state) {
            return Err(format!(
                "state must be \"sled\" or a PostgreSQL URL such as \"postgres://exchange@127.0.0.1:5432/exchange\", not {:?}",
                exchange_storage::postgres::redacted(&self.state)
            ));
        }
        if let Some(id) = &self.replica_id {
            if id.is_empty() || id.len() > 63 || !id.chars().all(valid_id_char) {
                return Err(format!(
                    "replica_id must be 1 to 63 letters, digits, '-' or '_', not {:?} (fix: replica_id = \"a\")",
                    id.chars().take(80).collect::<String>()
                ));
            }
        }
        if !(1..=256).contains(&self.state_pool_size) {
            return Err("state_pool_size must be 1 to 256 (fix: state_pool_size = 8)".into());
        }
        Ok(())
    }
}

/// The host's name, made a valid replica id (else `coordinator`).
pub fn host_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let id: String = host
        .trim()
        .chars()
        .map(|c| if valid_id_char(c) { c } else { '-' })
        .take(63)
        .collect();
    if id.is_empty() {
        "coordinator".into()
    } else {
        id
    }
}

fn valid_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn is_postgres_url(state: &str) -> bool {
    state.starts_with("postgres://") || state.starts_with("postgresql://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.toml");
        std::fs::write(&path, "listen = \"0.0.0.0:7400\"\nlisten_port = 1\n").unwrap();
        let err = CoordinatorConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("coordinator.toml") && err.contains("listen_port"),
            "{err}"
        );
        std::fs::write(
            &path,
            "heartbeat_interval_secs = 10\noffline_after_secs = 5\n",
        )
        .unwrap();
        let err = CoordinatorConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("offline_after_secs"), "{err}");
        std::fs::write(&path, "replica_id = \"a b\\u001b[31m\"\n").unwrap();
        let err = CoordinatorConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("replica_id must be") && err.contains("fix: replica_id"),
            "{err}"
        );
        std::fs::write(&path, "data_dir = \"state\"\n").unwrap();
        let config = CoordinatorConfig::load(&path).unwrap();
        assert_eq!(config.data_dir, dir.path().join("state"));
        assert_eq!(config.listen, "127.0.0.1:7400");
    }
}

//! One module per `exchange` command: its arguments and what it prints.

pub mod access;
pub mod audit;
pub mod catalog;
pub mod cert;
pub mod conflicts;
pub mod demo;
pub mod dispute;
pub mod enroll;
pub mod join;
pub mod lookup;
pub mod members;
pub mod query;
pub mod report;

use std::path::PathBuf;

use exchange_client::{Client, ClientConfig};

/// What every command gets from the global flags.
#[derive(Debug)]
pub struct Context {
    /// `--config` or `$EXCHANGE_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--json`.
    pub json: bool,
}

impl Context {
    /// Connects with the configured certificate.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let path = self.config.clone().unwrap_or_else(default_config_path);
        let config = ClientConfig::load(&path)?;
        Ok(Client::from_config(&config).await?)
    }

    /// Refuses `--json` for a command that prints no data to format.
    pub fn no_json(&self, command: &str) -> anyhow::Result<()> {
        if self.json {
            anyhow::bail!(
                "--json does not apply to `exchange {command}`, which prints no data; leave it out"
            );
        }
        Ok(())
    }
}

/// `~/.exchange/exchange.toml`, where `exchange enroll` writes by default.
pub fn default_config_path() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".exchange/exchange.toml")
}

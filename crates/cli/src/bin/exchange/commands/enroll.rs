//! `exchange enroll`: an analyst's certificate, with a key made here.

use std::path::{Path, PathBuf};

use exchange_client::{enroll, ClientConfig, EnrollOptions};
use exchange_pki::Role;

use super::{default_config_path, Context};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The coordinator's enrolment address, host:port.
    #[arg(long)]
    coordinator: String,
    #[arg(long)]
    token: String,
    #[arg(long)]
    ca_fingerprint: String,
    /// Where to keep the key, certificate and exchange.toml. Default ~/.exchange.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Your name, recorded as the asserted user of your queries.
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    force: bool,
}

pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let dir = args.dir.unwrap_or_else(|| {
        default_config_path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    });
    let enrolled = enroll(&EnrollOptions {
        enroll_addr: args.coordinator,
        token: args.token,
        ca_fingerprint: args.ca_fingerprint,
        role: Role::Client,
        server_names: vec![],
        out_dir: dir.clone(),
        force: args.force,
    })
    .await?;
    let path = ClientConfig::write_beside_certificate(
        &dir,
        &enrolled.coordinator_address,
        "client",
        args.user.as_deref(),
    )?;
    if ctx.json {
        exchange_cli::say!(
            "{}",
            serde_json::json!({
                "identity": enrolled.identity,
                "key": enrolled.key_path,
                "config": path,
            })
        );
        return Ok(());
    }
    exchange_cli::say!("enrolled as {}", enrolled.identity);
    exchange_cli::say!(
        "  key {} (mode 0600, generated here, never sent)",
        enrolled.key_path.display()
    );
    exchange_cli::say!("  config {}", path.display());
    exchange_cli::say!(
        "try: exchange --config {} catalog search 登记",
        path.display()
    );
    Ok(())
}

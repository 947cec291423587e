//! `exchange-node`: a department's node.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use exchange_cli::logging;
use exchange_client::{enroll, EnrollOptions};
use exchange_node::NodeConfig;
use exchange_pki::Role;

/// mimalloc: the query path allocates many small, short-lived buffers
/// (HTTP/2 frames, Arrow batches, audit records) across threads, where it
/// measured faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "exchange-node",
    version,
    about = "A department's exchange node: publishes its catalog to the federation"
)]
struct Cli {
    /// TOML config file (see deploy/node.toml). Flags and environment variables override it.
    #[arg(long, global = true, env = "EXCHANGE_NODE_CONFIG")]
    config: Option<PathBuf>,
    /// Directory holding ca.crt, node.crt and node.key.
    #[arg(long, global = true, env = "EXCHANGE_NODE_CERT_DIR")]
    cert_dir: Option<PathBuf>,
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "EXCHANGE_LOG_FORMAT"
    )]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Enrol this node: generate its key here, send only a CSR with the one-time token.
    Enroll {
        /// The coordinator's enrolment address, host:port.
        #[arg(long)]
        coordinator: String,
        #[arg(long)]
        token: String,
        /// The CA fingerprint printed by `coordinator member add`.
        #[arg(long)]
        ca_fingerprint: String,
        /// Host names or IPs this node serves on (repeat). Default: 127.0.0.1 and localhost.
        #[arg(long = "server-name")]
        server_names: Vec<String>,
        /// Replace an existing key and certificate.
        #[arg(long)]
        force: bool,
    },
    /// Validate the manifest against the source databases and exit.
    Check {
        #[arg(long, env = "EXCHANGE_NODE_MANIFEST")]
        manifest: Option<PathBuf>,
    },
    /// Rebuild the subject index (who was looked up in which query, for data-subject reports) from the node's audit log. Stop the node first. The log stays the record.
    Reindex {
        #[arg(long, env = "EXCHANGE_NODE_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Run the node until Ctrl-C or SIGTERM.
    Serve {
        #[arg(long, env = "EXCHANGE_NODE_MANIFEST")]
        manifest: Option<PathBuf>,
        /// The coordinator's mutual-TLS address.
        #[arg(long, env = "EXCHANGE_NODE_COORDINATOR")]
        coordinator: Option<String>,
        #[arg(long, env = "EXCHANGE_NODE_LISTEN")]
        listen: Option<String>,
        #[arg(long, env = "EXCHANGE_NODE_ADVERTISE_ADDR")]
        advertise_addr: Option<String>,
        #[arg(long, env = "EXCHANGE_NODE_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    logging::init(cli.log_format, "info");
    if let Err(e) = run(cli).await {
        exchange_cli::say_err!("error: {}", exchange_cli::error_text(&e));
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = match &cli.config {
        Some(path) => NodeConfig::load(path)?,
        None => NodeConfig::default(),
    };
    if let Some(d) = cli.cert_dir {
        config.cert_dir = d;
    }
    match cli.command {
        Command::Enroll {
            coordinator,
            token,
            ca_fingerprint,
            mut server_names,
            force,
        } => {
            if server_names.is_empty() {
                server_names = vec!["127.0.0.1".into(), "localhost".into()];
            }
            let enrolled = enroll(&EnrollOptions {
                enroll_addr: coordinator,
                token,
                ca_fingerprint,
                role: Role::Node,
                server_names,
                out_dir: config.cert_dir.clone(),
                force,
            })
            .await?;
            exchange_cli::say!("enrolled as {}", enrolled.identity);
            exchange_cli::say!(
                "  certificate {} (valid until {})",
                enrolled.certificate_path.display(),
                exchange_cli::output::unix_time(enrolled.not_after_unix)
            );
            exchange_cli::say!(
                "  private key {} (mode 0600, generated here, never sent)",
                enrolled.key_path.display()
            );
            exchange_cli::say!("  coordinator {}", enrolled.coordinator_address);
            // The certificate directory as an absolute path, so the hint
            // works from any directory.
            let cert_dir = std::path::absolute(&config.cert_dir).unwrap_or(config.cert_dir.clone());
            exchange_cli::say!(
                "next: exchange-node --cert-dir {} serve --coordinator {} --manifest catalog.toml",
                cert_dir.display(),
                enrolled.coordinator_address
            );
        }
        Command::Reindex { data_dir } => {
            if let Some(d) = data_dir {
                config.data_dir = d;
            }
            let db = exchange_storage::Db::open(&config.data_dir)?;
            let options = config.audit.options(&config.data_dir);
            let read = exchange_node::subject_index::SubjectIndex::rebuild(
                &db,
                &[options.archive_dir.clone(), options.dir.clone()],
            )?;
            exchange_cli::say!(
                "indexed {read} audit records from {} for subject reports",
                options.dir.display()
            );
        }
        Command::Check { manifest } => {
            let path = manifest.unwrap_or(config.manifest);
            let parsed = exchange_catalog::Manifest::load(&path).map_err(anyhow::Error::new)?;
            let published = exchange_node::load_and_check(&path, &parsed.department).await?;
            exchange_cli::say!(
                "{}: valid. {} dataset(s) checked against their source tables:",
                path.display(),
                published.manifest.datasets.len()
            );
            for d in &published.manifest.datasets {
                exchange_cli::say!(
                    "  {:<28} {} ({} fields, {})",
                    d.id,
                    d.title,
                    d.fields.len(),
                    d.sharing
                );
            }
            for warning in &published.warnings {
                exchange_cli::say!("warning: {warning}");
            }
        }
        Command::Serve {
            manifest,
            coordinator,
            listen,
            advertise_addr,
            data_dir,
        } => {
            if let Some(m) = manifest {
                config.manifest = m;
            }
            if let Some(c) = coordinator {
                config.coordinator = c;
            }
            if let Some(l) = listen {
                config.listen = l;
            }
            if advertise_addr.is_some() {
                config.advertise_addr = advertise_addr;
            }
            if let Some(d) = data_dir {
                config.data_dir = d;
            }
            let node = exchange_node::start(config).await?;
            exchange_cli::say_err!("node {} serving on {}", node.state.member_id, node.addr);
            exchange_coordinator::wait_for_signal().await;
            node.shutdown().await;
        }
    }
    Ok(())
}

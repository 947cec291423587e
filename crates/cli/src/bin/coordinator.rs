//! `coordinator`: the bureau's service and its operator commands.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use exchange_cli::{logging, output};
use exchange_client::Client;
use exchange_coordinator::CoordinatorConfig;
use exchange_pki::Role;
use exchange_transport::TlsIdentity;

/// mimalloc: the query path allocates many small, short-lived buffers
/// (HTTP/2 frames, Arrow batches, audit records) across threads, where it
/// measured faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "coordinator",
    version,
    about = "The data bureau's coordinator: member registry, PKI and federation catalog"
)]
struct Cli {
    /// TOML config file (see deploy/coordinator.toml). Flags and environment variables override it.
    #[arg(long, global = true, env = "EXCHANGE_COORDINATOR_CONFIG")]
    config: Option<PathBuf>,
    /// State directory.
    #[arg(long, global = true, env = "EXCHANGE_COORDINATOR_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Key material directory (default <data-dir>/pki).
    #[arg(long, global = true, env = "EXCHANGE_COORDINATOR_PKI_DIR")]
    pki_dir: Option<PathBuf>,
    /// State engine: sled (embedded, the default) or a PostgreSQL URL (postgres://user:password@host:5432/db). Overrides `state` in the config.
    #[arg(long, global = true, env = "EXCHANGE_COORDINATOR_STATE")]
    state: Option<String>,
    /// This coordinator's name among replicas sharing PostgreSQL state (default: the host's name). Overrides `replica_id` in the config.
    #[arg(long, global = true, env = "EXCHANGE_COORDINATOR_REPLICA_ID")]
    replica_id: Option<String>,
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
    /// Create the federation CA (keys mode 0600), the coordinator's certificate and the operator's admin certificate.
    Init {
        /// Host names or IPs the coordinator is reached at (repeat). localhost and 127.0.0.1 are always included, for operators on the same machine.
        #[arg(long = "server-name")]
        server_names: Vec<String>,
    },
    /// Run the coordinator until Ctrl-C or SIGTERM.
    Serve {
        /// Mutual-TLS listener, host:port.
        #[arg(long, env = "EXCHANGE_COORDINATOR_LISTEN")]
        listen: Option<String>,
        /// Enrolment listener (server TLS only), host:port.
        #[arg(long, env = "EXCHANGE_COORDINATOR_ENROLL_LISTEN")]
        enroll_listen: Option<String>,
        /// Address given to enrolled members for the mutual-TLS listener.
        #[arg(long, env = "EXCHANGE_COORDINATOR_ADVERTISE_ADDR")]
        advertise_addr: Option<String>,
    },
    /// Manage member departments (talks to the running coordinator with the admin certificate).
    Member {
        /// The running coordinator's mutual-TLS address (default: `listen` from the config).
        #[arg(long, global = true, env = "EXCHANGE_COORDINATOR_ADDR")]
        coordinator: Option<String>,
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// The audit trail as the bureau sees it (talks to the running coordinator with the admin certificate).
    Audit {
        /// The running coordinator's mutual-TLS address (default: `listen` from the config).
        #[arg(long, global = true, env = "EXCHANGE_COORDINATOR_ADDR")]
        coordinator: Option<String>,
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The state store: schema migrations, and moving a federation between sled and PostgreSQL (with the coordinator stopped).
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Write a complete development PKI for demos and tests, without a running coordinator.
    DevPki {
        /// Where member certificates go.
        #[arg(long, default_value = "certs-dev")]
        out: PathBuf,
        /// Members as id=display name (repeat). Default: the nine demo departments.
        #[arg(long = "member")]
        members: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum StateCommand {
    /// Bring a PostgreSQL state database to this coordinator's schema version (serve also does this at start).
    Migrate {
        /// Show the pending migrations and their SQL without applying them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write every member, token, certificate serial, catalog, request, grant, dispute and quota counter to a file.
    Export {
        #[arg(long)]
        out: PathBuf,
    },
    /// Read an export into the configured state store, which must be empty (for example: export from sled, set state to PostgreSQL, import).
    Import {
        #[arg(long)]
        from: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Rebuild the audit index from this coordinator's own log: on sled, the whole embedded index (stop the coordinator first); on PostgreSQL, this replica's share of the view the replicas share (may run beside serve). The log stays the record; audit verify never reads the index.
    Reindex,
    /// Compare the coordinator's records with one node's: queries served without authorization, authorized but never served, row-count mismatches. Exits 1 if any.
    Reconcile {
        #[arg(long)]
        node: String,
        /// From this time: a date, an RFC 3339 time, or a span back (24h, 7d). Default 24h.
        #[arg(long, default_value = "24h")]
        since: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum MemberCommand {
    /// Register a department and print its one-time node enrolment token.
    Add {
        id: String,
        /// Display name, e.g. "车辆管理所 Vehicle Administration".
        #[arg(long)]
        name: String,
        /// Token lifetime in seconds (default: the coordinator's token_ttl_secs).
        #[arg(long, default_value_t = 0)]
        token_ttl: u32,
    },
    /// Issue another one-time enrolment token, e.g. for an analyst's client certificate.
    Token {
        id: String,
        #[arg(long, default_value = "client")]
        role: String,
        #[arg(long, default_value_t = 0)]
        ttl: u32,
    },
    /// List members with status.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a member: all its certificates are refused by the coordinator at once and by every node within one heartbeat.
    Revoke {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

fn config(cli: &Cli) -> anyhow::Result<CoordinatorConfig> {
    let mut config = match &cli.config {
        Some(path) => CoordinatorConfig::load(path)?,
        None => CoordinatorConfig::default(),
    };
    if let Some(d) = &cli.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(p) = &cli.pki_dir {
        config.pki_dir = Some(p.clone());
    }
    if let Some(state) = &cli.state {
        config.state = state.clone();
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("--state: {e}"))?;
    }
    if let Some(id) = &cli.replica_id {
        config.replica_id = Some(id.clone());
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("--replica-id: {e}"))?;
    }
    Ok(config)
}

/// A client with the bureau's admin certificate, to the running coordinator.
async fn admin_client(
    config: &CoordinatorConfig,
    coordinator: Option<String>,
) -> anyhow::Result<Client> {
    let addr = coordinator.unwrap_or_else(|| config.listen.clone());
    let tls = TlsIdentity::load(&config.pki_dir(), "admin").with_context(|| {
        format!(
            "loading the admin certificate from {} (set --pki-dir or --data-dir)",
            config.pki_dir().display()
        )
    })?;
    Ok(Client::connect(&addr, &tls).await?)
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
    let mut config = config(&cli)?;
    match cli.command {
        Command::Init { mut server_names } => {
            for local in ["localhost", "127.0.0.1"] {
                if !server_names.iter().any(|n| n == local) {
                    server_names.push(local.into());
                }
            }
            let report = exchange_coordinator::init(&config.pki_dir(), &server_names)?;
            exchange_cli::say!("federation CA created in {}", report.pki_dir.display());
            exchange_cli::say!("CA fingerprint (give it to every department with its token):");
            exchange_cli::say!("  {}", report.ca_fingerprint);
            exchange_cli::say!(
                "next: coordinator serve, then coordinator member add <id> --name <name>"
            );
        }
        Command::Serve {
            listen,
            enroll_listen,
            advertise_addr,
        } => {
            if let Some(l) = listen {
                config.listen = l;
            }
            if let Some(l) = enroll_listen {
                config.enroll_listen = l;
            }
            if advertise_addr.is_some() {
                config.advertise_addr = advertise_addr;
            }
            let running = exchange_console::start_coordinator(&config).await?;
            exchange_cli::say_err!(
                "coordinator serving on {} (mutual TLS) and {} (enrolment); CA fingerprint {}",
                running.addr,
                running.enroll_addr,
                running.ca_fingerprint
            );
            if let Some(console) = running.console_addr {
                exchange_cli::say_err!("web console: https://{console}/ (sign in with a certificate: exchange cert export --p12 FILE)");
            }
            running.run_until_signal().await;
        }
        Command::Member {
            coordinator,
            command,
        } => {
            let client = admin_client(&config, coordinator).await?;
            member(&client, command).await?;
        }
        Command::Audit {
            command: AuditCommand::Reindex,
            ..
        } => {
            let copied = exchange_coordinator::reindex_audit(&config)?;
            exchange_cli::say!(
                "copied {copied} queries from {} into the audit index",
                config.audit.options(&config.data_dir).dir.display()
            );
        }
        Command::Audit {
            coordinator,
            command: AuditCommand::Reconcile { node, since, json },
        } => {
            let since = exchange_cli::audit::parse_time(&since)?;
            let client = admin_client(&config, coordinator).await?;
            let response = client.reconcile(&node, since).await?;
            exchange_cli::say!("{}", exchange_cli::audit::reconcile(&node, &response, json));
            if !response.discrepancies.is_empty() {
                std::process::exit(1);
            }
        }
        Command::State { command } => {
            let text = match command {
                StateCommand::Migrate { dry_run } => {
                    exchange_cli::state::migrate(&config, dry_run)?
                }
                StateCommand::Export { out } => exchange_cli::state::export(&config, &out)?,
                StateCommand::Import { from } => exchange_cli::state::import(&config, &from)?,
            };
            exchange_cli::say!("{text}");
        }
        Command::DevPki { out, members } => {
            let parsed: Vec<(String, String)> = if members.is_empty() {
                exchange_demo_data::DEPARTMENTS
                    .iter()
                    .map(|(i, n)| (i.to_string(), n.to_string()))
                    .collect()
            } else {
                members
                    .iter()
                    .map(|m| {
                        m.split_once('=')
                            .map(|(i, n)| (i.to_string(), n.to_string()))
                            .ok_or_else(|| anyhow::anyhow!("--member {m:?}: use id=display name"))
                    })
                    .collect::<anyhow::Result<_>>()?
            };
            let refs: Vec<(&str, &str)> = parsed
                .iter()
                .map(|(i, n)| (i.as_str(), n.as_str()))
                .collect();
            if config.pki_dir.is_none() {
                config.pki_dir = Some(out.join("bureau"));
            }
            let (report, written) = exchange_coordinator::write_dev_pki(
                &config,
                &out,
                &refs,
                &["localhost".into(), "127.0.0.1".into()],
            )?;
            exchange_cli::say!("development PKI written:");
            exchange_cli::say!(
                "  bureau CA and admin certificate: {}",
                report.pki_dir.display()
            );
            for m in written {
                exchange_cli::say!(
                    "  {:<18} {}/node.{{crt,key}} and client.{{crt,key}}",
                    m.id,
                    m.dir.display()
                );
            }
            exchange_cli::say!("CA fingerprint: {}", report.ca_fingerprint);
            exchange_cli::say!(
                "coordinator state (members and certificate serials): {}",
                config.state_dir().display()
            );
        }
    }
    Ok(())
}

async fn member(client: &Client, command: MemberCommand) -> anyhow::Result<()> {
    match command {
        MemberCommand::Add {
            id,
            name,
            token_ttl,
        } => {
            let added = client.add_member(&id, &name, token_ttl).await?;
            exchange_cli::say!("member {id} added ({name}).");
            print_token(
                &id,
                Role::Node,
                &added.token.unwrap_or_default(),
                &added.ca_fingerprint,
                &added.enroll_address,
            );
        }
        MemberCommand::Token { id, role, ttl } => {
            let role = Role::parse(&role)?;
            let issued = client.issue_token(&id, role, ttl).await?;
            print_token(
                &id,
                role,
                &issued.token.unwrap_or_default(),
                &issued.ca_fingerprint,
                &issued.enroll_address,
            );
        }
        MemberCommand::List { json } => {
            exchange_cli::say!("{}", output::members(&client.members().await?, json));
        }
        MemberCommand::Revoke { id, reason } => {
            let r = client.revoke_member(&id, &reason).await?;
            exchange_cli::say!(
                "member {id} revoked: {} certificate(s) listed in CRL #{}. The coordinator refuses them now; nodes within one heartbeat.",
                r.revoked_certificates, r.crl_number
            );
        }
    }
    Ok(())
}

/// Prints a one-time token, the CA fingerprint and the command that uses them.
fn print_token(
    member: &str,
    role: Role,
    token: &exchange_proto::v1::EnrolmentToken,
    fingerprint: &str,
    enroll_address: &str,
) {
    exchange_cli::say!(
        "one-time {role} enrolment token for {member} (expires {}):",
        output::time_of(token.expires_at)
    );
    exchange_cli::say!("  {}", token.token);
    exchange_cli::say!("CA fingerprint:");
    exchange_cli::say!("  {fingerprint}");
    let command = if role == Role::Node {
        "exchange-node enroll"
    } else {
        "exchange enroll"
    };
    exchange_cli::say!("enrol with:");
    let address = if enroll_address.is_empty() {
        "<enrolment address>"
    } else {
        enroll_address
    };
    exchange_cli::say!(
        "  {command} --coordinator {address} --token {} --ca-fingerprint {fingerprint}",
        token.token
    );
}

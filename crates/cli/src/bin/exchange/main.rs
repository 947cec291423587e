//! `exchange`: the analyst's command line, and the one-command demo.
//!
//! This file parses the arguments and hands each command to its module in
//! `commands/`; every module holds its own arguments and presentation.

mod commands;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use exchange_cli::logging;

use commands::{
    access, audit, catalog, cert, conflicts, demo, dispute, enroll, join, lookup, members, query,
    report,
};

/// mimalloc: the query path allocates many small, short-lived buffers
/// (HTTP/2 frames, Arrow batches, audit records) across threads, where it
/// measured faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "exchange",
    version,
    about = "Query the federated data exchange"
)]
struct Cli {
    /// Client config (exchange.toml). Default: $EXCHANGE_CONFIG, else ~/.exchange/exchange.toml.
    #[arg(long, global = true, env = "EXCHANGE_CONFIG")]
    config: Option<PathBuf>,
    /// Print JSON instead of tables (JSON lines for rows). Commands that print no data refuse it.
    #[arg(long, global = true)]
    json: bool,
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
    /// Enrol an analyst certificate: the key is generated here and never sent.
    Enroll(enroll::Args),
    /// Search and inspect the federation catalog.
    Catalog {
        #[command(subcommand)]
        command: catalog::Command,
    },
    /// Ask for access to another department's data, and decide on requests for yours.
    Access {
        #[command(subcommand)]
        command: access::Command,
    },
    /// Query a dataset you hold a grant on. Rows are masked at the source as the grant says.
    Query(query::Args),
    /// One person or company across every department you hold a grant on, queried in parallel;
    /// or a file of thousands of keys against chosen datasets (--person-ids-file, --org-codes-file).
    Lookup(lookup::Args),
    /// Join your own list with other departments' data and get the answer: a declared spec
    /// (datasets, how they match, one SQL answer over them). Every read is an audited query.
    Join(join::Args),
    /// Compare one attribute of the same companies or persons across departments and report
    /// every conflict (after normalizing spacing and full-width characters), naming the
    /// authoritative source.
    Conflicts(conflicts::Args),
    /// Disputes over values: file one with the owner, list them, resolve or reject as the owner.
    Dispute {
        #[command(subcommand)]
        command: dispute::Command,
    },
    /// The audit trail: verify a log offline, list queries, data-subject reports.
    Audit {
        #[command(subcommand)]
        command: audit::Command,
    },
    /// Usage statistics from the coordinator's audit log.
    Report(report::Args),
    /// The federation's member departments.
    Members {
        #[command(subcommand)]
        command: members::Command,
    },
    /// Show the identity your certificate gives you.
    Whoami,
    /// Your certificate for a browser: `cert export --p12 FILE` for the web console.
    Cert {
        #[command(subcommand)]
        command: cert::Command,
    },
    /// Start a local demo federation: a coordinator and nine department nodes on synthetic data.
    Demo(demo::Args),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let level = if matches!(cli.command, Command::Demo(_)) {
        "warn,exchange_node=info"
    } else {
        "warn"
    };
    logging::init(cli.log_format, level);
    if let Err(e) = run(cli).await {
        exchange_cli::say_err!("error: {}", exchange_cli::error_text(&e));
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = commands::Context {
        config: cli.config,
        json: cli.json,
    };
    match cli.command {
        Command::Enroll(args) => enroll::run(&ctx, args).await,
        Command::Catalog { command } => catalog::run(&ctx, command).await,
        Command::Access { command } => access::run(&ctx, command).await,
        Command::Query(args) => query::run(&ctx, args).await,
        Command::Lookup(args) => lookup::run(&ctx, args).await,
        Command::Join(args) => join::run(&ctx, args).await,
        Command::Conflicts(args) => conflicts::run(&ctx, args).await,
        Command::Dispute { command } => dispute::run(&ctx, command).await,
        Command::Audit { command } => audit::run(&ctx, command).await,
        Command::Report(args) => report::run(&ctx, args).await,
        Command::Members { command } => members::run(&ctx, command).await,
        Command::Whoami => members::whoami(&ctx).await,
        Command::Cert { command } => cert::run(&ctx, command),
        Command::Demo(args) => demo::run(&ctx, args).await,
    }
}

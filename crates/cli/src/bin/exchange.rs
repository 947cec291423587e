//! `exchange`: the analyst's command line, and the one-command demo.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use exchange_cli::{logging, output};
use exchange_client::{enroll, Client, ClientConfig, EnrollOptions};
use exchange_pki::Role;
use exchange_proto::v1 as pb;

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
    /// Print JSON instead of tables.
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
    Enroll {
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
    },
    /// Search and inspect the federation catalog.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Ask for access to another department's data, and decide on requests for yours.
    Access {
        #[command(subcommand)]
        command: AccessCommand,
    },
    /// Query a dataset you hold a grant on. Rows are masked at the source as the grant says.
    Query {
        dataset: String,
        /// Fields to return, comma-separated. Default: every field of your grant.
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        /// A filter: =, !=, <, <=, >, >=, IN (...), BETWEEN ... AND ..., LIKE 'prefix%', AND, OR.
        #[arg(long = "where", default_value = "")]
        filter: String,
        /// Why you need the data (required); recorded with the query.
        #[arg(long)]
        purpose: String,
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long, value_enum, default_value = "table")]
        format: QueryFormat,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// One person or company across every department you hold a grant on, queried in parallel;
    /// or a file of thousands of keys against chosen datasets (--person-ids-file, --org-codes-file).
    Lookup {
        /// A resident identity number (checked against its check character).
        #[arg(
            long,
            conflicts_with_all = ["org_code", "person_ids_file", "org_codes_file"],
            required_unless_present_any = ["org_code", "person_ids_file", "org_codes_file"]
        )]
        person_id: Option<String>,
        /// A unified social credit code (checked against its check characters).
        #[arg(long, conflicts_with_all = ["person_ids_file", "org_codes_file"])]
        org_code: Option<String>,
        /// A file of resident identity numbers: one per line, or the first column of a CSV file.
        #[arg(long, conflicts_with = "org_codes_file")]
        person_ids_file: Option<PathBuf>,
        /// A file of unified social credit codes: one per line, or the first column of a CSV file.
        #[arg(long)]
        org_codes_file: Option<PathBuf>,
        /// Batch only: the datasets to read, comma-separated (default: every granted dataset carrying the key type).
        #[arg(long, value_delimiter = ',')]
        datasets: Vec<String>,
        /// Why you need it (required); recorded with every dataset read.
        #[arg(long)]
        purpose: String,
        /// One lookup: answers not complete by then are reported as timed out.
        #[arg(long, default_value_t = 3000)]
        deadline_ms: u64,
        /// Batch only: write the rows here (format from the extension: .csv, .json, .parquet).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Batch only: csv, json (lines) or parquet; overrides the extension.
        #[arg(long)]
        format: Option<String>,
        /// Batch only: write every rejected line (malformed or duplicate) to this CSV file.
        #[arg(long)]
        rejects: Option<PathBuf>,
        /// Batch only: keys per IN query.
        #[arg(long, default_value_t = 1000)]
        chunk_size: usize,
        /// Batch only: queries in flight at once.
        #[arg(long, default_value_t = 6)]
        parallel: usize,
    },
    /// Join your own list with other departments' data and get the answer: a declared spec
    /// (datasets, how they match, one SQL answer over them). Every read is an audited query.
    Join {
        /// The join specification (TOML): purpose, [[tables]] and the answer query.
        #[arg(long)]
        spec: PathBuf,
        #[arg(long, value_parser = ["table", "csv", "json"], default_value = "table")]
        format: String,
        /// Write the answer here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Compare one attribute of the same companies or persons across departments and report
    /// every conflict (after normalizing spacing and full-width characters), naming the
    /// authoritative source.
    Conflicts {
        /// org-code or person-id.
        #[arg(long, value_parser = ["org-code", "person-id"])]
        key: String,
        /// The field compared, e.g. registered_address.
        #[arg(long)]
        attribute: String,
        /// Two or more datasets, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        datasets: Vec<String>,
        #[arg(long, default_value = "数据一致性核查 data consistency check")]
        purpose: String,
    },
    /// Disputes over values: file one with the owner, list them, resolve or reject as the owner.
    Dispute {
        #[command(subcommand)]
        command: DisputeCommand,
    },
    /// The audit trail: verify a log offline, list queries, data-subject reports.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Usage statistics from the coordinator's audit log.
    Report {
        /// departments (issued, served, rows, denials, latency, approval turnaround), datasets (popularity) or daily.
        #[arg(value_parser = ["departments", "datasets", "daily"])]
        kind: String,
        /// From this time: a date, an RFC 3339 time, or a span back (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long, value_parser = ["table", "csv", "json"], default_value = "table")]
        format: String,
    },
    /// The federation's member departments.
    Members {
        #[command(subcommand)]
        command: MembersCommand,
    },
    /// Show the identity your certificate gives you.
    Whoami,
    /// Start a local demo federation: a coordinator and nine department nodes on synthetic data.
    Demo {
        /// Synthetic persons to generate.
        #[arg(long, default_value_t = 100_000)]
        persons: usize,
        #[arg(long, default_value_t = exchange_demo_data::Options::default().seed)]
        seed: u64,
        /// Where state and the department databases go (recreated on each run).
        #[arg(long, default_value = "demo-data")]
        dir: PathBuf,
        /// Where the development PKI goes (recreated on each run).
        #[arg(long, default_value = "certs-dev")]
        certs: PathBuf,
        /// Coordinator port; enrolment uses the next one.
        #[arg(long, default_value_t = 7400)]
        port: u16,
        /// Run a mission scenario on the planted data, print its answer and stop
        /// (all runs the six in turn).
        #[arg(long, value_parser = ["poverty", "enrolment", "subsidy", "tax-electricity", "integrity", "conflicts", "all"])]
        scenario: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum DisputeCommand {
    /// Tell the owner that a value of one of its datasets looks wrong.
    File {
        dataset: String,
        /// The entity, e.g. its org code.
        #[arg(long)]
        key: String,
        #[arg(long)]
        field: String,
        /// The value you were given.
        #[arg(long, default_value = "")]
        value_seen: String,
        /// The value you believe is right.
        #[arg(long, default_value = "")]
        proposed: String,
        /// Why (required).
        #[arg(long)]
        note: String,
    },
    /// Disputes you filed, and disputes about your datasets.
    List {
        /// open, resolved or rejected.
        #[arg(long, value_parser = ["open", "resolved", "rejected"])]
        status: Option<String>,
    },
    /// As the owner: close a dispute as resolved (data corrected) or rejected (value stands).
    Resolve {
        id: String,
        #[arg(long, value_parser = ["resolved", "rejected"])]
        outcome: String,
        /// Required: what was done, or why the value stands.
        #[arg(long)]
        note: String,
    },
}

#[derive(Subcommand, Debug)]
enum CatalogCommand {
    /// Full-text search over titles, descriptions and fields (Chinese and English).
    Search {
        /// Words to find; empty lists every dataset that passes the filters.
        text: Vec<String>,
        #[arg(long)]
        department: Option<String>,
        /// unconditional, conditional or none.
        #[arg(long)]
        sharing: Option<String>,
        /// A semantic key type, e.g. person_id, org_code, vehicle_plate.
        #[arg(long)]
        key_type: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One dataset with its fields.
    Show { dataset: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum QueryFormat {
    Table,
    Csv,
    /// JSON lines: one object per row.
    Json,
    /// Parquet (Snappy); needs --output.
    Parquet,
}

#[derive(Subcommand, Debug)]
enum AccessCommand {
    /// Request access to a dataset. Unconditional data is granted at once; conditional data waits for the owner.
    Request {
        dataset: String,
        /// Fields to request, comma-separated. Default: every field the owner shares.
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        /// Why you need it (required); recorded with every decision and query.
        #[arg(long)]
        purpose: String,
        /// The legal or policy basis for the request.
        #[arg(long, default_value = "")]
        basis: String,
        /// Requested expiry, YYYY-MM-DD (default: one year).
        #[arg(long, default_value = "")]
        until: String,
    },
    /// Requests for your department's datasets waiting for a decision.
    Pending,
    /// Every request your department made or received, with its decision.
    List,
    /// Approve a request for your department's data, optionally narrowing it.
    Approve {
        request: String,
        /// Grant only these of the requested fields.
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        /// Lift the default mask of a granted field (repeat).
        #[arg(long)]
        unmask: Vec<String>,
        /// Only rows matching this filter, e.g. "registered_on >= '2020-01-01'".
        #[arg(long, default_value = "")]
        row_filter: String,
        #[arg(long, default_value_t = 0)]
        quota_rows_per_day: u64,
        /// An earlier expiry than requested, YYYY-MM-DD.
        #[arg(long, default_value = "")]
        until: String,
        /// Hide accesses under this grant from data-subject reports until this date (auditors still see them).
        #[arg(long, default_value = "")]
        embargo_until: String,
        /// Distinct values the consumer may test per day against fields it sees masked (each `=` or `IN` value counts once; default 500; one value at most 3 times a day). Raise it for batch lookups by a masked key.
        #[arg(long, default_value_t = 0)]
        masked_value_budget: u64,
    },
    /// Refuse a request; a reason is mandatory.
    Refuse {
        request: String,
        #[arg(long)]
        reason: String,
    },
    /// Grants your department holds or has given.
    Grants,
    /// Revoke a grant on your department's data.
    Revoke {
        grant: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Verify a log offline: a node's or the coordinator's data directory, an audit directory or an archived segment. Exits 1 if it was altered.
    Verify {
        path: PathBuf,
        /// The federation CA certificate: also check that every checkpoint was signed by a certificate it issued.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Queries and their outcome: your department's own, and those on your data (the bureau sees all).
    Log {
        #[arg(long)]
        dataset: Option<String>,
        /// Only queries by this department.
        #[arg(long)]
        consumer: Option<String>,
        /// Only queries on this department's datasets.
        #[arg(long)]
        owner: Option<String>,
        /// Only purposes containing this text.
        #[arg(long)]
        purpose: Option<String>,
        /// From this time: a date, an RFC 3339 time, or a span back (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Which departments accessed one person's or company's records, when and why (bureau certificate).
    Subject {
        /// A resident identity number (checked against its check character).
        #[arg(
            long,
            conflicts_with = "org_code",
            required_unless_present = "org_code"
        )]
        person_id: Option<String>,
        /// A unified social credit code (checked against its check characters).
        #[arg(long)]
        org_code: Option<String>,
        /// Auditors: include accesses under embargo, marked as such.
        #[arg(long)]
        include_embargoed: bool,
    },
}

#[derive(Subcommand, Debug)]
enum MembersCommand {
    /// Members with status, node liveness and catalog version.
    List,
}

fn default_config_path() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".exchange/exchange.toml")
}

async fn client(cli_config: &Option<PathBuf>) -> anyhow::Result<Client> {
    let path = cli_config.clone().unwrap_or_else(default_config_path);
    let config = ClientConfig::load(&path)?;
    Ok(Client::from_config(&config).await?)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let level = if matches!(cli.command, Command::Demo { .. }) {
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
    match cli.command {
        Command::Enroll {
            coordinator,
            token,
            ca_fingerprint,
            dir,
            user,
            force,
        } => {
            let dir = dir.unwrap_or_else(|| {
                default_config_path()
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            });
            let enrolled = enroll(&EnrollOptions {
                enroll_addr: coordinator,
                token,
                ca_fingerprint,
                role: Role::Client,
                server_names: vec![],
                out_dir: dir.clone(),
                force,
            })
            .await?;
            let path = ClientConfig::write_beside_certificate(
                &dir,
                &enrolled.coordinator_address,
                "client",
                user.as_deref(),
            )?;
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
        }
        Command::Catalog { command } => {
            let client = client(&cli.config).await?;
            match command {
                CatalogCommand::Search {
                    text,
                    department,
                    sharing,
                    key_type,
                    limit,
                } => {
                    let response = client
                        .search(pb::SearchRequest {
                            text: text.join(" "),
                            department: department.unwrap_or_default(),
                            sharing: sharing.unwrap_or_default(),
                            key_type: key_type.unwrap_or_default(),
                            limit,
                        })
                        .await?;
                    exchange_cli::say!("{}", output::search_results(&response, cli.json));
                }
                CatalogCommand::Show { dataset } => {
                    exchange_cli::say!(
                        "{}",
                        output::dataset_detail(&client.dataset(&dataset).await?, cli.json)
                    );
                }
            }
        }
        Command::Access { command } => {
            let client = client(&cli.config).await?;
            let json = cli.json;
            let text = match command {
                AccessCommand::Request {
                    dataset,
                    fields,
                    purpose,
                    basis,
                    until,
                } => {
                    let r = client
                        .request_access(pb::AccessRequest {
                            dataset,
                            fields,
                            purpose,
                            basis,
                            until,
                            user: String::new(),
                        })
                        .await?;
                    output::access_request(&r, json)
                }
                AccessCommand::Pending => output::access_requests(&client.pending().await?, json),
                AccessCommand::List => {
                    output::access_requests(&client.access_requests().await?, json)
                }
                AccessCommand::Approve {
                    request,
                    fields,
                    unmask,
                    row_filter,
                    quota_rows_per_day,
                    until,
                    embargo_until,
                    masked_value_budget,
                } => {
                    let r = client
                        .approve(pb::ApproveRequest {
                            request_id: request,
                            fields,
                            unmask,
                            row_filter,
                            quota_rows_per_day,
                            until,
                            user: String::new(),
                            embargo_until,
                            masked_value_budget_per_day: masked_value_budget,
                        })
                        .await?;
                    output::access_request(&r, json)
                }
                AccessCommand::Refuse { request, reason } => {
                    output::access_request(&client.refuse(&request, &reason).await?, json)
                }
                AccessCommand::Grants => output::grants(&client.grants().await?, json),
                AccessCommand::Revoke { grant, reason } => {
                    let g = client.revoke_grant(&grant, &reason).await?;
                    if json {
                        output::grants(&[g], true)
                    } else {
                        format!(
                            "grant {} on {} for {} revoked.",
                            g.id, g.dataset, g.consumer
                        )
                    }
                }
            };
            exchange_cli::say!("{text}");
        }
        Command::Audit {
            command: AuditCommand::Verify { path, ca },
        } => {
            let ca_der = match &ca {
                Some(p) => Some(
                    exchange_pki::files::read_pem_der(p, "CERTIFICATE")
                        .with_context(|| format!("reading the CA certificate {}", p.display()))?,
                ),
                None => None,
            };
            let report =
                exchange_audit::verify(&path, ca_der.as_deref()).map_err(|e| anyhow::anyhow!(e))?;
            exchange_cli::say!("{}", exchange_cli::audit::verify(&report, cli.json));
            if !report.ok() {
                std::process::exit(1);
            }
        }
        Command::Audit {
            command:
                AuditCommand::Log {
                    dataset,
                    consumer,
                    owner,
                    purpose,
                    since,
                    until,
                    limit,
                },
        } => {
            let request = pb::AuditLogRequest {
                dataset: dataset.unwrap_or_default(),
                consumer: consumer.unwrap_or_default(),
                owner: owner.unwrap_or_default(),
                purpose: purpose.unwrap_or_default(),
                since_unix: since
                    .as_deref()
                    .map(exchange_cli::audit::parse_time)
                    .transpose()?
                    .unwrap_or(0),
                until_unix: until
                    .as_deref()
                    .map(exchange_cli::audit::parse_time)
                    .transpose()?
                    .unwrap_or(0),
                limit,
            };
            let client = client(&cli.config).await?;
            exchange_cli::say!(
                "{}",
                exchange_cli::audit::log(&client.audit_log(request).await?, cli.json)
            );
        }
        Command::Audit {
            command:
                AuditCommand::Subject {
                    person_id,
                    org_code,
                    include_embargoed,
                },
        } => {
            let (key_type, key) = match (person_id, org_code) {
                (Some(p), _) => ("person_id", p),
                (None, Some(o)) => ("org_code", o),
                (None, None) => anyhow::bail!("give --person-id or --org-code"),
            };
            let client = client(&cli.config).await?;
            let response = client
                .subject_report(pb::SubjectReportRequest {
                    key_type: key_type.into(),
                    key,
                    include_embargoed,
                })
                .await?;
            exchange_cli::say!("{}", exchange_cli::audit::subject(&response, cli.json));
        }
        Command::Lookup {
            person_id,
            org_code,
            person_ids_file,
            org_codes_file,
            datasets,
            purpose,
            deadline_ms,
            output: out_path,
            format,
            rejects,
            chunk_size,
            parallel,
        } => {
            let batch_file = match (&person_ids_file, &org_codes_file) {
                (Some(f), _) => Some(("person_id", f)),
                (None, Some(f)) => Some(("org_code", f)),
                _ => None,
            };
            if let Some((key_type, file)) = batch_file {
                if !(1..=64).contains(&parallel) {
                    anyhow::bail!("--parallel must be 1 to 64");
                }
                let format = exchange_cli::batch::BatchFormat::choose(
                    format.as_deref(),
                    out_path.as_deref(),
                )?;
                let client = client(&cli.config).await?;
                let options = exchange_client::batch::BatchOptions {
                    purpose,
                    chunk_size,
                    parallel,
                    ..Default::default()
                };
                let complete = exchange_cli::batch::run(
                    &client,
                    key_type,
                    file,
                    &datasets,
                    &options,
                    format,
                    out_path.as_deref(),
                    rejects.as_deref(),
                )
                .await?;
                if !complete {
                    anyhow::bail!("some keys got no answer from some datasets (see the summary above); the output is partial");
                }
                return Ok(());
            }
            if out_path.is_some() || !datasets.is_empty() || format.is_some() {
                anyhow::bail!("--output, --format and --datasets apply to batch lookups (--person-ids-file or --org-codes-file)");
            }
            let (key_type, key) = match (person_id, org_code) {
                (Some(p), _) => ("person_id", p),
                (None, Some(o)) => ("org_code", o),
                (None, None) => anyhow::bail!(
                    "give --person-id, --org-code, --person-ids-file or --org-codes-file"
                ),
            };
            if !(100..=600_000).contains(&deadline_ms) {
                anyhow::bail!("--deadline-ms must be 100 to 600000");
            }
            let client = client(&cli.config).await?;
            let report = client
                .lookup(
                    key_type,
                    &key,
                    &purpose,
                    std::time::Duration::from_millis(deadline_ms),
                )
                .await?;
            exchange_cli::say!("{}", output::lookup(&report, cli.json));
        }
        Command::Dispute { command } => {
            let client = client(&cli.config).await?;
            let disputes = match command {
                DisputeCommand::File {
                    dataset,
                    key,
                    field,
                    value_seen,
                    proposed,
                    note,
                } => vec![
                    client
                        .file_dispute(pb::FileDisputeRequest {
                            dataset,
                            key,
                            field,
                            value_seen,
                            proposed,
                            note,
                            user: String::new(),
                        })
                        .await?,
                ],
                DisputeCommand::List { status } => {
                    client.disputes(status.as_deref().unwrap_or("")).await?
                }
                DisputeCommand::Resolve { id, outcome, note } => vec![
                    client
                        .resolve_dispute(pb::ResolveDisputeRequest {
                            id,
                            outcome,
                            note,
                            user: String::new(),
                        })
                        .await?,
                ],
            };
            exchange_cli::say!("{}", output::disputes(&disputes, cli.json));
        }
        Command::Conflicts {
            key,
            attribute,
            datasets,
            purpose,
        } => {
            let client = client(&cli.config).await?;
            let report = client
                .conflicts(&exchange_client::conflicts::ConflictQuery {
                    key_type: key.replace('-', "_"),
                    attribute,
                    datasets,
                    purpose,
                })
                .await?;
            if cli.json {
                exchange_cli::say!("{}", output::conflicts_json(&report));
            } else {
                exchange_cli::say_part!("{}", report.render());
            }
        }
        Command::Join {
            spec,
            format,
            output: out_path,
        } => {
            let spec = exchange_client::join::JoinSpec::load(&spec)?;
            let client = client(&cli.config).await?;
            let answer = client.join(&spec).await?;
            let format = if cli.json { "json".to_string() } else { format };
            let text = output::join_answer(&answer, &format);
            match out_path {
                Some(p) => std::fs::write(&p, text + "\n")
                    .with_context(|| format!("writing {}", p.display()))?,
                None => exchange_cli::say!("{text}"),
            }
            for read in &answer.reads {
                exchange_cli::say_err!(
                    "read {:<12} {} row(s) from {} in {} quer{}",
                    read.name,
                    read.rows,
                    read.source,
                    read.queries,
                    if read.queries == 1 { "y" } else { "ies" }
                );
            }
        }
        Command::Report {
            kind,
            since,
            until,
            format,
        } => {
            let request = pb::ReportRequest {
                kind,
                since_unix: since
                    .as_deref()
                    .map(exchange_cli::audit::parse_time)
                    .transpose()?
                    .unwrap_or(0),
                until_unix: until
                    .as_deref()
                    .map(exchange_cli::audit::parse_time)
                    .transpose()?
                    .unwrap_or(0),
            };
            let client = client(&cli.config).await?;
            let format = if cli.json { "json".to_string() } else { format };
            exchange_cli::say!(
                "{}",
                exchange_cli::audit::report(&client.report(request).await?, &format)
            );
        }
        Command::Members {
            command: MembersCommand::List,
        } => {
            let client = client(&cli.config).await?;
            exchange_cli::say!("{}", output::members(&client.members().await?, cli.json));
        }
        Command::Query {
            dataset,
            fields,
            filter,
            purpose,
            limit,
            format,
            output: out_path,
        } => {
            // --json means JSON here too: JSON lines, as --format json.
            let format = match (cli.json, format) {
                (false, format) => format,
                (true, QueryFormat::Table | QueryFormat::Json) => QueryFormat::Json,
                (true, other) => anyhow::bail!(
                    "--json asks for JSON lines, but --format {} asks for another format: give one of them",
                    format!("{other:?}").to_lowercase()
                ),
            };
            if format == QueryFormat::Parquet && out_path.is_none() {
                anyhow::bail!("--format parquet writes a file: add --output FILE.parquet");
            }
            let client = client(&cli.config).await?;
            let command = exchange_query::QueryCommand {
                dataset,
                fields,
                filter,
                purpose,
                user: String::new(),
                limit,
            };
            let mut stream = client.query(command).await?;
            query_output(&mut stream, format, out_path.as_deref()).await?;
        }
        Command::Whoami => {
            let client = client(&cli.config).await?;
            let me = client.who_am_i().await?;
            if cli.json {
                exchange_cli::say!(
                    "{}",
                    serde_json::json!({ "identity": me.identity, "member": me.member_id, "role": me.role, "serial": me.certificate_serial })
                );
            } else {
                exchange_cli::say!(
                    "{} (member {}, role {}, certificate {})",
                    me.identity,
                    me.member_id,
                    me.role,
                    me.certificate_serial
                );
            }
        }
        Command::Demo {
            persons,
            seed,
            dir,
            certs,
            port,
            scenario,
        } => demo(persons, seed, &dir, &certs, port, scenario.as_deref()).await?,
    }
    Ok(())
}

/// Writes query results as they arrive: tables are collected (and capped);
/// CSV and JSON stream batch by batch, so memory stays bounded.
async fn query_output(
    stream: &mut arrow_flight::decode::FlightRecordBatchStream,
    format: QueryFormat,
    path: Option<&Path>,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    use std::io::Write;
    let file = match path {
        Some(p) => {
            Some(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => None,
    };
    let mut parquet: Option<parquet::arrow::ArrowWriter<std::fs::File>> = None;
    let mut out: Box<dyn Write> = match (&file, format) {
        (Some(_), QueryFormat::Parquet) => Box::new(std::io::sink()),
        (Some(f), _) => Box::new(std::io::BufWriter::new(f.try_clone()?)),
        (None, _) => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    // Exports to a file show their progress on standard error.
    let progress = if path.is_some() && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {human_pos} rows ({per_sec}) {elapsed}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Some(bar)
    } else {
        None
    };
    let mut rows = 0usize;
    let mut kept = Vec::new();
    let mut header_written = false;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| anyhow::anyhow!("{}", flight_error_text(&e)))?;
        rows += batch.num_rows();
        match format {
            QueryFormat::Table => {
                if kept
                    .iter()
                    .map(|b: &arrow_array::RecordBatch| b.num_rows())
                    .sum::<usize>()
                    < 1_000
                {
                    kept.push(batch);
                }
            }
            QueryFormat::Csv => {
                if !header_written {
                    writeln!(out, "{}", output::csv_header(&batch.schema()))?;
                    header_written = true;
                }
                output::write_csv(&batch, &mut out)?;
            }
            QueryFormat::Json => output::write_json_lines(&batch, &mut out)?,
            QueryFormat::Parquet => {
                if parquet.is_none() {
                    let f = file
                        .as_ref()
                        .context("parquet needs --output")?
                        .try_clone()?;
                    let props = parquet::file::properties::WriterProperties::builder()
                        .set_compression(parquet::basic::Compression::SNAPPY)
                        .build();
                    parquet = Some(parquet::arrow::ArrowWriter::try_new(
                        f,
                        batch.schema(),
                        Some(props),
                    )?);
                }
                if let Some(w) = parquet.as_mut() {
                    w.write(&batch)?;
                }
            }
        }
        if let Some(bar) = &progress {
            bar.set_position(rows as u64);
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if let Some(w) = parquet {
        w.close()?;
    } else if format == QueryFormat::Parquet {
        anyhow::bail!("the query returned no batches; no parquet file written");
    }
    if format == QueryFormat::Table {
        if rows > 1_000 {
            writeln!(
                out,
                "{}",
                output::batches_table(&kept, 1_000)
                    .replace("rows shown", &format!("rows shown (of {rows})"))
            )?;
        } else {
            writeln!(out, "{}", output::batches_table(&kept, 1_000))?;
        }
    }
    out.flush()?;
    if path.is_some() {
        exchange_cli::say_err!("{rows} row(s) written");
    }
    Ok(())
}

fn flight_error_text(e: &arrow_flight::error::FlightError) -> String {
    match e {
        arrow_flight::error::FlightError::Tonic(status) => {
            format!("{}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    }
}

/// A demo's hold on its directory: `demo.pid` names the running process,
/// removed when the demo stops.
struct DemoClaim {
    pid_file: PathBuf,
}

impl Drop for DemoClaim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// Checks, before anything is removed, that no running demo uses `dir` and
/// that the demo's two ports are free, then claims `dir`. A second demo
/// started by mistake thus stops with nothing changed, instead of wiping
/// the running federation's data and certificates first.
fn claim_demo_dir(dir: &Path, port: u16) -> anyhow::Result<DemoClaim> {
    let enrol = port.checked_add(1).context("--port too high")?;
    for p in [port, enrol] {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", p)) {
            anyhow::bail!(
                "port {p} on 127.0.0.1 is not free ({e}); nothing was changed. Is a demo already running? Stop it, or start this one with --port {} (it uses that port and the next)",
                port.saturating_add(10)
            );
        }
    }
    let pid_file = dir.join("demo.pid");
    if let Ok(text) = std::fs::read_to_string(&pid_file) {
        let pid = text.trim();
        let alive = std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|exe| exe.to_string_lossy().contains("exchange"));
        if alive && pid != std::process::id().to_string() {
            anyhow::bail!(
                "a demo (process {pid}) is running from {}; nothing was changed. Stop it with Ctrl-C first, or give this one its own --dir, --certs and --port",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&pid_file, std::process::id().to_string())
        .with_context(|| format!("writing {}", pid_file.display()))?;
    Ok(DemoClaim { pid_file })
}

/// Removes what a previous demo run created, and nothing else.
fn clean_previous_demo(dir: &Path, certs: &Path) -> anyhow::Result<()> {
    for sub in ["coordinator", "nodes", "data"] {
        let p = dir.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    if certs.exists() {
        for entry in std::fs::read_dir(certs)? {
            let entry = entry?;
            let name = entry.file_name();
            let known = name == "bureau"
                || name == "ca.crt"
                || exchange_demo_data::DEPARTMENTS
                    .iter()
                    .any(|(id, _)| name == *id);
            if known {
                let p = entry.path();
                if p.is_dir() {
                    std::fs::remove_dir_all(&p)?;
                } else {
                    std::fs::remove_file(&p)?;
                }
            }
        }
    }
    Ok(())
}

async fn demo(
    persons: usize,
    seed: u64,
    dir: &Path,
    certs: &Path,
    port: u16,
    scenario: Option<&str>,
) -> anyhow::Result<()> {
    let _claim = claim_demo_dir(dir, port)?;
    clean_previous_demo(dir, certs)?;
    exchange_cli::say_err!(
        "generating {persons} synthetic persons for nine departments into {} ...",
        dir.join("data").display()
    );
    let started = std::time::Instant::now();
    let main = format!("127.0.0.1:{port}");
    let enrol = format!(
        "127.0.0.1:{}",
        port.checked_add(1).context("--port too high")?
    );
    let cluster = exchange_testkit::ClusterBuilder::new()
        .demo_federation()
        .persons(persons)
        .seed(seed)
        .dir(dir)
        .pki_out(certs)
        .coordinator_listen(&main, &enrol)
        .heartbeat_secs(5)
        .start()
        .await
        .with_context(|| {
            format!(
                "starting the demo federation (is port {port} or {} already in use? try --port)",
                port + 1
            )
        })?;
    if let Some(name) = scenario {
        let names: Vec<&str> = if name == "all" {
            exchange_testkit::scenarios::SCENARIOS.to_vec()
        } else {
            vec![name]
        };
        exchange_cli::say_err!(
            "demo federation up in {:.1} s; running {} ...",
            started.elapsed().as_secs_f64(),
            names.join(", ")
        );
        let mut failed = None;
        for name in names {
            let t = std::time::Instant::now();
            match exchange_testkit::scenarios::run(&cluster, name).await {
                Ok(text) => exchange_cli::say!(
                    "== scenario {name} ({:.2} s)\n{text}",
                    t.elapsed().as_secs_f64()
                ),
                Err(e) => {
                    exchange_cli::say!(
                        "== scenario {name}: FAILED: {}",
                        exchange_cli::error_text(&e)
                    );
                    failed = Some(name);
                }
            }
        }
        exchange_cli::say!(
            "Every read above is in the audit logs under {}: `exchange audit verify {}`.",
            dir.display(),
            dir.join("coordinator").display()
        );
        cluster.shutdown().await;
        if let Some(name) = failed {
            anyhow::bail!("scenario {name} failed");
        }
        return Ok(());
    }
    let datasets = cluster.coordinator.state.federation.dataset_count();
    let analyst = certs.join("civil-affairs/exchange.toml");
    let bureau = certs.join("bureau");
    exchange_cli::say!();
    exchange_cli::say!(
        "Exchange demo federation is running ({:.1} s to start).",
        started.elapsed().as_secs_f64()
    );
    exchange_cli::say!(
        "  coordinator     {} (mutual TLS)   enrolment {}",
        cluster.coordinator.addr,
        cluster.coordinator.enroll_addr
    );
    exchange_cli::say!("  CA fingerprint  {}", cluster.ca_fingerprint);
    exchange_cli::say!(
        "  departments     {} nodes online, {datasets} datasets published",
        cluster.nodes.len()
    );
    exchange_cli::say!(
        "  data            {} persons, {} companies in {}",
        cluster.planted.persons,
        cluster.planted.companies,
        dir.join("data").display()
    );
    exchange_cli::say!(
        "  certificates    {} (one directory per department, plus bureau/)",
        certs.display()
    );
    exchange_cli::say!();
    exchange_cli::say!("In another terminal, act as a civil-affairs analyst:");
    exchange_cli::say!("  export EXCHANGE_CONFIG={}", analyst.display());
    exchange_cli::say!("  cargo run --release --bin exchange -- catalog search 机动车");
    exchange_cli::say!(
        "  cargo run --release --bin exchange -- catalog search 登记 --department real-estate"
    );
    exchange_cli::say!(
        "  cargo run --release --bin exchange -- catalog search --key-type person_id"
    );
    exchange_cli::say!(
        "  cargo run --release --bin exchange -- catalog show vehicle-admin/vehicles"
    );
    exchange_cli::say!("  cargo run --release --bin exchange -- members list");
    exchange_cli::say!("  cargo run --release --bin exchange -- whoami");
    exchange_cli::say!("Act for another department with certs-dev/<department>/exchange.toml.");
    exchange_cli::say!();
    exchange_cli::say!("As the bureau operator:");
    exchange_cli::say!(
        "  cargo run --release --bin coordinator -- --pki-dir {} member list --coordinator {}",
        bureau.display(),
        cluster.coordinator.addr
    );
    exchange_cli::say!("  cargo run --release --bin coordinator -- --pki-dir {} member add science --name '科学技术局' --coordinator {}", bureau.display(), cluster.coordinator.addr);
    exchange_cli::say!();
    exchange_cli::say!(
        "The audit trail (every query is recorded at the coordinator and at the owner node):"
    );
    exchange_cli::say!("  cargo run --release --bin exchange -- audit log        # your queries, and queries on your data");
    exchange_cli::say!("  cargo run --release --bin exchange -- report departments");
    exchange_cli::say!(
        "  EXCHANGE_CONFIG={} cargo run --release --bin exchange -- audit subject --person-id {}",
        bureau.join("exchange.toml").display(),
        cluster.planted.official_person_id
    );
    exchange_cli::say!(
        "  cargo run --release --bin exchange -- audit verify {} --ca {}",
        dir.join("nodes/vehicle-admin").display(),
        bureau.join("ca.crt").display()
    );
    exchange_cli::say!(
        "  cargo run --release --bin coordinator -- --pki-dir {} audit reconcile --node vehicle-admin --coordinator {}",
        bureau.display(),
        cluster.coordinator.addr
    );
    if let Some(m) = cluster.coordinator.metrics_addr {
        exchange_cli::say!("  Prometheus: coordinator http://{m}/metrics; nodes:");
        for (id, node) in &cluster.nodes {
            if let Some(m) = node.metrics_addr {
                exchange_cli::say!("    {id:<18} http://{m}/metrics");
            }
        }
    }
    exchange_cli::say!();
    exchange_cli::say!("Press Ctrl-C to stop.");
    exchange_coordinator::wait_for_signal().await;
    exchange_cli::say_err!("stopping ...");
    cluster.shutdown().await;
    Ok(())
}

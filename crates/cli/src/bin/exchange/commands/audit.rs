//! `exchange audit`: verify a log offline, list queries, data-subject reports.

use std::path::PathBuf;

use anyhow::Context as _;
use exchange_proto::v1 as pb;
use exchange_proto::v1::typed::Timestamp;

use super::Context;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
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
        /// Page through the log oldest first, this many queries a page (1 to 1000); prints the command for the next page.
        #[arg(long)]
        page_size: Option<u32>,
        /// The token the previous page printed (keep every other option as it was).
        #[arg(long, requires = "page_size")]
        page_token: Option<String>,
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

pub async fn run(ctx: &Context, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Verify { path, ca } => verify(ctx, path, ca),
        Command::Log {
            dataset,
            consumer,
            owner,
            purpose,
            since,
            until,
            limit,
            page_size,
            page_token,
        } => {
            let request = pb::AuditLogRequest {
                dataset: dataset.unwrap_or_default(),
                consumer: consumer.unwrap_or_default(),
                owner: owner.unwrap_or_default(),
                purpose: purpose.unwrap_or_default(),
                since: timestamp_or_none(since.as_deref())?,
                until: timestamp_or_none(until.as_deref())?,
                limit,
                page_size: page_size.unwrap_or(0),
                page_token: page_token.unwrap_or_default(),
                ..Default::default()
            };
            let log = ctx.client().await?.audit_log(request.clone()).await?;
            exchange_cli::say!("{}", exchange_cli::audit::log(&log, ctx.json));
            if !log.next_page_token.is_empty() && !ctx.json {
                exchange_cli::say!(
                    "next page: {}",
                    exchange_cli::audit::next_page_command(&request, &log.next_page_token)
                );
            }
            Ok(())
        }
        Command::Subject {
            person_id,
            org_code,
            include_embargoed,
        } => {
            let (key_type, key) = match (person_id, org_code) {
                (Some(p), _) => ("person_id", p),
                (None, Some(o)) => ("org_code", o),
                (None, None) => anyhow::bail!("give --person-id or --org-code"),
            };
            let request = pb::SubjectReportRequest {
                key_type: key_type.into(),
                key,
                include_embargoed,
            };
            let response = ctx.client().await?.subject_report(request).await?;
            exchange_cli::say!("{}", exchange_cli::audit::subject(&response, ctx.json));
            Ok(())
        }
    }
}

/// `--since`/`--until` as Unix seconds; absent is 0, no bound.
/// A `--since`/`--until` value as the Timestamp the API takes.
pub fn timestamp_or_none(text: Option<&str>) -> anyhow::Result<Option<Timestamp>> {
    Ok(text
        .map(exchange_cli::audit::parse_time)
        .transpose()?
        .and_then(exchange_proto::v1::typed::timestamp))
}

fn verify(ctx: &Context, path: PathBuf, ca: Option<PathBuf>) -> anyhow::Result<()> {
    let ca_der = match &ca {
        Some(p) => Some(
            exchange_pki::files::read_pem_der(p, "CERTIFICATE")
                .with_context(|| format!("reading the CA certificate {}", p.display()))?,
        ),
        None => None,
    };
    let report =
        exchange_audit::verify(&path, ca_der.as_deref()).map_err(|e| anyhow::anyhow!(e))?;
    exchange_cli::say!("{}", exchange_cli::audit::verify(&report, ctx.json));
    if !report.ok() {
        std::process::exit(1);
    }
    Ok(())
}

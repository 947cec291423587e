//! `exchange access`: requests, the owner's decisions, and grants.

use exchange_cli::output;
use exchange_client::Client;
use exchange_proto::v1 as pb;
use exchange_proto::v1::typed;

use super::Context;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
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
    Approve(ApproveArgs),
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

#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
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
}

pub async fn run(ctx: &Context, command: Command) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let text = decide(&client, command, ctx.json).await?;
    exchange_cli::say!("{text}");
    Ok(())
}

/// A `--until`-style date as the API's Date; empty gives none.
fn cli_date(option: &str, text: &str) -> anyhow::Result<Option<typed::Date>> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    typed::date(text).map(Some).ok_or_else(|| {
        anyhow::anyhow!(
            "{option} {:?} is not a date: use YYYY-MM-DD, for example 2027-12-31",
            text.chars().take(40).collect::<String>()
        )
    })
}

async fn decide(client: &Client, command: Command, json: bool) -> anyhow::Result<String> {
    Ok(match command {
        Command::Request {
            dataset,
            fields,
            purpose,
            basis,
            until,
        } => {
            let request = pb::AccessRequest {
                dataset,
                fields,
                purpose,
                basis,
                until_date: cli_date("--until", &until)?,
                ..Default::default()
            };
            output::access_request(&client.request_access(request).await?, json)
        }
        Command::Pending => output::access_requests(&client.pending().await?, json),
        Command::List => output::access_requests(&client.access_requests().await?, json),
        Command::Approve(a) => {
            let approval = pb::ApproveRequest {
                request_id: a.request,
                fields: a.fields,
                unmask: a.unmask,
                row_filter: a.row_filter,
                quota_rows_per_day: a.quota_rows_per_day,
                until_date: cli_date("--until", &a.until)?,
                embargo_until_date: cli_date("--embargo-until", &a.embargo_until)?,
                masked_value_budget_per_day: a.masked_value_budget,
                ..Default::default()
            };
            output::access_request(&client.approve(approval).await?, json)
        }
        Command::Refuse { request, reason } => {
            output::access_request(&client.refuse(&request, &reason).await?, json)
        }
        Command::Grants => output::grants(&client.grants().await?, json),
        Command::Revoke { grant, reason } => {
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
    })
}

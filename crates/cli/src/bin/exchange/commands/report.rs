//! `exchange report`: usage statistics from the coordinator's audit log.

use exchange_proto::v1 as pb;

use super::audit::timestamp_or_none;
use super::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
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
}

pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let request = pb::ReportRequest {
        kind: args.kind,
        since: timestamp_or_none(args.since.as_deref())?,
        until: timestamp_or_none(args.until.as_deref())?,
        ..Default::default()
    };
    let client = ctx.client().await?;
    let format = if ctx.json {
        "json".to_string()
    } else {
        args.format
    };
    exchange_cli::say!(
        "{}",
        exchange_cli::audit::report(&client.report(request).await?, &format)
    );
    Ok(())
}

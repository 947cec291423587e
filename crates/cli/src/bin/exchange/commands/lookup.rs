//! `exchange lookup`: one person or company across every granted
//! department, or a file of keys in batches.

use std::path::PathBuf;

use exchange_cli::output;

use super::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
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
    /// Batch only: queries in flight at once (1 to 16, the coordinator's limit).
    #[arg(long, default_value_t = 6)]
    parallel: usize,
}

pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    match (&args.person_ids_file, &args.org_codes_file) {
        (Some(f), _) => batch(ctx, "person_id", f.clone(), args).await,
        (None, Some(f)) => batch(ctx, "org_code", f.clone(), args).await,
        (None, None) => one(ctx, args).await,
    }
}

async fn one(ctx: &Context, args: Args) -> anyhow::Result<()> {
    if args.output.is_some() || !args.datasets.is_empty() || args.format.is_some() {
        anyhow::bail!("--output, --format and --datasets apply to batch lookups (--person-ids-file or --org-codes-file)");
    }
    let (key_type, key) = match (args.person_id, args.org_code) {
        (Some(p), _) => ("person_id", p),
        (None, Some(o)) => ("org_code", o),
        (None, None) => {
            anyhow::bail!("give --person-id, --org-code, --person-ids-file or --org-codes-file")
        }
    };
    if !(100..=60_000).contains(&args.deadline_ms) {
        anyhow::bail!("--deadline-ms must be 100 to 60000 (the coordinator's limit)");
    }
    let deadline = std::time::Duration::from_millis(args.deadline_ms);
    let client = ctx.client().await?;
    let report = client
        .lookup(key_type, &key, &args.purpose, deadline)
        .await?;
    exchange_cli::say!("{}", output::lookup(&report, ctx.json));
    Ok(())
}

async fn batch(ctx: &Context, key_type: &str, file: PathBuf, args: Args) -> anyhow::Result<()> {
    if !(1..=16).contains(&args.parallel) {
        anyhow::bail!("--parallel must be 1 to 16");
    }
    let format = exchange_cli::batch::BatchFormat::choose(
        json_or(ctx, args.format.as_deref(), args.output.as_deref())?,
        args.output.as_deref(),
    )?;
    let client = ctx.client().await?;
    let options = exchange_client::batch::BatchOptions {
        purpose: args.purpose,
        chunk_size: args.chunk_size,
        parallel: args.parallel,
        ..Default::default()
    };
    let complete = exchange_cli::batch::run(
        &client,
        key_type,
        &file,
        &args.datasets,
        &options,
        format,
        args.output.as_deref(),
        args.rejects.as_deref(),
    )
    .await?;
    if !complete {
        anyhow::bail!("some keys got no answer from some datasets (see the summary above); the output is partial");
    }
    Ok(())
}

/// A batch's rows are JSON lines under `--json`; another `--format`, or an
/// `--output` file named for another format, is refused rather than one of
/// them silently winning.
fn json_or<'a>(
    ctx: &Context,
    format: Option<&'a str>,
    output: Option<&std::path::Path>,
) -> anyhow::Result<Option<&'a str>> {
    if !ctx.json {
        return Ok(format);
    }
    let named = format.or_else(|| output.and_then(|p| p.extension()?.to_str()));
    match named {
        None | Some("json" | "jsonl") => Ok(Some("json")),
        Some(other) => anyhow::bail!(
            "--json asks for JSON lines, but {other} was asked for too (--format or the --output extension): give one of them"
        ),
    }
}

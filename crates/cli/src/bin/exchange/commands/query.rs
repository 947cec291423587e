//! `exchange query`: one dataset, masked at the source, as a table, CSV,
//! JSON lines or Parquet.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use exchange_cli::output;

use super::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
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
    /// With --format csv: neutralise cells a spreadsheet would run as a
    /// formula (starting with = + - @, a tab or a carriage return, except
    /// plain numbers) by putting ' before them. Without it, CSV keeps every
    /// value exactly as served.
    #[arg(long)]
    csv_safe: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryFormat {
    Table,
    Csv,
    /// JSON lines: one object per row.
    Json,
    /// Parquet (Snappy); needs --output.
    Parquet,
}

pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    // --json means JSON here too: JSON lines, as --format json.
    let format = match (ctx.json, args.format) {
        (false, format) => format,
        (true, QueryFormat::Table | QueryFormat::Json) => QueryFormat::Json,
        (true, other) => anyhow::bail!(
            "--json asks for JSON lines, but --format {} asks for another format: give one of them",
            format!("{other:?}").to_lowercase()
        ),
    };
    if format == QueryFormat::Parquet && args.output.is_none() {
        anyhow::bail!("--format parquet writes a file: add --output FILE.parquet");
    }
    if args.csv_safe && format != QueryFormat::Csv {
        anyhow::bail!("--csv-safe applies to CSV only: add --format csv");
    }
    let client = ctx.client().await?;
    let command = exchange_query::QueryCommand {
        dataset: args.dataset,
        fields: args.fields,
        filter: args.filter,
        purpose: args.purpose,
        user: String::new(),
        limit: args.limit,
    };
    let mut stream = client.query(command).await?;
    query_output(&mut stream, format, args.csv_safe, args.output.as_deref()).await
}

/// Writes query results as they arrive: tables are collected (and capped);
/// CSV and JSON stream batch by batch, so memory stays bounded.
async fn query_output(
    stream: &mut arrow_flight::decode::FlightRecordBatchStream,
    format: QueryFormat,
    csv_safe: bool,
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
        let batch =
            batch.map_err(|e| anyhow::anyhow!("{}", exchange_client::flight_error_text(&e)))?;
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
                output::write_csv_as(&batch, &mut out, csv_safe)?;
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

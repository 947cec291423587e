//! `exchange lookup --person-ids-file`: the batch lookup's output writer,
//! progress bar and summary.
//!
//! Every output row is one source row: the key it matched, the department
//! and dataset it came from, and the granted fields as a JSON object (the
//! datasets' columns differ, so they travel as one `record` column).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use exchange_client::batch::{BatchEvent, BatchOptions, BatchSummary, BatchTarget, KeyReader};
use exchange_client::Client;

/// The output file formats of a batch lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchFormat {
    Csv,
    Json,
    Parquet,
}

impl BatchFormat {
    /// From `--format`, or else the output file's extension (CSV by default).
    pub fn choose(format: Option<&str>, output: Option<&Path>) -> anyhow::Result<BatchFormat> {
        let name = match (format, output.and_then(|p| p.extension()?.to_str())) {
            (Some(f), _) => f.to_ascii_lowercase(),
            (None, Some(ext)) => ext.to_ascii_lowercase(),
            (None, None) => "csv".into(),
        };
        match name.as_str() {
            "csv" => Ok(BatchFormat::Csv),
            "json" | "jsonl" => Ok(BatchFormat::Json),
            "parquet" => Ok(BatchFormat::Parquet),
            other => anyhow::bail!("unknown output format {other:?}: use csv, json or parquet"),
        }
    }
}

fn output_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("department", DataType::Utf8, false),
        Field::new("dataset", DataType::Utf8, false),
        Field::new("record", DataType::Utf8, false),
    ]))
}

/// Source rows reshaped into (key, department, dataset, record).
fn reshape(target: &BatchTarget, batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    let key_column = batch.schema().index_of(&target.key_field).ok();
    let n = batch.num_rows();
    let key_cells = key_column.map(|c| exchange_client::values::cells(batch.column(c).as_ref()));
    let keys: Vec<Option<String>> = (0..n)
        .map(|r| key_cells.as_ref().and_then(|k| k.get(r)))
        .collect();
    let records: Vec<String> = (0..n)
        .map(|r| serde_json::Value::Object(exchange_client::values::row_json(batch, r)).to_string())
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(keys)),
        Arc::new(StringArray::from(vec![target.department.as_str(); n])),
        Arc::new(StringArray::from(vec![target.dataset.as_str(); n])),
        Arc::new(StringArray::from(records)),
    ];
    Ok(RecordBatch::try_new(output_schema(), columns)?)
}

enum Sink {
    Csv(Box<dyn Write>),
    Json(Box<dyn Write>),
    Parquet(Box<parquet::arrow::ArrowWriter<std::fs::File>>),
}

impl Sink {
    fn open(format: BatchFormat, path: Option<&Path>) -> anyhow::Result<Sink> {
        let out: Box<dyn Write> = match path {
            Some(p) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            )),
            None => Box::new(std::io::BufWriter::new(std::io::stdout())),
        };
        Ok(match format {
            BatchFormat::Csv => {
                let mut out = out;
                writeln!(out, "key,department,dataset,record")?;
                Sink::Csv(out)
            }
            BatchFormat::Json => Sink::Json(out),
            BatchFormat::Parquet => {
                let p = path.context("--output FILE.parquet is needed for parquet")?;
                drop(out);
                let file = std::fs::File::create(p)?;
                let props = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .build();
                Sink::Parquet(Box::new(parquet::arrow::ArrowWriter::try_new(
                    file,
                    output_schema(),
                    Some(props),
                )?))
            }
        })
    }

    fn write(&mut self, rows: &RecordBatch) -> anyhow::Result<()> {
        match self {
            Sink::Csv(out) => crate::output::write_csv(rows, out)?,
            Sink::Json(out) => {
                for r in 0..rows.num_rows() {
                    let mut object = exchange_client::values::row_json(rows, r);
                    if let Some(serde_json::Value::String(text)) = object.get("record") {
                        let record: serde_json::Value = serde_json::from_str(text)?;
                        object.insert("record".into(), record);
                    }
                    writeln!(out, "{}", serde_json::Value::Object(object))?;
                }
            }
            Sink::Parquet(w) => w.write(rows)?,
        }
        Ok(())
    }

    fn close(self) -> anyhow::Result<()> {
        match self {
            Sink::Csv(mut out) | Sink::Json(mut out) => out.flush()?,
            Sink::Parquet(w) => {
                w.close()?;
            }
        }
        Ok(())
    }
}

/// Runs a batch lookup from a key file to `output` (standard output when
/// `None`), with a progress bar on a terminal, and prints a summary on
/// standard error. Returns the summary and whether every chunk answered.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: &Client,
    key_type: &str,
    keys_file: &Path,
    datasets: &[String],
    options: &BatchOptions,
    format: BatchFormat,
    output: Option<&Path>,
    rejects: Option<&Path>,
) -> anyhow::Result<bool> {
    if options.purpose.trim().is_empty() {
        anyhow::bail!("a batch lookup must state its purpose (--purpose)");
    }
    let mut reader = KeyReader::open(keys_file, key_type)?;
    let targets = client.key_targets(key_type, datasets).await?;
    if targets.is_empty() {
        anyhow::bail!(
            "you hold no grant on a dataset carrying {key_type}; find some with `exchange catalog search --key-type {key_type}`"
        );
    }
    let mut sink = Sink::open(format, output)?;
    let progress = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::new(reader.total_lines() * targets.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {percent}% keys×datasets {human_pos}/{human_len} ({per_sec}, {eta} left)",
            )
            .expect("valid template"),
        );
        Some(bar)
    } else {
        None
    };
    let summary = client
        .batch_lookup(&mut reader, &targets, options, |event| {
            match event {
                BatchEvent::Rows { target, batch } => {
                    if let Err(e) = reshape(&targets[target], &batch).and_then(|b| sink.write(&b)) {
                        return Err(exchange_client::ClientError::Config(format!(
                            "cannot write the output: {e}"
                        )));
                    }
                }
                BatchEvent::ChunkDone { keys, .. } => {
                    if let Some(bar) = &progress {
                        bar.inc(keys as u64);
                    }
                }
            }
            Ok(())
        })
        .await?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    sink.close()?;
    if let Some(path) = rejects {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        writeln!(out, "line,text,reason")?;
        for r in &reader.rejected {
            let line = r.line.to_string();
            let record = crate::output::csv_record([line.as_str(), &r.text, &r.reason]);
            writeln!(out, "{record}")?;
        }
        out.flush()?;
    }
    eprint!("{}", summary_text(&reader, &targets, &summary, rejects));
    Ok(summary.totals.iter().all(|t| t.keys_failed == 0))
}

/// The summary of a batch lookup: lines, keys, rejected lines by number,
/// and per dataset the rows returned and any keys that got no answer.
pub fn summary_text(
    reader: &KeyReader,
    targets: &[BatchTarget],
    summary: &BatchSummary,
    rejects: Option<&Path>,
) -> String {
    let mut s = format!(
        "{} line(s) read: {} key(s) looked up, {} rejected, {} blank{}\n",
        reader.lines_read(),
        summary.keys,
        reader.rejected.len(),
        reader.blank_lines,
        reader
            .header
            .as_ref()
            .map(|h| format!(", header {h:?} skipped"))
            .unwrap_or_default()
    );
    const SHOWN: usize = 20;
    for r in reader.rejected.iter().take(SHOWN) {
        s.push_str(&format!("  line {}: {:?}: {}\n", r.line, r.text, r.reason));
    }
    if reader.rejected.len() > SHOWN {
        s.push_str(&format!(
            "  ... and {} more rejected line(s){}\n",
            reader.rejected.len() - SHOWN,
            match rejects {
                Some(p) => format!(", all listed in {}", p.display()),
                None => "; list them all with --rejects FILE".into(),
            }
        ));
    }
    let mut table =
        crate::output::table(&["department", "dataset", "matched on", "rows", "status"]);
    for (t, totals) in targets.iter().zip(&summary.totals) {
        let status = match &totals.first_failure {
            None => "ok".to_string(),
            Some(f) => format!(
                "{} key(s) without an answer: {}{}",
                totals.keys_failed,
                f.label(),
                if f.detail().is_empty() {
                    String::new()
                } else {
                    format!(" ({})", f.detail())
                }
            ),
        };
        let matched = if t.key_mask.is_empty() || t.key_mask == "none" {
            t.key_field.clone()
        } else {
            format!("{} (returned masked: {})", t.key_field, t.key_mask)
        };
        table.add_row(vec![
            t.department.clone(),
            t.dataset.clone(),
            matched,
            totals.rows.to_string(),
            status,
        ]);
    }
    s.push_str(&format!("{table}\n"));
    s
}

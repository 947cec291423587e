//! `exchange join`: your own list joined with other departments' data.

use std::path::PathBuf;

use anyhow::Context as _;
use exchange_cli::output;

use super::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The join specification (TOML): purpose, [[tables]] and the answer query.
    #[arg(long)]
    spec: PathBuf,
    #[arg(long, value_parser = ["table", "csv", "json"], default_value = "table")]
    format: String,
    /// Write the answer here instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
}

pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let spec = exchange_client::join::JoinSpec::load(&args.spec)?;
    let client = ctx.client().await?;
    let answer = client.join(&spec).await?;
    let format = if ctx.json {
        "json".to_string()
    } else {
        args.format
    };
    let text = output::join_answer(&answer, &format);
    match args.output {
        Some(p) => {
            std::fs::write(&p, text + "\n").with_context(|| format!("writing {}", p.display()))?
        }
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
    Ok(())
}

//! `exchange dispute`: file, list and resolve disputes over values.

use exchange_cli::output;
use exchange_proto::v1 as pb;

use super::Context;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
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

pub async fn run(ctx: &Context, command: Command) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let disputes = match command {
        Command::File {
            dataset,
            key,
            field,
            value_seen,
            proposed,
            note,
        } => {
            let request = pb::FileDisputeRequest {
                dataset,
                key,
                field,
                value_seen,
                proposed,
                note,
                user: String::new(),
            };
            vec![client.file_dispute(request).await?]
        }
        Command::List { status } => client.disputes(status.as_deref().unwrap_or("")).await?,
        Command::Resolve { id, outcome, note } => {
            let request = pb::ResolveDisputeRequest {
                id,
                outcome,
                note,
                user: String::new(),
            };
            vec![client.resolve_dispute(request).await?]
        }
    };
    exchange_cli::say!("{}", output::disputes(&disputes, ctx.json));
    Ok(())
}

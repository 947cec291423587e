//! `exchange catalog`: search the federation catalog and show a dataset.

use exchange_cli::output;
use exchange_proto::v1 as pb;

use super::Context;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
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

pub async fn run(ctx: &Context, command: Command) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let text = match command {
        Command::Search {
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
                    ..Default::default()
                })
                .await?;
            output::search_results(&response, ctx.json)
        }
        Command::Show { dataset } => {
            output::dataset_detail(&client.dataset(&dataset).await?, ctx.json)
        }
    };
    exchange_cli::say!("{text}");
    Ok(())
}

//! `exchange conflicts`: one attribute of the same entities compared
//! across departments.

use exchange_cli::output;

use super::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
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
}

pub async fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let client = ctx.client().await?;
    let report = client
        .conflicts(&exchange_client::conflicts::ConflictQuery {
            key_type: args.key.replace('-', "_"),
            attribute: args.attribute,
            datasets: args.datasets,
            purpose: args.purpose,
        })
        .await?;
    if ctx.json {
        exchange_cli::say!("{}", output::conflicts_json(&report));
    } else {
        exchange_cli::say_part!("{}", report.render());
    }
    Ok(())
}

//! `exchange members` and `exchange whoami`.

use exchange_cli::output;

use super::Context;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Members with status, node liveness and catalog version.
    List,
}

pub async fn run(ctx: &Context, command: Command) -> anyhow::Result<()> {
    match command {
        Command::List => {
            let members = ctx.client().await?.members().await?;
            exchange_cli::say!("{}", output::members(&members, ctx.json));
        }
    }
    Ok(())
}

pub async fn whoami(ctx: &Context) -> anyhow::Result<()> {
    let me = ctx.client().await?.who_am_i().await?;
    if ctx.json {
        exchange_cli::say!(
            "{}",
            serde_json::json!({ "identity": me.identity, "member": me.member_id, "role": me.role, "serial": me.certificate_serial })
        );
    } else {
        exchange_cli::say!(
            "{} (member {}, role {}, certificate {})",
            me.identity,
            me.member_id,
            me.role,
            me.certificate_serial
        );
    }
    Ok(())
}

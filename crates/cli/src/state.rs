//! `coordinator state`: the state engine's schema and moving a federation
//! between engines (sled and PostgreSQL), run with the coordinator stopped
//! (sled allows one process at a time; an import wants a quiet target).

use std::io::{BufReader, BufWriter};
use std::path::Path;

use anyhow::Context as _;
use exchange_coordinator::CoordinatorConfig;
use exchange_storage::postgres::{self, Migration};
use exchange_storage::transfer::{self, Summary};
use exchange_storage::Db;

/// What `coordinator state migrate` did or, with `dry_run`, would do.
pub fn migrate(config: &CoordinatorConfig, dry_run: bool) -> anyhow::Result<String> {
    let Some(settings) = config.postgres_state() else {
        return Ok("state is sled: its layout needs no migrations".into());
    };
    let shown = postgres::redacted(&settings.url);
    let status = postgres::schema_status(&settings)?;
    if status.pending.is_empty() {
        return Ok(format!(
            "{shown}: schema at version {}, this coordinator's; nothing to do",
            status.current
        ));
    }
    let applied = if dry_run {
        status.pending.clone()
    } else {
        postgres::migrate(&settings)?
    };
    let verb = if dry_run { "would apply" } else { "applied" };
    let mut text = format!("{shown}: schema at version {}; {verb}:", status.current);
    for Migration {
        version,
        description,
        sql,
    } in applied
    {
        text.push_str(&format!("\n  {version}: {description}"));
        if dry_run {
            for line in sql.iter().flat_map(|statement| statement.lines()) {
                text.push_str(&format!("\n      {}", line.trim()));
            }
        }
    }
    Ok(text)
}

/// Writes the configured state store to `out`.
pub fn export(config: &CoordinatorConfig, out: &Path) -> anyhow::Result<String> {
    let db = config.open_state()?;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let summary = transfer::export(&db, &mut BufWriter::new(file))?;
    Ok(format!(
        "exported {} from {} to {}",
        counts(&summary),
        db.engine_name(),
        out.display()
    ))
}

/// Reads an export into the configured state store, which must be empty.
pub fn import(config: &CoordinatorConfig, from: &Path) -> anyhow::Result<String> {
    let db: Db = config.open_state()?;
    let file = std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let summary = transfer::import(&db, BufReader::new(file))?;
    db.flush()?;
    Ok(format!(
        "imported {} into {} from {}",
        counts(&summary),
        db.engine_name(),
        from.display()
    ))
}

fn counts(summary: &Summary) -> String {
    let trees: Vec<String> = summary
        .trees
        .iter()
        .map(|(tree, n)| format!("{tree} {n}"))
        .collect();
    format!("{} entries ({})", summary.entries(), trees.join(", "))
}

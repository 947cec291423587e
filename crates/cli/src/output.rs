//! Tables for people and JSON for scripts.

use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use exchange_proto::v1 as pb;
use exchange_proto::v1::typed::{self, Timestamp};
use serde_json::{json, Value};

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

/// A Timestamp as [`unix_time`] shows it; `-` for none.
pub fn time_of(t: Option<Timestamp>) -> String {
    unix_time(t.map_or(0, |t| t.seconds))
}

pub fn unix_time(unix: i64) -> String {
    if unix <= 0 {
        return "-".into();
    }
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn key_types(d: &pb::Dataset) -> String {
    let mut kinds: Vec<&str> = d
        .fields
        .iter()
        .filter(|f| !f.key_type.is_empty())
        .map(|f| f.key_type.as_str())
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds.join(", ")
}

pub fn dataset_json(d: &pb::Dataset) -> Value {
    json!({
        "id": d.id,
        "department": d.department,
        "department_name": d.department_name,
        "title": d.title,
        "title_en": d.title_en,
        "description": d.description,
        "update_cycle": d.update_cycle,
        "sharing": d.sharing,
        "basis": d.basis,
        "key_columns": d.key_columns,
        "source_kind": d.source_kind,
        "catalog_version": d.catalog_version,
        "tags": d.tags,
        "fields": d.fields.iter().map(|f| json!({
            "name": f.name, "type": f.r#type, "description": f.description,
            "sensitivity": f.sensitivity, "mask": f.mask,
            "key_type": if f.key_type.is_empty() { Value::Null } else { Value::String(f.key_type.clone()) },
        })).collect::<Vec<_>>(),
    })
}

pub fn member_json(m: &pb::Member) -> Value {
    let node = m.node.clone().unwrap_or_default();
    json!({
        "id": m.id, "display_name": m.display_name, "status": typed::state_text(m.state().as_str_name()),
        "created": time_of(m.created_at), "revoked": m.revoked_at.map(|t| time_of(Some(t))),
        "revocation_reason": m.revocation_reason, "certificates": m.certificates,
        "node": { "online": node.online, "last_seen": time_of(node.last_seen_at), "catalog_version": node.catalog_version, "datasets": node.datasets, "address": node.address },
    })
}

pub fn search_results(response: &pb::SearchResponse, as_json: bool) -> String {
    if as_json {
        let hits: Vec<Value> = response
            .hits
            .iter()
            .map(|h| json!({ "score": h.score, "matched_fields": h.matched_fields, "dataset": h.dataset.as_ref().map(dataset_json) }))
            .collect();
        return serde_json::to_string_pretty(&json!({ "total": response.total, "hits": hits }))
            .unwrap_or_default();
    }
    if response.hits.is_empty() {
        return "no datasets match; try fewer words, or `exchange catalog search` with no text to list everything".into();
    }
    let mut t = table(&[
        "dataset",
        "title",
        "department",
        "sharing",
        "key types",
        "score",
    ]);
    for h in &response.hits {
        let Some(d) = &h.dataset else { continue };
        let title = if d.title_en.is_empty() {
            d.title.clone()
        } else {
            format!("{}\n{}", d.title, d.title_en)
        };
        t.add_row(vec![
            d.id.clone(),
            title,
            d.department_name.clone(),
            d.sharing.clone(),
            key_types(d),
            if h.score > 0.0 {
                format!("{:.2}", h.score)
            } else {
                "-".into()
            },
        ]);
    }
    format!(
        "{t}\n{} of {} matching dataset(s)",
        response.hits.len(),
        response.total
    )
}

pub fn dataset_detail(d: &pb::Dataset, as_json: bool) -> String {
    if as_json {
        return serde_json::to_string_pretty(&dataset_json(d)).unwrap_or_default();
    }
    let mut out = format!("{}  {}\n", d.id, d.title);
    if !d.title_en.is_empty() {
        out.push_str(&format!("{}\n", d.title_en));
    }
    out.push_str(&format!(
        "department: {} ({})\n",
        d.department_name, d.department
    ));
    out.push_str(&format!(
        "sharing: {}{}\n",
        d.sharing,
        if d.basis.is_empty() {
            String::new()
        } else {
            format!(" — basis: {}", d.basis)
        }
    ));
    out.push_str(&format!(
        "update cycle: {}   source: {}   catalog version: {}\n",
        d.update_cycle, d.source_kind, d.catalog_version
    ));
    if !d.key_columns.is_empty() {
        out.push_str(&format!("key columns: {}\n", d.key_columns.join(", ")));
    }
    if !d.description.is_empty() {
        out.push_str(&format!("\n{}\n", d.description));
    }
    let mut t = table(&[
        "field",
        "type",
        "sensitivity",
        "default mask",
        "key type",
        "description",
    ]);
    for f in &d.fields {
        t.add_row(vec![
            f.name.clone(),
            f.r#type.clone(),
            f.sensitivity.clone(),
            f.mask.clone(),
            f.key_type.clone(),
            f.description.clone(),
        ]);
    }
    out.push_str(&format!("\n{t}"));
    out
}

pub fn members(members: &[pb::Member], as_json: bool) -> String {
    if as_json {
        return serde_json::to_string_pretty(&members.iter().map(member_json).collect::<Vec<_>>())
            .unwrap_or_default();
    }
    let mut t = table(&[
        "member",
        "name",
        "status",
        "node",
        "last seen",
        "catalog",
        "datasets",
        "certificates",
    ]);
    for m in members {
        let node = m.node.clone().unwrap_or_default();
        let online = if m.state() == pb::MemberState::Revoked {
            "-"
        } else if node.online {
            "online"
        } else if node.last_seen_at.is_some() {
            "offline"
        } else {
            "never seen"
        };
        t.add_row(vec![
            m.id.clone(),
            m.display_name.clone(),
            typed::state_text(m.state().as_str_name()),
            online.into(),
            time_of(node.last_seen_at),
            if node.catalog_version > 0 {
                format!("v{}", node.catalog_version)
            } else {
                "-".into()
            },
            node.datasets.to_string(),
            m.certificates.to_string(),
        ]);
    }
    t.to_string()
}

pub fn access_requests(records: &[pb::AccessRequestRecord], as_json: bool) -> String {
    if as_json {
        let v: Vec<Value> = records
            .iter()
            .map(|r| json!({
                "id": r.id, "dataset": r.dataset, "owner": r.owner, "consumer": r.consumer, "user": r.user,
                "fields": r.fields, "purpose": r.purpose, "basis": r.basis, "until": typed::day(r.until_date),
                "status": typed::state_text(r.state().as_str_name()),
                "created": time_of(r.created_at), "decided": time_of(r.decided_at), "decided_by": r.decided_by,
                "reason": r.reason, "grant": r.grant_id, "overdue": r.overdue,
            }))
            .collect();
        return serde_json::to_string_pretty(&v).unwrap_or_default();
    }
    if records.is_empty() {
        return "no access requests".into();
    }
    let mut t = table(&[
        "request",
        "dataset",
        "from",
        "fields",
        "purpose",
        "until",
        "status",
        "decided by / reason",
    ]);
    for r in records {
        let status = typed::state_text(r.state().as_str_name());
        let status = if r.overdue {
            format!("{status} (OVERDUE)")
        } else {
            status
        };
        let from = if r.user.is_empty() {
            r.consumer.clone()
        } else {
            format!("{}\n{}", r.consumer, r.user)
        };
        let decision = match (r.decided_by.is_empty(), r.reason.is_empty()) {
            (true, _) => format!("waiting since {}", time_of(r.created_at)),
            (false, true) => format!(
                "{}\n{}",
                r.decided_by,
                if r.grant_id.is_empty() {
                    String::new()
                } else {
                    format!("grant {}", r.grant_id)
                }
            ),
            (false, false) => format!("{}\n{}", r.decided_by, r.reason),
        };
        t.add_row(vec![
            r.id.clone(),
            r.dataset.clone(),
            from,
            r.fields.join(", "),
            r.purpose.clone(),
            typed::day(r.until_date),
            status,
            decision,
        ]);
    }
    t.to_string()
}

pub fn access_request(r: &pb::AccessRequestRecord, as_json: bool) -> String {
    if as_json {
        return access_requests(std::slice::from_ref(r), true);
    }
    match r.state() {
        pb::RequestState::Granted => format!(
            "request {} for {} granted as {} ({}).",
            r.id, r.dataset, r.grant_id, r.decided_by
        ),
        pb::RequestState::Refused => {
            format!("request {} for {} refused: {}", r.id, r.dataset, r.reason)
        }
        _ => format!(
            "request {} for {} is waiting for {} to decide.",
            r.id, r.dataset, r.owner
        ),
    }
}

pub fn grants(grants: &[pb::Grant], as_json: bool) -> String {
    if as_json {
        let v: Vec<Value> = grants
            .iter()
            .map(|g| json!({
                "id": g.id, "dataset": g.dataset, "owner": g.owner, "consumer": g.consumer,
                "fields": g.fields.iter().map(|f| json!({"name": f.name, "mask": f.mask})).collect::<Vec<_>>(),
                "row_filter": g.row_filter, "purpose": g.purpose, "until": typed::day(g.until_date),
                "quota_rows_per_day": g.quota_rows_per_day, "status": typed::state_text(g.state().as_str_name()),
                "request": g.request_id, "approved_by": g.approved_by, "created": time_of(g.created_at),
                "revoked": time_of(g.revoked_at), "revoked_by": g.revoked_by,
                "revocation_reason": g.revocation_reason,
            }))
            .collect();
        return serde_json::to_string_pretty(&v).unwrap_or_default();
    }
    if grants.is_empty() {
        return "no grants".into();
    }
    let mut t = table(&[
        "grant",
        "dataset",
        "consumer",
        "fields (mask)",
        "row filter",
        "until",
        "quota/day",
        "status",
    ]);
    for g in grants {
        let fields: Vec<String> = g
            .fields
            .iter()
            .map(|f| {
                if f.mask == "none" {
                    f.name.clone()
                } else {
                    format!("{} ({})", f.name, f.mask)
                }
            })
            .collect();
        let quota = if g.quota_rows_per_day == 0 {
            "-".to_string()
        } else {
            g.quota_rows_per_day.to_string()
        };
        t.add_row(vec![
            g.id.clone(),
            g.dataset.clone(),
            g.consumer.clone(),
            fields.join("\n"),
            g.row_filter.clone(),
            typed::day(g.until_date),
            quota,
            grant_status(g),
        ]);
    }
    t.to_string()
}

/// A grant's state, with the owner's reason when it was revoked.
fn grant_status(g: &pb::Grant) -> String {
    let state = typed::state_text(g.state().as_str_name());
    if g.revocation_reason.is_empty() {
        return state;
    }
    format!("{state}: {}", g.revocation_reason)
}

pub use exchange_client::values::{cell, is_number};

/// A CSV writer as the command line writes CSV: `\n` line ends, and every
/// cell with control, invisible and direction-changing characters spelled
/// `\uXXXX` (a CSV file is read on a screen too), quoted by the csv crate
/// where needed. The one CSV writer of the command line: query rows, join
/// answers, reports, rejected batch lines.
/// With `--csv-safe`, cells a spreadsheet would run as formulas are
/// neutralised too ([`exchange_policy::text::spreadsheet_safe`]); by
/// default values stay exact, CSV being a data format.
pub struct CsvOut<W: std::io::Write> {
    writer: csv::Writer<W>,
    spreadsheet_safe: bool,
}

impl<W: std::io::Write> CsvOut<W> {
    pub fn new(out: W) -> Self {
        CsvOut {
            writer: csv::WriterBuilder::new()
                .terminator(csv::Terminator::Any(b'\n'))
                .from_writer(out),
            spreadsheet_safe: false,
        }
    }

    /// A writer whose formula cells are neutralised (`--csv-safe`).
    pub fn spreadsheet_safe(out: W) -> Self {
        CsvOut {
            spreadsheet_safe: true,
            ..CsvOut::new(out)
        }
    }

    pub fn record<I, S>(&mut self, cells: I) -> std::io::Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let safe = self.spreadsheet_safe;
        let visible = cells.into_iter().map(|c| {
            let shown = exchange_policy::text::visible(c.as_ref());
            if safe {
                exchange_policy::text::spreadsheet_safe(&shown).into_owned()
            } else {
                shown.into_owned()
            }
        });
        self.writer
            .write_record(visible)
            .map_err(std::io::Error::other)
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(self) -> std::io::Result<W> {
        self.writer.into_inner().map_err(|e| e.into_error())
    }
}

/// One CSV record as text, without its line break (see [`CsvOut`]).
pub fn csv_record<I, S>(cells: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = CsvOut::new(Vec::new());
    // Writing to memory cannot fail.
    let _ = out.record(cells);
    let bytes = out.finish().unwrap_or_default();
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    text.truncate(text.trim_end_matches('\n').len());
    text
}

#[cfg(test)]
fn csv_field(text: &str) -> String {
    csv_record([text])
}

/// Writes a batch as CSV rows (the header is written by the caller once).
pub fn write_csv(
    batch: &arrow_array::RecordBatch,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    write_csv_as(batch, out, false)
}

/// [`write_csv`], with formula cells neutralised when `spreadsheet_safe`.
pub fn write_csv_as(
    batch: &arrow_array::RecordBatch,
    out: &mut dyn std::io::Write,
    spreadsheet_safe: bool,
) -> std::io::Result<()> {
    let columns: Vec<_> = batch
        .columns()
        .iter()
        .map(|c| exchange_client::values::cells(c.as_ref()))
        .collect();
    let mut csv = if spreadsheet_safe {
        CsvOut::spreadsheet_safe(out)
    } else {
        CsvOut::new(out)
    };
    for r in 0..batch.num_rows() {
        csv.record(columns.iter().map(|c| c.get(r).unwrap_or_default()))?;
    }
    csv.finish()?;
    Ok(())
}

pub fn csv_header(schema: &arrow_schema::Schema) -> String {
    csv_record(schema.fields().iter().map(|f| f.name()))
}

/// Writes a batch as JSON lines, one object per row.
pub fn write_json_lines(
    batch: &arrow_array::RecordBatch,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    for r in 0..batch.num_rows() {
        let object = exchange_client::values::row_json(batch, r);
        writeln!(out, "{}", Value::Object(object))?;
    }
    Ok(())
}

/// Renders batches as a table, at most `max_rows` of them.
pub fn batches_table(batches: &[arrow_array::RecordBatch], max_rows: usize) -> String {
    let Some(first) = batches.first() else {
        return "no rows".into();
    };
    let schema = first.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut t = table(&names);
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut shown = 0;
    'outer: for b in batches {
        let columns: Vec<_> = b
            .columns()
            .iter()
            .map(|c| exchange_client::values::cells(c.as_ref()))
            .collect();
        for r in 0..b.num_rows() {
            if shown == max_rows {
                break 'outer;
            }
            t.add_row(
                columns
                    .iter()
                    .map(|c| c.get(r).unwrap_or_else(|| "NULL".into()))
                    .collect::<Vec<_>>(),
            );
            shown += 1;
        }
    }
    if total > shown {
        format!(
            "{t}\n{shown} of {total} rows shown; use --format csv --output FILE for all of them"
        )
    } else {
        format!("{t}\n{total} row(s)")
    }
}

/// A cross-department lookup, grouped by department and dataset.
pub fn lookup(report: &exchange_client::lookup::LookupReport, as_json: bool) -> String {
    if as_json {
        let answers: Vec<Value> = report
            .answers
            .iter()
            .map(|a| {
                let mut rows = Vec::new();
                for b in &a.batches {
                    let schema = b.schema();
                    for r in 0..b.num_rows() {
                        let obj: serde_json::Map<String, Value> = schema
                            .fields()
                            .iter()
                            .zip(b.columns())
                            .map(|(f, c)| {
                                (
                                    f.name().clone(),
                                    cell(c.as_ref(), r).map_or(Value::Null, Value::from),
                                )
                            })
                            .collect();
                        rows.push(Value::Object(obj));
                    }
                }
                json!({
                    "department": a.department, "dataset": a.dataset, "key_field": a.key_field,
                    "status": a.status.label(), "detail": a.status.detail(),
                    "elapsed_ms": a.elapsed.as_millis() as u64, "rows": rows,
                })
            })
            .collect();
        return json!({
            "key_type": report.key_type, "key": report.key,
            "elapsed_ms": report.elapsed.as_millis() as u64, "answers": answers,
        })
        .to_string();
    }
    if report.answers.is_empty() {
        return format!(
            "no dataset you hold a grant on carries {}; find candidates with `exchange catalog search --key-type {}` and request access",
            report.key_type, report.key_type
        );
    }
    let mut out = String::new();
    for a in &report.answers {
        out.push_str(&format!(
            "== {} ({}), matched on {}: {}",
            a.dataset,
            a.department,
            a.key_field,
            a.status.label()
        ));
        match &a.status {
            exchange_client::lookup::SourceStatus::Ok => {
                out.push_str(&format!(
                    ", {} row(s), {} ms\n",
                    a.rows(),
                    a.elapsed.as_millis()
                ));
                if a.rows() > 0 {
                    out.push_str(&batches_table(&a.batches, 50));
                    out.push('\n');
                }
            }
            other => out.push_str(&format!(": {}\n", other.detail())),
        }
    }
    let ok = report
        .answers
        .iter()
        .filter(|a| a.status == exchange_client::lookup::SourceStatus::Ok)
        .count();
    out.push_str(&format!(
        "{ok} of {} datasets answered in {} ms",
        report.answers.len(),
        report.elapsed.as_millis()
    ));
    out
}

/// A join's answer as a table, CSV or a JSON array of objects.
pub fn join_answer(answer: &exchange_client::join::JoinAnswer, format: &str) -> String {
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match format {
        "json" => {
            let rows: Vec<Value> = answer
                .rows
                .iter()
                .map(|r| {
                    Value::Object(
                        answer
                            .columns
                            .iter()
                            .cloned()
                            .zip(r.iter().cloned())
                            .collect(),
                    )
                })
                .collect();
            Value::Array(rows).to_string()
        }
        "csv" => {
            let mut out = csv_record(&answer.columns);
            for r in &answer.rows {
                out.push('\n');
                out.push_str(&csv_record(r.iter().map(text)));
            }
            out
        }
        _ => {
            let header: Vec<&str> = answer.columns.iter().map(|c| c.as_str()).collect();
            let mut t = table(&header);
            for r in &answer.rows {
                t.add_row(r.iter().map(text).collect::<Vec<_>>());
            }
            format!("{t}\n{} row(s)", answer.rows.len())
        }
    }
}

/// A conflict report for scripts.
pub fn conflicts_json(report: &exchange_client::conflicts::ConflictReport) -> String {
    serde_json::json!({
        "key_type": report.key_type,
        "attribute": report.attribute,
        "compared": report.compared,
        "cosmetic": report.cosmetic,
        "sources": report.sources.iter().map(|s| serde_json::json!({
            "dataset": s.dataset, "department": s.department, "rows": s.rows,
            "authoritative": s.authoritative,
        })).collect::<Vec<_>>(),
        "conflicts": report.conflicts.iter().map(|c| serde_json::json!({
            "key": c.key,
            "values": report.sources.iter().zip(&c.values).map(|(s, v)| serde_json::json!({
                "dataset": s.dataset, "value": v, "authoritative": s.authoritative,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

/// Disputes as a table or JSON.
pub fn disputes(disputes: &[pb::Dispute], as_json: bool) -> String {
    if as_json {
        let rows: Vec<Value> = disputes
            .iter()
            .map(|d| {
                serde_json::json!({
                    "id": d.id, "dataset": d.dataset, "owner": d.owner, "filed_by": d.filed_by,
                    "key": d.key, "field": d.field, "value_seen": d.value_seen,
                    "proposed": d.proposed, "note": d.note, "status": typed::state_text(d.state().as_str_name()),
                    "resolution_note": d.resolution_note, "resolved_by": d.resolved_by,
                    "filed": time_of(d.filed_at),
                })
            })
            .collect();
        return Value::Array(rows).to_string();
    }
    let mut t = table(&[
        "id", "dataset", "key", "field", "filed by", "status", "note", "outcome",
    ]);
    for d in disputes {
        t.add_row(vec![
            d.id.clone(),
            d.dataset.clone(),
            d.key.clone(),
            d.field.clone(),
            d.filed_by.clone(),
            typed::state_text(d.state().as_str_name()),
            d.note.clone(),
            if d.state() == pb::DisputeState::Open {
                String::new()
            } else {
                format!("{} — {}", d.resolution_note, d.resolved_by)
            },
        ]);
    }
    format!("{t}\n{} dispute(s)", disputes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_hidden_characters_spelled() {
        assert_eq!(csv_field("张三"), "张三");
        assert_eq!(csv_field("Zhang, San"), "\"Zhang, San\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("a\u{1b}[31mb"), "a\\u001b[31mb");
        assert_eq!(csv_field("x\u{202e}y,z"), "\"x\\u202ey,z\"");
    }
}

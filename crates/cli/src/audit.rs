//! Presentation of audit views, reports, reconciliation and verification.

use exchange_proto::v1 as pb;
use serde_json::{json, Value};

use crate::output::table;

/// `--since`/`--until`: `2026-11-01`, `2026-11-01T08:00:00Z`, or a span
/// back from now: `90m`, `24h`, `7d`. Returns Unix seconds.
pub fn parse_time(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if let Some(n) = text
        .strip_suffix('d')
        .or_else(|| text.strip_suffix('h'))
        .or_else(|| text.strip_suffix('m'))
        .and_then(|n| n.parse::<i64>().ok())
    {
        let unit = match text.chars().last() {
            Some('d') => 86_400,
            Some('h') => 3_600,
            _ => 60,
        };
        return Ok(now - n.clamp(0, 100_000) * unit);
    }
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        return Ok(t.unix_timestamp());
    }
    if let Ok(d) = time::Date::parse(
        text,
        &time::macros::format_description!("[year]-[month]-[day]"),
    ) {
        return Ok(d.midnight().assume_utc().unix_timestamp());
    }
    anyhow::bail!(
        "cannot read the time {text:?}: use a date (2026-11-01), an RFC 3339 time (2026-11-01T08:00:00Z) or a span back from now (90m, 24h, 7d)"
    )
}

pub fn time_ms(ms: i64) -> String {
    crate::output::unix_time(ms / 1000)
}

fn row_json(r: &pb::AuditQueryRow) -> Value {
    json!({
        "time": time_ms(r.time_ms), "query": r.query_id, "consumer": r.consumer, "user": r.user,
        "purpose": r.purpose, "dataset": r.dataset, "fields": r.fields, "allowed": r.allowed,
        "rule": r.rule, "reason": r.reason, "rows": r.rows, "duration_ms": r.duration_ms,
        "status": r.status, "grant": r.grant_id, "filter_digest": r.filter_digest,
        "masked_values": r.masked_values,
    })
}

pub fn log(response: &pb::AuditLogResponse, as_json: bool) -> String {
    if as_json {
        return response
            .rows
            .iter()
            .map(|r| row_json(r).to_string())
            .collect::<Vec<_>>()
            .join("\n");
    }
    let mut t = table(&[
        "time", "query", "consumer", "user", "purpose", "dataset", "decision", "rows", "ms",
        "status",
    ]);
    for r in &response.rows {
        let mut decision = if r.allowed {
            format!("allowed ({})", r.grant_id)
        } else {
            format!("denied: {}", r.rule)
        };
        if r.masked_values > 0 {
            decision.push_str(&format!("\ntested {} masked values", r.masked_values));
        }
        t.add_row(vec![
            time_ms(r.time_ms),
            r.query_id.clone(),
            r.consumer.clone(),
            r.user.clone(),
            r.purpose.clone(),
            r.dataset.clone(),
            decision,
            r.rows.to_string(),
            r.duration_ms.to_string(),
            r.status.clone(),
        ]);
    }
    let mut out = t.to_string();
    out.push_str(&format!("\n{} queries", response.rows.len()));
    if response.truncated && response.next_page_token.is_empty() {
        out.push_str(
            " (older ones left out: narrow with --since, raise --limit, or page with --page-size)",
        );
    }
    out
}

/// The command that prints the page after `request`'s: the same filters,
/// with relative times (`--since 7d`) pinned to the instants the first page
/// used, since a page token is bound to the whole request.
pub fn next_page_command(request: &pb::AuditLogRequest, token: &str) -> String {
    let mut command = vec!["exchange".to_string(), "audit".into(), "log".into()];
    let mut option = |name: &str, value: &str| {
        if !value.is_empty() {
            command.push(format!("--{name}"));
            command.push(shell_word(value));
        }
    };
    option("dataset", &request.dataset);
    option("consumer", &request.consumer);
    option("owner", &request.owner);
    option("purpose", &request.purpose);
    let rfc3339 = |unix: i64| {
        time::OffsetDateTime::from_unix_timestamp(unix)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    };
    // The window as the request gave it: a Timestamp or v1's seconds.
    for (name, unix, typed) in [
        ("since", request.since_unix, request.since),
        ("until", request.until_unix, request.until),
    ] {
        let unix = typed.map_or(unix, |t| t.seconds);
        if unix > 0 {
            option(name, &rfc3339(unix));
        }
    }
    option("page-size", &request.page_size.to_string());
    option("page-token", token);
    command.join(" ")
}

/// A word as a POSIX shell reads it back unchanged.
fn shell_word(text: &str) -> String {
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:+=".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

pub fn subject(response: &pb::SubjectReportResponse, as_json: bool) -> String {
    if as_json {
        return json!({
            "accesses": response.accesses.iter().map(|a| json!({
                "time": time_ms(a.time_ms), "department": a.owner, "dataset": a.dataset,
                "consumer": a.consumer, "user": a.user, "purpose": a.purpose,
                "query": a.query_id, "embargoed_until": a.embargo_until,
            })).collect::<Vec<_>>(),
            "departments": response.departments.iter().map(|d| json!({
                "department": d.department, "status": d.status, "detail": d.detail,
            })).collect::<Vec<_>>(),
        })
        .to_string();
    }
    let mut t = table(&[
        "time",
        "records held by",
        "dataset",
        "accessed by",
        "user",
        "purpose",
        "query",
    ]);
    for a in &response.accesses {
        let purpose = if a.embargo_until.is_empty() {
            a.purpose.clone()
        } else {
            format!("{} [embargoed until {}]", a.purpose, a.embargo_until)
        };
        t.add_row(vec![
            time_ms(a.time_ms),
            a.owner.clone(),
            a.dataset.clone(),
            a.consumer.clone(),
            a.user.clone(),
            purpose,
            a.query_id.clone(),
        ]);
    }
    let n = response.accesses.len();
    let mut out = format!("{t}\n{n} access{}\n", if n == 1 { "" } else { "es" });
    for d in &response.departments {
        out.push_str(&format!(
            "  {:<20} {:<8} {}\n",
            d.department, d.status, d.detail
        ));
    }
    out
}

pub fn report(response: &pb::ReportResponse, format: &str) -> String {
    match format {
        "json" => response
            .rows
            .iter()
            .map(|r| {
                let obj: serde_json::Map<String, Value> = response
                    .columns
                    .iter()
                    .zip(&r.cells)
                    .map(|(c, v)| {
                        let value = v
                            .parse::<u64>()
                            .map(Value::from)
                            .or_else(|_| v.parse::<f64>().map(Value::from))
                            .unwrap_or_else(|_| Value::from(v.clone()));
                        (c.clone(), value)
                    })
                    .collect();
                Value::Object(obj).to_string()
            })
            .collect::<Vec<_>>()
            .join("\n"),
        "csv" => {
            let mut out = crate::output::csv_record(&response.columns);
            for r in &response.rows {
                out.push('\n');
                out.push_str(&crate::output::csv_record(&r.cells));
            }
            out
        }
        _ => {
            let header: Vec<&str> = response.columns.iter().map(String::as_str).collect();
            let mut t = table(&header);
            for r in &response.rows {
                t.add_row(r.cells.clone());
            }
            t.to_string()
        }
    }
}

pub fn reconcile(node: &str, response: &pb::ReconcileResponse, as_json: bool) -> String {
    if as_json {
        return json!({
            "node": node, "authorized": response.authorized, "served": response.served,
            "explained": response.explained,
            "discrepancies": response.discrepancies.iter().map(|d| json!({
                "kind": d.kind, "query": d.query_id, "detail": d.detail, "time": time_ms(d.time_ms),
            })).collect::<Vec<_>>(),
        })
        .to_string();
    }
    let mut out = format!(
        "{node}: {} queries authorized by the coordinator, {} served by the node\n",
        response.authorized, response.served
    );
    let mut explained: Vec<_> = response.explained.iter().collect();
    explained.sort();
    for (reason, count) in explained {
        let meaning = match reason.as_str() {
            "refused_by_node" => "refused by the owner node",
            "cancelled" => "cancelled by the consumer before any row",
            "owner_unreachable" => "not served: the owner node was offline or unreachable",
            "never_redeemed" => "ticket never presented",
            _ => "not served, no row left",
        };
        out.push_str(&format!(
            "  {count} {meaning} ({reason}); both ends agree\n"
        ));
    }
    if response.discrepancies.is_empty() {
        out.push_str("no discrepancies: both ends agree");
        return out;
    }
    let mut t = table(&["time", "kind", "query", "detail"]);
    for d in &response.discrepancies {
        t.add_row(vec![
            time_ms(d.time_ms),
            d.kind.clone(),
            d.query_id.clone(),
            d.detail.clone(),
        ]);
    }
    out.push_str(&t.to_string());
    out.push_str(&format!("\n{} discrepancies", response.discrepancies.len()));
    out
}

pub fn verify(report: &exchange_audit::VerifyReport, as_json: bool) -> String {
    if as_json {
        return json!({
            "ok": report.ok(), "writer": report.writer, "files": report.files,
            "entries": report.entries, "checkpoints": report.checkpoints,
            "first_seq": report.first_seq, "last_seq": report.last_seq,
            "last_signed_seq": report.last_signed_seq, "unsigned_tail": report.unsigned_tail,
            "warnings": report.warnings,
            "problem": report.problem.as_ref().map(|p| json!({
                "seq": p.seq, "file": p.file, "offset": p.offset, "what": p.what,
            })),
        })
        .to_string();
    }
    let mut out = format!(
        "writer {}: {} segment file(s), {} entries (seq {}..{}), {} signed checkpoints, signed through seq {}\n",
        report.writer, report.files, report.entries, report.first_seq, report.last_seq, report.checkpoints, report.last_signed_seq
    );
    for w in &report.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    match &report.problem {
        None => out.push_str("OK: the hash chain and every checkpoint signature verify"),
        Some(p) => out.push_str(&format!("TAMPERED: first bad {p}")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_three_forms_and_nonsense_is_refused() {
        assert_eq!(parse_time("2026-11-01").unwrap(), 1_793_491_200);
        assert_eq!(
            parse_time("2026-11-01T08:00:00Z").unwrap(),
            1_793_491_200 + 8 * 3600
        );
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!((parse_time("24h").unwrap() - (now - 86_400)).abs() < 5);
        let err = parse_time("yesterday").unwrap_err().to_string();
        assert!(err.contains("24h"), "{err}");
    }
}

//! Who used the data: a department's view of queries on its datasets, the
//! bureau's federation-wide view, the data-subject report and
//! reconciliation of a node against the coordinator.

use axum::extract::Query;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use exchange_proto::v1 as pb;
use maud::html;
use serde::Deserialize;

use super::{pager, table, Reply};
use crate::web::{beijing, percent_encode, Form, Session};

const PER_PAGE: usize = 100;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LogParams {
    dataset: String,
    consumer: String,
    purpose: String,
    /// YYYY-MM-DD, Beijing time.
    since: String,
    until: String,
    page: usize,
}

/// A `YYYY-MM-DD` date (Beijing midnight) as unix seconds; 0 for empty.
pub fn day_start(s: &Session, text: &str) -> Result<i64, Response> {
    if text.trim().is_empty() {
        return Ok(0);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text.trim(), &format)
        .map(|d| {
            d.midnight()
                .assume_offset(time::macros::offset!(+8))
                .unix_timestamp()
        })
        .map_err(|_| {
            s.error(
                StatusCode::BAD_REQUEST,
                s.t("日期格式应为 YYYY-MM-DD。", "dates are YYYY-MM-DD"),
            )
        })
}

async fn log_rows(
    s: &Session,
    p: &LogParams,
    limit: u32,
) -> Result<Vec<pb::AuditQueryRow>, Response> {
    let until = match day_start(s, &p.until)? {
        0 => 0,
        t => t + 86_400,
    };
    let request = pb::AuditLogRequest {
        dataset: p.dataset.trim().to_string(),
        consumer: p.consumer.trim().to_string(),
        purpose: p.purpose.trim().to_string(),
        since: pb::typed::timestamp(day_start(s, &p.since)?),
        until: pb::typed::timestamp(until),
        limit,
        // A department sees the use of its own data here; the bureau all.
        owner: if s.is_bureau() {
            String::new()
        } else {
            s.member().to_string()
        },
        ..Default::default()
    };
    let log = s
        .client()
        .audit_log(request)
        .await
        .map_err(|e| s.client_error(&e))?;
    Ok(log.rows.into_iter().rev().collect())
}

fn row_cells(s: &Session, r: &pb::AuditQueryRow) -> Vec<String> {
    let outcome = if r.allowed {
        if r.status.is_empty() {
            s.t("已授权", "authorized").to_string()
        } else {
            r.status.clone()
        }
    } else {
        format!("{}: {}", s.t("拒绝", "refused"), r.reason)
    };
    vec![
        beijing(r.time_ms / 1000),
        r.consumer.clone(),
        r.user.clone(),
        r.purpose.clone(),
        r.dataset.clone(),
        r.fields.join(", "),
        r.rows.to_string(),
        outcome,
        r.query_id.clone(),
    ]
}

fn heads(s: &Session) -> [&str; 9] {
    [
        s.t("时间", "Time"),
        s.t("使用部门", "Consumer"),
        s.t("用户", "User"),
        s.t("用途", "Purpose"),
        s.t("数据集", "Dataset"),
        s.t("字段", "Fields"),
        s.t("行数", "Rows"),
        s.t("结果", "Outcome"),
        s.t("查询编号", "Query"),
    ]
}

pub async fn usage(s: Session, Query(p): Query<LogParams>) -> Reply {
    let page = p.page.max(1);
    let rows = log_rows(&s, &p, (page * PER_PAGE) as u32).await?;
    let shown: Vec<_> = rows.iter().skip((page - 1) * PER_PAGE).collect();
    let (path, title) = if s.is_bureau() {
        ("/audit", s.t("联邦审计", "Federation audit"))
    } else {
        ("/usage", s.t("谁使用了本部门的数据", "Who used my data"))
    };
    let query = format!(
        "dataset={}&consumer={}&purpose={}&since={}&until={}",
        percent_encode(&p.dataset),
        percent_encode(&p.consumer),
        percent_encode(&p.purpose),
        percent_encode(&p.since),
        percent_encode(&p.until)
    );
    let body = html! {
        h1 { (title) }
        form.filters method="get" action=(path) {
            input name="dataset" value=(p.dataset) placeholder=(s.t("数据集", "dataset")) maxlength="200";
            input name="consumer" value=(p.consumer) placeholder=(s.t("使用部门", "consumer")) maxlength="100";
            input name="purpose" value=(p.purpose) placeholder=(s.t("用途包含", "purpose contains")) maxlength="200";
            label { (s.t("自", "from")) input type="date" name="since" value=(p.since); }
            label { (s.t("至", "to")) input type="date" name="until" value=(p.until); }
            button type="submit" { (s.t("筛选", "Filter")) }
            " " a href=(format!("{path}.csv?{query}")) { (s.t("导出 CSV", "Export CSV")) }
        }
        (table(&heads(&s), shown.iter().map(|r| row_cells(&s, r))))
        (pager(&s, &format!("{path}?{query}"), page, shown.len(), PER_PAGE))
    };
    Ok(s.page(title, body))
}

pub async fn usage_csv(s: Session, Query(p): Query<LogParams>) -> Reply {
    let rows = log_rows(&s, &p, 100_000).await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| s.error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    out.write_record(heads(&s)).map_err(io)?;
    for r in &rows {
        out.write_record(row_cells(&s, r).iter().map(|c| crate::web::csv_cell(c)))
            .map_err(io)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| s.error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit.csv\"",
            ),
        ],
        bytes,
    )
        .into_response())
}

pub async fn subject_form(s: Session) -> Reply {
    Ok(s.page(
        s.t("数据主体报告", "Data-subject report"),
        subject_body(&s, None),
    ))
}

fn subject_body(s: &Session, report: Option<(&str, &pb::SubjectReportResponse)>) -> maud::Markup {
    html! {
        h1 { (s.t("数据主体报告", "Data-subject report")) }
        p { (s.t("谁查看了某人或某企业的记录。禁查期内的访问默认不显示；审计人员可勾选显示，并会被标出。", "Who looked at one person's or company's records. Accesses under embargo are left out unless an auditor includes them, and are then marked.")) }
        form.lookup method="post" action="/subject" {
            (s.csrf_field())
            label { (s.t("身份证号或统一社会信用代码", "Resident ID or unified social credit code")) input name="key" required maxlength="18" data-check="id" autocomplete="off"; }
            label.check { input type="checkbox" name="include_embargoed" value="1"; " " (s.t("包含禁查期内的访问（审计）", "include embargoed accesses (audit)")) }
            button type="submit" { (s.t("生成报告", "Report")) }
        }
        @if let Some((key, r)) = report {
            h2 { (key) }
            (table(&[s.t("部门", "Department"), s.t("状态", "Status"), s.t("说明", "Detail")], r.departments.iter().map(|d| vec![d.department.clone(), d.status.clone(), d.detail.clone()])))
            (table(
                &[s.t("时间", "Time"), s.t("数据所属部门", "Owner"), s.t("数据集", "Dataset"), s.t("访问部门", "Consumer"), s.t("用户", "User"), s.t("用途", "Purpose"), s.t("禁查期", "Embargo")],
                r.accesses.iter().map(|a| vec![beijing(a.time_ms / 1000), a.owner.clone(), a.dataset.clone(), a.consumer.clone(), a.user.clone(), a.purpose.clone(),
                    if a.embargo_until.is_empty() { String::new() } else { format!("{} {}", s.t("禁查至", "embargoed until"), a.embargo_until) }]),
            ))
            @if r.accesses.is_empty() { p.empty { (s.t("没有访问记录。", "No access recorded.")) } }
        }
    }
}

pub async fn subject(s: Session, form: Form) -> Reply {
    s.check_csrf(&form)?;
    let key = form.get("key").trim().to_ascii_uppercase();
    let key_type = if exchange_policy::ids::is_valid_resident_id(&key) {
        "person_id"
    } else if exchange_policy::ids::is_valid_uscc(&key) {
        "org_code"
    } else {
        return Err(s.error(StatusCode::BAD_REQUEST, s.t("这不是有效的身份证号或统一社会信用代码：校验位不符。", "this is neither a valid resident ID nor a valid unified social credit code: the check character does not match")));
    };
    let report = s
        .client()
        .subject_report(pb::SubjectReportRequest {
            key_type: key_type.into(),
            key: key.clone(),
            include_embargoed: form.get("include_embargoed") == "1",
        })
        .await
        .map_err(|e| s.client_error(&e))?;
    Ok(s.page(
        s.t("数据主体报告", "Data-subject report"),
        subject_body(&s, Some((&key, &report))),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReconcileParams {
    node: String,
    since: String,
}

pub async fn reconcile(s: Session, Query(p): Query<ReconcileParams>) -> Reply {
    let result = if p.node.is_empty() {
        None
    } else {
        let since = day_start(&s, &p.since)?;
        Some(
            s.client()
                .reconcile(&p.node, since)
                .await
                .map_err(|e| s.client_error(&e))?,
        )
    };
    let body = html! {
        h1 { (s.t("对账", "Reconciliation")) }
        form.filters method="get" action="/reconcile" {
            input name="node" value=(p.node) required placeholder=(s.t("部门节点，如 tax", "department node, e.g. tax")) maxlength="64";
            label { (s.t("自", "since")) input type="date" name="since" value=(p.since); }
            button type="submit" { (s.t("对账", "Reconcile")) }
        }
        @if let Some(r) = &result {
            p { (s.t("协调器授权", "Authorized")) ": " (r.authorized) " · " (s.t("节点提供", "served")) ": " (r.served) " · " (s.t("差异", "discrepancies")) ": " strong { (r.discrepancies.len()) } }
            (table(&[s.t("已解释（双方一致）", "Explained (both ends agree)"), s.t("数量", "Count")], r.explained.iter().map(|(k, v)| vec![k.clone(), v.to_string()])))
            (table(&[s.t("类型", "Kind"), s.t("查询", "Query"), s.t("说明", "Detail"), s.t("时间", "Time")], r.discrepancies.iter().map(|d| vec![d.kind.clone(), d.query_id.clone(), d.detail.clone(), beijing(d.time_ms / 1000)])))
        }
    };
    Ok(s.page(s.t("对账", "Reconciliation"), body))
}

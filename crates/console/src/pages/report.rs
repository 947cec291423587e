//! The leadership's performance report: per department, per dataset and
//! per day, as charts read at a glance with the figures beside them, and
//! as CSV. The figures come from the coordinator's `Audit.Report`, the
//! same statistics as `exchange report`.

use axum::extract::Query;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use exchange_proto::v1 as pb;
use maud::{html, Markup};
use serde::Deserialize;

use super::audit::day_start;
use super::{table, Reply};
use crate::web::{percent_encode, Session};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReportParams {
    since: String,
    until: String,
    kind: String,
}

async fn fetch(s: &Session, p: &ReportParams, kind: &str) -> Result<pb::ReportResponse, Response> {
    let until = match day_start(s, &p.until)? {
        0 => 0,
        t => t + 86_400,
    };
    s.client()
        .report(pb::ReportRequest {
            kind: kind.into(),
            since: pb::typed::timestamp(day_start(s, &p.since)?),
            until: pb::typed::timestamp(until),
            ..Default::default()
        })
        .await
        .map_err(|e| s.client_error(&e))
}

fn column(report: &pb::ReportResponse, name: &str) -> Option<usize> {
    report.columns.iter().position(|c| c == name)
}

fn number(report: &pb::ReportResponse, row: &pb::ReportRow, name: &str) -> f64 {
    column(report, name)
        .and_then(|i| row.cells.get(i))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0.0)
}

fn label(report: &pb::ReportResponse, row: &pb::ReportRow, name: &str) -> String {
    column(report, name)
        .and_then(|i| row.cells.get(i))
        .cloned()
        .unwrap_or_default()
}

/// Horizontal bars, one per label, with the figure at the end of each.
fn bars(title: &str, items: &[(String, f64)]) -> Markup {
    let max = items.iter().map(|(_, v)| *v).fold(0.0, f64::max).max(1.0);
    let height = 24 * items.len().max(1) + 10;
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox=(format!("0 0 640 {height}")) role="img" aria-label=(title) {
                @for (i, (name, value)) in items.iter().enumerate() {
                    @let y = 5 + i * 24;
                    @let w = (value / max * 380.0).max(1.0);
                    text x="0" y=(y + 15) class="label" { (name) }
                    rect x="180" y=(y) width=(format!("{w:.1}")) height="18" class="bar" {}
                    text x=(format!("{:.1}", 186.0 + w)) y=(y + 15) class="value" { (value) }
                }
            }
        }
    }
}

/// A line over days with dots at each day's figure.
fn line(title: &str, points: &[(String, f64)]) -> Markup {
    let max = points.iter().map(|(_, v)| *v).fold(0.0, f64::max).max(1.0);
    let n = points.len().max(2) - 1;
    let xy: Vec<(f64, f64)> = points
        .iter()
        .enumerate()
        .map(|(i, (_, v))| (40.0 + 580.0 * i as f64 / n as f64, 170.0 - v / max * 150.0))
        .collect();
    let path: String = xy
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect::<Vec<_>>()
        .join(" ");
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox="0 0 640 200" role="img" aria-label=(title) {
                line x1="40" y1="170" x2="620" y2="170" class="axis" {}
                text x="0" y="25" class="value" { (max) }
                polyline points=(path) class="line" {}
                @for ((x, y), (day, v)) in xy.iter().zip(points) {
                    circle cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="3" class="dot" { title { (day) ": " (v) } }
                }
                @if let (Some(first), Some(last)) = (points.first(), points.last()) {
                    text x="40" y="192" class="label" { (first.0) }
                    text x="540" y="192" class="label" { (last.0) }
                }
            }
        }
    }
}

fn figures(report: &pb::ReportResponse) -> Markup {
    let heads: Vec<&str> = report.columns.iter().map(String::as_str).collect();
    html! { div.scroll { (table(&heads, report.rows.iter().map(|r| r.cells.clone()))) } }
}

pub async fn report(s: Session, Query(p): Query<ReportParams>) -> Reply {
    let departments = fetch(&s, &p, "departments").await?;
    let datasets = fetch(&s, &p, "datasets").await?;
    let daily = fetch(&s, &p, "daily").await?;
    let per_department = |name: &str| -> Vec<(String, f64)> {
        departments
            .rows
            .iter()
            .map(|r| {
                (
                    label(&departments, r, "department"),
                    number(&departments, r, name),
                )
            })
            .collect()
    };
    let popular: Vec<(String, f64)> = datasets
        .rows
        .iter()
        .take(15)
        .map(|r| {
            (
                label(&datasets, r, "dataset"),
                number(&datasets, r, "queries"),
            )
        })
        .collect();
    let per_day: Vec<(String, f64)> = daily
        .rows
        .iter()
        .map(|r| (label(&daily, r, "day"), number(&daily, r, "queries")))
        .collect();
    let query = format!(
        "since={}&until={}",
        percent_encode(&p.since),
        percent_encode(&p.until)
    );
    let body = html! {
        h1 { (s.t("绩效报告", "Performance report")) }
        form.filters method="get" action="/report" {
            label { (s.t("自", "from")) input type="date" name="since" value=(p.since); }
            label { (s.t("至", "to")) input type="date" name="until" value=(p.until); }
            button type="submit" { (s.t("更新", "Update")) }
            " " (s.t("导出 CSV", "Export CSV")) ": "
            a href=(format!("/report.csv?kind=departments&{query}")) { (s.t("部门", "departments")) } " "
            a href=(format!("/report.csv?kind=datasets&{query}")) { (s.t("数据集", "datasets")) } " "
            a href=(format!("/report.csv?kind=daily&{query}")) { (s.t("每日", "daily")) }
        }
        h2 { (s.t("各部门", "Departments")) }
        div.charts {
            (bars(s.t("提供查询次数", "Queries served"), &per_department("queries_served")))
            (bars(s.t("使用查询次数", "Queries used"), &per_department("queries_issued")))
            (bars(s.t("提供行数", "Rows served"), &per_department("rows_served")))
            (bars(s.t("拒绝次数（本部门数据）", "Refusals on its data"), &per_department("denied_on_its_data")))
            (bars(s.t("服务延迟 p50（毫秒）", "Serving latency p50 (ms)"), &per_department("served_p50_ms")))
            (bars(s.t("服务延迟 p99（毫秒）", "Serving latency p99 (ms)"), &per_department("served_p99_ms")))
            (bars(s.t("审批用时中位数（小时）", "Median approval turnaround (h)"), &per_department("approval_turnaround_median_h")))
            (bars(s.t("逾期未决申请（当前）", "Requests overdue now"), &per_department("overdue_requests")))
        }
        (figures(&departments))
        h2 { (s.t("数据集热度", "Dataset popularity")) }
        (bars(s.t("查询次数（前 15）", "Queries (top 15)"), &popular))
        (figures(&datasets))
        h2 { (s.t("每日", "Per day")) }
        (line(s.t("每日查询次数", "Queries per day"), &per_day))
        (figures(&daily))
    };
    Ok(s.page(s.t("绩效报告", "Performance report"), body))
}

pub async fn report_csv(s: Session, Query(p): Query<ReportParams>) -> Reply {
    let kind = match p.kind.as_str() {
        k @ ("departments" | "datasets" | "daily") => k,
        _ => "departments",
    };
    let report = fetch(&s, &p, kind).await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let fail = |e: &dyn std::fmt::Display| {
        s.error(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
        )
    };
    out.write_record(&report.columns).map_err(|e| fail(&e))?;
    for row in &report.rows {
        out.write_record(row.cells.iter().map(|c| crate::web::csv_cell(c)))
            .map_err(|e| fail(&e))?;
    }
    let bytes = out.into_inner().map_err(|e| fail(&e))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"report-{kind}.csv\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

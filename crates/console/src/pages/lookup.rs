//! The caseworker's one-window lookup: one person or company, across every
//! department whose data this department holds a grant on.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use exchange_client::lookup::{LookupReport, SourceStatus, DEFAULT_DEADLINE};
use maud::{html, Markup};

use super::{batches_table, Reply};
use crate::web::{Form, Session};

/// The purposes this user stated before, most recent first.
async fn past_purposes(s: &Session) -> Vec<String> {
    let request = exchange_proto::v1::AuditLogRequest {
        consumer: s.member().to_string(),
        limit: 2000,
        ..Default::default()
    };
    let Ok(log) = s.client().audit_log(request).await else {
        return Vec::new();
    };
    let mut seen = Vec::new();
    for row in log.rows.iter().rev() {
        if row.user == s.user && !row.purpose.is_empty() && !seen.contains(&row.purpose) {
            seen.push(row.purpose.clone());
        }
        if seen.len() == 12 {
            break;
        }
    }
    seen
}

fn lookup_form(s: &Session, purposes: &[String], key: &str, purpose: &str) -> Markup {
    html! {
        form.lookup method="post" action="/lookup" {
            (s.csrf_field())
            label {
                (s.t("身份证号或统一社会信用代码", "Resident ID or unified social credit code"))
                input #key name="key" required maxlength="18" autocomplete="off" value=(key)
                    data-check="id" aria-describedby="key-hint";
            }
            span #key-hint.hint data-ok=(s.t("校验位正确", "check character correct"))
                data-bad=(s.t("校验位不符：请检查是否输错", "check character does not match: look for a mistyped digit"))
                data-short=(s.t("需 18 位", "18 characters needed")) {}
            label {
                (s.t("用途", "Purpose"))
                input name="purpose" required maxlength="200" list="purposes" value=(purpose);
            }
            datalist #purposes { @for p in purposes { option value=(p) {} } }
            button type="submit" { (s.t("查询", "Look up")) }
        }
    }
}

pub async fn form(s: Session) -> Reply {
    let purposes = past_purposes(&s).await;
    let body = html! {
        h1 { (s.t("一窗查询", "One-window lookup")) }
        p { (s.t("一次查询本部门有权使用的所有部门数据。每次查询都记录用途和您的姓名。",
                 "One question to every department whose data your department may use. Each lookup records its purpose and your name.")) }
        (lookup_form(&s, &purposes, "", ""))
    };
    Ok(s.page(s.t("一窗查询", "Lookup"), body))
}

/// Which key a text is: a resident ID or a USCC, by its check character.
fn key_type_of(key: &str) -> Option<&'static str> {
    let key = key.trim().to_ascii_uppercase();
    if exchange_policy::ids::is_valid_resident_id(&key) {
        Some("person_id")
    } else if exchange_policy::ids::is_valid_uscc(&key) {
        Some("org_code")
    } else {
        None
    }
}

pub async fn run(s: Session, form: Form) -> Reply {
    s.check_csrf(&form)?;
    let key = form.get("key").trim().to_string();
    let purpose = form.get("purpose").trim().to_string();
    let Some(key_type) = key_type_of(&key) else {
        return Err(s.error(
            StatusCode::BAD_REQUEST,
            s.t(
                "这不是有效的身份证号（GB 11643 校验位）或统一社会信用代码（GB 32100 校验位）：请检查是否输错。",
                "this is neither a resident ID (GB 11643 check character) nor a unified social credit code (GB 32100 check characters): look for a mistyped digit",
            ),
        ));
    };
    if purpose.is_empty() {
        return Err(s.error(
            StatusCode::BAD_REQUEST,
            s.t("请填写用途。", "state the purpose of the lookup"),
        ));
    }
    let report = s
        .client()
        .lookup(key_type, &key, &purpose, DEFAULT_DEADLINE)
        .await
        .map_err(|e| s.client_error(&e))?;
    let purposes = past_purposes(&s).await;
    let body = html! {
        h1 { (s.t("一窗查询", "One-window lookup")) }
        (lookup_form(&s, &purposes, &key, &purpose))
        (results(&s, &report, &purpose))
    };
    Ok(s.page(s.t("查询结果", "Lookup results"), body))
}

fn status_label(s: &Session, status: &SourceStatus) -> String {
    match status {
        SourceStatus::Ok => s.t("正常", "ok").into(),
        SourceStatus::Denied(_) => s.t("被拒绝", "denied").into(),
        SourceStatus::Offline(_) => s.t("离线", "offline").into(),
        SourceStatus::TimedOut => s.t("超时", "timed out").into(),
        SourceStatus::Error(_) => s.t("出错", "error").into(),
    }
}

fn results(s: &Session, report: &LookupReport, purpose: &str) -> Markup {
    let mut by_department: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for answer in &report.answers {
        by_department
            .entry(&answer.department)
            .or_default()
            .push(answer);
    }
    html! {
        section #results.results {
            div.summary {
                p {
                    (s.t("查询对象", "Subject")) ": " strong { (report.key) }
                    " · " (s.t("用途", "Purpose")) ": " (purpose)
                    " · " (s.t("查询人", "By")) ": " (s.user) " (" (s.member()) ")"
                    " · " (report.elapsed.as_millis()) " ms"
                }
                p.actions.noprint {
                    button type="button" data-action="print" { (s.t("打印摘要", "Print summary")) }
                    " "
                    button type="button" data-action="csv" data-table="#results" data-file="lookup.csv" { (s.t("下载 CSV", "Download CSV")) }
                }
            }
            @if by_department.is_empty() {
                p.empty { (s.t("本部门没有可按此类标识查询的授权数据集。先在目录中申请。", "Your department holds no grant on a dataset keyed by this identifier. Request one from the catalog first.")) }
            }
            @for (department, answers) in &by_department {
                section.department {
                    h2 { (department) }
                    @for answer in answers {
                        div.dataset data-status=(answer.status.label()) {
                            h3 {
                                a href=(format!("/datasets/{}", answer.dataset)) { (answer.dataset) }
                                " " span class=(format!("status {}", answer.status.label().replace(' ', "-"))) { (status_label(s, &answer.status)) }
                                " " small { (answer.elapsed.as_millis()) " ms" }
                            }
                            @if !answer.status.detail().is_empty() { p.detail { (answer.status.detail()) } }
                            @if answer.status == SourceStatus::Ok {
                                @if answer.rows() == 0 { p.empty { (s.t("无记录", "no records")) } }
                                @else { (batches_table(&answer.batches, 1000)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

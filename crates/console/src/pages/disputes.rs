//! Disputes about a department's data (resolve or reject with a note) and
//! the conflict report (one attribute compared across departments).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use exchange_proto::v1 as pb;
use maud::html;

use super::{state_label, table, Reply};
use crate::web::{Form, Session};

pub async fn list(s: Session) -> Reply {
    let disputes = s
        .client()
        .disputes("")
        .await
        .map_err(|e| s.client_error(&e))?;
    let (mine, filed): (Vec<_>, Vec<_>) = disputes.iter().partition(|d| d.owner == s.member());
    let body = html! {
        h1 { (s.t("对本部门数据的异议", "Disputes about my data")) }
        @for d in &mine {
            div.dispute {
                p { strong { (d.id) } " · " (d.dataset) " · " (d.key) " · " (d.field) " · " (state_label(&s, &d.status)) " · " (s.time(d.filed_unix)) }
                p { (s.t("对方看到", "Value seen")) ": " (d.value_seen) " → " (s.t("建议", "proposed")) ": " (d.proposed) }
                p { (s.t("说明", "Note")) ": " (d.note) " — " (d.filed_by) }
                @if d.state() == pb::DisputeState::Open {
                    form.inline method="post" action=(format!("/disputes/{}/resolve", d.id)) {
                        (s.csrf_field())
                        select name="outcome" {
                            option value="resolved" { (s.t("已更正数据", "resolved: data corrected")) }
                            option value="rejected" { (s.t("维持原值", "rejected: value stands")) }
                        }
                        input name="note" required maxlength="2000" placeholder=(s.t("处理说明（必填）", "note (required)"));
                        button type="submit" { (s.t("提交", "Submit")) }
                    }
                } @else {
                    p { (s.t("处理说明", "Resolution")) ": " (d.resolution_note) " — " (d.resolved_by) }
                }
            }
        }
        @if mine.is_empty() { p.empty { (s.t("没有异议。", "No disputes.")) } }
        h2 { (s.t("本部门提出的异议", "Disputes my department filed")) }
        (table(
            &[s.t("编号", "Id"), s.t("数据集", "Dataset"), s.t("对象", "Key"), s.t("字段", "Field"), s.t("状态", "State"), s.t("处理说明", "Resolution")],
            filed.iter().map(|d| vec![d.id.clone(), d.dataset.clone(), d.key.clone(), d.field.clone(), state_label(&s, &d.status), d.resolution_note.clone()]),
        ))
    };
    Ok(s.page(s.t("异议", "Disputes"), body))
}

pub async fn resolve(s: Session, Path(id): Path<String>, form: Form) -> Reply {
    s.check_csrf(&form)?;
    if form.get("note").trim().is_empty() {
        return Err(s.error(
            StatusCode::BAD_REQUEST,
            s.t("请填写处理说明。", "give a note with the outcome"),
        ));
    }
    s.client()
        .resolve_dispute(pb::ResolveDisputeRequest {
            id,
            outcome: form.get("outcome").to_string(),
            note: form.get("note").to_string(),
            user: String::new(),
        })
        .await
        .map_err(|e| s.client_error(&e))?;
    Ok(Redirect::to("/disputes").into_response())
}

fn conflicts_form(s: &Session) -> maud::Markup {
    html! {
        form.query method="post" action="/conflicts" {
            (s.csrf_field())
            label { (s.t("标识类型", "Key type"))
                select name="key_type" { option value="org_code" { (s.t("统一社会信用代码", "org code")) } option value="person_id" { (s.t("身份证号", "person ID")) } } }
            label { (s.t("比对字段", "Attribute")) input name="attribute" required maxlength="64" placeholder="registered_address"; }
            label { (s.t("数据集（逗号分隔，2 至 8 个）", "Datasets (comma-separated, 2 to 8)")) input name="datasets" required maxlength="1000" placeholder="market-regulation/companies,tax/taxpayers"; }
            label { (s.t("用途", "Purpose")) input name="purpose" required maxlength="200" value="数据一致性核查 data consistency check"; }
            button type="submit" { (s.t("比对", "Compare")) }
        }
    }
}

/// Why the bureau's operator certificate compares nothing: it holds no
/// grants, because only owners grant access to their data.
fn conflicts_need_grants(s: &Session) -> maud::Markup {
    html! {
        h1 { (s.t("冲突报告", "Conflict report")) }
        p.notice { (s.t(
            "冲突比对读取各部门的数据，只能凭数据所有部门批准的授权进行。数据局运维证书不持有任何授权（数据由所有部门决定是否共享），因此请用持有相关授权的部门证书登录（例如数据局作为成员单位的证书），再打开本页。",
            "A conflict report reads departments' data, which only grants from the owning departments allow. The bureau's operator certificate holds no grants (owners decide what they share), so sign in with a department certificate that holds the grants (for example the bureau's own member certificate) and open this page again.",
        )) }
    }
}

pub async fn conflicts_page(s: Session) -> Reply {
    if s.is_bureau() {
        return Ok(s.page(s.t("冲突报告", "Conflicts"), conflicts_need_grants(&s)));
    }
    let body = html! {
        h1 { (s.t("冲突报告", "Conflict report")) }
        p { (s.t("用本部门持有的授权，比对同一主体在不同部门的同一属性。", "Compare one attribute of the same entities across departments, with your department's grants.")) }
        (conflicts_form(&s))
    };
    Ok(s.page(s.t("冲突报告", "Conflicts"), body))
}

pub async fn conflicts(s: Session, form: Form) -> Reply {
    s.check_csrf(&form)?;
    if s.is_bureau() {
        return Ok(s.page(s.t("冲突报告", "Conflicts"), conflicts_need_grants(&s)));
    }
    let query = exchange_client::conflicts::ConflictQuery {
        key_type: form.get("key_type").to_string(),
        attribute: form.get("attribute").trim().to_string(),
        datasets: form
            .get("datasets")
            .split(',')
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty())
            .collect(),
        purpose: form.get("purpose").to_string(),
    };
    let report = s
        .client()
        .conflicts(&query)
        .await
        .map_err(|e| s.client_error(&e))?;
    let mut heads = vec![s.t("主体", "Key").to_string()];
    heads.extend(report.sources.iter().map(|src| {
        if src.authoritative {
            format!("{} ★", src.dataset)
        } else {
            src.dataset.clone()
        }
    }));
    let heads: Vec<&str> = heads.iter().map(String::as_str).collect();
    let body = html! {
        h1 { (s.t("冲突报告", "Conflict report")) }
        (conflicts_form(&s))
        p { (s.t("比对主体数", "Compared")) ": " (report.compared) " · " (s.t("冲突", "conflicts")) ": " strong { (report.conflicts.len()) } " · " (s.t("仅格式差异", "cosmetic only")) ": " (report.cosmetic.len()) " · ★ " (s.t("权威来源", "authoritative source")) }
        (table(&heads, report.conflicts.iter().map(|c| {
            let mut row = vec![c.key.clone()];
            row.extend(c.values.iter().map(|v| v.clone().unwrap_or_else(|| "—".into())));
            row
        })))
    };
    Ok(s.page(s.t("冲突报告", "Conflicts"), body))
}

//! Requests and grants: the analyst asks, the owning department decides.
//! Every action goes through the coordinator's `Access` service, which
//! checks that the deciding department owns the dataset.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use exchange_proto::v1 as pb;
use maud::{html, Markup};

use super::{state_label, table, Reply};
use crate::web::{Form, Session};

pub async fn request(s: Session, Path((dept, local)): Path<(String, String)>, form: Form) -> Reply {
    s.check_csrf(&form)?;
    let record = s
        .client()
        .request_access(pb::AccessRequest {
            dataset: format!("{dept}/{local}"),
            fields: form.all("fields"),
            purpose: form.get("purpose").to_string(),
            basis: form.get("basis").to_string(),
            until: form.get("until").to_string(),
            ..Default::default()
        })
        .await
        .map_err(|e| s.client_error(&e))?;
    tracing::info!(request = %record.id, dataset = %record.dataset, "access requested from the console");
    Ok(Redirect::to("/requests").into_response())
}

fn waited(s: &Session, r: &pb::AccessRequestRecord) -> String {
    let days = (exchange_pki::now_unix() - r.created_unix).max(0) / 86_400;
    let hours = (exchange_pki::now_unix() - r.created_unix).max(0) / 3600 % 24;
    format!("{days} {} {hours} {}", s.t("天", "d"), s.t("小时", "h"))
}

pub async fn mine(s: Session) -> Reply {
    let client = s.client();
    let requests = client
        .access_requests()
        .await
        .map_err(|e| s.client_error(&e))?;
    let grants = client.grants().await.map_err(|e| s.client_error(&e))?;
    let mine: Vec<_> = requests
        .iter()
        .filter(|r| r.consumer == s.member())
        .rev()
        .collect();
    let held: Vec<_> = grants.iter().filter(|g| g.consumer == s.member()).collect();
    let given: Vec<_> = grants
        .iter()
        .filter(|g| g.owner == s.member() && g.status == "active")
        .collect();
    let body = html! {
        h1 { (s.t("我的申请", "My requests")) }
        (table(
            &[s.t("编号", "Id"), s.t("数据集", "Dataset"), s.t("字段", "Fields"), s.t("用途", "Purpose"), s.t("申请人", "User"), s.t("状态", "State"), s.t("提供方的理由", "Owner's reason"), s.t("提交时间", "Asked")],
            mine.iter().map(|r| vec![r.id.clone(), r.dataset.clone(), r.fields.join(", "), r.purpose.clone(), r.user.clone(), state_label(&s, &r.status), r.reason.clone(), s.time(r.created_unix)]),
        ))
        h2 { (s.t("本部门持有的授权", "Grants my department holds")) }
        table {
            thead { tr { th { (s.t("授权", "Grant")) } th { (s.t("数据集", "Dataset")) } th { (s.t("字段与掩码", "Fields and masks")) } th { (s.t("行过滤", "Row filter")) } th { (s.t("截止", "Until")) } th { (s.t("状态", "State")) } th { (s.t("撤销理由", "Revocation reason")) } th {} } }
            tbody { @for g in &held { tr {
                td { (g.id) } td { (g.dataset) }
                td { (g.fields.iter().map(|f| format!("{} ({})", f.name, f.mask)).collect::<Vec<_>>().join(", ")) }
                td { (g.row_filter) } td { (g.until) } td { (state_label(&s, &g.status)) }
                td { (g.revocation_reason) }
                td { @if g.status == "active" { a href=(format!("/query/{}", g.dataset)) { (s.t("查询", "Query")) } } }
            } } }
        }
        @if !given.is_empty() {
            h2 { (s.t("本部门给出的授权", "Grants my department gave")) }
            @for g in &given { (grant_given(&s, g)) }
        }
    };
    Ok(s.page(s.t("我的申请与授权", "My requests and grants"), body))
}

fn grant_given(s: &Session, g: &pb::Grant) -> Markup {
    html! {
        div.grant {
            p { strong { (g.id) } " · " (g.dataset) " → " (g.consumer) " · " (g.purpose) " · " (s.t("截止", "until")) " " (g.until) }
            form.inline method="post" action=(format!("/grants/{}/revoke", g.id)) {
                (s.csrf_field())
                input name="reason" required maxlength="500" placeholder=(s.t("撤销理由（必填）", "reason (required)"));
                input name="confirm" required maxlength="64" autocomplete="off" placeholder=(format!("{} {}", s.t("输入以确认：", "type to confirm:"), g.id));
                button.danger type="submit" { (s.t("撤销授权（不可撤回）", "Revoke grant (cannot be undone)")) }
            }
        }
    }
}

pub async fn pending(s: Session) -> Reply {
    let mut pending = s.client().pending().await.map_err(|e| s.client_error(&e))?;
    pending.sort_by_key(|r| r.created_unix);
    let body = html! {
        h1 { (s.t("待审批的申请", "Pending requests")) }
        p { (s.t("对本部门数据集的申请，最早的在前。超过服务时限的标为逾期。", "Requests for my department's datasets, oldest first. Those past the service-level limit are marked overdue.")) }
        table {
            thead { tr { th { (s.t("编号", "Id")) } th { (s.t("数据集", "Dataset")) } th { (s.t("申请部门", "Consumer")) } th { (s.t("申请人", "User")) } th { (s.t("用途", "Purpose")) } th { (s.t("已等待", "Waiting")) } th {} } }
            tbody { @for r in &pending { tr class=(if r.overdue { "overdue" } else { "" }) {
                td { a href=(format!("/pending/{}", r.id)) { (r.id) } }
                td { (r.dataset) } td { (r.consumer) } td { (r.user) } td { (r.purpose) }
                td { (waited(&s, r)) @if r.overdue { " " span.status.overdue { (s.t("逾期", "overdue")) } } }
                td { a href=(format!("/pending/{}", r.id)) { (s.t("审批", "Decide")) } }
            } } }
        }
        @if pending.is_empty() { p.empty { (s.t("没有待审批的申请。", "No request is waiting.")) } }
    };
    Ok(s.page(s.t("待审批", "Pending"), body))
}

pub async fn pending_one(s: Session, Path(id): Path<String>) -> Reply {
    let client = s.client();
    let pending = client.pending().await.map_err(|e| s.client_error(&e))?;
    let Some(r) = pending.iter().find(|r| r.id == id) else {
        tracing::warn!(peer = %s.peer.identity, request = %exchange_policy::text::for_log(&id, 60), "console: a pending request that is not this department's was opened");
        return Err(s.error(
            StatusCode::NOT_FOUND,
            s.t("没有这条待本部门审批的申请：它不存在、已被处理，或不是对本部门数据的申请。", "no request with this id awaits your department's decision: it does not exist, was decided, or is for another department's data"),
        ));
    };
    let dataset = client
        .dataset(&r.dataset)
        .await
        .map_err(|e| s.client_error(&e))?;
    let body = html! {
        h1 { (s.t("审批申请", "Decide request")) " " (r.id) }
        dl.facts {
            dt { (s.t("数据集", "Dataset")) } dd { (r.dataset) }
            dt { (s.t("申请部门", "Consumer")) } dd { (r.consumer) }
            dt { (s.t("申请人", "User")) } dd { (r.user) }
            dt { (s.t("字段", "Fields")) } dd { (r.fields.join(", ")) }
            dt { (s.t("用途", "Purpose")) } dd { (r.purpose) }
            dt { (s.t("依据", "Basis")) } dd { (r.basis) }
            dt { (s.t("期望截止", "Until")) } dd { (r.until) }
            dt { (s.t("已等待", "Waiting")) } dd { (waited(&s, r)) @if r.overdue { " " span.status.overdue { (s.t("逾期", "overdue")) } } }
        }
        h2 { (s.t("批准（可收窄）", "Approve, as asked or narrowed")) }
        form.approve method="post" action=(format!("/pending/{}/approve", r.id)) {
            (s.csrf_field())
            fieldset {
                legend { (s.t("批准的字段（全不选 = 按申请）", "Fields granted (none ticked: as asked)")) }
                @for f in &r.fields { label.check { input type="checkbox" name="fields" value=(f); " " (f) } }
            }
            fieldset {
                legend { (s.t("解除掩码的字段", "Fields to unmask")) }
                @for f in dataset.fields.iter().filter(|f| r.fields.contains(&f.name) && f.mask != "none" && !f.mask.is_empty()) {
                    label.check { input type="checkbox" name="unmask" value=(f.name); " " (f.name) " (" (f.mask) ")" }
                }
            }
            label { (s.t("行过滤", "Row filter")) input name="row_filter" maxlength="2000" placeholder="district = '南海'"; }
            label { (s.t("每日行数配额", "Rows per day")) input type="number" name="quota" min="0"; }
            label { (s.t("提前截止", "Earlier expiry")) input type="date" name="until"; }
            label { (s.t("禁查期至（数据主体报告中隐藏）", "Embargo until (hidden from data-subject reports)")) input type="date" name="embargo_until"; }
            button type="submit" { (s.t("批准", "Approve")) }
        }
        h2 { (s.t("拒绝", "Refuse")) }
        form.refuse method="post" action=(format!("/pending/{}/refuse", r.id)) {
            (s.csrf_field())
            label { (s.t("理由（必填）", "Reason (required)")) textarea name="reason" required maxlength="2000" {} }
            button.danger type="submit" { (s.t("拒绝", "Refuse")) }
        }
    };
    Ok(s.page(s.t("审批", "Decide"), body))
}

pub async fn approve(s: Session, Path(id): Path<String>, form: Form) -> Reply {
    s.check_csrf(&form)?;
    let quota = match form.get("quota").trim() {
        "" => 0,
        q => q.parse::<u64>().map_err(|_| {
            s.error(
                StatusCode::BAD_REQUEST,
                s.t(
                    "配额须为非负整数。",
                    "the quota must be a whole number of rows",
                ),
            )
        })?,
    };
    let record = s
        .client()
        .approve(pb::ApproveRequest {
            request_id: id,
            fields: form.all("fields"),
            unmask: form.all("unmask"),
            row_filter: form.get("row_filter").to_string(),
            quota_rows_per_day: quota,
            until: form.get("until").to_string(),
            embargo_until: form.get("embargo_until").to_string(),
            ..Default::default()
        })
        .await
        .map_err(|e| s.client_error(&e))?;
    tracing::info!(request = %record.id, grant = %record.grant_id, "approved from the console");
    Ok(Redirect::to("/pending").into_response())
}

pub async fn refuse(s: Session, Path(id): Path<String>, form: Form) -> Reply {
    s.check_csrf(&form)?;
    if form.get("reason").trim().is_empty() {
        return Err(s.error(
            StatusCode::BAD_REQUEST,
            s.t("拒绝必须说明理由。", "a refusal must give its reason"),
        ));
    }
    s.client()
        .refuse(&id, form.get("reason"))
        .await
        .map_err(|e| s.client_error(&e))?;
    Ok(Redirect::to("/pending").into_response())
}

pub async fn revoke(s: Session, Path(id): Path<String>, form: Form) -> Reply {
    s.check_csrf(&form)?;
    s.check_confirmed(&form, &id)?;
    if form.get("reason").trim().is_empty() {
        return Err(s.error(
            StatusCode::BAD_REQUEST,
            s.t("撤销必须说明理由。", "a revocation must give its reason"),
        ));
    }
    s.client()
        .revoke_grant(&id, form.get("reason"))
        .await
        .map_err(|e| s.client_error(&e))?;
    Ok(Redirect::to("/requests").into_response())
}

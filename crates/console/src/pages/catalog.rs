//! The analyst's catalog: search with filters, and a dataset's page with
//! its fields, policy, owner and the form to request access.

use axum::extract::{Path, Query};
use exchange_proto::v1 as pb;
use maud::{html, Markup};
use serde::Deserialize;

use super::{pager, sharing_label, table, Reply};
use crate::web::{percent_encode, Session};

const PER_PAGE: usize = 50;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SearchParams {
    q: String,
    department: String,
    sharing: String,
    key_type: String,
    page: usize,
}

fn select(name: &str, current: &str, options: &[(&str, String)]) -> Markup {
    html! {
        select name=(name) {
            @for (value, label) in options {
                option value=(value) selected[*value == current] { (label) }
            }
        }
    }
}

pub async fn search(s: Session, Query(p): Query<SearchParams>) -> Reply {
    let page = p.page.max(1);
    let client = s.client();
    let members = client.members().await.map_err(|e| s.client_error(&e))?;
    let answer = client
        .search(pb::SearchRequest {
            text: p.q.clone(),
            department: p.department.clone(),
            sharing: p.sharing.clone(),
            key_type: p.key_type.clone(),
            limit: (page * PER_PAGE).min(10_000) as u32,
            ..Default::default()
        })
        .await
        .map_err(|e| s.client_error(&e))?;
    let hits: Vec<_> = answer.hits.iter().skip((page - 1) * PER_PAGE).collect();
    let mut departments = vec![(
        String::new(),
        s.t("全部部门", "all departments").to_string(),
    )];
    departments.extend(
        members
            .iter()
            .map(|m| (m.id.clone(), format!("{} {}", m.display_name, m.id))),
    );
    let departments: Vec<(&str, String)> = departments
        .iter()
        .map(|(v, l)| (v.as_str(), l.clone()))
        .collect();
    let sharing = [
        ("", s.t("全部共享类型", "any sharing class").to_string()),
        ("unconditional", sharing_label(&s, "unconditional")),
        ("conditional", sharing_label(&s, "conditional")),
        ("none", sharing_label(&s, "none")),
    ];
    let key_types = [
        ("", s.t("全部标识类型", "any key type").to_string()),
        ("person_id", s.t("身份证号", "person ID").to_string()),
        ("org_code", s.t("统一社会信用代码", "org code").to_string()),
        ("plate_no", s.t("车牌号", "vehicle plate").to_string()),
    ];
    let base = format!(
        "/catalog?q={}&department={}&sharing={}&key_type={}",
        percent_encode(&p.q),
        percent_encode(&p.department),
        percent_encode(&p.sharing),
        percent_encode(&p.key_type)
    );
    let rows = hits.iter().filter_map(|h| h.dataset.as_ref()).map(|d| {
        vec![
            d.id.clone(),
            d.title.clone(),
            d.title_en.clone(),
            d.department_name.clone(),
            sharing_label(&s, &d.sharing),
            d.update_cycle.clone(),
        ]
    });
    let body = html! {
        h1 { (s.t("数据目录", "Catalog")) }
        form.filters method="get" action="/catalog" {
            input name="q" value=(p.q) placeholder=(s.t("关键词（中文或英文）", "words (Chinese or English)")) maxlength="200";
            (select("department", &p.department, &departments))
            (select("sharing", &p.sharing, &sharing))
            (select("key_type", &p.key_type, &key_types))
            button type="submit" { (s.t("检索", "Search")) }
        }
        p { (answer.total) " " (s.t("个数据集", "datasets")) }
        table.catalog {
            thead { tr {
                th { (s.t("数据集", "Dataset")) } th { (s.t("名称", "Title")) } th { "English" }
                th { (s.t("提供部门", "Owner")) } th { (s.t("共享类型", "Sharing")) } th { (s.t("更新周期", "Updated")) }
            } }
            tbody { @for row in rows { tr {
                td { a href=(format!("/datasets/{}", row[0])) { (row[0]) } }
                @for cell in &row[1..] { td { (cell) } }
            } } }
        }
        (pager(&s, &base, page, hits.len(), PER_PAGE))
    };
    Ok(s.page(s.t("数据目录", "Catalog"), body))
}

fn sensitivity_label(s: &Session, v: &str) -> String {
    match v {
        "public" => s.t("公开", "public").into(),
        "internal" => s.t("内部", "internal").into(),
        "sensitive" => s.t("敏感", "sensitive").into(),
        "secret" => s.t("涉密（不出域）", "secret (never leaves)").into(),
        other => other.into(),
    }
}

pub async fn dataset(s: Session, Path((dept, local)): Path<(String, String)>) -> Reply {
    let id = format!("{dept}/{local}");
    let client = s.client();
    let d = client.dataset(&id).await.map_err(|e| s.client_error(&e))?;
    let online = client
        .members()
        .await
        .map_err(|e| s.client_error(&e))?
        .into_iter()
        .find(|m| m.id == d.department)
        .and_then(|m| m.node)
        .is_some_and(|n| n.online);
    let granted = if s.is_bureau() {
        false
    } else {
        client
            .grants()
            .await
            .map_err(|e| s.client_error(&e))?
            .iter()
            .any(|g| {
                g.dataset == id && g.consumer == s.member() && g.state() == pb::GrantState::Active
            })
    };
    let fields = d.fields.iter().map(|f| {
        vec![
            f.name.clone(),
            f.r#type.clone(),
            f.description.clone(),
            sensitivity_label(&s, &f.sensitivity),
            f.mask.clone(),
            f.key_type.clone(),
        ]
    });
    let body = html! {
        h1 { (d.title) " " small { (d.title_en) } }
        dl.facts {
            dt { (s.t("标识", "Id")) } dd { (d.id) }
            dt { (s.t("提供部门", "Owner")) } dd { (d.department_name) " (" (d.department) ")" }
            dt { (s.t("节点", "Node")) } dd { @if online { span.status.ok { (s.t("在线", "online")) } } @else { span.status.offline { (s.t("离线", "offline")) } } }
            dt { (s.t("共享类型", "Sharing class")) } dd { (sharing_label(&s, &d.sharing)) }
            dt { (s.t("依据", "Basis")) } dd { (d.basis) }
            dt { (s.t("更新周期", "Update cycle")) } dd { (d.update_cycle) }
            dt { (s.t("说明", "Description")) } dd { (d.description) }
        }
        h2 { (s.t("字段", "Fields")) }
        (table(&[s.t("字段", "Field"), s.t("类型", "Type"), s.t("说明", "Description"), s.t("敏感级别", "Sensitivity"), s.t("默认掩码", "Default mask"), s.t("标识类型", "Key type")], fields))
        @if granted {
            p { a.button href=(format!("/query/{id}")) { (s.t("查询此数据集", "Query this dataset")) } }
        }
        @if !s.is_bureau() { (request_form(&s, &d)) }
    };
    Ok(s.page(&d.title, body))
}

fn request_form(s: &Session, d: &pb::Dataset) -> Markup {
    html! {
        h2 { (s.t("申请使用", "Request access")) }
        form.request method="post" action=(format!("/datasets/{}/request", d.id)) {
            (s.csrf_field())
            fieldset {
                legend { (s.t("字段（不选即申请全部可用字段）", "Fields (none ticked: every field the policy allows)")) }
                @for f in d.fields.iter().filter(|f| f.sensitivity != "secret") {
                    label.check { input type="checkbox" name="fields" value=(f.name); " " (f.name) }
                }
            }
            label { (s.t("用途", "Purpose")) input name="purpose" required maxlength="200"; }
            label { (s.t("法律依据", "Legal basis")) input name="basis" maxlength="200"; }
            label { (s.t("期望截止日期", "Desired expiry")) input type="date" name="until"; }
            button type="submit" { (s.t("提交申请", "Submit request")) }
        }
    }
}

//! The console's pages, one module per area. Each handler takes the
//! [`crate::web::Session`], calls the coordinator's services through
//! `session.client()`, and renders the answer.

pub mod access;
pub mod audit;
pub mod catalog;
pub mod disputes;
pub mod home;
pub mod lookup;
pub mod members;
pub mod query;
pub mod report;

use axum::response::Response;
use maud::{html, Markup};

use crate::web::Session;

/// A page's answer: the page, or an error page.
pub type Reply = Result<Response, Response>;

/// A table of text cells under headings.
pub fn table(heads: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Markup {
    html! {
        table {
            thead { tr { @for h in heads { th { (h) } } } }
            tbody { @for row in rows { tr { @for cell in row { td { (cell) } } } } }
        }
    }
}

/// "Page N" links for a list shown `per_page` at a time.
pub fn pager(s: &Session, base: &str, page: usize, shown: usize, per_page: usize) -> Markup {
    let sep = if base.contains('?') { '&' } else { '?' };
    html! {
        p.pager {
            @if page > 1 { a href=(format!("{base}{sep}page={}", page - 1)) { (s.t("上一页", "Previous")) } " " }
            (s.t("第", "Page ")) (page) (s.t(" 页", ""))
            @if shown == per_page { " " a href=(format!("{base}{sep}page={}", page + 1)) { (s.t("下一页", "Next")) } }
        }
    }
}

/// Sharing classes in the page language.
pub fn sharing_label(s: &Session, sharing: &str) -> String {
    match sharing {
        "unconditional" => s.t("无条件共享", "unconditional").into(),
        "conditional" => s.t("有条件共享", "conditional").into(),
        "none" => s.t("不予共享", "not shared").into(),
        other => other.into(),
    }
}

/// Request and grant states in the page language.
pub fn state_label(s: &Session, state: &str) -> String {
    match state {
        "pending" => s.t("待审批", "pending").into(),
        "granted" => s.t("已批准", "granted").into(),
        "refused" => s.t("已拒绝", "refused").into(),
        "active" => s.t("有效", "active").into(),
        "revoked" => s.t("已撤销", "revoked").into(),
        "expired" => s.t("已过期", "expired").into(),
        "open" => s.t("待处理", "open").into(),
        "resolved" => s.t("已更正", "resolved").into(),
        "rejected" => s.t("维持原值", "rejected").into(),
        other => other.into(),
    }
}

/// Record batches as one table: the columns of the first batch, cells in
/// arrow's display form, nulls shown as "—". `max_rows` bounds a preview.
pub fn batches_table(batches: &[arrow_array::RecordBatch], max_rows: usize) -> Markup {
    let Some(first) = batches.first() else {
        return html! {};
    };
    let schema = first.schema();
    let mut rows: Vec<Vec<String>> = Vec::new();
    'outer: for batch in batches {
        let columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| exchange_client::values::cells(c.as_ref()))
            .collect();
        for i in 0..batch.num_rows() {
            if rows.len() >= max_rows {
                break 'outer;
            }
            rows.push(
                columns
                    .iter()
                    .map(|c| c.get(i).unwrap_or_else(|| "—".into()))
                    .collect(),
            );
        }
    }
    let heads: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    html! { div.scroll { (table(&heads, rows)) } }
}

//! The bureau operator's members page: nodes online or offline, adding a
//! member (its one-time token and the CA fingerprint are shown once),
//! issuing a client token, revoking a member.

use axum::extract::Path;
use axum::http::StatusCode;
use exchange_pki::Role;
use exchange_proto::v1 as pb;
use maud::{html, Markup};

use super::Reply;
use crate::web::{beijing, Form, Session};

fn members_table(s: &Session, members: &[exchange_proto::v1::Member]) -> Markup {
    html! {
        table {
            thead { tr {
                th { (s.t("成员", "Member")) } th { (s.t("名称", "Name")) } th { (s.t("状态", "State")) } th { (s.t("节点", "Node")) }
                th { (s.t("最后在线", "Last seen")) } th { (s.t("目录版本", "Catalog")) } th { (s.t("数据集", "Datasets")) } th { (s.t("证书数", "Certificates")) } th {}
            } }
            tbody { @for m in members { tr {
                td { (m.id) } td { (m.display_name) } td { (m.status) @if !m.revocation_reason.is_empty() { " — " (m.revocation_reason) } }
                @let node = m.node.clone().unwrap_or_default();
                td { @if node.online { span.status.ok { (s.t("在线", "online")) } } @else { span.status.offline { (s.t("离线", "offline")) } } }
                td { (beijing(node.last_seen_unix)) } td { (node.catalog_version) } td { (node.datasets) } td { (m.certificates) }
                td {
                    @if m.state() != pb::MemberState::Revoked {
                        form.inline method="post" action=(format!("/members/{}/token", m.id)) {
                            (s.csrf_field())
                            select name="role" { option value="client" { (s.t("用户证书令牌", "client token")) } option value="node" { (s.t("节点令牌", "node token")) } }
                            button type="submit" { (s.t("签发", "Issue")) }
                        }
                        form.inline method="post" action=(format!("/members/{}/revoke", m.id)) {
                            (s.csrf_field())
                            input name="reason" required maxlength="500" placeholder=(s.t("撤销理由（必填）", "reason (required)"));
                            input name="confirm" required maxlength="64" autocomplete="off" placeholder=(format!("{} {}", s.t("输入以确认：", "type to confirm:"), m.id));
                            button.danger type="submit" { (s.t("撤销成员（不可撤回）", "Revoke member (cannot be undone)")) }
                        }
                    }
                }
            } } }
        }
    }
}

async fn page_with(s: &Session, notice: Markup) -> Reply {
    let members = s.client().members().await.map_err(|e| s.client_error(&e))?;
    let body = html! {
        h1 { (s.t("成员", "Members")) }
        (notice)
        (members_table(s, &members))
        h2 { (s.t("添加成员", "Add a member")) }
        form.inline method="post" action="/members" {
            (s.csrf_field())
            input name="id" required maxlength="64" pattern="[a-z0-9-]+" placeholder=(s.t("标识，如 housing", "id, e.g. housing"));
            input name="display_name" required maxlength="200" placeholder=(s.t("名称，如 住房和城乡建设局", "display name"));
            button type="submit" { (s.t("添加", "Add")) }
        }
    };
    Ok(s.page(s.t("成员", "Members"), body))
}

pub async fn list(s: Session) -> Reply {
    page_with(&s, html! {}).await
}

/// The one-time token, shown once, with the command that uses it.
fn token_notice(s: &Session, member: &str, role: &str, token: &str, enroll: &str) -> Markup {
    let command = if role == "node" {
        format!(
            "exchange-node enroll --coordinator {enroll} --token {token} --ca-fingerprint {}",
            s.app.ca_fingerprint
        )
    } else {
        format!(
            "exchange enroll --coordinator {enroll} --token {token} --ca-fingerprint {}",
            s.app.ca_fingerprint
        )
    };
    html! {
        div.notice.once {
            p { strong { (s.t("一次性令牌，只显示这一次：请通过安全渠道交给该部门。", "One-time token, shown only this once: hand it to the department over a secure channel.")) } }
            dl.facts {
                dt { (s.t("成员", "Member")) } dd { (member) }
                dt { (s.t("角色", "Role")) } dd { (role) }
                dt { (s.t("令牌", "Token")) } dd { code #token { (token) } }
                dt { (s.t("CA 指纹", "CA fingerprint")) } dd { code { (s.app.ca_fingerprint) } }
            }
            pre { (command) }
        }
    }
}

pub async fn add(s: Session, form: Form) -> Reply {
    s.check_csrf(&form)?;
    let added = s
        .client()
        .add_member(form.get("id").trim(), form.get("display_name").trim(), 0)
        .await
        .map_err(|e| s.client_error(&e))?;
    let token = added.token.unwrap_or_default();
    let id = added.member.map(|m| m.id).unwrap_or_default();
    page_with(
        &s,
        token_notice(&s, &id, &token.role, &token.token, &added.enroll_address),
    )
    .await
}

pub async fn token(s: Session, Path(id): Path<String>, form: Form) -> Reply {
    s.check_csrf(&form)?;
    let role = match form.get("role") {
        "node" => Role::Node,
        "client" => Role::Client,
        _ => {
            return Err(s.error(
                StatusCode::BAD_REQUEST,
                s.t("角色只能是 node 或 client。", "the role is node or client"),
            ))
        }
    };
    let issued = s
        .client()
        .issue_token(&id, role, 0)
        .await
        .map_err(|e| s.client_error(&e))?;
    let token = issued.token.unwrap_or_default();
    page_with(
        &s,
        token_notice(&s, &id, &token.role, &token.token, &issued.enroll_address),
    )
    .await
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
    let revoked = s
        .client()
        .revoke_member(&id, form.get("reason"))
        .await
        .map_err(|e| s.client_error(&e))?;
    let notice = html! {
        div.notice { p { (id) ": " (s.t("已撤销，吊销证书", "revoked; certificates revoked")) " " (revoked.revoked_certificates) " · CRL " (revoked.crl_number) } }
    };
    page_with(&s, notice).await
}

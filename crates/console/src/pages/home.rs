//! The start page, the name a user signs with, the language switch, and
//! the pages for unknown addresses and wrong methods.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::Reply;
use crate::web::{Form, Session};

pub async fn home(s: Session) -> Reply {
    let cards: Vec<(&str, &str, &str)> = if s.is_bureau() {
        vec![
            (
                "/members",
                s.t("成员管理", "Members"),
                s.t(
                    "部门节点在线状态、添加成员、签发令牌、撤销",
                    "nodes online, add members, issue tokens, revoke",
                ),
            ),
            (
                "/audit",
                s.t("联邦审计", "Federation audit"),
                s.t(
                    "每一次查询的决定与结果",
                    "every query's decision and outcome",
                ),
            ),
            (
                "/subject",
                s.t("数据主体报告", "Data-subject report"),
                s.t(
                    "谁查看了某人或某企业的记录",
                    "who looked at a person's or company's records",
                ),
            ),
            (
                "/reconcile",
                s.t("对账", "Reconciliation"),
                s.t(
                    "比对节点与协调器的审计记录",
                    "compare a node's audit with the coordinator's",
                ),
            ),
            (
                "/report",
                s.t("绩效报告", "Performance report"),
                s.t(
                    "各部门共享了什么、多快、拒绝多少",
                    "who shared what, how fast, how often refused",
                ),
            ),
        ]
    } else {
        vec![
            (
                "/lookup",
                s.t("一窗查询", "One-window lookup"),
                s.t(
                    "按身份证号或统一社会信用代码跨部门查询",
                    "one person or company across every department",
                ),
            ),
            (
                "/catalog",
                s.t("数据目录", "Catalog"),
                s.t("检索数据集并申请使用", "find datasets and request access"),
            ),
            (
                "/requests",
                s.t("我的申请与授权", "My requests and grants"),
                s.t(
                    "申请状态、数据提供方的理由、可用授权",
                    "states, the owner's reasons, grants to query",
                ),
            ),
            (
                "/pending",
                s.t("待审批", "Pending requests"),
                s.t(
                    "对本部门数据的申请：批准、收窄或拒绝",
                    "requests for my department's data",
                ),
            ),
            (
                "/usage",
                s.t("数据使用", "Use of my data"),
                s.t("谁为何使用了本部门的数据", "who used my data, and why"),
            ),
            (
                "/disputes",
                s.t("异议", "Disputes"),
                s.t("对本部门数据提出的异议", "disputes about my data"),
            ),
        ]
    };
    let body = html! {
        h1 { (s.t("欢迎", "Welcome")) }
        div.cards {
            @for (href, title, text) in cards {
                a.card href=(href) { strong { (title) } span { (text) } }
            }
        }
    };
    Ok(s.page(s.t("首页", "Start"), body))
}

pub async fn signin_form(s: Session) -> Reply {
    let body = html! {
        h1 { (s.t("署名", "Your name")) }
        p { (s.t("证书表明了您的部门和角色。请填写您的姓名：它会与您的每一次查询、申请和审批一起记入审计，由您的部门担保。",
                 "Your certificate names your department and role. Give your name: it is recorded with every query, request and decision you make, vouched for by your department.")) }
        form method="post" action="/signin" {
            label { (s.t("姓名", "Name")) input name="user" required maxlength="100" value=(s.user); }
            button type="submit" { (s.t("确定", "Continue")) }
        }
    };
    Ok(s.page(s.t("署名", "Your name"), body))
}

/// Signs in: a new session for the name given (the one before it ends).
/// No CSRF token is asked (there is no session yet); the same-origin check
/// every POST passes keeps other sites from signing a browser in.
pub async fn signin(s: Session, form: Form) -> Reply {
    let user = exchange_policy::text::request_text(
        "user",
        form.get("user"),
        exchange_policy::text::TextRule::line(100),
    )
    .map_err(|e| s.error(StatusCode::BAD_REQUEST, &e.to_string()))?;
    if user.is_empty() {
        return Err(s.error(StatusCode::BAD_REQUEST, s.t("请填写姓名", "give your name")));
    }
    let Some(id) = s
        .app
        .sessions
        .start(&s.peer.serial, &user, s.session.as_deref())
    else {
        return Err(s.error(
            StatusCode::SERVICE_UNAVAILABLE,
            s.t(
                "无法建立会话，请稍后再试。",
                "no session could be started; try again",
            ),
        ));
    };
    tracing::info!(peer = %s.peer.identity, serial = %s.peer.serial, user = %exchange_policy::text::for_log(&user, 100), "console sign-in");
    let cookie = format!(
        "{}={id}; Path=/; Secure; HttpOnly; SameSite=Strict",
        crate::sessions::COOKIE
    );
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response())
}

/// Switches the language: allowed before sign-in too (it changes nothing
/// but the page's words), behind the same-origin check.
pub async fn set_lang(form: Form) -> Reply {
    let to = if form.get("to") == "en" { "en" } else { "zh" };
    let cookie = format!("lang={to}; Path=/; Secure; SameSite=Strict; Max-Age=31536000");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response())
}

pub async fn not_found(s: Session) -> Response {
    s.error(
        StatusCode::NOT_FOUND,
        s.t("没有这个页面。", "there is no such page"),
    )
}

pub async fn method_not_allowed(s: Session) -> Response {
    s.error(
        StatusCode::METHOD_NOT_ALLOWED,
        s.t(
            "此地址不接受这种请求：更改只能通过页面上的表单提交（POST）。",
            "this address does not accept that method: changes are made only by submitting the page's forms (POST)",
        ),
    )
}

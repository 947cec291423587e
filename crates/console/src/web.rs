//! What every page shares: the signed-in session, the language, CSRF
//! tokens, form fields, the page frame and error pages.

use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use exchange_pki::Role;
use exchange_transport::{ConnInfo, PeerInfo};
use maud::{html, Markup, DOCTYPE};

use crate::App;

/// The page language: Chinese first, English on request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    /// The `lang` cookie, else the browser's first preference, else Chinese.
    fn from_headers(headers: &HeaderMap) -> Lang {
        match cookie(headers, "lang").as_deref() {
            Some("en") => return Lang::En,
            Some("zh") => return Lang::Zh,
            _ => {}
        }
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.trim_start().starts_with("en") {
            Lang::En
        } else {
            Lang::Zh
        }
    }

    /// The text in this language.
    pub fn t<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }
}

/// One cookie's value, percent-decoded.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes every byte but unreserved ASCII (cookie values, query strings).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The signed-in person: the certificate's department and role, and the
/// name they gave (asserted, as on the command line, and vouched for by
/// the department).
pub struct Session {
    pub app: Arc<App>,
    pub conn: ConnInfo,
    pub peer: PeerInfo,
    pub user: String,
    /// The sign-in session's id; `None` before sign-in.
    pub session: Option<String>,
    pub lang: Lang,
}

impl FromRequestParts<Arc<App>> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Session, Response> {
        let lang = Lang::from_headers(&parts.headers);
        let conn = parts
            .extensions
            .get::<ConnectInfo<ConnInfo>>()
            .map(|c| c.0.clone())
            .ok_or_else(|| no_certificate(lang))?;
        let Some(peer) = conn.peer.clone() else {
            return Err(no_certificate(lang));
        };
        if let Err(status) = exchange_transport::server::check_certificate(&app.revocations, &peer)
        {
            tracing::warn!(peer = %peer.identity, serial = %peer.serial, "console request refused: {}", status.message());
            return Err(bare_page(
                lang,
                StatusCode::UNAUTHORIZED,
                lang.t("证书无效", "Certificate refused"),
                status.message(),
            ));
        }
        let session = cookie(&parts.headers, crate::sessions::COOKIE);
        let user = session
            .as_deref()
            .and_then(|id| app.sessions.user(id, &peer.serial));
        let session = session.filter(|_| user.is_some());
        let user = user.unwrap_or_default();
        let needs_name =
            session.is_none() && parts.uri.path() != "/signin" && parts.method == http::Method::GET;
        if needs_name {
            return Err(Redirect::to("/signin").into_response());
        }
        Ok(Session {
            app: app.clone(),
            conn,
            peer,
            user,
            session,
            lang,
        })
    }
}

impl Session {
    pub fn t<'a>(&self, zh: &'a str, en: &'a str) -> &'a str {
        self.lang.t(zh, en)
    }

    pub fn is_bureau(&self) -> bool {
        self.peer.identity.role == Role::Admin
    }

    pub fn member(&self) -> &str {
        &self.peer.identity.member_id
    }

    /// A client acting as this person, through the coordinator's own
    /// gRPC services and their checks.
    pub fn client(&self) -> exchange_client::Client {
        exchange_client::Client::in_process(
            self.app.act_as(self.conn.clone()),
            self.peer.identity.clone(),
        )
        .with_user(&self.user)
    }

    /// This session's CSRF token (empty before sign-in, when no form but
    /// the sign-in itself is accepted).
    pub fn csrf(&self) -> String {
        self.session
            .as_deref()
            .map(|id| self.app.sessions.csrf(id))
            .unwrap_or_default()
    }

    /// Refuses a form sent outside a signed-in session, or whose CSRF
    /// token is not this session's.
    pub fn check_csrf(&self, form: &Form) -> Result<(), Response> {
        let Some(id) = &self.session else {
            tracing::warn!(peer = %self.peer.identity, serial = %self.peer.serial, "console form refused: not signed in");
            return Err(self.error(
                StatusCode::FORBIDDEN,
                self.t(
                    "请先署名登录，再提交更改。",
                    "sign in with your name before making any change",
                ),
            ));
        };
        if self.app.sessions.csrf_matches(id, form.get("csrf")) {
            return Ok(());
        }
        tracing::warn!(peer = %self.peer.identity, serial = %self.peer.serial, "console form refused: missing or wrong CSRF token");
        Err(self.error(
            StatusCode::FORBIDDEN,
            self.t(
                "表单已失效或来自其他网站（CSRF 校验失败）：请返回页面刷新后重试。",
                "this form is stale or came from another site (CSRF check failed): go back, reload the page and try again",
            ),
        ))
    }

    /// Refuses an irreversible action unless the form repeats `id` in its
    /// `confirm` field.
    pub fn check_confirmed(&self, form: &Form, id: &str) -> Result<(), Response> {
        if form.get("confirm").trim() == id {
            return Ok(());
        }
        Err(self.error(
            StatusCode::BAD_REQUEST,
            self.t(
                "此操作不可撤回：请在确认框中输入对象的编号后再提交。",
                "this cannot be undone: type the id in the confirmation box, then submit",
            ),
        ))
    }

    /// The hidden CSRF field every state-changing form carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf()); }
    }

    /// A full page: header with who is signed in, navigation, body.
    pub fn page(&self, title: &str, body: Markup) -> Response {
        let html = frame(self.lang, title, Some(self), body);
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html.into_string(),
        )
            .into_response()
    }

    /// An error page naming what went wrong.
    pub fn error(&self, status: StatusCode, message: &str) -> Response {
        let body = html! {
            section.error {
                h1 { (self.t("无法完成", "Could not be done")) }
                p.message { (message) }
                p { a href="/" { (self.t("返回首页", "Back to the start page")) } }
            }
        };
        let mut response = self.page(self.t("出错了", "Error"), body);
        *response.status_mut() = status;
        response
    }

    /// The error page for a refusal or failure of a gRPC call.
    pub fn status_error(&self, status: &tonic::Status) -> Response {
        let code = match status.code() {
            tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            tonic::Code::PermissionDenied => {
                tracing::warn!(peer = %self.peer.identity, user = %exchange_policy::text::for_log(&self.user, 100), "console action refused: {}", exchange_policy::text::for_log(status.message(), 300));
                StatusCode::FORBIDDEN
            }
            tonic::Code::NotFound => StatusCode::NOT_FOUND,
            tonic::Code::InvalidArgument
            | tonic::Code::FailedPrecondition
            | tonic::Code::AlreadyExists
            | tonic::Code::OutOfRange => StatusCode::BAD_REQUEST,
            tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        self.error(code, &exchange_client::status_text(status))
    }

    /// The error page for a client error.
    pub fn client_error(&self, e: &exchange_client::ClientError) -> Response {
        match e {
            exchange_client::ClientError::Status(status) => self.status_error(status),
            other => self.error(StatusCode::BAD_REQUEST, &other.to_string()),
        }
    }

    /// Dates in Beijing time.
    pub fn time(&self, unix: i64) -> String {
        beijing(unix)
    }
}

/// A cell of a CSV download: hidden characters spelled out, and a cell a
/// spreadsheet would evaluate as a formula neutralised
/// ([`exchange_policy::text::spreadsheet_safe`]). Every CSV the console
/// serves is written through this.
pub fn csv_cell(text: &str) -> String {
    let shown = exchange_policy::text::visible(text);
    exchange_policy::text::spreadsheet_safe(&shown).into_owned()
}

/// `YYYY-MM-DD HH:MM` in Beijing time (UTC+8); empty for 0.
pub fn beijing(unix: i64) -> String {
    if unix <= 0 {
        return String::new();
    }
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(unix) else {
        return String::new();
    };
    let t = t.to_offset(time::macros::offset!(+8));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// A page for a browser that has no usable certificate: there is no
/// session, so no header and no data.
fn no_certificate(lang: Lang) -> Response {
    bare_page(
        lang,
        StatusCode::UNAUTHORIZED,
        lang.t("需要证书登录", "Sign in with your certificate"),
        lang.t(
            "浏览器没有出示联盟 CA 签发的证书。请用 `exchange cert export --p12 FILE` 导出证书，导入浏览器后重新打开本页（见 README「网页控制台」一节）。",
            "your browser presented no certificate issued by the federation CA. Export yours with `exchange cert export --p12 FILE`, import it into the browser and open this page again (README, section \"Web console\").",
        ),
    )
}

fn bare_page(lang: Lang, status: StatusCode, title: &str, message: &str) -> Response {
    let body = html! { section.error { h1 { (title) } p.message { (message) } } };
    let html = frame(lang, title, None, body);
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html.into_string(),
    )
        .into_response()
}

fn role_label(lang: Lang, role: Role) -> &'static str {
    match role {
        Role::Admin => lang.t("数据局运维", "bureau operator"),
        Role::Client => lang.t("部门用户", "department user"),
        Role::Node => lang.t("节点", "node"),
        Role::Coordinator => lang.t("协调器", "coordinator"),
    }
}

fn nav(s: &Session) -> Markup {
    let links: Vec<(&str, &str)> = if s.is_bureau() {
        vec![
            ("/members", s.t("成员", "Members")),
            ("/audit", s.t("审计", "Audit")),
            ("/subject", s.t("数据主体报告", "Data-subject report")),
            ("/reconcile", s.t("对账", "Reconcile")),
            ("/conflicts", s.t("冲突报告", "Conflicts")),
            ("/report", s.t("绩效报告", "Performance")),
        ]
    } else {
        vec![
            ("/lookup", s.t("一窗查询", "Look up")),
            ("/catalog", s.t("目录", "Catalog")),
            ("/requests", s.t("我的申请与授权", "My requests")),
            ("/pending", s.t("待审批", "Pending")),
            ("/usage", s.t("数据使用", "Use of my data")),
            ("/disputes", s.t("异议", "Disputes")),
            ("/conflicts", s.t("冲突报告", "Conflicts")),
            ("/report", s.t("绩效报告", "Performance")),
        ]
    };
    html! { nav { @for (href, label) in links { a href=(href) { (label) } } } }
}

fn frame(lang: Lang, title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (lang.t("政务数据交换", "Exchange")) }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { (lang.t("政务数据交换", "Exchange")) }
                    @if let Some(s) = session {
                        (nav(s))
                        div.who {
                            span.dept title=(s.t("部门", "Department")) { (s.member()) }
                            span.role { (role_label(lang, s.peer.identity.role)) }
                            span.user title=(s.t("用户", "User")) {
                                @if s.user.is_empty() { (s.t("（未署名）", "(no name)")) } @else { (s.user) }
                            }
                            form.inline method="post" action="/lang" {
                                (s.csrf_field())
                                input type="hidden" name="to" value=(if lang == Lang::Zh { "en" } else { "zh" });
                                button type="submit" { (if lang == Lang::Zh { "English" } else { "中文" }) }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// Form fields, repeated names kept (checkbox lists).
pub struct Form(pub Vec<(String, String)>);

impl Form {
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name && !k.is_empty())
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
            .collect()
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Form {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Form, Response> {
        let axum::Form(pairs) = axum::Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("the form could not be read: {e}"),
                )
                    .into_response()
            })?;
        Ok(Form(pairs))
    }
}

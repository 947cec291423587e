//! The web console: the exchange in a browser, signed in with a certificate.
//!
//! The coordinator serves it on its own HTTPS listener (`console_listen`),
//! which asks every browser for a client certificate issued by the
//! federation CA (users import theirs as PKCS#12, from
//! `exchange cert export --p12`). Identity comes from that certificate
//! only, checked for revocation and expiry on every request
//! ([`web::Session`]).
//!
//! The console is a thin layer: every page acts through the coordinator's
//! own gRPC services, called in process as the signed-in certificate
//! ([`exchange_coordinator::RunningCoordinator::local_routes`]), so the same
//! authorization, masking, quotas and audit apply as on the command line.
//! It holds no data and no permission logic of its own.
//!
//! Pages are rendered on the server with `maud` (compile-time checked,
//! escaped by default). The stylesheet and one small script are compiled
//! into the binary; nothing is fetched from the network. State changes are
//! POST only and carry a CSRF token; every answer carries a strict
//! Content-Security-Policy.
//!
//! Code map: [`web`] (session, language, forms, page frame), [`pages`]
//! (one module per area: lookup, catalog, access, query, audit, disputes,
//! members, report).

pub mod pages;
pub mod sessions;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use exchange_coordinator::RunningCoordinator;
use exchange_transport::limits::ListenerLimits;
use exchange_transport::{server, ConnInfo, LocalChannel, LocalRoutes, Revocations};

/// What every request handler shares.
pub struct App {
    routes: LocalRoutes,
    revocations: Revocations,
    sessions: sessions::Sessions,
    /// The federation CA's fingerprint, shown once when a member is added.
    pub ca_fingerprint: String,
}

impl App {
    fn act_as(&self, conn: ConnInfo) -> LocalChannel {
        LocalChannel::new(self.routes.clone(), conn)
    }
}

/// How long a browser may take to send a request's headers: a client that
/// trickles them (slowloris) is cut off.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Starts a coordinator, and its console when `console_listen` is set.
pub async fn start_coordinator(
    config: &exchange_coordinator::CoordinatorConfig,
) -> anyhow::Result<RunningCoordinator> {
    let mut coordinator = exchange_coordinator::start(config).await?;
    if let Some(listen) = &config.console_listen {
        serve(listen, &mut coordinator).await?;
    }
    Ok(coordinator)
}

/// Serves the console on `listen` for `coordinator`, until it shuts down,
/// and records the bound address in `coordinator.console_addr`.
pub async fn serve(
    listen: &str,
    coordinator: &mut RunningCoordinator,
) -> anyhow::Result<SocketAddr> {
    let tls = coordinator.state.tls.clone();
    let config = server::console_tls_config(&tls).context("console TLS settings")?;
    let tcp = server::bind(listen)
        .await
        .with_context(|| format!("console_listen {listen}"))?;
    let addr = tcp.local_addr()?;
    let incoming = server::incoming(tcp, config, ListenerLimits::CONSOLE);
    let app = Arc::new(App {
        routes: coordinator.local_routes(),
        revocations: coordinator.state.revocations.clone(),
        sessions: sessions::Sessions::new()?,
        ca_fingerprint: coordinator.ca_fingerprint.clone(),
    });
    let stopping = coordinator.stopping();
    let task = tokio::spawn(exchange_transport::serve::serve_http1(
        incoming,
        router(app),
        HEADER_TIMEOUT,
        stopping,
    ));
    coordinator.attach(task);
    coordinator.console_addr = Some(addr);
    tracing::info!(%addr, "console serving: https://{addr}/");
    Ok(addr)
}

/// Every page and action.
pub fn router(app: Arc<App>) -> Router {
    use pages::*;
    Router::new()
        .route("/", get(home::home))
        .route("/signin", get(home::signin_form).post(home::signin))
        .route("/lang", post(home::set_lang))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .route("/lookup", get(lookup::form).post(lookup::run))
        .route("/catalog", get(catalog::search))
        .route("/datasets/{dept}/{local}", get(catalog::dataset))
        .route("/datasets/{dept}/{local}/request", post(access::request))
        .route("/requests", get(access::mine))
        .route("/pending", get(access::pending))
        .route("/pending/{id}", get(access::pending_one))
        .route("/pending/{id}/approve", post(access::approve))
        .route("/pending/{id}/refuse", post(access::refuse))
        .route("/grants/{id}/revoke", post(access::revoke))
        .route(
            "/query/{dept}/{local}",
            get(query::form).post(query::preview),
        )
        .route("/query/{dept}/{local}/download", post(query::download))
        .route("/usage", get(audit::usage))
        .route("/usage.csv", get(audit::usage_csv))
        .route("/audit", get(audit::usage))
        .route("/audit.csv", get(audit::usage_csv))
        .route("/subject", get(audit::subject_form).post(audit::subject))
        .route("/reconcile", get(audit::reconcile))
        .route("/disputes", get(disputes::list))
        .route("/disputes/{id}/resolve", post(disputes::resolve))
        .route(
            "/conflicts",
            get(disputes::conflicts_page).post(disputes::conflicts),
        )
        .route("/members", get(members::list).post(members::add))
        .route("/members/{id}/token", post(members::token))
        .route("/members/{id}/revoke", post(members::revoke))
        .route("/report", get(report::report))
        .route("/report.csv", get(report::report_csv))
        .method_not_allowed_fallback(home::method_not_allowed)
        .fallback(home::not_found)
        .layer(axum::middleware::from_fn(same_origin_only))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app)
}

/// Refuses every request but GET and HEAD that a browser says came from
/// another site: `Sec-Fetch-Site` other than `same-origin` or `none`, or
/// else an `Origin` that is not this console's own. (A request with
/// neither is not a browser's cross-site request; the session's CSRF token
/// still guards it.)
async fn same_origin_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::Method;
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let cross_site = match (text("sec-fetch-site"), text("origin")) {
        (Some(site), _) => !matches!(site, "same-origin" | "none"),
        (None, Some(origin)) => {
            let host = text("host").unwrap_or_default();
            origin != format!("https://{host}")
        }
        (None, None) => false,
    };
    if !cross_site {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<ConnInfo>>()
        .and_then(|c| c.0.peer.clone());
    tracing::warn!(
        peer = ?peer.as_ref().map(|p| p.identity.to_string()),
        serial = ?peer.as_ref().map(|p| p.serial.clone()),
        origin = ?text("origin").map(|o| exchange_policy::text::for_log(o, 200)),
        path = %request.uri().path(),
        "console: a change sent from another site was refused"
    );
    (
        axum::http::StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "此请求来自其他网站，已拒绝。/ This request came from another site and was refused.",
    )
        .into_response()
}

/// Headers on every answer: no framing, no sniffing, no referrer, nothing
/// cached, and only this server's own script and style.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::CACHE_CONTROL, "no-store");
    set(
        headers,
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000",
    );
    response
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../assets/console.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../assets/console.js"),
    )
}

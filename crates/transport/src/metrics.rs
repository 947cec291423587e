//! The Prometheus endpoint: `GET /metrics` over plain HTTP on a listener
//! of its own (metrics carry counts and dataset names, never data; bind it
//! to an address only the monitoring system reaches). Its listener is
//! bounded like every other ([`ListenerLimits::METRICS`]).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::limits::ListenerLimits;

/// Serves `render()` at `/metrics` on `listen` until the task is aborted.
pub async fn serve_metrics(
    listen: &str,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("metrics_listen {listen}: {e}")))?;
    let addr = listener.local_addr()?;
    let listener = crate::limits::BoundedListener::new(listener, ListenerLimits::METRICS);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let render = render.clone();
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    render() + &crate::attribution::render_metrics(),
                )
            }
        }),
    );
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener failed");
        }
    });
    Ok((addr, task))
}

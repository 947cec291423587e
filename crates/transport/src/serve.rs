//! Serving gRPC over the handshaken connections of [`crate::server::incoming`]
//! with every HTTP/2 bound set here, not left to defaults.
//!
//! tonic's own server leaves the concurrent streams a peer may open
//! unbounded, buffers up to 400 KB per stream, and cannot close a stream
//! whose reader stopped reading. Each connection here runs hyper's HTTP/2
//! server directly under [`Http2Limits`]:
//! - at most `max_concurrent_streams` streams, advertised in SETTINGS;
//! - bytes buffered per response stream bounded (`max_send_buf_size`);
//! - control frames counted as they arrive ([`FrameGuard`]): a flood of
//!   PING, SETTINGS, WINDOW_UPDATE, RST_STREAM or PRIORITY frames closes
//!   the connection;
//! - a response stream whose reader took nothing for `stall_timeout`
//!   closes its connection, which frees every buffer it held;
//! - the caller's role is checked against the method before its body is
//!   read ([`RoleRule`]);
//! - every call has a deadline (the client's `grpc-timeout`, at most
//!   `request_timeout`) for its response to start.
//!
//! Each limit that bites is logged with the certificate it names
//! ([`crate::attribution::hit`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use exchange_pki::Role;
use hyper::body::{Body as HttpBody, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::body::Body;
use tonic::Status;
use tower::ServiceExt;

use crate::attribution::{hit, Limit};
use crate::local::LocalRoutes;
use crate::refusal::Refusal;
use crate::server::{ConnInfo, TlsConn};

/// The HTTP/2 bounds of one gRPC listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Limits {
    /// Streams one connection may have open at once (SETTINGS).
    pub max_concurrent_streams: u32,
    /// Bytes hyper buffers per response stream before it stops asking the
    /// body for more.
    pub max_send_buf_size: usize,
    /// Bytes of request headers, decoded.
    pub max_header_list_size: u32,
    /// Streams reset by the peer before the server saw them (the "rapid
    /// reset" attack) before the connection is closed.
    pub max_pending_accept_reset_streams: usize,
    /// Streams the server had to reset for protocol errors before the
    /// connection is closed.
    pub max_local_error_reset_streams: usize,
    /// Control frames a peer may send in one second.
    pub max_control_frames_per_second: u32,
    /// How long a response stream's reader may take nothing.
    pub stall_timeout: Duration,
    /// The longest a call may take to start its response.
    pub request_timeout: Duration,
    /// Keep-alive pings from the server, and how long their answer may take:
    /// a peer gone without closing is found.
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
}

impl Http2Limits {
    /// The coordinator's and the nodes' mutual-TLS listeners.
    pub const GRPC: Http2Limits = Http2Limits {
        max_concurrent_streams: 256,
        max_send_buf_size: 256 << 10,
        max_header_list_size: 16 << 10,
        max_pending_accept_reset_streams: 32,
        max_local_error_reset_streams: 256,
        max_control_frames_per_second: 5_000,
        stall_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(60),
        keep_alive_interval: Duration::from_secs(30),
        keep_alive_timeout: Duration::from_secs(20),
    };

    /// The enrolment listener: one short call per peer.
    pub const ENROLMENT: Http2Limits = Http2Limits {
        max_concurrent_streams: 8,
        request_timeout: Duration::from_secs(30),
        ..Http2Limits::GRPC
    };
}

/// Which roles may call the methods under a path prefix: checked on the
/// request's headers, before its body is read. The first rule whose prefix
/// starts the path decides; paths no rule names are left to their handlers
/// (which check roles again in any case).
pub type RoleRule = (&'static str, &'static [Role]);

/// Serves `routes` on every connection `incoming` yields, under `limits`,
/// until `shutdown` completes; then lets open calls finish for up to 5 s.
pub async fn serve_grpc(
    incoming: ReceiverStream<std::io::Result<TlsConn>>,
    routes: LocalRoutes,
    limits: Http2Limits,
    roles: &'static [RoleRule],
    shutdown: impl Future<Output = ()> + Send,
) {
    accept_until(incoming, shutdown, move |conn, stop| {
        serve_connection(conn, routes.clone(), limits, roles, stop)
    })
    .await
}

/// Hands every connection `incoming` yields to `serve_one`, on a task of
/// its own, until `shutdown` completes; then tells them to stop (the watch
/// turns true) and waits up to 5 s for them to finish.
async fn accept_until<F, Fut>(
    mut incoming: ReceiverStream<std::io::Result<TlsConn>>,
    shutdown: impl Future<Output = ()> + Send,
    serve_one: F,
) where
    F: Fn(TlsConn, tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            next = incoming.next() => match next {
                Some(Ok(conn)) => {
                    connections.spawn(serve_one(conn, stop_rx.clone()));
                }
                Some(Err(_)) => continue,
                None => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(incoming);
    let _ = stop_tx.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drained)
        .await
        .is_err()
    {
        connections.abort_all();
    }
}

/// One connection: hyper's HTTP/2 server under `limits`, watched for
/// stalled readers, shut down gracefully when `stop` turns true.
async fn serve_connection(
    conn: TlsConn,
    routes: LocalRoutes,
    limits: Http2Limits,
    roles: &'static [RoleRule],
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let info = conn.info().clone();
    let stalls = Arc::new(StallWatch::default());
    let io = FrameGuard::new(conn, limits.max_control_frames_per_second, info.clone());
    let service = {
        let info = info.clone();
        let stalls = stalls.clone();
        hyper::service::service_fn(move |request: http::Request<Incoming>| {
            call(
                request,
                info.clone(),
                routes.clone(),
                limits,
                roles,
                stalls.clone(),
            )
        })
    };
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_send_buf_size(limits.max_send_buf_size)
        .max_header_list_size(limits.max_header_list_size)
        .max_pending_accept_reset_streams(limits.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(limits.max_local_error_reset_streams)
        .keep_alive_interval(limits.keep_alive_interval)
        .keep_alive_timeout(limits.keep_alive_timeout);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut watchdog = tokio::time::interval(Duration::from_secs(1));
    let mut stopping = false;
    loop {
        tokio::select! {
            result = &mut connection => {
                if let Err(e) = result {
                    tracing::debug!(remote = %info.remote_addr, error = %e, "connection ended");
                }
                return;
            }
            _ = stop.wait_for(|v| *v), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = watchdog.tick() => {
                if stalls.stalled(limits.stall_timeout) {
                    hit(
                        Limit::StalledReader,
                        info.peer.as_ref(),
                        info.remote_addr,
                        limits.stall_timeout.as_secs() as usize,
                    );
                    return;
                }
            }
        }
    }
}

/// Serves the web console's `router` over HTTP/1.1 on every connection
/// `incoming` yields, until `shutdown`. A request's headers must arrive
/// whole within `header_timeout` (a client that sends them a byte at a
/// time is cut off, and logged); each request sees its connection's
/// [`ConnInfo`] as `axum::extract::ConnectInfo`.
pub async fn serve_http1(
    incoming: ReceiverStream<std::io::Result<TlsConn>>,
    router: axum::Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send,
) {
    accept_until(incoming, shutdown, move |conn, stop| {
        serve_http1_connection(conn, router.clone(), header_timeout, stop)
    })
    .await
}

async fn serve_http1_connection(
    conn: TlsConn,
    router: axum::Router,
    header_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let info = conn.info().clone();
    let service = {
        let info = info.clone();
        hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(info.clone()));
            router.clone().oneshot(request)
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(64 << 10);
    let connection = builder.serve_connection(TokioIo::new(conn), service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = &mut connection => {
                if let Err(e) = result {
                    if e.is_timeout() {
                        hit(Limit::HeaderDeadline, info.peer.as_ref(), info.remote_addr, header_timeout.as_secs() as usize);
                    } else {
                        tracing::debug!(remote = %info.remote_addr, error = %e, "console connection ended");
                    }
                }
                return;
            }
            _ = stop.wait_for(|v| *v), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<WatchedBody>, Infallible>> + Send>>;

/// One call: the role gate, the caller's [`ConnInfo`] where handlers find
/// it, the deadline, and the response body watched for a stalled reader.
fn call(
    mut request: http::Request<Incoming>,
    info: ConnInfo,
    routes: LocalRoutes,
    limits: Http2Limits,
    roles: &'static [RoleRule],
    stalls: Arc<StallWatch>,
) -> ResponseFuture {
    if let Err(status) = check_role(request.uri().path(), &info, roles) {
        return Box::pin(async move { Ok(status_response(status, &stalls)) });
    }
    let deadline = grpc_timeout(request.headers())
        .map_or(limits.request_timeout, |t| t.min(limits.request_timeout));
    request.extensions_mut().insert(info);
    let answer = routes.oneshot(request.map(Body::new));
    Box::pin(async move {
        let response = match tokio::time::timeout(deadline, answer).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Ok(status_response(Status::internal(e.to_string()), &stalls)),
            Err(_) => {
                let status = Status::deadline_exceeded(format!(
                    "the call did not start its answer within {} s",
                    deadline.as_secs_f64()
                ));
                return Ok(status_response(status, &stalls));
            }
        };
        Ok(response.map(|body| WatchedBody::new(body, &stalls)))
    })
}

fn status_response(status: Status, stalls: &Arc<StallWatch>) -> http::Response<WatchedBody> {
    status
        .into_http::<Body>()
        .map(|body| WatchedBody::new(body, stalls))
}

/// The role gate: refuses a call whose certificate's role the first
/// matching rule does not name.
fn check_role(path: &str, info: &ConnInfo, roles: &[RoleRule]) -> Result<(), Status> {
    let Some((_, allowed)) = roles.iter().find(|(prefix, _)| path.starts_with(prefix)) else {
        return Ok(());
    };
    let Some(peer) = &info.peer else {
        return Ok(()); // the authentication layer refuses it
    };
    if allowed.contains(&peer.identity.role) {
        return Ok(());
    }
    hit(Limit::RoleBeforeBody, Some(peer), info.remote_addr, 0);
    let wanted: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
    Err(Refusal::RoleNotAllowed.status(format!(
        "{} may not call {path}: it needs a {} certificate",
        peer.identity,
        wanted.join(" or ")
    )))
}

/// The `grpc-timeout` header (`<digits><unit>`, unit one of H M S m u n).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let text = headers.get("grpc-timeout")?.to_str().ok()?;
    if text.len() < 2 || text.len() > 9 {
        return None;
    }
    let (digits, unit) = text.split_at(text.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The response bodies of one connection, for the stall watchdog.
#[derive(Default)]
struct StallWatch {
    bodies: Mutex<Vec<Weak<AtomicU64>>>,
    epoch: std::sync::OnceLock<Instant>,
}

impl StallWatch {
    fn now_ms(&self) -> u64 {
        let epoch = self.epoch.get_or_init(Instant::now);
        epoch.elapsed().as_millis() as u64 + 1
    }

    fn register(&self) -> Arc<AtomicU64> {
        let mark = Arc::new(AtomicU64::new(0));
        let mut bodies = self.bodies.lock().unwrap_or_else(|p| p.into_inner());
        bodies.retain(|w| w.strong_count() > 0);
        bodies.push(Arc::downgrade(&mark));
        mark
    }

    /// Whether a body handed over a frame more than `timeout` ago and has
    /// not been asked for the next since: hyper asks only once the reader
    /// has opened its flow-control window again.
    fn stalled(&self, timeout: Duration) -> bool {
        let now = self.now_ms();
        let bodies = self.bodies.lock().unwrap_or_else(|p| p.into_inner());
        bodies.iter().filter_map(Weak::upgrade).any(|mark| {
            let since = mark.load(Ordering::Relaxed);
            since != 0 && now.saturating_sub(since) > timeout.as_millis() as u64
        })
    }
}

/// A response body that notes when it last handed a frame to hyper and
/// whether hyper has asked for the next one since.
pub struct WatchedBody {
    inner: Body,
    /// 0 while hyper waits on this body (or it is done); otherwise when,
    /// in the watch's milliseconds, it last handed over a frame.
    mark: Arc<AtomicU64>,
    watch: Arc<StallWatch>,
}

impl WatchedBody {
    /// Registered as handed over already: a reader that keeps its window
    /// shut from the start is never asked for a first frame, and is
    /// stalled as surely as one that stops later.
    fn new(inner: Body, watch: &Arc<StallWatch>) -> WatchedBody {
        let mark = watch.register();
        mark.store(watch.now_ms(), Ordering::Relaxed);
        WatchedBody {
            inner,
            mark,
            watch: watch.clone(),
        }
    }
}

impl HttpBody for WatchedBody {
    type Data = hyper::body::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.mark.store(0, Ordering::Relaxed);
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if frame.is_data() {
                let now = self.watch.now_ms();
                self.mark.store(now, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Reads the HTTP/2 frame headers going by (after the client's preface)
/// and fails the read once a second holds more control frames than
/// allowed, which closes the connection.
pub struct FrameGuard<S> {
    inner: S,
    info: ConnInfo,
    max_per_second: u32,
    preface_left: usize,
    header: [u8; 9],
    header_len: usize,
    payload_left: usize,
    second_started: Instant,
    in_second: u32,
}

/// The client connection preface, before the first frame.
const PREFACE_LEN: usize = 24;

impl<S> FrameGuard<S> {
    pub fn new(inner: S, max_per_second: u32, info: ConnInfo) -> FrameGuard<S> {
        FrameGuard {
            inner,
            info,
            max_per_second,
            preface_left: PREFACE_LEN,
            header: [0; 9],
            header_len: 0,
            payload_left: 0,
            second_started: Instant::now(),
            in_second: 0,
        }
    }

    /// Follows the frames in `bytes`; `false` once the peer floods.
    fn follow(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                bytes = &bytes[n..];
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
            } else {
                let n = (9 - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == 9 {
                    self.header_len = 0;
                    self.payload_left =
                        u32::from_be_bytes([0, self.header[0], self.header[1], self.header[2]])
                            as usize;
                    if is_control_frame(self.header[3]) && !self.count_control_frame() {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn count_control_frame(&mut self) -> bool {
        if self.second_started.elapsed() >= Duration::from_secs(1) {
            self.second_started = Instant::now();
            self.in_second = 0;
        }
        self.in_second += 1;
        self.in_second <= self.max_per_second
    }
}

/// PRIORITY, RST_STREAM, SETTINGS, PING, WINDOW_UPDATE.
fn is_control_frame(kind: u8) -> bool {
    matches!(kind, 0x2 | 0x3 | 0x4 | 0x6 | 0x8)
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            if !self.follow(&buf.filled()[before..]) {
                let limit = self.max_per_second as usize;
                hit(
                    Limit::ControlFrameFlood,
                    self.info.peer.as_ref(),
                    self.info.remote_addr,
                    limit,
                );
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the peer sent control frames faster than allowed",
                )));
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, len: u32) -> Vec<u8> {
        let l = len.to_be_bytes();
        let mut f = vec![l[1], l[2], l[3], kind, 0, 0, 0, 0, 1];
        f.extend(std::iter::repeat_n(0u8, len as usize));
        f
    }

    fn guard(max: u32) -> FrameGuard<()> {
        FrameGuard::new(
            (),
            max,
            ConnInfo {
                remote_addr: "127.0.0.1:1".parse().unwrap(),
                peer: None,
            },
        )
    }

    #[test]
    fn control_frames_are_counted_across_split_reads_and_data_is_not() {
        let mut g = guard(3);
        let mut bytes = vec![0u8; PREFACE_LEN];
        for _ in 0..50 {
            bytes.extend(frame(0x0, 100)); // DATA: never counted
        }
        for _ in 0..3 {
            bytes.extend(frame(0x8, 4)); // WINDOW_UPDATE
        }
        // Fed one byte at a time, as a slow reader of the socket would see it.
        for b in &bytes {
            assert!(g.follow(std::slice::from_ref(b)));
        }
        assert!(
            !g.follow(&frame(0x6, 8)),
            "a fourth control frame in a second is a flood"
        );
    }

    #[test]
    fn grpc_timeouts_parse_and_bad_ones_are_ignored() {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(grpc_timeout(&h), Some(Duration::from_millis(250)));
        h.insert("grpc-timeout", "3S".parse().unwrap());
        assert_eq!(grpc_timeout(&h), Some(Duration::from_secs(3)));
        h.insert("grpc-timeout", "3x".parse().unwrap());
        assert_eq!(grpc_timeout(&h), None);
    }

    #[test]
    fn a_body_handed_over_and_not_asked_again_is_stalled() {
        let watch = StallWatch::default();
        let mark = watch.register();
        assert!(!watch.stalled(Duration::ZERO));
        mark.store(watch.now_ms(), Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(5));
        assert!(watch.stalled(Duration::from_millis(1)));
        assert!(!watch.stalled(Duration::from_secs(30)));
        mark.store(0, Ordering::Relaxed);
        assert!(!watch.stalled(Duration::ZERO));
    }
}

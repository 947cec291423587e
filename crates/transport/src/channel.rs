//! A gRPC channel straight onto one HTTP/2 connection.
//!
//! tonic's own `Channel` puts a buffer task in front of its connection: every
//! request is handed to that task, which hands it to the connection task and
//! passes the answer's future back. [`Channel`] gives the request to the
//! connection directly, which saves two task wake-ups per call on the query
//! path (client to coordinator, coordinator to node).
//!
//! What it keeps from tonic's channel:
//!
//! - one HTTP/2 connection per channel, shared by its clones, with the same
//!   keep-alive pings;
//! - a deadline for each call's answer (`request_timeout`) and for dialling
//!   (`connect_timeout`);
//! - redialling: a connection that closed is replaced on the next call, so a
//!   restarted server is reached again without building a new channel.
//!
//! And it adds failover: a channel may be given several addresses (the
//! replicas of a coordinator, `a:7400,b:7400`). It keeps to the one that
//! answered last; when that one cannot be dialled, the next is tried, in
//! turn, so a call after a replica died goes to another.
//!
//! Errors are `tonic::Status` values that name the address: `Unavailable` when
//! the server cannot be dialled or the connection closed, `DeadlineExceeded`
//! when no answer came in time.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::body::Body;
use tonic::Status;

use crate::client::{error_chain, ClientOptions};
use crate::coalesce::Coalescing;

/// How long a channel with several addresses waits for one to connect
/// before it tries the next.
const FAILOVER_CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

/// HTTP/2 keep-alive: a ping after this much silence...
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// ...and the connection is dropped if its answer takes longer than this.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A cheap-to-clone handle on one mutual-TLS HTTP/2 connection, usable with
/// every tonic-generated client (`FlightServiceClient::new(channel)`).
#[derive(Clone)]
pub struct Channel {
    inner: Arc<Dialer>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("addr", &self.inner.endpoint().addr)
            .finish_non_exhaustive()
    }
}

/// One address a channel may dial.
pub(crate) struct Endpoint {
    /// `host:port`, as given.
    pub(crate) addr: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    authority: Authority,
    server_name: ServerName<'static>,
}

impl Endpoint {
    /// `host:port` (already checked by the caller).
    pub(crate) fn new(addr: &str, host: String, port: u16) -> Result<Endpoint, String> {
        let authority: Authority = addr
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        let server_name =
            ServerName::try_from(host.clone()).map_err(|e| format!("bad server name: {e}"))?;
        Ok(Endpoint {
            addr: addr.to_string(),
            host,
            port,
            authority,
            server_name,
        })
    }
}

struct Dialer {
    /// Where to dial, in the order given; at least one.
    endpoints: Vec<Endpoint>,
    /// The endpoint that answered last, tried first.
    active: AtomicUsize,
    tls: TlsConnector,
    options: ClientOptions,
    /// The live connection, if any.
    current: Mutex<Option<SendRequest<Body>>>,
    /// Held while dialling, so that concurrent calls share one new connection.
    dialling: tokio::sync::Mutex<()>,
}

impl Channel {
    /// A channel to `endpoints` (at least one) that dials on first use.
    pub(crate) fn lazy(
        endpoints: Vec<Endpoint>,
        config: Arc<rustls::ClientConfig>,
        options: ClientOptions,
    ) -> Result<Channel, String> {
        if endpoints.is_empty() {
            return Err("no address to dial".into());
        }
        Ok(Channel {
            inner: Arc::new(Dialer {
                endpoints,
                active: AtomicUsize::new(0),
                tls: TlsConnector::from(config),
                options,
                current: Mutex::new(None),
                dialling: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Dials now, so that a wrong address or certificate shows at once;
    /// the error is the reason, without the address.
    pub(crate) async fn connect_now(&self) -> Result<(), String> {
        self.inner.sender().await.map(drop)
    }

    /// Drops the connection in use: the next call dials again, starting
    /// with the address that answered last and moving on if it does not.
    /// For a caller that saw the connection break under a call.
    pub fn reconnect(&self) {
        self.inner.forget();
    }

    /// The address this channel dials now (of several: the one that
    /// answered last).
    pub fn addr(&self) -> &str {
        &self.inner.endpoint().addr
    }
}

impl Dialer {
    fn endpoint(&self) -> &Endpoint {
        &self.endpoints[self.active.load(Ordering::Relaxed) % self.endpoints.len()]
    }

    /// The live connection, forgetting one that has closed.
    fn live(&self) -> Option<SendRequest<Body>> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match current.as_ref() {
            Some(sender) if !sender.is_closed() => Some(sender.clone()),
            Some(_) => {
                *current = None;
                None
            }
            None => None,
        }
    }

    fn forget(&self) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The live connection, or a new one; the error is why dialling failed.
    async fn sender(&self) -> Result<SendRequest<Body>, String> {
        if let Some(sender) = self.live() {
            return Ok(sender);
        }
        let _dialling = self.dialling.lock().await;
        if let Some(sender) = self.live() {
            return Ok(sender);
        }
        let sender = self.dial().await?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender.clone());
        Ok(sender)
    }

    /// Dials as [`Self::dial_round`] does, and once or twice more when the
    /// connection failed before it was ever used (refused, reset or closed
    /// during the handshake): safe, since nothing was sent. Behind a load
    /// balancer, a connection handed to a replica that just died fails so,
    /// and the next one reaches a live replica.
    async fn dial(&self) -> Result<SendRequest<Body>, String> {
        let mut pause = Duration::from_millis(50);
        for _ in 1..DIAL_ATTEMPTS {
            match self.dial_round().await {
                Err(reason) if failed_before_use(&reason) => {
                    tracing::debug!(%reason, "connection failed during its handshake; dialling again");
                    tokio::time::sleep(pause).await;
                    pause *= 3;
                }
                other => return other,
            }
        }
        self.dial_round().await
    }

    /// Dials the endpoint that answered last, then each other in turn.
    async fn dial_round(&self) -> Result<SendRequest<Body>, String> {
        let first = self.active.load(Ordering::Relaxed);
        // With somewhere else to go, a replica that does not answer (a
        // dead host drops packets rather than refusing) is given up on
        // sooner: failover stays under 2 s.
        let timeout = match self.endpoints.len() {
            1 => self.options.connect_timeout,
            _ => self.options.connect_timeout.min(FAILOVER_CONNECT_TIMEOUT),
        };
        let mut failures = Vec::new();
        for step in 0..self.endpoints.len() {
            let index = (first + step) % self.endpoints.len();
            let endpoint = &self.endpoints[index];
            match self.dial_one(endpoint, timeout).await {
                Ok(sender) => {
                    if step > 0 {
                        tracing::info!(addr = %endpoint.addr, "failed over to another address");
                    }
                    self.active.store(index, Ordering::Relaxed);
                    return Ok(sender);
                }
                Err(reason) if self.endpoints.len() == 1 => return Err(reason),
                Err(reason) => failures.push(format!("{}: {reason}", endpoint.addr)),
            }
        }
        Err(failures.join("; "))
    }

    async fn dial_one(
        &self,
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> Result<SendRequest<Body>, String> {
        let handshake = async {
            let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
            tcp.set_nodelay(true)?;
            let tls = self.tls.connect(endpoint.server_name.clone(), tcp).await?;
            let (sender, connection) =
                hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .keep_alive_interval(KEEP_ALIVE_INTERVAL)
                    .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
                    .handshake(TokioIo::new(Coalescing::new(tls)))
                    .await
                    .map_err(std::io::Error::other)?;
            let addr = endpoint.addr.clone();
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(%addr, error = %e, "connection closed");
                }
            });
            Ok::<_, std::io::Error>(sender)
        };
        match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(sender)) => Ok(sender),
            Ok(Err(e)) => Err(error_chain(&e)),
            Err(_) => Err(format!("no answer within {} s", timeout.as_secs_f64())),
        }
    }

    fn unreachable(&self, reason: String) -> Status {
        if self.endpoints.len() == 1 {
            return Status::unavailable(format!(
                "cannot connect to {}: {reason}",
                self.endpoint().addr
            ));
        }
        Status::unavailable(format!("cannot connect to any of the addresses ({reason})"))
    }

    fn closed(&self, error: &hyper::Error) -> Status {
        self.forget();
        Status::unavailable(format!(
            "the connection to {} closed: {}",
            self.endpoint().addr,
            error_chain(error)
        ))
    }

    async fn send(
        &self,
        request: http::Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, Status> {
        let mut sender = self.sender().await.map_err(|r| self.unreachable(r))?;
        if sender.ready().await.is_err() {
            // The connection closed since it was last used: dial once more.
            self.forget();
            sender = self.sender().await.map_err(|r| self.unreachable(r))?;
            if let Err(e) = sender.ready().await {
                return Err(self.closed(&e));
            }
        }
        match sender.send_request(request).await {
            Ok(response) => Ok(response),
            Err(e) if e.is_closed() || e.is_canceled() => Err(self.closed(&e)),
            Err(e) => Err(Status::from_error(Box::new(e))),
        }
    }
}

/// Dials of one connection at most, when the first fail before use.
const DIAL_ATTEMPTS: usize = 3;

/// Whether a dial failed in a way that a second dial may not: the peer
/// refused, reset or closed the connection before or during the TLS or
/// HTTP/2 handshake. A certificate that does not verify, or a name that
/// does not resolve, fails the same way again and is not retried.
fn failed_before_use(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    !reason.contains("certificate")
        && [
            "eof",
            "reset",
            "refused",
            "broken pipe",
            "closed",
            "aborted",
        ]
        .iter()
        .any(|word| reason.contains(word))
}

impl tower::Service<http::Request<Body>> for Channel {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = Status;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call waits for the connection's readiness itself.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let dialer = self.inner.clone();
        Box::pin(async move {
            // tonic's clients give only the path; HTTP/2 needs the origin too.
            let (mut head, body) = request.into_parts();
            let mut uri = http::uri::Parts::from(head.uri);
            uri.scheme = Some(Scheme::HTTP);
            uri.authority = Some(dialer.endpoint().authority.clone());
            head.uri = http::Uri::from_parts(uri)
                .map_err(|e| Status::internal(format!("request address: {e}")))?;
            let request = http::Request::from_parts(head, body);
            let deadline = dialer.options.request_timeout;
            match tokio::time::timeout(deadline, dialer.send(request)).await {
                Ok(answer) => answer,
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "{} did not answer within {} s",
                    dialer.endpoint().addr,
                    deadline.as_secs_f64()
                ))),
            }
        })
    }
}

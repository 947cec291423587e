//! What one listener lets its peers hold: connections in all, connections
//! per address and per certificate, and how long a connection may stay
//! silent; and the one place where a limit that bites is counted and logged
//! with whom it names ([`hit`]).
//!
//! An attacker with no certificate can still open TCP connections, finish
//! the TLS handshake on the enrolment listener and then say nothing. Each
//! such connection holds a file descriptor; enough of them once exhausted
//! the coordinator's. Here every accepted connection takes a slot from a
//! global and a per-address budget before its handshake starts (over
//! budget, it is closed at once), gives it back when it closes, and is
//! closed when its peer sends nothing for the listener's idle time.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::attribution::{hit, Limit};
use tokio::time::{Instant, Sleep};

/// The bounds of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections open at once, handshakes included.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_per_address: usize,
    /// How long the peer may send nothing (its first bytes included)
    /// before the connection is closed. Clients redial a closed connection
    /// on their next call; a call in progress keeps its connection alive
    /// through HTTP/2 keep-alive pings (every 30 s from our clients).
    pub idle_timeout: Duration,
    /// Connections open at once on one client certificate (by serial),
    /// counted once its handshake has named it.
    pub max_per_certificate: usize,
    /// Of `max_connections`, how many analysts' (`client`) certificates
    /// can never take: the bureau's own and the nodes' certificates keep
    /// them, so no analyst can fill the listener.
    pub federation_reserve: usize,
    /// Connections open at once without a client certificate, where the
    /// listener allows that (the console's "how to import your
    /// certificate" page): a slow client with no certificate cannot hold
    /// the slots of those who have one.
    pub max_without_certificate: usize,
}

impl ListenerLimits {
    /// The mutual-TLS listeners of the coordinator and the nodes: every
    /// peer holds a federation certificate.
    pub const MUTUAL_TLS: ListenerLimits = ListenerLimits {
        max_connections: 4096,
        max_per_address: 1024,
        idle_timeout: Duration::from_secs(120),
        max_per_certificate: 64,
        federation_reserve: 512,
        max_without_certificate: 0,
    };
    /// The Prometheus endpoint: plain HTTP, scraped by one monitoring
    /// system now and then.
    pub const METRICS: ListenerLimits = ListenerLimits {
        max_connections: 64,
        max_per_address: 16,
        idle_timeout: Duration::from_secs(30),
        max_per_certificate: 0,
        federation_reserve: 0,
        max_without_certificate: 64,
    };
    /// The web console: browsers open a handful of keep-alive connections
    /// each; the handshake may come without a certificate, so the budget is
    /// smaller than the mutual-TLS listeners'.
    pub const CONSOLE: ListenerLimits = ListenerLimits {
        max_connections: 1024,
        max_per_address: 64,
        idle_timeout: Duration::from_secs(60),
        max_per_certificate: 32,
        federation_reserve: 128,
        max_without_certificate: 256,
    };
    /// The enrolment listener, which anyone can reach without a
    /// certificate: an enrolment is one short call.
    pub const ENROLMENT: ListenerLimits = ListenerLimits {
        max_connections: 256,
        max_per_address: 16,
        idle_timeout: Duration::from_secs(10),
        max_per_certificate: 0,
        federation_reserve: 0,
        max_without_certificate: 256,
    };

    /// These limits, with the global one kept under half of the process's
    /// file descriptor limit so that the listener alone cannot exhaust it.
    pub fn within_descriptor_limit(self) -> ListenerLimits {
        let Some(soft) = open_files_limit() else {
            return self;
        };
        let cap = (soft / 2).max(16);
        ListenerLimits {
            max_connections: self.max_connections.min(cap),
            max_per_address: self.max_per_address.min(cap),
            max_per_certificate: self.max_per_certificate.min(cap),
            federation_reserve: self.federation_reserve.min(cap / 4),
            max_without_certificate: self.max_without_certificate.min(cap),
            ..self
        }
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux).
fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Connection counts of one listener.
#[derive(Debug)]
pub struct Budget {
    limits: ListenerLimits,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ListenerFull,
    AddressFull,
}

impl Budget {
    pub fn new(limits: ListenerLimits) -> Arc<Budget> {
        Arc::new(Budget {
            limits,
            counts: Mutex::new(Counts::default()),
        })
    }

    pub fn limits(&self) -> ListenerLimits {
        self.limits
    }

    /// Takes a slot for a connection from `ip`, or says why there is none.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.total >= self.limits.max_connections {
            return Err(Refusal::ListenerFull);
        }
        let from_ip = counts.by_address.entry(ip).or_insert(0);
        if *from_ip >= self.limits.max_per_address {
            return Err(Refusal::AddressFull);
        }
        *from_ip += 1;
        counts.total += 1;
        Ok(Slot {
            budget: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

/// One connection's place in its listener's budget, given back on drop.
#[derive(Debug)]
pub struct Slot {
    budget: Arc<Budget>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.budget.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total -= 1;
        if let Some(n) = counts.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.by_address.remove(&self.ip);
            }
        }
    }
}

/// Connection counts by certificate, taken once a handshake has named the
/// peer: at most `max_per_certificate` per serial, at most
/// `max_connections - federation_reserve` held by analysts' certificates in
/// all, and at most `max_without_certificate` without one.
#[derive(Debug)]
pub struct PeerBudget {
    limits: ListenerLimits,
    counts: Mutex<PeerCounts>,
}

#[derive(Debug, Default)]
struct PeerCounts {
    by_serial: HashMap<String, usize>,
    analysts: usize,
    anonymous: usize,
}

/// One handshaken connection's place in its [`PeerBudget`].
#[derive(Debug)]
pub struct PeerSlot {
    budget: Arc<PeerBudget>,
    serial: Option<String>,
    analyst: bool,
}

impl PeerBudget {
    pub fn new(limits: ListenerLimits) -> Arc<PeerBudget> {
        Arc::new(PeerBudget {
            limits,
            counts: Mutex::new(PeerCounts::default()),
        })
    }

    /// Takes a slot for a connection whose certificate is `peer` (`None`:
    /// no certificate), or says which limit is full and its bound.
    pub fn admit(
        self: &Arc<Self>,
        peer: Option<&crate::server::PeerInfo>,
    ) -> Result<PeerSlot, (crate::attribution::Limit, usize)> {
        use crate::attribution::Limit;
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let Some(peer) = peer else {
            if counts.anonymous >= self.limits.max_without_certificate {
                return Err((
                    Limit::AnonymousConnections,
                    self.limits.max_without_certificate,
                ));
            }
            counts.anonymous += 1;
            return Ok(PeerSlot {
                budget: self.clone(),
                serial: None,
                analyst: false,
            });
        };
        let analyst = peer.identity.role == exchange_pki::Role::Client;
        let analysts_cap = self
            .limits
            .max_connections
            .saturating_sub(self.limits.federation_reserve);
        if analyst && counts.analysts >= analysts_cap {
            return Err((Limit::FederationReserve, analysts_cap));
        }
        let held = counts.by_serial.get(&peer.serial).copied().unwrap_or(0);
        if held >= self.limits.max_per_certificate {
            return Err((
                Limit::CertificateConnections,
                self.limits.max_per_certificate,
            ));
        }
        counts.by_serial.insert(peer.serial.clone(), held + 1);
        if analyst {
            counts.analysts += 1;
        }
        Ok(PeerSlot {
            budget: self.clone(),
            serial: Some(peer.serial.clone()),
            analyst,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.budget.counts.lock().unwrap_or_else(|p| p.into_inner());
        let Some(serial) = &self.serial else {
            counts.anonymous = counts.anonymous.saturating_sub(1);
            return;
        };
        if self.analyst {
            counts.analysts = counts.analysts.saturating_sub(1);
        }
        if let Some(n) = counts.by_serial.get_mut(serial) {
            *n -= 1;
            if *n == 0 {
                counts.by_serial.remove(serial);
            }
        }
    }
}

/// A listener that admits connections only within its budget: the accept
/// path of every listener (the TLS ones through
/// [`crate::server::incoming`], and the metrics endpoint, for which it is an
/// `axum::serve::Listener`).
pub struct BoundedListener {
    listener: TcpListener,
    budget: Arc<Budget>,
    local: Option<SocketAddr>,
    backoff: AcceptBackoff,
}

impl BoundedListener {
    pub fn new(listener: TcpListener, limits: ListenerLimits) -> BoundedListener {
        BoundedListener {
            local: listener.local_addr().ok(),
            listener,
            budget: Budget::new(limits.within_descriptor_limit()),
            backoff: AcceptBackoff::default(),
        }
    }

    /// The next connection within the budget (TCP_NODELAY set), holding its
    /// slot and closed when its peer falls silent. Connections over the
    /// budget are closed at once; failed accepts back off.
    pub async fn admit(&mut self) -> (IdleTimeout<TcpStream>, SocketAddr) {
        loop {
            let (tcp, remote) = match self.listener.accept().await {
                Ok(pair) => pair,
                Err(e) => {
                    self.backoff.failed(self.local, &e).await;
                    continue;
                }
            };
            self.backoff.succeeded(self.local);
            match self.budget.admit(remote.ip()) {
                Ok(slot) => {
                    let _ = tcp.set_nodelay(true);
                    let idle = self.budget.limits().idle_timeout;
                    return (IdleTimeout::new(tcp, idle, Some(slot)), remote);
                }
                Err(Refusal::ListenerFull) => hit(
                    Limit::ListenerConnections,
                    None,
                    remote,
                    self.budget.limits().max_connections,
                ),
                Err(Refusal::AddressFull) => hit(
                    Limit::AddressConnections,
                    None,
                    remote,
                    self.budget.limits().max_per_address,
                ),
            }
        }
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = IdleTimeout<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.admit().await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// Failed accepts (most often: no file descriptor left) back off from
/// 10 ms to 1 s, and are logged once when they start and once when they
/// end, not once per attempt.
#[derive(Default)]
struct AcceptBackoff {
    failures: u64,
}

impl AcceptBackoff {
    async fn failed(&mut self, local: Option<SocketAddr>, e: &std::io::Error) {
        if self.failures == 0 {
            tracing::warn!(listener = ?local, error = %e, "accepting connections failed; backing off until it works again");
        }
        self.failures += 1;
        let wait = Duration::from_millis(10u64 << self.failures.min(7)).min(Duration::from_secs(1));
        tokio::time::sleep(wait).await;
    }

    fn succeeded(&mut self, local: Option<SocketAddr>) {
        if self.failures > 0 {
            tracing::warn!(listener = ?local, failed_attempts = self.failures, "accepting connections works again");
            self.failures = 0;
        }
    }
}

/// A stream that fails its reads with `TimedOut` once the peer has sent
/// nothing for `idle`, so the server closes it; it also holds the
/// connection's place in its listener's budget until it is dropped. Each read only notes the
/// time; the timer is polled (registered with the task) once when it is
/// armed, and looked at again only when it fires, not on every read.
pub struct IdleTimeout<S> {
    inner: S,
    idle: Duration,
    last_read: Instant,
    timer: Pin<Box<Sleep>>,
    /// The task the timer will wake (the handshake's, then hyper's).
    armed_for: Option<std::task::Waker>,
    _slot: Option<Slot>,
}

impl<S> IdleTimeout<S> {
    pub fn new(inner: S, idle: Duration, slot: Option<Slot>) -> IdleTimeout<S> {
        let now = Instant::now();
        IdleTimeout {
            inner,
            idle,
            last_read: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
            armed_for: None,
            _slot: slot,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Whether the peer has been silent too long; re-arms the timer if not.
    /// An armed timer that has not fired is left alone while the same task
    /// reads: it wakes that task when it fires.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let same_task = self
            .armed_for
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if same_task && !self.timer.is_elapsed() {
            return false;
        }
        if !same_task {
            self.armed_for = Some(cx.waker().clone());
        }
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let deadline = self.last_read + self.idle;
            if Instant::now() >= deadline {
                return true;
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.last_read = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the peer sent nothing for {} s", self.idle.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
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

/// Bounds the bytes a request body may carry, by gRPC method: the first
/// rule whose prefix starts the request's path (e.g.
/// `/exchange.v1.Catalog/Publish`, or `/exchange.v1.Catalog/` for a whole
/// service) sets the bound; other methods keep only tonic's own decoding
/// limit (4 MiB, or what their service sets) and pay nothing here. A body
/// over its bound fails while it is read, so no handler sees it and no
/// peer can make the server buffer more than the bound (a 64 MiB search
/// once grew the coordinator by 190 MB). Install it with `Server::layer`.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimitLayer {
    pub rules: &'static [(&'static str, usize)],
}

impl<S> tower::Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;
    fn layer(&self, inner: S) -> BodyLimit<S> {
        BodyLimit {
            inner,
            limits: *self,
        }
    }
}

/// The service [`BodyLimitLayer`] makes.
#[derive(Debug, Clone)]
pub struct BodyLimit<S> {
    inner: S,
    limits: BodyLimitLayer,
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for BodyLimit<S>
where
    S: tower::Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let path = request.uri().path();
        let limit = self
            .limits
            .rules
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix))
            .map(|(_, limit)| *limit);
        match limit {
            Some(limit) => self.inner.call(
                request
                    .map(|body| tonic::body::Body::new(http_body_util::Limited::new(body, limit))),
            ),
            None => self.inner.call(request),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn slots_are_bounded_globally_and_per_address_and_given_back() {
        let budget = Budget::new(ListenerLimits {
            max_connections: 3,
            max_per_address: 2,
            idle_timeout: Duration::from_secs(1),
            ..ListenerLimits::MUTUAL_TLS
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = budget.admit(a).unwrap();
        let _second = budget.admit(a).unwrap();
        assert_eq!(budget.admit(a).unwrap_err(), Refusal::AddressFull);
        let _third = budget.admit(b).unwrap();
        assert_eq!(budget.admit(b).unwrap_err(), Refusal::ListenerFull);
        drop(first);
        assert_eq!(budget.open(), 2);
        budget.admit(a).unwrap();
    }

    #[test]
    fn the_global_limit_stays_under_half_the_descriptors() {
        let limits = ListenerLimits {
            max_connections: usize::MAX,
            max_per_address: usize::MAX,
            idle_timeout: Duration::from_secs(1),
            ..ListenerLimits::MUTUAL_TLS
        }
        .within_descriptor_limit();
        let soft = open_files_limit().expect("Linux reports its limits");
        assert!(limits.max_connections <= soft / 2, "{limits:?} with {soft}");
    }

    #[tokio::test]
    async fn a_bounded_listener_closes_what_it_cannot_hold() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut listener = BoundedListener::new(
            tcp,
            ListenerLimits {
                max_connections: 2,
                max_per_address: 2,
                idle_timeout: Duration::from_secs(30),
                ..ListenerLimits::MUTUAL_TLS
            },
        );
        let holding = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                held.push(listener.admit().await);
            }
        });
        let mut open = Vec::new();
        for _ in 0..2 {
            open.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut third = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "the third connection was held: {closed:?}"
        );
        let held = tokio::time::timeout(Duration::from_millis(200), open[0].read(&mut buf)).await;
        assert!(held.is_err(), "an admitted connection was closed: {held:?}");
        holding.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_cut_off_and_a_talking_one_is_not() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = IdleTimeout::new(server, Duration::from_secs(10), None);
        let mut client = client;
        let mut buf = [0u8; 8];
        // The peer talks every 6 s: more than 10 s in all, never 10 s silent.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            client.write_all(b"x").await.unwrap();
            assert_eq!(server.read(&mut buf).await.unwrap(), 1);
        }
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }
}

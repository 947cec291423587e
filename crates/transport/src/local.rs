//! gRPC calls inside one process, as a given certificate holder.
//!
//! The web console acts for the person whose certificate signed in. It
//! calls the coordinator's own gRPC services — the very router the
//! mutual-TLS listener serves, with the same authentication layer — through
//! a [`LocalChannel`] that carries the browser connection's [`ConnInfo`]
//! where the TLS listener would have put it. So a page can never do more
//! than the same certificate could over the network: there is one path to
//! the data, and one set of permission checks.
//!
//! [`AnyChannel`] lets a client hold either a network [`Channel`] or a
//! local one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::Status;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

use crate::{Channel, ConnInfo};

/// The error type of a boxed gRPC router.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A server's gRPC routes with their layers, callable in process.
pub type LocalRoutes = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, BoxError>;

/// Boxes a router (for example tonic's `Routes` under the authentication
/// layer) for [`LocalChannel`].
pub fn local_routes<S, B>(service: S) -> LocalRoutes
where
    S: Service<http::Request<Body>, Response = http::Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = hyper::body::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    BoxCloneSyncService::new(
        service
            .map_response(|response: http::Response<B>| response.map(Body::new))
            .map_err(Into::into),
    )
}

/// Calls `routes` as the peer described by `conn`.
#[derive(Clone)]
pub struct LocalChannel {
    routes: LocalRoutes,
    conn: ConnInfo,
}

impl std::fmt::Debug for LocalChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalChannel")
            .field("peer", &self.conn.peer)
            .finish_non_exhaustive()
    }
}

impl LocalChannel {
    pub fn new(routes: LocalRoutes, conn: ConnInfo) -> LocalChannel {
        LocalChannel { routes, conn }
    }
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, Status>> + Send + 'static>>;

impl Service<http::Request<Body>> for LocalChannel {
    type Response = http::Response<Body>;
    type Error = Status;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // What the TLS listener attaches to every request it accepts.
        request.extensions_mut().insert(self.conn.clone());
        let routes = self.routes.clone();
        Box::pin(async move {
            routes
                .oneshot(request)
                .await
                .map_err(|e| Status::internal(format!("in-process call failed: {e}")))
        })
    }
}

/// A network or an in-process channel, usable with every tonic client.
#[derive(Debug, Clone)]
pub enum AnyChannel {
    Network(Channel),
    Local(LocalChannel),
}

impl AnyChannel {
    /// Drops the network connection, so the next call dials afresh (the
    /// next address, when the one in use no longer answers). In process
    /// there is nothing to drop.
    pub fn reconnect(&self) {
        if let AnyChannel::Network(channel) = self {
            channel.reconnect();
        }
    }
}

impl Service<http::Request<Body>> for AnyChannel {
    type Response = http::Response<Body>;
    type Error = Status;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self {
            AnyChannel::Network(channel) => {
                let answer = channel.call(request);
                Box::pin(async move { Ok(answer.await?.map(Body::new)) })
            }
            AnyChannel::Local(local) => local.call(request),
        }
    }
}

//! The one place where a limit that bites is counted and logged, naming
//! whom it stopped: the certificate's identity and serial when the peer
//! showed one, and its address.
//!
//! A flood hits a limit thousands of times a second, so each (limit,
//! certificate or address) pair is logged at most once per
//! [`LOG_INTERVAL`], with the count since its last line; the counts are
//! also in Prometheus ([`render_metrics`], appended to every `/metrics`).
//! The operator guide says how to revoke the certificate a line names.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::server::PeerInfo;

/// How often one limit is logged for one peer at most.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Peers remembered between log lines; past this the oldest are dropped
/// (their next hit is logged at once), so a spread of addresses cannot
/// grow the table without end.
const REMEMBERED: usize = 4096;

/// Every limit the listeners enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// The listener holds its maximum of connections.
    ListenerConnections,
    /// One address holds its maximum of connections.
    AddressConnections,
    /// One certificate holds its maximum of connections.
    CertificateConnections,
    /// Analysts' certificates hold all the connections they may; the rest
    /// is kept for the bureau's and the nodes' certificates.
    FederationReserve,
    /// Connections without a certificate hold all they may.
    AnonymousConnections,
    /// Control frames (PING, SETTINGS, WINDOW_UPDATE, RST_STREAM,
    /// PRIORITY) arrived faster than any client sends them.
    ControlFrameFlood,
    /// A response stream's reader took nothing for the stall timeout.
    StalledReader,
    /// A method was called with a certificate whose role may not call it;
    /// refused before its body was read.
    RoleBeforeBody,
    /// A request's headers did not arrive within the header deadline.
    HeaderDeadline,
}

impl Limit {
    pub const ALL: [Limit; 9] = [
        Limit::ListenerConnections,
        Limit::AddressConnections,
        Limit::CertificateConnections,
        Limit::FederationReserve,
        Limit::AnonymousConnections,
        Limit::ControlFrameFlood,
        Limit::StalledReader,
        Limit::RoleBeforeBody,
        Limit::HeaderDeadline,
    ];

    /// The name in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::ListenerConnections => "listener_connections",
            Limit::AddressConnections => "address_connections",
            Limit::CertificateConnections => "certificate_connections",
            Limit::FederationReserve => "federation_reserve",
            Limit::AnonymousConnections => "anonymous_connections",
            Limit::ControlFrameFlood => "control_frame_flood",
            Limit::StalledReader => "stalled_reader",
            Limit::RoleBeforeBody => "role_before_body",
            Limit::HeaderDeadline => "header_deadline",
        }
    }

    fn index(self) -> usize {
        Limit::ALL
            .iter()
            .position(|l| *l == self)
            .unwrap_or_default()
    }

    fn what(self) -> &'static str {
        match self {
            Limit::ListenerConnections => "connection closed at once: the listener holds its maximum of connections",
            Limit::AddressConnections => "connection closed at once: that address holds its maximum of connections",
            Limit::CertificateConnections => "connection closed after its handshake: that certificate holds its maximum of connections",
            Limit::FederationReserve => "connection closed after its handshake: analysts' certificates hold every connection they may; the rest is kept for the bureau and the nodes",
            Limit::AnonymousConnections => "connection closed after its handshake: connections without a certificate hold every slot they may",
            Limit::ControlFrameFlood => "connection closed: it sent HTTP/2 control frames faster than any client does",
            Limit::StalledReader => "connection closed: a response stream's reader took nothing for the stall timeout",
            Limit::RoleBeforeBody => "call refused before its body was read: the certificate's role may not call this method",
            Limit::HeaderDeadline => "connection closed: a request's headers did not arrive within the header deadline",
        }
    }
}

static HITS: [AtomicU64; 9] = [const { AtomicU64::new(0) }; 9];

struct Pending {
    count: u64,
    last_logged: Instant,
}

static PENDING: Mutex<Option<HashMap<(Limit, String), Pending>>> = Mutex::new(None);

/// Counts one hit of `limit` by `peer` (when it showed a certificate) from
/// `remote`, and logs it unless this pair was logged within
/// [`LOG_INTERVAL`]; the line then carries the hits since.
pub fn hit(limit: Limit, peer: Option<&PeerInfo>, remote: SocketAddr, bound: usize) {
    HITS[limit.index()].fetch_add(1, Ordering::Relaxed);
    let who = match peer {
        Some(p) => p.serial.clone(),
        None => remote.ip().to_string(),
    };
    let count = {
        let mut guard = PENDING.lock().unwrap_or_else(|p| p.into_inner());
        let table = guard.get_or_insert_with(HashMap::new);
        if table.len() >= REMEMBERED && !table.contains_key(&(limit, who.clone())) {
            let cutoff = Instant::now() - LOG_INTERVAL;
            table.retain(|_, p| p.last_logged > cutoff);
            if table.len() >= REMEMBERED {
                table.clear();
            }
        }
        match table.get_mut(&(limit, who.clone())) {
            Some(p) if p.last_logged.elapsed() < LOG_INTERVAL => {
                p.count += 1;
                return;
            }
            Some(p) => {
                let count = p.count + 1;
                p.count = 0;
                p.last_logged = Instant::now();
                count
            }
            None => {
                table.insert(
                    (limit, who),
                    Pending {
                        count: 0,
                        last_logged: Instant::now(),
                    },
                );
                1
            }
        }
    };
    match peer {
        Some(p) => tracing::warn!(
            limit = limit.as_str(),
            peer = %p.identity,
            serial = %p.serial,
            %remote,
            bound,
            hits = count,
            "{}", limit.what()
        ),
        None => tracing::warn!(
            limit = limit.as_str(),
            peer = "(no certificate yet)",
            %remote,
            bound,
            hits = count,
            "{}", limit.what()
        ),
    }
}

/// How often `limit` has bitten in this process.
pub fn hits(limit: Limit) -> u64 {
    HITS[limit.index()].load(Ordering::Relaxed)
}

/// The counts in Prometheus' text format.
pub fn render_metrics() -> String {
    let mut out = String::from(
        "# HELP exchange_limit_hits_total Times a listener limit turned a peer away or cut it off.\n\
         # TYPE exchange_limit_hits_total counter\n",
    );
    for limit in Limit::ALL {
        out.push_str(&format!(
            "exchange_limit_hits_total{{limit=\"{}\"}} {}\n",
            limit.as_str(),
            hits(limit)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_is_counted_and_rendered() {
        let remote: SocketAddr = "127.0.0.9:1".parse().unwrap();
        let before = hits(Limit::HeaderDeadline);
        for _ in 0..3 {
            hit(Limit::HeaderDeadline, None, remote, 1);
        }
        assert_eq!(hits(Limit::HeaderDeadline), before + 3);
        let text = render_metrics();
        for limit in Limit::ALL {
            assert!(text.contains(limit.as_str()), "{text}");
        }
    }
}

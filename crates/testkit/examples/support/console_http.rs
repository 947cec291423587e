//! The console's pages over HTTPS with a client certificate, on one
//! keep-alive connection, as a browser loads them: for the benchmarks.

use std::net::SocketAddr;

use exchange_pki::Role;
use exchange_transport::client::{https_client_config, ExpectedServer};
use exchange_transport::TlsIdentity;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

pub struct Pages {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    cookie: String,
    csrf: String,
}

impl Pages {
    /// Connects as `tls`'s holder, signed in with the name `user`.
    pub async fn connect(addr: SocketAddr, tls: &TlsIdentity, user: &str) -> anyhow::Result<Pages> {
        let config = https_client_config(tls, ExpectedServer::Role(Role::Coordinator))?;
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::from(addr.ip());
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut pages = Pages {
            sender,
            host: addr.to_string(),
            cookie: format!("exchange_user={user}"),
            csrf: String::new(),
        };
        let (_, signin) = pages.get("/signin").await?;
        let at = signin
            .find("name=\"csrf\" value=\"")
            .ok_or_else(|| anyhow::anyhow!("no CSRF field on the sign-in page"))?
            + 19;
        pages.csrf = signin[at..at + 64].to_string();
        Ok(pages)
    }

    async fn send(&mut self, request: http::Request<Full<Bytes>>) -> anyhow::Result<(u16, String)> {
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<(u16, String)> {
        let request = http::Request::get(path)
            .header("host", &self.host)
            .header("cookie", &self.cookie)
            .body(Full::new(Bytes::new()))?;
        self.send(request).await
    }

    /// Posts a form (already URL-encoded, without the CSRF token).
    pub async fn post(&mut self, path: &str, form: &str) -> anyhow::Result<(u16, String)> {
        let body = format!("csrf={}&{form}", self.csrf);
        let request = http::Request::post(path)
            .header("host", &self.host)
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))?;
        self.send(request).await
    }
}

/// Percent-encodes a form value or query text.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

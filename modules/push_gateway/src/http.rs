//! One HTTPS (or, for tests and local relays, plain HTTP) request over a fresh
//! connection: HTTP/1.1 for Google, HTTP/2 for Apple, which speaks nothing else.
//! Server certificates are checked against the system's roots.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Which HTTP a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.1 (FCM, Google's token endpoint).
    Http1,
    /// HTTP/2 (APNs; cleartext `http://` endpoints use prior knowledge).
    Http2,
}

/// A response: status and body.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

fn tls_config(version: Version) -> Arc<rustls::ClientConfig> {
    static CONFIGS: OnceLock<[Arc<rustls::ClientConfig>; 2]> = OnceLock::new();
    let configs = CONFIGS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let build = |alpn: &[u8]| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            Arc::new(config)
        };
        [build(b"http/1.1"), build(b"h2")]
    });
    configs[usize::from(version == Version::Http2)].clone()
}

/// Sends `request` (its URI absolute) and reads the whole answer within `timeout`.
pub async fn send(request: Request<Full<Bytes>>, version: Version, timeout: Duration) -> Result<Response, String> {
    tokio::time::timeout(timeout, send_now(request, version))
        .await
        .map_err(|_| format!("no answer within {} s", timeout.as_secs()))?
}

async fn send_now(request: Request<Full<Bytes>>, version: Version) -> Result<Response, String> {
    let uri = request.uri().clone();
    let host = uri.host().ok_or("the endpoint has no host")?.to_owned();
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("{uri}: only http and https endpoints")),
    };
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| format!("{host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if !https {
        return exchange(tcp, request, version).await;
    }
    let name = ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(tls_config(version))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}: {e}"))?;
    exchange(tls, request, version).await
}

async fn exchange<S>(io: S, request: Request<Full<Bytes>>, version: Version) -> Result<Response, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let response: hyper::Response<Incoming> = match version {
        Version::Http1 => {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            sender.send_request(request).await.map_err(|e| e.to_string())?
        }
        Version::Http2 => {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            sender.send_request(request).await.map_err(|e| e.to_string())?
        }
    };
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Response { status, body })
}

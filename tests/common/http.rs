//! A small HTTP/1.1 client for the HTTP listener's tests (hyper's connection API, one
//! connection per request), with a streaming body when the test needs one.

use std::net::SocketAddr;

use axum::body::Body;
use bytes::Bytes;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A response with its whole body.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The header's value as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request and returns the response head; the body is left to the caller.
pub async fn send(addr: SocketAddr, request: Request<Body>) -> hyper::Response<hyper::body::Incoming> {
    let tcp = TcpStream::connect(addr).await.expect("connect to the HTTP listener");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.expect("handshake");
    tokio::spawn(connection);
    sender.send_request(request).await.expect("HTTP response")
}

/// Sends one request and reads the whole body.
pub async fn request(addr: SocketAddr, request: Request<Body>) -> Reply {
    let response = send(addr, request).await;
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(Body::new(body), usize::MAX).await.expect("response body");
    Reply { status: parts.status, headers: parts.headers, body }
}

/// `GET path` with extra headers.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut builder = Request::get(path).header("host", "localhost");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    request(addr, builder.body(Body::empty()).expect("request")).await
}

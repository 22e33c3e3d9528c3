//! `/metrics`: the Prometheus text exposition of [`crate::metrics`], for loopback
//! clients or, when `[http] metrics_token` is set, for anyone presenting it as a bearer
//! token.

use axum::Router;
use axum::extract::Extension;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use starling_api::{Db, PoolState};
use subtle::ConstantTimeEq;

use super::HttpConnection;

pub(super) fn routes(token: String, db: Db) -> Router {
    Router::new().route(
        "/metrics",
        get(move |Extension(connection): Extension<HttpConnection>, headers: HeaderMap| {
            let allowed = allowed(&token, &connection, &headers);
            let pool = db.pool_state();
            async move { render(allowed, pool) }
        }),
    )
}

fn allowed(token: &str, connection: &HttpConnection, headers: &HeaderMap) -> bool {
    if token.is_empty() {
        return connection.peer.ip().is_loopback();
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
}

fn render(allowed: bool, pool: PoolState) -> Response {
    if !allowed {
        return StatusCode::FORBIDDEN.into_response();
    }
    // Gauges of a state rather than of events: read from the pool when scraped.
    crate::metrics::db_pool(pool);
    let body = crate::metrics::handle().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

//! The upload URLs: `PUT` streams a slot's file in, `GET`/`HEAD` stream it out (with
//! `Range`), `OPTIONS` answers CORS preflights. Every answer carries CORS headers so
//! web clients (Converse.js) can upload and read the status of failures.

use std::io::ErrorKind;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use starling_api::Context;
use starling_api::http::axum;

use crate::signing::{Signer, valid_id};
use crate::slots::{self, PENDING, STORED, UPLOAD_DEADLINE, UPLOADING};
use crate::store::StoreError;
use crate::{Service, now};

#[derive(Clone)]
struct Upload {
    ctx: Context,
    service: Arc<Service>,
}

pub(crate) fn routes(ctx: Context, service: Arc<Service>) -> Router {
    Router::new()
        .route("/upload/{id}/{mac}/{filename}", get(get_file).put(put_file).options(preflight))
        .layer(axum::middleware::map_response(cors))
        .with_state(Upload { ctx, service })
}

/// The path of a file's URL: `/upload/<id>/<mac>/<filename, percent-encoded>`.
pub fn file_path(signer: &Signer, id: &str, filename: &str) -> String {
    format!("/upload/{id}/{}/{}", signer.file_mac(id, filename), percent_encode(filename))
}

/// Percent-encodes all but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

async fn cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Content-Length, Content-Range"));
    response
}

/// CORS preflight for the PUT (Converse.js sends Content-Type, some clients
/// Authorization).
async fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, PUT, OPTIONS"),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, "Authorization, Content-Type"),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
    )
        .into_response()
}

fn status(code: StatusCode, text: &'static str) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// The slot a URL names, when its MAC is right.
async fn slot_of(upload: &Upload, id: &str, mac: &str, filename: &str) -> Result<slots::Slot, Response> {
    let not_found = || status(StatusCode::NOT_FOUND, "no such file\n");
    if !valid_id(id) || !Signer::matches(&upload.service.signer.file_mac(id, filename), mac) {
        return Err(not_found());
    }
    match slots::find(upload.ctx.db(), id.to_owned()).await {
        Ok(Some(slot)) if slot.filename == filename => Ok(slot),
        Ok(_) => Err(not_found()),
        Err(err) => {
            starling_api::tracing::warn!(error = %err, "upload slot lookup failed");
            Err(status(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable\n"))
        }
    }
}

#[derive(Deserialize)]
struct PutQuery {
    expires: i64,
    signature: String,
}

/// The media type without parameters, lower-cased.
fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

async fn put_file(
    State(upload): State<Upload>,
    Path((id, mac, filename)): Path<(String, String, String)>,
    query: Result<Query<PutQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(Query(query)) = query else { return status(StatusCode::FORBIDDEN, "not signed\n") };
    let slot = match slot_of(&upload, &id, &mac, &filename).await {
        Ok(slot) => slot,
        Err(response) => return response,
    };
    if slot.state != PENDING {
        return status(StatusCode::CONFLICT, "this slot was used already\n");
    }
    let signed = Signer::matches(&upload.service.signer.put_signature(&slot), &query.signature);
    if !signed || query.expires != slot.expires_at {
        return status(StatusCode::FORBIDDEN, "bad signature\n");
    }
    if slot.expires_at < now() {
        return status(StatusCode::FORBIDDEN, "this slot has expired\n");
    }
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).map(str::parse::<u64>);
    match length {
        None => return status(StatusCode::LENGTH_REQUIRED, "Content-Length is required\n"),
        Some(Ok(length)) if length == slot.size as u64 => {}
        Some(Ok(length)) if length > slot.size as u64 => {
            return status(StatusCode::PAYLOAD_TOO_LARGE, "larger than the slot\n");
        }
        Some(_) => return status(StatusCode::BAD_REQUEST, "Content-Length differs from the slot\n"),
    }
    if let Some(sent) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
        && essence(sent) != essence(&slot.content_type)
    {
        return status(StatusCode::BAD_REQUEST, "Content-Type differs from the slot\n");
    }
    let db = upload.ctx.db();
    let deadline = now() + UPLOAD_DEADLINE;
    match slots::transition(db, id.clone(), PENDING, UPLOADING, deadline).await {
        Ok(true) => {}
        Ok(false) => return status(StatusCode::CONFLICT, "this slot was used already\n"),
        Err(_) => return status(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable\n"),
    }
    let stream = body.into_data_stream().map_err(std::io::Error::other).boxed();
    let progress = |bytes: u64| metrics::counter!("starling_upload_bytes_total").increment(bytes);
    let stored = upload.service.store.store(&id, slot.size as u64, stream, &progress).await;
    let (next, expiry) = match &stored {
        Ok(()) => (STORED, slots::file_expiry(now(), upload.service.config.file_lifetime)),
        // The slot may be tried again until it expires.
        Err(_) => (PENDING, slot.expires_at),
    };
    if slots::transition(db, id.clone(), UPLOADING, next, expiry).await.is_err() {
        return status(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable\n");
    }
    match stored {
        Ok(()) => {
            starling_api::tracing::info!(%id, size = slot.size, user = %slot.username, "file uploaded");
            status(StatusCode::CREATED, "stored\n")
        }
        Err(StoreError::TooLarge(_)) => status(StatusCode::PAYLOAD_TOO_LARGE, "larger than the slot\n"),
        Err(StoreError::Truncated { .. }) => status(StatusCode::BAD_REQUEST, "body shorter than Content-Length\n"),
        // A full disk is the server's problem, not the client's (RFC 4918 §11.5); the
        // partial file is gone and the slot may be tried again.
        Err(StoreError::Io(err)) if matches!(err.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded) => {
            starling_api::tracing::error!(%id, error = %err, "upload failed: no space left for files");
            status(StatusCode::INSUFFICIENT_STORAGE, "no space left on the server\n")
        }
        Err(StoreError::Io(err)) => {
            starling_api::tracing::info!(%id, error = %err, "upload failed");
            status(StatusCode::BAD_REQUEST, "upload failed\n")
        }
    }
}

/// A single `Range: bytes=…` against a file of `size` bytes: `Ok(None)` for no
/// (usable) range, `Err` when unsatisfiable (RFC 9110 §14).
pub fn byte_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else { return Ok(None) };
    let Some(spec) = spec.trim().strip_prefix("bytes=") else { return Ok(None) };
    // Several ranges may be answered with the whole file.
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.split_once('-') else { return Ok(None) };
    let (start, end) = (start.trim(), end.trim());
    let range = match (start.parse::<u64>(), end.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
        (Ok(start), Err(_)) if end.is_empty() => (start, size.saturating_sub(1)),
        (Err(_), Ok(suffix)) if start.is_empty() && suffix > 0 => (size.saturating_sub(suffix), size.saturating_sub(1)),
        _ => return Ok(None),
    };
    if range.0 >= size { Err(()) } else { Ok(Some(range)) }
}

/// `inline` for media a browser shows safely, `attachment` for the rest (an HTML file
/// must not run on the server's origin).
pub fn disposition(content_type: &str, filename: &str) -> String {
    let kind = essence(content_type);
    let inline = ["image/", "audio/", "video/"].iter().any(|p| kind.starts_with(p)) && kind != "image/svg+xml";
    let how = if inline { "inline" } else { "attachment" };
    format!("{how}; filename*=UTF-8''{}", percent_encode(filename))
}

async fn get_file(
    State(upload): State<Upload>,
    Path((id, mac, filename)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let slot = match slot_of(&upload, &id, &mac, &filename).await {
        Ok(slot) if slot.state == STORED => slot,
        Ok(_) => return status(StatusCode::NOT_FOUND, "no such file\n"),
        Err(response) => return response,
    };
    let size = slot.size as u64;
    let (code, start, len, range) = match byte_range(&headers, size) {
        Ok(None) => (StatusCode::OK, 0, size, None),
        Ok(Some((start, end))) => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1, Some(format!("bytes {start}-{end}/{size}")))
        }
        Err(()) => {
            return (StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{size}"))])
                .into_response();
        }
    };
    let stream = match upload.service.store.read(&id, start, len).await {
        Ok(stream) => stream,
        Err(err) => {
            starling_api::tracing::warn!(%id, error = %err, "stored file unreadable");
            return status(StatusCode::NOT_FOUND, "no such file\n");
        }
    };
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    let mut set = |name: header::HeaderName, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set(header::CONTENT_TYPE, slot.content_type.clone());
    set(header::CONTENT_LENGTH, len.to_string());
    set(header::CONTENT_DISPOSITION, disposition(&slot.content_type, &slot.filename));
    set(header::ACCEPT_RANGES, "bytes".into());
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff".into());
    set(header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox".into());
    set(header::CACHE_CONTROL, "private, max-age=31536000, immutable".into());
    if let Some(range) = range {
        set(header::CONTENT_RANGE, range);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).expect("header"));
        byte_range(&headers, size)
    }

    #[test]
    fn ranges() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(range("bytes=100-", 100), Err(()));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(range("items=0-1", 100), Ok(None));
        assert_eq!(range("bytes=5-1", 100), Ok(None));
    }

    #[test]
    fn names_are_encoded_and_html_is_an_attachment() {
        assert_eq!(percent_encode("a b/ü.txt"), "a%20b%2F%C3%BC.txt");
        assert_eq!(disposition("image/png", "x.png"), "inline; filename*=UTF-8''x.png");
        assert_eq!(disposition("text/html", "x.html"), "attachment; filename*=UTF-8''x.html");
    }
}

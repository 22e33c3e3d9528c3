//! XEP-0156 §3: `/.well-known/host-meta` (XRD) and `/.well-known/host-meta.json`
//! (JRD) list the alternative connection methods, so web clients find the WebSocket
//! endpoint from the domain alone. Browsers fetch them cross-origin: both carry
//! `Access-Control-Allow-Origin: *`.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use starling_api::stanza::escape_attr;

/// A connection method listed in host-meta.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The link relation, e.g. `urn:xmpp:alt-connections:websocket`.
    pub rel: &'static str,
    /// Its URL.
    pub href: String,
}

/// The relation of an RFC 7395 WebSocket endpoint.
pub const REL_WEBSOCKET: &str = "urn:xmpp:alt-connections:websocket";
/// The relation of an XEP-0206 BOSH endpoint.
pub const REL_BOSH: &str = "urn:xmpp:alt-connections:xbosh";

pub(super) fn routes(endpoints: Vec<Endpoint>) -> Router {
    let xrd = xrd(&endpoints);
    let jrd = jrd(&endpoints);
    Router::new()
        .route(
            "/.well-known/host-meta",
            get(move || {
                let body = xrd.clone();
                async move { ([(header::CONTENT_TYPE, "application/xrd+xml"), cors()], body).into_response() }
            }),
        )
        .route(
            "/.well-known/host-meta.json",
            get(move || {
                let body = jrd.clone();
                async move { ([(header::CONTENT_TYPE, "application/json"), cors()], body).into_response() }
            }),
        )
}

fn cors() -> (header::HeaderName, &'static str) {
    (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
}

fn xrd(endpoints: &[Endpoint]) -> String {
    let mut out = String::from("<?xml version='1.0' encoding='utf-8'?>\n");
    out.push_str("<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n");
    for endpoint in endpoints {
        let mut href = Vec::new();
        escape_attr(&mut href, &endpoint.href);
        out.push_str(&format!("  <Link rel='{}' href='{}'/>\n", endpoint.rel, String::from_utf8_lossy(&href)));
    }
    out.push_str("</XRD>\n");
    out
}

fn jrd(endpoints: &[Endpoint]) -> String {
    let links: Vec<String> = endpoints
        .iter()
        .map(|e| format!("{{\"rel\":{},\"href\":{}}}", json_string(e.rel), json_string(&e.href)))
        .collect();
    format!("{{\"links\":[{}]}}", links.join(","))
}

/// A JSON string literal (URLs from the config: quotes, backslashes, controls escaped).
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_list_every_endpoint() {
        let endpoints = vec![Endpoint { rel: REL_WEBSOCKET, href: "wss://x.test/ws?a=1&b=\"2\"".into() }];
        let xrd = xrd(&endpoints);
        assert!(
            xrd.contains("rel='urn:xmpp:alt-connections:websocket' href='wss://x.test/ws?a=1&amp;b=&quot;2&quot;'"),
            "{xrd}"
        );
        assert_eq!(
            jrd(&endpoints),
            r#"{"links":[{"rel":"urn:xmpp:alt-connections:websocket","href":"wss://x.test/ws?a=1&b=\"2\""}]}"#
        );
    }
}

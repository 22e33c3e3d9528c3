//! The HTTP listener: XEP-0156 host-meta (with CORS) and `/metrics` (Prometheus text,
//! access control, counters that move).

mod common;

use common::http;
use common::{Conn, TestServer};

async fn server_with_http(token: &str) -> TestServer {
    let token = token.to_owned();
    TestServer::start_with(move |config| {
        config.http.listen = vec!["127.0.0.1:0".parse().expect("addr")];
        config.http.metrics_token = token;
    })
    .await
}

#[tokio::test]
async fn host_meta_is_served_with_cors_in_both_formats() {
    let server = server_with_http("").await;
    let addr = server.http_addr();
    let xrd = http::get(addr, "/.well-known/host-meta", &[]).await;
    assert_eq!(xrd.status, 200);
    assert_eq!(xrd.header("access-control-allow-origin"), "*");
    assert_eq!(xrd.header("content-type"), "application/xrd+xml");
    let doc: minidom::Element = xrd.text().parse().expect("host-meta is XML");
    assert!(doc.is("XRD", "http://docs.oasis-open.org/ns/xri/xrd-1.0"), "{}", xrd.text());

    let jrd = http::get(addr, "/.well-known/host-meta.json", &[]).await;
    assert_eq!(jrd.status, 200);
    assert_eq!(jrd.header("access-control-allow-origin"), "*");
    assert_eq!(jrd.header("content-type"), "application/json");
    assert!(jrd.text().starts_with("{\"links\":["), "{}", jrd.text());

    assert_eq!(http::get(addr, "/no-such-page", &[]).await.status, 404);
}

/// The value of the sample `name{labels}` in Prometheus text, checking every line's
/// syntax on the way (comments, or `name[{labels}] value`).
fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let mut found = 0.0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line:?}"));
        let metric = series.split('{').next().unwrap_or_default();
        assert!(
            !metric.is_empty() && metric.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line:?}"
        );
        if let Some(rest) = series.strip_prefix(metric)
            && !rest.is_empty()
        {
            assert!(rest.starts_with('{') && rest.ends_with('}'), "bad labels: {line:?}");
        }
        if series == format!("{name}{labels}") {
            found = value;
        }
    }
    found
}

#[tokio::test]
async fn metrics_parse_and_count_logins_and_stanzas() {
    let server = server_with_http("").await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let addr = server.http_addr();
    let before = http::get(addr, "/metrics", &[]).await;
    assert_eq!(before.status, 200);
    assert!(before.header("content-type").starts_with("text/plain"));
    let before = before.text();

    let mut alice = server.login("alice", "a").await;
    let mut bob = server.login("bob", "b").await;
    let mut intruder = Conn::tcp(server.addr()).await;
    intruder.open().await;
    intruder.starttls().await;
    assert!(intruder.auth("bob", "wrong").await.is_err());
    alice.send("<message to='bob@localhost/b' type='chat'><body>hi</body></message>").await;
    bob.recv_message().await;

    let after = http::get(addr, "/metrics", &[]).await.text();
    let moved = |name: &str, labels: &str| sample(&after, name, labels) - sample(&before, name, labels);
    // Other tests in this binary may log in at the same time: counters only grow.
    assert!(moved("starling_auth_total", "{result=\"success\"}") >= 2.0, "{after}");
    assert!(moved("starling_auth_total", "{result=\"failure\"}") >= 1.0, "{after}");
    assert!(moved("starling_stanzas_routed_total", "{kind=\"message\"}") >= 1.0, "{after}");
    assert!(moved("starling_stanzas_delivered_total", "{kind=\"message\"}") >= 1.0, "{after}");
    assert!(moved("starling_connections_opened_total", "{kind=\"c2s\"}") >= 3.0, "{after}");
    assert!(sample(&after, "starling_connections", "{kind=\"c2s\"}") >= 2.0, "{after}");

    // Logins read the accounts table: the query histogram counts them, in buckets.
    let backend =
        if std::env::var("STARLING_TEST_STORAGE").as_deref() == Ok("postgres") { "postgres" } else { "sqlite" };
    let count = format!("{{backend=\"{backend}\"}}");
    assert!(moved("starling_db_query_duration_seconds_count", &count) >= 2.0, "{after}");
    let inf = format!("{{backend=\"{backend}\",le=\"+Inf\"}}");
    assert_eq!(
        sample(&after, "starling_db_query_duration_seconds_bucket", &inf),
        sample(&after, "starling_db_query_duration_seconds_count", &count),
        "{after}"
    );
    assert!(sample(&after, "starling_db_query_duration_seconds_sum", &count) > 0.0, "{after}");
    // Read from the pool at scrape time: at least one connection is open.
    assert!(sample(&after, "starling_db_pool_max_connections", "") >= 1.0, "{after}");
    let open = sample(&after, "starling_db_pool_connections", "{state=\"idle\"}")
        + sample(&after, "starling_db_pool_connections", "{state=\"in_use\"}");
    assert!(open >= 1.0, "{after}");
}

#[tokio::test]
async fn metrics_with_a_token_need_it() {
    let server = server_with_http("s3cret").await;
    let addr = server.http_addr();
    assert_eq!(http::get(addr, "/metrics", &[]).await.status, 403);
    assert_eq!(http::get(addr, "/metrics", &[("authorization", "Bearer wrong")]).await.status, 403);
    assert_eq!(http::get(addr, "/metrics", &[("authorization", "Bearer s3cret")]).await.status, 200);
}

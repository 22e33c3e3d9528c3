//! End to end in a real browser: Converse.js in headless Chromium logs in over the
//! server's WebSocket endpoint and sends a message that a TCP client receives
//! (tests/web/converse.mjs drives the browser; tests/interop/install-browser.sh
//! installs Chromium and the npm packages). The screenshot lands in
//! target/artefacts/converse.png.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use common::TestServer;

const CHROMIUM: &str = "/usr/bin/chromium";

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web")
}

/// Whether the browser and the npm packages are installed; in CI their absence fails.
fn browser_available() -> bool {
    let dist = web_dir().join("node_modules/converse.js/dist/converse.min.js");
    let driver = web_dir().join("node_modules/playwright-core/package.json");
    let present = Path::new(CHROMIUM).exists() && dist.exists() && driver.exists();
    if !present {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Chromium or tests/web/node_modules missing: run tests/interop/install-browser.sh"
        );
        eprintln!("skipped: Chromium or tests/web/node_modules missing (tests/interop/install-browser.sh)");
    }
    present
}

/// The page loading Converse.js, logging in as `jid` over `websocket_url`; a plugin
/// hands its API to the driver script as `window.starlingTest`.
fn page(websocket_url: &str, jid: &str, password: &str) -> String {
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Starling and Converse.js</title>
<link rel="stylesheet" href="/dist/converse.min.css">
<script src="/dist/converse.min.js"></script></head>
<body><script>
converse.plugins.add('starling-test', {{
  initialize() {{ window.starlingTest = {{ api: this._converse.api }}; }}
}});
converse.initialize({{
  websocket_url: '{websocket_url}',
  jid: '{jid}',
  password: '{password}',
  auto_login: true,
  discover_connection_methods: false,
  view_mode: 'fullscreen',
  whitelisted_plugins: ['starling-test'],
  loglevel: 'info',
}});
</script></body></html>"#
    )
}

/// Serves the page and Converse.js's `dist` directory on a loopback port.
async fn serve_page(html: String) -> std::net::SocketAddr {
    let dist = web_dir().join("node_modules/converse.js/dist");
    let app = Router::new().route("/", get(move || async move { Html(html) })).route(
        "/dist/{*path}",
        get(move |UrlPath(path): UrlPath<String>| {
            let dist = dist.clone();
            async move {
                if path.split('/').any(|part| part == "..") {
                    return StatusCode::NOT_FOUND.into_response();
                }
                let kind = match path.rsplit('.').next() {
                    Some("js") => "text/javascript",
                    Some("css") => "text/css",
                    Some("json") => "application/json",
                    Some("svg") => "image/svg+xml",
                    _ => "application/octet-stream",
                };
                match tokio::fs::read(dist.join(&path)).await {
                    Ok(bytes) => ([(header::CONTENT_TYPE, kind)], bytes).into_response(),
                    Err(_) => StatusCode::NOT_FOUND.into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the page server");
    let addr = listener.local_addr().expect("page server address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn converse_in_chromium_sends_a_message_to_a_tcp_client() {
    if !browser_available() {
        return;
    }
    let server = TestServer::start_with(|config| {
        config.http.listen = vec!["127.0.0.1:0".parse().expect("addr")];
        // Plain ws:// on loopback stands for a TLS-terminating proxy.
        config.http.plain_is_behind_tls_proxy = true;
    })
    .await;
    server.add_user("alice", "converse-pw").await;
    server.add_user("bob", "pw").await;
    let mut bob = server.login("bob", "tcp").await;
    // Available, so that messages to the bare JID reach this session (not offline storage).
    bob.presence(0).await;
    bob.sync().await;

    let websocket_url = format!("ws://{}/xmpp-websocket", server.http_addr());
    let page_addr = serve_page(page(&websocket_url, "alice@localhost", "converse-pw")).await;
    let artefacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artefacts");
    std::fs::create_dir_all(&artefacts).expect("target/artefacts");
    let screenshot = artefacts.join("converse.png");
    let _ = std::fs::remove_file(&screenshot);

    let body = "Hello from Converse.js in Chromium";
    let driver = tokio::process::Command::new("node")
        .arg(web_dir().join("converse.mjs"))
        .arg(format!("http://{page_addr}/"))
        .arg("bob@localhost")
        .arg(body)
        .arg(&screenshot)
        .kill_on_drop(true)
        .output();
    // The driver returns once Converse shows the message as sent; it then waits at bob.
    let output = tokio::time::timeout(Duration::from_secs(120), driver)
        .await
        .expect("the browser run within two minutes")
        .expect("run node");
    assert!(
        output.status.success(),
        "converse.mjs failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let message = loop {
        let message = bob.recv_message().await;
        if message.get_child("body", "jabber:client").map(|b| b.text()).as_deref() == Some(body) {
            break message;
        }
    };
    assert!(message.attr("from").is_some_and(|f| f.starts_with("alice@localhost/")), "{}", String::from(&message));
    assert!(screenshot.exists(), "no screenshot at {}", screenshot.display());
}

//! XMPP over WebSocket (RFC 7395): SCRAM login over `ws://` (behind a TLS proxy) and
//! `wss://`, messages both ways with a TCP client, the subprotocol requirement, the
//! framing of stream errors and `<close/>`, and host-meta pointing at the endpoint.

mod common;

use common::websocket::{NS_FRAMING, WsConn};
use common::{TestServer, http};

async fn server() -> TestServer {
    let server = TestServer::start_with(|config| {
        config.http.listen = vec!["127.0.0.1:0".parse().expect("addr")];
        config.http.listen_tls = vec!["127.0.0.1:0".parse().expect("addr")];
        config.http.plain_is_behind_tls_proxy = true;
    })
    .await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    server
}

async fn exchange_with_tcp_client(server: &TestServer, mut ws: WsConn) {
    assert_eq!(ws.protocol.as_deref(), Some("xmpp"));
    let jid = ws.login("alice", "pw", "web").await;
    assert_eq!(jid, "alice@localhost/web");
    let mut bob = server.login("bob", "tcp").await;

    bob.send("<message to='alice@localhost/web' type='chat' id='m1'><body>hello web</body></message>").await;
    let message = ws.recv_message().await;
    assert_eq!(message.ns(), "jabber:client");
    assert_eq!(message.attr("from"), Some("bob@localhost/tcp"));
    assert_eq!(message.get_child("body", "jabber:client").map(|b| b.text()).as_deref(), Some("hello web"));

    ws.send(
        "<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat' id='m2'><body>hello tcp</body></message>",
    )
    .await;
    let message = bob.recv_message().await;
    assert_eq!(message.attr("from"), Some("alice@localhost/web"));
    assert_eq!(message.get_child("body", "jabber:client").map(|b| b.text()).as_deref(), Some("hello tcp"));

    // An IQ to the server over WebSocket is answered over WebSocket.
    ws.send("<iq xmlns='jabber:client' type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    let pong = ws.recv().await;
    assert_eq!((pong.name(), pong.attr("id"), pong.attr("type")), ("iq", Some("p1"), Some("result")));

    ws.close().await;
}

#[tokio::test]
async fn scram_login_over_websocket_and_messages_with_a_tcp_client() {
    let server = server().await;
    let ws = WsConn::connect(server.http_addr(), false).await;
    exchange_with_tcp_client(&server, ws).await;
}

#[tokio::test]
async fn scram_login_over_secure_websocket() {
    let server = server().await;
    let ws = WsConn::connect(server.https_addr(), true).await;
    exchange_with_tcp_client(&server, ws).await;
}

#[tokio::test]
async fn the_xmpp_subprotocol_is_required() {
    let server = server().await;
    assert!(WsConn::connect_offering(server.http_addr(), false, None).await.is_err());
    assert!(WsConn::connect_offering(server.http_addr(), false, Some("chat")).await.is_err());
}

#[tokio::test]
async fn stream_errors_are_framed_and_followed_by_close() {
    let server = server().await;
    let mut ws = WsConn::connect(server.http_addr(), false).await;
    ws.send(&format!("<open xmlns='{NS_FRAMING}' to='unknown.example' version='1.0'/>")).await;
    let open = ws.recv().await;
    assert!(open.is("open", NS_FRAMING), "{open:?}");
    let error = ws.recv().await;
    assert!(error.is("error", "http://etherx.jabber.org/streams"), "{error:?}");
    assert!(error.get_child("host-unknown", "urn:ietf:params:xml:ns:xmpp-streams").is_some(), "{error:?}");
    let close = ws.recv().await;
    assert!(close.is("close", NS_FRAMING), "{close:?}");
}

#[tokio::test]
async fn plain_websocket_without_tls_offers_no_authentication() {
    let server = TestServer::start_with(|config| {
        config.http.listen = vec!["127.0.0.1:0".parse().expect("addr")];
    })
    .await;
    let mut ws = WsConn::connect(server.http_addr(), false).await;
    let features = ws.open().await;
    assert!(features.get_child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl").is_none(), "{features:?}");
    assert!(features.get_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls").is_none(), "{features:?}");
}

#[tokio::test]
async fn host_meta_lists_the_websocket_endpoint() {
    let server = server().await;
    let jrd = http::get(server.http_addr(), "/.well-known/host-meta.json", &[]).await.text();
    let port = server.https_addr().port();
    let expected = format!(
        "{{\"rel\":\"urn:xmpp:alt-connections:websocket\",\"href\":\"wss://localhost:{port}/xmpp-websocket\"}}"
    );
    assert!(jrd.contains(&expected), "{jrd}");
    let xrd = http::get(server.http_addr(), "/.well-known/host-meta", &[]).await.text();
    assert!(xrd.contains(&format!("href='wss://localhost:{port}/xmpp-websocket'")), "{xrd}");
}

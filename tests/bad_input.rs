//! Hostile and broken input (RFC 6120 §4.9, §11): each case gets the right stream
//! error or is cut off, and the server keeps serving everyone else. XML bombs, huge and
//! deep stanzas, 100,000 attributes, invalid and overlong UTF-8, a slowloris sender, a
//! client that never reads, a resource-binding storm.

mod common;

use std::time::Duration;

use common::client::Event;
use common::{Conn, TestServer};

const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// Opens a stream, sends `payload`, returns the stream error condition.
async fn error_for(server: &TestServer, payload: &[u8]) -> Option<String> {
    let mut conn = Conn::tcp(server.addr()).await;
    conn.open().await;
    conn.try_send_bytes(payload).await;
    conn.stream_error().await
}

/// Logs in alice and checks that she can still talk to the server.
async fn server_still_serves(server: &TestServer) {
    let mut alice = server.login("alice", "still-here").await;
    alice.sync().await;
}

#[tokio::test]
async fn not_well_formed_xml() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    assert_eq!(error_for(&server, b"<message><body>x</message>").await.as_deref(), Some("not-well-formed"));
    assert_eq!(error_for(&server, b"<message a='1' a='2'/>").await.as_deref(), Some("not-well-formed"));
    assert_eq!(error_for(&server, b"<message>&undefined;</message>").await.as_deref(), Some("not-well-formed"));
    server_still_serves(&server).await;
}

#[tokio::test]
async fn restricted_xml_is_refused() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let mut conn = Conn::tcp(server.addr()).await;
    conn.send("<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY lol 'lol'>]><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>").await;
    assert_eq!(conn.stream_error().await.as_deref(), Some("restricted-xml"));
    assert_eq!(error_for(&server, b"<!-- a comment -->").await.as_deref(), Some("restricted-xml"));
    assert_eq!(error_for(&server, b"<?pi data?>").await.as_deref(), Some("restricted-xml"));
    server_still_serves(&server).await;
}

#[tokio::test]
async fn oversized_stanza_is_a_policy_violation() {
    let server = TestServer::start_with(|c| c.limits.max_stanza_bytes = 16 * 1024).await;
    server.add_user("alice", "pw").await;
    let mut conn = Conn::tcp(server.addr()).await;
    conn.open().await;
    conn.try_send_bytes(b"<message><body>").await;
    // 1 MiB of text: the server must cut the stream at its limit, not buffer it all.
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..16 {
        if !conn.try_send_bytes(&chunk).await {
            break;
        }
    }
    assert_eq!(conn.stream_error().await.as_deref(), Some("policy-violation"));
    server_still_serves(&server).await;
}

#[tokio::test]
async fn a_100_mb_stanza_is_cut_off_at_the_limit_without_being_read() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let mut conn = Conn::tcp(server.addr()).await;
    conn.open().await;
    conn.try_send_bytes(b"<message><body>").await;
    let chunk = vec![b'a'; 1 << 20];
    let mut sent_mib = 0;
    while sent_mib < 100 && conn.try_send_bytes(&chunk).await {
        sent_mib += 1;
    }
    assert!(sent_mib < 100, "the server took in all 100 MiB of one stanza");
    server_still_serves(&server).await;
}

#[tokio::test]
async fn a_hundred_thousand_attributes_are_a_policy_violation() {
    // A limit on size alone would let this through: the stanza fits in 2 MiB.
    let server = TestServer::start_with(|c| c.limits.max_stanza_bytes = 2 << 20).await;
    server.add_user("alice", "pw").await;
    let attrs: String = (0..100_000).map(|i| format!(" a{i}=''")).collect();
    assert_eq!(error_for(&server, format!("<message{attrs}/>").as_bytes()).await.as_deref(), Some("policy-violation"));
    server_still_serves(&server).await;
}

/// A slowloris sender, one byte of a stanza every 200 ms, is cut off once the stanza
/// has taken `stanza_timeout` (here 1 s); a client sending whitespace keepalives as
/// slowly between stanzas is not.
#[tokio::test]
async fn a_stanza_trickled_a_byte_at_a_time_ends_the_stream() {
    let server = TestServer::start_with(|c| c.limits.stanza_timeout = 1).await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let mut slow = server.login("alice", "slow").await;
    let mut calm = server.login("bob", "calm").await;
    slow.send("<message to='bob@localhost/calm' type='chat'><body>").await;
    let mut trickled = 0;
    let end = loop {
        if let Some(event) = slow.conn.next_within(Duration::from_millis(200)).await {
            break event;
        }
        assert!(trickled < 50, "still connected after {trickled} bytes over 10 s");
        slow.conn.try_send_bytes(b"x").await;
        calm.conn.send_bytes(b" ").await;
        trickled += 1;
    };
    let Event::Stanza(error) = end else { panic!("expected a stream error, got {end:?}") };
    assert!(error.is("error", NS_STREAMS), "{error:?}");
    assert!(error.has_child("policy-violation", NS_STREAM_ERRORS), "{error:?}");
    assert!(trickled >= 4, "cut off after {trickled} bytes, before the limit");
    calm.sync().await;
}

/// A storm of binds for one account stops at `max_sessions_per_account` with
/// `resource-constraint`, while taking over a bound resource still works.
#[tokio::test]
async fn a_resource_binding_storm_stops_at_the_session_limit() {
    let server = TestServer::start_with(|c| c.c2s.max_sessions_per_account = 5).await;
    server.add_user("alice", "pw").await;
    let mut bound = Vec::new();
    for i in 0..5 {
        bound.push(server.login("alice", &format!("r{i}")).await);
    }
    for i in 0..100 {
        let mut conn = Conn::tcp(server.addr()).await;
        conn.open().await;
        conn.starttls().await;
        conn.auth("alice", "pw").await.expect("authenticates");
        conn.open().await;
        let refused = conn.bind(Some(&format!("storm{i}"))).await.expect_err("a sixth session is refused");
        let error = refused.get_child("error", "jabber:client").expect("error");
        assert_eq!(error.attr("type"), Some("wait"));
        assert!(error.has_child("resource-constraint", NS_STANZAS), "{refused:?}");
    }
    let mut again = server.login("alice", "r0").await;
    again.sync().await;
    bound[1].sync().await;
}

#[tokio::test]
async fn deep_nesting_is_a_policy_violation() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let deep = "<a>".repeat(10_000);
    assert_eq!(error_for(&server, format!("<message>{deep}").as_bytes()).await.as_deref(), Some("policy-violation"));
    server_still_serves(&server).await;
}

#[tokio::test]
async fn invalid_utf8_is_not_well_formed() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    assert_eq!(
        error_for(&server, b"<message><body>\xff\xfe</body></message>").await.as_deref(),
        Some("not-well-formed")
    );
    // An overlong encoding of '/' (0xC0 0xAF) must not pass as a slash.
    assert_eq!(
        error_for(&server, b"<message><body>\xc0\xaf</body></message>").await.as_deref(),
        Some("not-well-formed")
    );
    server_still_serves(&server).await;
}

#[tokio::test]
async fn wrong_stream_namespace_is_invalid_namespace() {
    let server = TestServer::start().await;
    let mut conn = Conn::tcp(server.addr()).await;
    conn.send("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>").await;
    assert_eq!(conn.stream_error().await.as_deref(), Some("invalid-namespace"));
}

#[tokio::test]
async fn unknown_top_level_element_after_bind_is_unsupported_stanza_type() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let mut alice = server.login("alice", "a").await;
    alice.send("<foo xmlns='urn:example:foo'/>").await;
    assert_eq!(alice.conn.stream_error().await.as_deref(), Some("unsupported-stanza-type"));
}

#[tokio::test]
async fn garbage_after_login_closes_only_that_session() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let mut bob = server.login("bob", "b").await;
    let mut alice = server.login("alice", "a").await;
    alice.conn.send_bytes(b"<message><<<").await;
    assert_eq!(alice.conn.stream_error().await.as_deref(), Some("not-well-formed"));
    bob.sync().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_without_blocking_others() {
    let server = TestServer::start_with(|c| c.limits.session_queue = 64).await;
    for user in ["alice", "bob", "carol"] {
        server.add_user(user, "pw").await;
    }
    // Bob never reads: the kernel buffers fill, then his queue, then he is closed.
    let bob = server.login("bob", "b").await;
    let mut alice = server.login("alice", "a").await;
    let mut carol = server.login("carol", "c").await;
    let body = "x".repeat(8 * 1024);
    let sessions = server.server.as_ref().expect("running").sessions.clone();
    let bob_jid = "bob@localhost/b".parse().expect("jid");
    let mut sent = 0;
    while sessions.is_bound(&bob_jid) && sent < 4_000 {
        alice
            .send(&format!("<message to='bob@localhost/b' type='chat' id='f{sent}'><body>{body}</body></message>"))
            .await;
        sent += 1;
        if sent % 50 == 0 {
            alice.sync().await;
        }
    }
    assert!(!sessions.is_bound(&bob_jid), "bob is still bound after {sent} messages");
    // Carol is served throughout.
    carol.send("<message to='alice@localhost/a' type='chat'><body>still fast</body></message>").await;
    loop {
        let stanza = alice.recv().await;
        if stanza.attr("from") == Some("carol@localhost/c") {
            break;
        }
    }
    drop(bob);
}

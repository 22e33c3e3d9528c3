//! Per-peer limits over real sockets: a client sending faster than
//! `[limits] c2s_bytes_per_second` is read more slowly, not cut off, and everything it
//! sent arrives, while another client is served meanwhile (the same for
//! `c2s_stanzas_per_second`); connections beyond
//! `[limits] connections_per_ip` get a `policy-violation` stream error; a presence
//! flood is paced the same way.

mod common;

use common::{Conn, TestServer};

/// `starling_read_throttled_total` for streams of `kind` (`c2s`, `c2s_stanzas`).
fn throttled_reads(kind: &str) -> u64 {
    let text = starling::metrics::handle().render();
    let series = format!("starling_read_throttled_total{{kind=\"{kind}\"}}");
    text.lines()
        .find(|l| l.starts_with(&series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits until `calm` has the messages with ids `expected`, counting those that came
/// with the ping's answer, and checks their order.
async fn receive_in_order(calm: &mut common::Client, early: &[minidom::Element], expected: Vec<String>) {
    let mut ids: Vec<String> =
        early.iter().filter(|s| s.name() == "message").map(|m| m.attr("id").unwrap_or_default().to_owned()).collect();
    while ids.len() < expected.len() {
        let message = calm.recv_message().await;
        ids.push(message.attr("id").unwrap_or_default().to_owned());
    }
    assert_eq!(ids, expected, "all of it, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_slowed_down_and_loses_nothing() {
    let server = TestServer::start_with(|config| {
        config.limits.c2s_bytes_per_second = 20_000;
        config.limits.c2s_burst_bytes = 20_000;
    })
    .await;
    server.add_user("flood", "pw").await;
    server.add_user("calm", "pw").await;
    let mut flood = server.login("flood", "f").await;
    let mut calm = server.login("calm", "c").await;
    let before = throttled_reads("c2s");

    // About 60 KB at once: three times the burst.
    let padding = "x".repeat(500);
    let mut burst = String::new();
    for i in 0..120 {
        burst.push_str(&format!(
            "<message to='calm@localhost/c' type='chat' id='f{i}'><body>{i} {padding}</body></message>"
        ));
    }
    flood.send(&burst).await;
    // The other client is served while the flood is read slowly.
    let (pong, early) = calm.iq("<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(pong.attr("type"), Some("result"));
    receive_in_order(&mut calm, &early, (0..120).map(|i| format!("f{i}")).collect()).await;
    assert!(throttled_reads("c2s") > before, "the flood was paced");
    // Still connected.
    let (pong, _) = flood.iq("<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(pong.attr("type"), Some("result"));
}

#[tokio::test]
async fn connections_beyond_the_per_address_limit_are_refused() {
    let server = TestServer::start_with(|config| {
        config.limits.connections_per_ip = 2;
        config.limits.connections_per_ip_exempt = Vec::new();
    })
    .await;
    server.add_user("alice", "pw").await;
    let _first = server.login("alice", "one").await;
    let _second = server.login("alice", "two").await;
    let mut third = Conn::tcp(server.addr()).await;
    third.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>").await;
    assert_eq!(third.stream_error().await.as_deref(), Some("policy-violation"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_small_stanzas_is_paced_and_loses_nothing() {
    let server = TestServer::start_with(|config| {
        config.limits.c2s_stanzas_per_second = 100;
        config.limits.c2s_burst_stanzas = 50;
    })
    .await;
    server.add_user("flood", "pw").await;
    server.add_user("calm", "pw").await;
    let mut flood = server.login("flood", "f").await;
    let mut calm = server.login("calm", "c").await;
    let before = throttled_reads("c2s_stanzas");

    // 150 tiny messages in one write: three times the burst, far below the byte limit.
    let burst: String = (0..150)
        .map(|i| format!("<message to='calm@localhost/c' type='chat' id='s{i}'><body>{i}</body></message>"))
        .collect();
    flood.send(&burst).await;
    let (pong, early) = calm.iq("<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(pong.attr("type"), Some("result"), "the other client is served meanwhile");
    receive_in_order(&mut calm, &early, (0..150).map(|i| format!("s{i}")).collect()).await;
    assert!(throttled_reads("c2s_stanzas") > before, "the flood was paced");
    let (pong, _) = flood.iq("<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(pong.attr("type"), Some("result"), "the flooder is still connected");
}

/// A presence flood (directed presence, which no subscription gates) is paced like any
/// other: every update arrives in order, the flooder stays connected, and a message
/// from someone else gets through to the addressee as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presence_flood_is_paced_and_loses_nothing() {
    let server = TestServer::start_with(|config| {
        config.limits.c2s_stanzas_per_second = 500;
        config.limits.c2s_burst_stanzas = 200;
    })
    .await;
    for user in ["flood", "calm", "friend"] {
        server.add_user(user, "pw").await;
    }
    let mut flood = server.login("flood", "f").await;
    let mut calm = server.login("calm", "c").await;
    let mut friend = server.login("friend", "p").await;
    let before = throttled_reads("c2s_stanzas");
    let updates: String = (0..800)
        .map(|i| format!("<presence to='calm@localhost/c' id='p{i}'><status>{i}</status></presence>"))
        .collect();
    flood.send(&updates).await;
    friend.send("<message to='calm@localhost/c' type='chat' id='hello'><body>hi</body></message>").await;
    let mut ids = Vec::new();
    let mut greeted = false;
    while ids.len() < 800 || !greeted {
        let stanza = calm.recv().await;
        match stanza.name() {
            "presence" => ids.push(stanza.attr("id").unwrap_or_default().to_owned()),
            "message" => greeted |= stanza.attr("id") == Some("hello"),
            _ => {}
        }
    }
    assert_eq!(ids, (0..800).map(|i| format!("p{i}")).collect::<Vec<_>>(), "every update, in order");
    assert!(throttled_reads("c2s_stanzas") > before, "the flood was paced");
    let (pong, _) = flood.iq("<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(pong.attr("type"), Some("result"), "the flooder is still connected");
}

//! Federation between Starling instances on loopback (RFC 6120 S2S, XEP-0220 dialback,
//! XEP-0178 SASL EXTERNAL, XEP-0368 direct TLS), found through a test DNS server's
//! SRV records: subscriptions and messages both ways with certificates and with
//! dialback, and an impostor refused.

mod common;

use common::dns::TestDns;
use common::federation::{Publish, TestCa, instance, recv_all, recv_until, roster_push};
use common::{Client, TestServer};

fn body(stanza: &minidom::Element) -> Option<String> {
    stanza.get_child("body", "jabber:client").map(|b| b.text())
}

fn error_condition(stanza: &minidom::Element) -> Option<String> {
    let error = stanza.get_child("error", "jabber:client")?;
    error.children().find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas").map(|c| c.name().to_owned())
}

async fn login(server: &TestServer, user: &str, domain: &str) -> Client {
    server.add_user_at(user, domain, "pw").await;
    let mut client = Client::login_at(server.addr(), user, domain, "pw", Some("r")).await;
    // Fetching the roster makes this resource one that receives roster pushes.
    client.iq("<iq type='get' id='{id}'><query xmlns='jabber:iq:roster'/></iq>").await;
    client.presence(0).await;
    client
}

/// alice@a.test and bob@b.test become mutual contacts and exchange messages.
async fn subscribe_and_chat(a: &TestServer, b: &TestServer) {
    let mut alice = login(a, "alice", "a.test").await;
    let mut bob = login(b, "bob", "b.test").await;

    alice.send("<presence to='bob@b.test' type='subscribe'/>").await;
    let request = recv_until(&mut bob, |s| s.name() == "presence" && s.attr("type") == Some("subscribe")).await;
    assert_eq!(request.attr("from"), Some("alice@a.test"));
    bob.send("<presence to='alice@a.test' type='subscribed'/>").await;
    // bob's current presence follows the approval; the roster says `to` (waited for, so
    // that the next subscription change starts from it).
    let online = |s: &minidom::Element| {
        s.name() == "presence" && s.attr("from") == Some("bob@b.test/r") && s.attr("type").is_none()
    };
    recv_all(&mut alice, &[&online, &|s| roster_push(s, "bob@b.test", "to")]).await;

    bob.send("<presence to='alice@a.test' type='subscribe'/>").await;
    let request = recv_until(&mut alice, |s| s.name() == "presence" && s.attr("type") == Some("subscribe")).await;
    assert_eq!(request.attr("from"), Some("bob@b.test"));
    alice.send("<presence to='bob@b.test' type='subscribed'/>").await;
    recv_until(&mut bob, |s| s.name() == "presence" && s.attr("from") == Some("alice@a.test/r")).await;

    alice.send("<message to='bob@b.test' type='chat' id='m1'><body>hello from a</body></message>").await;
    let message = bob.recv_message().await;
    assert_eq!((message.attr("from"), body(&message).as_deref()), (Some("alice@a.test/r"), Some("hello from a")));
    bob.send("<message to='alice@a.test/r' type='chat' id='m2'><body>hello from b</body></message>").await;
    let message = alice.recv_message().await;
    assert_eq!((message.attr("from"), body(&message).as_deref()), (Some("bob@b.test/r"), Some("hello from b")));

    // Both rosters say `both`.
    let (roster, _) = alice.iq("<iq type='get' id='{id}'><query xmlns='jabber:iq:roster'/></iq>").await;
    let item = roster.get_child("query", "jabber:iq:roster").and_then(|q| q.children().next().cloned()).expect("item");
    assert_eq!((item.attr("jid"), item.attr("subscription")), (Some("bob@b.test"), Some("both")));

    // An IQ to the remote server and its answer cross too.
    let (pong, _) = alice.iq("<iq type='get' id='{id}' to='b.test'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(pong.attr("type"), Some("result"), "{pong:?}");

    // bob goes offline: alice sees it, and her message waits in b.test's offline store.
    drop(bob);
    let gone = recv_until(&mut alice, |s| s.name() == "presence" && s.attr("from") == Some("bob@b.test/r")).await;
    assert_eq!(gone.attr("type"), Some("unavailable"));
    alice.send("<message to='bob@b.test' type='chat' id='m3'><body>while you were out</body></message>").await;
    // Back online, bob's server probes alice@a.test and delivers the stored message.
    let mut bob = Client::login_at(b.addr(), "bob", "b.test", "pw", Some("r")).await;
    bob.presence(0).await;
    let mut stored = None;
    let mut alice_online = false;
    while stored.is_none() || !alice_online {
        let stanza = bob.recv().await;
        match stanza.name() {
            "message" => stored = body(&stanza),
            "presence" if stanza.attr("from") == Some("alice@a.test/r") => alice_online = stanza.attr("type").is_none(),
            _ => {}
        }
    }
    assert_eq!(stored.as_deref(), Some("while you were out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialback_federation_subscriptions_and_messages_both_ways() {
    common::init_logging();
    let dns = TestDns::start().await;
    let a = instance("a.test", &dns, None, Publish::StartTls, |_| {}).await;
    let b = instance("b.test", &dns, None, Publish::StartTls, |_| {}).await;
    subscribe_and_chat(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_federation_over_direct_tls_uses_sasl_external() {
    common::init_logging();
    let dir = tempfile::tempdir().expect("dir");
    let ca = TestCa::new(dir.path());
    let dns = TestDns::start().await;
    // Dialback is off on both sides: only SASL EXTERNAL can authenticate.
    let a = instance("a.test", &dns, Some(&ca), Publish::DirectTls, |_| {}).await;
    let b = instance("b.test", &dns, Some(&ca), Publish::DirectTls, |_| {}).await;
    subscribe_and_chat(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_without_the_key_is_refused() {
    common::init_logging();
    let dns = TestDns::start().await;
    let a = instance("a.test", &dns, None, Publish::StartTls, |_| {}).await;
    let b = instance("b.test", &dns, None, Publish::StartTls, |_| {}).await;
    // Claims a.test too, but DNS (and so dialback) points at the real one.
    let impostor = instance("a.test", &dns, None, Publish::Hidden, |_| {}).await;
    let mut bob = login(&b, "bob", "b.test").await;
    let mut mallory = login(&impostor, "alice", "a.test").await;
    mallory.send("<message to='bob@b.test' type='chat' id='fake'><body>I am alice</body></message>").await;
    let bounce = mallory.recv_message().await;
    assert_eq!(bounce.attr("type"), Some("error"));
    assert_eq!(error_condition(&bounce).as_deref(), Some("remote-server-not-found"));
    // The real a.test still gets through, and bob never saw the impostor's message.
    let mut alice = login(&a, "alice", "a.test").await;
    alice.send("<message to='bob@b.test' type='chat' id='real'><body>really alice</body></message>").await;
    let message = bob.recv_message().await;
    assert_eq!(body(&message).as_deref(), Some("really alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_domain_bounces_remote_server_not_found() {
    let dns = TestDns::start().await;
    let a = instance("a.test", &dns, None, Publish::StartTls, |_| {}).await;
    let mut alice = login(&a, "alice", "a.test").await;
    alice.send("<message to='nobody@nowhere.test' type='chat' id='x'><body>anyone?</body></message>").await;
    let bounce = alice.recv_message().await;
    assert_eq!((bounce.attr("id"), bounce.attr("from")), (Some("x"), Some("nobody@nowhere.test")));
    assert_eq!(error_condition(&bounce).as_deref(), Some("remote-server-not-found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_local_domain_joins_the_stream_by_dialback() {
    common::init_logging();
    let dns = TestDns::start().await;
    let a =
        instance("a.test", &dns, None, Publish::StartTls, |config| config.server.hosts.push("a2.test".into())).await;
    dns.server("a2.test", a.s2s_addr().port(), None);
    let b = instance("b.test", &dns, None, Publish::StartTls, |_| {}).await;
    let mut bob = login(&b, "bob", "b.test").await;
    let mut alice = login(&a, "alice", "a.test").await;
    let mut carol = login(&a, "carol", "a2.test").await;
    alice.send("<message to='bob@b.test' type='chat' id='1'><body>from a</body></message>").await;
    assert_eq!(body(&bob.recv_message().await).as_deref(), Some("from a"));
    // XEP-0220 §2.6: a2.test is authorised on the same outgoing stream.
    carol.send("<message to='bob@b.test' type='chat' id='2'><body>from a2</body></message>").await;
    let message = bob.recv_message().await;
    assert_eq!((message.attr("from"), body(&message).as_deref()), (Some("carol@a2.test/r"), Some("from a2")));
    bob.send("<message to='carol@a2.test/r' type='chat' id='3'><body>hi carol</body></message>").await;
    assert_eq!(body(&carol.recv_message().await).as_deref(), Some("hi carol"));
}

/// `[s2s] blocked_domains`: a.test federates with c.test but not with b.test, in
/// either direction — its users' messages to b.test bounce, and b.test cannot deliver
/// to a.test (its stream is refused, so its user gets the bounce).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_domain_is_refused_both_ways_and_others_still_federate() {
    common::init_logging();
    let dns = TestDns::start().await;
    let a = instance("a.test", &dns, None, Publish::StartTls, |c| c.s2s.blocked_domains = vec!["b.test".into()]).await;
    let b = instance("b.test", &dns, None, Publish::StartTls, |_| {}).await;
    let c = instance("c.test", &dns, None, Publish::StartTls, |_| {}).await;
    let mut alice = login(&a, "alice", "a.test").await;
    let mut bob = login(&b, "bob", "b.test").await;
    let mut carol = login(&c, "carol", "c.test").await;

    alice.send("<message to='bob@b.test' type='chat' id='out'><body>hello b</body></message>").await;
    let bounce = alice.recv_message().await;
    assert_eq!((bounce.attr("id"), bounce.attr("type")), (Some("out"), Some("error")));
    assert_eq!(error_condition(&bounce).as_deref(), Some("remote-server-not-found"));

    bob.send("<message to='alice@a.test' type='chat' id='in'><body>hello a</body></message>").await;
    let bounce = bob.recv_message().await;
    assert_eq!((bounce.attr("id"), bounce.attr("type")), (Some("in"), Some("error")), "{bounce:?}");

    carol.send("<message to='alice@a.test' type='chat' id='ok'><body>hello from c</body></message>").await;
    let message = alice.recv_message().await;
    assert_eq!(body(&message).as_deref(), Some("hello from c"), "only c.test's message reaches alice");
}

//! Federation with real servers from Debian: Prosody 0.12 and ejabberd 23.01, each
//! started once with its own configuration and data directory on loopback ports
//! (tests/common/peers.rs), found through the test DNS server's SRV records as
//! Starling is found by them. Presence subscriptions and messages both directions,
//! over STARTTLS with dialback (self-signed certificates on every side); a Prosody
//! user in a Starling MUC room.

mod common;

use common::dns::TestDns;
use common::federation::{Publish, instance, recv_all, recv_until, roster_push};
use common::peers::{self, Peer};
use common::{Client, TestServer};

fn body(stanza: &minidom::Element) -> Option<String> {
    stanza.get_child("body", "jabber:client").map(|b| b.text())
}

/// alice@a.test (Starling) and bob@<peer> become mutual contacts and chat.
async fn federate(starling: &TestServer, peer: &Peer, bob: &mut Client) {
    starling.add_user_at("alice", "a.test", "pw").await;
    let mut alice = Client::login_at(starling.addr(), "alice", "a.test", "pw", Some("r")).await;
    // Fetching the roster makes this resource one that receives roster pushes.
    alice.iq("<iq type='get' id='{id}'><query xmlns='jabber:iq:roster'/></iq>").await;
    alice.presence(0).await;
    let bob_bare = format!("bob@{}", peer.domain);
    let bob_full = format!("{bob_bare}/r");
    bob.presence(0).await;

    // Starling → peer: subscription request, approval, presence.
    alice.send(&format!("<presence to='{bob_bare}' type='subscribe'/>")).await;
    let request = recv_until(bob, |s| s.name() == "presence" && s.attr("type") == Some("subscribe")).await;
    assert_eq!(request.attr("from"), Some("alice@a.test"), "{}", peer.log());
    bob.send("<presence to='alice@a.test' type='subscribed'/>").await;
    // bob's presence and the roster push to `to` travel apart; both before going on.
    let online = |s: &minidom::Element| {
        s.name() == "presence" && s.attr("from") == Some(bob_full.as_str()) && s.attr("type").is_none()
    };
    recv_all(&mut alice, &[&online, &|s| roster_push(s, &bob_bare, "to")]).await;

    // Peer → Starling.
    bob.send("<presence to='alice@a.test' type='subscribe'/>").await;
    let request = recv_until(&mut alice, |s| s.name() == "presence" && s.attr("type") == Some("subscribe")).await;
    assert_eq!(request.attr("from"), Some(bob_bare.as_str()));
    alice.send(&format!("<presence to='{bob_bare}' type='subscribed'/>")).await;
    recv_until(bob, |s| s.name() == "presence" && s.attr("from") == Some("alice@a.test/r") && s.attr("type").is_none())
        .await;

    // Messages both ways.
    alice.send(&format!("<message to='{bob_bare}' type='chat' id='m1'><body>hi from starling</body></message>")).await;
    let message = recv_until(bob, |s| s.name() == "message").await;
    assert_eq!((message.attr("from"), body(&message).as_deref()), (Some("alice@a.test/r"), Some("hi from starling")));
    bob.send(&format!(
        "<message to='alice@a.test/r' type='chat' id='m2'><body>hi from {}</body></message>",
        peer.domain
    ))
    .await;
    let message = alice.recv_message().await;
    assert_eq!(message.attr("from"), Some(bob_full.as_str()));
    assert_eq!(body(&message), Some(format!("hi from {}", peer.domain)));

    let (roster, _) = alice.iq("<iq type='get' id='{id}'><query xmlns='jabber:iq:roster'/></iq>").await;
    let item = roster.get_child("query", "jabber:iq:roster").and_then(|q| q.children().next().cloned()).expect("item");
    assert_eq!((item.attr("jid"), item.attr("subscription")), (Some(bob_bare.as_str()), Some("both")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_federates_both_ways() {
    if !peers::installed("/usr/bin/prosody") {
        return;
    }
    common::init_logging();
    let dns = TestDns::start().await;
    let starling = instance("a.test", &dns, None, Publish::StartTls, |_| {}).await;
    let prosody = peers::prosody("p1.test", &dns, &["bob"]).await;
    let mut bob = Client::login_plain_at(prosody.c2s, "bob", "p1.test", "pw", "r", false).await;
    federate(&starling, &prosody, &mut bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_federates_both_ways() {
    if !peers::installed("/usr/sbin/ejabberdctl") {
        return;
    }
    common::init_logging();
    let dns = TestDns::start().await;
    let starling = instance("a.test", &dns, None, Publish::StartTls, |_| {}).await;
    let ejabberd = peers::ejabberd("e1.test", &dns).await;
    let mut bob = Client::login_plain_at(ejabberd.c2s, "bob", "e1.test", "pw", "r", true).await;
    federate(&starling, &ejabberd, &mut bob).await;
}

/// bob@p1.test (Prosody) joins a room on Starling's MUC service, talks and is heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prosody_user_joins_a_starling_room() {
    if !peers::installed("/usr/bin/prosody") {
        return;
    }
    common::init_logging();
    let dns = TestDns::start().await;
    let starling = instance("a.test", &dns, None, Publish::StartTls, |_| {}).await;
    // The service domain is published like any server domain (dialback verifies it).
    dns.server("conference.a.test", starling.s2s_addr().port(), None);
    let prosody = peers::prosody("p1.test", &dns, &["bob"]).await;
    starling.add_user_at("alice", "a.test", "pw").await;
    let mut alice = Client::login_at(starling.addr(), "alice", "a.test", "pw", Some("r")).await;
    let hall = "hall@conference.a.test";
    alice.send(&format!("<presence to='{hall}/Alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>")).await;
    recv_until(&mut alice, |s| s.name() == "presence" && s.attr("from") == Some("hall@conference.a.test/Alice")).await;
    // An instant room (XEP-0045 §10.1.2): the empty form unlocks it.
    let (unlocked, _) = alice
        .iq(&format!(
            "<iq type='set' id='{{id}}' to='{hall}'><query xmlns='http://jabber.org/protocol/muc#owner'>\
             <x xmlns='jabber:x:data' type='submit'/></query></iq>"
        ))
        .await;
    assert_eq!(unlocked.attr("type"), Some("result"), "{unlocked:?}");

    let mut bob = Client::login_plain_at(prosody.c2s, "bob", "p1.test", "pw", "r", false).await;
    bob.send(&format!("<presence to='{hall}/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>")).await;
    let others =
        recv_until(&mut bob, |s| s.name() == "presence" && s.attr("from") == Some("hall@conference.a.test/Alice"))
            .await;
    assert_eq!(others.attr("type"), None, "{}", prosody.log());
    let own =
        recv_until(&mut bob, |s| s.name() == "presence" && s.attr("from") == Some("hall@conference.a.test/Bob")).await;
    let codes: Vec<String> = own
        .get_child("x", "http://jabber.org/protocol/muc#user")
        .map(|x| x.children().filter_map(|c| c.attr("code").map(str::to_owned)).collect())
        .unwrap_or_default();
    assert!(codes.iter().any(|c| c == "110"), "self-presence carries 110: {own:?}");
    let seen =
        recv_until(&mut alice, |s| s.name() == "presence" && s.attr("from") == Some("hall@conference.a.test/Bob"))
            .await;
    assert_eq!(seen.attr("type"), None);

    bob.send(&format!("<message to='{hall}' type='groupchat' id='g1'><body>hello from prosody</body></message>")).await;
    let heard = recv_until(&mut alice, |s| s.name() == "message" && body(s).is_some()).await;
    assert_eq!(heard.attr("from"), Some("hall@conference.a.test/Bob"));
    assert_eq!(body(&heard).as_deref(), Some("hello from prosody"));
    // The room's subject comes first (a groupchat message without a body), then the echo.
    let echo = recv_until(&mut bob, |s| s.name() == "message" && body(s).is_some()).await;
    assert_eq!(body(&echo).as_deref(), Some("hello from prosody"));
    alice.send(&format!("<message to='{hall}' type='groupchat' id='g2'><body>welcome</body></message>")).await;
    let welcome = recv_until(&mut bob, |s| s.name() == "message" && body(s).as_deref() == Some("welcome")).await;
    assert_eq!(welcome.attr("from"), Some("hall@conference.a.test/Alice"));
}

//! Routing over real sockets, row by row of the table in `src/router.rs`
//! (RFC 6120 §8, §10; RFC 6121 §8.5), plus the modules that prove the module API:
//! disco (XEP-0030), ping (XEP-0199), version (XEP-0092), time (XEP-0202).

mod common;

use common::{Client, HOST, TestServer};

async fn server_with(users: &[&str]) -> TestServer {
    let server = TestServer::start().await;
    for user in users {
        server.add_user(user, "pw").await;
    }
    server
}

fn error_condition(stanza: &minidom::Element) -> Option<String> {
    let error = stanza.get_child("error", "jabber:client")?;
    error.children().find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas").map(|c| c.name().to_owned())
}

#[tokio::test]
async fn message_to_full_jid_is_delivered_with_stamped_from() {
    let server = server_with(&["alice", "bob"]).await;
    let mut alice = server.login("alice", "a").await;
    let mut bob = server.login("bob", "b").await;
    // A forged `from` is overwritten by the server (RFC 6120 §8.1.2.1).
    alice.send("<message to='bob@localhost/b' from='mallory@localhost/x' type='chat' id='m1'><body>hi &amp; bye</body></message>").await;
    let message = bob.recv().await;
    assert_eq!(message.name(), "message");
    assert_eq!(message.attr("from"), Some("alice@localhost/a"));
    assert_eq!(message.attr("id"), Some("m1"));
    assert_eq!(message.get_child("body", "jabber:client").map(|b| b.text()).as_deref(), Some("hi & bye"));
}

#[tokio::test]
async fn chat_to_bare_jid_goes_to_the_highest_priority_resources() {
    let server = server_with(&["alice", "bob"]).await;
    let mut alice = server.login("alice", "a").await;
    let mut bob_phone = server.login("bob", "phone").await;
    let mut bob_desk = server.login("bob", "desk").await;
    bob_phone.presence(1).await;
    bob_desk.presence(5).await;
    bob_phone.sync().await;
    bob_desk.sync().await;
    alice.send("<message to='bob@localhost' type='chat'><body>to desk</body></message>").await;
    let got = bob_desk.recv_message().await;
    assert_eq!(got.get_child("body", "jabber:client").map(|b| b.text()).as_deref(), Some("to desk"));
    assert!(bob_phone.sync().await.iter().all(|s| s.name() != "message"), "lower priority resource got it");

    // Headline messages go to every non-negative resource (RFC 6121 §8.5.2.1.1).
    alice.send("<message to='bob@localhost' type='headline'><body>news</body></message>").await;
    for client in [&mut bob_desk, &mut bob_phone] {
        assert_eq!(client.recv_message().await.attr("type"), Some("headline"));
    }
}

#[tokio::test]
async fn chat_to_an_account_without_available_resources_bounces() {
    // The router's own row: without the offline module such a message bounces.
    let server = TestServer::start_with(|c| c.modules.enabled.retain(|m| m != "offline")).await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let mut alice = server.login("alice", "a").await;
    alice.send("<message to='bob@localhost' type='chat' id='x1'><body>anyone?</body></message>").await;
    let bounce = alice.recv().await;
    assert_eq!(bounce.attr("type"), Some("error"));
    assert_eq!(bounce.attr("id"), Some("x1"));
    assert_eq!(bounce.attr("from"), Some("bob@localhost"));
    assert_eq!(error_condition(&bounce).as_deref(), Some("service-unavailable"));
}

#[tokio::test]
async fn message_to_unbound_full_jid_falls_back_to_bare_jid() {
    let server = server_with(&["alice", "bob"]).await;
    let mut alice = server.login("alice", "a").await;
    let mut bob = server.login("bob", "b").await;
    bob.presence(0).await;
    bob.sync().await;
    alice.send("<message to='bob@localhost/gone' type='chat'><body>fallback</body></message>").await;
    let got = bob.recv_message().await;
    assert_eq!(got.attr("to"), Some("bob@localhost/gone"));
    // An IQ to an unbound full JID is service-unavailable (RFC 6121 §8.5.3.2.3).
    let (reply, _) =
        alice.iq("<iq type='get' id='{id}' to='bob@localhost/gone'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(error_condition(&reply).as_deref(), Some("service-unavailable"));
}

#[tokio::test]
async fn iq_between_clients_round_trips() {
    let server = server_with(&["alice", "bob"]).await;
    let mut alice = server.login("alice", "a").await;
    let mut bob = server.login("bob", "b").await;
    alice.send("<iq type='get' id='v1' to='bob@localhost/b'><query xmlns='jabber:iq:version'/></iq>").await;
    let request = bob.recv().await;
    assert_eq!(request.attr("from"), Some("alice@localhost/a"));
    bob.send("<iq type='result' id='v1' to='alice@localhost/a'><query xmlns='jabber:iq:version'><name>B</name><version>1</version></query></iq>").await;
    let reply = alice.recv().await;
    assert_eq!((reply.attr("type"), reply.attr("from")), (Some("result"), Some("bob@localhost/b")));
}

#[tokio::test]
async fn iq_with_unknown_namespace_is_service_unavailable() {
    let server = server_with(&["alice"]).await;
    let mut alice = server.login("alice", "a").await;
    for to in [format!(" to='{HOST}'"), String::new(), " to='alice@localhost'".to_owned()] {
        let (reply, _) =
            alice.iq(&format!("<iq type='get' id='{{id}}'{to}><query xmlns='urn:example:unknown'/></iq>")).await;
        assert_eq!(reply.attr("type"), Some("error"), "to={to}");
        assert_eq!(error_condition(&reply).as_deref(), Some("service-unavailable"), "to={to}");
    }
    // An IQ get without a payload is a bad request (RFC 6120 §8.2.3).
    let (reply, _) = alice.iq(&format!("<iq type='get' id='{{id}}' to='{HOST}'/>")).await;
    assert_eq!(error_condition(&reply).as_deref(), Some("bad-request"));
}

#[tokio::test]
async fn iq_to_another_existing_or_missing_account() {
    let server = server_with(&["alice", "bob"]).await;
    let mut alice = server.login("alice", "a").await;
    let disco = "<query xmlns='http://jabber.org/protocol/disco#info'/>";
    let (reply, _) = alice.iq(&format!("<iq type='get' id='{{id}}' to='bob@localhost'>{disco}</iq>")).await;
    assert_eq!(reply.attr("type"), Some("result"));
    let identity = reply
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .and_then(|q| q.get_child("identity", "http://jabber.org/protocol/disco#info"))
        .expect("identity");
    assert_eq!((identity.attr("category"), identity.attr("type")), (Some("account"), Some("registered")));
    let (reply, _) = alice.iq(&format!("<iq type='get' id='{{id}}' to='nobody@localhost'>{disco}</iq>")).await;
    assert_eq!(error_condition(&reply).as_deref(), Some("service-unavailable"));
}

#[tokio::test]
async fn server_modules_answer_disco_ping_version_and_time() {
    let server = server_with(&["alice"]).await;
    let mut alice = server.login("alice", "a").await;

    let (info, _) = alice
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='{HOST}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ))
        .await;
    assert_eq!(info.attr("from"), Some(HOST));
    let query = info.get_child("query", "http://jabber.org/protocol/disco#info").expect("disco#info result");
    let features: Vec<_> = query.children().filter(|c| c.name() == "feature").filter_map(|c| c.attr("var")).collect();
    for feature in [
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items",
        "urn:xmpp:ping",
        "jabber:iq:version",
        "urn:xmpp:time",
    ] {
        assert!(features.contains(&feature), "{feature} missing: {features:?}");
    }
    let identity = query.get_child("identity", "http://jabber.org/protocol/disco#info").expect("identity");
    assert_eq!((identity.attr("category"), identity.attr("type")), (Some("server"), Some("im")));

    let (items, _) = alice
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='{HOST}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
        ))
        .await;
    assert_eq!(items.attr("type"), Some("result"));
    let (node, _) = alice.iq(&format!("<iq type='get' id='{{id}}' to='{HOST}'><query xmlns='http://jabber.org/protocol/disco#info' node='nope'/></iq>")).await;
    assert_eq!(error_condition(&node).as_deref(), Some("item-not-found"));

    let (pong, _) =
        alice.iq(&format!("<iq type='get' id='{{id}}' to='{HOST}'><ping xmlns='urn:xmpp:ping'/></iq>")).await;
    assert_eq!((pong.attr("type"), pong.children().count()), (Some("result"), 0));

    let (version, _) =
        alice.iq(&format!("<iq type='get' id='{{id}}' to='{HOST}'><query xmlns='jabber:iq:version'/></iq>")).await;
    let query = version.get_child("query", "jabber:iq:version").expect("version result");
    assert_eq!(query.get_child("name", "jabber:iq:version").map(|n| n.text()).as_deref(), Some("Starling"));

    let (time, _) =
        alice.iq(&format!("<iq type='get' id='{{id}}' to='{HOST}'><time xmlns='urn:xmpp:time'/></iq>")).await;
    let utc = time
        .get_child("time", "urn:xmpp:time")
        .and_then(|t| t.get_child("utc", "urn:xmpp:time"))
        .map(|u| u.text())
        .expect("utc");
    assert!(utc.ends_with('Z') && utc.len() >= 20, "{utc}");
}

#[tokio::test]
async fn disabled_module_is_not_advertised_or_answered() {
    let server = TestServer::start_with(|c| c.modules.enabled.retain(|m| m != "version")).await;
    server.add_user("alice", "pw").await;
    let mut alice = server.login("alice", "a").await;
    let (reply, _) =
        alice.iq(&format!("<iq type='get' id='{{id}}' to='{HOST}'><query xmlns='jabber:iq:version'/></iq>")).await;
    assert_eq!(error_condition(&reply).as_deref(), Some("service-unavailable"));
    let (info, _) = alice
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='{HOST}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ))
        .await;
    let query = info.get_child("query", "http://jabber.org/protocol/disco#info").expect("disco");
    assert!(!query.children().any(|c| c.attr("var") == Some("jabber:iq:version")));
}

#[tokio::test]
async fn remote_domains_bounce_when_federation_is_off() {
    let server = server_with(&["alice"]).await;
    let mut alice = server.login("alice", "a").await;
    alice.send("<message to='romeo@remote.example' id='r1' type='chat'><body>x</body></message>").await;
    let bounce = alice.recv().await;
    assert_eq!(error_condition(&bounce).as_deref(), Some("remote-server-not-found"));
}

#[tokio::test]
async fn malformed_to_is_jid_malformed() {
    let server = server_with(&["alice"]).await;
    let mut alice = server.login("alice", "a").await;
    alice.send("<message to='a@b@c' id='j1'><body>x</body></message>").await;
    let bounce = alice.recv().await;
    assert_eq!(error_condition(&bounce).as_deref(), Some("jid-malformed"));
}

#[tokio::test]
async fn directed_presence_gets_unavailable_when_the_sender_disconnects() {
    let server = server_with(&["alice", "bob"]).await;
    let mut alice = server.login("alice", "a").await;
    let mut bob = server.login("bob", "b").await;
    alice.send("<presence to='bob@localhost/b'/>").await;
    let presence = bob.recv().await;
    assert_eq!((presence.attr("from"), presence.attr("type")), (Some("alice@localhost/a"), None));
    drop(alice);
    let gone = bob.recv().await;
    assert_eq!((gone.attr("from"), gone.attr("type")), (Some("alice@localhost/a"), Some("unavailable")));
}

#[tokio::test]
async fn binding_a_used_resource_replaces_the_old_session() {
    let server = server_with(&["alice"]).await;
    let mut old = server.login("alice", "same").await;
    let new = server.login("alice", "same").await;
    assert_eq!(new.jid, "alice@localhost/same");
    assert_eq!(old.conn.stream_error().await.as_deref(), Some("conflict"));
}

#[tokio::test]
async fn refuse_policy_rejects_the_second_bind() {
    let server = TestServer::start_with(|c| c.c2s.resource_conflict = starling::config::ResourceConflict::Refuse).await;
    server.add_user("alice", "pw").await;
    let _first = server.login("alice", "same").await;
    let mut conn = common::Conn::tcp(server.addr()).await;
    conn.open().await;
    conn.starttls().await;
    conn.auth("alice", "pw").await.expect("auth");
    conn.open().await;
    let refused = conn.bind(Some("same")).await.expect_err("conflict");
    assert_eq!(error_condition(&refused).as_deref(), Some("conflict"));
}

#[tokio::test]
async fn server_generates_a_resource_when_none_is_asked() {
    let server = server_with(&["alice"]).await;
    let a = Client::login(server.addr(), "alice", "pw", None).await;
    let b = Client::login(server.addr(), "alice", "pw", None).await;
    assert!(a.jid.starts_with("alice@localhost/") && b.jid.starts_with("alice@localhost/"));
    assert_ne!(a.jid, b.jid);
}

#[tokio::test]
async fn legacy_session_request_is_acknowledged() {
    let server = server_with(&["alice"]).await;
    let mut alice = server.login("alice", "a").await;
    let (reply, _) =
        alice.iq("<iq type='set' id='{id}'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>").await;
    // RFC 6121 Appendix E: old clients send it after binding and expect success.
    assert_eq!(reply.attr("type"), Some("result"));
}

#[tokio::test]
async fn graceful_shutdown_sends_system_shutdown() {
    let mut server = server_with(&["alice"]).await;
    let mut alice = server.login("alice", "a").await;
    server.stop().await;
    assert_eq!(alice.conn.stream_error().await.as_deref(), Some("system-shutdown"));
}

//! Offline messages (XEP-0160) over real sockets: stored while the account has no
//! available resource, delivered in order with XEP-0203 delay stamps at initial
//! presence, kept across a restart, limited per account.

mod common;

use common::TestServer;

fn body(stanza: &minidom::Element) -> Option<String> {
    stanza.get_child("body", "jabber:client").map(|b| b.text())
}

#[tokio::test]
async fn messages_wait_for_initial_presence_and_survive_a_restart() {
    let mut server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let mut alice = server.login("alice", "a").await;
    for i in 1..=3 {
        alice
            .send(&format!("<message to='bob@localhost' type='chat' id='m{i}'><body>offline {i}</body></message>"))
            .await;
    }
    // Chat states alone are not stored: the sender hears so.
    alice.send("<message to='bob@localhost' type='chat' id='cs'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>").await;
    let bounce = alice.recv().await;
    assert_eq!((bounce.attr("id"), bounce.attr("type")), (Some("cs"), Some("error")));
    // Nothing else came back: the three messages were stored, not bounced.
    assert!(alice.sync().await.is_empty());
    drop(alice);

    server.restart().await;
    let mut bob = server.login("bob", "b").await;
    assert!(bob.sync().await.is_empty(), "nothing before initial presence");
    bob.presence(0).await;
    let mut got = Vec::new();
    while got.len() < 3 {
        let stanza = bob.recv().await;
        if stanza.name() == "message" {
            let delay = stanza.get_child("delay", "urn:xmpp:delay").expect("delay stamp");
            assert!(delay.attr("stamp").is_some_and(|s| s.ends_with('Z')));
            assert_eq!(delay.attr("from"), Some("localhost"));
            assert_eq!(stanza.attr("from"), Some("alice@localhost/a"));
            got.push(body(&stanza).unwrap_or_default());
        }
    }
    assert_eq!(got, ["offline 1", "offline 2", "offline 3"]);
    // Delivered once: a second session does not get them again.
    let mut again = server.login("bob", "c").await;
    again.presence(0).await;
    assert!(again.sync().await.iter().all(|s| s.name() != "message"));
}

#[tokio::test]
async fn the_per_user_limit_bounces_extra_messages() {
    let server = TestServer::start_with(|c| {
        let table: toml::Value = toml::from_str("max_per_user = 2").expect("toml");
        c.modules.settings.insert("offline".into(), table);
    })
    .await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let mut alice = server.login("alice", "a").await;
    for i in 1..=3 {
        alice.send(&format!("<message to='bob@localhost' type='chat' id='m{i}'><body>{i}</body></message>")).await;
    }
    let bounce = alice.recv().await;
    assert_eq!((bounce.attr("id"), bounce.attr("type")), (Some("m3"), Some("error")));
    assert!(
        bounce
            .get_child("error", "jabber:client")
            .is_some_and(|e| e.has_child("service-unavailable", "urn:ietf:params:xml:ns:xmpp-stanzas"))
    );
}

#[tokio::test]
async fn server_advertises_msgoffline() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let mut alice = server.login("alice", "a").await;
    assert!(alice.server_features().await.iter().any(|f| f == "msgoffline"));
}

/// Messages keep their order across the moment the recipient comes online: those
/// stored before, and those that arrive while the stored ones are being loaded.
/// (Racy by nature: a broken ordering shows in most runs, not necessarily in all.)
#[tokio::test]
async fn messages_arriving_during_login_do_not_overtake_stored_ones() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let mut alice = server.login("alice", "a").await;
    const STORED: usize = 100;
    const TOTAL: usize = 400;
    for i in 0..STORED {
        alice.send(&format!("<message to='bob@localhost' type='chat'><body>{i}</body></message>")).await;
    }
    assert!(alice.sync().await.is_empty(), "stored, not bounced");
    let mut bob = server.login("bob", "b").await;
    let sender = tokio::spawn(async move {
        for i in STORED..TOTAL {
            alice.send(&format!("<message to='bob@localhost' type='chat'><body>{i}</body></message>")).await;
        }
        alice.sync().await
    });
    bob.presence(0).await;
    let mut got = Vec::new();
    while got.len() < TOTAL {
        let message = bob.recv_message().await;
        got.push(body(&message).and_then(|b| b.parse::<usize>().ok()).expect("numbered body"));
    }
    assert!(sender.await.expect("sender").is_empty(), "nothing bounced");
    assert_eq!(got, (0..TOTAL).collect::<Vec<_>>(), "every message once, in the order sent");
}

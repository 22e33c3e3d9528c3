//! Roster, subscriptions and presence over real sockets (RFC 6121 §2–§4, XEP-0237).

mod common;

use common::{Client, TestServer};
use minidom::Element;

const ROSTER: &str = "jabber:iq:roster";

async fn server_with(users: &[&str]) -> TestServer {
    let server = TestServer::start().await;
    for user in users {
        server.add_user(user, "pw").await;
    }
    server
}

fn items(query: &Element) -> Vec<(String, String, Option<String>)> {
    query
        .children()
        .filter(|c| c.name() == "item")
        .map(|i| {
            (
                i.attr("jid").unwrap_or_default().to_owned(),
                i.attr("subscription").unwrap_or("none").to_owned(),
                i.attr("ask").map(str::to_owned),
            )
        })
        .collect()
}

/// Fetches the roster (making this resource "interested") and returns the query.
async fn roster(client: &mut Client, ver: Option<&str>) -> Option<Element> {
    let ver = ver.map(|v| format!(" ver='{v}'")).unwrap_or_default();
    let (reply, _) = client.iq(&format!("<iq type='get' id='{{id}}'><query xmlns='{ROSTER}'{ver}/></iq>")).await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    reply.get_child("query", ROSTER).cloned()
}

/// Waits for the next stanza matching `pred`, skipping others.
async fn expect(client: &mut Client, pred: impl Fn(&Element) -> bool) -> Element {
    loop {
        let stanza = client.recv().await;
        if pred(&stanza) {
            return stanza;
        }
    }
}

type Matcher = Box<dyn Fn(&Element) -> bool>;

/// Waits until each predicate has matched a stanza, in any order (the approval and the
/// contact's presence travel different paths through the server).
async fn expect_all(client: &mut Client, preds: Vec<Matcher>) {
    let mut seen = vec![false; preds.len()];
    while seen.iter().any(|s| !s) {
        let stanza = client.recv().await;
        for (i, pred) in preds.iter().enumerate() {
            if !seen[i] && pred(&stanza) {
                seen[i] = true;
                break;
            }
        }
    }
}

fn is_push(stanza: &Element) -> bool {
    stanza.name() == "iq" && stanza.attr("type") == Some("set") && stanza.has_child("query", ROSTER)
}

fn is_presence(type_: Option<&str>, from: &str) -> impl Fn(&Element) -> bool {
    let from = from.to_owned();
    let type_ = type_.map(str::to_owned);
    move |s: &Element| {
        s.name() == "presence" && s.attr("type") == type_.as_deref() && s.attr("from") == Some(from.as_str())
    }
}

#[tokio::test]
async fn roster_set_push_versioning_and_remove() {
    let server = server_with(&["alice"]).await;
    let mut alice = server.login("alice", "a").await;
    let mut other = server.login("alice", "b").await;
    let empty = roster(&mut alice, Some("")).await.expect("full roster");
    assert!(items(&empty).is_empty());
    let v0 = empty.attr("ver").expect("ver").to_owned();
    roster(&mut other, None).await;

    alice.send(&format!("<iq type='set' id='s1'><query xmlns='{ROSTER}'><item jid='Romeo@Example.NET' name='Romeo'><group>Friends</group><group>Work</group></item></query></iq>")).await;
    let push_a = expect(&mut alice, is_push).await;
    let result = expect(&mut alice, |s| s.attr("id") == Some("s1")).await;
    assert_eq!(result.attr("type"), Some("result"));
    let push_b = expect(&mut other, is_push).await;
    for push in [&push_a, &push_b] {
        let query = push.get_child("query", ROSTER).expect("query");
        assert_eq!(items(query), vec![("romeo@example.net".to_owned(), "none".to_owned(), None)]);
    }
    let v1 = push_a.get_child("query", ROSTER).and_then(|q| q.attr("ver")).expect("ver").to_owned();
    assert_ne!(v0, v1);

    // Unchanged roster: empty result (RFC 6121 §2.6.3).
    assert!(roster(&mut alice, Some(&v1)).await.is_none(), "unchanged roster must cost an empty result");
    let full = roster(&mut alice, Some(&v0)).await.expect("changed roster is returned");
    let item = full.children().next().expect("item");
    assert_eq!(item.attr("name"), Some("Romeo"));
    assert_eq!(item.children().filter(|g| g.name() == "group").count(), 2);

    // Duplicate groups are a bad request; empty groups not acceptable.
    let (bad, _) = alice.iq(&format!("<iq type='set' id='{{id}}'><query xmlns='{ROSTER}'><item jid='x@example.net'><group>A</group><group>A</group></item></query></iq>")).await;
    assert_eq!(bad.attr("type"), Some("error"));

    alice.send(&format!("<iq type='set' id='r1'><query xmlns='{ROSTER}'><item jid='romeo@example.net' subscription='remove'/></query></iq>")).await;
    let removal = expect(&mut alice, is_push).await;
    let removed = removal.get_child("query", ROSTER).and_then(|q| q.children().next().cloned()).expect("item");
    assert_eq!(removed.attr("subscription"), Some("remove"));
    assert!(items(&roster(&mut alice, Some("")).await.expect("roster")).is_empty());
}

/// Alice and Bob subscribe to each other; presence then flows both ways.
#[tokio::test]
async fn mutual_subscription_and_presence() {
    let server = server_with(&["alice", "bob"]).await;
    let mut alice = server.login("alice", "a").await;
    let mut bob = server.login("bob", "b").await;
    roster(&mut alice, None).await;
    roster(&mut bob, None).await;
    alice.presence(0).await;
    bob.presence(0).await;
    expect(&mut alice, is_presence(None, "alice@localhost/a")).await;
    expect(&mut bob, is_presence(None, "bob@localhost/b")).await;

    // none + pending out → Bob gets the request from Alice's bare JID.
    alice.send("<presence to='bob@localhost' type='subscribe'/>").await;
    let push = expect(&mut alice, is_push).await;
    assert_eq!(
        items(push.get_child("query", ROSTER).expect("q")),
        vec![("bob@localhost".into(), "none".into(), Some("subscribe".into()))]
    );
    expect(&mut bob, is_presence(Some("subscribe"), "alice@localhost")).await;

    // Bob approves: Bob's item becomes 'from'; Alice's 'to'; Alice gets Bob's presence.
    bob.send("<presence to='alice@localhost' type='subscribed'/>").await;
    let push = expect(&mut bob, is_push).await;
    assert_eq!(
        items(push.get_child("query", ROSTER).expect("q")),
        vec![("alice@localhost".into(), "from".into(), None)]
    );
    let push_to = |s: &Element| {
        is_push(s)
            && s.get_child("query", ROSTER)
                .is_some_and(|q| items(q) == vec![("bob@localhost".into(), "to".into(), None)])
    };
    expect_all(
        &mut alice,
        vec![
            Box::new(push_to),
            Box::new(is_presence(Some("subscribed"), "bob@localhost")),
            Box::new(is_presence(None, "bob@localhost/b")),
        ],
    )
    .await;

    // Bob's status change reaches Alice; Alice's does not reach Bob (he is not subscribed).
    bob.send("<presence><show>away</show></presence>").await;
    let away = expect(&mut alice, is_presence(None, "bob@localhost/b")).await;
    assert_eq!(away.get_child("show", "jabber:client").map(|s| s.text()).as_deref(), Some("away"));
    alice.send("<presence><show>dnd</show></presence>").await;
    expect(&mut alice, is_presence(None, "alice@localhost/a")).await;
    assert!(
        bob.sync().await.iter().all(|s| s.attr("from") != Some("alice@localhost/a")),
        "bob is not subscribed to alice"
    );

    // Bob subscribes back and Alice approves: both.
    bob.send("<presence to='alice@localhost' type='subscribe'/>").await;
    expect(&mut alice, is_presence(Some("subscribe"), "bob@localhost")).await;
    alice.send("<presence to='bob@localhost' type='subscribed'/>").await;
    let push = expect(&mut alice, is_push).await;
    assert_eq!(items(push.get_child("query", ROSTER).expect("q")), vec![("bob@localhost".into(), "both".into(), None)]);
    // Bob first sees his own pending request pushed, then the completed subscription.
    expect(&mut bob, |s| {
        is_push(s)
            && s.get_child("query", ROSTER)
                .is_some_and(|q| items(q) == vec![("alice@localhost".into(), "both".into(), None)])
    })
    .await;

    // A disconnect is broadcast as unavailable (RFC 6121 §4.5.2).
    drop(alice);
    expect(&mut bob, is_presence(Some("unavailable"), "alice@localhost/a")).await;
}

#[tokio::test]
async fn probes_on_login_and_requests_stored_while_offline() {
    let server = server_with(&["alice", "bob"]).await;
    let mut alice = server.login("alice", "a").await;
    roster(&mut alice, None).await;
    alice.presence(0).await;
    expect(&mut alice, is_presence(None, "alice@localhost/a")).await;
    // Bob is offline: his request waits (RFC 6121 §3.1.3).
    alice.send("<presence to='bob@localhost' type='subscribe'/>").await;
    expect(&mut alice, is_push).await;
    alice.sync().await;

    let mut bob = server.login("bob", "b").await;
    bob.presence(0).await;
    expect(&mut bob, is_presence(Some("subscribe"), "alice@localhost")).await;
    bob.send("<presence to='alice@localhost' type='subscribed'/>").await;
    expect(&mut alice, is_presence(None, "bob@localhost/b")).await;

    // Alice logs in again elsewhere: her probe returns Bob's presence (RFC 6121 §4.3).
    let mut alice2 = server.login("alice", "second").await;
    alice2.presence(0).await;
    expect(&mut alice2, is_presence(None, "bob@localhost/b")).await;
}

#[tokio::test]
async fn pre_approval_answers_the_request_automatically() {
    let server = server_with(&["alice", "bob"]).await;
    let mut alice = server.login("alice", "a").await;
    let mut bob = server.login("bob", "b").await;
    roster(&mut bob, None).await;
    bob.presence(0).await;
    // Bob pre-approves Alice (RFC 6121 §3.4): a push with approved='true', nothing routed.
    bob.send("<presence to='alice@localhost' type='subscribed'/>").await;
    let push = expect(&mut bob, is_push).await;
    let item = push.get_child("query", ROSTER).and_then(|q| q.children().next().cloned()).expect("item");
    assert_eq!(item.attr("approved"), Some("true"));
    roster(&mut alice, None).await;
    alice.presence(0).await;
    alice.send("<presence to='bob@localhost' type='subscribe'/>").await;
    expect_all(
        &mut alice,
        vec![
            Box::new(is_presence(Some("subscribed"), "bob@localhost")),
            Box::new(is_presence(None, "bob@localhost/b")),
        ],
    )
    .await;
    assert!(bob.sync().await.iter().all(|s| s.attr("type") != Some("subscribe")), "bob was not asked");
}

#[tokio::test]
async fn stream_features_advertise_roster_versioning() {
    let server = server_with(&["alice"]).await;
    let mut conn = common::Conn::tcp(server.addr()).await;
    conn.open().await;
    conn.starttls().await;
    conn.auth("alice", "pw").await.expect("auth");
    let features = conn.open().await;
    assert!(features.has_child("ver", "urn:xmpp:features:rosterver"), "{features:?}");
    assert!(features.has_child("sub", "urn:xmpp:features:pre-approval"), "{features:?}");
}

/// A burst of status changes reaches a subscriber in the order sent, the last one last
/// (each change needs a roster lookup; racing lookups used to reorder them).
#[tokio::test]
async fn presence_updates_arrive_in_the_order_sent() {
    let server = server_with(&["alice", "bob"]).await;
    let mut alice = server.login("alice", "a").await;
    let mut bob = server.login("bob", "b").await;
    alice.presence(0).await;
    bob.presence(0).await;
    alice.send("<presence to='bob@localhost' type='subscribe'/>").await;
    expect(&mut bob, is_presence(Some("subscribe"), "alice@localhost")).await;
    bob.send("<presence to='alice@localhost' type='subscribed'/>").await;
    expect(&mut alice, is_presence(None, "bob@localhost/b")).await;
    const UPDATES: usize = 100;
    for i in 0..UPDATES {
        bob.send(&format!("<presence><status>{i}</status></presence>")).await;
    }
    let mut statuses = Vec::new();
    while statuses.len() < UPDATES {
        let update = expect(&mut alice, is_presence(None, "bob@localhost/b")).await;
        let status = update.get_child("status", "jabber:client").map(|s| s.text()).unwrap_or_default();
        statuses.push(status.parse::<usize>().expect("numbered status"));
    }
    assert_eq!(statuses, (0..UPDATES).collect::<Vec<_>>());
}

/// A client pushing 10,000 roster sets: the first `[modules.roster] max_items` are
/// stored and pushed, the rest refused with `not-allowed` before any write, and a
/// subscription to one more contact adds nothing either. The roster stays usable.
#[tokio::test]
async fn ten_thousand_roster_sets_stop_at_the_roster_limit() {
    let server = TestServer::start_with(|c| {
        c.limits.c2s_stanzas_per_second = 0;
        c.modules.settings.insert("roster".into(), toml::from_str("max_items = 100").expect("settings"));
    })
    .await;
    server.add_user("alice", "pw").await;
    let mut alice = server.login("alice", "desk").await;
    roster(&mut alice, None).await;
    let sets: String = (0..10_000)
        .map(|i| {
            format!("<iq type='set' id='s{i}'><query xmlns='{ROSTER}'><item jid='c{i}@example.net'/></query></iq>")
        })
        .collect();
    alice.send(&sets).await;
    let (mut stored, mut refused, mut pushes) = (0, 0, 0);
    while stored + refused < 10_000 {
        let stanza = alice.recv().await;
        match (stanza.attr("type"), stanza.attr("id").is_some_and(|id| id.starts_with('s'))) {
            (Some("result"), true) => stored += 1,
            (Some("error"), true) => {
                let error = stanza.get_child("error", "jabber:client").expect("error");
                assert!(error.has_child("not-allowed", "urn:ietf:params:xml:ns:xmpp-stanzas"), "{stanza:?}");
                refused += 1;
            }
            (Some("set"), false) => pushes += 1,
            _ => {}
        }
    }
    assert_eq!((stored, refused), (100, 9_900));
    alice.send("<presence to='more@example.net' type='subscribe'/>").await;
    // A roster set runs after the subscription in the account's lane.
    let (renamed, early) = alice
        .iq(&format!(
            "<iq type='set' id='{{id}}'><query xmlns='{ROSTER}'><item jid='c0@example.net' name='First'/></query></iq>"
        ))
        .await;
    assert_eq!(renamed.attr("type"), Some("result"), "an item in the roster can still change: {renamed:?}");
    pushes += early.iter().filter(|s| s.attr("type") == Some("set")).count();
    let query = roster(&mut alice, None).await.expect("roster");
    let contacts = items(&query);
    assert_eq!(contacts.len(), 100, "only the first hundred are kept");
    assert!(contacts.iter().all(|(jid, _, _)| jid != "more@example.net"));
    // A push for each of the hundred and for the rename (some came with the answers).
    while pushes < 101 {
        if alice.recv().await.attr("type") == Some("set") {
            pushes += 1;
        }
    }
}

//! XEP-0357 push notifications over real sockets: an app server connected as an
//! XEP-0114 component receives the notifications the server publishes for a device
//! that is inactive (XEP-0352), hibernating or offline, and none while it is active;
//! registrations survive a restart; a refusing app server disables the registration;
//! `<disable/>` removes it; a deleted account's devices are not woken for a new account
//! of the same name; and slixmpp, as an independent app server, parses what is
//! published.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::client::Event;
use common::component::Component;
use common::peers::{free_port, slixmpp_available};
use common::{Client, TestServer};
use minidom::Element;
use tokio::io::{AsyncBufReadExt, BufReader};

const APP_SERVER: &str = "push.localhost";
const SECRET: &str = "pushsecret";
const NS_PUSH: &str = "urn:xmpp:push:0";
const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_DATA: &str = "jabber:x:data";

async fn server(port: u16) -> TestServer {
    let server = TestServer::start_with(|config| {
        let table = format!("listen = [\"127.0.0.1:{port}\"]\n[domains.\"{APP_SERVER}\"]\nsecret = \"{SECRET}\"\n");
        config.modules.settings.insert("component".into(), toml::from_str(&table).expect("table"));
        let push = "include_sender = true\ninclude_body = true\n";
        config.modules.settings.insert("push".into(), toml::from_str(push).expect("table"));
    })
    .await;
    for user in ["alice", "bob", "carol"] {
        server.add_user(user, "pw").await;
    }
    server
}

/// A published notification, as the app server sees it.
#[derive(Debug)]
struct Notification {
    iq: Element,
    node: String,
}

impl Notification {
    fn field(&self, var: &str) -> Option<String> {
        self.iq
            .get_child("pubsub", NS_PUBSUB)?
            .get_child("publish", NS_PUBSUB)?
            .get_child("item", NS_PUBSUB)?
            .get_child("notification", NS_PUSH)?
            .get_child("x", NS_DATA)?
            .children()
            .find(|f| f.attr("var") == Some(var))?
            .get_child("value", NS_DATA)
            .map(Element::text)
    }

    fn option(&self, var: &str) -> Option<String> {
        self.iq
            .get_child("pubsub", NS_PUBSUB)?
            .get_child("publish-options", NS_PUBSUB)?
            .get_child("x", NS_DATA)?
            .children()
            .find(|f| f.attr("var") == Some(var))?
            .get_child("value", NS_DATA)
            .map(Element::text)
    }
}

/// The next publish request; answered with a result, or with `error` (XML) if given.
async fn next_notification(app: &mut Component, error: Option<&str>) -> Notification {
    let iq = app.recv().await;
    assert_eq!((iq.name(), iq.attr("type")), ("iq", Some("set")), "{iq:?}");
    assert_eq!(iq.attr("from"), Some("alice@localhost"), "published from the account's bare JID");
    let node = iq
        .get_child("pubsub", NS_PUBSUB)
        .and_then(|p| p.get_child("publish", NS_PUBSUB))
        .and_then(|p| p.attr("node"))
        .expect("a publish to a node")
        .to_owned();
    let id = iq.attr("id").expect("id");
    let answer = match error {
        None => format!("<iq type='result' from='{APP_SERVER}' to='alice@localhost' id='{id}'/>"),
        Some(error) => format!("<iq type='error' from='{APP_SERVER}' to='alice@localhost' id='{id}'>{error}</iq>"),
    };
    app.send(&answer).await;
    Notification { iq, node }
}

async fn enable(client: &mut Client, node: &str, options: &str) {
    let (reply, _) = client
        .iq(&format!("<iq type='set' id='{{id}}'><enable xmlns='{NS_PUSH}' jid='{APP_SERVER}' node='{node}'>{options}</enable></iq>"))
        .await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
}

/// Closes the stream and waits for the server's closing tag, which it writes after
/// the session left the table.
async fn log_out(mut client: Client) {
    client.send("</stream:stream>").await;
    while !matches!(client.conn.next().await, Event::Footer | Event::Closed) {}
}

async fn chat(from: &mut Client, to: &str, text: &str) {
    from.send(&format!("<message to='{to}' type='chat' id='{text}'><body>{text}</body></message>")).await;
    from.sync().await;
}

const SECRET_FORM: &str = "<x xmlns='jabber:x:data' type='submit'>\
    <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
    <field var='secret'><value>device-secret</value></field></x>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_that_cannot_show_a_message_are_woken_and_active_ones_are_not() {
    let port = free_port();
    let server = server(port).await;
    let mut app = Component::connect(port, APP_SERVER, SECRET).await;
    let mut alice = server.login("alice", "phone").await;
    let mut bob = server.login("bob", "desk").await;
    let mut carol = server.login("carol", "pc").await;
    alice.presence(0).await;

    let (info, _) =
        alice.iq("<iq type='get' id='{id}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let features: Vec<_> = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .map(|q| q.children().filter_map(|f| f.attr("var").map(str::to_owned)).collect())
        .unwrap_or_default();
    assert!(features.iter().any(|f| f == NS_PUSH), "the account advertises push: {features:?}");
    enable(&mut alice, "phone-node", SECRET_FORM).await;

    // Active: the phone shows it itself.
    chat(&mut bob, "alice@localhost", "while-active").await;
    assert_eq!(alice.recv_message().await.attr("id"), Some("while-active"));

    // Inactive (the screen is off): delivered, and the device is woken.
    alice.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    alice.sync().await;
    chat(&mut bob, "alice@localhost", "while-inactive").await;
    let first = next_notification(&mut app, None).await;
    assert_eq!(first.node, "phone-node");
    assert_eq!(first.field("FORM_TYPE").as_deref(), Some("urn:xmpp:push:summary"));
    assert_eq!(first.field("message-count").as_deref(), Some("1"), "nothing was pushed while active");
    assert_eq!(first.field("last-message-body").as_deref(), Some("while-inactive"));
    assert_eq!(first.field("last-message-sender").as_deref(), Some("bob@localhost/desk"));
    assert_eq!(first.option("secret").as_deref(), Some("device-secret"), "the client's publish-options");
    assert_eq!(alice.recv_message().await.attr("id"), Some("while-inactive"));

    // Offline: stored, and the device is woken.
    log_out(alice).await;
    chat(&mut bob, "alice@localhost", "while-offline").await;
    let second = next_notification(&mut app, None).await;
    assert_eq!(second.field("message-count").as_deref(), Some("2"));
    assert_eq!(second.field("last-message-body").as_deref(), Some("while-offline"));

    // A subscription request wakes it too; chat states do not.
    bob.send("<message to='alice@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
        .await;
    carol.send("<presence to='alice@localhost' type='subscribe'/>").await;
    let third = next_notification(&mut app, None).await;
    assert_eq!(third.field("pending-subscription-count").as_deref(), Some("1"), "{:?}", third.iq);
    assert_eq!(third.field("message-count").as_deref(), Some("2"));

    // Back online: the counts start again, and an active device gets no pushes.
    let mut alice = server.login("alice", "phone").await;
    alice.presence(0).await;
    chat(&mut bob, "alice@localhost", "back").await;
    alice.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    alice.sync().await;
    chat(&mut bob, "alice@localhost", "later").await;
    let fourth = next_notification(&mut app, None).await;
    assert_eq!(fourth.field("message-count").as_deref(), Some("1"), "reset by the new session");
    assert_eq!(fourth.field("last-message-body").as_deref(), Some("later"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_survive_a_restart_refusals_disable_them_and_disable_removes_them() {
    let port = free_port();
    let mut server = server(port).await;
    let mut alice = server.login("alice", "phone").await;
    enable(&mut alice, "node-a", "").await;
    enable(&mut alice, "node-b", "").await;
    log_out(alice).await;

    server.restart().await;
    let mut app = Component::connect(port, APP_SERVER, SECRET).await;
    let mut bob = server.login("bob", "desk").await;

    // Both stored registrations are woken, one after the other; the app server refuses
    // the first it sees (the device was uninstalled).
    chat(&mut bob, "alice@localhost", "m1").await;
    let refused = next_notification(
        &mut app,
        Some("<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"),
    )
    .await;
    let kept = next_notification(&mut app, None).await;
    assert_ne!(refused.node, kept.node);
    assert_eq!(kept.field("last-message-body").as_deref(), Some("m1"));

    // The refused one is gone: the next message wakes only the other, first.
    chat(&mut bob, "alice@localhost", "m2").await;
    let next = next_notification(&mut app, None).await;
    assert_eq!((next.node.as_str(), next.field("last-message-body").as_deref()), (kept.node.as_str(), Some("m2")));

    // `<disable/>` removes the other; a new registration is then the only one woken.
    let mut alice = server.login("alice", "phone").await;
    let (reply, _) = alice
        .iq(&format!(
            "<iq type='set' id='{{id}}'><disable xmlns='{NS_PUSH}' jid='{APP_SERVER}' node='{}'/></iq>",
            kept.node
        ))
        .await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    enable(&mut alice, "node-c", "").await;
    log_out(alice).await;
    chat(&mut bob, "alice@localhost", "m3").await;
    let last = next_notification(&mut app, None).await;
    assert_eq!((last.node.as_str(), last.field("last-message-body").as_deref()), ("node-c", Some("m3")));

    // An enable without a node is a bad request (XEP-0357 §5).
    let mut alice = server.login("alice", "phone").await;
    let (reply, _) =
        alice.iq(&format!("<iq type='set' id='{{id}}'><enable xmlns='{NS_PUSH}' jid='{APP_SERVER}'/></iq>")).await;
    assert_eq!(reply.attr("type"), Some("error"), "{reply:?}");
    assert!(format!("{reply:?}").contains("bad-request"), "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_accounts_devices_are_not_woken_for_a_new_account_of_that_name() {
    let port = free_port();
    let server = server(port).await;
    let mut app = Component::connect(port, APP_SERVER, SECRET).await;
    let mut alice = server.login("alice", "phone").await;
    enable(&mut alice, "old-owners-phone", "").await;
    log_out(alice).await;

    let accounts = server.server.as_ref().expect("running").context.accounts();
    let jid = starling_api::parse_bare_jid("alice@localhost").expect("jid");
    accounts.delete(&jid).await.expect("deleted");
    accounts.create(&jid, "pw").await.expect("created again");
    let mut alice = server.login("alice", "phone").await;
    enable(&mut alice, "new-owners-phone", "").await;
    log_out(alice).await;

    let mut bob = server.login("bob", "desk").await;
    chat(&mut bob, "alice@localhost", "for-the-new-alice").await;
    let woken = next_notification(&mut app, None).await;
    assert_eq!(woken.node, "new-owners-phone", "only the new owner's device");
    // Nothing else was published: the next request the app server sees is this one.
    chat(&mut bob, "alice@localhost", "second").await;
    let next = next_notification(&mut app, None).await;
    assert_eq!((next.node.as_str(), next.field("last-message-body").as_deref()), ("new-owners-phone", Some("second")));
}

/// The same with an independent implementation on the app server's side: slixmpp's
/// component (PyPI) parses what the server publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slixmpp_app_server_receives_the_notifications() {
    if !slixmpp_available() {
        return;
    }
    let port = free_port();
    let server = server(port).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/slix_push_appserver.py");
    let mut child = tokio::process::Command::new("python3")
        .args([script, "127.0.0.1", &port.to_string(), APP_SERVER, SECRET, "--notifications", "2"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let wait = Duration::from_secs(60);
    let mut next_line = async || tokio::time::timeout(wait, lines.next_line()).await.expect("in time").ok().flatten();
    assert_eq!(next_line().await.as_deref(), Some("ok: component connected"));

    let mut alice = server.login("alice", "phone").await;
    let mut bob = server.login("bob", "desk").await;
    alice.presence(0).await;
    enable(&mut alice, "slix-node", SECRET_FORM).await;
    alice.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    alice.sync().await;
    chat(&mut bob, "alice@localhost", "first").await;
    assert_eq!(next_line().await.as_deref(), Some("ok: push from=alice@localhost node=slix-node count=1 body=first"));
    log_out(alice).await;
    chat(&mut bob, "alice@localhost", "second").await;
    assert_eq!(next_line().await.as_deref(), Some("ok: push from=alice@localhost node=slix-node count=2 body=second"));
    let status = tokio::time::timeout(wait, child.wait()).await.expect("app server exits").expect("status");
    assert!(status.success());
}

/// In group chats only mentions wake a device: a message in a room the inactive
/// session joined counts when it names the session's nickname.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_chat_mention_wakes_the_device_other_room_messages_do_not() {
    let port = free_port();
    let server = server(port).await;
    let mut app = Component::connect(port, APP_SERVER, SECRET).await;
    let room = "lounge@conference.localhost";
    let mut bob = server.login("bob", "desk").await;
    bob.send(&format!("<presence to='{room}/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>")).await;
    bob.sync().await;
    let (configured, _) = bob
        .iq(&format!(
            "<iq type='set' id='{{id}}' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'>\
             <x xmlns='jabber:x:data' type='submit'/></query></iq>"
        ))
        .await;
    assert_eq!(configured.attr("type"), Some("result"), "{configured:?}");
    let mut alice = server.login("alice", "phone").await;
    alice.send(&format!("<presence to='{room}/Alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>")).await;
    alice.sync().await;
    enable(&mut alice, "phone-node", "").await;
    alice.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    alice.sync().await;

    let say = |text: &str| format!("<message to='{room}' type='groupchat'><body>{text}</body></message>");
    bob.send(&say("good morning, everyone")).await;
    bob.send(&say("hey Alice, look at this")).await;
    bob.sync().await;
    let woken = next_notification(&mut app, None).await;
    assert_eq!(woken.field("last-message-body").as_deref(), Some("hey Alice, look at this"), "only the mention");
    assert_eq!(woken.field("message-count").as_deref(), Some("1"));
}

//! Stream management (XEP-0198) over real sockets: acknowledgement counters both ways,
//! resumption after a killed connection with nothing lost or duplicated, refused
//! resumptions, hibernation expiring into offline storage, takeover of a hibernating
//! session by a new bind, and the limit on unacknowledged stanzas.

mod common;

use common::{Client, Conn, TestServer};
use minidom::Element;

const NS_SM: &str = "urn:xmpp:sm:3";
const NS_SID: &str = "urn:xmpp:sid:0";

async fn server_with(adjust: impl FnOnce(&mut starling::config::Config)) -> TestServer {
    let server = TestServer::start_with(adjust).await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    server
}

/// Sends `<enable/>` and returns `<enabled/>`.
async fn enable(client: &mut Client, attrs: &str) -> Element {
    client.send(&format!("<enable xmlns='{NS_SM}' {attrs}/>")).await;
    let enabled = client.recv().await;
    assert!(enabled.is("enabled", NS_SM), "{enabled:?}");
    enabled
}

/// The next message, skipping presence, IQs and the server's ack requests.
async fn next_message(conn: &mut Conn) -> Element {
    loop {
        let stanza = conn.recv().await;
        if stanza.name() == "message" {
            return stanza;
        }
    }
}

/// The next presence from `from`, skipping anything else.
async fn presence_from(client: &mut Client, from: &str) -> Element {
    loop {
        let stanza = client.recv().await;
        if stanza.name() == "presence" && stanza.attr("from") == Some(from) {
            return stanza;
        }
    }
}

fn body(stanza: &Element) -> String {
    stanza.get_child("body", "jabber:client").map(|b| b.text()).unwrap_or_default()
}

fn stanza_id(stanza: &Element) -> Option<String> {
    stanza.get_child("stanza-id", NS_SID).and_then(|s| s.attr("id")).map(str::to_owned)
}

async fn chat(from: &mut Client, to: &str, text: &str) {
    from.send(&format!("<message to='{to}' type='chat' id='{text}'><body>{text}</body></message>")).await;
}

/// A new connection authenticated as `user`, asking to resume `previd`: the answer.
async fn resume(server: &TestServer, user: &str, previd: &str, h: u32) -> (Conn, Element) {
    let mut conn = Conn::tcp(server.addr()).await;
    conn.open().await;
    conn.starttls().await;
    conn.auth(user, "pw").await.expect("authenticated");
    let features = conn.open().await;
    assert!(features.get_child("sm", NS_SM).is_some(), "stream management offered after SASL: {features:?}");
    conn.send(&format!("<resume xmlns='{NS_SM}' previd='{previd}' h='{h}'/>")).await;
    let answer = conn.recv().await;
    (conn, answer)
}

/// Alice's archive: the bodies of the messages in it, once per archived copy.
async fn archived_bodies(client: &mut Client) -> Vec<String> {
    let (reply, others) = client.iq("<iq type='set' id='{id}'><query xmlns='urn:xmpp:mam:2' queryid='q'/></iq>").await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    others
        .iter()
        .filter_map(|m| m.get_child("result", "urn:xmpp:mam:2"))
        .filter_map(|r| r.get_child("forwarded", "urn:xmpp:forward:0"))
        .filter_map(|f| f.get_child("message", "jabber:client"))
        .map(body)
        .collect()
}

#[tokio::test]
async fn acknowledgements_count_both_ways() {
    let server = server_with(|c| c.c2s.sm_request_ack_every = 3).await;
    let mut alice = server.login("alice", "phone").await;
    let mut bob = server.login("bob", "desk").await;
    let enabled = enable(&mut alice, "").await;
    assert_eq!(enabled.attr("id"), None, "not resumable unless asked");

    alice.send(&format!("<r xmlns='{NS_SM}'/>")).await;
    let ack = alice.recv().await;
    assert!(ack.is("a", NS_SM));
    assert_eq!(ack.attr("h"), Some("0"));
    chat(&mut alice, "bob@localhost/desk", "one").await;
    chat(&mut alice, "bob@localhost/desk", "two").await;
    // CSI is not a stanza: it is not counted.
    alice.send("<active xmlns='urn:xmpp:csi:0'/>").await;
    alice.send(&format!("<r xmlns='{NS_SM}'/>")).await;
    let ack = alice.recv().await;
    assert_eq!(ack.attr("h"), Some("2"));
    assert_eq!(body(&next_message(&mut bob.conn).await), "one");

    // Three stanzas to alice: the server asks for an acknowledgement after them.
    for text in ["a", "b", "c"] {
        chat(&mut bob, "alice@localhost/phone", text).await;
    }
    let mut got = Vec::new();
    loop {
        let stanza = alice.recv().await;
        if stanza.is("r", NS_SM) {
            break;
        }
        got.push(body(&stanza));
    }
    assert_eq!(got, ["a", "b", "c"]);
    alice.send(&format!("<a xmlns='{NS_SM}' h='3'/>")).await;
    // Enabling twice is refused.
    alice.send(&format!("<enable xmlns='{NS_SM}'/>")).await;
    let failed = alice.recv().await;
    assert!(failed.is("failed", NS_SM), "{failed:?}");
    assert!(failed.get_child("unexpected-request", "urn:ietf:params:xml:ns:xmpp-stanzas").is_some());
    // Acknowledging stanzas never sent ends the stream.
    alice.send(&format!("<a xmlns='{NS_SM}' h='9'/>")).await;
    let error = alice.recv().await;
    assert!(error.is("error", "http://etherx.jabber.org/streams"), "{error:?}");
    assert!(error.get_child("undefined-condition", "urn:ietf:params:xml:ns:xmpp-streams").is_some());
    let detail = error.get_child("handled-count-too-high", NS_SM).expect("the XEP-0198 detail");
    assert_eq!((detail.attr("h"), detail.attr("send-count")), (Some("9"), Some("3")));
}

#[tokio::test]
async fn resumption_after_a_killed_connection_loses_and_duplicates_nothing() {
    let server = server_with(|_| {}).await;
    let mut alice = server.login("alice", "phone").await;
    let mut bob = server.login("bob", "desk").await;
    let enabled = enable(&mut alice, "resume='true'").await;
    assert_eq!(enabled.attr("resume"), Some("true"));
    assert_eq!(enabled.attr("max"), Some("3600"), "the configured default");
    let previd = enabled.attr("id").expect("a resumption id").to_owned();
    assert!(previd.len() >= 20, "unguessable: {previd}");

    chat(&mut alice, "bob@localhost/desk", "hello").await;
    chat(&mut bob, "alice@localhost/phone", "m1").await;
    chat(&mut bob, "alice@localhost/phone", "m2").await;
    let m1 = next_message(&mut alice.conn).await;
    let m2 = next_message(&mut alice.conn).await;
    assert_eq!((body(&m1), body(&m2)), ("m1".into(), "m2".into()));
    let m2_id = stanza_id(&m2).expect("the archive stamped a stanza id");
    // Alice acknowledges m1 only, then her connection dies.
    alice.send(&format!("<a xmlns='{NS_SM}' h='1'/>")).await;
    drop(alice);
    bob.sync().await;

    // Sent while alice is away: kept for her.
    chat(&mut bob, "alice@localhost/phone", "m3").await;
    chat(&mut bob, "alice@localhost/phone", "m4").await;
    bob.sync().await;

    let (mut conn, resumed) = resume(&server, "alice", &previd, 1).await;
    assert!(resumed.is("resumed", NS_SM), "{resumed:?}");
    assert_eq!(resumed.attr("previd"), Some(previd.as_str()));
    assert_eq!(resumed.attr("h"), Some("1"), "the server handled alice's one message");
    let again: Vec<Element> =
        [next_message(&mut conn).await, next_message(&mut conn).await, next_message(&mut conn).await]
            .into_iter()
            .collect();
    assert_eq!(again.iter().map(body).collect::<Vec<_>>(), ["m2", "m3", "m4"]);
    assert_eq!(stanza_id(&again[0]).as_deref(), Some(m2_id.as_str()), "resent exactly as it was");
    assert_eq!(again[1].attr("to"), Some("alice@localhost/phone"));

    // The session continues: same JID, counters carry on, nothing more is pending.
    let mut alice = Client::on(conn, "alice@localhost/phone");
    let others = alice.sync().await;
    assert!(others.iter().all(|s| s.name() != "message"), "nothing twice: {others:?}");
    alice.send(&format!("<r xmlns='{NS_SM}'/>")).await;
    let ack = alice.recv().await;
    assert_eq!(ack.attr("h"), Some("2"), "the hello and the sync ping");
    chat(&mut bob, "alice@localhost/phone", "m5").await;
    assert_eq!(body(&next_message(&mut alice.conn).await), "m5");
    // Archived once each, however often they were sent.
    let mut archived = archived_bodies(&mut alice).await;
    archived.sort();
    assert_eq!(archived, ["hello", "m1", "m2", "m3", "m4", "m5"]);
}

#[tokio::test]
async fn resuming_from_a_new_connection_while_the_old_one_still_looks_alive() {
    let server = server_with(|_| {}).await;
    let mut alice = server.login("alice", "phone").await;
    let mut bob = server.login("bob", "desk").await;
    let previd = enable(&mut alice, "resume='true'").await.attr("id").expect("id").to_owned();
    chat(&mut bob, "alice@localhost/phone", "m1").await;
    assert_eq!(body(&next_message(&mut alice.conn).await), "m1");
    // The old connection is not closed: the server learns of the move from the resumption.
    let (mut conn, resumed) = resume(&server, "alice", &previd, 0).await;
    assert!(resumed.is("resumed", NS_SM), "{resumed:?}");
    assert_eq!(body(&next_message(&mut conn).await), "m1");
    chat(&mut bob, "alice@localhost/phone", "m2").await;
    assert_eq!(body(&next_message(&mut conn).await), "m2");
    // The old connection is closed by the server.
    assert!(alice.conn.stream_error().await.is_none());
}

#[tokio::test]
async fn resumption_fails_for_unknown_ids_and_other_accounts() {
    let server = server_with(|_| {}).await;
    let mut alice = server.login("alice", "phone").await;
    let previd = enable(&mut alice, "resume='true'").await.attr("id").expect("id").to_owned();

    let (mut conn, failed) = resume(&server, "bob", "not-an-id", 0).await;
    assert!(failed.is("failed", NS_SM), "{failed:?}");
    assert!(failed.get_child("item-not-found", "urn:ietf:params:xml:ns:xmpp-stanzas").is_some());
    assert_eq!(failed.attr("h"), None);
    // Enabling needs a bound resource.
    conn.send(&format!("<enable xmlns='{NS_SM}'/>")).await;
    let failed = conn.recv().await;
    assert!(failed.get_child("unexpected-request", "urn:ietf:params:xml:ns:xmpp-stanzas").is_some(), "{failed:?}");
    // The stream goes on: binding still works.
    assert_eq!(conn.bind(Some("desk")).await.expect("bind"), "bob@localhost/desk");

    // Alice's id does not resume for bob.
    let (_conn, failed) = resume(&server, "bob", &previd, 0).await;
    assert!(failed.is("failed", NS_SM), "{failed:?}");
    assert_eq!(failed.attr("h"), None, "nothing about another account's session");
    // Alice is still there.
    alice.sync().await;
    // After a clean close the id is spent; the answer says what the server had handled.
    alice.presence(0).await;
    alice.send("</stream:stream>").await;
    assert!(alice.conn.stream_error().await.is_none());
    let (_conn, failed) = resume(&server, "alice", &previd, 0).await;
    assert!(failed.is("failed", NS_SM), "{failed:?}");
    assert_eq!(failed.attr("h"), Some("2"), "the sync ping and the presence");
}

#[tokio::test]
async fn hibernation_expires_into_offline_storage_delivered_at_next_login() {
    let server = server_with(|c| c.c2s.sm_resume_timeout = 1).await;
    let mut alice = server.login("alice", "phone").await;
    let mut bob = server.login("bob", "desk").await;
    bob.presence(0).await;
    let enabled = enable(&mut alice, "resume='true' max='600'").await;
    assert_eq!(enabled.attr("max"), Some("1"), "no longer than configured");
    // Directed presence: bob learns when alice's session really ends.
    alice.send("<presence to='bob@localhost/desk'/>").await;
    let available = presence_from(&mut bob, "alice@localhost/phone").await;
    assert_eq!(available.attr("type"), None);

    chat(&mut bob, "alice@localhost/phone", "unacked").await;
    let first = next_message(&mut alice.conn).await;
    let first_id = stanza_id(&first).expect("stanza id");
    drop(alice);
    chat(&mut bob, "alice@localhost/phone", "while away").await;

    // Only when hibernation is over does bob hear that alice left.
    let gone = presence_from(&mut bob, "alice@localhost/phone").await;
    assert_eq!(gone.attr("type"), Some("unavailable"), "{gone:?}");

    let mut alice = server.login("alice", "laptop").await;
    alice.presence(0).await;
    let a = next_message(&mut alice.conn).await;
    let b = next_message(&mut alice.conn).await;
    assert_eq!((body(&a), body(&b)), ("unacked".into(), "while away".into()));
    assert!(a.get_child("delay", "urn:xmpp:delay").is_some(), "delivered from offline storage: {a:?}");
    assert_eq!(stanza_id(&a).as_deref(), Some(first_id.as_str()), "the archive's id is kept");
    assert!(alice.sync().await.iter().all(|s| s.name() != "message"), "each once");
    let mut archived = archived_bodies(&mut alice).await;
    archived.sort();
    assert_eq!(archived, ["unacked", "while away"], "archived once each");
}

#[tokio::test]
async fn a_new_bind_takes_over_a_hibernating_session() {
    let server = server_with(|_| {}).await;
    let mut alice = server.login("alice", "phone").await;
    let mut bob = server.login("bob", "desk").await;
    let previd = enable(&mut alice, "resume='true'").await.attr("id").expect("id").to_owned();
    chat(&mut bob, "alice@localhost/phone", "unacked").await;
    assert_eq!(body(&next_message(&mut alice.conn).await), "unacked");
    drop(alice);

    let mut alice = server.login("alice", "phone").await;
    alice.presence(0).await;
    let again = next_message(&mut alice.conn).await;
    assert_eq!(body(&again), "unacked");
    assert!(again.get_child("delay", "urn:xmpp:delay").is_some(), "through offline storage: {again:?}");
    assert!(alice.sync().await.iter().all(|s| s.name() != "message"));
    // The replaced session cannot be resumed any more.
    let (_conn, failed) = resume(&server, "alice", &previd, 0).await;
    assert!(failed.is("failed", NS_SM), "{failed:?}");
}

#[tokio::test]
async fn too_many_unacknowledged_stanzas_end_the_stream_and_go_offline() {
    let server = server_with(|c| c.c2s.sm_max_unacked = 3).await;
    let mut alice = server.login("alice", "phone").await;
    let mut bob = server.login("bob", "desk").await;
    enable(&mut alice, "").await;
    for i in 1..=5 {
        chat(&mut bob, "alice@localhost/phone", &format!("n{i}")).await;
    }
    assert_eq!(alice.conn.stream_error().await.as_deref(), Some("policy-violation"));
    bob.sync().await;

    let mut alice = server.login("alice", "laptop").await;
    alice.presence(0).await;
    let mut got = Vec::new();
    for _ in 1..=5 {
        got.push(body(&next_message(&mut alice.conn).await));
    }
    got.sort();
    assert_eq!(got, ["n1", "n2", "n3", "n4", "n5"]);
    assert!(alice.sync().await.iter().all(|s| s.name() != "message"));
}

#[tokio::test]
async fn a_clean_close_sends_unacknowledged_stanzas_offline() {
    let server = server_with(|_| {}).await;
    let mut alice = server.login("alice", "phone").await;
    let mut bob = server.login("bob", "desk").await;
    enable(&mut alice, "").await;
    chat(&mut bob, "alice@localhost/phone", "unacked").await;
    assert_eq!(body(&next_message(&mut alice.conn).await), "unacked");
    alice.send("</stream:stream>").await;
    assert!(alice.conn.stream_error().await.is_none());

    let mut alice = server.login("alice", "laptop").await;
    alice.presence(0).await;
    assert_eq!(body(&next_message(&mut alice.conn).await), "unacked");
}

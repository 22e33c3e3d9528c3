//! Message Carbons (XEP-0280) over real sockets.

mod common;

use common::{Client, TestServer};
use minidom::Element;

const CARBONS: &str = "urn:xmpp:carbons:2";

async fn enable(client: &mut Client) {
    let (reply, _) = client.iq(&format!("<iq type='set' id='{{id}}'><enable xmlns='{CARBONS}'/></iq>")).await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
}

/// The forwarded message inside a carbon of `kind`, if `stanza` is one.
fn forwarded<'a>(stanza: &'a Element, kind: &str) -> Option<&'a Element> {
    stanza.get_child(kind, CARBONS)?.get_child("forwarded", "urn:xmpp:forward:0")?.get_child("message", "jabber:client")
}

fn body(stanza: &Element) -> Option<String> {
    stanza.get_child("body", "jabber:client").map(|b| b.text())
}

async fn next_message(client: &mut Client) -> Element {
    client.recv_message().await
}

#[tokio::test]
async fn sent_and_received_copies_reach_the_other_resources() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let mut desk = server.login("alice", "desk").await;
    let mut phone = server.login("alice", "phone").await;
    let mut bob = server.login("bob", "b").await;
    enable(&mut desk).await;
    enable(&mut phone).await;
    desk.presence(5).await;
    phone.presence(1).await;

    // Sent from the desk: the phone gets a <sent/> copy from the account's bare JID.
    desk.send("<message to='bob@localhost/b' type='chat' id='s1'><body>from desk</body></message>").await;
    assert_eq!(body(&next_message(&mut bob).await).as_deref(), Some("from desk"));
    let copy = next_message(&mut phone).await;
    assert_eq!(copy.attr("from"), Some("alice@localhost"));
    let original = forwarded(&copy, "sent").expect("sent carbon");
    assert_eq!((original.attr("from"), original.attr("to")), (Some("alice@localhost/desk"), Some("bob@localhost/b")));

    // To the bare JID: the higher-priority desk gets it, the phone a <received/> copy.
    bob.send("<message to='alice@localhost' type='chat'><body>to alice</body></message>").await;
    assert_eq!(body(&next_message(&mut desk).await).as_deref(), Some("to alice"));
    let copy = next_message(&mut phone).await;
    assert_eq!(forwarded(&copy, "received").and_then(body).as_deref(), Some("to alice"));

    // To a full JID: the other resource gets a copy too.
    bob.send("<message to='alice@localhost/phone' type='chat'><body>to phone</body></message>").await;
    assert_eq!(body(&next_message(&mut phone).await).as_deref(), Some("to phone"));
    let copy = next_message(&mut desk).await;
    assert_eq!(forwarded(&copy, "received").and_then(body).as_deref(), Some("to phone"));

    // <private/> opts out; after <disable/> nothing is copied.
    desk.send(&format!(
        "<message to='bob@localhost/b' type='chat'><body>secret</body><private xmlns='{CARBONS}'/></message>"
    ))
    .await;
    next_message(&mut bob).await;
    assert!(phone.sync().await.iter().all(|s| s.name() != "message"), "private message was copied");
    let (reply, _) = phone.iq(&format!("<iq type='set' id='{{id}}'><disable xmlns='{CARBONS}'/></iq>")).await;
    assert_eq!(reply.attr("type"), Some("result"));
    desk.send("<message to='bob@localhost/b' type='chat'><body>after disable</body></message>").await;
    next_message(&mut bob).await;
    assert!(phone.sync().await.iter().all(|s| s.name() != "message"), "copied after disable");
}

#[tokio::test]
async fn server_advertises_carbons() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let mut alice = server.login("alice", "a").await;
    assert!(alice.server_features().await.iter().any(|f| f == CARBONS));
}

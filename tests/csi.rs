//! Client State Indication (XEP-0352) over real sockets: an inactive client is spared
//! presence updates and chat states until it is active again or something important
//! arrives; messages with content go out at once.

mod common;

use std::time::Duration;

use common::TestServer;

/// How long "nothing arrives" is watched for. Only absence is timed; everything the
/// test expects to arrive is awaited.
const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn inactive_clients_get_only_what_matters() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let mut conn = common::Conn::tcp(server.addr()).await;
    conn.open().await;
    conn.starttls().await;
    conn.auth("bob", "pw").await.expect("auth");
    let features = conn.open().await;
    assert!(features.has_child("csi", "urn:xmpp:csi:0"), "{features:?}");
    drop(conn);

    let mut alice = server.login("alice", "a").await;
    let mut bob = server.login("bob", "b").await;
    bob.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    bob.sync().await;

    alice.send("<presence to='bob@localhost/b'><show>away</show></presence>").await;
    alice.send("<presence to='bob@localhost/b'><show>dnd</show></presence>").await;
    alice.send("<message to='bob@localhost/b' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>").await;
    alice.sync().await;
    assert!(tokio::time::timeout(QUIET, bob.recv()).await.is_err(), "an inactive client got a presence or chat state");

    // Becoming active delivers what was held: the latest presence only, then the chat state.
    bob.send("<active xmlns='urn:xmpp:csi:0'/>").await;
    let presence = bob.recv().await;
    assert_eq!(presence.name(), "presence");
    assert_eq!(presence.get_child("show", "jabber:client").map(|s| s.text()).as_deref(), Some("dnd"));
    let state = bob.recv().await;
    assert!(state.has_child("composing", "http://jabber.org/protocol/chatstates"));

    // A message with a body goes out at once, taking held stanzas along first.
    bob.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    bob.sync().await;
    alice.send("<message to='bob@localhost/b' type='chat'><paused xmlns='http://jabber.org/protocol/chatstates'/></message>").await;
    alice.send("<message to='bob@localhost/b' type='chat'><body>wake up</body></message>").await;
    let first = bob.recv().await;
    assert!(first.has_child("paused", "http://jabber.org/protocol/chatstates"));
    let second = bob.recv().await;
    assert_eq!(second.get_child("body", "jabber:client").map(|b| b.text()).as_deref(), Some("wake up"));
}

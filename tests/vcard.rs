//! vcard-temp (XEP-0054) over real sockets: set, get own and others', persistence.

mod common;

use common::TestServer;

const VCARD: &str = "vcard-temp";

#[tokio::test]
async fn vcards_are_stored_and_public() {
    let mut server = TestServer::start().await;
    for user in ["alice", "bob", "carol"] {
        server.add_user(user, "pw").await;
    }
    let mut alice = server.login("alice", "a").await;
    let (reply, _) = alice
        .iq(&format!("<iq type='set' id='{{id}}'><vCard xmlns='{VCARD}'><FN>Alice Liddell</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>iVBORw0KGgo=</BINVAL></PHOTO></vCard></iq>"))
        .await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let (own, _) = alice.iq(&format!("<iq type='get' id='{{id}}'><vCard xmlns='{VCARD}'/></iq>")).await;
    let card = own.get_child("vCard", VCARD).expect("own vCard");
    assert_eq!(card.get_child("FN", VCARD).map(|f| f.text()).as_deref(), Some("Alice Liddell"));
    drop(alice);

    server.restart().await;
    let mut bob = server.login("bob", "b").await;
    let (theirs, _) =
        bob.iq(&format!("<iq type='get' id='{{id}}' to='alice@localhost'><vCard xmlns='{VCARD}'/></iq>")).await;
    let photo = theirs.get_child("vCard", VCARD).and_then(|c| c.get_child("PHOTO", VCARD)).expect("photo");
    assert_eq!(photo.get_child("BINVAL", VCARD).map(|b| b.text()).as_deref(), Some("iVBORw0KGgo="));
    let (empty, _) =
        bob.iq(&format!("<iq type='get' id='{{id}}' to='carol@localhost'><vCard xmlns='{VCARD}'/></iq>")).await;
    assert_eq!(empty.get_child("vCard", VCARD).map(|c| c.children().count()), Some(0));
    // Nobody can set another account's vCard.
    let (denied, _) = bob
        .iq(&format!(
            "<iq type='set' id='{{id}}' to='alice@localhost'><vCard xmlns='{VCARD}'><FN>Mallory</FN></vCard></iq>"
        ))
        .await;
    assert_eq!(denied.attr("type"), Some("error"));
}

#[tokio::test]
async fn oversized_vcards_are_refused() {
    let server = TestServer::start_with(|c| {
        c.modules.settings.insert("vcard".into(), toml::from_str("max_bytes = 1000").expect("toml"));
    })
    .await;
    server.add_user("alice", "pw").await;
    let mut alice = server.login("alice", "a").await;
    let big = "x".repeat(2000);
    let (reply, _) =
        alice.iq(&format!("<iq type='set' id='{{id}}'><vCard xmlns='{VCARD}'><NOTE>{big}</NOTE></vCard></iq>")).await;
    assert_eq!(reply.attr("type"), Some("error"));
}

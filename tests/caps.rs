//! Entity capabilities of the server (XEP-0115 §6.3): the hash in the stream features
//! matches what disco#info on `node#ver` returns.

mod common;

use common::{Conn, HOST, TestServer};

#[tokio::test]
async fn stream_feature_hash_matches_disco() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let mut conn = Conn::tcp(server.addr()).await;
    conn.open().await;
    conn.starttls().await;
    conn.auth("alice", "pw").await.expect("auth");
    let features = conn.open().await;
    let caps = features.get_child("c", "http://jabber.org/protocol/caps").expect("caps in stream features");
    assert_eq!(caps.attr("hash"), Some("sha-1"));
    let node = format!("{}#{}", caps.attr("node").expect("node"), caps.attr("ver").expect("ver"));
    drop(conn);

    let mut alice = server.login("alice", "a").await;
    let (info, _) = alice.iq(&format!("<iq type='get' id='{{id}}' to='{HOST}'><query xmlns='http://jabber.org/protocol/disco#info' node='{node}'/></iq>")).await;
    let query = info.get_child("query", "http://jabber.org/protocol/disco#info").expect("answered");
    assert_eq!(query.attr("node"), Some(node.as_str()));
    assert!(query.children().any(|f| f.attr("var") == Some("http://jabber.org/protocol/caps")));
    let (wrong, _) = alice.iq(&format!("<iq type='get' id='{{id}}' to='{HOST}'><query xmlns='http://jabber.org/protocol/disco#info' node='urn:starling:server#bogus'/></iq>")).await;
    assert_eq!(wrong.attr("type"), Some("error"));
}

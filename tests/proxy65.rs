//! XEP-0065 SOCKS5 Bytestreams proxy: discovery, streamhost, SOCKS5 pairing,
//! activation (and who may activate), relaying, the per-user bandwidth limit.

mod common;

use std::net::SocketAddr;
use std::time::Instant;

use minidom::Element;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{Client, TestServer, http};

const NS: &str = "http://jabber.org/protocol/bytestreams";

async fn server(bandwidth: i64) -> TestServer {
    let server = TestServer::start_with(move |config| {
        config.http.listen = vec!["127.0.0.1:0".parse().expect("addr")];
        let mut table = toml::Table::new();
        table.insert("listen".into(), toml::Value::String("127.0.0.1:0".into()));
        table.insert("bandwidth_per_user".into(), toml::Value::Integer(bandwidth));
        config.modules.settings.insert("proxy65".into(), toml::Value::Table(table));
    })
    .await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    server
}

fn error_condition(reply: &Element) -> Option<String> {
    let error = reply.get_child("error", "jabber:client")?;
    error.children().find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas").map(|c| c.name().to_owned())
}

/// §4: the proxy's SOCKS5 address, from its streamhost answer.
async fn streamhost(client: &mut Client) -> SocketAddr {
    let (reply, _) =
        client.iq(&format!("<iq type='get' id='{{id}}' to='proxy.localhost'><query xmlns='{NS}'/></iq>")).await;
    assert_eq!(reply.attr("type"), Some("result"), "{}", String::from(&reply));
    let host = reply.get_child("query", NS).and_then(|q| q.get_child("streamhost", NS)).expect("streamhost");
    assert_eq!(host.attr("jid"), Some("proxy.localhost"));
    format!("{}:{}", host.attr("host").expect("host"), host.attr("port").expect("port")).parse().expect("address")
}

fn hash(sid: &str, initiator: &str, target: &str) -> String {
    let digest = Sha1::new().chain_update(sid).chain_update(initiator).chain_update(target).finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 1928 no-auth CONNECT to the DOMAIN `address`; the reply code.
async fn socks_connect(proxy: SocketAddr, address: &str) -> (TcpStream, u8) {
    let mut stream = TcpStream::connect(proxy).await.expect("connect to the proxy");
    stream.write_all(&[5, 1, 0]).await.expect("greeting");
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await.expect("method choice");
    assert_eq!(choice, [5, 0]);
    let mut request = vec![5, 1, 0, 3, address.len() as u8];
    request.extend_from_slice(address.as_bytes());
    request.extend_from_slice(&[0, 0]);
    stream.write_all(&request).await.expect("request");
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).await.expect("reply");
    let mut rest = vec![0u8; usize::from(head[4]) + 2];
    stream.read_exact(&mut rest).await.expect("reply address");
    if head[1] == 0 {
        assert_eq!(&rest[..rest.len() - 2], address.as_bytes(), "the reply echoes the address");
    }
    (stream, head[1])
}

async fn activate(client: &mut Client, sid: &str, target: &str) -> Element {
    let (reply, _) = client
        .iq(&format!(
            "<iq type='set' id='{{id}}' to='proxy.localhost'><query xmlns='{NS}' sid='{sid}'><activate>{target}</activate></query></iq>"
        ))
        .await;
    reply
}

/// Both parties connected for `sid` (target first), ready for activation.
async fn connect_pair(proxy: SocketAddr, sid: &str, alice: &Client, bob: &Client) -> (TcpStream, TcpStream) {
    let address = hash(sid, &alice.jid, &bob.jid);
    let (target, code) = socks_connect(proxy, &address).await;
    assert_eq!(code, 0);
    let (initiator, code) = socks_connect(proxy, &address).await;
    assert_eq!(code, 0);
    (initiator, target)
}

/// Sends `data` from `from` while reading it at `to`; what arrived.
async fn transfer(from: &mut TcpStream, to: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    let mut received = vec![0u8; data.len()];
    let (sent, read) = tokio::join!(from.write_all(data), to.read_exact(&mut received));
    sent.expect("write");
    read.expect("read");
    received
}

fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter(|(series, _)| *series == name)
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn two_clients_transfer_a_file_through_the_proxy() {
    let server = server(0).await;
    let mut alice = server.login("alice", "a").await;
    let bob = server.login("bob", "b").await;

    let (items, _) = alice
        .iq("<iq type='get' id='{id}' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        .await;
    let listed = items.get_child("query", "http://jabber.org/protocol/disco#items").expect("items");
    assert!(listed.children().any(|i| i.attr("jid") == Some("proxy.localhost")), "{}", String::from(&items));
    let (info, _) = alice
        .iq("<iq type='get' id='{id}' to='proxy.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    let info = info.get_child("query", "http://jabber.org/protocol/disco#info").expect("info");
    assert!(info.children().any(|c| c.is("identity", "http://jabber.org/protocol/disco#info")
        && c.attr("category") == Some("proxy")
        && c.attr("type") == Some("bytestreams")));
    assert!(info.children().any(|c| c.attr("var") == Some(NS)));

    let proxy = streamhost(&mut alice).await;
    let (mut initiator, mut target) = connect_pair(proxy, "file-1", &alice, &bob).await;
    let reply = activate(&mut alice, "file-1", &bob.jid).await;
    assert_eq!(reply.attr("type"), Some("result"), "{}", String::from(&reply));

    let file: Vec<u8> = (0..1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let started = Instant::now();
    let received = transfer(&mut initiator, &mut target, &file).await;
    eprintln!("proxy65: 1 MiB relayed in {:?}", started.elapsed());
    assert!(received == file, "the target received other bytes");
    let answer = transfer(&mut target, &mut initiator, b"thanks").await;
    assert_eq!(answer, b"thanks");
}

#[tokio::test]
async fn only_the_initiator_activates_and_unknown_streams_are_refused() {
    let server = server(0).await;
    let mut alice = server.login("alice", "a").await;
    let mut bob = server.login("bob", "b").await;
    let proxy = streamhost(&mut alice).await;

    // Nobody connected with this sid.
    assert_eq!(error_condition(&activate(&mut alice, "nothing", &bob.jid).await).as_deref(), Some("item-not-found"));
    // Only the target has connected so far.
    let (_target, code) = socks_connect(proxy, &hash("half", &alice.jid, &bob.jid)).await;
    assert_eq!(code, 0);
    assert_eq!(error_condition(&activate(&mut alice, "half", &bob.jid).await).as_deref(), Some("not-allowed"));

    let (mut initiator, mut target) = connect_pair(proxy, "file-2", &alice, &bob).await;
    // The target naming the initiator hashes its own JID first: not this stream.
    let alice_jid = alice.jid.clone();
    assert_eq!(error_condition(&activate(&mut bob, "file-2", &alice_jid).await).as_deref(), Some("item-not-found"));
    // A third connection to a paired stream is refused.
    let (_third, code) = socks_connect(proxy, &hash("file-2", &alice.jid, &bob.jid)).await;
    assert_ne!(code, 0);
    // An address that is no stream hash is refused.
    let (_odd, code) = socks_connect(proxy, "example.org").await;
    assert_ne!(code, 0);

    let reply = activate(&mut alice, "file-2", &bob.jid).await;
    assert_eq!(reply.attr("type"), Some("result"), "{}", String::from(&reply));
    assert_eq!(transfer(&mut initiator, &mut target, b"still the right pair").await, b"still the right pair");
}

#[tokio::test]
async fn the_bandwidth_limit_throttles_the_relay() {
    const RATE: usize = 64 * 1024;
    let server = server(RATE as i64).await;
    let mut alice = server.login("alice", "a").await;
    let bob = server.login("bob", "b").await;
    let proxy = streamhost(&mut alice).await;
    let metrics = |server: &TestServer| http::get(server.http_addr(), "/metrics", &[]);
    let before = metrics(&server).await.text();

    let (mut initiator, mut target) = connect_pair(proxy, "slow", &alice, &bob).await;
    let reply = activate(&mut alice, "slow", &bob.jid).await;
    assert_eq!(reply.attr("type"), Some("result"), "{}", String::from(&reply));
    // Three seconds' worth at the limit, beyond the one-second burst.
    let data = vec![7u8; 3 * RATE];
    assert_eq!(transfer(&mut initiator, &mut target, &data).await, data);

    let after = metrics(&server).await.text();
    let moved = |name: &str| sample(&after, name) - sample(&before, name);
    assert!(moved("starling_proxy65_bytes_total") >= data.len() as f64, "{after}");
    assert!(moved("starling_proxy65_throttled_total") >= 1.0, "{after}");
}

//! External components (XEP-0114) over real TCP: slixmpp's component (PyPI, from
//! tests/interop/requirements.txt) connects with its secret and gets messages routed
//! to its domain and answers disco itself; a wrong secret, an unknown domain and a
//! spoofed `from` are refused.

mod common;

use std::process::Stdio;

use common::client::Event;
use common::component::{handshake, next, open};
use common::peers::{free_port, slixmpp_available};
use common::{HOST, TestServer};
use starling::xml::StreamReader;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const DOMAIN: &str = "gw.localhost";
const SECRET: &str = "s3cret";

async fn server(port: u16) -> TestServer {
    TestServer::start_with(|config| {
        let table = format!("listen = [\"127.0.0.1:{port}\"]\n[domains.\"{DOMAIN}\"]\nsecret = \"{SECRET}\"\n");
        config.modules.settings.insert("component".into(), toml::from_str(&table).expect("table"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slixmpp_component_receives_messages_for_its_domain() {
    if !slixmpp_available() {
        return;
    }
    let port = free_port();
    let server = server(port).await;
    server.add_user("alice", "pw").await;
    let mut alice = server.login("alice", "a").await;
    // Nobody connected yet: the domain exists, but stanzas bounce.
    alice.send(&format!("<message to='bot@{DOMAIN}' type='chat' id='early'><body>anyone?</body></message>")).await;
    let bounce = alice.recv_message().await;
    assert_eq!((bounce.attr("id"), bounce.attr("type")), (Some("early"), Some("error")));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/slix_component.py");
    let mut child = tokio::process::Command::new("python3")
        .args([script, "127.0.0.1", &port.to_string(), DOMAIN, SECRET])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let wait = std::time::Duration::from_secs(60);
    let connected = tokio::time::timeout(wait, lines.next_line()).await.expect("component connects in time");
    assert_eq!(connected.ok().flatten().as_deref(), Some("ok: component connected"));

    alice.send(&format!("<message to='bot@{DOMAIN}' type='chat' id='m1'><body>hello bot</body></message>")).await;
    let echo = alice.recv_message().await;
    assert_eq!(echo.attr("from"), Some(format!("bot@{DOMAIN}").as_str()));
    assert_eq!(echo.get_child("body", "jabber:client").map(|b| b.text()).as_deref(), Some("echo: hello bot"));
    let got = tokio::time::timeout(wait, lines.next_line()).await.expect("component reports").ok().flatten();
    assert_eq!(got, Some(format!("ok: got 'hello bot' from alice@{HOST}/a")));

    // disco#info to the component's domain is answered by the component itself.
    let (info, _) = alice
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='{DOMAIN}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ))
        .await;
    let identity = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .and_then(|q| q.get_child("identity", "http://jabber.org/protocol/disco#info"))
        .expect("identity");
    assert_eq!(identity.attr("name"), Some("slix echo"), "{info:?}");

    alice.send(&format!("<message to='bot@{DOMAIN}' type='chat' id='m2'><body>bye</body></message>")).await;
    alice.recv_message().await;
    let status = tokio::time::timeout(wait, child.wait()).await.expect("component exits").expect("status");
    assert!(status.success());
}

async fn stream_error(tcp: &mut TcpStream, reader: &mut StreamReader) -> Option<String> {
    loop {
        match next(tcp, reader).await.0 {
            Event::Stanza(e) if e.name() == "error" => {
                return e.children().find(|c| c.name() != "text").map(|c| c.name().to_owned());
            }
            Event::Stanza(_) | Event::Header => {}
            Event::Footer | Event::Closed => return None,
        }
    }
}

#[tokio::test]
async fn wrong_secrets_unknown_domains_and_spoofed_senders_are_refused() {
    let port = free_port();
    let server = server(port).await;
    server.add_user("alice", "pw").await;
    let mut alice = server.login("alice", "a").await;

    let (mut tcp, mut reader, id) = open(port, DOMAIN).await;
    let id = id.expect("stream id");
    tcp.write_all(format!("<handshake>{}</handshake>", handshake(&id, "wrong")).as_bytes()).await.expect("write");
    assert_eq!(stream_error(&mut tcp, &mut reader).await.as_deref(), Some("not-authorized"));

    let (mut tcp, mut reader, _) = open(port, "nope.localhost").await;
    assert_eq!(stream_error(&mut tcp, &mut reader).await.as_deref(), Some("host-unknown"));

    let (mut tcp, mut reader, id) = open(port, DOMAIN).await;
    let id = id.expect("stream id");
    tcp.write_all(format!("<handshake>{}</handshake>", handshake(&id, SECRET)).as_bytes()).await.expect("write");
    let (ok, _) = next(&mut tcp, &mut reader).await;
    assert!(matches!(&ok, Event::Stanza(e) if e.name() == "handshake"), "{ok:?}");
    // A second connection for the same domain is a conflict.
    let (mut second, mut second_reader, id2) = open(port, DOMAIN).await;
    let id2 = id2.expect("stream id");
    second.write_all(format!("<handshake>{}</handshake>", handshake(&id2, SECRET)).as_bytes()).await.expect("write");
    assert_eq!(stream_error(&mut second, &mut second_reader).await.as_deref(), Some("conflict"));
    // Its own domain is fine; another's is not.
    tcp.write_all(
        format!("<message from='bot@{DOMAIN}' to='alice@{HOST}/a'><body>from the gateway</body></message>").as_bytes(),
    )
    .await
    .expect("write");
    let message = alice.recv_message().await;
    assert_eq!(message.attr("from"), Some(format!("bot@{DOMAIN}").as_str()));
    tcp.write_all(
        format!("<message from='admin@{HOST}' to='alice@{HOST}/a'><body>spoofed</body></message>").as_bytes(),
    )
    .await
    .expect("write");
    assert_eq!(stream_error(&mut tcp, &mut reader).await.as_deref(), Some("invalid-from"));
    let meanwhile = alice.sync().await;
    assert!(meanwhile.iter().all(|s| s.name() != "message"), "{meanwhile:?}");
}

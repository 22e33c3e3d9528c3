//! Under concurrent load every message arrives exactly once: pairs of clients send
//! bursts to each other's bare JID while reading, as the load generator does.

mod common;

use common::TestServer;
use starling::xml::{Limits, StreamEvent, StreamReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Logs in with PLAIN on a plaintext loopback stream (allowed by the test config),
/// binds `r`, sends initial presence; returns the socket and a reader past the bind.
async fn login(addr: std::net::SocketAddr, user: &str) -> (tokio::net::TcpStream, StreamReader) {
    use base64::Engine;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0pw"));
    let mut reader = StreamReader::new(Limits { max_stanza_bytes: 1 << 20, max_depth: 64 });
    let mut buf = vec![0u8; 65536];
    tcp.write_all(header.as_bytes()).await.expect("write");
    tcp.write_all(format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{auth}</auth>").as_bytes())
        .await
        .expect("write");
    // header, features, success
    let mut seen = 0;
    while seen < 3 {
        let n = tcp.read(&mut buf).await.expect("read");
        reader.feed(&buf[..n]);
        while let Some(event) = reader.next_event().expect("xml") {
            if let StreamEvent::Stanza(s) = &event {
                assert_ne!(s.name(), "failure", "auth failed");
            }
            seen += 1;
        }
    }
    reader.reset();
    tcp.write_all(format!("{header}<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq><presence/>").as_bytes()).await.expect("write");
    let mut bound = false;
    while !bound {
        let n = tcp.read(&mut buf).await.expect("read");
        reader.feed(&buf[..n]);
        while let Some(event) = reader.next_event().expect("xml") {
            if let StreamEvent::Stanza(s) = event {
                bound |= s.name() == "iq" && s.id() == Some("b");
            }
        }
    }
    (tcp, reader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_between_pairs_lose_nothing() {
    let server = TestServer::start_with(|c| c.c2s.allow_plaintext_auth_on_loopback = true).await;
    let pairs = 50;
    let messages = 200;
    for i in 0..pairs * 2 {
        server.add_user(&format!("u{i}"), "pw").await;
    }
    let mut conns = Vec::new();
    for i in 0..pairs * 2 {
        conns.push(login(server.addr(), &format!("u{i}")).await);
    }
    let go = std::sync::Arc::new(tokio::sync::Barrier::new(pairs * 2));
    let mut tasks = Vec::new();
    for (i, (tcp, mut reader)) in conns.into_iter().enumerate() {
        let partner = i ^ 1;
        let go = go.clone();
        tasks.push(tokio::spawn(async move {
            let (mut rd, mut wr) = tcp.into_split();
            go.wait().await;
            let writer = async move {
                for burst in 0..messages / 10 {
                    let mut out = String::new();
                    for j in 0..10 {
                        out.push_str(&format!(
                            "<message to='u{partner}@localhost' type='chat' id='{}'><body>{}</body></message>",
                            burst * 10 + j,
                            burst * 10 + j
                        ));
                    }
                    wr.write_all(out.as_bytes()).await.expect("write");
                }
                wr
            };
            let read = async move {
                let mut ids = std::collections::BTreeSet::new();
                let mut buf = vec![0u8; 65536];
                while ids.len() < messages {
                    // A stall detector, not a timing check: generous, so that a loaded
                    // machine running a debug build does not trip it.
                    let n = tokio::time::timeout(std::time::Duration::from_secs(60), rd.read(&mut buf))
                        .await
                        .unwrap_or_else(|_| panic!("u{i}: stalled with {} of {messages}", ids.len()))
                        .expect("read");
                    assert!(n > 0, "u{i}: closed with {} of {messages}", ids.len());
                    reader.feed(&buf[..n]);
                    while let Some(event) = reader.next_event().expect("xml") {
                        if let StreamEvent::Stanza(s) = event
                            && s.name() == "message"
                        {
                            let id = s.id().unwrap_or_default().to_owned();
                            assert!(ids.insert(id), "u{i}: duplicate {:?}", s.id());
                        }
                    }
                }
                ids.len()
            };
            let (_wr, got) = tokio::join!(writer, read);
            got
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("join"), messages);
    }
}

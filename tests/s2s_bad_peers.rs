//! Federation with peers that misbehave (RFC 6120 §4.9.3, §13.7; XEP-0178; XEP-0220):
//! a certificate for another name, a wrong dialback key, stanzas from a domain the
//! stream never proved, a server that accepts the connection and never answers, and a
//! peer that vanishes mid-stream.

mod common;

use common::client::Event;
use common::dns::TestDns;
use common::federation::{Publish, TestCa, instance};
use common::{Client, TestServer};
use minidom::Element;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use starling::xml::{Limits, StreamEvent, StreamReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// A hand-driven server-to-server connection over direct TLS (XEP-0368).
struct RawPeer {
    tls: TlsStream<TcpStream>,
    reader: StreamReader,
}

impl RawPeer {
    async fn connect(addr: std::net::SocketAddr, to: &str, client_cert: Option<(String, String)>) -> RawPeer {
        let client_cert = client_cert.map(|(cert, key)| {
            let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert")];
            (chain, PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"))
        });
        let config = common::insecure_tls_with_cert(&[b"xmpp-server"], client_cert);
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from(to.to_owned()).expect("name");
        let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.expect("TLS");
        RawPeer { tls, reader: StreamReader::new(Limits::default()) }
    }

    async fn send(&mut self, xml: &str) {
        self.tls.write_all(xml.as_bytes()).await.expect("write");
        self.tls.flush().await.expect("flush");
    }

    async fn next(&mut self) -> Event {
        let mut buf = vec![0u8; 16384];
        tokio::time::timeout(common::client::WAIT, async {
            loop {
                match self.reader.next_event() {
                    Ok(Some(StreamEvent::Header(_))) => return Event::Header,
                    Ok(Some(StreamEvent::Stanza(s))) => return Event::Stanza(s.to_element().expect("xml")),
                    Ok(Some(StreamEvent::Footer)) => return Event::Footer,
                    Ok(None) => {}
                    Err(err) => panic!("bad XML from the server: {err}"),
                }
                match self.tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return Event::Closed,
                    Ok(n) => self.reader.feed(&buf[..n]),
                }
            }
        })
        .await
        .expect("server answered in time")
    }

    async fn recv(&mut self) -> Element {
        match self.next().await {
            Event::Stanza(s) => s,
            other => panic!("expected an element, got {other:?}"),
        }
    }

    /// Opens a stream from `from` to `to`; returns the features.
    async fn open(&mut self, from: &str, to: &str) -> Element {
        self.reader.reset();
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
             xmlns:db='jabber:server:dialback' from='{from}' to='{to}' version='1.0'>"
        ))
        .await;
        assert!(matches!(self.next().await, Event::Header));
        let features = self.recv().await;
        assert_eq!(features.name(), "features");
        features
    }

    /// The stream error condition that ends the stream.
    async fn stream_error(&mut self) -> Option<String> {
        loop {
            match self.next().await {
                Event::Stanza(e) if e.name() == "error" && e.ns() == "http://etherx.jabber.org/streams" => {
                    return e.children().find(|c| c.name() != "text").map(|c| c.name().to_owned());
                }
                Event::Stanza(_) | Event::Header => {}
                Event::Footer | Event::Closed => return None,
            }
        }
    }
}

fn offers_external(features: &Element) -> bool {
    features
        .get_child("mechanisms", NS_SASL)
        .is_some_and(|m| m.children().any(|c| c.name() == "mechanism" && c.text() == "EXTERNAL"))
}

fn error_condition(stanza: &Element) -> Option<String> {
    let error = stanza.get_child("error", "jabber:client")?;
    error.children().find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas").map(|c| c.name().to_owned())
}

async fn login(server: &TestServer, user: &str, domain: &str) -> Client {
    server.add_user_at(user, domain, "pw").await;
    let mut client = Client::login_at(server.addr(), user, domain, "pw", Some("r")).await;
    client.presence(0).await;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_authenticates_nothing() {
    common::init_logging();
    let dir = tempfile::tempdir().expect("dir");
    let ca = TestCa::new(dir.path());
    let dns = TestDns::start().await;
    let b = instance("b.test", &dns, Some(&ca), Publish::DirectTls, |_| {}).await;
    // Incoming: a CA-signed certificate, but for wrong.test while claiming a.test.
    let mut peer = RawPeer::connect(b.s2s_tls_addr(), "b.test", Some(ca.issue(&["wrong.test"]))).await;
    let features = peer.open("a.test", "b.test").await;
    assert!(!offers_external(&features), "{features:?}");
    peer.send(&format!("<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>YS50ZXN0</auth>")).await;
    let failure = peer.recv().await;
    assert_eq!(failure.name(), "failure");
    assert!(failure.get_child("not-authorized", NS_SASL).is_some(), "{failure:?}");
    peer.send("<message from='alice@a.test' to='bob@b.test'><body>hi</body></message>").await;
    assert_eq!(peer.stream_error().await.as_deref(), Some("not-authorized"));

    // Outgoing: a.test refuses a b2.test whose certificate names another domain.
    let a = instance("a.test", &dns, Some(&ca), Publish::DirectTls, |_| {}).await;
    let liar = instance("b2.test", &dns, None, Publish::DirectTls, |config| {
        let (cert, key) = ca.issue(&["other.test"]);
        std::fs::create_dir_all(&config.tls.cert_dir).expect("dir");
        std::fs::write(config.tls.cert_dir.join("b2.test.crt"), cert).expect("cert");
        std::fs::write(config.tls.cert_dir.join("b2.test.key"), key).expect("key");
    })
    .await;
    let mut alice = login(&a, "alice", "a.test").await;
    alice.send("<message to='bob@b2.test' type='chat' id='c1'><body>hi</body></message>").await;
    let bounce = alice.recv_message().await;
    assert_eq!(bounce.attr("id"), Some("c1"));
    assert_eq!(error_condition(&bounce).as_deref(), Some("remote-server-not-found"));
    drop(liar);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_dialback_key_is_refused() {
    common::init_logging();
    let dns = TestDns::start().await;
    let _a = instance("a.test", &dns, None, Publish::StartTls, |_| {}).await;
    let b = instance("b.test", &dns, None, Publish::StartTls, |_| {}).await;
    let mut peer = RawPeer::connect(b.s2s_tls_addr(), "b.test", None).await;
    let features = peer.open("a.test", "b.test").await;
    assert!(features.get_child("dialback", "urn:xmpp:features:dialback").is_some(), "{features:?}");
    peer.send("<db:result from='a.test' to='b.test'>0123456789abcdef</db:result>").await;
    // b.test asks the authoritative a.test (via DNS), which says the key is wrong.
    let answer = peer.recv().await;
    assert_eq!((answer.name(), answer.ns().as_str()), ("result", "jabber:server:dialback"));
    assert_eq!(
        (answer.attr("type"), answer.attr("from"), answer.attr("to")),
        (Some("invalid"), Some("b.test"), Some("a.test"))
    );
    peer.send("<message from='alice@a.test' to='bob@b.test'><body>hi</body></message>").await;
    assert_eq!(peer.stream_error().await.as_deref(), Some("not-authorized"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stanzas_must_come_from_the_domain_the_stream_proved() {
    common::init_logging();
    let dir = tempfile::tempdir().expect("dir");
    let ca = TestCa::new(dir.path());
    let dns = TestDns::start().await;
    let b = instance("b.test", &dns, Some(&ca), Publish::DirectTls, |_| {}).await;
    let mut bob = login(&b, "bob", "b.test").await;
    let mut peer = RawPeer::connect(b.s2s_tls_addr(), "b.test", Some(ca.issue(&["a.test"]))).await;
    let features = peer.open("a.test", "b.test").await;
    assert!(offers_external(&features), "{features:?}");
    // XEP-0178 §3: the authorization identity, base64 of "a.test".
    peer.send(&format!("<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>YS50ZXN0</auth>")).await;
    assert_eq!(peer.recv().await.name(), "success");
    peer.open("a.test", "b.test").await;
    peer.send("<message from='alice@a.test/x' to='bob@b.test' type='chat'><body>proved</body></message>").await;
    let message = bob.recv_message().await;
    assert_eq!(message.attr("from"), Some("alice@a.test/x"));
    peer.send("<message from='eve@evil.test' to='bob@b.test' type='chat'><body>spoofed</body></message>").await;
    assert_eq!(peer.stream_error().await.as_deref(), Some("invalid-from"));
    let (_, meanwhile) = bob.iq("<iq type='get' id='{id}' to='b.test'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert!(meanwhile.iter().all(|s| s.name() != "message"), "the spoofed message was not delivered");

    // No `from` at all is improper addressing.
    let mut peer = RawPeer::connect(b.s2s_tls_addr(), "b.test", Some(ca.issue(&["a.test"]))).await;
    peer.open("a.test", "b.test").await;
    peer.send(&format!("<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>=</auth>")).await;
    assert_eq!(peer.recv().await.name(), "success");
    peer.open("a.test", "b.test").await;
    peer.send("<message to='bob@b.test'><body>anonymous</body></message>").await;
    assert_eq!(peer.stream_error().await.as_deref(), Some("improper-addressing"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_times_out_and_queued_stanzas_bounce() {
    common::init_logging();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    // Accepts and holds connections without a byte in reply.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let dns = TestDns::start().await;
    let a = instance("a.test", &dns, None, Publish::StartTls, |config| {
        config.s2s.negotiation_timeout = 2;
        config.s2s.routes.insert("silent.test".into(), starling::config::StaticRoute::Address(silent_addr.to_string()));
    })
    .await;
    let mut alice = login(&a, "alice", "a.test").await;
    for id in ["t1", "t2"] {
        alice.send(&format!("<message to='x@silent.test' type='chat' id='{id}'><body>hello?</body></message>")).await;
    }
    for id in ["t1", "t2"] {
        let bounce = alice.recv_message().await;
        assert_eq!((bounce.attr("id"), bounce.attr("type")), (Some(id), Some("error")));
        assert_eq!(error_condition(&bounce).as_deref(), Some("remote-server-timeout"));
    }
    holder.abort();
}

/// A federated peer vanishing mid-stream (its connection cut, as by a crash or a lost
/// route): what is sent to it meanwhile bounces with an error instead of waiting
/// forever, and once it is reachable again a new stream carries messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_vanishes_mid_stream_bounces_then_reconnects() {
    common::init_logging();
    let dns = TestDns::start().await;
    let b = instance("b.test", &dns, None, Publish::Hidden, |_| {}).await;
    let proxy = common::tcp_proxy::TcpProxy::start(b.s2s_addr()).await;
    let a = instance("a.test", &dns, None, Publish::StartTls, |config| {
        config.s2s.connect_timeout = 2;
        let route = starling::config::StaticRoute::Address(proxy.addr.to_string());
        config.s2s.routes.insert("b.test".into(), route);
    })
    .await;
    let mut alice = login(&a, "alice", "a.test").await;
    let mut bob = login(&b, "bob", "b.test").await;
    alice.send("<message to='bob@b.test/r' type='chat' id='before'><body>one</body></message>").await;
    assert_eq!(bob.recv_message().await.attr("id"), Some("before"));

    proxy.cut();
    alice.send("<message to='bob@b.test/r' type='chat' id='during'><body>two</body></message>").await;
    let bounce = alice.recv_message().await;
    assert_eq!((bounce.attr("id"), bounce.attr("type")), (Some("during"), Some("error")), "{bounce:?}");
    let condition = error_condition(&bounce);
    assert!(matches!(condition.as_deref(), Some("remote-server-not-found" | "remote-server-timeout")), "{bounce:?}");

    proxy.restore();
    alice.send("<message to='bob@b.test/r' type='chat' id='after'><body>three</body></message>").await;
    assert_eq!(bob.recv_message().await.attr("id"), Some("after"), "a new stream after the peer came back");
}

//! XMPP over BOSH (XEP-0124/XEP-0206): SCRAM login, messages both ways with a TCP
//! client over long-polling, rid resend and ordering, terminate, host-meta.

mod common;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hyper::Request;
use minidom::Element;

use common::scram::{Hash, ScramClient};
use common::{TestServer, http};

const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const XBOSH: &str = "xmlns:xmpp='urn:xmpp:xbosh'";

struct Bosh {
    addr: std::net::SocketAddr,
    sid: String,
    rid: u64,
}

/// Posts `body` and returns the response's raw text.
async fn post(addr: std::net::SocketAddr, body: String) -> String {
    let request = Request::post("/http-bind")
        .header("host", "localhost")
        .header("content-type", "text/xml; charset=utf-8")
        .body(Body::from(body))
        .expect("request");
    let reply = http::request(addr, request).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("access-control-allow-origin"), "*");
    reply.text()
}

fn parse(text: &str) -> Element {
    let body: Element = text.parse().unwrap_or_else(|e| panic!("bad response ({e}): {text}"));
    assert!(body.is("body", NS_HTTPBIND), "{text}");
    body
}

impl Bosh {
    /// A session request; returns the client and the session response.
    async fn create(addr: std::net::SocketAddr) -> (Bosh, Element) {
        let rid = 1000 + u64::from(rand::random::<u16>());
        let text = post(
            addr,
            format!("<body xmlns='{NS_HTTPBIND}' rid='{rid}' to='localhost' wait='2' hold='1' ver='1.11' xml:lang='en' xmpp:version='1.0' {XBOSH}/>"),
        )
        .await;
        let body = parse(&text);
        let sid = body.attr("sid").expect("sid").to_owned();
        (Bosh { addr, sid, rid: rid + 1 }, body)
    }

    /// Sends `payload` in the next request; returns the response's raw text.
    async fn request_raw(&mut self, attributes: &str, payload: &str) -> String {
        let rid = self.rid;
        self.rid += 1;
        post(
            self.addr,
            format!("<body xmlns='{NS_HTTPBIND}' rid='{rid}' sid='{}' {attributes}>{payload}</body>", self.sid),
        )
        .await
    }

    async fn request(&mut self, payload: &str) -> Vec<Element> {
        parse(&self.request_raw("", payload).await).children().cloned().collect()
    }

    /// Polls until an element matching `wanted` arrives.
    async fn recv_until(&mut self, mut first: Vec<Element>, wanted: impl Fn(&Element) -> bool) -> Element {
        loop {
            if let Some(found) = first.into_iter().find(|e| wanted(e)) {
                return found;
            }
            first = self.request("").await;
        }
    }

    async fn login(&mut self, session: Element, user: &str) {
        let features = self.recv_until(session.children().cloned().collect(), |e| e.name() == "features").await;
        assert!(features.get_child("mechanisms", NS_SASL).is_some(), "{}", String::from(&features));
        let mut scram = ScramClient::new(Hash::Sha256, user, "pw", None);
        let first = B64.encode(scram.client_first());
        let replies = self.request(&format!("<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>")).await;
        let challenge = self.recv_until(replies, |e| e.is("challenge", NS_SASL)).await;
        let server_first = String::from_utf8(B64.decode(challenge.text()).expect("b64")).expect("utf8");
        let response = B64.encode(scram.client_final(&server_first).expect("client final"));
        let replies = self.request(&format!("<response xmlns='{NS_SASL}'>{response}</response>")).await;
        let success = self.recv_until(replies, |e| e.name() == "success" || e.name() == "failure").await;
        assert!(success.is("success", NS_SASL), "{}", String::from(&success));
        let server_final = String::from_utf8(B64.decode(success.text()).expect("b64")).expect("utf8");
        assert!(scram.verify_server_final(&server_final));
        let restarted =
            self.request_raw(&format!("to='localhost' xml:lang='en' xmpp:restart='true' {XBOSH}"), "").await;
        let features =
            self.recv_until(parse(&restarted).children().cloned().collect(), |e| e.name() == "features").await;
        assert!(features.get_child("bind", "urn:ietf:params:xml:ns:xmpp-bind").is_some());
        let replies = self
            .request("<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bosh</resource></bind></iq>")
            .await;
        let bound = self.recv_until(replies, |e| e.name() == "iq").await;
        assert_eq!(bound.attr("type"), Some("result"), "{}", String::from(&bound));
        self.request("<presence xmlns='jabber:client'/>").await;
    }
}

async fn server() -> TestServer {
    let server = TestServer::start_with(|config| {
        config.http.listen = vec!["127.0.0.1:0".parse().expect("addr")];
        config.http.plain_is_behind_tls_proxy = true;
    })
    .await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    server
}

#[tokio::test]
async fn scram_login_over_bosh_and_messages_with_a_tcp_client() {
    let server = server().await;
    let (mut alice, session) = Bosh::create(server.http_addr()).await;
    assert_eq!(session.attr("hold"), Some("1"));
    assert_eq!(session.attr("from"), Some("localhost"));
    alice.login(session, "alice").await;
    let mut bob = server.login("bob", "tcp").await;

    // A long poll returns when the message comes.
    bob.send("<message to='alice@localhost/bosh' type='chat'><body>hello bosh</body></message>").await;
    let message = alice.recv_until(Vec::new(), |e| e.name() == "message").await;
    assert_eq!(message.attr("from"), Some("bob@localhost/tcp"));
    assert_eq!(message.get_child("body", "jabber:client").map(|b| b.text()).as_deref(), Some("hello bosh"));

    alice
        .request("<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat'><body>hello tcp</body></message>")
        .await;
    let message = bob.recv_message().await;
    assert_eq!(message.attr("from"), Some("alice@localhost/bosh"));

    // A resent rid gets the same answer.
    let original = alice
        .request_raw(
            "",
            "<iq xmlns='jabber:client' type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
    let last = alice.rid - 1;
    let again =
        post(server.http_addr(), format!("<body xmlns='{NS_HTTPBIND}' rid='{last}' sid='{}'/>", alice.sid)).await;
    assert_eq!(again, original);

    // Terminate ends the session; its sid is gone afterwards.
    let ended =
        parse(&alice.request_raw("type='terminate'", "<presence xmlns='jabber:client' type='unavailable'/>").await);
    assert_eq!(ended.attr("type"), Some("terminate"));
    let gone = loop {
        let reply = parse(&alice.request_raw("", "").await);
        if reply.attr("condition") == Some("item-not-found") {
            break reply;
        }
    };
    assert_eq!(gone.attr("type"), Some("terminate"));
}

#[tokio::test]
async fn requests_out_of_the_window_and_unknown_sessions_are_refused() {
    let server = server().await;
    let (mut alice, _) = Bosh::create(server.http_addr()).await;
    alice.rid += 10;
    let reply = parse(&alice.request_raw("", "").await);
    assert_eq!((reply.attr("type"), reply.attr("condition")), (Some("terminate"), Some("item-not-found")));
    let unknown =
        parse(&post(server.http_addr(), format!("<body xmlns='{NS_HTTPBIND}' rid='5' sid='nosuchsession'/>")).await);
    assert_eq!(unknown.attr("condition"), Some("item-not-found"));
    let bad = parse(&post(server.http_addr(), "<notbody/>".into()).await);
    assert_eq!(bad.attr("condition"), Some("bad-request"));
    let unknown_host = parse(
        &post(
            server.http_addr(),
            format!("<body xmlns='{NS_HTTPBIND}' rid='1' to='elsewhere.example' wait='5' hold='1'/>"),
        )
        .await,
    );
    assert_eq!(unknown_host.attr("condition"), Some("host-unknown"));
}

#[tokio::test]
async fn host_meta_lists_the_bosh_endpoint() {
    let server = server().await;
    let jrd = http::get(server.http_addr(), "/.well-known/host-meta.json", &[]).await.text();
    let expected = format!(
        "{{\"rel\":\"urn:xmpp:alt-connections:xbosh\",\"href\":\"http://localhost:{}/http-bind\"}}",
        server.http_addr().port()
    );
    assert!(jrd.contains(&expected), "{jrd}");
}

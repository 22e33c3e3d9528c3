//! A minimal XMPP client for the tests: raw XML strings out, parsed elements in.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use minidom::Element;
use sha2::Digest;
use starling::xml::{Limits, StreamEvent, StreamReader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::scram::{Hash, ScramClient};
use super::{HOST, insecure_tls};

/// How long a test waits for the server before failing.
pub const WAIT: Duration = Duration::from_secs(10);

const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Taken,
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Taken => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Taken => Poll::Ready(Ok(0)),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Taken => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::Taken => Poll::Ready(Ok(())),
        }
    }
}

/// What the server sent.
#[derive(Debug)]
pub enum Event {
    Header,
    Stanza(Element),
    Footer,
    /// The connection was closed.
    Closed,
}

/// A connection before or during negotiation.
pub struct Conn {
    transport: Transport,
    reader: StreamReader,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn tcp(addr: SocketAddr) -> Conn {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        Conn { transport: Transport::Plain(tcp), reader: reader(), buf: vec![0; 65536] }
    }

    pub async fn direct_tls(addr: SocketAddr, alpn: &[&[u8]]) -> Conn {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let connector = tokio_rustls::TlsConnector::from(insecure_tls(alpn));
        let name = rustls_pki_types::ServerName::try_from(HOST).expect("name");
        let tls = connector.connect(name, tcp).await.expect("TLS handshake");
        Conn { transport: Transport::Tls(Box::new(tls)), reader: reader(), buf: vec![0; 65536] }
    }

    pub fn tls(&self) -> Option<&rustls::ClientConnection> {
        match &self.transport {
            Transport::Tls(tls) => Some(tls.get_ref().1),
            _ => None,
        }
    }

    pub async fn send(&mut self, xml: &str) {
        self.send_bytes(xml.as_bytes()).await;
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.transport.write_all(bytes).await.expect("write");
        self.transport.flush().await.expect("flush");
    }

    /// Sends without failing when the server already closed the connection.
    pub async fn try_send_bytes(&mut self, bytes: &[u8]) -> bool {
        self.transport.write_all(bytes).await.is_ok() && self.transport.flush().await.is_ok()
    }

    /// The next event, failing the test after [`WAIT`].
    pub async fn next(&mut self) -> Event {
        tokio::time::timeout(WAIT, self.next_inner()).await.expect("timed out waiting for the server")
    }

    /// The next event if one comes within `wait` (cancel-safe: nothing read is lost).
    pub async fn next_within(&mut self, wait: Duration) -> Option<Event> {
        tokio::time::timeout(wait, self.next_inner()).await.ok()
    }

    async fn next_inner(&mut self) -> Event {
        loop {
            match self.reader.next_event() {
                Ok(Some(StreamEvent::Header(_))) => return Event::Header,
                Ok(Some(StreamEvent::Stanza(stanza))) => {
                    return Event::Stanza(stanza.to_element().expect("server sent parseable XML"));
                }
                Ok(Some(StreamEvent::Footer)) => return Event::Footer,
                Ok(None) => {}
                Err(err) => panic!("server sent bad XML: {err:?}"),
            }
            match self.transport.read(&mut self.buf).await {
                Ok(0) | Err(_) => return Event::Closed,
                Ok(n) => {
                    let chunk = self.buf[..n].to_vec();
                    self.reader.feed(&chunk);
                }
            }
        }
    }

    /// The next stanza (or nonza); fails on anything else.
    pub async fn recv(&mut self) -> Element {
        match self.next().await {
            Event::Stanza(element) => element,
            other => panic!("expected a stanza, got {other:?}"),
        }
    }

    /// Reads until the stream ends; returns the stream error condition if there was one.
    pub async fn stream_error(&mut self) -> Option<String> {
        loop {
            match self.next().await {
                Event::Stanza(e) if e.name() == "error" && e.ns() == "http://etherx.jabber.org/streams" => {
                    return e
                        .children()
                        .find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-streams" && c.name() != "text")
                        .map(|c| c.name().to_owned());
                }
                Event::Stanza(_) | Event::Header => {}
                Event::Footer | Event::Closed => return None,
            }
        }
    }

    /// Opens (or reopens) the stream and returns the features.
    pub async fn open(&mut self) -> Element {
        self.open_to(HOST).await
    }

    pub async fn open_to(&mut self, to: &str) -> Element {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{to}' version='1.0'>"
        ))
        .await;
        match self.next().await {
            Event::Header => {}
            other => panic!("expected a stream header, got {other:?}"),
        }
        let features = self.recv().await;
        assert_eq!(features.name(), "features", "{features:?}");
        features
    }

    /// STARTTLS (RFC 6120 §5): `<proceed/>`, handshake, new stream; returns the features.
    pub async fn starttls(&mut self) -> Element {
        self.starttls_to(HOST).await
    }

    /// [`Conn::starttls`] for a stream to `domain`.
    pub async fn starttls_to(&mut self, domain: &str) -> Element {
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await;
        let proceed = self.recv().await;
        assert_eq!(proceed.name(), "proceed", "{proceed:?}");
        let Transport::Plain(tcp) = std::mem::replace(&mut self.transport, Transport::Taken) else {
            panic!("already TLS")
        };
        let connector = tokio_rustls::TlsConnector::from(insecure_tls(&[]));
        let name = rustls_pki_types::ServerName::try_from(domain.to_owned()).expect("name");
        let tls = connector.connect(name, tcp).await.expect("TLS handshake");
        self.transport = Transport::Tls(Box::new(tls));
        self.reader = reader();
        self.open_to(domain).await
    }

    /// RFC 9266 tls-exporter of this connection.
    pub fn tls_exporter(&self) -> Vec<u8> {
        let mut out = vec![0u8; 32];
        self.tls().expect("TLS").export_keying_material(&mut out, b"EXPORTER-Channel-Binding", None).expect("exporter");
        out
    }

    /// RFC 5929 tls-server-end-point: SHA-256 of the server certificate.
    pub fn tls_server_end_point(&self) -> Vec<u8> {
        let cert = &self.tls().expect("TLS").peer_certificates().expect("certs")[0];
        sha2::Sha256::digest(cert.as_ref()).to_vec()
    }

    /// A SCRAM exchange. `Ok(())` on success (server signature verified), else the
    /// SASL failure condition.
    pub async fn auth_scram(&mut self, mechanism: &str, mut client: ScramClient) -> Result<(), String> {
        let first = B64.encode(client.client_first());
        self.send(&format!("<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{first}</auth>")).await;
        let challenge = self.recv().await;
        if challenge.name() == "failure" {
            return Err(failure_condition(&challenge));
        }
        assert_eq!(challenge.name(), "challenge", "{challenge:?}");
        let server_first = String::from_utf8(B64.decode(challenge.text()).expect("b64")).expect("utf8");
        let final_message = client.client_final(&server_first)?;
        self.send(&format!("<response xmlns='{NS_SASL}'>{}</response>", B64.encode(final_message))).await;
        let outcome = self.recv().await;
        match outcome.name() {
            "success" => {
                let server_final = String::from_utf8(B64.decode(outcome.text()).expect("b64")).expect("utf8");
                assert!(client.verify_server_final(&server_final), "server signature invalid: {server_final}");
                self.reader = reader();
                Ok(())
            }
            "failure" => Err(failure_condition(&outcome)),
            other => panic!("unexpected {other}"),
        }
    }

    /// SCRAM-SHA-256 (no channel binding) with `user@localhost`.
    pub async fn auth(&mut self, user: &str, password: &str) -> Result<(), String> {
        self.auth_scram("SCRAM-SHA-256", ScramClient::new(Hash::Sha256, user, password, None)).await
    }

    /// SASL PLAIN.
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> Result<(), String> {
        let data = B64.encode(format!("\0{user}\0{password}"));
        self.send(&format!("<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{data}</auth>")).await;
        let outcome = self.recv().await;
        match outcome.name() {
            "success" => {
                self.reader = reader();
                Ok(())
            }
            _ => Err(failure_condition(&outcome)),
        }
    }

    /// Binds `resource` (server-generated when `None`); returns the full JID.
    pub async fn bind(&mut self, resource: Option<&str>) -> Result<String, Element> {
        let payload = match resource {
            Some(r) => format!("<resource>{r}</resource>"),
            None => String::new(),
        };
        self.send(&format!(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{payload}</bind></iq>"
        ))
        .await;
        let result = self.recv().await;
        if result.attr("type") != Some("result") {
            return Err(result);
        }
        let jid = result
            .get_child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
            .and_then(|b| b.get_child("jid", "urn:ietf:params:xml:ns:xmpp-bind"))
            .map(|j| j.text())
            .expect("bind result carries the jid");
        Ok(jid)
    }
}

fn reader() -> StreamReader {
    StreamReader::new(Limits { max_stanza_bytes: 64 << 20, max_depth: 256 })
}

fn failure_condition(failure: &Element) -> String {
    failure.children().map(|c| c.name().to_owned()).find(|n| n != "text").unwrap_or_default()
}

/// A logged-in, bound client.
pub struct Client {
    pub conn: Conn,
    pub jid: String,
    next_id: u32,
}

impl Client {
    /// A client over a connection that already has a session as `jid` (a resumed stream).
    pub fn on(conn: Conn, jid: &str) -> Client {
        Client { conn, jid: jid.to_owned(), next_id: 0 }
    }

    /// STARTTLS, SCRAM-SHA-256, bind, initial presence.
    pub async fn login(addr: SocketAddr, user: &str, password: &str, resource: Option<&str>) -> Client {
        Client::login_at(addr, user, HOST, password, resource).await
    }

    /// A login with SASL PLAIN over STARTTLS, for third-party servers; `register`
    /// first creates the account by in-band registration (XEP-0077).
    pub async fn login_plain_at(
        addr: SocketAddr,
        user: &str,
        domain: &str,
        password: &str,
        resource: &str,
        register: bool,
    ) -> Client {
        let mut conn = Conn::tcp(addr).await;
        conn.open_to(domain).await;
        conn.starttls_to(domain).await;
        if register {
            conn.send(&format!(
                "<iq type='set' id='reg1' to='{domain}'><query xmlns='jabber:iq:register'><username>{user}</username><password>{password}</password></query></iq>"
            ))
            .await;
            let result = conn.recv().await;
            assert_eq!(result.attr("type"), Some("result"), "registration: {result:?}");
        }
        conn.auth_plain(user, password).await.expect("authentication succeeds");
        conn.open_to(domain).await;
        let jid = conn.bind(Some(resource)).await.expect("bind succeeds");
        Client { conn, jid, next_id: 0 }
    }

    /// [`Client::login`] as `user@domain`.
    pub async fn login_at(
        addr: SocketAddr,
        user: &str,
        domain: &str,
        password: &str,
        resource: Option<&str>,
    ) -> Client {
        let mut conn = Conn::tcp(addr).await;
        conn.open_to(domain).await;
        conn.starttls_to(domain).await;
        conn.auth(user, password).await.expect("authentication succeeds");
        conn.open_to(domain).await;
        let jid = conn.bind(resource).await.expect("bind succeeds");
        Client { conn, jid, next_id: 0 }
    }

    /// Logs in without sending initial presence.
    pub async fn send(&mut self, xml: &str) {
        self.conn.send(xml).await;
    }

    pub async fn recv(&mut self) -> Element {
        self.conn.recv().await
    }

    /// The next `<message/>`, skipping presence and IQs that arrive meanwhile (presence
    /// broadcasts travel on their own task and may interleave).
    pub async fn recv_message(&mut self) -> Element {
        loop {
            let stanza = self.recv().await;
            if stanza.name() == "message" {
                return stanza;
            }
        }
    }

    /// The server's disco#info features (XEP-0030).
    pub async fn server_features(&mut self) -> Vec<String> {
        let (info, _) = self
            .iq(&format!(
                "<iq type='get' id='{{id}}' to='{HOST}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
            ))
            .await;
        let query = info.get_child("query", "http://jabber.org/protocol/disco#info").expect("disco#info result");
        query.children().filter(|c| c.name() == "feature").filter_map(|c| c.attr("var").map(str::to_owned)).collect()
    }

    /// Sends `<presence/>` (available, priority as given).
    pub async fn presence(&mut self, priority: i8) {
        self.send(&format!("<presence><priority>{priority}</priority></presence>")).await;
    }

    /// Sends an IQ (with `{id}` in `template` replaced by a fresh id) and returns the
    /// reply; other stanzas received meanwhile are returned too, in order.
    pub async fn iq(&mut self, template: &str) -> (Element, Vec<Element>) {
        self.next_id += 1;
        let id = format!("t{}", self.next_id);
        self.send(&template.replace("{id}", &id)).await;
        let mut others = Vec::new();
        loop {
            let stanza = self.recv().await;
            if stanza.name() == "iq" && stanza.attr("id") == Some(id.as_str()) {
                return (stanza, others);
            }
            others.push(stanza);
        }
    }

    /// Round-trips a ping to the server and returns what arrived before its answer:
    /// after this, everything the server had queued for us earlier has arrived.
    pub async fn sync(&mut self) -> Vec<Element> {
        let (reply, others) =
            self.iq(&format!("<iq type='get' id='{{id}}' to='{HOST}'><ping xmlns='urn:xmpp:ping'/></iq>")).await;
        assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
        others
    }
}

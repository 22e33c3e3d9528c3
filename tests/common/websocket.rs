//! An RFC 7395 client for the tests: one XML element per WebSocket text message,
//! `<open/>`/`<close/>` framing, over plain TCP or TLS (tokio-tungstenite).

use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{SinkExt, StreamExt};
use minidom::Element;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::client::WAIT;
use super::scram::{Hash, ScramClient};
use super::{HOST, insecure_tls};

pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A WebSocket XMPP connection.
pub struct WsConn {
    socket: WebSocketStream<Box<dyn Io>>,
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
}

impl WsConn {
    /// Connects to `/xmpp-websocket` offering the `xmpp` subprotocol (with `tls`, over
    /// TLS accepting any certificate).
    pub async fn connect(addr: SocketAddr, tls: bool) -> WsConn {
        Self::connect_offering(addr, tls, Some("xmpp")).await.expect("WebSocket handshake")
    }

    /// Connects offering `protocol` (or none); the handshake's error when refused.
    pub async fn connect_offering(
        addr: SocketAddr,
        tls: bool,
        protocol: Option<&str>,
    ) -> Result<WsConn, tokio_tungstenite::tungstenite::Error> {
        let scheme = if tls { "wss" } else { "ws" };
        let mut request =
            format!("{scheme}://{HOST}:{}/xmpp-websocket", addr.port()).into_client_request().expect("request");
        if let Some(protocol) = protocol {
            request.headers_mut().insert("sec-websocket-protocol", protocol.parse().expect("header"));
        }
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let io: Box<dyn Io> = if tls {
            let connector = tokio_rustls::TlsConnector::from(insecure_tls(&[b"http/1.1"]));
            let name = rustls_pki_types::ServerName::try_from(HOST.to_owned()).expect("name");
            Box::new(connector.connect(name, tcp).await.expect("TLS handshake"))
        } else {
            Box::new(tcp)
        };
        let (socket, response) = tokio_tungstenite::client_async(request, io).await?;
        let protocol =
            response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(WsConn { socket, protocol })
    }

    /// Sends one message.
    pub async fn send(&mut self, xml: &str) {
        self.socket.send(Message::Text(xml.into())).await.expect("WebSocket send");
    }

    /// The next text message as an element; `None` when the socket closed.
    pub async fn try_recv(&mut self) -> Option<Element> {
        loop {
            let message =
                tokio::time::timeout(WAIT, self.socket.next()).await.expect("timed out waiting for the server");
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Some(
                        text.as_str().parse().unwrap_or_else(|e| panic!("not a standalone element ({e}): {text}")),
                    );
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(other)) => panic!("unexpected WebSocket message {other:?}"),
            }
        }
    }

    /// The next element; fails when the socket closed.
    pub async fn recv(&mut self) -> Element {
        self.try_recv().await.expect("socket closed")
    }

    /// The next `<message/>`, skipping presence and other traffic.
    pub async fn recv_message(&mut self) -> Element {
        loop {
            let element = self.recv().await;
            if element.name() == "message" {
                return element;
            }
        }
    }

    /// Sends `<open/>`, checks the server's `<open/>` and returns the features.
    pub async fn open(&mut self) -> Element {
        self.send(&format!("<open xmlns='{NS_FRAMING}' to='{HOST}' version='1.0'/>")).await;
        let open = self.recv().await;
        assert!(open.is("open", NS_FRAMING), "expected <open/>, got {open:?}");
        assert_eq!(open.attr("from"), Some(HOST));
        assert_eq!(open.attr("version"), Some("1.0"));
        let features = self.recv().await;
        assert!(features.is("features", "http://etherx.jabber.org/streams"), "{features:?}");
        features
    }

    /// SCRAM-SHA-256; `Ok(())` when the server's signature checks out.
    pub async fn auth(&mut self, user: &str, password: &str) -> Result<(), String> {
        let mut client = ScramClient::new(Hash::Sha256, user, password, None);
        let first = B64.encode(client.client_first());
        self.send(&format!("<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>")).await;
        let challenge = self.recv().await;
        if challenge.name() != "challenge" {
            return Err(format!("{challenge:?}"));
        }
        let server_first = String::from_utf8(B64.decode(challenge.text()).expect("b64")).expect("utf8");
        let final_message = client.client_final(&server_first)?;
        self.send(&format!("<response xmlns='{NS_SASL}'>{}</response>", B64.encode(final_message))).await;
        let outcome = self.recv().await;
        if !outcome.is("success", NS_SASL) {
            return Err(format!("{outcome:?}"));
        }
        let server_final = String::from_utf8(B64.decode(outcome.text()).expect("b64")).expect("utf8");
        assert!(client.verify_server_final(&server_final), "server signature invalid");
        Ok(())
    }

    /// Opens, authenticates, reopens, binds `resource` and sends initial presence;
    /// returns the bound JID.
    pub async fn login(&mut self, user: &str, password: &str, resource: &str) -> String {
        let features = self.open().await;
        let offered: Vec<String> = features
            .get_child("mechanisms", NS_SASL)
            .map(|m| m.children().map(|c| c.text()).collect())
            .unwrap_or_default();
        assert!(offered.iter().any(|m| m == "SCRAM-SHA-256"), "mechanisms: {offered:?}");
        assert!(
            features.get_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls").is_none(),
            "no STARTTLS over WebSocket"
        );
        self.auth(user, password).await.expect("authentication succeeds");
        self.open().await;
        self.send(&format!(
            "<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
        ))
        .await;
        let result = self.recv().await;
        assert_eq!(result.attr("type"), Some("result"), "{result:?}");
        let jid = result
            .get_child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
            .and_then(|b| b.get_child("jid", "urn:ietf:params:xml:ns:xmpp-bind"))
            .map(|j| j.text())
            .expect("bind result carries the jid");
        self.send("<presence xmlns='jabber:client'/>").await;
        jid
    }

    /// Sends `<close/>` and expects the server's.
    pub async fn close(&mut self) {
        self.send(&format!("<close xmlns='{NS_FRAMING}'/>")).await;
        loop {
            match self.try_recv().await {
                Some(element) if element.is("close", NS_FRAMING) => return,
                Some(_) => {}
                None => panic!("socket closed without <close/>"),
            }
        }
    }
}

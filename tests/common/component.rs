//! A raw XEP-0114 component connection, for tests that need an external service
//! (a gateway, a push app server) on the other end of the server.

use minidom::Element;
use starling::xml::{Limits, StreamEvent, StreamReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client::{Event, WAIT};

/// What a raw component connection reads, with the stream id of a header.
pub async fn next(tcp: &mut TcpStream, reader: &mut StreamReader) -> (Event, Option<String>) {
    let mut buf = vec![0u8; 8192];
    tokio::time::timeout(WAIT, async {
        loop {
            match reader.next_event() {
                Ok(Some(StreamEvent::Header(h))) => return (Event::Header, h.id),
                Ok(Some(StreamEvent::Stanza(s))) => return (Event::Stanza(s.to_element().expect("xml")), None),
                Ok(Some(StreamEvent::Footer)) => return (Event::Footer, None),
                Ok(None) => {}
                Err(err) => panic!("bad XML: {err}"),
            }
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return (Event::Closed, None),
                Ok(n) => reader.feed(&buf[..n]),
            }
        }
    })
    .await
    .expect("answer in time")
}

/// Opens a component stream to `domain`; returns the stream id, if the server sent one.
pub async fn open(port: u16, domain: &str) -> (TcpStream, StreamReader, Option<String>) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let header = format!(
        "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
    );
    tcp.write_all(header.as_bytes()).await.expect("write");
    let mut reader = StreamReader::new(Limits::default());
    let (event, id) = next(&mut tcp, &mut reader).await;
    assert!(matches!(event, Event::Header), "{event:?}");
    (tcp, reader, id)
}

/// The XEP-0114 §3 handshake digest.
pub fn handshake(id: &str, secret: &str) -> String {
    use sha1::Digest;
    sha1::Sha1::digest(format!("{id}{secret}")).iter().map(|b| format!("{b:02x}")).collect()
}

/// An authenticated component connection.
pub struct Component {
    tcp: TcpStream,
    reader: StreamReader,
}

impl Component {
    /// Connects to the component listener on `port` as `domain` with `secret`.
    pub async fn connect(port: u16, domain: &str, secret: &str) -> Component {
        let (mut tcp, mut reader, id) = open(port, domain).await;
        let digest = handshake(&id.expect("stream id"), secret);
        tcp.write_all(format!("<handshake>{digest}</handshake>").as_bytes()).await.expect("write");
        let (ok, _) = next(&mut tcp, &mut reader).await;
        assert!(matches!(&ok, Event::Stanza(e) if e.name() == "handshake"), "{ok:?}");
        Component { tcp, reader }
    }

    /// The next stanza; panics on anything else.
    pub async fn recv(&mut self) -> Element {
        match next(&mut self.tcp, &mut self.reader).await.0 {
            Event::Stanza(stanza) => stanza,
            other => panic!("expected a stanza, got {other:?}"),
        }
    }

    /// Writes raw XML.
    pub async fn send(&mut self, xml: &str) {
        self.tcp.write_all(xml.as_bytes()).await.expect("write");
    }
}

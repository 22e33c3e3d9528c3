//! One XML stream over a TCP or TLS connection: bytes in through the incremental
//! [`StreamReader`], bytes out through a buffered writer. Shared by client streams
//! (`c2s`), server-to-server streams in both directions (`s2s`) and external
//! components; the side that accepted the TCP connection is the TLS server, an
//! outgoing S2S stream is the TLS client.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream as ClientTlsStream;
use tokio_rustls::server::TlsStream;

use crate::c2s::bosh::BoshTransport;
use crate::c2s::websocket::WebSocketTransport;
use starling_api::ingress::Ingress;

use crate::rate::ReadRate;
use crate::xml::{Limits, StreamEvent, StreamReader, XmlError};

/// The socket under a stream: plain TCP until STARTTLS, then TLS; or a web client's
/// WebSocket or BOSH session.
pub enum Transport {
    /// Not (yet) encrypted.
    Plain(TcpStream),
    /// Encrypted (STARTTLS or direct TLS), this side the TLS server.
    Tls(Box<TlsStream<TcpStream>>),
    /// Encrypted, this side the TLS client (outgoing S2S).
    TlsClient(Box<ClientTlsStream<TcpStream>>),
    /// A client's WebSocket (RFC 7395), framing translated to and from stream bytes.
    WebSocket(Box<WebSocketTransport>),
    /// A client's BOSH session (XEP-0206), likewise.
    Bosh(Box<BoshTransport>),
}

impl Transport {
    /// The TLS state of an encrypted connection this side accepted.
    pub fn tls(&self) -> Option<&rustls::ServerConnection> {
        match self {
            Transport::Tls(tls) => Some(tls.get_ref().1),
            Transport::Plain(_) | Transport::TlsClient(_) | Transport::WebSocket(_) | Transport::Bosh(_) => None,
        }
    }

    /// Whether the connection is encrypted, whichever side started TLS.
    pub fn is_encrypted(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(_) | Transport::TlsClient(_) => true,
            Transport::WebSocket(socket) => socket.is_encrypted(),
            Transport::Bosh(session) => session.is_encrypted(),
        }
    }

    /// Whether STARTTLS can upgrade the connection (plain TCP only).
    pub fn can_starttls(&self) -> bool {
        matches!(self, Transport::Plain(_))
    }

    /// The certificate chain the peer presented during the TLS handshake, if any.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        match self {
            Transport::Plain(_) | Transport::WebSocket(_) | Transport::Bosh(_) => None,
            Transport::Tls(tls) => tls.get_ref().1.peer_certificates(),
            Transport::TlsClient(tls) => tls.get_ref().1.peer_certificates(),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::TlsClient(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::WebSocket(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Bosh(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::TlsClient(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::WebSocket(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Bosh(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::TlsClient(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::WebSocket(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Bosh(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::TlsClient(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::WebSocket(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::Bosh(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why reading from a stream stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadFailure {
    /// The peer closed the TCP connection.
    #[error("connection closed by peer")]
    Eof,
    /// A socket error.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// The peer sent XML the server refuses; answered with a stream error.
    #[error("bad XML: {0}")]
    Xml(#[from] XmlError),
}

/// Bytes read per `read` call.
const READ_CHUNK: usize = 4096;

thread_local! {
    /// Where a read lands before the parser takes it. One per thread, not one per
    /// connection: an idle connection is always waiting in a read, and a buffer of its
    /// own would be 4 KiB of every idle session's memory.
    static READ_SCRATCH: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// Reads what `transport` has into `reader`; the number of bytes, 0 at end of stream.
/// The bytes are handed over within the poll that read them, so the scratch buffer is
/// free again whenever a task waits.
fn read_into(transport: &mut Transport, reader: &mut StreamReader, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    READ_SCRATCH.with_borrow_mut(|scratch| {
        let mut buf = ReadBuf::new(scratch);
        match Pin::new(transport).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                reader.feed(buf.filled());
                Poll::Ready(Ok(buf.filled().len()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => Poll::Pending,
        }
    })
}

/// An XML stream on a connection.
pub struct XmppStream {
    transport: Transport,
    reader: StreamReader,
    /// The peer's address.
    pub peer: SocketAddr,
    /// When the peer last sent anything (whitespace keepalives count).
    pub last_activity: Instant,
    /// How fast the peer may send, if limited.
    rate: Option<ReadRate>,
    stanza_rate: Option<ReadRate>,
    ingress: Option<Ingress>,
    /// Seconds one event may take to arrive once begun (0: no limit).
    event_timeout: u32,
    /// When the event now partly buffered began, pushed on by the server's own pauses.
    event_since: Option<Instant>,
}

impl XmppStream {
    /// Wraps an accepted connection.
    pub fn new(transport: Transport, peer: SocketAddr, limits: Limits) -> Self {
        XmppStream {
            transport,
            reader: StreamReader::new(limits),
            peer,
            last_activity: Instant::now(),
            rate: None,
            stanza_rate: None,
            ingress: None,
            event_timeout: 0,
            event_since: None,
        }
    }

    /// Ends the stream with `policy-violation` when a stanza, once begun, takes longer
    /// than `seconds` to arrive (0: never): a slowloris sender cannot hold a connection
    /// and a buffer with a byte every few seconds.
    pub fn with_stanza_timeout(mut self, seconds: u32) -> Self {
        self.event_timeout = seconds;
        self
    }

    /// Limits how fast the peer's bytes are read (see [`crate::rate`]).
    pub fn with_read_rate(mut self, rate: Option<ReadRate>) -> Self {
        self.rate = rate;
        self
    }

    /// Limits how many stanzas a second the peer's stream yields (the same bucket, in
    /// stanzas): a flood of small stanzas is paced like a flood of bytes.
    pub fn with_stanza_rate(mut self, rate: Option<ReadRate>) -> Self {
        self.stanza_rate = rate;
        self
    }

    /// Pauses reading while a module asks for back-pressure (see `starling_api::ingress`).
    pub fn with_ingress(mut self, ingress: Option<Ingress>) -> Self {
        self.ingress = ingress;
        self
    }

    /// The next stream event. Cancel-safe: the awaits are the rate limits' pauses, the
    /// modules' back-pressure and the socket read, and bytes are handed to the parser only after a read completes.
    pub async fn next_event(&mut self) -> Result<StreamEvent, ReadFailure> {
        loop {
            // Waiting before the event is taken keeps this cancel-safe: it stays buffered.
            let paused = (self.event_timeout > 0).then(Instant::now);
            if let Some(wait) = self.stanza_rate.as_mut().and_then(ReadRate::wait) {
                tokio::time::sleep(wait).await;
            }
            if let Some(event) = self.reader.next_event()? {
                if let (StreamEvent::Stanza(_), Some(rate)) = (&event, &mut self.stanza_rate) {
                    rate.spend(1);
                }
                self.event_since = None;
                return Ok(event);
            }
            if let Some(wait) = self.rate.as_mut().and_then(ReadRate::wait) {
                tokio::time::sleep(wait).await;
            }
            if let Some(ingress) = &self.ingress {
                ingress.until_clear().await;
            }
            let deadline = self.event_deadline(paused);
            let (transport, reader) = (&mut self.transport, &mut self.reader);
            let read = std::future::poll_fn(|cx| read_into(transport, reader, cx));
            let n = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, read)
                    .await
                    .map_err(|_| XmlError::PolicyViolation("a stanza took too long to arrive"))??,
                None => read.await?,
            };
            if n == 0 {
                return Err(ReadFailure::Eof);
            }
            if let Some(rate) = &mut self.rate {
                rate.spend(n);
            }
            self.last_activity = Instant::now();
        }
    }

    /// When the partly buffered event must be complete, if there is one and a limit
    /// (`paused` is set only with a limit). The time since `paused` was the server's own
    /// pacing, so it moves the start on.
    fn event_deadline(&mut self, paused: Option<Instant>) -> Option<Instant> {
        let since = match (self.event_since, paused) {
            // Once begun, the event stays buffered until it is returned (which clears
            // `event_since`): no need to look at the buffer again on every read.
            (Some(since), Some(paused)) => since + paused.elapsed(),
            (None, Some(_)) if self.reader.in_event() => Instant::now(),
            _ => return None,
        };
        self.event_since = Some(since);
        Some(since + Duration::from_secs(u64::from(self.event_timeout)))
    }

    /// Writes and flushes `bytes`.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.transport.write_all(bytes).await?;
        self.transport.flush().await
    }

    /// Restarts the stream after STARTTLS or SASL success (RFC 6120 §4.3.3).
    pub fn reset(&mut self) {
        self.reader.reset();
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.transport.is_encrypted()
    }

    /// Whether STARTTLS can be offered (plain TCP only).
    pub fn can_starttls(&self) -> bool {
        self.transport.can_starttls()
    }

    /// The certificate chain the peer presented, if any.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.transport.peer_certificates()
    }

    /// The TLS state, if encrypted.
    pub fn tls(&self) -> Option<&rustls::ServerConnection> {
        self.transport.tls()
    }

    /// Takes the socket back, for the STARTTLS upgrade.
    pub fn into_transport(self) -> Transport {
        self.transport
    }

    /// Closes the connection after a final write; errors are moot at this point.
    pub async fn close(mut self) {
        let _ = self.transport.shutdown().await;
    }
}

//! The SOCKS5 side of the proxy: the RFC 1928 handshake XEP-0065 §5.3.2 profiles,
//! pairing the two connections of a stream by their DST.ADDR, and the throttled relay.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context as TaskContext, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const NO_ACCEPTABLE_METHOD: u8 = 0xff;
const CONNECT: u8 = 1;
const DOMAIN: u8 = 3;
const SUCCEEDED: u8 = 0;
const GENERAL_FAILURE: u8 = 1;
const NOT_ALLOWED: u8 = 2;
const COMMAND_NOT_SUPPORTED: u8 = 7;
const ADDRESS_NOT_SUPPORTED: u8 = 8;

/// Why a SOCKS5 connection was dropped before it could wait for activation.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("not SOCKS version 5")]
    Version,
    #[error("the client offers no unauthenticated method")]
    NoAcceptableMethod,
    #[error("only CONNECT to a DOMAIN address is supported")]
    Unsupported,
    #[error("the address is not a stream hash")]
    BadAddress,
    #[error("the stream already has both parties, or too many connections wait")]
    Refused,
    #[error("no complete handshake in time")]
    Timeout,
}

/// What an activation request found.
pub enum Activation {
    /// Both parties were connected; the relay runs.
    Started,
    /// No connection used this hash.
    Unknown,
    /// Only one party has connected so far.
    OneParty,
}

/// Connections waiting for their peer and for the activation, by stream hash.
struct Pending {
    /// The target's connection first (it connects before the initiator, §6.3.2).
    conns: Vec<TcpStream>,
    /// Tells the expiry task whether the entry it was started for is still there.
    generation: u64,
}

/// The proxy's shared state.
pub struct Proxy {
    /// Bytes per second per user; 0 for no limit.
    rate: u64,
    timeout: Duration,
    max_pending: usize,
    pending: Mutex<PendingTable>,
    buckets: Mutex<HashMap<String, Weak<Bucket>>>,
}

#[derive(Default)]
struct PendingTable {
    streams: HashMap<String, Pending>,
    /// Connections across all entries, for the cap.
    connections: usize,
    next_generation: u64,
}

impl Proxy {
    /// A proxy relaying at most `rate` bytes/s per user (0: unlimited), dropping
    /// connections not activated within `timeout`, with at most `max_pending` waiting.
    pub fn new(rate: u64, timeout: Duration, max_pending: usize) -> Self {
        Proxy { rate, timeout, max_pending, pending: Mutex::default(), buckets: Mutex::default() }
    }

    /// Accepts SOCKS5 connections until `token` is cancelled.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, token: CancellationToken) {
        loop {
            let accepted = tokio::select! {
                _ = token.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    let proxy = self.clone();
                    tokio::spawn(async move {
                        if let Err(err) = proxy.handle(stream).await {
                            starling_api::tracing::debug!(error = %err, "SOCKS5 connection dropped");
                        }
                    });
                }
                Err(err) => starling_api::tracing::warn!(error = %err, "SOCKS5 accept failed"),
            }
        }
    }

    async fn handle(self: Arc<Self>, mut stream: TcpStream) -> Result<(), HandshakeError> {
        let hash = tokio::time::timeout(self.timeout, self.handshake(&mut stream))
            .await
            .map_err(|_| HandshakeError::Timeout)??;
        let mut table = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        // Re-checked: another connection may have taken the place during the reply.
        if table.connections >= self.max_pending || table.streams.get(&hash).is_some_and(|p| p.conns.len() >= 2) {
            return Err(HandshakeError::Refused);
        }
        table.connections += 1;
        if let Some(entry) = table.streams.get_mut(&hash) {
            entry.conns.push(stream);
            return Ok(());
        }
        table.next_generation += 1;
        let generation = table.next_generation;
        table.streams.insert(hash.clone(), Pending { conns: vec![stream], generation });
        drop(table);
        metrics::gauge!("starling_proxy65_pending_streams").increment(1.0);
        let proxy = Arc::downgrade(&self);
        let timeout = self.timeout;
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(proxy) = proxy.upgrade() {
                proxy.expire(&hash, generation);
            }
        });
        Ok(())
    }

    /// Drops the connections of `hash` if they are still the unactivated ones of
    /// `generation`.
    fn expire(&self, hash: &str, generation: u64) {
        let mut table = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if table.streams.get(hash).is_some_and(|p| p.generation == generation)
            && let Some(entry) = table.streams.remove(hash)
        {
            table.connections -= entry.conns.len();
            metrics::gauge!("starling_proxy65_pending_streams").decrement(1.0);
        }
    }

    /// RFC 1928 §3–§6 as XEP-0065 §5.3.2 uses it; the stream hash on success, after
    /// the success reply.
    async fn handshake(&self, stream: &mut TcpStream) -> Result<String, HandshakeError> {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await?;
        if head[0] != VERSION {
            return Err(HandshakeError::Version);
        }
        let mut methods = vec![0u8; usize::from(head[1])];
        stream.read_exact(&mut methods).await?;
        if !methods.contains(&NO_AUTH) {
            stream.write_all(&[VERSION, NO_ACCEPTABLE_METHOD]).await?;
            return Err(HandshakeError::NoAcceptableMethod);
        }
        stream.write_all(&[VERSION, NO_AUTH]).await?;

        let mut request = [0u8; 4];
        stream.read_exact(&mut request).await?;
        if request[0] != VERSION {
            return Err(HandshakeError::Version);
        }
        if request[1] != CONNECT {
            reply(stream, COMMAND_NOT_SUPPORTED, &[]).await?;
            return Err(HandshakeError::Unsupported);
        }
        if request[3] != DOMAIN {
            reply(stream, ADDRESS_NOT_SUPPORTED, &[]).await?;
            return Err(HandshakeError::Unsupported);
        }
        let len = stream.read_u8().await?;
        let mut address = vec![0u8; usize::from(len)];
        stream.read_exact(&mut address).await?;
        // DST.PORT: XEP-0065 §5.3.2 requires 0 but clients send the streamhost's port.
        stream.read_u16().await?;
        let hash = match std::str::from_utf8(&address) {
            Ok(text) if text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit()) => text.to_ascii_lowercase(),
            _ => {
                reply(stream, GENERAL_FAILURE, &[]).await?;
                return Err(HandshakeError::BadAddress);
            }
        };
        let refused = {
            let table = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            table.connections >= self.max_pending || table.streams.get(&hash).is_some_and(|p| p.conns.len() >= 2)
        };
        if refused {
            reply(stream, NOT_ALLOWED, &[]).await?;
            return Err(HandshakeError::Refused);
        }
        reply(stream, SUCCEEDED, &address).await?;
        Ok(hash)
    }

    /// Starts relaying the stream `hash` on behalf of `user` (the initiator's bare JID).
    pub fn activate(&self, hash: &str, user: &str) -> Activation {
        let mut table = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match table.streams.get(hash).map(|p| p.conns.len()) {
            None => return Activation::Unknown,
            Some(n) if n < 2 => return Activation::OneParty,
            Some(_) => {}
        }
        let Some(entry) = table.streams.remove(hash) else { return Activation::Unknown };
        table.connections -= entry.conns.len();
        drop(table);
        metrics::gauge!("starling_proxy65_pending_streams").decrement(1.0);
        let bucket = self.bucket(user);
        let mut conns = entry.conns.into_iter();
        if let (Some(target), Some(initiator)) = (conns.next(), conns.next()) {
            tokio::spawn(relay(target, initiator, bucket));
        }
        Activation::Started
    }

    /// The token bucket every stream of `user` shares, if there is a limit.
    fn bucket(&self, user: &str) -> Option<Arc<Bucket>> {
        if self.rate == 0 {
            return None;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = buckets.get(user).and_then(Weak::upgrade) {
            return Some(bucket);
        }
        buckets.retain(|_, b| b.strong_count() > 0);
        let bucket = Arc::new(Bucket::new(self.rate));
        buckets.insert(user.to_owned(), Arc::downgrade(&bucket));
        Some(bucket)
    }
}

/// A SOCKS5 reply with a DOMAIN bound address (RFC 1928 §6).
async fn reply(stream: &mut TcpStream, code: u8, address: &[u8]) -> io::Result<()> {
    let mut message = vec![VERSION, code, 0, DOMAIN, address.len() as u8];
    message.extend_from_slice(address);
    message.extend_from_slice(&[0, 0]);
    stream.write_all(&message).await
}

async fn relay(target: TcpStream, initiator: TcpStream, bucket: Option<Arc<Bucket>>) {
    metrics::gauge!("starling_proxy65_active_streams").increment(1.0);
    let mut target = Limited::new(target, bucket.clone());
    let mut initiator = Limited::new(initiator, bucket);
    if let Err(err) = tokio::io::copy_bidirectional(&mut initiator, &mut target).await {
        starling_api::tracing::debug!(error = %err, "SOCKS5 relay ended");
    }
    metrics::gauge!("starling_proxy65_active_streams").decrement(1.0);
}

/// A token bucket of `rate` bytes/s holding at most one second's worth. Reads may
/// overdraw it by one buffer; the next read then waits until the debt is paid, which
/// keeps the average at the rate without splitting reads.
struct Bucket {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: u64) -> Self {
        Bucket { rate: rate as f64, state: Mutex::new((rate as f64, Instant::now())) }
    }

    /// When a read may go ahead: `None` for now.
    fn ready_at(&self) -> Option<Instant> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        state.0 = (state.0 + now.duration_since(state.1).as_secs_f64() * self.rate).min(self.rate);
        state.1 = now;
        (state.0 <= 0.0).then(|| now + Duration::from_secs_f64((1.0 - state.0) / self.rate))
    }

    fn take(&self, bytes: usize) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0 -= bytes as f64;
    }
}

/// A relayed connection whose reads draw on the user's bucket.
struct Limited {
    inner: TcpStream,
    bucket: Option<Arc<Bucket>>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Limited {
    fn new(inner: TcpStream, bucket: Option<Arc<Bucket>>) -> Self {
        Limited { inner, bucket, sleep: None }
    }
}

impl AsyncRead for Limited {
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(bucket) = &this.bucket {
            loop {
                if let Some(sleep) = &mut this.sleep {
                    ready!(sleep.as_mut().poll(cx));
                    this.sleep = None;
                }
                match bucket.ready_at() {
                    None => break,
                    Some(at) => {
                        metrics::counter!("starling_proxy65_throttled_total").increment(1);
                        this.sleep = Some(Box::pin(tokio::time::sleep_until(at.into())));
                    }
                }
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = buf.filled().len() - before;
        metrics::counter!("starling_proxy65_bytes_total").increment(read as u64);
        if let Some(bucket) = &this.bucket {
            bucket.take(read);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Limited {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

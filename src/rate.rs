//! Limits on what one peer may cost: a token bucket on the bytes a stream reads
//! (Prosody's `mod_limits`, ejabberd's shapers) and a count of connections per IP
//! address.
//!
//! The bucket slows a stream down instead of cutting it off: once a peer has used its
//! burst, the server stops reading its socket until tokens are back, so TCP flow control
//! pushes back on the sender while every other session goes on as usual.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket over what one stream reads: bytes, or stanzas.
#[derive(Debug)]
pub struct ReadRate {
    per_second: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    /// The metrics label of the stream kind (`c2s`, `s2s`).
    kind: &'static str,
}

impl ReadRate {
    /// A full bucket refilling at `per_second` units up to `burst` units; `None` when
    /// `per_second` is 0 (no limit).
    pub fn new(per_second: u64, burst: u64, kind: &'static str) -> Option<ReadRate> {
        (per_second > 0).then(|| {
            let burst = burst.max(per_second) as f64;
            ReadRate { per_second: per_second as f64, burst, tokens: burst, refilled: Instant::now(), kind }
        })
    }

    /// How long to wait before reading again; `None` when tokens are left.
    pub fn wait(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 0.0 {
            return None;
        }
        crate::metrics::read_throttled(self.kind);
        Some(Duration::from_secs_f64(-self.tokens / self.per_second))
    }

    /// Takes `units` from the bucket (it may go below zero: the next read waits).
    pub fn spend(&mut self, units: usize) {
        self.tokens -= units as f64;
    }
}

/// Open connections per IP address, with a ceiling.
#[derive(Debug, Clone)]
pub struct ConnectionsPerIp {
    max: Arc<std::sync::atomic::AtomicUsize>,
    exempt: Arc<Vec<IpAddr>>,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// Holds one connection's place; the count goes down when it is dropped.
#[derive(Debug)]
pub struct IpSlot {
    ip: IpAddr,
    open: Option<Arc<Mutex<HashMap<IpAddr, usize>>>>,
}

impl ConnectionsPerIp {
    /// At most `max` connections per address (0: no limit), except for `exempt` ones.
    pub fn new(max: usize, exempt: Vec<IpAddr>) -> Self {
        ConnectionsPerIp { max: Arc::new(max.into()), exempt: Arc::new(exempt), open: Arc::default() }
    }

    /// Changes the limit for connections opened from now on (a reload).
    pub fn set_max(&self, max: usize) {
        self.max.store(max, std::sync::atomic::Ordering::Relaxed);
    }

    /// A slot for a new connection from `ip`, or `None` when it has `max` open already.
    pub fn open(&self, ip: IpAddr) -> Option<IpSlot> {
        let ip = canonical(ip);
        let max = self.max.load(std::sync::atomic::Ordering::Relaxed);
        if max == 0 || self.exempt.iter().any(|e| canonical(*e) == ip) {
            return Some(IpSlot { ip, open: None });
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(IpSlot { ip, open: Some(self.open.clone()) })
    }
}

/// IPv4 addresses seen through an IPv6 socket (`::ffff:a.b.c.d`) count as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let Some(open) = &self.open else { return };
        let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_lets_a_burst_through_then_paces_reads() {
        let mut rate = ReadRate::new(1000, 2000, "test").expect("a limit");
        assert!(rate.wait().is_none());
        rate.spend(2500);
        let wait = rate.wait().expect("over the burst");
        assert!(wait <= Duration::from_millis(500) && wait > Duration::from_millis(400), "{wait:?}");
        // As if the wait had passed.
        rate.refilled -= wait;
        assert!(rate.wait().is_none(), "refilled after the wait");
        assert!(ReadRate::new(0, 0, "test").is_none(), "0 is no limit");
    }

    #[test]
    fn connections_per_ip_are_counted_and_released() {
        let limit = ConnectionsPerIp::new(2, vec!["127.0.0.1".parse().expect("ip")]);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let (a, b) = (limit.open(ip), limit.open(ip));
        assert!(a.is_some() && b.is_some());
        assert!(limit.open(ip).is_none(), "a third is refused");
        assert!(limit.open("::ffff:192.0.2.1".parse().expect("ip")).is_none(), "the same address over IPv6");
        assert!(limit.open("192.0.2.2".parse().expect("ip")).is_some(), "other addresses are not affected");
        drop(a);
        assert!(limit.open(ip).is_some(), "a closed connection frees its place");
        let loopback: IpAddr = "127.0.0.1".parse().expect("ip");
        let held: Vec<_> = (0..10).map(|_| limit.open(loopback)).collect();
        assert!(held.iter().all(Option::is_some), "exempt addresses are not limited");
    }
}

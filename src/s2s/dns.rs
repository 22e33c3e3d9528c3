//! Finding a remote domain's server (RFC 6120 §3.2, XEP-0368 §3, RFC 2782).
//!
//! A static route from the config wins. Otherwise `_xmpps-server._tcp` (direct TLS)
//! and `_xmpp-server._tcp` (STARTTLS) SRV records are looked up together and merged:
//! lower priority first, and within one priority a weighted random order; at equal
//! priority direct TLS comes first, as it saves a round trip. A single record whose
//! target is `.` means the domain offers no service. No records at all fall back to
//! the domain itself on port 5269 with STARTTLS. Host names are resolved through the
//! same resolver, which reads `/etc/hosts` first.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver as Hickory, TokioResolver};
use rand::Rng;

use crate::config::{S2sConfig, StaticRoute};

/// The default S2S port (RFC 6120 §14.7).
pub const DEFAULT_PORT: u16 = 5269;

/// One place to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS from the first byte (XEP-0368) rather than STARTTLS.
    pub direct_tls: bool,
}

/// An SRV record as far as ordering is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower is tried first.
    pub priority: u16,
    /// Share within a priority.
    pub weight: u16,
    /// The target.
    pub target: Target,
}

/// Why a domain has no server to try.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The SRV records say the domain offers no XMPP service (target `.`).
    #[error("{0} offers no XMPP server-to-server service")]
    NoService(String),
    /// The resolver could not be built.
    #[error("resolver: {0}")]
    Setup(String),
}

/// The S2S resolver.
pub struct Resolver {
    inner: TokioResolver,
    routes: BTreeMap<String, StaticRoute>,
}

impl Resolver {
    /// A resolver for the `[s2s]` settings: the configured nameservers (or the
    /// system's), `/etc/hosts`, and the static routes.
    pub fn new(config: &S2sConfig, timeout: Duration) -> Result<Resolver, ResolveError> {
        let mut builder = if config.nameservers.is_empty() {
            Hickory::builder_tokio().map_err(|e| ResolveError::Setup(e.to_string()))?
        } else {
            let servers = config
                .nameservers
                .iter()
                .map(|addr| {
                    let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                    for connection in &mut server.connections {
                        connection.port = addr.port();
                    }
                    server
                })
                .collect();
            Hickory::builder_with_config(
                ResolverConfig::from_parts(None, vec![], servers),
                TokioRuntimeProvider::default(),
            )
        };
        let options = builder.options_mut();
        options.use_hosts_file = ResolveHosts::Always;
        options.timeout = timeout;
        options.attempts = 2;
        let inner = builder.build().map_err(|e| ResolveError::Setup(e.to_string()))?;
        Ok(Resolver { inner, routes: config.routes.clone() })
    }

    /// The targets for `domain`, in the order to try them.
    pub async fn targets(&self, domain: &str) -> Result<Vec<Target>, ResolveError> {
        if let Some((host, port, direct_tls)) = self.routes.get(domain).and_then(StaticRoute::target) {
            return Ok(vec![Target { host, port, direct_tls }]);
        }
        let (direct, starttls) = tokio::join!(self.srv(domain, true), self.srv(domain, false));
        let records: Vec<SrvRecord> = direct.into_iter().chain(starttls).collect();
        if records.is_empty() {
            return Ok(vec![Target { host: domain.to_owned(), port: DEFAULT_PORT, direct_tls: false }]);
        }
        let ordered = order(records, &mut rand::thread_rng());
        if ordered.is_empty() {
            return Err(ResolveError::NoService(domain.to_owned()));
        }
        Ok(ordered)
    }

    async fn srv(&self, domain: &str, direct_tls: bool) -> Vec<SrvRecord> {
        let service = if direct_tls { "_xmpps-server" } else { "_xmpp-server" };
        let name = format!("{service}._tcp.{domain}.");
        match self.inner.srv_lookup(name.as_str()).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::SRV(srv) => Some(SrvRecord {
                        priority: srv.priority,
                        weight: srv.weight,
                        target: Target {
                            host: srv.target.to_ascii().trim_end_matches('.').to_owned(),
                            port: srv.port,
                            direct_tls,
                        },
                    }),
                    _ => None,
                })
                .collect(),
            Err(err) => {
                if !err.is_no_records_found() {
                    tracing::debug!(%name, error = %err, "SRV lookup failed");
                }
                Vec::new()
            }
        }
    }

    /// The addresses of `host` (a name, or an address literal), with `port`.
    pub async fn addresses(&self, host: &str, port: u16) -> Vec<SocketAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return vec![SocketAddr::new(ip, port)];
        }
        match self.inner.lookup_ip(format!("{host}.").as_str()).await {
            Ok(lookup) => lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect(),
            Err(err) => {
                tracing::debug!(%host, error = %err, "address lookup failed");
                Vec::new()
            }
        }
    }
}

/// RFC 2782 ordering of the merged records; empty when the only record is `.`.
pub fn order(mut records: Vec<SrvRecord>, rng: &mut impl Rng) -> Vec<Target> {
    if records.len() == 1 && records[0].target.host.is_empty() {
        return Vec::new();
    }
    records.retain(|r| !r.target.host.is_empty());
    // Direct TLS first at equal priority; the weighted pick below keeps it first among
    // equals only as far as weights allow.
    records.sort_by_key(|r| (r.priority, !r.target.direct_tls));
    let mut out = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].priority;
        let end = records.iter().position(|r| r.priority != priority).unwrap_or(records.len());
        let mut group: Vec<SrvRecord> = records.drain(..end).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let index = if total == 0 {
                0
            } else {
                let mut pick = rng.gen_range(0..=total);
                group
                    .iter()
                    .position(|r| {
                        if pick <= u32::from(r.weight) {
                            true
                        } else {
                            pick -= u32::from(r.weight);
                            false
                        }
                    })
                    .unwrap_or(0)
            };
            out.push(group.remove(index).target);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn record(priority: u16, weight: u16, host: &str, direct_tls: bool) -> SrvRecord {
        SrvRecord { priority, weight, target: Target { host: host.into(), port: 5269, direct_tls } }
    }

    #[test]
    fn priorities_first_then_weights() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut heavy_first = 0;
        for _ in 0..1000 {
            let records =
                vec![record(20, 0, "backup", false), record(10, 90, "heavy", false), record(10, 10, "light", false)];
            let hosts: Vec<String> = order(records, &mut rng).into_iter().map(|t| t.host).collect();
            assert_eq!(hosts.len(), 3);
            assert_eq!(hosts[2], "backup");
            if hosts[0] == "heavy" {
                heavy_first += 1;
            }
        }
        assert!((800..=980).contains(&heavy_first), "weights respected: {heavy_first}");
    }

    #[test]
    fn a_dot_target_means_no_service_and_direct_tls_leads_at_equal_priority() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert!(order(vec![record(0, 0, "", false)], &mut rng).is_empty());
        let ordered = order(vec![record(5, 0, "starttls", false), record(5, 0, "direct", true)], &mut rng);
        assert_eq!(ordered[0].host, "direct");
        assert!(ordered[0].direct_tls);
    }
}

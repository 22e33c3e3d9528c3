//! The configuration file (`conf/starling.toml`): typed, defaulted, and strict —
//! an unknown key is an error naming it, never silently ignored.
//!
//! Module tables (`[modules.<name>]`) are kept as raw TOML here and checked by each
//! module's own config type when it starts (see `starling_api::Registrar::config`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A problem with the configuration file, phrased for the admin.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax or a key/type mismatch; toml's message names the key and the line.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value that parses but makes no sense.
    #[error("{path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[listen]`
    #[serde(default)]
    pub listen: ListenConfig,
    /// `[tls]`
    #[serde(default)]
    pub tls: TlsConfig,
    /// `[storage]`
    #[serde(default)]
    pub storage: StorageConfig,
    /// `[c2s]`
    #[serde(default)]
    pub c2s: C2sConfig,
    /// `[limits]`
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `[s2s]`: federation with other servers.
    #[serde(default)]
    pub s2s: S2sConfig,
    /// `[http]`: the HTTP listener (host-meta, metrics, WebSocket, modules' routes).
    #[serde(default)]
    pub http: HttpConfig,
    /// `[log]`
    #[serde(default)]
    pub log: LogConfig,
    /// `[modules]`
    #[serde(default)]
    pub modules: ModulesConfig,
    /// `[hosts."<domain>"]` per-host overrides.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostConfig>,
    /// Where the file was read from; relative paths in it are relative to the directory
    /// the server runs in.
    #[serde(skip)]
    pub path: PathBuf,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The virtual hosts (XMPP domains) served, e.g. `["example.org"]`.
    pub hosts: Vec<String>,
    /// Bare JIDs of the server administrators.
    #[serde(default)]
    pub admins: Vec<String>,
    /// The local admin socket the `starling` command line talks to the running
    /// server through (mode 0600: the server's OS user only). Empty: none. Default
    /// `data/starling.sock`.
    #[serde(default = "default_admin_socket")]
    pub admin_socket: PathBuf,
}

fn default_admin_socket() -> PathBuf {
    PathBuf::from("data/starling.sock")
}

/// `[listen]`: where to accept connections. An empty list disables that listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// Client connections with STARTTLS (RFC 6120 §5). Default `["[::]:5222"]`.
    pub c2s: Vec<SocketAddr>,
    /// Client connections with direct TLS (XEP-0368). Default `["[::]:5223"]`.
    pub c2s_direct_tls: Vec<SocketAddr>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            c2s: vec![SocketAddr::from(([0u16; 8], 5222))],
            c2s_direct_tls: vec![SocketAddr::from(([0u16; 8], 5223))],
        }
    }
}

/// `[tls]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Directory holding `<domain>.crt`/`<domain>.key`, `<domain>/fullchain.pem` +
    /// `privkey.pem`, or `<domain>.pem`. Default `certs`.
    pub cert_dir: PathBuf,
    /// Generate a self-signed certificate for a host that has none (development only;
    /// clients will warn). Default `false`; the example config turns it on for localhost.
    pub generate_self_signed: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig { cert_dir: PathBuf::from("certs"), generate_self_signed: false }
    }
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://data/starling.sqlite` (default) or `postgres://user@host/db`.
    pub url: String,
    /// Database connections in the pool. Default 8.
    pub pool_size: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { url: "sqlite://data/starling.sqlite".into(), pool_size: 8 }
    }
}

/// What to do when a client binds a resource that is already bound (RFC 6120 §7.7.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceConflict {
    /// Disconnect the old session with a `conflict` stream error (default; what most
    /// servers do, so a reconnecting phone replaces its stale session).
    KickOld,
    /// Refuse the new bind with a `conflict` stanza error.
    Refuse,
    /// Give the new session a server-generated resource instead.
    Random,
}

/// `[c2s]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C2sConfig {
    /// Allow authentication without TLS on loopback connections only (for load tests
    /// and local tools). Default `false`: TLS is always required.
    pub allow_plaintext_auth_on_loopback: bool,
    /// Resource conflict policy. Default `kick_old`.
    pub resource_conflict: ResourceConflict,
    /// Sessions (bound resources) one account may have at once; another bind gets
    /// `resource-constraint` (RFC 6120 §7.6.2.1). 0: no limit. Default 10.
    pub max_sessions_per_account: usize,
    /// Seconds a connection may take from TCP accept to a bound resource. Default 60.
    pub negotiation_timeout: u64,
    /// Seconds without any data from a client before the server pings it (XEP-0199);
    /// another period of silence closes the stream. Default 300.
    pub idle_timeout: u64,
    /// Stream management (XEP-0198): seconds a resumable session whose connection
    /// dropped stays online, collecting stanzas, waiting for the client to resume it.
    /// Clients asking for less get less; 0 turns resumption off. Default 3600.
    pub sm_resume_timeout: u64,
    /// Stanzas sent to a stream-management client and not yet acknowledged before the
    /// session is closed with `policy-violation` (they go to offline storage). Above the
    /// offline store's `max_per_user`, as a login delivers all of it at once. Default 5000.
    pub sm_max_unacked: usize,
    /// The server asks for an acknowledgement (`<r/>`) each time this many stanzas were
    /// sent since it last asked. Default 5.
    pub sm_request_ack_every: usize,
    /// FAST (XEP-0484): the file holding the server's token key, created (mode 0600)
    /// when the first token is issued. Tokens are derived from it and a random id in
    /// the database, so a copy of the database alone logs nobody in; replacing the
    /// file logs out every FAST client (they fall back to the password). Default
    /// `data/fast.key`.
    pub fast_key_file: PathBuf,
    /// Seconds a FAST token stays valid. Default 1814400 (21 days).
    pub fast_token_lifetime: u64,
    /// Seconds after which a used token is replaced by a new one in the same login.
    /// Default 86400.
    pub fast_token_rotation: u64,
    /// Client installations per account that may hold tokens; issuing one more drops
    /// the longest unused. Default 20.
    pub fast_tokens_per_account: usize,
}

impl Default for C2sConfig {
    fn default() -> Self {
        C2sConfig {
            allow_plaintext_auth_on_loopback: false,
            resource_conflict: ResourceConflict::KickOld,
            max_sessions_per_account: 10,
            negotiation_timeout: 60,
            idle_timeout: 300,
            sm_resume_timeout: 3600,
            sm_max_unacked: 5000,
            sm_request_ack_every: 5,
            fast_key_file: PathBuf::from("data/fast.key"),
            fast_token_lifetime: 21 * 86400,
            fast_token_rotation: 86400,
            fast_tokens_per_account: 20,
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest stanza accepted, in bytes (`policy-violation` beyond). Default 262144.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting accepted (`policy-violation` beyond). Default 64.
    pub max_depth: usize,
    /// Seconds a client may take to send one stanza once it has begun it; slower
    /// (a slowloris sender trickling bytes) ends the stream with `policy-violation`.
    /// Time the server spends pacing the client does not count. 0: no limit. Default 60.
    pub stanza_timeout: u32,
    /// Stanzas waiting to be written to one client before it counts as too slow and
    /// is disconnected. Default 1024.
    pub session_queue: usize,
    /// Concurrent client connections (keep below the process file-descriptor limit, which
    /// also serves the database). Default 10000.
    pub max_connections: usize,
    /// Failed authentications allowed per IP address and per account within
    /// `auth_failure_window` seconds before further attempts are refused. Default 5.
    pub auth_failures: u32,
    /// The window for `auth_failures`, in seconds. Default 60.
    pub auth_failure_window: u64,
    /// Client connections over TCP from one IP address at once; more are refused with
    /// a `policy-violation` stream error. 0: no limit. Default 100.
    pub connections_per_ip: usize,
    /// Addresses `connections_per_ip` does not apply to. Default loopback (the admin's
    /// own tools, load tests).
    pub connections_per_ip_exempt: Vec<std::net::IpAddr>,
    /// Bytes per second one client stream may send; beyond its burst the server reads
    /// it more slowly (TCP pushes back on the client). 0: no limit. Default 1 MiB/s.
    pub c2s_bytes_per_second: u64,
    /// Bytes a client may send at once before `c2s_bytes_per_second` applies. Default 4 MiB.
    pub c2s_burst_bytes: u64,
    /// Stanzas per second one client stream may send; beyond its burst the server reads
    /// it more slowly, as for bytes. 0: no limit. Default 1000.
    pub c2s_stanzas_per_second: u64,
    /// Stanzas a client may send at once before `c2s_stanzas_per_second` applies.
    /// Default 5000.
    pub c2s_burst_stanzas: u64,
    /// The same for each incoming server-to-server stream, which carries every user of
    /// the peer. Default 16 MiB/s.
    pub s2s_bytes_per_second: u64,
    /// The burst of an incoming server-to-server stream. Default 64 MiB.
    pub s2s_burst_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_stanza_bytes: 256 * 1024,
            max_depth: 64,
            stanza_timeout: 60,
            session_queue: 1024,
            max_connections: 10_000,
            auth_failures: 5,
            auth_failure_window: 60,
            connections_per_ip: 100,
            connections_per_ip_exempt: vec![
                std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ],
            c2s_bytes_per_second: 1 << 20,
            c2s_burst_bytes: 4 << 20,
            c2s_stanzas_per_second: 1000,
            c2s_burst_stanzas: 5000,
            s2s_bytes_per_second: 16 << 20,
            s2s_burst_bytes: 64 << 20,
        }
    }
}

/// `[s2s]`: server-to-server streams (RFC 6120, XEP-0220, XEP-0178, XEP-0368).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S2sConfig {
    /// Federate at all. Default `true`; `false` answers stanzas to other domains with
    /// `remote-server-not-found` and opens no S2S listener.
    pub enabled: bool,
    /// Incoming S2S streams with STARTTLS. Default `["[::]:5269"]`.
    pub listen: Vec<SocketAddr>,
    /// Incoming S2S streams with direct TLS (XEP-0368, ALPN `xmpp-server`). Default
    /// `["[::]:5270"]`.
    pub listen_direct_tls: Vec<SocketAddr>,
    /// The secret dialback keys are derived from (XEP-0185). Default empty: a random
    /// secret per start (keys then do not survive a restart, which only matters for
    /// verifications in flight). Set it when several nodes serve one domain.
    pub dialback_secret: String,
    /// The peer's certificate must be valid for its domain (RFC 6125), in both
    /// directions; without it the stream is refused. Default `false`.
    /// `[s2s.domains."<domain>"]` overrides this per domain.
    pub require_valid_certificate: bool,
    /// Accept and use Server Dialback (XEP-0220) when certificates do not authenticate
    /// the peer. Default `true`.
    pub allow_dialback: bool,
    /// Per-domain policy overrides.
    pub domains: BTreeMap<String, DomainPolicyOverride>,
    /// Domains never federated with, in either direction (subdomains included).
    pub blocked_domains: Vec<String>,
    /// PEM files with CA certificates trusted for peer certificates in addition to the
    /// system roots (private federations, tests).
    pub extra_ca_files: Vec<PathBuf>,
    /// Trust the system's root certificates. Default `true`.
    pub system_roots: bool,
    /// DNS servers (`"127.0.0.1:53"`) for SRV and address lookups; empty (the default)
    /// uses the system's resolver configuration. `/etc/hosts` is read either way.
    pub nameservers: Vec<SocketAddr>,
    /// Fixed addresses for remote domains, tried instead of DNS:
    /// `"example.net" = "10.0.0.5:5269"`, or `{ address = "…", direct_tls = true }`.
    pub routes: BTreeMap<String, StaticRoute>,
    /// Seconds for one TCP connection attempt. Default 10.
    pub connect_timeout: u64,
    /// Seconds from the first connection attempt to an authenticated stream (and for an
    /// incoming stream to authenticate); stanzas queued meanwhile bounce with
    /// `remote-server-timeout` when it expires. Default 60.
    pub negotiation_timeout: u64,
    /// Seconds a stream may stay without traffic before it is closed. Default 600.
    pub idle_timeout: u64,
    /// Stanzas queued per remote domain while connecting or while the link is busy;
    /// beyond it stanzas bounce with `resource-constraint`. Default 4096.
    pub queue: usize,
}

impl Default for S2sConfig {
    fn default() -> Self {
        S2sConfig {
            enabled: true,
            listen: vec![SocketAddr::from(([0u16; 8], 5269))],
            listen_direct_tls: vec![SocketAddr::from(([0u16; 8], 5270))],
            dialback_secret: String::new(),
            require_valid_certificate: false,
            allow_dialback: true,
            domains: BTreeMap::new(),
            blocked_domains: Vec::new(),
            extra_ca_files: Vec::new(),
            system_roots: true,
            nameservers: Vec::new(),
            routes: BTreeMap::new(),
            connect_timeout: 10,
            negotiation_timeout: 60,
            idle_timeout: 600,
            queue: 4096,
        }
    }
}

/// How a remote domain must authenticate (`[s2s]` defaults plus overrides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainPolicy {
    /// See [`S2sConfig::require_valid_certificate`].
    pub require_valid_certificate: bool,
    /// See [`S2sConfig::allow_dialback`].
    pub allow_dialback: bool,
}

/// `[s2s.domains."<domain>"]`: the keys given replace the `[s2s]` defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainPolicyOverride {
    /// See [`DomainPolicy::require_valid_certificate`].
    pub require_valid_certificate: Option<bool>,
    /// See [`DomainPolicy::allow_dialback`].
    pub allow_dialback: Option<bool>,
}

/// Where a statically routed domain is reached.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum StaticRoute {
    /// `"host:port"`, STARTTLS.
    Address(String),
    /// `{ address = "host:port", direct_tls = true }`.
    Detailed {
        /// `host:port`.
        address: String,
        /// TLS from the first byte (XEP-0368) instead of STARTTLS.
        #[serde(default)]
        direct_tls: bool,
    },
}

impl StaticRoute {
    /// `(host, port, direct_tls)`, or `None` when the address is not `host:port`.
    pub fn target(&self) -> Option<(String, u16, bool)> {
        let (address, direct_tls) = match self {
            StaticRoute::Address(address) => (address.as_str(), false),
            StaticRoute::Detailed { address, direct_tls } => (address.as_str(), *direct_tls),
        };
        let (host, port) = address.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some((host.to_owned(), port.parse().ok()?, direct_tls))
    }
}

/// `[http]`: one HTTP listener for every HTTP service (XEP-0156 host-meta, `/metrics`,
/// RFC 7395 WebSocket, and the routes modules add, such as file upload). Off unless a
/// listen address is given.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Plain HTTP, for running behind a reverse proxy that terminates TLS, e.g.
    /// `["127.0.0.1:5280"]`. Default none.
    pub listen: Vec<SocketAddr>,
    /// HTTPS with the hosts' certificates (the same as for client streams), e.g.
    /// `["[::]:5443"]`. Default none.
    pub listen_tls: Vec<SocketAddr>,
    /// The base URL clients reach the listener at (`https://xmpp.example.org`), used in
    /// host-meta and upload slots. Default: derived from the first listener,
    /// `https://<first host>:<port>` (`http://` for a plain listener). Set it behind a
    /// reverse proxy.
    pub public_url: String,
    /// Connections on the plain listener count as encrypted (the reverse proxy in front
    /// terminates TLS), so clients may authenticate over its WebSocket. Default `false`.
    pub plain_is_behind_tls_proxy: bool,
    /// When set, `/metrics` answers any client presenting `Authorization: Bearer
    /// <token>`; when empty (the default), only loopback clients. Behind a reverse proxy
    /// every client looks like loopback: set a token or do not proxy `/metrics`.
    pub metrics_token: String,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info` (default), `debug`, `trace`, or a tracing filter such as
    /// `info,starling::c2s=debug`. `RUST_LOG` overrides it.
    pub level: String,
    /// `text` (default) or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Text }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[modules]`: which modules run, and their settings as `[modules.<name>]` tables.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ModulesConfig {
    /// Modules enabled on every host.
    #[serde(default)]
    pub enabled: Vec<String>,
    /// `[modules.<name>]` tables, checked by the module itself.
    #[serde(flatten)]
    pub settings: BTreeMap<String, toml::Value>,
}

/// `[hosts."<domain>"]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Modules from `[modules] enabled` that do not run for this host.
    pub modules_disabled: Vec<String>,
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and checks configuration text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        config.path = path.to_owned();
        config.validate()?;
        Ok(config)
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { path: self.path.clone(), key: key.into(), message: message.into() }
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        if self.server.hosts.is_empty() {
            return Err(self.invalid("server.hosts", "at least one host is required"));
        }
        let mut normalised = Vec::new();
        for host in &self.server.hosts {
            let jid = jid::BareJid::new(host)
                .map_err(|e| self.invalid("server.hosts", format!("{host:?} is not a valid domain: {e}")))?;
            if jid.node().is_some() {
                return Err(self.invalid("server.hosts", format!("{host:?} is a JID, not a domain")));
            }
            let domain = jid.domain().to_string();
            if normalised.contains(&domain) {
                return Err(self.invalid("server.hosts", format!("{host:?} is listed twice")));
            }
            normalised.push(domain);
        }
        self.server.hosts = normalised;
        for admin in &self.server.admins {
            jid::BareJid::new(admin).map_err(|e| self.invalid("server.admins", format!("{admin:?}: {e}")))?;
        }
        for host in self.hosts.keys() {
            if !self.server.hosts.contains(host) {
                return Err(self.invalid(&format!("hosts.{host:?}"), "not listed in server.hosts"));
            }
        }
        let limits = &self.limits;
        if limits.max_stanza_bytes < 10_000 {
            return Err(self.invalid("limits.max_stanza_bytes", "must be at least 10000 (RFC 6120 §13.12)"));
        }
        if limits.max_depth < 8 {
            return Err(self.invalid("limits.max_depth", "must be at least 8"));
        }
        if limits.session_queue == 0 || limits.max_connections == 0 || self.storage.pool_size == 0 {
            return Err(self.invalid("limits", "queue, connection and pool sizes must be positive"));
        }
        if self.c2s.sm_max_unacked == 0 || self.c2s.sm_request_ack_every == 0 {
            return Err(self.invalid("c2s", "sm_max_unacked and sm_request_ack_every must be positive"));
        }
        self.validate_s2s()?;
        if !self.http.public_url.is_empty() {
            let url = self.http.public_url.trim_end_matches('/');
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.contains('?') {
                return Err(self.invalid("http.public_url", "must be an http:// or https:// URL"));
            }
            self.http.public_url = url.to_owned();
        }
        for (name, value) in &self.modules.settings {
            if !value.is_table() {
                return Err(self
                    .invalid(&format!("modules.{name}"), "unknown key (module settings are [modules.<name>] tables)"));
            }
            if !self.modules.enabled.contains(name) {
                tracing::warn!(module = %name, "[modules.{name}] is configured but the module is not enabled");
            }
        }
        Ok(())
    }

    fn validate_s2s(&mut self) -> Result<(), ConfigError> {
        let domain_of = |key: &str, text: &str| -> Result<String, ConfigError> {
            match jid::BareJid::new(text) {
                Ok(jid) if jid.node().is_none() => Ok(jid.domain().to_string()),
                _ => Err(self.invalid(key, format!("{text:?} is not a domain"))),
            }
        };
        let mut domains = BTreeMap::new();
        for (domain, policy) in &self.s2s.domains {
            domains.insert(domain_of("s2s.domains", domain)?, *policy);
        }
        let mut blocked = Vec::new();
        for domain in &self.s2s.blocked_domains {
            blocked.push(domain_of("s2s.blocked_domains", domain)?);
        }
        let mut routes = BTreeMap::new();
        for (domain, route) in &self.s2s.routes {
            if route.target().is_none() {
                return Err(self.invalid(&format!("s2s.routes.{domain:?}"), "expected \"host:port\""));
            }
            routes.insert(domain_of("s2s.routes", domain)?, route.clone());
        }
        if self.s2s.queue == 0 || self.s2s.negotiation_timeout == 0 || self.s2s.connect_timeout == 0 {
            return Err(self.invalid("s2s", "queue and timeouts must be positive"));
        }
        self.s2s.domains = domains;
        self.s2s.blocked_domains = blocked;
        self.s2s.routes = routes;
        Ok(())
    }

    /// The effective policy for a remote domain (`[s2s]` defaults plus overrides).
    pub fn s2s_policy(&self, domain: &str) -> DomainPolicy {
        let mut policy = DomainPolicy {
            require_valid_certificate: self.s2s.require_valid_certificate,
            allow_dialback: self.s2s.allow_dialback,
        };
        if let Some(o) = self.s2s.domains.get(domain) {
            policy.require_valid_certificate = o.require_valid_certificate.unwrap_or(policy.require_valid_certificate);
            policy.allow_dialback = o.allow_dialback.unwrap_or(policy.allow_dialback);
        }
        policy
    }

    /// Whether federation with `domain` is forbidden (it or a parent domain is blocked).
    pub fn s2s_blocked(&self, domain: &str) -> bool {
        self.s2s
            .blocked_domains
            .iter()
            .any(|b| domain == b || domain.strip_suffix(b.as_str()).is_some_and(|p| p.ends_with('.')))
    }

    /// Whether `module` runs for `host`.
    pub fn module_enabled_for(&self, module: &str, host: &str) -> bool {
        self.modules.enabled.iter().any(|m| m == module)
            && !self.hosts.get(host).is_some_and(|h| h.modules_disabled.iter().any(|m| m == module))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let config = parse("[server]\nhosts = [\"Example.ORG\"]\n").expect("valid");
        assert_eq!(config.server.hosts, vec!["example.org"]);
        assert_eq!(config.limits.max_stanza_bytes, 262_144);
        assert_eq!(config.c2s.resource_conflict, ResourceConflict::KickOld);
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = parse("[server]\nhosts = [\"a.test\"]\n[limits]\nmax_stanza_byte = 5\n").expect_err("unknown key");
        assert!(err.to_string().contains("max_stanza_byte"), "{err}");
    }

    #[test]
    fn unknown_section_is_an_error() {
        let err = parse("[server]\nhosts = [\"a.test\"]\n[lisen]\nc2s = []\n").expect_err("unknown section");
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = parse("[server]\nhosts = []\n").expect_err("empty hosts");
        assert!(err.to_string().contains("server.hosts"), "{err}");
        let err = parse("[server]\nhosts = [\"a@b\"]\n").expect_err("jid");
        assert!(err.to_string().contains("server.hosts"), "{err}");
        let err = parse("[server]\nhosts = [\"a.test\"]\n[hosts.\"b.test\"]\n").expect_err("unknown host");
        assert!(err.to_string().contains("b.test"), "{err}");
    }

    #[test]
    fn modules_per_host() {
        let config = parse(
            "[server]\nhosts = [\"a.test\", \"b.test\"]\n[modules]\nenabled = [\"ping\"]\n[modules.ping]\n[hosts.\"b.test\"]\nmodules_disabled = [\"ping\"]\n",
        )
        .expect("valid");
        assert!(config.module_enabled_for("ping", "a.test"));
        assert!(!config.module_enabled_for("ping", "b.test"));
        assert!(config.modules.settings.contains_key("ping"));
    }

    #[test]
    fn s2s_policies_and_routes() {
        let config = parse(
            "[server]\nhosts = [\"a.test\"]\n[s2s]\nallow_dialback = false\nblocked_domains = [\"Evil.test\"]\n\
             [s2s.domains.\"B.test\"]\nallow_dialback = true\nrequire_valid_certificate = true\n\
             [s2s.routes]\n\"c.test\" = \"127.0.0.1:5269\"\n\"d.test\" = { address = \"[::1]:5270\", direct_tls = true }\n",
        )
        .expect("valid");
        assert!(!config.s2s_policy("x.test").allow_dialback);
        let b = config.s2s_policy("b.test");
        assert!(b.allow_dialback && b.require_valid_certificate);
        assert!(
            config.s2s_blocked("evil.test")
                && config.s2s_blocked("muc.evil.test")
                && !config.s2s_blocked("notevil.test")
        );
        assert_eq!(config.s2s.routes["c.test"].target(), Some(("127.0.0.1".into(), 5269, false)));
        assert_eq!(config.s2s.routes["d.test"].target(), Some(("::1".into(), 5270, true)));
        let err = parse("[server]\nhosts = [\"a.test\"]\n[s2s.routes]\n\"c.test\" = \"nowhere\"\n").expect_err("route");
        assert!(err.to_string().contains("s2s.routes"), "{err}");
        let err = parse("[server]\nhosts = [\"a.test\"]\n[s2s]\nallow_dialbak = true\n").expect_err("unknown key");
        assert!(err.to_string().contains("allow_dialbak"), "{err}");
    }

    #[test]
    fn example_configs_are_valid() {
        for file in ["conf/starling.toml", "conf/minimal.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            Config::load(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }
}

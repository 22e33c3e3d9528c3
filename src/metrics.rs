//! Server metrics, exported in the Prometheus text format at `/metrics` on the HTTP
//! listener (see [`crate::http`]). The `metrics` crate's recorder is process-wide, so
//! it is installed once; counters are recorded wherever the event happens, through the
//! small functions here so that names and labels stay in one place.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use starling_api::PoolState;

/// Seconds, from a cached SQLite read to a slow PostgreSQL transaction.
const DB_QUERY_BUCKETS: &[f64] = &[0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder's handle, installing the recorder on first use. When
/// another recorder is installed already (an embedding program's), metrics go there
/// and this handle renders nothing.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        // Without buckets the exporter renders histograms as summaries.
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full("starling_db_query_duration_seconds".into()), DB_QUERY_BUCKETS)
            .map_or_else(|_| PrometheusBuilder::new().build_recorder(), PrometheusBuilder::build_recorder);
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder is already installed; /metrics will be empty");
        }
        handle
    })
}

/// The database pool's size limit, connections in use and idle ones.
pub fn db_pool(pool: PoolState) {
    metrics::gauge!("starling_db_pool_max_connections").set(f64::from(pool.max_size));
    metrics::gauge!("starling_db_pool_connections", "state" => "in_use")
        .set(f64::from(pool.open.saturating_sub(pool.idle)));
    metrics::gauge!("starling_db_pool_connections", "state" => "idle").set(f64::from(pool.idle));
}

/// The Prometheus label of a stanza kind; anything else is not counted.
fn stanza_label(name: &str) -> Option<&'static str> {
    match name {
        "message" => Some("message"),
        "presence" => Some("presence"),
        "iq" => Some("iq"),
        _ => None,
    }
}

/// A stanza entered the router (from a client, a server, a component or a module).
pub fn stanza_routed(name: &str) {
    if let Some(kind) = stanza_label(name) {
        metrics::counter!("starling_stanzas_routed_total", "kind" => kind).increment(1);
    }
}

/// A stanza was queued for a local client session.
pub fn stanza_delivered(name: &str) {
    if let Some(kind) = stanza_label(name) {
        metrics::counter!("starling_stanzas_delivered_total", "kind" => kind).increment(1);
    }
}

/// A stream used up its read rate and waits before reading more.
pub fn read_throttled(kind: &'static str) {
    metrics::counter!("starling_read_throttled_total", "kind" => kind).increment(1);
}

/// A connection was refused because its IP address had too many open already.
pub fn connection_refused_per_ip(kind: &'static str) {
    metrics::counter!("starling_connections_refused_per_ip_total", "kind" => kind).increment(1);
}

/// A login was refused because its address or account failed too often recently.
pub fn auth_throttled() {
    metrics::counter!("starling_auth_throttled_total").increment(1);
}

/// A SASL authentication ended.
pub fn authentication(success: bool) {
    let result = if success { "success" } else { "failure" };
    metrics::counter!("starling_auth_total", "result" => result).increment(1);
}

/// What kind of connection a [`ConnectionGauge`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionKind {
    /// A client over TCP (STARTTLS or direct TLS).
    C2s,
    /// A client over WebSocket (RFC 7395).
    WebSocket,
    /// A client over BOSH (XEP-0206).
    Bosh,
    /// An incoming server-to-server stream.
    S2sIn,
    /// An outgoing server-to-server stream.
    S2sOut,
    /// An HTTP connection.
    Http,
}

impl ConnectionKind {
    fn label(self) -> &'static str {
        match self {
            ConnectionKind::C2s => "c2s",
            ConnectionKind::WebSocket => "websocket",
            ConnectionKind::Bosh => "bosh",
            ConnectionKind::S2sIn => "s2s_in",
            ConnectionKind::S2sOut => "s2s_out",
            ConnectionKind::Http => "http",
        }
    }
}

/// Counts one open connection in `starling_connections{kind}` while it lives, and
/// every connection ever opened in `starling_connections_opened_total{kind}`.
pub struct ConnectionGauge(ConnectionKind);

impl ConnectionGauge {
    /// Counts a connection that just opened.
    pub fn open(kind: ConnectionKind) -> Self {
        metrics::gauge!("starling_connections", "kind" => kind.label()).increment(1.0);
        metrics::counter!("starling_connections_opened_total", "kind" => kind.label()).increment(1);
        ConnectionGauge(kind)
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics::gauge!("starling_connections", "kind" => self.0.label()).decrement(1.0);
    }
}

//! XEP-0065: SOCKS5 Bytestreams — a proxy component (`proxy.<host>` by default) that
//! relays a bytestream between two clients that cannot reach each other directly
//! (both behind NAT), as Gajim, Psi and Dino use it for file transfer.
//!
//! The component answers disco (identity `proxy/bytestreams`) and the streamhost query
//! (§4) with the address of its SOCKS5 listener. Both parties connect there (RFC 1928,
//! no authentication, CONNECT to the DOMAIN address `SHA1(SID + initiator JID + target
//! JID)`, §5.3.2); the initiator then sends `activate` (§6.3.4), and from then on the
//! proxy copies bytes both ways. Because the hash covers the initiator's full JID as
//! the server stamped it, only the initiator can activate its stream.
//!
//! Limits: a per-user bandwidth cap (bytes per second, a token bucket shared by every
//! stream that user initiated), a timeout for connections never activated, and a cap
//! on how many such connections may wait at once.

mod socks;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use sha1::{Digest, Sha1};
use starling_api::minidom::Element;
use starling_api::minidom::rxml::xml_ncname;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{
    IqPayload, IqRequest, IqResult, ModuleError, ModuleSpec, Registrar, Scope, Spec, SpecSupport, Support, stanza_error,
};

use crate::socks::{Activation, Proxy};

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "proxy65",
    summary: "XEP-0065 SOCKS5 Bytestreams proxy (component proxy.<host>)",
    specs: &[SpecSupport {
        spec: Spec::Xep(65),
        version: "1.8.2",
        status: Support::Complete,
        features: &[NS_BYTESTREAMS],
    }],
    migrations: None,
    forget_user: None,
    start,
};

const NS_BYTESTREAMS: &str = "http://jabber.org/protocol/bytestreams";

/// `[modules.proxy65]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ProxyConfig {
    /// The component's domain; `{host}` is replaced by each virtual host.
    domain: String,
    /// Where the SOCKS5 listener binds.
    listen: SocketAddr,
    /// The host name or address advertised in the streamhost; empty: the listen
    /// address, or the component domain when that is a wildcard address.
    host: String,
    /// Bytes per second each user's streams may relay together; 0 for no limit.
    bandwidth_per_user: u64,
    /// Seconds a SOCKS5 connection may wait for its peer and the activation.
    pending_timeout: u64,
    /// Connections that may wait for activation at once.
    max_pending: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            domain: "proxy.{host}".into(),
            listen: SocketAddr::from(([0, 0, 0, 0], 7777)),
            host: String::new(),
            bandwidth_per_user: 0,
            pending_timeout: 60,
            max_pending: 256,
        }
    }
}

/// The listener's address once bound; read by the streamhost query.
type Bound = Arc<Mutex<Option<SocketAddr>>>;

/// `<query xmlns='http://jabber.org/protocol/bytestreams'/>`, as a streamhost request
/// (get) or an activation (set, with `sid` and `<activate/>`).
struct Query {
    sid: Option<String>,
    activate: Option<String>,
}

impl TryFrom<Element> for Query {
    type Error = Element;
    fn try_from(element: Element) -> Result<Self, Element> {
        if !element.is("query", NS_BYTESTREAMS) {
            return Err(element);
        }
        let sid = element.attr("sid").map(str::to_owned);
        let activate = element.get_child("activate", NS_BYTESTREAMS).map(|a| a.text().trim().to_owned());
        Ok(Query { sid, activate })
    }
}

impl IqPayload for Query {
    const NS: &'static str = NS_BYTESTREAMS;
    const NAME: &'static str = "query";
}

fn start(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let config: ProxyConfig = reg.config()?;
    if config.pending_timeout == 0 || config.max_pending == 0 {
        return Err(ModuleError::Config {
            module: "proxy65",
            message: "pending_timeout and max_pending must be positive".into(),
        });
    }
    for host in reg.hosts().to_vec() {
        let domain = config.domain.replace("{host}", &host);
        // Everything the component answers is typed IQ; other stanzas are dropped.
        reg.component(&domain, &host, |_, _| {})?;
    }
    reg.disco_identity(
        Scope::Component,
        starling_api::module::DiscoIdentity { category: "proxy", type_: "bytestreams", name: "SOCKS5 Bytestreams" },
    );
    reg.disco_feature(Scope::Component, NS_BYTESTREAMS);

    let proxy = Arc::new(Proxy::new(
        config.bandwidth_per_user,
        Duration::from_secs(config.pending_timeout),
        config.max_pending,
    ));
    let bound: Bound = Arc::default();
    let listener = Arc::new(Mutex::new(None));

    let (get_bound, advertised) = (bound.clone(), config.host.clone());
    reg.iq_get::<Query, _, _>(Scope::Component, move |ctx, req| {
        let addr = *get_bound.lock().unwrap_or_else(|e| e.into_inner());
        let local = ctx.registry().component(req.to.domain().as_str()).map(|c| c.host.clone());
        let result = streamhost(&req, local.as_deref(), addr, &advertised);
        async move { result }
    });
    let activating = proxy.clone();
    reg.iq_set::<Query, _, _>(Scope::Component, move |ctx, req| {
        let local = ctx.registry().component(req.to.domain().as_str()).map(|c| c.host.clone());
        let result = activate(&activating, &req, local.as_deref());
        async move { result }
    });

    // Bound before clients are accepted, so the first streamhost query has a port.
    let (binding, listen, store) = (bound, config.listen, listener.clone());
    reg.on_start(move |_| {
        let (binding, store) = (binding.clone(), store.clone());
        async move {
            let socket = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| ModuleError::Start { module: "proxy65", message: format!("listen {listen}: {e}") })?;
            let addr =
                socket.local_addr().map_err(|e| ModuleError::Start { module: "proxy65", message: e.to_string() })?;
            *binding.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
            *store.lock().unwrap_or_else(|e| e.into_inner()) = Some(socket);
            Ok(())
        }
    });
    reg.task("proxy65-listener", move |_, token| {
        let socket = listener.lock().unwrap_or_else(|e| e.into_inner()).take();
        let proxy = proxy.clone();
        async move {
            if let Some(socket) = socket {
                proxy.serve(socket, token).await;
            }
        }
    });
    Ok(())
}

/// Only the component's own host's users may use it: it spends that server's bandwidth.
fn check_local(
    req: &IqRequest<Query>,
    host: Option<&str>,
) -> Result<(), starling_api::xmpp_parsers::stanza_error::StanzaError> {
    match host {
        Some(host) if req.from.node().is_some() && req.from.domain().as_str() == host => Ok(()),
        // §4: a proxy that will not serve the requester answers forbidden.
        _ => Err(stanza_error(ErrorType::Auth, DefinedCondition::Forbidden)),
    }
}

/// §4: the proxy's network address.
fn streamhost(req: &IqRequest<Query>, host: Option<&str>, addr: Option<SocketAddr>, advertised: &str) -> IqResult {
    check_local(req, host)?;
    let Some(addr) = addr else {
        return Err(stanza_error(ErrorType::Cancel, DefinedCondition::NotAllowed));
    };
    let domain = req.to.domain().to_string();
    let host = if !advertised.is_empty() {
        advertised.to_owned()
    } else if addr.ip().is_unspecified() {
        domain.clone()
    } else {
        addr.ip().to_string()
    };
    let streamhost = Element::builder("streamhost", NS_BYTESTREAMS)
        .attr(xml_ncname!("jid").into(), domain)
        .attr(xml_ncname!("host").into(), host)
        .attr(xml_ncname!("port").into(), addr.port().to_string())
        .build();
    Ok(Some(Element::builder("query", NS_BYTESTREAMS).append(streamhost).build()))
}

/// §6.3.4: the initiator asks the proxy to start relaying.
fn activate(proxy: &Proxy, req: &IqRequest<Query>, host: Option<&str>) -> IqResult {
    check_local(req, host)?;
    let (Some(sid), Some(target)) = (req.payload.sid.as_deref(), req.payload.activate.as_deref()) else {
        return Err(stanza_error(ErrorType::Modify, DefinedCondition::BadRequest));
    };
    let Ok(target) = starling_api::parse_jid(target) else {
        return Err(stanza_error(ErrorType::Modify, DefinedCondition::JidMalformed));
    };
    let hash = stream_hash(sid, &req.from.to_string(), &target.to_string());
    let user = req.from.to_bare().to_string();
    match proxy.activate(&hash, &user) {
        Activation::Started => Ok(None),
        // The hash covers the sender's JID: someone else's stream is simply not found.
        Activation::Unknown => Err(stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound)),
        Activation::OneParty => Err(stanza_error(ErrorType::Cancel, DefinedCondition::NotAllowed)),
    }
}

/// §5.3.2: the DST.ADDR both parties connect to, `SHA1(SID + initiator + target)` in
/// lower-case hex.
pub fn stream_hash(sid: &str, initiator: &str, target: &str) -> String {
    let digest = Sha1::new().chain_update(sid).chain_update(initiator).chain_update(target).finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

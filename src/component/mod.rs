//! XEP-0114: Jabber Component Protocol — external components (gateways, bots) connect
//! over TCP in `jabber:component:accept`, prove themselves with a shared secret
//! (`<handshake>` = hex SHA-1 of stream id + secret, §3) and then exchange stanzas
//! with the server as the owner of their domain.
//!
//! A module of the core (it needs the core's stream reader), configured in
//! `[modules.component]`: the listener addresses and each component domain's secret.
//! Each domain is registered as an opaque component route ([`Registrar::external_component`]),
//! so everything addressed to it, IQs included, goes to the connected component; with
//! none connected, stanzas bounce with `service-unavailable`. The handshake is not
//! encrypted: keep the listener on loopback or a private network.

mod accept;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use starling_api::reply::error_reply;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{Context, ModuleError, ModuleSpec, Registrar, Spec, SpecSupport, Stanza, Support, stanza_error};
use tokio::sync::mpsc;

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "component",
    summary: "XEP-0114 external components (gateways, bots) on a TCP port with a shared secret",
    specs: &[SpecSupport { spec: Spec::Xep(114), version: "1.6", status: Support::Complete, features: &[] }],
    migrations: None,
    forget_user: None,
    start,
};

/// `[modules.component]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentsConfig {
    /// Where components connect. Default `["127.0.0.1:5347"]`.
    pub listen: Vec<SocketAddr>,
    /// `[modules.component.domains."<domain>"]`: one table per component.
    pub domains: BTreeMap<String, ComponentConfig>,
    /// Largest stanza accepted from a component, in bytes. Default 262144.
    pub max_stanza_bytes: usize,
}

impl Default for ComponentsConfig {
    fn default() -> Self {
        ComponentsConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 5347))],
            domains: BTreeMap::new(),
            max_stanza_bytes: 256 * 1024,
        }
    }
}

/// One component.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    /// The shared secret of the handshake.
    pub secret: String,
}

/// Connected components: domain → the queue of its connection.
#[derive(Default)]
struct Connected {
    links: Mutex<HashMap<String, (u64, mpsc::Sender<Stanza>)>>,
}

impl Connected {
    /// Registers the connection `id` for `domain`; `false` when one is there already.
    fn attach(&self, domain: &str, id: u64, tx: mpsc::Sender<Stanza>) -> bool {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        if links.get(domain).is_some_and(|(_, tx)| !tx.is_closed()) {
            return false;
        }
        links.insert(domain.to_owned(), (id, tx));
        true
    }

    fn detach(&self, domain: &str, id: u64) {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        if links.get(domain).is_some_and(|(existing, _)| *existing == id) {
            links.remove(domain);
        }
    }

    fn deliver(&self, ctx: &Context, domain: &str, stanza: Stanza) {
        let tx = self.links.lock().unwrap_or_else(|e| e.into_inner()).get(domain).map(|(_, tx)| tx.clone());
        let refused = match tx {
            Some(tx) => match tx.try_send(stanza) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(s) | mpsc::error::TrySendError::Closed(s)) => s,
            },
            None => stanza,
        };
        if refused.name() == "presence" {
            return;
        }
        let error = stanza_error(ErrorType::Cancel, DefinedCondition::ServiceUnavailable);
        if let Some(reply) = error_reply(&refused, &error).filter(|r| r.to().is_some()) {
            ctx.send(reply);
        }
    }
}

fn start(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let config: ComponentsConfig = reg.config()?;
    let invalid = |message: String| ModuleError::Config { module: "component", message };
    let connected = Arc::new(Connected::default());
    let mut secrets = HashMap::new();
    for (domain, component) in &config.domains {
        let normalised = starling_api::parse_bare_jid(domain)
            .ok()
            .filter(|j| j.node().is_none())
            .map(|j| j.domain().to_string())
            .ok_or_else(|| invalid(format!("domains.{domain:?} is not a domain")))?;
        if component.secret.is_empty() {
            return Err(invalid(format!("domains.{domain:?}.secret must not be empty")));
        }
        // The host a component belongs to: the virtual host it is a subdomain of.
        let host = reg
            .hosts()
            .iter()
            .find(|h| normalised.ends_with(&format!(".{h}")))
            .or_else(|| reg.hosts().first())
            .cloned()
            .unwrap_or_default();
        let (links, name) = (connected.clone(), normalised.clone());
        reg.external_component(&normalised, &host, move |ctx, stanza| links.deliver(ctx, &name, stanza))?;
        secrets.insert(normalised, component.secret.clone());
    }
    if secrets.is_empty() {
        return Ok(());
    }
    let shared = Arc::new(accept::Shared { secrets, connected, max_stanza_bytes: config.max_stanza_bytes });
    // Bound before the server reports it has started, so that components (and tests)
    // can connect as soon as it runs, and a port in use stops start-up.
    let listeners = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (bound, listen) = (listeners.clone(), config.listen);
    reg.on_start(move |_| accept::bind(listen.clone(), bound.clone()));
    reg.task("listener", move |ctx, token| {
        let taken = std::mem::take(&mut *listeners.lock().unwrap_or_else(|e| e.into_inner()));
        accept::serve(ctx, token, taken, shared.clone())
    });
    Ok(())
}

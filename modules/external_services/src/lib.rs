//! XEP-0215: External Service Discovery — tells this server's users which STUN and
//! TURN servers to use for audio and video calls (Conversations, Dino, Monal ask before
//! every call), with time-limited TURN credentials.
//!
//! Credentials follow the "TURN REST API" scheme coturn (`use-auth-secret`,
//! `static-auth-secret`), eturnal and Prosody's `mod_turn_external` share: the user
//! name is `<expiry as Unix time>:<bare JID>` and the password is
//! `base64(HMAC-SHA1(secret, user name))`, so the TURN server checks them with the
//! shared secret alone and they stop working at expiry. Only this server's own
//! accounts get answers: relays cost bandwidth.
//!
//! ```toml
//! [modules.external_services]
//! secret = "the TURN server's static-auth-secret"
//! ttl_seconds = 86400
//! [[modules.external_services.services]]
//! type = "stun"
//! host = "turn.example.org"
//! port = 3478
//! [[modules.external_services.services]]
//! type = "turn"
//! host = "turn.example.org"
//! port = 3478
//! transport = "udp"
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use starling_api::jid::BareJid;
use starling_api::minidom::Element;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{
    Context, IqPayload, IqRequest, IqResult, ModuleError, ModuleSpec, Registrar, Scope, Spec, SpecSupport, Support,
    stanza_error,
};

/// XEP-0215's namespace.
pub const NS_EXTDISCO: &str = "urn:xmpp:extdisco:2";

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "external_services",
    summary: "XEP-0215 STUN/TURN discovery with time-limited TURN credentials",
    specs: &[SpecSupport {
        spec: Spec::Xep(215),
        version: "1.0.0",
        status: Support::Complete,
        features: &[NS_EXTDISCO],
    }],
    migrations: None,
    forget_user: None,
    start,
};

/// `[modules.external_services]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ServicesConfig {
    /// The TURN server's shared secret; without it, services that need credentials
    /// are not offered.
    secret: Option<String>,
    /// How long credentials stay valid.
    ttl_seconds: u64,
    services: Vec<ServiceConfig>,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        ServicesConfig { secret: None, ttl_seconds: 86_400, services: Vec::new() }
    }
}

/// One `[[modules.external_services.services]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceConfig {
    /// `stun`, `stuns`, `turn` or `turns`.
    #[serde(rename = "type")]
    kind: String,
    host: String,
    port: Option<u16>,
    /// `udp` or `tcp`.
    transport: Option<String>,
    /// A name to show.
    name: Option<String>,
    /// Whether credentials are needed; default: yes for TURN, no for STUN.
    restricted: Option<bool>,
}

impl ServiceConfig {
    fn restricted(&self) -> bool {
        self.restricted.unwrap_or(self.kind.starts_with("turn"))
    }
}

/// `<services xmlns='urn:xmpp:extdisco:2' [type=…]/>` (§3.1).
#[derive(Debug)]
struct ServicesQuery {
    kind: Option<String>,
}

/// `<credentials xmlns='urn:xmpp:extdisco:2'><service host=… type=… [port=…]/>` (§3.3).
#[derive(Debug)]
struct CredentialsQuery {
    host: String,
    kind: String,
    port: Option<u16>,
}

/// The payload is not what the type expects.
#[derive(Debug)]
struct BadPayload;

impl TryFrom<Element> for ServicesQuery {
    type Error = BadPayload;

    fn try_from(element: Element) -> Result<Self, BadPayload> {
        if !element.is("services", NS_EXTDISCO) {
            return Err(BadPayload);
        }
        Ok(ServicesQuery { kind: element.attr("type").map(str::to_owned) })
    }
}

impl TryFrom<Element> for CredentialsQuery {
    type Error = BadPayload;

    fn try_from(element: Element) -> Result<Self, BadPayload> {
        if !element.is("credentials", NS_EXTDISCO) {
            return Err(BadPayload);
        }
        let service = element.get_child("service", NS_EXTDISCO).ok_or(BadPayload)?;
        Ok(CredentialsQuery {
            host: service.attr("host").ok_or(BadPayload)?.to_owned(),
            kind: service.attr("type").ok_or(BadPayload)?.to_owned(),
            port: match service.attr("port") {
                Some(port) => Some(port.parse().map_err(|_| BadPayload)?),
                None => None,
            },
        })
    }
}

impl IqPayload for ServicesQuery {
    const NS: &'static str = NS_EXTDISCO;
    const NAME: &'static str = "services";
}

impl IqPayload for CredentialsQuery {
    const NS: &'static str = NS_EXTDISCO;
    const NAME: &'static str = "credentials";
}

fn start(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let mut config: ServicesConfig = reg.config()?;
    for service in &config.services {
        if !matches!(service.kind.as_str(), "stun" | "stuns" | "turn" | "turns") {
            return Err(ModuleError::Config {
                module: "external_services",
                message: format!("service type {:?} is not stun, stuns, turn or turns", service.kind),
            });
        }
    }
    if config.secret.is_none() && config.services.iter().any(ServiceConfig::restricted) {
        starling_api::tracing::warn!("external_services: no secret, so TURN services are not offered");
        config.services.retain(|s| !s.restricted());
    }
    reg.disco_feature(Scope::Server, NS_EXTDISCO);
    let services = std::sync::Arc::new(config);
    let s = services.clone();
    reg.iq_get::<ServicesQuery, _, _>(Scope::Server, move |ctx, req| {
        let s = s.clone();
        async move { list(&ctx, req, &s) }
    });
    reg.iq_get::<CredentialsQuery, _, _>(Scope::Server, move |ctx, req| {
        let s = services.clone();
        async move { credentials(&ctx, req, &s) }
    });
    Ok(())
}

/// The requester's account, when it is one of this host's.
fn local_account<P>(
    ctx: &Context,
    req: &IqRequest<P>,
) -> Result<BareJid, starling_api::xmpp_parsers::stanza_error::StanzaError> {
    let account = req.from.to_bare();
    if account.node().is_some() && ctx.is_local_host(account.domain().as_str()) && req.to.domain() == account.domain() {
        Ok(account)
    } else {
        Err(stanza_error(ErrorType::Auth, DefinedCondition::Forbidden))
    }
}

fn list(ctx: &Context, req: IqRequest<ServicesQuery>, config: &ServicesConfig) -> IqResult {
    let account = local_account(ctx, &req)?;
    let mut answer = Element::builder("services", NS_EXTDISCO).build();
    let now = unix_now();
    for service in config.services.iter().filter(|s| req.payload.kind.as_deref().is_none_or(|k| k == s.kind)) {
        answer.append_child(service_element(service, &account, config, now));
    }
    Ok(Some(answer))
}

fn credentials(ctx: &Context, req: IqRequest<CredentialsQuery>, config: &ServicesConfig) -> IqResult {
    let account = local_account(ctx, &req)?;
    let query = &req.payload;
    let service = config
        .services
        .iter()
        .find(|s| s.host == query.host && s.kind == query.kind && query.port.is_none_or(|p| s.port == Some(p)))
        .ok_or_else(|| stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound))?;
    let mut answer = Element::builder("credentials", NS_EXTDISCO).build();
    answer.append_child(service_element(service, &account, config, unix_now()));
    Ok(Some(answer))
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// A `<service/>`, with fresh credentials when it is restricted.
fn service_element(service: &ServiceConfig, account: &BareJid, config: &ServicesConfig, now: u64) -> Element {
    use starling_api::stanza::write_attr;
    let mut xml = format!("<service xmlns='{NS_EXTDISCO}'").into_bytes();
    write_attr(&mut xml, "type", &service.kind);
    write_attr(&mut xml, "host", &service.host);
    if let Some(port) = service.port {
        write_attr(&mut xml, "port", &port.to_string());
    }
    if let Some(transport) = &service.transport {
        write_attr(&mut xml, "transport", transport);
    }
    if let Some(name) = &service.name {
        write_attr(&mut xml, "name", name);
    }
    if service.restricted()
        && let Some(secret) = &config.secret
    {
        let expires = now + config.ttl_seconds;
        let (username, password) = turn_credentials(secret, account, expires);
        let expiry =
            i64::try_from(expires).ok().and_then(|e| chrono::DateTime::from_timestamp(e, 0)).unwrap_or_default();
        write_attr(&mut xml, "restricted", "1");
        write_attr(&mut xml, "username", &username);
        write_attr(&mut xml, "password", &password);
        write_attr(&mut xml, "expires", &expiry.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    xml.extend_from_slice(b"/>");
    // Every value is escaped by write_attr, so this parses.
    std::str::from_utf8(&xml)
        .ok()
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| Element::builder("service", NS_EXTDISCO).build())
}

/// The TURN REST API user name and password, valid until `expires` (Unix time).
fn turn_credentials(secret: &str, account: &BareJid, expires: u64) -> (String, String) {
    let username = format!("{expires}:{account}");
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    let password = STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        // Computed independently: printf %s '1700000000:alice@example.org' |
        //   openssl dgst -sha1 -hmac s3cret -binary | base64
        let account = BareJid::new("alice@example.org").expect("jid");
        let (username, password) = turn_credentials("s3cret", &account, 1_700_000_000);
        assert_eq!(username, "1700000000:alice@example.org");
        assert_eq!(password, "DTKvmY+vZ0UPwC3r7FrA5q50qEI=");
    }
}

//! A built-in XEP-0357 app server for self-hosted apps: a component (`push.<host>`)
//! that receives the push notifications users' servers publish and forwards them to
//! Firebase Cloud Messaging (HTTP v1) or Apple Push Notification service (HTTP/2), with
//! the operator's own credentials. Vendors' apps use their vendor's app server; this
//! one is for apps built and signed by whoever runs the server.
//!
//! A device registers with an ad-hoc command (XEP-0050) to the component, in the
//! shape Conversations' app server uses: `register-push-fcm` with `token` and
//! `android-id`, or `register-push-apns` with `token` and `device-id`. The answer
//! carries the `node` and `secret` the client then gives its server in `<enable/>`
//! (the secret as a publish-option). A publish to the node with the right secret is
//! forwarded; an unknown node or a wrong secret, and a device the platform no longer
//! knows (which is then forgotten), are answered `item-not-found`, so the user's
//! server disables that registration; platform outages are `wait`.
//!
//! Only a hash of each secret is stored. The platform never learns who wrote: the
//! payload is the message count only.

mod http;
mod providers;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use diesel::prelude::*;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use starling_api::minidom::Element;
use starling_api::tracing;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use starling_api::{
    Context, IqPayload, IqRequest, IqResult, Migrations, ModuleError, ModuleSpec, Registrar, Scope, Spec, SpecSupport,
    Support, stanza_error,
};
use subtle::ConstantTimeEq;

use providers::{Apns, Delivery, Fcm};

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "push_gateway",
    summary: "A built-in XEP-0357 app server forwarding to FCM HTTP v1 and APNs, for self-hosted apps",
    specs: &[SpecSupport { spec: Spec::Xep(357), version: "0.4.1", status: Support::Complete, features: &[] }],
    migrations: Some(&MIGRATIONS),
    forget_user: Some(forget_user),
    start,
};

static MIGRATIONS: Migrations = starling_api::migrations!();

const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
const NS_DATA: &str = "jabber:x:data";
const NS_PUSH: &str = "urn:xmpp:push:0";
const NODE_FCM: &str = "register-push-fcm";
const NODE_APNS: &str = "register-push-apns";

diesel::table! {
    /// Registered devices.
    push_gateway_devices (node) {
        node -> Text,
        owner -> Text,
        platform -> Text,
        token -> Text,
        secret_hash -> Text,
        updated_at -> BigInt,
    }
}

/// `[modules.push_gateway]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct GatewayConfig {
    /// The component's domain per host (`{host}` is replaced).
    domain: String,
    /// Seconds a platform gets to answer.
    timeout_seconds: u64,
    /// Firebase Cloud Messaging, if the apps use it.
    fcm: Option<FcmConfig>,
    /// APNs, if the apps use it.
    apns: Option<ApnsConfig>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig { domain: "push.{host}".into(), timeout_seconds: 10, fcm: None, apns: None }
    }
}

/// `[modules.push_gateway.fcm]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FcmConfig {
    /// The Firebase project.
    project_id: String,
    /// The service account key (JSON) from the Firebase console.
    service_account_file: PathBuf,
    /// Default `https://fcm.googleapis.com`.
    #[serde(default = "default_fcm_endpoint")]
    endpoint: String,
    /// Overrides the file's `token_uri`.
    token_uri: Option<String>,
}

fn default_fcm_endpoint() -> String {
    "https://fcm.googleapis.com".into()
}

/// `[modules.push_gateway.apns]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApnsConfig {
    /// The `.p8` signing key from the Apple developer account.
    key_file: PathBuf,
    /// Its key id.
    key_id: String,
    /// The team id.
    team_id: String,
    /// The app's bundle id.
    topic: String,
    /// Default `https://api.push.apple.com` (`https://api.sandbox.push.apple.com` for
    /// development builds).
    #[serde(default = "default_apns_endpoint")]
    endpoint: String,
}

fn default_apns_endpoint() -> String {
    "https://api.push.apple.com".into()
}

/// The platforms configured.
struct Gateway {
    fcm: Option<Fcm>,
    apns: Option<Apns>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn secret_hash(secret: &str) -> String {
    BASE64.encode(Sha256::digest(secret.as_bytes()))
}

fn error(type_: ErrorType, condition: DefinedCondition) -> StanzaError {
    stanza_error(type_, condition)
}

fn start(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let config: GatewayConfig = reg.config()?;
    let invalid = |message: String| ModuleError::Config { module: "push_gateway", message };
    let timeout = Duration::from_secs(config.timeout_seconds.max(1));
    let fcm = match &config.fcm {
        Some(c) => Some(
            Fcm::new(&c.project_id, &c.service_account_file, &c.endpoint, c.token_uri.as_deref(), timeout)
                .map_err(|e| invalid(format!("fcm: {e}")))?,
        ),
        None => None,
    };
    let apns = match &config.apns {
        Some(c) => Some(
            Apns::new(&c.key_file, &c.key_id, &c.team_id, &c.topic, &c.endpoint, timeout)
                .map_err(|e| invalid(format!("apns: {e}")))?,
        ),
        None => None,
    };
    if fcm.is_none() && apns.is_none() {
        // Enabled but not configured (as in the test servers, which enable everything):
        // no component, nothing to forward to.
        tracing::warn!("push_gateway: neither [modules.push_gateway.fcm] nor .apns is set; not serving");
        return Ok(());
    }
    for host in reg.hosts().to_vec() {
        let domain = config.domain.replace("{host}", &host);
        reg.component(&domain, &host, |_, _| {})?;
    }
    reg.disco_identity(
        Scope::Component,
        starling_api::module::DiscoIdentity { category: "pubsub", type_: "push", name: "Push notifications" },
    );
    reg.disco_feature(Scope::Component, NS_PUSH);
    reg.disco_feature(Scope::Component, NS_COMMANDS);
    let gateway = Arc::new(Gateway { fcm, apns });
    let g = gateway.clone();
    reg.iq_set::<Command, _, _>(Scope::Component, move |ctx, req| register(ctx, g.clone(), req));
    reg.iq_set::<Publish, _, _>(Scope::Component, move |ctx, req| forward(ctx, gateway.clone(), req));
    Ok(())
}

/// An XEP-0050 `<command/>` to the component.
struct Command(Element);

impl TryFrom<Element> for Command {
    type Error = Element;
    fn try_from(element: Element) -> Result<Self, Element> {
        if element.is("command", NS_COMMANDS) { Ok(Command(element)) } else { Err(element) }
    }
}

impl IqPayload for Command {
    const NS: &'static str = NS_COMMANDS;
    const NAME: &'static str = "command";
}

/// A field's first value in a data form.
fn field(form: &Element, var: &str) -> Option<String> {
    form.children()
        .find(|f| f.is("field", NS_DATA) && f.attr("var") == Some(var))
        .and_then(|f| f.get_child("value", NS_DATA))
        .map(|v| v.text().trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// `register-push-fcm` / `register-push-apns`, in one step (the form comes with
/// `execute`, as Conversations sends it).
async fn register(ctx: Context, gateway: Arc<Gateway>, req: IqRequest<Command>) -> IqResult {
    let command = req.payload.0;
    let node = command.attr("node").unwrap_or_default().to_owned();
    let (platform, device_field) = match node.as_str() {
        NODE_FCM if gateway.fcm.is_some() => ("fcm", "android-id"),
        NODE_APNS if gateway.apns.is_some() => ("apns", "device-id"),
        _ => return Err(error(ErrorType::Cancel, DefinedCondition::ItemNotFound)),
    };
    let owner = req.from.to_bare();
    // Only this server's users: the gateway pays for every notification.
    if !ctx.is_local_host(owner.domain().as_str()) || owner.node().is_none() {
        return Err(error(ErrorType::Auth, DefinedCondition::Forbidden));
    }
    let form = command.get_child("x", NS_DATA);
    let (Some(token), Some(device)) = (form.and_then(|f| field(f, "token")), form.and_then(|f| field(f, device_field)))
    else {
        return Err(error(ErrorType::Modify, DefinedCondition::BadRequest));
    };
    // One node per account and device: registering again replaces the token.
    let push_node = URL_SAFE_NO_PAD.encode(&Sha256::digest(format!("{owner}\0{platform}\0{device}").as_bytes())[..18]);
    let secret = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
    let row = (
        push_gateway_devices::node.eq(push_node.clone()),
        push_gateway_devices::owner.eq(owner.to_string()),
        push_gateway_devices::platform.eq(platform),
        push_gateway_devices::token.eq(token),
        push_gateway_devices::secret_hash.eq(secret_hash(&secret)),
        push_gateway_devices::updated_at.eq(now_ms()),
    );
    let n = push_node.clone();
    ctx.db()
        .run(move |c| {
            c.transaction(|c| {
                diesel::delete(push_gateway_devices::table.filter(push_gateway_devices::node.eq(&n))).execute(c)?;
                diesel::insert_into(push_gateway_devices::table).values(row).execute(c)
            })
        })
        .await
        .map_err(|_| error(ErrorType::Wait, DefinedCondition::InternalServerError))?;
    tracing::info!(%owner, platform, "push device registered");
    let result = format!(
        "<command xmlns='{NS_COMMANDS}' node='{node}' sessionid='{session}' status='completed'>\
         <x xmlns='{NS_DATA}' type='result'>\
         <field var='node'><value>{push_node}</value></field>\
         <field var='secret'><value>{secret}</value></field></x></command>",
        session = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 9]>()),
    );
    let element: Element = result.parse().map_err(|_| error(ErrorType::Wait, DefinedCondition::InternalServerError))?;
    Ok(Some(element))
}

/// A pubsub `<publish/>` to the component: an XEP-0357 notification.
struct Publish {
    node: String,
    secret: Option<String>,
    message_count: u32,
}

impl TryFrom<Element> for Publish {
    type Error = Element;
    fn try_from(element: Element) -> Result<Self, Element> {
        let Some(publish) = element.get_child("publish", NS_PUBSUB) else { return Err(element) };
        let Some(node) = publish.attr("node").map(str::to_owned) else { return Err(element) };
        let secret = element
            .get_child("publish-options", NS_PUBSUB)
            .and_then(|o| o.get_child("x", NS_DATA))
            .and_then(|x| field(x, "secret"));
        let message_count = publish
            .get_child("item", NS_PUBSUB)
            .and_then(|i| i.get_child("notification", NS_PUSH))
            .and_then(|n| n.get_child("x", NS_DATA))
            .and_then(|x| field(x, "message-count"))
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        Ok(Publish { node, secret, message_count })
    }
}

impl IqPayload for Publish {
    const NS: &'static str = NS_PUBSUB;
    const NAME: &'static str = "pubsub";
}

async fn forward(ctx: Context, gateway: Arc<Gateway>, req: IqRequest<Publish>) -> IqResult {
    let publish = req.payload;
    let gone = || error(ErrorType::Cancel, DefinedCondition::ItemNotFound);
    let node = publish.node.clone();
    let device: Option<(String, String, String)> = ctx
        .db()
        .run(move |c| {
            push_gateway_devices::table
                .filter(push_gateway_devices::node.eq(&node))
                .select((
                    push_gateway_devices::platform,
                    push_gateway_devices::token,
                    push_gateway_devices::secret_hash,
                ))
                .first(c)
                .optional()
        })
        .await
        .map_err(|_| error(ErrorType::Wait, DefinedCondition::InternalServerError))?;
    let Some((platform, token, stored_hash)) = device else { return Err(gone()) };
    let secret_ok =
        publish.secret.as_deref().is_some_and(|s| bool::from(secret_hash(s).as_bytes().ct_eq(stored_hash.as_bytes())));
    if !secret_ok {
        tracing::info!(from = %req.from, "push publish with a wrong secret refused");
        return Err(gone());
    }
    let delivery = match (platform.as_str(), &gateway.fcm, &gateway.apns) {
        ("fcm", Some(fcm), _) => fcm.send(&token, publish.message_count).await,
        ("apns", _, Some(apns)) => apns.send(&token, publish.message_count).await,
        _ => Delivery::Failed(format!("{platform} is not configured any more")),
    };
    match delivery {
        Delivery::Sent => Ok(None),
        Delivery::Unregistered => {
            let node = publish.node.clone();
            let removed = ctx
                .db()
                .run(move |c| {
                    diesel::delete(push_gateway_devices::table.filter(push_gateway_devices::node.eq(node))).execute(c)
                })
                .await;
            if let Err(err) = removed {
                tracing::warn!(error = %err, "could not forget an unregistered push device");
            }
            tracing::info!(platform, "the platform no longer knows a device; forgotten");
            Err(gone())
        }
        Delivery::Failed(reason) => {
            tracing::warn!(platform, %reason, "push forwarding failed");
            Err(error(ErrorType::Wait, DefinedCondition::RemoteServerTimeout))
        }
    }
}

fn forget_user(conn: &mut starling_api::DbConn, host: &str, username: &str) -> QueryResult<()> {
    diesel::delete(push_gateway_devices::table.filter(push_gateway_devices::owner.eq(format!("{username}@{host}"))))
        .execute(conn)
        .map(drop)
}

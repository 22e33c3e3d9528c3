//! XEP-0077: In-Band Registration — creating an account before logging in (§3.1), and
//! for a logged-in user changing the password (§3.3) and removing the account (§3.2).
//!
//! Off by default: each host is `closed`, `open` or `invite-token` (config). On a host
//! that is not closed the stream feature `<register xmlns='http://jabber.org/features/iq-register'/>`
//! is offered on secured streams before authentication (the core offers and dispatches
//! pre-authentication requests only there), and the registration fields come both as
//! the legacy `<username/><password/>` elements and as a XEP-0004 form (§4), which also
//! carries the invite `token` field when the host needs one. A taken name is answered
//! `conflict`, unusable input `not-acceptable`, more successful registrations from one
//! IP address per hour than configured `resource-constraint`.
//!
//! Accounts are created, re-keyed and deleted through the core's account service, so a
//! removal deletes every module's rows for the account (the same path as
//! `starling user del`) and ends its sessions after the answer went out.
//!
//! Invitations live here too (see [`invite`] and the landing page in `web`): XEP-0401
//! ad-hoc commands create invites, XEP-0445 `<preauth/>` lets an invited client
//! register even on a closed host, and XEP-0379 roster invites subscribe the inviter
//! and the invitee both ways.

mod fresh;
pub mod invite;
mod query;
pub mod store;
mod web;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use starling_api::accounts::AccountError;
use starling_api::adhoc::Access;
use starling_api::jid::BareJid;
use starling_api::preauth::PreAuthIq;
use starling_api::tracing;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use starling_api::{
    Context, DbConn, IqRequest, IqResult, Migrations, ModuleError, ModuleSpec, Registrar, Scope, Spec, SpecSupport,
    Support, stanza_error,
};

use query::{NS_REGISTER, RegisterQuery};

/// The fuzz target `payloads` (docs/fuzzing.md): the XEP-0077 query parser on any
/// element. Built only by cargo-fuzz, which sets `cfg(fuzzing)`.
#[cfg(fuzzing)]
pub fn fuzz_payload(element: &starling_api::minidom::Element) {
    let _ = query::RegisterQuery::try_from(element.clone());
}

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "register",
    summary: "XEP-0077 In-Band Registration (per host: closed, open or invite-token) and invitations (XEP-0401, XEP-0379, XEP-0445)",
    specs: &[
        SpecSupport { spec: Spec::Xep(77), version: "2.4", status: Support::Complete, features: &[NS_REGISTER] },
        SpecSupport { spec: Spec::Xep(379), version: "0.3.3", status: Support::Complete, features: &[] },
        SpecSupport { spec: Spec::Xep(401), version: "0.5.0", status: Support::Partial, features: &[] },
        SpecSupport { spec: Spec::Xep(445), version: "0.2.0", status: Support::Complete, features: &[] },
    ],
    migrations: Some(&MIGRATIONS),
    forget_user: Some(forget_user),
    start,
};

static MIGRATIONS: Migrations = starling_api::migrations!();

/// XEP-0077 §8: the stream feature.
const FEATURE: &str = "<register xmlns='http://jabber.org/features/iq-register'/>";

/// Who may register on a host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Nobody: accounts are made by administrators (the default).
    #[default]
    Closed,
    /// Anybody.
    Open,
    /// Whoever has an invite token from `starling register token`.
    InviteToken,
}

/// `[modules.register]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RegisterConfig {
    /// Policy for hosts without an entry in `hosts` (default "closed").
    mode: Mode,
    /// Successful registrations allowed from one IP address per hour (default 5).
    registrations_per_ip_per_hour: u32,
    /// Shortest password accepted, in characters (default 8).
    min_password_length: usize,
    /// Per-host policy: `[modules.register.hosts."example.org"] mode = "open"`.
    hosts: BTreeMap<String, HostConfig>,
    /// How long new invites stay valid, in hours (default 168, a week).
    invite_ttl_hours: u32,
    /// Whether every user may create roster invites (XEP-0401 `urn:xmpp:invite#invite`);
    /// administrators always may (default false).
    users_may_invite: bool,
    /// Hours during which an account registered in-band without an invite may only
    /// message its contacts (see `fresh`); 0, the default, turns it off.
    new_accounts_contacts_only_hours: u32,
}

impl Default for RegisterConfig {
    fn default() -> Self {
        RegisterConfig {
            mode: Mode::Closed,
            registrations_per_ip_per_hour: 5,
            min_password_length: 8,
            hosts: BTreeMap::new(),
            invite_ttl_hours: 168,
            users_may_invite: false,
            new_accounts_contacts_only_hours: 0,
        }
    }
}

/// `[modules.register.hosts."<host>"]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct HostConfig {
    /// The host's registration policy (the global `mode` when absent).
    mode: Option<Mode>,
    /// The host's `new_accounts_contacts_only_hours` (the global one when absent).
    new_accounts_contacts_only_hours: Option<u32>,
}

/// The module's state: its settings and the recent registrations per IP address.
struct Registration {
    /// Replaced by a reload (except `users_may_invite`, which decides who sees the
    /// invite command at start).
    config: std::sync::RwLock<RegisterConfig>,
    recent: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
    /// Invite tokens presented with XEP-0445 `<preauth/>`, per connection.
    preauth: invite::Pending,
    /// New accounts restricted to their contacts.
    fresh: fresh::FreshAccounts,
}

const WINDOW: Duration = Duration::from_secs(3600);

impl Registration {
    fn config(&self) -> std::sync::RwLockReadGuard<'_, RegisterConfig> {
        self.config.read().unwrap_or_else(|e| e.into_inner())
    }

    fn mode(&self, host: &str) -> Mode {
        let config = self.config();
        config.hosts.get(host).and_then(|h| h.mode).unwrap_or(config.mode)
    }

    fn contacts_only_hours(&self, host: &str) -> u32 {
        let config = self.config();
        let global = config.new_accounts_contacts_only_hours;
        config.hosts.get(host).and_then(|h| h.new_accounts_contacts_only_hours).unwrap_or(global)
    }

    /// New settings from a reload; `users_may_invite` only at start.
    fn reload(&self, hosts: &[String], settings: Option<&starling_api::toml::Value>) -> Result<(), String> {
        let fresh: RegisterConfig = starling_api::module::parse_settings(settings)?;
        if let Some(host) = fresh.hosts.keys().find(|h| !hosts.contains(h)) {
            return Err(format!("hosts.{host:?}: not a host of this server"));
        }
        let mut config = self.config.write().unwrap_or_else(|e| e.into_inner());
        if fresh.users_may_invite != config.users_may_invite {
            return Err("users_may_invite needs a restart".into());
        }
        *config = fresh;
        Ok(())
    }

    /// Whether `ip` may register once more now (registrations of the past hour).
    fn allowed(&self, ip: IpAddr) -> bool {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let Some(times) = recent.get_mut(&ip) else { return true };
        while times.front().is_some_and(|t| t.elapsed() >= WINDOW) {
            times.pop_front();
        }
        let allowed = times.len() < self.config().registrations_per_ip_per_hour as usize;
        if !allowed {
            metrics::counter!("starling_registrations_refused_total", "reason" => "rate").increment(1);
        }
        if times.is_empty() {
            recent.remove(&ip);
        }
        allowed
    }

    fn record(&self, ip: IpAddr) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() > 100_000 {
            // Bounded memory: forget addresses whose window is over.
            recent.retain(|_, times| times.back().is_some_and(|t| t.elapsed() < WINDOW));
        }
        recent.entry(ip).or_default().push_back(Instant::now());
    }
}

fn start(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let config: RegisterConfig = reg.config()?;
    for host in config.hosts.keys() {
        if !reg.hosts().contains(host) {
            return Err(ModuleError::Config {
                module: "register",
                message: format!("hosts.{host:?}: not a host of this server"),
            });
        }
    }
    let state = Arc::new(Registration {
        config: std::sync::RwLock::new(config),
        recent: Mutex::new(HashMap::new()),
        preauth: invite::Pending::default(),
        fresh: fresh::FreshAccounts::default(),
    });
    let (s, hosts) = (state.clone(), reg.hosts().to_vec());
    reg.on_reload(move |_, settings| s.reload(&hosts, settings));
    let s = state.clone();
    reg.on_start(move |ctx| {
        let s = s.clone();
        async move {
            let hours = |host: &str| s.contacts_only_hours(host);
            s.fresh
                .load(&ctx, hours, now_ms())
                .await
                .map_err(|e| ModuleError::Start { module: "register", message: e.to_string() })
        }
    });
    let s = state.clone();
    reg.hook::<starling_api::hooks::Routing, _>(90, move |ctx, event| s.fresh.filter(ctx, event, now_ms()));

    reg.disco_feature(Scope::Server, NS_REGISTER);
    let s = state.clone();
    reg.pre_auth_stream_feature(move |_, host| (s.mode(host) != Mode::Closed).then(|| FEATURE.to_owned()));
    let s = state.clone();
    reg.pre_auth_iq_get::<RegisterQuery, _, _>(move |_, req| {
        let mode = s.mode(&req.host);
        async move { fields(mode) }
    });
    let s = state.clone();
    reg.pre_auth_iq_set::<RegisterQuery, _, _>(move |ctx, req| register(ctx, s.clone(), req));
    // Clients address these to their server (XEP-0077 examples) or to nobody.
    for scope in [Scope::OwnAccount, Scope::Server] {
        reg.iq_get::<RegisterQuery, _, _>(scope, registered);
        let s = state.clone();
        reg.iq_set::<RegisterQuery, _, _>(scope, move |ctx, req| change(ctx, s.clone(), req));
    }
    // XEP-0445 §3 (and the older `urn:xmpp:invite` name clients still look for): the
    // invite path, open on every host, closed ones included.
    reg.pre_auth_stream_feature(|_, _| Some(invite::FEATURES.to_owned()));
    let s = state.clone();
    reg.http_routes(move |ctx| Ok(web::routes(ctx, s.clone())));
    let s = state.clone();
    reg.pre_auth_iq_set::<invite::Preauth, _, _>(move |ctx, req| preauth(ctx, s.clone(), req));
    for scope in [Scope::OwnAccount, Scope::Server] {
        reg.iq_set::<invite::Preauth, _, _>(scope, invite::preauth_logged_in);
    }
    // Users who may not invite do not even see the command.
    let access = if state.config().users_may_invite { Access::LocalUser } else { Access::Admin };
    let s = state.clone();
    reg.adhoc_command(invite::NODE_INVITE, "Invite", access, move |ctx, req| {
        invite::invite_command(ctx, s.clone(), req)
    });
    let s = state.clone();
    reg.adhoc_command(invite::NODE_CREATE_ACCOUNT, "Create account invite", Access::Admin, move |ctx, req| {
        invite::create_account_command(ctx, s.clone(), req)
    });
    Ok(())
}

/// XEP-0445 §3: a client without an account presents an invite token before
/// registering; a usable one is remembered for its connection.
async fn preauth(ctx: Context, state: Arc<Registration>, req: PreAuthIq<invite::Preauth>) -> IqResult {
    let token = req.payload.token;
    let t = token.clone();
    let found = ctx.db().run(move |c| store::find(c, &t, now_ms())).await.map_err(internal)?;
    if found.is_none_or(|invite| invite.host != req.host) {
        return Err(error(ErrorType::Cancel, DefinedCondition::ItemNotFound));
    }
    state.preauth.put(req.connection, token);
    Ok(None)
}

/// Invite tokens belong to a host, not to an account: nothing to forget.
fn forget_user(conn: &mut DbConn, host: &str, user: &str) -> diesel::QueryResult<()> {
    fresh::forget_user(conn, host, user)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn error(type_: ErrorType, condition: DefinedCondition) -> StanzaError {
    stanza_error(type_, condition)
}

fn not_acceptable(text: &str) -> StanzaError {
    let mut e = error(ErrorType::Modify, DefinedCondition::NotAcceptable);
    e.texts.insert(String::new(), text.to_owned());
    e
}

fn internal(err: impl std::fmt::Display) -> StanzaError {
    tracing::error!(error = %err, "registration failed");
    error(ErrorType::Wait, DefinedCondition::InternalServerError)
}

/// §3.1 Example 2 (and the §4 form): what to fill in; a closed host has no registration.
fn fields(mode: Mode) -> IqResult {
    match mode {
        Mode::Closed => Err(error(ErrorType::Cancel, DefinedCondition::ServiceUnavailable)),
        Mode::Open => Ok(Some(query::fields(false))),
        Mode::InviteToken => Ok(Some(query::fields(true))),
    }
}

/// The account `username@host` would be, if the name is usable (RFC 7622 localpart).
fn account(username: &str, host: &str) -> Result<BareJid, StanzaError> {
    if username.is_empty() || username.contains(['@', '/']) {
        return Err(not_acceptable("unusable username"));
    }
    starling_api::parse_bare_jid(&format!("{username}@{host}"))
        .ok()
        .filter(|jid| jid.node().is_some() && jid.domain().as_str() == host)
        .ok_or_else(|| not_acceptable("unusable username"))
}

fn check_password(state: &Registration, password: &str) -> Result<(), StanzaError> {
    let min = state.config().min_password_length;
    if password.chars().count() < min {
        return Err(not_acceptable(&format!("the password needs at least {} characters", min)));
    }
    Ok(())
}

fn account_error(err: AccountError) -> StanzaError {
    match err {
        AccountError::Exists(_) => error(ErrorType::Cancel, DefinedCondition::Conflict),
        AccountError::BadPassword(text) | AccountError::InvalidJid(_, text) => not_acceptable(&text),
        AccountError::NotFound(_) | AccountError::UnknownHost(_) => {
            error(ErrorType::Cancel, DefinedCondition::ItemNotFound)
        }
        AccountError::Storage(err) => internal(err),
    }
}

/// §3.1: a new account, before authentication.
async fn register(ctx: Context, state: Arc<Registration>, req: PreAuthIq<RegisterQuery>) -> IqResult {
    let mode = state.mode(&req.host);
    let query = req.payload;
    // An invite (in the form, or from XEP-0445 `<preauth/>` earlier on this stream)
    // opens registration on any host.
    let token = query.token.clone().or_else(|| state.preauth.take(req.connection));
    if mode == Mode::Closed && token.is_none() {
        return Err(error(ErrorType::Cancel, DefinedCondition::ServiceUnavailable));
    }
    if query.remove {
        // §3.2 needs an authenticated stream.
        return Err(error(ErrorType::Auth, DefinedCondition::NotAuthorized));
    }
    let (Some(username), Some(password)) = (query.username, query.password) else {
        return Err(not_acceptable("username and password are required"));
    };
    let jid = account(&username, &req.host)?;
    check_password(&state, &password)?;
    if mode == Mode::InviteToken && token.is_none() {
        return Err(not_acceptable("an invite token is required"));
    }
    if !state.allowed(req.peer) {
        return Err(error(ErrorType::Wait, DefinedCondition::ResourceConstraint));
    }
    if ctx.accounts().get(&jid).await.map_err(internal)?.is_some() {
        return Err(error(ErrorType::Cancel, DefinedCondition::Conflict));
    }
    let mut invite = None;
    if let Some(token) = &token {
        let (host, token) = (req.host.clone(), token.clone());
        let spent = ctx.db().run(move |c| store::spend(c, &host, &token, now_ms())).await.map_err(internal)?;
        if spent.is_none() {
            return Err(not_acceptable("the invite token is unknown, used up or expired"));
        }
        invite = spent;
    }
    if let Err(err) = ctx.accounts().create(&jid, &password).await {
        if let Some(token) = token {
            // Someone took the name meanwhile: the token was not used.
            let host = req.host.clone();
            ctx.db().run(move |c| store::refund(c, &host, &token)).await.map_err(internal)?;
        }
        return Err(account_error(err));
    }
    state.record(req.peer);
    tracing::info!(%jid, ip = %req.peer, "account registered in-band");
    let hours = state.contacts_only_hours(&req.host);
    if token.is_none() && hours > 0 {
        state.fresh.register(&ctx, &jid, hours, now_ms()).await.map_err(internal)?;
    }
    if let Some(invite) = invite {
        invite::apply(&ctx, &invite, &jid).await;
    }
    Ok(None)
}

/// The requester's account, when it is one of ours (a server-addressed request can
/// also come from another server's user).
fn local_account(ctx: &Context, req: &IqRequest<RegisterQuery>) -> Result<BareJid, StanzaError> {
    let jid = req.from.to_bare();
    if jid.node().is_none() || !ctx.is_local_host(jid.domain().as_str()) {
        return Err(error(ErrorType::Cancel, DefinedCondition::NotAllowed));
    }
    Ok(jid)
}

/// §3.1 Example 4: a logged-in user asking is told they are registered, and as whom.
async fn registered(ctx: Context, req: IqRequest<RegisterQuery>) -> IqResult {
    local_account(&ctx, &req)?;
    let username = req.from.node().map(|n| n.to_string()).unwrap_or_default();
    Ok(Some(query::registered(&username)))
}

/// §3.2 removal and §3.3 password change, by the logged-in user.
async fn change(ctx: Context, state: Arc<Registration>, req: IqRequest<RegisterQuery>) -> IqResult {
    let jid = local_account(&ctx, &req)?;
    if req.payload.remove {
        // The answer has to reach the client before its sessions end: the deletion
        // runs once it is queued (the core then closes the sessions after what is
        // already queued for them).
        req.after_reply(async move {
            match ctx.accounts().delete(&jid).await {
                Ok(()) => tracing::info!(%jid, "account removed in-band"),
                Err(err) => tracing::error!(%jid, error = %err, "in-band account removal failed"),
            }
        });
        return Ok(None);
    }
    let query = req.payload;
    let (Some(username), Some(password)) = (query.username, query.password) else {
        return Err(not_acceptable("username and password are required"));
    };
    if account(&username, jid.domain().as_str())? != jid {
        // §3.3: only one's own password.
        return Err(error(ErrorType::Cancel, DefinedCondition::NotAllowed));
    }
    check_password(&state, &password)?;
    ctx.accounts().set_password(&jid, &password).await.map_err(account_error)?;
    tracing::info!(%jid, "password changed in-band");
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(limit: u32) -> Registration {
        let config = RegisterConfig { registrations_per_ip_per_hour: limit, ..RegisterConfig::default() };
        Registration {
            config: std::sync::RwLock::new(config),
            recent: Mutex::new(HashMap::new()),
            preauth: invite::Pending::default(),
            fresh: Default::default(),
        }
    }

    #[test]
    fn the_rate_limit_counts_per_address() {
        let state = state(2);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().expect("ip"), "192.0.2.2".parse().expect("ip"));
        assert!(state.allowed(a));
        state.record(a);
        state.record(a);
        assert!(!state.allowed(a));
        assert!(state.allowed(b));
    }

    #[test]
    fn usernames_are_checked_and_normalised() {
        assert_eq!(account("Alice", "example.org").map(|j| j.to_string()).ok().as_deref(), Some("alice@example.org"));
        for bad in ["", "a@b", "a/b", "a b", "a\"b"] {
            assert!(account(bad, "example.org").is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn settings_for_unknown_hosts_or_keys_are_refused() {
        let start = |text: &str| {
            let value: toml::Value = toml::from_str(text).expect("toml");
            starling_api::Registry::new(vec!["localhost".into()]).start_module(&MODULE, Some(&value)).map(|_| ())
        };
        assert!(start("mode = 'open'\n[hosts.localhost]\nmode = 'invite-token'").is_ok());
        assert!(start("[hosts.\"elsewhere.example\"]\nmode = 'open'").is_err(), "not a host");
        assert!(start("mdoe = 'open'").is_err(), "misspelt key");
        assert!(start("mode = 'sometimes'").is_err(), "unknown mode");
    }

    #[test]
    fn hosts_default_to_the_module_mode() {
        let config: RegisterConfig =
            toml::from_str("mode = \"open\"\n[hosts.\"b.example\"]\nmode = \"invite-token\"\n").expect("config");
        let state = Registration {
            config: std::sync::RwLock::new(config),
            recent: Mutex::new(HashMap::new()),
            preauth: invite::Pending::default(),
            fresh: Default::default(),
        };
        assert_eq!(state.mode("a.example"), Mode::Open);
        assert_eq!(state.mode("b.example"), Mode::InviteToken);
        assert_eq!(
            Registration {
                config: std::sync::RwLock::new(RegisterConfig::default()),
                recent: Mutex::default(),
                preauth: Default::default(),
                fresh: Default::default(),
            }
            .mode("x"),
            Mode::Closed
        );
    }
}

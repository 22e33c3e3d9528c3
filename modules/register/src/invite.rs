//! Invitations: XEP-0401 (ad-hoc "create invite" and "create account" commands, the
//! invite URI), XEP-0379 (pre-authenticated roster subscription) and XEP-0445 (the
//! `<preauth xmlns='urn:xmpp:pars:0'/>` key sent before registering).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use starling_api::IqPayload;
use starling_api::adhoc::{CommandRequest, CommandStep};
use starling_api::jid::BareJid;
use starling_api::minidom::Element;
use starling_api::minidom::rxml::xml_ncname;
use starling_api::roster::RosterService;
use starling_api::tracing;
use starling_api::xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use starling_api::{Context, IqRequest, IqResult};

use crate::store::{self, Invite, Kind, NewInvite};
use crate::{Registration, error, internal, now_ms};

/// XEP-0445 §3: the pre-authenticated registration key element.
pub const NS_PARS: &str = "urn:xmpp:pars:0";
/// The pre-authentication stream features announcing `<preauth/>` before registration.
pub const FEATURES: &str = "<register xmlns='urn:xmpp:invite'/><register xmlns='urn:xmpp:ibr-token:0'/>";
/// XEP-0401 §4: create an invite (a roster invite from the requester).
pub const NODE_INVITE: &str = "urn:xmpp:invite#invite";
/// XEP-0401 §4: create an account invite (administrators).
pub const NODE_CREATE_ACCOUNT: &str = "urn:xmpp:invite#create-account";

/// How long a `<preauth/>` stays attached to its connection without a registration.
const PREAUTH_TTL: Duration = Duration::from_secs(600);

/// `<preauth xmlns='urn:xmpp:pars:0' token='…'/>`.
#[derive(Debug, Clone)]
pub struct Preauth {
    /// The invite token.
    pub token: String,
}

/// The payload is not a `<preauth/>` with a token.
#[derive(Debug)]
pub struct NotPreauth;

impl TryFrom<Element> for Preauth {
    type Error = NotPreauth;

    fn try_from(element: Element) -> Result<Self, Self::Error> {
        if !element.is("preauth", NS_PARS) {
            return Err(NotPreauth);
        }
        let token = element.attr("token").map(str::trim).filter(|t| !t.is_empty()).ok_or(NotPreauth)?;
        Ok(Preauth { token: token.to_owned() })
    }
}

impl From<Preauth> for Element {
    fn from(p: Preauth) -> Element {
        Element::builder("preauth", NS_PARS).attr(xml_ncname!("token").into(), p.token).build()
    }
}

impl IqPayload for Preauth {
    const NS: &'static str = NS_PARS;
    const NAME: &'static str = "preauth";
}

/// Tokens presented with `<preauth/>` on streams that have not registered yet.
#[derive(Default)]
pub(crate) struct Pending(Mutex<HashMap<SocketAddr, (String, Instant)>>);

impl Pending {
    /// Remembers `token` for the connection.
    pub(crate) fn put(&self, connection: SocketAddr, token: String) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (_, at)| at.elapsed() < PREAUTH_TTL);
        map.insert(connection, (token, Instant::now()));
    }

    /// The token the connection presented, if it is recent.
    pub(crate) fn take(&self, connection: SocketAddr) -> Option<String> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&connection).filter(|(_, at)| at.elapsed() < PREAUTH_TTL).map(|(token, _)| token)
    }
}

/// Percent-encoding for a URI query value or path segment (RFC 3986 unreserved kept).
pub(crate) fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `xmpp:` URI of an invite (XEP-0379 §3, XEP-0401 §3).
pub fn uri(invite: &Invite, token: &str) -> String {
    match (&invite.creator, invite.kind) {
        (Some(creator), Kind::Roster) => format!("xmpp:{creator}?roster;preauth={};ibr=y", encode(token)),
        _ => format!("xmpp:{}?register;preauth={}", invite.host, encode(token)),
    }
}

/// The landing page of an invite, when there is an HTTP listener.
pub fn landing_url(ctx: &Context, token: &str) -> Option<String> {
    Some(landing_url_at(ctx.server().http_url.as_deref()?, token))
}

/// The landing page of an invite under the HTTP listener's public URL `base`.
pub fn landing_url_at(base: &str, token: &str) -> String {
    format!("{}/invite/{}", base.trim_end_matches('/'), encode(token))
}

/// RFC 3339 time (UTC) of a ms timestamp, for the `expire` field.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (H. Hinnant's algorithm): no date crate needed for one format.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn field(var: &str, type_: FieldType, label: &str, value: String) -> Field {
    let mut f = Field::new(var, type_);
    f.label = Some(label.to_owned());
    f.values = vec![value];
    f
}

/// Creates an invite and returns its token and stored form.
pub(crate) async fn create(
    ctx: &Context,
    state: &Registration,
    host: &str,
    creator: Option<&BareJid>,
    uses: u32,
    valid_hours: Option<u32>,
) -> Result<(String, Invite), starling_api::StorageError> {
    let now = now_ms();
    let hours = i64::from(valid_hours.unwrap_or(state.config().invite_ttl_hours));
    let expires = now.saturating_add(hours.saturating_mul(3_600_000));
    let kind = if creator.is_some() { Kind::Roster } else { Kind::Register };
    let (host, creator) = (host.to_owned(), creator.map(|c| c.to_string()));
    let invite =
        Invite { host: host.clone(), creator: creator.clone(), kind, uses_left: uses as i32, expires_at: expires };
    let token = ctx
        .db()
        .run(move |c| {
            store::create(
                c,
                &NewInvite {
                    host: &host,
                    creator: creator.as_deref(),
                    kind,
                    uses,
                    now_ms: now,
                    expires_at_ms: expires,
                },
            )
        })
        .await?;
    Ok((token, invite))
}

fn result_form(ctx: &Context, invite: &Invite, token: &str) -> DataForm {
    let mut fields = vec![field("uri", FieldType::TextSingle, "The invitation URI", uri(invite, token))];
    if let Some(url) = landing_url(ctx, token) {
        fields.push(field("landing-url", FieldType::TextSingle, "The invitation web page", url));
    }
    fields.push(field("expire", FieldType::TextSingle, "Valid until", rfc3339(invite.expires_at)));
    DataForm::new(DataFormType::Result_, "", fields)
}

/// XEP-0401 §4.1 `urn:xmpp:invite#invite`: a roster invite from the requester (who
/// may also let the invitee register an account here). Offered to every user only
/// with `users_may_invite`, else to administrators (the ad-hoc module refuses others).
pub(crate) async fn invite_command(
    ctx: Context,
    state: std::sync::Arc<Registration>,
    req: CommandRequest,
) -> Result<CommandStep, StanzaError> {
    let from = req.from.to_bare();
    if from.domain().as_str() != req.host {
        return Err(error(ErrorType::Cancel, DefinedCondition::NotAllowed));
    }
    let (token, invite) = create(&ctx, &state, &req.host, Some(&from), 1, None).await.map_err(internal)?;
    tracing::info!(creator = %from, "invite created");
    Ok(CommandStep::Completed { notes: Vec::new(), result: Some(result_form(&ctx, &invite, &token)) })
}

/// XEP-0401 §4.2 `urn:xmpp:invite#create-account` (administrators): an account invite.
pub(crate) async fn create_account_command(
    ctx: Context,
    state: std::sync::Arc<Registration>,
    req: CommandRequest,
) -> Result<CommandStep, StanzaError> {
    let (token, invite) = create(&ctx, &state, &req.host, None, 1, None).await.map_err(internal)?;
    tracing::info!(admin = %req.from, "account invite created");
    Ok(CommandStep::Completed { notes: Vec::new(), result: Some(result_form(&ctx, &invite, &token)) })
}

/// After an account was created with `invite`: XEP-0379's mutual subscription with
/// the inviter.
pub(crate) async fn apply(ctx: &Context, invite: &Invite, account: &BareJid) {
    let (Kind::Roster, Some(creator)) = (invite.kind, &invite.creator) else { return };
    let Ok(creator) = starling_api::parse_bare_jid(creator) else { return };
    if &creator == account {
        return;
    }
    let Some(rosters) = ctx.service::<dyn RosterService>() else {
        tracing::warn!("roster invite used but the roster module is not enabled");
        return;
    };
    match rosters.subscribe_mutually(ctx, &creator, account).await {
        Ok(()) => tracing::info!(%creator, %account, "roster invite: mutual subscription"),
        Err(err) => tracing::error!(%creator, %account, error = %err, "roster invite: subscription failed"),
    }
}

/// XEP-0379 §3 after login: an existing user presents a roster invite and becomes the
/// inviter's contact (the invite is spent).
pub(crate) async fn preauth_logged_in(ctx: Context, req: IqRequest<Preauth>) -> IqResult {
    let account = req.from.to_bare();
    if account.node().is_none() || !ctx.is_local_host(account.domain().as_str()) {
        return Err(error(ErrorType::Cancel, DefinedCondition::NotAllowed));
    }
    let token = req.payload.token;
    let t = token.clone();
    let invite = ctx.db().run(move |c| store::find(c, &t, now_ms())).await.map_err(internal)?;
    let Some(invite) = invite.filter(|i| i.kind == Kind::Roster) else {
        return Err(error(ErrorType::Cancel, DefinedCondition::ItemNotFound));
    };
    let host = invite.host;
    let spent = ctx.db().run(move |c| store::spend(c, &host, &token, now_ms())).await.map_err(internal)?;
    let Some(invite) = spent else {
        return Err(error(ErrorType::Cancel, DefinedCondition::ItemNotFound));
    };
    apply(&ctx, &invite, &account).await;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_212_799_999), "2026-12-02T11:59:59Z");
    }

    #[test]
    fn uris_follow_xep_0379_and_0401() {
        let mut invite =
            Invite { host: "example.org".into(), creator: None, kind: Kind::Register, uses_left: 1, expires_at: 0 };
        assert_eq!(uri(&invite, "t0k"), "xmpp:example.org?register;preauth=t0k");
        invite.creator = Some("romeo@example.org".into());
        invite.kind = Kind::Roster;
        assert_eq!(uri(&invite, "a b"), "xmpp:romeo@example.org?roster;preauth=a%20b;ibr=y");
    }
}

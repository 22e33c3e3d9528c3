//! What only the SASL2 profile (XEP-0388) has: the `<authentication/>` feature with
//! its inline features, logins with FAST tokens and token requests (XEP-0484), and
//! SCRAM upgrade tasks (XEP-0480) that give an account keys for the hashes it lacks.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use starling_api::Stanza;
use starling_api::minidom::Element;

use super::{Abort, NS_FAST, NS_SASL2, Negotiation, Profile, bind2, sasl_failure, send_or_abort};
use crate::auth::{self, SCRAM_ITERATIONS};
use crate::c2s::C2sShared;
use crate::c2s::bind2::SaslSuccess;
use crate::c2s::stream::XmppStream;
use crate::fast::TokenLogin;
use crate::sasl::ht::{self, HtMechanism};
use crate::sasl::{ChannelBinding, Mechanism, SaslFailure, ScramCredentials, ScramHash};
use crate::xml::StreamEvent;

/// SASL Upgrade Tasks (XEP-0480).
const NS_UPGRADE: &str = "urn:xmpp:sasl:upgrade:0";
/// The SCRAM upgrade task's payloads (XEP-0480 §3).
const NS_SCRAM_UPGRADE: &str = "urn:xmpp:scram-upgrade:0";
/// Hashes an account can gain keys for through an upgrade task.
const UPGRADABLE: [ScramHash; 2] = [ScramHash::Sha256, ScramHash::Sha512];

fn upgrade_task(hash: ScramHash) -> String {
    format!("UPGR-{}", hash.mechanism_name())
}

/// The SASL2 stream feature: `mechanisms`, the inline features (stream management,
/// Bind 2, FAST with the HT mechanisms this connection's channel binding allows), and
/// the upgrade tasks.
pub(super) fn authentication_feature(
    shared: &C2sShared,
    host: &str,
    mechanisms: &[Mechanism],
    cb: &ChannelBinding,
) -> String {
    let mut xml = format!("<authentication xmlns='{NS_SASL2}'>");
    for mechanism in mechanisms {
        xml.push_str(&format!("<mechanism>{}</mechanism>", mechanism.name()));
    }
    xml.push_str("<inline>");
    xml.push_str(&bind2::inline_features(shared, host));
    xml.push_str(&format!("<fast xmlns='{NS_FAST}'>"));
    for mechanism in HtMechanism::offered(cb) {
        xml.push_str(&format!("<mechanism>{}</mechanism>", mechanism.name()));
    }
    xml.push_str("</fast></inline>");
    for hash in UPGRADABLE {
        xml.push_str(&format!("<upgrade xmlns='{NS_UPGRADE}'>{}</upgrade>", upgrade_task(hash)));
    }
    xml.push_str("</authentication>");
    xml
}

/// A login with a FAST token.
pub(super) struct TokenUsed {
    mechanism: HtMechanism,
    /// The token is old enough to be replaced in this login.
    due_for_rotation: bool,
}

/// The FAST and upgrade requests of one `<authenticate/>`, read once per attempt.
pub(super) struct Requests {
    user_agent_id: Option<String>,
    /// `<request-token mechanism=…/>`.
    request_token: Option<String>,
    /// `<fast count=…/>`: `Err` when the count is not a positive integer.
    count: Result<Option<i64>, ()>,
    /// `<fast invalidate='true'/>`.
    invalidate: bool,
    /// `<upgrade>` task names.
    upgrades: Vec<String>,
}

impl Requests {
    pub(super) fn of(authenticate: &Stanza) -> Requests {
        let element = authenticate.to_element().unwrap_or_else(|_| Element::bare("authenticate", NS_SASL2));
        let fast = element.get_child("fast", NS_FAST);
        let count = match fast.and_then(|f| f.attr("count")) {
            None => Ok(None),
            Some(count) => count.parse::<i64>().ok().filter(|c| *c > 0).map(Some).ok_or(()),
        };
        Requests {
            user_agent_id: element
                .get_child("user-agent", NS_SASL2)
                .and_then(|ua| ua.attr("id"))
                .filter(|id| !id.is_empty())
                .map(str::to_owned),
            request_token: element
                .get_child("request-token", NS_FAST)
                .and_then(|r| r.attr("mechanism"))
                .map(str::to_owned),
            count,
            invalidate: fast.and_then(|f| f.attr("invalidate")).is_some_and(|v| v == "true" || v == "1"),
            upgrades: element
                .children()
                .filter(|c| c.is("upgrade", NS_UPGRADE))
                .map(|c| c.text().trim().to_owned())
                .collect(),
        }
    }
}

impl Negotiation<'_> {
    /// A FAST login (XEP-0484 §3.4) with an HT mechanism: one message, answered here
    /// when it fails.
    pub(super) async fn authenticate_token(
        &mut self,
        stream: &mut XmppStream,
        auth: &Stanza,
        requests: &Requests,
        mechanism: HtMechanism,
    ) -> Result<Option<(SaslSuccess, TokenUsed)>, Abort> {
        let ip = stream.peer.ip();
        let host = self.host.clone().unwrap_or_default();
        let fail = |failure| sasl_failure(Profile::Sasl2, failure);
        let cb_data =
            HtMechanism::offered(&self.cb).contains(&mechanism).then(|| mechanism.cb_data(&self.cb)).flatten();
        let (Some(cb_data), Ok(count)) = (cb_data, requests.count) else {
            let failure =
                if requests.count.is_err() { SaslFailure::MalformedRequest } else { SaslFailure::InvalidMechanism };
            send_or_abort(stream, &fail(failure)).await?;
            return Ok(None);
        };
        if self.shared.throttle.ip_blocked(ip) {
            send_or_abort(stream, &fail(SaslFailure::TemporaryAuthFailure)).await?;
            return Ok(None);
        }
        let message = match super::sasl2_initial_response(auth) {
            Ok(Some(message)) => message,
            Ok(None) => {
                send_or_abort(stream, &fail(SaslFailure::MalformedRequest)).await?;
                return Ok(None);
            }
            Err(failure) => {
                send_or_abort(stream, &fail(failure)).await?;
                return Ok(None);
            }
        };
        let initiator = match ht::parse_initiator(&message) {
            Ok(initiator) => initiator,
            Err(failure) => {
                send_or_abort(stream, &fail(failure)).await?;
                return Ok(None);
            }
        };
        let Some(jid) = starling_api::parse_bare_jid(&format!("{}@{host}", initiator.username)).ok() else {
            send_or_abort(stream, &fail(SaslFailure::NotAuthorized)).await?;
            return Ok(None);
        };
        let account = jid.to_string();
        let username = jid.node().map(|n| n.to_string()).unwrap_or_default();
        if self.shared.throttle.account_blocked(&account) {
            send_or_abort(stream, &fail(SaslFailure::TemporaryAuthFailure)).await?;
            return Ok(None);
        }
        // Tokens belong to a client installation: without its id there is none to check.
        let Some(user_agent_id) = requests.user_agent_id.as_deref() else {
            send_or_abort(stream, &fail(SaslFailure::NotAuthorized)).await?;
            return Ok(None);
        };
        let login = TokenLogin { host: &host, username: &username, user_agent_id };
        let outcome = match auth::account_disabled(&self.shared.db, &host, &username).await {
            Ok(Some(false)) => {
                self.shared.fast.authenticate(login, mechanism, &cb_data, &initiator.hashed_token, count).await
            }
            Ok(Some(true)) => Ok(Err(SaslFailure::AccountDisabled)),
            Ok(None) => Ok(Err(SaslFailure::NotAuthorized)),
            Err(err) => Err(err.into()),
        };
        match outcome {
            Ok(Ok(accepted)) => {
                tracing::info!(%jid, mechanism = mechanism.name(), "authenticated with a FAST token");
                crate::metrics::authentication(true);
                self.user = Some(jid);
                let success = SaslSuccess { additional_data: Some(accepted.responder), fast_token: None };
                Ok(Some((success, TokenUsed { mechanism, due_for_rotation: accepted.due_for_rotation })))
            }
            Ok(Err(failure)) => {
                self.shared.throttle.record_failure(ip, Some(&account));
                crate::metrics::authentication(false);
                tracing::info!(%account, ?failure, "FAST authentication failed");
                send_or_abort(stream, &fail(failure)).await?;
                Ok(None)
            }
            Err(err) => {
                tracing::error!(error = %err, "FAST token check failed");
                send_or_abort(stream, &fail(SaslFailure::TemporaryAuthFailure)).await?;
                Ok(None)
            }
        }
    }

    /// After a SASL2 exchange succeeded, before `<success/>`: the upgrade tasks the
    /// client asked for, then the FAST token work — invalidation of the token just
    /// used (`token_used`), a requested token, or the rotation of the used one.
    /// `Ok(false)` when a task failed (answered here; the client is not authenticated).
    pub(super) async fn finish_sasl2(
        &mut self,
        stream: &mut XmppStream,
        requests: &Requests,
        success: &mut SaslSuccess,
        token_used: Option<TokenUsed>,
    ) -> Result<bool, Abort> {
        let Some(user) = self.user.clone() else { return Ok(false) };
        let host = user.domain().to_string();
        let username = user.node().map(|n| n.to_string()).unwrap_or_default();
        if !self.upgrade_tasks(stream, &host, &username, &requests.upgrades, success).await? {
            self.user = None;
            return Ok(false);
        }
        let Some(user_agent_id) = requests.user_agent_id.as_deref() else {
            if requests.request_token.is_some() {
                tracing::debug!(%user, "token request without a user-agent id ignored");
            }
            return Ok(true);
        };
        let login = TokenLogin { host: &host, username: &username, user_agent_id };
        let invalidate = token_used.is_some() && requests.invalidate;
        if invalidate && let Err(err) = self.shared.fast.invalidate(login).await {
            tracing::error!(error = %err, "FAST token invalidation failed");
        }
        let offered = HtMechanism::offered(&self.cb);
        let requested =
            requests.request_token.as_deref().and_then(HtMechanism::from_name).filter(|m| offered.contains(m));
        // §3.5: after an invalidation, a new token only when asked for.
        let rotation = token_used.filter(|t| t.due_for_rotation && !invalidate).map(|t| t.mechanism);
        let to_issue = requested.or(rotation);
        if let Some(mechanism) = to_issue {
            match self.shared.fast.issue(login, mechanism).await {
                Ok(token) => success.fast_token = Some(token),
                // The login itself succeeded; the client asks again next time.
                Err(err) => tracing::error!(error = %err, "FAST token not issued"),
            }
        }
        Ok(true)
    }

    /// XEP-0480: one `<continue/>` round per requested upgrade to a hash the account
    /// has no keys for. The client derives SaltedPassword with a fresh salt and the
    /// server's iteration count; the keys are computed and stored from it.
    async fn upgrade_tasks(
        &mut self,
        stream: &mut XmppStream,
        host: &str,
        username: &str,
        requested: &[String],
        success: &mut SaslSuccess,
    ) -> Result<bool, Abort> {
        let wanted: Vec<ScramHash> =
            UPGRADABLE.into_iter().filter(|h| requested.iter().any(|r| *r == upgrade_task(*h))).collect();
        if wanted.is_empty() {
            return Ok(true);
        }
        let missing = match auth::missing_hashes(&self.shared.db, host, username).await {
            Ok(missing) => missing,
            Err(err) => {
                tracing::error!(error = %err, "credential lookup for upgrade failed");
                return Ok(true);
            }
        };
        let mut upgraded = false;
        for hash in wanted.into_iter().filter(|h| missing.contains(h)) {
            let task = upgrade_task(hash);
            // The first `<continue/>` carries what `<success/>` would have (SCRAM's
            // server-final-message); `<success/>` then has none.
            let data = success
                .additional_data
                .take()
                .map(|d| format!("<additional-data>{}</additional-data>", BASE64.encode(d)))
                .unwrap_or_default();
            let ask = format!("<continue xmlns='{NS_SASL2}'>{data}<tasks><task>{task}</task></tasks></continue>");
            send_or_abort(stream, ask.as_bytes()).await?;
            let Some(next) = self.next_sasl2_element(stream).await? else { return Ok(false) };
            if !next.is("next", NS_SASL2) || next.attr("task") != Some(task.as_str()) {
                send_or_abort(stream, &sasl_failure(Profile::Sasl2, SaslFailure::MalformedRequest)).await?;
                return Ok(false);
            }
            let salt: [u8; 16] = rand::random();
            let data = format!(
                "<task-data xmlns='{NS_SASL2}'><salt xmlns='{NS_SCRAM_UPGRADE}' iterations='{SCRAM_ITERATIONS}'>{}</salt></task-data>",
                BASE64.encode(salt)
            );
            send_or_abort(stream, data.as_bytes()).await?;
            let Some(answer) = self.next_sasl2_element(stream).await? else { return Ok(false) };
            let salted = answer
                .is("task-data", NS_SASL2)
                .then(|| answer.get_child("hash", NS_SCRAM_UPGRADE))
                .flatten()
                .and_then(|h| BASE64.decode(h.text().trim()).ok())
                .filter(|s| s.len() == ScramCredentials::output_len(hash));
            let Some(salted) = salted else {
                send_or_abort(stream, &sasl_failure(Profile::Sasl2, SaslFailure::MalformedRequest)).await?;
                return Ok(false);
            };
            let creds = ScramCredentials::from_salted_password(hash, &salt, SCRAM_ITERATIONS, &salted);
            match auth::add_credentials(&self.shared.db, host, username, &creds).await {
                Ok(_) => {
                    tracing::info!(account = %format!("{username}@{host}"), hash = hash.mechanism_name(), "SCRAM keys upgraded");
                    upgraded = true;
                }
                Err(err) => tracing::error!(error = %err, "storing upgraded SCRAM keys failed"),
            }
        }
        if upgraded && let Err(err) = self.shared.offered_hashes.refresh(&self.shared.db).await {
            tracing::error!(error = %err, "re-reading the offered SCRAM hashes failed");
        }
        Ok(true)
    }

    /// The client's next top-level element during a SASL2 task; `None` after
    /// `<abort/>` (answered with `aborted`).
    async fn next_sasl2_element(&mut self, stream: &mut XmppStream) -> Result<Option<Element>, Abort> {
        let element = match stream.next_event().await {
            Ok(StreamEvent::Stanza(element)) => element,
            _ => return Err(Abort::silent(None)),
        };
        if element.ns() == NS_SASL2 && element.name() == "abort" {
            send_or_abort(stream, &sasl_failure(Profile::Sasl2, SaslFailure::Aborted)).await?;
            return Ok(None);
        }
        element.to_element().map(Some).map_err(|_| Abort::silent(None))
    }
}

//! XEP-0012: Last Activity — how long ago a contact logged out, with the status text of
//! their last unavailable presence (§4), and the server's uptime (§5).
//!
//! A query to an account's bare JID is answered by the server: 0 seconds while the
//! account has an available resource, else the seconds since its last session ended.
//! Only the account itself and contacts with a subscription to its presence (`from` or
//! `both` in its roster) may ask; others get `forbidden` (§8). An account that never
//! logged out gets `item-not-found`.
//!
//! Logouts are recorded when an account's last session ends and written to
//! `last_activity` by one writer task, which drains its queue at shutdown, so they
//! survive restarts; until written they are answered from memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use diesel::prelude::*;
use starling_api::hooks::{PresenceBroadcast, SessionEnded};
use starling_api::jid::{BareJid, FullJid};
use starling_api::minidom::Element;
use starling_api::minidom::rxml::xml_ncname;
use starling_api::roster::RosterService;
use starling_api::tracing;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{
    Context, DbConn, Flow, IqPayload, IqRequest, IqResult, Migrations, ModuleError, ModuleSpec, Registrar, Scope, Spec,
    SpecSupport, Support, stanza_error,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// `jabber:iq:last`
pub const NS_LAST: &str = "jabber:iq:last";

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "last",
    summary: "XEP-0012 Last Activity (contacts' last logout, server uptime)",
    specs: &[SpecSupport { spec: Spec::Xep(12), version: "2.0", status: Support::Complete, features: &[NS_LAST] }],
    migrations: Some(&MIGRATIONS),
    forget_user: Some(forget_user),
    start,
};

static MIGRATIONS: Migrations = starling_api::migrations!();

diesel::table! {
    /// The last logout of each account: epoch milliseconds and the status text.
    last_activity (host, username) {
        host -> Text,
        username -> Text,
        logout_at -> BigInt,
        status -> Text,
    }
}

/// `<query xmlns='jabber:iq:last'/>` as requested (the request carries nothing).
#[derive(Debug, Clone)]
pub struct LastQuery;

/// The payload is not a Last Activity query.
#[derive(Debug)]
pub struct NotLastQuery;

impl TryFrom<Element> for LastQuery {
    type Error = NotLastQuery;

    fn try_from(element: Element) -> Result<Self, Self::Error> {
        if element.is("query", NS_LAST) { Ok(LastQuery) } else { Err(NotLastQuery) }
    }
}

impl IqPayload for LastQuery {
    const NS: &'static str = NS_LAST;
    const NAME: &'static str = "query";
}

/// A logout to record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Logout {
    at_ms: i64,
    status: String,
}

/// What the hooks and the handlers share.
#[derive(Default)]
struct State {
    /// The status text of each session's last unavailable presence, until it ends.
    statuses: Mutex<HashMap<FullJid, String>>,
    /// Logouts not written yet.
    pending: Mutex<HashMap<BareJid, Logout>>,
    /// To the writer task.
    queue: Mutex<Option<mpsc::UnboundedSender<(BareJid, Logout)>>>,
    /// The writer's end, taken when the task starts.
    receiver: Mutex<Option<mpsc::UnboundedReceiver<(BareJid, Logout)>>>,
}

fn start(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(State { queue: Mutex::new(Some(tx)), receiver: Mutex::new(Some(rx)), ..State::default() });
    reg.disco_feature(Scope::Server, NS_LAST);
    reg.disco_feature(Scope::Account, NS_LAST);
    reg.iq_get::<LastQuery, _, _>(Scope::Server, uptime);
    for scope in [Scope::Account, Scope::OwnAccount] {
        let s = state.clone();
        reg.iq_get::<LastQuery, _, _>(scope, move |ctx, req| last_logout(ctx, s.clone(), req));
    }
    let s = state.clone();
    reg.hook::<PresenceBroadcast, _>(0, move |_, event| {
        let mut statuses = s.statuses.lock().unwrap_or_else(|e| e.into_inner());
        match event.stanza.type_() {
            Some("unavailable") => statuses.insert(event.from.clone(), status_text(&event.stanza)),
            _ => statuses.remove(&event.from),
        };
        Flow::Continue
    });
    let s = state.clone();
    reg.hook::<SessionEnded, _>(0, move |ctx, event| on_session_ended(ctx, &s, event));
    let s = state;
    reg.task("last-activity writer", move |ctx, token| {
        let receiver = s.receiver.lock().unwrap_or_else(|e| e.into_inner()).take();
        let s = s.clone();
        async move {
            if let Some(receiver) = receiver {
                writer(ctx, s, receiver, token).await;
            }
        }
    });
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn status_text(presence: &starling_api::Stanza) -> String {
    presence
        .to_element()
        .ok()
        .and_then(|p| p.get_child("status", "jabber:client").map(|s| s.text()))
        .unwrap_or_default()
}

/// The account's last session is gone: record the logout.
fn on_session_ended(ctx: &Context, state: &State, event: &mut SessionEnded) -> Flow {
    let status = state.statuses.lock().unwrap_or_else(|e| e.into_inner()).remove(&event.jid).unwrap_or_default();
    let account = event.jid.to_bare();
    if !ctx.sessions().resources(&account).is_empty() {
        return Flow::Continue;
    }
    let logout = Logout { at_ms: now_ms(), status };
    state.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(account.clone(), logout.clone());
    if let Some(queue) = state.queue.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        let _ = queue.send((account, logout));
    }
    Flow::Continue
}

fn split(jid: &BareJid) -> (String, String) {
    (jid.domain().to_string(), jid.node().map(|n| n.to_string()).unwrap_or_default())
}

fn store(conn: &mut DbConn, account: &BareJid, logout: &Logout) -> QueryResult<()> {
    let (host, user) = split(account);
    // Delete then insert: the backends share no upsert syntax through MultiConnection.
    conn.transaction(|conn| {
        diesel::delete(
            last_activity::table.filter(last_activity::host.eq(&host)).filter(last_activity::username.eq(&user)),
        )
        .execute(conn)?;
        diesel::insert_into(last_activity::table)
            .values((
                last_activity::host.eq(&host),
                last_activity::username.eq(&user),
                last_activity::logout_at.eq(logout.at_ms),
                last_activity::status.eq(&logout.status),
            ))
            .execute(conn)?;
        Ok(())
    })
}

/// Writes logouts in order; at shutdown, writes what is queued and stops.
async fn writer(
    ctx: Context,
    state: Arc<State>,
    mut receiver: mpsc::UnboundedReceiver<(BareJid, Logout)>,
    token: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            next = receiver.recv() => next,
            _ = token.cancelled() => receiver.try_recv().ok(),
        };
        let Some((account, logout)) = next else { break };
        let (stored_account, stored) = (account.clone(), logout.clone());
        match ctx.db().run(move |c| store(c, &stored_account, &stored)).await {
            Ok(()) => {
                let mut pending = state.pending.lock().unwrap_or_else(|e| e.into_inner());
                if pending.get(&account) == Some(&logout) {
                    pending.remove(&account);
                }
            }
            Err(err) => tracing::error!(%account, error = %err, "cannot record the last logout"),
        }
    }
}

fn answer(seconds: u64, status: &str) -> Element {
    let mut query = Element::builder("query", NS_LAST).attr(xml_ncname!("seconds").into(), seconds.to_string()).build();
    if !status.is_empty() {
        query.append_text_node(status);
    }
    query
}

/// §5: the server's uptime.
async fn uptime(ctx: Context, _req: IqRequest<LastQuery>) -> IqResult {
    let seconds = ctx.server().started_at.elapsed().map(|d| d.as_secs()).unwrap_or(0);
    Ok(Some(answer(seconds, "")))
}

/// §4: an account's last logout, for itself and for contacts subscribed to it.
async fn last_logout(ctx: Context, state: Arc<State>, req: IqRequest<LastQuery>) -> IqResult {
    let account = req.to.to_bare();
    let requester = req.from.to_bare();
    if requester != account {
        let subscribed = match ctx.service::<dyn RosterService>() {
            Some(rosters) => rosters
                .contact(&ctx, &account, &requester)
                .await?
                .is_some_and(|c| c.subscription.contact_sees_account()),
            None => false,
        };
        if !subscribed {
            return Err(stanza_error(ErrorType::Auth, DefinedCondition::Forbidden));
        }
    }
    if !ctx.sessions().available_resources(&account).is_empty() {
        return Ok(Some(answer(0, "")));
    }
    let pending = state.pending.lock().unwrap_or_else(|e| e.into_inner()).get(&account).cloned();
    let logout = match pending {
        Some(logout) => Some(logout),
        None => {
            let (host, user) = split(&account);
            ctx.db()
                .run(move |c| {
                    last_activity::table
                        .filter(last_activity::host.eq(&host))
                        .filter(last_activity::username.eq(&user))
                        .select((last_activity::logout_at, last_activity::status))
                        .first::<(i64, String)>(c)
                        .optional()
                })
                .await?
                .map(|(at_ms, status)| Logout { at_ms, status })
        }
    };
    let Some(logout) = logout else {
        return Err(stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound));
    };
    let seconds = u64::try_from((now_ms() - logout.at_ms) / 1000).unwrap_or(0);
    Ok(Some(answer(seconds, &logout.status)))
}

/// Deletes the account's last logout.
fn forget_user(conn: &mut DbConn, host: &str, username: &str) -> QueryResult<()> {
    diesel::delete(
        last_activity::table.filter(last_activity::host.eq(host)).filter(last_activity::username.eq(username)),
    )
    .execute(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_carry_seconds_and_status() {
        let query = answer(903, "Heading Home");
        assert_eq!(query.attr("seconds"), Some("903"));
        assert_eq!(query.text(), "Heading Home");
        assert!(LastQuery::try_from(query).is_ok());
        assert!(LastQuery::try_from(Element::builder("query", "jabber:iq:version").build()).is_err());
    }
}

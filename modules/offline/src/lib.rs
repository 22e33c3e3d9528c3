//! XEP-0160: Best Practices for Handling Offline Messages — a chat or normal message
//! for an account with no available resource is stored and delivered, oldest first and
//! stamped with XEP-0203 `<delay/>`, when the account next sends initial presence.
//!
//! Message processing hints (XEP-0334) are honoured: `<no-store/>` and
//! `<no-permanent-store/>` are never stored, `<store/>` always is; a message carrying
//! only chat states is not worth storing. Over `max_per_user` stored messages the
//! sender gets `service-unavailable`, as without offline storage (RFC 6121 §8.5.2.2.1).

mod store;

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use serde::Deserialize;
use starling_api::hooks::MessageUndelivered;
use starling_api::jid::{BareJid, FullJid};
use starling_api::minidom::Element;
use starling_api::reply::error_reply;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{
    Context, Flow, Migrations, ModuleSpec, Registrar, Scope, Spec, SpecSupport, Stanza, Support, stanza_error,
};

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "offline",
    summary: "XEP-0160 offline message storage",
    specs: &[
        SpecSupport { spec: Spec::Xep(160), version: "1.0.1", status: Support::Complete, features: &[FEATURE] },
        SpecSupport { spec: Spec::Xep(203), version: "2.0", status: Support::Complete, features: &[] },
        SpecSupport { spec: Spec::Xep(334), version: "0.3.0", status: Support::Partial, features: &[] },
    ],
    migrations: Some(&MIGRATIONS),
    forget_user: Some(store::forget_user),
    start,
};

static MIGRATIONS: Migrations = starling_api::migrations!();

/// The disco feature of XEP-0160 §3.
const FEATURE: &str = "msgoffline";
const NS_HINTS: &str = "urn:xmpp:hints";
const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";

/// `[modules.offline]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct OfflineConfig {
    /// Messages kept per account (default 1000).
    max_per_user: i64,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig { max_per_user: 1000 }
    }
}

/// A message waiting to be written.
struct Pending {
    host: String,
    user: String,
    stanza: Stanza,
}

/// What the writer is asked to do.
enum Job {
    Store(Pending),
    /// An account's session takes its backlog: answer once everything queued before is
    /// stored, so a message queued just before the account came online is delivered now,
    /// not left in storage until the next login.
    Flush {
        account: BareJid,
        done: tokio::sync::oneshot::Sender<()>,
    },
    /// Answer once everything queued before is stored (a stream acknowledging stanzas).
    Barrier(tokio::sync::oneshot::Sender<()>),
}

type Queue = Arc<OnceLock<mpsc::Sender<Job>>>;

/// Messages to store pass through one writer task, in arrival order: spawning a task
/// per message would let a later message overtake an earlier one (and race the limit).
const WRITE_QUEUE: usize = 4096;

fn start(reg: &mut Registrar<'_>) -> Result<(), starling_api::ModuleError> {
    let config: OfflineConfig = reg.config()?;
    reg.disco_feature(Scope::Server, FEATURE);
    let limit = config.max_per_user;
    let queue: Queue = Arc::default();
    let q = queue.clone();
    reg.on_start(move |ctx| {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let _ = q.set(tx);
        tokio::spawn(writer(ctx, rx, limit));
        async { Ok(()) }
    });
    let q = queue.clone();
    reg.hook::<MessageUndelivered, _>(0, move |_, event| on_undelivered(event, &q));
    let q = queue.clone();
    reg.write_barrier(move |_| stored(q.clone()));
    reg.initial_backlog(move |ctx, jid| backlog(ctx, jid, queue.clone()));
    Ok(())
}

/// Whether XEP-0334 hints and the payload make the message worth storing.
fn worth_storing(stanza: &Stanza) -> bool {
    let children: Vec<_> = stanza.child_elements().collect();
    let hint = |name: &str| children.iter().any(|c| c.ns() == NS_HINTS && c.name() == name);
    if hint("no-store") || hint("no-permanent-store") {
        return false;
    }
    if hint("store") {
        return true;
    }
    children.iter().any(|c| c.ns() != NS_CHATSTATES && c.ns() != NS_HINTS)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn on_undelivered(event: &mut MessageUndelivered, queue: &OnceLock<mpsc::Sender<Job>>) -> Flow {
    if !worth_storing(&event.stanza) {
        // Nothing to keep; the sender is told, as without offline storage.
        return Flow::Continue;
    }
    let Some(queue) = queue.get() else { return Flow::Continue };
    let pending = Pending {
        host: event.to.domain().to_string(),
        user: event.to.node().map(|n| n.to_string()).unwrap_or_default(),
        stanza: event.stanza.clone(),
    };
    // A full queue means the database is far behind: refuse rather than buffer.
    match queue.try_send(Job::Store(pending)) {
        Ok(()) => Flow::Handled,
        Err(_) => Flow::Continue,
    }
}

/// Accounts whose session took its backlog, remembered only while they stay online.
const DRAINED_KEPT: usize = 10_000;

/// Stores queued messages one after another; a refused one is bounced to its sender.
///
/// A message queued after its account's session took the backlog was routed here just
/// before the account came online: it is delivered instead of stored (and left there
/// until the next login). One queued before is stored, as the backlog holds the older
/// ones and routing it now would let it overtake them.
async fn writer(ctx: Context, mut queue: mpsc::Receiver<Job>, limit: i64) {
    let mut drained: HashSet<BareJid> = HashSet::new();
    while let Some(job) = queue.recv().await {
        let Pending { host, user, stanza } = match job {
            Job::Store(pending) => pending,
            Job::Flush { account, done } => {
                if drained.len() >= DRAINED_KEPT {
                    drained.retain(|jid| ctx.sessions().takes_bare_messages(jid));
                }
                drained.insert(account);
                let _ = done.send(());
                continue;
            }
            Job::Barrier(done) => {
                let _ = done.send(());
                continue;
            }
        };
        if let Ok(account) = BareJid::new(&format!("{user}@{host}"))
            && drained.contains(&account)
        {
            if ctx.sessions().takes_bare_messages(&account) {
                ctx.send(stanza);
                continue;
            }
            drained.remove(&account);
        }
        let text = String::from_utf8_lossy(&stanza.to_bytes()).into_owned();
        let stored = ctx.db().run(move |c| store::store(c, &host, &user, &text, now_ms(), limit)).await;
        if !matches!(stored, Ok(true)) {
            if let Err(err) = &stored {
                starling_api::tracing::error!(error = %err, "storing an offline message failed");
            }
            let error = stanza_error(ErrorType::Cancel, DefinedCondition::ServiceUnavailable);
            if let Some(reply) = error_reply(&stanza, &error) {
                ctx.send(reply);
            }
        }
    }
}

/// Resolves once everything queued so far is stored (or refused and bounced).
async fn stored(queue: Queue) {
    let Some(queue) = queue.get() else { return };
    let (done, stored) = tokio::sync::oneshot::channel();
    if queue.send(Job::Barrier(done)).await.is_ok() {
        let _ = stored.await;
    }
}

/// The session's initial backlog: once everything queued for storage is stored, the
/// stored messages, oldest first, stamped; then they are forgotten (the session now
/// holds them, and hands them back as undelivered if it ends before the client has them).
async fn backlog(ctx: Context, to: FullJid, queue: Queue) -> Vec<Stanza> {
    if let Some(queue) = queue.get() {
        let (done, stored) = tokio::sync::oneshot::channel();
        if queue.send(Job::Flush { account: to.to_bare(), done }).await.is_ok() {
            let _ = stored.await;
        }
    }
    let host = to.domain().to_string();
    let user = to.node().map(|n| n.to_string()).unwrap_or_default();
    let (h, u) = (host.clone(), user.clone());
    let messages = match ctx.db().run(move |c| store::load(c, &h, &u)).await {
        Ok(messages) => messages,
        Err(err) => {
            starling_api::tracing::error!(error = %err, "loading offline messages failed");
            return Vec::new();
        }
    };
    let Some(last) = messages.last().map(|m| m.id) else { return Vec::new() };
    let to_text = to.to_string();
    let stanzas = messages
        .iter()
        .filter_map(|message| {
            let stanza = stamped(&message.stanza, &host, message.stored_at, &to_text);
            if stanza.is_none() {
                starling_api::tracing::warn!(id = message.id, "dropping an unreadable offline message");
            }
            stanza
        })
        .collect();
    if let Err(err) = ctx.db().run(move |c| store::delete_through(c, &host, &user, last)).await {
        // Kept in storage, they come again at the next login: better twice than never.
        starling_api::tracing::error!(error = %err, "deleting delivered offline messages failed");
    }
    stanzas
}

/// The stored message with a XEP-0203 delay stamp, addressed to the new session.
fn stamped(stored: &str, host: &str, stored_at: i64, to: &str) -> Option<Stanza> {
    let mut element: Element = stored.parse().ok()?;
    let stamp =
        chrono::DateTime::from_timestamp_millis(stored_at)?.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let delay = Element::builder("delay", "urn:xmpp:delay")
        .attr(starling_api::minidom::rxml::xml_ncname!("from").into(), host)
        .attr(starling_api::minidom::rxml::xml_ncname!("stamp").into(), stamp)
        .append("Offline Storage")
        .build();
    element.append_child(delay);
    let mut stanza = Stanza::from_element(&element);
    stanza.set_attr("to", Some(to));
    Some(stanza)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(children: &str) -> Stanza {
        let element: Element =
            format!("<message xmlns='jabber:client' type='chat'>{children}</message>").parse().expect("xml");
        Stanza::from_element(&element)
    }

    #[test]
    fn hints_and_payloads_decide_storage() {
        assert!(worth_storing(&message("<body>hi</body>")));
        assert!(!worth_storing(&message("<active xmlns='http://jabber.org/protocol/chatstates'/>")));
        assert!(!worth_storing(&message("<body>x</body><no-store xmlns='urn:xmpp:hints'/>")));
        assert!(worth_storing(&message(
            "<active xmlns='http://jabber.org/protocol/chatstates'/><store xmlns='urn:xmpp:hints'/>"
        )));
        assert!(worth_storing(&message("<encrypted xmlns='urn:xmpp:omemo:2'/>")));
    }

    #[test]
    fn delivered_messages_carry_a_delay_stamp() {
        let stanza = stamped(
            "<message xmlns='jabber:client' from='a@x/r' type='chat'><body>hi</body></message>",
            "x",
            0,
            "b@x/s",
        )
        .expect("stamped");
        assert_eq!(stanza.to(), Some("b@x/s"));
        let element = stanza.to_element().expect("dom");
        let delay = element.get_child("delay", "urn:xmpp:delay").expect("delay");
        assert_eq!(delay.attr("stamp"), Some("1970-01-01T00:00:00.000Z"));
        assert_eq!(delay.attr("from"), Some("x"));
    }
}

//! New accounts may only message their contacts at first: with
//! `new_accounts_contacts_only_hours` set for a host, an account registered in-band
//! without an invite can, for that many hours, send chat and normal messages only to
//! people who are its contacts — who approved its subscription request, whose request
//! it approved, who are in its roster with a subscription, or who wrote to it first.
//! Group chats, services and the server stay reachable. Others get `policy-violation`.
//! This stops the bulk of registration spam (fresh accounts messaging strangers)
//! without bothering invited or admin-made accounts.
//!
//! The routing filter runs on every stanza, so the restricted accounts and their
//! contacts are held in memory: loaded at start from `register_new_accounts` and the
//! rosters, kept current by what the filter sees.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use diesel::prelude::*;
use starling_api::hooks::Routing;
use starling_api::jid::BareJid;
use starling_api::reply::error_reply;
use starling_api::roster::{RosterService, Subscription};
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{Context, DbConn, Flow, StorageError, stanza_error};

diesel::table! {
    /// Restricted new accounts.
    register_new_accounts (host, username) {
        host -> Text,
        username -> Text,
        registered_at -> BigInt,
    }
}

/// One restricted account.
struct Fresh {
    /// When the restriction ends, milliseconds since the Unix epoch.
    until_ms: i64,
    /// Whom it may write to.
    contacts: HashSet<BareJid>,
}

/// The restricted accounts of every host.
#[derive(Default)]
pub struct FreshAccounts {
    accounts: RwLock<HashMap<BareJid, Fresh>>,
}

impl FreshAccounts {
    /// Restricts `jid`, registered now, for `hours`; stored so a restart keeps it.
    pub async fn register(&self, ctx: &Context, jid: &BareJid, hours: u32, now_ms: i64) -> Result<(), StorageError> {
        let (host, user) = (jid.domain().to_string(), jid.node().map(|n| n.to_string()).unwrap_or_default());
        ctx.db()
            .run(move |c| {
                diesel::delete(
                    register_new_accounts::table
                        .filter(register_new_accounts::host.eq(&host))
                        .filter(register_new_accounts::username.eq(&user)),
                )
                .execute(c)?;
                diesel::insert_into(register_new_accounts::table)
                    .values((
                        register_new_accounts::host.eq(&host),
                        register_new_accounts::username.eq(&user),
                        register_new_accounts::registered_at.eq(now_ms),
                    ))
                    .execute(c)
            })
            .await?;
        let fresh = Fresh { until_ms: now_ms + i64::from(hours) * 3_600_000, contacts: HashSet::new() };
        self.accounts.write().unwrap_or_else(|e| e.into_inner()).insert(jid.clone(), fresh);
        Ok(())
    }

    /// Reads the accounts still restricted (`hours_of(host)` is the host's setting) and
    /// their contacts from the rosters.
    pub async fn load(&self, ctx: &Context, hours_of: impl Fn(&str) -> u32, now_ms: i64) -> Result<(), StorageError> {
        let rows: Vec<(String, String, i64)> = ctx
            .db()
            .run(|c| {
                register_new_accounts::table
                    .select((
                        register_new_accounts::host,
                        register_new_accounts::username,
                        register_new_accounts::registered_at,
                    ))
                    .load(c)
            })
            .await?;
        let roster = ctx.service::<dyn RosterService>();
        let mut loaded = HashMap::new();
        for (host, user, registered_at) in rows {
            let until_ms = registered_at + i64::from(hours_of(&host)) * 3_600_000;
            let Ok(jid) = BareJid::new(&format!("{user}@{host}")) else { continue };
            if until_ms <= now_ms {
                continue;
            }
            let mut contacts = HashSet::new();
            if let Some(roster) = &roster {
                for (contact, item) in roster.contacts(ctx, &jid).await? {
                    if item.subscription != Subscription::None {
                        contacts.insert(contact);
                    }
                }
            }
            loaded.insert(jid, Fresh { until_ms, contacts });
        }
        *self.accounts.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(())
    }

    /// The routing filter (see the module docs).
    pub fn filter(&self, ctx: &Context, event: &Routing, now_ms: i64) -> Flow {
        let Some(from) = &event.from else { return Flow::Continue };
        let (sender, recipient) = {
            // The filter runs for every stanza: the shared lock answers "not involved",
            // the exclusive one is taken only for stanzas of restricted accounts.
            let accounts = self.accounts.read().unwrap_or_else(|e| e.into_inner());
            if accounts.is_empty() {
                return Flow::Continue;
            }
            let (sender, recipient) = (from.to_bare(), event.to.to_bare());
            if !accounts.contains_key(&sender) && !accounts.contains_key(&recipient) {
                return Flow::Continue;
            }
            (sender, recipient)
        };
        let (kind, type_) = (event.stanza.name(), event.stanza.type_());
        let mut accounts = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        // Someone writing to or approving a restricted account becomes its contact.
        if let Some(fresh) = accounts.get_mut(&recipient)
            && (kind == "message" && type_ != Some("error") || kind == "presence" && type_ == Some("subscribed"))
            && sender.node().is_some()
        {
            fresh.contacts.insert(sender.clone());
        }
        let Some(fresh) = accounts.get_mut(&sender) else { return Flow::Continue };
        if fresh.until_ms <= now_ms {
            accounts.remove(&sender);
            return Flow::Continue;
        }
        if kind == "presence" && type_ == Some("subscribed") {
            fresh.contacts.insert(recipient);
            return Flow::Continue;
        }
        let to_person = event.to.node().is_some() && !ctx.is_component(event.to.domain().as_str());
        let restricted_kind = kind == "message" && !matches!(type_, Some("groupchat" | "error"));
        if !restricted_kind || !to_person || recipient == sender || fresh.contacts.contains(&recipient) {
            return Flow::Continue;
        }
        drop(accounts);
        count_refusal(&sender, &recipient);
        let mut error = stanza_error(ErrorType::Cancel, DefinedCondition::PolicyViolation);
        error.texts.insert(
            "en".into(),
            "New accounts can only message their contacts for now; ask them to add you first.".into(),
        );
        if let Some(reply) = error_reply(&event.stanza, &error) {
            ctx.send(reply);
        }
        Flow::Handled
    }
}

fn count_refusal(sender: &BareJid, recipient: &BareJid) {
    metrics::counter!("starling_new_account_messages_refused_total").increment(1);
    starling_api::tracing::info!(%sender, %recipient, "message from a new account to a non-contact refused");
}

/// Deletes the account's row.
pub fn forget_user(conn: &mut DbConn, host: &str, user: &str) -> QueryResult<()> {
    diesel::delete(
        register_new_accounts::table
            .filter(register_new_accounts::host.eq(host))
            .filter(register_new_accounts::username.eq(user)),
    )
    .execute(conn)?;
    Ok(())
}

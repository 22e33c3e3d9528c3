//! XEP-0133 §4.25–§4.27: the message of the day of each host, set, edited and deleted
//! by administrators, stored in `admin_motd` and sent to every session as it starts.
//!
//! The texts are held in memory (loaded at start, written through), because the
//! session-started hook is synchronous and runs on every login.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use diesel::prelude::*;
use starling_api::adhoc::{CommandRequest, CommandStep};
use starling_api::hooks::SessionStarted;
use starling_api::xmpp_parsers::data_forms::FieldType;
use starling_api::xmpp_parsers::stanza_error::StanzaError;
use starling_api::{Context, DbConn, Flow, Stanza};

use crate::form::{self, field, required};
use crate::{bad_request, internal};

diesel::table! {
    /// One message of the day per host.
    admin_motd (host) {
        host -> Text,
        text -> Text,
    }
}

/// The messages of the day, by host.
#[derive(Default)]
pub struct Motd {
    by_host: RwLock<HashMap<String, String>>,
}

impl Motd {
    fn get(&self, host: &str) -> Option<String> {
        self.by_host.read().unwrap_or_else(|e| e.into_inner()).get(host).cloned()
    }

    fn put(&self, host: &str, text: Option<String>) {
        let mut by_host = self.by_host.write().unwrap_or_else(|e| e.into_inner());
        match text {
            Some(text) => by_host.insert(host.to_owned(), text),
            None => by_host.remove(host),
        };
    }

    /// Loads the stored texts (at start-up).
    pub async fn load(&self, ctx: &Context) -> Result<(), starling_api::StorageError> {
        let rows: Vec<(String, String)> =
            ctx.db().run(|c| admin_motd::table.select((admin_motd::host, admin_motd::text)).load(c)).await?;
        *self.by_host.write().unwrap_or_else(|e| e.into_inner()) = rows.into_iter().collect();
        Ok(())
    }

    /// Sends the host's message of the day to a session that just started.
    pub fn on_session_started(&self, ctx: &Context, event: &mut SessionStarted) -> Flow {
        let host = event.jid.domain().as_str();
        if let Some(text) = self.get(host) {
            let mut message = Stanza::new("message", "jabber:client").with_children_xml(body(&text).into());
            message.set_attr("from", Some(host));
            message.set_attr("to", Some(event.jid.as_str()));
            ctx.send(message);
        }
        Flow::Continue
    }
}

fn body(text: &str) -> Vec<u8> {
    let mut out = b"<subject>Message of the Day</subject><body>".to_vec();
    starling_api::stanza::escape_text(&mut out, text);
    out.extend_from_slice(b"</body>");
    out
}

fn store(conn: &mut DbConn, host: &str, text: Option<&str>) -> QueryResult<()> {
    // Delete then insert: the backends share no upsert syntax through MultiConnection.
    conn.transaction(|conn| {
        diesel::delete(admin_motd::table.filter(admin_motd::host.eq(host))).execute(conn)?;
        if let Some(text) = text {
            diesel::insert_into(admin_motd::table)
                .values((admin_motd::host.eq(host), admin_motd::text.eq(text)))
                .execute(conn)?;
        }
        Ok(())
    })
}

async fn save(ctx: &Context, motd: &Motd, host: &str, text: Option<String>) -> Result<(), StanzaError> {
    let (stored_host, stored) = (host.to_owned(), text.clone());
    ctx.db().run(move |c| store(c, &stored_host, stored.as_deref())).await.map_err(internal)?;
    motd.put(host, text);
    Ok(())
}

/// §4.25 Set Message of the Day (`current` empty) and §4.26 Edit (`current` filled in).
pub async fn set(ctx: Context, motd: Arc<Motd>, req: CommandRequest, edit: bool) -> Result<CommandStep, StanzaError> {
    if req.stage == 0 && req.form.is_none() {
        let current = if edit { motd.get(&req.host).map(|t| t.lines().map(str::to_owned).collect()) } else { None };
        let title = if edit { "Editing the Message of the Day" } else { "Setting the Message of the Day" };
        let fields =
            vec![required(field("motd", FieldType::TextMulti, "Message of the Day", current.unwrap_or_default()))];
        return Ok(CommandStep::Form { form: form::form(title, fields), last: true });
    }
    let text = req.values("motd").join("\n");
    if text.trim().is_empty() {
        return Err(bad_request());
    }
    save(&ctx, &motd, &req.host, Some(text)).await?;
    Ok(CommandStep::done("The message of the day is set."))
}

/// §4.27 Delete Message of the Day: one step.
pub async fn delete(ctx: Context, motd: Arc<Motd>, req: CommandRequest) -> Result<CommandStep, StanzaError> {
    save(&ctx, &motd, &req.host, None).await?;
    Ok(CommandStep::done("The message of the day is deleted."))
}

/// The host's messages of the day belong to no account: nothing to forget.
pub fn forget_user(_: &mut DbConn, _: &str, _: &str) -> QueryResult<()> {
    Ok(())
}

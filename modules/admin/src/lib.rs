//! XEP-0133: Service Administration — the administrators' ad-hoc commands (XEP-0050),
//! run through the `adhoc` module by the accounts listed in `[server] admins`.
//!
//! Commands: Add User (§4.1), Delete User (§4.2), Disable User (§4.3), Re-Enable User
//! (§4.4), Change User Password (§4.7), Get User Roster (§4.8), End User Session
//! (§4.14), Get Number of Online Users (§4.15), Get Number / List of Registered Users
//! (§4.17, §4.18), Get List of Online Users (§4.20), Send Announcement to Online Users
//! (§4.23), Set / Edit / Delete Message of the Day (§4.25–§4.27) and Shut Down Service
//! (§4.29); and Reload Configuration, which is not in the XEP (node
//! [`NODE_RELOAD`]). "Online" counts accounts with at least one bound session on the
//! host the command is sent to. Administrators act on the accounts of the host they
//! address the command to; shutdown and reload act on the whole server.

mod form;
mod motd;
mod users;

use std::collections::BTreeSet;
use std::sync::Arc;

use starling_api::adhoc::{Access, CommandRequest, CommandStep, Note};
use starling_api::hooks::SessionStarted;
use starling_api::tracing;
use starling_api::xmpp_parsers::data_forms::FieldType;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use starling_api::{Context, ModuleSpec, Registrar, Spec, SpecSupport, Support, stanza_error};

use form::{choice, field, required};

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "admin",
    summary: "XEP-0133 Service Administration commands for the server's administrators",
    specs: &[SpecSupport { spec: Spec::Xep(133), version: "1.3.1", status: Support::Partial, features: &[] }],
    migrations: Some(&MIGRATIONS),
    forget_user: Some(motd::forget_user),
    start,
};

static MIGRATIONS: starling_api::Migrations = starling_api::migrations!();

fn start(reg: &mut Registrar<'_>) -> Result<(), starling_api::ModuleError> {
    reg.adhoc_command("http://jabber.org/protocol/admin#add-user", "Add User", Access::Admin, users::add);
    reg.adhoc_command("http://jabber.org/protocol/admin#delete-user", "Delete User", Access::Admin, users::delete);
    reg.adhoc_command("http://jabber.org/protocol/admin#disable-user", "Disable User", Access::Admin, users::disable);
    reg.adhoc_command(
        "http://jabber.org/protocol/admin#reenable-user",
        "Re-Enable User",
        Access::Admin,
        users::reenable,
    );
    reg.adhoc_command(
        "http://jabber.org/protocol/admin#change-user-password",
        "Change User Password",
        Access::Admin,
        users::change_password,
    );
    reg.adhoc_command(
        "http://jabber.org/protocol/admin#get-user-roster",
        "Get User Roster",
        Access::Admin,
        users::roster,
    );
    reg.adhoc_command(
        "http://jabber.org/protocol/admin#end-user-session",
        "End User Session",
        Access::Admin,
        users::end_sessions,
    );
    reg.adhoc_command(
        "http://jabber.org/protocol/admin#get-registered-users-num",
        "Get Number of Registered Users",
        Access::Admin,
        users::registered_num,
    );
    reg.adhoc_command(
        "http://jabber.org/protocol/admin#get-registered-users-list",
        "Get List of Registered Users",
        Access::Admin,
        users::registered_list,
    );
    let motd = Arc::new(motd::Motd::default());
    let m = motd.clone();
    reg.adhoc_command(
        "http://jabber.org/protocol/admin#set-motd",
        "Set Message of the Day",
        Access::Admin,
        move |ctx, req| motd::set(ctx, m.clone(), req, false),
    );
    let m = motd.clone();
    reg.adhoc_command(
        "http://jabber.org/protocol/admin#edit-motd",
        "Edit Message of the Day",
        Access::Admin,
        move |ctx, req| motd::set(ctx, m.clone(), req, true),
    );
    let m = motd.clone();
    reg.adhoc_command(
        "http://jabber.org/protocol/admin#delete-motd",
        "Delete Message of the Day",
        Access::Admin,
        move |ctx, req| motd::delete(ctx, m.clone(), req),
    );
    let m = motd.clone();
    reg.on_start(move |ctx| {
        let m = m.clone();
        async move {
            m.load(&ctx).await.map_err(|e| starling_api::ModuleError::Start { module: "admin", message: e.to_string() })
        }
    });
    reg.hook::<SessionStarted, _>(0, move |ctx, event| motd.on_session_started(ctx, event));
    reg.adhoc_command(
        "http://jabber.org/protocol/admin#get-online-users-num",
        "Get Number of Online Users",
        Access::Admin,
        online_users_num,
    );
    reg.adhoc_command(
        "http://jabber.org/protocol/admin#get-online-users-list",
        "Get List of Online Users",
        Access::Admin,
        online_users_list,
    );
    reg.adhoc_command(
        "http://jabber.org/protocol/admin#announce",
        "Send Announcement to Online Users",
        Access::Admin,
        announce,
    );
    reg.adhoc_command("http://jabber.org/protocol/admin#shutdown", "Shut Down Service", Access::Admin, shutdown);
    reg.adhoc_command(NODE_RELOAD, "Reload Configuration", Access::Admin, reload);
    Ok(())
}

/// The node of the reload command (what `starling reload` and SIGHUP do).
pub const NODE_RELOAD: &str = "urn:starling:admin#reload-config";

/// The delays §4.29 offers, in seconds.
const SHUTDOWN_DELAYS: [&str; 10] = ["30", "60", "90", "120", "180", "300", "600", "900", "1800", "3600"];

/// §4.29: a delay and an announcement; online users get the announcement at once and
/// the server stops gracefully when the delay is over.
async fn shutdown(ctx: Context, req: CommandRequest) -> Result<CommandStep, StanzaError> {
    if req.stage == 0 && req.form.is_none() {
        let form = form::form(
            "Shutting Down the Service",
            vec![
                choice("delay", "Time delay before shutting down", &SHUTDOWN_DELAYS, "30"),
                field("announcement", FieldType::TextMulti, "Announcement", Vec::new()),
            ],
        );
        return Ok(CommandStep::Form { form, last: true });
    }
    let delay: u64 = match req.value("delay") {
        None => 30,
        Some(delay) => delay.parse().ok().filter(|d| *d <= 86_400).ok_or_else(bad_request)?,
    };
    let announcement = Some(req.values("announcement").join("\n")).filter(|t| !t.trim().is_empty());
    tracing::warn!(by = %req.from, delay, "shutdown requested");
    ctx.control().shutdown(std::time::Duration::from_secs(delay), announcement);
    Ok(CommandStep::done(format!("The server shuts down in {delay} seconds.")))
}

/// Reads the configuration file again; the note says what was applied and what needs a
/// restart.
async fn reload(ctx: Context, req: CommandRequest) -> Result<CommandStep, StanzaError> {
    tracing::info!(by = %req.from, "reload requested");
    match ctx.control().reload().await {
        Ok(report) => Ok(CommandStep::done(report.describe())),
        Err(err) => Ok(CommandStep::Completed {
            notes: vec![Note::error(format!("Reload failed, nothing changed: {err}"))],
            result: None,
        }),
    }
}

/// Accounts of `host` with at least one bound session, sorted.
fn online_users(ctx: &Context, host: &str) -> BTreeSet<String> {
    ctx.sessions().of_host(host).into_iter().map(|(jid, _)| jid.to_bare().to_string()).collect()
}

/// §4.15: one step, the number as a result form.
async fn online_users_num(ctx: Context, req: CommandRequest) -> Result<CommandStep, StanzaError> {
    let count = online_users(&ctx, &req.host).len();
    let result = form::result(vec![field(
        "onlineusersnum",
        FieldType::TextSingle,
        "The number of online users",
        vec![count.to_string()],
    )]);
    Ok(CommandStep::Completed { notes: Vec::new(), result: Some(result) })
}

pub(crate) const MAX_ITEMS: [&str; 7] = ["25", "50", "75", "100", "150", "200", "none"];

/// §4.20: how many to list, then the list.
async fn online_users_list(ctx: Context, req: CommandRequest) -> Result<CommandStep, StanzaError> {
    if req.stage == 0 && req.form.is_none() {
        let form = form::form(
            "Getting List of Online Users",
            vec![choice("max_items", "Maximum number of items to show", &MAX_ITEMS, "25")],
        );
        return Ok(CommandStep::Form { form, last: true });
    }
    let limit = match req.value("max_items").as_deref() {
        None | Some("none") => usize::MAX,
        Some(n) => n.parse().map_err(|_| bad_request())?,
    };
    let users: Vec<String> = online_users(&ctx, &req.host).into_iter().take(limit).collect();
    let result =
        form::result(vec![field("onlineuserjids", FieldType::JidMulti, "The list of all online users", users)]);
    Ok(CommandStep::Completed { notes: Vec::new(), result: Some(result) })
}

/// §4.23: subject and text, sent as a headline from the host to every online session.
async fn announce(ctx: Context, req: CommandRequest) -> Result<CommandStep, StanzaError> {
    if req.stage == 0 && req.form.is_none() {
        let form = form::form(
            "Making an Announcement",
            vec![
                field("subject", FieldType::TextSingle, "Subject", Vec::new()),
                required(field("announcement", FieldType::TextMulti, "Announcement", Vec::new())),
            ],
        );
        return Ok(CommandStep::Form { form, last: true });
    }
    let text = req.values("announcement").join("\n");
    if text.trim().is_empty() {
        return Err(bad_request());
    }
    let subject = req.value("subject");
    let mut sent = 0;
    for (jid, _) in ctx.sessions().of_host(&req.host) {
        ctx.send(starling_api::reply::headline(&req.host, &jid.to_string(), subject.as_deref(), &text));
        sent += 1;
    }
    Ok(CommandStep::done(format!("Announcement sent to {sent} sessions.")))
}

pub(crate) fn bad_request() -> StanzaError {
    stanza_error(ErrorType::Modify, DefinedCondition::BadRequest)
}

pub(crate) fn internal(err: impl std::fmt::Display) -> StanzaError {
    tracing::error!(error = %err, "administration command failed");
    stanza_error(ErrorType::Wait, DefinedCondition::InternalServerError)
}

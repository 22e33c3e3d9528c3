//! XEP-0133 account commands: add (§4.1), delete (§4.2), disable (§4.3), re-enable
//! (§4.4), change password (§4.7), get roster (§4.8), end sessions (§4.14) and the
//! registered users count and list (§4.17, §4.18). Accounts go through the core's
//! account service, so deleting one removes every module's rows (the same path as
//! `starling user del`) and deleting or disabling one ends its sessions.
//!
//! Every command first asks for its form; an account outside the host the command was
//! sent to is refused (an administrator acts on the host they address).

use starling_api::accounts::AccountError;
use starling_api::adhoc::{CommandRequest, CommandStep, Note};
use starling_api::jid::BareJid;
use starling_api::roster::{RosterService, Subscription};
use starling_api::xmpp_parsers::data_forms::FieldType;
use starling_api::xmpp_parsers::stanza_error::StanzaError;
use starling_api::{AccountEntry, Context};

use crate::form::{self, choice, field, required};
use crate::{MAX_ITEMS, bad_request, internal};

/// Whether this request is the first one, which gets the form.
fn asking(req: &CommandRequest) -> bool {
    req.stage == 0 && req.form.is_none()
}

fn one_account_form(title: &str, extra: Vec<starling_api::xmpp_parsers::data_forms::Field>) -> CommandStep {
    let mut fields = vec![required(field("accountjid", FieldType::JidSingle, "The Jabber ID", Vec::new()))];
    fields.extend(extra);
    CommandStep::Form { form: form::form(title, fields), last: true }
}

fn many_accounts_form(title: &str) -> CommandStep {
    let fields = vec![required(field("accountjids", FieldType::JidMulti, "The Jabber ID(s)", Vec::new()))];
    CommandStep::Form { form: form::form(title, fields), last: true }
}

fn password(label: &str, var: &str) -> starling_api::xmpp_parsers::data_forms::Field {
    required(field(var, FieldType::TextPrivate, label, Vec::new()))
}

/// An account JID of the host the command was addressed to.
fn account_of(req: &CommandRequest, text: &str) -> Result<BareJid, String> {
    let jid = starling_api::parse_bare_jid(text).map_err(|e| format!("{text}: {e}"))?;
    if jid.node().is_none() || jid.domain().as_str() != req.host {
        return Err(format!("{text} is not an account of {}", req.host));
    }
    Ok(jid)
}

fn failed(text: impl Into<String>) -> CommandStep {
    CommandStep::Completed { notes: vec![Note::error(text)], result: None }
}

fn describe(err: &AccountError) -> String {
    match err {
        AccountError::Storage(_) => "a database error; see the server log".to_owned(),
        other => other.to_string(),
    }
}

/// §4.1 Add User.
pub async fn add(ctx: Context, req: CommandRequest) -> Result<CommandStep, StanzaError> {
    if asking(&req) {
        let extra =
            vec![password("The password for this account", "password"), password("Retype password", "password-verify")];
        return Ok(one_account_form("Adding a User", extra));
    }
    let Some(text) = req.value("accountjid") else { return Err(bad_request()) };
    let jid = match account_of(&req, &text) {
        Ok(jid) => jid,
        Err(message) => return Ok(failed(message)),
    };
    let password = req.values("password").into_iter().next().unwrap_or_default();
    if req.values("password-verify").into_iter().next().is_some_and(|again| again != password) {
        return Ok(failed("The passwords do not match."));
    }
    Ok(match ctx.accounts().create(&jid, &password).await {
        Ok(()) => CommandStep::done(format!("Created {jid}.")),
        Err(err) => failed(describe(&err)),
    })
}

/// The JIDs of a `jid-multi` field, one per value (a client may also put several on
/// one line).
fn jids(req: &CommandRequest, var: &str) -> Vec<String> {
    req.values(var).iter().flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>()).collect()
}

/// What happened to each account of a multi-account command, as notes.
fn report(outcomes: Vec<(String, Result<(), String>)>, verb: &str) -> CommandStep {
    let notes = outcomes
        .into_iter()
        .map(|(jid, outcome)| match outcome {
            Ok(()) => Note::info(format!("{verb} {jid}.")),
            Err(message) => Note::error(message),
        })
        .collect();
    CommandStep::Completed { notes, result: None }
}

/// Runs `action` on every account of the `accountjids` field.
async fn for_each_account<F, Fut>(req: &CommandRequest, verb: &str, action: F) -> Result<CommandStep, StanzaError>
where
    F: Fn(BareJid) -> Fut,
    Fut: std::future::Future<Output = Result<(), AccountError>>,
{
    let listed = jids(req, "accountjids");
    if listed.is_empty() {
        return Err(bad_request());
    }
    let mut outcomes = Vec::new();
    for text in listed {
        let outcome = match account_of(req, &text) {
            Ok(jid) => action(jid).await.map_err(|e| describe(&e)),
            Err(message) => Err(message),
        };
        outcomes.push((text, outcome));
    }
    Ok(report(outcomes, verb))
}

/// §4.2 Delete User.
pub async fn delete(ctx: Context, req: CommandRequest) -> Result<CommandStep, StanzaError> {
    if asking(&req) {
        return Ok(many_accounts_form("Deleting a User"));
    }
    for_each_account(&req, "Deleted", |jid| ctx.accounts().delete(&jid)).await
}

/// §4.3 Disable User.
pub async fn disable(ctx: Context, req: CommandRequest) -> Result<CommandStep, StanzaError> {
    if asking(&req) {
        return Ok(many_accounts_form("Disabling a User"));
    }
    for_each_account(&req, "Disabled", |jid| ctx.accounts().set_disabled(&jid, true)).await
}

/// §4.4 Re-Enable User.
pub async fn reenable(ctx: Context, req: CommandRequest) -> Result<CommandStep, StanzaError> {
    if asking(&req) {
        return Ok(many_accounts_form("Re-Enabling a User"));
    }
    for_each_account(&req, "Re-enabled", |jid| ctx.accounts().set_disabled(&jid, false)).await
}

/// §4.7 Change User Password.
pub async fn change_password(ctx: Context, req: CommandRequest) -> Result<CommandStep, StanzaError> {
    if asking(&req) {
        return Ok(one_account_form(
            "Changing a User Password",
            vec![password("The password for this account", "password")],
        ));
    }
    let Some(text) = req.value("accountjid") else { return Err(bad_request()) };
    let jid = match account_of(&req, &text) {
        Ok(jid) => jid,
        Err(message) => return Ok(failed(message)),
    };
    let password = req.values("password").into_iter().next().unwrap_or_default();
    Ok(match ctx.accounts().set_password(&jid, &password).await {
        Ok(()) => CommandStep::done(format!("Changed the password of {jid}.")),
        Err(err) => failed(describe(&err)),
    })
}

fn subscription_name(subscription: Subscription) -> &'static str {
    match subscription {
        Subscription::None => "none",
        Subscription::To => "to",
        Subscription::From => "from",
        Subscription::Both => "both",
    }
}

/// §4.8 Get User Roster: the contacts as `jid-multi` values, and each contact with its
/// subscription and groups as a line of a `text-multi` field.
pub async fn roster(ctx: Context, req: CommandRequest) -> Result<CommandStep, StanzaError> {
    if asking(&req) {
        return Ok(one_account_form("Getting a User's Roster", Vec::new()));
    }
    let Some(text) = req.value("accountjid") else { return Err(bad_request()) };
    let jid = match account_of(&req, &text) {
        Ok(jid) => jid,
        Err(message) => return Ok(failed(message)),
    };
    if ctx.accounts().get(&jid).await.map_err(internal)?.is_none() {
        return Ok(failed(format!("{jid} does not exist")));
    }
    let Some(rosters) = ctx.service::<dyn RosterService>() else {
        return Ok(failed("The roster module is not enabled."));
    };
    let contacts = rosters.contacts(&ctx, &jid).await.map_err(internal)?;
    let jids = contacts.iter().map(|(contact, _)| contact.to_string()).collect();
    let lines = contacts
        .iter()
        .map(|(contact, c)| {
            let groups = if c.groups.is_empty() { String::new() } else { format!(" [{}]", c.groups.join(", ")) };
            format!("{contact} subscription={}{groups}", subscription_name(c.subscription))
        })
        .collect();
    let result = form::result(vec![
        field("accountjid", FieldType::JidSingle, "The Jabber ID", vec![jid.to_string()]),
        field("contactjids", FieldType::JidMulti, "Contacts", jids),
        field("contacts", FieldType::TextMulti, "Contacts with subscription and groups", lines),
    ]);
    Ok(CommandStep::Completed { notes: Vec::new(), result: Some(result) })
}

/// §4.14 End User Session: a full JID ends that session, a bare JID all of them.
pub async fn end_sessions(ctx: Context, req: CommandRequest) -> Result<CommandStep, StanzaError> {
    if asking(&req) {
        return Ok(many_accounts_form("Ending a User Session"));
    }
    let listed = jids(&req, "accountjids");
    if listed.is_empty() {
        return Err(bad_request());
    }
    let mut outcomes = Vec::new();
    for text in listed {
        let outcome = match starling_api::parse_jid(&text) {
            Ok(jid) if jid.node().is_some() && jid.domain().as_str() == req.host => match ctx.sessions().end(&jid) {
                0 => Err(format!("{text} has no session")),
                _ => Ok(()),
            },
            _ => Err(format!("{text} is not an account of {}", req.host)),
        };
        outcomes.push((text, outcome));
    }
    Ok(report(outcomes, "Ended the session(s) of"))
}

/// §4.17 Get Number of Registered Users.
pub async fn registered_num(ctx: Context, req: CommandRequest) -> Result<CommandStep, StanzaError> {
    let count = ctx.accounts().count(&req.host).await.map_err(internal)?;
    let result = form::result(vec![field(
        "registeredusersnum",
        FieldType::TextSingle,
        "The number of registered users",
        vec![count.to_string()],
    )]);
    Ok(CommandStep::Completed { notes: Vec::new(), result: Some(result) })
}

/// §4.18 Get List of Registered Users: how many to list, then the list.
pub async fn registered_list(ctx: Context, req: CommandRequest) -> Result<CommandStep, StanzaError> {
    if asking(&req) {
        let form = form::form(
            "Getting List of Registered Users",
            vec![choice("max_items", "Maximum number of items to show", &MAX_ITEMS, "25")],
        );
        return Ok(CommandStep::Form { form, last: true });
    }
    let limit = match req.value("max_items").as_deref() {
        None | Some("none") => usize::MAX,
        Some(n) => n.parse().map_err(|_| bad_request())?,
    };
    let accounts: Vec<AccountEntry> = ctx.accounts().list(&req.host).await.map_err(internal)?;
    let jids = accounts.into_iter().take(limit).map(|a| format!("{}@{}", a.username, req.host)).collect();
    let result = form::result(vec![field("registereduserjids", FieldType::JidMulti, "The list of all users", jids)]);
    Ok(CommandStep::Completed { notes: Vec::new(), result: Some(result) })
}

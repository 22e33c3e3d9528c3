//! XEP-0050: Ad-Hoc Commands — lists the commands other modules registered
//! (`Registrar::adhoc_command`) to whoever may run them, and runs them as multi-step
//! sessions with data forms (XEP-0004).
//!
//! Discovery (§2): `disco#items` on the commands node of a host lists the commands the
//! requester may run (administrators see the XEP-0133 ones); `disco#info` on a command
//! node answers `automation/command-node`. Execution (§3.4): the first `execute` opens
//! a session; `next`/`complete` carry the submitted form to the handler; `prev` shows
//! the previous form again and `cancel` ends the session, both without the handler. A
//! command the requester may not run is `forbidden`, whether they knew its node or not.

mod payload;
mod sessions;

use std::sync::Arc;

use starling_api::adhoc::{Access, Action, AdhocCommand, CommandRequest, CommandStep, NS_COMMANDS};
use starling_api::disco::DiscoQuery;
use starling_api::minidom::Element;
use starling_api::xmpp_parsers::disco::{DiscoInfoResult, Identity, Item};
use starling_api::xmpp_parsers::ns;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use starling_api::{
    Context, IqRequest, IqResult, ModuleSpec, Registrar, Scope, Spec, SpecSupport, Support, stanza_error,
};

use payload::{CommandPayload, CommandReply, Status};
use sessions::{Lookup, Session, SessionStore};

/// The fuzz target `payloads` (docs/fuzzing.md): the `<command/>` parser on any
/// element. Built only by cargo-fuzz, which sets `cfg(fuzzing)`.
#[cfg(fuzzing)]
pub fn fuzz_payload(element: &Element) {
    let _ = CommandPayload::try_from(element.clone());
}

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "adhoc",
    summary: "XEP-0050 Ad-Hoc Commands: runs the commands modules offer, as multi-step sessions",
    specs: &[SpecSupport {
        spec: Spec::Xep(50),
        version: "1.3.0",
        status: Support::Complete,
        features: &[NS_COMMANDS],
    }],
    migrations: None,
    forget_user: None,
    start,
};

fn start(reg: &mut Registrar<'_>) -> Result<(), starling_api::ModuleError> {
    reg.disco_feature(Scope::Server, NS_COMMANDS);
    reg.disco_items(Scope::Server, list_commands);
    reg.disco_node_info(Scope::Server, command_info);
    let sessions = Arc::new(SessionStore::default());
    reg.iq_set::<CommandPayload, _, _>(Scope::Server, move |ctx, req| run(ctx, req, sessions.clone()));
    Ok(())
}

/// Whether `from` may see and run `command` on `host`.
fn may_run(ctx: &Context, command: &AdhocCommand, module: usize, from: &starling_api::jid::Jid, host: &str) -> bool {
    let module_runs = ctx.registry().modules().get(module).is_some_and(|m| ctx.module_enabled(m.name, host));
    module_runs
        && match command.access {
            Access::Admin => ctx.is_admin(from),
            Access::LocalUser => from.domain().as_str() == host && from.node().is_some(),
        }
}

fn visible(ctx: &Context, from: &starling_api::jid::Jid, host: &str) -> Vec<AdhocCommand> {
    ctx.registry()
        .adhoc_commands()
        .filter(|(command, module)| may_run(ctx, command, *module, from, host))
        .map(|(command, _)| command.clone())
        .collect()
}

async fn list_commands(ctx: Context, query: DiscoQuery) -> Option<Vec<Item>> {
    if query.node.as_deref() != Some(NS_COMMANDS) {
        return None;
    }
    let host = query.to.domain().to_string();
    let items = visible(&ctx, &query.from, &host)
        .into_iter()
        .map(|c| Item { jid: query.to.clone(), node: Some(c.node.to_owned()), name: Some(c.name.to_owned()) })
        .collect();
    Some(items)
}

async fn command_info(ctx: Context, query: DiscoQuery) -> Option<DiscoInfoResult> {
    let node = query.node.clone()?;
    let host = query.to.domain().to_string();
    let (category_type, features) = if node == NS_COMMANDS {
        ("command-list", [ns::DISCO_INFO.to_owned(), ns::DISCO_ITEMS.to_owned()].into())
    } else {
        if !visible(&ctx, &query.from, &host).iter().any(|c| c.node == node) {
            return None;
        }
        ("command-node", [NS_COMMANDS.to_owned(), ns::DATA_FORMS.to_owned()].into())
    };
    let identity = Identity::new_anonymous::<_, _, String, String>("automation", category_type);
    Some(DiscoInfoResult { node: Some(node), identities: vec![identity], features, extensions: Vec::new() })
}

/// XEP-0050 §4.6: a `bad-request`/`not-allowed` with the command-specific condition.
fn command_error(type_: ErrorType, condition: DefinedCondition, specific: &str) -> StanzaError {
    let mut error = stanza_error(type_, condition);
    error.other = Some(Element::bare(specific, NS_COMMANDS));
    error
}

async fn run(ctx: Context, req: IqRequest<CommandPayload>, sessions: Arc<SessionStore>) -> IqResult {
    let host = req.to.domain().to_string();
    let CommandPayload { node, session_id, action, form } = req.payload;
    let Some((command, module)) =
        ctx.registry().adhoc_commands().find(|(c, _)| c.node == node).map(|(c, m)| (c.clone(), m))
    else {
        return Err(stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound));
    };
    if !may_run(&ctx, &command, module, &req.from, &host) {
        return Err(stanza_error(ErrorType::Auth, DefinedCondition::Forbidden));
    }
    let action = match action {
        None => Action::Execute,
        Some(Ok(action)) => action,
        Some(Err(_)) => return Err(command_error(ErrorType::Modify, DefinedCondition::BadRequest, "malformed-action")),
    };
    let mut session = match &session_id {
        None if matches!(action, Action::Execute | Action::Complete) => Session::new(&node, &req.from),
        None => return Err(command_error(ErrorType::Modify, DefinedCondition::BadRequest, "bad-action")),
        Some(id) => match sessions.take(id, &req.from, &node) {
            Ok(session) => session,
            Err(Lookup::Unknown) => {
                return Err(command_error(ErrorType::Modify, DefinedCondition::BadRequest, "bad-sessionid"));
            }
            Err(Lookup::Expired) => {
                return Err(command_error(ErrorType::Cancel, DefinedCondition::NotAllowed, "session-expired"));
            }
        },
    };
    let offered_last = session.current.as_ref().map(|(_, last)| *last);
    match action {
        Action::Cancel => {
            let reply = CommandReply {
                node: &node,
                session_id: session_id.as_deref().unwrap_or_default(),
                status: Status::Canceled,
                actions: None,
                notes: &[],
                form: None,
            };
            return Ok(Some(reply.into()));
        }
        Action::Prev => {
            let Some(previous) = session.history.pop() else {
                keep(&sessions, session_id, session)?;
                return Err(command_error(ErrorType::Modify, DefinedCondition::BadRequest, "bad-action"));
            };
            session.stage = session.stage.saturating_sub(1);
            session.current = Some(previous.clone());
            let has_prev = !session.history.is_empty();
            let id = keep(&sessions, session_id, session)?;
            return Ok(Some(executing(&node, &id, previous, has_prev)));
        }
        // Only the action the last form offered (besides the default `execute`) is allowed.
        Action::Next if offered_last == Some(true) => {
            keep(&sessions, session_id, session)?;
            return Err(command_error(ErrorType::Modify, DefinedCondition::BadRequest, "bad-action"));
        }
        Action::Complete if offered_last == Some(false) => {
            keep(&sessions, session_id, session)?;
            return Err(command_error(ErrorType::Modify, DefinedCondition::BadRequest, "bad-action"));
        }
        Action::Execute | Action::Next | Action::Complete => {}
    }
    let request = CommandRequest {
        from: req.from.clone(),
        host,
        lang: req.lang.clone(),
        action,
        stage: session.stage,
        form: form.clone(),
        earlier: session.earlier.clone(),
    };
    let step = match (command.handler)(ctx, request).await {
        Ok(step) => step,
        Err(error) => {
            // The client may correct its input and try again.
            if session.stage > 0 {
                keep(&sessions, session_id, session)?;
            }
            return Err(error);
        }
    };
    match step {
        CommandStep::Form { form: next, last } => {
            for field in form.iter().flat_map(|f| f.fields.iter()) {
                if let Some(var) = &field.var {
                    session.earlier.insert(var.clone(), field.values.clone());
                }
            }
            if let Some(current) = session.current.take() {
                session.history.push(current);
            }
            session.current = Some((next.clone(), last));
            session.stage += 1;
            let has_prev = !session.history.is_empty();
            let id = keep(&sessions, session_id, session)?;
            Ok(Some(executing(&node, &id, (next, last), has_prev)))
        }
        CommandStep::Completed { notes, result } => {
            let id = session_id.unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
            let reply = CommandReply {
                node: &node,
                session_id: &id,
                status: Status::Completed,
                actions: None,
                notes: &notes,
                form: result,
            };
            Ok(Some(reply.into()))
        }
    }
}

/// Puts the session back (under a new id when it is new).
fn keep(sessions: &SessionStore, id: Option<String>, session: Session) -> Result<String, StanzaError> {
    sessions.put(id, session).map_err(|_| stanza_error(ErrorType::Wait, DefinedCondition::ResourceConstraint))
}

fn executing(
    node: &str,
    id: &str,
    (form, last): (starling_api::xmpp_parsers::data_forms::DataForm, bool),
    prev: bool,
) -> Element {
    let reply = CommandReply {
        node,
        session_id: id,
        status: Status::Executing,
        actions: Some((prev, last)),
        notes: &[],
        form: Some(form),
    };
    reply.into()
}

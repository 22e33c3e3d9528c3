//! The `<command/>` element of XEP-0050 §3.4 – §3.5, both directions.

use starling_api::IqPayload;
use starling_api::adhoc::{Action, NS_COMMANDS, Note, NoteKind};
use starling_api::minidom::Element;
use starling_api::minidom::rxml::xml_ncname;
use starling_api::xmpp_parsers::data_forms::DataForm;
use starling_api::xmpp_parsers::ns;

/// A client's request: `<command node sessionid? action?>` with an optional form.
#[derive(Debug, Clone)]
pub struct CommandPayload {
    /// The command node.
    pub node: String,
    /// The session, after the first step.
    pub session_id: Option<String>,
    /// The action; `None` when the attribute is absent (it means `execute`).
    pub action: Option<Result<Action, String>>,
    /// A submitted form (`<x xmlns='jabber:x:data' type='submit'/>`), if any.
    pub form: Option<DataForm>,
}

/// The request element is not a valid `<command/>`.
#[derive(Debug)]
pub struct NotACommand;

impl TryFrom<Element> for CommandPayload {
    type Error = NotACommand;

    fn try_from(element: Element) -> Result<Self, NotACommand> {
        if !element.is("command", NS_COMMANDS) {
            return Err(NotACommand);
        }
        let node = element.attr("node").filter(|n| !n.is_empty()).ok_or(NotACommand)?.to_owned();
        let action = element.attr("action").map(|a| Action::parse(a).ok_or_else(|| a.to_owned()));
        let form = element
            .get_child("x", ns::DATA_FORMS)
            .map(|x| DataForm::try_from(x.clone()).map_err(|_| NotACommand))
            .transpose()?;
        Ok(CommandPayload { node, session_id: element.attr("sessionid").map(str::to_owned), action, form })
    }
}

impl IqPayload for CommandPayload {
    const NS: &'static str = NS_COMMANDS;
    const NAME: &'static str = "command";
}

/// `status` of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// More input is expected.
    Executing,
    /// Done.
    Completed,
    /// Cancelled by the client.
    Canceled,
}

/// The reply `<command/>`.
pub struct CommandReply<'a> {
    /// The command node.
    pub node: &'a str,
    /// The session.
    pub session_id: &'a str,
    /// The status.
    pub status: Status,
    /// Actions offered (while executing): whether `prev` is possible, and whether this
    /// is the last stage (`complete`) or not (`next`).
    pub actions: Option<(bool, bool)>,
    /// Notes.
    pub notes: &'a [Note],
    /// A form (`form` while executing, `result` when completed).
    pub form: Option<DataForm>,
}

impl From<CommandReply<'_>> for Element {
    fn from(reply: CommandReply<'_>) -> Element {
        let status = match reply.status {
            Status::Executing => "executing",
            Status::Completed => "completed",
            Status::Canceled => "canceled",
        };
        let mut command = Element::builder("command", NS_COMMANDS)
            .attr(xml_ncname!("node").into(), reply.node)
            .attr(xml_ncname!("sessionid").into(), reply.session_id)
            .attr(xml_ncname!("status").into(), status);
        if let Some((prev, last)) = reply.actions {
            let default = if last { Action::Complete } else { Action::Next };
            let mut actions =
                Element::builder("actions", NS_COMMANDS).attr(xml_ncname!("execute").into(), default.as_str());
            if prev {
                actions = actions.append(Element::bare("prev", NS_COMMANDS));
            }
            actions = actions.append(Element::bare(default.as_str(), NS_COMMANDS));
            command = command.append(actions.build());
        }
        for note in reply.notes {
            let kind = match note.kind {
                NoteKind::Info => "info",
                NoteKind::Warn => "warn",
                NoteKind::Error => "error",
            };
            let element = Element::builder("note", NS_COMMANDS).attr(xml_ncname!("type").into(), kind);
            command = command.append(element.append(note.text.as_str()));
        }
        if let Some(form) = reply.form {
            command = command.append(Element::from(form));
        }
        command.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep_0050_example_execute_request_parses() {
        // XEP-0050 Example 4 (without the IQ wrapper).
        let element: Element =
            "<command xmlns='http://jabber.org/protocol/commands' node='list' action='execute'/>".parse().expect("xml");
        let payload = CommandPayload::try_from(element).expect("a command");
        assert_eq!(payload.node, "list");
        assert!(matches!(payload.action, Some(Ok(Action::Execute))));
        assert!(payload.session_id.is_none() && payload.form.is_none());
    }

    #[test]
    fn unknown_actions_are_kept_for_a_malformed_action_error() {
        let element: Element =
            "<command xmlns='http://jabber.org/protocol/commands' node='x' action='jump'/>".parse().expect("xml");
        let payload = CommandPayload::try_from(element).expect("a command");
        assert!(matches!(payload.action, Some(Err(a)) if a == "jump"));
    }

    #[test]
    fn a_command_without_node_is_refused() {
        let element: Element = "<command xmlns='http://jabber.org/protocol/commands'/>".parse().expect("xml");
        assert!(CommandPayload::try_from(element).is_err());
    }

    #[test]
    fn executing_reply_offers_prev_and_the_default_action() {
        let reply = CommandReply {
            node: "config",
            session_id: "s1",
            status: Status::Executing,
            actions: Some((true, false)),
            notes: &[],
            form: None,
        };
        let element = Element::from(reply);
        let actions = element.get_child("actions", NS_COMMANDS).expect("actions");
        assert_eq!(actions.attr("execute"), Some("next"));
        assert!(actions.has_child("prev", NS_COMMANDS) && actions.has_child("next", NS_COMMANDS));
        assert!(!actions.has_child("complete", NS_COMMANDS));
        assert_eq!(element.attr("status"), Some("executing"));
    }
}

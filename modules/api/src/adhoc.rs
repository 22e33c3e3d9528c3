//! XEP-0050 Ad-Hoc Commands as modules declare them.
//!
//! A module registers a command (node, name, who may run it, a handler) with
//! [`crate::Registrar::adhoc_command`]; the `adhoc` module speaks the protocol: it lists
//! the commands a requester may run (`disco#items` on the commands node), keeps the
//! multi-step sessions, handles `prev` and `cancel` itself, and calls the handler for
//! `execute`, `next` and `complete` with the form the client submitted. A handler only
//! decides what comes next: another form, or the end with notes and a result form.

use std::collections::BTreeMap;
use std::sync::Arc;

use jid::Jid;
use xmpp_parsers::data_forms::DataForm;
use xmpp_parsers::stanza_error::StanzaError;

use crate::{BoxFuture, Context};

/// `http://jabber.org/protocol/commands`
pub const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";

/// Who may see and run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Administrators listed in `[server] admins` (XEP-0133).
    Admin,
    /// Any account of the host the command is addressed to.
    LocalUser,
}

/// The actions of XEP-0050 §3.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Start the command, or proceed with the default action.
    Execute,
    /// The next stage.
    Next,
    /// The previous stage (handled by the framework).
    Prev,
    /// Finish with what was submitted.
    Complete,
    /// Abandon the session (handled by the framework).
    Cancel,
}

impl Action {
    /// The attribute value / element name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Execute => "execute",
            Action::Next => "next",
            Action::Prev => "prev",
            Action::Complete => "complete",
            Action::Cancel => "cancel",
        }
    }

    /// Parses an `action` attribute.
    pub fn parse(value: &str) -> Option<Action> {
        Some(match value {
            "execute" => Action::Execute,
            "next" => Action::Next,
            "prev" => Action::Prev,
            "complete" => Action::Complete,
            "cancel" => Action::Cancel,
            _ => return None,
        })
    }
}

/// One step of a command as its handler sees it.
#[derive(Debug, Clone)]
pub struct CommandRequest {
    /// The requester (a full JID for local clients).
    pub from: Jid,
    /// The virtual host the command was addressed to.
    pub host: String,
    /// `xml:lang` of the request.
    pub lang: Option<String>,
    /// What the client asked for: `Execute` (the default), `Next` or `Complete`.
    pub action: Action,
    /// How many forms the handler has returned in this session so far (0 on the first
    /// request).
    pub stage: u32,
    /// The form the client submitted with this request, if any.
    pub form: Option<DataForm>,
    /// Values submitted in earlier stages of this session, by field `var`.
    pub earlier: BTreeMap<String, Vec<String>>,
}

impl CommandRequest {
    /// The values of field `var`, from this request's form or an earlier stage.
    pub fn values(&self, var: &str) -> Vec<String> {
        let submitted = self.form.iter().flat_map(|f| &f.fields).find(|f| f.var.as_deref() == Some(var));
        match submitted {
            Some(field) => field.values.clone(),
            None => self.earlier.get(var).cloned().unwrap_or_default(),
        }
    }

    /// The first value of field `var`, trimmed; `None` when missing or empty.
    pub fn value(&self, var: &str) -> Option<String> {
        self.values(var).into_iter().next().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }
}

/// How serious a note is (XEP-0050 §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    /// Informational.
    Info,
    /// A warning.
    Warn,
    /// An error (the command did not do what was asked).
    Error,
}

/// A `<note/>` for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Its kind.
    pub kind: NoteKind,
    /// The text.
    pub text: String,
}

impl Note {
    /// An informational note.
    pub fn info(text: impl Into<String>) -> Note {
        Note { kind: NoteKind::Info, text: text.into() }
    }

    /// An error note.
    pub fn error(text: impl Into<String>) -> Note {
        Note { kind: NoteKind::Error, text: text.into() }
    }
}

/// What a handler answers.
#[derive(Debug, Clone)]
pub enum CommandStep {
    /// Ask for input (`status='executing'`): `form` is of type `form`; `complete` tells
    /// whether the client may finish here (else only `next` is offered).
    Form {
        /// The form to fill in.
        form: DataForm,
        /// Whether this is the last stage (`complete` is the default action).
        last: bool,
    },
    /// Done (`status='completed'`), with notes and an optional `result` form.
    Completed {
        /// Notes for the user.
        notes: Vec<Note>,
        /// A result form, for commands that return data.
        result: Option<DataForm>,
    },
}

impl CommandStep {
    /// Completed with one informational note.
    pub fn done(text: impl Into<String>) -> CommandStep {
        CommandStep::Completed { notes: vec![Note::info(text)], result: None }
    }
}

/// A command handler.
pub type CommandFn =
    Arc<dyn Fn(Context, CommandRequest) -> BoxFuture<'static, Result<CommandStep, StanzaError>> + Send + Sync>;

/// A registered command.
#[derive(Clone)]
pub struct AdhocCommand {
    /// The command node, e.g. `http://jabber.org/protocol/admin#add-user`.
    pub node: &'static str,
    /// Its human-readable name.
    pub name: &'static str,
    /// Who may see and run it.
    pub access: Access,
    /// The handler.
    pub handler: CommandFn,
}

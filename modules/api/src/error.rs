//! Errors a module can produce: stanza errors (RFC 6120 §8.3) for the entity that sent
//! a request, and [`ModuleError`] for failures while the module starts.

use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

/// A stanza error with a condition and no text, the common case for handlers.
///
/// `stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound)`; the router turns
/// an `Err` from a handler into an `<iq type='error'/>` with the request's `id`.
pub fn stanza_error(type_: ErrorType, condition: DefinedCondition) -> StanzaError {
    StanzaError { type_, by: None, defined_condition: condition, texts: Default::default(), other: None }
}

/// A failure while a module starts (bad configuration, missing dependency).
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The module's `[modules.<name>]` table does not match its configuration type.
    #[error("[modules.{module}]: {message}")]
    Config {
        /// The module whose table is wrong.
        module: &'static str,
        /// What is wrong, naming the key.
        message: String,
    },
    /// Anything else that stops the module from starting.
    #[error("module {module}: {message}")]
    Start {
        /// The module that failed.
        module: &'static str,
        /// Why it failed.
        message: String,
    },
}

impl From<crate::storage::StorageError> for StanzaError {
    fn from(err: crate::storage::StorageError) -> Self {
        tracing::error!(error = %err, "storage failure while handling a stanza");
        stanza_error(ErrorType::Wait, DefinedCondition::InternalServerError)
    }
}

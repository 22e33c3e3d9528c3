//! Accounts as modules manage them: creation, deletion, passwords, disabling, listing
//! (in-band registration of XEP-0077, the account commands of XEP-0133).
//!
//! The core implements [`AccountService`] over its own tables and hands it to modules
//! through [`crate::Context::accounts`]. Passwords never reach storage: the core keeps
//! SCRAM keys only (RFC 5802 §3). Deleting an account runs every enabled module's
//! `forget_user` in the transaction that deletes it, the same path `starling user del`
//! takes; deleting or disabling an account ends its live sessions with `not-authorized`.

use jid::BareJid;

use crate::{BoxFuture, StorageError};

/// Errors managing accounts.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Not a valid bare JID.
    #[error("invalid JID {0:?}: {1}")]
    InvalidJid(String, String),
    /// The JID's domain is not served here.
    #[error("{0} is not a host of this server")]
    UnknownHost(String),
    /// The account already exists.
    #[error("{0} already exists")]
    Exists(String),
    /// The account does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The password cannot be used (empty, or prohibited characters for SASLprep).
    #[error("unusable password: {0}")]
    BadPassword(String),
    /// Database failure.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// An account as listings show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEntry {
    /// The normalised localpart.
    pub username: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Disabled by an administrator: cannot log in.
    pub disabled: bool,
}

/// Account management, provided by the core.
pub trait AccountService: Send + Sync {
    /// Creates `jid` (a bare JID of one of our hosts) with SCRAM keys for `password`.
    fn create(&self, jid: &BareJid, password: &str) -> BoxFuture<'static, Result<(), AccountError>>;

    /// Deletes `jid` and every row any enabled module keeps for it, then ends its
    /// sessions (after what was already queued for them).
    fn delete(&self, jid: &BareJid) -> BoxFuture<'static, Result<(), AccountError>>;

    /// Replaces `jid`'s credentials with SCRAM keys for `password`.
    fn set_password(&self, jid: &BareJid, password: &str) -> BoxFuture<'static, Result<(), AccountError>>;

    /// Disables (`true`) or re-enables `jid`; disabling ends its live sessions.
    fn set_disabled(&self, jid: &BareJid, disabled: bool) -> BoxFuture<'static, Result<(), AccountError>>;

    /// `jid`'s account, if it exists.
    fn get(&self, jid: &BareJid) -> BoxFuture<'static, Result<Option<AccountEntry>, StorageError>>;

    /// The accounts of `host`, ordered by username.
    fn list(&self, host: &str) -> BoxFuture<'static, Result<Vec<AccountEntry>, StorageError>>;

    /// How many accounts `host` has.
    fn count(&self, host: &str) -> BoxFuture<'static, Result<u64, StorageError>>;
}

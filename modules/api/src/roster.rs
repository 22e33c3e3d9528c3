//! The roster as other modules see it (RFC 6121 §2, §3): provided by the `roster`
//! module, used where access depends on the relationship with a contact (archive
//! preferences of XEP-0313, PEP access models of XEP-0163).

use jid::BareJid;

use crate::{BoxFuture, Context, StorageError};

/// The presence subscription between an account and a contact (RFC 6121 §2.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// Neither receives the other's presence.
    None,
    /// The account receives the contact's presence.
    To,
    /// The contact receives the account's presence.
    From,
    /// Both.
    Both,
}

impl Subscription {
    /// Whether the contact receives the account's presence (`from` or `both`).
    pub fn contact_sees_account(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }
}

/// A contact in an account's roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterContact {
    /// The subscription state.
    pub subscription: Subscription,
    /// The roster groups the account put the contact in.
    pub groups: Vec<String>,
}

/// Read access to rosters.
pub trait RosterService: Send + Sync {
    /// `contact` as it stands in `account`'s roster; `None` when it is not there.
    fn contact(
        &self,
        ctx: &Context,
        account: &BareJid,
        contact: &BareJid,
    ) -> BoxFuture<'static, Result<Option<RosterContact>, StorageError>>;

    /// Every contact in `account`'s roster (XEP-0133 get-user-roster), by JID.
    fn contacts(
        &self,
        ctx: &Context,
        account: &BareJid,
    ) -> BoxFuture<'static, Result<Vec<(BareJid, RosterContact)>, StorageError>>;

    /// Makes `a` and `b` (both local accounts) subscribed to each other's presence
    /// (`both` on each side, XEP-0379's pre-authenticated subscription), adding each to
    /// the other's roster if needed and pushing the changed items to interested
    /// resources.
    fn subscribe_mutually(
        &self,
        ctx: &Context,
        a: &BareJid,
        b: &BareJid,
    ) -> BoxFuture<'static, Result<(), StorageError>>;
}

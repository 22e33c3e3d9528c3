//! Personal eventing (XEP-0163) as other modules see it: provided by the `pep`
//! module, used by modules that keep data in an account's PEP nodes on its behalf
//! (XEP-0411 bookmarks conversion for private XML storage, XEP-0398 vCard ↔ avatar).

use jid::BareJid;
use minidom::Element;
use xmpp_parsers::stanza_error::StanzaError;

use crate::{BoxFuture, Context};

/// One item of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct PepItem {
    /// The item id.
    pub id: String,
    /// Its payload.
    pub payload: Element,
}

/// How a node is created when a service publishes to a node that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeDefaults {
    /// `pubsub#access_model`: `open`, `presence`, `roster` or `whitelist`.
    pub access_model: &'static str,
    /// `pubsub#max_items`; `None` for the server's maximum (`max`).
    pub max_items: Option<u32>,
}

/// Reads and writes an account's PEP nodes as the account itself would.
pub trait PepService: Send + Sync {
    /// The items of `owner`'s `node`, oldest first; empty when the node does not exist.
    fn items(
        &self,
        ctx: &Context,
        owner: &BareJid,
        node: &str,
    ) -> BoxFuture<'static, Result<Vec<PepItem>, StanzaError>>;

    /// Publishes `item` to `owner`'s `node` (created with `defaults` if missing) and
    /// notifies as a client's publish would.
    fn publish(
        &self,
        ctx: &Context,
        owner: &BareJid,
        node: &str,
        item: PepItem,
        defaults: NodeDefaults,
    ) -> BoxFuture<'static, Result<(), StanzaError>>;

    /// Retracts item `id` from `owner`'s `node` (nothing when absent), notifying.
    fn retract(
        &self,
        ctx: &Context,
        owner: &BareJid,
        node: &str,
        id: &str,
    ) -> BoxFuture<'static, Result<(), StanzaError>>;
}

/// An item was published to a local account's node (by a client or a service).
/// Fired by the pep module after it was stored; default: nothing.
#[derive(Debug)]
pub struct PepPublished {
    /// The account.
    pub owner: BareJid,
    /// The node.
    pub node: String,
    /// The item.
    pub item: PepItem,
}

impl crate::Event for PepPublished {
    fn host(&self) -> &str {
        self.owner.domain().as_str()
    }
}

//! Service discovery contributions (XEP-0030) beyond static features and identities:
//! items an entity lists (a PEP service's nodes, the ad-hoc commands a requester may
//! run) and the info of nodes. The disco module asks every provider registered for the
//! queried scope; a provider answers `None` for nodes that are not its own.

use std::sync::Arc;

use jid::Jid;
use xmpp_parsers::disco::{DiscoInfoResult, Item};

use crate::{BoxFuture, Context};

/// A disco query as providers see it.
#[derive(Debug, Clone)]
pub struct DiscoQuery {
    /// The requester.
    pub from: Jid,
    /// The entity queried (our host, an account, a component).
    pub to: Jid,
    /// The node queried, if any.
    pub node: Option<String>,
}

/// Lists items: `Some(items)` when the provider serves `query.node` (possibly an empty
/// list), `None` when that node is not its own. For queries without a node every
/// provider's items are listed together.
pub type DiscoItemsFn = Arc<dyn Fn(Context, DiscoQuery) -> BoxFuture<'static, Option<Vec<Item>>> + Send + Sync>;

/// Answers disco#info for a node (`query.node` is always set): `None` when it is not
/// the provider's.
pub type DiscoNodeInfoFn =
    Arc<dyn Fn(Context, DiscoQuery) -> BoxFuture<'static, Option<DiscoInfoResult>> + Send + Sync>;

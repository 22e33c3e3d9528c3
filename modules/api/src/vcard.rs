//! vcard-temp (XEP-0054) as other modules see it: provided by the `vcard` module,
//! used by modules that keep an account's vCard in step with other data on its behalf
//! (XEP-0398 avatar conversion).

use jid::BareJid;
use minidom::Element;
use xmpp_parsers::stanza_error::StanzaError;

use crate::{BoxFuture, Context};

/// Reads and writes an account's vCard as the account itself would.
pub trait VCardService: Send + Sync {
    /// `owner`'s stored vCard, if any.
    fn get(&self, ctx: &Context, owner: &BareJid) -> BoxFuture<'static, Result<Option<Element>, StanzaError>>;

    /// Stores `vcard` as `owner`'s and fires [`VCardStored`], as a client's set would.
    fn set(&self, ctx: &Context, owner: &BareJid, vcard: Element) -> BoxFuture<'static, Result<(), StanzaError>>;
}

/// A local account's vCard was stored (by its owner or a service). Fired by the vcard
/// module after the write; default: nothing.
#[derive(Debug)]
pub struct VCardStored {
    /// The account.
    pub owner: BareJid,
    /// The vCard as stored.
    pub vcard: Element,
}

impl crate::Event for VCardStored {
    fn host(&self) -> &str {
        self.owner.domain().as_str()
    }
}

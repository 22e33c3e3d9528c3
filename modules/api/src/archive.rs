//! The message archive as other modules see it (XEP-0313 Message Archive Management,
//! XEP-0359 stanza ids): provided by the `mam` module, used by modules that keep an
//! archive of their own entities (a MUC room archives its messages under the room's
//! JID and answers MAM queries addressed to the room).
//!
//! The caller decides who may read an archive; the service only stores and answers.

use jid::{BareJid, Jid};
use minidom::Element;
use xmpp_parsers::stanza_error::StanzaError;

use crate::{BoxFuture, Context, Stanza};

/// `urn:xmpp:mam:2`
pub const NS_MAM: &str = "urn:xmpp:mam:2";
/// `urn:xmpp:sid:0` (XEP-0359)
pub const NS_STANZA_ID: &str = "urn:xmpp:sid:0";

/// A parsed MAM query (XEP-0313 §4: the data form fields, XEP-0059 paging and
/// `flip-page`). Every filter is optional; the page size is capped by the service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// `queryid`, echoed in every `<result/>`.
    pub query_id: Option<String>,
    /// `with`: messages exchanged with this JID (a bare JID matches every resource).
    pub with: Option<Jid>,
    /// `start`: not before this time (µs since the epoch).
    pub start_us: Option<i64>,
    /// `end`: not after this time (µs since the epoch).
    pub end_us: Option<i64>,
    /// `after-id` (or RSM `<after/>`): only messages after this stanza id.
    pub after_id: Option<String>,
    /// `before-id` (or RSM `<before/>` with an id): only messages before this id.
    pub before_id: Option<String>,
    /// `ids`: exactly these stanza ids (XEP-0313 §4.1.3, `#extended`).
    pub ids: Vec<String>,
    /// `{urn:xmpp:fulltext:0}fulltext` (XEP-0431): words that must all occur.
    pub fulltext: Option<String>,
    /// RSM `<max/>`.
    pub max: Option<usize>,
    /// The page is taken from the end (RSM `<before/>`, empty or with an id).
    pub from_end: bool,
    /// `<flip-page/>`: the page's messages in reverse order.
    pub flip_page: bool,
}

/// Stores messages in archives and answers queries on them.
pub trait ArchiveService: Send + Sync {
    /// Queues `message` (with `from` and `to` set) for `owner`'s archive, `with` being
    /// the other party (for a room: the occupant's room JID), and returns its
    /// XEP-0359 stanza id; the caller adds `<stanza-id by=owner id=…/>` to what it
    /// delivers. Never blocks; the write is batched.
    fn archive(&self, owner: &BareJid, with: &Jid, message: &Stanza) -> String;

    /// Answers `query` on `owner`'s archive for `requester`: sends one
    /// `<message from=owner to=requester><result/></message>` per match and returns
    /// the `<fin/>` element for the IQ result. Messages archived before the call are
    /// seen. Errors: `item-not-found` for an unknown after/before id, `bad-request`.
    fn query(
        &self,
        ctx: &Context,
        owner: BareJid,
        requester: Jid,
        query: ArchiveQuery,
    ) -> BoxFuture<'static, Result<Element, StanzaError>>;

    /// The archived message `stanza_id` of `owner`'s archive as stored (with `from`
    /// and `to`), or `None`. Messages archived before the call are seen.
    fn fetch(
        &self,
        ctx: &Context,
        owner: BareJid,
        stanza_id: String,
    ) -> BoxFuture<'static, Result<Option<Element>, StanzaError>>;

    /// Replaces the archived message `stanza_id` of `owner`'s archive by
    /// `replacement`, keeping its id, time and other party: later queries return the
    /// replacement, and full-text search looks at the replacement's body only (a
    /// retraction's tombstone, XEP-0424 §6, has none). Returns whether the message was
    /// there. Messages archived before the call are seen.
    fn replace(
        &self,
        ctx: &Context,
        owner: BareJid,
        stanza_id: String,
        replacement: Stanza,
    ) -> BoxFuture<'static, Result<bool, StanzaError>>;

    /// Parses a `<query xmlns='urn:xmpp:mam:2'/>` element (`bad-request` on an
    /// unknown field or a malformed value).
    fn parse_query(&self, query: &Element) -> Result<ArchiveQuery, StanzaError>;
}

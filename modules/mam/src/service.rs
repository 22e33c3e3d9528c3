//! The archive: the routing hooks that archive every message once per owner, and the
//! [`ArchiveService`] other modules (MUC) and the IQ handlers use.
//!
//! The rule ("never lost, never twice", docs/architecture.md): a message is archived
//! for its recipient when the router decides where it goes (`MessageToAccount`),
//! before it is delivered, stored offline or bounced, and the copy that travels on
//! carries the new `<stanza-id by=recipient/>`. Any later pass of the same copy —
//! from offline storage, or re-routed after a stream-management session expired —
//! still carries that id, which verifies (stanza_id.rs), so it is not archived again.
//! The sender's copy is archived when the client sends it (`MessageSent`), except a
//! message to the sender's own bare JID, whose recipient copy is the same archive.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use starling_api::archive::{ArchiveQuery, ArchiveService, NS_STANZA_ID};
use starling_api::hooks::{MessageSent, MessageToAccount};
use starling_api::ingress::PressureSource;
use starling_api::jid::{BareJid, Jid};
use starling_api::minidom::Element;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use starling_api::{BoxFuture, Context, Flow, Stanza, parse_jid, stanza_error, tracing};
use tokio::sync::oneshot;

use crate::MamConfig;
use crate::archivable::archivable;
use crate::prefs::{Decision, PrefsTable};
use crate::query;
use crate::queue::JobQueue;
use crate::stanza_id::{IdKey, IdRef};
use crate::store::{self, Filter, IdSet, NewMessage};
use crate::tokens;
use crate::writer::{Job, Pending};

/// The module's shared state.
pub struct Archive {
    pub(crate) config: MamConfig,
    pub(crate) key: OnceLock<IdKey>,
    pub(crate) jobs: OnceLock<JobQueue>,
    pub(crate) pressure: PressureSource,
    pub(crate) prefs: PrefsTable,
    last_us: AtomicI64,
}

impl Archive {
    pub(crate) fn new(config: MamConfig, pressure: PressureSource) -> Archive {
        Archive {
            config,
            key: OnceLock::new(),
            jobs: OnceLock::new(),
            pressure,
            prefs: PrefsTable::default(),
            last_us: AtomicI64::new(0),
        }
    }

    /// Strictly increasing µs timestamps, so archive order and time order agree.
    fn now_us(&self) -> i64 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
        let mut last = self.last_us.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self.last_us.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// Makes ids continue after `last_row`, the newest stored, even if the clock is
    /// now behind it (called before anything is archived).
    pub(crate) fn continue_after(&self, last_row: i64) {
        self.last_us.fetch_max(store::time_of(last_row), Ordering::Relaxed);
    }

    /// The XEP-0359 id of a stored row of `owner`'s archive.
    pub(crate) fn stanza_id_of(&self, owner: &str, row: &store::Archived) -> String {
        match (&row.legacy_id, self.key.get()) {
            (Some(id), _) => id.clone(),
            (None, Some(key)) => key.id_for(owner, row.id),
            (None, None) => String::new(),
        }
    }

    /// Where a client's stanza id points in `owner`'s archive.
    fn resolve(&self, owner: &str, id: &str) -> IdRef {
        match self.key.get() {
            Some(key) => key.resolve(owner, id),
            None => IdRef::Legacy(id.to_string()),
        }
    }

    /// Queues a message; returns its stanza id, or `None` when the archive is not
    /// running (the message then goes unarchived, not undelivered).
    fn queue(&self, owner: &BareJid, with: &Jid, stanza: &Stanza, if_in_roster: bool) -> Option<String> {
        let (key, jobs) = (self.key.get()?, self.jobs.get()?);
        let owner = owner.to_string();
        let id = store::row_at(self.now_us());
        let stanza_id = key.id_for(&owner, id);
        let row = NewMessage {
            id,
            owner,
            with_bare: with.to_bare().to_string(),
            with_resource: with.resource().map(|r| r.to_string()).unwrap_or_default(),
            stanza: String::from_utf8_lossy(&stanza.to_bytes()).into_owned(),
        };
        if jobs.push(Job::Store(Box::new(Pending { row, if_in_roster }))) {
            Some(stanza_id)
        } else {
            tracing::error!("the archive writer has stopped; a message goes unarchived");
            None
        }
    }

    /// Waits until everything queued so far is stored (and in the search index when
    /// `indexed`).
    pub(crate) async fn flush(&self, indexed: bool) {
        let Some(jobs) = self.jobs.get() else { return };
        let (done, stored) = oneshot::channel();
        if jobs.push(Job::Flush { done, indexed }) {
            let _ = stored.await;
        }
    }

    fn decide(&self, owner: &BareJid, with: &Jid) -> Decision {
        self.prefs.decide(&owner.to_string(), &with.to_bare().to_string(), self.config.default_mode)
    }

    /// `MessageSent`: the sender's copy.
    pub(crate) fn on_sent(&self, ctx: &Context, event: &mut MessageSent) -> Flow {
        if !archivable(&event.stanza) {
            return Flow::Continue;
        }
        let Some(to) = event.stanza.to().and_then(|to| parse_jid(to).ok()) else { return Flow::Continue };
        let owner = event.from.to_bare();
        if to.to_bare() == owner {
            // The recipient copy, archived by `on_to_account`, is in the same archive.
            return Flow::Continue;
        }
        let decision = self.decide(&owner, &to);
        if decision != Decision::Skip {
            let copy = strip_stanza_ids(ctx, &event.stanza, None).0;
            self.queue(&owner, &to, &copy, decision == Decision::IfInRoster);
        }
        Flow::Continue
    }

    /// `MessageToAccount`: the recipient's copy, stamped with its stanza id.
    pub(crate) fn on_to_account(&self, ctx: &Context, event: &mut MessageToAccount) -> Flow {
        let owner = event.to.to_string();
        let (stanza, already) = strip_stanza_ids(ctx, &event.stanza, self.key.get().map(|k| (k, owner.as_str())));
        event.stanza = stanza;
        if already || !archivable(&event.stanza) {
            return Flow::Continue;
        }
        let Some(from) = event.stanza.from().and_then(|f| parse_jid(f).ok()) else { return Flow::Continue };
        let decision = self.decide(&event.to, &from);
        if decision == Decision::Skip {
            return Flow::Continue;
        }
        if let Some(id) = self.queue(&event.to, &from, &event.stanza, decision == Decision::IfInRoster) {
            event.stanza = with_stanza_id(&event.stanza, &owner, &id);
        }
        Flow::Continue
    }

    /// Answers a query on `owner`'s archive (see [`ArchiveService::query`]).
    pub(crate) async fn answer(
        &self,
        ctx: Context,
        owner: BareJid,
        requester: Jid,
        query: ArchiveQuery,
    ) -> Result<Element, StanzaError> {
        self.flush(query.fulltext.is_some()).await;
        let owner_text = owner.to_string();
        let limit = query.max.unwrap_or(self.config.default_page_size).min(self.config.max_page_size) as i64;
        let mut filter = Filter {
            owner: owner_text.clone(),
            with_bare: query.with.as_ref().map(|w| w.to_bare().to_string()),
            with_resource: query.with.as_ref().and_then(|w| w.resource().map(|r| r.to_string())),
            start_us: query.start_us,
            end_us: query.end_us,
            ids: (!query.ids.is_empty()).then(|| {
                let mut set = IdSet::default();
                for id in &query.ids {
                    match self.resolve(&owner_text, id) {
                        IdRef::Row(row) => set.rows.push(row),
                        IdRef::Legacy(id) => set.legacy.push(id),
                    }
                }
                set
            }),
            fulltext: query.fulltext.as_deref().map(tokens::query_terms),
            limit,
            from_end: query.from_end,
            ..Filter::default()
        };
        let after = query.after_id.as_deref().map(|id| self.resolve(&owner_text, id));
        let before = query.before_id.as_deref().map(|id| self.resolve(&owner_text, id));
        let page = ctx
            .db()
            .run(move |c| {
                let mut resolve = |id: Option<IdRef>| -> Result<Option<Option<i64>>, diesel::result::Error> {
                    match id {
                        None => Ok(Some(None)),
                        Some(id) => Ok(store::row_of(c, &filter.owner, &id)?.map(Some)),
                    }
                };
                let (Some(after), Some(before)) = (resolve(after)?, resolve(before)?) else { return Ok(None) };
                filter.after_row = after;
                filter.before_row = before;
                store::page(c, &filter).map(Some)
            })
            .await?
            .ok_or_else(|| stanza_error(ErrorType::Cancel, DefinedCondition::ItemNotFound))?;
        let requester_text = requester.to_string();
        let sent: Box<dyn Iterator<Item = &store::Archived>> =
            if query.flip_page { Box::new(page.rows.iter().rev()) } else { Box::new(page.rows.iter()) };
        for row in sent {
            let mut message = Stanza::new("message", "jabber:client");
            message.set_attr("from", Some(&owner_text));
            message.set_attr("to", Some(&requester_text));
            let stanza_id = self.stanza_id_of(&owner_text, row);
            let children =
                query::result_children(query.query_id.as_deref(), &stanza_id, store::time_of(row.id), &row.stanza);
            ctx.send(message.with_children_xml(children.into()));
        }
        let first = page.rows.first().map(|r| self.stanza_id_of(&owner_text, r));
        let last = page.rows.last().map(|r| self.stanza_id_of(&owner_text, r));
        Ok(query::fin(first.as_deref(), last.as_deref(), Some(page.count), page.complete))
    }
}

/// Removes `<stanza-id/>` elements claiming to come from one of our accounts or hosts
/// (XEP-0359 §5), except ours for `own` = (key, owner) that verifies; returns the
/// stanza and whether such a verified id was there (the copy is archived already).
fn strip_stanza_ids(ctx: &Context, stanza: &Stanza, own: Option<(&IdKey, &str)>) -> (Stanza, bool) {
    if !stanza.child_elements().any(|c| c.name() == "stanza-id" && c.ns() == NS_STANZA_ID) {
        return (stanza.clone(), false);
    }
    let Ok(mut element) = stanza.to_element() else { return (stanza.clone(), false) };
    let mut verified = false;
    let is_ours = |by: &str| parse_jid(by).is_ok_and(|jid| ctx.is_local_host(jid.domain().as_str()));
    let mut kept = Vec::new();
    for child in element.take_nodes() {
        if let starling_api::minidom::Node::Element(child) = &child
            && child.is("stanza-id", NS_STANZA_ID)
        {
            let by = child.attr("by").unwrap_or_default();
            let genuine = own.is_some_and(|(key, owner)| {
                parse_jid(by).is_ok_and(|jid| jid.as_str() == owner)
                    && child.attr("id").is_some_and(|id| key.verify(owner, id))
            });
            if genuine && !verified {
                verified = true;
            } else if is_ours(by) {
                continue;
            }
        }
        kept.push(child);
    }
    for node in kept {
        element.append_node(node);
    }
    (Stanza::from_element(&element), verified)
}

/// The stanza with `<stanza-id xmlns='urn:xmpp:sid:0' by=owner id=id/>` appended.
fn with_stanza_id(stanza: &Stanza, owner: &str, id: &str) -> Stanza {
    let mut children = stanza.children_xml().to_vec();
    children.extend_from_slice(b"<stanza-id xmlns='urn:xmpp:sid:0'");
    starling_api::stanza::write_attr(&mut children, "by", owner);
    starling_api::stanza::write_attr(&mut children, "id", id);
    children.extend_from_slice(b"/>");
    stanza.clone().with_children_xml(children.into())
}

/// The service handed to other modules.
pub struct Service(pub Arc<Archive>);

impl ArchiveService for Service {
    fn archive(&self, owner: &BareJid, with: &Jid, message: &Stanza) -> String {
        // A stopped archive still gives an id: the caller stamps it, the message is
        // just not found later (logged by `queue`).
        match self.0.queue(owner, with, message, false) {
            Some(id) => id,
            None => self
                .0
                .key
                .get()
                .map(|k| k.id_for(&owner.to_string(), store::row_at(self.0.now_us())))
                .unwrap_or_default(),
        }
    }

    fn query(
        &self,
        ctx: &Context,
        owner: BareJid,
        requester: Jid,
        query: ArchiveQuery,
    ) -> BoxFuture<'static, Result<Element, StanzaError>> {
        let archive = self.0.clone();
        let ctx = ctx.clone();
        Box::pin(async move { archive.answer(ctx, owner, requester, query).await })
    }

    fn fetch(
        &self,
        ctx: &Context,
        owner: BareJid,
        stanza_id: String,
    ) -> BoxFuture<'static, Result<Option<Element>, StanzaError>> {
        let archive = self.0.clone();
        let ctx = ctx.clone();
        Box::pin(async move {
            archive.flush(false).await;
            let owner = owner.to_string();
            let id = archive.resolve(&owner, &stanza_id);
            let stored = ctx
                .db()
                .run(move |c| match store::row_of(c, &owner, &id)? {
                    Some(row) => store::fetch(c, &owner, row),
                    None => Ok(None),
                })
                .await?;
            // A row that does not parse is not the caller's to see.
            Ok(stored.and_then(|xml| xml.parse::<Element>().ok()))
        })
    }

    fn replace(
        &self,
        ctx: &Context,
        owner: BareJid,
        stanza_id: String,
        replacement: Stanza,
    ) -> BoxFuture<'static, Result<bool, StanzaError>> {
        let archive = self.0.clone();
        let ctx = ctx.clone();
        Box::pin(async move {
            archive.flush(false).await;
            let owner = owner.to_string();
            let id = archive.resolve(&owner, &stanza_id);
            let stanza = String::from_utf8_lossy(&replacement.to_bytes()).into_owned();
            let search_text = crate::writer::search_text(&stanza);
            Ok(ctx
                .db()
                .run(move |c| match store::row_of(c, &owner, &id)? {
                    Some(row) => store::replace(c, &owner, row, &stanza, &search_text),
                    None => Ok(false),
                })
                .await?)
        })
    }

    fn parse_query(&self, query: &Element) -> Result<ArchiveQuery, StanzaError> {
        query::parse(query)
    }
}

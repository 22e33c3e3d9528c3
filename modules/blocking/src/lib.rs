//! XEP-0191: Blocking Command — a user blocks JIDs (a full or bare JID, or a whole
//! domain); the server then drops everything between them (XEP-0191 §3.5, §3.6).
//!
//! Stanzas from a blocked entity to the user are dropped; an IQ get/set is answered
//! `service-unavailable`. Stanzas from the user to a blocked entity are answered
//! `not-acceptable` with `<blocked xmlns='urn:xmpp:blocking:errors'/>` (presence is
//! dropped silently), which also stops presence broadcasts to blocked contacts. Blocking
//! a contact sends it unavailable presence from the user's available resources.
//!
//! Error stanzas pass the filter in both directions: they carry the filter's own
//! answers, and an error can only answer something the user sent.
//!
//! All lists are held in memory (loaded at start, written through to
//! `blocking_items`), because the routing filter runs for every stanza and cannot wait
//! for the database.
//!
//! Spam reports (XEP-0377) ride on block requests: see [`report`].

mod report;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use diesel::prelude::*;
use starling_api::hooks::{Routing, SessionEnded};
use starling_api::jid::{BareJid, FullJid, Jid};
use starling_api::minidom::Element;
use starling_api::reply::{child_xml, error_reply};
use starling_api::tracing;
use starling_api::xmpp_parsers::blocking::{BlocklistRequest, BlocklistResult, Unblock};
use starling_api::xmpp_parsers::ns;
use starling_api::xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};
use starling_api::{
    Context, DbConn, Flow, IqRequest, IqResult, Migrations, ModuleError, ModuleSpec, Registrar, Scope, Spec,
    SpecSupport, Stanza, Support, stanza_error,
};

/// The module.
pub static MODULE: ModuleSpec = ModuleSpec {
    name: "blocking",
    summary: "XEP-0191 Blocking Command",
    specs: &[
        SpecSupport { spec: Spec::Xep(191), version: "1.3", status: Support::Complete, features: &[ns::BLOCKING] },
        SpecSupport {
            spec: Spec::Xep(377),
            version: "0.4.0",
            status: Support::Complete,
            features: &[report::NS_REPORTING],
        },
    ],
    migrations: Some(&MIGRATIONS),
    forget_user: Some(forget_user),
    start,
};

static MIGRATIONS: Migrations = starling_api::migrations!();

diesel::table! {
    /// Spam and abuse reports (XEP-0377) per reporting account.
    blocking_reports (host, username, reported, created_at) {
        host -> Text,
        username -> Text,
        reported -> Text,
        reason -> Text,
        report_text -> Text,
        stanza_ids -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    /// Blocked JIDs per account.
    blocking_items (host, username, jid) {
        host -> Text,
        username -> Text,
        jid -> Text,
    }
}

/// Every account's blocklist, and who asked for theirs (they get pushes).
#[derive(Default)]
struct Lists {
    blocked: RwLock<HashMap<BareJid, HashSet<String>>>,
    interested: RwLock<HashSet<FullJid>>,
}

impl Lists {
    /// Whether `user` blocks `other` (XEP-0191 §3.1: the full JID, its bare JID or its
    /// domain may be listed).
    fn blocks(&self, user: &BareJid, other: &Jid) -> bool {
        let Ok(all) = self.blocked.read() else { return false };
        let Some(list) = all.get(user) else { return false };
        list.contains(other.as_str())
            || list.contains(other.to_bare().as_str())
            || list.contains(other.domain().as_str())
    }

    fn items(&self, user: &BareJid) -> Vec<String> {
        let mut items: Vec<String> = self
            .blocked
            .read()
            .ok()
            .and_then(|all| all.get(user).map(|l| l.iter().cloned().collect()))
            .unwrap_or_default();
        items.sort();
        items
    }
}

fn start(reg: &mut Registrar<'_>) -> Result<(), ModuleError> {
    reg.disco_feature(Scope::Server, ns::BLOCKING);
    reg.disco_feature(Scope::Server, report::NS_REPORTING);
    let lists = Arc::new(Lists::default());
    let l = lists.clone();
    reg.on_start(move |ctx| load(ctx, l.clone()));
    let l = lists.clone();
    reg.iq_get::<BlocklistRequest, _, _>(Scope::OwnAccount, move |_ctx, req| {
        let l = l.clone();
        async move { get(req, &l) }
    });
    let l = lists.clone();
    reg.iq_set::<report::BlockRequest, _, _>(Scope::OwnAccount, move |ctx, req| {
        let l = l.clone();
        async move {
            let report::BlockRequest { items, reports } = req.payload;
            let result = change(ctx.clone(), req.from.clone(), items, true, l).await;
            if result.is_ok() && !reports.is_empty() {
                store_reports(&ctx, &req.from, reports).await;
            }
            result
        }
    });
    let l = lists.clone();
    reg.iq_set::<Unblock, _, _>(Scope::OwnAccount, move |ctx, req| {
        let l = l.clone();
        async move { change(ctx, req.from, req.payload.items, false, l).await }
    });
    let l = lists.clone();
    reg.hook::<SessionEnded, _>(0, move |_, event| {
        if let Ok(mut interested) = l.interested.write() {
            interested.remove(&event.jid);
        }
        Flow::Continue
    });
    reg.hook::<Routing, _>(100, move |ctx, event| filter(ctx, event, &lists));
    Ok(())
}

async fn load(ctx: Context, lists: Arc<Lists>) -> Result<(), ModuleError> {
    let rows: Vec<(String, String, String)> = ctx
        .db()
        .run(|c| {
            blocking_items::table.select((blocking_items::host, blocking_items::username, blocking_items::jid)).load(c)
        })
        .await
        .map_err(|e| ModuleError::Start { module: "blocking", message: e.to_string() })?;
    let mut all: HashMap<BareJid, HashSet<String>> = HashMap::new();
    for (host, user, jid) in rows {
        if let Ok(owner) = BareJid::new(&format!("{user}@{host}")) {
            all.entry(owner).or_default().insert(jid);
        }
    }
    if let Ok(mut blocked) = lists.blocked.write() {
        *blocked = all;
    }
    Ok(())
}

fn get(req: IqRequest<BlocklistRequest>, lists: &Lists) -> IqResult {
    let Ok(full) = req.from.clone().try_into_full() else { return Ok(None) };
    let user = full.to_bare();
    if let Ok(mut interested) = lists.interested.write() {
        interested.insert(full);
    }
    let items = lists.items(&user).iter().filter_map(|j| Jid::new(j).ok()).collect();
    Ok(Some(BlocklistResult { items }.into()))
}

async fn change(ctx: Context, from: Jid, items: Vec<Jid>, block: bool, lists: Arc<Lists>) -> IqResult {
    let user = from.to_bare();
    if block && items.is_empty() {
        // XEP-0191 §3.3: a block without items is a bad request.
        return Err(stanza_error(ErrorType::Modify, DefinedCondition::BadRequest));
    }
    let host = user.domain().to_string();
    let name = user.node().map(|n| n.to_string()).unwrap_or_default();
    // An unblock without items unblocks everyone (§3.4.2).
    let targets: Vec<String> =
        if items.is_empty() { lists.items(&user) } else { items.iter().map(|j| j.to_string()).collect() };
    let stored = targets.clone();
    ctx.db()
        .run(move |c| {
            c.transaction(|c| {
                for jid in &stored {
                    let row = blocking_items::table
                        .filter(blocking_items::host.eq(&host))
                        .filter(blocking_items::username.eq(&name))
                        .filter(blocking_items::jid.eq(jid));
                    diesel::delete(row).execute(c)?;
                    if block {
                        diesel::insert_into(blocking_items::table)
                            .values((
                                blocking_items::host.eq(&host),
                                blocking_items::username.eq(&name),
                                blocking_items::jid.eq(jid),
                            ))
                            .execute(c)?;
                    }
                }
                QueryResult::Ok(())
            })
        })
        .await?;
    if let Ok(mut all) = lists.blocked.write() {
        let list = all.entry(user.clone()).or_default();
        for jid in &targets {
            if block {
                list.insert(jid.clone());
            } else {
                list.remove(jid);
            }
        }
    }
    if block {
        // The blocked contacts see the user go offline.
        for resource in ctx.sessions().available_resources(&user) {
            for jid in &targets {
                let mut presence = Stanza::new("presence", "jabber:client");
                presence.set_attr("from", Some(&resource.to_string()));
                presence.set_attr("to", Some(jid));
                presence.set_attr("type", Some("unavailable"));
                ctx.send(presence);
            }
        }
    }
    push(&ctx, &lists, &user, if block { "block" } else { "unblock" }, &items);
    Ok(None)
}

/// XEP-0191 §3.3.1 / §3.4.1: tell every resource that asked for the list.
fn push(ctx: &Context, lists: &Lists, user: &BareJid, kind: &str, items: &[Jid]) {
    let mut payload = Element::builder(kind, ns::BLOCKING).build();
    for item in items {
        payload.append_child(
            Element::builder("item", ns::BLOCKING)
                .attr(starling_api::minidom::rxml::xml_ncname!("jid").into(), item.to_string())
                .build(),
        );
    }
    let children = child_xml(&payload, "jabber:client");
    let Ok(interested) = lists.interested.read() else { return };
    for resource in ctx.sessions().resources(user).into_iter().filter(|r| interested.contains(r)) {
        let mut iq = Stanza::new("iq", "jabber:client");
        iq.set_attr("type", Some("set"));
        iq.set_attr("id", Some(&format!("block-push-{}", resource.resource())));
        iq.set_attr("to", Some(&resource.to_string()));
        ctx.send(iq.with_children_xml(children.clone().into()));
    }
}

/// The routing filter: both directions of every block.
fn filter(ctx: &Context, event: &mut Routing, lists: &Lists) -> Flow {
    let Some(from) = &event.from else { return Flow::Continue };
    let kind = event.stanza.name();
    let type_ = event.stanza.type_();
    // The user's own server is never blocked (pings, pushes), even when its domain is
    // listed to block its users.
    let server_party = |jid: &Jid| jid.node().is_none() && ctx.is_local_host(jid.domain().as_str());
    if server_party(from) || server_party(&event.to) {
        return Flow::Continue;
    }
    // Errors pass: they are this filter's own answers (which the other direction would
    // otherwise swallow) or answers to what the user sent.
    if type_ == Some("error") {
        return Flow::Continue;
    }
    // The recipient blocks the sender: silently dropped, but an IQ request gets an error.
    if ctx.is_local_host(event.to.domain().as_str())
        && event.to.node().is_some()
        && lists.blocks(&event.to.to_bare(), from)
    {
        let error = stanza_error(ErrorType::Cancel, DefinedCondition::ServiceUnavailable);
        let reply = error_reply(&event.stanza, &error).filter(|_| kind == "iq" && matches!(type_, Some("get" | "set")));
        if let Some(reply) = reply {
            ctx.send(reply);
        }
        return Flow::Handled;
    }
    // The sender blocks the recipient: refused with <blocked/> (presence just dropped).
    if ctx.is_local_host(from.domain().as_str()) && from.node().is_some() && lists.blocks(&from.to_bare(), &event.to) {
        if kind != "presence" {
            let mut error = stanza_error(ErrorType::Cancel, DefinedCondition::NotAcceptable);
            error.other = Some(Element::builder("blocked", ns::BLOCKING_ERRORS).build());
            if let Some(reply) = error_reply(&event.stanza, &error) {
                ctx.send(reply);
            }
        }
        return Flow::Handled;
    }
    Flow::Continue
}

/// Logs and keeps the reports of a block that was carried out.
async fn store_reports(ctx: &Context, reporter: &Jid, reports: Vec<report::Report>) {
    let owner = reporter.to_bare();
    let host = owner.domain().to_string();
    let name = owner.node().map(|n| n.to_string()).unwrap_or_default();
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
    for report in &reports {
        metrics::counter!("starling_spam_reports_total", "reason" => report.reason.clone()).increment(1);
        tracing::warn!(
            target: "starling::spam_report",
            reporter = %owner,
            reported = %report.jid,
            reason = %report.reason,
            text = %report.text,
            messages = report.stanza_ids.len(),
            "spam report"
        );
    }
    let rows: Vec<_> = reports
        .into_iter()
        .enumerate()
        .map(|(n, r)| {
            (
                blocking_reports::host.eq(host.clone()),
                blocking_reports::username.eq(name.clone()),
                blocking_reports::reported.eq(r.jid.to_string()),
                blocking_reports::reason.eq(r.reason),
                blocking_reports::report_text.eq(r.text),
                blocking_reports::stanza_ids.eq(r.stanza_ids.join("\n")),
                // Distinct per report of one request (the key includes the time).
                blocking_reports::created_at.eq(now + n as i64),
            )
        })
        .collect();
    // One insert per row: batch inserts do not build on the multi-backend connection.
    let stored = ctx
        .db()
        .run(move |c| {
            for row in &rows {
                diesel::insert_into(blocking_reports::table).values(row.clone()).execute(c)?;
            }
            QueryResult::Ok(())
        })
        .await;
    if let Err(err) = stored {
        tracing::error!(error = %err, "storing spam reports failed");
    }
}

fn forget_user(conn: &mut DbConn, host: &str, user: &str) -> QueryResult<()> {
    diesel::delete(
        blocking_items::table.filter(blocking_items::host.eq(host)).filter(blocking_items::username.eq(user)),
    )
    .execute(conn)?;
    diesel::delete(
        blocking_reports::table.filter(blocking_reports::host.eq(host)).filter(blocking_reports::username.eq(user)),
    )
    .execute(conn)?;
    Ok(())
}

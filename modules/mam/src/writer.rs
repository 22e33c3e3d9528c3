//! The one task that writes archives: messages queue up from the routing hooks and
//! are stored in batches (one transaction per batch), so archiving costs the router a
//! channel send and the database a fraction of a commit per message.
//!
//! Full-text indexing (XEP-0431) is the costliest part of storing a message, so it is
//! not done on the way in: the writer indexes stored rows, a step at a time, whenever
//! no message is waiting, and at least one step a second while messages keep coming.
//! Queries first send a [`Job::Flush`] and wait for it: everything queued before the
//! query is then stored (and, for a search, indexed), so a client finds the message it
//! has just sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use starling_api::jid::BareJid;
use starling_api::minidom::Element;
use starling_api::roster::RosterService;
use starling_api::{Context, parse_bare_jid, tracing};
use tokio::sync::oneshot;

use crate::queue::JobIntake;

use crate::store::{self, NewMessage};
use crate::tokens;

/// A message on its way to an archive.
#[derive(Debug)]
pub struct Pending {
    /// The row.
    pub row: NewMessage,
    /// Store it only if the other party is in the owner's roster (prefs `roster`).
    pub if_in_roster: bool,
}

/// What the writer is asked to do.
#[derive(Debug)]
pub enum Job {
    /// Store a message.
    Store(Box<Pending>),
    /// Answer once everything queued before is stored, and indexed too when `indexed`.
    Flush {
        /// Answered then.
        done: oneshot::Sender<()>,
        /// Wait for the search index as well.
        indexed: bool,
    },
}

/// Rows indexed per step: a step holds the database's write lock for a few ms.
const INDEX_STEP: i64 = 500;

/// While messages keep coming, the index still takes a step this often.
const INDEX_AT_LEAST_EVERY: Duration = Duration::from_secs(1);

/// Search tokens of a stored message.
pub(crate) fn search_text(stanza: &str) -> String {
    body_of(stanza).map(|b| tokens::index_text(&b)).unwrap_or_default()
}

/// One indexing step: whether rows remain unindexed, or an error (logged; the caller
/// retries later).
async fn index_step(ctx: &Context) -> Result<bool, ()> {
    match ctx.db().run(|c| store::index_next(c, INDEX_STEP, search_text)).await {
        Ok(done) => Ok(done as i64 == INDEX_STEP),
        Err(err) => {
            tracing::warn!(error = %err, "full-text indexing of archived messages failed; retrying");
            Err(())
        }
    }
}

/// Failed steps in a row after which a waiting search goes ahead on the index as it is.
const INDEX_ATTEMPTS_FOR_A_SEARCH: u32 = 5;

/// Indexes everything stored, for a search; whether rows remain unindexed.
async fn index_all(ctx: &Context) -> bool {
    let mut failures = 0;
    loop {
        match index_step(ctx).await {
            Ok(false) => return false,
            Ok(true) => failures = 0,
            Err(()) if failures + 1 >= INDEX_ATTEMPTS_FOR_A_SEARCH => return true,
            Err(()) => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(100) * failures).await;
            }
        }
    }
}

/// Body text of a stored message, for the full-text index.
pub(crate) fn body_of(stanza: &str) -> Option<String> {
    let element: Element = stanza.parse().ok()?;
    element.get_child("body", "jabber:client").map(|b| b.text())
}

async fn in_roster(ctx: &Context, roster: Option<&Arc<dyn RosterService>>, row: &NewMessage) -> bool {
    let (Some(roster), Ok(owner), Ok(with)) = (roster, parse_bare_jid(&row.owner), parse_bare_jid(&row.with_bare))
    else {
        return false;
    };
    let owner: BareJid = owner;
    match roster.contact(ctx, &owner, &with).await {
        Ok(contact) => contact.is_some(),
        Err(err) => {
            tracing::error!(error = %err, "roster lookup for archive preferences failed");
            false
        }
    }
}

/// How often a batch is tried before it is given up (about 40 s of retrying in all).
const STORE_ATTEMPTS: u32 = 12;

/// Stores one batch. A failing database (busy, restarting, briefly unreachable) is
/// retried with a growing pause rather than dropping the batch: its messages were
/// already delivered carrying their stanza ids, and clients page by those ids.
async fn store_batch(ctx: &Context, rows: Vec<NewMessage>) {
    let rows = Arc::new(rows);
    let count = rows.len();
    let mut pause = Duration::from_millis(50);
    for attempt in 1..=STORE_ATTEMPTS {
        let batch = rows.clone();
        match ctx.db().run(move |c| store::insert(c, &batch)).await {
            Ok(_) => {
                tracing::trace!(count, "archived");
                return;
            }
            Err(err) if attempt < STORE_ATTEMPTS => {
                tracing::warn!(error = %err, count, attempt, "archiving a batch of messages failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(err) => tracing::error!(error = %err, count, "archiving a batch of messages failed; giving up"),
        }
    }
}

/// Runs until every sender is gone.
pub async fn run(ctx: Context, mut jobs: JobIntake, batch: usize) {
    let roster = ctx.service::<dyn RosterService>();
    let mut rows = Vec::with_capacity(batch);
    let mut flushes = Vec::new();
    let mut searches = Vec::new();
    // Rows stored before a restart may wait for the index.
    let mut unindexed = true;
    let mut last_step = Instant::now();
    loop {
        let first = if unindexed {
            match jobs.try_recv() {
                Some(job) => job,
                None => {
                    jobs.relieve();
                    match index_step(&ctx).await {
                        Ok(more) => unindexed = more,
                        // Wait for the next message rather than retry in a busy loop.
                        Err(()) => unindexed = false,
                    }
                    last_step = Instant::now();
                    continue;
                }
            }
        } else {
            match jobs.recv().await {
                Some(job) => job,
                None => break,
            }
        };
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Store(pending) => {
                    let Pending { row, if_in_roster } = *pending;
                    if if_in_roster && !in_roster(&ctx, roster.as_ref(), &row).await {
                        continue;
                    }
                    rows.push(row);
                }
                Job::Flush { done, indexed: false } => flushes.push(done),
                Job::Flush { done, indexed: true } => searches.push(done),
            }
            if rows.len() >= batch {
                break;
            }
            next = jobs.try_recv();
        }
        if !rows.is_empty() {
            store_batch(&ctx, std::mem::take(&mut rows)).await;
            unindexed = true;
        }
        jobs.relieve();
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
        if !searches.is_empty() {
            unindexed = index_all(&ctx).await;
            last_step = Instant::now();
            for done in searches.drain(..) {
                let _ = done.send(());
            }
        } else if unindexed && last_step.elapsed() >= INDEX_AT_LEAST_EVERY {
            unindexed = index_step(&ctx).await.unwrap_or(true);
            last_step = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_found_in_stored_messages() {
        let stored = "<message xmlns='jabber:client' type='chat'><body>你好 world</body></message>";
        assert_eq!(body_of(stored).as_deref(), Some("你好 world"));
        assert_eq!(body_of("<message xmlns='jabber:client'/>"), None);
    }
}

//! The one task that writes archives: messages queue up from the routing hooks and
//! are stored in batches (one transaction per batch), so archiving costs the router a
//! channel send and the database a fraction of a commit per message.
//!
//! Queries first send a [`Job::Flush`] and wait for it: everything queued before the
//! query is then stored, so a client sees the message it has just sent.

use std::sync::Arc;
use std::time::Duration;

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
    /// The row, without its search tokens (made here, off the routing path).
    pub row: NewMessage,
    /// Store it only if the other party is in the owner's roster (prefs `roster`).
    pub if_in_roster: bool,
}

/// What the writer is asked to do.
#[derive(Debug)]
pub enum Job {
    /// Store a message.
    Store(Box<Pending>),
    /// Answer once everything queued before is stored.
    Flush(oneshot::Sender<()>),
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
    while let Some(first) = jobs.recv().await {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Store(pending) => {
                    let Pending { mut row, if_in_roster } = *pending;
                    if if_in_roster && !in_roster(&ctx, roster.as_ref(), &row).await {
                        continue;
                    }
                    row.search_text = body_of(&row.stanza).map(|b| tokens::index_text(&b)).unwrap_or_default();
                    rows.push(row);
                }
                Job::Flush(done) => flushes.push(done),
            }
            if rows.len() >= batch {
                break;
            }
            next = jobs.try_recv();
        }
        if !rows.is_empty() {
            store_batch(&ctx, std::mem::take(&mut rows)).await;
        }
        jobs.relieve();
        for done in flushes.drain(..) {
            let _ = done.send(());
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

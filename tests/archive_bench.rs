//! Archive figures (not run by default; nothing is asserted about speed):
//! `cargo test --release --test archive_bench -- --ignored --nocapture`, and with
//! `STARLING_TEST_STORAGE=postgres` for PostgreSQL.
//!
//! Fills the archive with 1,000,000 messages of 10,000 accounts through the archive
//! service (the batched writer the router uses), then times MAM queries over a real
//! socket: the last page of 50, pages before a known id, and XEP-0431 full-text
//! searches for a common and a rare word.

mod common;

use std::time::{Duration, Instant};

use common::{Client, TestServer};
use starling_api::archive::{ArchiveQuery, ArchiveService};
use starling_api::{Stanza, parse_bare_jid, parse_jid};

/// `ARCHIVE_BENCH_MESSAGES` overrides the million, for a quick try.
fn messages() -> usize {
    std::env::var("ARCHIVE_BENCH_MESSAGES").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000)
}
const ACCOUNTS: usize = 10_000;
const QUERIES: usize = 200;
const WORDS: [&str; 12] = [
    "hello", "meeting", "tomorrow", "lunch", "coffee", "project", "deadline", "photo", "weekend", "train", "late",
    "thanks",
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn timed(label: &str, client: &mut Client, mut request: impl FnMut(usize) -> String) {
    let mut times = Vec::with_capacity(QUERIES);
    let mut results = 0;
    for i in 0..QUERIES {
        let started = Instant::now();
        let (reply, others) = client.iq(&request(i)).await;
        times.push(started.elapsed());
        assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
        results += others.len();
    }
    times.sort();
    println!(
        "{label:<34} p50 {:>7.2} ms  p99 {:>7.2} ms  ({:.1} results/query)",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        results as f64 / QUERIES as f64
    );
}

fn mam_query(fields: &str, set: &str) -> String {
    format!(
        "<iq type='set' id='{{id}}'><query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>{fields}</x>\
         <set xmlns='http://jabber.org/protocol/rsm'>{set}</set></query></iq>"
    )
}

#[tokio::test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
async fn archive_query_latency_with_a_million_messages() {
    let server = TestServer::start().await;
    server.add_user("u1", "pw").await;
    let ctx = server.server.as_ref().expect("running").context.clone();
    let archive = ctx.service::<dyn ArchiveService>().expect("the mam module runs");

    let total = messages();
    let started = Instant::now();
    let mut u1_ids = Vec::new();
    for i in 0..total {
        let (owner, with) = (i % ACCOUNTS + 1, (i / ACCOUNTS) % ACCOUNTS + 1);
        let rare = if i % 1000 == 0 { " kumquat" } else { "" };
        let body = format!("{} {} {}{rare} #{i}", WORDS[i % 12], WORDS[(i / 12) % 12], WORDS[(i / 144) % 12]);
        let xml = format!(
            "<message xmlns='jabber:client' type='chat' from='u{with}@localhost/r' to='u{owner}@localhost'><body>{body}</body></message>"
        );
        let stanza = Stanza::from_element(&xml.parse().expect("message"));
        let owner_jid = parse_bare_jid(&format!("u{owner}@localhost")).expect("jid");
        let with_jid = parse_jid(&format!("u{with}@localhost/r")).expect("jid");
        let id = archive.archive(&owner_jid, &with_jid, &stanza);
        if owner == 1 {
            u1_ids.push(id);
        }
        // A query waits for everything queued before it: the writer's queue never fills.
        if i % 20_000 == 19_999 {
            let query = ArchiveQuery { max: Some(1), ..ArchiveQuery::default() };
            archive.query(&ctx, owner_jid, with_jid, query).await.expect("flush");
        }
    }
    let seeded = started.elapsed();
    println!(
        "storage {:?}: {total} messages archived in {:.1} s ({:.0} messages/s through the batched writer)",
        std::env::var("STARLING_TEST_STORAGE").unwrap_or_else(|_| "sqlite".into()),
        seeded.as_secs_f64(),
        total as f64 / seeded.as_secs_f64()
    );

    let mut client = server.login("u1", "bench").await;
    timed("last page of 50", &mut client, |_| mam_query("", "<max>50</max><before/>")).await;
    timed("page of 50 before a random id", &mut client, |i| {
        let id = &u1_ids[(i * 7919) % u1_ids.len()];
        mam_query("", &format!("<max>50</max><before>{id}</before>"))
    })
    .await;
    timed("page of 50 with one contact", &mut client, |i| {
        let with = format!("<field var='with'><value>u{}@localhost</value></field>", i % 100 + 1);
        mam_query(&with, "<max>50</max><before/>")
    })
    .await;
    let fulltext = |word: &str| format!("<field var='{{urn:xmpp:fulltext:0}}fulltext'><value>{word}</value></field>");
    timed("full text, common word", &mut client, |i| mam_query(&fulltext(WORDS[i % 12]), "<max>50</max>")).await;
    timed("full text, rare word", &mut client, |_| mam_query(&fulltext("kumquat"), "<max>50</max>")).await;
}

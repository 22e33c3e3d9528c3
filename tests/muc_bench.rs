//! Fan-out in one room (not run by default; figures are never asserted):
//! `cargo test --release --test muc_bench -- --ignored --nocapture`
//! (`MUC_BENCH_OCCUPANTS`, default 1000, one client connection each).
//!
//! An owner fills a persistent room's history with 50 messages and leaves; the other
//! clients join one by one (the first join's time is "a room with 50 history
//! messages"); the last to join sends a burst (throughput: deliveries per second until
//! the last copy arrived) and then paced messages (latency from send to the last of its
//! copies). Every reader drains its socket on its own task.

mod common;

use std::time::{Duration, Instant};

use common::{Client, HOST, TestServer};
use tokio::sync::mpsc;

const MUC: &str = "http://jabber.org/protocol/muc";
const ROOM: &str = "bench@conference.localhost";
const HISTORY: usize = 50;
const BURST: usize = 100;
const PACED: usize = 50;
const PACE: Duration = Duration::from_millis(20);

fn body(stanza: &minidom::Element) -> Option<String> {
    stanza.get_child("body", "jabber:client").map(|b| b.text())
}

fn is_subject(stanza: &minidom::Element) -> bool {
    stanza.name() == "message" && stanza.has_child("subject", "jabber:client")
}

async fn join(client: &mut Client, nick: &str) {
    client.send(&format!("<presence to='{ROOM}/{nick}'><x xmlns='{MUC}'/></presence>")).await;
    loop {
        let stanza = client.recv().await;
        assert_ne!(stanza.attr("type"), Some("error"), "join refused: {stanza:?}");
        if is_subject(&stanza) {
            return;
        }
    }
}

/// Until `count` bench messages arrived: sends (message index, arrival) for each.
async fn drain(mut client: Client, count: usize, arrivals: mpsc::UnboundedSender<(usize, Instant)>) {
    let mut seen = 0;
    while seen < count {
        let stanza = client.recv().await;
        let Some(index) = body(&stanza).and_then(|b| b.strip_prefix("bench ").and_then(|i| i.parse().ok())) else {
            continue;
        };
        seen += 1;
        let _ = arrivals.send((index, Instant::now()));
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly in release mode"]
async fn fan_out_in_a_large_room() {
    let occupants: usize = std::env::var("MUC_BENCH_OCCUPANTS").ok().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let server = TestServer::start_with(|c| {
        c.limits.session_queue = 100_000;
        c.storage.pool_size = 8;
    })
    .await;
    for i in 0..=occupants {
        server.add_user(&format!("u{i}"), "pw").await;
    }

    let mut owner = server.login("u0", "r").await;
    join(&mut owner, "owner").await;
    let (reply, _) = owner
        .iq(&format!(
            "<iq type='set' id='{{id}}' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'>\
             <x xmlns='jabber:x:data' type='submit'>\
             <field var='muc#roomconfig_persistentroom'><value>1</value></field>\
             <field var='muc#roomconfig_historylength'><value>{HISTORY}</value></field></x></query></iq>"
        ))
        .await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    for i in 0..HISTORY {
        owner.send(&format!("<message to='{ROOM}' type='groupchat'><body>history {i}</body></message>")).await;
    }
    let mut echoed = 0;
    while echoed < HISTORY {
        if body(&owner.recv().await).is_some_and(|b| b.starts_with("history")) {
            echoed += 1;
        }
    }
    owner.send(&format!("<presence to='{ROOM}/owner' type='unavailable'/>")).await;
    owner.sync().await;

    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel();
    let rss_before = rss_kib();
    let mut first_join = Duration::ZERO;
    let mut last_join = Duration::ZERO;
    let joins = Instant::now();
    let mut readers = Vec::new();
    for i in 1..occupants {
        let mut client = Client::login(server.addr(), &format!("u{i}"), "pw", Some("r")).await;
        let started = Instant::now();
        join(&mut client, &format!("n{i}")).await;
        if i == 1 {
            first_join = started.elapsed();
        }
        last_join = started.elapsed();
        readers.push(tokio::spawn(drain(client, BURST + PACED, arrivals_tx.clone())));
    }
    let mut sender = Client::login(server.addr(), &format!("u{occupants}"), "pw", Some("r")).await;
    join(&mut sender, "sender").await;
    let all_joined = joins.elapsed();
    let rss_after = rss_kib();
    drop(arrivals_tx);
    let readers_count = readers.len();

    // Burst: every message at once; throughput until the last copy arrived.
    let mut sent_at = Vec::with_capacity(BURST + PACED);
    let burst_start = Instant::now();
    let mut batch = String::new();
    for i in 0..BURST {
        sent_at.push(Instant::now());
        batch.push_str(&format!("<message to='{ROOM}' type='groupchat'><body>bench {i}</body></message>"));
    }
    sender.send(&batch).await;
    let mut echoes = 0;
    while echoes < BURST {
        if body(&sender.recv().await).is_some_and(|b| b.starts_with("bench")) {
            echoes += 1;
        }
    }
    let mut last_burst = burst_start;
    let mut received = Vec::new();
    while received.len() < readers_count * BURST {
        let Some((index, at)) = arrivals.recv().await else { break };
        if index < BURST {
            last_burst = last_burst.max(at);
        }
        received.push((index, at));
    }
    let burst_time = last_burst.duration_since(burst_start);
    let deliveries = (readers_count + 1) * BURST;

    // Paced: latency from send to each copy, and to the last copy of each message.
    for i in BURST..BURST + PACED {
        sent_at.push(Instant::now());
        sender.send(&format!("<message to='{ROOM}' type='groupchat'><body>bench {i}</body></message>")).await;
        tokio::time::sleep(PACE).await;
    }
    while let Some(arrival) = arrivals.recv().await {
        received.push(arrival);
    }
    for reader in readers {
        reader.await.expect("reader finished");
    }
    let mut each = Vec::new();
    let mut last_copy = vec![Duration::ZERO; PACED];
    for (index, at) in received.iter().filter(|(i, _)| *i >= BURST) {
        let latency = at.duration_since(sent_at[*index]);
        each.push(latency);
        last_copy[index - BURST] = last_copy[index - BURST].max(latency);
    }
    each.sort_unstable();
    last_copy.sort_unstable();
    let pick = |v: &[Duration], q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "muc fan-out, {occupants} occupants on {HOST}: burst {BURST} msgs -> {deliveries} deliveries in {:.2} s = {:.0} deliveries/s; \
         paced {PACED} at 1 per {PACE:?}: per copy p50 {:.1} ms p99 {:.1} ms, to the last copy p50 {:.1} ms p99 {:.1} ms max {:.1} ms; \
         join with {HISTORY} history messages {:.1} ms, last join ({} occupants present) {:.1} ms, all joins {:.1} s; \
         RSS +{} KiB for {occupants} occupants (server and test clients in one process: {:.1} KiB each)",
        burst_time.as_secs_f64(),
        deliveries as f64 / burst_time.as_secs_f64(),
        pick(&each, 0.5),
        pick(&each, 0.99),
        pick(&last_copy, 0.5),
        pick(&last_copy, 0.99),
        pick(&last_copy, 1.0),
        first_join.as_secs_f64() * 1000.0,
        occupants.saturating_sub(2),
        last_join.as_secs_f64() * 1000.0,
        all_joined.as_secs_f64(),
        rss_after.saturating_sub(rss_before),
        rss_after.saturating_sub(rss_before) as f64 / occupants as f64,
    );
}

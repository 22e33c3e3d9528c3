//! Throughput and latency across one S2S link (not run by default; figures are never
//! asserted): `cargo test --release --test s2s_bench -- --ignored --nocapture`.
//! alice@a.test (Starling) sends to bob on b.test (Starling) or p1.test (Prosody, when
//! installed); each body carries its send time.

mod common;

use std::time::{Duration, Instant};

use common::Client;
use common::dns::TestDns;
use common::federation::{Publish, instance, recv_until};

const BURST: usize = 20_000;
const PACED: usize = 2_000;
const PACE: Duration = Duration::from_micros(500);

async fn measure(label: &str, alice: &mut Client, bob: &mut Client, to: &str) {
    // Warm the link (connection set-up is not measured).
    alice.send(&format!("<message to='{to}' type='chat'><body>warm</body></message>")).await;
    recv_until(bob, |s| s.name() == "message").await;

    let start = Instant::now();
    let mut batch = String::new();
    for i in 0..BURST {
        batch.push_str(&format!("<message to='{to}' type='chat' id='b{i}'><body>burst {i}</body></message>"));
        if batch.len() > 32 * 1024 {
            alice.send(&batch).await;
            batch.clear();
        }
    }
    alice.send(&batch).await;
    let mut received = 0;
    while received < BURST {
        if bob.recv().await.name() == "message" {
            received += 1;
        }
    }
    let elapsed = start.elapsed();
    let rate = BURST as f64 / elapsed.as_secs_f64();

    let origin = Instant::now();
    let sender = async {
        for i in 0..PACED {
            let sent = origin.elapsed().as_micros();
            alice.send(&format!("<message to='{to}' type='chat' id='p{i}'><body>{sent}</body></message>")).await;
            tokio::time::sleep(PACE).await;
        }
    };
    let receiver = async {
        let mut latencies = Vec::with_capacity(PACED);
        while latencies.len() < PACED {
            let stanza = bob.recv().await;
            if stanza.name() != "message" {
                continue;
            }
            let sent: u128 = stanza.get_child("body", "jabber:client").and_then(|b| b.text().parse().ok()).unwrap_or(0);
            latencies.push(origin.elapsed().as_micros().saturating_sub(sent));
        }
        latencies
    };
    let ((), mut latencies) = tokio::join!(sender, receiver);
    latencies.sort_unstable();
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)] as f64 / 1000.0;
    println!(
        "{label}: burst {BURST} msgs in {:.2} s = {rate:.0} msg/s; paced {PACED} at 1 per {PACE:?}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        elapsed.as_secs_f64(),
        pick(0.5),
        pick(0.99),
        pick(1.0),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly in release mode"]
async fn s2s_link_throughput_and_latency() {
    let dns = TestDns::start().await;
    let a = instance("a.test", &dns, None, Publish::StartTls, |c| {
        c.limits.session_queue = 100_000;
        c.s2s.queue = 100_000;
    })
    .await;
    let b = instance("b.test", &dns, None, Publish::StartTls, |c| {
        c.limits.session_queue = 100_000;
        c.s2s.queue = 100_000;
    })
    .await;
    a.add_user_at("alice", "a.test", "pw").await;
    b.add_user_at("bob", "b.test", "pw").await;
    let mut alice = Client::login_at(a.addr(), "alice", "a.test", "pw", Some("r")).await;
    let mut bob = Client::login_at(b.addr(), "bob", "b.test", "pw", Some("r")).await;
    bob.presence(0).await;
    measure("starling -> starling", &mut alice, &mut bob, "bob@b.test/r").await;

    if common::peers::installed("/usr/bin/prosody") {
        let prosody = common::peers::prosody("p1.test", &dns, &["bob"]).await;
        let mut pbob = Client::login_plain_at(prosody.c2s, "bob", "p1.test", "pw", "r", false).await;
        pbob.presence(0).await;
        measure("starling -> prosody", &mut alice, &mut pbob, "bob@p1.test/r").await;
    }
}

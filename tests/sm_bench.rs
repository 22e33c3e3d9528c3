//! Stream management figures (ignored; figures are printed, never asserted):
//! heap held per hibernating session, and the latency of `<resume/>` to `<resumed/>`.
//!
//! `cargo test --release --test sm_bench -- --ignored --nocapture`
//!
//! The memory figure comes from the process's resident set (server and test clients
//! share it): first as many sessions without stream management log in, get a message
//! and close, then the same number with resumable stream management get a message,
//! lose their connections and hibernate. The growth between the two, per session, is
//! an upper bound on what a hibernating session holds (its task, queue, handle,
//! resumption entry and one unacknowledged message): the allocator's per-thread arenas
//! do not reuse all that the first round freed, and keep the second round's connection
//! buffers.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Conn, TestServer};

/// Resident set size of this process (server and test clients), in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

const NS_SM: &str = "urn:xmpp:sm:3";
const SESSIONS: usize = 500;

async fn enabled_client(server: &TestServer, resource: &str) -> (Client, String) {
    let mut client = server.login("alice", resource).await;
    client.send(&format!("<enable xmlns='{NS_SM}' resume='true'/>")).await;
    let enabled = client.recv().await;
    (client, enabled.attr("id").expect("resumable").to_owned())
}

async fn all_hibernating(server: &TestServer, count: usize) {
    let sessions = &server.server.as_ref().expect("running").sessions;
    while sessions.all().iter().filter(|s| s.is_hibernating()).count() < count {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures"]
async fn hibernated_session_memory_and_resume_latency() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let mut bob = server.login("bob", "b").await;
    // Warm up pools and caches so they are not counted per session.
    for i in 0..10 {
        let (mut client, _) = enabled_client(&server, &format!("warm{i}")).await;
        client.conn.send("</stream:stream>").await;
    }
    bob.sync().await;
    // The same churn without hibernation, so the allocator holds what connections need.
    let mut plain = Vec::new();
    for i in 0..SESSIONS {
        plain.push(server.login("alice", &format!("p{i}")).await);
    }
    for i in 0..SESSIONS {
        bob.send(&format!("<message to='alice@localhost/p{i}' type='chat'><body>plain {i}</body></message>")).await;
    }
    for client in &mut plain {
        loop {
            if client.recv().await.name() == "message" {
                break;
            }
        }
        client.conn.send("</stream:stream>").await;
    }
    for client in &mut plain {
        client.conn.stream_error().await;
    }
    drop(plain);
    bob.sync().await;
    let before = rss();

    let mut ids = Vec::new();
    let mut clients = Vec::new();
    for i in 0..SESSIONS {
        let (client, id) = enabled_client(&server, &format!("r{i}")).await;
        ids.push(id);
        clients.push(client);
    }
    for i in 0..SESSIONS {
        bob.send(&format!("<message to='alice@localhost/r{i}' type='chat'><body>unacked {i}</body></message>")).await;
    }
    for client in &mut clients {
        loop {
            if client.recv().await.name() == "message" {
                break;
            }
        }
    }
    drop(clients);
    all_hibernating(&server, SESSIONS).await;
    let hibernating = rss();
    println!(
        "resident memory per hibernating session (one unacked message; upper bound): {} bytes",
        hibernating.saturating_sub(before) / SESSIONS
    );

    let mut latencies = Vec::new();
    let mut resumed = Vec::new();
    for id in ids.iter().take(50) {
        let mut conn = Conn::tcp(server.addr()).await;
        conn.open().await;
        conn.starttls().await;
        conn.auth("alice", "pw").await.expect("authenticated");
        conn.open().await;
        let start = Instant::now();
        conn.send(&format!("<resume xmlns='{NS_SM}' previd='{id}' h='0'/>")).await;
        let answer = conn.recv().await;
        latencies.push(start.elapsed());
        assert!(answer.is("resumed", NS_SM), "{answer:?}");
        resumed.push(conn);
    }
    latencies.sort();
    println!(
        "resume latency (<resume/> to <resumed/>, loopback): p50 {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
}

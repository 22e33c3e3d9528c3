//! Reconnect figures (ignored; printed, never asserted): the time from TCP connect to
//! a usable session on loopback, for a password login (legacy SASL with a stream
//! restart and a bind request, and SASL2 with Bind 2), a FAST token login (XEP-0484),
//! and the same two SASL2 logins resuming a hibernating session (XEP-0198) instead.
//!
//! `cargo test --release --test login_bench -- --ignored --nocapture`
//!
//! Client and server share the process and its two cores; every login is sequential.

mod common;

use std::time::{Duration, Instant};

use common::sasl2::{NS_FAST, NS_SASL2, authenticate_scram, authenticate_token, issued_token, tls_conn};
use common::scram::{Hash, ScramClient};
use common::{Client, Conn, TestServer};
use minidom::Element;

const LOGINS: usize = 300;
const NS_SM: &str = "urn:xmpp:sm:3";
const BIND: &str = "<bind xmlns='urn:xmpp:bind:0'><tag>bench</tag></bind>";
const BIND_SM: &str =
    "<bind xmlns='urn:xmpp:bind:0'><tag>bench</tag><enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>";

fn report(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)].as_secs_f64() * 1000.0;
    println!("{name:<44} p50 {:>6.2} ms   p99 {:>6.2} ms   ({} logins)", at(0.5), at(0.99), times.len());
}

fn expect_success(answer: &Element) {
    assert_eq!((answer.name(), answer.ns().as_str()), ("success", NS_SASL2), "{answer:?}");
}

async fn scram_login(server: &TestServer, inline: &str) -> (Conn, Element) {
    let (mut conn, _) = tls_conn(server).await;
    let client = ScramClient::new(Hash::Sha256, "alice", "pw", None);
    let success = authenticate_scram(&mut conn, "SCRAM-SHA-256", client, inline).await;
    expect_success(&success);
    (conn, success)
}

async fn token_login(server: &TestServer, token: &str, count: usize, inline: &str) -> (Conn, Element) {
    let (mut conn, _) = tls_conn(server).await;
    let fast = format!("<fast xmlns='{NS_FAST}' count='{count}'/>{inline}");
    let success = authenticate_token(&mut conn, "alice", "HT-SHA-256-EXPR", token, &fast).await;
    expect_success(&success);
    (conn, success)
}

/// Waits until alice's resumable session hibernates after its connection dropped.
async fn hibernating(server: &TestServer) {
    let sessions = &server.server.as_ref().expect("running").sessions;
    while !sessions.all().iter().any(|s| s.is_hibernating()) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn reconnect_time_password_token_and_resumption() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;

    let mut times = Vec::new();
    for _ in 0..LOGINS {
        let started = Instant::now();
        let client = Client::login(server.addr(), "alice", "pw", None).await;
        times.push(started.elapsed());
        drop(client);
    }
    report("legacy SASL SCRAM-SHA-256 + restart + bind", times);

    let mut times = Vec::new();
    for _ in 0..LOGINS {
        let started = Instant::now();
        let (_conn, success) = scram_login(&server, BIND).await;
        assert!(success.get_child("bound", "urn:xmpp:bind:0").is_some());
        times.push(started.elapsed());
    }
    report("SASL2 SCRAM-SHA-256 + Bind 2", times);

    let request = format!("<request-token xmlns='{NS_FAST}' mechanism='HT-SHA-256-EXPR'/>");
    let (_conn, success) = scram_login(&server, &request).await;
    let token = issued_token(&success).expect("token");
    let mut times = Vec::new();
    for count in 1..=LOGINS {
        let started = Instant::now();
        let (_conn, success) = token_login(&server, &token, count, BIND).await;
        assert!(success.get_child("bound", "urn:xmpp:bind:0").is_some());
        times.push(started.elapsed());
    }
    report("SASL2 FAST HT-SHA-256-EXPR + Bind 2", times);

    let (conn, success) = scram_login(&server, BIND_SM).await;
    let previd = success
        .get_child("bound", "urn:xmpp:bind:0")
        .and_then(|b| b.get_child("enabled", NS_SM))
        .and_then(|e| e.attr("id"))
        .expect("resumable")
        .to_owned();
    drop(conn);
    let resume = format!("<resume xmlns='{NS_SM}' previd='{previd}' h='0'/>");
    let mut scram_times = Vec::new();
    let mut token_times = Vec::new();
    for count in 1..=LOGINS {
        hibernating(&server).await;
        let started = Instant::now();
        let (conn, success) = if count % 2 == 0 {
            scram_login(&server, &resume).await
        } else {
            token_login(&server, &token, LOGINS + count, &resume).await
        };
        assert!(success.get_child("resumed", NS_SM).is_some(), "{success:?}");
        let elapsed = started.elapsed();
        if count % 2 == 0 {
            scram_times.push(elapsed)
        } else {
            token_times.push(elapsed)
        }
        drop(conn);
    }
    report("SASL2 SCRAM-SHA-256 + SM resumption", scram_times);
    report("SASL2 FAST HT-SHA-256-EXPR + SM resumption", token_times);
}

//! `kill -9` of the server in the middle of a message load (issue: reliability). On
//! restart every message the server acknowledged with XEP-0198 `<a h/>` is in the
//! offline recipient's offline store and in both archives, each exactly once.

mod common;

use std::collections::HashSet;

use common::child::{spawn_server, starling, write_config_with_modules};
use common::mam::{Answer, mam};
use common::{Client, HOST};

const NS_SM: &str = "urn:xmpp:sm:3";

/// Messages per `<r/>`.
const BATCH: u32 = 50;
/// Acknowledged messages after which the server is killed.
const KILL_AFTER: u32 = 1500;

fn message(i: u32) -> String {
    format!("<message to='bob@{HOST}' type='chat' id='m{i}'><body>m{i}</body></message>")
}

/// The `h` of the next `<a/>`, skipping anything else.
async fn next_ack(client: &mut Client) -> u32 {
    loop {
        let stanza = client.recv().await;
        if stanza.is("a", NS_SM) {
            return stanza.attr("h").and_then(|h| h.parse().ok()).expect("h");
        }
    }
}

/// Every body in `owner`'s archive, oldest first.
async fn archived_bodies(owner: &mut Client) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut after = String::new();
    loop {
        let set = if after.is_empty() {
            "<max>250</max>".to_owned()
        } else {
            format!("<max>250</max><after>{after}</after>")
        };
        let page: Answer = mam(owner, "", "", &set, "").await.expect("archive");
        bodies.extend(page.bodies.iter().cloned());
        if page.complete() || page.ids.is_empty() {
            return bodies;
        }
        after = page.rsm("last").expect("last");
    }
}

/// Each of `m0 .. m{acked-1}` appears in `bodies` exactly once, and nothing twice.
fn assert_each_once(what: &str, bodies: &[String], acked: u32) {
    let mut seen = HashSet::new();
    for body in bodies {
        assert!(seen.insert(body.as_str()), "{what}: {body} is there twice");
    }
    let missing: Vec<u32> = (0..acked).filter(|i| !seen.contains(format!("m{i}").as_str())).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} acknowledged messages lost, first {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9() {
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config_with_modules(
        dir.path(),
        &["disco", "ping", "roster", "offline", "mam"],
        "[modules.offline]\nmax_per_user = 100000\n",
    );
    for user in ["alice", "bob"] {
        assert!(starling(&config, &["user", "add", &format!("{user}@{HOST}")], Some("pw\n")).status.success());
    }
    let (server, addr, _) = spawn_server(&config);
    let mut alice = Client::login(addr, "alice", "pw", Some("load")).await;
    alice.send(&format!("<enable xmlns='{NS_SM}'/>")).await;
    assert!(alice.recv().await.is("enabled", NS_SM));

    // Keep one batch in flight beyond the acknowledged ones, so writes are pending
    // when the server dies.
    let mut sent = 0;
    let mut acked = 0;
    while acked < KILL_AFTER {
        let batch: String = (sent..sent + BATCH).map(message).collect();
        alice.send(&format!("{batch}<r xmlns='{NS_SM}'/>")).await;
        sent += BATCH;
        if sent > BATCH {
            acked = next_ack(&mut alice).await;
        }
    }
    server.kill_hard().await;
    drop(alice);

    let (_server, addr, _) = spawn_server(&config);
    let mut bob = Client::login(addr, "bob", "pw", Some("phone")).await;
    bob.presence(0).await;
    let offline: Vec<String> = bob
        .sync()
        .await
        .iter()
        .filter(|s| s.name() == "message")
        .map(|m| m.get_child("body", "jabber:client").map(|b| b.text()).unwrap_or_default())
        .collect();
    assert_each_once("offline store", &offline, acked);
    assert_each_once("recipient's archive", &archived_bodies(&mut bob).await, acked);
    let mut alice = Client::login(addr, "alice", "pw", Some("desk")).await;
    assert_each_once("sender's archive", &archived_bodies(&mut alice).await, acked);
}

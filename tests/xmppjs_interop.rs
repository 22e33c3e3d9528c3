//! Interop with an independent client implementation: xmpp.js (`@xmpp/client`, pinned
//! in tests/web/package.json) logs in with SASL2 (XEP-0388) over STARTTLS, binds with
//! Bind 2 (XEP-0386) and gets a FAST token (XEP-0484, HT-SHA-256-NONE); a second
//! xmpp.js client then comes online with that token and a wrong password, and sends a
//! message that a TCP client receives from the JID it bound; a third, with the token
//! altered, is refused. tests/web/xmppjs_fast.mjs drives the clients and prints one
//! JSON line per phase; XMPPJS_DEBUG=1 (set here) makes it write the raw XML to
//! stderr, shown when the test fails (or always with XMPPJS_SHOW=1 and --nocapture).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{HOST, TestServer};
use serde_json::Value;

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web")
}

/// Whether node and @xmpp/client are installed; in CI their absence fails.
fn xmppjs_available() -> bool {
    let package = web_dir().join("node_modules/@xmpp/client/package.json");
    let node = std::process::Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    let present = node && package.exists();
    if !present {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "node or tests/web/node_modules/@xmpp/client missing: run tests/interop/install-browser.sh"
        );
        eprintln!("skipped: node or tests/web/node_modules missing (tests/interop/install-browser.sh)");
    }
    present
}

/// Reading the script's report lines.
trait Report {
    fn str(&self, key: &str) -> Option<&str>;
    fn bool(&self, key: &str) -> bool;
    fn array(&self, key: &str) -> &[Value];
}

impl Report for Value {
    fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    fn bool(&self, key: &str) -> bool {
        self.get(key).and_then(Value::as_bool) == Some(true)
    }

    fn array(&self, key: &str) -> &[Value] {
        self.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
    }
}

/// The resource of a full JID and its Bind 2 prefix (before the random `~suffix`).
fn resource_prefix(jid: &str) -> (&str, &str) {
    let resource = jid.split_once('/').map_or("", |(_, r)| r);
    (resource, resource.split('~').next().unwrap_or(resource))
}

#[tokio::test]
async fn xmppjs_logs_in_with_sasl2_bind2_and_again_with_a_fast_token() {
    if !xmppjs_available() {
        return;
    }
    let server = TestServer::start().await;
    server.add_user("alice", "xmppjs-pw").await;
    server.add_user("bob", "pw").await;
    let mut bob = server.login("bob", "tcp").await;
    // Available, so that messages to the bare JID reach this session.
    bob.presence(0).await;
    bob.sync().await;

    let cert = server.dir.path().join("certs").join(format!("{HOST}.crt"));
    assert!(cert.exists(), "no generated certificate at {}", cert.display());
    let script = tokio::process::Command::new("node")
        .current_dir(web_dir())
        .arg(web_dir().join("xmppjs_fast.mjs"))
        .arg(format!("xmpp://{}", server.addr()))
        .arg(HOST)
        .arg("alice")
        .arg("xmppjs-pw")
        .arg(format!("bob@{HOST}"))
        // The server's self-signed certificate, trusted by this child process only.
        .env("NODE_EXTRA_CA_CERTS", &cert)
        .env("XMPPJS_DEBUG", "1")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), script)
        .await
        .expect("xmppjs_fast.mjs within 90 seconds")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = format!("stdout:\n{stdout}\nstderr (raw XML):\n{stderr}");
    let reports: Vec<Value> = stdout
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("bad report line {line:?}: {e}\n{context}")))
        .collect();
    if std::env::var_os("XMPPJS_SHOW").is_some() {
        eprintln!("{context}");
    }
    let phase = |n: u64| reports.iter().find(|r| r.get("phase").and_then(Value::as_u64) == Some(n));

    // Phase 1: password, SASL2, Bind 2, a token requested and received.
    let one = phase(1).unwrap_or_else(|| panic!("no phase 1 report\n{context}"));
    assert!(one.bool("ok"), "phase 1 did not come online: {:?}\n{context}", one.str("error"));
    let attempts = one.array("attempts");
    assert_eq!(attempts.len(), 1, "phase 1: one SASL2 authentication\n{context}");
    let mechanism = attempts[0].str("mechanism").unwrap_or_default();
    assert!(mechanism.starts_with("SCRAM-"), "phase 1 used {mechanism}\n{context}");
    assert_eq!(attempts[0].str("result"), Some("success"), "{context}");
    assert!(one.bool("secure"), "phase 1 not over TLS\n{context}");
    assert!(one.bool("bind2_offered") && one.bool("bind2"), "phase 1 did not bind with Bind 2\n{context}");
    let jid1 = one.str("jid").unwrap_or_default().to_owned();
    let (resource1, prefix1) = resource_prefix(&jid1);
    assert!(jid1.starts_with(&format!("alice@{HOST}/")), "phase 1 bound {jid1}");
    // Bind 2 keeps the client's tag as the start of the resource (src/c2s/bind2.rs).
    assert!(prefix1.starts_with("xmppjs."), "phase 1 resource {resource1}");
    assert!(
        one.array("fast_offered").iter().any(|m| m.as_str() == Some("HT-SHA-256-NONE")),
        "phase 1: the server does not offer FAST with HT-SHA-256-NONE inline in SASL2 (XEP-0484 §3)\n{context}"
    );
    assert_eq!(attempts[0].str("request_token"), Some("HT-SHA-256-NONE"), "{context}");
    assert!(one.bool("token_received"), "phase 1 got no FAST token in <success/>\n{context}");
    assert_eq!(one.str("token_mechanism"), Some("HT-SHA-256-NONE"), "{context}");
    assert!(one.str("token_expiry").is_some(), "the token has no expiry (XEP-0484 §3.3)\n{context}");

    // Phase 2: the token and a wrong password; FAST first, and it succeeds.
    let two = phase(2).unwrap_or_else(|| panic!("no phase 2 report\n{context}"));
    assert!(two.str("failure").is_none(), "phase 2 (FAST with the token): {:?}\n{context}", two.str("failure"));
    assert!(two.bool("ok"), "phase 2 did not come online: {:?}\n{context}", two.str("error"));
    let attempts = two.array("attempts");
    assert_eq!(attempts.len(), 1, "phase 2: only the FAST attempt, no password fallback\n{context}");
    assert_eq!(attempts[0].str("mechanism"), Some("HT-SHA-256-NONE"), "{context}");
    assert!(attempts[0].bool("fast"), "phase 2 <authenticate/> without <fast/>\n{context}");
    assert_eq!(attempts[0].str("result"), Some("success"), "{context}");
    assert!(two.bool("additional_data"), "the HT <success/> lacks the Responder's hashed token\n{context}");
    assert!(two.bool("bind2"), "phase 2 did not bind with Bind 2\n{context}");
    let jid2 = two.str("jid").unwrap_or_default().to_owned();
    let (resource2, prefix2) = resource_prefix(&jid2);
    assert_eq!(prefix1, prefix2, "same user-agent id, same Bind 2 prefix: {resource1} then {resource2}");
    assert_ne!(resource1, resource2, "a fresh random suffix");

    // Phase 3: the token altered by one character: refused, and so is the password.
    let three = phase(3).unwrap_or_else(|| panic!("no phase 3 report\n{context}"));
    assert!(three.str("failure").is_none(), "phase 3 (altered token): {:?}\n{context}", three.str("failure"));
    assert!(!three.bool("ok"), "online with an altered token\n{context}");
    let attempts = three.array("attempts");
    assert_eq!(attempts.first().and_then(|a| a.str("mechanism")), Some("HT-SHA-256-NONE"), "{context}");
    assert!(
        attempts[0].str("result").is_some_and(|r| r.starts_with("failure: not-authorized")),
        "phase 3: the altered token got {:?}\n{context}",
        attempts[0].str("result")
    );
    assert!(output.status.success(), "xmppjs_fast.mjs exited with {}\n{context}", output.status);

    // The server routes as the FAST session's full JID.
    let body = format!("xmpp.js FAST {jid2}");
    let message = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let message = bob.recv_message().await;
            if message.get_child("body", "jabber:client").map(|b| b.text()).as_deref() == Some(body.as_str()) {
                break message;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("bob got no message from the FAST session\n{context}"));
    assert_eq!(message.attr("from"), Some(jid2.as_str()), "{}", String::from(&message));
}

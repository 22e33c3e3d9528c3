//! A third-party client library drives the server: slixmpp (PyPI, installed by
//! `.ci/run` from tests/interop/requirements.txt) logs in two accounts over STARTTLS
//! with SCRAM, uses disco and ping, and exchanges messages; pages through its message
//! archive (XEP-0313) and publishes an OMEMO device list (XEP-0384, XEP-0163); resumes
//! a stream management session (XEP-0198) after its TCP connection was cut; registers
//! an account in-band (XEP-0077) and runs administration commands (XEP-0050, XEP-0133);
//! creates, talks in and kicks from a group chat room with its XEP-0045 plugin.

mod common;

use common::peers::slixmpp_available;
use common::{HOST, TestServer};

/// Runs `tests/interop/<script>` against `server` (address, port, domain as arguments)
/// within `seconds`, asserts it succeeded and returns what it printed.
async fn run_scenario(server: &TestServer, script: &str, seconds: u64) -> String {
    let path = format!("{}/tests/interop/{script}", env!("CARGO_MANIFEST_DIR"));
    let addr = server.addr();
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(seconds),
        tokio::process::Command::new("python3")
            .args([path.as_str(), &addr.ip().to_string(), &addr.port().to_string(), HOST])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("slixmpp script finished in time")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "slixmpp scenario {script} failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slixmpp_clients_log_in_and_chat() {
    if !slixmpp_available() {
        return;
    }
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let stdout = run_scenario(&server, "slix_chat.py", 90).await;
    assert!(stdout.contains("ok: alice got bob's reply"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slixmpp_pages_the_archive_and_publishes_omemo_devices() {
    if !slixmpp_available() {
        return;
    }
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let stdout = run_scenario(&server, "slix_mam_pep.py", 120).await;
    assert!(stdout.contains("ok: bob fetched the devicelist"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slixmpp_resumes_a_stream_after_its_connection_was_cut() {
    if !slixmpp_available() {
        return;
    }
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let stdout = run_scenario(&server, "slix_sm.py", 90).await;
    assert!(stdout.contains("ok: alice got the message sent while she was away, once"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slixmpp_registers_in_band_and_administers_accounts() {
    if !slixmpp_available() {
        return;
    }
    let server = TestServer::start_with(|c| {
        c.server.admins = vec!["admin@localhost".into()];
        c.modules.settings.insert("register".into(), toml::from_str("mode = 'open'").expect("settings"));
    })
    .await;
    server.add_user("admin", "pw").await;
    let stdout = run_scenario(&server, "slix_admin.py", 120).await;
    assert!(stdout.contains("ok: registered in-band as newbie"), "{stdout}");
    assert!(stdout.contains("ok: carol logged in"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slixmpp_uses_a_room_and_kicks() {
    if !slixmpp_available() {
        return;
    }
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let stdout = run_scenario(&server, "slix_muc.py", 90).await;
    assert!(stdout.contains("ok: bob was kicked with 307"), "{stdout}");
}

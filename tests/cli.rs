//! The `starling` binary as an admin uses it: check-config, migrate, user add/passwd/
//! list/del, and `serve` as a child process that a client logs in to and that shuts
//! down cleanly on SIGTERM.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::Client;
use common::child::{BIN, spawn_server, starling, write_config};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn check_config_names_the_bad_key() {
    let dir = tempfile::tempdir().expect("dir");
    let good = write_config(dir.path(), "");
    let ok = starling(&good, &["check-config"], None);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let bad = write_config(dir.path(), "[limits]\nmax_stanza_bites = 3\n");
    let failed = starling(&bad, &["check-config"], None);
    assert_eq!(failed.status.code(), Some(1));
    let message = String::from_utf8_lossy(&failed.stderr);
    assert!(message.contains("max_stanza_bites"), "{message}");
    let unknown_module = write_config(dir.path(), "").to_string_lossy().into_owned();
    let text = std::fs::read_to_string(&unknown_module).expect("read").replace("\"ping\"]", "\"pong\"]");
    std::fs::write(&unknown_module, text).expect("write");
    let failed = starling(Path::new(&unknown_module), &["check-config"], None);
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("pong"));
}

#[test]
fn archive_purge_needs_a_target_and_the_mam_module() {
    let dir = tempfile::tempdir().expect("dir");
    let without = write_config(dir.path(), "");
    let refused = starling(&without, &["archive", "purge", "--all"], None);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("mam"));
    let config = write_config(dir.path(), "").to_string_lossy().into_owned();
    let text = std::fs::read_to_string(&config).expect("read").replace("\"ping\"]", "\"ping\", \"mam\"]");
    std::fs::write(&config, text).expect("write");
    let config = Path::new(&config);
    assert_eq!(starling(config, &["archive", "purge"], None).status.code(), Some(2), "--user or --all");
    let all = starling(config, &["archive", "purge", "--all"], None);
    assert!(all.status.success(), "{}", String::from_utf8_lossy(&all.stderr));
    assert_eq!(stdout(&all), "deleted 0 archived messages\n");
    let one = starling(config, &["archive", "purge", "--user", "Alice@LocalHost", "--older-than-days", "30"], None);
    assert_eq!(stdout(&one), "deleted 0 archived messages of alice@localhost\n");
}

#[test]
fn user_commands_manage_accounts() {
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(dir.path(), "");
    assert!(starling(&config, &["migrate"], None).status.success());
    let password_file = dir.path().join("pw");
    std::fs::write(&password_file, "secret\n").expect("pw");
    let added = starling(
        &config,
        &["user", "add", "Alice@LocalHost", "--password-file", password_file.to_str().expect("utf8")],
        None,
    );
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    assert!(stdout(&added).contains("alice@localhost"));
    let again = starling(&config, &["user", "add", "alice@localhost"], Some("other\n"));
    assert_eq!(again.status.code(), Some(1), "duplicate must fail");
    assert!(starling(&config, &["user", "add", "bob@localhost"], Some("pw2\n")).status.success());
    assert!(starling(&config, &["user", "add", "carol@elsewhere"], Some("pw\n")).status.code() == Some(1));
    let range = starling(&config, &["user", "add-range", "u", "1", "3", "localhost"], Some("pw\n"));
    assert_eq!(stdout(&range), "created 3 accounts\n");
    let listed = stdout(&starling(&config, &["user", "list"], None));
    assert_eq!(listed, "alice@localhost\nbob@localhost\nu1@localhost\nu2@localhost\nu3@localhost\n");
    assert!(starling(&config, &["user", "passwd", "bob@localhost"], Some("pw3\n")).status.success());
    assert!(starling(&config, &["user", "del", "bob@localhost"], None).status.success());
    assert_eq!(starling(&config, &["user", "del", "bob@localhost"], None).status.code(), Some(1));
    assert_eq!(
        stdout(&starling(&config, &["user", "list"], None)),
        "alice@localhost\nu1@localhost\nu2@localhost\nu3@localhost\n"
    );
}

#[test]
fn doap_command_matches_the_committed_file() {
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(dir.path(), "");
    let doap = stdout(&starling(&config, &["doap"], None));
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/doap.xml")).expect("doap.xml");
    assert_eq!(doap, committed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_accepts_a_login_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(dir.path(), "");
    assert!(starling(&config, &["user", "add", "alice@localhost"], Some("pw\n")).status.success());
    let (child, addr, log) = spawn_server(&config);
    assert!(log.contains("self-signed") || dir.path().join("certs").exists(), "{log}");
    let mut alice = Client::login(addr, "alice", "pw", Some("cli")).await;
    alice.sync().await;
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
    assert!(status.success());
    assert_eq!(alice.conn.stream_error().await.as_deref(), Some("system-shutdown"));
    let exit = child.wait().await;
    assert!(exit.success(), "server exit status {exit:?}");
}

/// Another OS user (nobody) cannot use the socket even with a readable configuration.
/// Only checked when the tests run as root, where `setpriv` can switch users.
async fn refused_to_other_users(dir: &Path, config: &Path) {
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("not root (or no setpriv): the other-user check is skipped");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    for path in [dir, config] {
        let mode = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let (config, bin) = (config.to_owned(), BIN);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin, "--config"])
            .arg(&config)
            .arg("status")
            .output()
            .expect("setpriv runs")
    })
    .await
    .expect("join");
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The commands that act on the running server, over its admin socket: status,
/// sessions, announce, the user commands (which then end sessions), reload (by command
/// and by SIGHUP) and shutdown; and exit code 3 once the server is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_drives_the_running_server_through_its_admin_socket() {
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(dir.path(), "");
    assert_eq!(starling(&config, &["status"], None).status.code(), Some(3), "not running yet");
    assert!(starling(&config, &["user", "add", "alice@localhost"], Some("pw\n")).status.success());
    let (child, addr, _) = spawn_server(&config);
    let socket = dir.path().join("admin.sock");
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::metadata(&socket).expect("socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "only the server's OS user may use it");

    // The command line reads its own copy, so that the server's file can be broken
    // below without breaking the command line too.
    let cli_config = dir.path().join("cli.toml");
    std::fs::copy(&config, &cli_config).expect("copied");
    let run = |args: &'static [&'static str], stdin: Option<&'static str>| {
        let config = cli_config.clone();
        tokio::task::spawn_blocking(move || starling(&config, args, stdin))
    };
    let status = run(&["status"], None).await.expect("join");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    refused_to_other_users(dir.path(), &cli_config).await;
    assert!(stdout(&status).starts_with("Starling ") && stdout(&status).contains("sessions: 0"), "{}", stdout(&status));

    // An account made through the socket exists at once for the running server.
    let added = run(&["user", "add", "bob@localhost"], Some("bobpw\n")).await.expect("join");
    assert_eq!(stdout(&added), "created bob@localhost\n");
    let mut bob = Client::login(addr, "bob", "bobpw", Some("desk")).await;
    bob.presence(0).await;
    bob.sync().await;
    let sessions = run(&["sessions"], None).await.expect("join");
    assert_eq!(stdout(&sessions), "bob@localhost/desk\tavailable\n");

    let announced = run(&["announce", "maintenance at noon"], None).await.expect("join");
    assert_eq!(stdout(&announced), "announced to 1 sessions\n");
    let headline = bob.recv_message().await;
    assert_eq!(headline.attr("type"), Some("headline"));
    assert_eq!(headline.get_child("body", "jabber:client").map(|b| b.text()).as_deref(), Some("maintenance at noon"));

    // Live settings apply, the others are reported.
    let text = std::fs::read_to_string(&config).expect("config");
    let changed = text.replace("[log]\nlevel = \"info\"", "[log]\nlevel = \"debug\"") + "[limits]\nauth_failures = 3\n";
    std::fs::write(&config, changed).expect("config written");
    let reloaded = run(&["reload"], None).await.expect("join");
    assert!(reloaded.status.success(), "{}", String::from_utf8_lossy(&reloaded.stderr));
    assert_eq!(stdout(&reloaded), "reloaded: certificates, [limits]\nchanged, needs a restart: [log]\n");
    // The new limit is in force: three failures from this address, then even the right
    // password is refused for now.
    for _ in 0..3 {
        let mut conn = common::Conn::tcp(addr).await;
        conn.open().await;
        conn.starttls().await;
        assert!(conn.auth("alice", "wrong").await.is_err());
    }
    let mut conn = common::Conn::tcp(addr).await;
    conn.open().await;
    conn.starttls().await;
    assert_eq!(conn.auth("alice", "pw").await.err().as_deref(), Some("temporary-auth-failure"));
    // A broken file changes nothing and says why.
    let good = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, "[server\n").expect("config written");
    let broken = run(&["reload"], None).await.expect("join");
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&broken.stderr).contains("reload failed"),
        "{}",
        String::from_utf8_lossy(&broken.stderr)
    );
    // SIGHUP reloads too: with the limit raised again, the right password works.
    std::fs::write(&config, good.replace("auth_failures = 3", "auth_failures = 100")).expect("config written");
    let hup = Command::new("kill").arg("-HUP").arg(child.id().to_string()).status().expect("kill");
    assert!(hup.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut conn = common::Conn::tcp(addr).await;
        conn.open().await;
        conn.starttls().await;
        match conn.auth("alice", "pw").await {
            Ok(()) => break,
            Err(condition) => {
                assert_eq!(condition, "temporary-auth-failure");
                assert!(std::time::Instant::now() < deadline, "SIGHUP did not reload");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }

    // Disabling through the socket ends the account's session.
    let disabled = run(&["user", "disable", "bob@localhost"], None).await.expect("join");
    assert_eq!(stdout(&disabled), "disabled bob@localhost\n");
    assert!(bob.conn.stream_error().await.is_some(), "bob's session ended");

    let mut bob_again = {
        assert!(run(&["user", "enable", "bob@localhost"], None).await.expect("join").status.success());
        Client::login(addr, "bob", "bobpw", Some("again")).await
    };
    let stopped = run(&["shutdown", "--message", "back soon"], None).await.expect("join");
    assert_eq!(stdout(&stopped), "shutting down in 0 s\n");
    let notice = bob_again.recv_message().await;
    assert_eq!(notice.get_child("body", "jabber:client").map(|b| b.text()).as_deref(), Some("back soon"));
    assert_eq!(bob_again.conn.stream_error().await.as_deref(), Some("system-shutdown"));
    let exit = child.wait().await;
    assert!(exit.success(), "server exit status {exit:?}");
    assert!(!socket.exists(), "the socket file is removed on shutdown");
    assert_eq!(starling(&config, &["sessions"], None).status.code(), Some(3));
}

#[test]
fn user_disable_and_enable() {
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(dir.path(), "");
    assert!(starling(&config, &["user", "add", "alice@localhost"], Some("pw\n")).status.success());
    let disabled = starling(&config, &["user", "disable", "Alice@localhost"], None);
    assert!(disabled.status.success(), "{}", String::from_utf8_lossy(&disabled.stderr));
    assert_eq!(stdout(&disabled), "disabled alice@localhost\n");
    assert_eq!(stdout(&starling(&config, &["user", "list"], None)), "alice@localhost (disabled)\n");
    let enabled = starling(&config, &["user", "enable", "alice@localhost"], None);
    assert_eq!(stdout(&enabled), "enabled alice@localhost\n");
    assert_eq!(stdout(&starling(&config, &["user", "list", "localhost"], None)), "alice@localhost\n");
    assert_eq!(starling(&config, &["user", "disable", "nobody@localhost"], None).status.code(), Some(1));
    assert_eq!(starling(&config, &["user", "enable", "alice@elsewhere"], None).status.code(), Some(1));
    assert_eq!(starling(&config, &["user", "list", "elsewhere"], None).status.code(), Some(1));
    assert_eq!(starling(&config, &["user", "disable"], None).status.code(), Some(2), "usage");
}

#[test]
fn register_token_prints_a_stored_token() {
    let dir = tempfile::tempdir().expect("dir");
    let without = write_config(dir.path(), "");
    let refused = starling(&without, &["register", "token"], None);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("register"));

    let config = write_config(dir.path(), "").to_string_lossy().into_owned();
    let text = std::fs::read_to_string(&config).expect("read").replace("\"ping\"]", "\"ping\", \"register\"]");
    std::fs::write(&config, text).expect("write");
    let config = Path::new(&config);
    let issued =
        starling(config, &["register", "token", "--host", "localhost", "--uses", "3", "--valid-hours", "2"], None);
    assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));
    let token = stdout(&issued);
    let token = token.trim_end();
    assert_eq!(token.len(), 32, "{token:?}");
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    let other = stdout(&starling(config, &["register", "token"], None));
    assert_ne!(other.trim_end(), token, "every token is new");
    assert_eq!(starling(config, &["register", "token", "--host", "elsewhere"], None).status.code(), Some(1));
    assert_eq!(starling(config, &["register", "token", "--uses", "0"], None).status.code(), Some(1));

    // The token is in the database (as its digest), with its uses and expiry.
    let db = starling_api::Db::open(&format!("sqlite://{}", dir.path().join("db.sqlite").display()), 1).expect("db");
    let found = db
        .run_blocking(|c| {
            use diesel::prelude::*;
            starling_mod_register::store::register_tokens::table
                .select((
                    starling_mod_register::store::register_tokens::host,
                    starling_mod_register::store::register_tokens::uses_left,
                ))
                .filter(
                    starling_mod_register::store::register_tokens::token
                        .eq(starling_mod_register::store::digest(token)),
                )
                .first::<(String, i32)>(c)
        })
        .expect("stored");
    assert_eq!(found, ("localhost".to_owned(), 3));
}

#[test]
fn invite_create_prints_the_uri_and_landing_url() {
    let dir = tempfile::tempdir().expect("dir");
    let config =
        write_config(dir.path(), "[http]\npublic_url = \"https://chat.example/\"\n").to_string_lossy().into_owned();
    let text = std::fs::read_to_string(&config).expect("read").replace("\"ping\"]", "\"ping\", \"register\"]");
    std::fs::write(&config, text).expect("write");
    let config = Path::new(&config);

    let account = starling(config, &["invite", "create"], None);
    assert!(account.status.success(), "{}", String::from_utf8_lossy(&account.stderr));
    let lines: Vec<String> = stdout(&account).lines().map(str::to_owned).collect();
    let token = lines[0].strip_prefix("xmpp:localhost?register;preauth=").expect("an account URI").to_owned();
    assert_eq!(lines[1], format!("https://chat.example/invite/{token}"));

    assert_eq!(starling(config, &["invite", "create", "--user", "alice@localhost"], None).status.code(), Some(1));
    let added = starling(config, &["user", "add", "alice@localhost"], Some("a password\n"));
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let roster = starling(config, &["invite", "create", "--user", "alice@localhost", "--uses", "2"], None);
    assert!(roster.status.success(), "{}", String::from_utf8_lossy(&roster.stderr));
    let uri = stdout(&roster).lines().next().expect("uri").to_owned();
    let token = uri
        .strip_prefix("xmpp:alice@localhost?roster;preauth=")
        .and_then(|rest| rest.strip_suffix(";ibr=y"))
        .expect("a roster URI")
        .to_owned();

    let db = starling_api::Db::open(&format!("sqlite://{}", dir.path().join("db.sqlite").display()), 1).expect("db");
    let found =
        db.run_blocking(move |c| starling_mod_register::store::find(c, &token, 0)).expect("stored").expect("usable");
    assert_eq!(found.creator.as_deref(), Some("alice@localhost"));
    assert_eq!((found.kind, found.uses_left), (starling_mod_register::store::Kind::Roster, 2));
}

//! `starling` as a child process: the binary an admin runs, with a configuration in a
//! test's own directory, for tests that need a real process (signals, `kill -9`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_starling");

/// Writes `starling.toml` into `dir` (SQLite, certificates and admin socket there too)
/// with the disco and ping modules and `extra` appended.
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    write_config_with_modules(dir, &["disco", "ping"], extra)
}

/// As [`write_config`], with these modules enabled.
pub fn write_config_with_modules(dir: &Path, modules: &[&str], extra: &str) -> PathBuf {
    let path = dir.join("starling.toml");
    let modules = modules.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>().join(", ");
    let text = format!(
        r#"[server]
hosts = ["localhost"]
admin_socket = "{socket}"
[listen]
c2s = ["127.0.0.1:0"]
c2s_direct_tls = ["127.0.0.1:0"]
[tls]
cert_dir = "{certs}"
generate_self_signed = true
[storage]
url = "sqlite://{db}"
[s2s]
enabled = false
[log]
level = "info"
[modules]
enabled = [{modules}]
{extra}"#,
        certs = dir.join("certs").display(),
        db = dir.join("db.sqlite").display(),
        socket = dir.join("admin.sock").display(),
    );
    std::fs::write(&path, text).expect("config written");
    path
}

/// Runs one `starling` command to completion, with `stdin` as its input.
pub fn starling(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("stdin written");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("binary finishes")
}

/// A `starling serve` child process, killed if a test fails before it stops.
pub struct ServerProcess(Option<std::process::Child>);

impl ServerProcess {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, std::process::Child::id)
    }

    /// Waits for the process to exit on its own.
    pub async fn wait(mut self) -> std::process::ExitStatus {
        let mut child = self.0.take().expect("running");
        tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("wait")
    }

    /// `kill -9`: the process gets no chance to flush or close anything.
    pub async fn kill_hard(mut self) {
        let mut child = self.0.take().expect("running");
        child.kill().expect("SIGKILL");
        tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("wait");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where a child server listens for clients.
pub struct Listeners {
    /// Plain TCP with STARTTLS.
    pub starttls: std::net::SocketAddr,
    /// TLS from the first byte (XEP-0368).
    pub direct_tls: std::net::SocketAddr,
}

/// `starling serve` as a child process, the address its STARTTLS listener is bound
/// to, and the rest of its log.
pub fn spawn_server(config: &Path) -> (ServerProcess, std::net::SocketAddr, String) {
    let (process, listeners, log) = spawn_server_with_listeners(config);
    (process, listeners.starttls, log)
}

/// `starling serve` as a child process, both its client listeners, and its log up to
/// the second of them.
pub fn spawn_server_with_listeners(config: &Path) -> (ServerProcess, Listeners, String) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("server starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut log = String::new();
    let (mut starttls, mut direct_tls) = (None, None);
    while starttls.is_none() || direct_tls.is_none() {
        let line = lines.next().expect("server logs its addresses").expect("log line");
        log.push_str(&line);
        log.push('\n');
        if line.contains("listening for clients") {
            let start = line.find("addr=").expect("addr field") + 5;
            let end = line[start..].find(' ').map_or(line.len(), |e| start + e);
            let addr = line[start..end].parse::<std::net::SocketAddr>().expect("address");
            if line.contains("DirectTls") {
                direct_tls = Some(addr);
            } else {
                starttls = Some(addr);
            }
        }
    }
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let listeners = Listeners { starttls: starttls.expect("starttls"), direct_tls: direct_tls.expect("direct TLS") };
    (ServerProcess(Some(child)), listeners, log)
}

//! The local admin socket: how `starling sessions`, `announce`, `reload`, `status`,
//! `shutdown` and the `user` commands reach the running server. A Unix socket at
//! `[server] admin_socket`, readable and writable by the server's OS user only
//! (mode 0600), so filesystem permissions decide who administers it; nothing of it
//! is reachable over the network.
//!
//! One request per connection: a JSON line ([`AdminRequest`]), answered by a JSON
//! line ([`AdminResponse`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use starling_api::{Context, ServerControl};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::CoreControl;

/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;

/// What the command line asks of the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum AdminRequest {
    /// Version, uptime, hosts and session counts.
    Status,
    /// Every bound session.
    Sessions,
    /// A headline to every online session.
    Announce {
        /// The text.
        text: String,
    },
    /// Reload the configuration file.
    Reload,
    /// Stop after `delay_seconds`, announcing `message` first.
    Shutdown {
        /// Seconds to wait.
        delay_seconds: u64,
        /// Told to every online user.
        message: Option<String>,
    },
    /// Create an account.
    UserAdd {
        /// The account.
        jid: String,
        /// Its password.
        password: String,
    },
    /// Delete an account (its sessions end).
    UserDel {
        /// The account.
        jid: String,
    },
    /// Change a password.
    UserPasswd {
        /// The account.
        jid: String,
        /// The new password.
        password: String,
    },
    /// Disable (its sessions end) or re-enable an account.
    UserDisable {
        /// The account.
        jid: String,
        /// `false` re-enables.
        disabled: bool,
    },
}

/// The server's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminResponse {
    /// Whether it worked.
    pub ok: bool,
    /// What to print: the result, or why it failed.
    pub text: String,
}

impl AdminResponse {
    fn ok(text: impl Into<String>) -> Self {
        AdminResponse { ok: true, text: text.into() }
    }

    fn failed(text: impl Into<String>) -> Self {
        AdminResponse { ok: false, text: text.into() }
    }
}

/// Problems talking to the admin socket.
#[derive(Debug, thiserror::Error)]
pub enum AdminSocketError {
    /// Nothing listens there: the server is not running (or uses another socket).
    #[error("the server is not running (nothing listens on {0})")]
    NotRunning(PathBuf),
    /// The socket belongs to another OS user: only the server's user may administer it.
    #[error("permission denied on {0}: run this as the OS user the server runs as")]
    Forbidden(PathBuf),
    /// Another server already listens there.
    #[error("another server already listens on the admin socket {0}")]
    InUse(PathBuf),
    /// Reading, writing or decoding failed.
    #[error("admin socket {0}: {1}")]
    Io(PathBuf, String),
}

/// Binds the socket, replacing a stale file left by a server that did not stop
/// cleanly, and makes it accessible to this OS user only.
pub async fn bind(path: &Path) -> Result<UnixListener, AdminSocketError> {
    let io = |e: std::io::Error| AdminSocketError::Io(path.to_owned(), e.to_string());
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(AdminSocketError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Serves the socket until `shutdown`, then removes its file.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    context: Context,
    control: Arc<CoreControl>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (context, control) = (context.clone(), control.clone());
        tasks.spawn(async move {
            if let Err(err) = answer(stream, &context, &control).await {
                tracing::debug!(error = %err, "admin socket connection failed");
            }
        });
    }
    let _ = std::fs::remove_file(&path);
}

async fn answer(stream: UnixStream, context: &Context, control: &Arc<CoreControl>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(MAX_REQUEST)).read_line(&mut line).await?;
    let response = match serde_json::from_str::<AdminRequest>(&line) {
        Ok(request) => {
            tracing::info!(request = kind(&request), "admin socket request");
            execute(request, context, control).await
        }
        Err(err) => AdminResponse::failed(format!("bad request: {err}")),
    };
    let mut out = serde_json::to_vec(&response).unwrap_or_default();
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

/// The request's name, for the log (never passwords).
fn kind(request: &AdminRequest) -> &'static str {
    match request {
        AdminRequest::Status => "status",
        AdminRequest::Sessions => "sessions",
        AdminRequest::Announce { .. } => "announce",
        AdminRequest::Reload => "reload",
        AdminRequest::Shutdown { .. } => "shutdown",
        AdminRequest::UserAdd { .. } => "user add",
        AdminRequest::UserDel { .. } => "user del",
        AdminRequest::UserPasswd { .. } => "user passwd",
        AdminRequest::UserDisable { .. } => "user disable",
    }
}

async fn execute(request: AdminRequest, context: &Context, control: &Arc<CoreControl>) -> AdminResponse {
    let account = |jid: &str| crate::auth::account_jid(jid, &context.server().hosts);
    let done = |result: Result<(), starling_api::AccountError>, what: String| match result {
        Ok(()) => AdminResponse::ok(what),
        Err(err) => AdminResponse::failed(err.to_string()),
    };
    match request {
        AdminRequest::Status => AdminResponse::ok(status(context)),
        AdminRequest::Sessions => {
            let mut lines: Vec<String> = Vec::new();
            for host in &context.server().hosts {
                for (jid, available) in context.sessions().of_host(host) {
                    lines.push(format!("{jid}\t{}", if available { "available" } else { "unavailable" }));
                }
            }
            lines.sort();
            AdminResponse::ok(lines.join("\n"))
        }
        AdminRequest::Announce { text } if text.trim().is_empty() => AdminResponse::failed("the announcement is empty"),
        AdminRequest::Announce { text } => {
            AdminResponse::ok(format!("announced to {} sessions", control.announce(None, &text)))
        }
        AdminRequest::Reload => match control.reload_now().await {
            Ok(report) => AdminResponse::ok(report.describe()),
            Err(err) => AdminResponse::failed(format!("reload failed: {err}")),
        },
        AdminRequest::Shutdown { delay_seconds, message } => {
            control.shutdown(Duration::from_secs(delay_seconds), message);
            AdminResponse::ok(format!("shutting down in {delay_seconds} s"))
        }
        AdminRequest::UserAdd { jid, password } => match account(&jid) {
            Ok(jid) => done(context.accounts().create(&jid, &password).await, format!("created {jid}")),
            Err(err) => AdminResponse::failed(err.to_string()),
        },
        AdminRequest::UserDel { jid } => match account(&jid) {
            Ok(jid) => done(context.accounts().delete(&jid).await, format!("deleted {jid}")),
            Err(err) => AdminResponse::failed(err.to_string()),
        },
        AdminRequest::UserPasswd { jid, password } => match account(&jid) {
            Ok(jid) => {
                done(context.accounts().set_password(&jid, &password).await, format!("password of {jid} changed"))
            }
            Err(err) => AdminResponse::failed(err.to_string()),
        },
        AdminRequest::UserDisable { jid, disabled } => match account(&jid) {
            Ok(jid) => {
                let what = format!("{} {jid}", if disabled { "disabled" } else { "enabled" });
                done(context.accounts().set_disabled(&jid, disabled).await, what)
            }
            Err(err) => AdminResponse::failed(err.to_string()),
        },
    }
}

fn status(context: &Context) -> String {
    let server = context.server();
    let uptime = SystemTime::now().duration_since(server.started_at).map(|d| d.as_secs()).unwrap_or(0);
    let mut text =
        format!("{} {}\nuptime: {uptime} s\nsessions: {}", server.software, server.version, context.sessions().count());
    for host in &server.hosts {
        text.push_str(&format!("\n{host}: {} sessions", context.sessions().of_host(host).len()));
    }
    text
}

/// Sends `request` to the server listening on `path` and returns its answer.
pub async fn request(path: &Path, request: &AdminRequest) -> Result<AdminResponse, AdminSocketError> {
    let io = |e: std::io::Error| AdminSocketError::Io(path.to_owned(), e.to_string());
    let stream = UnixStream::connect(path).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => AdminSocketError::Forbidden(path.to_owned()),
        _ => AdminSocketError::NotRunning(path.to_owned()),
    })?;
    let (read, mut write) = stream.into_split();
    let mut out = serde_json::to_vec(request).map_err(|e| AdminSocketError::Io(path.to_owned(), e.to_string()))?;
    out.push(b'\n');
    write.write_all(&out).await.map_err(io)?;
    let mut line = String::new();
    BufReader::new(read.take(16 * 1024 * 1024)).read_line(&mut line).await.map_err(io)?;
    serde_json::from_str(&line).map_err(|e| AdminSocketError::Io(path.to_owned(), format!("bad answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_wire_form() {
        let request = AdminRequest::Shutdown { delay_seconds: 5, message: Some("bye".into()) };
        let text = serde_json::to_string(&request).expect("serialises");
        assert_eq!(text, r#"{"command":"shutdown","delay_seconds":5,"message":"bye"}"#);
        assert_eq!(serde_json::from_str::<AdminRequest>(&text).expect("parses"), request);
        assert!(serde_json::from_str::<AdminRequest>(r#"{"command":"rm -rf"}"#).is_err());
    }
}

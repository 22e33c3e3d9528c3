//! The core's [`ServerControl`]: reloading the configuration file (SIGHUP, `starling
//! reload`, the admin reload command) and shutting down on request (XEP-0133 §4.29,
//! `starling shutdown`).
//!
//! A reload applies what new connections and logins read from the configuration —
//! `[limits]` (except `max_connections`), `[c2s]` — loads the certificates again,
//! which renewed files need, and hands changed module settings to the modules that
//! take them live (`Registrar::on_reload`: push, register); everything else that
//! changed is reported as needing a restart, because listeners, the database pool,
//! federation and the set of modules are built once at start.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use starling_api::{BoxFuture, Context, ReloadReport, ServerControl};
use tokio_util::sync::CancellationToken;

use crate::c2s::C2sShared;
use crate::config::Config;
use crate::tls::CertStore;

/// Reload and shutdown of one running server.
pub struct CoreControl {
    certs: Arc<CertStore>,
    c2s: OnceLock<Arc<C2sShared>>,
    context: OnceLock<Context>,
    stop_requested: CancellationToken,
}

impl CoreControl {
    /// Control over a server using `certs`; [`CoreControl::attach`] completes it.
    pub fn new(certs: Arc<CertStore>) -> Self {
        CoreControl { certs, c2s: OnceLock::new(), context: OnceLock::new(), stop_requested: CancellationToken::new() }
    }

    /// The parts built after the module context, which itself holds this control.
    pub fn attach(&self, context: Context, c2s: Arc<C2sShared>) {
        let _ = self.context.set(context);
        let _ = self.c2s.set(c2s);
    }

    /// Cancelled when an administrator asked the server to stop.
    pub fn stop_requested(&self) -> CancellationToken {
        self.stop_requested.clone()
    }

    /// Reloads from the file the running configuration came from.
    pub async fn reload_now(&self) -> Result<ReloadReport, String> {
        let (Some(c2s), Some(context)) = (self.c2s.get().cloned(), self.context.get().cloned()) else {
            return Err("the server is still starting".into());
        };
        reload(self.certs.clone(), c2s, context).await
    }

    /// Announces to every online session, from its host; returns how many got it.
    pub fn announce(&self, subject: Option<&str>, body: &str) -> usize {
        let Some(context) = self.context.get() else { return 0 };
        let mut sent = 0;
        for host in &context.server().hosts {
            for (jid, _) in context.sessions().of_host(host) {
                context.send(starling_api::reply::headline(host, &jid.to_string(), subject, body));
                sent += 1;
            }
        }
        sent
    }
}

async fn reload(certs: Arc<CertStore>, c2s: Arc<C2sShared>, context: Context) -> Result<ReloadReport, String> {
    let current = c2s.config();
    let path = current.path.clone();
    let fresh = tokio::task::spawn_blocking(move || Config::load(&path))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut report = compare(&current, &fresh);
    let (dir, hosts, generate) =
        (fresh.tls.cert_dir.clone(), current.server.hosts.clone(), fresh.tls.generate_self_signed);
    match tokio::task::spawn_blocking(move || certs.reload(&dir, &hosts, generate)).await {
        Ok(Ok(())) => report.applied.insert(0, "certificates".into()),
        Ok(Err(err)) => return Err(format!("certificates: {err}; nothing was changed")),
        Err(err) => return Err(err.to_string()),
    }
    // What is only read at start keeps its running value, so that the running
    // configuration says what is in effect.
    let fresh_modules = fresh.modules.clone();
    let mut effective = fresh;
    effective.server = current.server.clone();
    effective.listen = current.listen.clone();
    effective.storage = current.storage.clone();
    effective.s2s = current.s2s.clone();
    effective.http = current.http.clone();
    effective.log = current.log.clone();
    effective.modules = current.modules.clone();
    for name in reload_modules(&context, &current.modules, &fresh_modules, &mut report) {
        match fresh_modules.settings.get(&name).cloned() {
            Some(settings) => effective.modules.settings.insert(name, settings),
            None => effective.modules.settings.remove(&name),
        };
    }
    effective.hosts = current.hosts.clone();
    effective.limits.max_connections = current.limits.max_connections;
    effective.limits.connections_per_ip_exempt = current.limits.connections_per_ip_exempt.clone();
    effective.c2s.fast_key_file = current.c2s.fast_key_file.clone();
    c2s.set_config(Arc::new(effective));
    tracing::info!(applied = ?report.applied, needs_restart = ?report.needs_restart, "configuration reloaded");
    Ok(report)
}

/// Hands changed `[modules.<name>]` settings of enabled modules to their reload
/// handlers; returns the names that took them. A module without a handler, or whose
/// handler refuses, is reported as needing a restart.
fn reload_modules(
    context: &Context,
    old: &crate::config::ModulesConfig,
    new: &crate::config::ModulesConfig,
    report: &mut ReloadReport,
) -> Vec<String> {
    let mut applied = Vec::new();
    for name in &old.enabled {
        let (before, after) = (old.settings.get(name), new.settings.get(name));
        if before == after {
            continue;
        }
        match context.registry().on_reload(name).map(|handler| handler(context, after)) {
            Some(Ok(())) => {
                report.applied.push(format!("[modules.{name}]"));
                applied.push(name.clone());
            }
            Some(Err(reason)) => report.needs_restart.push(format!("[modules.{name}] ({reason})")),
            None => report.needs_restart.push(format!("[modules.{name}]")),
        }
    }
    applied
}

/// What changed between `old` and `new`: applied live, or needing a restart (module
/// settings are left to [`reload_modules`]).
fn compare(old: &Config, new: &Config) -> ReloadReport {
    let mut report = ReloadReport::default();
    let mut restart = |name: &str, changed: bool| {
        if changed {
            report.needs_restart.push(name.to_owned());
        }
    };
    restart("[server]", old.server != new.server);
    restart("[listen]", old.listen != new.listen);
    restart("[storage]", old.storage != new.storage);
    restart("[s2s]", old.s2s != new.s2s);
    restart("[http]", old.http != new.http);
    restart("[log]", old.log != new.log);
    restart("[modules] enabled", old.modules.enabled != new.modules.enabled);
    restart("[hosts]", old.hosts != new.hosts);
    restart("limits.max_connections", old.limits.max_connections != new.limits.max_connections);
    restart(
        "limits.connections_per_ip_exempt",
        old.limits.connections_per_ip_exempt != new.limits.connections_per_ip_exempt,
    );
    restart("c2s.fast_key_file", old.c2s.fast_key_file != new.c2s.fast_key_file);
    let mut live_limits = new.limits.clone();
    live_limits.max_connections = old.limits.max_connections;
    live_limits.connections_per_ip_exempt = old.limits.connections_per_ip_exempt.clone();
    if live_limits != old.limits {
        report.applied.push("[limits]".into());
    }
    let mut live_c2s = new.c2s.clone();
    live_c2s.fast_key_file = old.c2s.fast_key_file.clone();
    if live_c2s != old.c2s {
        report.applied.push("[c2s]".into());
    }
    report
}

impl ServerControl for CoreControl {
    fn reload(&self) -> BoxFuture<'static, Result<ReloadReport, String>> {
        let (certs, c2s, context) = (self.certs.clone(), self.c2s.get().cloned(), self.context.get().cloned());
        Box::pin(async move {
            match (c2s, context) {
                (Some(c2s), Some(context)) => reload(certs, c2s, context).await,
                _ => Err("the server is still starting".into()),
            }
        })
    }

    fn shutdown(&self, delay: Duration, announcement: Option<String>) {
        if let Some(text) = announcement.as_deref().filter(|t| !t.trim().is_empty()) {
            self.announce(Some("Server shutdown"), text);
        }
        tracing::info!(delay_seconds = delay.as_secs(), "shutdown requested by an administrator");
        let stop = self.stop_requested.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            stop.cancel();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::parse(&format!("[server]\nhosts = [\"localhost\"]\n{extra}"), std::path::Path::new("t.toml"))
            .expect("config")
    }

    #[test]
    fn live_and_restart_settings_are_told_apart() {
        let old = config("");
        assert_eq!(compare(&old, &config("")), ReloadReport::default());
        let report = compare(&old, &config("[limits]\nauth_failures = 3\n[c2s]\nidle_timeout = 30\n"));
        assert_eq!(report.applied, ["[limits]", "[c2s]"]);
        assert!(report.needs_restart.is_empty());
        let report = compare(&old, &config("[limits]\nmax_connections = 7\n[log]\nlevel = \"debug\"\n"));
        assert!(report.applied.is_empty(), "{report:?}");
        assert_eq!(report.needs_restart, ["[log]", "limits.max_connections"]);
        let report = compare(&old, &config("[modules]\nenabled = [\"ping\"]\n"));
        assert_eq!(report.needs_restart, ["[modules] enabled"]);
    }
}

//! The server as a whole, as administrators act on it: reloading the configuration
//! and shutting down. The XEP-0133 commands of the admin module and the local admin
//! socket (`starling reload`, `starling shutdown`) both come here.

use std::time::Duration;

use crate::BoxFuture;

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// What now runs with the new settings (e.g. `certificates`, `[limits]`).
    pub applied: Vec<String>,
    /// Settings that changed in the file but take effect only after a restart.
    pub needs_restart: Vec<String>,
}

impl ReloadReport {
    /// The report as lines for an admin: what was applied, what needs a restart.
    pub fn describe(&self) -> String {
        let mut text =
            format!("reloaded: {}", if self.applied.is_empty() { "nothing".into() } else { self.applied.join(", ") });
        if !self.needs_restart.is_empty() {
            text.push_str(&format!("\nchanged, needs a restart: {}", self.needs_restart.join(", ")));
        }
        text
    }
}

/// Control of the running server.
pub trait ServerControl: Send + Sync {
    /// Reads the configuration file again and applies what can change while running;
    /// `Err` (with the reason) when the file is unreadable or invalid, in which case
    /// nothing changes.
    fn reload(&self) -> BoxFuture<'static, Result<ReloadReport, String>>;

    /// Sends `announcement` to every online user (when given), then stops the server
    /// gracefully after `delay`.
    fn shutdown(&self, delay: Duration, announcement: Option<String>);
}

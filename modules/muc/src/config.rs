//! `[modules.muc]`

use serde::Deserialize;

/// Who may create rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Creators {
    /// Any JID, local or remote.
    Anyone,
    /// Accounts of this server's hosts.
    Local,
    /// Server administrators (`[server] admins`) only.
    Admins,
}

/// The module's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MucConfig {
    /// The service domain per host; `{host}` is replaced by each host's name.
    pub domain: String,
    /// Who may create rooms.
    pub create: Creators,
    /// Largest `muc#roomconfig_maxusers` (and the default).
    pub max_occupants: usize,
    /// Largest `muc#roomconfig_historylength`.
    pub max_history: usize,
    /// Stanzas queued for one room before senders get `resource-constraint`.
    pub room_queue: usize,
    /// Largest room vCard (with its avatar), in bytes.
    pub max_vcard_bytes: usize,
}

impl Default for MucConfig {
    fn default() -> Self {
        MucConfig {
            domain: "conference.{host}".to_owned(),
            create: Creators::Local,
            max_occupants: 1000,
            max_history: 100,
            room_queue: 1024,
            max_vcard_bytes: 131_072,
        }
    }
}

impl MucConfig {
    /// The service domain of `host`.
    pub fn domain_of(&self, host: &str) -> String {
        self.domain.replace("{host}", host)
    }
}

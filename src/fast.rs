//! FAST tokens (XEP-0484): issuing, checking, rotating and invalidating the tokens
//! clients reconnect with in one round trip.
//!
//! A token is never stored. Each one has a random id in the database, and the token
//! is `HMAC-SHA-256(key, account, client, id)` with the server's key from
//! `[c2s] fast_key_file`: a copy of the database alone lets nobody log in. Each
//! client installation (a hash of its SASL2 user-agent id) has two slots, the token
//! in use and one issued but not yet used (§5.1), so a client that lost the `<success/>`
//! carrying a new token still logs in with the old one. Replay counters (§3.4) are
//! checked and advanced in one statement.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use starling_api::{Db, StorageError};

use crate::config::C2sConfig;
use crate::sasl::SaslFailure;
use crate::sasl::ht::{self, HtMechanism};
use crate::storage::fast_tokens::{self, NEW, TokenRow};

/// Problems with FAST tokens.
#[derive(Debug, thiserror::Error)]
pub enum FastError {
    /// The key file could not be read or created.
    #[error("FAST key file {0}: {1}")]
    Key(PathBuf, String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A token handed to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The secret, for the `token` attribute.
    pub token: String,
    /// Milliseconds since the Unix epoch, for `expiry`.
    pub expires_at_ms: i64,
}

/// Who is authenticating with a token.
#[derive(Debug, Clone, Copy)]
pub struct TokenLogin<'a> {
    /// The account's domain.
    pub host: &'a str,
    /// The account's normalised localpart.
    pub username: &'a str,
    /// The SASL2 user-agent id.
    pub user_agent_id: &'a str,
}

/// A token accepted for authentication.
#[derive(Debug)]
pub struct Accepted {
    /// The server's HT answer, `<success/>`'s additional data.
    pub responder: Vec<u8>,
    /// Whether the token is old enough to be replaced in this login.
    pub due_for_rotation: bool,
}

/// The token service of the c2s listeners.
pub struct FastTokens {
    db: Db,
    key_file: PathBuf,
    key: OnceLock<[u8; 32]>,
    lifetime: Duration,
    rotation: Duration,
    max_clients: usize,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The stored form of a client id: a hash, so the database does not hold the ids
/// clients send (XEP-0388 treats them as identifying an installation).
fn client_key(user_agent_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(user_agent_id.as_bytes()))
}

impl FastTokens {
    /// The service over `db` with the `[c2s]` settings.
    pub fn new(db: Db, config: &C2sConfig) -> Self {
        FastTokens {
            db,
            key_file: config.fast_key_file.clone(),
            key: OnceLock::new(),
            lifetime: Duration::from_secs(config.fast_token_lifetime),
            rotation: Duration::from_secs(config.fast_token_rotation),
            max_clients: config.fast_tokens_per_account.max(1),
        }
    }

    fn key(&self) -> Result<&[u8; 32], FastError> {
        if let Some(key) = self.key.get() {
            return Ok(key);
        }
        let key = load_or_create_key(&self.key_file).map_err(|e| FastError::Key(self.key_file.clone(), e))?;
        Ok(self.key.get_or_init(|| key))
    }

    fn token(&self, row: &TokenRow) -> Result<String, FastError> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key()?)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        for part in [&row.host, &row.username, &row.client_id, &row.mechanism, &row.token_id] {
            mac.update(part.as_bytes());
            mac.update(b"\0");
        }
        Ok(BASE64.encode(mac.finalize().into_bytes()))
    }

    /// Issues a token for `mechanism` into the client's new slot (replacing one issued
    /// before and never used, XEP-0484 §3.3).
    pub async fn issue(&self, login: TokenLogin<'_>, mechanism: HtMechanism) -> Result<IssuedToken, FastError> {
        let now = now_ms();
        let row = TokenRow {
            host: login.host.to_owned(),
            username: login.username.to_owned(),
            client_id: client_key(login.user_agent_id),
            slot: NEW,
            mechanism: mechanism.name().to_owned(),
            token_id: URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
            issued_at: now,
            expires_at: now.saturating_add(millis(self.lifetime)),
            last_count: 0,
        };
        let token = self.token(&row)?;
        let (stored, max_clients) = (row.clone(), self.max_clients);
        self.db.run(move |c| fast_tokens::put_new(c, &stored, max_clients)).await?;
        Ok(IssuedToken { token, expires_at_ms: row.expires_at })
    }

    /// Checks an HT authentication: the new slot first, then the current one (§5.1),
    /// each for the mechanism it was issued for, unexpired, and with a counter above
    /// every one seen. Using the new token retires the current one.
    pub async fn authenticate(
        &self,
        login: TokenLogin<'_>,
        mechanism: HtMechanism,
        cb_data: &[u8],
        hashed_token: &[u8],
        count: Option<i64>,
    ) -> Result<Result<Accepted, SaslFailure>, FastError> {
        let (host, username, client_id) =
            (login.host.to_owned(), login.username.to_owned(), client_key(login.user_agent_id));
        let rows = {
            let (host, username, client_id) = (host.clone(), username.clone(), client_id.clone());
            self.db.run(move |c| fast_tokens::slots(c, &host, &username, &client_id)).await?
        };
        let now = now_ms();
        for row in rows.iter().filter(|r| r.mechanism == mechanism.name()) {
            let token = self.token(row)?;
            if !ht::initiator_matches(token.as_bytes(), cb_data, hashed_token) {
                continue;
            }
            if row.expires_at <= now {
                return Ok(Err(SaslFailure::CredentialsExpired));
            }
            if let Some(count) = count {
                let (host, username, client_id, slot) = (host.clone(), username.clone(), client_id.clone(), row.slot);
                let advanced = self
                    .db
                    .run(move |c| fast_tokens::advance_count(c, &host, &username, &client_id, slot, count))
                    .await?;
                if !advanced {
                    tracing::info!(account = %format!("{}@{}", login.username, login.host), "FAST counter replayed");
                    return Ok(Err(SaslFailure::NotAuthorized));
                }
            }
            if row.slot == NEW {
                let (host, username, client_id) = (host.clone(), username.clone(), client_id.clone());
                self.db.run(move |c| fast_tokens::promote(c, &host, &username, &client_id)).await?;
            }
            let due_for_rotation = now.saturating_sub(row.issued_at) >= millis(self.rotation);
            return Ok(Ok(Accepted { responder: ht::responder(token.as_bytes(), cb_data), due_for_rotation }));
        }
        Ok(Err(SaslFailure::NotAuthorized))
    }

    /// Removes the client's tokens (`<fast invalidate='true'/>`, §3.5).
    pub async fn invalidate(&self, login: TokenLogin<'_>) -> Result<(), FastError> {
        let (host, username, client_id) =
            (login.host.to_owned(), login.username.to_owned(), client_key(login.user_agent_id));
        self.db.run(move |c| fast_tokens::delete_client(c, &host, &username, &client_id)).await?;
        Ok(())
    }
}

/// Reads the 32-byte key (base64) from `path`, or creates it readable by the owner only.
fn load_or_create_key(path: &Path) -> Result<[u8; 32], String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = BASE64.decode(text.trim()).map_err(|e| e.to_string())?;
            bytes.try_into().map_err(|_| "not a 32-byte key".to_owned())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(|e| e.to_string())?;
            file.write_all(format!("{}\n", BASE64.encode(key)).as_bytes()).map_err(|e| e.to_string())?;
            file.sync_all().map_err(|e| e.to_string())?;
            Ok(key)
        }
        Err(err) => Err(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sub/fast.key");
        let created = load_or_create_key(&path).expect("created");
        assert_eq!(load_or_create_key(&path).expect("read"), created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o077, 0, "only the owner may read the key");
        }
        std::fs::write(&path, "c2hvcnQ=").expect("write");
        assert!(load_or_create_key(&path).is_err(), "a short key is refused");
    }
}

//! Accounts and authentication policy: credentials from storage for the SASL layer,
//! creating accounts and changing passwords (only SCRAM keys are stored, RFC 5802 §3),
//! and throttling of failed logins per IP address and per account.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use jid::BareJid;
use starling_api::module::ForgetUser;
use starling_api::{AccountEntry, AccountService, BoxFuture, Db, ModuleSpec, StorageError};

use crate::sasl::{ScramCredentials, ScramHash};
use crate::session::{CloseReason, SessionTable};
use crate::storage::accounts::{self, StoredCredential};

/// PBKDF2 iterations for new credentials (RFC 7677 recommends at least 4096).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// Hashes credentials are kept for: every SCRAM mechanism offered needs its own keys.
pub const SCRAM_HASHES: [ScramHash; 3] = [ScramHash::Sha1, ScramHash::Sha256, ScramHash::Sha512];

pub use starling_api::AccountError;

/// Parses and normalises an account JID (`Alice@LocalHost` → `alice@localhost`,
/// RFC 7622) and checks that its domain is one of `hosts`.
pub fn account_jid(jid: &str, hosts: &[String]) -> Result<BareJid, AccountError> {
    let bare =
        starling_api::parse_bare_jid(jid).map_err(|e| AccountError::InvalidJid(jid.to_owned(), e.to_string()))?;
    if bare.node().is_none() {
        return Err(AccountError::InvalidJid(jid.to_owned(), "no user part".into()));
    }
    if !hosts.iter().any(|h| h == bare.domain().as_str()) {
        return Err(AccountError::UnknownHost(bare.domain().to_string()));
    }
    Ok(bare)
}

fn split(jid: &BareJid) -> (String, String) {
    (jid.domain().to_string(), jid.node().map(|n| n.to_string()).unwrap_or_default())
}

fn derive_all(password: &str) -> Result<Vec<StoredCredential>, AccountError> {
    if password.is_empty() {
        return Err(AccountError::BadPassword("empty".into()));
    }
    SCRAM_HASHES
        .iter()
        .map(|hash| {
            let creds = ScramCredentials::derive(password, *hash, SCRAM_ITERATIONS)
                .map_err(|e| AccountError::BadPassword(e.to_string()))?;
            Ok(to_stored(&creds))
        })
        .collect()
}

/// The storage form of SCRAM credentials.
pub fn to_stored(creds: &ScramCredentials) -> StoredCredential {
    StoredCredential {
        mechanism: creds.hash.mechanism_name().to_owned(),
        salt: creds.salt.clone(),
        iterations: creds.iterations,
        stored_key: creds.stored_key.clone(),
        server_key: creds.server_key.clone(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Creates an account with SCRAM credentials for every supported hash.
pub async fn create_account(db: &Db, jid: &BareJid, password: &str) -> Result<(), AccountError> {
    let creds = derive_all(password)?;
    let (host, user) = split(jid);
    let created = db.run(move |c| accounts::create(c, &host, &user, &creds, now_ms())).await?;
    if created { Ok(()) } else { Err(AccountError::Exists(jid.to_string())) }
}

/// Creates `prefix<n>@host` for every `n` in `range` with the same password; returns
/// how many were new. The keys are derived once (the accounts share a salt), which is
/// what makes creating thousands of load-test accounts quick.
pub async fn create_account_range(
    db: &Db,
    host: &str,
    prefix: &str,
    range: std::ops::RangeInclusive<u32>,
    password: &str,
) -> Result<usize, AccountError> {
    let creds = derive_all(password)?;
    let (host, prefix) = (host.to_owned(), prefix.to_owned());
    let created = db
        .run(move |c| {
            let mut created = 0;
            for n in range {
                if accounts::create(c, &host, &format!("{prefix}{n}"), &creds, now_ms())? {
                    created += 1;
                }
            }
            Ok(created)
        })
        .await?;
    Ok(created)
}

/// Replaces an account's credentials.
pub async fn set_password(db: &Db, jid: &BareJid, password: &str) -> Result<(), AccountError> {
    let creds = derive_all(password)?;
    let (host, user) = split(jid);
    let changed = db.run(move |c| accounts::set_credentials(c, &host, &user, &creds)).await?;
    if changed { Ok(()) } else { Err(AccountError::NotFound(jid.to_string())) }
}

/// Deletes an account with everything stored for it: its credentials and the rows of
/// every module in `modules` (the enabled ones: their tables exist).
pub async fn delete_account(db: &Db, jid: &BareJid, modules: &[&ModuleSpec]) -> Result<(), AccountError> {
    let (host, user) = split(jid);
    let forget: Vec<ForgetUser> = modules.iter().filter_map(|m| m.forget_user).collect();
    let deleted = db.run(move |c| accounts::delete(c, &host, &user, &forget)).await?;
    if deleted { Ok(()) } else { Err(AccountError::NotFound(jid.to_string())) }
}

/// Disables or re-enables an account (a disabled account cannot log in).
pub async fn set_disabled(db: &Db, jid: &BareJid, disabled: bool) -> Result<(), AccountError> {
    let (host, user) = split(jid);
    let changed = db.run(move |c| accounts::set_disabled(c, &host, &user, disabled)).await?;
    if changed { Ok(()) } else { Err(AccountError::NotFound(jid.to_string())) }
}

/// The core's [`AccountService`] for modules: the functions above, plus ending the
/// sessions of accounts that are deleted or disabled.
pub struct CoreAccounts {
    db: Db,
    hosts: Vec<String>,
    /// The enabled modules, whose `forget_user` runs when an account is deleted.
    modules: Vec<&'static ModuleSpec>,
    sessions: Arc<SessionTable>,
}

impl CoreAccounts {
    /// The service over `db` for `hosts`, deleting rows of `modules`.
    pub fn new(db: Db, hosts: Vec<String>, modules: Vec<&'static ModuleSpec>, sessions: Arc<SessionTable>) -> Self {
        CoreAccounts { db, hosts, modules, sessions }
    }

    fn check_host(&self, jid: &BareJid) -> Result<(), AccountError> {
        if jid.node().is_none() {
            return Err(AccountError::InvalidJid(jid.to_string(), "no user part".into()));
        }
        if !self.hosts.iter().any(|h| h == jid.domain().as_str()) {
            return Err(AccountError::UnknownHost(jid.domain().to_string()));
        }
        Ok(())
    }
}

fn entry(info: accounts::AccountInfo) -> AccountEntry {
    AccountEntry { username: info.username, created_at_ms: info.created_at, disabled: info.disabled }
}

impl AccountService for CoreAccounts {
    fn create(&self, jid: &BareJid, password: &str) -> BoxFuture<'static, Result<(), AccountError>> {
        let checked = self.check_host(jid);
        let (db, jid, password) = (self.db.clone(), jid.clone(), password.to_owned());
        Box::pin(async move {
            checked?;
            create_account(&db, &jid, &password).await
        })
    }

    fn delete(&self, jid: &BareJid) -> BoxFuture<'static, Result<(), AccountError>> {
        let (db, jid, modules, sessions) = (self.db.clone(), jid.clone(), self.modules.clone(), self.sessions.clone());
        Box::pin(async move {
            delete_account(&db, &jid, &modules).await?;
            for session in sessions.sessions_of(&jid) {
                session.close(CloseReason::AccountClosed);
            }
            Ok(())
        })
    }

    fn set_password(&self, jid: &BareJid, password: &str) -> BoxFuture<'static, Result<(), AccountError>> {
        let (db, jid, password) = (self.db.clone(), jid.clone(), password.to_owned());
        Box::pin(async move { set_password(&db, &jid, &password).await })
    }

    fn set_disabled(&self, jid: &BareJid, disabled: bool) -> BoxFuture<'static, Result<(), AccountError>> {
        let (db, jid, sessions) = (self.db.clone(), jid.clone(), self.sessions.clone());
        Box::pin(async move {
            set_disabled(&db, &jid, disabled).await?;
            if disabled {
                for session in sessions.sessions_of(&jid) {
                    session.close(CloseReason::AccountClosed);
                }
            }
            Ok(())
        })
    }

    fn get(&self, jid: &BareJid) -> BoxFuture<'static, Result<Option<AccountEntry>, StorageError>> {
        let db = self.db.clone();
        let (host, user) = split(jid);
        Box::pin(async move { Ok(db.run(move |c| accounts::get(c, &host, &user)).await?.map(entry)) })
    }

    fn list(&self, host: &str) -> BoxFuture<'static, Result<Vec<AccountEntry>, StorageError>> {
        let (db, host) = (self.db.clone(), host.to_owned());
        Box::pin(async move { Ok(db.run(move |c| accounts::list(c, &host)).await?.into_iter().map(entry).collect()) })
    }

    fn count(&self, host: &str) -> BoxFuture<'static, Result<u64, StorageError>> {
        let (db, host) = (self.db.clone(), host.to_owned());
        Box::pin(async move { Ok(db.run(move |c| accounts::count(c, &host)).await?.try_into().unwrap_or(0)) })
    }
}

/// What the SASL layer needs to know about a user who is logging in.
pub enum LoginCredentials {
    /// No such account: SASL carries on with fake credentials and fails at the end.
    Unknown,
    /// The account is disabled by an administrator.
    Disabled,
    /// The account's keys for the requested hash.
    Found(ScramCredentials),
}

/// Looks up the credentials of `user@host` for `hash`.
pub async fn login_credentials(
    db: &Db,
    host: &str,
    user: &str,
    hash: ScramHash,
) -> Result<LoginCredentials, StorageError> {
    let (host, user) = (host.to_owned(), user.to_owned());
    let mechanism = hash.mechanism_name();
    db.run(move |c| {
        let Some(info) = accounts::get(c, &host, &user)? else { return Ok(LoginCredentials::Unknown) };
        if info.disabled {
            return Ok(LoginCredentials::Disabled);
        }
        Ok(match accounts::credential(c, &host, &user, mechanism)? {
            Some(s) => LoginCredentials::Found(ScramCredentials {
                hash,
                salt: s.salt,
                iterations: s.iterations,
                stored_key: s.stored_key,
                server_key: s.server_key,
            }),
            None => LoginCredentials::Unknown,
        })
    })
    .await
}

/// Which SCRAM hashes every account has keys for. Only those are offered: mechanisms
/// are offered before the client names its account, and one that picked a hash its
/// account lacks keys for could not log in. Accounts made by Starling have them all;
/// imported ones may have fewer until an XEP-0480 upgrade task adds the rest.
pub struct OfferedHashes {
    complete: [AtomicBool; SCRAM_HASHES.len()],
}

impl OfferedHashes {
    /// Reads which hashes are complete from storage.
    pub async fn load(db: &Db) -> Result<Self, StorageError> {
        let offered = OfferedHashes { complete: Default::default() };
        offered.refresh(db).await?;
        Ok(offered)
    }

    /// Checks storage again (after an upgrade added keys), for the hashes not yet
    /// complete: keys are only ever added while running.
    pub async fn refresh(&self, db: &Db) -> Result<(), StorageError> {
        let pending: Vec<ScramHash> = SCRAM_HASHES
            .iter()
            .zip(&self.complete)
            .filter(|(_, complete)| !complete.load(Ordering::Relaxed))
            .map(|(hash, _)| *hash)
            .collect();
        let missing = db
            .run(move |c| {
                pending
                    .into_iter()
                    .map(|hash| Ok((hash, accounts::any_without(c, hash.mechanism_name())?)))
                    .collect::<Result<Vec<_>, diesel::result::Error>>()
            })
            .await?;
        for (hash, missing) in missing {
            if let Some(index) = SCRAM_HASHES.iter().position(|h| *h == hash) {
                self.complete[index].store(!missing, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// The hashes to offer SCRAM mechanisms for.
    pub fn hashes(&self) -> Vec<ScramHash> {
        SCRAM_HASHES.iter().zip(&self.complete).filter(|(_, c)| c.load(Ordering::Relaxed)).map(|(h, _)| *h).collect()
    }
}

/// Whether `user@host` is disabled; `None` when there is no such account.
pub async fn account_disabled(db: &Db, host: &str, user: &str) -> Result<Option<bool>, StorageError> {
    let (host, user) = (host.to_owned(), user.to_owned());
    Ok(db.run(move |c| accounts::get(c, &host, &user)).await?.map(|a| a.disabled))
}

/// The hashes `user@host` has no SCRAM keys for.
pub async fn missing_hashes(db: &Db, host: &str, user: &str) -> Result<Vec<ScramHash>, StorageError> {
    let (host, user) = (host.to_owned(), user.to_owned());
    let present = db.run(move |c| accounts::mechanisms(c, &host, &user)).await?;
    Ok(SCRAM_HASHES.into_iter().filter(|h| !present.iter().any(|m| m == h.mechanism_name())).collect())
}

/// Stores keys for a hash the account had none for (an XEP-0480 upgrade task).
pub async fn add_credentials(db: &Db, host: &str, user: &str, creds: &ScramCredentials) -> Result<bool, StorageError> {
    let (host, user, stored) = (host.to_owned(), user.to_owned(), to_stored(creds));
    db.run(move |c| accounts::add_credential(c, &host, &user, &stored)).await
}

/// Counts failed authentications per IP address and per account in a fixed window
/// (config `limits.auth_failures` per `limits.auth_failure_window`).
pub struct AuthThrottle {
    max_failures: AtomicU32,
    window_ms: AtomicU64,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl AuthThrottle {
    /// A throttle allowing `max_failures` per `window`.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        let throttle =
            AuthThrottle { max_failures: 0.into(), window_ms: 0.into(), failures: Mutex::new(HashMap::new()) };
        throttle.set_limits(max_failures, window);
        throttle
    }

    /// Changes the limits (a reload); counts so far are kept.
    pub fn set_limits(&self, max_failures: u32, window: Duration) {
        self.max_failures.store(max_failures, Ordering::Relaxed);
        self.window_ms.store(u64::try_from(window.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms.load(Ordering::Relaxed))
    }

    fn key_ip(ip: IpAddr) -> String {
        format!("ip:{ip}")
    }

    fn key_account(account: &str) -> String {
        format!("user:{account}")
    }

    fn blocked(&self, key: &str) -> bool {
        let table = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let (max, window) = (self.max_failures.load(Ordering::Relaxed), self.window());
        let blocked = table.get(key).is_some_and(|(count, since)| *count >= max && since.elapsed() < window);
        if blocked {
            crate::metrics::auth_throttled();
        }
        blocked
    }

    /// Whether logins from `ip` are refused for now.
    pub fn ip_blocked(&self, ip: IpAddr) -> bool {
        self.blocked(&Self::key_ip(ip))
    }

    /// Whether logins to `account` are refused for now.
    pub fn account_blocked(&self, account: &str) -> bool {
        self.blocked(&Self::key_account(account))
    }

    /// Records a failed attempt from `ip` on `account`.
    pub fn record_failure(&self, ip: IpAddr, account: Option<&str>) {
        let mut table = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if table.len() > 100_000 {
            // Bounded memory under a distributed attack: forget expired windows.
            let window = self.window();
            table.retain(|_, (_, since)| since.elapsed() < window);
        }
        let keys = std::iter::once(Self::key_ip(ip)).chain(account.map(Self::key_account));
        for key in keys {
            let entry = table.entry(key).or_insert((0, now));
            if entry.1.elapsed() >= self.window() {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jids_are_normalised_and_checked() {
        let hosts = vec!["localhost".to_owned()];
        assert_eq!(account_jid("Alice@LocalHost", &hosts).map(|j| j.to_string()).ok(), Some("alice@localhost".into()));
        assert!(matches!(account_jid("alice@elsewhere", &hosts), Err(AccountError::UnknownHost(_))));
        assert!(matches!(account_jid("localhost", &hosts), Err(AccountError::InvalidJid(..))));
        assert!(matches!(account_jid("a b@localhost", &hosts), Err(AccountError::InvalidJid(..))));
    }

    #[test]
    fn throttle_blocks_after_the_limit_per_ip_and_account() {
        let throttle = AuthThrottle::new(2, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        throttle.record_failure(ip, Some("a@x"));
        assert!(!throttle.ip_blocked(ip));
        throttle.record_failure(ip, Some("a@x"));
        assert!(throttle.ip_blocked(ip));
        assert!(throttle.account_blocked("a@x"));
        assert!(!throttle.account_blocked("b@x"));
        assert!(!throttle.ip_blocked("192.0.2.2".parse().expect("ip")));
    }

    #[test]
    fn throttle_window_expires() {
        let throttle = AuthThrottle::new(1, Duration::from_millis(0));
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        throttle.record_failure(ip, None);
        assert!(!throttle.ip_blocked(ip));
    }
}

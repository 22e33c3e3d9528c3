//! Account rows and their SCRAM credentials. Free functions over a connection; callers
//! wrap them in `Db::run`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use diesel::prelude::*;
use starling_api::DbConn;
use starling_api::module::ForgetUser;

use super::schema::{account_credentials, accounts};

/// Stored SCRAM keys for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    /// `SCRAM-SHA-1`, `SCRAM-SHA-256`.
    pub mechanism: String,
    /// Salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// StoredKey.
    pub stored_key: Vec<u8>,
    /// ServerKey.
    pub server_key: Vec<u8>,
}

/// An account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    /// Normalised localpart.
    pub username: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Disabled by an administrator.
    pub disabled: bool,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = accounts)]
struct AccountRow {
    username: String,
    created_at: i64,
    disabled: i16,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = account_credentials)]
struct CredentialRow {
    host: String,
    username: String,
    mechanism: String,
    salt: String,
    iterations: i32,
    stored_key: String,
    server_key: String,
}

fn decode(text: &str) -> QueryResult<Vec<u8>> {
    BASE64.decode(text).map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))
}

fn insert_credentials(conn: &mut DbConn, host: &str, username: &str, creds: &[StoredCredential]) -> QueryResult<()> {
    for c in creds {
        let row = CredentialRow {
            host: host.to_owned(),
            username: username.to_owned(),
            mechanism: c.mechanism.clone(),
            salt: BASE64.encode(&c.salt),
            iterations: i32::try_from(c.iterations).unwrap_or(i32::MAX),
            stored_key: BASE64.encode(&c.stored_key),
            server_key: BASE64.encode(&c.server_key),
        };
        diesel::insert_into(account_credentials::table).values(&row).execute(conn)?;
    }
    Ok(())
}

/// Creates an account with its credentials; `false` if it already exists.
///
/// Write transactions start with a write: on SQLite a transaction that reads first
/// and then writes cannot wait for the lock (`database is locked`), one that writes
/// first waits for `busy_timeout` like any statement.
pub fn create(
    conn: &mut DbConn,
    host: &str,
    username: &str,
    creds: &[StoredCredential],
    now_ms: i64,
) -> QueryResult<bool> {
    let result = conn.transaction(|conn| {
        diesel::insert_into(accounts::table)
            .values((
                accounts::host.eq(host),
                accounts::username.eq(username),
                accounts::created_at.eq(now_ms),
                accounts::disabled.eq(0i16),
            ))
            .execute(conn)?;
        insert_credentials(conn, host, username, creds)
    });
    match result {
        Ok(()) => Ok(true),
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Whether the account exists.
pub fn exists(conn: &mut DbConn, host: &str, username: &str) -> QueryResult<bool> {
    let count: i64 = accounts::table
        .filter(accounts::host.eq(host))
        .filter(accounts::username.eq(username))
        .count()
        .get_result(conn)?;
    Ok(count > 0)
}

/// The account, if it exists.
pub fn get(conn: &mut DbConn, host: &str, username: &str) -> QueryResult<Option<AccountInfo>> {
    let row = accounts::table
        .filter(accounts::host.eq(host))
        .filter(accounts::username.eq(username))
        .select(AccountRow::as_select())
        .first(conn)
        .optional()?;
    Ok(row.map(|r| AccountInfo { username: r.username, created_at: r.created_at, disabled: r.disabled != 0 }))
}

/// The credentials stored for `mechanism`.
pub fn credential(
    conn: &mut DbConn,
    host: &str,
    username: &str,
    mechanism: &str,
) -> QueryResult<Option<StoredCredential>> {
    let row = account_credentials::table
        .filter(account_credentials::host.eq(host))
        .filter(account_credentials::username.eq(username))
        .filter(account_credentials::mechanism.eq(mechanism))
        .select(CredentialRow::as_select())
        .first(conn)
        .optional()?;
    row.map(|r| {
        Ok(StoredCredential {
            mechanism: r.mechanism,
            salt: decode(&r.salt)?,
            iterations: u32::try_from(r.iterations).unwrap_or(0),
            stored_key: decode(&r.stored_key)?,
            server_key: decode(&r.server_key)?,
        })
    })
    .transpose()
}

/// Replaces all credentials (a password change) and drops the account's FAST tokens;
/// `false` if the account does not exist.
pub fn set_credentials(conn: &mut DbConn, host: &str, username: &str, creds: &[StoredCredential]) -> QueryResult<bool> {
    let result = conn.transaction(|conn| {
        diesel::delete(
            account_credentials::table
                .filter(account_credentials::host.eq(host))
                .filter(account_credentials::username.eq(username)),
        )
        .execute(conn)?;
        if !exists(conn, host, username)? {
            return Err(diesel::result::Error::NotFound);
        }
        // A new password logs out every client holding a FAST token.
        super::fast_tokens::delete_account(conn, host, username)?;
        insert_credentials(conn, host, username, creds)
    });
    match result {
        Ok(()) => Ok(true),
        Err(diesel::result::Error::NotFound) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Disables or re-enables an account; `false` if it does not exist.
pub fn set_disabled(conn: &mut DbConn, host: &str, username: &str, disabled: bool) -> QueryResult<bool> {
    let changed =
        diesel::update(accounts::table.filter(accounts::host.eq(host)).filter(accounts::username.eq(username)))
            .set(accounts::disabled.eq(i16::from(disabled)))
            .execute(conn)?;
    Ok(changed > 0)
}

/// Deletes an account, its credentials and, through `forget`, every module's rows for
/// it, in one transaction; `false` if it did not exist.
pub fn delete(conn: &mut DbConn, host: &str, username: &str, forget: &[ForgetUser]) -> QueryResult<bool> {
    conn.transaction(|conn| {
        for forget_user in forget {
            forget_user(conn, host, username)?;
        }
        // Explicit, so the result does not depend on SQLite's foreign-key pragma.
        super::fast_tokens::delete_account(conn, host, username)?;
        diesel::delete(
            account_credentials::table
                .filter(account_credentials::host.eq(host))
                .filter(account_credentials::username.eq(username)),
        )
        .execute(conn)?;
        let deleted =
            diesel::delete(accounts::table.filter(accounts::host.eq(host)).filter(accounts::username.eq(username)))
                .execute(conn)?;
        Ok(deleted > 0)
    })
}

/// The accounts of `host`, ordered by username.
pub fn list(conn: &mut DbConn, host: &str) -> QueryResult<Vec<AccountInfo>> {
    let rows = accounts::table
        .filter(accounts::host.eq(host))
        .order(accounts::username.asc())
        .select(AccountRow::as_select())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| AccountInfo { username: r.username, created_at: r.created_at, disabled: r.disabled != 0 })
        .collect())
}

/// How many accounts `host` has.
pub fn count(conn: &mut DbConn, host: &str) -> QueryResult<i64> {
    accounts::table.filter(accounts::host.eq(host)).count().get_result(conn)
}

/// Adds credentials for a mechanism the account has none for (a SASL upgrade task);
/// `false` if it already has them or does not exist.
pub fn add_credential(conn: &mut DbConn, host: &str, username: &str, cred: &StoredCredential) -> QueryResult<bool> {
    if !exists(conn, host, username)? {
        return Ok(false);
    }
    match insert_credentials(conn, host, username, std::slice::from_ref(cred)) {
        Ok(()) => Ok(true),
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => Ok(false),
        Err(err) => Err(err),
    }
}

/// The mechanisms the account has credentials for.
pub fn mechanisms(conn: &mut DbConn, host: &str, username: &str) -> QueryResult<Vec<String>> {
    account_credentials::table
        .filter(account_credentials::host.eq(host))
        .filter(account_credentials::username.eq(username))
        .select(account_credentials::mechanism)
        .load(conn)
}

/// Whether any account (on any host) has no credentials for `mechanism`. An EXISTS,
/// so the scan stops at the first such account: while many lack the keys (an upgrade
/// wave) that is early, and only the last few upgrades read far.
pub fn any_without(conn: &mut DbConn, mechanism: &str) -> QueryResult<bool> {
    use diesel::dsl::{exists, not};
    diesel::select(exists(
        accounts::table.filter(not(exists(
            account_credentials::table
                .filter(account_credentials::host.eq(accounts::host))
                .filter(account_credentials::username.eq(accounts::username))
                .filter(account_credentials::mechanism.eq(mechanism)),
        ))),
    ))
    .get_result(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_db::{TestDb, each_backend};

    fn cred(mechanism: &str, byte: u8) -> StoredCredential {
        StoredCredential {
            mechanism: mechanism.into(),
            salt: vec![byte; 16],
            iterations: 4096,
            stored_key: vec![byte; 32],
            server_key: vec![byte + 1; 32],
        }
    }

    #[test]
    fn account_lifecycle_on_every_backend() {
        each_backend(|db: &TestDb| {
            db.db
                .run_blocking(|c| {
                    assert!(create(c, "x.test", "alice", &[cred("SCRAM-SHA-1", 1), cred("SCRAM-SHA-256", 2)], 5)?);
                    assert!(!create(c, "x.test", "alice", &[], 6)?, "duplicate");
                    assert!(create(c, "x.test", "bob", &[], 7)?);
                    assert!(create(c, "y.test", "alice", &[], 8)?);
                    assert!(create(c, "x.test", "ünïcødé", &[], 9)?);
                    assert!(exists(c, "x.test", "alice")?);
                    assert!(!exists(c, "x.test", "carol")?);
                    assert_eq!(credential(c, "x.test", "alice", "SCRAM-SHA-256")?, Some(cred("SCRAM-SHA-256", 2)));
                    assert_eq!(credential(c, "x.test", "alice", "SCRAM-SHA-512")?, None);
                    assert!(set_credentials(c, "x.test", "alice", &[cred("SCRAM-SHA-256", 9)])?);
                    assert_eq!(credential(c, "x.test", "alice", "SCRAM-SHA-1")?, None);
                    assert_eq!(credential(c, "x.test", "alice", "SCRAM-SHA-256")?, Some(cred("SCRAM-SHA-256", 9)));
                    assert!(!set_credentials(c, "x.test", "nobody", &[])?);
                    assert!(any_without(c, "SCRAM-SHA-256")?, "bob, y.test's alice, ünïcødé");
                    assert!(add_credential(c, "x.test", "alice", &cred("SCRAM-SHA-512", 3))?);
                    assert!(!add_credential(c, "x.test", "alice", &cred("SCRAM-SHA-512", 4))?, "already there");
                    assert!(!add_credential(c, "x.test", "nobody", &cred("SCRAM-SHA-512", 4))?);
                    assert_eq!(credential(c, "x.test", "alice", "SCRAM-SHA-512")?, Some(cred("SCRAM-SHA-512", 3)));
                    let mut mechanisms = mechanisms(c, "x.test", "alice")?;
                    mechanisms.sort();
                    assert_eq!(mechanisms, ["SCRAM-SHA-256", "SCRAM-SHA-512"]);
                    assert!(any_without(c, "SCRAM-SHA-512")?);
                    assert!(set_disabled(c, "x.test", "bob", true)?);
                    assert_eq!(get(c, "x.test", "bob")?.map(|a| a.disabled), Some(true));
                    let names: Vec<_> = list(c, "x.test")?.into_iter().map(|a| a.username).collect();
                    assert_eq!(names, ["alice", "bob", "ünïcødé"]);
                    assert_eq!(count(c, "x.test")?, 3);
                    assert!(delete(c, "x.test", "alice", &[])?);
                    assert!(!delete(c, "x.test", "alice", &[])?);
                    let left: i64 = account_credentials::table.count().get_result(c)?;
                    assert_eq!(left, 0, "credentials deleted with the account");
                    assert!(exists(c, "y.test", "alice")?, "other host untouched");
                    for (host, user) in [("x.test", "bob"), ("x.test", "ünïcødé"), ("y.test", "alice")] {
                        assert!(delete(c, host, user, &[])?);
                    }
                    assert!(create(c, "z.test", "zoe", &[cred("SCRAM-SHA-1", 5)], 10)?);
                    assert!(!any_without(c, "SCRAM-SHA-1")?, "every account has SHA-1 keys");
                    assert!(any_without(c, "SCRAM-SHA-256")?);
                    Ok(())
                })
                .expect("queries succeed");
        });
    }

    #[test]
    fn concurrent_use_of_the_pool() {
        each_backend(|db: &TestDb| {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            runtime.block_on(async {
                let mut tasks = Vec::new();
                for i in 0..32 {
                    let db = db.db.clone();
                    tasks.push(tokio::spawn(async move {
                        db.run(move |c| create(c, "x.test", &format!("user{i}"), &[cred("SCRAM-SHA-256", 1)], 0)).await
                    }));
                }
                for task in tasks {
                    assert!(task.await.expect("join").expect("insert"));
                }
                assert_eq!(db.db.run(|c| count(c, "x.test")).await.expect("count"), 32);
            });
        });
    }
}

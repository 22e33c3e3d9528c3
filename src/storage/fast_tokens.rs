//! FAST token rows (XEP-0484 §5.1): two slots per account and client installation,
//! `CURRENT` for the token in use and `NEW` for one issued but not yet used. Free
//! functions over a connection; callers wrap them in `Db::run`.

use diesel::prelude::*;
use starling_api::DbConn;

use super::schema::account_fast_tokens as fast_tokens;

/// The slot of the token the client uses.
pub const CURRENT: i16 = 0;
/// The slot of a token issued and not yet used.
pub const NEW: i16 = 1;

/// One stored token: everything but the token, which is derived from `token_id`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = fast_tokens)]
pub struct TokenRow {
    /// The account's domain.
    pub host: String,
    /// The account's normalised localpart.
    pub username: String,
    /// A hash of the client's SASL2 user-agent id.
    pub client_id: String,
    /// [`CURRENT`] or [`NEW`].
    pub slot: i16,
    /// The HT mechanism the token is bound to.
    pub mechanism: String,
    /// Random; the token is derived from it.
    pub token_id: String,
    /// Milliseconds since the Unix epoch.
    pub issued_at: i64,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
    /// The highest replay counter seen (0: none).
    pub last_count: i64,
}

/// The rows of one client installation of one account.
type ClientTokens<'a> = diesel::dsl::Filter<
    diesel::dsl::Filter<
        diesel::dsl::Filter<fast_tokens::table, diesel::dsl::Eq<fast_tokens::host, &'a str>>,
        diesel::dsl::Eq<fast_tokens::username, &'a str>,
    >,
    diesel::dsl::Eq<fast_tokens::client_id, &'a str>,
>;

fn of_client<'a>(host: &'a str, username: &'a str, client_id: &'a str) -> ClientTokens<'a> {
    fast_tokens::table
        .filter(fast_tokens::host.eq(host))
        .filter(fast_tokens::username.eq(username))
        .filter(fast_tokens::client_id.eq(client_id))
}

/// The client's tokens, `NEW` first (XEP-0484 §5.1 checks it first).
pub fn slots(conn: &mut DbConn, host: &str, username: &str, client_id: &str) -> QueryResult<Vec<TokenRow>> {
    of_client(host, username, client_id).order(fast_tokens::slot.desc()).select(TokenRow::as_select()).load(conn)
}

/// Puts `row` into the `NEW` slot, replacing a token issued earlier and never used,
/// and keeps tokens for at most `max_clients` installations of the account (the ones
/// issued to most recently).
pub fn put_new(conn: &mut DbConn, row: &TokenRow, max_clients: usize) -> QueryResult<()> {
    conn.transaction(|conn| {
        diesel::delete(of_client(&row.host, &row.username, &row.client_id).filter(fast_tokens::slot.eq(NEW)))
            .execute(conn)?;
        diesel::insert_into(fast_tokens::table).values(&TokenRow { slot: NEW, ..row.clone() }).execute(conn)?;
        let issued: Vec<(String, i64)> = fast_tokens::table
            .filter(fast_tokens::host.eq(&row.host))
            .filter(fast_tokens::username.eq(&row.username))
            .select((fast_tokens::client_id, fast_tokens::issued_at))
            .load(conn)?;
        let mut latest: Vec<(String, i64)> = Vec::new();
        for (client_id, at) in issued {
            match latest.iter_mut().find(|(c, _)| *c == client_id) {
                Some(entry) => entry.1 = entry.1.max(at),
                None => latest.push((client_id, at)),
            }
        }
        latest.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
        for (client_id, _) in latest.iter().skip(max_clients) {
            diesel::delete(of_client(&row.host, &row.username, client_id)).execute(conn)?;
        }
        Ok(())
    })
}

/// The `NEW` token was used: it becomes `CURRENT`, the one it replaces is gone.
pub fn promote(conn: &mut DbConn, host: &str, username: &str, client_id: &str) -> QueryResult<()> {
    conn.transaction(|conn| {
        diesel::delete(of_client(host, username, client_id).filter(fast_tokens::slot.eq(CURRENT))).execute(conn)?;
        diesel::update(of_client(host, username, client_id).filter(fast_tokens::slot.eq(NEW)))
            .set(fast_tokens::slot.eq(CURRENT))
            .execute(conn)?;
        Ok(())
    })
}

/// Records replay counter `count` for a slot, only if it is higher than every one
/// seen: `false` means a replay. One statement, so two connections racing with the
/// same counter cannot both win.
pub fn advance_count(
    conn: &mut DbConn,
    host: &str,
    username: &str,
    client_id: &str,
    slot: i16,
    count: i64,
) -> QueryResult<bool> {
    let changed = diesel::update(
        of_client(host, username, client_id)
            .filter(fast_tokens::slot.eq(slot))
            .filter(fast_tokens::last_count.lt(count)),
    )
    .set(fast_tokens::last_count.eq(count))
    .execute(conn)?;
    Ok(changed > 0)
}

/// Removes the client's tokens (an explicit invalidation).
pub fn delete_client(conn: &mut DbConn, host: &str, username: &str, client_id: &str) -> QueryResult<usize> {
    diesel::delete(of_client(host, username, client_id)).execute(conn)
}

/// Removes every token of the account (deletion, password change).
pub fn delete_account(conn: &mut DbConn, host: &str, username: &str) -> QueryResult<usize> {
    diesel::delete(fast_tokens::table.filter(fast_tokens::host.eq(host)).filter(fast_tokens::username.eq(username)))
        .execute(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::accounts;
    use crate::storage::test_db::{TestDb, each_backend};

    fn token(client_id: &str, token_id: &str, issued_at: i64) -> TokenRow {
        TokenRow {
            host: "x.test".into(),
            username: "alice".into(),
            client_id: client_id.into(),
            slot: NEW,
            mechanism: "HT-SHA-256-NONE".into(),
            token_id: token_id.into(),
            issued_at,
            expires_at: issued_at + 1000,
            last_count: 0,
        }
    }

    #[test]
    fn slots_rotation_counters_and_limits_on_every_backend() {
        each_backend(|db: &TestDb| {
            db.db
                .run_blocking(|c| {
                    assert!(accounts::create(c, "x.test", "alice", &[], 1)?);
                    put_new(c, &token("phone", "t1", 10), 2)?;
                    promote(c, "x.test", "alice", "phone")?;
                    put_new(c, &token("phone", "t2", 20), 2)?;
                    put_new(c, &token("phone", "t3", 30), 2)?;
                    let ids: Vec<_> =
                        slots(c, "x.test", "alice", "phone")?.into_iter().map(|t| (t.slot, t.token_id)).collect();
                    assert_eq!(ids, [(NEW, "t3".to_owned()), (CURRENT, "t1".to_owned())], "t2 was never used");
                    assert!(advance_count(c, "x.test", "alice", "phone", CURRENT, 5)?);
                    assert!(!advance_count(c, "x.test", "alice", "phone", CURRENT, 5)?, "replayed counter");
                    assert!(!advance_count(c, "x.test", "alice", "phone", CURRENT, 4)?);
                    promote(c, "x.test", "alice", "phone")?;
                    let ids: Vec<_> = slots(c, "x.test", "alice", "phone")?.into_iter().map(|t| t.token_id).collect();
                    assert_eq!(ids, ["t3"]);
                    put_new(c, &token("laptop", "l1", 40), 2)?;
                    put_new(c, &token("tablet", "b1", 50), 2)?;
                    assert!(slots(c, "x.test", "alice", "phone")?.is_empty(), "the oldest client is dropped");
                    assert_eq!(slots(c, "x.test", "alice", "laptop")?.len(), 1);
                    assert_eq!(delete_client(c, "x.test", "alice", "laptop")?, 1);
                    assert_eq!(delete_account(c, "x.test", "alice")?, 1);
                    Ok(())
                })
                .expect("storage");
        });
    }
}

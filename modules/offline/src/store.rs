//! Offline message queries.

use diesel::prelude::*;
use starling_api::DbConn;

diesel::table! {
    /// Messages waiting for an account to come online (XEP-0160).
    offline_messages (id) {
        id -> BigInt,
        host -> Text,
        username -> Text,
        stored_at -> BigInt,
        stanza -> Text,
    }
}

/// A stored message.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = offline_messages)]
pub struct Stored {
    /// Storage order.
    pub id: i64,
    /// When it was stored, ms since the epoch.
    pub stored_at: i64,
    /// The message, serialised with its namespace.
    pub stanza: String,
}

/// Stores a message unless the account already has `limit`; `false` when full.
pub fn store(conn: &mut DbConn, host: &str, user: &str, stanza: &str, now_ms: i64, limit: i64) -> QueryResult<bool> {
    let stored: i64 = offline_messages::table
        .filter(offline_messages::host.eq(host))
        .filter(offline_messages::username.eq(user))
        .count()
        .get_result(conn)?;
    if stored >= limit {
        return Ok(false);
    }
    diesel::insert_into(offline_messages::table)
        .values((
            offline_messages::host.eq(host),
            offline_messages::username.eq(user),
            offline_messages::stored_at.eq(now_ms),
            offline_messages::stanza.eq(stanza),
        ))
        .execute(conn)?;
    Ok(true)
}

/// The account's messages, oldest first.
pub fn load(conn: &mut DbConn, host: &str, user: &str) -> QueryResult<Vec<Stored>> {
    offline_messages::table
        .filter(offline_messages::host.eq(host))
        .filter(offline_messages::username.eq(user))
        .order(offline_messages::id.asc())
        .select(Stored::as_select())
        .load(conn)
}

/// Deletes delivered messages (up to and including `last_id`).
pub fn delete_through(conn: &mut DbConn, host: &str, user: &str, last_id: i64) -> QueryResult<usize> {
    diesel::delete(
        offline_messages::table
            .filter(offline_messages::host.eq(host))
            .filter(offline_messages::username.eq(user))
            .filter(offline_messages::id.le(last_id)),
    )
    .execute(conn)
}

/// Deletes every stored message of the account.
pub fn forget_user(conn: &mut DbConn, host: &str, user: &str) -> QueryResult<()> {
    diesel::delete(
        offline_messages::table.filter(offline_messages::host.eq(host)).filter(offline_messages::username.eq(user)),
    )
    .execute(conn)?;
    Ok(())
}

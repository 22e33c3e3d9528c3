//! Invite tokens (`register_tokens`): issued by `starling register token`, spent by
//! in-band registrations on hosts in `invite-token` mode.

use diesel::prelude::*;
use starling_api::DbConn;

diesel::table! {
    /// One row per token; a token is spent when `uses_left` reaches 0 or it expires.
    register_tokens (token) {
        token -> Text,
        host -> Text,
        uses_left -> Integer,
        expires_at -> BigInt,
        created_at -> BigInt,
    }
}

/// Stores a new random token for `host`, good for `uses` registrations until
/// `expires_at_ms`, and returns it.
pub fn issue(conn: &mut DbConn, host: &str, uses: u32, now_ms: i64, expires_at_ms: i64) -> QueryResult<String> {
    // 128 random bits: not guessable, short enough to paste.
    let token = format!("{:032x}", rand::random::<u128>());
    diesel::insert_into(register_tokens::table)
        .values((
            register_tokens::token.eq(&token),
            register_tokens::host.eq(host),
            register_tokens::uses_left.eq(i32::try_from(uses).unwrap_or(i32::MAX)),
            register_tokens::expires_at.eq(expires_at_ms),
            register_tokens::created_at.eq(now_ms),
        ))
        .execute(conn)?;
    Ok(token)
}

/// Spends one use of `token` for `host`; `false` when it is unknown, used up or
/// expired. One statement, so two registrations cannot spend the last use twice.
pub fn spend(conn: &mut DbConn, host: &str, token: &str, now_ms: i64) -> QueryResult<bool> {
    let spent = diesel::update(
        register_tokens::table
            .filter(register_tokens::token.eq(token))
            .filter(register_tokens::host.eq(host))
            .filter(register_tokens::uses_left.gt(0))
            .filter(register_tokens::expires_at.gt(now_ms)),
    )
    .set(register_tokens::uses_left.eq(register_tokens::uses_left - 1))
    .execute(conn)?;
    // Used-up tokens stay until they expire, so that a failed registration can give
    // its use back ([`refund`]); expired ones go.
    diesel::delete(register_tokens::table.filter(register_tokens::expires_at.le(now_ms))).execute(conn)?;
    Ok(spent > 0)
}

/// Gives back a use spent by a registration that then failed (the name was taken).
pub fn refund(conn: &mut DbConn, host: &str, token: &str) -> QueryResult<()> {
    diesel::update(
        register_tokens::table.filter(register_tokens::token.eq(token)).filter(register_tokens::host.eq(host)),
    )
    .set(register_tokens::uses_left.eq(register_tokens::uses_left + 1))
    .execute(conn)?;
    Ok(())
}

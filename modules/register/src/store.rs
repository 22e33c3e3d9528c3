//! Invites (`register_tokens`): issued by `starling invite create` (or its older name
//! `starling register token`) and by the XEP-0401 ad-hoc commands, spent by in-band
//! registrations (XEP-0077 with XEP-0445's `<preauth/>`), the landing page's form and
//! XEP-0379 roster invites.
//!
//! Only the SHA-256 digest of a token is stored: whoever reads the table cannot use
//! what is in it, and the lookup compares digests, so its timing says nothing about
//! the token.

use diesel::prelude::*;
use sha2::{Digest, Sha256};
use starling_api::DbConn;

diesel::table! {
    /// One row per invite; it is spent when `uses_left` reaches 0 or it expires.
    register_tokens (token) {
        token -> Text,
        host -> Text,
        uses_left -> Integer,
        expires_at -> BigInt,
        created_at -> BigInt,
        creator -> Nullable<Text>,
        kind -> Text,
        hashed -> Integer,
    }
}

/// What an invite is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Creating an account (XEP-0401, admin or CLI).
    Register,
    /// Becoming the creator's contact, with a new account or an existing one (XEP-0379).
    Roster,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Register => "register",
            Kind::Roster => "roster",
        }
    }

    fn parse(value: &str) -> Kind {
        if value == "roster" { Kind::Roster } else { Kind::Register }
    }
}

/// A stored invite, as the landing page and registrations see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The host the account is created on.
    pub host: String,
    /// The account that invites (its bare JID), or `None` for an admin/CLI invite.
    pub creator: Option<String>,
    /// What the invite is for.
    pub kind: Kind,
    /// Registrations still possible.
    pub uses_left: i32,
    /// Expiry, in ms since the Unix epoch.
    pub expires_at: i64,
}

/// What a new invite should be.
#[derive(Debug, Clone)]
pub struct NewInvite<'a> {
    /// The host.
    pub host: &'a str,
    /// The inviting account, if any.
    pub creator: Option<&'a str>,
    /// What the invite is for.
    pub kind: Kind,
    /// How many times it can be used.
    pub uses: u32,
    /// Creation time, ms since the epoch.
    pub now_ms: i64,
    /// Expiry, ms since the epoch.
    pub expires_at_ms: i64,
}

/// The stored form of `token`.
pub fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Stores a new random account token for `host`, good for `uses` registrations until
/// `expires_at_ms`, and returns it.
pub fn issue(conn: &mut DbConn, host: &str, uses: u32, now_ms: i64, expires_at_ms: i64) -> QueryResult<String> {
    create(conn, &NewInvite { host, creator: None, kind: Kind::Register, uses, now_ms, expires_at_ms })
}

/// Stores a new invite and returns its token.
pub fn create(conn: &mut DbConn, invite: &NewInvite<'_>) -> QueryResult<String> {
    // 128 random bits: not guessable, short enough to paste.
    let token = format!("{:032x}", rand::random::<u128>());
    diesel::insert_into(register_tokens::table)
        .values((
            register_tokens::token.eq(digest(&token)),
            register_tokens::host.eq(invite.host),
            register_tokens::uses_left.eq(i32::try_from(invite.uses).unwrap_or(i32::MAX)),
            register_tokens::expires_at.eq(invite.expires_at_ms),
            register_tokens::created_at.eq(invite.now_ms),
            register_tokens::creator.eq(invite.creator),
            register_tokens::kind.eq(invite.kind.as_str()),
            register_tokens::hashed.eq(1),
        ))
        .execute(conn)?;
    Ok(token)
}

/// The usable invite `token` (not used up, not expired), whatever its host.
pub fn find(conn: &mut DbConn, token: &str, now_ms: i64) -> QueryResult<Option<Invite>> {
    let row = register_tokens::table
        .filter(
            register_tokens::token
                .eq(digest(token))
                .and(register_tokens::hashed.eq(1))
                .or(register_tokens::token.eq(token).and(register_tokens::hashed.eq(0))),
        )
        .filter(register_tokens::uses_left.gt(0))
        .filter(register_tokens::expires_at.gt(now_ms))
        .select((
            register_tokens::host,
            register_tokens::creator,
            register_tokens::kind,
            register_tokens::uses_left,
            register_tokens::expires_at,
        ))
        .first::<(String, Option<String>, String, i32, i64)>(conn)
        .optional()?;
    Ok(row.map(|(host, creator, kind, uses_left, expires_at)| Invite {
        host,
        creator,
        kind: Kind::parse(&kind),
        uses_left,
        expires_at,
    }))
}

/// Spends one use of `token` for `host` and returns the invite; `None` when it is
/// unknown, used up or expired. The update is one statement, so two registrations
/// cannot spend the last use twice.
pub fn spend(conn: &mut DbConn, host: &str, token: &str, now_ms: i64) -> QueryResult<Option<Invite>> {
    conn.transaction(|conn| {
        let Some(invite) = find(conn, token, now_ms)?.filter(|i| i.host == host) else {
            return Ok(None);
        };
        let digest = digest(token);
        let spent = diesel::update(
            register_tokens::table
                .filter(register_tokens::token.eq(&digest).or(register_tokens::token.eq(token)))
                .filter(register_tokens::host.eq(host))
                .filter(register_tokens::uses_left.gt(0))
                .filter(register_tokens::expires_at.gt(now_ms)),
        )
        .set(register_tokens::uses_left.eq(register_tokens::uses_left - 1))
        .execute(conn)?;
        // Used-up tokens stay until they expire, so that a failed registration can give
        // its use back ([`refund`]); expired ones go.
        diesel::delete(register_tokens::table.filter(register_tokens::expires_at.le(now_ms))).execute(conn)?;
        Ok((spent > 0).then_some(invite))
    })
}

/// Gives back a use spent by a registration that then failed (the name was taken).
pub fn refund(conn: &mut DbConn, host: &str, token: &str) -> QueryResult<()> {
    diesel::update(
        register_tokens::table
            .filter(register_tokens::token.eq(digest(token)).or(register_tokens::token.eq(token)))
            .filter(register_tokens::host.eq(host)),
    )
    .set(register_tokens::uses_left.eq(register_tokens::uses_left + 1))
    .execute(conn)?;
    Ok(())
}

//! Archive queries (all SQL of the module). Rows are ordered by `id`, the order in
//! which the writer stored them; RSM ids are the XEP-0359 stanza ids.

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use starling_api::DbConn;

use crate::tokens::{self, Term};

diesel::table! {
    /// One archived message of one archive (an account or a room).
    mam_messages (id) {
        id -> BigInt,
        owner -> Text,
        stanza_id -> Text,
        created_us -> BigInt,
        with_bare -> Text,
        with_resource -> Text,
        search_text -> Text,
        stanza -> Text,
    }
}

diesel::table! {
    /// XEP-0313 §6 archiving preferences of an account.
    mam_prefs (owner) {
        owner -> Text,
        default_mode -> Text,
        always_jids -> Text,
        never_jids -> Text,
    }
}

diesel::table! {
    /// The key stanza ids are signed with (one row).
    mam_secret (id) {
        id -> BigInt,
        secret -> Text,
    }
}

/// A message to store.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = mam_messages)]
pub struct NewMessage {
    /// The archive: a bare JID.
    pub owner: String,
    /// Its XEP-0359 id.
    pub stanza_id: String,
    /// When it was archived, µs since the epoch.
    pub created_us: i64,
    /// The other party's bare JID.
    pub with_bare: String,
    /// The other party's resource, or "".
    pub with_resource: String,
    /// Full-text tokens of the body (tokens.rs).
    pub search_text: String,
    /// The message as XML.
    pub stanza: String,
}

/// An archived message as a query returns it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = mam_messages)]
pub struct Archived {
    /// XEP-0359 id.
    pub stanza_id: String,
    /// When it was archived, µs since the epoch.
    pub created_us: i64,
    /// The message as XML.
    pub stanza: String,
}

/// What a page query selects.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The archive.
    pub owner: String,
    /// Only with this bare JID …
    pub with_bare: Option<String>,
    /// … and this resource.
    pub with_resource: Option<String>,
    /// Not before (µs).
    pub start_us: Option<i64>,
    /// Not after (µs).
    pub end_us: Option<i64>,
    /// Only these stanza ids (when not empty).
    pub ids: Vec<String>,
    /// Full-text conditions; `Some(empty)` matches nothing.
    pub fulltext: Option<Vec<Term>>,
    /// Rows after this row id.
    pub after_row: Option<i64>,
    /// Rows before this row id.
    pub before_row: Option<i64>,
    /// Page size.
    pub limit: i64,
    /// Take the page from the end.
    pub from_end: bool,
}

/// A page of results, oldest first.
#[derive(Debug)]
pub struct Page {
    /// The messages.
    pub rows: Vec<Archived>,
    /// No more rows in the paging direction.
    pub complete: bool,
    /// How many rows match without paging.
    pub count: i64,
}

/// Applies a filter to a boxed query on backend `$db`; `$fts` renders the full-text
/// condition for that backend.
macro_rules! filtered {
    ($filter:expr, $db:ty, $fts:ident) => {{
        let f: &Filter = $filter;
        let mut q = mam_messages::table.filter(mam_messages::owner.eq(f.owner.clone())).into_boxed::<$db>();
        if let Some(with) = &f.with_bare {
            q = q.filter(mam_messages::with_bare.eq(with.clone()));
        }
        if let Some(resource) = &f.with_resource {
            q = q.filter(mam_messages::with_resource.eq(resource.clone()));
        }
        if let Some(start) = f.start_us {
            q = q.filter(mam_messages::created_us.ge(start));
        }
        if let Some(end) = f.end_us {
            q = q.filter(mam_messages::created_us.le(end));
        }
        if !f.ids.is_empty() {
            q = q.filter(mam_messages::stanza_id.eq_any(f.ids.clone()));
        }
        match &f.fulltext {
            Some(terms) if terms.is_empty() => q = q.filter(sql::<Bool>("1 = 0")),
            Some(terms) => q = q.filter($fts!(&f.owner, terms)),
            None => {}
        }
        q
    }};
}

macro_rules! page_on {
    ($conn:expr, $filter:expr, $db:ty, $fts:ident) => {{
        let f: &Filter = $filter;
        let count: i64 = filtered!(f, $db, $fts).count().get_result($conn)?;
        let mut q = filtered!(f, $db, $fts).select(Archived::as_select());
        if let Some(after) = f.after_row {
            q = q.filter(mam_messages::id.gt(after));
        }
        if let Some(before) = f.before_row {
            q = q.filter(mam_messages::id.lt(before));
        }
        q = if f.from_end { q.order(mam_messages::id.desc()) } else { q.order(mam_messages::id.asc()) };
        let mut rows: Vec<Archived> = q.limit(f.limit + 1).load($conn)?;
        let complete = rows.len() as i64 <= f.limit;
        rows.truncate(f.limit.max(0) as usize);
        if f.from_end {
            rows.reverse();
        }
        Ok(Page { rows, complete, count })
    }};
}

macro_rules! fts5_condition {
    ($owner:expr, $terms:expr) => {
        sql::<Bool>("mam_messages.id IN (SELECT rowid FROM mam_fts WHERE mam_fts MATCH ")
            .bind::<Text, _>(tokens::fts5_owner_query($owner, $terms))
            .sql(")")
    };
}

macro_rules! tsquery_condition {
    ($owner:expr, $terms:expr) => {
        sql::<Bool>("to_tsvector('simple', mam_messages.search_text) @@ to_tsquery('simple', ")
            .bind::<Text, _>(tokens::tsquery($terms))
            .sql(")")
    };
}

/// One page of `filter`.
pub fn page(conn: &mut DbConn, filter: &Filter) -> QueryResult<Page> {
    match conn {
        DbConn::Sqlite(c) => page_on!(c, filter, diesel::sqlite::Sqlite, fts5_condition),
        DbConn::Postgresql(c) => page_on!(c, filter, diesel::pg::Pg, tsquery_condition),
    }
}

/// The row id of `stanza_id` in `owner`'s archive.
pub fn row_of(conn: &mut DbConn, owner: &str, stanza_id: &str) -> QueryResult<Option<i64>> {
    mam_messages::table
        .filter(mam_messages::owner.eq(owner))
        .filter(mam_messages::stanza_id.eq(stanza_id))
        .select(mam_messages::id)
        .first(conn)
        .optional()
}

/// Stores a batch in one transaction; an id already in its archive is skipped.
pub fn insert(conn: &mut DbConn, rows: &[NewMessage]) -> QueryResult<usize> {
    conn.transaction(|conn| match conn {
        DbConn::Sqlite(c) => {
            let mut stored = 0;
            // One statement per chunk: SQLite limits the number of bound values.
            for chunk in rows.chunks(100) {
                stored += diesel::insert_or_ignore_into(mam_messages::table).values(chunk).execute(c)?;
            }
            Ok(stored)
        }
        DbConn::Postgresql(c) => {
            let mut stored = 0;
            for chunk in rows.chunks(1000) {
                stored += diesel::insert_into(mam_messages::table).values(chunk).on_conflict_do_nothing().execute(c)?;
            }
            Ok(stored)
        }
    })
}

/// The stored XML of message `stanza_id` of `owner`'s archive.
pub fn fetch(conn: &mut DbConn, owner: &str, stanza_id: &str) -> QueryResult<Option<String>> {
    mam_messages::table
        .filter(mam_messages::owner.eq(owner))
        .filter(mam_messages::stanza_id.eq(stanza_id))
        .select(mam_messages::stanza)
        .first(conn)
        .optional()
}

/// Replaces the stored XML and search tokens of message `stanza_id` of `owner`'s
/// archive; whether it was there.
pub fn replace(conn: &mut DbConn, owner: &str, stanza_id: &str, stanza: &str, search_text: &str) -> QueryResult<bool> {
    conn.transaction(|conn| {
        let target =
            mam_messages::table.filter(mam_messages::owner.eq(owner)).filter(mam_messages::stanza_id.eq(stanza_id));
        let update =
            diesel::update(target).set((mam_messages::stanza.eq(stanza), mam_messages::search_text.eq(search_text)));
        match conn {
            DbConn::Sqlite(c) => {
                // The FTS5 table is contentless and its triggers cover insert and
                // delete only: the old tokens are removed with the 'delete' command
                // (which needs the old values) and the new ones indexed by hand.
                let Some(row) = target.select(mam_messages::id).first::<i64>(c).optional()? else {
                    return Ok(false);
                };
                diesel::sql_query(
                    "INSERT INTO mam_fts (mam_fts, rowid, owner_key, search_text) \
                     SELECT 'delete', id, lower(hex(owner)), search_text FROM mam_messages WHERE id = ?",
                )
                .bind::<diesel::sql_types::BigInt, _>(row)
                .execute(c)?;
                update.execute(c)?;
                diesel::sql_query(
                    "INSERT INTO mam_fts (rowid, owner_key, search_text) \
                     SELECT id, lower(hex(owner)), search_text FROM mam_messages WHERE id = ?",
                )
                .bind::<diesel::sql_types::BigInt, _>(row)
                .execute(c)?;
                Ok(true)
            }
            // The tsvector is computed from `search_text` when searching.
            DbConn::Postgresql(c) => Ok(update.execute(c)? > 0),
        }
    })
}

/// The oldest and newest message of an archive (XEP-0313 §5.4 metadata).
pub fn bounds(conn: &mut DbConn, owner: &str) -> QueryResult<(Option<Archived>, Option<Archived>)> {
    let base = || mam_messages::table.filter(mam_messages::owner.eq(owner)).select(Archived::as_select());
    let first = base().order(mam_messages::id.asc()).first(conn).optional()?;
    let last = base().order(mam_messages::id.desc()).first(conn).optional()?;
    Ok((first, last))
}

/// The id-signing key, created on first use.
pub fn secret(conn: &mut DbConn, generate: impl FnOnce() -> String) -> QueryResult<String> {
    conn.transaction(|conn| {
        let stored: Option<String> =
            mam_secret::table.filter(mam_secret::id.eq(1)).select(mam_secret::secret).first(conn).optional()?;
        match stored {
            Some(secret) => Ok(secret),
            None => {
                let secret = generate();
                diesel::insert_into(mam_secret::table)
                    .values((mam_secret::id.eq(1), mam_secret::secret.eq(&secret)))
                    .execute(conn)?;
                Ok(secret)
            }
        }
    })
}

/// Stored preferences: (owner, default, always, never), lists one JID a line.
pub type PrefsRow = (String, String, String, String);

/// Every account's preferences.
pub fn all_prefs(conn: &mut DbConn) -> QueryResult<Vec<PrefsRow>> {
    mam_prefs::table
        .select((mam_prefs::owner, mam_prefs::default_mode, mam_prefs::always_jids, mam_prefs::never_jids))
        .load(conn)
}

/// Replaces an account's preferences.
pub fn save_prefs(conn: &mut DbConn, row: &PrefsRow) -> QueryResult<()> {
    let (owner, default, always, never) = row;
    conn.transaction(|conn| {
        diesel::delete(mam_prefs::table.filter(mam_prefs::owner.eq(owner))).execute(conn)?;
        diesel::insert_into(mam_prefs::table)
            .values((
                mam_prefs::owner.eq(owner),
                mam_prefs::default_mode.eq(default),
                mam_prefs::always_jids.eq(always),
                mam_prefs::never_jids.eq(never),
            ))
            .execute(conn)?;
        Ok(())
    })
}

/// Deletes messages archived before `cutoff_us`, in every archive.
pub fn delete_older_than(conn: &mut DbConn, cutoff_us: i64) -> QueryResult<usize> {
    diesel::delete(mam_messages::table.filter(mam_messages::created_us.lt(cutoff_us))).execute(conn)
}

/// Trims every archive holding more than `cap` messages to its newest `cap`.
pub fn enforce_cap(conn: &mut DbConn, cap: i64) -> QueryResult<usize> {
    let over: Vec<String> = mam_messages::table
        .group_by(mam_messages::owner)
        .having(diesel::dsl::count_star().gt(cap))
        .select(mam_messages::owner)
        .load(conn)?;
    let mut deleted = 0;
    for owner in over {
        let threshold: Option<i64> = mam_messages::table
            .filter(mam_messages::owner.eq(&owner))
            .order(mam_messages::id.desc())
            .offset(cap)
            .limit(1)
            .select(mam_messages::id)
            .first(conn)
            .optional()?;
        if let Some(threshold) = threshold {
            deleted += diesel::delete(
                mam_messages::table.filter(mam_messages::owner.eq(&owner)).filter(mam_messages::id.le(threshold)),
            )
            .execute(conn)?;
        }
    }
    Ok(deleted)
}

/// Deletes an archive's messages (every archive's when `owner` is `None`), only those
/// archived before `before_us` when given.
pub fn purge(conn: &mut DbConn, owner: Option<&str>, before_us: Option<i64>) -> QueryResult<usize> {
    match (owner, before_us) {
        (Some(owner), Some(before)) => diesel::delete(
            mam_messages::table.filter(mam_messages::owner.eq(owner)).filter(mam_messages::created_us.lt(before)),
        )
        .execute(conn),
        (Some(owner), None) => diesel::delete(mam_messages::table.filter(mam_messages::owner.eq(owner))).execute(conn),
        (None, Some(before)) => delete_older_than(conn, before),
        (None, None) => diesel::delete(mam_messages::table).execute(conn),
    }
}

/// Deletes the account's archive and preferences.
pub fn forget_user(conn: &mut DbConn, host: &str, user: &str) -> QueryResult<()> {
    let owner = format!("{user}@{host}");
    diesel::delete(mam_messages::table.filter(mam_messages::owner.eq(&owner))).execute(conn)?;
    diesel::delete(mam_prefs::table.filter(mam_prefs::owner.eq(&owner))).execute(conn)?;
    Ok(())
}

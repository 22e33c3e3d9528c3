//! Archive queries (all SQL of the module). Rows are ordered by `id`, which the server
//! sets from the archive time (see [`row_at`]); RSM ids are the XEP-0359 stanza ids,
//! made from the row ids (stanza_id.rs).

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Text};
use starling_api::DbConn;

use crate::stanza_id::IdRef;
use crate::tokens::{self, Term};

diesel::table! {
    /// One archived message of one archive (an account or a room); `id` is set by the
    /// server (see [`row_at`]).
    mam_archive (id) {
        id -> BigInt,
        owner -> Text,
        with_bare -> Text,
        with_resource -> Text,
        legacy_id -> Nullable<Text>,
        stanza -> Text,
    }
}

diesel::table! {
    /// How far full-text indexing has got (one row): every row up to `indexed_to` is
    /// in the search index.
    mam_fts_progress (id) {
        id -> BigInt,
        indexed_to -> BigInt,
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

/// Bits of a row id below the archive time in µs: always 0 for rows stored now, a
/// tie-break for rows re-keyed by the migration, and room for a node number.
const ROW_TIME_SHIFT: u32 = 8;

/// The first row id of µs `us`.
pub fn row_at(us: i64) -> i64 {
    us << ROW_TIME_SHIFT
}

/// The archive time (µs) of row `row`.
pub fn time_of(row: i64) -> i64 {
    row >> ROW_TIME_SHIFT
}

/// A message to store.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = mam_archive)]
pub struct NewMessage {
    /// Its row id, from the archive time.
    pub id: i64,
    /// The archive: a bare JID.
    pub owner: String,
    /// The other party's bare JID.
    pub with_bare: String,
    /// The other party's resource, or "".
    pub with_resource: String,
    /// The message as XML.
    pub stanza: String,
}

/// An archived message as a query returns it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = mam_archive)]
pub struct Archived {
    /// Row id (archive time, see [`time_of`]).
    pub id: i64,
    /// The XEP-0359 id it was given before ids were made from row ids.
    pub legacy_id: Option<String>,
    /// The message as XML.
    pub stanza: String,
}

/// Stanza ids of a query's `ids` field, resolved.
#[derive(Debug, Clone, Default)]
pub struct IdSet {
    /// Row ids.
    pub rows: Vec<i64>,
    /// Ids of older rows.
    pub legacy: Vec<String>,
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
    /// Only these messages (when given).
    pub ids: Option<IdSet>,
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
        let mut q = mam_archive::table.filter(mam_archive::owner.eq(f.owner.clone())).into_boxed::<$db>();
        if let Some(with) = &f.with_bare {
            q = q.filter(mam_archive::with_bare.eq(with.clone()));
        }
        if let Some(resource) = &f.with_resource {
            q = q.filter(mam_archive::with_resource.eq(resource.clone()));
        }
        if let Some(start) = f.start_us {
            q = q.filter(mam_archive::id.ge(row_at(start)));
        }
        if let Some(end) = f.end_us {
            q = q.filter(mam_archive::id.lt(row_at(end.saturating_add(1))));
        }
        if let Some(ids) = &f.ids {
            q = q.filter(
                mam_archive::id
                    .eq_any(ids.rows.clone())
                    .or(mam_archive::legacy_id.assume_not_null().eq_any(ids.legacy.clone())),
            );
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
            q = q.filter(mam_archive::id.gt(after));
        }
        if let Some(before) = f.before_row {
            q = q.filter(mam_archive::id.lt(before));
        }
        q = if f.from_end { q.order(mam_archive::id.desc()) } else { q.order(mam_archive::id.asc()) };
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
        sql::<Bool>("mam_archive.id IN (SELECT rowid FROM mam_fts WHERE mam_fts MATCH ")
            .bind::<Text, _>(tokens::fts5_owner_query($owner, $terms))
            .sql(")")
    };
}

macro_rules! tsquery_condition {
    ($owner:expr, $terms:expr) => {
        sql::<Bool>("mam_archive.id IN (SELECT id FROM mam_fulltext WHERE terms @@ to_tsquery('simple', ")
            .bind::<Text, _>(tokens::tsquery_owner($owner, $terms))
            .sql("))")
    };
}

/// One page of `filter`.
pub fn page(conn: &mut DbConn, filter: &Filter) -> QueryResult<Page> {
    match conn {
        DbConn::Sqlite(c) => page_on!(c, filter, diesel::sqlite::Sqlite, fts5_condition),
        DbConn::Postgresql(c) => page_on!(c, filter, diesel::pg::Pg, tsquery_condition),
    }
}

/// The row `id` points at in `owner`'s archive, if it is there.
pub fn row_of(conn: &mut DbConn, owner: &str, id: &IdRef) -> QueryResult<Option<i64>> {
    let owned = mam_archive::table.filter(mam_archive::owner.eq(owner)).select(mam_archive::id);
    match id {
        IdRef::Row(row) => owned.filter(mam_archive::id.eq(row)).first(conn).optional(),
        IdRef::Legacy(id) => owned.filter(mam_archive::legacy_id.eq(id)).first(conn).optional(),
    }
}

/// The newest row id stored, so ids keep growing across a restart whatever the clock.
pub fn last_row(conn: &mut DbConn) -> QueryResult<Option<i64>> {
    mam_archive::table.select(diesel::dsl::max(mam_archive::id)).first(conn)
}

/// Stores a batch in one transaction; a row id already stored is skipped.
pub fn insert(conn: &mut DbConn, rows: &[NewMessage]) -> QueryResult<usize> {
    conn.transaction(|conn| match conn {
        DbConn::Sqlite(c) => {
            // One prepared statement, reused for every row: cheaper than building a
            // multi-row statement per batch, and SQLite has no round trips to save.
            let mut stored = 0;
            for row in rows {
                stored += diesel::insert_or_ignore_into(mam_archive::table).values(row).execute(c)?;
            }
            Ok(stored)
        }
        DbConn::Postgresql(c) => {
            let mut stored = 0;
            for chunk in rows.chunks(1000) {
                stored += diesel::insert_into(mam_archive::table).values(chunk).on_conflict_do_nothing().execute(c)?;
            }
            Ok(stored)
        }
    })
}

/// A stored message waiting for the search index.
#[derive(Debug, Queryable)]
pub struct Unindexed {
    /// Row id.
    pub id: i64,
    /// The archive.
    pub owner: String,
    /// The message as XML.
    pub stanza: String,
}

/// The newest row in the search index (rows are indexed in id order).
fn indexed_to(conn: &mut DbConn) -> QueryResult<i64> {
    let mark = mam_fts_progress::table.filter(mam_fts_progress::id.eq(1)).select(mam_fts_progress::indexed_to);
    Ok(mark.first(conn).optional()?.unwrap_or(0))
}

/// Puts one row's terms in SQLite's index.
fn fts5_insert(c: &mut diesel::SqliteConnection, row: i64, owner: &str, search_text: &str) -> QueryResult<usize> {
    diesel::sql_query("INSERT INTO mam_fts (rowid, owner_key, search_text) VALUES (?, ?, ?)")
        .bind::<BigInt, _>(row)
        .bind::<Text, _>(tokens::owner_key(owner))
        .bind::<Text, _>(search_text)
        .execute(c)
}

/// Adds up to `limit` stored rows after the indexed ones to the search index, their
/// tokens made from the stored stanza by `search_text`; returns how many. One transaction, so
/// the index and its progress mark move together.
pub fn index_next(conn: &mut DbConn, limit: i64, search_text: impl Fn(&str) -> String) -> QueryResult<usize> {
    conn.transaction(|conn| {
        let indexed_to = indexed_to(conn)?;
        let rows: Vec<Unindexed> = mam_archive::table
            .filter(mam_archive::id.gt(indexed_to))
            .order(mam_archive::id.asc())
            .limit(limit)
            .select((mam_archive::id, mam_archive::owner, mam_archive::stanza))
            .load(conn)?;
        let Some(last) = rows.last().map(|r| r.id) else { return Ok(0) };
        match conn {
            DbConn::Sqlite(c) => {
                for row in &rows {
                    fts5_insert(c, row.id, &row.owner, &search_text(&row.stanza))?;
                }
            }
            DbConn::Postgresql(c) => {
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                let documents: Vec<String> =
                    rows.iter().map(|r| tokens::tsvector_document(&r.owner, &search_text(&r.stanza))).collect();
                diesel::sql_query(
                    "INSERT INTO mam_fulltext (id, terms) \
                     SELECT u.id, to_tsvector('simple', u.document) FROM UNNEST($1, $2) AS u(id, document) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind::<Array<BigInt>, _>(ids)
                .bind::<Array<Text>, _>(documents)
                .execute(c)?;
            }
        }
        diesel::delete(mam_fts_progress::table).execute(conn)?;
        diesel::insert_into(mam_fts_progress::table)
            .values((mam_fts_progress::id.eq(1), mam_fts_progress::indexed_to.eq(last)))
            .execute(conn)?;
        Ok(rows.len())
    })
}

/// The stored XML of row `row` of `owner`'s archive.
pub fn fetch(conn: &mut DbConn, owner: &str, row: i64) -> QueryResult<Option<String>> {
    mam_archive::table
        .filter(mam_archive::owner.eq(owner))
        .filter(mam_archive::id.eq(row))
        .select(mam_archive::stanza)
        .first(conn)
        .optional()
}

/// Replaces the stored XML of row `row` of `owner`'s archive and its search tokens
/// (when the row is indexed already; otherwise the indexer reads the new XML). Returns
/// whether the row was there.
pub fn replace(conn: &mut DbConn, owner: &str, row: i64, stanza: &str, search_text: &str) -> QueryResult<bool> {
    conn.transaction(|conn| {
        let target = mam_archive::table.filter(mam_archive::owner.eq(owner)).filter(mam_archive::id.eq(row));
        if diesel::update(target).set(mam_archive::stanza.eq(stanza)).execute(conn)? == 0 {
            return Ok(false);
        }
        let indexed_to = indexed_to(conn)?;
        match conn {
            DbConn::Sqlite(c) => {
                diesel::sql_query("DELETE FROM mam_fts WHERE rowid = ?").bind::<BigInt, _>(row).execute(c)?;
                if row <= indexed_to {
                    fts5_insert(c, row, owner, search_text)?;
                }
            }
            DbConn::Postgresql(c) => {
                diesel::sql_query("DELETE FROM mam_fulltext WHERE id = $1").bind::<BigInt, _>(row).execute(c)?;
                if row <= indexed_to {
                    diesel::sql_query("INSERT INTO mam_fulltext (id, terms) VALUES ($1, to_tsvector('simple', $2))")
                        .bind::<BigInt, _>(row)
                        .bind::<Text, _>(tokens::tsvector_document(owner, search_text))
                        .execute(c)?;
                }
            }
        }
        Ok(true)
    })
}

/// The oldest and newest message of an archive (XEP-0313 §5.4 metadata).
pub fn bounds(conn: &mut DbConn, owner: &str) -> QueryResult<(Option<Archived>, Option<Archived>)> {
    let base = || mam_archive::table.filter(mam_archive::owner.eq(owner)).select(Archived::as_select());
    let first = base().order(mam_archive::id.asc()).first(conn).optional()?;
    let last = base().order(mam_archive::id.desc()).first(conn).optional()?;
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
    diesel::delete(mam_archive::table.filter(mam_archive::id.lt(row_at(cutoff_us)))).execute(conn)
}

/// Trims every archive holding more than `cap` messages to its newest `cap`.
pub fn enforce_cap(conn: &mut DbConn, cap: i64) -> QueryResult<usize> {
    let over: Vec<String> = mam_archive::table
        .group_by(mam_archive::owner)
        .having(diesel::dsl::count_star().gt(cap))
        .select(mam_archive::owner)
        .load(conn)?;
    let mut deleted = 0;
    for owner in over {
        let threshold: Option<i64> = mam_archive::table
            .filter(mam_archive::owner.eq(&owner))
            .order(mam_archive::id.desc())
            .offset(cap)
            .limit(1)
            .select(mam_archive::id)
            .first(conn)
            .optional()?;
        if let Some(threshold) = threshold {
            deleted += diesel::delete(
                mam_archive::table.filter(mam_archive::owner.eq(&owner)).filter(mam_archive::id.le(threshold)),
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
            mam_archive::table.filter(mam_archive::owner.eq(owner)).filter(mam_archive::id.lt(row_at(before))),
        )
        .execute(conn),
        (Some(owner), None) => diesel::delete(mam_archive::table.filter(mam_archive::owner.eq(owner))).execute(conn),
        (None, Some(before)) => delete_older_than(conn, before),
        (None, None) => diesel::delete(mam_archive::table).execute(conn),
    }
}

/// Deletes the account's archive and preferences.
pub fn forget_user(conn: &mut DbConn, host: &str, user: &str) -> QueryResult<()> {
    let owner = format!("{user}@{host}");
    diesel::delete(mam_archive::table.filter(mam_archive::owner.eq(&owner))).execute(conn)?;
    diesel::delete(mam_prefs::table.filter(mam_prefs::owner.eq(&owner))).execute(conn)?;
    Ok(())
}

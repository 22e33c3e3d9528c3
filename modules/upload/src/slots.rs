//! The `upload_slots` table: one row per slot, from the request through the upload to
//! the file's expiry. Quota is the sum of the sizes of a user's live rows.

use diesel::prelude::*;
use starling_api::{Db, DbConn, StorageError};

use crate::store::FileStore;

diesel::table! {
    /// Slots and the files uploaded through them.
    upload_slots (id) {
        id -> Text,
        host -> Text,
        username -> Text,
        filename -> Text,
        size -> BigInt,
        content_type -> Text,
        /// [`PENDING`], [`UPLOADING`] or [`STORED`].
        state -> Integer,
        created_at -> BigInt,
        /// Until when the PUT URL works (pending), or the file is kept (stored).
        expires_at -> BigInt,
    }
}

/// Handed out, not uploaded yet.
pub(crate) const PENDING: i32 = 0;
/// A PUT is streaming the file.
pub(crate) const UPLOADING: i32 = 1;
/// The file is stored.
pub(crate) const STORED: i32 = 2;

/// A row of `upload_slots`.
#[derive(Debug, Clone, Queryable, Insertable, Selectable)]
#[diesel(table_name = upload_slots)]
pub(crate) struct Slot {
    pub id: String,
    pub host: String,
    pub username: String,
    pub filename: String,
    pub size: i64,
    pub content_type: String,
    pub state: i32,
    pub created_at: i64,
    pub expires_at: i64,
}

/// "Never expires", for files kept for ever.
const FOREVER: i64 = i64::MAX;

/// Seconds a PUT may stream before its slot counts as abandoned (the server stopped
/// mid-upload); until then the sweeper leaves an uploading slot alone.
pub(crate) const UPLOAD_DEADLINE: i64 = 24 * 3600;

/// Inserts `slot` unless the user's live slots and files plus it exceed `quota` bytes
/// (0: no limit). Checked and inserted in one transaction.
pub(crate) async fn insert_within_quota(db: &Db, slot: Slot, quota: u64) -> Result<bool, StorageError> {
    db.run(move |c| {
        c.transaction(|c| {
            if quota > 0 {
                let sizes: Vec<i64> = upload_slots::table
                    .filter(upload_slots::host.eq(&slot.host))
                    .filter(upload_slots::username.eq(&slot.username))
                    .select(upload_slots::size)
                    .load(c)?;
                let used: i64 = sizes.iter().sum();
                if used.saturating_add(slot.size) > i64::try_from(quota).unwrap_or(i64::MAX) {
                    return Ok(false);
                }
            }
            diesel::insert_into(upload_slots::table).values(&slot).execute(c)?;
            Ok(true)
        })
    })
    .await
}

/// The slot `id`.
pub(crate) async fn find(db: &Db, id: String) -> Result<Option<Slot>, StorageError> {
    db.run(move |c| upload_slots::table.find(id).select(Slot::as_select()).first(c).optional()).await
}

/// Moves slot `id` from state `from` to `to` (with a new expiry); `false` when it was
/// not in state `from`, which is how a PUT URL works only once.
pub(crate) async fn transition(db: &Db, id: String, from: i32, to: i32, expires_at: i64) -> Result<bool, StorageError> {
    db.run(move |c| {
        let updated = diesel::update(upload_slots::table.find(id).filter(upload_slots::state.eq(from)))
            .set((upload_slots::state.eq(to), upload_slots::expires_at.eq(expires_at)))
            .execute(c)?;
        Ok(updated == 1)
    })
    .await
}

/// When a file uploaded `now` expires.
pub(crate) fn file_expiry(now: i64, lifetime: u64) -> i64 {
    if lifetime == 0 { FOREVER } else { now.saturating_add(lifetime as i64) }
}

/// Deletes slots and files whose time is up; returns how many.
pub(crate) async fn sweep(db: &Db, store: &dyn FileStore, now: i64) -> Result<usize, StorageError> {
    let expired: Vec<String> = db
        .run(move |c| upload_slots::table.filter(upload_slots::expires_at.lt(now)).select(upload_slots::id).load(c))
        .await?;
    let mut removed = 0;
    for id in expired {
        if let Err(err) = store.delete(&id).await {
            starling_api::tracing::warn!(%id, error = %err, "cannot delete an expired upload");
            continue;
        }
        let key = id.clone();
        db.run(move |c| diesel::delete(upload_slots::table.find(key)).execute(c)).await?;
        removed += 1;
    }
    Ok(removed)
}

/// Account deletion: the account's files expire now (the sweeper deletes them and
/// their rows) and stop counting against anyone's quota.
pub(crate) fn forget_user(c: &mut DbConn, host: &str, username: &str) -> QueryResult<()> {
    diesel::update(upload_slots::table.filter(upload_slots::host.eq(host)).filter(upload_slots::username.eq(username)))
        .set((upload_slots::username.eq(""), upload_slots::expires_at.eq(0i64)))
        .execute(c)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::StreamExt;

    use super::*;
    use crate::store::DiskStore;

    fn slot(id: &str, user: &str, size: i64, state: i32, expires_at: i64) -> Slot {
        Slot {
            id: id.into(),
            host: "example.org".into(),
            username: user.into(),
            filename: "f".into(),
            size,
            content_type: "text/plain".into(),
            state,
            created_at: 0,
            expires_at,
        }
    }

    #[tokio::test]
    async fn quota_sweep_and_account_deletion() {
        let dir = std::env::temp_dir().join(format!("starling-upload-slots-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("dir");
        let db = Db::open(&format!("sqlite://{}", dir.join("db.sqlite").display()), 2).expect("db");
        db.run_migrations(&[("upload", &crate::MIGRATIONS)]).expect("migrations");
        let store = DiskStore::new(dir.join("files")).expect("store");
        let body = || futures::stream::iter([Ok(Bytes::from_static(b"abc"))]).boxed();

        assert!(insert_within_quota(&db, slot("a", "u", 60, STORED, 100), 100).await.expect("a"));
        assert!(!insert_within_quota(&db, slot("b", "u", 50, PENDING, 100), 100).await.expect("b"), "over quota");
        assert!(insert_within_quota(&db, slot("c", "u", 40, PENDING, 10), 100).await.expect("c"));
        assert!(insert_within_quota(&db, slot("d", "v", 90, STORED, 1000), 100).await.expect("d"), "per user");
        for id in ["a", "d"] {
            store.store(id, 3, body(), &|_| {}).await.expect("file");
        }

        // At 50 the pending slot c has expired; a and d live on.
        assert_eq!(sweep(&db, &store, 50).await.expect("sweep"), 1);
        assert!(find(&db, "c".into()).await.expect("find").is_none());
        assert!(insert_within_quota(&db, slot("e", "u", 40, PENDING, 500), 100).await.expect("e"), "c's bytes freed");
        // At 200 a's file has expired too: row and file go.
        assert_eq!(sweep(&db, &store, 200).await.expect("sweep"), 1);
        assert!(find(&db, "a".into()).await.expect("find").is_none());
        assert!(!dir.join("files").join("a").exists());
        assert!(dir.join("files").join("d").exists());

        // Deleting v's account expires its files at the next sweep.
        db.run(|c| forget_user(c, "example.org", "v")).await.expect("forget");
        assert_eq!(sweep(&db, &store, 200).await.expect("sweep"), 1);
        assert!(!dir.join("files").join("d").exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}

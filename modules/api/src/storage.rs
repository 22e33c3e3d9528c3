//! Storage as modules see it: a pooled [`Db`] over SQLite or PostgreSQL with Diesel,
//! and each module's embedded [`Migrations`].
//!
//! Diesel is synchronous; [`Db::run`] is the one place that takes a pooled connection
//! and runs the closure on `spawn_blocking`, so no connection is ever held across an
//! `.await`. Queries use the SQL types both backends share (integers, text); a module
//! needing backend-specific SQL matches on [`DbConn`].

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{self, ManageConnection, R2D2Connection};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

pub use connection::DbConn;

mod connection {
    // The derive generates helper types of its own, without docs.
    #![allow(missing_docs)]
    use diesel::{PgConnection, SqliteConnection};

    /// A connection to either backend.
    #[derive(diesel::MultiConnection)]
    pub enum DbConn {
        /// PostgreSQL (production).
        Postgresql(PgConnection),
        /// SQLite (embedded default).
        Sqlite(SqliteConnection),
    }
}

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// The `backend` label of the storage metrics.
    pub fn label(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The migrations of the calling crate: `migrations/sqlite` and `migrations/postgres`
/// under its manifest directory, embedded at compile time.
///
/// ```ignore
/// static MIGRATIONS: Migrations = starling_api::migrations!();
/// ```
#[macro_export]
macro_rules! migrations {
    () => {
        $crate::Migrations {
            sqlite: $crate::diesel_migrations::embed_migrations!("migrations/sqlite"),
            postgres: $crate::diesel_migrations::embed_migrations!("migrations/postgres"),
        }
    };
}

/// A module's migrations, one set per backend (the SQL dialects differ).
pub struct Migrations {
    /// `migrations/sqlite`
    pub sqlite: EmbeddedMigrations,
    /// `migrations/postgres`
    pub postgres: EmbeddedMigrations,
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No connection could be made or taken from the pool.
    #[error("database connection: {0}")]
    Connection(String),
    /// A query failed.
    #[error("database query: {0}")]
    Query(#[from] diesel::result::Error),
    /// A migration failed.
    #[error("database migration: {0}")]
    Migration(String),
    /// The blocking task panicked or was cancelled.
    #[error("database task: {0}")]
    Task(String),
}

/// Opens connections by URL scheme, so a PostgreSQL failure reports its real cause
/// (diesel's own MultiConnection establish hides it), and sets SQLite's pragmas.
#[derive(Debug)]
struct Manager {
    url: String,
    backend: Backend,
}

impl ManageConnection for Manager {
    type Connection = DbConn;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConn, r2d2::Error> {
        match self.backend {
            Backend::Postgres => {
                PgConnection::establish(&self.url).map(DbConn::Postgresql).map_err(r2d2::Error::ConnectionError)
            }
            Backend::Sqlite => {
                let mut conn = SqliteConnection::establish(&self.url).map_err(r2d2::Error::ConnectionError)?;
                // busy_timeout first, so that even switching to WAL waits for a lock
                // held by a sibling connection instead of failing; WAL lets the CLI and
                // the server share the file; foreign keys enforce cascades.
                conn.batch_execute(
                    "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConn::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), r2d2::Error> {
        conn.ping().map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConn) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

/// A snapshot of the connection pool (see [`Db::pool_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// The most connections the pool opens.
    pub max_size: u32,
    /// Connections open now, idle or in use.
    pub open: u32,
    /// Open connections nobody holds.
    pub idle: u32,
}

/// The pooled database handle; cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: r2d2::Pool<Manager>,
    backend: Backend,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl Db {
    /// Opens a pool for `url`: `postgres://…`/`postgresql://…`, `sqlite://PATH`,
    /// `sqlite::memory:` (one shared in-memory database) or a plain file path. Fails
    /// within seconds, with the driver's message, when the database is unreachable.
    pub fn open(url: &str, pool_size: u32) -> Result<Db, StorageError> {
        let (backend, target, size) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned(), pool_size)
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            if path == ":memory:" || url == "sqlite::memory:" {
                // Every connection to :memory: is its own database: keep exactly one.
                (Backend::Sqlite, ":memory:".to_owned(), 1)
            } else {
                if let Some(parent) = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| StorageError::Connection(format!("{}: {e}", parent.display())))?;
                }
                (Backend::Sqlite, path.to_owned(), pool_size)
            }
        };
        let manager = Manager { url: target, backend };
        // Check one connection first so that the real error surfaces at once rather
        // than after r2d2's retry loop times out.
        manager.connect().map_err(|e| StorageError::Connection(e.to_string()))?;
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .connection_timeout(Duration::from_secs(10))
            .build(manager)
            .map_err(|e| StorageError::Connection(e.to_string()))?;
        Ok(Db { pool, backend })
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs `f` with a pooled connection on a blocking thread.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut DbConn) -> Result<T, diesel::result::Error> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.run_blocking(f)).await.map_err(|e| StorageError::Task(e.to_string()))?
    }

    /// Runs `f` on the current thread (start-up, the command line). The time `f` holds
    /// the connection (one storage operation, a transaction or a single query) goes to
    /// the `starling_db_query_duration_seconds` histogram.
    pub fn run_blocking<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut DbConn) -> Result<T, diesel::result::Error>,
    {
        let mut conn = self.pool.get().map_err(|e| StorageError::Connection(e.to_string()))?;
        let started = std::time::Instant::now();
        let result = f(&mut conn);
        metrics::histogram!("starling_db_query_duration_seconds", "backend" => self.backend.label())
            .record(started.elapsed().as_secs_f64());
        Ok(result?)
    }

    /// How the pool is used right now, for `/metrics`.
    pub fn pool_state(&self) -> PoolState {
        let state = self.pool.state();
        PoolState { max_size: self.pool.max_size(), open: state.connections, idle: state.idle_connections }
    }

    /// Applies pending migrations of every set, in order (the core's first); returns
    /// how many were applied.
    pub fn run_migrations(&self, sets: &[(&'static str, &Migrations)]) -> Result<usize, StorageError> {
        check_unique_versions(sets).map_err(StorageError::Migration)?;
        let mut conn = self.pool.get().map_err(|e| StorageError::Connection(e.to_string()))?;
        let mut applied = 0;
        for (owner, migrations) in sets {
            let result = match &mut *conn {
                DbConn::Postgresql(c) => c.run_pending_migrations(Embedded(&migrations.postgres)).map(|v| v.len()),
                DbConn::Sqlite(c) => c.run_pending_migrations(Embedded(&migrations.sqlite)).map(|v| v.len()),
            };
            applied += result.map_err(|e| StorageError::Migration(format!("{owner}: {e}")))?;
        }
        Ok(applied)
    }
}

/// Diesel records applied migrations by version in one table for the whole database,
/// so versions must be unique across the core and every module. The error names both
/// owners of a duplicate.
pub fn check_unique_versions(sets: &[(&str, &Migrations)]) -> Result<(), String> {
    let mut seen: Vec<(String, &str)> = Vec::new();
    for (owner, migrations) in sets {
        for list in [&migrations.sqlite, &migrations.postgres] {
            let versions = MigrationSource::<diesel::sqlite::Sqlite>::migrations(list).map_err(|e| e.to_string())?;
            for migration in versions {
                let version = migration.name().version().to_string();
                match seen.iter().find(|(v, _)| *v == version) {
                    Some((_, other)) if other != owner => {
                        return Err(format!("migration version {version} is used by both {other} and {owner}"));
                    }
                    Some(_) => {}
                    None => seen.push((version, owner)),
                }
            }
        }
    }
    Ok(())
}

use diesel::migration::{Migration, MigrationSource};

/// Lends a `static` set to diesel, which takes migration sources by value.
struct Embedded<'a>(&'a EmbeddedMigrations);

impl<DB: diesel::backend::Backend> MigrationSource<DB> for Embedded<'_> {
    fn migrations(&self) -> diesel::migration::Result<Vec<Box<dyn Migration<DB>>>> {
        self.0.migrations()
    }
}

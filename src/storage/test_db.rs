//! Throw-away databases for tests, on both backends: a temporary SQLite file and a
//! fresh PostgreSQL database (dropped afterwards). PostgreSQL is found at
//! `$STARLING_TEST_POSTGRES` or `postgres://postgres@127.0.0.1:5432/postgres`; when it
//! is unreachable the tests run on SQLite only — except under `CI=true`, where that is
//! a failure, so CI can never silently skip the production backend.

use std::path::PathBuf;

use diesel::{Connection, PgConnection, RunQueryDsl};
use starling_api::{Backend, Db};

use super::CORE_MIGRATIONS;

/// A migrated test database; removed when dropped.
pub struct TestDb {
    /// The pool.
    pub db: Db,
    /// Which backend.
    pub backend: Backend,
    /// The URL it was opened with.
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(PathBuf),
    Database { admin_url: String, name: String },
}

fn admin_url() -> String {
    std::env::var("STARLING_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn unique_name() -> String {
    format!("starling_test_{:016x}", rand::random::<u64>())
}

fn migrated(url: String, backend: Backend, cleanup: Cleanup) -> TestDb {
    let db = Db::open(&url, 4).unwrap_or_else(|e| panic!("test database {url}: {e}"));
    db.run_migrations(&[("core", &CORE_MIGRATIONS)]).unwrap_or_else(|e| panic!("migrations: {e}"));
    TestDb { db, backend, url, cleanup }
}

impl TestDb {
    /// A SQLite database in a temporary file.
    pub fn sqlite() -> TestDb {
        let path = std::env::temp_dir().join(format!("{}.sqlite", unique_name()));
        migrated(format!("sqlite://{}", path.display()), Backend::Sqlite, Cleanup::File(path))
    }

    /// A fresh PostgreSQL database, or `None` when the server is unreachable outside CI.
    pub fn postgres() -> Option<TestDb> {
        let admin = admin_url();
        let mut conn = match PgConnection::establish(&admin) {
            Ok(conn) => conn,
            Err(err) => {
                let message = format!("PostgreSQL unreachable at {admin}: {err}");
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("{message} (CI=true requires the PostgreSQL tests to run)");
                }
                eprintln!("{message}; running on SQLite only");
                return None;
            }
        };
        let name = unique_name();
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
        let (base, _) = admin.rsplit_once('/').unwrap_or((admin.as_str(), ""));
        let url = format!("{base}/{name}");
        Some(migrated(url, Backend::Postgres, Cleanup::Database { admin_url: admin, name }))
    }

    /// Every available backend: SQLite always, PostgreSQL when reachable (or CI).
    pub fn all() -> Vec<TestDb> {
        std::iter::once(TestDb::sqlite()).chain(TestDb::postgres()).collect()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Database { admin_url, name } => {
                if let Ok(mut conn) = PgConnection::establish(admin_url) {
                    let _ =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn);
                }
            }
        }
    }
}

/// Runs `test` once per available backend.
pub fn each_backend(test: impl Fn(&TestDb)) {
    for db in TestDb::all() {
        eprintln!("backend: {:?}", db.backend);
        test(&db);
    }
}

#[cfg(test)]
mod tests {
    use starling_api::storage::check_unique_versions;
    use starling_api::{Migrations, StorageError};

    use super::*;

    #[test]
    fn migrations_are_idempotent_on_every_backend() {
        each_backend(|test| {
            let again = test.db.run_migrations(&[("core", &CORE_MIGRATIONS)]).expect("second run");
            assert_eq!(again, 0);
        });
    }

    #[test]
    fn duplicate_migration_versions_are_caught() {
        static DUPLICATE: Migrations = starling_api::migrations!();
        let err = check_unique_versions(&[("core", &CORE_MIGRATIONS), ("copycat", &DUPLICATE)]).expect_err("duplicate");
        assert!(err.contains("core") && err.contains("copycat"), "{err}");
        assert!(check_unique_versions(&[("core", &CORE_MIGRATIONS)]).is_ok());
    }

    #[test]
    fn every_compiled_in_module_has_unique_migration_versions_and_prefixed_tables() {
        let mut sets = vec![("core", &CORE_MIGRATIONS)];
        sets.extend(crate::modules::ALL.iter().filter_map(|m| m.migrations.map(|x| (m.name, x))));
        check_unique_versions(&sets).expect("unique versions");
        let db = Db::open("sqlite::memory:", 1).expect("memory db");
        db.run_migrations(&sets).expect("all migrations apply");
        #[derive(diesel::QueryableByName)]
        struct Table {
            #[diesel(sql_type = diesel::sql_types::Text)]
            name: String,
        }
        let tables: Vec<Table> = db
            .run_blocking(|c| diesel::sql_query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != '__diesel_schema_migrations'").load(c))
            .expect("tables");
        for table in tables {
            let owned =
                table.name.starts_with("account") || crate::modules::ALL.iter().any(|m| table.name.starts_with(m.name));
            assert!(owned, "table {} is not prefixed with its module's name", table.name);
        }
    }

    #[test]
    fn unreachable_postgres_fails_fast_with_the_real_cause() {
        let started = std::time::Instant::now();
        let err = Db::open("postgres://postgres@127.0.0.1:1/none", 2).expect_err("nothing listens on port 1");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(matches!(&err, StorageError::Connection(m) if m.contains("127.0.0.1")), "{err}");
    }
}

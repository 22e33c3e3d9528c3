//! The core's tables (accounts, FAST tokens) and its migrations; the pool itself is
//! `starling_api::Db`, shared with the modules.

pub mod accounts;
pub mod fast_tokens;
pub mod schema;
pub mod test_db;

use starling_api::Migrations;

/// The core's migrations (`migrations/` at the repository root).
pub static CORE_MIGRATIONS: Migrations = starling_api::migrations!();

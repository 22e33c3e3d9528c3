//! What the fuzz target `upload_url` (docs/fuzzing.md) reaches: the URL signing and
//! the request-header parsers. Built only by cargo-fuzz, which sets `cfg(fuzzing)`.

pub use crate::http::{byte_range, disposition, file_path};
pub use crate::signing::{Signer, valid_id};
pub use starling_api::http::axum::http::{HeaderMap, HeaderValue};

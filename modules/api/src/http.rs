//! HTTP routes contributed by modules to the server's one HTTP listener (`[http]` in
//! the config): file upload, web chat and similar services register an
//! [`axum::Router`] with [`crate::Registrar::http_routes`]; the core merges them with
//! its own routes (`/.well-known/host-meta`, `/metrics`, `/xmpp-websocket`).
//!
//! The builder runs once the server runs, and only when an HTTP listener is configured,
//! so handlers can capture the [`Context`] and a module can prepare what only its HTTP
//! side needs (a storage directory) there.
//! Paths must not overlap another module's or the core's (start-up fails if they do).

use std::sync::Arc;

use crate::{Context, ModuleError};

pub use axum;

/// Builds a module's routes once the server runs (only when an HTTP listener is
/// configured); an error stops the server from starting.
pub type HttpRoutesFn = Arc<dyn Fn(Context) -> Result<axum::Router, ModuleError> + Send + Sync>;

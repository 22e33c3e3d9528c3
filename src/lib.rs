//! Starling, a federated XMPP server: the core.
//!
//! The path of a stanza: a socket is accepted by [`c2s`], its bytes go through the
//! incremental [`xml`] reader, negotiation ([`tls`], [`sasl`], resource binding)
//! yields a bound session in the [`session`] table, and every stanza the client sends
//! is stamped and handed to the [`router`], which delivers it to another session's
//! queue or to a module's handler. Modules (crates under `modules/`) see the server
//! only through `starling_api`. [`server::Server`] wires it all from a [`config::Config`].

pub mod admin_socket;
pub mod auth;
pub mod c2s;
pub mod cli;
pub mod component;
pub mod config;
pub mod control;
pub mod doap;
pub mod fast;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod modules;
pub mod rate;
pub mod router;
pub mod s2s;
pub mod sasl;
pub mod server;
pub mod session;
pub mod storage;
pub mod stream;
pub mod tls;
pub mod xml;

pub use config::Config;
pub use server::Server;

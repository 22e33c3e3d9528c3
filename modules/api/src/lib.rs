//! The module API of the Starling XMPP server.
//!
//! Every feature module depends on this crate and on nothing else of the server: it
//! declares a [`ModuleSpec`], registers its IQ handlers and disco features through a
//! [`Registrar`], and reaches the running server only through a [`Context`] (routing,
//! the session table, storage, server facts). The core implements the traits declared
//! here and wires the modules named in the configuration.
//!
//! Crates are re-exported so that every module compiles against exactly one version of
//! each: [`jid`], [`minidom`], [`xmpp_parsers`], [`diesel`] and [`tracing`].
#![warn(missing_docs)]

pub mod accounts;
pub mod address;
pub mod adhoc;
pub mod archive;
pub mod caps;
pub mod context;
pub mod control;
pub mod disco;
pub mod error;
pub mod hooks;
pub mod http;
pub mod ingress;
pub mod iq;
pub mod module;
pub mod ordered;
pub mod pep;
pub mod preauth;
pub mod push;
pub mod reply;
pub mod roster;
pub mod stanza;
pub mod storage;
pub mod vcard;

pub use accounts::{AccountEntry, AccountError, AccountService};
pub use address::{parse_bare_jid, parse_jid};
pub use context::{ClientState, Context, ContextParts, IqTimeout, Router, ServerInfo, Sessions};
pub use control::{ReloadReport, ServerControl};
pub use error::{ModuleError, stanza_error};
pub use hooks::{Event, Flow};
pub use iq::{IqHandlerFn, IqKind, IqPayload, IqRequest, IqResult};
pub use module::{ComponentFn, ModuleSpec, Registrar, Registry, Scope, Spec, SpecSupport, Support};
pub use ordered::OrderedSpawner;
pub use stanza::Stanza;
pub use storage::{Backend, Db, DbConn, Migrations, PoolState, StorageError};

pub use diesel;
pub use diesel_migrations;
pub use jid;
pub use minidom;
pub use toml;
pub use tracing;
pub use xmpp_parsers;

/// A boxed, sendable future, the return type of every registered handler.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

#![warn(missing_docs)]
//! doltctl: a supervisor for `dolt sql-server`.
//!
//! Start with [`Client`]: it finds the server for a data dir, starts it on first use (exactly
//! once across processes), and connects with retry while it restarts.
//!
//! ```no_run
//! # async fn demo() -> doltctl::Result<()> {
//! use mysql_async::prelude::Queryable;
//! let client = doltctl::Client::discover()?; // doltctl.toml, as the CLI finds it
//! let mut conn = client.conn().await?;       // starts the server if needed, retries
//! let one: Option<i64> = conn.query_first("SELECT 1").await.map_err(|e| client.error(e))?;
//! # Ok(()) }
//! ```
//!
//! The crate is layered, each layer using only those before it (see ARCHITECTURE.md):
//! system access, [`config`], the dolt server, the lifecycle (state machine, supervisor, the
//! [`control`] operations), [`client`], then the features (init, import, doctor) and the
//! command line.

mod error;
mod sys;

pub mod config;
mod server;

pub(crate) mod lifecycle;

pub mod client;

pub(crate) mod bootstrap;
pub(crate) mod doctor;
pub(crate) mod fleet;
pub(crate) mod import;
pub(crate) mod service;
pub mod testing;

#[doc(hidden)]
pub mod cli;

/// The README's Rust examples, compiled as doc tests so they cannot drift from the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use cli::run_supervisor_if_requested;
pub use client::{Client, ClientPool, ConnectionInfo};
pub use config::{Config, ConfigSource, Instance};
pub use error::{Error, Result};
pub use lifecycle::cluster::{ClusterView, Role as ClusterRole};
pub use lifecycle::control;
pub use lifecycle::state_file::{Phase, PhaseRecord, State};
pub use server::dolt::PINNED_VERSION as PINNED_DOLT_VERSION;
pub use sys::process::ProcessIdentity;
pub use testing::{TestServer, TestServerBuilder};

/// Internals that doltctl's own integration tests inspect (lock holders, process checks). Not
/// part of the stable API: anything here may change in any release.
#[doc(hidden)]
pub mod internals {
    pub use crate::client::sqlsplit::split as split_sql;
    pub use crate::server::health::{probe_opts, select1};
    pub use crate::server::port::{peers, preferred_port, Peer};
    pub use crate::sys::clock::now_rfc3339;
    pub use crate::sys::locks::{probe as probe_lock, Holder as LockHolder};
    pub use crate::sys::process::{is_alive, is_dolt_server};
}

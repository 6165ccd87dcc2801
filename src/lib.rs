//! doltctl: a supervisor for `dolt sql-server`.
//!
//! The library does everything; the `doltctl` binary is a thin command-line layer over it.
//! Applications typically need only [`control`] (start, stop, status) and [`Config`].
//!
//! ```no_run
//! # async fn demo() -> doltctl::Result<()> {
//! let cfg = doltctl::Config::discover(&doltctl::ConfigSource::default())?;
//! let state = doltctl::control::start(&cfg).await?;
//! println!("{}", state.url.unwrap_or_default());
//! # Ok(()) }
//! ```

pub mod config;
pub mod control;
pub mod dolt;
pub mod error;
pub mod health;
pub mod instance;
pub mod locks;
pub mod logs;
pub mod port;
pub mod preflight;
pub mod procinfo;
pub mod state;
pub mod supervisor;

pub use config::{Config, ConfigSource};
pub use error::{Error, Result};
pub use instance::Instance;
pub use state::{Phase, State};

/// The connection URL of a server doltctl runs (user root, no password, no database).
pub fn url_for(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("mysql://root@[{host}]:{port}/")
    } else {
        format!("mysql://root@{host}:{port}/")
    }
}

//! `doltctl.toml`: discovery, parsing and validation. Errors name the file, the key and the line.
//!
//! The section structs and their defaults live in `settings.rs`, finding, loading and
//! validating a file in `load.rs`, duration and size parsing in `parse.rs`; everything public
//! is re-exported here.

mod cluster;
pub(crate) mod format;
pub(crate) mod instance;
mod load;
mod metrics;
pub(crate) mod names;
mod parse;
mod settings;
pub(crate) mod url;

pub use cluster::{ClusterConfig, PeerConfig};
pub use format::Format;
pub use instance::Instance;
pub use load::{ConfigSource, CONFIG_ENV, CONFIG_FILE_NAME};
pub use metrics::{parse_listen, MetricsConfig};
pub use parse::{parse_duration, parse_size};
pub use settings::{
    BootstrapConfig, ClientConfig, Config, HealthConfig, LogLevel, LogsConfig, PortSetting,
    RestartConfig, SeedConfig, ServerConfig,
};

//! The settings: one struct per section of `doltctl.toml`, with the built-in defaults.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::parse::{de_duration, de_size};

/// The whole configuration, with defaults filled in and `data_dir` made absolute.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The directory dolt sql-server serves; each sub-directory holding a `.dolt/` is a database
    /// (the directory itself may be one too). Written relative, it is relative to the config
    /// file (to the current directory for built-in defaults). Default: `dolt`.
    pub data_dir: PathBuf,
    /// `[server]`: how dolt sql-server is run.
    pub server: ServerConfig,
    /// `[restart]`: restarts after a crash.
    pub restart: RestartConfig,
    /// `[logs]`: rotation of `<data_dir>/.doltctl/server.log`.
    pub logs: LogsConfig,
    /// `[health]`: probing a running server.
    pub health: HealthConfig,
    /// `[client]`: how clients connect and auto-start a server.
    pub client: ClientConfig,
    /// `[bootstrap]`: what `doltctl init` sets up.
    pub bootstrap: BootstrapConfig,
    /// `[metrics]`: the supervisor's Prometheus endpoint (off by default).
    pub metrics: super::metrics::MetricsConfig,
    /// `[cluster]`: this node of a replicated cluster; absent for a single server.
    pub cluster: Option<super::cluster::ClusterConfig>,
    /// Where this config came from; `None` for built-in defaults.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[server]`: how dolt sql-server is run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Keep a loopback address unless clients on other hosts must
    /// connect. Default: `127.0.0.1`.
    pub host: String,
    /// The port to listen on. Default: [`PortSetting::Auto`].
    pub port: PortSetting,
    /// Serve the databases read-only (Dolt still takes its exclusive locks). Default: false.
    pub read_only: bool,
    /// How long a launch may take until `SELECT 1` answers. Default: 60s.
    #[serde(deserialize_with = "de_duration")]
    pub ready_timeout: Duration,
    /// After SIGTERM, how long dolt gets to shut down before SIGKILL. Default: 30s.
    #[serde(deserialize_with = "de_duration")]
    pub stop_timeout: Duration,
    /// Dolt's log level. Default: [`LogLevel::Warning`].
    pub log_level: LogLevel,
    /// The dolt binary: a path, or a name looked up on PATH, then (when PATH has none) in the
    /// data dir's record of the last launch ([`Instance::dolt_bin_record`]) and, for `dolt`,
    /// in `~/.local/bin` where `scripts/install-dolt.sh` puts it. A path in a file is
    /// relative to that file; `$DOLT_BIN` overrides this. Default: `dolt`.
    ///
    /// [`Instance::dolt_bin_record`]: crate::Instance::dolt_bin_record
    pub dolt_bin: String,
    /// Extra arguments appended to `dolt sql-server --config <generated>`. Default: none.
    pub extra_args: Vec<String>,
    /// Dolt's `listener.max_connections`. Default: 1000.
    pub max_connections: u32,
    /// Stop the server (and the supervisor) after this long without client connections;
    /// zero means never. Default: zero.
    #[serde(deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
}

/// `[restart]`: restarts after a crash, with exponential backoff.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartConfig {
    /// Wait before a restart after a crash of a server that never became ready, or after the
    /// second crash in a row (the first crash of a ready server relaunches at once); doubles
    /// after each failure up to `max_backoff`. Default: 100ms.
    #[serde(deserialize_with = "de_duration")]
    pub initial_backoff: Duration,
    /// The longest wait between restarts. Default: 30s.
    #[serde(deserialize_with = "de_duration")]
    pub max_backoff: Duration,
    /// A server that ran this long ends a streak of quick crashes: its crash relaunches at
    /// once and the backoff starts again at `initial_backoff`. Default: 60s.
    #[serde(deserialize_with = "de_duration")]
    pub stable_after: Duration,
    /// This many failures (crashes or failed starts) within `failure_window`: stop retrying,
    /// state "failed", until `doltctl restart`. At least 1. Default: 5.
    pub max_failures: u32,
    /// The window `max_failures` is counted in. Default: 60s.
    #[serde(deserialize_with = "de_duration")]
    pub failure_window: Duration,
}

/// `[logs]`: rotation of `<data_dir>/.doltctl/server.log`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// `server.log` is rotated at this size, in bytes (written as e.g. `"50MiB"`, see
    /// [`parse_size`](crate::config::parse_size)); at least 4KiB. Default: 50MiB.
    #[serde(deserialize_with = "de_size")]
    pub max_size: u64,
    /// Rotated files kept: `server.log.1` ... `server.log.<keep>`. At least 1. Default: 3.
    pub keep: u32,
}

/// `[health]`: probing a running server with `SELECT 1`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// How often a running server is probed with `SELECT 1`. Default: 2s.
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
    /// How long one probe may take before it counts as missed. Default: 2s.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Consecutive missed probes after which the server is declared wedged and restarted.
    /// At least 1. Default: 3.
    pub max_missed: u32,
}

/// `[bootstrap]`: what `doltctl init` sets up.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    /// Databases `init` creates when missing. Names: letters, digits and _. Default: none.
    pub databases: Vec<String>,
    /// Author of the commits doltctl makes; unset: git's `user.name`/`user.email`, else a
    /// fixed doltctl identity.
    pub author_name: Option<String>,
    /// The author's email; unset as for `author_name`.
    pub author_email: Option<String>,
    /// Files applied once each by `init`, in this order. Default: none.
    pub seed: Vec<SeedConfig>,
}

/// `[[bootstrap.seed]]`: one file loaded into one database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedConfig {
    /// The database the file is loaded into.
    pub db: String,
    /// As written; relative to the config file's directory (see [`Config::resolve`]). Kept as
    /// written because it names the seed in the record and in the commit message.
    pub file: PathBuf,
    /// The table of a CSV or JSONL seed (default: the file name without its extension).
    pub table: Option<String>,
    /// `sql`, `csv` or `jsonl` (default: from the file's extension).
    pub format: Option<crate::config::format::Format>,
}

/// `[client]`: how clients connect, retry and auto-start a server.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Start a server on first access when none runs (local hosts only).
    /// `DOLTCTL_AUTOSTART=0` turns it off. Default: true.
    pub autostart: bool,
    /// Connection attempts at most, for transient errors. At least 1. Default: 30.
    pub connect_retries: u32,
    /// First wait between attempts; doubles each time. Default: 100ms.
    #[serde(deserialize_with = "de_duration")]
    pub retry_initial_delay: Duration,
    /// Total time spent waiting between attempts at most. Default: 6s.
    #[serde(deserialize_with = "de_duration")]
    pub retry_window: Duration,
    /// SQL user clients connect as. Default: `root`.
    pub user: String,
    /// `idle_timeout` of servers a client auto-starts (zero: never stop them). Default: 30m.
    #[serde(deserialize_with = "de_duration")]
    pub autostart_idle_timeout: Duration,
    /// A [`Client::pool`](crate::Client::pool) closes a connection that has been idle this
    /// long (checked at least every second), and keeps no minimum of idle connections, so an
    /// application that holds a pool but does nothing lets the server idle out. Zero: a
    /// connection is closed as soon as it is returned. Default: 30s.
    #[serde(deserialize_with = "de_duration")]
    pub pool_idle_timeout: Duration,
    /// At most this many servers of this user run at once, counted over every data dir (see
    /// `doltctl ps`): an auto-start beyond it first stops the longest-idle auto-started
    /// server without clients. At least 1. Default: no limit.
    pub max_instances: Option<u32>,
    /// Its password (`DOLTCTL_PASSWORD` overrides). When the user is root, a brand-new data dir
    /// gets this root password on its first start. Never put on a command line or in logs.
    /// Default: empty.
    pub password: String,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("autostart", &self.autostart)
            .field("connect_retries", &self.connect_retries)
            .field("retry_initial_delay", &self.retry_initial_delay)
            .field("retry_window", &self.retry_window)
            .field("user", &self.user)
            .field("autostart_idle_timeout", &self.autostart_idle_timeout)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("max_instances", &self.max_instances)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .finish()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            autostart: true,
            connect_retries: 30,
            retry_initial_delay: Duration::from_millis(100),
            retry_window: Duration::from_secs(6),
            user: "root".into(),
            password: String::new(),
            autostart_idle_timeout: Duration::from_secs(30 * 60),
            pool_idle_timeout: Duration::from_secs(30),
            max_instances: None,
        }
    }
}

/// `[server] port`: `"auto"` or a port number from 1 to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortSetting {
    /// A stable preferred port derived from the data dir, else a free one.
    #[default]
    Auto,
    /// Exactly this port; doltctl refuses to start when it is taken and names the process
    /// holding it.
    Fixed(u16),
}

/// `[server] log_level`: Dolt's log level, written in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// `trace`
    Trace,
    /// `debug`
    Debug,
    /// `info`: logs every query.
    Info,
    /// `warning` (the default)
    Warning,
    /// `error`
    Error,
    /// `fatal`
    Fatal,
}

impl LogLevel {
    /// The level as Dolt's config file spells it.
    pub fn as_dolt_arg(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Fatal => "fatal",
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("dolt"),
            server: ServerConfig::default(),
            restart: RestartConfig::default(),
            logs: LogsConfig::default(),
            health: HealthConfig::default(),
            client: ClientConfig::default(),
            bootstrap: BootstrapConfig::default(),
            metrics: Default::default(),
            cluster: None,
            source: None,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: PortSetting::Auto,
            read_only: false,
            ready_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(30),
            log_level: LogLevel::Warning,
            dolt_bin: "dolt".into(),
            extra_args: Vec::new(),
            max_connections: 1000,
            idle_timeout: Duration::ZERO,
        }
    }
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            max_failures: 5,
            failure_window: Duration::from_secs(60),
        }
    }
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            max_size: 50 * 1024 * 1024,
            keep: 3,
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            max_missed: 3,
        }
    }
}

impl fmt::Display for PortSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSetting::Auto => f.write_str("auto"),
            PortSetting::Fixed(p) => write!(f, "{p}"),
        }
    }
}

impl std::str::FromStr for PortSetting {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "auto" {
            return Ok(PortSetting::Auto);
        }
        match s.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!(
                "invalid port {s:?}: expected \"auto\" or a number from 1 to 65535"
            )),
            Ok(p) => Ok(PortSetting::Fixed(p)),
        }
    }
}

impl<'de> Deserialize<'de> for PortSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(i64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => match u16::try_from(n) {
                Ok(p) if p > 0 => Ok(PortSetting::Fixed(p)),
                _ => Err(serde::de::Error::custom(format!(
                    "invalid port {n}: expected \"auto\" or a number from 1 to 65535"
                ))),
            },
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::error::Result;

    fn parse(s: &str) -> Result<Config> {
        Config::parse_str(s, Path::new("/x/doltctl.toml"))
    }

    #[test]
    fn defaults_match_documented_values() {
        let c = parse("").unwrap();
        assert_eq!(c.server.port, PortSetting::Auto);
        assert_eq!(c.server.host, "127.0.0.1");
        assert_eq!(c.restart.initial_backoff, Duration::from_millis(100));
        assert_eq!(c.logs.max_size, 50 * 1024 * 1024);
        assert_eq!(c.server.log_level, LogLevel::Warning);
    }

    #[test]
    fn example_config_is_valid_and_states_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/doltctl.example.toml");
        let c = Config::load(&path).unwrap();
        let d = Config::default();
        assert_eq!(c.server.port, d.server.port);
        assert_eq!(c.server.ready_timeout, d.server.ready_timeout);
        assert_eq!(c.restart.max_failures, d.restart.max_failures);
        assert_eq!(c.health.interval, d.health.interval);
        assert_eq!(c.logs.max_size, d.logs.max_size);
        assert_eq!(c.client.pool_idle_timeout, d.client.pool_idle_timeout);
        assert_eq!(c.client.pool_idle_timeout, Duration::from_secs(30));
    }
}

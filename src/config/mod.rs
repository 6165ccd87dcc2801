//! `doltctl.toml`: discovery, parsing and validation. Errors name the file, the key and the line.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::{Error, IoContext, Result};

pub(crate) mod format;
pub(crate) mod instance;
pub(crate) mod names;
pub(crate) mod url;

pub use format::Format;
pub use instance::Instance;

pub const CONFIG_FILE_NAME: &str = "doltctl.toml";
pub const CONFIG_ENV: &str = "DOLTCTL_CONFIG";

/// The whole configuration, with defaults filled in and `data_dir` made absolute.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub restart: RestartConfig,
    pub logs: LogsConfig,
    pub health: HealthConfig,
    pub client: ClientConfig,
    pub bootstrap: BootstrapConfig,
    /// Where this config came from; `None` for built-in defaults.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub host: String,
    pub port: PortSetting,
    pub read_only: bool,
    #[serde(deserialize_with = "de_duration")]
    pub ready_timeout: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub stop_timeout: Duration,
    pub log_level: LogLevel,
    pub dolt_bin: String,
    pub extra_args: Vec<String>,
    pub max_connections: u32,
    /// Stop the server (and the supervisor) after this long without client connections;
    /// zero means never.
    #[serde(deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartConfig {
    #[serde(deserialize_with = "de_duration")]
    pub initial_backoff: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub max_backoff: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub stable_after: Duration,
    pub max_failures: u32,
    #[serde(deserialize_with = "de_duration")]
    pub failure_window: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    #[serde(deserialize_with = "de_size")]
    pub max_size: u64,
    pub keep: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// How often a running server is probed with `SELECT 1`.
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
    /// How long one probe may take before it counts as missed.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Consecutive missed probes after which the server is declared wedged and restarted.
    pub max_missed: u32,
}

/// `[bootstrap]`: what `doltctl init` sets up.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    /// Databases `init` creates when missing.
    pub databases: Vec<String>,
    /// Author of the commits doltctl makes; unset: git's `user.name`/`user.email`, else a
    /// fixed doltctl identity.
    pub author_name: Option<String>,
    pub author_email: Option<String>,
    /// Files applied once each by `init`, in this order.
    pub seed: Vec<SeedConfig>,
}

/// `[[bootstrap.seed]]`: one file loaded into one database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedConfig {
    pub db: String,
    /// As written; relative to the config file's directory (see [`Config::resolve`]). Kept as
    /// written because it names the seed in the record and in the commit message.
    pub file: PathBuf,
    /// The table of a CSV or JSONL seed (default: the file name without its extension).
    pub table: Option<String>,
    /// `sql`, `csv` or `jsonl` (default: from the file's extension).
    pub format: Option<crate::config::format::Format>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Start a server on first access when none runs (local hosts only).
    /// `DOLTCTL_AUTOSTART=0` turns it off.
    pub autostart: bool,
    /// Connection attempts at most, for transient errors.
    pub connect_retries: u32,
    /// First wait between attempts; doubles each time.
    #[serde(deserialize_with = "de_duration")]
    pub retry_initial_delay: Duration,
    /// Total time spent waiting between attempts at most.
    #[serde(deserialize_with = "de_duration")]
    pub retry_window: Duration,
    /// SQL user clients connect as.
    pub user: String,
    /// `idle_timeout` of servers a client auto-starts (zero: never stop them).
    #[serde(deserialize_with = "de_duration")]
    pub autostart_idle_timeout: Duration,
    /// Its password (`DOLTCTL_PASSWORD` overrides). When the user is root, a brand-new data dir
    /// gets this root password on its first start. Never put on a command line or in logs.
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
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortSetting {
    /// A stable preferred port derived from the data dir, else a free one.
    #[default]
    Auto,
    Fixed(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
    Fatal,
}

impl LogLevel {
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

/// Durations are parsed by `humantime` (the parser `humantime-serde` wraps). `humantime-serde`
/// itself is not used: its error, `invalid value: string "soon", expected a duration`, drops
/// humantime's reason and the examples of [`parse_duration`]'s message.
fn de_duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(u64),
        Str(String),
    }
    match Raw::deserialize(d)? {
        Raw::Num(n) => Ok(n),
        Raw::Str(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

/// Parses durations such as `100ms`, `30s`, `1m 30s`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); write e.g. \"100ms\", \"30s\", \"5m\""))
}

/// Parses sizes such as `50MiB`, `10MB`, `4096` (bytes), with `bytesize`: decimal (`k`, `KB`,
/// `MB`, ...) and binary (`KiB`, `MiB`, ...) units in any case, a space before the unit allowed.
/// Everything accepted before bytesize means the same; bytesize adds `Ki`/`Mi`/`Gi` and the
/// T, P and E units (so `1e` is an exabyte, not an error).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    // bytesize wants a unit after a fractional number ("1.5" alone is an error); a bare number
    // has always meant bytes here.
    let t = if t.ends_with(|c: char| c.is_ascii_digit() || c == '.') {
        format!("{t}B")
    } else {
        t.to_string()
    };
    t.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| {
            format!("invalid size {s:?}; write e.g. \"50MiB\", \"10MB\" or a number of bytes")
        })
}

/// Where to look for a config, in precedence order.
#[derive(Debug, Default, Clone)]
pub struct ConfigSource {
    /// `--config FILE`
    pub explicit: Option<PathBuf>,
    /// `--data-dir DIR`, overriding the config's `data_dir`.
    pub data_dir_override: Option<PathBuf>,
}

impl Config {
    /// Discovers and loads the config: `--config`, else `$DOLTCTL_CONFIG`, else `doltctl.toml`
    /// in the current directory or any parent, else built-in defaults.
    pub fn discover(src: &ConfigSource) -> Result<Config> {
        let cwd = std::env::current_dir().at(".")?;
        let file = match &src.explicit {
            Some(p) => Some(absolute(&cwd, p)),
            None => match std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
                Some(p) => Some(absolute(&cwd, Path::new(&p))),
                None => find_upwards(&cwd),
            },
        };
        let mut cfg = match &file {
            Some(f) => Config::load(f)?,
            None => {
                let mut c = Config::default();
                c.data_dir = cwd.join(&c.data_dir);
                c
            }
        };
        if let Some(d) = &src.data_dir_override {
            cfg.data_dir = absolute(&cwd, d);
        }
        cfg.apply_env();
        cfg.validate()?;
        Ok(cfg)
    }

    /// Loads one file; relative paths inside it are relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).at(path)?;
        let mut cfg = Config::parse_str(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("/"));
        cfg.data_dir = absolute(base, &cfg.data_dir);
        // A dolt_bin path (not a bare name looked up on PATH) is relative to this file too.
        if cfg.server.dolt_bin.contains('/') {
            cfg.server.dolt_bin = absolute(base, Path::new(&cfg.server.dolt_bin))
                .to_string_lossy()
                .into_owned();
        }
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parses TOML text; `path` is only used in error messages.
    pub fn parse_str(text: &str, path: &Path) -> Result<Config> {
        let de = toml::Deserializer::parse(text).map_err(|e| toml_error(path, text, "", &e))?;
        serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
            let key = e.path().to_string();
            toml_error(path, text, &key, e.inner())
        })
    }

    pub(crate) fn apply_env(&mut self) {
        if let Some(bin) = std::env::var_os("DOLT_BIN").filter(|v| !v.is_empty()) {
            self.server.dolt_bin = bin.to_string_lossy().into_owned();
        }
        if let Ok(v) = std::env::var("DOLTCTL_AUTOSTART") {
            self.client.autostart = !matches!(v.trim(), "0" | "false" | "no" | "off");
        }
        if let Ok(p) = std::env::var("DOLTCTL_PASSWORD") {
            self.client.password = p;
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::ConfigValue(m));
        if self.server.host.trim().is_empty() {
            return bad("[server] host is empty; use \"127.0.0.1\"".into());
        }
        if self.restart.initial_backoff > self.restart.max_backoff {
            return bad(format!(
                "[restart] initial_backoff ({:?}) is larger than max_backoff ({:?})",
                self.restart.initial_backoff, self.restart.max_backoff
            ));
        }
        if self.restart.max_failures == 0 {
            return bad("[restart] max_failures must be at least 1".into());
        }
        if self.logs.keep == 0 {
            return bad("[logs] keep must be at least 1".into());
        }
        if self.logs.max_size < 4096 {
            return bad(format!(
                "[logs] max_size is {} bytes; use at least 4KiB",
                self.logs.max_size
            ));
        }
        if self.client.connect_retries == 0 {
            return bad("[client] connect_retries must be at least 1".into());
        }
        if self.client.user.is_empty() {
            return bad("[client] user is empty; use \"root\"".into());
        }
        if self.health.max_missed == 0 {
            return bad("[health] max_missed must be at least 1".into());
        }
        if self.server.ready_timeout.is_zero() || self.health.interval.is_zero() {
            return bad("[server] ready_timeout and [health] interval must be more than 0s".into());
        }
        self.validate_bootstrap()
    }

    fn validate_bootstrap(&self) -> Result<()> {
        let b = &self.bootstrap;
        let bad = |m: String| Err(Error::ConfigValue(m));
        for db in &b.databases {
            if let Err(m) = crate::config::names::check_db_name(db) {
                return bad(format!("[bootstrap] databases: {m}"));
            }
        }
        for (key, v) in [
            ("author_name", &b.author_name),
            ("author_email", &b.author_email),
        ] {
            if v.as_deref()
                .is_some_and(|v| v.trim().is_empty() || v.contains(['<', '>']))
            {
                return bad(format!(
                    "[bootstrap] {key} is empty or contains < or >; remove the key to use git's identity"
                ));
            }
        }
        for (i, s) in b.seed.iter().enumerate() {
            let n = i + 1;
            if let Err(m) = crate::config::names::check_db_name(&s.db) {
                return bad(format!("[[bootstrap.seed]] number {n}: db: {m}"));
            }
            if s.file.as_os_str().is_empty() {
                return bad(format!("[[bootstrap.seed]] number {n}: file is empty"));
            }
        }
        Ok(())
    }

    /// A path from the config file made absolute: relative to the file's directory, or to the
    /// current directory for built-in defaults.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        let base = match self.source.as_deref().and_then(Path::parent) {
            Some(dir) => dir.to_path_buf(),
            None => std::env::current_dir().unwrap_or_default(),
        };
        absolute(&base, p)
    }
}

fn toml_error(path: &Path, text: &str, key: &str, e: &toml::de::Error) -> Error {
    let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
    Error::Config {
        path: path.to_path_buf(),
        line,
        column,
        key: if key.is_empty() || key == "." {
            "(document)".into()
        } else {
            key.into()
        },
        message: e.message().trim().to_string(),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

fn find_upwards(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|d| d.join(CONFIG_FILE_NAME))
        .find(|p| p.is_file())
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn full_example_parses() {
        let c = parse(
            r#"
data_dir = "db"
[server]
port = 3307
ready_timeout = "5s"
log_level = "debug"
extra_args = ["--max-connections", "10"]
[restart]
max_backoff = "2s"
[logs]
max_size = "1MiB"
keep = 2
"#,
        )
        .unwrap();
        assert_eq!(c.server.port, PortSetting::Fixed(3307));
        assert_eq!(c.server.ready_timeout, Duration::from_secs(5));
        assert_eq!(c.logs.max_size, 1 << 20);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("[server]\nhost = \"127.0.0.1\"\nprot = 1\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/x/doltctl.toml:3:"), "{msg}");
        assert!(msg.contains("prot"), "{msg}");
    }

    #[test]
    fn bad_duration_names_key_and_line() {
        let err = parse("[restart]\n\nmax_backoff = \"soon\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(":3:"), "{msg}");
        assert!(msg.contains("restart.max_backoff"), "{msg}");
        assert!(msg.contains("invalid duration"), "{msg}");
    }

    #[test]
    fn bad_port_names_key_and_line() {
        for bad in ["port = 70000", "port = \"x\"", "port = 0"] {
            let err = parse(&format!("[server]\n{bad}\n")).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(":2:"), "{msg}");
            assert!(msg.contains("server.port"), "{msg}");
        }
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
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("50MiB").unwrap(), 50 << 20);
        assert_eq!(parse_size("10 MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
    }

    /// Every form doltctl accepted before sizes were parsed with bytesize still means the same.
    #[test]
    fn sizes_keep_their_meaning() {
        for (text, bytes) in [
            ("8KiB", 8 << 10),
            (" 10 MB ", 10_000_000),
            ("1.5KiB", 1536),
            ("1.5", 1),
            ("4096.", 4096),
            (".5 mib", 1 << 19),
            ("2k", 2000),
            ("2kb", 2000),
            ("3M", 3_000_000),
            ("1G", 1_000_000_000),
            ("1gib", 1 << 30),
            ("7b", 7),
            ("7 B", 7),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text:?}");
        }
        for bad in ["", "MiB", "-1", "1.5.5", "10 XB", "1e3", "5 MiBs"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.starts_with("invalid size"), "{bad:?}: {err}");
        }
        let c = parse("[logs]\nmax_size = 8192\n").unwrap();
        assert_eq!(c.logs.max_size, 8192);
    }

    #[test]
    fn bad_size_names_key_and_line() {
        let err = parse("[logs]\n\nmax_size = \"lots\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/x/doltctl.toml:3:"), "{msg}");
        assert!(msg.contains("logs.max_size"), "{msg}");
        assert!(msg.contains("invalid size \"lots\""), "{msg}");
    }

    #[test]
    fn durations_parse() {
        for (text, d) in [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            (" 5m ", Duration::from_secs(300)),
            ("1m 30s", Duration::from_secs(90)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(text), Ok(d), "{text:?}");
        }
        assert!(parse_duration("soon")
            .unwrap_err()
            .starts_with("invalid duration \"soon\""));
    }
}

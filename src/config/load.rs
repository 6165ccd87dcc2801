//! Finding, reading and validating `doltctl.toml`; TOML errors mapped to the file, key and line.

use std::path::{Path, PathBuf};

use super::instance::check_data_dir;
use super::settings::Config;
use crate::error::{Error, IoContext, Result};

/// The config file's name, looked for in the current directory and its parents.
pub const CONFIG_FILE_NAME: &str = "doltctl.toml";
/// The environment variable naming a config file (used when `--config` is not given).
pub const CONFIG_ENV: &str = "DOLTCTL_CONFIG";

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
            Some(p) => Some((absolute(&cwd, p), "--config")),
            None => match std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
                Some(p) => Some((absolute(&cwd, Path::new(&p)), "$DOLTCTL_CONFIG")),
                None => find_upwards(&cwd).map(|f| (f, "found from the current directory")),
            },
        };
        let mut cfg = match &file {
            Some((f, given_by)) => Config::load_given(f, given_by)?,
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
        // A data dir that is a file is wrong for every command; one that does not exist is
        // only wrong for those that start a server (see `Instance::ensure_dirs`).
        if let Err(e @ Error::DataDirNotADirectory { .. }) = check_data_dir(&cfg.data_dir) {
            return Err(e);
        }
        Ok(cfg)
    }

    /// Loads one file; relative paths inside it are relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config> {
        Config::load_given(path, "given to Config::load")
    }

    /// [`Config::load`]; `given_by` says in errors who named the file.
    fn load_given(path: &Path, given_by: &str) -> Result<Config> {
        let text = read_config(path, given_by)?;
        let mut cfg = Config::parse_str(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("/"));
        cfg.data_dir = absolute(base, &cfg.data_dir);
        if let Some(c) = cfg.cluster.as_mut() {
            for p in [&mut c.etcd_ca, &mut c.etcd_cert, &mut c.etcd_key]
                .into_iter()
                .flatten()
            {
                *p = absolute(base, p);
            }
        }
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

    pub(crate) fn validate(&self) -> Result<()> {
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
        if self.client.max_instances == Some(0) {
            return bad(
                "[client] max_instances must be at least 1; leave it out for no limit".into(),
            );
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
        super::cluster::validate(self).or_else(bad)?;
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

/// The text of a config file, or an error that says which file and what to do.
fn read_config(path: &Path, given_by: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            return Error::ConfigMissing {
                path: path.to_path_buf(),
                given_by: given_by.into(),
            };
        }
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                let uid = nix::unistd::getuid();
                let user = nix::unistd::User::from_uid(uid)
                    .ok()
                    .flatten()
                    .map_or_else(|| format!("uid {uid}"), |u| format!("{} (uid {uid})", u.name));
                format!(
                    "let {user} read it and its directories (chmod / chown), or pass another --config"
                )
            }
            std::io::ErrorKind::IsADirectory => format!(
                "pass the config file itself with --config, e.g. {}",
                path.join(CONFIG_FILE_NAME).display()
            ),
            std::io::ErrorKind::InvalidData => "save it as UTF-8 text".into(),
            _ => "check the file, or pass another --config".into(),
        };
        Error::ConfigUnreadable {
            path: path.to_path_buf(),
            source: e,
            hint,
        }
    })
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
        message: with_suggestion(e.message().trim()),
    }
}

/// serde's "unknown field `prot`, expected one of `host`, `port`, ..." (or "unknown
/// variant"), with the closest expected name suggested: "unknown field `prot` (did you mean
/// `port`?), expected one of ...". Other messages are returned unchanged.
fn with_suggestion(message: &str) -> String {
    let Some((head, rest)) = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|p| message.strip_prefix(p).map(|rest| (*p, rest)))
    else {
        return message.to_string();
    };
    let Some((name, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    if let Some(best) = closest(name, expected_names(expected)) {
        return format!("{head}{name}` (did you mean `{best}`?){expected}");
    }
    // A section's key at the top of the file, above every [section] header.
    if expected_names(expected).any(|n| n == "server") {
        if let Some(section) = section_with_key(name) {
            return format!("{head}{name}` (it belongs in [{section}]){expected}");
        }
    }
    message.to_string()
}

/// The names in serde's ", expected one of `a`, `b`": every second piece between backticks.
fn expected_names(expected: &str) -> impl Iterator<Item = &str> {
    expected.split('`').skip(1).step_by(2)
}

/// The section (`server`, `client`, ...) that has key `name`. The sections' keys are what
/// serde expects of each, so they cannot drift from the structs.
fn section_with_key(name: &str) -> Option<&'static str> {
    fn keys<T: serde::de::DeserializeOwned>() -> Vec<String> {
        match toml::from_str::<T>("doltctl_no_such_key = 0") {
            Err(e) => e
                .message()
                .split_once("expected")
                .map(|(_, list)| expected_names(list).map(str::to_string).collect())
                .unwrap_or_default(),
            Ok(_) => Vec::new(),
        }
    }
    use super::settings::*;
    type Keys = fn() -> Vec<String>;
    let sections: [(&str, Keys); 8] = [
        ("server", keys::<ServerConfig>),
        ("restart", keys::<RestartConfig>),
        ("logs", keys::<LogsConfig>),
        ("health", keys::<HealthConfig>),
        ("client", keys::<ClientConfig>),
        ("bootstrap", keys::<BootstrapConfig>),
        ("metrics", keys::<super::metrics::MetricsConfig>),
        ("cluster", keys::<super::cluster::ClusterConfig>),
    ];
    let name = name.to_lowercase().replace('-', "_");
    sections
        .into_iter()
        .find(|(_, keys)| keys().contains(&name))
        .map(|(section, _)| section)
}

/// The candidate most similar to `name` (Jaro-Winkler, which favours a shared start), if it
/// is similar enough to be a likely misspelling.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let name = name.to_lowercase().replace('-', "_");
    candidates
        .map(|c| (strsim::jaro_winkler(&name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
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
    use std::time::Duration;

    use super::*;
    use crate::config::PortSetting;

    fn parse(s: &str) -> Result<Config> {
        Config::parse_str(s, Path::new("/x/doltctl.toml"))
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
    fn misspelled_keys_and_values_suggest_the_closest_one() {
        for (text, unknown, meant) in [
            ("[server]\nprot = 1\n", "prot", "port"),
            (
                "[server]\nready_timout = \"5s\"\n",
                "ready_timout",
                "ready_timeout",
            ),
            (
                "[server]\nidle-timeout = \"5s\"\n",
                "idle-timeout",
                "idle_timeout",
            ),
            ("[sever]\nport = 1\n", "sever", "server"),
            ("datadir = \"x\"\n", "datadir", "data_dir"),
            ("[client]\nauto_start = false\n", "auto_start", "autostart"),
            ("[server]\nlog_level = \"warn\"\n", "warn", "warning"),
        ] {
            let msg = parse(text).unwrap_err().to_string();
            assert!(
                msg.contains(&format!("`{unknown}` (did you mean `{meant}`?)")),
                "{text:?}: {msg}"
            );
            assert!(msg.contains("/x/doltctl.toml:"), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
        // A section's key at the top level: where it belongs.
        let msg = parse("port = 3307\n[server]\n").unwrap_err().to_string();
        assert!(
            msg.contains(
                "unknown field `port` (it belongs in [server]), expected one of `data_dir`"
            ),
            "{msg}"
        );
        let msg = parse("autostart = false\n").unwrap_err().to_string();
        assert!(msg.contains("(it belongs in [client])"), "{msg}");
        // Nothing close: no guess, but the valid keys are still listed.
        let msg = parse("[server]\nzzzz = 1\n").unwrap_err().to_string();
        assert!(!msg.contains("did you mean"), "{msg}");
        assert!(msg.contains("`port`"), "{msg}");
    }

    #[test]
    fn a_missing_or_unreadable_config_says_which_file_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let src = ConfigSource {
            explicit: Some(missing.clone()),
            data_dir_override: None,
        };
        let msg = Config::discover(&src).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "config file {0} (--config) does not exist; create it with \
                 `doltctl --config {0} init`, or correct the path",
                missing.display()
            )
        );
        let msg = Config::discover(&ConfigSource {
            explicit: Some(dir.path().to_path_buf()),
            data_dir_override: None,
        })
        .unwrap_err()
        .to_string();
        assert!(
            msg.starts_with(&format!(
                "cannot read config file {}: ",
                dir.path().display()
            )),
            "{msg}"
        );
        assert!(
            msg.ends_with(&format!(
                "; pass the config file itself with --config, e.g. {}",
                dir.path().join("doltctl.toml").display()
            )),
            "{msg}"
        );
        assert!(!dir.path().join("dolt").exists());
    }

    #[test]
    fn a_data_dir_that_is_a_file_is_refused_for_every_command() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data");
        std::fs::write(&file, "").unwrap();
        let msg = Config::discover(&ConfigSource {
            explicit: None,
            data_dir_override: Some(file.clone()),
        })
        .unwrap_err()
        .to_string();
        assert!(
            msg.starts_with(&format!("data dir {} is not a directory;", file.display())),
            "{msg}"
        );
        // A missing one is fine for loading: only starting refuses it.
        Config::discover(&ConfigSource {
            explicit: None,
            data_dir_override: Some(dir.path().join("missing")),
        })
        .unwrap();
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
    fn bad_size_names_key_and_line() {
        let err = parse("[logs]\n\nmax_size = \"lots\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/x/doltctl.toml:3:"), "{msg}");
        assert!(msg.contains("logs.max_size"), "{msg}");
        assert!(msg.contains("invalid size \"lots\""), "{msg}");
    }
}

/// Property tests: no text, TOML-shaped or not, makes loading a config panic; every refusal
/// is an error that renders.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    const SECTIONS: &[&str] = &[
        "",
        "[server]",
        "[restart]",
        "[health]",
        "[logs]",
        "[client]",
        "[bootstrap]",
        "[[bootstrap.seed]]",
        "[nope]",
        "[server.x]",
    ];
    const KEYS: &[&str] = &[
        "data_dir",
        "host",
        "port",
        "read_only",
        "ready_timeout",
        "stop_timeout",
        "log_level",
        "dolt_bin",
        "extra_args",
        "max_connections",
        "idle_timeout",
        "initial_backoff",
        "max_backoff",
        "stable_after",
        "max_failures",
        "failure_window",
        "interval",
        "timeout",
        "max_missed",
        "max_size",
        "keep",
        "autostart",
        "user",
        "password",
        "databases",
        "db",
        "file",
        "table",
        "format",
        "prot",
        "é",
    ];
    const VALUES: &[&str] = &[
        "0",
        "-1",
        "65536",
        "3306",
        "\"auto\"",
        "\"100ms\"",
        "\"0s\"",
        "\"5m\"",
        "\"lots\"",
        "\"50MiB\"",
        "\"\"",
        "true",
        "[]",
        "[\"a\", 1]",
        "{}",
        "1.5",
        "\"18446744073709551616s\"",
        "\"9999999999999h\"",
        "\"\\u00e9\"",
        "1979-05-27",
        "\"/\"",
        "\"a\\nb\"",
    ];

    fn toml_like() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            prop::sample::select(SECTIONS).prop_map(str::to_string),
            (prop::sample::select(KEYS), prop::sample::select(VALUES))
                .prop_map(|(k, v)| format!("{k} = {v}")),
            (prop::sample::select(KEYS), "[ -~]{0,12}").prop_map(|(k, v)| format!("{k} = {v}")),
            "\\PC{0,20}",
        ];
        prop::collection::vec(line, 0..12).prop_map(|l| l.join("\n"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            if let Ok(c) = Config::parse_str(&text, Path::new("/x/doltctl.toml")) {
                let _ = c.validate();
            } else if let Err(e) = Config::parse_str(&text, Path::new("/x/doltctl.toml")) {
                let _ = e.to_string();
            }
        }

        #[test]
        fn toml_shaped_text_never_panics(text in toml_like()) {
            match Config::parse_str(&text, Path::new("/x/doltctl.toml")) {
                Ok(c) => {
                    if let Err(e) = c.validate() {
                        prop_assert!(!e.to_string().is_empty());
                    }
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }
}

//! `doltctl init`: a dev environment from nothing. Writes `doltctl.toml` when there is none,
//! creates the data dir and the missing databases, and applies each seed once. Existing
//! databases and data are never changed, and a second run changes no file.
//!
//! - Works without a usable HOME: every dolt command gets `DOLT_ROOT_PATH` in the runtime dir
//!   (unless the caller set one) and an explicit author identity.
//! - Databases: `dolt init` in `<data_dir>/<name>` while no server runs; through the server
//!   (`CREATE DATABASE`) while one does, because Dolt finds databases on disk only at start.
//! - Seeds go through the server like `doltctl import` (one transaction) and are committed with
//!   it as `seed: <file>`. `<runtime>/seeds.json` records each applied seed with the SHA-256 of
//!   its content; a seed whose file changed later is reported, never applied again.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::instance::Instance;
use crate::config::names::check_db_name;
use crate::config::{Config, ConfigSource, SeedConfig, CONFIG_ENV, CONFIG_FILE_NAME};
use crate::error::{Error, IoContext, Result};
use crate::import::{self, quote_ident, CommitSpec, ImportSpec};
use crate::lifecycle::control;
use crate::server::dolt;
use crate::sys::atomic::write_atomic;
use crate::sys::clock::now_rfc3339;

/// The commented example config; `init` writes it with the data dir and databases filled in.
pub const CONFIG_TEMPLATE: &str = include_str!("../../config/doltctl.example.toml");

/// Used when neither the config nor git names an author.
pub const FALLBACK_AUTHOR_NAME: &str = "doltctl";
pub const FALLBACK_AUTHOR_EMAIL: &str = "doltctl@localhost";

/// Who doltctl's commits are by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub name: String,
    pub email: String,
}

impl std::fmt::Display for Author {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} <{}>", self.name, self.email)
    }
}

/// `[bootstrap] author_name/author_email`, else git's `user.name`/`user.email` (as seen from
/// the config's directory), else doltctl's own identity.
pub fn author(cfg: &Config) -> Author {
    let dir = cfg.resolve(Path::new("."));
    let pick = |configured: &Option<String>, key: &str, fallback: &str| {
        configured
            .clone()
            .or_else(|| git_config(&dir, key))
            .unwrap_or_else(|| fallback.to_string())
    };
    Author {
        name: pick(
            &cfg.bootstrap.author_name,
            "user.name",
            FALLBACK_AUTHOR_NAME,
        ),
        email: pick(
            &cfg.bootstrap.author_email,
            "user.email",
            FALLBACK_AUTHOR_EMAIL,
        ),
    }
}

fn git_config(dir: &Path, key: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["config", "--get", key])
        .current_dir(if dir.is_dir() { dir } else { Path::new("/") })
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let v = String::from_utf8(out.stdout).ok()?.trim().to_string();
    // `Name <email>` is how Dolt takes an author: angle brackets would break it.
    (out.status.success() && !v.is_empty() && !v.contains(['<', '>', '\n'])).then_some(v)
}

/// The example config with `data_dir` and `[bootstrap] databases` set.
pub fn render_config(data_dir: &str, databases: &[String]) -> Result<String> {
    let dd = format!("data_dir = {}", toml::Value::String(data_dir.to_string()));
    let list: Vec<String> = databases
        .iter()
        .map(|d| toml::Value::String(d.clone()).to_string())
        .collect();
    let dbs = format!("databases = [{}]", list.join(", "));
    let mut seen = (false, false);
    let mut out = String::from("# Written by `doltctl init` from config/doltctl.example.toml.\n");
    for line in CONFIG_TEMPLATE.lines() {
        if !seen.0 && line.starts_with("data_dir = ") {
            out.push_str(&dd);
            seen.0 = true;
        } else if !seen.1 && line.starts_with("databases = ") {
            out.push_str(&dbs);
            seen.1 = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if seen != (true, true) {
        return Err(Error::ConfigValue(
            "the built-in config template has no `data_dir = ` or `databases = ` line \
             (config/doltctl.example.toml was changed); this is a bug in doltctl"
                .into(),
        ));
    }
    Ok(out)
}

/// The config `init` works with: the one doltctl finds (`--config`, `$DOLTCTL_CONFIG`,
/// `doltctl.toml` here or above), written from the template where there is none (at `--config`
/// / `$DOLTCTL_CONFIG` if given, else `./doltctl.toml`). Returns its path and whether it was
/// written now. An existing file is never changed.
pub fn ensure_config(src: &ConfigSource, databases: &[String]) -> Result<(PathBuf, bool)> {
    let cwd = std::env::current_dir().at(".")?;
    let named = src.explicit.clone().or_else(|| {
        std::env::var_os(CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let target = match named {
        Some(p) => cwd.join(p),
        None => match cwd
            .ancestors()
            .map(|d| d.join(CONFIG_FILE_NAME))
            .find(|p| p.is_file())
        {
            Some(found) => found,
            None => cwd.join(CONFIG_FILE_NAME),
        },
    };
    if target.exists() {
        return Ok((target, false));
    }
    for d in databases {
        check_db_name(d).map_err(Error::ConfigValue)?;
    }
    let data_dir = match &src.data_dir_override {
        // Relative paths in the file are relative to the file, on the command line to `.`.
        Some(d) if d.is_relative() && target.parent() != Some(cwd.as_path()) => {
            cwd.join(d).to_string_lossy().into_owned()
        }
        Some(d) => d.to_string_lossy().into_owned(),
        None => crate::Config::default()
            .data_dir
            .to_string_lossy()
            .into_owned(),
    };
    let text = render_config(&data_dir, databases)?;
    // The rendered file must load as it will be read back.
    Config::parse_str(&text, &target)?;
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    // create_new: a config that appeared meanwhile is never overwritten.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .at(&target)?;
    f.write_all(text.as_bytes()).at(&target)?;
    Ok((target, true))
}

/// What `init` was asked for beyond the config.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Databases to create in addition to `[bootstrap] databases` (`--db`).
    pub databases: Vec<String>,
    /// Start the server afterwards (`--start`).
    pub start: bool,
    /// Show import progress for large seeds.
    pub progress: bool,
}

/// One change `init` made.
#[derive(Debug, Clone)]
pub enum Action {
    CreatedDataDir(PathBuf),
    CreatedDatabase {
        name: String,
        through_server: bool,
    },
    AppliedSeed {
        db: String,
        file: String,
        rows: u64,
        commit: Option<String>,
    },
    /// A seed with no record whose commit was found in the database: recorded, not applied.
    RecordedSeed {
        db: String,
        file: String,
        commit: String,
    },
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::CreatedDataDir(d) => write!(f, "created data dir {}", d.display()),
            Action::CreatedDatabase {
                name,
                through_server,
            } => write!(
                f,
                "created database {name}{}",
                if *through_server {
                    " (through the running server)"
                } else {
                    ""
                }
            ),
            Action::AppliedSeed {
                db,
                file,
                rows,
                commit,
            } => write!(
                f,
                "applied seed {file} to {db}: {rows} row{}, commit {}",
                if *rows == 1 { "" } else { "s" },
                commit.as_deref().unwrap_or("?")
            ),
            Action::RecordedSeed { db, file, commit } => write!(
                f,
                "seed {file} for {db} was already committed ({commit}) but not recorded; \
                 recorded it without applying it again"
            ),
        }
    }
}

/// What `init` did and found.
#[derive(Debug, Clone, Default)]
pub struct InitReport {
    pub data_dir: PathBuf,
    pub actions: Vec<Action>,
    /// Changed seeds and the like: reported, nothing done about them.
    pub warnings: Vec<String>,
    pub databases: Vec<String>,
    /// Seeds in the config that are applied (now or before).
    pub seeds_applied: usize,
    /// With `start`: the server's URL.
    pub url: Option<String>,
}

impl InitReport {
    /// The line `init` prints when it changed nothing.
    pub fn in_place_line(&self) -> String {
        let dbs = if self.databases.is_empty() {
            "no databases".to_string()
        } else {
            format!("databases {}", self.databases.join(", "))
        };
        format!(
            "everything is already in place: {} with {dbs}, {} seed{} applied",
            self.data_dir.display(),
            self.seeds_applied,
            if self.seeds_applied == 1 { "" } else { "s" }
        )
    }
}

/// `<runtime>/seeds.json`.
pub fn seeds_file(instance: &Instance) -> PathBuf {
    instance.runtime_dir().join("seeds.json")
}

/// The record of applied seeds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SeedLog {
    pub applied: Vec<AppliedSeed>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppliedSeed {
    pub db: String,
    /// The seed's `file` as written in the config.
    pub file: String,
    pub sha256: String,
    pub applied_at: String,
    pub commit: Option<String>,
}

impl SeedLog {
    pub fn read(path: &Path) -> Result<SeedLog> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SeedLog::default()),
            Err(e) => return Err(Error::io(path, e)),
        };
        serde_json::from_str(&text).map_err(|e| Error::Import {
            path: path.to_path_buf(),
            line: Some(e.line()),
            message: format!(
                "not a valid seed record ({e}); fix it, or remove it to have every seed \
                 applied again"
            ),
        })
    }

    fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Import {
            path: path.to_path_buf(),
            line: None,
            message: e.to_string(),
        })?;
        write_atomic(path, &json)
    }

    fn find(&self, db: &str, file: &str) -> Option<&AppliedSeed> {
        self.applied.iter().find(|s| s.db == db && s.file == file)
    }
}

/// A seed of the config, with its content's hash.
struct Seed {
    cfg: SeedConfig,
    /// As written in the config.
    name: String,
    path: PathBuf,
    sha256: String,
}

fn read_seeds(cfg: &Config) -> Result<Vec<Seed>> {
    let mut out = Vec::new();
    for s in &cfg.bootstrap.seed {
        let path = cfg.resolve(&s.file);
        let bytes = std::fs::read(&path).map_err(|e| Error::Import {
            path: path.clone(),
            line: None,
            message: format!(
                "cannot read this seed file ([[bootstrap.seed]] file = {:?} in {}): {e}",
                s.file.display(),
                cfg.source
                    .as_deref()
                    .map_or("the config".into(), |p| p.display().to_string())
            ),
        })?;
        let sha256 = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        out.push(Seed {
            cfg: s.clone(),
            name: s.file.to_string_lossy().into_owned(),
            path,
            sha256,
        });
    }
    Ok(out)
}

/// Sets up the dev environment: see the module docs.
pub async fn init(cfg: &Config, opts: &InitOptions) -> Result<InitReport> {
    let mut databases: Vec<String> = Vec::new();
    let seed_dbs = cfg.bootstrap.seed.iter().map(|s| &s.db);
    for d in cfg
        .bootstrap
        .databases
        .iter()
        .chain(&opts.databases)
        .chain(seed_dbs)
    {
        check_db_name(d).map_err(Error::ConfigValue)?;
        if !databases.contains(d) {
            databases.push(d.clone());
        }
    }
    // Every seed file is read first: a missing one fails before anything changed.
    let seeds = read_seeds(cfg)?;
    let mut report = InitReport {
        databases: databases.clone(),
        ..Default::default()
    };
    if !cfg.data_dir.exists() {
        report
            .actions
            .push(Action::CreatedDataDir(cfg.data_dir.clone()));
    }
    Instance::new(&cfg.data_dir).ensure_dirs()?;
    // Now that it exists, the canonical path.
    let instance = Instance::new(&cfg.data_dir);
    report.data_dir = instance.data_dir().to_path_buf();
    dolt::prepare_dolt_root(&instance)?;
    let author = author(cfg);

    // No supervisor may start between this check and the databases' creation: a server
    // scans the data dir once, at start, and would not see a database created under it.
    let start_lock =
        crate::lifecycle::start_lock::lock_start(&instance, std::time::Duration::from_secs(120))
            .await?;
    let server_up = control::status(cfg)?.supervisor_alive;
    // Through a server, the client may need to wait for it (and so for this lock): keep the
    // lock only for the `dolt init` path.
    let start_lock = (!server_up).then_some(start_lock);
    let missing: Vec<&String> = databases
        .iter()
        .filter(|d| !instance.data_dir().join(d).join(".dolt").is_dir())
        .collect();
    for d in &missing {
        let dir = instance.data_dir().join(d);
        let non_empty = std::fs::read_dir(&dir).is_ok_and(|mut r| r.next().is_some());
        if non_empty {
            return Err(Error::DoltCommand {
                what: format!("creating database {d}"),
                message: format!(
                    "{} exists and is not empty but is not a Dolt database (it has no .dolt); \
                     doltctl does not touch it: move it aside or choose another name",
                    dir.display()
                ),
            });
        }
    }
    for d in &missing {
        if server_up {
            let client = crate::Client::from_config(cfg.clone());
            client
                .execute(&[format!("CREATE DATABASE IF NOT EXISTS {}", quote_ident(d))])
                .await?;
        } else {
            dolt_init(cfg, &instance, d, &author).await?;
        }
        report.actions.push(Action::CreatedDatabase {
            name: d.to_string(),
            through_server: server_up,
        });
    }
    drop(start_lock);

    let log_path = seeds_file(&instance);
    let mut log = SeedLog::read(&log_path)?;
    let mut pending = Vec::new();
    for s in &seeds {
        // A database created just now has none of its seeds, whatever an old record says.
        let fresh = missing.iter().any(|d| **d == s.cfg.db);
        match log.find(&s.cfg.db, &s.name) {
            Some(r) if !fresh && r.sha256 == s.sha256 => report.seeds_applied += 1,
            Some(r) if !fresh => report.warnings.push(format!(
                "seed {} for {} has changed since it was applied ({}, commit {}); it is not \
                 applied again. Put the change in a new seed file (or run it with `doltctl \
                 import`); to apply this file from scratch, drop what it created and remove its \
                 entry from {}",
                s.name,
                s.cfg.db,
                r.applied_at,
                r.commit.as_deref().unwrap_or("?"),
                log_path.display()
            )),
            _ => pending.push(s),
        }
    }
    if !pending.is_empty() {
        log.applied
            .retain(|r| !pending.iter().any(|s| s.cfg.db == r.db && s.name == r.file));
        let started_here = !server_up;
        if started_here {
            control::start(cfg).await?;
        }
        let result = apply_seeds(
            cfg,
            opts,
            &author,
            &pending,
            &mut log,
            &log_path,
            &mut report,
        )
        .await;
        if started_here && !opts.start {
            // Leave things as found: the server ran only for the seeds.
            if let Err(e) = control::stop(cfg).await {
                tracing::warn!("stopping the server started for the seeds: {e}");
            }
        }
        result?;
    }
    if opts.start {
        let st = control::start(cfg).await?;
        report.url = st.url;
    }
    Ok(report)
}

async fn apply_seeds(
    cfg: &Config,
    opts: &InitOptions,
    author: &Author,
    pending: &[&Seed],
    log: &mut SeedLog,
    log_path: &Path,
    report: &mut InitReport,
) -> Result<()> {
    for s in pending {
        let message = format!("seed: {}", s.name);
        let mut record = AppliedSeed {
            db: s.cfg.db.clone(),
            file: s.name.clone(),
            sha256: s.sha256.clone(),
            applied_at: now_rfc3339(),
            commit: None,
        };
        if let Some(commit) = seed_commit(cfg, &s.cfg.db, &message).await? {
            report.actions.push(Action::RecordedSeed {
                db: s.cfg.db.clone(),
                file: s.name.clone(),
                commit: commit.clone(),
            });
            record.commit = Some(commit);
        } else {
            let spec = ImportSpec {
                table: s.cfg.table.clone(),
                format: s.cfg.format,
                commit: Some(CommitSpec {
                    message,
                    author: author.to_string(),
                }),
                progress: opts.progress,
                ..ImportSpec::new(&s.path, &s.cfg.db)
            };
            let summary = import::run(cfg, &spec).await?;
            report.actions.push(Action::AppliedSeed {
                db: s.cfg.db.clone(),
                file: s.name.clone(),
                rows: summary.rows,
                commit: summary.commit.clone(),
            });
            record.commit = summary.commit;
        }
        log.applied.push(record);
        log.write(log_path)?;
        report.seeds_applied += 1;
    }
    Ok(())
}

/// The commit a seed made, if the database has one with its message (the record was lost).
async fn seed_commit(cfg: &Config, db: &str, message: &str) -> Result<Option<String>> {
    use mysql_async::prelude::Queryable;
    let client = crate::Client::from_config(cfg.clone()).database(db);
    let message = message.to_string();
    client
        .with_retry(move |conn| {
            let message = message.clone();
            Box::pin(async move {
                conn.exec_first::<String, _, _>(
                    "SELECT commit_hash FROM dolt_log WHERE message = ? LIMIT 1",
                    (message,),
                )
                .await
            })
        })
        .await
}

/// `dolt init` in `<data_dir>/<db>`, with doltctl's root path and an explicit identity.
async fn dolt_init(cfg: &Config, instance: &Instance, db: &str, author: &Author) -> Result<()> {
    let bin = dolt::resolve_binary(cfg)?;
    dolt_init_in(
        &bin,
        instance.data_dir(),
        db,
        author,
        &dolt::dolt_env(instance),
    )
    .await
}

/// Creates database `db` as `<data_dir>/<db>` with `dolt init` (no server may run on
/// `data_dir`), giving dolt the environment `env`. A directory this call created is removed
/// again when `dolt init` fails.
pub(crate) async fn dolt_init_in(
    bin: &Path,
    data_dir: &Path,
    db: &str,
    author: &Author,
    env: &[(String, String)],
) -> Result<()> {
    let dir = data_dir.join(db);
    let created = !dir.exists();
    std::fs::create_dir_all(&dir).at(&dir)?;
    let out = tokio::process::Command::new(bin)
        .args(["init", "--name", &author.name, "--email", &author.email])
        .current_dir(&dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| Error::DoltBinary {
            bin: bin.to_path_buf(),
            message: format!("cannot run: {e}"),
        })?;
    if out.status.success() {
        return Ok(());
    }
    if created {
        // Only what this call created: a half-made database would look like a real one next
        // time.
        let _ = std::fs::remove_dir_all(&dir);
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    Err(Error::DoltCommand {
        what: format!("`dolt init` for database {db} in {}", dir.display()),
        message: format!("{} ({})", text.trim(), dolt::describe_exit(out.status)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_config_loads_with_the_chosen_values() {
        let text = render_config("my data/dir \"x\"", &["app".into(), "b_2".into()]).unwrap();
        let cfg = Config::parse_str(&text, Path::new("/p/doltctl.toml")).unwrap();
        assert_eq!(cfg.data_dir, PathBuf::from("my data/dir \"x\""));
        assert_eq!(cfg.bootstrap.databases, ["app", "b_2"]);
        assert!(cfg.bootstrap.seed.is_empty());
        // The comments survive.
        assert!(text.contains("[[bootstrap.seed]]"));
        let none = render_config("dolt", &[]).unwrap();
        assert!(none.contains("\ndatabases = []\n"), "{none}");
    }

    #[test]
    fn database_names() {
        assert!(check_db_name("app_1").is_ok());
        for bad in ["", "my-db", "a b", "a/b", "mysql", "x".repeat(65).as_str()] {
            assert!(check_db_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn seeds_parse_and_resolve_relative_to_the_config() {
        let cfg = Config::parse_str(
            r#"
[bootstrap]
author_name = "A"
author_email = "a@example.com"
[[bootstrap.seed]]
db = "app"
file = "seeds/schema.sql"
[[bootstrap.seed]]
db = "app"
file = "seeds/u.data"
table = "users"
format = "csv"
"#,
            Path::new("/p/doltctl.toml"),
        )
        .unwrap();
        let mut cfg = cfg;
        cfg.source = Some(PathBuf::from("/p/doltctl.toml"));
        assert_eq!(cfg.bootstrap.seed.len(), 2);
        assert_eq!(
            cfg.resolve(&cfg.bootstrap.seed[0].file),
            PathBuf::from("/p/seeds/schema.sql")
        );
        assert_eq!(cfg.bootstrap.seed[1].format, Some(import::Format::Csv));
        assert_eq!(
            author(&cfg),
            Author {
                name: "A".into(),
                email: "a@example.com".into()
            }
        );
        let bad = Config::parse_str(
            "[[bootstrap.seed]]\ndb = \"app\"\nfile = \"x.sql\"\nformat = \"xml\"\n",
            Path::new("/p/doltctl.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("bootstrap.seed[0].format"), "{bad}");
    }
}

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

mod author;
mod config_file;
mod databases;
mod seeds;

use std::path::PathBuf;

use crate::config::instance::Instance;
use crate::config::names::check_db_name;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::lifecycle::control;
use crate::server::dolt;
use seeds::{apply_seeds, read_seeds};

pub use author::{author, Author, FALLBACK_AUTHOR_EMAIL, FALLBACK_AUTHOR_NAME};
pub use config_file::ensure_config;
pub(crate) use databases::dolt_init_in;
pub use seeds::{seeds_file, SeedLog};

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
    /// Created the data dir, which did not exist.
    CreatedDataDir(PathBuf),
    /// Created a database.
    CreatedDatabase {
        /// The database.
        name: String,
        /// With `CREATE DATABASE` through the running server, not with `dolt init`.
        through_server: bool,
    },
    /// Imported a seed and committed it.
    AppliedSeed {
        /// The database it went into.
        db: String,
        /// The seed's `file` as written in the config.
        file: String,
        /// Rows inserted (CSV/JSONL) or affected (SQL).
        rows: u64,
        /// The Dolt commit it made.
        commit: Option<String>,
    },
    /// A seed with no record whose commit was found in the database: recorded, not applied.
    RecordedSeed {
        /// The seed's database.
        db: String,
        /// The seed's `file` as written in the config.
        file: String,
        /// The commit found with the seed's message.
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
    /// The data dir, canonical.
    pub data_dir: PathBuf,
    /// The changes made, in order.
    pub actions: Vec<Action>,
    /// Changed seeds and the like: reported, nothing done about them.
    pub warnings: Vec<String>,
    /// Every database the config and `--db` ask for, created now or before.
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
    let instance = Instance::new(&cfg.data_dir);
    instance.create_data_dir()?;
    instance.ensure_dirs()?;
    // Now that it exists, the canonical path.
    let instance = Instance::new(&cfg.data_dir);
    report.data_dir = instance.data_dir().to_path_buf();
    dolt::prepare_dolt_root(&instance)?;
    let author = author(cfg);

    // No supervisor may start between this check and the databases' creation: a server
    // scans the data dir once, at start, and would not see a database created under it.
    let start_lock = crate::lifecycle::start_lock::lock_start(
        &instance,
        std::time::Duration::from_secs(120),
        cfg.client.retry_window,
    )
    .await?;
    let server_up = control::status(cfg)?.supervisor_alive;
    // Through a server, the client may need to wait for it (and so for this lock): keep the
    // lock only for the `dolt init` path.
    let start_lock = (!server_up).then_some(start_lock);
    let missing = databases::missing(&instance, &databases)?;
    for d in &missing {
        databases::create(cfg, &instance, d, server_up, &author).await?;
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

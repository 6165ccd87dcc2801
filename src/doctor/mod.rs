//! `doltctl doctor`: checks of everything that makes a server work or fail, each with its
//! evidence and the exact next step. Without `--fix` it changes nothing and never starts a
//! server; `--fix` does only safe repairs (stale info/state files, orphans of ours, oversized
//! logs, permissions), never deletes a LOCK file, never touches data, never signals a process
//! doltctl did not start.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde::Serialize;

use crate::config::instance::Instance;
use crate::config::{Config, ConfigSource, PortSetting};
use crate::lifecycle::control::{self, Status as InstanceStatus};
use crate::lifecycle::state_file::{Phase, State};
use crate::server::{disk, dolt, health, log as logs, port};
use crate::sys::locks::{self, Holder};
use crate::sys::process::{self as procinfo, ProcessIdentity};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// Fine.
    Ok,
    /// Worth a look; doctor still exits 0.
    Warn,
    /// Broken; doctor exits non-zero unless `--fix` repaired it.
    Fail,
}

/// A safe repair `--fix` may make.
#[derive(Debug, Clone)]
enum Repair {
    StopOrphans(Vec<ProcessIdentity>),
    RemoveInfoFile(PathBuf),
    RemoveStateFile(PathBuf),
    FixMode(PathBuf, u32),
    RotateLog(PathBuf, u32),
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked (`config`, `dolt binary`, ...).
    pub check: String,
    /// How it came out.
    pub status: Level,
    /// What was found: the evidence.
    pub detail: String,
    /// The next step to take, if any.
    pub fix: Option<String>,
    /// What `--fix` did about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    /// The `client connections` check's findings, for `--json`: the processes holding
    /// connections and the server's sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<serde_json::Value>,
    #[serde(skip)]
    repair: Option<Repair>,
}

fn check(name: &str, status: Level, detail: impl Into<String>) -> Check {
    Check {
        check: name.into(),
        status,
        detail: detail.into(),
        fix: None,
        fixed: None,
        connections: None,
        repair: None,
    }
}

impl Check {
    fn fix(mut self, f: impl Into<String>) -> Check {
        self.fix = Some(f.into());
        self
    }
    fn repair(mut self, r: Repair) -> Check {
        self.repair = Some(r);
        self
    }
}

/// Every check `doctor` ran.
pub struct Report {
    /// In the order they are shown.
    pub checks: Vec<Check>,
}

impl Report {
    /// Nothing failed (or every failure was repaired).
    pub fn ok(&self) -> bool {
        self.checks
            .iter()
            .all(|c| c.status != Level::Fail || c.fixed.is_some())
    }
}

/// Runs every check; with `fix`, applies the safe repairs.
pub async fn run(src: &ConfigSource, fix: bool) -> Report {
    let mut checks = Vec::new();
    let cfg = match Config::discover(src) {
        Ok(cfg) => {
            checks.push(config_check(&cfg));
            cfg
        }
        Err(e) => {
            let fix = match &e {
                crate::Error::Config { .. } | crate::Error::ConfigValue(_) => {
                    "correct the file at the line and key named; other checks use defaults"
                }
                _ => "do as the message says; other checks use defaults",
            };
            checks.push(check("config", Level::Fail, e.to_string()).fix(fix));
            let mut c = Config::default();
            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            c.data_dir = cwd.join(src.data_dir_override.as_deref().unwrap_or(&c.data_dir));
            c.apply_env();
            c
        }
    };
    let instance = Instance::new(&cfg.data_dir);
    checks.insert(0, dolt_check(&cfg).await);
    checks.push(data_dir_check(&instance));

    let status = control::status(&cfg);
    // Every server of ours without a supervisor (status names only one), found even when the
    // state file is unreadable.
    let orphans = control::unsupervised_servers(
        &instance,
        status.as_ref().ok().and_then(|s| s.state.as_ref()),
    );
    let (st, state_check) = state_checks(&instance, status, &orphans);
    let lock_checks = lock_checks(&instance, &st, &orphans);
    let any_lock_held = lock_checks.iter().any(|(held, _)| *held);
    checks.extend(lock_checks.into_iter().map(|(_, c)| c));
    checks.push(info_file_check(&instance, &st, &orphans, any_lock_held));
    checks.extend(state_check);
    checks.extend(permission_checks(&instance));
    checks.push(port_check(&cfg, &st, &orphans));
    checks.push(connection_check(&cfg, &st).await);
    checks.push(connections::clients_check(&cfg, &st).await);
    checks.push(health_check(&cfg, &instance, &st));
    checks.extend(log_checks(&cfg, &instance, &st));
    checks.extend(cluster::cluster_checks(&cfg, &st, &orphans).await);

    if fix {
        apply_repairs(&mut checks, &cfg).await;
    }
    Report { checks }
}

mod cluster;
mod connections;
mod environment;
mod repair;
mod server;

use environment::*;
use repair::apply_repairs;
use server::*;

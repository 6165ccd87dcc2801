//! The per-user registry of instances: one small file per running supervisor, so `doltctl ps`
//! and `doltctl gc` see every instance of this user from any directory, and a client's
//! auto-start can respect `[client] max_instances`.
//!
//! Where: `$DOLTCTL_REGISTRY_DIR`, else `$XDG_STATE_HOME/doltctl/instances/`, else
//! `~/.local/state/doltctl/instances/` (0700). A file is named after the hash of the canonical
//! data dir ([`Instance::hash`]), so a data dir has at most one, and holds what no file in the
//! data dir can be trusted for: the data dir itself (which may be gone) and the supervisor's
//! identity. Everything else (phase, port, server, clients) is read from the instance as
//! `status` reads it.
//!
//! The supervisor writes its entry (atomically, 0600) once it holds its lock, puts it back
//! within a health interval when it is deleted, and removes it on every way out
//! ([`Registration`]). A supervisor killed with SIGKILL leaves its entry: readers decide, with
//! identity checks, whether it is still supervised, orphaned (its server still runs: listed,
//! never pruned), or gone. Only [`scan`] with `prune` removes the gone ones; that is what
//! `ps` and `gc` ask for. Clients read without pruning.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::{Config, Instance};
use crate::error::{Error, Result};
use crate::lifecycle::control::{self, Status};
use crate::lifecycle::state_file::{Phase, State};
use crate::sys::atomic::write_atomic;
use crate::sys::process::ProcessIdentity;

/// Overrides the registry's directory (tests, or several separate registries).
pub const REGISTRY_ENV: &str = "DOLTCTL_REGISTRY_DIR";

/// The registry directory, from the environment: `$DOLTCTL_REGISTRY_DIR`, else
/// `$XDG_STATE_HOME/doltctl/instances`, else `~/.local/state/doltctl/instances`. `None` without
/// any of them (no home).
pub fn dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    dir_from(
        var(REGISTRY_ENV),
        var("XDG_STATE_HOME"),
        crate::sys::install::home_dir(),
    )
}

/// [`dir`] from its inputs. A relative `XDG_STATE_HOME` is ignored, as the XDG spec says.
fn dir_from(
    explicit: Option<PathBuf>,
    xdg_state: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Option<PathBuf> {
    if explicit.is_some() {
        return explicit;
    }
    let state = xdg_state
        .filter(|p| p.is_absolute())
        .or_else(|| home.map(|h| h.join(".local").join("state")))?;
    Some(state.join("doltctl").join("instances"))
}

/// One registry file: an instance whose supervisor ran (or runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The data dir (canonical).
    pub data_dir: PathBuf,
    /// The supervisor that wrote the entry.
    pub supervisor: ProcessIdentity,
    /// Started by a client's auto-start, not by `start` or `run`.
    #[serde(default)]
    pub auto_started: bool,
    /// The supervisor's `[server] stop_timeout` (ms): a stop from elsewhere (`gc`, a reclaim)
    /// gives an orphaned server as long.
    #[serde(default)]
    pub stop_timeout_ms: Option<u64>,
    /// When it was written (RFC 3339).
    pub registered_at: String,
}

/// The registry file of `instance` in `dir`.
fn file_in(dir: &Path, instance: &Instance) -> PathBuf {
    dir.join(format!("{:016x}.json", instance.hash()))
}

/// Reads one registry file; `Ok(None)` when it is not there.
fn read_entry(path: &Path) -> Result<Option<Entry>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| Error::RegistryFile {
            path: path.to_path_buf(),
            source,
        })
}

/// A supervisor's own entry, for as long as it lives: written by [`Registration::register`],
/// written again by [`Registration::restore`] when deleted or replaced, removed on drop (only
/// while it is still ours).
#[derive(Debug)]
pub(crate) struct Registration {
    path: PathBuf,
    entry: Entry,
    /// The last write failed (warned once, retried on every restore).
    unwritten: bool,
}

impl Registration {
    /// Registers this process as the supervisor of `instance` in the user's registry. `None`
    /// when there is no registry dir (no home) or this process has no readable identity; a
    /// failed write is a warning and is retried by [`Registration::restore`]: the registry
    /// only informs `ps`, it never stops a supervisor.
    pub(crate) fn register(
        instance: &Instance,
        auto_started: bool,
        cfg: &Config,
    ) -> Option<Registration> {
        let Some(dir) = dir() else {
            tracing::warn!("no home directory: this instance is not listed by `doltctl ps`");
            return None;
        };
        Registration::register_in(&dir, instance, auto_started, cfg.server.stop_timeout)
    }

    /// [`Registration::register`] in `dir`.
    fn register_in(
        dir: &Path,
        instance: &Instance,
        auto_started: bool,
        stop_timeout: Duration,
    ) -> Option<Registration> {
        let entry = Entry {
            data_dir: instance.data_dir().to_path_buf(),
            supervisor: ProcessIdentity::current()?,
            auto_started,
            stop_timeout_ms: Some(stop_timeout.as_millis().try_into().unwrap_or(u64::MAX)),
            registered_at: crate::sys::clock::now_rfc3339(),
        };
        let mut r = Registration {
            path: file_in(dir, instance),
            entry,
            unwritten: false,
        };
        r.write();
        Some(r)
    }

    fn write(&mut self) {
        let result = (|| {
            if let Some(dir) = self.path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| Error::io(dir, e))?;
            }
            let json =
                serde_json::to_vec_pretty(&self.entry).map_err(|source| Error::RegistryFile {
                    path: self.path.clone(),
                    source,
                })?;
            write_atomic(&self.path, &json)
        })();
        match result {
            Ok(()) => self.unwritten = false,
            Err(e) => {
                if !self.unwritten {
                    tracing::warn!("cannot register this instance for `doltctl ps`: {e}");
                }
                self.unwritten = true;
            }
        }
    }

    /// True while the file at our path is our entry.
    fn in_place(&self) -> bool {
        matches!(read_entry(&self.path), Ok(Some(e)) if e.supervisor == self.entry.supervisor)
    }

    /// Writes the entry again if it was deleted or replaced (`rm -rf ~/.local/state`, a reader
    /// that pruned it in a race). Called on every health tick.
    pub(crate) fn restore(&mut self) {
        if !self.in_place() {
            self.write();
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Never a successor's entry: only ours is removed.
        if self.in_place() {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!("cannot remove {}: {e}", self.path.display());
            }
        }
    }
}

/// What a registry entry stands for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// A supervisor runs for the data dir (the registered one, or a successor).
    Supervised,
    /// No supervisor, but a server of ours runs: listed (and stopped by `gc`), never pruned.
    Orphaned,
    /// Nothing of ours runs: the entry is stale.
    Gone,
}

/// The one rule for an entry: a live supervisor (the entry's, or the one the data dir's
/// state names) makes it supervised; else a server of ours without one makes it orphaned;
/// else it is gone.
pub(crate) fn liveness(entry_supervisor: bool, state_supervisor: bool, orphan: bool) -> Liveness {
    if entry_supervisor || state_supervisor {
        Liveness::Supervised
    } else if orphan {
        Liveness::Orphaned
    } else {
        Liveness::Gone
    }
}

/// A registered instance and what is true of it now.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The registry file.
    pub file: PathBuf,
    /// What it says.
    pub entry: Entry,
    /// The instance's status, read as `doltctl status` reads it (no side effects).
    pub status: Status,
    /// Supervised, orphaned or gone.
    pub liveness: Liveness,
}

impl Listed {
    /// Reads the instance of `entry` now.
    fn of(file: PathBuf, entry: Entry) -> (Listed, Option<Error>) {
        let cfg = Config {
            data_dir: entry.data_dir.clone(),
            ..Config::default()
        };
        let (status, problem) = match control::status(&cfg) {
            Ok(s) => (s, None),
            // A state file no one can read: the processes still decide.
            Err(e) => {
                let instance = Instance::new(&entry.data_dir);
                let orphan = control::unsupervised_servers(&instance, None)
                    .into_iter()
                    .next();
                let status = Status {
                    instance,
                    state: None,
                    supervisor_alive: false,
                    server_alive: false,
                    orphan,
                };
                (status, Some(e))
            }
        };
        let liveness = liveness(
            entry.supervisor.is_running(),
            status.supervisor_alive,
            status.orphan.is_some(),
        );
        let listed = Listed {
            file,
            entry,
            status,
            liveness,
        };
        (listed, problem)
    }

    /// The phase as `status` shows it, `orphaned` included.
    pub fn phase(&self) -> Phase {
        match self.liveness {
            Liveness::Orphaned => Phase::Orphaned,
            _ => self.status.phase(),
        }
    }

    /// The state file (or the live supervisor's state), if there is one.
    pub fn state(&self) -> Option<&State> {
        self.status.state.as_ref()
    }

    /// The live supervisor.
    pub fn supervisor(&self) -> Option<&ProcessIdentity> {
        match self.state().and_then(|s| s.supervisor.as_ref()) {
            Some(s) if self.status.supervisor_alive => Some(s),
            _ => Some(&self.entry.supervisor).filter(|s| s.is_running()),
        }
    }

    /// The live server: the supervised one, else the orphan.
    pub fn server(&self) -> Option<&ProcessIdentity> {
        match self.state().and_then(|s| s.server()) {
            Some(s) if self.status.server_alive && self.status.supervisor_alive => Some(s),
            _ => self.status.orphan.as_ref(),
        }
    }

    /// Started by a client's auto-start.
    pub fn auto_started(&self) -> bool {
        self.entry.auto_started || self.state().is_some_and(|s| s.auto_started)
    }

    /// Client connections as the live supervisor last counted them; `None` when unknown (no
    /// supervisor, no server, not counted yet).
    pub fn clients(&self) -> Option<u64> {
        self.state()
            .filter(|_| self.status.supervisor_alive)
            .and_then(|s| s.clients)
    }

    /// How long the server has had no client, at `now`: zero while clients are connected;
    /// `None` when unknown (see [`Listed::clients`]).
    pub fn idle(&self, now: SystemTime) -> Option<Duration> {
        let clients = self.clients()?;
        if clients > 0 {
            return Some(Duration::ZERO);
        }
        let since = self.state()?.last_client_at.as_deref()?;
        let since = humantime::parse_rfc3339_weak(since).ok()?;
        Some(now.duration_since(since).unwrap_or_default())
    }

    /// The stop timeout the instance's supervisor was started with.
    pub fn stop_timeout(&self) -> Option<Duration> {
        self.entry.stop_timeout_ms.map(Duration::from_millis)
    }
}

/// What a read of the registry found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The instances that are supervised or orphaned, by data dir.
    pub instances: Vec<Listed>,
    /// Files that could not be read (named in each error); they are left alone.
    pub problems: Vec<Error>,
    /// Data dirs whose stale entries were removed (with `prune`).
    pub pruned: Vec<PathBuf>,
}

/// Reads the user's registry. With `prune`, entries of which nothing runs any more are
/// removed (what `ps` and `gc` ask for; clients never prune). No registry dir, or none yet, is
/// an empty registry.
pub fn scan(prune: bool) -> Scan {
    match dir() {
        Some(d) => scan_dir(&d, prune),
        None => Scan::default(),
    }
}

/// [`scan`] of `dir`.
pub fn scan_dir(dir: &Path, prune: bool) -> Scan {
    let mut scan = Scan::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return scan,
        Err(e) => {
            scan.problems.push(Error::io(dir, e));
            return scan;
        }
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            // Temp files of an atomic write start with a dot.
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    for file in files {
        let entry = match read_entry(&file) {
            Ok(Some(e)) => e,
            // Removed meanwhile (its supervisor exited).
            Ok(None) => continue,
            Err(e) => {
                scan.problems.push(e);
                continue;
            }
        };
        let (listed, problem) = Listed::of(file, entry);
        scan.problems.extend(problem);
        if listed.liveness != Liveness::Gone {
            scan.instances.push(listed);
        } else if prune && remove_if_unchanged(&listed) {
            scan.pruned.push(listed.entry.data_dir);
        }
    }
    scan.instances
        .sort_by(|a, b| a.entry.data_dir.cmp(&b.entry.data_dir));
    scan
}

/// Removes a stale entry unless a new supervisor wrote the file since it was read.
fn remove_if_unchanged(listed: &Listed) -> bool {
    match read_entry(&listed.file) {
        Ok(Some(now)) if now == listed.entry => match std::fs::remove_file(&listed.file) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("cannot remove {}: {e}", listed.file.display());
                false
            }
        },
        _ => false,
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;

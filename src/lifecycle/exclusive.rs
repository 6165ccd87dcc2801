//! Exclusive runs (`doltctl exclusive`): the server stopped and kept stopped while a command
//! of the user's (`dolt gc`, `dolt table import`, ...) has the data dir to itself, then
//! started again.
//!
//! Dolt's CLI opens the database files itself, and some commands never go through a running
//! server and fail with "database is read only" beside it. So the run stops the server
//! gracefully (releasing Dolt's locks) and holds the start lock for the command's whole life:
//! no client auto-starts a server meanwhile. While it holds the lock it records itself in
//! `.doltctl/exclusive.json` (pid, start time, command), so that a client which waits on the
//! lock longer than its `retry_window` can say why, and by whom, instead of timing out
//! silently ([`crate::Error::ServerPaused`]).

use std::ffi::OsString;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Config, Instance};
use crate::error::{Error, Result};
use crate::lifecycle::control::{self, StartOptions};
use crate::lifecycle::start_lock::{lock_start, StartLock};
use crate::lifecycle::state_file::State;
use crate::sys::process::ProcessIdentity;

/// What `.doltctl/exclusive.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExclusiveRun {
    /// The `doltctl exclusive` process (pid, start time, command line), checked before the
    /// record is believed: a run killed with SIGKILL leaves the file behind.
    pub process: ProcessIdentity,
    /// The command it runs, as one line.
    pub command: String,
    /// When it began (RFC 3339, UTC).
    pub started_at: String,
}

impl ExclusiveRun {
    /// The error a client that waited too long for this run gets.
    pub(crate) fn paused_error(&self, instance: &Instance) -> Error {
        Error::ServerPaused {
            data_dir: instance.data_dir().to_path_buf(),
            pid: self.process.pid,
            command: self.command.clone(),
        }
    }
}

/// The exclusive run in progress for this instance: the file, if the process it names is
/// still that process. A pure read.
pub fn live(instance: &Instance) -> Option<ExclusiveRun> {
    let text = std::fs::read(instance.exclusive_file()).ok()?;
    let run: ExclusiveRun = serde_json::from_slice(&text).ok()?;
    run.process.is_running().then_some(run)
}

/// How the server ran before the exclusive run stopped it, to start it again the same way.
#[derive(Debug, Clone, PartialEq)]
struct Restart {
    read_only: bool,
    /// `--idle-timeout` of the stopped supervisor (an auto-started one has its client's
    /// `autostart_idle_timeout` there), else the config's.
    idle_timeout: Option<Duration>,
    /// It was auto-started by a client.
    auto_started: bool,
}

/// The `run` options a supervisor was started with, from its command line.
fn restart_of(state: &State) -> Restart {
    let args = state
        .supervisor
        .as_ref()
        .map(|p| p.cmdline.as_slice())
        .unwrap_or_default();
    Restart {
        read_only: state.read_only || args.iter().any(|a| a == "--read-only"),
        idle_timeout: supervisor_idle_timeout(state),
        auto_started: state.auto_started || args.iter().any(|a| a == "--auto-started"),
    }
}

/// The `--idle-timeout` the state's supervisor was started with (auto-started ones have their
/// client's `autostart_idle_timeout` there); `None`: it uses its config's `idle_timeout`.
pub(crate) fn supervisor_idle_timeout(state: &State) -> Option<Duration> {
    let args = state.supervisor.as_ref()?.cmdline.as_slice();
    let value = args
        .iter()
        .enumerate()
        .find_map(|(i, a)| match a.as_str() {
            "--idle-timeout" => args.get(i + 1).map(String::as_str),
            _ => a.strip_prefix("--idle-timeout="),
        })?;
    crate::config::parse_duration(value).ok()
}

/// An exclusive run in progress: the server is stopped, the start lock held and the run
/// recorded. [`Exclusive::end`] starts the server again (if it was running) and releases the
/// lock; dropping it releases the lock and removes the record without a start.
pub struct Exclusive {
    cfg: Config,
    instance: Instance,
    lock: Option<StartLock>,
    restart: Option<Restart>,
}

impl std::fmt::Debug for Exclusive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exclusive")
            .field("data_dir", &self.instance.data_dir())
            .field("restart", &self.restart)
            .finish()
    }
}

/// Begins an exclusive run of `command` on `cfg`'s data dir: takes the start lock (waiting for
/// a start in progress, or for another exclusive run up to `[client] retry_window`), records
/// the run, and stops the server gracefully if one runs (an orphan of ours too).
pub async fn begin(cfg: &Config, command: &[OsString]) -> Result<Exclusive> {
    let instance = Instance::new(&cfg.data_dir);
    instance.ensure_dirs()?;
    let instance = Instance::new(&cfg.data_dir);
    let lock = lock_start(
        &instance,
        control::start_deadline(cfg),
        cfg.client.retry_window,
    )
    .await?;
    let me = ProcessIdentity::current().ok_or_else(|| {
        Error::io(
            "/proc/self",
            std::io::Error::other("cannot read this process's identity"),
        )
    })?;
    let run = ExclusiveRun {
        process: me,
        command: command
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        started_at: crate::sys::clock::now_rfc3339(),
    };
    let text = serde_json::to_vec_pretty(&run)
        .map_err(|e| Error::io(instance.exclusive_file(), e.into()))?;
    crate::sys::atomic::write_atomic(&instance.exclusive_file(), &text)?;
    let mut ex = Exclusive {
        cfg: cfg.clone(),
        instance,
        lock: Some(lock),
        restart: None,
    };
    let st = control::status(cfg)?;
    let running = st.supervisor_alive || st.orphan.is_some();
    if running {
        ex.restart = Some(match st.state.as_ref().filter(|_| st.supervisor_alive) {
            Some(s) => restart_of(s),
            None => Restart {
                read_only: cfg.server.read_only,
                idle_timeout: None,
                auto_started: false,
            },
        });
        control::stop_locked(cfg, &ex.instance).await?;
    }
    Ok(ex)
}

impl Exclusive {
    /// A server was running, and [`Exclusive::end`] starts it again.
    pub fn was_running(&self) -> bool {
        self.restart.is_some()
    }

    /// The data dir.
    pub fn data_dir(&self) -> &std::path::Path {
        self.instance.data_dir()
    }

    /// The environment a dolt command needs on this data dir: the instance's Dolt root (unless
    /// `DOLT_ROOT_PATH` is set), no metrics child, and `PATH` starting with the directory of
    /// the dolt binary the server runs (so `dolt` in a script is that one).
    pub fn dolt_env(&self) -> Result<Vec<(String, String)>> {
        crate::server::dolt::prepare_dolt_root(&self.instance)?;
        let mut env = crate::server::dolt::dolt_env(&self.instance);
        if let Some(dir) = self.dolt_bin()?.parent() {
            let mut path = vec![dir.to_path_buf()];
            path.extend(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            ));
            if let Ok(p) = std::env::join_paths(path) {
                env.push(("PATH".into(), p.to_string_lossy().into_owned()));
            }
        }
        Ok(env)
    }

    /// The dolt binary the server runs (as a start finds it).
    pub fn dolt_bin(&self) -> Result<std::path::PathBuf> {
        crate::server::dolt::resolve_binary(&self.cfg)
    }

    /// Ends the run: removes the record, starts the server again if one was running (with
    /// the same read-only mode and idle timeout), then releases the lock. Returns the new
    /// server's state.
    pub async fn end(mut self) -> Result<Option<State>> {
        self.remove_record();
        let Some(restart) = self.restart.take() else {
            return Ok(None);
        };
        let mut cfg = self.cfg.clone();
        cfg.server.read_only = restart.read_only;
        let opts = StartOptions {
            idle_timeout: restart.idle_timeout,
            auto_started: restart.auto_started,
            ..Default::default()
        };
        let lock = self.lock.take();
        control::start_locked(&cfg, &opts, lock).await.map(Some)
    }

    fn remove_record(&self) {
        let path = self.instance.exclusive_file();
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("cannot remove {}: {e}", path.display());
            }
        }
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        // After end() the record is gone already; a run abandoned on an error leaves none.
        if self.lock.is_some() {
            self.remove_record();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::state_file::PhaseRecord;

    fn state_with_supervisor(args: &[&str], read_only: bool) -> State {
        let me = ProcessIdentity::current().unwrap();
        State {
            phase: PhaseRecord::Stopped,
            supervisor: Some(ProcessIdentity {
                cmdline: args.iter().map(|a| a.to_string()).collect(),
                ..me
            }),
            host: "127.0.0.1".into(),
            port: 1,
            socket: None,
            url: None,
            data_dir: "/x".into(),
            read_only,
            restarts: 0,
            last_error: None,
            log_tail: vec![],
            dolt_version: None,
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            clients: None,
            last_client_at: None,
            auto_started: false,
            cluster: None,
        }
    }

    /// A server is started again as it ran: an auto-started one keeps its client's idle
    /// timeout, a read-only one stays read-only.
    #[test]
    fn the_restart_repeats_the_stopped_supervisors_options() {
        let auto = state_with_supervisor(
            &[
                "doltctl",
                "--data-dir",
                "/x",
                "run",
                "--detached",
                "--idle-timeout",
                "30m",
                "--auto-started",
            ],
            false,
        );
        assert_eq!(
            restart_of(&auto),
            Restart {
                read_only: false,
                idle_timeout: Some(Duration::from_secs(1800)),
                auto_started: true,
            }
        );
        let eq = state_with_supervisor(
            &["doltctl", "run", "--idle-timeout=2s", "--read-only"],
            false,
        );
        assert_eq!(
            restart_of(&eq),
            Restart {
                read_only: true,
                idle_timeout: Some(Duration::from_secs(2)),
                auto_started: false,
            }
        );
        let plain = state_with_supervisor(&["doltctl", "run", "--detached"], true);
        assert_eq!(
            restart_of(&plain),
            Restart {
                read_only: true,
                idle_timeout: None,
                auto_started: false,
            }
        );
    }

    /// A record whose process is gone (a run killed with SIGKILL) is not believed.
    #[test]
    fn a_record_of_a_dead_process_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let instance = Instance::new(dir.path());
        instance.ensure_dirs().unwrap();
        let me = ProcessIdentity::current().unwrap();
        let mut run = ExclusiveRun {
            process: me.clone(),
            command: "dolt gc".into(),
            started_at: "2026-01-01T00:00:00.000Z".into(),
        };
        let write = |r: &ExclusiveRun| {
            std::fs::write(instance.exclusive_file(), serde_json::to_vec(r).unwrap()).unwrap()
        };
        write(&run);
        assert_eq!(live(&instance), Some(run.clone()));
        let m = run.paused_error(&instance).to_string();
        let want = format!("paused for an exclusive command (pid {}: dolt gc)", me.pid);
        assert!(m.contains(&want), "{m}");
        run.process.start_time += 1;
        write(&run);
        assert_eq!(live(&instance), None);
    }
}

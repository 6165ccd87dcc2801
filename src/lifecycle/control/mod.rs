//! Operations on an instance from outside the supervisor: start a detached supervisor, stop,
//! restart, status. Status is a pure read; only start/stop/restart change anything.

use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::config::instance::Instance;
use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::lifecycle::control_socket::Watcher;
pub use crate::lifecycle::exclusive;
use crate::lifecycle::start_lock::{lock_start, StartLock};
use crate::lifecycle::state_file::{Phase, PhaseRecord, State};
use crate::server::log as logs;
use crate::server::preflight;
use crate::sys::process::ProcessIdentity;

/// What `status` sees: the state file (if any) and whether its processes are really alive.
#[derive(Debug, Clone)]
pub struct Status {
    /// The instance's files.
    pub instance: Instance,
    /// The state file, if there is one.
    pub state: Option<State>,
    /// The supervisor it records is still that process.
    pub supervisor_alive: bool,
    /// The server it records is still that process.
    pub server_alive: bool,
    /// A server of ours running without a supervisor: the recorded server when its
    /// supervisor is gone, or else a `dolt sql-server` running this data dir's generated
    /// config. Only looked for when no supervisor runs for the data dir.
    pub orphan: Option<ProcessIdentity>,
}

impl Status {
    /// Running and ready to take connections.
    pub fn is_ready(&self) -> bool {
        self.state.as_ref().is_some_and(|s| {
            crate::lifecycle::state_file::is_ready(
                s.kind(),
                self.supervisor_alive,
                self.server_alive,
            )
        })
    }

    /// The phase as a person should read it: a state file whose supervisor is dead says
    /// nothing about the present, and a server of ours without a supervisor is
    /// [`Phase::Orphaned`], never `stopped`.
    pub fn phase(&self) -> Phase {
        derive_phase(
            self.state.as_ref().map(State::kind),
            self.supervisor_alive,
            self.orphan.is_some(),
        )
    }
}

/// The status phase from what the state file records and what is alive: the supervisor's own
/// phase while it lives; else `orphaned` while a server of ours runs; else the last phase if it
/// explains the stop (`failed`, `idle`); else `stopped`.
pub(crate) fn derive_phase(recorded: Option<Phase>, supervisor_alive: bool, orphan: bool) -> Phase {
    match recorded {
        Some(p) if supervisor_alive => p,
        _ if orphan => Phase::Orphaned,
        Some(p @ (Phase::Failed | Phase::Idle)) => p,
        _ => Phase::Stopped,
    }
}

/// The servers of ours that run without a supervisor: the recorded server if it is still that
/// process, and every `dolt sql-server` running this data dir's generated config. Empty while a
/// supervisor runs: the recorded one, or any process holding `supervisor.lock` (looked up in
/// `/proc/locks`, never by taking the lock, which could make a starting supervisor fail).
pub fn unsupervised_servers(instance: &Instance, state: Option<&State>) -> Vec<ProcessIdentity> {
    if state.is_some_and(|s| s.supervisor_alive())
        || crate::sys::locks::holder_of(&instance.supervisor_lock()).is_some()
    {
        return vec![];
    }
    let mut out: Vec<ProcessIdentity> = state
        .and_then(|s| s.server().cloned())
        .filter(|p| p.is_running())
        .into_iter()
        .collect();
    for p in preflight::own_servers(instance) {
        if !out.iter().any(|o| o.pid == p.pid) {
            out.push(p);
        }
    }
    out
}

/// Reads the instance's status. No side effects: nothing is created, locked or removed.
pub fn status(cfg: &Config) -> Result<Status> {
    let instance = Instance::new(&cfg.data_dir);
    let state = current_state(&instance)?;
    Ok(status_of(instance, state))
}

/// Like [`status`], without looking for orphans (`orphan` is always `None`), which takes a
/// scan of every process: what clients use, many at once at a cold start. An orphan does not
/// matter to them: the supervisor a start launches stops it before its own launch.
pub fn supervised_status(cfg: &Config) -> Result<Status> {
    let instance = Instance::new(&cfg.data_dir);
    let state = current_state(&instance)?;
    Ok(status_without_orphans(instance, state))
}

fn status_without_orphans(instance: Instance, state: Option<State>) -> Status {
    let supervisor_alive = state.as_ref().is_some_and(|s| s.supervisor_alive());
    let server_alive = state.as_ref().is_some_and(|s| s.server_alive());
    Status {
        instance,
        state,
        supervisor_alive,
        server_alive,
        orphan: None,
    }
}

fn status_of(instance: Instance, state: Option<State>) -> Status {
    let mut st = status_without_orphans(instance, state);
    if !st.supervisor_alive {
        st.orphan = unsupervised_servers(&st.instance, st.state.as_ref())
            .into_iter()
            .next();
    }
    st
}

/// Waits for the supervisor's next state, at most `max`: through `watcher` once it is
/// connected (a supervisor that goes away ends it at once), else 10 ms, then tries to
/// connect one for the next wait.
pub(crate) async fn next_change(watcher: &mut Option<Watcher>, instance: &Instance, max: Duration) {
    match watcher.as_mut() {
        Some(w) => match tokio::time::timeout(max, w.next()).await {
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => *watcher = None,
        },
        None => {
            tokio::time::sleep(max.min(Duration::from_millis(10))).await;
            *watcher = Watcher::connect(instance).await;
        }
    }
}

/// The instance's state as its live supervisor knows it (asked over the control socket, so it
/// is current even when the state file cannot be written or was deleted), else the state file.
/// A pure read either way.
fn current_state(instance: &Instance) -> Result<Option<State>> {
    if let Some(s) = crate::lifecycle::control_socket::query(instance, Duration::from_millis(250)) {
        return Ok(Some(s));
    }
    State::read(&instance.state_file())
}

mod start;
mod stop;

use start::wait_ready;
pub(crate) use start::{note_supervisor_hook, start_deadline, start_locked};
pub use start::{start, start_with, supervisor_program, StartOptions, SUPERVISOR_MARKER};
pub(crate) use stop::stop_locked;
pub use stop::{restart, stop, Stopped};

#[cfg(test)]
mod tests {
    use super::*;

    /// The status phase for every recorded phase (and none), with the supervisor alive or not
    /// and an orphan or not. A live supervisor's phase is the truth; without one, a server of
    /// ours running is `orphaned`, never `stopped`.
    #[test]
    fn status_phase_is_derived_from_the_record_and_the_living() {
        use Phase::*;
        let recorded = [
            None,
            Some(Starting),
            Some(Running),
            Some(Backoff),
            Some(Stopping),
            Some(Stopped),
            Some(Failed),
            Some(Idle),
        ];
        for r in recorded {
            // A live supervisor is known only from a state file.
            for supervisor in [false, true].into_iter().filter(|s| !s || r.is_some()) {
                for orphan in [false, true] {
                    let got = derive_phase(r, supervisor, orphan);
                    let want = match (r, supervisor, orphan) {
                        (Some(p), true, _) => p,
                        (_, false, true) => Orphaned,
                        (Some(Failed), false, false) => Failed,
                        (Some(Idle), false, false) => Idle,
                        _ => Stopped,
                    };
                    assert_eq!(
                        got, want,
                        "recorded {r:?}, supervisor {supervisor}, orphan {orphan}"
                    );
                    if orphan && !supervisor {
                        assert_ne!(got, Stopped, "an orphan is never reported stopped");
                    }
                }
            }
        }
    }

    /// A state file whose supervisor and server are both someone else now (pids reused, as
    /// forged here with wrong start times): not alive, no orphan, stopped.
    #[test]
    fn a_state_file_of_dead_processes_is_stopped_and_names_no_orphan() {
        let dir = tempfile::tempdir().unwrap();
        let instance = Instance::new(dir.path());
        let me = ProcessIdentity::current().unwrap();
        let forged = ProcessIdentity {
            start_time: me.start_time + 1,
            ..me
        };
        let state = State {
            phase: PhaseRecord::Running {
                server: forged.clone(),
                started_at: "2026-11-28T21:00:00.000Z".into(),
            },
            supervisor: Some(forged),
            host: "127.0.0.1".into(),
            port: 1,
            socket: None,
            url: None,
            data_dir: dir.path().into(),
            read_only: false,
            restarts: 0,
            last_error: None,
            log_tail: vec![],
            dolt_version: None,
            updated_at: "2026-11-28T21:00:00.000Z".into(),
            clients: None,
            last_client_at: None,
            auto_started: false,
            cluster: None,
        };
        let st = status_of(instance, Some(state));
        assert!(!st.supervisor_alive && !st.server_alive);
        assert!(st.orphan.is_none());
        assert_eq!(st.phase(), Phase::Stopped);
    }
}

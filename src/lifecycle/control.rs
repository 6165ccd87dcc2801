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

/// Like [`supervised_status`], but a malformed state file counts as none: `start` replaces it
/// (the supervisor lock, not the state file, is what keeps supervisors unique).
fn status_for_start(cfg: &Config) -> Result<Status> {
    match supervised_status(cfg) {
        Err(e @ Error::StateFile { .. }) => {
            tracing::warn!("{e}");
            Ok(status_without_orphans(Instance::new(&cfg.data_dir), None))
        }
        other => other,
    }
}

/// How long a start (and the start lock) may take: stopping an orphan first, then a full
/// ready timeout.
pub(crate) fn start_deadline(cfg: &Config) -> Duration {
    cfg.server.ready_timeout + cfg.server.stop_timeout + Duration::from_secs(5)
}

/// Ensures a server is running for this config's data dir: starts a detached supervisor if
/// none runs, and returns once the server is ready. Racing calls (any number of processes)
/// launch one supervisor.
pub async fn start(cfg: &Config) -> Result<State> {
    start_with(cfg, &StartOptions::default()).await
}

/// How a supervisor is started.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Overrides `[server] idle_timeout` (auto-start by clients uses
    /// `[client] autostart_idle_timeout`).
    pub idle_timeout: Option<Duration>,
    /// Environment variables for the supervisor, and so for dolt, on top of this process's
    /// (e.g. a `DOLT_ROOT_PATH` of its own). Used only when this call launches the supervisor.
    pub env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// A client's auto-start (not `start`/`run`): the supervisor records it, so `gc --idle`
    /// and `[client] max_instances` may stop the server when it is idle.
    pub auto_started: bool,
}

/// [`start`] with options.
///
/// A config that asks for a read-only server (`[server] read_only`) is refused when a writable
/// server already runs for the data dir: handing it that server would let the caller write.
pub async fn start_with(cfg: &Config, opts: &StartOptions) -> Result<State> {
    refuse_writable_for_read_only(cfg, ensure_running(cfg, opts).await?)
}

/// [`start_with`] for a caller that holds the start lock already (`doltctl exclusive`): the
/// first decision is made under that lock, which is released once a supervisor is launched.
pub(crate) async fn start_locked(
    cfg: &Config,
    opts: &StartOptions,
    lock: Option<StartLock>,
) -> Result<State> {
    refuse_writable_for_read_only(cfg, ensure_running_with(cfg, opts, lock).await?)
}

/// A config that asks for a read-only server gets no writable one.
fn refuse_writable_for_read_only(cfg: &Config, state: State) -> Result<State> {
    if cfg.server.read_only && !state.read_only {
        return Err(Error::WritableServerRunning {
            data_dir: state.data_dir.clone(),
            url: state.url.clone().unwrap_or_default(),
        });
    }
    Ok(state)
}

async fn ensure_running(cfg: &Config, opts: &StartOptions) -> Result<State> {
    // Fast path, no lock: a running server is the common case for clients.
    let current = supervised_status(cfg).ok();
    if let Some(st) = &current {
        if let Some(s) = st.state.as_ref().filter(|_| st.is_ready()) {
            return Ok(s.clone());
        }
    }
    // No dolt anywhere is a mistake to report before anything is created or launched (a
    // supervisor that loses its binary later does retry).
    if !current.as_ref().is_some_and(|st| st.supervisor_alive) {
        crate::server::dolt::resolve_binary(cfg)?;
    }
    ensure_running_with(cfg, opts, None).await
}

async fn ensure_running_with(
    cfg: &Config,
    opts: &StartOptions,
    mut held: Option<StartLock>,
) -> Result<State> {
    let instance = Instance::new(&cfg.data_dir);
    instance.ensure_dirs()?;
    let total = start_deadline(cfg);
    let deadline = Instant::now() + total;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // The start lock only covers deciding and launching: once a supervisor holds its own
        // lock, everyone (the launcher too) waits for readiness without it.
        let mut child = {
            let _lock = match held.take() {
                Some(l) => l,
                None => lock_start(&instance, left, cfg.client.retry_window).await?,
            };
            let st = status_for_start(cfg)?;
            if let Some(s) = st.state.as_ref().filter(|_| st.is_ready()) {
                return Ok(s.clone());
            }
            if st.supervisor_alive {
                None
            } else {
                let mut c = spawn_supervisor(cfg, &instance, opts)?;
                wait_registered(cfg, &instance, &mut c, left).await?;
                Some(c)
            }
        };
        let result = wait_ready(cfg, &instance, child.as_mut(), None, left).await;
        if let Some(c) = child {
            reap_in_background(c);
        }
        match result {
            Ok(Some(state)) => return Ok(state),
            // The supervisor we waited for went away (an idle stop): decide again.
            Ok(None) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Waits until a supervisor we spawned has taken its lock and recorded itself in the state
/// file, or has exited (then `wait_ready` reports why).
async fn wait_registered(
    cfg: &Config,
    instance: &Instance,
    child: &mut std::process::Child,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let pid = child.id() as i32;
    loop {
        let st = status_for_start(cfg)?;
        let registered = st.supervisor_alive
            && st
                .state
                .as_ref()
                .and_then(|s| s.supervisor.as_ref())
                .is_some_and(|p| p.pid == pid);
        if registered || !matches!(child.try_wait(), Ok(None)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!(
                    "the supervisor (pid {pid}) to record itself in {}",
                    instance.state_file().display()
                ),
                waited: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Re-executes this program as `doltctl run` in a new session, detached from the terminal.
fn spawn_supervisor(
    cfg: &Config,
    instance: &Instance,
    opts: &StartOptions,
) -> Result<std::process::Child> {
    let (mut exe, hooked) = supervisor_command()?;
    // A relative path (not a bare name looked up on PATH) is relative to us, whatever the
    // supervisor's directory.
    if exe.is_relative() && exe.components().count() > 1 {
        exe = std::path::absolute(&exe).at(&exe)?;
    }
    let log_path = instance.supervisor_log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .at(&log_path)?;
    let mut cmd = std::process::Command::new(&exe);
    // A detached supervisor is nobody's service: a client run by systemd must not hand it
    // the client's notification socket.
    for var in crate::sys::notify::SERVICE_MANAGER_ENV {
        cmd.env_remove(var);
    }
    if hooked {
        cmd.arg(SUPERVISOR_MARKER);
    }
    match &cfg.source {
        Some(src) => {
            cmd.arg("--config").arg(src);
        }
        None => {
            // A config without a file (built-in defaults, `Client::for_data_dir`): the
            // supervisor must not find one either, neither through the environment nor upwards
            // from our directory, so it runs on the same defaults as we do.
            cmd.env_remove(crate::config::CONFIG_ENV).current_dir("/");
        }
    }
    // Absolute: the supervisor may run in another directory (below).
    let data_dir = std::path::absolute(instance.data_dir()).at(instance.data_dir())?;
    cmd.arg("--data-dir")
        .arg(&data_dir)
        .arg("run")
        .arg("--detached")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // The supervisor reads the config file again; settings a program may have changed in
    // memory travel along explicitly.
    if cfg.server.read_only {
        cmd.arg("--read-only");
    }
    if let Some(t) = opts.idle_timeout {
        cmd.arg("--idle-timeout")
            .arg(humantime::format_duration(t).to_string());
    }
    if opts.auto_started {
        cmd.arg("--auto-started");
    }
    // A relative path to dolt is relative to us, whatever the supervisor's directory.
    let dolt_bin = Path::new(&cfg.server.dolt_bin);
    if cfg.server.dolt_bin.contains('/') && dolt_bin.is_relative() {
        let cwd = std::env::current_dir().at(".")?;
        cmd.env("DOLT_BIN", cwd.join(dolt_bin));
    } else {
        cmd.env("DOLT_BIN", dolt_bin);
    }
    // Through the environment, never argv: the supervisor's probes log in with it. Always
    // set, so an inherited DOLTCTL_PASSWORD never overrides the password of this config.
    cmd.env("DOLTCTL_PASSWORD", &cfg.client.password);
    // Its events already go to the rotated server log; supervisor.log (not rotated) only needs
    // warnings and errors.
    if std::env::var_os("DOLTCTL_LOG").is_none() {
        cmd.env("DOLTCTL_LOG", "warn");
    }
    cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
    // Between fork and exec, only async-signal-safe calls: setsid, for a new session, so the
    // terminal's signals and hangup never reach the supervisor; and SIGHUP ignored until the
    // supervisor handles it itself (it ignores it too, being `--detached`), so a hang-up sent
    // while it starts cannot end it either.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            nix::sys::signal::signal(Signal::SIGHUP, nix::sys::signal::SigHandler::SigIgn)
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    cmd.spawn().map_err(|e| Error::io(exe, e))
}

/// The first argument that makes a program which installed
/// [`run_supervisor_if_requested`](crate::run_supervisor_if_requested) run a supervisor. The
/// doltctl arguments follow it: `[--config FILE] --data-dir DIR run [--read-only]
/// [--idle-timeout DURATION] [--detached] [--auto-started]`.
pub const SUPERVISOR_MARKER: &str = "--doltctl-supervisor";

/// Set once this process has called `run_supervisor_if_requested` and it returned: this program
/// can run supervisors itself.
static SUPERVISOR_HOOK: AtomicBool = AtomicBool::new(false);

/// Records that this program runs supervisors when started with [`SUPERVISOR_MARKER`].
pub(crate) fn note_supervisor_hook() {
    SUPERVISOR_HOOK.store(true, Ordering::SeqCst);
}

/// The program that runs supervisors, in this order: `$DOLTCTL_BIN`; this program when it
/// installed [`run_supervisor_if_requested`](crate::run_supervisor_if_requested) (it is then
/// started with [`SUPERVISOR_MARKER`] first); this program when it is doltctl; else `doltctl`
/// on PATH; else `doltctl` in cargo's bin dir, where `scripts/install.sh` (`cargo install`)
/// puts it: `$CARGO_INSTALL_ROOT/bin`, `$CARGO_HOME/bin`, `~/.cargo/bin`.
pub fn supervisor_program() -> Result<std::path::PathBuf> {
    supervisor_command().map(|(p, _)| p)
}

/// [`supervisor_program`], and whether it needs [`SUPERVISOR_MARKER`].
fn supervisor_command() -> Result<(std::path::PathBuf, bool)> {
    if let Some(p) = std::env::var_os("DOLTCTL_BIN").filter(|v| !v.is_empty()) {
        return Ok((p.into(), false));
    }
    if let Ok(exe) = std::env::current_exe() {
        // The hook first: a program that installed it may be called doltctl-something and
        // still not understand doltctl's own arguments.
        if SUPERVISOR_HOOK.load(Ordering::SeqCst) {
            return Ok((exe, true));
        }
        if exe
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("doltctl"))
        {
            return Ok((exe, false));
        }
    }
    which::which("doltctl")
        .ok()
        .or_else(crate::sys::install::installed_doltctl)
        .map(|p| (p, false))
        .ok_or(Error::DoltctlNotFound)
}

/// Waits on a child in a thread so it never lingers as a zombie in a long-lived process.
fn reap_in_background(mut child: std::process::Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    std::thread::spawn(move || {
        let _ = child.wait();
    });
}

/// Waits until the state file says running with a live server (and, if `not_server` is set,
/// a different server than that pid), or the start failed. `Ok(None)`: the supervisor we were
/// waiting for (not our child) went away.
async fn wait_ready(
    cfg: &Config,
    instance: &Instance,
    mut child: Option<&mut std::process::Child>,
    not_server: Option<i32>,
    timeout: Duration,
) -> Result<Option<State>> {
    let deadline = Instant::now() + timeout;
    let mut watcher: Option<Watcher> = None;
    loop {
        let st = status_for_start(cfg)?;
        let fresh = st
            .state
            .as_ref()
            .and_then(|s| s.server())
            .is_some_and(|p| Some(p.pid) != not_server);
        if st.is_ready() && fresh {
            if let Some(s) = st.state {
                return Ok(Some(s));
            }
        }
        if child.is_none() && !st.supervisor_alive {
            return Ok(None);
        }
        if let Some(s) = &st.state {
            if st.supervisor_alive && s.kind() == Phase::Failed {
                return Err(Error::ServerFailed {
                    state: s.kind().to_string(),
                    last_error: s.last_error.as_ref().map(|e| {
                        format!(
                            "{e} (the supervisor keeps retrying every {:?}: `doltctl restart` \
                             retries now, `doltctl stop` gives up)",
                            cfg.restart.max_backoff
                        )
                    }),
                    log_tail: s.log_tail.clone(),
                });
            }
        }
        if let Some(c) = child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                let last_error = st
                    .state
                    .as_ref()
                    .filter(|s| !s.supervisor_alive())
                    .and_then(|s| s.last_error.clone())
                    .or_else(|| last_lines(&instance.supervisor_log(), 5));
                return Err(Error::SupervisorExited {
                    data_dir: instance.data_dir().to_path_buf(),
                    status: crate::server::dolt::describe_exit(status),
                    last_error,
                });
            }
        }
        if Instant::now() >= deadline {
            let tail =
                logs::read_tail(&instance.server_log(), cfg.logs.keep, 10).unwrap_or_default();
            return Err(Error::NotReady {
                host: cfg.server.host.clone(),
                port: st.state.as_ref().map_or(0, |s| s.port),
                waited: timeout,
                last_error: match st.state.as_ref().and_then(|s| s.last_error.clone()) {
                    Some(e) => e,
                    None => format!(
                        "state {}, supervisor {}, server {}",
                        st.phase(),
                        if st.supervisor_alive { "alive" } else { "gone" },
                        if st.server_alive { "alive" } else { "gone" }
                    ),
                },
                log_tail: tail,
            });
        }
        // Woken by the supervisor's next state rather than polling; still looking at the
        // child and the deadline every 250 ms.
        let left = deadline.saturating_duration_since(Instant::now());
        next_change(&mut watcher, instance, left.min(Duration::from_millis(250))).await;
    }
}

fn last_lines(path: &Path, n: usize) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(n)..].join("\n");
    (!tail.is_empty()).then_some(tail)
}

/// What `stop` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing was running.
    NotRunning,
    /// The supervisor stopped the server and exited.
    Stopped,
    /// No supervisor ran; these servers of ours (pids) ran without one and were stopped.
    Orphans(Vec<i32>),
}

/// Stops the supervisor and its server; returns once both are gone. Servers of ours running
/// without a supervisor (see [`unsupervised_servers`]) are stopped too: SIGTERM to the group,
/// SIGKILL after `stop_timeout`. A malformed state file is no obstacle unless a supervisor
/// runs (then it says which file).
pub async fn stop(cfg: &Config) -> Result<Stopped> {
    let instance = Instance::new(&cfg.data_dir);
    // Without a runtime dir there is no start lock to take (and no supervisor), but a server
    // of ours whose files were deleted under it may still run.
    let _lock = match instance.runtime_dir().is_dir() {
        true => Some(lock_start(&instance, start_deadline(cfg), cfg.client.retry_window).await?),
        false => None,
    };
    stop_locked(cfg, &instance).await
}

/// [`stop`] for a caller that holds the start lock (or has no runtime dir to take it in).
pub(crate) async fn stop_locked(cfg: &Config, instance: &Instance) -> Result<Stopped> {
    let instance = instance.clone();
    let mut state = match current_state(&instance) {
        Ok(s) => s,
        Err(e @ Error::StateFile { .. }) => {
            if crate::sys::locks::holder_of(&instance.supervisor_lock()).is_some() {
                return Err(e);
            }
            tracing::warn!("{e}");
            None
        }
        Err(e) => return Err(e),
    };
    let mut did = false;
    if let Some(sup) = state
        .as_ref()
        .and_then(|s| s.supervisor.clone())
        .filter(|s| s.is_running())
    {
        did = true;
        sup.signal(Signal::SIGTERM)?;
        // The supervisor itself escalates to SIGKILL after stop_timeout.
        if !sup
            .wait_gone(cfg.server.stop_timeout + Duration::from_secs(15))
            .await
        {
            tracing::warn!(pid = sup.pid, "supervisor did not exit; killing it");
            let _ = sup.signal(Signal::SIGKILL);
            sup.wait_gone(Duration::from_secs(5)).await;
        }
        state = current_state(&instance)?.or(state);
    }
    // Left behind by a killed supervisor, or by one whose state file was lost.
    let mut orphans = vec![];
    for server in unsupervised_servers(&instance, state.as_ref()) {
        server.terminate(cfg.server.stop_timeout).await?;
        orphans.push(server.pid);
    }
    // The supervisor was killed before it could record the stop itself. Where there is no
    // runtime dir (the data dir was removed under the supervisor) there is no state file to
    // correct either: nothing is recorded, and nothing is created.
    let recordable = instance.runtime_dir().is_dir();
    if let Some(state) = state
        .as_mut()
        .filter(|s| recordable && s.phase != PhaseRecord::Stopped)
    {
        state.phase = PhaseRecord::Stopped;
        state.updated_at = crate::sys::clock::now_rfc3339();
        state.write(&instance.state_file())?;
    }
    Ok(match (did, orphans.is_empty()) {
        (true, _) => Stopped::Stopped,
        (false, false) => Stopped::Orphans(orphans),
        (false, true) => Stopped::NotRunning,
    })
}

/// Restarts the server: through the running supervisor (which also leaves `failed`), or by
/// starting one.
pub async fn restart(cfg: &Config) -> Result<State> {
    let instance = Instance::new(&cfg.data_dir);
    let st = status(cfg)?;
    let sup = st.state.as_ref().and_then(|s| s.supervisor.clone());
    match sup.filter(|s| s.is_running()) {
        Some(sup) => {
            let old = st.state.as_ref().and_then(|s| s.server().map(|p| p.pid));
            let old_update = st.state.as_ref().map(|s| s.updated_at.clone());
            sup.signal(Signal::SIGUSR1)?;
            // Judge only states written after the signal was handled, not the old one.
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline
                && current_state(&instance)?.map(|s| s.updated_at) == old_update
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            match wait_ready(cfg, &instance, None, old, start_deadline(cfg)).await? {
                Some(state) => Ok(state),
                None => start(cfg).await,
            }
        }
        None => start(cfg).await,
    }
}

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

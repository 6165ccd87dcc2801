//! Starting: deciding under the start lock whether a supervisor must be launched, launching
//! it detached, and waiting until its server is ready.

use super::*;

/// Like [`supervised_status`], but a malformed state file counts as none: `start` replaces it
/// (the supervisor lock, not the state file, is what keeps supervisors unique).
pub(super) fn status_for_start(cfg: &Config) -> Result<Status> {
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
pub(super) fn refuse_writable_for_read_only(cfg: &Config, state: State) -> Result<State> {
    if cfg.server.read_only && !state.read_only {
        return Err(Error::WritableServerRunning {
            data_dir: state.data_dir.clone(),
            url: state.url.clone().unwrap_or_default(),
        });
    }
    Ok(state)
}

pub(super) async fn ensure_running(cfg: &Config, opts: &StartOptions) -> Result<State> {
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

pub(super) async fn ensure_running_with(
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
pub(super) async fn wait_registered(
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
pub(super) fn spawn_supervisor(
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
pub(super) fn supervisor_command() -> Result<(std::path::PathBuf, bool)> {
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
pub(super) fn reap_in_background(mut child: std::process::Child) {
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
pub(super) async fn wait_ready(
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

pub(super) fn last_lines(path: &Path, n: usize) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(n)..].join("\n");
    (!tail.is_empty()).then_some(tail)
}

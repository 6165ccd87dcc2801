//! The supervisor loop: one per data dir (an flock held for its whole life). It launches
//! `dolt sql-server`, proves it ready, watches it (exit by reaping, health by probes), restarts
//! it with backoff, gives up into `failed` after too many failures, and stops it in order.
//!
//! States: starting -> running -> (crash | wedged) -> backoff -> starting ...;
//! too many failures -> failed (until `doltctl restart`); SIGTERM/SIGINT -> stopping -> stopped.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::Flock;
use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::instance::Instance;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::lifecycle::state_file::{Phase, State};
use crate::server::dolt::{self, describe_exit, DoltChild, LaunchSpec};
use crate::server::health::{self, Prober};
use crate::server::log::ServerLog;
use crate::server::port;
use crate::server::preflight;
use crate::sys::clock::now_rfc3339;
use crate::sys::process::ProcessIdentity;

/// What the supervisor was asked to do by a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// SIGTERM / SIGINT: stop the server and exit.
    Stop,
    /// SIGUSR1 (`doltctl restart`): restart the server now, forgetting past failures.
    Restart,
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        let mk = |k| signal(k).map_err(|e| Error::io("signal handler", e));
        Ok(Signals {
            term: mk(SignalKind::terminate())?,
            int: mk(SignalKind::interrupt())?,
            usr1: mk(SignalKind::user_defined1())?,
        })
    }

    async fn next(&mut self) -> Command {
        tokio::select! {
            _ = self.term.recv() => Command::Stop,
            _ = self.int.recv() => Command::Stop,
            _ = self.usr1.recv() => Command::Restart,
        }
    }
}

/// Takes the supervisor lock without waiting. The kernel releases it if we die.
pub fn lock_supervisor(instance: &Instance) -> Result<Flock<File>> {
    match crate::sys::locks::try_flock(&instance.supervisor_lock())? {
        Some(l) => Ok(l),
        None => {
            let pid = State::read(&instance.state_file())
                .ok()
                .flatten()
                .and_then(|s| s.supervisor.filter(|p| p.is_running()).map(|p| p.pid));
            Err(Error::AlreadyRunning {
                data_dir: instance.data_dir().to_path_buf(),
                pid,
            })
        }
    }
}

/// Why a launch did not give a running server.
enum LaunchFailure {
    /// Worth retrying after backoff (dolt exited, not ready in time, port taken in auto mode).
    Retry(Error),
    /// Retrying cannot help on the first launch (foreign lock holder, dolt missing, ...).
    Fatal(Error),
    /// A signal arrived while launching; the child (if any) is already stopped.
    Interrupted(Command),
}

/// How a running server's watch ended.
enum Ended {
    Exited(String),
    Wedged(String),
    Command(Command),
    /// No client for `idle_timeout`; the start lock is held so no client starts a server
    /// while this one stops.
    Idle(crate::lifecycle::start_lock::StartLock),
}

pub struct Supervisor {
    cfg: Config,
    instance: Instance,
    log: Arc<ServerLog>,
    state: State,
    bin: Option<std::path::PathBuf>,
    failures: VecDeque<Instant>,
    backoff: Duration,
    idle_lock: Option<crate::lifecycle::start_lock::StartLock>,
    version_task: Option<tokio::task::JoinHandle<Result<String>>>,
}

impl Supervisor {
    /// Runs the supervisor until it is told to stop. Holds the supervisor lock throughout.
    pub async fn run(cfg: Config) -> Result<()> {
        let instance = Instance::new(&cfg.data_dir);
        instance.ensure_dirs()?;
        let _lock = lock_supervisor(&instance)?;
        let previous = State::read(&instance.state_file()).unwrap_or_else(|e| {
            tracing::warn!("{e}; starting with a fresh state file");
            None
        });
        let log = Arc::new(ServerLog::open(
            &instance.server_log(),
            cfg.logs.max_size,
            cfg.logs.keep,
        )?);
        let mut signals = Signals::install()?;
        let state = State {
            state: Phase::Starting,
            supervisor: ProcessIdentity::current(),
            server: None,
            host: cfg.server.host.clone(),
            port: previous.as_ref().map_or(0, |p| p.port),
            socket: None,
            url: None,
            data_dir: instance.data_dir().to_path_buf(),
            read_only: cfg.server.read_only,
            restarts: 0,
            last_error: None,
            log_tail: vec![],
            dolt_version: None,
            started_at: None,
            updated_at: now_rfc3339(),
        };
        let backoff = cfg.restart.initial_backoff;
        let mut sup = Supervisor {
            cfg,
            instance,
            log,
            state,
            bin: None,
            failures: VecDeque::new(),
            backoff,
            idle_lock: None,
            version_task: None,
        };
        sup.log.event(&format!(
            "supervisor pid {} started for {}",
            std::process::id(),
            sup.instance.data_dir().display()
        ));
        // The previous supervisor is gone (we hold its lock): a server it recorded that is
        // still alive is an orphan of ours.
        let orphan = previous.as_ref().and_then(|p| p.server.clone());
        preflight::stop_orphan(orphan.as_ref(), sup.cfg.server.stop_timeout, &sup.log).await?;
        let result = sup.main_loop(&mut signals).await;
        if let Err(e) = &result {
            sup.state.last_error = Some(e.to_string());
            sup.state.log_tail = sup.log.tail(15);
        }
        sup.state.server = None;
        let phase = match &result {
            Ok(p) => *p,
            Err(_) => Phase::Failed,
        };
        if sup.state.state != phase {
            sup.set_phase(phase);
        }
        sup.log.event("supervisor exiting");
        result.map(|_| ())
    }

    /// Runs until stopped; returns the phase to record at exit (stopped or idle).
    async fn main_loop(&mut self, signals: &mut Signals) -> Result<Phase> {
        let mut first = true;
        loop {
            let launched_at = Instant::now();
            let failure = match self.launch(signals).await {
                Ok(mut child) => {
                    first = false;
                    let ended = self.watch(&mut child, signals).await;
                    match ended {
                        Ended::Command(cmd) => {
                            self.stop_child(&mut child).await;
                            match cmd {
                                Command::Stop => return Ok(Phase::Stopped),
                                Command::Restart => {
                                    self.forget_failures();
                                    continue;
                                }
                            }
                        }
                        Ended::Idle(lock) => {
                            self.stop_child(&mut child).await;
                            self.log.event("idle stop complete; the next client access starts the server again");
                            // Keep the start lock until this process exits: a client waiting
                            // on it then sees no supervisor and starts a new one.
                            self.idle_lock = Some(lock);
                            return Ok(Phase::Idle);
                        }
                        Ended::Exited(why) | Ended::Wedged(why) => {
                            if launched_at.elapsed() >= self.cfg.restart.stable_after {
                                self.backoff = self.cfg.restart.initial_backoff;
                            }
                            why
                        }
                    }
                }
                Err(LaunchFailure::Interrupted(Command::Stop)) => return Ok(Phase::Stopped),
                Err(LaunchFailure::Interrupted(Command::Restart)) => {
                    self.forget_failures();
                    continue;
                }
                Err(LaunchFailure::Fatal(e)) if first => return Err(e),
                Err(LaunchFailure::Fatal(e)) | Err(LaunchFailure::Retry(e)) => {
                    first = false;
                    e.to_string()
                }
            };
            if let Some(cmd) = self.after_failure(failure, signals).await {
                if cmd == Command::Stop {
                    return Ok(Phase::Stopped);
                }
                self.forget_failures();
            }
        }
    }

    fn forget_failures(&mut self) {
        self.failures.clear();
        self.backoff = self.cfg.restart.initial_backoff;
    }

    /// Records a failure, then waits out the backoff, or sits in `failed` until told to
    /// restart. Returns a command if one arrived meanwhile.
    async fn after_failure(&mut self, why: String, signals: &mut Signals) -> Option<Command> {
        let now = Instant::now();
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.cfg.restart.failure_window)
        {
            self.failures.pop_front();
        }
        self.state.restarts += 1;
        self.state.server = None;
        self.state.last_error = Some(why.clone());
        self.state.log_tail = self.log.excerpt(10);
        if self.failures.len() as u32 >= self.cfg.restart.max_failures {
            self.log.event(&format!(
                "giving up after {} failures within {:?}: {why}; run `doltctl restart` to try again",
                self.failures.len(),
                self.cfg.restart.failure_window
            ));
            self.set_phase(Phase::Failed);
            return Some(signals.next().await);
        }
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(self.cfg.restart.max_backoff);
        self.log
            .event(&format!("server failed: {why}; restarting in {wait:?}"));
        self.set_phase(Phase::Backoff);
        tokio::select! {
            _ = tokio::time::sleep(wait) => None,
            cmd = signals.next() => Some(cmd),
        }
    }

    fn set_phase(&mut self, phase: Phase) {
        self.state.state = phase;
        self.state.updated_at = now_rfc3339();
        if let Err(e) = self.state.write(&self.instance.state_file()) {
            tracing::error!("cannot write state file: {e}");
        }
    }

    /// Preflight, launch, and wait until the server answers `SELECT 1`.
    async fn launch(&mut self, signals: &mut Signals) -> Result<DoltChild, LaunchFailure> {
        use LaunchFailure::{Fatal, Retry};
        self.state.server = None;
        self.state.started_at = None;
        self.set_phase(Phase::Starting);
        let bin = match &self.bin {
            Some(b) => b.clone(),
            None => {
                let b = dolt::resolve_binary(&self.cfg).map_err(Fatal)?;
                // Before any dolt command: dolt creates the root's global config itself.
                dolt::prepare_dolt_root(&self.instance).map_err(Fatal)?;
                // `dolt version` only informs the state file: run it beside the launch, off
                // the path to readiness.
                let env = dolt::dolt_env(&self.instance);
                let vb = b.clone();
                self.version_task =
                    Some(tokio::spawn(async move { dolt::version(&vb, &env).await }));
                self.bin = Some(b.clone());
                b
            }
        };
        preflight::check_locks(&self.instance, &self.log).map_err(Fatal)?;
        let host = self.cfg.server.host.clone();
        let previous = (self.state.port != 0).then_some(self.state.port);
        let port =
            port::choose(self.cfg.server.port, &host, &self.instance, previous).map_err(Fatal)?;
        let spec = LaunchSpec {
            bin,
            host: host.clone(),
            port,
            socket: self.instance.socket(),
        };
        // A socket file left by a killed server makes Dolt fail to listen on it.
        let _ = std::fs::remove_file(&spec.socket);
        self.state.port = port;
        self.state.socket = Some(spec.socket.clone());
        self.state.url = Some(crate::config::url::url_for(
            &self.cfg.client.user,
            "",
            &host,
            port,
        ));
        self.log.begin_launch();
        let mut child = dolt::launch(&self.cfg, &self.instance, &spec, &self.log).map_err(Fatal)?;
        self.state.server = Some(child.identity.clone());
        self.set_phase(Phase::Starting);

        let started = Instant::now();
        let deadline = started + self.cfg.server.ready_timeout;
        let mut last_error;
        let probe = health::probe_opts(&self.cfg, port);
        loop {
            tokio::select! {
                status = child.child.wait() => {
                    child.drain().await;
                    let status = status.map(describe_exit).unwrap_or_else(|e| e.to_string());
                    child.kill_leftovers();
                    self.log.event(&format!("dolt exited before it was ready ({status})"));
                    return Err(Retry(Error::ExitedBeforeReady { status, log_tail: self.log.excerpt(5) }));
                }
                cmd = signals.next() => {
                    self.stop_child(&mut child).await;
                    return Err(LaunchFailure::Interrupted(cmd));
                }
                r = health::select1(&probe, Duration::from_millis(1000)) => {
                    match r {
                        Ok(()) => break,
                        Err(e) => last_error = e,
                    }
                }
            }
            if Instant::now() >= deadline {
                self.kill_child(&mut child).await;
                return Err(Retry(Error::NotReady {
                    host,
                    port,
                    waited: self.cfg.server.ready_timeout,
                    last_error,
                    log_tail: self.log.excerpt(5),
                }));
            }
            // Fine-grained polling: refused connections come back at once.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                _ = child.child.wait() => {}
            }
        }
        self.log.event(&format!(
            "dolt pid {} ready on {host}:{port} after {} ms",
            child.pid(),
            started.elapsed().as_millis()
        ));
        if let Some(task) = self.version_task.take() {
            match tokio::time::timeout(Duration::from_secs(5), task).await {
                Ok(Ok(Ok(v))) => self.state.dolt_version = Some(v),
                Ok(Ok(Err(e))) => tracing::warn!("{e}"),
                _ => tracing::warn!("`dolt version` did not answer; version not recorded"),
            }
        }
        self.state.started_at = Some(now_rfc3339());
        self.set_phase(Phase::Running);
        Ok(child)
    }

    /// Watches a running server until it exits, wedges, or a command arrives.
    async fn watch(&mut self, child: &mut DoltChild, signals: &mut Signals) -> Ended {
        let h = self.cfg.health.clone();
        let mut prober = Prober::new(health::probe_opts(&self.cfg, self.state.port));
        let mut missed = 0u32;
        let idle_timeout = self.cfg.server.idle_timeout;
        let mut last_client = Instant::now();
        let mut tick = tokio::time::interval(h.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let ended = loop {
            tokio::select! {
                status = child.child.wait() => {
                    child.drain().await;
                    let status = status.map(describe_exit).unwrap_or_else(|e| e.to_string());
                    child.kill_leftovers();
                    let msg = format!("dolt pid {} exited unexpectedly ({status})", child.pid());
                    self.log.event(&msg);
                    break Ended::Exited(msg);
                }
                cmd = signals.next() => break Ended::Command(cmd),
                _ = tick.tick() => {
                    match prober.probe(h.timeout).await {
                        Ok(()) => {
                            missed = 0;
                            if idle_timeout.is_zero() {
                                continue;
                            }
                            match prober.client_connections(h.timeout).await {
                                Ok(n) if n > 0 => last_client = Instant::now(),
                                Ok(_) if last_client.elapsed() >= idle_timeout => {
                                    if let Some(lock) = crate::lifecycle::start_lock::try_lock_start(&self.instance) {
                                        self.log.event(&format!(
                                            "no client connection for {:?} (idle_timeout); stopping the server",
                                            last_client.elapsed()
                                        ));
                                        break Ended::Idle(lock);
                                    }
                                }
                                Ok(_) => {}
                                Err(e) => tracing::debug!("counting client connections: {e}"),
                            }
                        }
                        Err(e) => {
                            missed += 1;
                            self.log.event(&format!("health probe missed ({missed}/{}): {e}", h.max_missed));
                            if missed >= h.max_missed {
                                let msg = format!("dolt pid {} is wedged: {missed} health probes missed ({e})", child.pid());
                                self.log.event(&format!("{msg}; killing it"));
                                self.kill_child(child).await;
                                break Ended::Wedged(msg);
                            }
                        }
                    }
                }
            }
        };
        prober.close().await;
        ended
    }

    /// Graceful stop: SIGTERM to the group, `stop_timeout`, then SIGKILL. Reaps the child.
    async fn stop_child(&mut self, child: &mut DoltChild) {
        self.set_phase(Phase::Stopping);
        self.log
            .event(&format!("stopping dolt pid {} (SIGTERM)", child.pid()));
        child.signal_group(Signal::SIGTERM);
        let timeout = self.cfg.server.stop_timeout;
        match tokio::time::timeout(timeout, child.child.wait()).await {
            Ok(status) => {
                let s = status.map(describe_exit).unwrap_or_else(|e| e.to_string());
                self.log
                    .event(&format!("dolt pid {} stopped ({s})", child.pid()));
                // Anything it left in its group goes too.
                child.kill_leftovers();
            }
            Err(_) => {
                self.log.event(&format!(
                    "dolt pid {} did not stop within {timeout:?}; sending SIGKILL",
                    child.pid()
                ));
                self.kill_child(child).await;
            }
        }
        child.drain().await;
        self.state.server = None;
    }

    /// SIGKILL to the group and reap.
    async fn kill_child(&mut self, child: &mut DoltChild) {
        child.signal_group(Signal::SIGKILL);
        // SIGKILL cannot be caught or blocked, and acts on stopped processes too; only a
        // process stuck in the kernel (uninterruptible I/O) outlives it for a while.
        if tokio::time::timeout(Duration::from_secs(30), child.child.wait())
            .await
            .is_err()
        {
            tracing::error!(pid = child.pid(), "still not gone 30s after SIGKILL");
        }
        child.drain().await;
        self.state.server = None;
    }
}

//! The supervisor: one per data dir (an flock held for its whole life). Its loop reports
//! events to the [state machine](super::machine) and performs the actions it returns: launch,
//! terminate, kill, wait, log, exit. Nothing here decides what comes next.
//!
//! Commands arrive as a stream ([`Command`]); in the real supervisor signals feed it
//! (SIGTERM/SIGINT stop, SIGUSR1 restarts, SIGHUP as [`Hangup`] says), in unit tests the test
//! does.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::Flock;
use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::config::{Config, HealthConfig, Instance};
use crate::error::{Error, Result};
use crate::lifecycle::cluster::controller::Controller;
use crate::lifecycle::cluster::ClusterView;
use crate::lifecycle::control_socket::ControlSocket;
use crate::lifecycle::driver::{
    DoltLauncher, LaunchError, Launched, Launcher, Probe, ServerProcess,
};
use crate::lifecycle::machine::{Action, Event, Launch, Machine, ServerPhase};
use crate::lifecycle::metrics::{self, Vitals};
use crate::lifecycle::registry::Registration;
use crate::lifecycle::service_notify::ServiceNotify;
use crate::lifecycle::start_lock::{try_lock_start, StartLock};
use crate::lifecycle::state_file::{Phase, PhaseRecord, State};
use crate::server::cluster::{Role, SharedStartRole, StartRole};
use crate::server::dolt::describe_exit;
use crate::server::log::ServerLog;
use crate::server::preflight;
use crate::sys::clock::now_rfc3339;
use crate::sys::process::ProcessIdentity;

/// What the supervisor can be told from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// Stop the server and exit.
    Stop,
    /// Restart the server now, forgetting past failures (also leaves `failed`).
    Restart,
}

/// How a supervisor runs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunOptions {
    /// Started by `control::start` in a session of its own, its stderr in `supervisor.log`
    /// (the hidden `run --detached`); otherwise `doltctl run` in the foreground.
    pub detached: bool,
    /// Started by a client's auto-start (the hidden `run --auto-started`): recorded in the
    /// state file and the registry, so `gc --idle` and `[client] max_instances` may stop it.
    pub auto_started: bool,
}

/// What SIGHUP does to a supervisor. Either way it never leaves a server running unsupervised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hangup {
    /// Stop the server, then exit, as SIGTERM does: a foreground `doltctl run` whose terminal
    /// went away.
    Stop,
    /// Log it and keep supervising: a detached supervisor (no terminal can hang up on it; a
    /// hang-up sent by hand must not end it), or one started with SIGHUP ignored (`nohup`).
    Ignore,
}

impl Hangup {
    /// The policy for a supervisor run with `opts`.
    pub(crate) fn for_run(opts: RunOptions) -> Hangup {
        if opts.detached || crate::sys::process::ignores_signal(Signal::SIGHUP) {
            Hangup::Ignore
        } else {
            Hangup::Stop
        }
    }
}

/// Forwards SIGTERM/SIGINT (stop), SIGUSR1 (restart) and SIGHUP (stop or nothing, as `hangup`
/// says) into a command stream. Installed before the supervisor launches anything, so no
/// signal can end it while a server of its runs. Installing the SIGHUP handler also replaces
/// an inherited `SIG_IGN` (which would pass on to dolt) by a handler that exec resets.
fn signal_commands(hangup: Hangup, log: Arc<ServerLog>) -> Result<mpsc::Receiver<Command>> {
    let mk = |k| signal(k).map_err(|e| Error::io("signal handler", e));
    let (mut term, mut int, mut usr1, mut hup) = (
        mk(SignalKind::terminate())?,
        mk(SignalKind::interrupt())?,
        mk(SignalKind::user_defined1())?,
        mk(SignalKind::hangup())?,
    );
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let cmd = tokio::select! {
                _ = term.recv() => Command::Stop,
                _ = int.recv() => Command::Stop,
                _ = usr1.recv() => Command::Restart,
                _ = hup.recv() => match hangup {
                    Hangup::Stop => {
                        log.event("SIGHUP (a hang-up: the terminal closed?): stopping the server and the supervisor");
                        Command::Stop
                    }
                    Hangup::Ignore => {
                        log.event("SIGHUP ignored: this supervisor runs detached (or under nohup); `doltctl stop` stops it");
                        continue;
                    }
                },
            };
            if tx.send(cmd).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

/// Takes the supervisor lock without waiting. The kernel releases it if we die.
pub(crate) fn lock_supervisor(instance: &Instance) -> Result<Flock<File>> {
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

/// Runs the supervisor for `cfg`'s data dir until it is told to stop, goes idle, or cannot
/// launch at all. Holds the supervisor lock throughout.
///
/// In the foreground (`opts.detached` unset) dolt's output also goes to our stderr, so a
/// terminal, journald or a container log sees it; a detached supervisor's stderr is
/// `supervisor.log`, which gets only its own warnings.
pub(crate) async fn run(cfg: Config, opts: RunOptions) -> Result<()> {
    let instance = Instance::new(&cfg.data_dir);
    instance.ensure_dirs()?;
    // The exclusion that no deleted file can undo (see control_socket), then the lock file
    // other tools look for.
    let control = ControlSocket::bind(&instance)?;
    let lock = lock_supervisor(&instance)?;
    let previous = State::read(&instance.state_file()).unwrap_or_else(|e| {
        tracing::warn!("{e}; starting with a fresh state file");
        None
    });
    let log = Arc::new(
        ServerLog::open(&instance.server_log(), cfg.logs.max_size, cfg.logs.keep)?
            .echo_dolt_to_stderr(!opts.detached),
    );
    let commands = signal_commands(Hangup::for_run(opts), log.clone())?;
    log.event(&format!(
        "supervisor pid {} started for {}{}",
        std::process::id(),
        instance.data_dir().display(),
        if opts.detached { " (detached)" } else { "" }
    ));
    let mut launcher = DoltLauncher::new(cfg.clone(), instance.clone(), log.clone());
    // A cluster node: every launch starts dolt in the role its controller holds.
    let start_role = cfg.cluster.as_ref().map(|_| {
        SharedStartRole::new(StartRole {
            role: Role::Standby,
            epoch: 0,
        })
    });
    if let Some(r) = &start_role {
        launcher = launcher.with_start_role(r.clone());
    }
    let mut sup = Supervisor::new(&cfg, instance.clone(), log, launcher, commands);
    sup.lock = Some(lock);
    sup.start_role = start_role.clone();
    sup.record.auto_started = opts.auto_started;
    // In the per-user registry (`doltctl ps`) while we live; removed again on every way out.
    sup.registration = Registration::register(&instance, opts.auto_started, &cfg);
    // Only a foreground `run` is a service manager's main process; a detached supervisor
    // never speaks for whoever started it.
    if !opts.detached {
        sup.notify = crate::sys::notify::Notifier::from_env().map(ServiceNotify::start);
    }
    tokio::spawn(control.serve(sup.subscribe()));
    sup.record.port = previous.as_ref().map_or(0, |p| p.port);
    // Recorded at once, so `status` sees a supervisor starting rather than the dead one's
    // leftovers while orphans are stopped below.
    sup.publish();
    // Before any launch: a metrics address that cannot be bound ends the supervisor, recorded
    // as its failure, rather than leave a scraper seeing only "down".
    if let Some(addr) = cfg.metrics.listen {
        match metrics::bind(addr).await {
            Ok(listener) => {
                sup.log.event(&format!("metrics on http://{addr}/metrics"));
                tokio::spawn(metrics::serve(listener, sup.vitals.subscribe()));
            }
            Err(e) => {
                sup.finish(Err(&e));
                return Err(e);
            }
        }
    }
    // The previous supervisor is gone (we hold its lock): a server it recorded that is still
    // alive, and any dolt running this data dir's generated config, is an orphan of ours.
    let orphan = previous.as_ref().and_then(|p| p.server().cloned());
    if let Err(e) = preflight::stop_orphans(
        orphan.as_ref(),
        &instance,
        cfg.server.stop_timeout,
        &sup.log,
    )
    .await
    {
        sup.finish(Err(&e));
        drop(sup.registration.take());
        return Err(e);
    }
    // The cluster controller decides the first role (etcd must answer) before the first
    // launch, then runs beside the loop.
    let mut cluster_task = None;
    if let Some(role) = start_role {
        match Controller::prepare(&cfg, sup.log.clone(), role).await {
            Ok((ctrl, view)) => {
                sup.cluster_view = Some(view);
                let (stop, stopped) = tokio::sync::oneshot::channel();
                cluster_task = Some((stop, tokio::spawn(ctrl.run(sup.subscribe(), stopped))));
            }
            Err(e) => {
                sup.finish(Err(&e));
                drop(sup.registration.take());
                return Err(e);
            }
        }
    }
    sup.drive().await;
    if let Some((stop, task)) = cluster_task {
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    sup.finish(Ok(()));
    // Before the supervisor lock goes (with `sup`): a successor's entry is never removed.
    drop(sup.registration.take());
    Ok(())
}

/// The settings the loop itself needs.
#[derive(Debug, Clone)]
struct Settings {
    ready_timeout: Duration,
    stop_timeout: Duration,
    idle_timeout: Duration,
    health: HealthConfig,
    /// How long a removed data dir may stay away before the supervisor gives up on it.
    data_dir_grace: Duration,
}

/// The supervisor loop over a launcher (dolt, or a fake in tests).
pub(crate) struct Supervisor<L: Launcher> {
    launcher: L,
    machine: Machine,
    settings: Settings,
    instance: Instance,
    log: Arc<ServerLog>,
    /// What the state file says; the phase part is derived from the machine on each write.
    record: State,
    user: String,
    commands: mpsc::Receiver<Command>,
    child: Option<L::Child>,
    probe: Option<L::Probe>,
    ready_deadline: Instant,
    backoff_until: Option<Instant>,
    /// Held from the idle decision until this process exits: a client waiting on it then sees
    /// no supervisor and starts a new one.
    idle_lock: Option<StartLock>,
    /// The supervisor lock (absent in unit tests); re-taken when its file is deleted.
    lock: Option<Flock<File>>,
    /// The data dir's inode when the server was launched: a data dir removed (or replaced)
    /// under a running server stops it.
    data_dir_ino: Option<u64>,
    /// The state could not be written last time: try again on the next maintenance tick.
    unwritten: bool,
    /// Since when the data dir has been missing.
    data_dir_missing_since: Option<Instant>,
    /// The disk filled while this server ran (why, for `status`): dolt may keep running with
    /// every write failing, even after space returns, so it is restarted once there is room.
    disk_full: Option<String>,
    /// The latest state, for the control socket.
    state_tx: watch::Sender<Option<State>>,
    /// Our entry in the per-user registry (absent in unit tests, or when there is no
    /// registry dir); written again when it is deleted under us.
    registration: Option<Registration>,
    /// The service manager to notify (a foreground `run` under systemd `Type=notify`).
    notify: Option<ServiceNotify>,
    /// What the metrics endpoint shows.
    vitals: Vitals,
    /// A cluster node's role, from its controller (`[cluster]`).
    cluster_view: Option<watch::Receiver<ClusterView>>,
    /// A cluster node's start role, which also names a dolt its controller fenced.
    start_role: Option<SharedStartRole>,
}

impl<L: Launcher> Supervisor<L> {
    pub(crate) fn new(
        cfg: &Config,
        instance: Instance,
        log: Arc<ServerLog>,
        launcher: L,
        commands: mpsc::Receiver<Command>,
    ) -> Supervisor<L> {
        let record = State {
            phase: PhaseRecord::Starting { server: None },
            supervisor: ProcessIdentity::current(),
            host: cfg.server.host.clone(),
            port: 0,
            socket: None,
            url: None,
            data_dir: instance.data_dir().to_path_buf(),
            read_only: cfg.server.read_only,
            restarts: 0,
            last_error: None,
            log_tail: vec![],
            dolt_version: None,
            updated_at: now_rfc3339(),
            clients: None,
            last_client_at: None,
            auto_started: false,
            cluster: None,
        };
        Supervisor {
            launcher,
            machine: Machine::new((&cfg.restart).into()),
            settings: Settings {
                ready_timeout: cfg.server.ready_timeout,
                stop_timeout: cfg.server.stop_timeout,
                idle_timeout: cfg.server.idle_timeout,
                health: cfg.health.clone(),
                data_dir_grace: cfg.restart.failure_window,
            },
            vitals: Vitals::new(instance.data_dir()),
            instance,
            log,
            record,
            user: cfg.client.user.clone(),
            commands,
            child: None,
            probe: None,
            ready_deadline: Instant::now(),
            backoff_until: None,
            idle_lock: None,
            lock: None,
            data_dir_ino: None,
            unwritten: false,
            data_dir_missing_since: None,
            disk_full: None,
            state_tx: watch::channel(None).0,
            registration: None,
            notify: None,
            cluster_view: None,
            start_role: None,
        }
    }

    /// The state as it is published, for the control socket.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<State>> {
        self.state_tx.subscribe()
    }

    /// Runs the machine until an `Exit` action; returns the final phase.
    pub(crate) async fn drive(&mut self) -> Phase {
        self.publish();
        let mut pending: VecDeque<Action> = VecDeque::from([Action::Launch]);
        loop {
            while let Some(action) = pending.pop_front() {
                let event = match action {
                    Action::Launch => Some(self.launch().await),
                    Action::Terminate => {
                        self.terminate().await;
                        Some(Event::ServerStopped)
                    }
                    Action::Kill => {
                        self.kill().await;
                        Some(Event::ServerStopped)
                    }
                    Action::Wait(d) => {
                        self.backoff_until = Some(Instant::now() + d);
                        None
                    }
                    Action::Log(line) => {
                        self.log.event(&line);
                        None
                    }
                    Action::Exit => return self.machine.phase.kind(),
                };
                if let Some(e) = event {
                    pending.extend(self.apply(e));
                }
            }
            let event = self.next_event().await;
            pending.extend(self.apply(event));
        }
    }

    /// A failure on a full disk says so, with what brings the server back.
    fn annotate(&self, mut event: Event) -> Event {
        let why = match &mut event {
            Event::Exited(why) | Event::NotReady(why) | Event::LaunchFailed { error: why, .. } => {
                why
            }
            _ => return event,
        };
        if let Some(reason) = crate::server::disk::full_disk(self.instance.data_dir()) {
            // Right after the first line, before any log excerpt the message carries.
            let (first, rest) = why.split_once('\n').unwrap_or((why.as_str(), ""));
            let sep = if rest.is_empty() { "" } else { "\n" };
            *why = format!(
                "{first}; {reason}: free space there and the supervisor starts dolt again by \
                 itself{sep}{rest}"
            );
        }
        event
    }

    /// Feeds one event to the machine and writes the state file; returns the actions.
    fn apply(&mut self, event: Event) -> Vec<Action> {
        let event = self.annotate(event);
        let before = self.machine.last_error.clone();
        let now = Instant::now();
        self.vitals.observe(&self.machine.phase, &event, now);
        match self.machine.step(event, now) {
            Ok(actions) => {
                if self.machine.last_error != before {
                    self.record.log_tail = self.log.excerpt(10);
                }
                self.publish();
                actions
            }
            Err(refused) => {
                // A bug in the loop, not in the server: keep going in the same phase.
                tracing::error!("{refused}");
                vec![]
            }
        }
    }

    /// The one place the state file is written: the record, with the machine's phase.
    fn publish(&mut self) {
        let m = &self.machine;
        self.record.phase = match &m.phase {
            ServerPhase::Starting(_) => PhaseRecord::Starting {
                server: m.phase.server().cloned(),
            },
            ServerPhase::Running { launch, ready_at } => PhaseRecord::Running {
                server: launch.identity.clone(),
                started_at: humantime::format_rfc3339_millis(*ready_at).to_string(),
            },
            ServerPhase::Backoff { .. } => PhaseRecord::Backoff,
            ServerPhase::Stopping { .. } => PhaseRecord::Stopping {
                server: m.phase.server().cloned(),
            },
            ServerPhase::Failed => PhaseRecord::Failed,
            ServerPhase::Stopped => PhaseRecord::Stopped,
            ServerPhase::Idle => PhaseRecord::Idle,
        };
        self.record.restarts = m.restarts;
        if let Some(v) = &mut self.cluster_view {
            self.record.cluster = Some(v.borrow_and_update().clone());
        }
        self.record.last_error = self.disk_full.clone().or_else(|| m.last_error.clone());
        self.record.updated_at = now_rfc3339();
        // A failed write (full disk, runtime dir removed) never ends the supervisor: the old
        // file stays whole (atomic rename), the control socket serves the state meanwhile,
        // and the next maintenance tick writes it again.
        match self.record.write(&self.instance.state_file()) {
            Ok(()) => {
                if self.unwritten {
                    self.log.event("state file written again");
                }
                self.unwritten = false;
            }
            Err(e) => {
                if !self.unwritten {
                    self.log.event(&format!(
                        "cannot write the state file ({e}); `doltctl status` asks the supervisor meanwhile"
                    ));
                }
                self.unwritten = true;
            }
        }
        // Told after the file is written: whoever a change wakes (watchers of the control
        // socket, systemd) then finds the same state on disk.
        self.state_tx.send_replace(Some(self.record.clone()));
        if let Some(n) = &mut self.notify {
            n.publish(&self.machine.phase, &self.record);
        }
        self.vitals.publish(&self.record);
    }

    /// Records how the supervisor ends: its final phase, or `failed` with the error.
    pub(crate) fn finish(&mut self, result: std::result::Result<(), &Error>) {
        if let Err(e) = result {
            self.machine.last_error = Some(e.to_string());
            self.record.log_tail = self.log.tail(15);
            self.machine.phase = ServerPhase::Failed;
        }
        self.publish();
        self.log.event("supervisor exiting");
    }
}

mod actions;
mod housekeeping;
mod waiting;

#[cfg(test)]
mod tests;

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

    /// Housekeeping on every health tick, in every waiting phase: puts back runtime files
    /// deleted under us (`rm -rf .doltctl`, `git clean -fdx`), writes a state that could not
    /// be written, and reports a data dir that is gone.
    fn maintain(&mut self) -> Option<Event> {
        self.log.retry_now();
        if let Some(e) = self.watch_disk() {
            return Some(e);
        }
        let data_dir = self.instance.data_dir().to_path_buf();
        let ino = std::fs::metadata(&data_dir)
            .ok()
            .filter(|m| m.is_dir())
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        if self.machine.phase.server().is_some() && ino != self.data_dir_ino {
            let why = format!(
                "data dir {} was {} while the server ran; stopped the server rather than let it \
                 serve deleted files",
                data_dir.display(),
                if ino.is_none() { "removed" } else { "replaced" }
            );
            self.log.event(&why);
            return Some(Event::Lost(why));
        }
        // With no data dir there is nothing to put back; the next launch reports it. One that
        // stays away (a deleted project or temp dir) is given up on after `failure_window`,
        // so forgotten supervisors do not pile up; a stop ends the supervisor.
        if ino.is_none() {
            let since = *self.data_dir_missing_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= self.settings.data_dir_grace {
                self.log.event(&format!(
                    "data dir {} has been gone for {:?}; the supervisor exits",
                    data_dir.display(),
                    since.elapsed()
                ));
                return Some(Event::Stop);
            }
            return None;
        }
        self.data_dir_missing_since = None;
        if self.lock.is_some() && !self.lock_is_in_place() {
            self.restore_runtime_files();
        }
        let role_changed = self
            .cluster_view
            .as_ref()
            .is_some_and(|v| v.has_changed().unwrap_or(false));
        if self.unwritten || role_changed {
            self.publish();
        }
        if let Some(r) = &mut self.registration {
            r.restore();
        }
        None
    }

    /// While a server runs: notes a full disk (status says so; dolt may answer reads while every
    /// write fails) and restarts the server once there is room again, so its writes work.
    fn watch_disk(&mut self) -> Option<Event> {
        if self.machine.phase.server().is_none() {
            self.disk_full = None;
            return None;
        }
        match (
            crate::server::disk::full_disk(self.instance.data_dir()),
            &self.disk_full,
        ) {
            (Some(reason), None) => {
                let why = format!(
                    "{reason}: dolt's writes fail; free space there and the supervisor restarts \
                     dolt by itself"
                );
                self.log.event(&why);
                self.disk_full = Some(why);
                self.publish();
                None
            }
            (None, Some(_)) => {
                self.disk_full = None;
                let why = "the disk was full while dolt ran; restarting it now that there is \
                           room, so its writes work again"
                    .to_string();
                self.log.event(&why);
                Some(Event::Lost(why))
            }
            _ => None,
        }
    }

    /// True while our locked `supervisor.lock` is still the file at its path.
    fn lock_is_in_place(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let held = self
            .lock
            .as_ref()
            .and_then(|l| l.metadata().ok())
            .map(|m| m.ino());
        let named = std::fs::metadata(self.instance.supervisor_lock())
            .ok()
            .map(|m| m.ino());
        held.is_some() && held == named
    }

    /// Recreates the runtime dir, re-takes the supervisor lock on the new file and rewrites
    /// the state. No second supervisor can have started meanwhile: the control socket, not a
    /// file, keeps supervisors unique.
    fn restore_runtime_files(&mut self) {
        let rt = self.instance.runtime_dir().to_path_buf();
        if let Err(e) = self.instance.ensure_dirs() {
            tracing::warn!("recreating {}: {e}", rt.display());
            return;
        }
        match crate::sys::locks::try_flock(&self.instance.supervisor_lock()) {
            Ok(Some(l)) => self.lock = Some(l),
            Ok(None) => tracing::warn!(
                "{} is locked by another process",
                self.instance.supervisor_lock().display()
            ),
            Err(e) => tracing::warn!("{e}"),
        }
        self.log.event(&format!(
            "runtime files in {} were removed under the running supervisor; recreated them",
            rt.display()
        ));
        self.publish();
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

    async fn command(&mut self) -> Event {
        match self.commands.recv().await {
            Some(Command::Stop) | None => Event::Stop,
            Some(Command::Restart) => Event::Restart,
        }
    }

    /// Performs `Launch`: preflight and spawn; reports the result.
    async fn launch(&mut self) -> Event {
        let previous = (self.record.port != 0).then_some(self.record.port);
        match self.launcher.launch(previous).await {
            Ok(Launched {
                child,
                probe,
                port,
                socket,
            }) => {
                self.record.port = port;
                self.record.socket = socket;
                self.record.url = Some(crate::config::url::url_for(
                    &self.user,
                    "",
                    &self.record.host,
                    port,
                ));
                let launch = Launch {
                    identity: child.identity().clone(),
                    launched_at: Instant::now(),
                };
                self.ready_deadline = launch.launched_at + self.settings.ready_timeout;
                self.data_dir_ino = std::fs::metadata(self.instance.data_dir())
                    .ok()
                    .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
                self.child = Some(child);
                self.probe = Some(probe);
                Event::Launched(launch)
            }
            Err(LaunchError { error, fatal }) => Event::LaunchFailed {
                error: error.to_string(),
                fatal,
            },
        }
    }

    /// Waits for what can happen in the current phase.
    async fn next_event(&mut self) -> Event {
        match self.machine.phase {
            ServerPhase::Starting(Some(_)) => self.wait_ready().await,
            ServerPhase::Running { .. } => self.watch().await,
            // Backoff and failed wait out their timer (failed retries every max_backoff),
            // or a command; the other phases are left by actions.
            _ => {
                let until = self.backoff_until.unwrap_or_else(Instant::now);
                let mut maintenance = tokio::time::interval(self.settings.health.interval);
                maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until.into()) => return Event::BackoffElapsed,
                        e = self.command() => return e,
                        _ = maintenance.tick() => {
                            if let Some(e) = self.maintain() {
                                return e;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Starting with a process: polls `SELECT 1` until it answers, the process exits, a
    /// command arrives or `ready_timeout` passes.
    async fn wait_ready(&mut self) -> Event {
        let (Some(child), Some(probe)) = (self.child.as_mut(), self.probe.as_mut()) else {
            return Event::Exited("no server process".into());
        };
        let started = Instant::now();
        let mut last_error;
        loop {
            tokio::select! {
                status = child.wait() => {
                    child.after_exit().await;
                    let status = status.map(describe_exit).unwrap_or_else(|e| e.to_string());
                    self.log.event(&format!("dolt exited before it was ready ({status})"));
                    self.child = None;
                    let e = Error::ExitedBeforeReady { status, log_tail: self.log.excerpt(5) };
                    return Event::Exited(e.to_string());
                }
                cmd = self.commands.recv() => {
                    return match cmd {
                        Some(Command::Restart) => Event::Restart,
                        _ => Event::Stop,
                    };
                }
                r = probe.ready() => match r {
                    Ok(()) => break,
                    Err(e) => last_error = e,
                }
            }
            if Instant::now() >= self.ready_deadline {
                let e = Error::NotReady {
                    host: self.record.host.clone(),
                    port: self.record.port,
                    waited: self.settings.ready_timeout,
                    last_error,
                    log_tail: self.log.excerpt(5),
                };
                return Event::NotReady(e.to_string());
            }
            // Fine-grained polling (as fine as the yardstick's): refused connections come
            // back at once and cost next to nothing.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(2)) => {}
                _ = child.wait() => {}
            }
        }
        self.log.event(&format!(
            "dolt pid {} ready on {}:{} after {} ms",
            child.identity().pid,
            self.record.host,
            self.record.port,
            started.elapsed().as_millis()
        ));
        // Idle time counts from the first ready time until a client is seen.
        if self.record.last_client_at.is_none() {
            self.record.last_client_at = Some(now_rfc3339());
        }
        Event::Ready {
            at: SystemTime::now(),
        }
    }

    /// Running: notices an exit at once (by reaping), a wedge after `max_missed` probes, and
    /// no clients for `idle_timeout`.
    async fn watch(&mut self) -> Event {
        let h = self.settings.health.clone();
        let idle_timeout = self.settings.idle_timeout;
        let mut missed = 0u32;
        let mut last_client = Instant::now();
        // Known from an earlier start of the same binary, or asked now: after readiness has
        // been published, so it never delays it.
        if let Some(v) = self.launcher.version().await {
            if self.record.dolt_version.as_ref() != Some(&v) {
                self.record.dolt_version = Some(v);
                self.publish();
            }
        }
        let mut tick = tokio::time::interval(h.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            {
                let Some(child) = self.child.as_mut() else {
                    return Event::Exited("no server process".into());
                };
                tokio::select! {
                    // An exit first: a tick that is due too must not start another probe.
                    biased;
                    status = child.wait() => {
                        child.after_exit().await;
                        let status = status.map(describe_exit).unwrap_or_else(|e| e.to_string());
                        let msg = format!("dolt pid {} exited unexpectedly ({status})", child.identity().pid);
                        self.log.event(&msg);
                        self.release().await;
                        return Event::Exited(msg);
                    }
                    cmd = self.commands.recv() => {
                        return match cmd {
                            Some(Command::Restart) => Event::Restart,
                            _ => Event::Stop,
                        };
                    }
                    _ = tick.tick() => {}
                }
            }
            if let Some(e) = self.maintain() {
                return e;
            }
            let (Some(child), Some(probe)) = (self.child.as_mut(), self.probe.as_mut()) else {
                return Event::Exited("no server process".into());
            };
            let pid = child.identity().pid;
            // A probe of a dead server can take its whole timeout (its port taken over by a
            // process that accepts and never answers): the exit wins, and is reported above.
            let health = tokio::select! {
                biased;
                _ = child.wait() => continue,
                r = probe.health(h.timeout) => r,
            };
            match health {
                Ok(()) => {
                    missed = 0;
                    // Counted on every tick, idle_timeout or not: `doltctl ps`, `gc --idle`
                    // and the metrics read the count (and the idle time from the state file).
                    // One query on the probe's open connection.
                    let counted = probe.client_connections(h.timeout).await;
                    if let Ok(n) = counted {
                        self.vitals.set_clients(n);
                        self.note_clients(n);
                    }
                    match counted {
                        Ok(n) if n > 0 => last_client = Instant::now(),
                        Ok(_) if idle_timeout.is_zero() => {}
                        Ok(_) if last_client.elapsed() >= idle_timeout => {
                            if let Some(lock) = try_lock_start(&self.instance) {
                                self.log.event(&format!(
                                    "no client connection for {:?} (idle_timeout); stopping the server",
                                    last_client.elapsed()
                                ));
                                self.idle_lock = Some(lock);
                                return Event::IdleTimeout;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!("counting client connections: {e}"),
                    }
                }
                Err(e) => {
                    missed += 1;
                    self.log.event(&format!(
                        "health probe missed ({missed}/{}): {e}",
                        h.max_missed
                    ));
                    if missed >= h.max_missed {
                        let msg = format!(
                            "dolt pid {pid} is wedged: {missed} health probes missed ({e})"
                        );
                        self.log.event(&format!("{msg}; killing it"));
                        return Event::Wedged(msg);
                    }
                }
            }
        }
    }

    /// Performs `Terminate`: SIGTERM to the group, `stop_timeout`, then SIGKILL; reaps.
    async fn terminate(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let pid = child.identity().pid;
        self.log
            .event(&format!("stopping dolt pid {pid} (SIGTERM)"));
        child.signal_group(Signal::SIGTERM);
        let timeout = self.settings.stop_timeout;
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => {
                let s = status.map(describe_exit).unwrap_or_else(|e| e.to_string());
                self.log.event(&format!("dolt pid {pid} stopped ({s})"));
                child.after_exit().await;
                self.release().await;
            }
            Err(_) => {
                self.log.event(&format!(
                    "dolt pid {pid} did not stop within {timeout:?}; sending SIGKILL"
                ));
                self.kill().await;
            }
        }
    }

    /// Performs `Kill`: SIGKILL to the group; reaps.
    async fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            child.signal_group(Signal::SIGKILL);
            // SIGKILL cannot be caught or blocked, and acts on stopped processes too; only a
            // process stuck in the kernel (uninterruptible I/O) outlives it for a while.
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
            {
                tracing::error!(
                    pid = child.identity().pid,
                    "still not gone 30s after SIGKILL"
                );
            }
            child.after_exit().await;
        }
        self.release().await;
    }

    /// Records a client count; the state is published only when the count changes, with the
    /// time a client was last seen when clients come or the last one goes.
    fn note_clients(&mut self, n: u64) {
        let was = self.record.clients;
        if was == Some(n) {
            return;
        }
        if n > 0 || was.is_some_and(|w| w > 0) {
            self.record.last_client_at = Some(now_rfc3339());
        }
        self.record.clients = Some(n);
        self.publish();
    }

    async fn release(&mut self) {
        // No server, no count (published with the event that follows); clients connected
        // until now were last seen now.
        if self.record.clients.is_some_and(|n| n > 0) {
            self.record.last_client_at = Some(now_rfc3339());
        }
        self.record.clients = None;
        self.child = None;
        if let Some(mut p) = self.probe.take() {
            p.close().await;
        }
    }
}

#[cfg(test)]
#[path = "supervisor_tests.rs"]
mod tests;

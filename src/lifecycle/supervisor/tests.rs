//! The supervisor loop driven in-process with a fake child process (`sleep`, in its own
//! process group) and a fake probe the test controls: crash, wedge, restart, stop during
//! backoff, idle stop, and `failed` after too many failures. Real dolt is exercised by the
//! integration tests.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::process::{Child, Command as ProcessCommand};
use tokio::sync::{mpsc, watch};

use super::*;
use crate::lifecycle::driver::{LaunchError, Launched, Launcher, Probe, ServerProcess};

/// What the fake server does; shared between the test and the fake launcher/probe.
#[derive(Default)]
struct Script {
    /// Launches fail (non-fatal) while set.
    fail_launch: AtomicBool,
    /// Failed launches are fatal ones (a foreign lock holder, no binary).
    fatal_launch: AtomicBool,
    /// The child exits at once (`true` instead of `sleep`).
    exit_at_once: AtomicBool,
    /// Readiness probes fail while set.
    never_ready: AtomicBool,
    /// Health probes fail while set.
    wedged: AtomicBool,
    /// Health probes take their whole timeout, then fail, while set.
    hanging: AtomicBool,
    /// Client connections the fake server reports.
    clients: AtomicU64,
    launches: AtomicU32,
    /// How often the supervisor counted client connections.
    client_checks: AtomicU32,
    /// Pids of every child launched, to check none outlives the test.
    pids: Mutex<Vec<i32>>,
}

struct FakeChild {
    child: Child,
    identity: ProcessIdentity,
}

impl ServerProcess for FakeChild {
    fn identity(&self) -> &ProcessIdentity {
        &self.identity
    }
    async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }
    async fn after_exit(&mut self) {}
    fn signal_group(&self, sig: Signal) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.identity.pid), sig);
    }
}

struct FakeProbe(Arc<Script>);

impl Probe for FakeProbe {
    async fn ready(&mut self) -> Result<(), String> {
        if self.0.never_ready.load(Ordering::SeqCst) {
            Err("connection refused (fake)".into())
        } else {
            Ok(())
        }
    }
    async fn health(&mut self, timeout: Duration) -> Result<(), String> {
        if self.0.hanging.load(Ordering::SeqCst) {
            tokio::time::sleep(timeout).await;
            return Err(format!("no answer within {timeout:?} (fake)"));
        }
        if self.0.wedged.load(Ordering::SeqCst) {
            Err("no answer (fake)".into())
        } else {
            Ok(())
        }
    }
    async fn client_connections(&mut self, _timeout: Duration) -> Result<u64, String> {
        self.0.client_checks.fetch_add(1, Ordering::SeqCst);
        Ok(self.0.clients.load(Ordering::SeqCst))
    }
    async fn close(&mut self) {}
}

struct FakeLauncher(Arc<Script>);

/// The child's identity once it shows its own command line (right after spawn it may still
/// show ours); a child that already exited gets a placeholder.
async fn settled_identity(pid: i32) -> ProcessIdentity {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ProcessIdentity::of(pid) {
            Some(id)
                if id
                    .cmdline
                    .first()
                    .is_some_and(|c| c == "sleep" || c == "false") =>
            {
                return id
            }
            None => {
                return ProcessIdentity {
                    pid,
                    start_time: 0,
                    cmdline: vec![],
                }
            }
            _ => {
                assert!(Instant::now() < deadline, "fake child {pid} never exec'd");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

impl Launcher for FakeLauncher {
    type Child = FakeChild;
    type Probe = FakeProbe;

    async fn launch(
        &mut self,
        _previous_port: Option<u16>,
    ) -> Result<Launched<FakeChild, FakeProbe>, LaunchError> {
        self.0.launches.fetch_add(1, Ordering::SeqCst);
        if self.0.fail_launch.load(Ordering::SeqCst) {
            return Err(LaunchError {
                error: Error::ConfigValue("fake launch failure".into()),
                fatal: self.0.fatal_launch.load(Ordering::SeqCst),
            });
        }
        let mut cmd = if self.0.exit_at_once.load(Ordering::SeqCst) {
            ProcessCommand::new("false")
        } else {
            let mut c = ProcessCommand::new("sleep");
            c.arg("600");
            c
        };
        let child = cmd
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("spawning the fake child");
        let pid = child.id().expect("pid of a fresh child") as i32;
        self.0.pids.lock().unwrap().push(pid);
        let identity = settled_identity(pid).await;
        Ok(Launched {
            child: FakeChild { child, identity },
            probe: FakeProbe(self.0.clone()),
            port: 4000,
            socket: None,
        })
    }

    async fn version(&mut self) -> Option<String> {
        Some("0.0-fake".into())
    }
}

/// A supervisor over the fake launcher, running on its own task, with its state file in a
/// temp dir. Dropping it aborts the task; the fake children die with it (kill_on_drop) and
/// are also killed by pid.
struct Harness {
    dir: tempfile::TempDir,
    /// The data dir: `dir`, or one the test chose.
    data_dir: std::path::PathBuf,
    script: Arc<Script>,
    commands: mpsc::Sender<Command>,
    task: tokio::task::JoinHandle<Phase>,
    live: watch::Receiver<Option<State>>,
    /// Where a cluster controller would mark the pid it fences.
    start_role: SharedStartRole,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
        for pid in self
            .script
            .pids
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
        {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn test_config(dir: &std::path::Path) -> Config {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.restart.initial_backoff = Duration::from_millis(20);
    cfg.restart.max_backoff = Duration::from_millis(80);
    cfg.restart.max_failures = 3;
    cfg.restart.failure_window = Duration::from_secs(60);
    cfg.server.ready_timeout = Duration::from_millis(300);
    cfg.server.stop_timeout = Duration::from_secs(5);
    cfg.health.interval = Duration::from_millis(20);
    cfg.health.max_missed = 3;
    cfg
}

fn start(script: Script, tweak: impl FnOnce(&mut Config)) -> Harness {
    start_in(None, script, tweak)
}

/// [`start`] with the data dir at `data` (kept by the caller) instead of a temp dir.
fn start_in(
    data: Option<&std::path::Path>,
    script: Script,
    tweak: impl FnOnce(&mut Config),
) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = data.unwrap_or(dir.path()).to_path_buf();
    let mut cfg = test_config(&data_dir);
    tweak(&mut cfg);
    let instance = Instance::new(&data_dir);
    instance.ensure_dirs().expect("runtime dir");
    let log = Arc::new(ServerLog::open(&instance.server_log(), 1 << 20, 1).expect("server log"));
    let script = Arc::new(script);
    let (tx, rx) = mpsc::channel(8);
    let lock = lock_supervisor(&instance).expect("supervisor lock");
    let mut sup = Supervisor::new(&cfg, instance, log, FakeLauncher(script.clone()), rx);
    sup.lock = Some(lock);
    let start_role = SharedStartRole::new(StartRole {
        role: Role::Standby,
        epoch: 0,
    });
    sup.start_role = Some(start_role.clone());
    let live = sup.subscribe();
    let task = tokio::spawn(async move { sup.drive().await });
    Harness {
        dir,
        data_dir,
        script,
        commands: tx,
        task,
        live,
        start_role,
    }
}

impl Harness {
    /// The state as the supervisor publishes it (what its control socket serves).
    fn live(&self) -> Option<State> {
        self.live.borrow().clone()
    }

    fn state(&self) -> Option<State> {
        State::read(&Instance::new(&self.data_dir).state_file())
            .ok()
            .flatten()
    }

    /// Waits (with a deadline) until the state file satisfies `cond`.
    async fn wait_for(&self, what: &str, cond: impl Fn(&State) -> bool) -> State {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.state().filter(|s| cond(s)) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; state: {:?}",
                self.state()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn running(&self) -> ProcessIdentity {
        let s = self
            .wait_for("running", |s| s.kind() == Phase::Running)
            .await;
        s.server().cloned().expect("a running phase has a server")
    }

    /// Waits for the loop to end, with a deadline.
    async fn finished(&mut self) -> Phase {
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the supervisor loop did not end in time")
            .expect("the supervisor task panicked")
    }
}

fn gone(p: &ProcessIdentity) -> bool {
    !p.is_running()
}

#[tokio::test]
async fn fake_child_crash_is_restarted_after_backoff_and_counted() {
    let h = start(Script::default(), |_| {});
    let first = h.running().await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first.pid), Signal::SIGKILL).unwrap();
    let s = h
        .wait_for("a new running server", |s| {
            s.kind() == Phase::Running && s.server().is_some_and(|p| p.pid != first.pid)
        })
        .await;
    assert_eq!(s.restarts, 1);
    assert!(s
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("exited unexpectedly"));
    assert_eq!(s.dolt_version.as_deref(), Some("0.0-fake"));
}

/// A server killed while a health probe hangs (its port taken over by a process that accepts
/// and never answers) is seen exiting at once, not after the probe's timeout.
#[tokio::test]
async fn an_exit_during_a_hanging_health_probe_is_noticed_at_once() {
    let h = start(Script::default(), |c| {
        c.health.timeout = Duration::from_secs(5)
    });
    let first = h.running().await;
    h.script.hanging.store(true, Ordering::SeqCst);
    // A probe is in flight after a few 20 ms ticks.
    tokio::time::sleep(Duration::from_millis(100)).await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first.pid), Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    let s = h.wait_for("the exit recorded", |s| s.restarts == 1).await;
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "the exit waited for the probe: {:?}",
        killed.elapsed()
    );
    assert!(s
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("exited unexpectedly"));
}

#[tokio::test]
async fn fake_child_that_stops_answering_is_killed_as_wedged_and_replaced() {
    let h = start(Script::default(), |_| {});
    let first = h.running().await;
    h.script.wedged.store(true, Ordering::SeqCst);
    h.wait_for("backoff after the wedge", |s| s.restarts == 1)
        .await;
    h.script.wedged.store(false, Ordering::SeqCst);
    let s = h
        .wait_for("running again", |s| {
            s.kind() == Phase::Running && s.server().is_some_and(|p| p.pid != first.pid)
        })
        .await;
    assert!(s.last_error.unwrap_or_default().contains("wedged"));
    assert!(gone(&first), "the wedged child was killed");
}

#[tokio::test]
async fn restart_command_replaces_the_fake_child_without_counting_a_failure() {
    let h = start(Script::default(), |_| {});
    let first = h.running().await;
    h.commands.send(Command::Restart).await.unwrap();
    let s = h
        .wait_for("a new server", |s| {
            s.kind() == Phase::Running && s.server().is_some_and(|p| p.pid != first.pid)
        })
        .await;
    assert_eq!(s.restarts, 0);
    assert!(gone(&first));
}

/// A cluster fence: the controller marks the pid, then SIGKILLs its group.
#[tokio::test]
async fn a_fenced_fake_child_is_relaunched_at_once_and_never_counted_as_a_failure() {
    let h = start(Script::default(), |_| {});
    let mut last = h.running().await;
    // More fences than max_failures (3), within the failure window.
    for _ in 0..5 {
        h.start_role.mark_fenced(last.pid);
        let _ = last.signal_group(Signal::SIGKILL);
        let s = h
            .wait_for("a new server", |s| {
                s.kind() == Phase::Running && s.server().is_some_and(|p| p.pid != last.pid)
            })
            .await;
        assert_eq!(s.restarts, 0);
        assert_eq!(s.last_error, None);
        last = s.server().cloned().unwrap();
    }
}

#[tokio::test]
async fn stop_command_terminates_the_fake_child_and_ends_stopped() {
    let mut h = start(Script::default(), |_| {});
    let first = h.running().await;
    h.commands.send(Command::Stop).await.unwrap();
    assert_eq!(h.finished().await, Phase::Stopped);
    let s = h.state().unwrap();
    assert_eq!(s.kind(), Phase::Stopped);
    assert!(s.server().is_none());
    assert!(gone(&first));
}

#[tokio::test]
async fn stop_during_a_long_backoff_ends_at_once() {
    let script = Script::default();
    script.fail_launch.store(true, Ordering::SeqCst);
    let mut h = start(script, |c| {
        c.restart.initial_backoff = Duration::from_secs(3600);
        c.restart.max_backoff = Duration::from_secs(3600);
    });
    h.wait_for("backoff", |s| s.kind() == Phase::Backoff).await;
    h.commands.send(Command::Stop).await.unwrap();
    assert_eq!(h.finished().await, Phase::Stopped);
    assert_eq!(h.script.launches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn fake_child_that_exits_at_once_ends_in_failed_until_restarted() {
    let script = Script::default();
    script.exit_at_once.store(true, Ordering::SeqCst);
    script.never_ready.store(true, Ordering::SeqCst);
    let mut h = start(script, |_| {});
    let s = h.wait_for("failed", |s| s.kind() == Phase::Failed).await;
    assert_eq!(s.restarts, 3);
    assert!(
        s.last_error
            .unwrap_or_default()
            .contains("exited before it was ready"),
        "the reason is recorded"
    );
    // Failed waits for a command; a restart tries again from scratch.
    h.script.exit_at_once.store(false, Ordering::SeqCst);
    h.script.never_ready.store(false, Ordering::SeqCst);
    h.commands.send(Command::Restart).await.unwrap();
    h.running().await;
    h.commands.send(Command::Stop).await.unwrap();
    assert_eq!(h.finished().await, Phase::Stopped);
}

#[tokio::test]
async fn fake_child_never_ready_is_killed_after_ready_timeout() {
    let script = Script::default();
    script.never_ready.store(true, Ordering::SeqCst);
    let h = start(script, |_| {});
    let s = h.wait_for("a failure", |s| s.restarts >= 1).await;
    assert!(
        s.last_error
            .unwrap_or_default()
            .contains("did not become ready"),
        "{:?}",
        h.state()
    );
    let first = *h.script.pids.lock().unwrap().first().unwrap();
    assert!(!crate::sys::process::is_alive(first));
}

#[tokio::test]
async fn no_clients_for_idle_timeout_stops_the_fake_child_and_holds_the_start_lock() {
    let mut h = start(Script::default(), |c| {
        c.server.idle_timeout = Duration::from_millis(100);
    });
    let first = h.running().await;
    assert_eq!(h.finished().await, Phase::Idle);
    assert_eq!(h.state().unwrap().kind(), Phase::Idle);
    assert!(gone(&first));
}

#[tokio::test]
async fn a_client_connection_keeps_the_fake_child_up() {
    let script = Script::default();
    script.clients.store(1, Ordering::SeqCst);
    let h = start(script, |c| {
        c.server.idle_timeout = Duration::from_millis(50);
    });
    let first = h.running().await;
    // Ten client counts, 20 ms apart, span four idle timeouts: the server stays because a
    // client is connected.
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.script.client_checks.load(Ordering::SeqCst) < 10 {
        assert!(
            Instant::now() < deadline,
            "the supervisor stopped counting clients"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(h.state().unwrap().kind(), Phase::Running);
    assert!(first.is_running());
}

#[tokio::test]
async fn fake_child_clients_are_counted_without_idle_timeout_and_published_only_on_change() {
    let h = start(Script::default(), |_| {});
    h.running().await;
    // Counted without any idle_timeout (for `doltctl ps`); idle since the ready time.
    let s = h.wait_for("a count", |s| s.clients == Some(0)).await;
    let idle_since = s.last_client_at.clone().expect("the ready time");
    // Twenty more counts of the same number rewrite nothing.
    let checks = h.script.client_checks.load(Ordering::SeqCst);
    while h.script.client_checks.load(Ordering::SeqCst) < checks + 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(h.state().unwrap().updated_at, s.updated_at);
    // A client comes: counted, and seen now; then goes: seen until now.
    h.script.clients.store(2, Ordering::SeqCst);
    let busy = h.wait_for("two clients", |s| s.clients == Some(2)).await;
    assert!(busy.last_client_at.as_deref() > Some(idle_since.as_str()));
    h.script.clients.store(0, Ordering::SeqCst);
    let idle = h.wait_for("no client", |s| s.clients == Some(0)).await;
    assert!(idle.last_client_at >= busy.last_client_at);
    assert!(!idle.auto_started, "started without --auto-started");
}

#[tokio::test]
async fn failed_retries_by_itself_every_max_backoff() {
    let script = Script::default();
    script.exit_at_once.store(true, Ordering::SeqCst);
    script.never_ready.store(true, Ordering::SeqCst);
    let h = start(script, |_| {});
    h.wait_for("failed", |s| s.kind() == Phase::Failed).await;
    // The environment heals; no command is sent.
    h.script.exit_at_once.store(false, Ordering::SeqCst);
    h.script.never_ready.store(false, Ordering::SeqCst);
    h.running().await;
}

#[tokio::test]
async fn a_fatal_first_launch_fails_at_once_and_the_supervisor_keeps_retrying() {
    let script = Script::default();
    script.fail_launch.store(true, Ordering::SeqCst);
    script.fatal_launch.store(true, Ordering::SeqCst);
    let h = start(script, |_| {});
    let s = h.wait_for("failed", |s| s.kind() == Phase::Failed).await;
    assert_eq!(
        s.restarts, 1,
        "failed after the first attempt, not after max_failures"
    );
    assert!(s
        .last_error
        .unwrap_or_default()
        .contains("fake launch failure"));
    h.script.fail_launch.store(false, Ordering::SeqCst);
    h.running().await;
    assert!(h.script.launches.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn runtime_files_removed_under_a_running_fake_child_are_recreated() {
    let h = start(Script::default(), |_| {});
    let first = h.running().await;
    let instance = Instance::new(h.dir.path());
    std::fs::remove_dir_all(instance.runtime_dir()).unwrap();
    let s = h
        .wait_for("the state file again", |s| s.kind() == Phase::Running)
        .await;
    assert_eq!(
        s.server().map(|p| p.pid),
        Some(first.pid),
        "the same server"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while crate::sys::locks::try_flock(&instance.supervisor_lock())
        .unwrap()
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "supervisor.lock was not re-taken"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_removed_data_dir_stops_the_fake_child_with_a_clear_error() {
    let h = start(Script::default(), |_| {});
    let first = h.running().await;
    std::fs::remove_dir_all(h.dir.path()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = h.live().expect("published");
        if s.last_error
            .as_deref()
            .unwrap_or("")
            .contains("was removed")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no error about the data dir: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while first.is_running() {
        assert!(
            Instant::now() < deadline,
            "the server still runs on a removed data dir"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_data_dir_that_stays_away_ends_the_supervisor_after_failure_window() {
    let script = Script::default();
    script.fail_launch.store(true, Ordering::SeqCst);
    let mut h = start(script, |c| {
        c.restart.failure_window = Duration::from_millis(300);
    });
    h.wait_for("backoff or failed", |s| {
        matches!(s.kind(), Phase::Backoff | Phase::Failed)
    })
    .await;
    std::fs::remove_dir_all(h.dir.path()).unwrap();
    assert_eq!(h.finished().await, Phase::Stopped);
}

/// A real full disk (root only: a 2 MiB tmpfs; as anyone else it says so on stderr): a server
/// that keeps running while its writes fail is reported, then restarted once there is room.
#[tokio::test]
async fn a_disk_that_fills_under_a_running_fake_child_is_reported_and_it_restarts_after() {
    let Some(fs) = crate::server::disk::TinyTmpfs::mount() else {
        return;
    };
    let data = fs.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let h = start_in(Some(&data), Script::default(), |_| {});
    let first = h.running().await;
    fs.fill();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = h.live().expect("published");
        if s.last_error.as_deref().unwrap_or("").contains("is full") {
            assert_eq!(
                s.kind(),
                Phase::Running,
                "reads still work: not restarted yet"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the full disk was not reported: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    fs.unfill();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = h.live().expect("published");
        if s.kind() == Phase::Running && s.server().is_some_and(|p| p.pid != first.pid) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not restarted after the disk had room: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

//! Shared test harness: real dolt, a temp dir and an OS-given port per test, and cleanup of
//! every process the test started (on panic too, through Drop).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "ports.rs"]
mod ports;
#[allow(unused_imports)] // each test binary uses a part of the harness
pub use ports::{free_port, port_reservations};

// etcd and Toxiproxy as child processes, and cluster nodes, for the cluster tests.
mod cluster_infra;
#[allow(unused_imports)] // each test binary uses a part of the harness
pub use cluster_infra::*;
mod cluster_node;
#[allow(unused_imports)] // each test binary uses a part of the harness
pub use cluster_node::{wait_marked, Node as ClusterNode, PeerAt};
// Certificates for TLS to etcd.
mod pki;
#[allow(unused_imports)] // each test binary uses a part of the harness
pub use pki::Pki;

use doltctl::ProcessIdentity;
use doltctl::State;
use mysql_async::prelude::Queryable;

/// The real dolt binary. There is no stand-in: without dolt the tests fail, they never skip.
pub fn dolt_bin() -> PathBuf {
    let candidates = [
        std::env::var("DOLT_BIN").ok().map(PathBuf::from),
        std::env::var("HOME")
            .ok()
            .map(|h| PathBuf::from(h).join(".local/bin/dolt")),
        which::which("dolt").ok(),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .expect("dolt is not installed: run scripts/install-dolt.sh (or scripts/test, which does)")
}

/// Supervisors started by the tests register in a registry of the build's (under
/// `target/tmp/`), never in the user's own `~/.local/state/doltctl/instances`: set process-wide
/// (once) for every doltctl a test spawns, directly or through the library. A test that reads
/// a registry (`ps`, `gc`) gives its commands one of its own ([`TestEnv::registry`]).
pub fn isolate_registry() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("doltctl-registry");
        std::env::set_var("DOLTCTL_REGISTRY_DIR", dir);
    });
}

/// For tests that start servers through the library: the library runs supervisors with the
/// doltctl binary, and a test binary is not doltctl. Every test of a binary wants the same one,
/// so setting it process-wide (once) races with nothing.
pub fn use_built_doltctl() {
    isolate_registry();
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var("DOLTCTL_BIN", assert_cmd::cargo::cargo_bin("doltctl"));
        std::env::set_var("DOLT_DISABLE_EVENT_FLUSH", "1");
    });
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub port: u16,
    /// Extra processes the test started itself (killed on drop).
    pub extra: Vec<std::process::Child>,
    /// The registry of instances this env's doltctl commands use (`DOLTCTL_REGISTRY_DIR`);
    /// `None`: the build's shared one ([`isolate_registry`]).
    pub registry: Option<PathBuf>,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        Self::with_config("")
    }

    /// A test env whose config has `extra` appended (TOML).
    /// The test's config as the library loads it, with the test's dolt.
    pub fn library_config(&self) -> doltctl::Config {
        let mut cfg = doltctl::Config::load(&self.config).unwrap();
        cfg.server.dolt_bin = dolt_bin().to_string_lossy().into_owned();
        cfg
    }

    /// True while nothing was created in the data dir (it starts out empty, as `init` leaves it).
    pub fn data_dir_is_empty(&self) -> bool {
        std::fs::read_dir(&self.data_dir).is_ok_and(|mut d| d.next().is_none())
    }

    pub fn with_config(extra: &str) -> TestEnv {
        isolate_registry();
        let dir = tempfile::Builder::new()
            .prefix("doltctl-t")
            .tempdir()
            .unwrap();
        // The data dir exists, as after `doltctl init`: start, run and auto-start refuse a
        // missing one.
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        let port = free_port();
        let config = dir.path().join("doltctl.toml");
        let text = format!(
            r#"data_dir = "data"
[server]
port = {port}
ready_timeout = "60s"
stop_timeout = "10s"
[restart]
initial_backoff = "100ms"
max_backoff = "1s"
max_failures = 3
failure_window = "60s"
[health]
interval = "300ms"
timeout = "1s"
max_missed = 3
{extra}
"#
        );
        let env = TestEnv {
            data_dir,
            config,
            port,
            extra: Vec::new(),
            registry: None,
            dir,
        };
        env.write_config(&text);
        env
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A test env whose `[server]` section also has `line`.
    pub fn with_server(line: &str) -> TestEnv {
        let env = TestEnv::new();
        let text = std::fs::read_to_string(&env.config)
            .unwrap()
            .replace("[restart]", &format!("{line}\n[restart]"));
        env.write_config(&text);
        env
    }

    /// `doltctl` with this env's config and dolt, as a plain command (to spawn and wait).
    pub fn doltctl_std(&self) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("doltctl"));
        c.current_dir(self.dir.path())
            .env_remove("DOLTCTL_CONFIG")
            .env("DOLT_BIN", dolt_bin())
            .env("DOLT_ROOT_PATH", self.root())
            .env("DOLT_DISABLE_EVENT_FLUSH", "1")
            .arg("--config")
            .arg(&self.config);
        if let Some(r) = &self.registry {
            c.env("DOLTCTL_REGISTRY_DIR", r);
        }
        c
    }

    /// `doltctl` with this env's config and dolt.
    pub fn doltctl(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::from_std(self.doltctl_std());
        c.timeout(Duration::from_secs(180));
        c
    }

    /// Runs statements through `doltctl sql` and asserts they succeed.
    pub fn sql(&self, statements: &str) {
        self.doltctl()
            .args(["sql", "-q", statements])
            .assert()
            .success();
    }

    /// Starts `dolt sql-server` by hand on the data dir (as a user might, on another port and
    /// socket) and waits until it holds database `db`'s lock. Returns its pid; it is killed
    /// on drop.
    pub fn start_foreign_server(&mut self, db: &str) -> i32 {
        let child = self
            .dolt()
            .args([
                "sql-server",
                "-H",
                "127.0.0.1",
                "-P",
                &free_port().to_string(),
            ])
            .arg("--socket")
            .arg(self.dir.path().join("hand.sock"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        self.extra.push(child);
        let lock = self.data_dir.join(db).join(".dolt/noms/LOCK");
        wait_until(
            "hand-started server holds the lock",
            Duration::from_secs(60),
            || {
                matches!(
                    doltctl::internals::probe_lock(&lock),
                    Ok(doltctl::internals::LockHolder::Held { .. })
                )
            },
        );
        pid
    }

    /// Creates database `name` with the plain dolt CLI (no server involved).
    pub fn init_db(&self, name: &str) {
        let db = self.data_dir.join(name);
        std::fs::create_dir_all(&db).unwrap();
        let ok = self
            .dolt()
            .args(["init", "--name", "t", "--email", "t@example.com"])
            .current_dir(&db)
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Runs `doltctl start` and returns the URL it printed.
    pub fn start(&self) -> String {
        let out = self.doltctl().arg("start").output().unwrap();
        assert!(
            out.status.success(),
            "start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout.lines().last().unwrap_or("").to_string()
    }

    pub fn stop(&self) {
        self.doltctl().arg("stop").assert().success();
    }

    pub fn state_file(&self) -> PathBuf {
        self.data_dir.join(".doltctl/state.json")
    }

    pub fn state(&self) -> Option<State> {
        State::read(&self.state_file()).ok().flatten()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join(".doltctl/server.log")).unwrap_or_default()
    }

    pub fn server(&self) -> ProcessIdentity {
        self.state()
            .and_then(|s| s.server().cloned())
            .expect("state file names a server")
    }

    /// A plain `dolt` command with this env's root path.
    pub fn dolt(&self) -> Command {
        let mut c = Command::new(dolt_bin());
        c.env("DOLT_ROOT_PATH", self.root())
            .env("DOLT_DISABLE_EVENT_FLUSH", "1");
        c
    }

    /// Every live process whose command line mentions this test's temp dir.
    pub fn own_processes(&self) -> Vec<ProcessIdentity> {
        processes_mentioning(self.dir.path())
    }

    /// All dolt sql-server processes of this test.
    pub fn dolt_servers(&self) -> Vec<ProcessIdentity> {
        self.own_processes()
            .into_iter()
            .filter(|p| doltctl::internals::is_dolt_server(&p.cmdline))
            .collect()
    }

    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/", self.port)
    }
}

pub fn processes_mentioning(dir: &Path) -> Vec<ProcessIdentity> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let Ok(all) = procfs::process::all_processes() else {
        return vec![];
    };
    all.flatten()
        .map(|p| p.pid())
        .filter(|pid| *pid != me)
        .filter_map(ProcessIdentity::of)
        .filter(|p| p.cmdline.iter().any(|a| a.contains(&needle)))
        .collect()
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for c in &mut self.extra {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Supervisor and server as recorded, then anything else that mentions our temp dir
        // (a dolt started with --config in it, a doltctl with --data-dir in it).
        if let Some(s) = self.state() {
            for p in [s.supervisor.clone(), s.server().cloned()]
                .into_iter()
                .flatten()
            {
                let _ = p.signal(nix::sys::signal::Signal::SIGKILL);
            }
        }
        for p in self.own_processes() {
            let _ = p.signal(nix::sys::signal::Signal::SIGCONT);
            let _ = p.signal(nix::sys::signal::Signal::SIGKILL);
        }
        if std::thread::panicking() && std::env::var_os("DOLTCTL_KEEP_FAILED").is_some() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
            eprintln!("kept test dir {}", kept.display());
        }
    }
}

/// Runs a statement batch against a URL.
pub async fn exec(url: &str, sql: &str) -> Result<(), mysql_async::Error> {
    let mut c = mysql_async::Conn::from_url(url).await?;
    c.query_drop(sql).await?;
    c.disconnect().await
}

pub async fn query_i64(url: &str, sql: &str) -> Result<Vec<i64>, mysql_async::Error> {
    let mut c = mysql_async::Conn::from_url(url).await?;
    let v: Vec<i64> = c.query(sql).await?;
    c.disconnect().await?;
    Ok(v)
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

pub fn inode(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().ino()
}

//! `doltctl doctor` on cluster nodes: real dolt servers under `doltctl start` (own data dir,
//! Dolt root and OS-given ports on 127.0.0.1), electing their primary through one real etcd
//! (tests/common/cluster_infra.rs). Doctor's cluster checks come out OK on a healthy cluster,
//! `--fix` writes nothing to etcd, a stopped etcd is a quick FAIL with doctor's failure exit
//! code, and a peer nobody listens on is a WARN naming it.
//!
//! One cluster at a time in this binary (a lock): two cores are shared with everything else.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use doltctl::State;
use serde_json::Value;

/// The checks doctor adds for a `[cluster]`.
const CLUSTER_CHECKS: [&str; 5] = [
    "cluster etcd",
    "cluster role",
    "cluster peers",
    "cluster replication",
    "cluster ports",
];

/// doctor's exit code when a check FAILs (README, exit codes).
const DOCTOR_FAILED: i32 = 1;

/// How long a node may take to settle (start, campaign or follow) on a loaded machine.
const SETTLE: Duration = Duration::from_secs(60);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where another node is, as a `[[cluster.peers]]` entry says.
#[derive(Clone, Copy)]
struct PeerAt<'a> {
    name: &'a str,
    port: u16,
    rport: u16,
}

/// A node: its own temp dir, data dir, config and ports. Its supervisor and dolt are killed on
/// drop (on panic too).
struct Node {
    name: String,
    dir: tempfile::TempDir,
    port: u16,
    rport: u16,
}

impl Node {
    fn new(name: &str) -> Node {
        let dir = tempfile::Builder::new()
            .prefix(&format!("doltctl-cd-{name}"))
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        Node {
            name: name.into(),
            dir,
            port: free_port(),
            rport: free_port(),
        }
    }

    fn at(&self) -> PeerAt<'_> {
        PeerAt {
            name: &self.name,
            port: self.port,
            rport: self.rport,
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("doltctl.toml")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// As tests/cluster.rs `Node::write_config` (lease_ttl 3s, quick restarts).
    fn write_config(&self, etcd: &str, peers: &[PeerAt]) {
        let mut text = format!(
            r#"data_dir = "data"
[server]
port = {}
ready_timeout = "60s"
stop_timeout = "10s"
[restart]
initial_backoff = "100ms"
max_backoff = "1s"
max_failures = 10
failure_window = "60s"
[health]
interval = "300ms"
timeout = "2s"
max_missed = 5
[cluster]
name = "t"
node = "{}"
etcd = ["{etcd}"]
remotesapi_port = {}
lease_ttl = "3s"
ack_writes_timeout = "2s"
"#,
            self.port, self.name, self.rport
        );
        for p in peers {
            text.push_str(&format!(
                "[[cluster.peers]]\nname = \"{}\"\nhost = \"127.0.0.1\"\nport = {}\nremotesapi_port = {}\n",
                p.name, p.port, p.rport
            ));
        }
        std::fs::write(self.config(), text).unwrap();
    }

    fn doltctl(&self) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("doltctl"));
        c.current_dir(self.dir.path())
            .env_remove("DOLTCTL_CONFIG")
            .env("DOLT_BIN", dolt_bin())
            .env("DOLT_ROOT_PATH", self.dir.path().join("root"))
            .env("DOLT_DISABLE_EVENT_FLUSH", "1")
            .arg("--config")
            .arg(self.config());
        c
    }

    fn start(&self) {
        let out = self.doltctl().arg("start").output().unwrap();
        assert!(
            out.status.success(),
            "start {}: {}\n{}",
            self.name,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// `doctor --json` (plus `extra`): exit code, the checks, how long it took.
    fn doctor(&self, extra: &[&str]) -> (i32, Vec<Value>, Duration) {
        let t0 = Instant::now();
        let out = self
            .doltctl()
            .args(["doctor", "--json"])
            .args(extra)
            .output()
            .unwrap();
        let took = t0.elapsed();
        let checks: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "doctor --json on {}: {e}\nstdout: {}\nstderr: {}",
                self.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), checks, took)
    }

    /// Runs doctor until `cond` holds for its report, or panics after `timeout` with the last.
    fn doctor_until(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, checks, _) = self.doctor(&[]);
            if cond(&checks) {
                return checks;
            }
            assert!(
                Instant::now() < deadline,
                "{}: not {what} after {timeout:?}; last report:\n{}",
                self.name,
                serde_json::to_string_pretty(&checks).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn state(&self) -> Option<State> {
        let text = std::fs::read_to_string(self.data_dir().join(".doltctl/state.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir().join(".doltctl/server.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(s) = self.state() {
            for p in [s.supervisor.clone(), s.server().cloned()]
                .into_iter()
                .flatten()
            {
                let _ = p.signal(nix::sys::signal::Signal::SIGKILL);
            }
        }
        for p in processes_mentioning(self.dir.path()) {
            let _ = p.signal(nix::sys::signal::Signal::SIGCONT);
            let _ = p.signal(nix::sys::signal::Signal::SIGKILL);
        }
        if std::thread::panicking() {
            eprintln!("--- log of node {} ---\n{}", self.name, self.log());
        }
    }
}

/// The check called `name`; panics with the report when it is missing.
fn find<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name:?} check in {checks:#?}"))
}

fn status<'a>(checks: &'a [Value], name: &str) -> &'a str {
    find(checks, name)["status"].as_str().unwrap_or("")
}

fn detail<'a>(checks: &'a [Value], name: &str) -> &'a str {
    find(checks, name)["detail"].as_str().unwrap_or("")
}

fn all_cluster_checks_ok(checks: &[Value]) -> bool {
    CLUSTER_CHECKS.iter().all(|n| status(checks, n) == "OK")
}

#[test]
fn doctor_passes_a_healthy_cluster_and_fails_fast_once_etcd_stops() {
    let _one = serial();
    use_built_doltctl();
    let mut etcd = Etcd::start();
    let (a, b) = (Node::new("a"), Node::new("b"));
    a.write_config(&etcd.endpoint(), &[b.at()]);
    b.write_config(&etcd.endpoint(), &[a.at()]);
    a.start();
    b.start();

    // Both settle: one primary holding the lease, the other a standby at its epoch.
    let on_a = a.doctor_until("all cluster checks OK", SETTLE, all_cluster_checks_ok);
    let on_b = b.doctor_until("all cluster checks OK", SETTLE, all_cluster_checks_ok);
    for (node, checks) in [("a", &on_a), ("b", &on_b)] {
        for name in CLUSTER_CHECKS {
            println!("{node}: {name}: {}", detail(checks, name));
        }
    }
    let leaders = [&on_a, &on_b]
        .iter()
        .filter(|c| detail(c, "cluster role").contains("holds the leader lease"))
        .count();
    assert_eq!(
        leaders, 1,
        "exactly one node holds the lease:\n{on_a:#?}\n{on_b:#?}"
    );
    assert!(
        detail(&on_a, "cluster peers").contains(&format!("127.0.0.1:{}", b.port)),
        "{}",
        detail(&on_a, "cluster peers")
    );
    assert!(
        detail(&on_a, "cluster ports").contains("bound by this node's dolt"),
        "{}",
        detail(&on_a, "cluster ports")
    );

    // --fix repairs nothing in a cluster: etcd's keys are as before, byte for byte.
    let keys = etcd.get_prefix("/doltctl/t/");
    let (code, _, _) = a.doctor(&["--fix"]);
    assert_eq!(code, 0);
    assert_eq!(
        etcd.get_prefix("/doltctl/t/"),
        keys,
        "doctor --fix wrote to etcd"
    );

    // etcd blackholed (SIGSTOP: connections are accepted, nothing answers), then stopped
    // (refused): FAIL either way, bounded, with doctor's failure exit code. Each cluster
    // check is bounded by 3 s and they run side by side; the margin is doctor's other checks
    // and a loaded machine.
    for how in ["paused", "stopped"] {
        match how {
            "paused" => etcd.pause(),
            _ => {
                etcd.resume();
                etcd.stop();
            }
        }
        let (code, checks, took) = a.doctor(&[]);
        println!(
            "etcd {how}: doctor took {took:?}; cluster etcd: {}",
            detail(&checks, "cluster etcd")
        );
        assert_eq!(status(&checks, "cluster etcd"), "FAIL", "{checks:#?}");
        assert!(detail(&checks, "cluster etcd").contains(&etcd.endpoint()));
        assert_eq!(code, DOCTOR_FAILED, "{checks:#?}");
        assert!(took < Duration::from_secs(10), "doctor took {took:?}");
    }
}

#[test]
fn a_peer_nobody_listens_on_is_a_warning_naming_it() {
    let _one = serial();
    use_built_doltctl();
    let etcd = Etcd::start();
    let a = Node::new("a");
    // Reserved ports nobody binds: a node that was never started.
    let ghost = PeerAt {
        name: "ghost",
        port: free_port(),
        rport: free_port(),
    };
    a.write_config(&etcd.endpoint(), &[ghost]);

    // Before the start: another process holding the replication port is a FAIL naming it.
    let squatter = TcpListener::bind(("127.0.0.1", a.rport)).unwrap();
    let (code, checks, _) = a.doctor(&[]);
    assert_eq!(status(&checks, "cluster ports"), "FAIL", "{checks:#?}");
    assert!(
        detail(&checks, "cluster ports").contains(&format!("pid {}", std::process::id())),
        "{}",
        detail(&checks, "cluster ports")
    );
    assert_eq!(code, DOCTOR_FAILED);
    drop(squatter);

    a.start();
    let checks = a.doctor_until("primary", SETTLE, |c| {
        status(c, "cluster role") == "OK" && detail(c, "cluster role").contains("primary")
    });
    let peers = find(&checks, "cluster peers");
    println!("cluster peers: {peers:#}");
    assert_eq!(peers["status"], "WARN");
    let d = peers["detail"].as_str().unwrap_or("");
    assert!(
        d.contains(&format!(
            "ghost: SQL 127.0.0.1:{} does not answer",
            ghost.port
        )),
        "{d}"
    );
    assert!(d.contains(&format!("127.0.0.1:{}", ghost.rport)), "{d}");
    assert!(
        peers["fix"]
            .as_str()
            .unwrap_or("")
            .contains("`doltctl start`"),
        "{peers:#}"
    );
    // A WARN does not fail doctor.
    let (code, checks, _) = a.doctor(&[]);
    assert_eq!(code, 0, "{checks:#?}");
}

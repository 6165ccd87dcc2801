//! `doltctl doctor` on cluster nodes: real dolt servers under `doltctl start` (own data dir,
//! Dolt root and OS-given ports on 127.0.0.1), electing their primary through one real etcd
//! (tests/common/cluster_infra.rs). Doctor's cluster checks come out OK on a healthy cluster,
//! `--fix` writes nothing to etcd, a stopped etcd is a quick FAIL with doctor's failure exit
//! code, and a peer nobody listens on is a WARN naming it.
//!
//! One cluster at a time in this binary (a lock): two cores are shared with everything else.

mod common;

use std::net::TcpListener;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{ClusterNode as Node, *};
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

/// Doctor on a node.
trait Doctor {
    fn doctor(&self, extra: &[&str]) -> (i32, Vec<Value>, Duration);
    fn doctor_until(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value>;
}

impl Doctor for Node {
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

//! doltctl in containers: `status --live` (a real `SELECT 1`, for readiness probes and
//! `HEALTHCHECK`) and doltctl as PID 1 of a new PID namespace (reaping orphans, stopping on
//! SIGTERM), against real dolt.

mod common;

use std::time::{Duration, Instant};

use common::{wait_until, TestEnv};
use doltctl::ProcessIdentity;
use nix::sys::signal::Signal;

/// Sends SIGCONT when dropped, so a test that stops a process resumes it even when it fails.
struct ContinueOnDrop(ProcessIdentity);

impl Drop for ContinueOnDrop {
    fn drop(&mut self) {
        let _ = self.0.signal(Signal::SIGCONT);
    }
}

/// A test env whose supervisor never gives up on a server that stops answering: the test
/// keeps dolt stopped for a while and the supervisor must not kill it meanwhile.
fn patient_env() -> TestEnv {
    let env = TestEnv::new();
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("max_missed = 3", "max_missed = 1000");
    env.write_config(&text);
    env
}

#[test]
fn status_live_fails_within_its_timeout_for_a_stopped_server_that_plain_status_calls_running() {
    let env = patient_env();
    env.start();
    let out = env.doltctl().args(["status", "--live"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("  live:       SELECT 1 answered in "),
        "{text}"
    );

    let server = env.server();
    let _resume = ContinueOnDrop(server.clone());
    server.signal(Signal::SIGSTOP).unwrap();

    // The state file still says running, and plain status believes it.
    let out = env.doltctl().arg("status").output().unwrap();
    let plain = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{plain}");
    assert!(plain.starts_with("running: "), "{plain}");

    let started = Instant::now();
    let out = env
        .doltctl()
        .args(["status", "--live", "--timeout", "1s"])
        .output()
        .unwrap();
    let took = started.elapsed();
    let live = String::from_utf8_lossy(&out.stdout).into_owned();
    let live_code = out.status.code();
    assert_eq!(live_code, Some(4), "{live}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        live.contains("  live:       SELECT 1 failed: no answer within 1s"),
        "{live}"
    );

    let out = env
        .doltctl()
        .args(["status", "--live", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "running");
    assert_eq!(v["live"]["ok"], false);
    assert!(v["live"]["latency_ms"].is_null());
    assert!(
        v["live"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no answer within 2s")),
        "{v}"
    );
    eprintln!(
        "SIGSTOPped dolt:\n$ doltctl status   (exit 0)\n{plain}\n$ doltctl status --live --timeout 1s   (exit {}, {} ms)\n{live}\n$ doltctl status --live --json   (exit 4): \"live\": {}",
        live_code.unwrap_or(-1),
        took.as_millis(),
        v["live"]
    );

    server.signal(Signal::SIGCONT).unwrap();
    wait_until(
        "the resumed server answers",
        Duration::from_secs(30),
        || {
            env.doltctl()
                .args(["status", "--live"])
                .output()
                .unwrap()
                .status
                .code()
                == Some(0)
        },
    );
    env.stop();
    // Nothing recorded runs: --live says so and never starts a server.
    let out = env
        .doltctl()
        .args(["status", "--live", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["live"]["ok"], false);
    assert!(
        env.dolt_servers().is_empty(),
        "status --live started a server"
    );
}

/// Whether this machine lets us make a PID namespace; `Err` says why not.
fn unshare_allowed() -> Result<(), String> {
    match std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "`unshare --pid --fork --mount-proc true` failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run unshare (util-linux): {e}")),
    }
}

/// (pid, command name, state) of every process whose parent is `parent` (host pids).
fn children_of(parent: i32) -> Vec<(i32, String, char)> {
    procfs::process::all_processes()
        .unwrap()
        .flatten()
        .filter_map(|p| p.stat().ok())
        .filter(|s| s.ppid == parent)
        .map(|s| (s.pid, s.comm, s.state))
        .collect()
}

#[test]
fn as_pid1_of_a_new_pid_namespace_run_reaps_orphans_and_exits_0_on_sigterm() {
    if let Err(why) = unshare_allowed() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true and this machine does not allow a new PID namespace: {why}");
        }
        eprintln!("skipped: this machine does not allow a new PID namespace: {why}");
        return;
    }
    let mut env = TestEnv::new();
    let stderr = env.dir.path().join("run.stderr");
    let child = std::process::Command::new("unshare")
        // --kill-child: if the test dies, so does the namespace.
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(assert_cmd::cargo::cargo_bin("doltctl"))
        .arg("--config")
        .arg(&env.config)
        .arg("run")
        .env("DOLT_BIN", common::dolt_bin())
        .env("DOLT_ROOT_PATH", env.root())
        .env("DOLT_DISABLE_EVENT_FLUSH", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let unshare = child.id() as i32;
    env.extra.push(child);
    let log = || std::fs::read_to_string(&stderr).unwrap_or_default();

    // The namespace's PID 1 is doltctl, and the supervisor runs beside it.
    let mut init = 0;
    wait_until("unshare's child", Duration::from_secs(10), || {
        init = children_of(unshare).first().map_or(0, |c| c.0);
        init != 0
    });
    let nspid = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    let nspid = nspid.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.ends_with("\t1"),
        "not PID 1 of its namespace: {nspid}"
    );
    wait_until("the server answers", Duration::from_secs(90), || {
        common::block_on(common::query_i64(&env.url(), "SELECT 1")).is_ok()
    });
    let servers = env.dolt_servers();
    assert_eq!(servers.len(), 1, "{servers:?}\n{}", log());

    // Orphans, made the way they happen: their parent (a shell inside the namespace) exits
    // before them, so the kernel hands them to the namespace's PID 1.
    let made = std::process::Command::new("nsenter")
        .args(["--target", &init.to_string(), "--pid", "--mount"])
        .args(["sh", "-c", "for i in 1 2 3; do sleep 2 & done"])
        .status()
        .unwrap();
    assert!(made.success());
    let sleeps = || {
        children_of(init)
            .into_iter()
            .filter(|c| c.1 == "sleep")
            .collect::<Vec<_>>()
    };
    wait_until(
        "three orphans reparented to PID 1",
        Duration::from_secs(10),
        || sleeps().len() == 3,
    );
    wait_until(
        "the orphans reaped after they exit (no zombie left)",
        Duration::from_secs(20),
        || sleeps().is_empty(),
    );
    assert!(
        children_of(init).iter().all(|c| c.2 != 'Z'),
        "{:?}",
        children_of(init)
    );

    // SIGTERM to PID 1 (what `docker stop` sends) stops dolt gracefully; exit code 0.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init), Signal::SIGTERM).unwrap();
    let child = env.extra.last_mut().unwrap();
    let mut status = None;
    wait_until("the namespace to end", Duration::from_secs(60), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let status = status.unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", log());
    assert!(env.dolt_servers().is_empty(), "{:?}", env.dolt_servers());
    assert!(servers.iter().all(|s| !s.is_running()));
    assert!(log().contains("stopped (exit code 0)"), "{}", log());
    assert_eq!(env.state().unwrap().kind(), doltctl::Phase::Stopped);
}

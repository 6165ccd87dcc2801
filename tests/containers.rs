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

//! Operations against the real dolt binary: doctor (each check planted, then repaired where
//! safe), idle shutdown, read-only servers, log filters.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

fn doctor_json(env: &TestEnv, fix: bool) -> (Option<i32>, Vec<serde_json::Value>) {
    let mut c = env.doltctl();
    c.args(["doctor", "--json"]);
    if fix {
        c.arg("--fix");
    }
    let out = c.output().unwrap();
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), v)
}

fn find<'a>(checks: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    checks
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
}

/// Every file under a directory with its inode, size and mtime: "touched nothing else".
fn snapshot(dir: &Path) -> Vec<(String, u64, u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((
                    e.path().display().to_string(),
                    m.ino(),
                    m.len(),
                    m.mtime_nsec(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn doctor_without_fix_changes_nothing_and_starts_nothing() {
    let env = TestEnv::new();
    env.init_db("app");
    std::fs::write(env.data_dir.join(".dolt/sql-server.info"), "1:2:x").ok();
    let before = snapshot(&env.data_dir);
    let (code, checks) = doctor_json(&env, false);
    assert_eq!(code, Some(0), "{checks:?}");
    assert_eq!(find(&checks, "connection")["status"], "OK");
    assert_eq!(snapshot(&env.data_dir), before);
    assert!(env.own_processes().is_empty());
}

#[test]
fn doctor_on_a_fresh_dir_without_dolt_root_path_creates_nothing() {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.data_dir).unwrap();
    let out = env
        .doltctl()
        .env_remove("DOLT_ROOT_PATH")
        .env("HOME", env.dir.path())
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let left: Vec<_> = std::fs::read_dir(&env.data_dir)
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "doctor wrote {left:?}");
    assert!(
        !env.dir.path().join(".dolt").exists(),
        "doctor wrote into HOME"
    );
}

#[test]
fn doctor_removes_a_stale_info_file_and_leaves_locks_alone() {
    let env = TestEnv::new();
    env.init_db("app");
    let lock = env.data_dir.join("app/.dolt/noms/LOCK");
    let ino = inode(&lock);
    std::fs::create_dir_all(env.data_dir.join(".dolt")).unwrap();
    let info = env.data_dir.join(".dolt/sql-server.info");
    std::fs::write(&info, "999999:3306:secret").unwrap();
    let (_, checks) = doctor_json(&env, false);
    assert_eq!(find(&checks, "sql-server.info")["status"], "WARN");
    let (code, checks) = doctor_json(&env, true);
    assert_eq!(code, Some(0));
    assert!(find(&checks, "sql-server.info")["fixed"]
        .as_str()
        .unwrap()
        .contains("removed"));
    assert!(!info.exists());
    assert_eq!(inode(&lock), ino);
    // And dolt init works in the data dir again (a stale info file makes it refuse).
    env.init_db("second");
}

#[test]
fn doctor_stops_an_orphaned_server_of_ours_with_fix() {
    let env = TestEnv::new();
    env.start();
    env.sql("create database app");
    let st = env.state().unwrap();
    let (sup, srv) = (
        st.supervisor.clone().unwrap(),
        st.server().cloned().unwrap(),
    );
    sup.signal(Signal::SIGKILL).unwrap();
    wait_until("supervisor gone", Duration::from_secs(10), || {
        !sup.is_running()
    });
    let lock = env.data_dir.join("app/.dolt/noms/LOCK");
    let ino = inode(&lock);

    let (code, checks) = doctor_json(&env, false);
    assert_eq!(code, Some(1));
    let l = find(&checks, "lock app");
    assert_eq!(l["status"], "FAIL");
    assert!(l["detail"].as_str().unwrap().contains("orphan"), "{l}");
    let state = find(&checks, "doltctl state");
    assert_eq!(state["status"], "FAIL");
    let detail = state["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("orphaned:") && detail.contains(&format!("pid {}", srv.pid)),
        "{state}"
    );
    assert!(srv.is_running(), "doctor without --fix signalled it");

    let (code, checks) = doctor_json(&env, true);
    assert_eq!(code, Some(0), "{checks:?}");
    assert!(!srv.is_running());
    assert_eq!(inode(&lock), ino);
    assert!(env.own_processes().is_empty());
}

#[test]
fn doctor_names_a_foreign_lock_holder_and_never_signals_it() {
    let mut env = TestEnv::new();
    env.init_db("app");
    let pid = env.start_foreign_server("app");
    let (code, checks) = doctor_json(&env, true);
    assert_eq!(code, Some(1));
    let l = find(&checks, "lock app");
    assert_eq!(l["status"], "FAIL");
    let detail = l["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("pid {pid}")) && detail.contains("sql-server"),
        "{detail}"
    );
    assert!(l.get("fixed").is_none());
    assert!(
        doltctl::internals::is_alive(pid),
        "doctor --fix signalled a foreign process"
    );
}

#[test]
fn doctor_fixes_wrong_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    env.start();
    env.stop();
    let rt = env.data_dir.join(".doltctl");
    std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(env.state_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (_, checks) = doctor_json(&env, false);
    let perms: Vec<_> = checks
        .iter()
        .filter(|c| c["check"] == "permissions")
        .collect();
    assert_eq!(perms.len(), 2, "{perms:?}");
    assert!(perms.iter().all(|c| c["status"] == "WARN"));
    doctor_json(&env, true);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&rt), 0o700);
    assert_eq!(mode(&env.state_file()), 0o600);
}

#[test]
fn doctor_reports_a_bad_config_and_still_runs_the_other_checks() {
    let env = TestEnv::new();
    env.write_config("[server]\nready_timeout = \"soon\"\n");
    let (code, checks) = doctor_json(&env, false);
    assert_eq!(code, Some(1));
    let c = find(&checks, "config");
    assert_eq!(c["status"], "FAIL");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("server.ready_timeout"),
        "{c}"
    );
    assert_eq!(find(&checks, "dolt binary")["status"], "OK");
}

#[test]
fn doctor_reports_a_foreign_listener_on_the_port() {
    let env = TestEnv::new();
    let _l = std::net::TcpListener::bind(("127.0.0.1", env.port)).unwrap();
    let (code, checks) = doctor_json(&env, false);
    assert_eq!(code, Some(1));
    let p = find(&checks, "port");
    assert_eq!(p["status"], "FAIL");
    assert!(p["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("pid {}", std::process::id())));
}

#[test]
fn doctor_rotates_an_oversized_log_of_a_stopped_server() {
    let env = TestEnv::with_config("[logs]\nmax_size = \"8KiB\"\n");
    std::fs::create_dir_all(env.data_dir.join(".doltctl")).unwrap();
    let log = env.data_dir.join(".doltctl/server.log");
    std::fs::write(&log, "x\n".repeat(10_000)).unwrap();
    let (_, checks) = doctor_json(&env, false);
    assert_eq!(find(&checks, "logs")["status"], "WARN");
    let (_, checks) = doctor_json(&env, true);
    assert!(find(&checks, "logs")["fixed"].is_string());
    assert!(!log.exists());
    assert_eq!(
        std::fs::read(env.data_dir.join(".doltctl/server.log.1"))
            .unwrap()
            .len(),
        20_000
    );
}

#[test]
fn doctor_reports_journal_damage_with_the_fsck_hint() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.data_dir.join(".doltctl")).unwrap();
    std::fs::write(
        env.data_dir.join(".doltctl/server.log"),
        "2026-01-01T00:00:00Z [dolt] error: corrupted journal: bad checksum\n",
    )
    .unwrap();
    let (code, checks) = doctor_json(&env, true);
    assert_eq!(code, Some(1));
    let h = find(&checks, "server health");
    assert_eq!(h["status"], "FAIL");
    assert!(h["fix"].as_str().unwrap().contains("dolt fsck"));
    assert!(h.get("fixed").is_none(), "never repaired automatically");
}

#[test]
fn idle_server_stops_releases_locks_and_comes_back_on_next_access() {
    let env = TestEnv::with_server("idle_timeout = \"1s\"");
    env.start();
    env.sql("create database app; create table app.t (i int primary key)");
    let srv = env.server();
    wait_until("idle stop", Duration::from_secs(60), || {
        env.state()
            .is_some_and(|s| s.kind() == doltctl::Phase::Idle)
    });
    assert!(!srv.is_running());
    assert!(env.own_processes().is_empty());
    env.doltctl().arg("status").assert().code(3);
    // The plain dolt CLI can write to the database directly: no lock is held.
    let ok = env
        .dolt()
        .args(["sql", "-q", "insert into t values (1)"])
        .current_dir(env.data_dir.join("app"))
        .status()
        .unwrap();
    assert!(ok.success());
    // The next client access brings the server back, with that row.
    let out = env
        .doltctl()
        .args(["sql", "-d", "app", "--json", "-q", "select i from t"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"[{"i":1}]"#);
    assert!(env.log().contains("idle"));
    env.stop();
}

#[test]
fn an_open_idle_connection_keeps_the_server_up() {
    const IDLE: Duration = Duration::from_secs(1);
    let env = TestEnv::with_server("idle_timeout = \"1s\"");
    let url = env.start();
    let srv = env.server();
    block_on(async {
        let conn = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
        // Waiting is the behaviour under test: several idle timeouts pass with the
        // connection open (and idle), and the server must still be there.
        tokio::time::sleep(IDLE * 4).await;
        assert!(srv.is_running(), "stopped despite an open connection");
        conn.disconnect().await.unwrap();
    });
    wait_until(
        "idle stop after the connection closed",
        Duration::from_secs(60),
        || !srv.is_running(),
    );
}

#[test]
fn read_only_server_refuses_writes_clearly_and_serves_reads() {
    let env = TestEnv::new();
    env.start();
    env.sql(
        "create database app; create table app.t (i int primary key); insert into app.t values (1)",
    );
    env.stop();
    let out = env
        .doltctl()
        .args(["start", "--read-only"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = env.doltctl().args(["status", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["read_only"], true);

    let out = env
        .doltctl()
        .args(["sql", "-d", "app", "-q", "insert into t values (2)"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is read-only") && err.contains("without read-only"),
        "{err}"
    );
    let out = env
        .doltctl()
        .args(["sql", "-d", "app", "--json", "-q", "select i from t"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"[{"i":1}]"#);

    // A writable library client is refused at connect time, before any write.
    let cfg = doltctl::Config::load(&env.config).unwrap();
    let err = block_on(doltctl::Client::from_config(cfg).conn()).unwrap_err();
    assert!(
        matches!(err, doltctl::Error::ServerReadOnly { .. }),
        "{err}"
    );
    env.stop();
}

#[test]
fn logs_show_one_timeline_and_filter_by_source() {
    let env = TestEnv::new();
    env.start();
    env.doltctl().arg("restart").assert().success();
    let all = env.doltctl().args(["logs", "-n", "500"]).output().unwrap();
    let all = String::from_utf8_lossy(&all.stdout);
    for want in ["launching", "ready on", "stopping dolt pid", "[dolt]"] {
        assert!(all.contains(want), "missing {want}: {all}");
    }
    let sup = env
        .doltctl()
        .args(["logs", "-n", "500", "--supervisor"])
        .output()
        .unwrap();
    let sup = String::from_utf8_lossy(&sup.stdout);
    assert!(sup.lines().all(|l| l.contains(" [doltctl] ")) && sup.contains("ready on"));
    let srv = env
        .doltctl()
        .args(["logs", "-n", "500", "--server"])
        .output()
        .unwrap();
    let srv = String::from_utf8_lossy(&srv.stdout);
    assert!(!srv.is_empty() && srv.lines().all(|l| l.contains(" [dolt] ")));
    // Timestamps are in order.
    let stamps: Vec<&str> = all.lines().filter_map(|l| l.split(' ').next()).collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
    env.stop();
}

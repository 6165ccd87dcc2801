//! Clients against the real dolt binary: auto-start exactly once, retry through a crash,
//! permanent errors without retry, connection handoff through url/env/exec.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

fn stderr_of(env: &TestEnv, args: &[&str]) -> String {
    let out = env.doltctl().args(args).output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn catches_sigterm(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (15 - 1)) != 0)
}

#[test]
fn sixteen_concurrent_cold_clients_start_exactly_one_server() {
    let env = TestEnv::new();
    let children: Vec<_> = (0..16)
        .map(|_| {
            env.doltctl_std()
                .args(["sql", "-q", "select 1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("| 1 |"));
    }
    assert_eq!(env.dolt_servers().len(), 1, "{:?}", env.dolt_servers());
    let supervisors = env
        .own_processes()
        .into_iter()
        .filter(|p| p.cmdline.iter().any(|a| a == "run"))
        .count();
    assert_eq!(supervisors, 1);
    env.stop();
}

#[test]
fn query_right_after_kill9_of_the_server_succeeds_through_retry() {
    // A window that covers a full restart on a loaded machine (Dolt's own tests allow 8.5 s).
    let env = TestEnv::with_config("[client]\nretry_window = \"60s\"\nconnect_retries = 200\n");
    env.start();
    env.sql("create database app; create table app.t (i int primary key)");
    let old = env.server();
    old.signal(Signal::SIGKILL).unwrap();
    let out = env
        .doltctl()
        .args([
            "sql",
            "-d",
            "app",
            "-q",
            "insert into t values (1); select count(*) from t",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("| 1 "));
    assert_ne!(env.server().pid, old.pid);
    env.stop();
}

#[test]
fn a_permanent_error_returns_at_once_with_the_servers_message() {
    let env = TestEnv::new();
    env.start();
    env.sql("create database app");
    let out = env
        .doltctl()
        .args(["sql", "-d", "app", "-q", "select * from no_such_table"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no_such_table"), "{err}");
    assert!(
        err.contains("1 attempt)"),
        "retried a permanent error: {err}"
    );

    let err = stderr_of(&env, &["sql", "-q", "selec 1"]);
    assert!(
        err.contains("syntax") && err.contains("1 attempt)"),
        "{err}"
    );

    // Access denied is permanent too.
    let cfg = std::fs::read_to_string(&env.config).unwrap() + "[client]\npassword = \"wrong\"\n";
    env.write_config(&cfg);
    let err = stderr_of(&env, &["sql", "-q", "select 1"]);
    assert!(
        err.contains("Access denied") && err.contains("1 attempt)"),
        "{err}"
    );
    env.stop();
}

#[test]
fn autostart_off_is_a_clear_error_and_starts_nothing() {
    let env = TestEnv::new();
    let out = env
        .doltctl()
        .env("DOLTCTL_AUTOSTART", "0")
        .args(["sql", "-q", "select 1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auto-start is off"), "{err}");
    assert!(err.contains("doltctl start"), "{err}");
    assert!(env.own_processes().is_empty());

    let cfg = std::fs::read_to_string(&env.config).unwrap() + "[client]\nautostart = false\n";
    env.write_config(&cfg);
    let out = env.doltctl().args(["url", "--ensure"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("auto-start is off"));
    assert!(env.own_processes().is_empty());
}

#[test]
fn env_in_sh_and_exec_pass_the_connection_and_exit_code() {
    let env = TestEnv::new();
    let bin = assert_cmd::cargo::cargo_bin("doltctl");
    let script = format!(
        "eval \"$('{}' --config '{}' env --ensure --format sh)\" && echo \"$MYSQL_HOST $MYSQL_TCP_PORT $DOLT_PORT $DATABASE_URL $MYSQL_UNIX_PORT\"",
        bin.display(),
        env.config.display()
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(env.dir.path())
        .env("DOLT_BIN", dolt_bin())
        .env("DOLT_ROOT_PATH", env.root())
        .env("DOLT_DISABLE_EVENT_FLUSH", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8_lossy(&out.stdout);
    let p = env.port;
    assert!(
        got.starts_with(&format!("127.0.0.1 {p} {p} mysql://root@127.0.0.1:{p}/ ")),
        "{got}"
    );
    assert!(got.trim_end().ends_with("mysql.sock"), "{got}");

    let out = env
        .doltctl()
        .args(["exec", "--", "sh", "-c", "echo \"$DATABASE_URL\"; exit 7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), env.url());

    let out = env
        .doltctl()
        .args(["env", "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dsn"], format!("root@tcp(127.0.0.1:{p})/"));
    assert_eq!(v["env"]["DOLT_PORT"], p.to_string());
    env.stop();
}

#[test]
fn exec_forwards_sigterm_to_the_command() {
    let env = TestEnv::new();
    env.start();
    let marker = env.dir.path().join("got-term");
    let script = format!(
        "trap 'touch {}; exit 0' TERM; while true; do sleep 0.05; done",
        marker.display()
    );
    let mut child = env
        .doltctl_std()
        .args(["exec", "--", "sh", "-c", &script])
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // Wait until the shell runs under exec and has installed its trap (SigCgt bit 15).
    wait_until("the command's TERM trap", Duration::from_secs(30), || {
        processes_mentioning(env.dir.path())
            .iter()
            .filter(|p| p.cmdline.first().is_some_and(|a| a == "sh"))
            .any(|p| catches_sigterm(p.pid))
    });
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(marker.exists(), "SIGTERM was not forwarded");
    env.stop();
}

#[test]
fn a_stale_state_file_never_sends_clients_to_a_dead_port() {
    let env = TestEnv::new();
    env.start();
    let st = env.state().unwrap();
    let (sup, srv) = (
        st.supervisor.clone().unwrap(),
        st.server().cloned().unwrap(),
    );
    // The supervisor first, and gone before the server dies: otherwise it may still see its
    // child exit and record that.
    sup.signal(Signal::SIGKILL).unwrap();
    wait_until("the supervisor gone", Duration::from_secs(10), || {
        !sup.is_running()
    });
    srv.signal(Signal::SIGKILL).unwrap();
    wait_until("the server gone", Duration::from_secs(10), || {
        !srv.is_running()
    });
    // The state file still says running, with the old port.
    assert_eq!(env.state().unwrap().kind(), doltctl::Phase::Running);
    env.doltctl().arg("url").assert().code(3);
    env.doltctl().args(["env"]).assert().code(3);
    // A client gets a fresh server rather than the dead one.
    let out = env
        .doltctl()
        .args(["sql", "-q", "select 1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env.server().pid != srv.pid);
    env.stop();
}

#[test]
fn a_password_with_url_metacharacters_round_trips() {
    let pw = "p@:/%w";
    let env = TestEnv::with_config(&format!("[client]\npassword = \"{pw}\"\n"));
    let out = env.doltctl().args(["url", "--ensure"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        url,
        format!("mysql://root:p%40%3A%2F%25w@127.0.0.1:{}/", env.port)
    );
    // The URL works for a plain MySQL client, and the password is really required.
    block_on(query_i64(&url, "SELECT 1")).unwrap();
    assert!(block_on(query_i64(&env.url(), "SELECT 1")).is_err());
    // It never appears on a command line.
    for p in env.own_processes() {
        assert!(
            !p.command().contains(pw),
            "password in argv: {}",
            p.command()
        );
    }
    assert!(!env.log().contains(pw));
    env.stop();
}

#[test]
fn read_only_sessions_refuse_writes_and_allow_reads() {
    let env = TestEnv::new();
    env.start();
    env.sql(
        "create database app; create table app.t (i int primary key); insert into app.t values (1)",
    );
    let out = env
        .doltctl()
        .args([
            "sql",
            "--read-only",
            "-d",
            "app",
            "-q",
            "insert into t values (2)",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("READ ONLY"));
    let out = env
        .doltctl()
        .args([
            "sql",
            "--read-only",
            "--json",
            "-d",
            "app",
            "-q",
            "select i from t",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"[{"i":1}]"#);
    env.stop();
}

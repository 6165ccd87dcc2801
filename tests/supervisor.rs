//! The supervisor against the real dolt binary: lifecycle, crash healing, orphans, foreign
//! lock holders, pid reuse, port conflicts, crash loops, wedged servers, racing starts.

mod common;

use std::time::Duration;

use common::*;
use doltctl::Phase;
use nix::sys::signal::Signal;

#[test]
fn start_ready_write_read_stop_leaves_nothing_behind() {
    let env = TestEnv::new();
    let url = env.start();
    assert_eq!(url, env.url());
    env.doltctl().arg("status").assert().code(0);
    let st = env.state().unwrap();
    assert_eq!(st.kind(), Phase::Running);
    assert!(st.server_alive() && st.supervisor_alive());
    // The server listens on its own socket in the runtime dir, never /tmp/mysql.sock.
    assert!(env.data_dir.join(".doltctl/mysql.sock").exists());

    block_on(async {
        exec(&url, "CREATE DATABASE app").await.unwrap();
        let db = format!("{url}app");
        exec(
            &db,
            "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2)",
        )
        .await
        .unwrap();
        assert_eq!(
            query_i64(&db, "SELECT id FROM t ORDER BY id")
                .await
                .unwrap(),
            [1, 2]
        );
    });
    // `start` again: already running, same URL.
    assert_eq!(env.start(), url);

    let out = env.doltctl().args(["status", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "running");
    assert_eq!(v["read_only"], false);
    assert_eq!(v["port"], env.port);
    assert_eq!(v["dolt_version"], doltctl::PINNED_DOLT_VERSION);

    env.stop();
    assert!(
        env.own_processes().is_empty(),
        "left behind: {:?}",
        env.own_processes()
    );
    assert_eq!(env.state().unwrap().kind(), Phase::Stopped);
    // Dolt's graceful stop removed its info file.
    assert!(!env.data_dir.join(".dolt/sql-server.info").exists());
    env.doltctl().arg("status").assert().code(3);
    env.doltctl().arg("url").assert().code(3);
    // Stopping again is fine.
    env.doltctl().arg("stop").assert().success();
}

#[test]
fn kill9_of_dolt_heals_with_committed_rows_and_same_lock_inode() {
    let env = TestEnv::new();
    let url = env.start();
    let db = format!("{url}app");
    block_on(async {
        exec(&url, "CREATE DATABASE app").await.unwrap();
        exec(
            &db,
            "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (7); CALL DOLT_COMMIT('-Am', 'seed')",
        )
        .await
        .unwrap();
    });
    let lock = env.data_dir.join("app/.dolt/noms/LOCK");
    let ino = inode(&lock);
    let old = env.server();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old.pid), Signal::SIGKILL).unwrap();

    wait_until("a new ready server", Duration::from_secs(90), || {
        env.state()
            .is_some_and(|s| s.is_ready() && s.server().is_some_and(|p| p.pid != old.pid))
    });
    assert_eq!(
        env.state().unwrap().url.unwrap(),
        url,
        "same port after restart"
    );
    assert_eq!(env.state().unwrap().restarts, 1);
    let rows = block_on(query_i64(&db, "SELECT id FROM t")).unwrap();
    assert_eq!(rows, [7]);
    assert_eq!(inode(&lock), ino, "LOCK file must never be replaced");
    assert_eq!(env.dolt_servers().len(), 1);
    env.stop();
}

#[test]
fn kill9_of_supervisor_then_start_gives_one_server() {
    let env = TestEnv::new();
    let url = env.start();
    block_on(exec(&url, "CREATE DATABASE app")).unwrap();
    let st = env.state().unwrap();
    let sup = st.supervisor.clone().unwrap();
    let orphan = st.server().cloned().unwrap();
    sup.signal(Signal::SIGKILL).unwrap();
    wait_until("supervisor gone", Duration::from_secs(10), || {
        !sup.is_running()
    });

    // Its server still serves: orphaned, not stopped.
    env.doltctl()
        .arg("status")
        .assert()
        .code(5)
        .stdout(predicates::str::contains(format!(
            "server pid: {} runs without a supervisor",
            orphan.pid
        )));
    let url2 = env.start();
    assert_eq!(url2, url);
    let servers = env.dolt_servers();
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_ne!(
        servers[0].pid, orphan.pid,
        "the orphan was stopped and replaced"
    );
    assert!(!orphan.is_running());
    assert!(env.log().contains("orphaned dolt server"), "{}", env.log());
    env.stop();
    assert!(env.own_processes().is_empty());
}

#[test]
fn hand_started_dolt_server_is_refused_named_and_untouched() {
    let env = TestEnv::new();
    env.init_db("app");
    let db = env.data_dir.join("app");
    // Someone starts a server by hand on the data dir, on another port.
    let mut env = env;
    let hand_pid = env.start_foreign_server("app");
    let lock = db.join(".dolt/noms/LOCK");
    let ino = inode(&lock);

    let out = env.doltctl().arg("start").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {hand_pid}")), "{err}");
    assert!(err.contains("sql-server"), "{err}");
    assert!(err.contains("\"app\""), "{err}");
    // Untouched: still alive, still holding its lock, LOCK file the same.
    assert!(doltctl::internals::is_alive(hand_pid));
    assert_eq!(inode(&lock), ino);
    assert!(matches!(
        doltctl::internals::probe_lock(&lock).unwrap(),
        doltctl::internals::LockHolder::Held { pid: Some(p) } if p == hand_pid
    ));
    // The supervisor stays, in `failed`, and keeps retrying (every max_backoff, 1s here):
    // status shows the refusal, names the holder, and never calls it an orphan of ours (5).
    let out = env.doltctl().args(["status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("failed"), "{text}");
    assert!(text.contains(&format!("pid {hand_pid}")), "{text}");
    // Retrying never touched it.
    assert!(doltctl::internals::is_alive(hand_pid));
    assert_eq!(inode(&lock), ino);
    // The foreign server goes away: doltctl's own comes up by itself, no command needed.
    let mut hand = env.extra.pop().expect("the hand-started server");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(hand_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    hand.wait().unwrap();
    wait_until(
        "doltctl's server, by itself",
        Duration::from_secs(60),
        || env.state().is_some_and(|s| s.is_ready()),
    );
    env.doltctl().args(["status"]).assert().code(0);
}

#[test]
fn state_file_pointing_at_a_reused_pid_never_signals_that_process() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.data_dir.join(".doltctl")).unwrap();
    // An unrelated process now has the pid the state file records (simulated by recording
    // its pid with another start time and command line).
    let mut victim = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    let vpid = victim.id() as i32;
    let forged = doltctl::ProcessIdentity {
        pid: vpid,
        start_time: 1,
        cmdline: vec!["/usr/bin/dolt".into(), "sql-server".into()],
    };
    let state = doltctl::State {
        phase: doltctl::PhaseRecord::Running {
            server: forged.clone(),
            started_at: doltctl::internals::now_rfc3339(),
        },
        supervisor: Some(forged),
        host: "127.0.0.1".into(),
        port: env.port,
        socket: None,
        url: Some(env.url()),
        data_dir: env.data_dir.clone(),
        read_only: false,
        restarts: 0,
        last_error: None,
        log_tail: vec![],
        dolt_version: None,
        updated_at: doltctl::internals::now_rfc3339(),
        clients: None,
        last_client_at: None,
        auto_started: false,
        cluster: None,
    };
    std::fs::write(env.state_file(), serde_json::to_vec(&state).unwrap()).unwrap();

    env.doltctl().arg("status").assert().code(3);
    env.doltctl().arg("url").assert().code(3);
    env.doltctl().arg("stop").assert().success();
    let url = env.start();
    assert_eq!(url, env.url());
    env.stop();
    assert_eq!(
        victim.try_wait().unwrap(),
        None,
        "the unrelated process was signalled"
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
}

#[test]
fn fixed_port_taken_by_a_foreign_listener_is_refused_with_the_holder() {
    let env = TestEnv::new();
    let _listener = std::net::TcpListener::bind(("127.0.0.1", env.port)).unwrap();
    let out = env.doltctl().arg("start").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{}", env.port)), "{err}");
    assert!(err.contains("already in use"), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(env.dolt_servers().is_empty());
}

/// The test harness hands out each port once, and keeps it reserved against other test
/// processes (an flock per port, which another open of the file cannot take either).
#[test]
fn test_ports_are_reserved_once() {
    use nix::fcntl::{Flock, FlockArg};
    let ports: Vec<u16> = (0..20).map(|_| free_port()).collect();
    for (i, p) in ports.iter().enumerate() {
        assert!((10_000..20_000).contains(p), "{p}");
        assert!(!ports[..i].contains(p), "port {p} handed out twice");
        let f = std::fs::File::open(port_reservations().join(p.to_string())).unwrap();
        assert!(
            Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err(),
            "port {p} is not reserved"
        );
    }
}

#[test]
fn auto_port_avoids_a_taken_preferred_port() {
    let env = TestEnv::new();
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(&format!("port = {}", env.port), "port = \"auto\"");
    env.write_config(&text);
    std::fs::create_dir_all(&env.data_dir).unwrap();
    let inst = doltctl::Instance::new(&env.data_dir);
    let preferred = doltctl::internals::preferred_port(&inst);
    let _taken = std::net::TcpListener::bind(("127.0.0.1", preferred));
    let url = env.start();
    assert!(!url.ends_with(&format!(":{preferred}/")), "{url}");
    block_on(query_i64(&url, "SELECT 1")).unwrap();
    env.stop();
}

#[test]
fn dolt_that_exits_at_once_ends_failed_with_log_excerpt() {
    let env = TestEnv::with_server("extra_args = [\"--no-such-flag\"]");
    let out = env.doltctl().arg("start").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed"), "{err}");
    assert!(err.contains("no-such-flag"), "log excerpt missing: {err}");

    let out = env.doltctl().args(["status", "--json"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "supervisor up, server not ready"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "failed");
    assert_eq!(v["restarts"], 3);
    let tail = v["log_tail"].to_string();
    assert!(tail.contains("no-such-flag"), "{tail}");
    assert!(env.dolt_servers().is_empty());
    env.stop();
    assert!(env.own_processes().is_empty());
}

#[test]
fn sigstopped_dolt_is_declared_wedged_and_restarted() {
    let env = TestEnv::new();
    let url = env.start();
    let old = env.server();
    old.signal(Signal::SIGSTOP).unwrap();
    wait_until("a new ready server", Duration::from_secs(90), || {
        env.state()
            .is_some_and(|s| s.is_ready() && s.server().is_some_and(|p| p.pid != old.pid))
    });
    assert!(!old.is_running(), "the wedged server was killed");
    assert!(env.log().contains("wedged"), "{}", env.log());
    block_on(query_i64(&url, "SELECT 1")).unwrap();
    env.stop();
}

#[test]
fn two_racing_starts_launch_one_server() {
    let env = TestEnv::new();
    let spawn = || {
        env.doltctl_std()
            .arg("start")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn();
    let b = spawn();
    let (oa, ob) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(oa.status.success() && ob.status.success());
    assert_eq!(oa.stdout, ob.stdout);
    assert_eq!(env.dolt_servers().len(), 1);
    let supervisors: Vec<_> = env
        .own_processes()
        .into_iter()
        .filter(|p| p.cmdline.iter().any(|a| a == "run"))
        .collect();
    assert_eq!(supervisors.len(), 1, "{supervisors:?}");
    env.stop();
}

#[test]
fn malformed_config_and_state_files_give_clear_errors() {
    let env = TestEnv::new();
    env.write_config("[server]\nport = \"eighty\"\n");
    let out = env.doltctl().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("doltctl.toml:2:"), "{err}");
    assert!(err.contains("server.port"), "{err}");

    let env = TestEnv::new();
    std::fs::create_dir_all(env.data_dir.join(".doltctl")).unwrap();
    std::fs::write(env.state_file(), "{\"state\": \"runn").unwrap();
    let out = env.doltctl().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("state.json") && err.contains("not valid"),
        "{err}"
    );
    // Reading did not change it.
    assert_eq!(
        std::fs::read_to_string(env.state_file()).unwrap(),
        "{\"state\": \"runn"
    );
    // start recovers: the supervisor rewrites it.
    let url = env.start();
    block_on(query_i64(&url, "SELECT 1")).unwrap();
    env.stop();
}

#[test]
fn restart_replaces_the_server_and_keeps_the_url() {
    let env = TestEnv::new();
    let url = env.start();
    let old = env.server();
    let out = env.doltctl().arg("restart").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), url);
    assert!(!old.is_running());
    assert_ne!(env.server().pid, old.pid);
    env.doltctl()
        .args(["logs", "-n", "200"])
        .assert()
        .success()
        .stdout(predicates::str::contains("stopping dolt pid"));
    env.stop();
}

/// `doltctl run` in the foreground as a child of the test, its stderr in a file. SIGHUP gets
/// its default action in the child, even if the tests themselves run under nohup.
fn spawn_foreground_run(env: &mut TestEnv) -> (i32, std::path::PathBuf) {
    use std::os::unix::process::CommandExt;
    let err_path = env.dir.path().join("run.stderr");
    let err = std::fs::File::create(&err_path).unwrap();
    let mut cmd = env.doltctl_std();
    cmd.arg("run")
        .env_remove("NO_COLOR")
        .env_remove("DOLTCTL_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(err);
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::signal::signal(Signal::SIGHUP, nix::sys::signal::SigHandler::SigDfl)
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    env.extra.push(child);
    (pid, err_path)
}

/// Waits for a child of the test to exit, with a deadline.
fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let mut status = None;
    wait_until("the child to exit", timeout, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}

#[test]
fn sighup_to_a_foreground_run_stops_its_server_and_dolt_output_reaches_stderr() {
    let mut env = TestEnv::new();
    let (pid, stderr) = spawn_foreground_run(&mut env);
    wait_until(
        "the foreground server is ready",
        Duration::from_secs(90),
        || env.state().is_some_and(|s| s.is_ready()),
    );
    let server = env.server();
    // What a closed terminal sends.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP).unwrap();
    let status = wait_exit(env.extra.last_mut().unwrap(), Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", env.log());
    assert!(!server.is_running(), "the server outlived its supervisor");
    assert!(env.dolt_servers().is_empty(), "{:?}", env.dolt_servers());
    assert_eq!(env.state().unwrap().kind(), Phase::Stopped);
    env.doltctl().arg("status").assert().code(3);
    let text = std::fs::read_to_string(&stderr).unwrap();
    // Dolt's own output, not only the supervisor's events.
    assert!(text.contains("[dolt] "), "{text}");
    assert!(text.contains("SIGHUP"), "{text}");
    // stderr is a file here: no colors.
    assert!(!text.contains('\x1b'), "ANSI escapes in {text}");
}

#[test]
fn sighup_to_a_detached_supervisor_is_ignored() {
    let env = TestEnv::new();
    let url = env.start();
    let st = env.state().unwrap();
    let sup = st.supervisor.clone().unwrap();
    let server = env.server();
    assert!(sup.cmdline.iter().any(|a| a == "--detached"), "{sup:?}");
    sup.signal(Signal::SIGHUP).unwrap();
    wait_until(
        "the supervisor to log the ignored SIGHUP",
        Duration::from_secs(30),
        || env.log().contains("SIGHUP ignored"),
    );
    assert!(sup.is_running() && server.is_running());
    env.doltctl().arg("status").assert().code(0);
    block_on(query_i64(&url, "SELECT 1")).unwrap();
    // A detached supervisor's stderr (supervisor.log) gets no dolt output.
    let sup_log =
        std::fs::read_to_string(env.data_dir.join(".doltctl/supervisor.log")).unwrap_or_default();
    assert!(!sup_log.contains("[dolt]"), "{sup_log}");
    env.stop();
    assert!(env.own_processes().is_empty());
}

fn status_json(env: &TestEnv) -> (Option<i32>, serde_json::Value) {
    let out = env.doltctl().args(["status", "--json"]).output().unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), v)
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// Kills the supervisor with SIGKILL and returns the server it leaves behind.
fn orphan_the_server(env: &TestEnv) -> doltctl::ProcessIdentity {
    let st = env.state().unwrap();
    let sup = st.supervisor.clone().unwrap();
    let server = st.server().cloned().unwrap();
    sup.signal(Signal::SIGKILL).unwrap();
    wait_until("supervisor gone", Duration::from_secs(10), || {
        !sup.is_running()
    });
    server
}

#[test]
fn an_orphan_is_reported_with_its_pid_and_stop_stops_it_without_a_state_file() {
    let never_started = TestEnv::new();
    let (code, fresh) = status_json(&never_started);
    assert_eq!(code, Some(3));
    assert!(
        fresh["port"].is_null() && fresh["dsn"].is_null(),
        "{fresh:#}"
    );

    let env = TestEnv::new();
    env.start();
    let orphan = orphan_the_server(&env);
    let (code, v) = status_json(&env);
    assert_eq!(code, Some(5), "{v:#}");
    assert_eq!(v["state"], "orphaned");
    assert_eq!(v["orphan_pid"], orphan.pid);
    assert_eq!(v["ready"], false);
    assert_eq!(keys(&v), keys(&fresh), "the same keys in every state");

    // The state file is lost: the server is still ours, by its command line.
    std::fs::remove_file(env.state_file()).unwrap();
    let (code, v) = status_json(&env);
    assert_eq!(code, Some(5), "{v:#}");
    assert_eq!(v["orphan_pid"], orphan.pid);
    assert_eq!(keys(&v), keys(&fresh));
    env.doltctl()
        .arg("stop")
        .assert()
        .success()
        .stdout(predicates::str::contains(format!(
            "stopped orphaned server pid {}",
            orphan.pid
        )));
    assert!(!orphan.is_running());
    assert!(env.own_processes().is_empty(), "{:?}", env.own_processes());
    env.doltctl().arg("status").assert().code(3);
}

#[test]
fn an_orphan_with_an_unreadable_state_file_is_replaced_by_start() {
    let env = TestEnv::new();
    env.start();
    env.sql("create database app");
    let orphan = orphan_the_server(&env);
    std::fs::write(env.state_file(), "{\"state\": \"runn").unwrap();
    let out = env.doltctl().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("server pid: {}", orphan.pid)),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid"));

    let url = env.start();
    assert_eq!(url, env.url());
    assert!(!orphan.is_running());
    let servers = env.dolt_servers();
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_ne!(servers[0].pid, orphan.pid);
    assert!(env.log().contains("orphaned dolt server"), "{}", env.log());
    block_on(query_i64(&format!("{url}app"), "SELECT 1")).unwrap();
    env.stop();
    assert!(env.own_processes().is_empty());
}

/// A dolt someone runs by hand on doltctl's generated config, while the state file says
/// stopped: ours all the same. status says orphaned; start stops it gracefully (SIGTERM: dolt
/// exits 0) and runs a supervised server.
#[test]
fn a_dolt_on_our_generated_config_is_ours_whatever_the_state_file_says() {
    let mut env = TestEnv::new();
    env.start();
    env.sql("create database app");
    env.stop();
    let config = env.data_dir.join(".doltctl/dolt-config.yaml");
    let hand = env
        .dolt()
        .args(["sql-server", "--config"])
        .arg(&config)
        .current_dir(&env.data_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let hand_pid = hand.id() as i32;
    env.extra.push(hand);
    let lock = env.data_dir.join("app/.dolt/noms/LOCK");
    wait_until(
        "the hand-run dolt holds the lock",
        Duration::from_secs(60),
        || {
            matches!(
                doltctl::internals::probe_lock(&lock),
                Ok(doltctl::internals::LockHolder::Held { pid: Some(p) }) if p == hand_pid
            )
        },
    );
    // Serving (so its own SIGTERM handling is in place).
    wait_until("the hand-run dolt answers", Duration::from_secs(60), || {
        block_on(query_i64(&env.url(), "SELECT 1")).is_ok()
    });
    assert_eq!(env.state().unwrap().kind(), Phase::Stopped);
    let (code, v) = status_json(&env);
    assert_eq!(code, Some(5), "{v:#}");
    assert_eq!(v["orphan_pid"], hand_pid);

    env.start();
    let status = wait_exit(env.extra.last_mut().unwrap(), Duration::from_secs(30));
    // Stopped gracefully: SIGTERM, on which dolt shuts down and exits 0, never SIGKILL.
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", env.log());
    let servers = env.dolt_servers();
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_ne!(servers[0].pid, hand_pid);
    env.stop();
}

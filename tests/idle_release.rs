//! Idle release end to end, against the real dolt binary: a pool that lets go, one-shot
//! commands that hold no connection, and the server idling out under them. Its own test
//! binary, because it sets DOLTCTL_BIN process-wide (the library runs supervisors with it).

mod common;

use std::time::{Duration, Instant};

use common::*;
use doltctl::{Client, Phase};
use mysql_async::prelude::Queryable;

/// Waits (async) until `cond` holds; panics after `timeout` naming `what`.
async fn until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t0.elapsed()
}

/// This process's TCP connections to `port`.
fn my_connections(port: u16) -> usize {
    let me = std::process::id() as i32;
    doltctl::internals::peers(port)
        .iter()
        .filter(|p| p.pid == Some(me))
        .count()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// An application holds a pool and does nothing: the pool closes its connection after
/// pool_idle_timeout, the server (auto-started, so autostart_idle_timeout) idles out, and the
/// next get_conn on the same pool starts it again.
#[test]
fn an_idle_pool_lets_the_server_idle_out_and_its_next_query_wakes_it() {
    use_built_doltctl();
    // Health interval 300 ms (the harness's), idle stop after 2 s, pool release after 1 s.
    let env = TestEnv::with_config(
        "[client]\nautostart_idle_timeout = \"2s\"\npool_idle_timeout = \"1s\"\n",
    );
    let cfg = env.library_config();
    block_on(async {
        let t0 = Instant::now();
        let client = Client::from_config(cfg.clone());
        let pool = client.pool().await.unwrap();
        let cold_start = t0.elapsed();
        let first = env.server();
        let port = env.state().unwrap().port;
        {
            let mut c = pool.get_conn().await.unwrap();
            c.query_drop("CREATE DATABASE app").await.unwrap();
            let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
            assert_eq!(one, Some(1));
        }
        let last_query = Instant::now();
        let at = |i: Instant| i.duration_since(last_query);
        // The check connection and this one (the first may still have been resetting when the
        // second was asked for): they idle in the pool.
        let held = pool.open_connections();
        assert!(held >= 1, "{held}");
        assert_eq!(my_connections(port), held);

        until(
            "the pool to close its idle connection",
            Duration::from_secs(10),
            || pool.open_connections() == 0 && my_connections(port) == 0,
        )
        .await;
        let pool_closed = Instant::now();
        // Closed after pool_idle_timeout (1 s), checked every second: not before 1 s.
        assert!(
            at(pool_closed) >= Duration::from_secs(1),
            "{:?}",
            at(pool_closed)
        );

        until("the server to idle out", Duration::from_secs(20), || {
            !first.is_running()
                && doltctl::control::status(&cfg)
                    .is_ok_and(|st| !st.supervisor_alive && st.phase() == Phase::Idle)
        })
        .await;
        let server_stopped = Instant::now();
        assert!(
            env.log().contains("idle_timeout"),
            "no idle stop in the log:\n{}",
            env.log()
        );
        // The idle stop released Dolt's lock: the plain dolt CLI works on the data dir.
        assert!(env.dolt_servers().is_empty(), "{:?}", env.dolt_servers());

        // The same pool, nothing else: its next query starts the server again.
        let wake = Instant::now();
        let mut c = pool.get_conn().await.unwrap();
        let n: Option<i64> = c
            .query_first(
                "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'app'",
            )
            .await
            .unwrap();
        let woke = wake.elapsed();
        assert_eq!(n, Some(1));
        drop(c);
        let second = env.server();
        assert_ne!(second.pid, first.pid, "a new server");
        assert_eq!(env.dolt_servers().len(), 1);

        eprintln!(
            "TIMELINE idle pool (autostart_idle_timeout 2s, pool_idle_timeout 1s, health interval 300ms):\n\
             \x20 cold start + pool check          {}\n\
             \x20 last query                       t=0\n\
             \x20 pool closed its connection       t={}\n\
             \x20 server stopped (idle)            t={}\n\
             \x20 wake-up query (auto-start+query) took {} (server pid {} -> {})",
            ms(cold_start),
            ms(at(pool_closed)),
            ms(at(server_stopped)),
            ms(woke),
            first.pid,
            second.pid
        );
        pool.disconnect().await.unwrap();
    });
    env.stop();
}

/// With pool_idle_timeout = 0 a returned connection is closed at once.
#[test]
fn a_zero_pool_idle_timeout_keeps_no_idle_connection() {
    use_built_doltctl();
    let env = TestEnv::with_config("[client]\npool_idle_timeout = \"0s\"\n");
    env.start();
    let port = env.state().unwrap().port;
    block_on(async {
        let pool = Client::from_config(env.library_config())
            .pool()
            .await
            .unwrap();
        let mut c = pool.get_conn().await.unwrap();
        let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
        assert_eq!(my_connections(port), 1);
        drop(c);
        until(
            "the returned connection to close",
            Duration::from_secs(5),
            || pool.open_connections() == 0 && my_connections(port) == 0,
        )
        .await;
    });
    env.stop();
}

/// A pool survives a restart of the server on another port: its next get_conn follows it.
#[test]
fn a_pool_follows_the_server_to_a_new_port() {
    use_built_doltctl();
    let env = TestEnv::new();
    env.start();
    let cfg = env.library_config();
    block_on(async {
        let pool = Client::from_config(cfg).pool().await.unwrap();
        let old_port = env.state().unwrap().port;
        env.stop();
        // Next start on another port (a fixed port, changed in the config).
        let new_port = free_port();
        let text = std::fs::read_to_string(&env.config)
            .unwrap()
            .replace(&format!("port = {old_port}"), &format!("port = {new_port}"));
        env.write_config(&text);
        env.start();
        assert_eq!(env.state().unwrap().port, new_port);
        let mut c = pool.get_conn().await.unwrap();
        let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
        drop(c);
        // This process's connections to the new port are the pool's.
        let open = pool.open_connections();
        assert!(open >= 1, "{open}");
        assert_eq!(my_connections(new_port), open);
        pool.disconnect().await.unwrap();
    });
    env.stop();
}

/// `Client::execute` closes its connection when a statement fails, not only on success: a
/// library user's failed statement must not leave a connection that keeps the server awake.
#[test]
fn execute_closes_its_connection_on_errors_too() {
    use_built_doltctl();
    let env = TestEnv::new();
    env.start();
    let port = env.state().unwrap().port;
    block_on(async {
        let client = Client::from_config(env.library_config());
        client.execute(&["SELECT 1".into()]).await.unwrap();
        assert_eq!(my_connections(port), 0);
        let e = client
            .execute(&["SELECT no_such_column".into()])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no_such_column"), "{e}");
        assert_eq!(
            my_connections(port),
            0,
            "connection left open after an error"
        );
    });
    env.stop();
}

/// `doltctl exec` holds no connection while its command runs: the server it started idles
/// out under a long `exec`.
#[test]
fn the_server_idles_out_while_exec_runs_its_command() {
    let env = TestEnv::with_config("[client]\nautostart_idle_timeout = \"1s\"\n");
    let t0 = Instant::now();
    let mut exec = env
        .doltctl_std()
        .args(["exec", "--", "sleep", "60"])
        .spawn()
        .unwrap();
    wait_until("exec to start the server", Duration::from_secs(60), || {
        env.state().is_some_and(|s| s.server().is_some())
    });
    let server = env.server();
    let started = t0.elapsed();
    wait_until(
        "the server to idle out under exec",
        Duration::from_secs(20),
        || !server.is_running(),
    );
    let idle_after = t0.elapsed();
    assert!(
        matches!(exec.try_wait(), Ok(None)),
        "exec is still running its command"
    );
    assert!(env.log().contains("idle_timeout"), "{}", env.log());
    let _ = exec.kill();
    let _ = exec.wait();
    eprintln!(
        "exec started the server after {}; it idled out at {} while `sleep 60` ran",
        ms(started),
        ms(idle_after)
    );
}

/// `doctor` names the process whose idle connection keeps the server from idling out (WARN),
/// with its quiet time, also in `--json`; once it lets go, the server idles out.
#[test]
fn doctor_names_the_process_whose_idle_connection_keeps_the_server_up() {
    let env = TestEnv::with_server("idle_timeout = \"1s\"");
    let url = env.start();
    let me = std::process::id() as i32;
    block_on(async {
        // A plain connection that does nothing (as a pool with a minimum of idle ones would).
        let mut c = mysql_async::Conn::from_url(&url).await.unwrap();
        c.query_drop("SELECT 1").await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let out = env.doltctl().args(["doctor", "--json"]).output().unwrap();
        let checks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let check = checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "client connections")
            .unwrap_or_else(|| panic!("no client connections check: {checks:#}"))
            .clone();
        eprintln!("{check:#}");
        assert_eq!(check["status"], "WARN", "{check:#}");
        let detail = check["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("pid {me} (")), "{detail}");
        let procs = check["connections"]["processes"].as_array().unwrap();
        let mine = procs
            .iter()
            .find(|p| p["pid"] == me)
            .expect("this test's connection");
        assert!(mine["quiet_ms"].as_u64().unwrap() >= 1000, "{mine}");
        assert_eq!(mine["supervisor_probe"], false);
        let supervisor = env.state().unwrap().supervisor.unwrap().pid;
        assert!(
            procs
                .iter()
                .any(|p| p["pid"] == supervisor && p["supervisor_probe"] == true),
            "{procs:?}"
        );
        assert!(check["connections"]["sessions"].as_array().unwrap().len() >= 2);
        let text = env.doltctl().arg("doctor").output().unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.lines()
                .any(|l| l.starts_with("WARN  client connections:")),
            "{text}"
        );
        // The server is still up: this connection counts as a client.
        let server = env.server();
        assert!(server.is_running());
        c.disconnect().await.unwrap();
        until(
            "the server to idle out once the connection is closed",
            Duration::from_secs(20),
            || !server.is_running(),
        )
        .await;
    });
}

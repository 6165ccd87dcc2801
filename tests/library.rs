//! The library's client API against the real dolt binary. Its own test binary, because it
//! sets process-wide environment variables.

mod common;

use std::path::PathBuf;

use common::*;
use doltctl::{ProcessIdentity, TestServer};
use mysql_async::prelude::Queryable;

/// The library runs supervisors with the doltctl binary; a test binary is not doltctl. Every
/// test of this binary wants the same one, so setting it process-wide races with nothing.
fn use_built_doltctl() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::env::set_var("DOLTCTL_BIN", assert_cmd::cargo::cargo_bin("doltctl")));
}

/// The supervisor and server a test server runs, as its state file names them.
fn processes_of(server: &TestServer) -> Vec<ProcessIdentity> {
    let st = doltctl::control::status(server.config()).unwrap();
    assert!(st.is_ready(), "{st:?}");
    let s = st.state.unwrap();
    vec![s.supervisor.unwrap(), s.server.unwrap()]
}

/// Everything a test server made is gone: its processes, anything else naming its dir, the dir.
fn assert_all_gone(dir: &std::path::Path, procs: &[ProcessIdentity]) {
    for p in procs {
        assert!(!p.is_running(), "still running: {p:?}");
    }
    assert_eq!(
        processes_mentioning(dir),
        vec![],
        "processes naming {}",
        dir.display()
    );
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

/// The value of `key` in a process's environment.
fn environ_var(pid: i32, key: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string))
}

#[test]
fn library_client_autostarts_and_connects() {
    let env = TestEnv::new();
    let cfg = doltctl::Config::load(&env.config).unwrap();
    let mut cfg = cfg;
    cfg.server.dolt_bin = dolt_bin().to_string_lossy().into_owned();
    use_built_doltctl();
    // The server a client auto-starts inherits this process's environment. The other tests of
    // this binary give theirs a dolt root explicitly, so this one may set it process-wide.
    std::env::set_var("DOLT_ROOT_PATH", env.root());
    std::env::set_var("DOLT_DISABLE_EVENT_FLUSH", "1");
    block_on(async {
        let client = doltctl::Client::from_config(cfg);
        assert!(client.running().unwrap().is_none());
        let mut conn = client.conn().await.unwrap();
        let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
        conn.disconnect().await.unwrap();
        assert_eq!(client.url().await.unwrap(), env.url());
        let n: i64 = client
            .with_retry(|c| {
                Box::pin(
                    async move { c.query_first("SELECT 41 + 1").await.map(|v| v.unwrap_or(0)) },
                )
            })
            .await
            .unwrap();
        assert_eq!(n, 42);
        let err = client
            .with_retry(|c| Box::pin(async move { c.query_drop("SELECT * FROM nope").await }))
            .await
            .unwrap_err();
        match err {
            doltctl::Error::Sql {
                attempts,
                transient,
                ..
            } => {
                assert_eq!(attempts, 1);
                assert!(!transient);
            }
            other => panic!("unexpected error {other}"),
        }
    });
    env.stop();
}

#[test]
fn test_server_serves_its_databases_and_removes_everything_on_drop() {
    use_built_doltctl();
    block_on(async {
        // Started, used and dropped inside a runtime: Drop must not need this one.
        let server = TestServer::builder()
            .database("app")
            .database("other")
            .dolt_bin(dolt_bin())
            .start()
            .await
            .unwrap();
        let dir = server.dir().to_path_buf();
        let procs = processes_of(&server);
        assert_eq!(
            server.url(),
            format!("mysql://root@127.0.0.1:{}/app", server.port())
        );
        // Its own dolt root, under its dir, for the server as for `dolt init`.
        let root = dir.join("dolt-root");
        assert_eq!(
            environ_var(procs[1].pid, "DOLT_ROOT_PATH").map(PathBuf::from),
            Some(root.clone())
        );
        assert!(root.join(".dolt/config_global.json").is_file());

        let client = server.client();
        let mut conn = client.conn().await.unwrap();
        conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
            .await
            .unwrap();
        let n: Option<i64> = conn.query_first("SELECT COUNT(*) FROM t").await.unwrap();
        assert_eq!(n, Some(2));
        // An error from a handed-out connection names the address really used.
        let e = conn.query_drop("SELECT * FROM nope").await.unwrap_err();
        match client.error(e) {
            doltctl::Error::Sql { target, .. } => {
                assert_eq!(target, format!("127.0.0.1:{}", server.port()))
            }
            other => panic!("unexpected error {other}"),
        }
        conn.disconnect().await.unwrap();

        let pool = server.pool();
        let mut c = pool.get_conn().await.unwrap();
        let dbs: Vec<String> = c.query("SHOW DATABASES").await.unwrap();
        assert!(
            dbs.contains(&"app".into()) && dbs.contains(&"other".into()),
            "{dbs:?}"
        );
        let n: Option<i64> = c.query_first("SELECT COUNT(*) FROM t").await.unwrap();
        assert_eq!(n, Some(2));
        drop(c);
        pool.disconnect().await.unwrap();

        drop(server);
        assert_all_gone(&dir, &procs);

        // The blocking start works inside a runtime too, and an explicit stop reports success
        // (so the stop, not the kill that follows a failed one, did the work).
        let plain = TestServer::builder()
            .dolt_bin(dolt_bin())
            .start_blocking()
            .unwrap();
        assert_eq!(
            plain.url(),
            format!("mysql://root@127.0.0.1:{}/", plain.port())
        );
        let (dir, procs) = (plain.dir().to_path_buf(), processes_of(&plain));
        plain.stop().unwrap();
        assert_all_gone(&dir, &procs);
        // Its client does not bring it back.
        assert!(matches!(
            client.conn().await.map(drop),
            Err(doltctl::Error::AutostartOff { .. })
        ));
    });
}

#[test]
fn test_server_is_removed_when_the_test_panics() {
    use_built_doltctl();
    let seen = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let server = TestServer::builder()
            .dolt_bin(dolt_bin())
            .start_blocking()
            .unwrap();
        *seen.lock().unwrap() = Some((server.dir().to_path_buf(), processes_of(&server)));
        panic!("a failing assertion while the server runs");
    }));
    assert!(result.is_err());
    let (dir, procs) = seen.into_inner().unwrap().expect("the server had started");
    assert_all_gone(&dir, &procs);
}

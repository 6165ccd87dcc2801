//! The library's client API against the real dolt binary. Its own test binary, because it
//! sets process-wide environment variables.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use doltctl::{ProcessIdentity, TestServer};
use mysql_async::prelude::Queryable;

/// The supervisor and server a test server runs, as its state file names them.
fn processes_of(server: &TestServer) -> Vec<ProcessIdentity> {
    let st = doltctl::control::status(server.config()).unwrap();
    assert!(st.is_ready(), "{st:?}");
    let s = st.state.unwrap();
    vec![s.supervisor.clone().unwrap(), s.server().cloned().unwrap()]
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
    let cfg = env.library_config();
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

/// The example program `name`, built now: cargo builds examples for `--all-targets` but not
/// for `--test library`, and a stale one would test old code. Same target dir and profile as
/// this test, so it normally only checks that the example is up to date.
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/library-HASH
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("unexpected test binary path {}", exe.display()),
    };
    let status = std::process::Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--example", name, "--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .unwrap();
    assert!(status.success(), "cargo build --example {name} failed");
    let bin = profile_dir.join("examples").join(name);
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

#[test]
fn embedded_program_supervises_without_a_doltctl_binary() {
    let env = TestEnv::new();
    let exe = example_binary("embedded");
    // A PATH with nothing on it, and no DOLTCTL_BIN: the program itself must supervise.
    let empty = env.dir.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let out = assert_cmd::Command::new(&exe)
        .current_dir(env.dir.path())
        .env_remove("DOLTCTL_BIN")
        .env("PATH", &empty)
        .env("DOLTCTL_CONFIG", &env.config)
        .env("DOLT_BIN", dolt_bin())
        .env("DOLT_ROOT_PATH", env.root())
        .env("DOLT_DISABLE_EVENT_FLUSH", "1")
        .timeout(Duration::from_secs(180))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        env.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");

    // The program exited; the supervisor it started is the same program, marked.
    let state = env.state().expect("a state file");
    let sup = state.supervisor.clone().expect("a supervisor");
    assert!(sup.is_running(), "{sup:?}");
    assert_eq!(
        std::path::Path::new(&sup.cmdline[0]).file_name(),
        exe.file_name()
    );
    assert_eq!(sup.cmdline[1], doltctl::control::SUPERVISOR_MARKER);
    assert!(sup.cmdline.iter().any(|a| a == "run"), "{sup:?}");
    assert!(state.server().is_some_and(|s| s.is_running()));
    assert_eq!(state.port, env.port);

    let cfg = doltctl::Config::load(&env.config).unwrap();
    let stopped = block_on(doltctl::control::stop(&cfg)).unwrap();
    assert_eq!(stopped, doltctl::control::Stopped::Stopped);
    assert_eq!(env.own_processes(), vec![]);
}

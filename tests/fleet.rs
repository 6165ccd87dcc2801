//! Every instance on the machine, against real dolt: `doltctl ps` from another directory,
//! `doltctl gc` stopping exactly the orphaned and the idle auto-started servers, the registry
//! entry going with a clean stop, and `[client] max_instances` reclaiming an idle server.
//! Each test has a registry of its own, so parallel tests never see each other's instances.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{wait_until, TestEnv};
use serde_json::Value;

/// A doltctl command run outside any project: another directory, no config, this registry.
fn doltctl_anywhere(registry: &Path, cwd: &Path, args: &[&str]) -> Output {
    assert_cmd::Command::cargo_bin("doltctl")
        .unwrap()
        .current_dir(cwd)
        .env_remove("DOLTCTL_CONFIG")
        .env("DOLTCTL_REGISTRY_DIR", registry)
        .env("DOLT_DISABLE_EVENT_FLUSH", "1")
        .args(args)
        .timeout(Duration::from_secs(180))
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `ps --json` from `cwd`: the rows, by data dir.
fn ps_rows(registry: &Path, cwd: &Path) -> Vec<Value> {
    let out = doltctl_anywhere(registry, cwd, &["ps", "--json"]);
    assert!(out.status.success(), "ps failed: {}", stderr(&out));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn row_of<'a>(rows: &'a [Value], env: &TestEnv) -> Option<&'a Value> {
    let dir = std::fs::canonicalize(&env.data_dir).unwrap();
    rows.iter()
        .find(|r| r["data_dir"].as_str() == Some(dir.to_str().unwrap()))
}

/// An env whose doltctl commands use `registry`.
fn env_in(registry: &Path, extra: &str) -> TestEnv {
    let mut env = TestEnv::with_config(extra);
    env.registry = Some(registry.to_path_buf());
    env
}

/// A client's auto-start, as `doltctl url --ensure` does it.
fn auto_start(env: &TestEnv) -> String {
    let out = env.doltctl().args(["url", "--ensure"]).output().unwrap();
    assert!(out.status.success(), "url --ensure: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

fn registry_files(registry: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(registry)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn ps_shows_an_orphaned_an_idle_and_a_busy_instance_and_gc_stops_only_the_orphan_and_the_idle_one()
{
    let reg = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let registry = reg.path();
    let orphan = env_in(registry, "");
    let idle = env_in(registry, "");
    let busy = env_in(registry, "");
    // A dolt sql-server started by hand, not by doltctl: gc must never touch it.
    let mut foreign = TestEnv::new();
    foreign.init_db("hand");
    let foreign_pid = foreign.start_foreign_server("hand");

    orphan.start();
    auto_start(&idle);
    let busy_url = auto_start(&busy);
    // A client holds a connection to the busy one for the whole test.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt
        .block_on(mysql_async::Conn::from_url(busy_url.as_str()))
        .unwrap();
    // The orphan: its supervisor killed, its server left running.
    let sup = orphan.state().unwrap().supervisor.unwrap();
    sup.signal(nix::sys::signal::Signal::SIGKILL).unwrap();
    let orphan_server = orphan.server();
    // Another program's file in the registry: named on stderr, never breaks ps.
    std::fs::write(registry.join("ffffffffffffffff.json"), "{oops").unwrap();

    wait_until("ps to see all three", Duration::from_secs(60), || {
        let rows = ps_rows(registry, elsewhere.path());
        let state = |e| row_of(&rows, e).map(|r| (r["state"].clone(), r["clients"].clone()));
        state(&orphan) == Some(("orphaned".into(), Value::Null))
            && state(&idle) == Some(("running".into(), 0.into()))
            && state(&busy) == Some(("running".into(), 1.into()))
            && row_of(&rows, &idle).unwrap()["idle_ms"].as_u64() >= Some(1000)
    });
    let rows = ps_rows(registry, elsewhere.path());
    assert_eq!(rows.len(), 3, "{rows:#?}");
    let o = row_of(&rows, &orphan).unwrap();
    assert_eq!(o["supervisor_pid"], Value::Null);
    assert_eq!(o["server_pid"], orphan_server.pid);
    assert_eq!(o["auto_started"], false);
    let i = row_of(&rows, &idle).unwrap();
    assert_eq!(i["auto_started"], true);
    assert!(i["rss_bytes"].as_u64().unwrap() > 1 << 20, "{i}");
    assert!(i["uptime_ms"].as_u64().unwrap() > 0, "{i}");
    assert!(i["url"]
        .as_str()
        .unwrap()
        .starts_with("mysql://root@127.0.0.1:"));
    let b = row_of(&rows, &busy).unwrap();
    assert_eq!(
        (b["idle_ms"].as_u64(), b["auto_started"].as_bool()),
        (Some(0), Some(true))
    );

    let before = doltctl_anywhere(registry, elsewhere.path(), &["ps"]);
    assert!(before.status.success());
    assert!(
        stderr(&before).contains("ffffffffffffffff.json"),
        "{}",
        stderr(&before)
    );
    let table = stdout(&before);
    assert!(
        table.starts_with("DATA DIR") && table.lines().count() == 4,
        "{table}"
    );
    println!("$ doltctl ps\n{table}");

    // A dry run says what it would stop and stops nothing.
    let dry = doltctl_anywhere(
        registry,
        elsewhere.path(),
        &["gc", "--idle", "1s", "--dry-run"],
    );
    assert!(dry.status.success(), "{}", stderr(&dry));
    let said = stdout(&dry);
    println!("$ doltctl gc --idle 1s --dry-run\n{said}");
    assert_eq!(said.matches("would stop").count(), 2, "{said}");
    assert!(orphan_server.is_running());
    assert!(idle.state().unwrap().is_ready());
    assert_eq!(ps_rows(registry, elsewhere.path()).len(), 3);

    let gc = doltctl_anywhere(registry, elsewhere.path(), &["gc", "--idle", "1s"]);
    assert!(gc.status.success(), "{}", stderr(&gc));
    let said = stdout(&gc);
    println!("$ doltctl gc --idle 1s\n{said}");
    let dir_of = |e: &TestEnv| std::fs::canonicalize(&e.data_dir).unwrap();
    let line_of = |e: &TestEnv| {
        said.lines()
            .find(|l| l.contains(dir_of(e).to_str().unwrap()))
            .map(str::to_string)
    };
    assert!(line_of(&orphan).is_some_and(|l| l.starts_with("stopped") && l.contains("orphaned")));
    assert!(line_of(&idle).is_some_and(|l| l.starts_with("stopped") && l.contains("auto-started")));
    assert!(line_of(&busy).is_none(), "{said}");
    assert!(!orphan_server.is_running(), "the orphan still runs");
    assert!(idle.dolt_servers().is_empty(), "the idle server still runs");
    assert!(
        busy.state().unwrap().is_ready(),
        "the busy server was stopped"
    );
    assert!(
        doltctl::internals::is_alive(foreign_pid),
        "the foreign server was stopped"
    );
    assert_eq!(foreign.dolt_servers().len(), 1);

    let after = doltctl_anywhere(registry, elsewhere.path(), &["ps"]);
    println!("$ doltctl ps\n{}", stdout(&after));
    let rows = ps_rows(registry, elsewhere.path());
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert!(row_of(&rows, &busy).is_some());

    // A clean stop removes the instance's registry entry; only the foreign file is left.
    rt.block_on(client.disconnect()).unwrap();
    busy.stop();
    let left = registry_files(registry);
    assert_eq!(
        left,
        vec![registry.join("ffffffffffffffff.json")],
        "{left:?}"
    );
}

#[test]
fn max_instances_1_reclaims_the_idle_auto_started_instance_before_the_next_auto_start() {
    let reg = tempfile::tempdir().unwrap();
    let registry = reg.path();
    let cap = "[client]\nmax_instances = 1";
    let first = env_in(registry, cap);
    let second = env_in(registry, cap);
    auto_start(&first);
    // Its supervisor has counted no client (so it is known to be idle).
    wait_until("a client count", Duration::from_secs(30), || {
        first.state().is_some_and(|s| s.clients == Some(0))
    });
    auto_start(&second);
    assert!(second.state().unwrap().is_ready());
    wait_until("the first to be stopped", Duration::from_secs(30), || {
        first.dolt_servers().is_empty()
    });
    let status = first.doltctl().arg("status").output().unwrap();
    assert_eq!(status.status.code(), Some(3), "{}", stdout(&status));
    let elsewhere = tempfile::tempdir().unwrap();
    let rows = ps_rows(registry, elsewhere.path());
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert!(row_of(&rows, &second).is_some());
}

#[test]
fn a_corrupt_registry_file_is_named_and_ps_still_answers() {
    let reg = tempfile::tempdir().unwrap();
    let bad = reg.path().join("0123456789abcdef.json");
    std::fs::write(&bad, "not json at all").unwrap();
    let out = doltctl_anywhere(reg.path(), reg.path(), &["ps"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("no doltctl instances"),
        "{}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains(bad.to_str().unwrap()) && err.contains("delete it"),
        "{err}"
    );
    // Reported, not removed: it is not ours to delete.
    assert!(bad.exists());
    let json = doltctl_anywhere(reg.path(), reg.path(), &["ps", "--json"]);
    assert_eq!(stdout(&json).trim(), "[]");
}

#[test]
fn max_instances_0_is_a_config_error_naming_the_key() {
    let env = TestEnv::with_config("[client]\nmax_instances = 0");
    let out = env.doltctl().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("[client] max_instances must be at least 1"),
        "{err}"
    );
}

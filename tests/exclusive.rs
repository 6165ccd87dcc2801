//! `doltctl exclusive` against the real dolt binary: the plain dolt CLI on the data dir while
//! library clients keep querying. Its own test binary, because it sets DOLTCTL_BIN
//! process-wide (the library runs supervisors with it).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use doltctl::Client;
use mysql_async::prelude::Queryable;
use nix::sys::signal::Signal;

/// One query as a client saw it.
#[derive(Debug, Clone)]
struct Seen {
    /// When it was asked, since the test began.
    at: Duration,
    took: Duration,
    result: Result<i64, String>,
}

/// How a client thread queries.
#[derive(Debug, Clone, Copy)]
enum Way {
    /// `Client::execute` (a connection per call, retried).
    Execute,
    /// `Client::with_retry`.
    WithRetry,
    /// `ClientPool::get_conn`, then a plain query on the pooled connection.
    Pool,
}

/// A client thread: `SELECT COUNT(*) FROM t` in a loop until `stop`, through the library with
/// auto-start on.
fn client_thread(
    cfg: doltctl::Config,
    way: Way,
    t0: Instant,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Vec<Seen>> {
    std::thread::spawn(move || {
        block_on(async move {
            let client = Client::from_config(cfg).database("app");
            let pool = match way {
                Way::Pool => Some(client.pool().await.unwrap()),
                _ => None,
            };
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let start = Instant::now();
                let result = match way {
                    Way::Execute => client
                        .execute(&["SELECT COUNT(*) FROM t".into()])
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|sets| {
                            let v = sets[0].rows[0][0].clone();
                            mysql_async::from_value_opt::<i64>(v).map_err(|e| e.to_string())
                        }),
                    Way::WithRetry => client
                        .with_retry(|c| {
                            Box::pin(async move {
                                c.query_first("SELECT COUNT(*) FROM t")
                                    .await
                                    .map(|v| v.unwrap_or(-1))
                            })
                        })
                        .await
                        .map_err(|e| e.to_string()),
                    Way::Pool => match pool.as_ref().unwrap().get_conn().await {
                        Ok(mut c) => c
                            .query_first("SELECT COUNT(*) FROM t")
                            .await
                            .map(|v| v.unwrap_or(-1))
                            .map_err(|e| format!("query on a pooled connection: {e}")),
                        Err(e) => Err(e.to_string()),
                    },
                };
                if result.is_ok() {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                seen.push(Seen {
                    at: start.duration_since(t0),
                    took: start.elapsed(),
                    result,
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if let Some(p) = pool {
                p.disconnect().await.unwrap();
            }
            seen
        })
    })
}

/// How many dolt servers of this test run, counted by process group: each server doltctl
/// launches leads a group of its own. (Dolt 2.2.0's server forks a short-lived child at
/// startup that carries the server's command line until it execs: it is in the server's group,
/// and is not a second server.)
fn server_groups(dir: &std::path::Path) -> usize {
    let needle = dir.to_string_lossy().into_owned();
    let mut groups = std::collections::HashSet::new();
    for p in procfs::process::all_processes().unwrap().flatten() {
        // The group first, then the command line: a process that execs in between is no
        // longer a server by its command line.
        let (Ok(stat), Ok(cmd)) = (p.stat(), p.cmdline()) else {
            continue;
        };
        if doltctl::internals::is_dolt_server(&cmd) && cmd.iter().any(|a| a.contains(&needle)) {
            groups.insert(stat.pgrp);
        }
    }
    groups.len()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// What one client saw, as a report line, and its waits (queries slower than 100 ms).
fn report(name: &str, seen: &[Seen]) -> String {
    let errors: Vec<&Seen> = seen.iter().filter(|s| s.result.is_err()).collect();
    let waits: Vec<String> = seen
        .iter()
        .filter(|s| s.took > Duration::from_millis(100))
        .map(|s| format!("at {} waited {}", ms(s.at), ms(s.took)))
        .collect();
    let mut values: Vec<i64> = seen.iter().filter_map(|s| s.result.clone().ok()).collect();
    values.dedup();
    format!(
        "{name}: {} queries, {} errors{}, answers {values:?}, max {}, waits: [{}]",
        seen.len(),
        errors.len(),
        errors
            .iter()
            .map(|s| format!(" ({} at {})", s.result.clone().unwrap_err(), ms(s.at)))
            .collect::<String>(),
        ms(seen.iter().map(|s| s.took).max().unwrap_or_default()),
        waits.join(", ")
    )
}

/// `dolt table import` and `dolt gc` run by `doltctl exclusive` while three library clients
/// query in a loop: the commands succeed (they would fail with "database is read only" beside
/// a server), there is never more than one server, and the clients only see answers (the
/// count before or after the whole import, never part of it) or waits.
#[test]
fn dolt_import_and_gc_run_exclusively_while_clients_keep_querying() {
    use_built_doltctl();
    // Waits must stay waits on a loaded machine too, where the import may take longer than
    // the default 6 s window (the other test covers a wait past the window).
    let env = TestEnv::with_config("[client]\nretry_window = \"30s\"\n");
    env.start();
    env.sql("create database app; create table app.t (id int primary key, v varchar(40)); insert into app.t values (0, 'zero')");
    let rows = 50_000;
    let csv = env.dir.path().join("rows.csv");
    let mut text = String::from("id,v\n");
    for i in 1..=rows {
        text.push_str(&format!("{i},value number {i}\n"));
    }
    std::fs::write(&csv, text).unwrap();

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    // Servers of this test, sampled all along.
    let most_servers = Arc::new(AtomicUsize::new(0));
    let monitor = {
        let (stop, most) = (stop.clone(), most_servers.clone());
        let dir = env.dir.path().to_path_buf();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let n = server_groups(&dir);
                most.fetch_max(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let cfg = env.library_config();
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = [Way::Execute, Way::WithRetry, Way::Pool]
        .into_iter()
        .map(|w| {
            let c = client_thread(cfg.clone(), w, t0, stop.clone(), answered.clone());
            (w, c)
        })
        .collect();
    // The clients answer before, between and after the exclusive runs: 15 more answers each
    // time (about 5 per client).
    let answers_grow = |what: &str| {
        let from = answered.load(Ordering::SeqCst);
        wait_until(what, Duration::from_secs(60), || {
            answered.load(Ordering::SeqCst) >= from + 15
        });
    };
    answers_grow("answers before the import");

    let first = env.server();
    let run = |args: &[&str]| {
        let start = t0.elapsed();
        let out = env.doltctl().args(args).output().unwrap();
        let took = t0.elapsed() - start;
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (
            start,
            took,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let csv_arg = csv.to_string_lossy().into_owned();
    let import = run(&[
        "exclusive",
        "-d",
        "app",
        "--",
        "dolt",
        "table",
        "import",
        "-u",
        "t",
        &csv_arg,
    ]);
    assert!(
        import.2.contains("Import completed successfully"),
        "{}",
        import.2
    );
    let second = env.server();
    assert_ne!(
        second.pid, first.pid,
        "the server was stopped and started again"
    );
    answers_grow("answers after the import");
    let gc = run(&["exclusive", "-d", "app", "--", "dolt", "gc"]);
    let third = env.server();
    assert_ne!(third.pid, second.pid);
    answers_grow("answers after the gc");
    stop.store(true, Ordering::SeqCst);
    monitor.join().unwrap();
    let seen: Vec<(Way, Vec<Seen>)> = clients
        .into_iter()
        .map(|(w, h)| (w, h.join().unwrap()))
        .collect();

    eprintln!(
        "TIMELINE exclusive (t=0: clients start):\n  import: exclusive ran from {} for {} (server pid {} -> {})\n  gc:     exclusive ran from {} for {} (server pid {} -> {})\n  at most {} dolt server(s) at any sample",
        ms(import.0),
        ms(import.1),
        first.pid,
        second.pid,
        ms(gc.0),
        ms(gc.1),
        second.pid,
        third.pid,
        most_servers.load(Ordering::SeqCst)
    );
    for (w, s) in &seen {
        eprintln!("  {}", report(&format!("{w:?}"), s));
    }

    assert_eq!(most_servers.load(Ordering::SeqCst), 1, "never two servers");
    for (w, s) in &seen {
        assert!(s.len() > 10, "{w:?} queried: {s:?}");
        for q in s {
            match &q.result {
                // The whole import or nothing of it.
                Ok(n) => assert!(*n == 1 || *n == rows + 1, "{w:?} saw {n} rows"),
                Err(e) => {
                    assert!(!e.contains("read only"), "{w:?}: {e}");
                    // Library calls wait through it; only a query already running on a pooled
                    // connection when the server stopped may lose that connection.
                    assert!(
                        matches!(w, Way::Pool) && e.starts_with("query on a pooled connection"),
                        "{w:?} got an error instead of a wait: {e}"
                    );
                }
            }
        }
        let last = s.last().unwrap().result.clone();
        assert_eq!(last, Ok(rows + 1), "{w:?}");
    }
    assert!(
        !env.log().to_lowercase().contains("read only"),
        "{}",
        env.log()
    );
    env.stop();
}

/// A client that waits longer than its retry_window for an exclusive command is told who
/// paused the server; `start` and `sql` say the same. The command's exit code and signals go
/// through, and the server runs again afterwards.
#[test]
fn clients_are_told_who_paused_the_server_and_exit_codes_pass_through() {
    use_built_doltctl();
    let env = TestEnv::with_config("[client]\nretry_window = \"1s\"\n");
    env.start();
    let before = env.server();
    let mut ex = env
        .doltctl_std()
        .args(["exclusive", "--", "sleep", "30"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let marker = env.data_dir.join(".doltctl/exclusive.json");
    wait_until(
        "the exclusive run to stop the server",
        Duration::from_secs(30),
        || marker.is_file() && !before.is_running(),
    );
    let want = format!(
        "the server for {} is paused for an exclusive command (pid {}: sleep 30); it starts again when that ends",
        std::fs::canonicalize(&env.data_dir).unwrap().display(),
        ex.id()
    );
    let t = Instant::now();
    let e = block_on(Client::from_config(env.library_config()).execute(&["SELECT 1".into()]))
        .unwrap_err()
        .to_string();
    let waited = t.elapsed();
    assert!(e.contains(&want), "{e}");
    assert!(waited >= Duration::from_millis(900), "waited {waited:?}");
    for args in [&["start"][..], &["sql", "-q", "select 1"]] {
        let out = env.doltctl().args(args).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&want), "{args:?}: {stderr}");
    }
    assert!(env.dolt_servers().is_empty(), "{:?}", env.dolt_servers());
    // status says who paused it.
    let out = env.doltctl().args(["status", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exclusive"]["process"]["pid"], ex.id(), "{v:#}");
    assert_eq!(v["exclusive"]["command"], "sleep 30");
    let out = env.doltctl().arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "paused:     for an exclusive command (pid {}: sleep 30)",
            ex.id()
        )),
        "{text}"
    );
    // SIGTERM to doltctl reaches the command; doltctl reports it as a shell would.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(ex.id() as i32), Signal::SIGTERM).unwrap();
    let status = ex.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    assert!(!marker.exists(), "the record is removed");
    let after = env.server();
    assert!(after.is_running() && after.pid != before.pid);
    let out = env.doltctl().args(["status", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["exclusive"].is_null(), "{v:#}");
    eprintln!(
        "a client waiting on the paused server gave up after {} with: {e}",
        ms(waited)
    );

    // Exit codes: the command's own, 127 when not found; the server is started again each time.
    env.doltctl()
        .args(["exclusive", "--", "sh", "-c", "exit 7"])
        .assert()
        .code(7);
    env.doltctl()
        .args(["exclusive", "--", "no-such-command-doltctl"])
        .assert()
        .code(127);
    assert!(env.server().is_running());
    env.stop();

    // Nothing running: nothing is started afterwards.
    env.doltctl()
        .args(["exclusive", "--", "true"])
        .assert()
        .success();
    assert!(env.dolt_servers().is_empty());
}

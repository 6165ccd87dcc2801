//! Crashes: kill -9 of dolt under writers, kill -9 of the supervisor while clients arrive,
//! SIGSTOP of dolt.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::common::{median, ms};
use crate::{ready_other_than, sandbox, state, url, Watch};

pub async fn kill_dolt_under_writers(doltctl: &Path, dolt: &Path, rounds: usize) -> bool {
    const WRITERS: usize = 4;
    let (sb, cfg, port) = sandbox(dolt, "");
    sb.doltctl(doltctl, &cfg, &["start"]);
    sb.doltctl(
        doltctl,
        &cfg,
        &[
            "sql",
            "-q",
            "create table app.t (id int primary key, w int)",
        ],
    );
    let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let watch = Watch::new(sb.tmp.path());
    let mut tasks = Vec::new();
    for w in 0..WRITERS as i64 {
        let (acked, stop) = (acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut id = w;
            let mut conn: Option<mysql_async::Conn> = None;
            while !stop.load(Ordering::SeqCst) {
                if conn.is_none() {
                    conn = mysql_async::Conn::from_url(url(port)).await.ok();
                    if conn.is_none() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                }
                let c = conn.as_mut().expect("connection");
                // INSERT IGNORE: an insert whose ack was lost may have committed; retrying
                // the same id must not fail on it.
                match c
                    .exec_drop("insert ignore into t values (?, ?)", (id, w))
                    .await
                {
                    Ok(()) => {
                        acked.lock().unwrap().push(id);
                        id += WRITERS as i64;
                    }
                    Err(_) => conn = None,
                }
            }
        }));
    }
    let mut heals = Vec::new();
    let mut unhealed = 0;
    let data = &sb.data;
    let mut pid = ready_other_than(data, None, Duration::from_secs(30)).map(|r| r.0);
    for _ in 0..rounds {
        std::thread::sleep(Duration::from_millis(300));
        let Some(p) = pid else { break };
        let t = Instant::now();
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        match ready_other_than(data, Some(p), Duration::from_secs(30)) {
            Some((n, _)) => {
                heals.push(t.elapsed());
                pid = Some(n);
            }
            None => {
                unhealed += 1;
                pid = None;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    let (servers, _) = watch.finish();
    let acked = acked.lock().unwrap().clone();
    let present: Vec<i64> = match mysql_async::Conn::from_url(url(port)).await {
        Ok(mut c) => c.query("select id from t").await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let present: std::collections::HashSet<i64> = present.into_iter().collect();
    let lost = acked.iter().filter(|id| !present.contains(id)).count();
    sb.doltctl(doltctl, &cfg, &["stop"]);
    let ok = unhealed == 0 && lost == 0 && servers <= 1 && !heals.is_empty();
    println!(
        "kill -9 dolt x{rounds} under {WRITERS} writers: healed {}/{rounds}, heal median {:.0} ms max {:.0} ms; acked rows {}, lost {lost}; most servers at once {servers}  {}",
        heals.len(),
        if heals.is_empty() { 0.0 } else { ms(median(&heals)) },
        heals.iter().max().map_or(0.0, |d| ms(*d)),
        acked.len(),
        if ok { "OK" } else { "FAIL" }
    );
    ok
}

pub fn kill_supervisor_while_clients_arrive(doltctl: &Path, dolt: &Path, rounds: usize) -> bool {
    const CLIENTS: usize = 4;
    let (sb, cfg, _) = sandbox(dolt, "");
    sb.doltctl(doltctl, &cfg, &["start"]);
    sb.doltctl(
        doltctl,
        &cfg,
        &["sql", "-q", "create table app.t (id int primary key)"],
    );
    sb.doltctl(doltctl, &cfg, &["stop"]);
    let watch = Watch::new(sb.tmp.path());
    let mut committed = Vec::new();
    let mut killed = 0;
    let mut next_id = 0;
    for _ in 0..rounds {
        // Clients arrive (each auto-starts if need be) while the supervisor is killed.
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                next_id += 1;
                let child = Command::new(doltctl)
                    .arg("--config")
                    .arg(&cfg)
                    .args([
                        "sql",
                        "-q",
                        &format!("insert into app.t values ({next_id})"),
                    ])
                    .envs(sb.env.iter().cloned())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("doltctl sql");
                (next_id, child)
            })
            .collect();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Some(sup) = state(&sb.data).and_then(|s| s.supervisor.clone()) {
                if sup.is_running() {
                    let _ = kill(Pid::from_raw(sup.pid), Signal::SIGKILL);
                    killed += 1;
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for (id, c) in clients {
            let out = c.wait_with_output().expect("wait");
            if out.status.success() {
                committed.push(id);
            } else if std::env::var_os("CHAOS_VERBOSE").is_some() {
                eprintln!(
                    "client {id} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
    // A last client brings the data dir under a supervisor again, and reads every row.
    let out = Command::new(doltctl)
        .arg("--config")
        .arg(&cfg)
        .args(["sql", "--json", "-q", "select id from app.t"])
        .envs(sb.env.iter().cloned())
        .output()
        .expect("doltctl sql");
    let (servers, supervisors) = watch.finish();
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<serde_json::Value> = serde_json::from_str(text.trim()).unwrap_or_default();
    let present: std::collections::HashSet<i64> =
        rows.iter().filter_map(|r| r["id"].as_i64()).collect();
    let lost = committed.iter().filter(|id| !present.contains(id)).count();
    let _ = Command::new(doltctl)
        .arg("--config")
        .arg(&cfg)
        .arg("stop")
        .envs(sb.env.iter().cloned())
        .output();
    let ok = out.status.success() && lost == 0 && servers <= 1 && supervisors <= 1;
    println!(
        "kill -9 supervisor x{killed} while {CLIENTS} clients auto-start: committed {}/{} inserts, lost {lost}; most servers at once {servers}, supervisors {supervisors}  {}",
        committed.len(),
        next_id,
        if ok { "OK" } else { "FAIL" }
    );
    ok
}

pub fn sigstop_dolt(doltctl: &Path, dolt: &Path, rounds: usize) -> bool {
    let (interval, timeout, max_missed) = (200u64, 200u64, 3u64);
    let extra = format!(
        "[health]\ninterval = \"{interval}ms\"\ntimeout = \"{timeout}ms\"\nmax_missed = {max_missed}\n"
    );
    let (sb, cfg, _) = sandbox(dolt, &extra);
    let t = Instant::now();
    sb.doltctl(doltctl, &cfg, &["start"]);
    let start = t.elapsed();
    let bound = Duration::from_millis((interval + timeout) * max_missed) + start * 2;
    let watch = Watch::new(sb.tmp.path());
    let mut times = Vec::new();
    let mut late = 0;
    let mut pid = ready_other_than(&sb.data, None, Duration::from_secs(30)).map(|r| r.0);
    for _ in 0..rounds {
        let Some(p) = pid else { break };
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        let _ = kill(Pid::from_raw(p), Signal::SIGSTOP);
        match ready_other_than(&sb.data, Some(p), Duration::from_secs(30)) {
            Some((n, _)) => {
                let d = t.elapsed();
                if d > bound || std::path::Path::new(&format!("/proc/{p}")).exists() {
                    late += 1;
                }
                times.push(d);
                pid = Some(n);
            }
            None => {
                late += 1;
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                pid = None;
            }
        }
    }
    let (servers, _) = watch.finish();
    sb.doltctl(doltctl, &cfg, &["stop"]);
    let ok = late == 0 && servers <= 1 && times.len() == rounds;
    println!(
        "SIGSTOP dolt x{rounds} (interval {interval} ms, timeout {timeout} ms, max_missed {max_missed}): replaced {}/{rounds}, median {:.0} ms max {:.0} ms, bound {:.0} ms; most servers at once {servers}  {}",
        times.len(),
        if times.is_empty() { 0.0 } else { ms(median(&times)) },
        times.iter().max().map_or(0.0, |d| ms(*d)),
        ms(bound),
        if ok { "OK" } else { "FAIL" }
    );
    ok
}

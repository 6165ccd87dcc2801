//! Crowds: many cold clients at once, and a long soak of clients coming and going.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::common::{median, ms, rss_kib};
use crate::{doltctl_out, sandbox, state, verdict, Watch};

/// `clients` processes run `doltctl sql -q "select 1"` at once on a stopped data dir: every
/// one is served, by exactly one server under exactly one supervisor.
pub fn cold_crowd(doltctl: &Path, dolt: &Path, clients: usize) -> bool {
    let (sb, cfg, _) = sandbox(dolt, "");
    let watch = Watch::new(sb.tmp.path());
    let t = Instant::now();
    let children: Vec<_> = (0..clients)
        .map(|_| {
            Command::new(doltctl)
                .arg("--config")
                .arg(&cfg)
                .args(["sql", "-q", "select 1"])
                .envs(sb.env.iter().cloned())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("doltctl sql")
        })
        .collect();
    // One waiter thread per client, so each one's own finish time is known.
    let waiters: Vec<_> = children
        .into_iter()
        .map(|c| {
            std::thread::spawn(move || {
                let out = c.wait_with_output().expect("wait");
                (t.elapsed(), out)
            })
        })
        .collect();
    let mut times = Vec::new();
    let mut failed = 0;
    for w in waiters {
        let (d, out) = w.join().expect("waiter");
        times.push(d);
        if !out.status.success() {
            failed += 1;
            if failed <= 3 {
                eprintln!(
                    "cold client failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
    let (servers, supervisors) = watch.finish();
    let restarts = state(&sb.data).map_or(0, |s| s.restarts);
    let _ = doltctl_out(&sb, doltctl, &cfg, &["stop"]);
    let ok = failed == 0 && servers == 1 && supervisors == 1 && restarts == 0;
    println!(
        "{clients} cold clients at once: served {}/{clients}, median {:.0} ms, slowest {:.0} ms; servers {servers}, supervisors {supervisors}, restarts {restarts}  {}",
        clients - failed,
        ms(median(&times)),
        times.iter().max().map_or(0.0, |d| ms(*d)),
        verdict(ok)
    );
    ok
}

/// Open file descriptors of a process.
fn fds(pid: i32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The supervisor's RSS and open files with the clients paused and none in flight: the least
/// of a few readings over half a second (a health probe or control-socket answer may be
/// under way at any one of them). The clients go on afterwards.
async fn quiet_reading(
    pid: i32,
    paused: &AtomicBool,
    active: &AtomicUsize,
) -> (Option<u64>, Option<usize>) {
    paused.store(true, Ordering::SeqCst);
    let t = Instant::now();
    while active.load(Ordering::SeqCst) > 0 && t.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (mut rss, mut files) = (None::<u64>, None::<usize>);
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rss = rss_kib(pid).map(|r| rss.map_or(r, |m| m.min(r)));
        files = fds(pid).map(|f| files.map_or(f, |m| m.min(f)));
    }
    paused.store(false, Ordering::SeqCst);
    (rss, files)
}

/// Clients connect, query and disconnect in a loop for `length` (through the library, which
/// asks the supervisor's control socket each time, and with raw connections that its health
/// and client-count probes see), with fast health checks so every per-probe cost repeats
/// often. After a warm-up, the supervisor's RSS may grow by less than 1 MiB and its open
/// files not at all; it must never restart dolt or drop a client.
pub async fn soak(doltctl: &Path, dolt: &Path, length: Duration) -> bool {
    const CLIENTS: usize = 4;
    let extra = "[health]\ninterval = \"100ms\"\ntimeout = \"2s\"\n";
    let (sb, cfg, _) = sandbox(dolt, extra);
    // An idle timeout far away: the supervisor counts client connections on every probe.
    let mut text = std::fs::read_to_string(&cfg).expect("config");
    text = text.replace("[server]\n", "[server]\nidle_timeout = \"1h\"\n");
    std::fs::write(&cfg, text).expect("config");
    let out = doltctl_out(&sb, doltctl, &cfg, &["start", "-q"]);
    assert!(
        out.status.success(),
        "start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let Some(sup) = state(&sb.data).and_then(|s| s.supervisor.clone()) else {
        println!("soak: no supervisor recorded  FAIL");
        return false;
    };
    let config = doltctl::Config::load(&cfg).expect("config");
    let client = doltctl::Client::from_config(config);
    let stop = Arc::new(AtomicBool::new(false));
    // Clients pause around each reading, so connections in flight are not counted as leaks.
    let paused = Arc::new(AtomicBool::new(false));
    let active = Arc::new(AtomicUsize::new(0));
    let (done, errors) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for n in 0..CLIENTS {
        let (client, stop, done, errors) =
            (client.clone(), stop.clone(), done.clone(), errors.clone());
        let (paused, active) = (paused.clone(), active.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if paused.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                // Half through the library (state lookup, control socket, retry), half raw.
                let r: Result<(), String> = async {
                    let mut c = if n % 2 == 0 {
                        client.conn().await.map_err(|e| e.to_string())?
                    } else {
                        let info = client.running().map_err(|e| e.to_string())?;
                        let url = info.ok_or("no server")?.url();
                        mysql_async::Conn::from_url(url)
                            .await
                            .map_err(|e| e.to_string())?
                    };
                    let one: Option<i64> =
                        c.query_first("select 1").await.map_err(|e| e.to_string())?;
                    c.disconnect().await.map_err(|e| e.to_string())?;
                    (one == Some(1)).then_some(()).ok_or("wrong answer".into())
                }
                .await;
                active.fetch_sub(1, Ordering::SeqCst);
                match r {
                    Ok(()) => done.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::SeqCst) < 3 {
                            eprintln!("soak client: {e}");
                        }
                        0
                    }
                };
            }
        }));
    }
    let warm_up = (length / 10).clamp(Duration::from_secs(3), Duration::from_secs(30));
    tokio::time::sleep(warm_up).await;
    let (rss0, fd0) = quiet_reading(sup.pid, &paused, &active).await;
    let mut peak_fd = fd0.unwrap_or(0);
    let t = Instant::now();
    while t.elapsed() < length {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak_fd = peak_fd.max(fds(sup.pid).unwrap_or(0));
    }
    let (rss1, fd1) = quiet_reading(sup.pid, &paused, &active).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    let st = state(&sb.data);
    let same = st
        .as_ref()
        .and_then(|s| s.supervisor.as_ref())
        .is_some_and(|p| p.pid == sup.pid);
    let restarts = st.map_or(u32::MAX, |s| s.restarts);
    let _ = doltctl_out(&sb, doltctl, &cfg, &["stop"]);
    let (Some(rss0), Some(rss1), Some(fd0), Some(fd1)) = (rss0, rss1, fd0, fd1) else {
        println!("soak: the supervisor went away  FAIL");
        return false;
    };
    let growth = rss1 as i64 - rss0 as i64;
    let (done, errors) = (done.load(Ordering::SeqCst), errors.load(Ordering::SeqCst));
    let ok = growth < 1024 && fd1 <= fd0 && same && restarts == 0 && errors == 0 && done > 0;
    println!(
        "soak {:.0} s after {:.0} s warm-up, {CLIENTS} clients: {done} connections ({:.0}/s), errors {errors}; supervisor RSS {rss0} -> {rss1} KiB ({growth:+} KiB), open files {fd0} -> {fd1} (peak {peak_fd}); restarts {restarts}  {}",
        length.as_secs_f64(),
        warm_up.as_secs_f64(),
        done as f64 / (length + warm_up).as_secs_f64(),
        verdict(ok)
    );
    ok
}

//! Reliability checks against real dolt (run through `scripts/chaos [ROUNDS] [SOAK]`). Each
//! scenario prints one line of figures and fails (exit 1) when an invariant breaks:
//! - kill -9 of dolt under concurrent writers (ROUNDS kills): every crash healed, every
//!   acknowledged row present afterwards, never two servers on the data dir;
//! - kill -9 of the supervisor while clients arrive with auto-start (ROUNDS/5 kills): never
//!   two servers or two supervisors, every row a client saw committed present;
//! - SIGSTOP of dolt (ROUNDS/10): wedged and replaced within `interval x max_missed + timeout`
//!   plus a start;
//! - 200 cold client processes at once on a stopped data dir: all served, one server, one
//!   supervisor;
//! - SIGHUP and SIGTERM storms at the supervisor during start, running and backoff: it ends
//!   or keeps running exactly as documented, and leaves no server behind;
//! - a soak (SOAK long) of clients connecting and disconnecting: the supervisor's RSS grows
//!   by less than 1 MiB and its open file count not at all.
//!
//! Usage: chaos DOLTCTL_BIN DOLT_BIN [ROUNDS] [SOAK]   (defaults: 100, 10m); CHAOS_ONLY names
//! the scenarios to run (writers, supervisor, sigstop, crowd, storms, soak), comma-separated.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use doltctl::State;

#[path = "../common/mod.rs"]
mod common;
mod crashes;
mod crowds;
mod signals;

use common::{free_port, Sandbox};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: chaos DOLTCTL_BIN DOLT_BIN [ROUNDS] [SOAK]");
        std::process::exit(2);
    }
    let doltctl = PathBuf::from(&args[1]);
    let dolt = PathBuf::from(&args[2]);
    let rounds: usize = match args.get(3).map(|r| r.parse()) {
        None => 100,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("chaos: ROUNDS must be a positive number, e.g. 100");
            std::process::exit(2);
        }
    };
    let soak = match args.get(4).map(|s| humantime::parse_duration(s)) {
        None => Duration::from_secs(600),
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            eprintln!("chaos: SOAK must be a duration such as 10m or 30s: {e}");
            std::process::exit(2);
        }
    };
    // CHAOS_ONLY=storms,soak runs just those scenarios.
    let only = std::env::var("CHAOS_ONLY").unwrap_or_default();
    let on = |name: &str| only.is_empty() || only.split(',').any(|o| o.trim() == name);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut ok = true;
    if on("writers") {
        ok &= rt.block_on(crashes::kill_dolt_under_writers(&doltctl, &dolt, rounds));
    }
    if on("supervisor") {
        ok &= crashes::kill_supervisor_while_clients_arrive(&doltctl, &dolt, (rounds / 5).max(1));
    }
    if on("sigstop") {
        ok &= crashes::sigstop_dolt(&doltctl, &dolt, (rounds / 10).max(2));
    }
    if on("crowd") {
        ok &= crowds::cold_crowd(&doltctl, &dolt, 200);
    }
    if on("storms") {
        ok &= signals::storms(&doltctl, &dolt);
    }
    if on("soak") {
        ok &= rt.block_on(crowds::soak(&doltctl, &dolt, soak));
    }
    if !ok {
        eprintln!("chaos: an invariant broke (see above)");
        std::process::exit(1);
    }
}

/// Each round's server stays up longer than this before it is killed, so every kill is the
/// crash of a server that stayed up (relaunched at once), not a crash loop.
pub const RESTART: &str = "[restart]\nstable_after = \"250ms\"\nmax_failures = 1000\n";

/// A sandbox with [`RESTART`] and `extra` appended to its config (fast health checks and the
/// like).
pub fn sandbox(dolt: &Path, extra: &str) -> (Sandbox, PathBuf, u16) {
    let sb = Sandbox::new(dolt);
    let port = free_port();
    let cfg = sb.config(port);
    let mut text = std::fs::read_to_string(&cfg).expect("config");
    // `extra` may bring its own restart policy.
    if !extra.contains("[restart]") {
        text.push_str(RESTART);
    }
    text.push_str(extra);
    std::fs::write(&cfg, text).expect("config");
    (sb, cfg, port)
}

pub fn state(data: &Path) -> Option<State> {
    State::read(&data.join(".doltctl/state.json"))
        .ok()
        .flatten()
}

/// Waits until the state says ready with a server other than `old`; its pid.
pub fn ready_other_than(data: &Path, old: Option<i32>, limit: Duration) -> Option<(i32, Duration)> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Some(s) = state(data) {
            if s.is_ready() {
                if let Some(p) = s.server().map(|p| p.pid).filter(|p| Some(*p) != old) {
                    return Some((p, t.elapsed()));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// Processes whose command line has `arg` and an argument under `dir`, not counting forks
/// of such a process (a parent that matches too: dolt's own children, or a supervisor's fork
/// that has not exec'd dolt yet).
pub fn count(dir: &Path, arg: &str) -> usize {
    let dir = dir.to_string_lossy();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let matching: Vec<(u32, u32)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<_> = c.split(|b| *b == 0).map(String::from_utf8_lossy).collect();
            args.iter().any(|a| a == arg) && args.iter().any(|a| a.contains(dir.as_ref()))
        })
        .map(|pid| (pid, parent(pid)))
        .collect();
    matching
        .iter()
        .filter(|(_, ppid)| !matching.iter().any(|(p, _)| p == ppid))
        .count()
}

/// The parent pid, from `/proc/PID/stat` (after the command name in parentheses); 0 if gone.
fn parent(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples the server and supervisor counts every few ms until told to stop; the maxima.
pub struct Watch {
    stop: Arc<AtomicBool>,
    servers: Arc<AtomicUsize>,
    supervisors: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    pub fn new(dir: &Path) -> Watch {
        let (stop, servers, supervisors) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (s, sv, su, dir) = (
            stop.clone(),
            servers.clone(),
            supervisors.clone(),
            dir.to_path_buf(),
        );
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                sv.fetch_max(count(&dir, "sql-server"), Ordering::SeqCst);
                su.fetch_max(count(&dir, "run"), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Watch {
            stop,
            servers,
            supervisors,
            thread: Some(thread),
        }
    }

    /// (most servers seen at once, most supervisors seen at once)
    pub fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.servers.load(Ordering::SeqCst),
            self.supervisors.load(Ordering::SeqCst),
        )
    }
}

pub fn url(port: u16) -> String {
    format!("mysql://root@127.0.0.1:{port}/app")
}

/// Runs `doltctl --config CFG ARGS...` with the sandbox's environment; its output.
pub fn doltctl_out(
    sb: &Sandbox,
    doltctl: &Path,
    cfg: &Path,
    args: &[&str],
) -> std::process::Output {
    std::process::Command::new(doltctl)
        .arg("--config")
        .arg(cfg)
        .args(args)
        .envs(sb.env.iter().cloned())
        .output()
        .expect("doltctl")
}

/// Waits until `cond` holds, at most `limit`; whether it did.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    cond()
}

/// The verdict at the end of a scenario's line.
pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "OK"
    } else {
        "FAIL"
    }
}

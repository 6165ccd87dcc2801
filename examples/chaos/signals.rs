//! Signal storms at the supervisor, as README's "Stopping" and "Hang-ups" document them: a
//! detached supervisor ignores SIGHUP in every phase; SIGTERM in any phase stops the server
//! and ends the supervisor, however many arrive; a foreground `doltctl run` takes SIGHUP as
//! SIGTERM. No storm may leave a server (or a supervisor) behind.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use doltctl::Phase;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::common::Sandbox;
use crate::{count, doltctl_out, sandbox, state, verdict, wait_for};

/// Signals back to back, 1 ms apart, so they land in several phases of the machine.
const STORM: usize = 50;

/// Slow backoff, so a storm can hit it; crashes of a server that just became ready count
/// as quick ones.
const BACKOFF: &str = "[restart]\ninitial_backoff = \"3s\"\nstable_after = \"60s\"\n";

fn storm(pid: i32, sig: Signal) {
    for _ in 0..STORM {
        let _ = kill(Pid::from_raw(pid), sig);
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
}

fn ready(sb: &Sandbox) -> Option<(i32, i32)> {
    let s = state(&sb.data).filter(|s| s.is_ready())?;
    Some((s.supervisor.as_ref()?.pid, s.server()?.pid))
}

/// The supervisor of a detached `start --wait=false`.
fn start_detached(sb: &Sandbox, doltctl: &Path, cfg: &Path) -> Option<i32> {
    let out = doltctl_out(sb, doltctl, cfg, &["start", "--wait=false"]);
    if !out.status.success() {
        eprintln!("start: {}", String::from_utf8_lossy(&out.stderr).trim());
        return None;
    }
    state(&sb.data)?.supervisor.map(|p| p.pid)
}

/// After a supervisor should have ended: it did, and no server or supervisor of the data
/// dir is left.
fn ended_clean(sb: &Sandbox, supervisor: i32, what: &str) -> bool {
    let gone = wait_for(Duration::from_secs(30), || !alive(supervisor));
    let servers = count(sb.tmp.path(), "sql-server");
    let supervisors = count(sb.tmp.path(), "run");
    let ok = gone && servers == 0 && supervisors == 0;
    if !ok {
        eprintln!("{what}: supervisor gone {gone}, servers left {servers}, supervisors left {supervisors}");
    }
    ok
}

/// Kills the running server twice (the second crash of a server that just became ready
/// waits `initial_backoff`), and waits for the backoff phase.
fn into_backoff(sb: &Sandbox) -> bool {
    for _ in 0..2 {
        let Some((_, server)) = ({
            let mut r = None;
            wait_for(Duration::from_secs(30), || {
                r = ready(sb);
                r.is_some()
            });
            r
        }) else {
            return false;
        };
        let _ = kill(Pid::from_raw(server), Signal::SIGKILL);
        wait_for(Duration::from_secs(10), || {
            state(&sb.data).is_some_and(|s| s.server().is_none_or(|p| p.pid != server))
        });
    }
    wait_for(Duration::from_secs(10), || {
        state(&sb.data).is_some_and(|s| s.kind() == Phase::Backoff)
    })
}

pub fn storms(doltctl: &Path, dolt: &Path) -> bool {
    let t = Instant::now();
    let mut checks: Vec<(&str, bool)> = Vec::new();

    // SIGHUP at a detached supervisor: starting, running, backoff. It keeps going.
    let (sb, cfg, _) = sandbox(dolt, BACKOFF);
    let sup = start_detached(&sb, doltctl, &cfg);
    if let Some(sup) = sup {
        storm(sup, Signal::SIGHUP);
        let mut r = None;
        let up = wait_for(Duration::from_secs(30), || {
            r = ready(&sb);
            r.is_some()
        });
        checks.push((
            "SIGHUP while starting: ready, same supervisor",
            up && r.is_some_and(|(s, _)| s == sup),
        ));
        if let Some((_, server)) = r {
            storm(sup, Signal::SIGHUP);
            let still = ready(&sb) == Some((sup, server)) && alive(server);
            checks.push(("SIGHUP while running: same supervisor and server", still));
        }
        let backoff = into_backoff(&sb);
        storm(sup, Signal::SIGHUP);
        let back = wait_for(Duration::from_secs(30), || {
            ready(&sb).is_some_and(|(s, _)| s == sup)
        });
        checks.push((
            "SIGHUP in backoff: ready again, same supervisor",
            backoff && back,
        ));
        // SIGTERM in backoff ends it.
        let backoff = into_backoff(&sb);
        storm(sup, Signal::SIGTERM);
        checks.push((
            "SIGTERM in backoff: ended, nothing left",
            backoff && ended_clean(&sb, sup, "SIGTERM in backoff"),
        ));
    } else {
        checks.push(("start", false));
    }
    let _ = doltctl_out(&sb, doltctl, &cfg, &["stop"]);

    // SIGTERM at a detached supervisor right after it recorded itself (launching, starting).
    let (sb, cfg, _) = sandbox(dolt, "");
    match start_detached(&sb, doltctl, &cfg) {
        Some(sup) => {
            storm(sup, Signal::SIGTERM);
            checks.push((
                "SIGTERM while starting: ended, nothing left",
                ended_clean(&sb, sup, "SIGTERM while starting"),
            ));
        }
        None => checks.push(("start", false)),
    }
    // ...and while running; then SIGINT the same way.
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let out = doltctl_out(&sb, doltctl, &cfg, &["start", "-q"]);
        match ready(&sb).filter(|_| out.status.success()) {
            Some((sup, _)) => {
                storm(sup, sig);
                let name = if sig == Signal::SIGTERM {
                    "SIGTERM while running: ended, nothing left"
                } else {
                    "SIGINT while running: ended, nothing left"
                };
                checks.push((name, ended_clean(&sb, sup, name)));
            }
            None => checks.push(("start", false)),
        }
    }

    // A foreground `doltctl run`: SIGHUP (its terminal closed) stops it, in start and running.
    for during_start in [true, false] {
        let mut child = Command::new(doltctl)
            .arg("--config")
            .arg(&cfg)
            .arg("run")
            .envs(sb.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("doltctl run");
        let pid = child.id() as i32;
        let name = if during_start {
            "foreground run, SIGHUP while starting: exit 0, nothing left"
        } else {
            "foreground run, SIGHUP while running: exit 0, nothing left"
        };
        if during_start {
            wait_for(Duration::from_secs(10), || {
                state(&sb.data)
                    .and_then(|s| s.supervisor)
                    .is_some_and(|p| p.pid == pid)
            });
        } else {
            wait_for(Duration::from_secs(30), || {
                ready(&sb).is_some_and(|(s, _)| s == pid)
            });
        }
        storm(pid, Signal::SIGHUP);
        let mut status = None;
        wait_for(Duration::from_secs(30), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let ok = status.is_some_and(|s| s.success()) && ended_clean(&sb, pid, name);
        if !ok {
            eprintln!("{name}: exit {status:?}");
        }
        checks.push((name, ok));
    }
    let _ = doltctl_out(&sb, doltctl, &cfg, &["stop"]);

    let failed: Vec<_> = checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| *n)
        .collect();
    let ok = failed.is_empty();
    println!(
        "signal storms ({STORM} signals each, {} cases in {:.1} s): {} passed{}  {}",
        checks.len(),
        t.elapsed().as_secs_f64(),
        checks.len() - failed.len(),
        if ok {
            String::new()
        } else {
            format!("; failed: {}", failed.join("; "))
        },
        verdict(ok)
    );
    ok
}

//! Process identity from `/proc`: a pid alone is never trusted, because pids are reused.
//! A recorded process is "the same" only if it is alive (not a zombie), its start time matches
//! and its command line is the recorded one. Only then may doltctl signal it.
//!
//! `/proc` is read through the `procfs` crate. Each process is opened once (a directory handle
//! on `/proc/PID`), and every file of one identity is read through that handle, so a pid reused
//! between two reads cannot mix two processes. One piece stays hand-written: the command line
//! is read through that handle but decoded here, lossily, because `Process::cmdline()` rejects
//! an argv that is not UTF-8, which would make such a process look gone or unknown.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use procfs::process::Process;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A process as recorded by doltctl: pid, start time and command line, which together tell it
/// apart from a later process that reuses the pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    /// The process id.
    pub pid: i32,
    /// Start time in clock ticks after boot (field 22 of `/proc/PID/stat`).
    pub start_time: u64,
    /// The argv from `/proc/PID/cmdline`, decoded lossily, empty arguments dropped.
    pub cmdline: Vec<String>,
}

/// What `/proc/PID/stat` says about a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub pgrp: i32,
    pub start_time: u64,
}

impl ProcStat {
    pub fn read(pid: i32) -> Option<ProcStat> {
        ProcStat::of(&Process::new(pid).ok()?)
    }

    fn of(p: &Process) -> Option<ProcStat> {
        let s = p.stat().ok()?;
        Some(ProcStat {
            state: s.state,
            pgrp: s.pgrp,
            start_time: s.starttime,
        })
    }

    /// Zombies (`Z`) and dead tasks (`X`) are not alive, although `kill(pid, 0)` says so.
    fn is_live(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

pub fn cmdline(pid: i32) -> Option<Vec<String>> {
    read_cmdline(&Process::new(pid).ok()?)
}

/// The NUL-separated argv, decoded lossily; empty arguments are dropped (as `procfs` does).
fn read_cmdline(p: &Process) -> Option<Vec<String>> {
    let mut raw = Vec::new();
    p.open_relative("cmdline")
        .ok()?
        .read_to_end(&mut raw)
        .ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// A live process: exists and is not a zombie (`kill(pid, 0)` says zombies are alive).
pub fn is_alive(pid: i32) -> bool {
    ProcStat::read(pid).is_some_and(|s| s.is_live())
}

/// True if a live (non-zombie) process is a member of process group `pgid`.
pub fn group_has_members(pgid: i32) -> bool {
    let Ok(all) = procfs::process::all_processes() else {
        return false;
    };
    all.flatten()
        .filter_map(|p| ProcStat::of(&p))
        .any(|s| s.pgrp == pgid && s.is_live())
}

/// True if this process ignores `sig` (`SIG_IGN`, e.g. SIGHUP under `nohup`), as
/// `/proc/self/status` says.
pub fn ignores_signal(sig: Signal) -> bool {
    Process::myself()
        .and_then(|p| p.status())
        .is_ok_and(|s| s.sigign & (1u64 << ((sig as i32) - 1)) != 0)
}

/// Every live process whose identity can be read (others' processes included, as `/proc`
/// shows them), for finding processes by command line.
pub fn all() -> Vec<ProcessIdentity> {
    let Ok(procs) = procfs::process::all_processes() else {
        return vec![];
    };
    procs
        .flatten()
        .filter_map(|p| ProcessIdentity::of(p.pid()))
        .collect()
}

/// The working directory of a process (`/proc/PID/cwd`), when it may be read.
pub fn cwd(pid: i32) -> Option<PathBuf> {
    Process::new(pid).ok()?.cwd().ok()
}

pub fn describe(pid: i32) -> String {
    match cmdline(pid) {
        Some(c) if !c.is_empty() => c.join(" "),
        _ => "<unknown command>".into(),
    }
}

impl ProcessIdentity {
    /// Reads the identity of a live process now.
    pub fn of(pid: i32) -> Option<ProcessIdentity> {
        let p = Process::new(pid).ok()?;
        let stat = ProcStat::of(&p).filter(ProcStat::is_live)?;
        Some(ProcessIdentity {
            pid,
            start_time: stat.start_time,
            cmdline: read_cmdline(&p)?,
        })
    }

    /// The identity of this process.
    pub fn current() -> Option<ProcessIdentity> {
        ProcessIdentity::of(std::process::id() as i32)
    }

    /// True if the recorded process is still the one running under this pid.
    pub fn is_running(&self) -> bool {
        self.pid > 0 && ProcessIdentity::of(self.pid).as_ref() == Some(self)
    }

    /// The command line, arguments joined with spaces (for messages).
    pub fn command(&self) -> String {
        self.cmdline.join(" ")
    }

    /// Sends `sig` to the process, after checking its identity.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        if !self.is_running() {
            return Err(Error::Process {
                pid: self.pid,
                message: "is no longer the recorded process; not signalling it".into(),
            });
        }
        signal::kill(Pid::from_raw(self.pid), sig).map_err(|e| Error::Process {
            pid: self.pid,
            message: format!("kill({sig}): {e}"),
        })
    }

    /// Sends `sig` to the process group this process leads, after checking its identity and
    /// that it really leads a group (so a group of unrelated processes is never hit).
    pub fn signal_group(&self, sig: Signal) -> Result<()> {
        if !self.is_running() {
            return Err(Error::Process {
                pid: self.pid,
                message: "is no longer the recorded process; not signalling it".into(),
            });
        }
        match ProcStat::read(self.pid) {
            Some(s) if s.pgrp == self.pid => {
                signal::killpg(Pid::from_raw(self.pid), sig).map_err(|e| Error::Process {
                    pid: self.pid,
                    message: format!("killpg({sig}): {e}"),
                })
            }
            _ => self.signal(sig),
        }
    }

    /// Waits until the process is gone (or no longer this identity), polling finely.
    pub async fn wait_gone(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM to the group, wait `grace`, then SIGKILL the group. Returns once it is gone,
    /// its threads included (so its files, locks and sockets are closed).
    pub async fn terminate(&self, grace: Duration) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        let _ = self.signal_group(Signal::SIGTERM);
        if self.wait_gone(grace).await {
            wait_threads_gone(self.pid, Duration::from_secs(5)).await;
            return Ok(());
        }
        tracing::warn!(
            pid = self.pid,
            "still running after {grace:?}; sending SIGKILL"
        );
        let _ = self.signal_group(Signal::SIGKILL);
        if self.wait_gone(Duration::from_secs(10)).await {
            wait_threads_gone(self.pid, Duration::from_secs(5)).await;
            Ok(())
        } else {
            Err(Error::Process {
                pid: self.pid,
                message: "did not exit after SIGKILL".into(),
            })
        }
    }
}

/// True while a thread of `pid` other than an exited one runs. A multi-threaded process (dolt)
/// shows as a zombie as soon as its main thread exited, while its other threads may still be
/// closing its files: only when none is left are its locks and sockets released.
fn has_live_threads(pid: i32) -> bool {
    let Ok(tasks) = Process::new(pid).and_then(|p| p.tasks()) else {
        return false;
    };
    tasks
        .flatten()
        .any(|t| t.stat().is_ok_and(|s| s.state != 'Z' && s.state != 'X'))
}

/// Waits (at most `timeout`) until a process whose main thread is gone has no thread left.
/// Only waits: nothing is signalled, so a reused pid costs at most the wait.
async fn wait_threads_gone(pid: i32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while has_live_threads(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// True if this command line is a `dolt sql-server`.
pub fn is_dolt_server(cmd: &[String]) -> bool {
    let is_dolt = cmd
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n.to_string_lossy().starts_with("dolt"));
    is_dolt && cmd.iter().any(|a| a == "sql-server")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command name in `/proc/PID/stat` sits in parentheses and may itself contain spaces
    /// and parentheses: a process that renamed itself so is still read correctly.
    #[test]
    fn stat_of_a_process_with_parens_in_its_name_is_read() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "printf 'we (ird) name' > /proc/self/comm; sleep 30 & wait",
            ])
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Process::new(pid).and_then(|p| p.stat()).unwrap().comm != "we (ird) name" {
            assert!(
                Instant::now() < deadline,
                "child {pid} did not rename itself within 10s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let stat = ProcStat::read(pid).unwrap();
        let _ = nix::sys::signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = child.wait();
        assert_eq!(stat.pgrp, pid);
        assert!(stat.is_live(), "{stat:?}");
        assert!(stat.start_time > 0, "{stat:?}");
    }

    #[test]
    fn own_identity_is_running() {
        let me = ProcessIdentity::current().unwrap();
        assert!(me.is_running());
        let mut other = me.clone();
        other.start_time += 1;
        assert!(!other.is_running());
        let mut other = me.clone();
        other.cmdline.push("--something-else".into());
        assert!(!other.is_running());
    }

    /// A fake child (a shell that ignores SIGTERM, with a grandchild in its group) exercises
    /// the escalation: SIGTERM to the group is ignored, SIGKILL after the grace ends both.
    #[tokio::test]
    async fn fake_child_ignoring_sigterm_is_killed_with_its_group_after_grace() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 300 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let id = wait_for_exec(pid, "sh").await;
        // Signal only once the shell has installed its trap (SigIgn bit 15).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ignores_sigterm(pid) {
            assert!(
                Instant::now() < deadline,
                "shell {pid} did not ignore SIGTERM within 10s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t0 = Instant::now();
        id.terminate(Duration::from_millis(300)).await.unwrap();
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "SIGTERM alone ended it"
        );
        child.wait().unwrap();
        // The grandchild in the group is gone too (it got the same SIGKILL; its exit may lag
        // the shell's by a moment).
        let deadline = Instant::now() + Duration::from_secs(5);
        while group_has_members(pid) {
            assert!(
                Instant::now() < deadline,
                "process group {pid} still has live members 5s after SIGKILL"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A fake child that exits at once: terminate() of a process already gone is a no-op.
    #[tokio::test]
    async fn fake_child_that_exits_at_once_needs_no_signal() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = ProcessIdentity {
            pid: child.id() as i32,
            start_time: 0,
            cmdline: vec!["true".into()],
        };
        child.wait().unwrap();
        assert!(!id.is_running());
        id.terminate(Duration::from_millis(10)).await.unwrap();
        assert!(
            id.signal(Signal::SIGTERM).is_err(),
            "never signals an unverified pid"
        );
    }

    fn ignores_sigterm(pid: i32) -> bool {
        Process::new(pid)
            .and_then(|p| p.status())
            .is_ok_and(|s| s.sigign & (1 << (15 - 1)) != 0)
    }

    async fn wait_for_exec(pid: i32, first: &str) -> ProcessIdentity {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(id) = ProcessIdentity::of(pid) {
                if id.cmdline.first().is_some_and(|a| a == first) {
                    return id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "process {pid} did not show command {first:?} within 10s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn recognises_dolt_server_cmdlines() {
        let c = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_dolt_server(&c(&[
            "/usr/bin/dolt",
            "sql-server",
            "-P",
            "1"
        ])));
        assert!(!is_dolt_server(&c(&["/usr/bin/dolt", "sql"])));
        assert!(!is_dolt_server(&c(&["sleep", "sql-server"])));
    }
}

//! Process identity from `/proc`: a pid alone is never trusted, because pids are reused.
//! A recorded process is "the same" only if it is alive (not a zombie), its start time matches
//! and its command line is the recorded one. Only then may doltctl signal it.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    pub pid: i32,
    /// Start time in clock ticks after boot (field 22 of `/proc/PID/stat`).
    pub start_time: u64,
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
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&text)
    }
}

/// Parses `/proc/PID/stat`. The command name sits in parentheses and may itself contain
/// spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); field N is f[N - 3].
    Some(ProcStat {
        state: f.first()?.chars().next()?,
        pgrp: f.get(2)?.parse().ok()?,
        start_time: f.get(19)?.parse().ok()?,
    })
}

pub fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// A live process: exists and is not a zombie (`kill(pid, 0)` says zombies are alive).
pub fn is_alive(pid: i32) -> bool {
    matches!(ProcStat::read(pid), Some(s) if s.state != 'Z' && s.state != 'X')
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
        let stat = ProcStat::read(pid)?;
        if stat.state == 'Z' || stat.state == 'X' {
            return None;
        }
        Some(ProcessIdentity {
            pid,
            start_time: stat.start_time,
            cmdline: cmdline(pid)?,
        })
    }

    pub fn current() -> Option<ProcessIdentity> {
        ProcessIdentity::of(std::process::id() as i32)
    }

    /// True if the recorded process is still the one running under this pid.
    pub fn is_running(&self) -> bool {
        self.pid > 0 && ProcessIdentity::of(self.pid).as_ref() == Some(self)
    }

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

    /// SIGTERM to the group, wait `grace`, then SIGKILL the group. Returns once it is gone.
    pub async fn terminate(&self, grace: Duration) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        let _ = self.signal_group(Signal::SIGTERM);
        if self.wait_gone(grace).await {
            return Ok(());
        }
        tracing::warn!(
            pid = self.pid,
            "still running after {grace:?}; sending SIGKILL"
        );
        let _ = self.signal_group(Signal::SIGKILL);
        if self.wait_gone(Duration::from_secs(10)).await {
            Ok(())
        } else {
            Err(Error::Process {
                pid: self.pid,
                message: "did not exit after SIGKILL".into(),
            })
        }
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

    #[test]
    fn parse_stat_handles_parens_in_name() {
        let s =
            "123 (we (ird) name) S 1 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        let p = parse_stat(s).unwrap();
        assert_eq!(p.state, 'S');
        assert_eq!(p.pgrp, 123);
        assert_eq!(p.start_time, 98765);
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
        while !ignores_sigterm(pid) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t0 = std::time::Instant::now();
        id.terminate(Duration::from_millis(300)).await.unwrap();
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "SIGTERM alone ended it"
        );
        child.wait().unwrap();
        // The grandchild in the group is gone too.
        let group_left = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(|p| ProcStat::read(p).map(|s| (p, s)))
            .any(|(_, s)| s.pgrp == pid && s.state != 'Z');
        assert!(!group_left);
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
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (15 - 1)) != 0)
    }

    async fn wait_for_exec(pid: i32, first: &str) -> ProcessIdentity {
        loop {
            if let Some(id) = ProcessIdentity::of(pid) {
                if id.cmdline.first().is_some_and(|a| a == first) {
                    return id;
                }
            }
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

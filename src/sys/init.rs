//! doltctl as a container's PID 1 (or as a child subreaper): every orphan of the PID namespace
//! (or below us) is reparented to us and must be reaped, and signals must reach the supervisor.
//!
//! The scheme is tini's: the process that is PID 1 forks before anything else runs. The child
//! is the supervisor, exactly as it runs anywhere else (its tokio runtime owns and reaps dolt).
//! The parent stays a tiny init: it reaps *every* child with `waitpid(-1)` (its only own child
//! is the supervisor, whose status it wants anyway; everything else is a reparented orphan)
//! and forwards SIGTERM, SIGINT, SIGHUP and SIGUSR1 to the supervisor. No process ever reaps
//! a child that another part of itself waits for, which a `waitpid(-1)` (or a `waitid` peek)
//! inside the supervisor could not promise: tokio waits on dolt's pid, `dolt version` and any
//! future child by pid, and a reaper beside them would race them for the exit status.
//!
//! The kernel drops signals to a namespace's init that has no handler for them. The init
//! blocks the signals it forwards and takes them with `sigwait`: a blocked signal is never
//! dropped, it stays pending until taken.

use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::error::{Error, Result};

/// What the init forwards to the supervisor: what `doltctl run` acts on.
const FORWARDED: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
];

/// True when orphans are reparented to this process: it is PID 1 of its PID namespace, or a
/// child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`, kept across the exec that started us).
pub(crate) fn reaps_orphans() -> bool {
    nix::unistd::getpid().as_raw() == 1 || nix::sys::prctl::get_child_subreaper().unwrap_or(false)
}

/// Splits this process into an init and the supervisor (see the module's comment). Returns
/// `Ok(None)` in the supervisor, which carries on; in the init, once the supervisor is gone,
/// the exit code to end with: the supervisor's own (0 after a stop by SIGTERM/SIGINT, 1 after
/// an error), or 128+N when signal N killed it.
///
/// Must run while this process has a single thread (before any runtime starts): only then is
/// `fork` without `exec` sound. With more threads it does nothing and says so.
pub(crate) fn split_off_init() -> Result<Option<ExitCode>> {
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
    if threads != 1 {
        tracing::warn!(
            "this process has {threads} threads; not forking an init: orphans reparented to it \
             are not reaped"
        );
        return Ok(None);
    }
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    let sys = |what: &str, e: Errno| Error::Process {
        pid: std::process::id() as i32,
        message: format!("{what}: {e}"),
    };
    // An inherited SIG_IGN for SIGCHLD would have the kernel reap children by itself, and the
    // supervisor's exit status would be lost.
    // SAFETY: the default disposition, no handler code; single-threaded (checked above).
    unsafe { nix::sys::signal::signal(Signal::SIGCHLD, nix::sys::signal::SigHandler::SigDfl) }
        .map_err(|e| sys("resetting SIGCHLD", e))?;
    // Blocked before the fork, so nothing sent in between is lost or acted on by default.
    let mut old = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
        .map_err(|e| sys("blocking signals", e))?;
    // SAFETY: single-threaded (checked above), so the child's copy of every lock and buffer is
    // consistent.
    match unsafe { fork() }.map_err(|e| sys("fork", e))? {
        ForkResult::Child => {
            // The supervisor takes signals as usual (its handlers are installed before it
            // launches dolt).
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None)
                .map_err(|e| sys("unblocking signals", e))?;
            Ok(None)
        }
        ForkResult::Parent { child } => {
            tracing::info!(
                "reaping orphans as pid {} and forwarding SIGTERM, SIGINT, SIGHUP and SIGUSR1 \
                 to the supervisor, pid {child}",
                std::process::id()
            );
            Ok(Some(ExitCode::from(init_loop(&set, child))))
        }
    }
}

/// The init: reaps every child; forwards signals to `supervisor` until it is gone; returns
/// its exit code.
fn init_loop(set: &SigSet, supervisor: Pid) -> u8 {
    loop {
        let sig = match set.wait() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("sigwait: {e}");
                continue;
            }
        };
        if sig != Signal::SIGCHLD {
            if let Err(e) = kill(supervisor, sig) {
                tracing::warn!("forwarding {sig} to the supervisor, pid {supervisor}: {e}");
            }
            continue;
        }
        // One SIGCHLD may stand for many exits: reap until nothing is left to reap.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == supervisor => return code as u8,
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == supervisor => {
                    return 128u8.saturating_add(s as u8)
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                // A reparented orphan, reaped; or an interrupted call: go on.
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    tracing::warn!("waitpid: {e}");
                    break;
                }
            }
        }
    }
}

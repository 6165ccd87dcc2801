//! `doltctl exec`: a command run with the connection variables, signals forwarded.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitCode;

use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};

use crate::error::{Error, IoContext, Result};

/// Runs a command with extra environment, forwarding SIGINT/SIGTERM to it; returns its exit
/// code (128 + signal number when a signal ended it, as shells report).
pub(crate) async fn run(command: &[OsString], vars: &[(String, String)]) -> Result<ExitCode> {
    let Some((prog, args)) = command.split_first() else {
        return Err(Error::ConfigValue("exec: no command given".into()));
    };
    let mut child = tokio::process::Command::new(prog)
        .args(args)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .spawn()
        .map_err(|e| Error::io(format!("cannot run {}", prog.to_string_lossy()), e))?;
    let pid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    let mut int = signal(SignalKind::interrupt()).at("signal handler")?;
    let mut term = signal(SignalKind::terminate()).at("signal handler")?;
    let status = loop {
        let sig = tokio::select! {
            st = child.wait() => break st.at(prog)?,
            _ = int.recv() => Signal::SIGINT,
            _ = term.recv() => Signal::SIGTERM,
        };
        // The child is ours and not yet reaped: its pid is still its own.
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(pid, sig);
        }
    };
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => 1,
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

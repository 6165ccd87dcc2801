//! `doltctl exec` (and the interactive `doltctl sql`): a command run with the connection
//! variables, its exit code passed through the way shells report it.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitCode;

use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};

use crate::error::{Error, IoContext, Result};

/// Exit code when the command cannot be found, as shells use it.
pub const EXIT_NOT_FOUND: u8 = 127;
/// Exit code when the command exists but cannot be run (not executable, a directory, a bad
/// binary), as shells use it.
pub const EXIT_CANNOT_EXECUTE: u8 = 126;

/// Which signals reach the command through doltctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forward {
    /// SIGINT and SIGTERM are passed on (`exec`: whoever signals doltctl means the command).
    IntAndTerm,
    /// Only SIGTERM; SIGINT and SIGQUIT are swallowed by doltctl. For an interactive program in the
    /// terminal's foreground group, which gets Ctrl-C from the terminal itself: forwarding would
    /// deliver it twice.
    TermOnly,
}

/// Runs a command with extra environment and returns its exit code: its own, 128 + N when
/// signal N ended it, 127 when it is not found, 126 when it cannot be executed (with the
/// reason on stderr).
pub(crate) async fn run(
    command: &[OsString],
    vars: &[(String, String)],
    forward: Forward,
) -> Result<ExitCode> {
    run_in(command, vars, forward, None).await
}

/// [`run`] in directory `dir` (default: ours).
pub(crate) async fn run_in(
    command: &[OsString],
    vars: &[(String, String)],
    forward: Forward,
    dir: Option<&std::path::Path>,
) -> Result<ExitCode> {
    let Some((prog, args)) = command.split_first() else {
        return Err(Error::ConfigValue("exec: no command given".into()));
    };
    // Handlers first: a signal that arrives right after the spawn must not kill us and leave
    // the command running unsupervised. (Handlers, unlike ignored signals, are reset in the
    // child, so the command starts with the default dispositions.)
    let mut int = signal(SignalKind::interrupt()).at("signal handler")?;
    let mut term = signal(SignalKind::terminate()).at("signal handler")?;
    // Ctrl-\ too, for an interactive program; `exec` keeps SIGQUIT's default.
    let mut quit = match forward {
        Forward::TermOnly => Some(signal(SignalKind::quit()).at("signal handler")?),
        Forward::IntAndTerm => None,
    };
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args).envs(vars.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let name = prog.to_string_lossy();
            return Ok(ExitCode::from(
                if e.kind() == std::io::ErrorKind::NotFound {
                    errln!("doltctl: exec: {name}: command not found");
                    EXIT_NOT_FOUND
                } else {
                    errln!("doltctl: exec: {name}: cannot execute: {e}");
                    EXIT_CANNOT_EXECUTE
                },
            ));
        }
    };
    let pid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    let status = loop {
        let sig = tokio::select! {
            st = child.wait() => break st.at(prog)?,
            _ = int.recv() => Signal::SIGINT,
            _ = term.recv() => Signal::SIGTERM,
            Some(_) = async { quit.as_mut()?.recv().await } => Signal::SIGQUIT,
        };
        let pass = forward == Forward::IntAndTerm || sig == Signal::SIGTERM;
        // The child is ours and not yet reaped: its pid is still its own.
        if let Some(pid) = pid.filter(|_| pass) {
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

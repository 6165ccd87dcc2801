//! Writing human output and diagnostics for the client commands.
//!
//! SIGPIPE stays ignored, as Rust leaves it: a socket its peer closed must be an error the
//! command handles. tonic (etcd) and mysql_async write sockets with `writev`, which raises
//! SIGPIPE; with its default action, `doltctl cluster status` against a TLS etcd written as
//! `http://` died silently with exit 141. A closed stdout still ends a command as it ends
//! `cat` (`doltctl logs | head -1`): on EPIPE, [`end_on_closed_output`] raises SIGPIPE with
//! its default action. Programs doltctl starts get the default action anyway (std resets it
//! in children).

use std::io::ErrorKind;

use crate::error::Error;

/// `println!` that ends the process quietly when stdout is closed, instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            $crate::cli::output::stdout_failed(&e);
        }
    }};
}

/// `print!`, as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($arg)*) {
            $crate::cli::output::stdout_failed(&e);
        }
    }};
}

/// `eprintln!` that never panics: a diagnostic stderr refuses (closed, full disk) is lost; the
/// exit code still says what happened.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// After a failed write to stdout: a closed reader ends the process (see the module docs);
/// another failure (a full disk behind a redirect) is reported on stderr, once per write.
pub(crate) fn stdout_failed(e: &std::io::Error) {
    if e.kind() == ErrorKind::BrokenPipe {
        end_on_closed_output();
    }
    errln!("doltctl: writing to stdout: {e}");
}

/// Whether `e` is a write to a closed stdout (`.at("stdout")` on EPIPE).
pub(crate) fn is_closed_stdout(e: &Error) -> bool {
    matches!(e, Error::Io { path, source }
        if path.as_os_str() == "stdout" && source.kind() == ErrorKind::BrokenPipe)
}

/// Ends the process by SIGPIPE's default action, as `cat` ends when its reader is gone.
pub fn end_on_closed_output() -> ! {
    use nix::sys::signal::{raise, signal, SigHandler, Signal};
    // SAFETY: installs the default disposition, no handler code.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let _ = raise(Signal::SIGPIPE);
    // Not reached unless SIGPIPE is blocked: the shell's code for it.
    std::process::exit(128 + Signal::SIGPIPE as i32)
}

//! Running a supervisor: the arguments of `doltctl run`, shared by the binary and by programs
//! that embed the library and run supervisors themselves ([`run_supervisor_if_requested`]).

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::config::{Config, ConfigSource};
use crate::error::Result;
use crate::lifecycle::control::{self, SUPERVISOR_MARKER};

/// `--config FILE` and `--data-dir DIR`, options of every command.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// Config file (default: $DOLTCTL_CONFIG, else doltctl.toml here or in a parent directory).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data dir, overriding the config's data_dir.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// Where to look for the config.
    pub fn source(self) -> ConfigSource {
        ConfigSource {
            explicit: self.config,
            data_dir_override: self.data_dir,
        }
    }
}

/// The options of `doltctl run`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Serve read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Stop after this long without client connections (overrides `[server] idle_timeout`).
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = crate::config::parse_duration,
        help = "Stop after this long without client connections (overrides [server] idle_timeout)"
    )]
    pub idle_timeout: Option<Duration>,
    /// Run as a detached supervisor: SIGHUP is ignored and dolt's output stays out of stderr.
    /// Set by `start` (and auto-start), which runs the supervisor in a session of its own with
    /// stderr in `supervisor.log`; not for people.
    #[arg(long, hide = true)]
    pub detached: bool,
    /// Started by a client's auto-start (set by it with `--detached`), which `gc --idle` and
    /// `[client] max_instances` may stop when idle; not for people.
    #[arg(long, hide = true)]
    pub auto_started: bool,
}

/// Diagnostics on stderr, filtered by `DOLTCTL_LOG` (default: [`super::default_log_level`]).
/// Does nothing when the program already installed a tracing subscriber.
///
/// Writing them never fails and never panics: stderr may be `supervisor.log` on a full disk,
/// or a closed pipe or terminal (SIGPIPE is ignored in the supervisor, so that is EPIPE). A
/// line stderr refuses is dropped and counted, and once a write works again it is preceded
/// by a line saying how many were dropped and why (see `StderrWriter`). tracing's own
/// report of a failed write is off: it goes to stderr with `eprintln!`, which panics when
/// stderr fails, so a full disk under `supervisor.log` would kill the supervisor.
pub fn init_logging(supervisor: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DOLTCTL_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(super::default_log_level(supervisor))
    });
    let _ = tracing_subscriber::fmt()
        .with_writer(|| StderrWriter)
        .log_internal_errors(false)
        .with_ansi(use_color())
        .with_env_filter(filter)
        .try_init();
}

/// stderr for diagnostics, never failing: see [`init_logging`]. tracing formats an event
/// into one buffer and writes it with one `write_all`, so one write here is one line.
struct StderrWriter;

/// Lines stderr refused since it last took one.
struct Dropped {
    count: u64,
    /// The last error.
    error: String,
    /// stderr may end inside a line: a failed write had written part of it.
    partial: bool,
}

static DROPPED: std::sync::Mutex<Dropped> = std::sync::Mutex::new(Dropped {
    count: 0,
    error: String::new(),
    partial: false,
});

/// Writes all of `buf`, recording in `partial` whether the output now ends inside it.
fn write_counted(out: &mut impl Write, buf: &[u8], partial: &mut bool) -> std::io::Result<()> {
    let mut rest = buf;
    while !rest.is_empty() {
        match out.write(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                rest = &rest[n..];
                *partial = !rest.is_empty();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.flush()
}

impl StderrWriter {
    /// Writes `buf` to `out`, first the note about dropped lines when there are any; a
    /// refused write is counted in `d`, never returned.
    fn write_to(out: &mut impl Write, d: &mut Dropped, buf: &[u8]) {
        if d.count > 0 {
            let note = format!(
                "{}{} doltctl: {} lines of this log dropped ({})\n",
                if d.partial { "\n" } else { "" },
                crate::sys::clock::now_rfc3339(),
                d.count,
                d.error
            );
            if let Err(e) = write_counted(out, note.as_bytes(), &mut d.partial) {
                d.count += 1;
                d.error = e.to_string();
                return;
            }
            d.count = 0;
        }
        if let Err(e) = write_counted(out, buf, &mut d.partial) {
            d.count += 1;
            d.error = e.to_string();
        }
    }
}

impl Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut d = DROPPED.lock().unwrap_or_else(|p| p.into_inner());
        StderrWriter::write_to(&mut std::io::stderr().lock(), &mut d, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Colors only on a terminal, and never with `NO_COLOR` set (to anything but empty; see
/// no-color.org): journald, container logs and `supervisor.log` get plain text.
fn use_color() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Prints an error as the binary does: `doltctl: ` and the message with its causes. A
/// failing stderr (a full disk under `supervisor.log`, a closed pipe) loses the message
/// rather than panicking: the exit code still says it failed.
pub fn print_error(e: crate::Error) {
    if super::output::is_closed_stdout(&e) {
        super::output::end_on_closed_output();
    }
    let _ = writeln!(std::io::stderr().lock(), "doltctl: {e}");
}

/// What follows [`SUPERVISOR_MARKER`]: doltctl's global options and `run` with its options.
#[derive(Parser)]
#[command(name = "doltctl supervisor", no_binary_name = true)]
struct SupervisorInvocation {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: SupervisorCommand,
}

#[derive(clap::Subcommand)]
enum SupervisorCommand {
    /// Run the supervisor in the foreground.
    Run(RunArgs),
}

/// Lets a program that links doltctl run its own supervisors, so that [`crate::Client`]
/// auto-start works without a `doltctl` binary installed. Call it first thing in `main`:
///
/// ```no_run
/// fn main() {
///     doltctl::run_supervisor_if_requested();
///     // ... the program, which may use doltctl::Client with auto-start ...
/// }
/// ```
///
/// When the program was started as a supervisor (its first argument is
/// [`SUPERVISOR_MARKER`](crate::control::SUPERVISOR_MARKER), followed by the arguments of
/// `doltctl run`: `[--config FILE] --data-dir DIR run [--read-only] [--idle-timeout D] [--detached]`), this
/// runs the supervisor in this process, exactly as `doltctl run` would, and exits the process
/// when it stops: it never returns. Otherwise it returns at once, and records that this
/// program can run supervisors. From then on, a server this process starts
/// ([`crate::control::start`], a client's auto-start) is supervised by this same program,
/// started again with the marker. `$DOLTCTL_BIN` still takes precedence; see
/// [`crate::control::supervisor_program`].
///
/// Call it before the program starts threads or parses its own arguments. The supervisor logs
/// to stderr (which doltctl points at `.doltctl/supervisor.log`), filtered by `DOLTCTL_LOG`,
/// unless the program installed a tracing subscriber before.
#[allow(clippy::needless_doctest_main)] // `main` is the point of the example
pub fn run_supervisor_if_requested() {
    let mut args = std::env::args_os();
    let _program = args.next();
    if args.next().as_deref() != Some(std::ffi::OsStr::new(SUPERVISOR_MARKER)) {
        control::note_supervisor_hook();
        return;
    }
    std::process::exit(match run_supervisor(args.collect()) {
        Ok(()) => 0,
        Err(e) => {
            print_error(e);
            1
        }
    })
}

/// The supervisor with doltctl's `run` arguments (the marker removed).
fn run_supervisor(args: Vec<OsString>) -> Result<()> {
    let inv = SupervisorInvocation::try_parse_from(args).unwrap_or_else(|e| e.exit());
    init_logging(true);
    let SupervisorCommand::Run(run) = inv.command;
    let cfg = Config::discover(&inv.config.source())?;
    super::run(cfg, run).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that refuses writes while `full`, after taking `room` bytes.
    struct Flaky {
        out: Vec<u8>,
        full: bool,
        room: usize,
    }

    impl Write for Flaky {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if !self.full {
                self.out.extend_from_slice(buf);
                return Ok(buf.len());
            }
            if self.room == 0 {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ENOSPC));
            }
            let n = self.room.min(buf.len());
            self.room -= n;
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn refused_lines_are_counted_then_reported_on_a_line_of_their_own() {
        let mut out = Flaky {
            out: Vec::new(),
            full: true,
            room: 4,
        };
        let mut d = Dropped {
            count: 0,
            error: String::new(),
            partial: false,
        };
        for line in ["first line\n", "second\n", "third\n"] {
            StderrWriter::write_to(&mut out, &mut d, line.as_bytes());
        }
        assert_eq!(d.count, 3);
        out.full = false;
        StderrWriter::write_to(&mut out, &mut d, b"back\n");
        let text = String::from_utf8(out.out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text:?}");
        assert_eq!(lines[0], "firs", "the part written before the disk filled");
        assert!(
            lines[1].ends_with(
                " doltctl: 3 lines of this log dropped (No space left on device (os error 28))"
            ),
            "{text:?}"
        );
        assert_eq!(lines[2], "back");
        assert_eq!(d.count, 0);
    }
}

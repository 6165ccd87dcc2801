//! Running a supervisor: the arguments of `doltctl run`, shared by the binary and by programs
//! that embed the library and run supervisors themselves ([`run_supervisor_if_requested`]).

use std::ffi::OsString;
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
}

/// Diagnostics on stderr, filtered by `DOLTCTL_LOG` (default: [`super::default_log_level`]).
/// Does nothing when the program already installed a tracing subscriber.
pub fn init_logging(supervisor: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DOLTCTL_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(super::default_log_level(supervisor))
    });
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(use_color())
        .with_env_filter(filter)
        .try_init();
}

/// Colors only on a terminal, and never with `NO_COLOR` set (to anything but empty; see
/// no-color.org): journald, container logs and `supervisor.log` get plain text.
fn use_color() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Prints an error as the binary does: `doltctl: ` and the message with its causes.
pub fn print_error(e: crate::Error) {
    eprintln!("doltctl: {e}");
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

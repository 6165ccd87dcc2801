//! What doltctl says about itself: the help text's examples, environment and exit codes,
//! shell completions and the man page, generated from the binary's argument definitions.

use std::io::Write;
use std::process::ExitCode;

use crate::error::{IoContext, Result};

pub use clap_complete::Shell;

/// The end of `doltctl --help` (and of the man page): examples, environment, exit codes.
pub const HELP_FOOTER: &str = "\
Examples:
  doltctl init --db app --start          set up ./doltctl.toml and ./dolt, start, print the URL
  doltctl start                          start the server (detached); prints its URL
  eval \"$(doltctl env --database app)\"   DATABASE_URL, MYSQL_HOST, MYSQL_TCP_PORT, ... in this shell
  doltctl exec -- mariadb -D app         run a program with those variables (no password in argv)
  doltctl sql -d app -q 'SELECT 1'       run statements; without -q on a terminal: a mysql client
  doltctl exclusive -d app -- dolt gc    stop the server, run dolt on the data dir, start it again
  doltctl logs -f --since 10m            follow the log, starting 10 minutes back
  doltctl ps                             every instance of this user on the machine
  doltctl gc --idle 1h                   stop orphans, and auto-started servers idle for an hour
  doltctl stop

Environment:
  DOLTCTL_CONFIG     config file (default: doltctl.toml here or in a parent directory)
  DOLT_BIN           the dolt binary (overrides [server] dolt_bin)
  DOLTCTL_AUTOSTART  0 turns client auto-start off ([client] autostart)
  DOLTCTL_PASSWORD   the MySQL password ([client] password)
  DOLTCTL_LOG        diagnostics filter on stderr, e.g. debug (default: warn; run: info)
  NO_COLOR           set: no colors in output
  DOLTCTL_BIN        the program that runs detached supervisors (default: this doltctl)
  DOLTCTL_REGISTRY_DIR  the registry of instances ps/gc read (default:
                     $XDG_STATE_HOME/doltctl/instances, ~/.local/state/doltctl/instances)
  NOTIFY_SOCKET      set by systemd: `run` sends READY=1, STATUS=, STOPPING=1, WATCHDOG=1

Exit codes:
  0    ok; status: running and ready (--live: it answered SELECT 1); doctor: nothing FAILs;
       run: stopped on request (SIGTERM/SIGINT), also as PID 1
  1    error (the message on stderr says what, where, and what to do); gc: a stop failed;
       doctor: a check FAILs
  2    usage: bad command line
  3    not running (status, url, env)
  4    not ready: the supervisor is up, the server is not (status); status --live: it runs
       but did not answer SELECT 1 in time
  5    orphaned: a server of ours runs without its supervisor (status)
  8    sql in a cluster: a write was acknowledged with warning 3024 (not replicated yet);
       cluster status exits 4 unless exactly one node is primary and holds the lease
  exec and exclusive pass their command's code through (128+N for signal N), 126 when the
  command cannot be executed, 127 when it is not found. run as PID 1: 128+N when signal N
  killed the supervisor.";

/// `doltctl completions SHELL`: the completion script for `cmd` (the binary's argument
/// definitions) on stdout.
pub fn completions(mut cmd: clap::Command, shell: Shell) -> Result<ExitCode> {
    let name = cmd.get_name().to_string();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut buf);
    emit(&buf)
}

/// `doltctl man`: the man page for `cmd` (roff) on stdout.
pub fn man(cmd: clap::Command) -> Result<ExitCode> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut buf)
        .at("rendering the man page")?;
    emit(&buf)
}

fn emit(bytes: &[u8]) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).at("stdout")?;
    out.flush().at("stdout")?;
    Ok(ExitCode::SUCCESS)
}

//! The `doltctl` command line: a thin layer over the library. Human output on stdout,
//! diagnostics on stderr. Only parses arguments: every command is a function of
//! `doltctl::cli`. Exit codes: see `doltctl::cli::HELP_FOOTER` (`doltctl --help`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{CommandFactory, Parser, Subcommand};
use doltctl::cli::{self, ImportArgs, LogFilter, LogsArgs, SqlArgs, StartArgs};
use doltctl::Config;

#[derive(Clone, Copy, clap::ValueEnum)]
enum EnvFormat {
    /// `export K='v'` lines, for `eval "$(doltctl env)"`.
    Sh,
    /// `K="v"` lines, for a .env file.
    Dotenv,
    /// One JSON object: url, Go DSN, parts and the variables.
    Json,
}

#[derive(Parser)]
#[command(
    name = "doltctl",
    version,
    about = "Supervise dolt sql-server for a data dir",
    long_about = "Supervise dolt sql-server for a data dir: start it on first use, prove it \
                  ready, restart it when it crashes or wedges, stop it cleanly, and hand out a \
                  connection URL that works. Linux only.",
    after_help = cli::HELP_FOOTER
)]
struct Cli {
    #[command(flatten)]
    global: cli::ConfigArgs,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    #[command(flatten)]
    Op(Op),
    /// Set up a dev environment: doltctl.toml (when there is none), the data dir, missing
    /// databases, seeds. Never changes existing databases; a second run changes nothing.
    Init {
        /// A database to create (repeatable), in addition to [bootstrap] databases.
        #[arg(long = "db", value_name = "NAME")]
        databases: Vec<String>,
        /// Start the server afterwards and print its URL (last line).
        #[arg(long)]
        start: bool,
        /// Print nothing on stdout (warnings still go to stderr).
        #[arg(short, long)]
        quiet: bool,
    },
    /// Check everything a server needs (with [cluster]: etcd, this node's role, the peers,
    /// replication); exit 0 when nothing FAILs, else 1. Never starts a server.
    Doctor {
        /// Make the safe repairs (stale files, orphans of ours, oversized logs, permissions).
        #[arg(long)]
        fix: bool,
        /// Print an array of {check, status, detail, fix} objects.
        #[arg(long)]
        json: bool,
    },
    /// Print doltctl's version, the dolt binary it uses (path and version) and the dolt
    /// version it is tested with; exit 1 when dolt is missing or does not run.
    Version {
        /// Print one JSON object: doltctl, dolt {path, version, error}, pinned_dolt.
        #[arg(long)]
        json: bool,
    },
    /// List every doltctl instance of this user on the machine, from any directory: data dir,
    /// state, pids, port, uptime, idle time, clients, dolt's memory, URL. Removes registry
    /// entries of instances that no longer run.
    Ps {
        /// Print an array of objects (data_dir, state, supervisor_pid, server_pid, host, port,
        /// url, uptime_ms, idle_ms, clients, last_client_at, rss_bytes, auto_started).
        #[arg(long)]
        json: bool,
    },
    /// Stop this user's orphaned servers (running without a supervisor) and, with --idle,
    /// auto-started servers without a client that long, anywhere on the machine. Gracefully;
    /// servers started by `start`/`run` and anything not started by doltctl are never touched.
    Gc {
        /// Also stop auto-started servers that have had no client for this long (e.g. 10m).
        #[arg(long, value_name = "DURATION", value_parser = doltctl::config::parse_duration)]
        idle: Option<Duration>,
        /// Only print what would be stopped.
        #[arg(long)]
        dry_run: bool,
        /// Print an array of {data_dir, reason, why, idle_ms, supervisor_pid, server_pid,
        /// action, error} objects.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script, e.g. `doltctl completions bash > /etc/bash_completion.d/doltctl`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: cli::Shell,
    },
    /// Print the man page (roff), e.g. `doltctl man > /usr/local/share/man/man1/doltctl.1`.
    Man,
}

/// The commands that run on a loaded config.
#[derive(Subcommand)]
enum Op {
    /// Run the supervisor in the foreground (logs to stderr; Ctrl-C stops server and supervisor).
    Run(cli::RunArgs),
    /// Start a detached supervisor and wait until the server is ready; prints the URL (as `url`
    /// does) as the last line.
    Start {
        /// Serve read-only.
        #[arg(long)]
        read_only: bool,
        /// Print nothing.
        #[arg(short, long)]
        quiet: bool,
        /// --wait=false: return once the supervisor runs and has registered, without waiting
        /// for the server to be ready; prints nothing.
        #[arg(
            long,
            value_name = "BOOL",
            default_value_t = true,
            action = clap::ArgAction::Set,
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true"
        )]
        wait: bool,
    },
    /// Stop the server and its supervisor; not running is success.
    Stop {
        /// Print nothing.
        #[arg(short, long)]
        quiet: bool,
        /// How long the server gets to shut down after SIGTERM before it is killed, for this
        /// stop (overrides [server] stop_timeout, up to the running supervisor's own).
        #[arg(long, value_name = "DURATION", value_parser = doltctl::config::parse_duration)]
        timeout: Option<Duration>,
    },
    /// Restart the server (also leaves the `failed` state); starts it if not running. Prints
    /// the URL.
    Restart {
        /// Print nothing.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show the state; exit 0 when running and ready, 3 when not running, 4 when not ready,
    /// 5 when a server runs without its supervisor (orphaned). With --live: exit 0 only when
    /// the server answers SELECT 1 (4 when it runs but does not answer).
    Status {
        /// Print the state as JSON (with --live, plus "live": {ok, latency_ms, error}).
        #[arg(long)]
        json: bool,
        /// Also run a real SELECT 1 against the recorded server (never starts one), for
        /// readiness probes and HEALTHCHECK.
        #[arg(long)]
        live: bool,
        /// How long --live waits for the answer [default: 2s].
        #[arg(long, value_name = "DURATION", requires = "live", value_parser = doltctl::config::parse_duration)]
        timeout: Option<Duration>,
    },
    /// Print the connection URL of the running server (exit 3 when not running).
    Url {
        /// Start the server first if it is not running.
        #[arg(long)]
        ensure: bool,
        /// Put this database in the URL's path.
        #[arg(short, long, value_name = "DB")]
        database: Option<String>,
    },
    /// Print connection variables (DATABASE_URL, MYSQL_HOST, ...) for a shell, a .env file or JSON.
    Env {
        /// Start the server first if it is not running.
        #[arg(long)]
        ensure: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = EnvFormat::Sh)]
        format: EnvFormat,
        /// Put this database in DATABASE_URL and MYSQL_DATABASE.
        #[arg(short, long, value_name = "DB")]
        database: Option<String>,
    },
    /// Run a command with the connection variables set (starting the server if needed);
    /// its exit code is passed through (126: cannot execute, 127: not found).
    Exec {
        /// Put this database in DATABASE_URL and MYSQL_DATABASE.
        #[arg(short, long, value_name = "DB")]
        database: Option<String>,
        #[command(flatten)]
        command: CommandArgs,
    },
    /// Stop the server, run a command with the data dir to itself (e.g. `dolt gc`,
    /// `dolt table import`), then start the server again; clients wait meanwhile. Its exit
    /// code is passed through (126: cannot execute, 127: not found).
    Exclusive {
        /// Run the command in this database's directory (<data_dir>/DB) instead of the
        /// data dir.
        #[arg(short, long, value_name = "DB")]
        database: Option<String>,
        #[command(flatten)]
        command: CommandArgs,
    },
    /// Run SQL statements (from -q or stdin) through the retrying client. On a terminal
    /// without -q: an interactive mariadb/mysql client on this server.
    Sql {
        /// Database to use.
        #[arg(short, long)]
        database: Option<String>,
        /// The statements; without it they are read from stdin.
        #[arg(short, long)]
        query: Option<String>,
        /// Print each result set as a JSON array of objects.
        #[arg(long)]
        json: bool,
        /// Use a read-only session.
        #[arg(long)]
        read_only: bool,
    },
    /// Load a SQL, CSV or JSONL file into a database in one transaction (starts the server
    /// if needed). Any error rolls the whole file back.
    Import {
        /// The file (format from its extension: .sql, .csv, .jsonl/.ndjson).
        file: PathBuf,
        /// The database to load into.
        #[arg(long)]
        db: String,
        /// CSV/JSONL: the table (default: the file name without its extension).
        #[arg(long)]
        table: Option<String>,
        /// sql, csv or jsonl (default: from the extension).
        #[arg(long)]
        format: Option<doltctl::config::Format>,
        /// Rows per INSERT.
        #[arg(long, default_value_t = cli::DEFAULT_IMPORT_BATCH, value_name = "N")]
        batch: usize,
        /// Also make a Dolt commit with this message, in the same transaction.
        #[arg(long, value_name = "MSG")]
        commit: Option<String>,
    },
    /// Write (or remove) a systemd unit that runs `doltctl run` for this data dir
    /// (Type=notify: ready once SELECT 1 answers). Never runs systemctl: prints the commands.
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
    /// A replicated cluster (`[cluster]` in doltctl.toml): its status, a planned switchover,
    /// a forced failover.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Print the server log (dolt's output and the supervisor's events).
    Logs {
        /// Keep printing new lines as they come.
        #[arg(short, long)]
        follow: bool,
        /// How many lines to print first [default: 50, or all since --since].
        #[arg(short = 'n', long, value_name = "N")]
        lines: Option<usize>,
        /// Only lines since then: a duration ago (10m, 2h) or an RFC 3339 timestamp.
        #[arg(long, value_name = "D|TIMESTAMP", value_parser = cli::parse_since)]
        since: Option<SystemTime>,
        /// One JSON object per line: {"time", "source": "dolt"|"doltctl", "text"}.
        #[arg(long)]
        json: bool,
        /// Only the supervisor's events.
        #[arg(long, conflicts_with = "server")]
        supervisor: bool,
        /// Only dolt's output.
        #[arg(long)]
        server: bool,
    },
}

/// `doltctl cluster ...`.
#[derive(Subcommand)]
enum ClusterAction {
    /// Every node's role, epoch, reachability and replication lag per database, and who holds
    /// the leader lease until when. Exit 0 when exactly one node is primary and holds the
    /// lease, 4 otherwise.
    Status {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Hand the primary role over without losing an acknowledged write: the primary demotes
    /// once every standby has caught up, then releases its lease. Prints the new primary.
    Switchover {
        /// The node to hand over to (default: any caught-up standby).
        #[arg(long, value_name = "NODE")]
        to: Option<String>,
        /// How long to wait for the new primary.
        #[arg(long, default_value = "30s", value_parser = doltctl::config::parse_duration, value_name = "DURATION")]
        wait: Duration,
    },
    /// Promote NODE while no node leads and none is known to be caught up (after the whole
    /// cluster was down, or every caught-up standby was lost too). Writes the last primary
    /// acknowledged that NODE lacks are lost. Refused while a node holds the lease.
    Failover {
        /// The node to promote.
        #[arg(long, value_name = "NODE")]
        to: String,
        /// How long to wait for it to take the lease.
        #[arg(long, default_value = "30s", value_parser = doltctl::config::parse_duration, value_name = "DURATION")]
        wait: Duration,
    },
}

/// `doltctl service ...`.
#[derive(Subcommand)]
enum ServiceAction {
    /// Write the unit (doltctl-<data dir>-<hash>.service, or --name) atomically, replacing
    /// only a unit doltctl wrote, and print the systemctl commands that enable it.
    Install {
        #[command(flatten)]
        scope: ServiceScopeArgs,
        /// Print the unit on stdout and write nothing.
        #[arg(long)]
        print: bool,
        /// The unit name (default: derived from the data dir).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Remove the unit `service install` wrote (never a unit doltctl did not write) and its
    /// enablement links; not installed is success.
    Uninstall {
        #[command(flatten)]
        scope: ServiceScopeArgs,
        /// The unit name given to `install --name`.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
}

/// The command `exec` and `exclusive` run.
#[derive(clap::Args)]
struct CommandArgs {
    /// The command and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<std::ffi::OsString>,
}

/// `--user` or `--system`.
#[derive(clap::Args)]
struct ServiceScopeArgs {
    /// The user's service manager: ~/.config/systemd/user/ (the default, except for root).
    #[arg(long, conflicts_with = "system")]
    user: bool,
    /// The system manager: /etc/systemd/system/ (the default for root).
    #[arg(long)]
    system: bool,
}

impl ServiceScopeArgs {
    fn scope(&self) -> Option<cli::ServiceScope> {
        match (self.user, self.system) {
            (true, _) => Some(cli::ServiceScope::User),
            (_, true) => Some(cli::ServiceScope::System),
            _ => None,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::setup(matches!(cli.command, Cmd::Op(Op::Run(_))));
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            cli::print_error(e);
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> doltctl::Result<ExitCode> {
    let src = cli.global.source();
    let op = match cli.command {
        // Doctor reports a broken config as one of its findings instead of stopping at it.
        Cmd::Doctor { fix, json } => return cli::doctor(&src, fix, json),
        // Init writes the config when there is none.
        Cmd::Init {
            databases,
            start,
            quiet,
        } => return cli::init(&src, &databases, start, quiet),
        // Version works without a usable config.
        Cmd::Version { json } => return cli::version(&src, json),
        // Every instance of the user: no config involved, from any directory.
        Cmd::Ps { json } => return cli::ps(json),
        Cmd::Gc {
            idle,
            dry_run,
            json,
        } => {
            return cli::gc(cli::GcArgs {
                idle,
                dry_run,
                json,
            })
        }
        Cmd::Completions { shell } => return cli::completions(Cli::command(), shell),
        Cmd::Man => return cli::man(Cli::command()),
        Cmd::Op(op) => op,
    };
    let cfg = Config::discover(&src)?;
    match op {
        Op::Run(args) => cli::run(cfg, args),
        Op::Start {
            read_only,
            quiet,
            wait,
        } => cli::start(
            cfg,
            StartArgs {
                read_only,
                quiet,
                wait,
            },
        ),
        Op::Stop { quiet, timeout } => cli::stop(cfg, quiet, timeout),
        Op::Restart { quiet } => cli::restart(&cfg, quiet),
        Op::Status {
            json,
            live,
            timeout,
        } => cli::status(
            &cfg,
            json,
            live.then(|| timeout.unwrap_or(cli::DEFAULT_LIVE_TIMEOUT)),
        ),
        Op::Url { ensure, database } => cli::url(cfg, ensure, database),
        Op::Env {
            ensure,
            format,
            database,
        } => cli::env(cfg, ensure, format.into(), database),
        Op::Exec { database, command } => cli::exec(cfg, database, &command.command),
        Op::Exclusive { database, command } => cli::exclusive(cfg, database, &command.command),
        Op::Sql {
            database,
            query,
            json,
            read_only,
        } => cli::sql(
            cfg,
            SqlArgs {
                database,
                query,
                json,
                read_only,
            },
        ),
        Op::Import {
            file,
            db,
            table,
            format,
            batch,
            commit,
        } => cli::import(
            &cfg,
            ImportArgs {
                file,
                db,
                table,
                format,
                batch,
                commit,
            },
        ),
        Op::Service { action } => match action {
            ServiceAction::Install { scope, print, name } => cli::service_install(
                &cfg,
                &cli::ServiceArgs {
                    scope: scope.scope(),
                    name,
                    print,
                },
            ),
            ServiceAction::Uninstall { scope, name } => cli::service_uninstall(
                &cfg,
                &cli::ServiceArgs {
                    scope: scope.scope(),
                    name,
                    print: false,
                },
            ),
        },
        Op::Cluster { action } => match action {
            ClusterAction::Status { json } => cli::cluster_status(&cfg, json),
            ClusterAction::Switchover { to, wait } => {
                cli::cluster_switchover(&cfg, to.as_deref(), wait)
            }
            ClusterAction::Failover { to, wait } => cli::cluster_failover(&cfg, &to, wait),
        },
        Op::Logs {
            follow,
            lines,
            since,
            json,
            supervisor,
            server,
        } => {
            let filter = match (supervisor, server) {
                (true, false) => LogFilter::Supervisor,
                (false, true) => LogFilter::Server,
                _ => LogFilter::All,
            };
            cli::logs(
                &cfg,
                LogsArgs {
                    follow,
                    lines,
                    filter,
                    since,
                    json,
                },
            )
        }
    }
}

impl From<EnvFormat> for cli::EnvFormat {
    fn from(f: EnvFormat) -> cli::EnvFormat {
        match f {
            EnvFormat::Sh => cli::EnvFormat::Sh,
            EnvFormat::Dotenv => cli::EnvFormat::Dotenv,
            EnvFormat::Json => cli::EnvFormat::Json,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument and subcommand says what it is for, in `--help`, the man page and the
    /// completions.
    #[test]
    fn every_argument_and_command_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            for a in cmd.get_arguments() {
                let builtin = matches!(a.get_id().as_str(), "help" | "version");
                if !builtin && a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for s in cmd.get_subcommands() {
                if s.get_name() != "help" && s.get_about().is_none() {
                    missing.push(format!("{path} {}", s.get_name()));
                }
                walk(s, &path, missing);
            }
        }
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    #[test]
    fn start_wait_takes_an_explicit_false() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args).map(|c| c.command) {
            Ok(Cmd::Op(Op::Start { wait, .. })) => Ok(wait),
            Ok(_) => panic!("not start"),
            Err(e) => Err(e.kind()),
        };
        assert_eq!(parse(&["doltctl", "start"]), Ok(true));
        assert_eq!(parse(&["doltctl", "start", "--wait"]), Ok(true));
        assert_eq!(parse(&["doltctl", "start", "--wait=false"]), Ok(false));
        assert!(parse(&["doltctl", "start", "--wait=maybe"]).is_err());
    }
}

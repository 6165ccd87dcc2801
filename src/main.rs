//! The `doltctl` command line: a thin layer over the library. Human output on stdout,
//! diagnostics on stderr. Only parses arguments: every command is a function of
//! `doltctl::cli`. Exit codes: 0 ok, 1 error, 2 usage, 3 not running, 4 not ready, 5 orphaned.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use doltctl::cli::{self, ImportArgs, LogFilter, SqlArgs};
use doltctl::Config;

#[derive(Clone, Copy, clap::ValueEnum)]
enum EnvFormat {
    Sh,
    Dotenv,
    Json,
}

#[derive(Parser)]
#[command(
    name = "doltctl",
    version,
    about = "Supervise dolt sql-server for a data dir"
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
    },
    /// Check everything a server needs; exit 0 when nothing FAILs. Never starts a server.
    Doctor {
        /// Make the safe repairs (stale files, orphans of ours, oversized logs, permissions).
        #[arg(long)]
        fix: bool,
        /// Print an array of {check, status, detail, fix} objects.
        #[arg(long)]
        json: bool,
    },
}

/// The commands that run on a loaded config.
#[derive(Subcommand)]
enum Op {
    /// Run the supervisor in the foreground (logs to stderr; Ctrl-C stops server and supervisor).
    Run(cli::RunArgs),
    /// Start a detached supervisor and wait until the server is ready; prints the URL.
    Start {
        /// Serve read-only.
        #[arg(long)]
        read_only: bool,
    },
    /// Stop the server and its supervisor; not running is success.
    Stop,
    /// Restart the server (also leaves the `failed` state); starts it if not running.
    Restart,
    /// Show the state; exit 0 when running and ready, 3 when not running, 4 when not ready,
    /// 5 when a server runs without its supervisor (orphaned).
    Status {
        /// Print the state as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the connection URL of the running server (exit 3 when not running).
    Url {
        /// Start the server first if it is not running.
        #[arg(long)]
        ensure: bool,
    },
    /// Print connection variables (DATABASE_URL, MYSQL_HOST, ...) for a shell, a .env file or JSON.
    Env {
        /// Start the server first if it is not running.
        #[arg(long)]
        ensure: bool,
        #[arg(long, value_enum, default_value_t = EnvFormat::Sh)]
        format: EnvFormat,
    },
    /// Run a command with the connection variables set (starting the server if needed);
    /// its exit code is passed through.
    Exec {
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// Run SQL statements (from -q or stdin) through the retrying client.
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
    /// Print the server log (dolt's output and the supervisor's events).
    Logs {
        /// Keep printing new lines as they come.
        #[arg(short, long)]
        follow: bool,
        /// How many lines to print first.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
        /// Only the supervisor's events.
        #[arg(long, conflicts_with = "server")]
        supervisor: bool,
        /// Only dolt's output.
        #[arg(long)]
        server: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(matches!(cli.command, Cmd::Op(Op::Run(_))));
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
        Cmd::Init { databases, start } => return cli::init(&src, &databases, start),
        Cmd::Op(op) => op,
    };
    let cfg = Config::discover(&src)?;
    match op {
        Op::Run(args) => cli::run(cfg, args),
        Op::Start { read_only } => cli::start(cfg, read_only),
        Op::Stop => cli::stop(&cfg),
        Op::Restart => cli::restart(&cfg),
        Op::Status { json } => cli::status(&cfg, json),
        Op::Url { ensure } => cli::url(cfg, ensure),
        Op::Env { ensure, format } => cli::env(cfg, ensure, format.into()),
        Op::Exec { command } => cli::exec(cfg, &command),
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
        Op::Logs {
            follow,
            lines,
            supervisor,
            server,
        } => {
            let filter = match (supervisor, server) {
                (true, false) => LogFilter::Supervisor,
                (false, true) => LogFilter::Server,
                _ => LogFilter::All,
            };
            cli::logs(&cfg, follow, lines, filter)
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

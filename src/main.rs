//! The `doltctl` command line: a thin layer over the library. Human output on stdout,
//! diagnostics on stderr. Exit codes: 0 ok, 1 error, 2 usage, 3 not running, 4 not ready.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use doltctl::client::Access;
use doltctl::control::{self, Stopped};
use doltctl::{logs, render, Client, Config, ConfigSource, ConnectionInfo};

const EXIT_NOT_RUNNING: u8 = 3;

#[derive(Clone, Copy, clap::ValueEnum)]
enum EnvFormat {
    Sh,
    Dotenv,
    Json,
}
const EXIT_NOT_READY: u8 = 4;

#[derive(Parser)]
#[command(
    name = "doltctl",
    version,
    about = "Supervise dolt sql-server for a data dir"
)]
struct Cli {
    /// Config file (default: $DOLTCTL_CONFIG, else doltctl.toml here or in a parent directory).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data dir, overriding the config's data_dir.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
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
    Run {
        /// Serve read-only.
        #[arg(long)]
        read_only: bool,
        /// Stop after this long without client connections (overrides [server] idle_timeout).
        #[arg(long, value_name = "DURATION", value_parser = doltctl::config::parse_duration)]
        idle_timeout: Option<std::time::Duration>,
    },
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
    /// Show the state; exit 0 when running and ready, 3 when not running, 4 when not ready.
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
        format: Option<doltctl::import::Format>,
        /// Rows per INSERT.
        #[arg(long, default_value_t = doltctl::import::DEFAULT_BATCH, value_name = "N")]
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
    let level = match cli.command {
        Cmd::Op(Op::Run { .. }) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DOLTCTL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .init();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("doltctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime(cmd: &Cmd) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = match cmd {
        // Two workers are plenty: the supervisor mostly waits.
        Cmd::Op(Op::Run { .. }) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(2);
            b
        }
        // Client commands do one thing at a time; no worker threads to start (it matters when
        // many short-lived clients start at once).
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    b.enable_all().build().context("starting the async runtime")
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    let src = ConfigSource {
        explicit: cli.config.clone(),
        data_dir_override: cli.data_dir.clone(),
    };
    let rt = runtime(&cli.command)?;
    let op = match cli.command {
        // Doctor reports a broken config as one of its findings instead of stopping at it.
        Cmd::Doctor { fix, json } => return doctor(&rt, &src, fix, json),
        // Init writes the config when there is none.
        Cmd::Init {
            ref databases,
            start,
        } => return init(&rt, &src, databases, start),
        Cmd::Op(op) => op,
    };
    let mut cfg = Config::discover(&src)?;
    match op {
        Op::Run {
            read_only,
            idle_timeout,
        } => {
            cfg.server.read_only |= read_only;
            if let Some(t) = idle_timeout {
                cfg.server.idle_timeout = t;
            }
            rt.block_on(doltctl::supervisor::Supervisor::run(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        Op::Start { read_only } => {
            cfg.server.read_only |= read_only;
            let state = rt.block_on(control::start(&cfg))?;
            if cfg.server.read_only && !state.read_only {
                // Already running, writable: it was not started now, so the flag had no effect.
                anyhow::bail!(
                    "a writable server is already running for {} ({}); stop it (`doltctl stop`) \
                     and start again with --read-only",
                    state.data_dir.display(),
                    state.url.unwrap_or_default()
                );
            }
            println!("{}", state.url.unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        Op::Stop => {
            match rt.block_on(control::stop(&cfg))? {
                Stopped::NotRunning => println!("not running"),
                Stopped::Stopped => println!("stopped"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Op::Restart => {
            let state = rt.block_on(control::restart(&cfg))?;
            println!("{}", state.url.unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        Op::Status { json } => status(&cfg, json),
        Op::Url { ensure } => {
            let client = Client::from_config(cfg).access(Access::Auto);
            match connection(&rt, &client, ensure)? {
                Some(info) => {
                    println!("{}", info.url());
                    Ok(ExitCode::SUCCESS)
                }
                None => Ok(not_running(&client)),
            }
        }
        Op::Env { ensure, format } => {
            let client = Client::from_config(cfg).access(Access::Auto);
            let Some(info) = connection(&rt, &client, ensure)? else {
                return Ok(not_running(&client));
            };
            match format {
                EnvFormat::Sh => {
                    for (k, v) in render::env_vars(&info) {
                        println!("export {k}={}", render::sh_quote(&v));
                    }
                }
                EnvFormat::Dotenv => {
                    for (k, v) in render::env_vars(&info) {
                        println!("{k}={}", render::dotenv_quote(&v));
                    }
                }
                EnvFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&render::connection_json(&info))?
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Op::Exec { command } => {
            let client = Client::from_config(cfg).access(Access::Auto);
            let info = rt.block_on(client.ensure())?;
            rt.block_on(exec(&command, &render::env_vars(&info)))
        }
        Op::Sql {
            database,
            query,
            json,
            read_only,
        } => {
            let mut client = Client::from_config(cfg).access(Access::Auto);
            if let Some(db) = database {
                client = client.database(db);
            }
            if read_only {
                client = client.read_only();
            }
            let text = match query {
                Some(q) => q,
                None => std::io::read_to_string(std::io::stdin()).context("reading stdin")?,
            };
            let statements: Vec<String> = doltctl::sqlsplit::split(&text)
                .into_iter()
                .map(|s| s.text)
                .collect();
            let sets = rt.block_on(client.execute(&statements))?;
            for rs in &sets {
                if json {
                    println!("{}", render::result_json(rs));
                } else {
                    print!("{}", render::result_table(rs));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Op::Import {
            file,
            db,
            table,
            format,
            batch,
            commit,
        } => {
            use std::io::IsTerminal;
            let author = doltctl::bootstrap::author(&cfg).to_string();
            let spec = doltctl::import::ImportSpec {
                table,
                format,
                batch,
                commit: commit.map(|message| doltctl::import::CommitSpec { message, author }),
                progress: std::io::stderr().is_terminal(),
                ..doltctl::import::ImportSpec::new(file, db)
            };
            let summary = rt.block_on(doltctl::import::run(&cfg, &spec))?;
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Op::Logs {
            follow,
            lines,
            supervisor,
            server,
        } => {
            let filter = match (supervisor, server) {
                (true, false) => logs::Filter::Supervisor,
                (false, true) => logs::Filter::Server,
                _ => logs::Filter::All,
            };
            let inst = doltctl::Instance::new(&cfg.data_dir);
            let path = inst.server_log();
            for l in logs::read_tail_filtered(&path, cfg.logs.keep, lines, filter)? {
                println!("{l}");
            }
            if follow {
                logs::follow(
                    &path,
                    cfg.logs.keep,
                    filter,
                    std::io::stdout().lock(),
                    || false,
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init(
    rt: &tokio::runtime::Runtime,
    src: &ConfigSource,
    databases: &[String],
    start: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let (path, wrote) = doltctl::bootstrap::ensure_config(src, databases)?;
    if wrote {
        println!("wrote {}", path.display());
    }
    let cfg = Config::discover(&ConfigSource {
        explicit: Some(path),
        data_dir_override: src.data_dir_override.clone(),
    })?;
    let opts = doltctl::bootstrap::InitOptions {
        databases: databases.to_vec(),
        start,
        progress: std::io::stderr().is_terminal(),
    };
    let report = rt.block_on(doltctl::bootstrap::init(&cfg, &opts))?;
    for a in &report.actions {
        println!("{a}");
    }
    for w in &report.warnings {
        eprintln!("doltctl: warning: {w}");
    }
    if report.actions.is_empty() && !wrote {
        println!("{}", report.in_place_line());
    }
    if let Some(url) = &report.url {
        println!("{url}");
    }
    Ok(ExitCode::SUCCESS)
}

fn doctor(
    rt: &tokio::runtime::Runtime,
    src: &ConfigSource,
    fix: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let report = rt.block_on(doltctl::doctor::run(src, fix));
    if json {
        println!("{}", serde_json::to_string_pretty(&report.checks)?);
    } else {
        for c in &report.checks {
            let level = match c.status {
                doltctl::doctor::Level::Ok => "OK  ",
                doltctl::doctor::Level::Warn => "WARN",
                doltctl::doctor::Level::Fail => "FAIL",
            };
            println!("{level}  {}: {}", c.check, c.detail);
            if let Some(f) = &c.fixed {
                println!("      fixed: {f}");
            } else if let Some(f) = c
                .fix
                .as_ref()
                .filter(|_| c.status != doltctl::doctor::Level::Ok)
            {
                println!("      fix: {f}");
            }
        }
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The running server, or (with `ensure`) one started now.
fn connection(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    ensure: bool,
) -> anyhow::Result<Option<ConnectionInfo>> {
    Ok(if ensure {
        Some(rt.block_on(client.ensure())?)
    } else {
        client.running()?
    })
}

fn not_running(client: &Client) -> ExitCode {
    eprintln!(
        "doltctl: no server is running for {}; start one with `doltctl start` (or use --ensure)",
        doltctl::Instance::new(&client.config().data_dir)
            .data_dir()
            .display()
    );
    ExitCode::from(EXIT_NOT_RUNNING)
}

/// Runs a command with extra environment, forwarding SIGINT/SIGTERM to it; returns its exit
/// code (128 + signal number when a signal ended it, as shells report).
async fn exec(
    command: &[std::ffi::OsString],
    vars: &[(String, String)],
) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::ExitStatusExt;
    use tokio::signal::unix::{signal, SignalKind};
    let (prog, args) = command.split_first().context("no command given")?;
    let mut child = tokio::process::Command::new(prog)
        .args(args)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .spawn()
        .with_context(|| format!("cannot run {}", prog.to_string_lossy()))?;
    let pid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let status = loop {
        let sig = tokio::select! {
            st = child.wait() => break st?,
            _ = int.recv() => nix::sys::signal::Signal::SIGINT,
            _ = term.recv() => nix::sys::signal::Signal::SIGTERM,
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

fn status(cfg: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let st = control::status(cfg)?;
    let phase = st.phase();
    let code = if st.is_ready() {
        ExitCode::SUCCESS
    } else if st.supervisor_alive {
        ExitCode::from(EXIT_NOT_READY)
    } else {
        ExitCode::from(EXIT_NOT_RUNNING)
    };
    if json {
        let mut v = match &st.state {
            Some(s) => serde_json::to_value(s)?,
            None => serde_json::json!({
                "data_dir": st.instance.data_dir(),
                "read_only": cfg.server.read_only,
            }),
        };
        if let Some(obj) = v.as_object_mut() {
            if let Some(s) = &st.state {
                // The connection as parts and as a Go DSN (the password is never shown here).
                let info = ConnectionInfo {
                    host: s.host.clone(),
                    port: s.port,
                    user: cfg.client.user.clone(),
                    password: String::new(),
                    socket: s.socket.clone(),
                    database: None,
                    read_only: s.read_only,
                };
                obj.insert("user".into(), info.user.clone().into());
                obj.insert("dsn".into(), info.dsn().into());
            }
            obj.insert("state".into(), serde_json::to_value(phase)?);
            obj.insert("ready".into(), st.is_ready().into());
            obj.insert("supervisor_alive".into(), st.supervisor_alive.into());
            obj.insert("server_alive".into(), st.server_alive.into());
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(code);
    }
    let dir = st.instance.data_dir().display();
    match &st.state {
        None => println!("stopped: no doltctl server has run for {dir}"),
        Some(s) => {
            println!("{phase}: {dir}");
            if st.is_ready() {
                println!("  url:        {}", s.url.as_deref().unwrap_or(""));
                if let Some(srv) = &s.server {
                    println!("  server pid: {}", srv.pid);
                }
                if let Some(t) = &s.started_at {
                    println!("  ready since {t}");
                }
            }
            if let Some(sup) = s.supervisor.as_ref().filter(|_| st.supervisor_alive) {
                println!("  supervisor: pid {}", sup.pid);
            }
            if let Some(v) = &s.dolt_version {
                println!("  dolt:       {v}");
            }
            println!("  read only:  {}", s.read_only);
            println!("  restarts:   {}", s.restarts);
            if let Some(e) = &s.last_error {
                println!("  last error: {e}");
                for l in &s.log_tail {
                    println!("    {l}");
                }
            }
        }
    }
    Ok(code)
}

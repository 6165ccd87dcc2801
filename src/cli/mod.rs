//! What the `doltctl` commands do once their arguments are parsed: each function takes plain
//! values, performs one command through the library, prints human output on stdout and
//! diagnostics on stderr, and returns the process exit code. The binary only parses arguments.
//!
//! Exit codes: 0 ok, 1 error, 2 usage (clap), 3 not running, 4 not ready, 5 orphaned
//! (`status`); `exec` passes its command's code through.

mod exec;
pub(crate) mod render;
mod status;
mod supervise;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::client::{Access, Client, ConnectionInfo};
use crate::config::{Config, ConfigSource, Instance};
use crate::error::{IoContext, Result};
use crate::lifecycle::control::{self, StartOptions, Stopped};
use crate::server::log as logs;

pub use status::status;
pub use supervise::{init_logging, print_error, run_supervisor_if_requested, ConfigArgs, RunArgs};

/// Exit code: no server is running.
pub const EXIT_NOT_RUNNING: u8 = 3;
/// Exit code: a supervisor runs but its server is not ready.
pub const EXIT_NOT_READY: u8 = 4;
/// Exit code of `status`: a server of ours runs without a supervisor (orphaned).
pub const EXIT_ORPHANED: u8 = 5;

/// How `env` prints the connection variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvFormat {
    /// `export K='v'` lines for a POSIX shell.
    Sh,
    /// `K="v"` lines for a .env file.
    Dotenv,
    /// One JSON object.
    Json,
}

/// Rows per INSERT that `import` uses unless told otherwise.
pub const DEFAULT_IMPORT_BATCH: usize = crate::import::DEFAULT_BATCH;

/// Which lines `logs` prints.
pub use crate::server::log::Filter as LogFilter;

/// The async runtime a command needs: the supervisor gets two workers; client commands do one
/// thing at a time, so no worker threads to start (it matters when many short-lived clients
/// start at once).
pub fn runtime(supervisor: bool) -> Result<tokio::runtime::Runtime> {
    let mut b = if supervisor {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().at("the async runtime")
}

/// The default log filter for a command's diagnostics (overridden by `DOLTCTL_LOG`).
pub fn default_log_level(supervisor: bool) -> &'static str {
    if supervisor {
        "info"
    } else {
        "warn"
    }
}

/// `doltctl run`: the supervisor in the foreground until SIGTERM/SIGINT.
pub fn run(mut cfg: Config, args: RunArgs) -> Result<ExitCode> {
    cfg.server.read_only |= args.read_only;
    if let Some(t) = args.idle_timeout {
        cfg.server.idle_timeout = t;
    }
    let opts = crate::lifecycle::supervisor::RunOptions {
        detached: args.detached,
    };
    runtime(true)?.block_on(crate::lifecycle::supervisor::run(cfg, opts))?;
    Ok(ExitCode::SUCCESS)
}

/// `doltctl start`: a detached supervisor; prints the URL once the server is ready.
pub fn start(mut cfg: Config, read_only: bool) -> Result<ExitCode> {
    cfg.server.read_only |= read_only;
    let state = runtime(false)?.block_on(control::start_with(&cfg, &StartOptions::default()))?;
    println!("{}", state.url.unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

/// `doltctl stop`.
pub fn stop(cfg: &Config) -> Result<ExitCode> {
    match runtime(false)?.block_on(control::stop(cfg))? {
        Stopped::NotRunning => println!("not running"),
        Stopped::Stopped => println!("stopped"),
        Stopped::Orphans(pids) => {
            for pid in pids {
                println!("stopped orphaned server pid {pid} (it ran without a supervisor)");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `doltctl restart`.
pub fn restart(cfg: &Config) -> Result<ExitCode> {
    let state = runtime(false)?.block_on(control::restart(cfg))?;
    println!("{}", state.url.unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

/// `doltctl url [--ensure]`.
pub fn url(cfg: Config, ensure: bool) -> Result<ExitCode> {
    let client = Client::from_config(cfg).access(Access::Auto);
    match connection(&client, ensure)? {
        Some(info) => {
            println!("{}", info.url());
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(not_running(&client)),
    }
}

/// `doltctl env [--ensure] [--format]`.
pub fn env(cfg: Config, ensure: bool, format: EnvFormat) -> Result<ExitCode> {
    let client = Client::from_config(cfg).access(Access::Auto);
    let Some(info) = connection(&client, ensure)? else {
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
        EnvFormat::Json => println!("{:#}", render::connection_json(&info)),
    }
    Ok(ExitCode::SUCCESS)
}

/// `doltctl exec CMD...`: runs CMD with the connection variables, starting the server first.
pub fn exec(cfg: Config, command: &[OsString]) -> Result<ExitCode> {
    let client = Client::from_config(cfg).access(Access::Auto);
    let rt = runtime(false)?;
    let info = rt.block_on(client.ensure())?;
    rt.block_on(exec::run(command, &render::env_vars(&info)))
}

/// What `doltctl sql` runs.
#[derive(Debug, Clone, Default)]
pub struct SqlArgs {
    /// The database to use.
    pub database: Option<String>,
    /// The statements; `None` reads them from stdin.
    pub query: Option<String>,
    /// Print each result set as JSON.
    pub json: bool,
    /// Use read-only sessions.
    pub read_only: bool,
}

/// `doltctl sql`.
pub fn sql(cfg: Config, args: SqlArgs) -> Result<ExitCode> {
    let mut client = Client::from_config(cfg).access(Access::Auto);
    if let Some(db) = args.database {
        client = client.database(db);
    }
    if args.read_only {
        client = client.read_only();
    }
    let text = match args.query {
        Some(q) => q,
        None => std::io::read_to_string(std::io::stdin()).at("standard input")?,
    };
    let statements: Vec<String> = crate::client::sqlsplit::split(&text)
        .into_iter()
        .map(|s| s.text)
        .collect();
    let sets = runtime(false)?.block_on(client.execute(&statements))?;
    for rs in &sets {
        if args.json {
            println!("{}", render::result_json(rs));
        } else {
            print!("{}", render::result_table(rs));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `doltctl import` loads.
#[derive(Debug, Clone)]
pub struct ImportArgs {
    /// The file.
    pub file: PathBuf,
    /// The database.
    pub db: String,
    /// The table, for CSV and JSONL.
    pub table: Option<String>,
    /// The format, when not from the extension.
    pub format: Option<crate::config::Format>,
    /// Rows per INSERT.
    pub batch: usize,
    /// A Dolt commit message.
    pub commit: Option<String>,
}

/// `doltctl import`.
pub fn import(cfg: &Config, args: ImportArgs) -> Result<ExitCode> {
    use crate::import::{CommitSpec, ImportSpec};
    let author = crate::bootstrap::author(cfg).to_string();
    let spec = ImportSpec {
        table: args.table,
        format: args.format,
        batch: args.batch,
        commit: args.commit.map(|message| CommitSpec { message, author }),
        progress: std::io::stderr().is_terminal(),
        ..ImportSpec::new(args.file, args.db)
    };
    let summary = runtime(false)?.block_on(crate::import::run(cfg, &spec))?;
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

/// `doltctl logs`.
pub fn logs(cfg: &Config, follow: bool, lines: usize, filter: LogFilter) -> Result<ExitCode> {
    let path = Instance::new(&cfg.data_dir).server_log();
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

/// `doltctl init`.
pub fn init(src: &ConfigSource, databases: &[String], start: bool) -> Result<ExitCode> {
    let (path, wrote) = crate::bootstrap::ensure_config(src, databases)?;
    if wrote {
        println!("wrote {}", path.display());
    }
    let cfg = Config::discover(&ConfigSource {
        explicit: Some(path),
        data_dir_override: src.data_dir_override.clone(),
    })?;
    let opts = crate::bootstrap::InitOptions {
        databases: databases.to_vec(),
        start,
        progress: std::io::stderr().is_terminal(),
    };
    let report = runtime(false)?.block_on(crate::bootstrap::init(&cfg, &opts))?;
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

/// `doltctl doctor`: exit 0 when nothing FAILs.
pub fn doctor(src: &ConfigSource, fix: bool, json: bool) -> Result<ExitCode> {
    use crate::doctor::Level;
    let report = runtime(false)?.block_on(crate::doctor::run(src, fix));
    if json {
        println!("{:#}", serde_json::json!(report.checks));
    } else {
        for c in &report.checks {
            let level = match c.status {
                Level::Ok => "OK  ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            println!("{level}  {}: {}", c.check, c.detail);
            if let Some(f) = &c.fixed {
                println!("      fixed: {f}");
            } else if let Some(f) = c.fix.as_ref().filter(|_| c.status != Level::Ok) {
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
fn connection(client: &Client, ensure: bool) -> Result<Option<ConnectionInfo>> {
    Ok(if ensure {
        Some(runtime(false)?.block_on(client.ensure())?)
    } else {
        client.running()?
    })
}

fn not_running(client: &Client) -> ExitCode {
    eprintln!(
        "doltctl: no server is running for {}; start one with `doltctl start` (or use --ensure)",
        Instance::new(&client.config().data_dir)
            .data_dir()
            .display()
    );
    ExitCode::from(EXIT_NOT_RUNNING)
}

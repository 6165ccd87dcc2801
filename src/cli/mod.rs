//! What the `doltctl` commands do once their arguments are parsed: each function takes plain
//! values, performs one command through the library, prints human output on stdout and
//! diagnostics on stderr, and returns the process exit code. The binary only parses arguments.
//!
//! Exit codes: 0 ok, 1 error, 2 usage (clap), 3 not running, 4 not ready, 5 orphaned
//! (`status`); `exec` passes its command's code through (126: cannot execute, 127: not
//! found). The full list is [`HELP_FOOTER`].

#[macro_use]
pub(crate) mod output;
mod cluster;
mod docs;
mod exec;
mod fleet;
mod interactive;
pub(crate) mod render;
mod service;
mod status;
mod supervise;
mod version;

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use crate::client::{Access, Client, ConnectionInfo};
use crate::config::{Config, ConfigSource, Instance};
use crate::error::{IoContext, Result};
use crate::lifecycle::control::{self, StartOptions, Stopped};
use crate::lifecycle::state_file::{Phase, State};
use crate::server::log as logs;

pub use crate::service::Scope as ServiceScope;
pub use cluster::{cluster_failover, cluster_status, cluster_switchover};
pub use docs::{completions, man, Shell, HELP_FOOTER};
pub use exec::{EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND};
pub use fleet::{gc, ps, GcArgs};
pub use service::{service_install, service_uninstall, ServiceArgs};
pub use status::{status, DEFAULT_LIVE_TIMEOUT};
pub use supervise::{init_logging, print_error, run_supervisor_if_requested, ConfigArgs, RunArgs};
pub use version::{version, VERSION};

/// Exit code: no server is running.
pub const EXIT_NOT_RUNNING: u8 = 3;
/// Exit code: a supervisor runs but its server is not ready.
pub const EXIT_NOT_READY: u8 = 4;
/// Exit code of `status`: a server of ours runs without a supervisor (orphaned).
pub const EXIT_ORPHANED: u8 = 5;
/// Exit code of `sql` in a cluster: every statement ran, but a write was acknowledged without
/// replication (Dolt's warning 3024): committed on the primary only.
pub const EXIT_UNREPLICATED: u8 = 8;

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

/// Prepares the process for a command: diagnostics on stderr ([`init_logging`]).
/// `supervisor`: the command is `run`. SIGPIPE stays ignored for every command (see
/// [`output`]).
pub fn setup(supervisor: bool) {
    init_logging(supervisor);
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
    // `doltctl exclusive` keeps clients from starting a server through the start lock; a
    // supervisor started by hand must not serve beside its command either.
    let instance = Instance::new(&cfg.data_dir);
    if let Some(run) = control::exclusive::live(&instance) {
        return Err(run.paused_error(&instance));
    }
    cfg.server.read_only |= args.read_only;
    if let Some(t) = args.idle_timeout {
        cfg.server.idle_timeout = t;
    }
    let opts = crate::lifecycle::supervisor::RunOptions {
        detached: args.detached,
        auto_started: args.auto_started,
    };
    // A container's PID 1 (or a subreaper): an init that reaps orphans stays behind, and this
    // process goes on as the supervisor (see sys/init.rs). Before the runtime: no threads yet.
    if !args.detached && crate::sys::init::reaps_orphans() {
        if let Some(code) = crate::sys::init::split_off_init()? {
            return Ok(code);
        }
    }
    runtime(true)?.block_on(crate::lifecycle::supervisor::run(cfg, opts))?;
    Ok(ExitCode::SUCCESS)
}

/// The options of `doltctl start`.
#[derive(Debug, Clone, Copy)]
pub struct StartArgs {
    /// Serve read-only.
    pub read_only: bool,
    /// Print nothing.
    pub quiet: bool,
    /// Wait until the server is ready (the default). Without it, return as soon as a
    /// supervisor runs and has recorded itself, and print nothing.
    pub wait: bool,
}

impl Default for StartArgs {
    fn default() -> StartArgs {
        StartArgs {
            read_only: false,
            quiet: false,
            wait: true,
        }
    }
}

/// `doltctl start`: a detached supervisor; prints the URL once the server is ready, exactly
/// as `doltctl url` prints it.
pub fn start(mut cfg: Config, args: StartArgs) -> Result<ExitCode> {
    cfg.server.read_only |= args.read_only;
    let rt = runtime(false)?;
    if !args.wait {
        rt.block_on(start_no_wait(&cfg))?;
        return Ok(ExitCode::SUCCESS);
    }
    let state = rt.block_on(control::start_with(&cfg, &StartOptions::default()))?;
    if !args.quiet {
        outln!("{}", url_of(&cfg, &state));
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts a supervisor like `start` does, but returns once one runs and has recorded itself
/// (starting, backoff or running), not when its server is ready. Errors `start` would see
/// before that (the supervisor exits at once, a writable server runs where a read-only one is
/// wanted) are still returned.
async fn start_no_wait(cfg: &Config) -> Result<()> {
    let registered = async {
        loop {
            if let Ok(st) = control::status(cfg) {
                let up = st
                    .state
                    .as_ref()
                    .filter(|_| st.supervisor_alive)
                    .is_some_and(|s| {
                        matches!(s.kind(), Phase::Starting | Phase::Backoff | Phase::Running)
                            && (s.read_only || !cfg.server.read_only)
                    });
                if up {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    // Dropping the start once the supervisor is registered leaves it running: it is detached,
    // in its own session, and never killed with its launcher.
    let opts = StartOptions::default();
    tokio::select! {
        biased;
        r = control::start_with(cfg, &opts) => r.map(|_| ()),
        () = registered => Ok(()),
    }
}

/// The URL of a running server as `url` prints it: the client's user and password, the
/// server's address.
fn url_of(cfg: &Config, state: &State) -> String {
    ConnectionInfo {
        host: state.host.clone(),
        port: state.port,
        user: cfg.client.user.clone(),
        password: cfg.client.password.clone(),
        socket: None,
        database: None,
        read_only: state.read_only,
    }
    .url()
}

/// `doltctl stop [--timeout D]`: `timeout` overrides `stop_timeout` for this stop (how long the
/// server gets after SIGTERM before it is killed).
pub fn stop(mut cfg: Config, quiet: bool, timeout: Option<Duration>) -> Result<ExitCode> {
    let rt = runtime(false)?;
    let stopped = match timeout {
        None => rt.block_on(control::stop(&cfg))?,
        Some(t) => {
            cfg.server.stop_timeout = t;
            rt.block_on(stop_within(&cfg, t))?
        }
    };
    if !quiet {
        match stopped {
            Stopped::NotRunning => outln!("not running"),
            Stopped::Stopped => outln!("stopped"),
            Stopped::Orphans(pids) => {
                for pid in pids {
                    outln!("stopped orphaned server pid {pid} (it ran without a supervisor)");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A stop whose server gets `grace` to shut down. The supervisor escalates to SIGKILL after
/// the `stop_timeout` it was started with; when `grace` is shorter, the server (still the
/// recorded process, its own group) is killed here once `grace` has passed, and the supervisor
/// then finishes the stop as usual. (`cfg.server.stop_timeout` is `grace`, so an orphan
/// without a supervisor gets `grace` too.)
async fn stop_within(cfg: &Config, grace: Duration) -> Result<Stopped> {
    let server = control::status(cfg)
        .ok()
        .and_then(|st| st.state)
        .and_then(|s| s.server().cloned());
    let stop = control::stop(cfg);
    tokio::pin!(stop);
    tokio::select! {
        r = &mut stop => return r,
        () = tokio::time::sleep(grace) => {}
    }
    if let Some(server) = server.filter(|s| s.is_running()) {
        tracing::warn!(
            pid = server.pid,
            "server still running after {grace:?}; sending SIGKILL"
        );
        let _ = server.signal_group(nix::sys::signal::Signal::SIGKILL);
    }
    stop.await
}

/// `doltctl restart`: prints the URL as `start` does.
pub fn restart(cfg: &Config, quiet: bool) -> Result<ExitCode> {
    let state = runtime(false)?.block_on(control::restart(cfg))?;
    if !quiet {
        outln!("{}", url_of(cfg, &state));
    }
    Ok(ExitCode::SUCCESS)
}

/// A client for a command, with the database it asked for.
fn cli_client(cfg: Config, database: Option<String>) -> Client {
    let client = Client::from_config(cfg).access(Access::Auto);
    match database {
        Some(db) => client.database(db),
        None => client,
    }
}

/// `doltctl url [--ensure] [--database DB]`.
pub fn url(cfg: Config, ensure: bool, database: Option<String>) -> Result<ExitCode> {
    let client = cli_client(cfg, database);
    match connection(&client, ensure)? {
        Some(info) => {
            outln!("{}", info.url());
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(not_running(&client)),
    }
}

/// `doltctl env [--ensure] [--format] [--database DB]`.
pub fn env(
    cfg: Config,
    ensure: bool,
    format: EnvFormat,
    database: Option<String>,
) -> Result<ExitCode> {
    let client = cli_client(cfg, database);
    let Some(info) = connection(&client, ensure)? else {
        return Ok(not_running(&client));
    };
    let mut out = std::io::stdout().lock();
    match format {
        EnvFormat::Sh => {
            for (k, v) in render::env_vars(&info) {
                writeln!(out, "export {k}={}", render::sh_quote(&v)).at("stdout")?;
            }
        }
        EnvFormat::Dotenv => {
            for (k, v) in render::env_vars(&info) {
                writeln!(out, "{k}={}", render::dotenv_quote(&v)).at("stdout")?;
            }
        }
        EnvFormat::Json => writeln!(out, "{:#}", render::connection_json(&info)).at("stdout")?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `doltctl exec [--database DB] CMD...`: runs CMD with the connection variables (those of
/// `env`) plus `MYSQL_HOME`, a directory whose `my.cnf` gives the mysql/mariadb clients the
/// user, host and port; the password reaches them only through `MYSQL_PWD`. Starts the
/// server first if needed.
pub fn exec(cfg: Config, database: Option<String>, command: &[OsString]) -> Result<ExitCode> {
    let client = cli_client(cfg, database);
    let rt = runtime(false)?;
    let info = rt.block_on(client.ensure())?;
    let mut vars = render::env_vars(&info);
    if let Some(home) = mysql_home(client.config(), &info) {
        vars.push(("MYSQL_HOME".into(), home.to_string_lossy().into_owned()));
    }
    rt.block_on(exec::run(command, &vars, exec::Forward::IntAndTerm))
}

/// `doltctl exclusive [--database DB] CMD...`: stops the server gracefully (if it runs), keeps
/// every client from starting one while CMD runs in the data dir (in `<data_dir>/DB` with
/// `--database`) with the environment dolt needs, then starts the server again if it was
/// running. CMD's exit code is passed through as `exec` does (126/127, 128+N for signal N);
/// SIGINT and SIGTERM are forwarded to it. When the server cannot be started again, that is
/// reported and the exit code is CMD's, or 1 if CMD succeeded.
pub fn exclusive(cfg: Config, database: Option<String>, command: &[OsString]) -> Result<ExitCode> {
    if command.is_empty() {
        return Err(crate::Error::ConfigValue(
            "exclusive: no command given".into(),
        ));
    }
    let data_dir = Instance::new(&cfg.data_dir).data_dir().to_path_buf();
    let dir = match &database {
        Some(db) => data_dir.join(db),
        None => data_dir.clone(),
    };
    if let Some(db) = database.filter(|_| !dir.join(".dolt").is_dir()) {
        return Err(crate::Error::DatabaseMissing {
            data_dir,
            database: db,
        });
    }
    let rt = runtime(false)?;
    let ex = rt.block_on(control::exclusive::begin(&cfg, command))?;
    if ex.was_running() {
        errln!(
            "doltctl: server for {} stopped; running {} with the data dir to itself",
            ex.data_dir().display(),
            describe(command)
        );
    }
    let vars = ex.dolt_env()?;
    // A bare `dolt` is the dolt the server runs, found as a start finds it (DOLT_BIN, the
    // config, PATH, the install location), not whatever PATH has first.
    let mut command = command.to_vec();
    if command[0] == "dolt" {
        command[0] = ex.dolt_bin()?.into_os_string();
    }
    let code = rt.block_on(exec::run_in(
        &command,
        &vars,
        exec::Forward::IntAndTerm,
        Some(&dir),
    ))?;
    let was_running = ex.was_running();
    match rt.block_on(ex.end()) {
        Ok(Some(_)) => errln!("doltctl: server started again"),
        Ok(None) => {}
        Err(e) if was_running => {
            errln!("doltctl: exclusive: the server could not be started again: {e}");
            return Ok(if code == ExitCode::SUCCESS {
                ExitCode::FAILURE
            } else {
                code
            });
        }
        Err(e) => return Err(e),
    }
    Ok(code)
}

/// A command line for messages.
fn describe(command: &[OsString]) -> String {
    command
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes `<data_dir>/.doltctl/mysql-client/<database>/my.cnf` (see
/// [`render::client_option_file`]; one per database, so concurrent `exec`s for different
/// databases never see each other's) and returns its directory; `None` (with a warning) when
/// it cannot be written, so `exec` still runs its command.
fn mysql_home(cfg: &Config, info: &ConnectionInfo) -> Option<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let name = match &info.database {
        Some(db) => format!("db-{}", crate::config::url::percent_encode(db)),
        None => "default".into(),
    };
    let dir = Instance::new(&cfg.data_dir)
        .runtime_dir()
        .join("mysql-client")
        .join(name);
    let written = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .at(&dir)
        .and_then(|()| {
            crate::sys::atomic::write_atomic(
                &dir.join("my.cnf"),
                render::client_option_file(info).as_bytes(),
            )
        });
    match written {
        Ok(()) => Some(dir),
        Err(e) => {
            tracing::warn!("{e}; mysql clients will not get the user from doltctl");
            None
        }
    }
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

/// `doltctl sql`: the statements of `-q`, else of stdin. On a terminal without `-q`, an
/// interactive mysql/mariadb client instead (see `cli::interactive`).
pub fn sql(cfg: Config, args: SqlArgs) -> Result<ExitCode> {
    if args.query.is_none() && std::io::stdin().is_terminal() {
        return interactive::sql(cfg, &args);
    }
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
    let done = runtime(false)?.block_on(client.execute_report(&statements))?;
    let mut out = std::io::stdout().lock();
    for rs in &done.sets {
        if args.json {
            writeln!(out, "{}", render::result_json(rs)).at("stdout")?;
        } else {
            write!(out, "{}", render::result_table(rs)).at("stdout")?;
        }
    }
    if !done.unreplicated.is_empty() {
        for w in &done.unreplicated {
            errln!(
                "doltctl: warning 3024: not replicated to every standby (committed on the \
                 primary only; a failover now would lose it): {w}"
            );
        }
        return Ok(ExitCode::from(EXIT_UNREPLICATED));
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
    outln!("{summary}");
    Ok(ExitCode::SUCCESS)
}

/// How many lines `logs` prints first when neither `-n` nor `--since` says.
pub const DEFAULT_LOG_LINES: usize = 50;

/// What `doltctl logs` prints.
#[derive(Debug, Clone, Copy)]
pub struct LogsArgs {
    /// Keep printing new lines.
    pub follow: bool,
    /// How many lines to print first: the last N (of those `since` selects). Default: all lines
    /// since `since` when it is given, else [`DEFAULT_LOG_LINES`].
    pub lines: Option<usize>,
    /// Which sources.
    pub filter: LogFilter,
    /// Only lines written at or after this time (see [`parse_since`]).
    pub since: Option<SystemTime>,
    /// One JSON object per line: `{"time", "source", "text"}`.
    pub json: bool,
}

/// Parses `logs --since`: a duration (`10m`: that long ago) or an RFC 3339 timestamp.
pub fn parse_since(s: &str) -> std::result::Result<SystemTime, String> {
    logs::parse_since(s, SystemTime::now())
}

/// `doltctl logs`.
pub fn logs(cfg: &Config, args: LogsArgs) -> Result<ExitCode> {
    let path = Instance::new(&cfg.data_dir).server_log();
    let view = logs::View {
        filter: args.filter,
        since: args.since,
        json: args.json,
    };
    let n = match (args.lines, args.since) {
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_LOG_LINES),
    };
    let mut out = std::io::stdout().lock();
    for l in logs::read_selected(&path, cfg.logs.keep, n, &view)? {
        writeln!(out, "{}", view.render(&l)).at("stdout")?;
    }
    out.flush().at("stdout")?;
    if args.follow {
        logs::follow(&path, cfg.logs.keep, &view, out, || false)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `doltctl init`: with `quiet`, nothing on stdout (warnings still go to stderr).
pub fn init(
    src: &ConfigSource,
    databases: &[String],
    start: bool,
    quiet: bool,
) -> Result<ExitCode> {
    let (path, wrote) = crate::bootstrap::ensure_config(src, databases)?;
    let mut out: Box<dyn Write> = if quiet {
        Box::new(std::io::sink())
    } else {
        Box::new(std::io::stdout().lock())
    };
    if wrote {
        writeln!(out, "wrote {}", path.display()).at("stdout")?;
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
        writeln!(out, "{a}").at("stdout")?;
    }
    for w in &report.warnings {
        errln!("doltctl: warning: {w}");
    }
    if report.actions.is_empty() && !wrote {
        writeln!(out, "{}", report.in_place_line()).at("stdout")?;
    }
    if let Some(url) = &report.url {
        // As `url` prints it (with the password, when there is one).
        let running = Client::from_config(cfg).running().ok().flatten();
        writeln!(out, "{}", running.map_or_else(|| url.clone(), |i| i.url())).at("stdout")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `doltctl doctor`: exit 0 when nothing FAILs.
pub fn doctor(src: &ConfigSource, fix: bool, json: bool) -> Result<ExitCode> {
    use crate::doctor::Level;
    let report = runtime(false)?.block_on(crate::doctor::run(src, fix));
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{:#}", serde_json::json!(report.checks)).at("stdout")?;
    } else {
        for c in &report.checks {
            let level = match c.status {
                Level::Ok => "OK  ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            writeln!(out, "{level}  {}: {}", c.check, c.detail).at("stdout")?;
            if let Some(f) = &c.fixed {
                writeln!(out, "      fixed: {f}").at("stdout")?;
            } else if let Some(f) = c.fix.as_ref().filter(|_| c.status != Level::Ok) {
                writeln!(out, "      fix: {f}").at("stdout")?;
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
    // In a cluster the connection is the primary's, found through etcd; nothing is started.
    Ok(if ensure || client.config().cluster.is_some() {
        Some(runtime(false)?.block_on(client.ensure())?)
    } else {
        client.running()?
    })
}

fn not_running(client: &Client) -> ExitCode {
    errln!(
        "doltctl: no server is running for {}; start one with `doltctl start` (or use --ensure)",
        Instance::new(&client.config().data_dir)
            .data_dir()
            .display()
    );
    ExitCode::from(EXIT_NOT_RUNNING)
}

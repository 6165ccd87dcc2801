//! The library's error type. Every variant carries the thing it is about (file, pid, port,
//! database) so a message can be acted on without reading logs.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The io error is part of the message, not a `source`: printed with its chain it would
    // otherwise appear twice.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },

    #[error("config {path}:{line}:{column}: {key}: {message}")]
    Config {
        path: PathBuf,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },

    #[error("config: {0}")]
    ConfigValue(String),

    #[error("state file {path} is not valid: {message}; it is rewritten by the next `doltctl start` (move it aside if you want to keep it)")]
    StateFile { path: PathBuf, message: String },

    #[error("dolt binary not found ({tried}); run scripts/install-dolt.sh, or set DOLT_BIN or [server] dolt_bin")]
    DoltNotFound { tried: String },

    #[error("{bin}: {message}")]
    DoltBinary { bin: PathBuf, message: String },

    #[error(
        "database {database:?} is locked by another process: pid {pid} ({cmdline}) holds {lock}; \
         doltctl never touches processes it did not start: stop that process, or point doltctl at another data dir"
    )]
    LockedByForeign {
        database: String,
        lock: PathBuf,
        pid: i32,
        cmdline: String,
    },

    #[error(
        "database {database:?} is locked ({lock}) by a process doltctl cannot identify \
         (not visible in /proc/locks); stop the other dolt process using this data dir"
    )]
    LockedByUnknown { database: String, lock: PathBuf },

    #[error("a dolt sql-server not started by doltctl is running on {data_dir} (pid {pid}: {cmdline}); stop it first")]
    ForeignServer {
        data_dir: PathBuf,
        pid: i32,
        cmdline: String,
    },

    #[error("port {host}:{port} is already in use{}; choose another [server] port or stop that process", holder_text(.holder))]
    PortInUse {
        host: String,
        port: u16,
        holder: Option<(i32, String)>,
    },

    #[error("another doltctl supervisor{} is already running for {data_dir}", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    AlreadyRunning { data_dir: PathBuf, pid: Option<i32> },

    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        what: String,
        waited: std::time::Duration,
    },

    #[error("dolt sql-server exited before it was ready ({status}){}", tail_text(.log_tail))]
    ExitedBeforeReady {
        status: String,
        log_tail: Vec<String>,
    },

    #[error("dolt sql-server did not become ready within {waited:?} on {host}:{port}: {last_error}{}", tail_text(.log_tail))]
    NotReady {
        host: String,
        port: u16,
        waited: std::time::Duration,
        last_error: String,
        log_tail: Vec<String>,
    },

    #[error("the server is in state {state}: {}{}", .last_error.as_deref().unwrap_or("no error recorded"), tail_text(.log_tail))]
    ServerFailed {
        state: String,
        last_error: Option<String>,
        log_tail: Vec<String>,
    },

    #[error("no doltctl server is running for {data_dir}; start one with `doltctl start`")]
    NotRunning { data_dir: PathBuf },

    #[error("supervisor for {data_dir} exited during start ({status}){}", .last_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    SupervisorExited {
        data_dir: PathBuf,
        status: String,
        last_error: Option<String>,
    },

    #[error(
        "no doltctl server is running for {data_dir} and auto-start is off \
         ([client] autostart = false or DOLTCTL_AUTOSTART=0); start it with `doltctl start`"
    )]
    AutostartOff { data_dir: PathBuf },

    #[error("{}{message} (server {target}, {attempts} attempt{})",
        if *.transient { "gave up on a transient error: " } else { "" },
        if *.attempts == 1 { "" } else { "s" })]
    Sql {
        target: String,
        attempts: u32,
        /// True when every attempt failed with a retryable error and the retries ran out.
        transient: bool,
        /// The server's message (or the connection error).
        message: String,
        /// The server's error code, if the server answered.
        code: Option<u16>,
    },

    #[error(
        "the doltctl server for {data_dir} is read-only ([server] read_only or start --read-only): {detail}; \
         restart it without read-only to write"
    )]
    ServerReadOnly { data_dir: PathBuf, detail: String },

    #[error(
        "a writable server is already running for {} ({url}); stop it (`doltctl stop`) \
         and start again with --read-only", .data_dir.display()
    )]
    WritableServerRunning { data_dir: PathBuf, url: String },

    #[error("cannot find the doltctl binary to run a supervisor: install it on PATH (cargo install --path .), set DOLTCTL_BIN, or call doltctl::run_supervisor_if_requested() first thing in main")]
    DoltctlNotFound,

    #[error("cannot resolve host {host:?}; set [server] host to an address such as 127.0.0.1")]
    Resolve { host: String },

    #[error("process {pid}: {message}")]
    Process { pid: i32, message: String },

    /// A file doltctl loads (an import, a seed): which file, which 1-based line, what is wrong.
    #[error("{}{}: {message}", .path.display(), .line.map(|l| format!(":{l}")).unwrap_or_default())]
    Import {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },

    /// `dolt init` (or another dolt command doltctl runs for the user) failed.
    #[error("{what} failed: {message}")]
    DoltCommand { what: String, message: String },
}

fn holder_text(holder: &Option<(i32, String)>) -> String {
    match holder {
        Some((pid, cmd)) => format!(" by pid {pid} ({cmd})"),
        None => String::new(),
    }
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("\nlast log lines:\n  {}", tail.join("\n  "))
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err,
        }
    }
}

/// Attaches a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

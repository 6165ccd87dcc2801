//! The library's error type. Every variant carries the thing it is about (file, pid, port,
//! database) so a message can be acted on without reading logs.
//!
//! Messages are complete on their own: a variant that wraps another error shows its text
//! *and* returns it from `source()` for programs that inspect it. Print an [`Error`] with
//! `{}`; walking the source chain as well would repeat the cause.

use std::path::PathBuf;

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, each with the file, process, port or database it is about
/// and, where it helps, the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or system call failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file (or the operation) that failed.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },

    /// A config file has a wrong key or value.
    #[error("config {path}:{line}:{column}: {key}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The key, dotted (`server.port`).
        key: String,
        /// What is wrong.
        message: String,
    },

    /// A setting (from a file, a flag or the environment) is not usable.
    #[error("config: {0}")]
    ConfigValue(String),

    /// The state file cannot be read as one.
    #[error("state file {} is not valid: {source}; it is rewritten by the next `doltctl start` (move it aside if you want to keep it)", .path.display())]
    StateFile {
        /// The state file.
        path: PathBuf,
        /// Why it does not parse.
        source: serde_json::Error,
    },

    /// No dolt binary was found.
    #[error(
        "dolt binary not found; looked in: {tried}; install it with scripts/install-dolt.sh \
         (from the doltctl checkout; it puts dolt in ~/.local/bin), or set DOLT_BIN or \
         [server] dolt_bin to its path"
    )]
    DoltNotFound {
        /// Every place doltctl looked, in order, each with what it found there.
        tried: String,
    },

    /// The data dir does not exist. `start`, `run` and auto-start never create one: a
    /// misspelled `--data-dir` would otherwise start an empty server.
    #[error(
        "data dir {} does not exist; set it up with `doltctl init` (with the same --config / \
         --data-dir), or correct --data-dir / data_dir if it is misspelled", .data_dir.display()
    )]
    DataDirMissing {
        /// The data dir.
        data_dir: PathBuf,
    },

    /// The data dir is a file (or something else that is not a directory).
    #[error(
        "data dir {} is not a directory; point --data-dir / data_dir at a directory \
         (`doltctl init` creates one)", .data_dir.display()
    )]
    DataDirNotADirectory {
        /// The data dir.
        data_dir: PathBuf,
    },

    /// The config file named by `--config` or `$DOLTCTL_CONFIG` does not exist.
    #[error(
        "config file {} ({given_by}) does not exist; create it with `doltctl --config {} init`, \
         or correct the path", .path.display(), .path.display()
    )]
    ConfigMissing {
        /// The config file.
        path: PathBuf,
        /// Who named it: `--config`, `$DOLTCTL_CONFIG`, or the caller.
        given_by: String,
    },

    /// The config file exists but cannot be read.
    #[error("cannot read config file {}: {source}; {hint}", .path.display())]
    ConfigUnreadable {
        /// The config file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
        /// What to do about it.
        hint: String,
    },

    /// The dolt binary could not be run, or answered nonsense.
    #[error("{bin}: {message}")]
    DoltBinary {
        /// The binary.
        bin: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// A process doltctl did not start holds a database's lock.
    #[error(
        "database {database:?} is locked by another process: pid {pid} ({cmdline}) holds {lock}; \
         doltctl never touches processes it did not start: stop that process, or point doltctl at another data dir"
    )]
    LockedByForeign {
        /// The database.
        database: String,
        /// Its LOCK file.
        lock: PathBuf,
        /// The holder.
        pid: i32,
        /// The holder's command line.
        cmdline: String,
    },

    /// A database's lock is held by a process that cannot be seen.
    #[error(
        "database {database:?} is locked ({lock}) by a process doltctl cannot identify \
         (not visible in /proc/locks); stop the other dolt process using this data dir"
    )]
    LockedByUnknown {
        /// The database.
        database: String,
        /// Its LOCK file.
        lock: PathBuf,
    },

    /// A dolt sql-server doltctl did not start serves the data dir.
    #[error("a dolt sql-server not started by doltctl is running on {data_dir} (pid {pid}: {cmdline}); stop it first")]
    ForeignServer {
        /// The data dir.
        data_dir: PathBuf,
        /// The server's pid.
        pid: i32,
        /// Its command line.
        cmdline: String,
    },

    /// The configured port is taken.
    #[error("port {host}:{port} is already in use{}; choose another [server] port or stop that process", holder_text(.holder))]
    PortInUse {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// Who listens there (pid, command line), when it can be seen.
        holder: Option<(i32, String)>,
    },

    /// The supervisor cannot listen on `[metrics] listen`.
    #[error(
        "[metrics] listen = \"{addr}\": cannot listen there: {source}; choose a free port on an \
         address of this host, or remove [metrics] listen to turn metrics off"
    )]
    MetricsListen {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The system's error.
        source: std::io::Error,
    },

    /// A supervisor already runs for the data dir.
    #[error("another doltctl supervisor{} is already running for {data_dir}", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    AlreadyRunning {
        /// The data dir.
        data_dir: PathBuf,
        /// The running supervisor, when known.
        pid: Option<i32>,
    },

    /// Something did not happen in time.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        waited: std::time::Duration,
    },

    /// The server exited while starting.
    #[error("dolt sql-server exited before it was ready ({status}){}", tail_text(.log_tail))]
    ExitedBeforeReady {
        /// How it exited.
        status: String,
        /// Its first error lines and last lines.
        log_tail: Vec<String>,
    },

    /// The server did not answer `SELECT 1` in time.
    #[error("dolt sql-server did not become ready within {waited:?} on {host}:{port}: {last_error}{}", tail_text(.log_tail))]
    NotReady {
        /// The host probed.
        host: String,
        /// The port probed.
        port: u16,
        /// How long.
        waited: std::time::Duration,
        /// The last probe's error.
        last_error: String,
        /// The server log's relevant lines.
        log_tail: Vec<String>,
    },

    /// The supervisor gave up on the server (`failed`).
    #[error("the server is in state {state}: {}{}", .last_error.as_deref().unwrap_or("no error recorded"), tail_text(.log_tail))]
    ServerFailed {
        /// The phase.
        state: String,
        /// Why.
        last_error: Option<String>,
        /// The server log's relevant lines.
        log_tail: Vec<String>,
    },

    /// No server runs for the data dir.
    #[error("no doltctl server is running for {data_dir}; start one with `doltctl start`")]
    NotRunning {
        /// The data dir.
        data_dir: PathBuf,
    },

    /// A supervisor started for a client exited before its server was ready.
    #[error("supervisor for {data_dir} exited during start ({status}){}", .last_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    SupervisorExited {
        /// The data dir.
        data_dir: PathBuf,
        /// How it exited.
        status: String,
        /// What it recorded or logged last.
        last_error: Option<String>,
    },

    /// No server runs and auto-start is off.
    #[error(
        "no doltctl server is running for {data_dir} and auto-start is off \
         ([client] autostart = false or DOLTCTL_AUTOSTART=0); start it with `doltctl start`"
    )]
    AutostartOff {
        /// The data dir.
        data_dir: PathBuf,
    },

    /// A statement or connection failed (after retries, for transient errors).
    #[error("{}{message} (server {target}, {attempts} attempt{})",
        if *.transient { "gave up on a transient error: " } else { "" },
        if *.attempts == 1 { "" } else { "s" })]
    Sql {
        /// The server tried (`host:port`).
        target: String,
        /// Attempts made.
        attempts: u32,
        /// True when every attempt failed with a retryable error and the retries ran out.
        transient: bool,
        /// The server's message (or the connection error).
        message: String,
        /// The server's error code, if the server answered.
        code: Option<u16>,
        /// The driver's error, when one caused this.
        source: Option<Box<mysql_async::Error>>,
    },

    /// A write was attempted on a read-only server.
    #[error(
        "the doltctl server for {data_dir} is read-only ([server] read_only or start --read-only): {detail}; \
         restart it without read-only to write"
    )]
    ServerReadOnly {
        /// The data dir.
        data_dir: PathBuf,
        /// What was refused.
        detail: String,
    },

    /// `doltctl exclusive` stopped the server to run a command of its own on the data dir,
    /// and holds the start lock until it ends; waiting for it took longer than the client's
    /// `retry_window`.
    #[error(
        "the server for {} is paused for an exclusive command (pid {pid}: {command}); it starts \
         again when that ends", .data_dir.display()
    )]
    ServerPaused {
        /// The data dir.
        data_dir: PathBuf,
        /// The `doltctl exclusive` process.
        pid: i32,
        /// The command it runs.
        command: String,
    },

    /// A command named a database the data dir does not hold.
    #[error(
        "database {database} does not exist in {} (no {}/.dolt); create it with \
         `doltctl init --db {database}`, or name one of the data dir's databases",
        .data_dir.display(), .data_dir.join(.database).display()
    )]
    DatabaseMissing {
        /// The data dir.
        data_dir: PathBuf,
        /// The database asked for.
        database: String,
    },

    /// A read-only start found a writable server running.
    #[error(
        "a writable server is already running for {} ({url}); stop it (`doltctl stop`) \
         and start again with --read-only", .data_dir.display()
    )]
    WritableServerRunning {
        /// The data dir.
        data_dir: PathBuf,
        /// The running server's URL.
        url: String,
    },

    /// A file in the per-user registry of instances (`doltctl ps`) cannot be read as one.
    #[error(
        "registry entry {} is not valid: {source}; doltctl writes these files atomically, so \
         another program wrote it: delete it (a supervisor whose entry it was writes its own \
         again within a health interval)",
        .path.display()
    )]
    RegistryFile {
        /// The registry file.
        path: PathBuf,
        /// Why it does not parse.
        source: serde_json::Error,
    },

    /// No program to run a supervisor with.
    #[error(
        "cannot find the doltctl binary to run a supervisor (looked at $DOLTCTL_BIN, doltctl on \
         PATH and in cargo's bin dir: $CARGO_INSTALL_ROOT/bin, $CARGO_HOME/bin, ~/.cargo/bin): \
         install it with scripts/install.sh (cargo install --path .), set DOLTCTL_BIN, or call \
         doltctl::run_supervisor_if_requested() first thing in main"
    )]
    DoltctlNotFound,

    /// A host name does not resolve.
    #[error("cannot resolve host {host:?}; set [server] host to an address such as 127.0.0.1")]
    Resolve {
        /// The host.
        host: String,
    },

    /// A process could not be checked or signalled.
    #[error("process {pid}: {message}")]
    Process {
        /// The process.
        pid: i32,
        /// What went wrong.
        message: String,
    },

    /// A file doltctl loads (an import, a seed): which file, which 1-based line, what is wrong.
    #[error("{}{}: {message}", .path.display(), .line.map(|l| format!(":{l}")).unwrap_or_default())]
    Import {
        /// The file.
        path: PathBuf,
        /// The 1-based line, when one is at fault.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },

    /// `dolt init` (or another dolt command doltctl runs for the user) failed.
    #[error("{what} failed: {message}")]
    DoltCommand {
        /// The command.
        what: String,
        /// Its error output.
        message: String,
    },

    /// A systemd unit `doltctl service` cannot write or remove (not ours, a bad name, no
    /// permission).
    #[error("systemd unit {}: {message}", .unit.display())]
    ServiceUnit {
        /// The unit file (or its name).
        unit: PathBuf,
        /// What is wrong, and what to do.
        message: String,
    },

    /// `doltctl sql` on a terminal needs a MySQL-protocol client program.
    #[error(
        "no MySQL client on PATH for an interactive session (looked for {looked}): install one \
         (Debian/Ubuntu: apt-get install mariadb-client; Fedora: dnf install mariadb; \
         macOS: brew install mysql-client), or pass statements with -q or on stdin"
    )]
    NoSqlClient {
        /// The programs looked for.
        looked: String,
    },

    /// etcd (the cluster's election store) did not answer or refused a request.
    #[error(
        "etcd at {endpoints}: {message}; check that etcd runs and [cluster] etcd lists its \
         client URLs (without etcd no node is promoted and the cluster is read-only)"
    )]
    Etcd {
        /// The endpoints tried.
        endpoints: String,
        /// What failed.
        message: String,
    },

    /// A cluster operation could not be done (no primary found, a switchover refused, ...).
    #[error("cluster {cluster}: {message}")]
    Cluster {
        /// `[cluster] name`.
        cluster: String,
        /// What went wrong and what to do.
        message: String,
    },
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
            source: err,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn wrapped_errors_stay_reachable_as_sources_and_in_the_message() {
        let e = Error::io(
            "/x/state.json",
            std::io::Error::from_raw_os_error(nix::libc::ENOSPC),
        );
        let src = e.source().expect("the io error is the source");
        assert!(src.downcast_ref::<std::io::Error>().is_some());
        assert!(
            e.to_string().starts_with("/x/state.json: No space left"),
            "{e}"
        );

        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let e = Error::StateFile {
            path: "/x/state.json".into(),
            source: json,
        };
        assert!(e.source().is_some_and(|s| s.is::<serde_json::Error>()));
    }
}

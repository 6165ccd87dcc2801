//! The client side: find the running server (a pure read of the state file, with identity
//! checks), auto-start it exactly once across processes, and connect with retry.
//!
//! ```no_run
//! # async fn demo() -> doltctl::Result<()> {
//! use mysql_async::prelude::Queryable;
//! let client = doltctl::Client::discover()?; // doltctl.toml, as the CLI finds it
//! let mut conn = client.conn().await?;       // starts the server if needed, retries
//! let one: Option<i64> = conn.query_first("SELECT 1").await.map_err(|e| client.error(e))?;
//! println!("{one:?} from {}", client.url().await?);
//! # Ok(()) }
//! ```

pub(crate) mod sqlsplit;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool};
use serde::Serialize;

use crate::client::sqlsplit::{is_read_only_statement, is_transaction_control};
use crate::config::instance::Instance;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::lifecycle::control;
use crate::server::port::is_local_host;

/// Where and how to connect. The password is kept out of `Debug`.
#[derive(Clone, Serialize)]
pub struct ConnectionInfo {
    /// The server's host, as recorded by its supervisor.
    pub host: String,
    /// The server's TCP port.
    pub port: u16,
    /// The MySQL user (`[client] user`).
    pub user: String,
    /// The user's password (`[client] password`); never serialized or shown by `Debug`.
    #[serde(skip)]
    pub password: String,
    /// The server's unix socket, when it exists.
    pub socket: Option<PathBuf>,
    /// The database connections start in, if any.
    pub database: Option<String>,
    /// The server was started read-only.
    pub read_only: bool,
}

impl std::fmt::Debug for ConnectionInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url_redacted())
    }
}

impl ConnectionInfo {
    /// `mysql://user:password@host:port/db`, user and password percent-encoded.
    pub fn url(&self) -> String {
        let mut u = crate::config::url::url_for(&self.user, &self.password, &self.host, self.port);
        if let Some(db) = &self.database {
            u.push_str(&crate::config::url::percent_encode(db));
        }
        u
    }

    /// The URL with the password replaced, for messages and logs.
    pub fn url_redacted(&self) -> String {
        let pw = if self.password.is_empty() { "" } else { "xxx" };
        let mut u = crate::config::url::url_for(&self.user, pw, &self.host, self.port);
        if let Some(db) = &self.database {
            u.push_str(db);
        }
        u
    }

    /// The Go MySQL driver's DSN: `user:password@tcp(host:port)/db`.
    pub fn dsn(&self) -> String {
        let auth = if self.password.is_empty() {
            self.user.clone()
        } else {
            format!("{}:{}", self.user, self.password)
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "{auth}@tcp({host}:{})/{}",
            self.port,
            self.database.as_deref().unwrap_or("")
        )
    }

    /// `mysql_async` connection options for this address (TCP, never the socket).
    pub fn opts(&self) -> OptsBuilder {
        OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass((!self.password.is_empty()).then(|| self.password.clone()))
            .db_name(self.database.clone())
            .prefer_socket(false)
    }
}

/// Is an error worth retrying (a restart or start in progress), or final?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Retried: the server is starting, restarting or briefly unreachable.
    Transient,
    /// Returned at once: retrying cannot help.
    Permanent,
}

/// Classifies a MySQL error. Retried: connection refused/reset/closed, server gone away, lost
/// connection, a database read only or locked during a restart, too many connections, server
/// starting or shutting down. Everything else (access denied, unknown table, syntax, other
/// statement errors) is permanent.
pub fn classify(e: &mysql_async::Error) -> ErrorKind {
    use mysql_async::{DriverError, Error as E};
    match e {
        E::Io(_) => ErrorKind::Transient,
        E::Driver(DriverError::ConnectionClosed)
        | E::Driver(DriverError::PoolDisconnected)
        | E::Driver(DriverError::PacketOutOfOrder) => ErrorKind::Transient,
        E::Server(s) => {
            let m = s.message.to_ascii_lowercase();
            let transient_code = matches!(
                s.code,
                1040 // too many connections
                | 1053 // server shutdown in progress
                | 1077 // normal shutdown
                | 1152 | 1153 | 1158 | 1159 | 1160 | 1161 // aborted / net errors
                | 2002 | 2003 | 2006 | 2013 // can't connect, gone away, lost connection
            );
            let transient_text = [
                "database is read only",
                "locked by another dolt process",
                "too many connections",
                "server is shutting down",
                "shutting down",
                "starting up",
            ]
            .iter()
            .any(|t| m.contains(t));
            if transient_code || transient_text {
                ErrorKind::Transient
            } else {
                ErrorKind::Permanent
            }
        }
        _ => ErrorKind::Permanent,
    }
}

/// A result set: column names and rows, as the server sent them.
#[derive(Debug, Clone)]
pub struct ResultSet {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Column types, in the order of `columns`.
    pub column_types: Vec<mysql_async::consts::ColumnType>,
    /// The rows; each has one value per column.
    pub rows: Vec<Vec<mysql_async::Value>>,
    /// Rows the statement changed, as the server reported.
    pub affected_rows: u64,
}

/// What a client intends to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read and write; a read-only server is refused at connect time.
    Write,
    /// Read-only sessions.
    ReadOnly,
    /// Whatever the server allows: read-only sessions on a read-only server (the CLI's mode).
    Auto,
}

/// A handle on the server of one data dir: finds it, starts it when needed, connects with
/// retry. Cheap to clone; clones share the record of the address last tried. `Debug` shows the
/// config with the password redacted.
#[derive(Debug, Clone)]
pub struct Client {
    cfg: Config,
    access: Access,
    database: Option<String>,
    /// `host:port` of the last connection attempt, for [`Client::error`].
    last_target: Arc<Mutex<Option<String>>>,
}

impl Client {
    /// A client for exactly this config (nothing is discovered or read from the environment).
    pub fn from_config(cfg: Config) -> Client {
        Client {
            cfg,
            access: Access::Write,
            database: None,
            last_target: Arc::default(),
        }
    }

    /// The config as the CLI finds it (`$DOLTCTL_CONFIG`, `doltctl.toml` upwards, defaults).
    pub fn discover() -> Result<Client> {
        Ok(Client::from_config(Config::discover(&Default::default())?))
    }

    /// The server of the data dir `data_dir` (relative to the current directory), with the
    /// built-in defaults for everything else and the environment's overrides (`DOLT_BIN`,
    /// `DOLTCTL_AUTOSTART`, `DOLTCTL_PASSWORD`).
    ///
    /// No config file is read: not `$DOLTCTL_CONFIG`, not a `doltctl.toml` above the current
    /// directory, and not one inside `data_dir` (a data dir holds databases; its config lives
    /// beside it). A server that already runs for the data dir is used as it is, whatever
    /// config started it. For a config file, use [`Config::load`] and [`Client::from_config`].
    ///
    /// ```no_run
    /// # async fn demo() -> doltctl::Result<()> {
    /// let client = doltctl::Client::for_data_dir("/srv/app/dolt")?.database("app");
    /// let url = client.url().await?; // starts a server for /srv/app/dolt if none runs
    /// # let _ = url; Ok(()) }
    /// ```
    pub fn for_data_dir(data_dir: impl AsRef<Path>) -> Result<Client> {
        let data_dir = data_dir.as_ref();
        let mut cfg = Config {
            data_dir: std::path::absolute(data_dir).map_err(|e| Error::io(data_dir, e))?,
            ..Config::default()
        };
        cfg.apply_env();
        Ok(Client::from_config(cfg))
    }

    /// Read-only sessions: every connection runs `SET SESSION TRANSACTION READ ONLY`, and
    /// [`Client::execute`] runs each statement in a `START TRANSACTION READ ONLY` (the form Dolt
    /// enforces). Nothing on the way to a connection writes. Dolt does not block DDL or its
    /// version-control procedures this way; a read-only server does.
    pub fn read_only(mut self) -> Client {
        self.access = Access::ReadOnly;
        self
    }

    /// Sets the access mode (see [`Access`]).
    pub fn access(mut self, access: Access) -> Client {
        self.access = access;
        self
    }

    /// Read-only sessions for this connection: asked for, or imposed by the server.
    fn read_only_for(&self, info: &ConnectionInfo) -> bool {
        self.access == Access::ReadOnly || (self.access == Access::Auto && info.read_only)
    }

    /// A writable client may not use a read-only server: say so now, not at the first write.
    fn check_access(&self, info: ConnectionInfo) -> Result<ConnectionInfo> {
        if info.read_only && self.access == Access::Write {
            return Err(Error::ServerReadOnly {
                data_dir: Instance::new(&self.cfg.data_dir).data_dir().to_path_buf(),
                detail: "this client asked for a writable connection; use a read-only client"
                    .into(),
            });
        }
        Ok(info)
    }

    /// Connect to this database by default.
    pub fn database(mut self, db: impl Into<String>) -> Client {
        self.database = Some(db.into());
        self
    }

    /// The config this client works with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn info_from(&self, state: &crate::State) -> ConnectionInfo {
        ConnectionInfo {
            host: state.host.clone(),
            port: state.port,
            user: self.cfg.client.user.clone(),
            password: self.cfg.client.password.clone(),
            socket: state.socket.clone().filter(|s| s.exists()),
            database: self.database.clone(),
            read_only: state.read_only,
        }
    }

    /// The running server, if any. A pure read: the state file plus identity checks of the
    /// supervisor and server it names; a stale file never yields a dead port.
    pub fn running(&self) -> Result<Option<ConnectionInfo>> {
        let st = control::status(&self.cfg)?;
        Ok(match &st.state {
            Some(s) if st.is_ready() => Some(self.info_from(s)),
            _ => None,
        })
    }

    fn autostart_allowed(&self) -> Result<()> {
        let instance = Instance::new(&self.cfg.data_dir);
        if !is_local_host(&self.cfg.server.host) {
            return Err(Error::NotRunning {
                data_dir: instance.data_dir().to_path_buf(),
            });
        }
        if !self.cfg.client.autostart {
            return Err(Error::AutostartOff {
                data_dir: instance.data_dir().to_path_buf(),
            });
        }
        Ok(())
    }

    /// The running server, starting one (exactly once across processes) when none runs and
    /// auto-start is on.
    pub async fn ensure(&self) -> Result<ConnectionInfo> {
        if let Some(info) = self.running()? {
            return self.check_access(info);
        }
        self.autostart_allowed()?;
        let opts = control::StartOptions {
            idle_timeout: Some(self.cfg.client.autostart_idle_timeout),
            ..Default::default()
        };
        let state = control::start_with(&self.cfg, &opts).await?;
        self.check_access(self.info_from(&state))
    }

    /// The URL of the server, started if needed.
    pub async fn url(&self) -> Result<String> {
        Ok(self.ensure().await?.url())
    }

    fn opts(&self, info: &ConnectionInfo) -> Opts {
        let mut b = info.opts();
        if self.read_only_for(info) {
            b = b.init(vec!["SET SESSION TRANSACTION READ ONLY"]);
        }
        b.into()
    }

    /// A fresh retry budget for one operation.
    fn retries(&self) -> Retries {
        let c = &self.cfg.client;
        let delays = ExponentialBuilder::default()
            .with_min_delay(c.retry_initial_delay)
            .with_max_delay(c.retry_window)
            .with_max_times(c.connect_retries.saturating_sub(1) as usize)
            .with_total_delay(Some(c.retry_window))
            .build();
        Retries {
            delays: Box::new(delays),
            attempts: 0,
        }
    }

    /// Where to connect for the next attempt: the running server; during a restart (the
    /// supervisor is alive but the server not ready) the last known address; with no
    /// supervisor at all, auto-start.
    async fn target(&self, last: &Option<ConnectionInfo>) -> Result<ConnectionInfo> {
        if let Some(info) = self.running()? {
            return self.check_access(info);
        }
        // A supervisor at work (starting, restarting): wait for its server to be ready, which
        // it records within milliseconds, rather than knocking on a port that is not open yet.
        let deadline = std::time::Instant::now() + self.cfg.client.retry_window;
        loop {
            let st = control::status(&self.cfg)?;
            if let Some(s) = st.state.as_ref().filter(|_| st.is_ready()) {
                return self.check_access(self.info_from(s));
            }
            let Some(s) = st.state.as_ref().filter(|_| st.supervisor_alive) else {
                break;
            };
            if s.kind() == crate::Phase::Failed {
                // ensure() below reports the failure with its log excerpt.
                break;
            }
            if std::time::Instant::now() >= deadline && s.port != 0 {
                // Let the connect attempt fail and be retried like any refused connection.
                return Ok(self.info_from(s));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        match last {
            Some(l) if self.autostart_allowed().is_err() => Ok(l.clone()),
            _ => self.ensure().await,
        }
    }

    /// Runs `op` on a fresh connection, retrying transient failures (of the connect or of
    /// `op`) with exponential backoff. Permanent errors return at once. `op` may run more than
    /// once: it must be idempotent, or a transaction that a lost connection rolls back.
    pub async fn with_retry<T, F>(&self, mut op: F) -> Result<T>
    where
        F: for<'c> FnMut(
            &'c mut Conn,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, mysql_async::Error>> + Send + 'c>,
        >,
    {
        let mut tries = self.retries();
        loop {
            tries.attempts += 1;
            let (mut conn, info) = self.connect().await?;
            let result = op(&mut conn).await;
            let _ = conn.disconnect().await;
            match result {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let kind = classify(&e);
                    tracing::debug!(attempt = tries.attempts, "error from {info:?}: {e}");
                    if !tries.again(kind).await {
                        return Err(sql_error(&info, tries.attempts, kind, e));
                    }
                }
            }
        }
    }

    /// A connection, retried while the server is starting or restarting.
    pub async fn conn(&self) -> Result<Conn> {
        Ok(self.connect().await?.0)
    }

    /// A connection and where it goes, with the client's retry of transient failures.
    async fn connect(&self) -> Result<(Conn, ConnectionInfo)> {
        let mut tries = self.retries();
        let mut last = None;
        loop {
            tries.attempts += 1;
            let info = self.target(&last).await?;
            if let Ok(mut t) = self.last_target.lock() {
                *t = Some(target_of(&info.host, info.port));
            }
            match Conn::new(self.opts(&info)).await {
                Ok(c) => return Ok((c, info)),
                Err(e) => {
                    let kind = classify(&e);
                    if !tries.again(kind).await {
                        return Err(sql_error(&info, tries.attempts, kind, e));
                    }
                    last = Some(info);
                }
            }
        }
    }

    /// A pool to the server (started if needed), checked with one connection first.
    pub async fn pool(&self) -> Result<Pool> {
        let conn = self.conn().await?;
        let info = self.running()?.unwrap_or(self.ensure().await?);
        let _ = conn.disconnect().await;
        Ok(Pool::new(self.opts(&info)))
    }

    /// Wraps an error from a connection this client handed out. The error names the address
    /// the client last connected to (else the running server's, else the configured host and
    /// port setting).
    pub fn error(&self, e: mysql_async::Error) -> Error {
        let last = self.last_target.lock().ok().and_then(|t| t.clone());
        let target = last
            .or_else(|| {
                let info = self.running().ok().flatten()?;
                Some(target_of(&info.host, info.port))
            })
            .unwrap_or_else(|| {
                format!(
                    "{} (no server running)",
                    target_of(&self.cfg.server.host, self.cfg.server.port)
                )
            });
        Error::Sql {
            target,
            attempts: 1,
            transient: classify(&e) == ErrorKind::Transient,
            message: e.to_string(),
            code: server_code(&e),
        }
    }

    /// Runs SQL statements one at a time on one session; a statement that fails with a
    /// transient error is retried on a new connection (with the client's backoff). Stops at
    /// the first failing statement. Session state other than the database (variables, open
    /// transactions) does not survive such a reconnect.
    pub async fn execute(&self, statements: &[String]) -> Result<Vec<ResultSet>> {
        let mut out = Vec::new();
        let mut conn: Option<(Conn, ConnectionInfo)> = None;
        for stmt in statements {
            let mut tries = self.retries();
            loop {
                tries.attempts += 1;
                let (c, info) = match conn.as_mut() {
                    Some(c) => c,
                    None => conn.insert(self.connect().await?),
                };
                let read_only = self.read_only_for(info);
                let result = if read_only && !is_transaction_control(stmt) {
                    run_read_only(c, stmt).await
                } else {
                    run_statement(c, stmt).await
                };
                let e = match result {
                    Ok(mut sets) => {
                        out.append(&mut sets);
                        break;
                    }
                    Err(e) => e,
                };
                if info.read_only && is_read_only_refusal(&e) {
                    return Err(Error::ServerReadOnly {
                        data_dir: Instance::new(&self.cfg.data_dir).data_dir().to_path_buf(),
                        detail: format!("the statement was refused: {}", server_message(&e)),
                    });
                }
                let kind = classify(&e);
                let info = info.clone();
                conn = None;
                // Run it again only if it cannot have taken effect: the server refused it, or
                // it only reads. A connection lost after sending a write leaves its fate
                // unknown, and a second run could apply it twice.
                let safe = matches!(e, mysql_async::Error::Server(_))
                    || read_only
                    || is_read_only_statement(stmt);
                if !(safe && tries.again(kind).await) {
                    return Err(sql_error(&info, tries.attempts, kind, e));
                }
            }
        }
        if let Some((c, _)) = conn {
            let _ = c.disconnect().await;
        }
        Ok(out)
    }
}

/// The retry budget of one operation: exponential delays, bounded in count and total time.
struct Retries {
    delays: Box<dyn Iterator<Item = Duration> + Send>,
    attempts: u32,
}

impl Retries {
    /// After a failure of `kind`: waits and returns true if the operation may run again.
    async fn again(&mut self, kind: ErrorKind) -> bool {
        if kind != ErrorKind::Transient {
            return false;
        }
        match self.delays.next() {
            Some(d) => {
                tokio::time::sleep(d).await;
                true
            }
            None => false,
        }
    }
}

/// Dolt 2.2.0 records `SET SESSION TRANSACTION READ ONLY` but enforces it only inside an
/// explicit `START TRANSACTION READ ONLY`; so each statement of a read-only client runs in one.
async fn run_read_only(c: &mut Conn, sql: &str) -> Result<Vec<ResultSet>, mysql_async::Error> {
    c.query_drop("START TRANSACTION READ ONLY").await?;
    match run_statement(c, sql).await {
        Ok(sets) => {
            c.query_drop("COMMIT").await?;
            Ok(sets)
        }
        Err(e) => {
            let _ = c.query_drop("ROLLBACK").await;
            Err(e)
        }
    }
}

async fn run_statement(c: &mut Conn, sql: &str) -> Result<Vec<ResultSet>, mysql_async::Error> {
    let mut result = c.query_iter(sql).await?;
    let mut sets = Vec::new();
    loop {
        let columns = result.columns();
        let affected = result.affected_rows();
        let rows: Vec<mysql_async::Row> = result.collect().await?;
        if let Some(cols) = columns.filter(|c| !c.is_empty()) {
            sets.push(ResultSet {
                columns: cols.iter().map(|c| c.name_str().into_owned()).collect(),
                column_types: cols.iter().map(|c| c.column_type()).collect(),
                rows: rows
                    .iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| r.as_ref(i).cloned().unwrap_or(mysql_async::Value::NULL))
                            .collect()
                    })
                    .collect(),
                affected_rows: affected,
            });
        }
        if result.is_empty() {
            break;
        }
    }
    Ok(sets)
}

fn is_read_only_refusal(e: &mysql_async::Error) -> bool {
    let m = server_message(e).to_ascii_lowercase();
    m.contains("read only") || m.contains("read-only")
}

fn server_message(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => s.message.clone(),
        other => other.to_string(),
    }
}

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

fn sql_error(
    info: &ConnectionInfo,
    attempts: u32,
    kind: ErrorKind,
    e: mysql_async::Error,
) -> Error {
    Error::Sql {
        target: target_of(&info.host, info.port),
        attempts,
        transient: kind == ErrorKind::Transient,
        message: server_message(&e),
        code: server_code(&e),
    }
}

/// `host:port` as a person would type it: an IPv6 address in brackets.
fn target_of(host: &str, port: impl std::fmt::Display) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_data_dir_uses_defaults_and_that_dir() {
        let c = Client::for_data_dir("some/dir").unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(c.config().data_dir, cwd.join("some/dir"));
        assert!(c.config().source.is_none());
        assert_eq!(c.config().server.host, "127.0.0.1");
        let abs = Client::for_data_dir("/x/y").unwrap();
        assert_eq!(abs.config().data_dir, Path::new("/x/y"));
    }

    #[test]
    fn debug_never_shows_the_password() {
        let mut cfg = Config::default();
        cfg.client.password = "hunter2-secret".into();
        let c = Client::from_config(cfg).database("app");
        let shown = format!("{c:?} {:?}", c.clone());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("app"), "{shown}");
    }

    #[test]
    fn error_names_the_address_tried() {
        let dir = tempfile::tempdir().unwrap();
        let c = Client::for_data_dir(dir.path()).unwrap();
        let e = || mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed);
        // No connection yet and nothing running: the configured host and port setting, said so.
        match c.error(e()) {
            Error::Sql { target, .. } => assert_eq!(target, "127.0.0.1:auto (no server running)"),
            other => panic!("{other}"),
        }
        // After an attempt: that address, also in clones.
        *c.last_target.lock().unwrap() = Some(target_of("::1", 4242));
        match c.clone().error(e()) {
            Error::Sql { target, .. } => assert_eq!(target, "[::1]:4242"),
            other => panic!("{other}"),
        }
    }
}

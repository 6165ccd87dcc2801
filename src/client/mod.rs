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

mod cluster;
mod connection;
mod execute;
mod pool;
mod retry;
pub(crate) mod sqlsplit;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::{Conn, Opts};

use crate::config::instance::Instance;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::lifecycle::control;
use crate::server::port::is_local_host;
use crate::sys::process::ProcessIdentity;
use connection::target_of;
use retry::{server_code, sql_error, Retries};

pub use cluster::{unreplicated_warning, UNREPLICATED_WARNING};
pub use connection::ConnectionInfo;
pub use execute::{Execution, ResultSet};
pub use pool::ClientPool;
pub use retry::{classify, ErrorKind};

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
        let st = control::supervised_status(&self.cfg)?;
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
        Ok(self.ensure_server().await?.0)
    }

    /// [`Client::ensure`], with the server process.
    async fn ensure_server(&self) -> Result<(ConnectionInfo, Option<ProcessIdentity>)> {
        if self.cfg.cluster.is_some() {
            // A cluster node is started by its own supervisor; the client finds the primary.
            return Ok((self.check_access(self.cluster_target().await?)?, None));
        }
        let st = control::supervised_status(&self.cfg)?;
        if let Some(s) = st.state.as_ref().filter(|_| st.is_ready()) {
            return Ok((self.check_access(self.info_from(s))?, s.server().cloned()));
        }
        self.autostart_allowed()?;
        if let Some(max) = self
            .cfg
            .client
            .max_instances
            .filter(|_| !st.supervisor_alive)
        {
            // Best effort: a reclaim that fails never keeps this client from its server.
            if let Err(e) = crate::lifecycle::reclaim::make_room(&self.cfg, max).await {
                tracing::warn!("[client] max_instances: could not stop an idle server: {e}");
            }
        }
        let opts = control::StartOptions {
            idle_timeout: Some(self.cfg.client.autostart_idle_timeout),
            auto_started: true,
            ..Default::default()
        };
        let state = control::start_with(&self.cfg, &opts).await?;
        Ok((
            self.check_access(self.info_from(&state))?,
            state.server().cloned(),
        ))
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
        match &self.cfg.cluster {
            Some(c) => Retries::capped(
                &cluster::client_settings(&self.cfg.client, c.lease_ttl),
                Duration::from_millis(500),
            ),
            None => Retries::new(&self.cfg.client),
        }
    }

    /// Where to connect for the next attempt: the running server; during a restart (the
    /// supervisor is alive but the server not ready) the last known address; with no
    /// supervisor at all, auto-start.
    async fn target(&self, last: &Option<ConnectionInfo>) -> Result<ConnectionInfo> {
        Ok(self.target_server(last).await?.0)
    }

    /// [`Client::target`], with the server process it names (when known), so a pool can tell
    /// later whether that server is still the one it connects to.
    async fn target_server(
        &self,
        last: &Option<ConnectionInfo>,
    ) -> Result<(ConnectionInfo, Option<ProcessIdentity>)> {
        if self.cfg.cluster.is_some() {
            return Ok((self.check_access(self.cluster_target().await?)?, None));
        }
        let server_of = |s: &crate::State| s.server().cloned();
        let st = control::supervised_status(&self.cfg)?;
        if let Some(s) = st.state.as_ref().filter(|_| st.is_ready()) {
            return Ok((self.check_access(self.info_from(s))?, server_of(s)));
        }
        // A supervisor at work (starting, restarting): wait for its server to be ready, which
        // it records within milliseconds, rather than knocking on a port that is not open yet.
        let deadline = std::time::Instant::now() + self.cfg.client.retry_window;
        let instance = Instance::new(&self.cfg.data_dir);
        let mut watcher = None;
        loop {
            let st = control::supervised_status(&self.cfg)?;
            if let Some(s) = st.state.as_ref().filter(|_| st.is_ready()) {
                return Ok((self.check_access(self.info_from(s))?, server_of(s)));
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
                return Ok((self.info_from(s), None));
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let wait = left.clamp(Duration::from_millis(10), Duration::from_millis(250));
            control::next_change(&mut watcher, &instance, wait).await;
        }
        match last {
            Some(l) if self.autostart_allowed().is_err() => Ok((l.clone(), None)),
            _ => self.ensure_server().await,
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
                    let kind = self.kind_of(&e);
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
                    let kind = self.kind_of(&e);
                    if !tries.again(kind).await {
                        return Err(sql_error(&info, tries.attempts, kind, e));
                    }
                    last = Some(info);
                }
            }
        }
    }

    /// A connection pool to the server (started if needed), checked with one connection
    /// first. It lets go when idle: connections idle longer than `[client] pool_idle_timeout`
    /// are closed and no minimum is kept, so a program that holds a pool but does nothing lets
    /// the server idle out. Its [`ClientPool::get_conn`] goes through this client's retry and
    /// auto-start, so the next query after an idle stop (or a restart on another port) starts
    /// the server again and reconnects. See [`ClientPool`].
    pub async fn pool(&self) -> Result<ClientPool> {
        let pool = ClientPool::new(self.clone());
        // The checking connection goes back into the pool (closed once idle).
        drop(pool.get_conn().await?);
        Ok(pool)
    }

    /// `mysql_async` options for a pool's connections to `info`: this client's session setup,
    /// the idle release of [`pool::idle_pool_opts`].
    fn pool_opts(&self, info: &ConnectionInfo) -> Opts {
        let mut b = info
            .opts()
            .pool_opts(pool::idle_pool_opts(self.cfg.client.pool_idle_timeout));
        if self.read_only_for(info) {
            b = b.init(vec!["SET SESSION TRANSACTION READ ONLY"]);
        }
        b.into()
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
            source: Some(Box::new(e)),
        }
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

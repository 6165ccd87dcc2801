//! Throwaway servers for the tests of programs that use Dolt, in the manner of testcontainers:
//! [`TestServer`] starts a real `dolt sql-server` under doltctl's supervisor in a temp dir of
//! its own and removes everything when it is dropped, also when the test panics.
//!
//! ```no_run
//! # async fn demo() -> doltctl::Result<()> {
//! use mysql_async::prelude::Queryable;
//! let server = doltctl::TestServer::builder().database("app").start().await?;
//! let mut conn = server.client().conn().await?;
//! conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY)").await.map_err(|e| server.client().error(e))?;
//! drop(conn);
//! // Dropping `server` stops dolt and its supervisor and deletes the temp dir.
//! # Ok(()) }
//! ```
//!
//! What a test server is made of, all under one temp dir (`doltctl-test-XXXXXX` in
//! `$TMPDIR`):
//! - `data/`: the data dir, with one `dolt init`ed database per [`TestServerBuilder::database`];
//! - `dolt-root/`: `DOLT_ROOT_PATH` for every dolt command and for the server (metrics off), so
//!   the user's `~/.dolt` is never read or written;
//! - `doltctl.toml`: a fixed port the OS handed out, `127.0.0.1`, user `root` without a
//!   password, no idle stop, and client auto-start off (a dropped server never comes back).
//!
//! The supervisor is the library's own (`control::start`), so the program that runs it is
//! found as for any auto-start (see [`crate::control::supervisor_program`]): `$DOLTCTL_BIN`,
//! else a `doltctl` on `PATH` or in cargo's bin dir (a test binary cannot install
//! [`run_supervisor_if_requested`](crate::run_supervisor_if_requested)). Dolt is `$DOLT_BIN`,
//! else `dolt` on `PATH`, else in `~/.local/bin` where `scripts/install-dolt.sh` puts it,
//! unless [`TestServerBuilder::dolt_bin`] says otherwise.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mysql_async::Pool;
use nix::sys::signal::Signal;

use crate::bootstrap::{self, Author};
use crate::client::{Client, ConnectionInfo};
use crate::config::names::check_db_name;
use crate::config::{Config, Instance};
use crate::error::{Error, IoContext, Result};
use crate::lifecycle::control::{self, StartOptions};
use crate::server::port::os_free_port;
use crate::sys::process::{is_dolt_server, ProcessIdentity};

const HOST: &str = "127.0.0.1";
/// How often a start is tried again on a new port when another process took the one the OS
/// handed out before dolt could bind it.
const PORT_ATTEMPTS: usize = 5;

/// How to set up a [`TestServer`]; from [`TestServer::builder`].
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `start` or `start_blocking`"]
pub struct TestServerBuilder {
    databases: Vec<String>,
    dolt_bin: Option<PathBuf>,
}

impl TestServerBuilder {
    /// Creates database `name` (with `dolt init`, before the server starts). Repeatable; the
    /// first one is the default database of [`TestServer::url`], [`TestServer::client`] and
    /// [`TestServer::pool`].
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.databases.push(name.into());
        self
    }

    /// The dolt binary to run (default: `$DOLT_BIN`, else `dolt` on `PATH`, else
    /// `~/.local/bin/dolt`).
    pub fn dolt_bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.dolt_bin = Some(path.into());
        self
    }

    /// Creates the temp dir and the databases, starts the server and returns once it answers
    /// `SELECT 1`. On an error, whatever was made is removed again.
    pub async fn start(self) -> Result<TestServer> {
        for d in &self.databases {
            check_db_name(d).map_err(Error::ConfigValue)?;
        }
        let dir = tempfile::Builder::new()
            .prefix("doltctl-test-")
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let data_dir = dir.path().join("data");
        let mut cfg = Config {
            data_dir: data_dir.clone(),
            ..Config::default()
        };
        cfg.apply_env();
        if let Some(bin) = &self.dolt_bin {
            cfg.server.dolt_bin = bin.to_string_lossy().into_owned();
        }
        // From here on, dropping `server` (on any error below) cleans up.
        let mut server = TestServer {
            dir: Some(dir),
            cfg,
            info: ConnectionInfo {
                host: HOST.into(),
                port: 0,
                user: "root".into(),
                password: String::new(),
                socket: None,
                database: self.databases.first().cloned(),
                read_only: false,
            },
        };
        let root = server.dir().join("dolt-root");
        write_dolt_root(&root)?;
        std::fs::create_dir_all(&data_dir).at(&data_dir)?;
        let bin = crate::server::dolt::resolve_binary(&server.cfg)?;
        let dolt_env = vec![
            (
                "DOLT_ROOT_PATH".to_string(),
                root.to_string_lossy().into_owned(),
            ),
            ("DOLT_DISABLE_EVENT_FLUSH".to_string(), "1".to_string()),
        ];
        let author = Author {
            name: bootstrap::FALLBACK_AUTHOR_NAME.into(),
            email: bootstrap::FALLBACK_AUTHOR_EMAIL.into(),
        };
        for d in &self.databases {
            if !data_dir.join(d).exists() {
                bootstrap::dolt_init_in(&bin, &data_dir, d, &author, &dolt_env).await?;
            }
        }
        let opts = StartOptions {
            idle_timeout: None,
            auto_started: false,
            env: dolt_env
                .into_iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
        };
        let config_path = server.dir().join(crate::config::CONFIG_FILE_NAME);
        let mut attempt = 0;
        let state = loop {
            attempt += 1;
            let port = os_free_port(HOST)?;
            std::fs::write(&config_path, config_text(port, &bin)).at(&config_path)?;
            server.cfg = Config::load(&config_path)?;
            match control::start_with(&server.cfg, &opts).await {
                Ok(state) => break state,
                Err(e) if attempt < PORT_ATTEMPTS && port_taken(&e) => {
                    tracing::debug!("test server: port {port} was taken, trying another: {e}");
                    control::stop(&server.cfg).await?;
                }
                Err(e) => return Err(e),
            }
        };
        server.info.port = state.port;
        server.info.host = state.host.clone();
        server.info.socket = state.socket.clone().filter(|s| s.exists());
        Ok(server)
    }

    /// [`start`](Self::start) for synchronous tests. It runs on a thread of its own with its
    /// own runtime, so it may be called inside or outside a tokio runtime.
    pub fn start_blocking(self) -> Result<TestServer> {
        on_own_runtime(move || self.start())?
    }
}

/// A `dolt sql-server` for one test, supervised by doltctl, in a temp dir that is removed with
/// it. Dropping it stops the server and the supervisor (SIGTERM, then SIGKILL for anything
/// left) and deletes the temp dir: at the end of the test, and also while a panic unwinds.
/// Dropping is synchronous and may happen inside or outside a tokio runtime.
///
/// See the [module docs](self) for what it is made of and [`TestServerBuilder`] for the
/// options.
#[derive(Debug)]
pub struct TestServer {
    /// `None` once cleaned up.
    dir: Option<tempfile::TempDir>,
    cfg: Config,
    info: ConnectionInfo,
}

impl TestServer {
    /// Options: databases to create, the dolt binary.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// A server without databases (create them with `CREATE DATABASE`).
    pub async fn start() -> Result<TestServer> {
        Self::builder().start().await
    }

    /// [`TestServer::start`] for synchronous tests (inside or outside a tokio runtime).
    pub fn start_blocking() -> Result<TestServer> {
        Self::builder().start_blocking()
    }

    /// `mysql://root@127.0.0.1:PORT/DB`, with the first database of the builder (if any).
    pub fn url(&self) -> String {
        self.info.url()
    }

    /// Host, port, user, default database and socket of the server.
    pub fn connection_info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.info.port
    }

    /// A retrying client for the server, connecting to the first database of the builder (if
    /// any). Auto-start is off: after the server is dropped, the client reports it as not
    /// running instead of starting another.
    pub fn client(&self) -> Client {
        let c = Client::from_config(self.cfg.clone());
        match &self.info.database {
            Some(db) => c.database(db.clone()),
            None => c,
        }
    }

    /// A connection pool for the server (the first database of the builder, if any). It
    /// connects lazily, on first use inside a tokio runtime.
    pub fn pool(&self) -> Pool {
        Pool::new(self.info.opts())
    }

    /// The data dir (`<temp dir>/data`): one directory per database.
    pub fn data_dir(&self) -> &Path {
        &self.cfg.data_dir
    }

    /// The temp dir that holds everything (data dir, dolt root, config); removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }

    /// The config the server runs with (its file is `<temp dir>/doltctl.toml`).
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Stops the server and removes the temp dir now, reporting what went wrong (dropping
    /// does the same and only logs errors).
    pub fn stop(mut self) -> Result<()> {
        self.cleanup()
    }

    fn cleanup(&mut self) -> Result<()> {
        let Some(dir) = self.dir.take() else {
            return Ok(());
        };
        let cfg = self.cfg.clone();
        let stopped =
            on_own_runtime(move || async move { control::stop(&cfg).await }).and_then(|r| r);
        // Whatever a failed or partial stop left behind is killed.
        kill_leftovers(&self.cfg, dir.path());
        let instance = Instance::new(&self.cfg.data_dir);
        let socket = instance.socket();
        if !socket.starts_with(dir.path()) {
            let _ = std::fs::remove_file(&socket);
        }
        let removed = remove_dir(dir);
        stopped.map(|_| ()).and(removed)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            tracing::warn!("cleaning up the test server: {e}");
            eprintln!("doltctl::TestServer: cleaning up: {e}");
        }
    }
}

fn config_text(port: u16, dolt_bin: &Path) -> String {
    let bin = toml::Value::String(dolt_bin.to_string_lossy().into_owned());
    format!(
        r#"# A throwaway doltctl::TestServer; removed with its directory.
data_dir = "data"

[server]
host = "{HOST}"
port = {port}
dolt_bin = {bin}
ready_timeout = "60s"
stop_timeout = "10s"
idle_timeout = "0s"

[client]
autostart = false
user = "root"
password = ""
"#
    )
}

/// A dolt root of the server's own, with metrics off (as doltctl sets up its own root).
fn write_dolt_root(root: &Path) -> Result<()> {
    let dot = root.join(".dolt");
    std::fs::create_dir_all(&dot).at(&dot)?;
    let global = dot.join("config_global.json");
    std::fs::write(&global, br#"{"metrics.disabled":"true"}"#).at(&global)
}

/// Did a start fail because another process took the port between the OS handing it out and
/// dolt binding it?
fn port_taken(e: &Error) -> bool {
    matches!(e, Error::PortInUse { .. }) || e.to_string().contains("already in use")
}

/// Runs a future to completion on a new thread with a runtime of its own: usable from
/// synchronous code, from inside a runtime (even a current-thread one), and from `Drop`.
fn on_own_runtime<F, Fut, T>(f: F) -> Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let thread = std::thread::Builder::new()
        .name("doltctl-test-server".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .at("the test server's async runtime")?;
            Ok(rt.block_on(f()))
        })
        .map_err(|e| Error::io("a thread for the test server", e))?;
    thread.join().unwrap_or_else(|_| {
        Err(Error::io(
            "the test server's thread",
            std::io::Error::other("panicked"),
        ))
    })
}

/// SIGKILLs the recorded supervisor and server if they still run, then any dolt server or
/// supervisor whose command line names this temp dir (one launched while a start failed
/// before it was recorded), and waits until they are gone.
fn kill_leftovers(cfg: &Config, dir: &Path) {
    let mut victims: Vec<ProcessIdentity> = Vec::new();
    if let Ok(st) = control::status(cfg) {
        if let Some(s) = st.state {
            victims.extend(s.supervisor.clone().into_iter().chain(s.server().cloned()));
        }
    }
    victims.extend(processes_in(dir));
    victims.retain(ProcessIdentity::is_running);
    for p in &victims {
        let _ = p.signal(Signal::SIGCONT);
        let _ = p.signal(Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while victims.iter().any(ProcessIdentity::is_running) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Dolt servers and doltctl supervisors whose command line names `dir`.
fn processes_in(dir: &Path) -> Vec<ProcessIdentity> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(ProcessIdentity::of)
        .filter(|p| {
            let names_dir = p.cmdline.iter().any(|a| a.contains(&needle));
            let supervisor =
                p.cmdline.iter().any(|a| a == "--data-dir") && p.cmdline.iter().any(|a| a == "run");
            names_dir && (supervisor || is_dolt_server(&p.cmdline))
        })
        .collect()
}

/// Removes the temp dir, trying again briefly: a process that just died may still have had a
/// file open for writing a moment ago.
fn remove_dir(dir: tempfile::TempDir) -> Result<()> {
    let path = dir.keep();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir_all(&path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(Error::io(path, e)),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

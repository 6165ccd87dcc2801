//! What the supervisor loop acts on, as three small traits: a [`Launcher`] that produces a
//! server process, the [`ServerProcess`] itself, and the [`Probe`] that asks it `SELECT 1`.
//! The real ones run dolt; the loop's unit tests use a tiny fake child process instead.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::config::{Config, Instance};
use crate::error::{Error, Result};
use crate::server::cluster::SharedStartRole;
use crate::server::dolt::{self, DoltChild, LaunchSpec};
use crate::server::health::{self, Prober};
use crate::server::log::ServerLog;
use crate::server::version::{self, BinaryFile};
use crate::server::{port, preflight};
use crate::sys::process::ProcessIdentity;

/// A launch that gave no server process.
#[derive(Debug)]
pub(crate) struct LaunchError {
    pub error: Error,
    /// Retrying cannot help (a foreign lock holder, no dolt binary, a fixed port taken).
    pub fatal: bool,
}

impl LaunchError {
    fn fatal(error: Error) -> LaunchError {
        LaunchError { error, fatal: true }
    }
}

/// A launched server process: ours, in its own process group, not yet reaped.
pub(crate) trait ServerProcess {
    /// Who it is.
    fn identity(&self) -> &ProcessIdentity;
    /// Waits until it exits and reaps it. Cancel-safe; after it returned once it returns the
    /// same status at once.
    async fn wait(&mut self) -> std::io::Result<ExitStatus>;
    /// After it was reaped: collects its last output and kills what it left in its group.
    async fn after_exit(&mut self);
    /// Signals its whole process group (only while it is not reaped).
    fn signal_group(&self, sig: Signal);
}

/// Questions to the server over its SQL port.
pub(crate) trait Probe {
    /// One readiness attempt on a fresh connection: `SELECT 1`.
    async fn ready(&mut self) -> Result<(), String>;
    /// One health probe on a kept connection, within `timeout`.
    async fn health(&mut self, timeout: Duration) -> Result<(), String>;
    /// How many client connections the server has besides the probe's own.
    async fn client_connections(&mut self, timeout: Duration) -> Result<u64, String>;
    /// Closes the probe's connection.
    async fn close(&mut self);
}

/// A server process and the probe that reaches it.
pub(crate) struct Launched<C, P> {
    pub child: C,
    pub probe: P,
    pub port: u16,
    pub socket: Option<PathBuf>,
}

/// Launches servers for one instance.
pub(crate) trait Launcher {
    type Child: ServerProcess;
    type Probe: Probe;
    /// Checks and launches one server; `previous_port` is kept when still free.
    async fn launch(
        &mut self,
        previous_port: Option<u16>,
    ) -> Result<Launched<Self::Child, Self::Probe>, LaunchError>;
    /// The server's version, once known (asked when it became ready).
    async fn version(&mut self) -> Option<String>;
}

/// Launches `dolt sql-server` after the preflight checks.
pub(crate) struct DoltLauncher {
    cfg: Config,
    instance: Instance,
    log: Arc<ServerLog>,
    /// The binary of the last launch.
    bin: Option<BinaryFile>,
    /// What `dolt version` said for it, once known.
    version: Option<String>,
    /// `dolt version` running beside the launch, for a binary not seen before.
    version_task: Option<tokio::task::JoinHandle<Result<String>>>,
    /// A cluster node's start role, kept current by the cluster controller.
    start_role: Option<SharedStartRole>,
}

impl DoltLauncher {
    pub(crate) fn new(cfg: Config, instance: Instance, log: Arc<ServerLog>) -> DoltLauncher {
        DoltLauncher {
            cfg,
            instance,
            log,
            bin: None,
            version: None,
            version_task: None,
            start_role: None,
        }
    }

    /// A cluster node: each launch starts dolt in the role `role` holds at that moment.
    pub(crate) fn with_start_role(mut self, role: SharedStartRole) -> DoltLauncher {
        self.start_role = Some(role);
        self
    }

    /// The dolt binary for this launch, resolved again every time: a binary deleted or
    /// replaced (an upgrade) while the server ran is what the next launch uses, and a missing
    /// one is a clear error that names every place searched.
    fn binary(&mut self) -> Result<PathBuf> {
        let b = dolt::resolve_binary(&self.cfg)?;
        let id = BinaryFile::of(&b);
        if self.bin.as_ref() == Some(&id) {
            return Ok(b);
        }
        if self.bin.is_some() {
            self.log.event(&format!(
                "dolt binary is now {} (changed since the last launch)",
                b.display()
            ));
        }
        // Before any dolt command: dolt creates the root's global config itself.
        dolt::prepare_dolt_root(&self.instance)?;
        // Remembered from an earlier start of this very file: no second dolt process beside
        // the server's start. Otherwise asked beside this launch, ready before dolt is.
        self.version = version::remembered(&self.instance, &id);
        self.version_task = match self.version {
            Some(_) => None,
            None => {
                let (vb, env) = (b.clone(), dolt::dolt_env(&self.instance));
                Some(tokio::spawn(async move { dolt::version(&vb, &env).await }))
            }
        };
        self.bin = Some(id);
        Ok(b)
    }
}

impl Launcher for DoltLauncher {
    type Child = DoltChild;
    type Probe = Prober;

    async fn launch(
        &mut self,
        previous_port: Option<u16>,
    ) -> Result<Launched<DoltChild, Prober>, LaunchError> {
        // First, before anything below writes into the data dir: a data dir removed since the
        // last launch is `DataDirMissing` (nothing creates it again: the default dolt root lives
        // in it, and dolt would serve an empty one), and a removed runtime dir is put back for
        // the generated config.
        self.instance.ensure_dirs().map_err(LaunchError::fatal)?;
        let bin = self.binary().map_err(LaunchError::fatal)?;
        preflight::check_locks(&self.instance, self.cfg.server.stop_timeout, &self.log)
            .await
            .map_err(LaunchError::fatal)?;
        let host = self.cfg.server.host.clone();
        let port = port::choose(self.cfg.server.port, &host, &self.instance, previous_port)
            .map_err(LaunchError::fatal)?;
        let spec = LaunchSpec {
            bin,
            host,
            port,
            socket: self.instance.socket(),
            cluster: self.start_role.as_ref().map(SharedStartRole::get),
        };
        // A socket file left by a killed server makes Dolt fail to listen on it.
        let _ = std::fs::remove_file(&spec.socket);
        self.log.begin_launch();
        let child = dolt::launch(&self.cfg, &self.instance, &spec, &self.log)
            .map_err(LaunchError::fatal)?;
        if let Err(e) = dolt::record_binary(&self.instance, &spec.bin) {
            tracing::warn!("cannot record the dolt binary for later starts: {e}");
        }
        Ok(Launched {
            child,
            probe: Prober::new(health::probe_opts(&self.cfg, port)),
            port,
            socket: Some(spec.socket),
        })
    }

    async fn version(&mut self) -> Option<String> {
        if let Some(task) = self.version_task.take() {
            match tokio::time::timeout(Duration::from_secs(5), task).await {
                Ok(Ok(Ok(v))) => {
                    if let Some(bin) = &self.bin {
                        version::remember(&self.instance, bin, &v);
                    }
                    self.version = Some(v);
                }
                Ok(Ok(Err(e))) => tracing::warn!("{e}"),
                _ => tracing::warn!("`dolt version` did not answer; version not recorded"),
            }
        }
        self.version.clone()
    }
}

impl ServerProcess for DoltChild {
    fn identity(&self) -> &ProcessIdentity {
        &self.identity
    }

    async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    async fn after_exit(&mut self) {
        self.drain().await;
        self.kill_leftovers();
    }

    fn signal_group(&self, sig: Signal) {
        DoltChild::signal_group(self, sig)
    }
}

impl Probe for Prober {
    async fn ready(&mut self) -> Result<(), String> {
        health::select1(self.opts(), Duration::from_millis(1000)).await
    }

    async fn health(&mut self, timeout: Duration) -> Result<(), String> {
        self.probe(timeout).await
    }

    async fn client_connections(&mut self, timeout: Duration) -> Result<u64, String> {
        Prober::client_connections(self, timeout).await
    }

    async fn close(&mut self) {
        Prober::close(self).await
    }
}

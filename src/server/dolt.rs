//! The `dolt sql-server` process: finding the binary, the generated config, the launch in its
//! own process group, and pumping its output into the server log.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::config::instance::Instance;
use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::server::cluster::StartRole;
use crate::server::log::{ServerLog, Source};
use crate::sys::atomic::write_atomic;
use crate::sys::install::{installed_dolt, is_executable};
use crate::sys::process::ProcessIdentity;

/// The Dolt release doltctl is built and tested against (scripts/install-dolt.sh installs it).
pub const PINNED_VERSION: &str = "2.2.0";

/// The dolt binary, from the first of these that has one:
/// 1. `DOLT_BIN` / `[server] dolt_bin` when it is a path (then only that path);
/// 2. that name (default `dolt`) on `PATH`;
/// 3. the binary the last successful launch for this data dir ran
///    ([`Instance::dolt_bin_record`]);
/// 4. for the default name, where `scripts/install-dolt.sh` installs it:
///    `${DOLTCTL_DOLT_PREFIX:-$HOME/.local}/bin/dolt`.
///
/// So a server started from a shell with dolt on `PATH` (or `DOLT_BIN` set) can be stopped and
/// started again from a shell without, and a plain install works without any `PATH` change.
/// Reading only: nothing is created or written. [`Error::DoltNotFound`] lists every place
/// looked at.
pub fn resolve_binary(cfg: &Config) -> Result<PathBuf> {
    let name = &cfg.server.dolt_bin;
    if name.contains('/') {
        // Absolute, so it still resolves after the launch changes into the data dir.
        return std::fs::canonicalize(name)
            .ok()
            .filter(|p| p.is_file())
            .ok_or_else(|| Error::DoltNotFound {
                tried: format!("{name} (DOLT_BIN or [server] dolt_bin): no such file"),
            });
    }
    let mut tried = Vec::new();
    match which::which(name) {
        Ok(p) => return Ok(std::path::absolute(&p).unwrap_or(p)),
        Err(_) => tried.push(format!(
            "{name:?} on PATH ({})",
            std::env::var("PATH").unwrap_or_else(|_| "PATH is not set".into())
        )),
    }
    let record = Instance::new(&cfg.data_dir).dolt_bin_record();
    match recorded_binary(&record) {
        Ok(p) if is_executable(&p) => return Ok(p),
        Ok(p) => tried.push(format!(
            "{} (recorded by an earlier start; no longer an executable file)",
            p.display()
        )),
        Err(why) => tried.push(format!("{} ({why})", record.display())),
    }
    if name == "dolt" {
        match installed_dolt() {
            Some(p) if is_executable(&p) => return Ok(p),
            Some(p) => tried.push(format!("{} (scripts/install-dolt.sh's place)", p.display())),
            None => tried.push("~/.local/bin/dolt (no home directory known)".into()),
        }
    }
    Err(Error::DoltNotFound {
        tried: tried.join("; "),
    })
}

/// The path in a data dir's record of the dolt binary, or why there is none.
fn recorded_binary(record: &Path) -> std::result::Result<PathBuf, &'static str> {
    match std::fs::read_to_string(record) {
        Ok(text) => match text.trim() {
            "" => Err("empty"),
            p if Path::new(p).is_absolute() => Ok(PathBuf::from(p)),
            _ => Err("not an absolute path"),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("nothing recorded yet"),
        Err(_) => Err("unreadable"),
    }
}

/// Records `bin` as the dolt binary of this data dir after a successful launch (see
/// [`resolve_binary`]): atomically, 0600, and only when it changed.
pub fn record_binary(instance: &Instance, bin: &Path) -> Result<()> {
    let bin = std::path::absolute(bin).at(bin)?;
    let record = instance.dolt_bin_record();
    if recorded_binary(&record).is_ok_and(|p| p == bin) {
        return Ok(());
    }
    let mut text = bin.to_string_lossy().into_owned();
    text.push('\n');
    write_atomic(&record, text.as_bytes())
}

/// The environment every dolt command doltctl runs gets: no metrics child, and a root path
/// doltctl owns unless the caller chose one (so a missing HOME never breaks dolt).
pub fn dolt_env(instance: &Instance) -> Vec<(String, String)> {
    let root = std::env::var("DOLT_ROOT_PATH")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| instance.dolt_root().to_string_lossy().into_owned());
    vec![
        ("DOLT_DISABLE_EVENT_FLUSH".into(), "1".into()),
        ("DOLT_ROOT_PATH".into(), root),
    ]
}

/// Prepares the root path doltctl owns: a global config with metrics disabled.
pub fn prepare_dolt_root(instance: &Instance) -> Result<()> {
    if std::env::var_os("DOLT_ROOT_PATH").is_some_and(|v| !v.is_empty()) {
        return Ok(());
    }
    prepare_root_at(&instance.dolt_root())
}

/// Creates `root/.dolt/config_global.json` with metrics disabled.
fn prepare_root_at(root: &Path) -> Result<()> {
    let dir = root.join(".dolt");
    std::fs::create_dir_all(&dir).at(&dir)?;
    ensure_metrics_disabled(&dir.join("config_global.json"))
}

/// Sets `metrics.disabled` in a dolt global config, keeping what else is there. Any dolt
/// command creates this file (as `{}`) when it is missing, so adding the key to an existing
/// file matters as much as writing a new one.
fn ensure_metrics_disabled(global: &Path) -> Result<()> {
    let mut doc: serde_json::Map<String, serde_json::Value> = match std::fs::read(global) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
        Err(_) => serde_json::Map::new(),
    };
    if doc.get("metrics.disabled").and_then(|v| v.as_str()) == Some("true") {
        return Ok(());
    }
    doc.insert("metrics.disabled".into(), "true".into());
    let text = serde_json::to_vec(&doc).map_err(|e| Error::io(global, e.into()))?;
    write_atomic(global, &text)
}

/// `dolt version`, e.g. "2.2.0", run with `env` (see [`dolt_env`]) and a deadline.
pub async fn version(bin: &Path, env: &[(String, String)]) -> Result<String> {
    let mut run = Command::new(bin);
    for var in crate::sys::notify::SERVICE_MANAGER_ENV {
        run.env_remove(var);
    }
    let run = run
        .arg("version")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .map_err(|_| Error::DoltBinary {
            bin: bin.into(),
            message: "`dolt version` did not finish within 30s".into(),
        })?
        .map_err(|e| Error::DoltBinary {
            bin: bin.into(),
            message: format!("cannot run: {e}"),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("dolt version "))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| Error::DoltBinary {
            bin: bin.into(),
            message: format!(
                "`dolt version` printed no version (exit {}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
}

/// What one launch uses.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub bin: PathBuf,
    pub host: String,
    pub port: u16,
    pub socket: PathBuf,
    /// The start role of a cluster node (`[cluster]`), as the election decided.
    pub cluster: Option<StartRole>,
}

/// Writes the server's YAML config into the runtime dir. JSON is valid YAML, so it is written
/// as JSON. With `--config`, Dolt takes everything from the file, so every setting is here.
pub fn write_config(cfg: &Config, instance: &Instance, spec: &LaunchSpec) -> Result<PathBuf> {
    let doc = json!({
        "log_level": cfg.server.log_level.as_dolt_arg(),
        "behavior": { "read_only": cfg.server.read_only },
        "listener": {
            "host": spec.host,
            "port": spec.port,
            "socket": spec.socket,
            "max_connections": cfg.server.max_connections,
        },
        "data_dir": instance.data_dir(),
        // `doltctl import` loads CSV through `LOAD DATA LOCAL` when that is exact (see
        // import/load_data.rs). The server only allows it; each client still opts in.
        "system_variables": { "local_infile": 1 },
    });
    let mut doc = doc;
    if let (Some(c), Some(start)) = (&cfg.cluster, spec.cluster) {
        let (cluster, vars) = super::cluster::config_blocks(c, &spec.host, start);
        doc["cluster"] = cluster;
        doc["system_variables"] = vars;
    }
    let path = instance.dolt_config();
    let text =
        serde_json::to_vec_pretty(&doc).map_err(|e| Error::io(instance.dolt_config(), e.into()))?;
    // Unchanged (the usual restart): no write, so a full disk shows as dolt's own error
    // rather than as a failure to rewrite this file.
    if std::fs::read(&path).ok().as_deref() != Some(text.as_slice()) {
        write_atomic(&path, &text)?;
    }
    Ok(path)
}

/// A launched server: our child, in its own process group.
pub struct DoltChild {
    pub child: Child,
    pub identity: ProcessIdentity,
    pumps: Vec<JoinHandle<()>>,
}

pub fn launch(
    cfg: &Config,
    instance: &Instance,
    spec: &LaunchSpec,
    log: &Arc<ServerLog>,
) -> Result<DoltChild> {
    prepare_dolt_root(instance)?;
    // A cluster node's role lives in its Dolt root, so the root is always its own, and the
    // role it last had there is forgotten: the election chose the start role in `spec`.
    let node_root = super::cluster::node_root(cfg, instance);
    if let Some(root) = &node_root {
        prepare_root_at(root)?;
        if super::cluster::forget_persisted_role(root)? {
            log.event(
                "cluster: removed the role dolt persisted; starting in the role etcd decided",
            );
        }
    }
    let config = write_config(cfg, instance, spec)?;
    let mut cmd = Command::new(&spec.bin);
    if cfg.client.user == "root" && !cfg.client.password.is_empty() {
        // Only read by Dolt on the very first start (no privileges.db yet); passed through the
        // environment, never the command line.
        cmd.env("DOLT_ROOT_PASSWORD", &cfg.client.password);
    }
    // The service manager's socket is ours: dolt must not notify (or feed a watchdog) for us.
    for var in crate::sys::notify::SERVICE_MANAGER_ENV {
        cmd.env_remove(var);
    }
    cmd.arg("sql-server")
        .arg("--config")
        .arg(&config)
        .args(&cfg.server.extra_args)
        .current_dir(instance.data_dir())
        .envs(dolt_env(instance));
    if let Some(root) = &node_root {
        if std::env::var_os("DOLT_ROOT_PATH").is_some_and(|v| v != root.as_os_str()) {
            log.event(&format!(
                "cluster: ignoring the inherited DOLT_ROOT_PATH; a node's role lives in its own \
                 Dolt root, {}",
                root.display()
            ));
        }
        cmd.env("DOLT_ROOT_PATH", root);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so stop signals reach everything it spawns and a terminal's
        // Ctrl-C reaches only the supervisor, which then stops it in order.
        .process_group(0)
        // Safety net if the supervisor unwinds without stopping it.
        .kill_on_drop(true);
    log.event(&format!(
        "launching {} sql-server --config {} {} (port {}{})",
        spec.bin.display(),
        config.display(),
        cfg.server.extra_args.join(" "),
        spec.port,
        spec.cluster
            .map(|s| format!(", cluster {} at epoch {}", s.role, s.epoch))
            .unwrap_or_default()
    ));
    let mut child = cmd.spawn().map_err(|e| Error::DoltBinary {
        bin: spec.bin.clone(),
        message: format!("cannot start: {e}"),
    })?;
    let pid = child.id().map(|p| p as i32).unwrap_or(0);
    let mut argv: Vec<String> = vec![spec.bin.to_string_lossy().into_owned()];
    argv.extend(
        cmd.as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned()),
    );
    let identity = match settled_identity(pid, &argv) {
        Ok(id) => id,
        Err(e) => {
            // Not reaped yet, so the group id is still this child's: nothing it started in
            // its group may outlive the failed launch.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(e);
        }
    };
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(pump(out, log.clone()));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(pump(err, log.clone()));
    }
    Ok(DoltChild {
        child,
        identity,
        pumps,
    })
}

/// The identity of a just-spawned child. spawn() may return while the exec is still in
/// progress, when `/proc/PID/cmdline` reads empty or shows the parent's; wait briefly until it
/// shows the command we ran.
fn settled_identity(pid: i32, argv: &[String]) -> Result<ProcessIdentity> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match ProcessIdentity::of(pid) {
            Some(id) if id.cmdline == argv => return Ok(id),
            Some(id) if std::time::Instant::now() >= deadline => {
                return Err(Error::Process {
                    pid,
                    message: format!(
                        "launched dolt shows command line {:?}, expected {argv:?}",
                        id.cmdline
                    ),
                })
            }
            None => {
                return Err(Error::Process {
                    pid,
                    message: "dolt exited immediately after launch".into(),
                })
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
}

fn pump(r: impl AsyncRead + Unpin + Send + 'static, log: Arc<ServerLog>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            log.line(Source::Dolt, &l);
        }
    })
}

impl DoltChild {
    pub fn pid(&self) -> i32 {
        self.identity.pid
    }

    /// Waits (briefly) for the output pumps to drain after the process exited, so the last
    /// lines it printed are in the log before they are reported.
    pub async fn drain(&mut self) {
        for p in self.pumps.drain(..) {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), p).await;
        }
    }

    /// Signals the whole process group. Only while the child is not yet reaped: then its pid
    /// (and group id) cannot have been reused.
    pub fn signal_group(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    /// After the child was reaped: SIGKILL whatever it left in its process group. A group id
    /// cannot be reused while any member lives, so it is signalled only if /proc shows one.
    pub fn kill_leftovers(&self) {
        let pgid = self.pid();
        if crate::sys::process::group_has_members(pgid) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Describes an exit status the way a person reads it.
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => match nix::sys::signal::Signal::try_from(s) {
            Ok(sig) => format!("killed by {sig}"),
            Err(_) => format!("killed by signal {s}"),
        },
        _ => "unknown status".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name no PATH has, so resolution falls through to the data dir's record (the install
    /// location is only tried for the default name `dolt`).
    const NO_SUCH_DOLT: &str = "dolt-doltctl-unit-test-missing";

    #[test]
    fn a_recorded_binary_is_used_when_path_has_none_and_reading_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let mut cfg = Config {
            data_dir: data.clone(),
            ..Config::default()
        };
        cfg.server.dolt_bin = NO_SUCH_DOLT.into();
        let err = resolve_binary(&cfg).unwrap_err().to_string();
        assert!(
            err.contains(&format!("{NO_SUCH_DOLT:?} on PATH (")),
            "{err}"
        );
        assert!(err.contains("dolt-bin (nothing recorded yet)"), "{err}");
        assert!(err.contains("scripts/install-dolt.sh"), "{err}");
        assert_eq!(
            std::fs::read_dir(&data).unwrap().count(),
            0,
            "resolving wrote"
        );

        let instance = Instance::new(&data);
        instance.ensure_dirs().unwrap();
        let bin = dir.path().join("my-dolt");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        record_binary(&instance, &bin).unwrap();
        let mode = std::fs::metadata(instance.dolt_bin_record()).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        // Not executable yet: named, not used.
        let err = resolve_binary(&cfg).unwrap_err().to_string();
        assert!(err.contains("no longer an executable file"), "{err}");
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        assert_eq!(resolve_binary(&cfg).unwrap(), bin);
    }

    #[test]
    fn a_dolt_bin_path_is_the_only_place_looked_at() {
        let mut cfg = Config::default();
        cfg.server.dolt_bin = "/nonexistent/doltctl/dolt".into();
        let err = resolve_binary(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/doltctl/dolt (DOLT_BIN or [server] dolt_bin): no such file"),
            "{err}"
        );
        assert!(!err.contains("on PATH"), "{err}");
    }

    #[test]
    fn metrics_are_disabled_in_new_and_existing_global_configs() {
        let dir = tempfile::tempdir().unwrap();
        let g = dir.path().join("config_global.json");
        ensure_metrics_disabled(&g).unwrap();
        std::fs::write(&g, r#"{"user.name":"x"}"#).unwrap();
        ensure_metrics_disabled(&g).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&g).unwrap()).unwrap();
        assert_eq!(v["metrics.disabled"], "true");
        assert_eq!(v["user.name"], "x");
    }
}

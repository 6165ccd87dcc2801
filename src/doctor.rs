//! `doltctl doctor`: checks of everything that makes a server work or fail, each with its
//! evidence and the exact next step. Without `--fix` it changes nothing and never starts a
//! server; `--fix` does only safe repairs (stale info/state files, orphans of ours, oversized
//! logs, permissions), never deletes a LOCK file, never touches data, never signals a process
//! doltctl did not start.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde::Serialize;

use crate::config::{Config, ConfigSource, PortSetting};
use crate::control::{self, Status as InstanceStatus};
use crate::instance::Instance;
use crate::locks::{self, Holder};
use crate::procinfo::{self, ProcessIdentity};
use crate::state::{Phase, State};
use crate::{dolt, health, logs, port};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// A safe repair `--fix` may make.
#[derive(Debug, Clone)]
enum Repair {
    StopOrphan(ProcessIdentity),
    RemoveInfoFile(PathBuf),
    RemoveStateFile(PathBuf),
    FixMode(PathBuf, u32),
    RotateLog(PathBuf, u32),
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Level,
    pub detail: String,
    pub fix: Option<String>,
    /// What `--fix` did about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    #[serde(skip)]
    repair: Option<Repair>,
}

fn check(name: &str, status: Level, detail: impl Into<String>) -> Check {
    Check {
        check: name.into(),
        status,
        detail: detail.into(),
        fix: None,
        fixed: None,
        repair: None,
    }
}

impl Check {
    fn fix(mut self, f: impl Into<String>) -> Check {
        self.fix = Some(f.into());
        self
    }
    fn repair(mut self, r: Repair) -> Check {
        self.repair = Some(r);
        self
    }
}

pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// Nothing failed (or every failure was repaired).
    pub fn ok(&self) -> bool {
        self.checks
            .iter()
            .all(|c| c.status != Level::Fail || c.fixed.is_some())
    }
}

/// Runs every check; with `fix`, applies the safe repairs.
pub async fn run(src: &ConfigSource, fix: bool) -> Report {
    let mut checks = Vec::new();
    let cfg = match Config::discover(src) {
        Ok(cfg) => {
            checks.push(config_check(&cfg));
            cfg
        }
        Err(e) => {
            checks.push(
                check("config", Level::Fail, e.to_string())
                    .fix("correct the file at the line and key named; other checks use defaults"),
            );
            let mut c = Config::default();
            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            c.data_dir = cwd.join(src.data_dir_override.as_deref().unwrap_or(&c.data_dir));
            c.apply_env();
            c
        }
    };
    let instance = Instance::new(&cfg.data_dir);
    checks.insert(0, dolt_check(&cfg, &instance).await);
    checks.push(data_dir_check(&instance));

    let status = control::status(&cfg);
    let (st, state_check) = state_checks(&instance, status);
    let lock_checks = lock_checks(&instance, &st);
    let any_lock_held = lock_checks.iter().any(|(held, _)| *held);
    checks.extend(lock_checks.into_iter().map(|(_, c)| c));
    checks.push(info_file_check(&instance, &st, any_lock_held));
    checks.extend(state_check);
    checks.extend(permission_checks(&instance));
    checks.push(port_check(&cfg, &st));
    checks.push(connection_check(&cfg, &st).await);
    checks.push(health_check(&cfg, &instance, &st));
    checks.extend(log_checks(&cfg, &instance, &st));

    if fix {
        apply_repairs(&mut checks, &cfg).await;
    }
    Report { checks }
}

fn config_check(cfg: &Config) -> Check {
    let d = Config::default();
    let mut diffs = Vec::new();
    let mut diff = |k: &str, a: String, b: String| {
        if a != b {
            diffs.push(format!("{k}={a}"));
        }
    };
    diff(
        "server.host",
        cfg.server.host.clone(),
        d.server.host.clone(),
    );
    diff(
        "server.port",
        cfg.server.port.to_string(),
        d.server.port.to_string(),
    );
    diff(
        "server.read_only",
        cfg.server.read_only.to_string(),
        d.server.read_only.to_string(),
    );
    diff(
        "server.log_level",
        format!("{:?}", cfg.server.log_level),
        format!("{:?}", d.server.log_level),
    );
    diff(
        "server.dolt_bin",
        cfg.server.dolt_bin.clone(),
        d.server.dolt_bin.clone(),
    );
    diff(
        "server.extra_args",
        format!("{:?}", cfg.server.extra_args),
        format!("{:?}", d.server.extra_args),
    );
    diff(
        "server.ready_timeout",
        format!("{:?}", cfg.server.ready_timeout),
        format!("{:?}", d.server.ready_timeout),
    );
    diff(
        "server.stop_timeout",
        format!("{:?}", cfg.server.stop_timeout),
        format!("{:?}", d.server.stop_timeout),
    );
    diff(
        "server.idle_timeout",
        format!("{:?}", cfg.server.idle_timeout),
        format!("{:?}", d.server.idle_timeout),
    );
    diff(
        "restart.max_failures",
        cfg.restart.max_failures.to_string(),
        d.restart.max_failures.to_string(),
    );
    diff(
        "logs.max_size",
        cfg.logs.max_size.to_string(),
        d.logs.max_size.to_string(),
    );
    diff(
        "client.autostart",
        cfg.client.autostart.to_string(),
        d.client.autostart.to_string(),
    );
    let from = match &cfg.source {
        Some(p) => format!("{}", p.display()),
        None => "built-in defaults (no doltctl.toml found)".into(),
    };
    let changed = if diffs.is_empty() {
        "all defaults".to_string()
    } else {
        format!("non-default: {}", diffs.join(", "))
    };
    check(
        "config",
        Level::Ok,
        format!("{from}; data_dir={}; {changed}", cfg.data_dir.display()),
    )
}

async fn dolt_check(cfg: &Config, instance: &Instance) -> Check {
    let bin = match dolt::resolve_binary(cfg) {
        Ok(b) => b,
        Err(e) => {
            return check("dolt binary", Level::Fail, e.to_string())
                .fix("run scripts/install-dolt.sh, or set DOLT_BIN / [server] dolt_bin")
        }
    };
    match dolt::version(&bin, instance).await {
        Ok(v) if v == dolt::PINNED_VERSION => check(
            "dolt binary",
            Level::Ok,
            format!("{}, version {v}", bin.display()),
        ),
        Ok(v) => check(
            "dolt binary",
            Level::Warn,
            format!(
                "{}, version {v}; doltctl is tested with {}",
                bin.display(),
                dolt::PINNED_VERSION
            ),
        )
        .fix("install the tested version with scripts/install-dolt.sh"),
        Err(e) => check("dolt binary", Level::Fail, e.to_string())
            .fix("reinstall dolt with scripts/install-dolt.sh"),
    }
}

fn data_dir_check(instance: &Instance) -> Check {
    let dir = instance.data_dir();
    if !dir.exists() {
        return check(
            "data dir",
            Level::Warn,
            format!("{} does not exist", dir.display()),
        )
        .fix("`doltctl start` creates it, or point --data-dir / data_dir at your data");
    }
    if nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_err() {
        return check(
            "data dir",
            Level::Fail,
            format!("{} is not writable", dir.display()),
        )
        .fix("fix its ownership or permissions");
    }
    let dbs = locks::databases(dir).unwrap_or_default();
    let interrupted: Vec<String> = std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter(|e| e.path().join(".dolt_safe_to_ignore").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let names: Vec<&str> = dbs.iter().map(|d| d.name.as_str()).collect();
    let detail = format!(
        "{}: {} database(s){}",
        dir.display(),
        names.len(),
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({})", names.join(", "))
        }
    );
    if interrupted.is_empty() {
        check("data dir", Level::Ok, detail)
    } else {
        check(
            "data dir",
            Level::Warn,
            format!(
                "{detail}; interrupted CREATE DATABASE left: {} (dolt skips them)",
                interrupted.join(", ")
            ),
        )
        .fix("check those directories and remove them by hand if they hold nothing you need")
    }
}

/// The instance's status, and the checks of the state file itself.
fn state_checks(
    instance: &Instance,
    status: crate::Result<InstanceStatus>,
) -> (Option<InstanceStatus>, Vec<Check>) {
    let path = instance.state_file();
    let st = match status {
        Ok(st) => st,
        Err(e) => {
            let c = check("doltctl state", Level::Fail, e.to_string())
                .fix("`doltctl doctor --fix` removes it when no Dolt lock is held (the next start rewrites it)")
                .repair(Repair::RemoveStateFile(path));
            return (None, vec![c]);
        }
    };
    let c = match &st.state {
        None => check(
            "doltctl state",
            Level::Ok,
            "no state file: never started here",
        ),
        Some(s) if st.supervisor_alive => {
            let sup = s.supervisor.as_ref().map_or(0, |p| p.pid);
            if s.state == Phase::Running && !st.server_alive {
                check(
                    "doltctl state",
                    Level::Warn,
                    format!(
                        "supervisor pid {sup} alive, but its recorded server is not (restarting?)"
                    ),
                )
                .fix("`doltctl status` again in a moment; `doltctl restart` if it stays so")
            } else {
                check(
                    "doltctl state",
                    Level::Ok,
                    format!(
                        "supervisor pid {sup} alive, state {}{}",
                        s.state,
                        s.server
                            .as_ref()
                            .filter(|_| st.server_alive)
                            .map(|p| format!(
                                ", server pid {} verified (start time and command line)",
                                p.pid
                            ))
                            .unwrap_or_default()
                    ),
                )
            }
        }
        Some(s) if matches!(s.state, Phase::Stopped | Phase::Idle) && !st.server_alive => check(
            "doltctl state",
            Level::Ok,
            format!("not running (last state {})", s.state),
        ),
        Some(s) if st.server_alive => check(
            "doltctl state",
            Level::Warn,
            format!(
                "supervisor is gone but its server pid {} still runs (an orphan)",
                s.server.as_ref().map_or(0, |p| p.pid)
            ),
        )
        .fix("`doltctl doctor --fix` stops it, or `doltctl start` replaces it"),
        Some(s) => check(
            "doltctl state",
            Level::Warn,
            format!(
                "stale: says {} but supervisor pid {} is gone",
                s.state,
                s.supervisor.as_ref().map_or(0, |p| p.pid)
            ),
        )
        .fix("`doltctl start` to run it again; `doltctl doctor --fix` removes the stale file")
        .repair(Repair::RemoveStateFile(path)),
    };
    (Some(st), vec![c])
}

/// One check per database; the bool says whether a lock is held.
fn lock_checks(instance: &Instance, st: &Option<InstanceStatus>) -> Vec<(bool, Check)> {
    let dbs = locks::databases(instance.data_dir()).unwrap_or_default();
    let state = st.as_ref().and_then(|s| s.state.as_ref());
    let ours = state
        .and_then(|s| s.server.clone())
        .filter(|p| p.is_running());
    let supervisor_alive = st.as_ref().is_some_and(|s| s.supervisor_alive);
    dbs.iter()
        .map(|db| {
            let name = format!("lock {}", db.name);
            let held: Vec<(PathBuf, Option<i32>)> = locks::lock_files(&db.dir)
                .into_iter()
                .filter_map(|p| match locks::probe(&p) {
                    Ok(Holder::Held { pid }) => Some((p, pid)),
                    _ => None,
                })
                .collect();
            let Some((path, pid)) = held.first().cloned() else {
                return (false, check(&name, Level::Ok, "free"));
            };
            let c = match (pid, &ours) {
                (Some(pid), Some(o)) if pid == o.pid && supervisor_alive => check(
                    &name,
                    Level::Ok,
                    format!("held by our server pid {pid}"),
                ),
                (Some(pid), Some(o)) if pid == o.pid => check(
                    &name,
                    Level::Fail,
                    format!("held by pid {pid}, a server doltctl started whose supervisor is gone (orphan)"),
                )
                .fix("`doltctl doctor --fix` stops it (SIGTERM, then SIGKILL); `doltctl start` also does")
                .repair(Repair::StopOrphan(o.clone())),
                (Some(pid), _) => check(
                    &name,
                    Level::Fail,
                    format!("{} held by pid {pid} ({}), not started by doltctl", path.display(), procinfo::describe(pid)),
                )
                .fix("stop that process yourself (doltctl never signals it), or use another data dir"),
                (None, _) => check(
                    &name,
                    Level::Fail,
                    format!("{} held by a process not visible here (/proc/locks)", path.display()),
                )
                .fix("stop the other dolt process using this data dir"),
            };
            (true, c)
        })
        .collect()
}

fn info_file_check(instance: &Instance, st: &Option<InstanceStatus>, lock_held: bool) -> Check {
    let path = instance.dolt_server_info();
    let Ok(text) = std::fs::read_to_string(&path) else {
        return check("sql-server.info", Level::Ok, "absent");
    };
    let pid: Option<i32> = text.split(':').next().and_then(|p| p.trim().parse().ok());
    let ours = st
        .as_ref()
        .and_then(|s| s.state.as_ref())
        .and_then(|s| s.server.clone())
        .filter(|p| p.is_running());
    match pid {
        Some(pid) if ours.as_ref().is_some_and(|o| o.pid == pid) => {
            check("sql-server.info", Level::Ok, format!("current: our server pid {pid}"))
        }
        Some(pid)
            if procinfo::is_alive(pid)
                && procinfo::cmdline(pid).is_some_and(|c| procinfo::is_dolt_server(&c)) =>
        {
            check(
                "sql-server.info",
                Level::Warn,
                format!("names pid {pid} ({}), a dolt server not started by doltctl", procinfo::describe(pid)),
            )
            .fix("stop that server if it should not run here")
        }
        _ if lock_held => check(
            "sql-server.info",
            Level::Warn,
            format!("stale (pid {} is not a running dolt server), but a lock is held, so it is kept", pid.unwrap_or(0)),
        )
        .fix("resolve the lock first, then run doctor --fix again"),
        _ => check(
            "sql-server.info",
            Level::Warn,
            format!(
                "stale: pid {} is not a running dolt server and no lock is held; it makes `dolt init` refuse and sends the dolt CLI to a dead port",
                pid.unwrap_or(0)
            ),
        )
        .fix("`doltctl doctor --fix` removes it")
        .repair(Repair::RemoveInfoFile(path)),
    }
}

fn permission_checks(instance: &Instance) -> Vec<Check> {
    let dir = instance.runtime_dir();
    if !dir.exists() {
        return vec![];
    }
    let mut bad = Vec::new();
    let mut want = vec![(dir.to_path_buf(), 0o700)];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_file() {
                want.push((e.path(), 0o600));
            }
        }
    }
    let mut repairs = Vec::new();
    for (p, mode) in want {
        let Ok(m) = std::fs::metadata(&p) else {
            continue;
        };
        let have = m.permissions().mode() & 0o777;
        if have != mode {
            bad.push(format!("{} is {have:o} (want {mode:o})", p.display()));
            repairs.push(Repair::FixMode(p, mode));
        }
    }
    if bad.is_empty() {
        return vec![check(
            "permissions",
            Level::Ok,
            format!("{} is 0700, its files 0600", dir.display()),
        )];
    }
    // One line of evidence, one repair per file.
    repairs
        .into_iter()
        .zip(bad)
        .map(|(r, b)| {
            check("permissions", Level::Warn, b)
                .fix("`doltctl doctor --fix` sets it")
                .repair(r)
        })
        .collect()
}

fn port_check(cfg: &Config, st: &Option<InstanceStatus>) -> Check {
    let state = st.as_ref().and_then(|s| s.state.as_ref());
    let recorded = state.map(|s| s.port).filter(|p| *p != 0);
    let port = match cfg.server.port {
        PortSetting::Fixed(p) => p,
        PortSetting::Auto => match recorded {
            Some(p) => p,
            None => port::preferred_port(&Instance::new(&cfg.data_dir)),
        },
    };
    let ours = state
        .and_then(|s| s.server.clone())
        .filter(|p| p.is_running());
    let ready = st.as_ref().is_some_and(|s| s.is_ready());
    match port::holder(port) {
        Some((pid, _)) if ours.as_ref().is_some_and(|o| o.pid == pid) => check(
            "port",
            Level::Ok,
            format!("{}:{port} served by our server pid {pid}", cfg.server.host),
        ),
        Some((pid, cmd)) => {
            let level = if cfg.server.port == PortSetting::Auto && !ready {
                // auto moves to another port at the next start.
                Level::Warn
            } else {
                Level::Fail
            };
            check(
                "port",
                level,
                format!(
                    "{}:{port} is used by pid {pid} ({cmd}), not by doltctl's server",
                    cfg.server.host
                ),
            )
            .fix("stop that process or choose another [server] port")
        }
        None if ready => check(
            "port",
            Level::Fail,
            format!(
                "nothing listens on {}:{port} although the server is recorded as running",
                cfg.server.host
            ),
        )
        .fix("`doltctl restart`"),
        None if port::is_free(&cfg.server.host, port) => check(
            "port",
            Level::Ok,
            format!("{}:{port} is free", cfg.server.host),
        ),
        None => check(
            "port",
            Level::Warn,
            format!(
                "{}:{port} is in use by a process not visible here",
                cfg.server.host
            ),
        )
        .fix("choose another [server] port"),
    }
}

async fn connection_check(cfg: &Config, st: &Option<InstanceStatus>) -> Check {
    let Some(state) = st
        .as_ref()
        .filter(|s| s.is_ready())
        .and_then(|s| s.state.as_ref())
    else {
        return check(
            "connection",
            Level::Ok,
            "skipped: no server running (doctor never starts one)",
        );
    };
    let opts = health::probe_opts(cfg, state.port);
    let t0 = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(5), async {
        let mut c = mysql_async::Conn::new(opts).await?;
        let one: Option<i64> = c.query_first("SELECT 1").await?;
        let select_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let v: Option<String> = c.query_first("SELECT dolt_version()").await?;
        let _ = c.disconnect().await;
        Ok::<_, mysql_async::Error>((one, select_ms, v))
    })
    .await;
    match result {
        Ok(Ok((Some(1), ms, Some(v)))) => check(
            "connection",
            Level::Ok,
            format!("SELECT 1 answered in {ms:.1} ms (connect included); dolt_version() = {v}"),
        ),
        Ok(Ok((_, _, None))) => check(
            "connection",
            Level::Fail,
            "the server answered but dolt_version() did not: not a Dolt server",
        )
        .fix("check what listens on the port"),
        Ok(Ok(_)) => check(
            "connection",
            Level::Fail,
            "SELECT 1 returned something else",
        )
        .fix("`doltctl restart`"),
        Ok(Err(e)) => check("connection", Level::Fail, format!("{e}"))
            .fix("`doltctl logs` for the server's side; `doltctl restart`"),
        Err(_) => check("connection", Level::Fail, "no answer within 5s (wedged?)")
            .fix("the supervisor restarts a wedged server; `doltctl restart` forces it"),
    }
}

/// Dolt's messages for on-disk damage after a crash.
const CORRUPTION: &[&str] = &[
    "corrupted journal",
    "journal index is malformed",
    "root hash doesn't exist",
    "checksum error",
    "chunk not found",
];

fn health_check(cfg: &Config, instance: &Instance, st: &Option<InstanceStatus>) -> Check {
    let tail = logs::read_tail(&instance.server_log(), cfg.logs.keep, 2000).unwrap_or_default();
    if let Some(l) = tail.iter().rev().find(|l| {
        CORRUPTION
            .iter()
            .any(|c| l.to_ascii_lowercase().contains(c))
    }) {
        return check("server health", Level::Fail, format!("storage damage reported: {l}")).fix(format!(
            "stop the server (`doltctl stop`), back up {}, and run `dolt fsck` in the database's directory; \
             `dolt fsck --revive-journal-with-data-loss` repairs with data loss. doltctl never repairs this itself",
            instance.data_dir().display()
        ));
    }
    let Some(s) = st.as_ref().and_then(|s| s.state.as_ref()) else {
        return check("server health", Level::Ok, "no history");
    };
    let alive = st.as_ref().is_some_and(|s| s.supervisor_alive);
    if s.state == Phase::Failed {
        return check(
            "server health",
            Level::Fail,
            format!(
                "state failed after {} restarts: {}",
                s.restarts,
                s.last_error.as_deref().unwrap_or("no error recorded")
            ),
        )
        .fix(if alive {
            "read `doltctl logs`, fix the cause, then `doltctl restart`"
        } else {
            "read `doltctl logs`, fix the cause, then `doltctl start`"
        });
    }
    let detail = format!(
        "{} restart(s){}",
        s.restarts,
        s.last_error
            .as_deref()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default()
    );
    if s.restarts >= 3 && alive {
        check("server health", Level::Warn, detail)
            .fix("see `doltctl logs` for why it keeps restarting")
    } else {
        check("server health", Level::Ok, detail)
    }
}

fn log_checks(cfg: &Config, instance: &Instance, st: &Option<InstanceStatus>) -> Vec<Check> {
    let mut out = Vec::new();
    let log = instance.server_log();
    let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let supervisor_alive = st.as_ref().is_some_and(|s| s.supervisor_alive);
    if size > cfg.logs.max_size {
        let c = check(
            "logs",
            Level::Warn,
            format!(
                "{} is {size} bytes, over [logs] max_size {}",
                log.display(),
                cfg.logs.max_size
            ),
        );
        out.push(if supervisor_alive {
            // The running supervisor rotates it at its next line.
            c.fix("the running supervisor rotates it with its next line")
        } else {
            c.fix("`doltctl doctor --fix` rotates it")
                .repair(Repair::RotateLog(log.clone(), cfg.logs.keep))
        });
    } else {
        out.push(check(
            "logs",
            Level::Ok,
            format!(
                "{} is {size} bytes (rotates at {})",
                log.display(),
                cfg.logs.max_size
            ),
        ));
    }
    let probe_dir = if instance.data_dir().exists() {
        instance.data_dir().to_path_buf()
    } else {
        instance
            .data_dir()
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"))
            .to_path_buf()
    };
    if let Ok(vfs) = nix::sys::statvfs::statvfs(&probe_dir) {
        let free = vfs.blocks_available() * vfs.fragment_size();
        let total = vfs.blocks() * vfs.fragment_size();
        let gib = free as f64 / (1u64 << 30) as f64;
        let low = free < (1 << 30) || (total > 0 && free * 20 < total);
        let c = check(
            "disk space",
            if low { Level::Warn } else { Level::Ok },
            format!("{gib:.1} GiB free under {}", probe_dir.display()),
        );
        out.push(if low {
            c.fix("free disk space: Dolt needs room for its journal")
        } else {
            c
        });
    }
    out
}

async fn apply_repairs(checks: &mut [Check], cfg: &Config) {
    // Orphans first: stopping one releases its locks and removes its info file.
    let order = |r: &Repair| match r {
        Repair::StopOrphan(_) => 0,
        Repair::RemoveInfoFile(_) => 1,
        Repair::RemoveStateFile(_) => 2,
        Repair::FixMode(..) => 3,
        Repair::RotateLog(..) => 4,
    };
    let mut idx: Vec<usize> = (0..checks.len())
        .filter(|i| checks[*i].repair.is_some())
        .collect();
    idx.sort_by_key(|i| checks[*i].repair.as_ref().map(order));
    let instance = Instance::new(&cfg.data_dir);
    for i in idx {
        let Some(repair) = checks[i].repair.clone() else {
            continue;
        };
        let outcome = match repair {
            Repair::StopOrphan(p) => {
                // Identity is checked again inside terminate(): a reused pid is never hit.
                match p.terminate(cfg.server.stop_timeout).await {
                    Ok(()) => Ok(format!("stopped orphaned server pid {}", p.pid)),
                    Err(e) => Err(e.to_string()),
                }
            }
            Repair::RemoveInfoFile(p) => {
                // Re-check right before: no lock held anywhere under the data dir.
                let held = locks::inspect(instance.data_dir())
                    .map(|ls| ls.iter().any(|l| l.holder != Holder::Free))
                    .unwrap_or(true);
                if held {
                    Err("a Dolt lock is held now; left in place".into())
                } else {
                    remove(&p)
                }
            }
            Repair::RemoveStateFile(p) => {
                let held = locks::inspect(instance.data_dir())
                    .map(|ls| ls.iter().any(|l| l.holder != Holder::Free))
                    .unwrap_or(true);
                let live = State::read(&p)
                    .ok()
                    .flatten()
                    .is_some_and(|s| s.supervisor_alive() || s.server_alive());
                if held || live {
                    Err("a recorded process or a Dolt lock is live; left in place".into())
                } else {
                    remove(&p)
                }
            }
            Repair::FixMode(p, mode) => {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                    .map(|()| format!("set {} to {mode:o}", p.display()))
                    .map_err(|e| e.to_string())
            }
            Repair::RotateLog(p, keep) => logs::rotate_files(&p, keep)
                .map(|()| format!("rotated {}", p.display()))
                .map_err(|e| e.to_string()),
        };
        match outcome {
            Ok(msg) => checks[i].fixed = Some(msg),
            Err(why) => checks[i].fix = Some(format!("--fix could not repair it: {why}")),
        }
    }
}

fn remove(p: &Path) -> Result<String, String> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(format!("removed {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(format!("{} was already gone", p.display()))
        }
        Err(e) => Err(e.to_string()),
    }
}

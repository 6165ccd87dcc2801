//! Checks before every launch: who holds Dolt's locks and why. Orphans of this data dir's own
//! server (identity recorded in the state file, supervisor gone) are stopped; anything else
//! holding a lock is refused, by name, and never touched. No LOCK file is ever removed.

use std::time::Duration;

use crate::config::instance::Instance;
use crate::error::{Error, Result};
use crate::server::log::ServerLog;
use crate::sys::locks::{self, Holder};
use crate::sys::process::{self as procinfo, ProcessIdentity};

/// Stops a server doltctl launched for this data dir whose supervisor is gone.
pub async fn stop_orphan(
    orphan: Option<&ProcessIdentity>,
    grace: Duration,
    log: &ServerLog,
) -> Result<()> {
    let Some(server) = orphan else { return Ok(()) };
    if !server.is_running() {
        return Ok(());
    }
    log.event(&format!(
        "stopping orphaned dolt server pid {} left by a previous supervisor ({})",
        server.pid,
        server.command()
    ));
    server.terminate(grace).await
}

/// Refuses when a live process holds any Dolt lock under the data dir, and clears a stale
/// `sql-server.info` when nothing holds a lock.
pub fn check_locks(instance: &Instance, log: &ServerLog) -> Result<()> {
    let all = locks::inspect(instance.data_dir())?;
    for l in &all {
        if let Holder::Held { pid } = l.holder {
            return Err(match pid {
                Some(pid) => Error::LockedByForeign {
                    database: l.database.clone(),
                    lock: l.path.clone(),
                    pid,
                    cmdline: procinfo::describe(pid),
                },
                None => Error::LockedByUnknown {
                    database: l.database.clone(),
                    lock: l.path.clone(),
                },
            });
        }
    }
    clear_stale_info(instance, log)
}

/// The pid in `.dolt/sql-server.info`: `None` when there is no file, `Some(None)` when it
/// names no readable pid.
pub fn info_file_pid(instance: &Instance) -> Option<Option<i32>> {
    let text = std::fs::read_to_string(instance.dolt_server_info()).ok()?;
    Some(text.split(':').next().and_then(|p| p.trim().parse().ok()))
}

/// True if `pid` is a live `dolt sql-server` serving this data dir (its `--data-dir`, or its
/// working directory when it has none). A reused pid running some other server is not.
pub fn serves_data_dir(pid: i32, instance: &Instance) -> bool {
    let Some(cmd) = procinfo::cmdline(pid) else {
        return false;
    };
    if !procinfo::is_alive(pid) || !procinfo::is_dolt_server(&cmd) {
        return false;
    }
    let same =
        |p: &std::path::Path| std::fs::canonicalize(p).is_ok_and(|p| p == instance.data_dir());
    let cwd = procinfo::cwd(pid);
    let arg = cmd
        .iter()
        .position(|a| a == "--data-dir")
        .and_then(|i| cmd.get(i + 1))
        .or_else(|| {
            cmd.iter()
                .find_map(|a| a.strip_prefix("--data-dir=").map(|_| a))
        })
        .map(|a| a.trim_start_matches("--data-dir=").to_string());
    match arg {
        Some(d) => {
            let d = std::path::Path::new(&d);
            if d.is_absolute() {
                same(d)
            } else {
                cwd.is_some_and(|c| same(&c.join(d)))
            }
        }
        // With --config the data dir is in the file; fall back to the working directory.
        None => cwd.is_some_and(|c| same(&c)),
    }
}

/// `.dolt/sql-server.info` is `PID:PORT:SECRET`. Stale ones make `dolt init` refuse and send
/// the dolt CLI to a dead port. Called only when no lock is held; a live dolt server named in
/// it (e.g. one serving a data dir without databases, so holding no lock) is refused instead.
fn clear_stale_info(instance: &Instance, log: &ServerLog) -> Result<()> {
    let path = instance.dolt_server_info();
    let Some(pid) = info_file_pid(instance) else {
        return Ok(());
    };
    if let Some(pid) = pid.filter(|p| serves_data_dir(*p, instance)) {
        return Err(Error::ForeignServer {
            data_dir: instance.data_dir().to_path_buf(),
            pid,
            cmdline: procinfo::describe(pid),
        });
    }
    log.event(&format!(
        "removing stale {} (pid {} is not a running dolt server and no lock is held)",
        path.display(),
        pid.map_or("?".to_string(), |p| p.to_string())
    ));
    // The only file this module ever removes: Dolt's info file, never a LOCK file.
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

//! Checks before every launch: who holds Dolt's locks and why. Orphans of this data dir's own
//! server (identity recorded in the state file, supervisor gone) are stopped; anything else
//! holding a lock is refused, by name, and never touched. No LOCK file is ever removed.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::instance::Instance;
use crate::locks::{self, Holder};
use crate::logs::ServerLog;
use crate::procinfo::{self, ProcessIdentity};

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

/// `.dolt/sql-server.info` is `PID:PORT:SECRET`. Stale ones make `dolt init` refuse and send
/// the dolt CLI to a dead port. Called only when no lock is held; a live dolt server named in
/// it (e.g. one serving a data dir without databases, so holding no lock) is refused instead.
fn clear_stale_info(instance: &Instance, log: &ServerLog) -> Result<()> {
    let path = instance.dolt_server_info();
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let pid: Option<i32> = text.split(':').next().and_then(|p| p.trim().parse().ok());
    if let Some(pid) = pid {
        if procinfo::is_alive(pid)
            && procinfo::cmdline(pid).is_some_and(|c| procinfo::is_dolt_server(&c))
        {
            return Err(Error::ForeignServer {
                data_dir: instance.data_dir().to_path_buf(),
                pid,
                cmdline: procinfo::describe(pid),
            });
        }
    }
    log.event(&format!(
        "removing stale {} (pid {} is not a running dolt server and no lock is held)",
        path.display(),
        pid.map_or("?".to_string(), |p| p.to_string())
    ));
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

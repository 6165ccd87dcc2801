//! Checks before every launch: who holds Dolt's locks and why. Servers of this data dir's own
//! (identity recorded in the state file, or a `dolt sql-server` running this data dir's
//! generated config) that run without a supervisor are orphans: they are stopped. Anything else
//! holding a lock is refused, by name, and never touched. No LOCK file is ever removed.

use std::path::Path;
use std::time::Duration;

use crate::config::instance::Instance;
use crate::error::{Error, Result};
use crate::server::log::ServerLog;
use crate::sys::locks::{self, Holder};
use crate::sys::process::{self as procinfo, ProcessIdentity};

/// The path a `dolt sql-server` command line gives with `--config PATH` or `--config=PATH`.
fn config_arg(cmd: &[String]) -> Option<&str> {
    cmd.iter().enumerate().find_map(|(i, a)| {
        if a == "--config" {
            cmd.get(i + 1).map(String::as_str)
        } else {
            a.strip_prefix("--config=")
        }
    })
}

/// True if `cmd`, run in `cwd`, is a `dolt sql-server` reading `config`: the same path as
/// written, or the same file once both are resolved.
fn runs_config(cmd: &[String], cwd: Option<&Path>, config: &Path) -> bool {
    if !procinfo::is_dolt_server(cmd) {
        return false;
    }
    let Some(arg) = config_arg(cmd).map(Path::new) else {
        return false;
    };
    let arg = match cwd {
        Some(cwd) if arg.is_relative() => cwd.join(arg),
        _ => arg.to_path_buf(),
    };
    arg == config
        || matches!(
            (std::fs::canonicalize(&arg), std::fs::canonicalize(config)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// True if `process` is a `dolt sql-server` running this data dir's generated config
/// ([`Instance::dolt_config`]): a server doltctl launched for this data dir, whatever the state
/// file says (or whether there is one).
pub fn is_own_server(process: &ProcessIdentity, instance: &Instance) -> bool {
    runs_config(
        &process.cmdline,
        procinfo::cwd(process.pid).as_deref(),
        &instance.dolt_config(),
    )
}

/// Every live `dolt sql-server` running this data dir's generated config. Called only when no
/// supervisor runs for the data dir: then each of them is an orphan.
pub fn own_servers(instance: &Instance) -> Vec<ProcessIdentity> {
    procinfo::all()
        .into_iter()
        .filter(|p| is_own_server(p, instance))
        .collect()
}

/// Stops the servers doltctl launched for this data dir whose supervisor is gone: the one the
/// state file recorded (`recorded`, if it is still that process) and any other running the
/// data dir's generated config. Each gets SIGTERM to its group, then SIGKILL after `grace`,
/// identity-checked before every signal. Call it only while holding the supervisor lock (or
/// having seen no supervisor), since a supervised server matches too.
pub async fn stop_orphans(
    recorded: Option<&ProcessIdentity>,
    instance: &Instance,
    grace: Duration,
    log: &ServerLog,
) -> Result<()> {
    let mut orphans: Vec<ProcessIdentity> = recorded
        .filter(|p| p.is_running())
        .cloned()
        .into_iter()
        .collect();
    for p in own_servers(instance) {
        if !orphans.iter().any(|o| o.pid == p.pid) {
            orphans.push(p);
        }
    }
    for server in orphans {
        log.event(&format!(
            "stopping orphaned dolt server pid {} left without a supervisor ({})",
            server.pid,
            server.command()
        ));
        server.terminate(grace).await?;
    }
    Ok(())
}

/// A lock holder or info-file pid that is one of our own servers, by identity.
fn own_server(pid: i32, instance: &Instance) -> Option<ProcessIdentity> {
    ProcessIdentity::of(pid).filter(|p| is_own_server(p, instance))
}

/// Orphans stopped by one preflight at most: each stop releases what it held, so more rounds
/// would mean something keeps launching them.
const MAX_ORPHAN_STOPS: usize = 4;

/// How long a lock may stay held by a holder that is exiting: `/proc/locks` names the process
/// that took an flock (or no pid once it is gone), and its other threads, or other members of
/// its group, may still hold the file for a moment.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Refuses when a live process holds any Dolt lock under the data dir, and clears a stale
/// `sql-server.info` when nothing holds a lock. A holder that runs this data dir's generated
/// config is our own orphan (the supervisor calling this holds the supervisor lock, and its own
/// previous server was reaped): it is stopped (SIGTERM to its group, SIGKILL after `grace`) and
/// the locks are looked at again.
pub async fn check_locks(instance: &Instance, grace: Duration, log: &ServerLog) -> Result<()> {
    let mut stopped: Vec<i32> = vec![];
    let mut release_by = std::time::Instant::now() + RELEASE_WAIT;
    'again: loop {
        for l in &locks::inspect(instance.data_dir())? {
            let Holder::Held { pid } = l.holder else {
                continue;
            };
            // A holder on its way out: one we just stopped; or one that is no live process any
            // more (a multi-threaded process such as dolt shows as a zombie once its main
            // thread exited, while its other threads still close its files); or, after a
            // stop, one whose pid /proc/locks no longer shows.
            let exiting = match pid {
                Some(p) => stopped.contains(&p) || !procinfo::is_alive(p),
                None => !stopped.is_empty(),
            };
            if exiting && std::time::Instant::now() < release_by {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue 'again;
            }
            if let Some(orphan) = pid
                .and_then(|p| own_server(p, instance))
                .filter(|_| stopped.len() < MAX_ORPHAN_STOPS)
            {
                log.event(&format!(
                    "stopping orphaned dolt server pid {} holding {} ({}): it runs this data dir's generated config without a supervisor",
                    orphan.pid,
                    l.path.display(),
                    orphan.command()
                ));
                orphan.terminate(grace).await?;
                stopped.push(orphan.pid);
                release_by = std::time::Instant::now() + RELEASE_WAIT;
                continue 'again;
            }
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
        return clear_stale_info(instance, grace, log).await;
    }
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
async fn clear_stale_info(instance: &Instance, grace: Duration, log: &ServerLog) -> Result<()> {
    let path = instance.dolt_server_info();
    let Some(pid) = info_file_pid(instance) else {
        return Ok(());
    };
    if let Some(orphan) = pid.and_then(|p| own_server(p, instance)) {
        log.event(&format!(
            "stopping orphaned dolt server pid {} named in {} ({}): it runs this data dir's generated config without a supervisor",
            orphan.pid,
            path.display(),
            orphan.command()
        ));
        orphan.terminate(grace).await?;
        // A graceful stop removes the info file itself; what is left is looked at as stale.
        if info_file_pid(instance).is_none() {
            return Ok(());
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn c(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_dolt_server_on_our_generated_config_is_ours_whatever_the_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let instance = Instance::new(dir.path());
        instance.ensure_dirs().unwrap();
        std::fs::write(instance.dolt_config(), "{}").unwrap();
        let config = instance.dolt_config();
        let abs = config.to_string_lossy().into_owned();
        let ours = |cmd: &[&str], cwd: Option<&Path>| runs_config(&c(cmd), cwd, &config);
        assert!(ours(
            &["/usr/bin/dolt", "sql-server", "--config", &abs],
            None
        ));
        assert!(ours(
            &["dolt", "sql-server", &format!("--config={abs}")],
            None
        ));
        // Relative to the process's working directory, and through a `..`.
        assert!(ours(
            &[
                "dolt",
                "sql-server",
                "--config",
                ".doltctl/dolt-config.yaml"
            ],
            Some(instance.data_dir())
        ));
        let dotdot = format!(
            "{}/../{}",
            abs.rsplit_once('/').unwrap().0,
            ".doltctl/dolt-config.yaml"
        );
        assert!(ours(&["dolt", "sql-server", "--config", &dotdot], None));
        // Not ours: another config, no config, not a server, not dolt.
        assert!(!ours(
            &["dolt", "sql-server", "--config", "/etc/dolt.yaml"],
            None
        ));
        assert!(!ours(&["dolt", "sql-server", "--data-dir", &abs], None));
        assert!(!ours(&["dolt", "sql", "--config", &abs], None));
        assert!(!ours(&["vim", "sql-server", "--config", &abs], None));
        assert!(!ours(&["dolt", "sql-server", "--config"], None));
    }

    /// The file may be gone (its runtime dir deleted under a running server): the path as
    /// written still matches.
    #[test]
    fn a_deleted_config_still_matches_by_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let instance = Instance::new(dir.path());
        let config = instance.dolt_config();
        let abs = config.to_string_lossy().into_owned();
        assert!(runs_config(
            &c(&["dolt", "sql-server", "--config", &abs]),
            None,
            &config
        ));
    }

    /// A fake dolt holding a database's LOCK: `flock(1)` under a name starting with `dolt`,
    /// with `sql-server --config CONFIG` among its arguments, in its own process group.
    fn fake_lock_holder(dir: &Path, lock: &Path, config: &Path) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let fake = dir.join("dolt");
        let flock = which::which("flock").expect("flock(1) is needed by this test");
        std::os::unix::fs::symlink(flock, &fake).unwrap();
        let child = std::process::Command::new(&fake)
            .arg(lock)
            .args(["sh", "-c", "sleep 300", "sql-server", "--config"])
            .arg(config)
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while locks::probe(lock).unwrap() != (Holder::Held { pid: Some(pid) }) {
            assert!(
                std::time::Instant::now() < deadline,
                "fake dolt {pid} did not take {} within 10s",
                lock.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child
    }

    fn data_dir_with_a_database() -> (tempfile::TempDir, Instance, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("app/.dolt/noms")).unwrap();
        let lock = data.join("app/.dolt/noms/LOCK");
        std::fs::write(&lock, "").unwrap();
        let instance = Instance::new(&data);
        instance.ensure_dirs().unwrap();
        (dir, instance, lock)
    }

    /// A lock holder running this data dir's generated config is our orphan, even with no
    /// state file at all: stopped (SIGTERM to its group), and the check goes on.
    #[tokio::test]
    async fn fake_dolt_on_our_config_holding_a_lock_is_stopped_by_check_locks() {
        let (dir, instance, lock) = data_dir_with_a_database();
        let mut fake = fake_lock_holder(dir.path(), &lock, &instance.dolt_config());
        let log = ServerLog::open(&instance.server_log(), 1 << 20, 1).unwrap();
        let result = check_locks(&instance, Duration::from_secs(10), &log).await;
        let status = fake.try_wait().unwrap();
        if status.is_none() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(fake.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = fake.wait();
        }
        result.unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.and_then(|s| s.signal()),
            Some(nix::sys::signal::Signal::SIGTERM as i32),
            "stopped gracefully, by SIGTERM"
        );
        assert_eq!(locks::probe(&lock).unwrap(), Holder::Free);
        let text = std::fs::read_to_string(instance.server_log()).unwrap();
        assert!(text.contains("stopping orphaned dolt server"), "{text}");
    }

    /// The same holder on any other config is foreign: refused by pid, never signalled.
    #[tokio::test]
    async fn fake_dolt_on_another_config_is_refused_and_untouched() {
        let (dir, instance, lock) = data_dir_with_a_database();
        let other = dir.path().join("elsewhere.yaml");
        let mut fake = fake_lock_holder(dir.path(), &lock, &other);
        let log = ServerLog::open(&instance.server_log(), 1 << 20, 1).unwrap();
        let result = check_locks(&instance, Duration::from_secs(10), &log).await;
        let alive = fake.try_wait().unwrap().is_none();
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(fake.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = fake.wait();
        assert!(alive, "a foreign lock holder was signalled");
        match result {
            Err(Error::LockedByForeign { pid, .. }) => assert_eq!(pid, fake.id() as i32),
            other => panic!("expected LockedByForeign, got {other:?}"),
        }
    }

    /// This test process runs no such config: the scan finds nothing for a fresh data dir.
    #[test]
    fn no_own_servers_for_a_fresh_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        assert!(own_servers(&Instance::new(dir.path())).is_empty());
    }
}

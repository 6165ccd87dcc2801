//! Checks of the server and the processes around it: doltctl's state, Dolt's locks and info
//! file, the port, a live connection, restart history and storage damage.

use super::*;

/// What `doctor` says about a server of ours that runs without a supervisor, and how `--fix`
/// stops it.
fn orphan_check(name: &str, orphans: &[ProcessIdentity], supervisor: Option<i32>) -> Check {
    let which: Vec<String> = orphans
        .iter()
        .map(|o| format!("server pid {} ({})", o.pid, o.command()))
        .collect();
    check(
        name,
        Level::Fail,
        format!(
            "orphaned: {} serves this data dir without a supervisor{}: nothing restarts or health-checks it",
            which.join(", "),
            supervisor
                .map(|p| format!(" (supervisor pid {p} is gone)"))
                .unwrap_or_default()
        ),
    )
    .fix("`doltctl doctor --fix` or `doltctl stop` stops it (SIGTERM, then SIGKILL after stop_timeout); `doltctl start` replaces it with a supervised server")
    .repair(Repair::StopOrphans(orphans.to_vec()))
}

pub(super) fn state_checks(
    instance: &Instance,
    status: crate::Result<InstanceStatus>,
    orphans: &[ProcessIdentity],
) -> (Option<InstanceStatus>, Vec<Check>) {
    let path = instance.state_file();
    let st = match status {
        Ok(st) => st,
        Err(e) => {
            let mut checks = vec![check("doltctl state", Level::Fail, e.to_string())
                .fix("`doltctl doctor --fix` removes it when no Dolt lock is held (the next start rewrites it)")
                .repair(Repair::RemoveStateFile(path))];
            if !orphans.is_empty() {
                checks.push(orphan_check("orphaned server", orphans, None));
            }
            return (None, checks);
        }
    };
    let c = match &st.state {
        _ if !orphans.is_empty() => orphan_check(
            "doltctl state",
            orphans,
            st.state
                .as_ref()
                .and_then(|s| s.supervisor.as_ref())
                .map(|p| p.pid),
        ),
        None => check(
            "doltctl state",
            Level::Ok,
            "no state file: never started here",
        ),
        Some(s) if st.supervisor_alive => {
            let sup = s.supervisor.as_ref().map_or(0, |p| p.pid);
            if s.kind() == Phase::Running && !st.server_alive {
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
                        s.kind(),
                        s.server()
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
        Some(s) if matches!(s.kind(), Phase::Stopped | Phase::Idle) && !st.server_alive => check(
            "doltctl state",
            Level::Ok,
            format!("not running (last state {})", s.kind()),
        ),
        Some(s) => check(
            "doltctl state",
            Level::Warn,
            format!(
                "stale: says {} but supervisor pid {} is gone",
                s.kind(),
                s.supervisor.as_ref().map_or(0, |p| p.pid)
            ),
        )
        .fix("`doltctl start` to run it again; `doltctl doctor --fix` removes the stale file")
        .repair(Repair::RemoveStateFile(path)),
    };
    (Some(st), vec![c])
}

/// One check per database; the bool says whether a lock is held.
pub(super) fn lock_checks(
    instance: &Instance,
    st: &Option<InstanceStatus>,
    orphans: &[ProcessIdentity],
) -> Vec<(bool, Check)> {
    let dbs = locks::databases(instance.data_dir()).unwrap_or_default();
    let state = st.as_ref().and_then(|s| s.state.as_ref());
    let ours = state
        .and_then(|s| s.server().cloned())
        .filter(|p| p.is_running());
    let supervisor_alive = st.as_ref().is_some_and(|s| s.supervisor_alive);
    let orphan = |pid: i32| orphans.iter().find(|o| o.pid == pid);
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
                (Some(pid), _) if orphan(pid).is_some() => check(
                    &name,
                    Level::Fail,
                    format!("held by pid {pid}, a server doltctl started whose supervisor is gone (orphan)"),
                )
                .fix("`doltctl doctor --fix` stops it (SIGTERM, then SIGKILL); `doltctl start` also does")
                .repair(Repair::StopOrphans(orphan(pid).into_iter().cloned().collect())),
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

pub(super) fn info_file_check(
    instance: &Instance,
    st: &Option<InstanceStatus>,
    orphans: &[ProcessIdentity],
    lock_held: bool,
) -> Check {
    let path = instance.dolt_server_info();
    let Some(pid) = crate::server::preflight::info_file_pid(instance) else {
        return check("sql-server.info", Level::Ok, "absent");
    };
    let ours = st
        .as_ref()
        .and_then(|s| s.state.as_ref())
        .and_then(|s| s.server().cloned())
        .filter(|p| p.is_running());
    match pid {
        Some(pid) if ours.as_ref().is_some_and(|o| o.pid == pid) => {
            check("sql-server.info", Level::Ok, format!("current: our server pid {pid}"))
        }
        Some(pid) if orphans.iter().any(|o| o.pid == pid) => check(
            "sql-server.info",
            Level::Ok,
            format!("current: our orphaned server pid {pid} (see `doltctl state`)"),
        ),
        Some(pid) if crate::server::preflight::serves_data_dir(pid, instance) => {
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

pub(super) fn port_check(
    cfg: &Config,
    st: &Option<InstanceStatus>,
    orphans: &[ProcessIdentity],
) -> Check {
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
        .and_then(|s| s.server().cloned())
        .filter(|p| p.is_running());
    let ready = st.as_ref().is_some_and(|s| s.is_ready());
    match port::holder(port) {
        Some((pid, _)) if ours.as_ref().is_some_and(|o| o.pid == pid) => check(
            "port",
            Level::Ok,
            format!("{}:{port} served by our server pid {pid}", cfg.server.host),
        ),
        Some((pid, _)) if orphans.iter().any(|o| o.pid == pid) => check(
            "port",
            Level::Ok,
            format!(
                "{}:{port} served by our orphaned server pid {pid} (see `doltctl state`)",
                cfg.server.host
            ),
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

pub(super) async fn connection_check(cfg: &Config, st: &Option<InstanceStatus>) -> Check {
    let Some(state) = st
        .as_ref()
        .filter(|s| s.is_ready())
        .and_then(|s| s.state.as_ref())
    else {
        return check(
            "connection",
            Level::Ok,
            "skipped: no supervised server is running and ready (doctor never starts one)",
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

pub(super) fn health_check(
    cfg: &Config,
    instance: &Instance,
    st: &Option<InstanceStatus>,
) -> Check {
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
    if s.kind() == Phase::Failed {
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

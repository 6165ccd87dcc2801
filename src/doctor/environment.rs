//! Checks of what a server needs around it: dolt, the config, the data dir, runtime file
//! permissions, logs and disk space.

use super::*;

pub(super) fn config_check(cfg: &Config) -> Check {
    // Effective values that differ from the built-in defaults.
    type Field = (&'static str, fn(&Config) -> String);
    let fields: &[Field] = &[
        ("server.host", |c| c.server.host.clone()),
        ("server.port", |c| c.server.port.to_string()),
        ("server.read_only", |c| c.server.read_only.to_string()),
        ("server.log_level", |c| format!("{:?}", c.server.log_level)),
        ("server.dolt_bin", |c| c.server.dolt_bin.clone()),
        ("server.extra_args", |c| {
            format!("{:?}", c.server.extra_args)
        }),
        ("server.ready_timeout", |c| {
            format!("{:?}", c.server.ready_timeout)
        }),
        ("server.stop_timeout", |c| {
            format!("{:?}", c.server.stop_timeout)
        }),
        ("server.idle_timeout", |c| {
            format!("{:?}", c.server.idle_timeout)
        }),
        ("server.max_connections", |c| {
            c.server.max_connections.to_string()
        }),
        ("restart.initial_backoff", |c| {
            format!("{:?}", c.restart.initial_backoff)
        }),
        ("restart.max_backoff", |c| {
            format!("{:?}", c.restart.max_backoff)
        }),
        ("restart.max_failures", |c| {
            c.restart.max_failures.to_string()
        }),
        ("health.interval", |c| format!("{:?}", c.health.interval)),
        ("logs.max_size", |c| c.logs.max_size.to_string()),
        ("logs.keep", |c| c.logs.keep.to_string()),
        ("client.autostart", |c| c.client.autostart.to_string()),
        ("client.user", |c| c.client.user.clone()),
    ];
    let d = Config::default();
    let diffs: Vec<String> = fields
        .iter()
        .filter_map(|(k, f)| {
            let v = f(cfg);
            (v != f(&d)).then(|| format!("{k}={v}"))
        })
        .collect();
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

pub(super) async fn dolt_check(cfg: &Config) -> Check {
    let bin = match dolt::resolve_binary(cfg) {
        Ok(b) => b,
        Err(e) => {
            return check("dolt binary", Level::Fail, e.to_string())
                .fix("run scripts/install-dolt.sh, or set DOLT_BIN / [server] dolt_bin")
        }
    };
    // A throwaway root: `dolt version` writes into its root, and doctor changes nothing.
    let root = match tempfile_dir() {
        Ok(r) => r,
        Err(e) => {
            return check(
                "dolt binary",
                Level::Warn,
                format!("cannot make a temp dir: {e}"),
            )
        }
    };
    let env = vec![
        ("DOLT_DISABLE_EVENT_FLUSH".to_string(), "1".to_string()),
        (
            "DOLT_ROOT_PATH".to_string(),
            root.to_string_lossy().into_owned(),
        ),
    ];
    let version = dolt::version(&bin, &env).await;
    let _ = std::fs::remove_dir_all(&root);
    match version {
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

pub(super) fn tempfile_dir() -> std::io::Result<PathBuf> {
    let template = std::env::temp_dir().join("doltctl-doctor-XXXXXX");
    nix::unistd::mkdtemp(&template).map_err(std::io::Error::from)
}

pub(super) fn data_dir_check(instance: &Instance) -> Check {
    let dir = instance.data_dir();
    match crate::config::instance::check_data_dir(dir) {
        Ok(()) => {}
        Err(crate::Error::DataDirMissing { .. }) => {
            return check(
                "data dir",
                Level::Warn,
                format!("{} does not exist", dir.display()),
            )
            .fix("`doltctl init` creates it, or point --data-dir / data_dir at your data");
        }
        Err(e) => {
            return check("data dir", Level::Fail, e.to_string())
                .fix("point --data-dir / data_dir at a directory");
        }
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
pub(super) fn permission_checks(instance: &Instance) -> Vec<Check> {
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

pub(super) fn log_checks(
    cfg: &Config,
    instance: &Instance,
    st: &Option<InstanceStatus>,
) -> Vec<Check> {
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
    out.push(disk_check(instance.data_dir()));
    out
}

/// Free space where the data dir is (or would be created): FAIL when the disk is full as the
/// supervisor judges it ([`disk::full_disk`]: dolt cannot write, and crashes or refuses to
/// start), WARN below 1 GiB or 5% free.
pub(super) fn disk_check(data_dir: &Path) -> Check {
    let (probe_dir, s) = match disk::space(data_dir) {
        Ok(m) => m,
        Err(e) => {
            return check(
                "disk space",
                Level::Warn,
                format!(
                    "cannot measure free space under {}: {e}",
                    data_dir.display()
                ),
            )
        }
    };
    if let Some(reason) = disk::full_disk(&probe_dir) {
        return check("disk space", Level::Fail, reason).fix(
            "free space on that filesystem (delete or move files, or grow it); the supervisor \
             starts dolt again by itself once there is room",
        );
    }
    let low = s.free < (1 << 30) || (s.total > 0 && s.free.saturating_mul(20) < s.total);
    let c = check(
        "disk space",
        if low { Level::Warn } else { Level::Ok },
        format!(
            "{} free of {} under {}",
            disk::human(s.free),
            disk::human(s.total),
            probe_dir.display()
        ),
    );
    if low {
        c.fix("free disk space: Dolt needs room for its journal")
    } else {
        c
    }
}

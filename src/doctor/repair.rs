//! `--fix`: the safe repairs, each re-checked right before it is made.

use super::*;

pub(super) async fn apply_repairs(checks: &mut [Check], cfg: &Config) {
    // Orphans first: stopping one releases its locks and removes its info file.
    let order = |r: &Repair| match r {
        Repair::StopOrphans(_) => 0,
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
    let mut stopped: Vec<i32> = vec![];
    for i in idx {
        let Some(repair) = checks[i].repair.clone() else {
            continue;
        };
        let outcome = match repair {
            Repair::StopOrphans(list) => {
                // Several checks may name one orphan (its state, its locks): stopped once.
                let mut done = vec![];
                let mut failed = None;
                for p in list {
                    if stopped.contains(&p.pid) {
                        done.push(format!("orphaned server pid {} was stopped above", p.pid));
                        continue;
                    }
                    // Identity is checked again inside terminate(): a reused pid is never hit.
                    match p.terminate(cfg.server.stop_timeout).await {
                        Ok(()) => {
                            stopped.push(p.pid);
                            done.push(format!("stopped orphaned server pid {}", p.pid));
                        }
                        Err(e) => failed = Some(e.to_string()),
                    }
                }
                failed.map_or_else(|| Ok(done.join("; ")), Err)
            }
            Repair::RemoveInfoFile(p) => {
                // Re-check right before: no lock held anywhere under the data dir.
                let held = any_lock_held(&instance);
                if held {
                    Err("a Dolt lock is held now; left in place".into())
                } else {
                    remove(&p)
                }
            }
            Repair::RemoveStateFile(p) => {
                let held = any_lock_held(&instance);
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

/// Re-checked right before a repair; an unreadable data dir counts as held (do nothing).
pub(super) fn any_lock_held(instance: &Instance) -> bool {
    locks::inspect(instance.data_dir())
        .map(|ls| ls.iter().any(|l| l.holder != Holder::Free))
        .unwrap_or(true)
}

pub(super) fn remove(p: &Path) -> Result<String, String> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(format!("removed {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(format!("{} was already gone", p.display()))
        }
        Err(e) => Err(e.to_string()),
    }
}

//! The registry's unit tests: registration, restore, pruning and idle time, with this test
//! process standing in for a live supervisor and forged identities for dead ones.
use super::*;
use std::os::unix::fs::PermissionsExt;

/// An identity of a process that does not exist: this process with another start time.
fn dead() -> ProcessIdentity {
    let me = ProcessIdentity::current().unwrap();
    ProcessIdentity {
        start_time: me.start_time + 1,
        ..me
    }
}

fn entry_for(data_dir: &Path, supervisor: ProcessIdentity) -> Entry {
    Entry {
        data_dir: data_dir.to_path_buf(),
        supervisor,
        auto_started: true,
        stop_timeout_ms: Some(1000),
        registered_at: "2026-11-28T21:00:00.000Z".into(),
    }
}

fn write(path: &Path, e: &Entry) {
    write_atomic(path, &serde_json::to_vec(e).unwrap()).unwrap();
}

#[test]
fn the_directory_comes_from_the_override_then_xdg_then_home() {
    let p = |s: &str| Some(PathBuf::from(s));
    assert_eq!(dir_from(p("/r"), p("/x"), p("/h")), p("/r"));
    assert_eq!(dir_from(None, p("/x"), p("/h")), p("/x/doltctl/instances"));
    assert_eq!(
        dir_from(None, None, p("/h")),
        p("/h/.local/state/doltctl/instances")
    );
    // A relative XDG_STATE_HOME is invalid per the spec: ignored.
    assert_eq!(
        dir_from(None, p("rel"), p("/h")),
        p("/h/.local/state/doltctl/instances")
    );
    assert_eq!(dir_from(None, None, None), None);
}

#[test]
fn registering_writes_one_private_file_per_data_dir_and_drop_removes_it() {
    let reg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let dir = reg.path().join("instances");
    let instance = Instance::new(data.path());
    let r = Registration::register_in(&dir, &instance, true, Duration::from_secs(7)).unwrap();
    let file = file_in(&dir, &instance);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&dir), 0o700);
    let e = read_entry(&file).unwrap().unwrap();
    assert_eq!(e.data_dir, instance.data_dir());
    assert_eq!(Some(e.supervisor), ProcessIdentity::current());
    assert!(e.auto_started);
    assert_eq!(e.stop_timeout_ms, Some(7000));
    // A second registration of the same data dir is the same file.
    let again = Registration::register_in(&dir, &instance, false, Duration::ZERO).unwrap();
    assert_eq!(again.path, file);
    std::mem::forget(again);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    drop(r);
    assert!(!file.exists());
}

#[test]
fn drop_leaves_a_successors_entry_and_restore_puts_ours_back() {
    let reg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let instance = Instance::new(data.path());
    let mut r = Registration::register_in(reg.path(), &instance, false, Duration::ZERO).unwrap();
    std::fs::remove_file(&r.path).unwrap();
    r.restore();
    assert!(r.in_place());
    std::fs::write(&r.path, "garbage").unwrap();
    r.restore();
    assert!(r.in_place(), "a corrupt file at our path is replaced");
    let successor = entry_for(instance.data_dir(), dead());
    write(&r.path, &successor);
    let path = r.path.clone();
    drop(r);
    assert_eq!(read_entry(&path).unwrap(), Some(successor));
}

#[test]
fn liveness_lists_orphans_and_only_prunes_what_is_gone() {
    use Liveness::*;
    assert_eq!(liveness(true, false, false), Supervised);
    assert_eq!(liveness(false, true, false), Supervised);
    assert_eq!(liveness(true, false, true), Supervised);
    assert_eq!(liveness(false, false, true), Orphaned);
    assert_eq!(liveness(false, false, false), Gone);
}

#[test]
fn a_scan_prunes_dead_entries_keeps_live_ones_and_reports_corrupt_files() {
    let reg = tempfile::tempdir().unwrap();
    let live_dir = tempfile::tempdir().unwrap();
    let dead_dir = tempfile::tempdir().unwrap();
    let live = Instance::new(live_dir.path());
    let gone = Instance::new(dead_dir.path());
    // This test process stands in for a live supervisor (no server: the state says
    // nothing); a forged identity for a dead one.
    let live_file = file_in(reg.path(), &live);
    let dead_file = file_in(reg.path(), &gone);
    write(
        &live_file,
        &entry_for(live.data_dir(), ProcessIdentity::current().unwrap()),
    );
    write(&dead_file, &entry_for(gone.data_dir(), dead()));
    let corrupt = reg.path().join("0000000000000000.json");
    std::fs::write(&corrupt, "{not json").unwrap();
    // A temp file of a write in progress is not an entry.
    std::fs::write(reg.path().join(".x.json.tmp.1"), "partial").unwrap();

    // Without prune (clients): nothing changes.
    let s = scan_dir(reg.path(), false);
    assert_eq!(s.instances.len(), 1);
    assert_eq!(s.instances[0].entry.data_dir, live.data_dir());
    assert_eq!(s.instances[0].liveness, Liveness::Supervised);
    assert!(s.pruned.is_empty());
    assert!(dead_file.exists());

    // With prune (ps, gc): the dead entry goes; the corrupt file is reported, kept.
    let s = scan_dir(reg.path(), true);
    assert_eq!(s.instances.len(), 1);
    assert_eq!(s.pruned, vec![gone.data_dir().to_path_buf()]);
    assert!(!dead_file.exists() && live_file.exists() && corrupt.exists());
    assert_eq!(s.problems.len(), 1);
    let msg = s.problems[0].to_string();
    assert!(
        msg.contains("0000000000000000.json") && msg.contains("delete it"),
        "{msg}"
    );
}

#[test]
fn a_stale_entry_rewritten_by_a_new_supervisor_is_not_pruned() {
    let reg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let instance = Instance::new(data.path());
    let file = file_in(reg.path(), &instance);
    let stale = entry_for(instance.data_dir(), dead());
    write(&file, &stale);
    let (listed, _) = Listed::of(file.clone(), stale);
    assert_eq!(listed.liveness, Liveness::Gone);
    // Between the read and the removal, a new supervisor registers.
    let fresh = entry_for(instance.data_dir(), ProcessIdentity::current().unwrap());
    write(&file, &fresh);
    assert!(!remove_if_unchanged(&listed));
    assert_eq!(read_entry(&file).unwrap(), Some(fresh));
}

#[test]
fn no_registry_dir_is_an_empty_registry() {
    let reg = tempfile::tempdir().unwrap();
    let s = scan_dir(&reg.path().join("never-created"), true);
    assert!(s.instances.is_empty() && s.problems.is_empty() && s.pruned.is_empty());
}

#[test]
fn idle_time_is_counted_from_the_last_client_while_none_is_connected() {
    let data = tempfile::tempdir().unwrap();
    let instance = Instance::new(data.path());
    let me = ProcessIdentity::current().unwrap();
    let mut state: State = serde_json::from_value(serde_json::json!({
        "state": "running",
        "server": me,
        "started_at": "2026-11-28T21:00:00.000Z",
        "supervisor": me,
        "host": "127.0.0.1", "port": 1, "socket": null, "url": null,
        "data_dir": data.path(), "read_only": false, "restarts": 0,
        "last_error": null, "dolt_version": null, "updated_at": "t",
        "clients": 0, "last_client_at": "2026-11-28T21:00:00.000Z",
    }))
    .unwrap();
    let listed = |state: &State, alive: bool| Listed {
        file: PathBuf::new(),
        entry: entry_for(data.path(), me.clone()),
        status: Status {
            instance: instance.clone(),
            state: Some(state.clone()),
            supervisor_alive: alive,
            server_alive: alive,
            orphan: None,
        },
        liveness: Liveness::Supervised,
    };
    let now = humantime::parse_rfc3339("2026-11-28T21:05:00Z").unwrap();
    assert_eq!(
        listed(&state, true).idle(now),
        Some(Duration::from_secs(300))
    );
    state.clients = Some(2);
    assert_eq!(listed(&state, true).idle(now), Some(Duration::ZERO));
    // A state whose supervisor is gone says nothing about clients now.
    assert_eq!(listed(&state, false).idle(now), None);
    assert_eq!(listed(&state, false).clients(), None);
    state.clients = None;
    assert_eq!(listed(&state, true).idle(now), None);
}

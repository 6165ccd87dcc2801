//! Housekeeping on every health tick: runtime files deleted under the supervisor put back, a
//! state that could not be written written again, a data dir that is gone or a disk that is
//! full noticed.

use super::*;

impl<L: Launcher> Supervisor<L> {
    /// Housekeeping on every health tick, in every waiting phase: puts back runtime files
    /// deleted under us (`rm -rf .doltctl`, `git clean -fdx`), writes a state that could not
    /// be written, and reports a data dir that is gone.
    pub(super) fn maintain(&mut self) -> Option<Event> {
        self.log.retry_now();
        if let Some(e) = self.watch_disk() {
            return Some(e);
        }
        let data_dir = self.instance.data_dir().to_path_buf();
        let ino = std::fs::metadata(&data_dir)
            .ok()
            .filter(|m| m.is_dir())
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        if self.machine.phase.server().is_some() && ino != self.data_dir_ino {
            let why = format!(
                "data dir {} was {} while the server ran; stopped the server rather than let it \
                 serve deleted files",
                data_dir.display(),
                if ino.is_none() { "removed" } else { "replaced" }
            );
            self.log.event(&why);
            return Some(Event::Lost(why));
        }
        // With no data dir there is nothing to put back; the next launch reports it. One that
        // stays away (a deleted project or temp dir) is given up on after `failure_window`,
        // so forgotten supervisors do not pile up; a stop ends the supervisor.
        if ino.is_none() {
            let since = *self.data_dir_missing_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= self.settings.data_dir_grace {
                self.log.event(&format!(
                    "data dir {} has been gone for {:?}; the supervisor exits",
                    data_dir.display(),
                    since.elapsed()
                ));
                return Some(Event::Stop);
            }
            return None;
        }
        self.data_dir_missing_since = None;
        if self.lock.is_some() && !self.lock_is_in_place() {
            self.restore_runtime_files();
        }
        let role_changed = self
            .cluster_view
            .as_ref()
            .is_some_and(|v| v.has_changed().unwrap_or(false));
        if self.unwritten || role_changed {
            self.publish();
        }
        if let Some(r) = &mut self.registration {
            r.restore();
        }
        None
    }

    /// While a server runs: notes a full disk (status says so; dolt may answer reads while every
    /// write fails) and restarts the server once there is room again, so its writes work.
    pub(super) fn watch_disk(&mut self) -> Option<Event> {
        if self.machine.phase.server().is_none() {
            self.disk_full = None;
            return None;
        }
        match (
            crate::server::disk::full_disk(self.instance.data_dir()),
            &self.disk_full,
        ) {
            (Some(reason), None) => {
                let why = format!(
                    "{reason}: dolt's writes fail; free space there and the supervisor restarts \
                     dolt by itself"
                );
                self.log.event(&why);
                self.disk_full = Some(why);
                self.publish();
                None
            }
            (None, Some(_)) => {
                self.disk_full = None;
                let why = "the disk was full while dolt ran; restarting it now that there is \
                           room, so its writes work again"
                    .to_string();
                self.log.event(&why);
                Some(Event::Lost(why))
            }
            _ => None,
        }
    }

    /// True while our locked `supervisor.lock` is still the file at its path.
    pub(super) fn lock_is_in_place(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let held = self
            .lock
            .as_ref()
            .and_then(|l| l.metadata().ok())
            .map(|m| m.ino());
        let named = std::fs::metadata(self.instance.supervisor_lock())
            .ok()
            .map(|m| m.ino());
        held.is_some() && held == named
    }

    /// Recreates the runtime dir, re-takes the supervisor lock on the new file and rewrites
    /// the state. No second supervisor can have started meanwhile: the control socket, not a
    /// file, keeps supervisors unique.
    pub(super) fn restore_runtime_files(&mut self) {
        let rt = self.instance.runtime_dir().to_path_buf();
        if let Err(e) = self.instance.ensure_dirs() {
            tracing::warn!("recreating {}: {e}", rt.display());
            return;
        }
        match crate::sys::locks::try_flock(&self.instance.supervisor_lock()) {
            Ok(Some(l)) => self.lock = Some(l),
            Ok(None) => tracing::warn!(
                "{} is locked by another process",
                self.instance.supervisor_lock().display()
            ),
            Err(e) => tracing::warn!("{e}"),
        }
        self.log.event(&format!(
            "runtime files in {} were removed under the running supervisor; recreated them",
            rt.display()
        ));
        self.publish();
    }
}

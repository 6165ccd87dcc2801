//! Is the data dir's filesystem full? Dolt fails in many ways when it cannot write (a panic,
//! `exit 2`, a failed launch); this says why in words a person acts on, for `status`'s last
//! error and `doctor`.
//!
//! "Full" means less than [`MIN_FREE`] (1 MiB) is left for the server to write, or no inode
//! is left. A fixed floor rather than a share of the disk: 1 MiB is less than one chunk
//! journal flush or one log rotation can need, so a server below it is failing or about to,
//! on any size of disk; a percentage would call a big disk with gigabytes left full (that is
//! only "low", a `doctor` warning). The space counted is what a process of ours can use:
//! the blocks reserved for root count only when we are root.

use std::path::{Path, PathBuf};

/// Less free space than this is a full disk.
pub(crate) const MIN_FREE: u64 = 1 << 20;

/// The space of one filesystem, as a process of ours sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Space {
    /// Bytes we can still write.
    pub free: u64,
    /// The filesystem's size in bytes.
    pub total: u64,
    /// Inodes we can still create; `None` when the filesystem does not count them (btrfs).
    pub free_inodes: Option<u64>,
    /// Its inode count, when it has one.
    pub total_inodes: Option<u64>,
}

/// The space of the filesystem holding `dir`, or of its nearest existing ancestor (a data
/// dir not created yet is created there). Also returns the directory measured.
pub(crate) fn space(dir: &Path) -> std::io::Result<(PathBuf, Space)> {
    let probe = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    let vfs = nix::sys::statvfs::statvfs(&probe).map_err(std::io::Error::from)?;
    let unit = vfs.fragment_size();
    // Root may write into the blocks reserved for it; anyone else may not.
    let free_blocks = if nix::unistd::geteuid().is_root() {
        vfs.blocks_free()
    } else {
        vfs.blocks_available()
    };
    let counts_inodes = vfs.files() > 0;
    Ok((
        probe,
        Space {
            free: free_blocks.saturating_mul(unit),
            total: vfs.blocks().saturating_mul(unit),
            free_inodes: counts_inodes.then(|| vfs.files_available()),
            total_inodes: counts_inodes.then(|| vfs.files()),
        },
    ))
}

/// Why `data_dir`'s filesystem cannot take more writes, e.g. `the filesystem of /x/data is
/// full (0 bytes free of 64 MiB)`; `None` when it has room (or cannot be measured: no
/// guess is better than a wrong one).
pub(crate) fn full_disk(data_dir: &Path) -> Option<String> {
    let (_, s) = space(data_dir).ok()?;
    full_reason(data_dir, &s)
}

/// [`full_disk`] for a measured `space`.
pub(crate) fn full_reason(dir: &Path, s: &Space) -> Option<String> {
    if s.free < MIN_FREE {
        return Some(format!(
            "the filesystem of {} is full ({} free of {})",
            dir.display(),
            human(s.free),
            human(s.total)
        ));
    }
    match (s.free_inodes, s.total_inodes) {
        (Some(0), Some(total)) => Some(format!(
            "the filesystem of {} is full: no free inodes (0 of {total}), so no file can be \
             created",
            dir.display()
        )),
        _ => None,
    }
}

/// True for "no space left on device" and "disk quota exceeded": errors that go away when
/// space is freed, not by themselves.
pub(crate) fn is_enospc(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(
            e.raw_os_error().map(Errno::from_raw),
            Some(Errno::ENOSPC | Errno::EDQUOT)
        )
}

/// Bytes for people: `0 bytes`, `512 bytes`, `1.5 KiB`, `64 MiB`, `1.8 TiB`.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let s = format!("{v:.1}");
    let s = s.strip_suffix(".0").unwrap_or(&s);
    format!("{s} {}", UNITS[unit])
}

/// A 2 MiB tmpfs for tests of a full disk, unmounted on drop (also on panic). Mounting needs
/// root: [`TinyTmpfs::mount`] says on stderr why there is none.
#[cfg(test)]
pub(crate) struct TinyTmpfs {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

#[cfg(test)]
impl TinyTmpfs {
    pub(crate) fn mount() -> Option<TinyTmpfs> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("not root: cannot mount a tmpfs, so no real full disk in this test");
            return None;
        }
        let dir = tempfile::tempdir().ok()?;
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs"])
            .arg(&mnt)
            .status();
        if !mounted.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("root, but mount -t tmpfs failed ({mounted:?}): no CAP_SYS_ADMIN here?");
            return None;
        }
        Some(TinyTmpfs { _dir: dir, mnt })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.mnt
    }

    /// Writes a filler file until the filesystem refuses; returns that error.
    pub(crate) fn fill(&self) -> std::io::Error {
        use std::io::Write;
        let mut f = match std::fs::File::create(self.mnt.join("filler")) {
            Ok(f) => f,
            Err(e) => return e,
        };
        let chunk = vec![0u8; 64 << 10];
        loop {
            if let Err(e) = f.write_all(&chunk) {
                return e;
            }
        }
    }

    /// Removes the filler.
    pub(crate) fn unfill(&self) {
        let _ = std::fs::remove_file(self.mnt.join("filler"));
    }
}

#[cfg(test)]
impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mnt)
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn space(free: u64, total: u64) -> Space {
        Space {
            free,
            total,
            free_inodes: Some(1000),
            total_inodes: Some(2000),
        }
    }

    #[test]
    fn full_below_one_mib_and_without_inodes_with_numbers_in_words() {
        let dir = Path::new("/x/data");
        assert_eq!(
            full_reason(dir, &space(0, 64 << 20)).as_deref(),
            Some("the filesystem of /x/data is full (0 bytes free of 64 MiB)")
        );
        assert_eq!(
            full_reason(dir, &space(MIN_FREE / 2, 3 << 40)).as_deref(),
            Some("the filesystem of /x/data is full (512 KiB free of 3 TiB)")
        );
        assert!(full_reason(dir, &space(MIN_FREE - 1, 64 << 20)).is_some());
        assert_eq!(full_reason(dir, &space(MIN_FREE, 64 << 20)), None);
        // A big disk with little left is low, not full.
        assert_eq!(full_reason(dir, &space(2 << 30, 4 << 40)), None);
        let no_inodes = Space {
            free_inodes: Some(0),
            ..space(10 << 20, 64 << 20)
        };
        assert_eq!(
            full_reason(dir, &no_inodes).as_deref(),
            Some(
                "the filesystem of /x/data is full: no free inodes (0 of 2000), so no file \
                 can be created"
            )
        );
        // A filesystem that does not count inodes is never out of them.
        let uncounted = Space {
            free_inodes: None,
            total_inodes: None,
            ..space(10 << 20, 64 << 20)
        };
        assert_eq!(full_reason(dir, &uncounted), None);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(0), "0 bytes");
        assert_eq!(human(1023), "1023 bytes");
        assert_eq!(human(1024), "1 KiB");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(64 << 20), "64 MiB");
        assert_eq!(human(u64::MAX), "16 EiB");
    }

    #[test]
    fn enospc_and_quota_are_full_disks_other_errors_are_not() {
        // /dev/full answers every write with ENOSPC.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let e = f.write_all(b"x").and_then(|()| f.flush()).unwrap_err();
        assert!(is_enospc(&e), "{e:?}");
        assert!(is_enospc(&std::io::Error::from_raw_os_error(
            nix::libc::EDQUOT
        )));
        assert!(!is_enospc(&std::io::Error::from_raw_os_error(
            nix::libc::EACCES
        )));
        assert!(!is_enospc(&std::io::Error::other("no space left")));
    }

    #[test]
    fn a_missing_dir_is_measured_where_it_would_be_created() {
        let dir = tempfile::tempdir().unwrap();
        let (probe, s) = super::space(&dir.path().join("not/yet")).unwrap();
        assert_eq!(probe, dir.path());
        assert!(s.total > 0 && s.free <= s.total, "{s:?}");
    }

    /// A real full filesystem: a tiny tmpfs, filled. Needs root (mount); as anyone else it
    /// says so and checks nothing more (the numbers are tested above).
    #[test]
    fn a_filled_tmpfs_is_full_and_says_so() {
        let Some(fs) = TinyTmpfs::mount() else { return };
        let data = fs.path().join("data");
        std::fs::create_dir(&data).unwrap();
        assert_eq!(full_disk(&data), None, "an empty 2 MiB tmpfs has room");
        let err = fs.fill();
        assert!(is_enospc(&err), "{err:?}");
        let reason = full_disk(&data).expect("a filled tmpfs is full");
        assert_eq!(
            reason,
            format!(
                "the filesystem of {} is full (0 bytes free of 2 MiB)",
                data.display()
            )
        );
        fs.unfill();
        assert_eq!(full_disk(&data), None, "room again once the filler is gone");
    }
}

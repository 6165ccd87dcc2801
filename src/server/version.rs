//! What `dolt version` says, remembered per binary file in the runtime dir: a start then runs
//! no second dolt process beside the server (on two cores it would slow the server's own
//! start), and a replaced binary is asked again.

use std::path::{Path, PathBuf};

use crate::config::instance::Instance;
use crate::sys::atomic::write_atomic;

/// A binary as a file: path, inode and modification time, so a replaced file is noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryFile {
    pub path: PathBuf,
    pub ino: u64,
    pub mtime: i64,
}

impl BinaryFile {
    /// The file at `path` as it is now (inode and mtime 0 when it cannot be read).
    pub fn of(path: &Path) -> BinaryFile {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok();
        BinaryFile {
            path: path.to_path_buf(),
            ino: m.as_ref().map_or(0, |m| m.ino()),
            mtime: m.as_ref().map_or(0, |m| m.mtime()),
        }
    }

    fn record(&self, version: &str) -> String {
        format!(
            "{version}\t{}\t{}\t{}\n",
            self.ino,
            self.mtime,
            self.path.display()
        )
    }
}

/// The remembered version of `bin`, if it is still that file. A missing, foreign or
/// malformed record is just not used.
pub fn remembered(instance: &Instance, bin: &BinaryFile) -> Option<String> {
    if bin.ino == 0 {
        return None;
    }
    let text = std::fs::read_to_string(instance.dolt_version_record()).ok()?;
    let version = text.split('\t').next()?;
    (!version.is_empty() && text == bin.record(version)).then(|| version.to_string())
}

/// Remembers `version` for `bin` (atomically, 0600); a failure only costs a `dolt version`
/// on a later start.
pub fn remember(instance: &Instance, bin: &BinaryFile, version: &str) {
    if version.contains(['\t', '\n']) || bin.ino == 0 {
        return;
    }
    if let Err(e) = write_atomic(
        &instance.dolt_version_record(),
        bin.record(version).as_bytes(),
    ) {
        tracing::debug!("cannot remember the dolt version: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_remembered_for_the_same_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let instance = Instance::new(dir.path());
        instance.ensure_dirs().unwrap();
        let bin = dir.path().join("dolt");
        std::fs::write(&bin, "a").unwrap();
        let file = BinaryFile::of(&bin);
        assert_eq!(remembered(&instance, &file), None);
        remember(&instance, &file, "2.2.0");
        assert_eq!(remembered(&instance, &file).as_deref(), Some("2.2.0"));
        // Replaced by another file (a new inode): asked again.
        std::fs::remove_file(&bin).unwrap();
        std::fs::write(dir.path().join("other"), "keep the old inode taken").unwrap();
        std::fs::write(&bin, "b").unwrap();
        assert_eq!(remembered(&instance, &BinaryFile::of(&bin)), None);
        // Garbage in the record is ignored.
        std::fs::write(instance.dolt_version_record(), "\0\0\t").unwrap();
        assert_eq!(remembered(&instance, &file), None);
    }
}

//! Who holds Dolt's locks. Dolt keeps an empty `LOCK` file per store (`.dolt/noms/LOCK`, also
//! under `noms/oldgen/` and `.dolt/stats/`) and holds `flock(LOCK_EX)` on it while the database
//! is open. The kernel drops the lock when the holder dies, so a LOCK file left by `kill -9` is
//! harmless. Deleting a LOCK file a live process holds corrupts the journal, so this module only
//! ever opens LOCK files read-only, never creates, truncates or removes them.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{IoContext, Result};

/// A database under a data dir: the data dir itself or a direct sub-directory holding `.dolt/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub name: String,
    pub dir: PathBuf,
}

/// Who holds one of Dolt's LOCK files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Nobody holds the lock (a stale LOCK file is fine).
    Free,
    /// A live process holds it; `pid` is `None` when `/proc/locks` does not show it (another
    /// pid namespace).
    Held {
        /// The holder's pid, when `/proc/locks` shows it.
        pid: Option<i32>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoltLock {
    pub database: String,
    pub path: PathBuf,
    pub holder: Holder,
}

/// Databases Dolt would serve from `data_dir` (it scans at start only, the same way).
pub fn databases(data_dir: &Path) -> Result<Vec<Database>> {
    let mut out = Vec::new();
    if data_dir.join(".dolt").join("noms").is_dir() {
        let name = data_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(Database {
            name,
            dir: data_dir.to_path_buf(),
        });
    }
    let entries = match std::fs::read_dir(data_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(crate::error::Error::io(data_dir, e)),
    };
    for entry in entries {
        let entry = entry.at(data_dir)?;
        let dir = entry.path();
        if dir.join(".dolt").is_dir() {
            out.push(Database {
                name: entry.file_name().to_string_lossy().into_owned(),
                dir,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Every `LOCK` file inside a database's `.dolt/` (bounded depth: they sit at most a few
/// levels down, and a data dir may hold large trees).
pub fn lock_files(db_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(&db_dir.join(".dolt"), 5, &mut out);
    out.sort();
    out
}

fn walk(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() && depth > 0 {
            walk(&entry.path(), depth - 1, out);
        } else if ft.is_file() && entry.file_name() == "LOCK" {
            out.push(entry.path());
        }
    }
}

/// Inspects every Dolt lock under `data_dir`.
pub fn inspect(data_dir: &Path) -> Result<Vec<DoltLock>> {
    let mut out = Vec::new();
    for db in databases(data_dir)? {
        for path in lock_files(&db.dir) {
            let holder = probe(&path)?;
            out.push(DoltLock {
                database: db.name.clone(),
                path,
                holder,
            });
        }
    }
    Ok(out)
}

/// Tests a LOCK file with a non-blocking exclusive flock, released at once. Opened read-only
/// and without O_CREAT: flock does not need write access, and a missing file stays missing.
pub fn probe(path: &Path) -> Result<Holder> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Holder::Free),
        Err(e) => return Err(crate::error::Error::io(path, e)),
    };
    let meta = file.metadata().at(path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => {
            // Unlock right away: Dolt waits only 100 ms for this lock before it silently
            // opens the database read-only.
            drop(lock);
            Ok(Holder::Free)
        }
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(Holder::Held {
            pid: holder_pid(meta.dev(), meta.ino()),
        }),
        Err((_, e)) => Err(crate::error::Error::io(path, e.into())),
    }
}

/// The pid holding an flock on `path`, read from `/proc/locks` alone: unlike [`probe`], it
/// never takes the lock, so it cannot make a process that is taking it right now fail.
/// `None` when the file is missing, nobody holds it, or the holder is not visible here.
pub fn holder_of(path: &Path) -> Option<i32> {
    let meta = std::fs::metadata(path).ok()?;
    holder_pid(meta.dev(), meta.ino())
}

/// Takes an exclusive flock on one of doltctl's own lock files (created 0600 if missing)
/// without waiting: `Ok(None)` when another process holds it. Never used on Dolt's LOCK files.
pub fn try_flock(path: &Path) -> Result<Option<Flock<File>>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .at(path)?;
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(l)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(crate::error::Error::io(path, e.into())),
    }
}

/// Finds the pid holding a FLOCK on (dev, ino) in `/proc/locks`.
pub fn holder_pid(dev: u64, ino: u64) -> Option<i32> {
    let locks = procfs::locks().ok()?;
    let major = nix::sys::stat::major(dev);
    let minor = nix::sys::stat::minor(dev);
    flock_holder(&locks, major, minor, ino)
}

/// The first FLOCK row on the file. `procfs` drops the `->` that marks a blocked waiter, but
/// the kernel prints each waiter right after the lock it waits for, so the first row on a
/// file is always one that holds it.
fn flock_holder(locks: &[procfs::Lock], major: u64, minor: u64, ino: u64) -> Option<i32> {
    locks
        .iter()
        .find(|l| {
            l.lock_type == procfs::LockType::FLock
                && u64::from(l.devmaj) == major
                && u64::from(l.devmin) == minor
                && l.inode == ino
        })
        .and_then(|l| l.pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_flock_holder_not_a_waiter() {
        use procfs::FromBufRead;
        let text = "1: POSIX  ADVISORY  WRITE 99 fd:01:777 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 4242 fd:01:777 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 5555 fd:01:777 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 6666 fd:01:778 0 EOF\n";
        let locks = procfs::Locks::from_buf_read(text.as_bytes()).unwrap().0;
        assert_eq!(flock_holder(&locks, 0xfd, 1, 777), Some(4242));
        assert_eq!(flock_holder(&locks, 0xfd, 1, 778), Some(6666));
        assert_eq!(flock_holder(&locks, 0xfd, 1, 779), None);
    }

    /// A second process blocked in flock() on a held LOCK file shows up as a waiter; the holder
    /// is still the one named.
    #[test]
    fn a_blocked_waiter_is_not_named_as_holder() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("LOCK");
        std::fs::write(&lock, "").unwrap();
        let held = Flock::lock(File::open(&lock).unwrap(), FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| e)
            .unwrap();
        let mut waiter = std::process::Command::new("flock")
            .arg(&lock)
            .args(["-c", "true"])
            .spawn()
            .unwrap();
        let meta = std::fs::metadata(&lock).unwrap();
        let (major, minor) = (
            nix::sys::stat::major(meta.dev()),
            nix::sys::stat::minor(meta.dev()),
        );
        let on_file = |l: &procfs::Lock| {
            l.lock_type == procfs::LockType::FLock
                && u64::from(l.devmaj) == major
                && u64::from(l.devmin) == minor
                && l.inode == meta.ino()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while procfs::locks()
            .unwrap()
            .iter()
            .filter(|l| on_file(l))
            .count()
            < 2
        {
            assert!(
                std::time::Instant::now() < deadline,
                "flock(1) did not start waiting on {} within 10s",
                lock.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(
            holder_pid(meta.dev(), meta.ino()),
            Some(std::process::id() as i32)
        );
        drop(held);
        assert!(waiter.wait().unwrap().success());
    }

    #[test]
    fn probe_sees_a_held_flock_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("LOCK");
        std::fs::write(&lock, "").unwrap();
        let ino = std::fs::metadata(&lock).unwrap().ino();
        assert_eq!(probe(&lock).unwrap(), Holder::Free);
        // flock locks belong to the open file description: a second open in this process
        // conflicts with the first, as another process would.
        let held = Flock::lock(File::open(&lock).unwrap(), FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| e)
            .unwrap();
        assert_eq!(
            probe(&lock).unwrap(),
            Holder::Held {
                pid: Some(std::process::id() as i32)
            }
        );
        drop(held);
        assert_eq!(probe(&lock).unwrap(), Holder::Free);
        // The file is untouched.
        assert_eq!(std::fs::metadata(&lock).unwrap().ino(), ino);
    }

    #[test]
    fn finds_root_and_child_databases() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/.dolt/noms")).unwrap();
        std::fs::create_dir_all(dir.path().join("b/.dolt/noms/oldgen")).unwrap();
        std::fs::create_dir_all(dir.path().join("notadb")).unwrap();
        std::fs::write(dir.path().join("b/.dolt/noms/LOCK"), "").unwrap();
        std::fs::write(dir.path().join("b/.dolt/noms/oldgen/LOCK"), "").unwrap();
        let dbs = databases(dir.path()).unwrap();
        let names: Vec<_> = dbs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(lock_files(&dbs[1].dir).len(), 2);
    }
}

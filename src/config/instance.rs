//! The files of one doltctl instance (one data dir). Runtime files live in
//! `<data_dir>/.doltctl/` (mode 0700); Dolt's own files are only ever read.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// The name of doltctl's runtime directory inside the data dir.
pub const RUNTIME_DIR_NAME: &str = ".doltctl";
/// A unix socket path must fit in `sun_path` (108 bytes including the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// One data dir and the paths of doltctl's files for it.
#[derive(Debug, Clone)]
pub struct Instance {
    data_dir: PathBuf,
    runtime_dir: PathBuf,
}

impl Instance {
    /// `data_dir` should be absolute; it is canonicalised when it exists so that two spellings
    /// of one directory are one instance.
    pub fn new(data_dir: &Path) -> Instance {
        let data_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        let runtime_dir = data_dir.join(RUNTIME_DIR_NAME);
        Instance {
            data_dir,
            runtime_dir,
        }
    }

    /// The data dir, canonicalised when it existed at [`Instance::new`].
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    /// `<data_dir>/.doltctl/`, where doltctl keeps its runtime files.
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }
    /// The supervisor's recorded state (`state.json`).
    pub fn state_file(&self) -> PathBuf {
        self.runtime_dir.join("state.json")
    }
    /// Held (flock) by the supervisor for its whole life.
    pub fn supervisor_lock(&self) -> PathBuf {
        self.runtime_dir.join("supervisor.lock")
    }
    /// Held by `start` while it checks for and launches a supervisor, so that racing starts
    /// launch one.
    pub fn start_lock(&self) -> PathBuf {
        self.runtime_dir.join("start.lock")
    }
    /// Written by `doltctl exclusive` while it holds the start lock: who paused the server
    /// (pid, start time, command), so a client waiting on the lock can say so.
    pub fn exclusive_file(&self) -> PathBuf {
        self.runtime_dir.join("exclusive.json")
    }
    /// Dolt's output and the supervisor's events, rotated by size.
    pub fn server_log(&self) -> PathBuf {
        self.runtime_dir.join("server.log")
    }
    /// stderr of a detached supervisor (panics, early errors).
    pub fn supervisor_log(&self) -> PathBuf {
        self.runtime_dir.join("supervisor.log")
    }
    /// The config file doltctl generates for `dolt sql-server --config`.
    pub fn dolt_config(&self) -> PathBuf {
        self.runtime_dir.join("dolt-config.yaml")
    }
    /// `DOLT_ROOT_PATH` for the server when the environment gives none, so the user's HOME is
    /// never needed.
    pub fn dolt_root(&self) -> PathBuf {
        self.runtime_dir.join("dolt-root")
    }
    /// Dolt's `PID:PORT:SECRET` file at the data dir root.
    pub fn dolt_server_info(&self) -> PathBuf {
        self.data_dir.join(".dolt").join("sql-server.info")
    }

    /// The server's unix socket: in the runtime dir, or, when that path is too long for a unix
    /// socket, in a per-user directory under /tmp named after a hash of the data dir.
    pub fn socket(&self) -> PathBuf {
        let p = self.runtime_dir.join("mysql.sock");
        if p.as_os_str().len() <= MAX_SOCKET_PATH {
            return p;
        }
        let uid = nix::unistd::getuid();
        PathBuf::from(format!("/tmp/doltctl-{uid}")).join(format!("{:016x}.sock", self.hash()))
    }

    /// A stable 64-bit hash of the data dir path (FNV-1a: fixed across Rust versions, unlike
    /// `DefaultHasher`).
    pub fn hash(&self) -> u64 {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in self.data_dir.as_os_str().as_encoded_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
        h
    }

    /// The dolt binary the last successful launch for this data dir ran (one absolute path).
    /// A later start finds dolt there when neither `DOLT_BIN` nor `PATH` names it, e.g. in a
    /// new shell without `~/.local/bin` on `PATH`.
    pub fn dolt_bin_record(&self) -> PathBuf {
        self.runtime_dir.join("dolt-bin")
    }
    /// What `dolt version` said for the binary recorded in it, so a start runs no second dolt
    /// process beside the server while the binary stays the same file.
    pub fn dolt_version_record(&self) -> PathBuf {
        self.runtime_dir.join("dolt-version")
    }

    /// Checks that the data dir exists and is a directory, then creates the runtime dir (0700).
    /// For commands that start things (`start`, `run`, auto-start); they never create the
    /// data dir itself, so a misspelled `--data-dir` is an error, not an empty server. On an
    /// error nothing was created.
    pub fn ensure_dirs(&self) -> Result<()> {
        check_data_dir(&self.data_dir)?;
        make_private_dir(&self.runtime_dir)?;
        let sock = self.socket();
        if let Some(dir) = sock.parent() {
            if dir != self.runtime_dir {
                make_private_dir(dir)?;
            }
        }
        Ok(())
    }

    /// Creates the data dir (and its parents) unless it exists: only for `doltctl init` and
    /// [`TestServer`](crate::TestServer), which set a data dir up. A path that exists but is
    /// not a directory is an error.
    pub fn create_data_dir(&self) -> Result<()> {
        match check_data_dir(&self.data_dir) {
            Err(Error::DataDirMissing { .. }) => {
                std::fs::create_dir_all(&self.data_dir).at(&self.data_dir)
            }
            other => other,
        }
    }
}

/// A data dir must exist and be a directory (a symlink to one is fine).
pub fn check_data_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::DataDirNotADirectory {
            data_dir: dir.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::DataDirMissing {
            data_dir: dir.to_path_buf(),
        }),
        // A parent that is a file: the path cannot be a directory.
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => {
            Err(Error::DataDirNotADirectory {
                data_dir: dir.to_path_buf(),
            })
        }
        Err(e) => Err(Error::io(dir, e)),
    }
}

fn make_private_dir(dir: &Path) -> Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::metadata(dir).at(dir)?;
            if meta.permissions().mode() & 0o777 != 0o700 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).at(dir)?;
            }
            Ok(())
        }
        Err(e) => Err(Error::io(dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_never_creates_a_data_dir_and_init_does() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Instance::new(&dir.path().join("typo/data"));
        let err = missing.ensure_dirs().unwrap_err();
        assert!(matches!(err, Error::DataDirMissing { .. }), "{err}");
        assert!(err.to_string().contains("`doltctl init`"), "{err}");
        assert!(!dir.path().join("typo").exists());
        missing.create_data_dir().unwrap();
        missing.ensure_dirs().unwrap();
        assert!(missing.runtime_dir().is_dir());

        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        for inst in [Instance::new(&file), Instance::new(&file.join("below"))] {
            let err = inst.ensure_dirs().unwrap_err();
            assert!(matches!(err, Error::DataDirNotADirectory { .. }), "{err}");
            let err = inst.create_data_dir().unwrap_err();
            assert!(matches!(err, Error::DataDirNotADirectory { .. }), "{err}");
        }
    }

    #[test]
    fn long_data_dirs_get_a_short_socket() {
        let long = "/tmp/".to_string() + &"x".repeat(120);
        let inst = Instance::new(Path::new(&long));
        assert!(inst.socket().as_os_str().len() <= MAX_SOCKET_PATH);
        let short = Instance::new(Path::new("/srv/db"));
        assert_eq!(short.socket(), PathBuf::from("/srv/db/.doltctl/mysql.sock"));
    }

    /// The hash is part of the on-disk contract: `auto` ports and long-path socket names are
    /// derived from it, so it must be the same in every build and process. Pinned to FNV-1a
    /// values computed independently (paths that do not exist, so nothing is canonicalised).
    #[test]
    fn hash_is_stable() {
        assert_eq!(
            Instance::new(Path::new("/nonexistent/doltctl/db")).hash(),
            0xbf7c_8665_f040_1a9b
        );
        assert_eq!(
            Instance::new(Path::new("/nonexistent/doltctl/db2")).hash(),
            0xa0b3_0837_3ced_4d2b
        );
    }
}

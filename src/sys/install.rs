//! Where programs are installed outside `PATH`: the user's home, the prefix
//! `scripts/install-dolt.sh` installs dolt into, and cargo's bin dir (`cargo install`). A new
//! shell, a service or an IDE may run doltctl with a `PATH` that holds none of these, so
//! doltctl looks there itself. Everything here only reads the environment and the file system.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The environment variable of `scripts/install-dolt.sh`: dolt goes to `PREFIX/bin/dolt`.
pub const DOLT_PREFIX_ENV: &str = "DOLTCTL_DOLT_PREFIX";

/// `$HOME`, else the home directory of this user's passwd entry.
pub fn home_dir() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(h));
    }
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.dir)
}

/// Where `scripts/install-dolt.sh` puts dolt: `${DOLTCTL_DOLT_PREFIX:-$HOME/.local}/bin/dolt`.
pub fn installed_dolt() -> Option<PathBuf> {
    let prefix = match std::env::var_os(DOLT_PREFIX_ENV).filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => home_dir()?.join(".local"),
    };
    Some(prefix.join("bin").join("dolt"))
}

/// The directories `cargo install` puts binaries in, in cargo's order of precedence:
/// `$CARGO_INSTALL_ROOT/bin`, else `$CARGO_HOME/bin`, else `~/.cargo/bin`. The default
/// `~/.cargo/bin` is listed last even when `CARGO_HOME` points elsewhere, since a program may
/// inherit a `CARGO_HOME` from a build while doltctl was installed with the default.
pub fn cargo_bin_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for var in ["CARGO_INSTALL_ROOT", "CARGO_HOME"] {
        if let Some(root) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            dirs.push(PathBuf::from(root).join("bin"));
        }
    }
    if let Some(home) = home_dir() {
        let default = home.join(".cargo").join("bin");
        if !dirs.contains(&default) {
            dirs.push(default);
        }
    }
    dirs
}

/// `doltctl` in the first of [`cargo_bin_dirs`] that has it.
pub fn installed_doltctl() -> Option<PathBuf> {
    cargo_bin_dirs()
        .into_iter()
        .map(|d| d.join("doltctl"))
        .find(|p| is_executable(p))
}

/// A regular file (after symlinks) that someone may execute.
pub fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_are_files_with_an_x_bit() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "").unwrap();
        assert!(!is_executable(&f));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(is_executable(&f));
        assert!(!is_executable(dir.path()));
        assert!(!is_executable(&dir.path().join("missing")));
    }
}

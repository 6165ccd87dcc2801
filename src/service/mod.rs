//! `doltctl service install|uninstall`: a systemd unit that runs `doltctl run` for one data
//! dir (`Type=notify`: the supervisor says READY=1 once the server answers `SELECT 1`). The
//! unit is generated from the config (timeouts from `stop_timeout` and `ready_timeout`),
//! written atomically, marked as doltctl's, and never runs `systemctl` itself.

mod name;
mod unit;

use std::path::{Path, PathBuf};

use crate::config::{Config, Instance};
use crate::error::{Error, IoContext, Result};

pub use unit::Scope;

/// Which unit, for whom.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// User or system manager.
    pub scope: Scope,
    /// The unit name (`--name`); default: derived from the data dir.
    pub name: Option<String>,
}

/// A unit as `install` writes it.
#[derive(Debug, Clone)]
pub struct PlannedUnit {
    /// `doltctl-....service`.
    pub name: String,
    /// Where it goes.
    pub path: PathBuf,
    /// The unit file.
    pub text: String,
    /// User or system.
    pub scope: Scope,
    /// What the user should know (dolt not found, ...).
    pub warnings: Vec<String>,
}

/// What `uninstall` did.
#[derive(Debug, Clone)]
pub enum Removed {
    /// Removed the unit and these enablement links.
    Removed {
        /// The unit file.
        path: PathBuf,
        /// `*.wants/` links to it.
        links: Vec<PathBuf>,
    },
    /// There was no unit at this path.
    NotInstalled(PathBuf),
}

/// The scope when neither `--user` nor `--system` is given: root installs system units, anyone
/// else units of their own manager.
pub fn default_scope() -> Scope {
    if nix::unistd::geteuid().is_root() {
        Scope::System
    } else {
        Scope::User
    }
}

/// Where units of `scope` live: `$XDG_CONFIG_HOME/systemd/user` (default
/// `~/.config/systemd/user`), or `/etc/systemd/system`.
pub fn unit_dir(scope: Scope) -> Result<PathBuf> {
    match scope {
        Scope::System => Ok(PathBuf::from("/etc/systemd/system")),
        Scope::User => {
            let config = std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .or_else(|| crate::sys::install::home_dir().map(|h| h.join(".config")))
                .ok_or_else(|| Error::ServiceUnit {
                    unit: "~/.config/systemd/user".into(),
                    message: "no home directory is known (HOME is unset): set HOME or \
                              XDG_CONFIG_HOME"
                        .into(),
                })?;
            Ok(config.join("systemd").join("user"))
        }
    }
}

/// The data dir as the unit names it: absolute, symlinks resolved when it exists.
fn absolute_data_dir(cfg: &Config) -> Result<PathBuf> {
    let dir = Instance::new(&cfg.data_dir).data_dir().to_path_buf();
    match std::fs::canonicalize(&dir) {
        Ok(p) => Ok(p),
        Err(_) => std::path::absolute(&dir).at(&dir),
    }
}

/// The unit's name and path.
fn unit_path(data_dir: &Path, opts: &ServiceOptions) -> Result<(String, PathBuf)> {
    let name = match &opts.name {
        Some(n) => name::given_unit_name(n)?,
        None => name::default_unit_name(data_dir, Instance::new(data_dir).hash()),
    };
    let path = unit_dir(opts.scope)?.join(&name);
    Ok((name, path))
}

/// The unit `install` would write for `cfg`'s data dir. Reads only.
pub fn plan(cfg: &Config, opts: &ServiceOptions) -> Result<PlannedUnit> {
    let data_dir = absolute_data_dir(cfg)?;
    match std::fs::metadata(&data_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(Error::DataDirNotADirectory { data_dir }),
        Err(_) => return Err(Error::DataDirMissing { data_dir }),
    }
    let (name, path) = unit_path(&data_dir, opts)?;
    let config = match &cfg.source {
        Some(c) => Some(std::fs::canonicalize(c).at(c)?),
        None => None,
    };
    let exe = std::env::current_exe().at("the doltctl binary (/proc/self/exe)")?;
    let doltctl = std::fs::canonicalize(&exe).unwrap_or(exe);
    for p in [Some(&data_dir), config.as_ref(), Some(&doltctl)]
        .into_iter()
        .flatten()
    {
        if p.to_string_lossy().chars().any(char::is_control) {
            return Err(Error::ServiceUnit {
                unit: path,
                message: format!("{p:?} has a control character, which a unit file cannot hold"),
            });
        }
    }
    let mut warnings = Vec::new();
    // systemd starts services with a PATH of its own: a dolt elsewhere is named explicitly.
    let dolt_bin = match crate::server::dolt::resolve_binary(cfg) {
        Ok(p)
            if p.parent()
                .is_some_and(|d| unit::SYSTEMD_DEFAULT_PATH.iter().any(|s| d == Path::new(s))) =>
        {
            None
        }
        Ok(p) => Some(p),
        Err(e) => {
            warnings.push(format!(
                "{e}; the service looks for dolt when it starts (install it, or set DOLT_BIN and \
                 install the unit again)"
            ));
            None
        }
    };
    let run_as = match opts.scope {
        Scope::System => owner_if_not_root(&data_dir),
        Scope::User => None,
    };
    let instance = Instance::new(&data_dir);
    let spec = unit::UnitSpec {
        scope: opts.scope,
        doltctl,
        config,
        data_dir: data_dir.clone(),
        dolt_bin,
        ready_timeout: cfg.server.ready_timeout,
        stop_timeout: cfg.server.stop_timeout,
        socket: instance.socket(),
        run_as,
    };
    Ok(PlannedUnit {
        name,
        path,
        text: unit::render(&spec),
        scope: opts.scope,
        warnings,
    })
}

/// A system service runs as whoever owns the data dir, so the files it creates stay theirs.
fn owner_if_not_root(data_dir: &Path) -> Option<(String, String)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(data_dir).ok()?;
    if m.uid() == 0 {
        return None;
    }
    let user = nix::unistd::User::from_uid(m.uid().into())
        .ok()
        .flatten()
        .map_or_else(|| m.uid().to_string(), |u| u.name);
    let group = nix::unistd::Group::from_gid(m.gid().into())
        .ok()
        .flatten()
        .map_or_else(|| m.gid().to_string(), |g| g.name);
    Some((user, group))
}

/// True when `text` is a unit doltctl wrote.
fn is_ours(text: &str) -> bool {
    text.lines().next() == Some(unit::MARKER)
}

/// Refuses a file at `path` that doltctl did not write.
fn check_ours(path: &Path, text: &str, doing: &str) -> Result<()> {
    if is_ours(text) {
        return Ok(());
    }
    Err(Error::ServiceUnit {
        unit: path.into(),
        message: format!(
            "exists and was not written by doltctl (its first line is not doltctl's marker); \
             not {doing} it: choose another name with --name, or remove it yourself"
        ),
    })
}

/// Writes the unit (atomically, 0644), replacing one doltctl wrote before, never another.
pub fn install(unit: &PlannedUnit) -> Result<()> {
    match std::fs::read_to_string(&unit.path) {
        Ok(old) => check_ours(&unit.path, &old, "overwriting")?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&unit.path, e)),
    }
    let write = || -> Result<()> {
        let dir = unit.path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir).at(dir)?;
        crate::sys::atomic::write_atomic(&unit.path, unit.text.as_bytes())?;
        // systemd reads units as root (or as their user); others may read them too, as
        // `systemctl cat` does.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&unit.path, std::fs::Permissions::from_mode(0o644)).at(&unit.path)
    };
    write().map_err(|e| match e {
        Error::Io { source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied
                && unit.scope == Scope::System =>
        {
            Error::ServiceUnit {
                unit: unit.path.clone(),
                message: "permission denied: a system unit is installed as root (sudo), or \
                          install a user unit with --user"
                    .into(),
            }
        }
        e => e,
    })
}

/// Removes the unit `install` wrote for `cfg`'s data dir (or `--name`), and the `*.wants/`
/// links that enabled it; refuses a file doltctl did not write.
pub fn uninstall(cfg: &Config, opts: &ServiceOptions) -> Result<Removed> {
    let data_dir = absolute_data_dir(cfg)?;
    let (name, path) = unit_path(&data_dir, opts)?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Removed::NotInstalled(path))
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    check_ours(&path, &text, "removing")?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut links = Vec::new();
    for target in [Scope::User.wanted_by(), Scope::System.wanted_by()] {
        let link = dir.join(format!("{target}.wants")).join(&name);
        if std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
            std::fs::remove_file(&link).at(&link)?;
            links.push(link);
        }
    }
    std::fs::remove_file(&path).at(&path)?;
    Ok(Removed::Removed { path, links })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_marked_file_is_ours() {
        assert!(is_ours(&format!("{}\n[Unit]\n", unit::MARKER)));
        assert!(!is_ours("[Unit]\nDescription=x\n"));
        assert!(!is_ours(&format!("\n{}\n", unit::MARKER)));
    }
}

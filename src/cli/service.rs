//! `doltctl service install|uninstall`: prints the unit or where it went, and the `systemctl`
//! commands that enable it (doltctl never runs systemctl itself).

use std::io::Write;
use std::process::ExitCode;

use crate::config::Config;
use crate::error::{IoContext, Result};
use crate::service::{self, Removed, Scope, ServiceOptions};

/// The options of `service install` and `service uninstall`.
#[derive(Debug, Clone, Default)]
pub struct ServiceArgs {
    /// User or system manager; default: system for root, user for anyone else.
    pub scope: Option<Scope>,
    /// The unit name instead of the one derived from the data dir.
    pub name: Option<String>,
    /// `install`: print the unit on stdout and write nothing.
    pub print: bool,
}

impl ServiceArgs {
    fn options(&self) -> ServiceOptions {
        ServiceOptions {
            scope: self.scope.unwrap_or_else(service::default_scope),
            name: self.name.clone(),
        }
    }
}

/// A unit name as a shell word (generated names may hold `\x..` escapes).
fn shell_word(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c))
    {
        name.to_string()
    } else {
        super::render::sh_quote(name)
    }
}

/// `doltctl service install [--user|--system] [--print] [--name N]`.
pub fn service_install(cfg: &Config, args: &ServiceArgs) -> Result<ExitCode> {
    let unit = service::plan(cfg, &args.options())?;
    for w in &unit.warnings {
        errln!("doltctl: warning: {w}");
    }
    let mut out = std::io::stdout().lock();
    if args.print {
        write!(out, "{}", unit.text).at("stdout")?;
        return Ok(ExitCode::SUCCESS);
    }
    service::install(&unit)?;
    let ctl = unit.scope.systemctl();
    let name = shell_word(&unit.name);
    let mut lines = vec![
        format!("wrote {}", unit.path.display()),
        "start it now and at every boot with:".into(),
        format!("  {ctl} daemon-reload"),
        format!("  {ctl} enable --now {name}"),
    ];
    if unit.scope == Scope::User {
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map_or_else(|| "$USER".to_string(), |u| u.name);
        lines.push(format!(
            "  loginctl enable-linger {user}   # so it runs without a login session"
        ));
    }
    let journal = match unit.scope {
        Scope::User => "journalctl --user",
        Scope::System => "journalctl",
    };
    lines.push(format!(
        "check it with: {ctl} status {name}; {journal} -u {name}"
    ));
    if let Ok(st) = crate::lifecycle::control::status(cfg) {
        if let Some(sup) = st
            .state
            .as_ref()
            .and_then(|s| s.supervisor.as_ref())
            .filter(|_| st.supervisor_alive)
        {
            lines.push(format!(
                "note: a supervisor already runs for this data dir (pid {}); `doltctl stop` it \
                 before starting the service, or the service cannot take the data dir",
                sup.pid
            ));
        }
    }
    for l in lines {
        writeln!(out, "{l}").at("stdout")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `doltctl service uninstall [--user|--system] [--name N]`: not installed is success.
pub fn service_uninstall(cfg: &Config, args: &ServiceArgs) -> Result<ExitCode> {
    let opts = args.options();
    let mut out = std::io::stdout().lock();
    match service::uninstall(cfg, &opts)? {
        Removed::NotInstalled(path) => {
            writeln!(out, "not installed: {}", path.display()).at("stdout")?;
        }
        Removed::Removed { path, links } => {
            writeln!(out, "removed {}", path.display()).at("stdout")?;
            for l in links {
                writeln!(out, "removed {}", l.display()).at("stdout")?;
            }
            let ctl = opts.scope.systemctl();
            let name = path
                .file_name()
                .map(|n| shell_word(&n.to_string_lossy()))
                .unwrap_or_default();
            writeln!(out, "if it runs, stop it and let systemd forget it with:").at("stdout")?;
            writeln!(out, "  {ctl} stop {name}").at("stdout")?;
            writeln!(out, "  {ctl} daemon-reload").at("stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! The text of a `Type=notify` unit that runs `doltctl run` for one data dir.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The first line of every unit doltctl writes: `uninstall` removes only files that start
/// with it, and `install` overwrites only those.
pub(crate) const MARKER: &str =
    "# doltctl-managed unit: written by `doltctl service install`; `doltctl service uninstall` removes it.";

/// The directories on systemd's default `PATH` for services: a dolt there needs no
/// `Environment=DOLT_BIN`.
pub(crate) const SYSTEMD_DEFAULT_PATH: [&str; 4] =
    ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"];

/// Whose service manager runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The user's own manager (`systemctl --user`), unit in `~/.config/systemd/user/`.
    User,
    /// The system manager, unit in `/etc/systemd/system/`.
    System,
}

impl Scope {
    /// `systemctl`'s flag for this scope (`--user`, or nothing).
    pub(crate) fn systemctl(self) -> &'static str {
        match self {
            Scope::User => "systemctl --user",
            Scope::System => "systemctl",
        }
    }

    /// The target that pulls the unit in at boot (system) or login (user).
    pub(crate) fn wanted_by(self) -> &'static str {
        match self {
            Scope::User => "default.target",
            Scope::System => "multi-user.target",
        }
    }
}

/// Everything a unit says.
#[derive(Debug, Clone)]
pub(crate) struct UnitSpec {
    pub scope: Scope,
    /// The doltctl binary (absolute).
    pub doltctl: PathBuf,
    /// The config file (absolute), when there is one.
    pub config: Option<PathBuf>,
    /// The data dir (absolute).
    pub data_dir: PathBuf,
    /// `Environment=DOLT_BIN=`: a dolt the service would not find on its own.
    pub dolt_bin: Option<PathBuf>,
    pub ready_timeout: Duration,
    pub stop_timeout: Duration,
    /// The server's unix socket (under `/tmp` when the data dir's path is too long for one).
    pub socket: PathBuf,
    /// `User=` and `Group=` for a system unit whose data dir belongs to someone else.
    pub run_as: Option<(String, String)>,
}

/// How often systemd expects `WATCHDOG=1` (the supervisor sends it twice as often).
const WATCHDOG: Duration = Duration::from_secs(30);

/// The unit file.
pub(crate) fn render(s: &UnitSpec) -> String {
    let mut exec = vec![quote(&s.doltctl)];
    if let Some(c) = &s.config {
        exec.push("--config".into());
        exec.push(quote(c));
    }
    exec.extend(["--data-dir".into(), quote(&s.data_dir), "run".into()]);
    // Starting may first stop an orphaned server (stop_timeout), then waits up to
    // ready_timeout for SELECT 1; the margin covers the launch itself.
    let start = s.ready_timeout + s.stop_timeout + Duration::from_secs(30);
    // The supervisor SIGTERMs dolt, waits stop_timeout, then SIGKILLs it; the margin covers
    // the kill and the supervisor's own exit, so systemd never cuts a clean stop short.
    let stop = s.stop_timeout + Duration::from_secs(15);
    let mut out = vec![
        MARKER.to_string(),
        format!("# data dir: {}", s.data_dir.display()),
        String::new(),
        "[Unit]".into(),
        format!(
            "Description=dolt sql-server for {} (doltctl)",
            specifiers(&s.data_dir.display().to_string())
        ),
        format!("RequiresMountsFor={}", quote_path(&s.data_dir)),
    ];
    if s.scope == Scope::System {
        out.push("After=network.target".into());
    }
    out.extend([
        String::new(),
        "[Service]".into(),
        // READY=1 comes once SELECT 1 answers, not when the process starts.
        "Type=notify".into(),
        "NotifyAccess=main".into(),
        format!("ExecStart={}", exec.join(" ")),
    ]);
    if let Some(bin) = &s.dolt_bin {
        out.push(format!(
            "Environment={}",
            quote_str(&format!("DOLT_BIN={}", bin.display()), false)
        ));
    }
    if let Some((user, group)) = &s.run_as {
        out.push(format!("User={user}"));
        out.push(format!("Group={group}"));
    }
    out.extend([
        // The supervisor restarts dolt itself; systemd restarts the supervisor.
        "Restart=on-failure".into(),
        "RestartSec=5s".into(),
        format!("TimeoutStartSec={}", seconds(start)),
        format!("TimeoutStopSec={}", seconds(stop)),
        format!("WatchdogSec={}", seconds(WATCHDOG)),
        // SIGTERM to doltctl only: it stops dolt's process group itself, in order, and must
        // not race a SIGTERM systemd sends dolt directly (it would see a crash and relaunch).
        // Whatever is left once doltctl exited, or at the timeout, gets SIGKILL.
        "KillMode=mixed".into(),
        // The runtime files (state, logs, dolt's generated config) are nobody else's.
        "UMask=0077".into(),
        "NoNewPrivileges=yes".into(),
        "LockPersonality=yes".into(),
        "RestrictRealtime=yes".into(),
        "RestrictSUIDSGID=yes".into(),
    ]);
    if s.scope == Scope::System {
        // Namespacing options need privileges a user manager lacks, so only here. No
        // ProtectHome: data dirs and configs often live in home directories.
        let mut writable = vec![quote_path(&s.data_dir)];
        if !s.socket.starts_with(&s.data_dir) {
            // The socket's fallback place, /tmp/doltctl-UID/ (a data dir path too long for a
            // socket name), created on the first start.
            writable.push("/tmp".into());
        }
        // A private /tmp would hide files the service or its clients need there.
        let in_tmp = |p: &Path| p.starts_with("/tmp") || p.starts_with("/var/tmp");
        let needs_tmp = in_tmp(&s.data_dir)
            || in_tmp(&s.socket)
            || s.config.as_deref().is_some_and(in_tmp)
            || in_tmp(&s.doltctl);
        if !needs_tmp {
            out.push("PrivateTmp=yes".into());
        }
        out.extend([
            "ProtectSystem=strict".into(),
            format!("ReadWritePaths={}", writable.join(" ")),
            "PrivateDevices=yes".into(),
            "ProtectKernelTunables=yes".into(),
            "ProtectKernelModules=yes".into(),
            "ProtectKernelLogs=yes".into(),
            "ProtectControlGroups=yes".into(),
            "ProtectClock=yes".into(),
            "ProtectHostname=yes".into(),
            "RestrictNamespaces=yes".into(),
            // TCP for clients and probes, unix for the socket and the control socket.
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6".into(),
            "SystemCallArchitectures=native".into(),
        ]);
    }
    out.extend([
        String::new(),
        "[Install]".into(),
        format!("WantedBy={}", s.scope.wanted_by()),
    ]);
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// Whole seconds, rounded up, as systemd reads a time span.
fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// `%` starts a specifier in almost every unit setting.
fn specifiers(s: &str) -> String {
    s.replace('%', "%%")
}

/// A path as one word of a command line (`ExecStart=`): quoted when it has to be, with `%`
/// and `$` (specifiers and variable expansion) escaped.
fn quote(p: &Path) -> String {
    quote_str(&p.display().to_string(), true)
}

/// A path in a path list (`ReadWritePaths=`, `RequiresMountsFor=`): no `$` expansion there.
fn quote_path(p: &Path) -> String {
    quote_str(&p.display().to_string(), false)
}

fn quote_str(s: &str, dollar: bool) -> String {
    let mut v = specifiers(s);
    if dollar {
        v = v.replace('$', "$$");
    }
    if v.chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
    {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(scope: Scope) -> UnitSpec {
        UnitSpec {
            scope,
            doltctl: "/opt/bin/doltctl".into(),
            config: Some("/srv/my app/doltctl.toml".into()),
            data_dir: "/srv/my app/dolt".into(),
            dolt_bin: Some("/opt/dolt/bin/dolt".into()),
            ready_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_millis(10_500),
            socket: "/srv/my app/dolt/.doltctl/mysql.sock".into(),
            run_as: None,
        }
    }

    #[test]
    fn a_user_unit_has_the_marker_notify_timeouts_and_no_namespacing() {
        let text = render(&spec(Scope::User));
        assert!(text.starts_with(MARKER), "{text}");
        for line in [
            "Type=notify",
            "NotifyAccess=main",
            "ExecStart=/opt/bin/doltctl --config \"/srv/my app/doltctl.toml\" --data-dir \"/srv/my app/dolt\" run",
            "Environment=DOLT_BIN=/opt/dolt/bin/dolt",
            "Restart=on-failure",
            "TimeoutStopSec=26s",
            "TimeoutStartSec=101s",
            "KillMode=mixed",
            "NoNewPrivileges=yes",
            "WantedBy=default.target",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(!text.contains("ProtectSystem"), "{text}");
        assert!(!text.contains("User="), "{text}");
    }

    #[test]
    fn a_system_unit_is_confined_to_its_data_dir() {
        let mut s = spec(Scope::System);
        s.run_as = Some(("app".into(), "app".into()));
        let text = render(&s);
        for line in [
            "ProtectSystem=strict",
            "ReadWritePaths=\"/srv/my app/dolt\"",
            "PrivateTmp=yes",
            "User=app",
            "WantedBy=multi-user.target",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        s.socket = "/tmp/doltctl-0/1.sock".into();
        let text = render(&s);
        assert!(!text.contains("PrivateTmp"), "{text}");
        assert!(
            text.contains("ReadWritePaths=\"/srv/my app/dolt\" /tmp\n"),
            "{text}"
        );
        // A data dir in /tmp: no private /tmp, which would hide it.
        s.data_dir = "/tmp/x/dolt".into();
        s.socket = "/tmp/x/dolt/.doltctl/mysql.sock".into();
        let text = render(&s);
        assert!(!text.contains("PrivateTmp"), "{text}");
        assert!(text.contains("ReadWritePaths=/tmp/x/dolt\n"), "{text}");
    }

    #[test]
    fn specifiers_quotes_and_dollars_are_escaped() {
        assert_eq!(quote(Path::new("/a/100%/$HOME")), "/a/100%%/$$HOME");
        assert_eq!(quote(Path::new("/a b/\"c\"")), "\"/a b/\\\"c\\\"\"");
        assert_eq!(quote_path(Path::new("/a/$x")), "/a/$x");
        assert_eq!(seconds(Duration::from_millis(1)), "1s");
    }
}

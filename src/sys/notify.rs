//! The sd_notify protocol: a service manager (systemd with `Type=notify`) hands its service a
//! unix datagram socket in `NOTIFY_SOCKET`, and the service sends it newline-separated
//! `KEY=VALUE` assignments: `READY=1`, `STATUS=...`, `STOPPING=1`, `WATCHDOG=1`.
//!
//! Written here rather than taken from the `sd-notify` crate: the protocol is one `sendto` of a
//! short text, and what doltctl needs around it (abstract and path sockets, `WATCHDOG_PID`,
//! keeping the variables away from dolt without touching our own environment in a threaded
//! process, logging send errors rather than returning them) is most of the code either way.
//! No libsystemd: doltctl runs where there is no systemd at all.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The variables a service manager gives its service; a child of ours (dolt) must not see
/// them, or it could notify on our behalf.
pub(crate) const SERVICE_MANAGER_ENV: [&str; 3] =
    ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub(crate) struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// Where the messages go, for log lines.
    target: String,
    /// How often to send `WATCHDOG=1` (half of `WATCHDOG_USEC`), when the watchdog is ours.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier the environment asks for: `None` without `NOTIFY_SOCKET` (not under a
    /// service manager, or one that does not want notifications). An unusable value is logged
    /// and treated as absent: a service manager's mistake must not keep the server down.
    pub(crate) fn from_env() -> Option<Notifier> {
        let var = std::env::var_os("NOTIFY_SOCKET")?;
        let watchdog = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        match Notifier::connect(&var.to_string_lossy(), watchdog) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET={var:?}: {e}; not notifying the service manager");
                None
            }
        }
    }

    /// A notifier for `socket`: a path, or a Linux abstract name after `@`.
    pub(crate) fn connect(socket: &str, watchdog: Option<Duration>) -> std::io::Result<Notifier> {
        let addr = match socket.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None if socket.starts_with('/') => SocketAddr::from_pathname(socket)?,
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "neither an absolute path nor an abstract name (@name)",
                ))
            }
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            addr,
            target: socket.to_string(),
            watchdog,
        })
    }

    /// How often `WATCHDOG=1` is due, if the service manager watches us.
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one message (assignments separated by newlines). A failure is logged, never
    /// returned: the service manager is a listener, and the server runs on without it.
    pub(crate) fn send(&self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.addr) {
            tracing::warn!(
                "notifying the service manager at {} ({:?}): {e}",
                self.target,
                message.lines().next().unwrap_or("")
            );
        }
    }
}

/// Half of `WATCHDOG_USEC` (systemd's advice), when it is set, positive, and `WATCHDOG_PID`
/// (if present) names this process: a watchdog meant for another process is not ours to feed.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

/// A value for `STATUS=`: one line (a newline would start a new assignment), at most a few
/// hundred bytes, cut on a character boundary.
pub(crate) fn status_line(text: &str) -> String {
    const MAX: usize = 400;
    let one: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one.len() <= MAX {
        return one;
    }
    let mut end = MAX;
    while !one.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &one[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_is_half_the_interval_and_only_for_this_pid() {
        let half = Some(Duration::from_millis(500));
        assert_eq!(watchdog_interval(Some("1000000"), None, 7), half);
        assert_eq!(watchdog_interval(Some("1000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval(Some("1000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }

    #[test]
    fn status_is_one_bounded_line() {
        assert_eq!(status_line("a\nb"), "a b");
        let long = "é".repeat(300);
        let s = status_line(&long);
        assert!(s.len() <= 403 && s.ends_with("..."), "{}", s.len());
    }

    #[test]
    fn messages_reach_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        Notifier::connect(path.to_str().unwrap(), None)
            .unwrap()
            .send("READY=1\nSTATUS=up");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=up");

        let name = format!("doltctl-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::connect(&format!("@{name}"), None)
            .unwrap()
            .send("WATCHDOG=1");
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");

        assert!(Notifier::connect("relative.sock", None).is_err());
        // Nobody listening: logged, not fatal.
        Notifier::connect(dir.path().join("gone").to_str().unwrap(), None)
            .unwrap()
            .send("READY=1");
    }
}

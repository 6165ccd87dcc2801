//! What a foreground supervisor tells a service manager (systemd `Type=notify`): `READY=1` the
//! first time the server answers `SELECT 1`, `STATUS=` on every phase change, `STOPPING=1`
//! once a stop of the whole service begins, and `WATCHDOG=1` on the watchdog's schedule.
//!
//! Fed from `Supervisor::publish`, the one place a new state leaves the supervisor, so the
//! notifications follow exactly what `status` shows. The machine stays pure: this reads the
//! phase after the fact.

use std::sync::Arc;

use crate::lifecycle::machine::{ServerPhase, Then};
use crate::lifecycle::state_file::State;
use crate::sys::notify::{status_line, Notifier};

/// A notifier and what it already said.
#[derive(Debug)]
pub(crate) struct ServiceNotify {
    notifier: Arc<Notifier>,
    ready_sent: bool,
    stopping_sent: bool,
    last_status: String,
}

impl ServiceNotify {
    /// Starts notifying through `notifier`, and feeding its watchdog when it has one. Must run
    /// inside the supervisor's runtime (the watchdog is a task of it).
    ///
    /// The watchdog is fed by a task of its own, every half interval: it proves the supervisor
    /// process and its runtime answer. Whether dolt answers is the supervisor's own job (it
    /// restarts a wedged server itself); tying the watchdog to dolt's health would have
    /// systemd kill a supervisor that is busy doing exactly that.
    pub(crate) fn start(notifier: Notifier) -> ServiceNotify {
        let notifier = Arc::new(notifier);
        if let Some(every) = notifier.watchdog_interval() {
            let n = notifier.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    n.send("WATCHDOG=1");
                }
            });
        }
        ServiceNotify {
            notifier,
            ready_sent: false,
            stopping_sent: false,
            last_status: String::new(),
        }
    }

    /// After each published state: what changed, in one datagram.
    pub(crate) fn publish(&mut self, phase: &ServerPhase, record: &State) {
        let mut lines = Vec::new();
        if matches!(phase, ServerPhase::Running { .. }) && !self.ready_sent {
            // Once: a service is started once. Later recoveries only change STATUS.
            self.ready_sent = true;
            lines.push("READY=1".to_string());
        }
        let stopping = matches!(
            phase,
            ServerPhase::Stopping {
                then: Then::Stopped | Then::Idle,
                ..
            } | ServerPhase::Stopped
                | ServerPhase::Idle
        );
        if stopping && !self.stopping_sent {
            self.stopping_sent = true;
            lines.push("STOPPING=1".to_string());
        }
        let status = status_line(&describe(phase, record));
        if status != self.last_status {
            lines.push(format!("STATUS={status}"));
            self.last_status = status;
        }
        if !lines.is_empty() {
            self.notifier.send(&lines.join("\n"));
        }
    }
}

/// The phase and what matters in it, as `systemctl status` shows it on one line.
fn describe(phase: &ServerPhase, record: &State) -> String {
    let first = |e: &Option<String>| {
        e.as_deref()
            .and_then(|e| e.lines().next())
            .unwrap_or("")
            .to_string()
    };
    let restarts = match record.restarts {
        0 => String::new(),
        n => format!(", {n} restarts"),
    };
    match phase {
        ServerPhase::Starting(None) => "starting: launching dolt sql-server".into(),
        ServerPhase::Starting(Some(l)) => format!(
            "starting: dolt pid {} launched on port {}, waiting for it to answer SELECT 1",
            l.identity.pid, record.port
        ),
        ServerPhase::Running { launch, .. } => {
            let url = record.url.as_deref().unwrap_or("");
            let mut s = format!(
                "running: {url} (dolt pid {}{restarts})",
                launch.identity.pid
            );
            if let Some(e) = &record.last_error {
                s.push_str(&format!("; last error: {}", first(&Some(e.clone()))));
            }
            s
        }
        ServerPhase::Backoff { wait } => format!(
            "backoff: starting dolt again in {}{restarts}; last error: {}",
            humantime::format_duration(*wait),
            first(&record.last_error)
        ),
        ServerPhase::Stopping { launch, then } => {
            let pid = launch.identity.pid;
            match then {
                Then::Stopped => format!("stopping: stopping dolt pid {pid}"),
                Then::Idle => {
                    format!("stopping: no clients for idle_timeout, stopping dolt pid {pid}")
                }
                Then::Relaunch => format!("restarting: stopping dolt pid {pid}"),
                Then::Fail(why) => format!(
                    "stopping: stopping dolt pid {pid}: {}",
                    why.lines().next().unwrap_or("")
                ),
            }
        }
        ServerPhase::Failed => format!(
            "failed: {}; retrying by itself (doltctl restart retries now)",
            first(&record.last_error)
        ),
        ServerPhase::Stopped => "stopped".into(),
        ServerPhase::Idle => "stopped: idle_timeout without clients".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::machine::Launch;
    use crate::lifecycle::state_file::PhaseRecord;
    use crate::sys::process::ProcessIdentity;
    use std::os::unix::net::UnixDatagram;
    use std::time::{Duration, Instant, SystemTime};

    fn record() -> State {
        State {
            phase: PhaseRecord::Stopped,
            supervisor: None,
            host: "127.0.0.1".into(),
            port: 3307,
            socket: None,
            url: Some("mysql://root@127.0.0.1:3307/".into()),
            data_dir: "/nonexistent/doltctl-notify".into(),
            read_only: false,
            restarts: 0,
            last_error: None,
            log_tail: vec![],
            dolt_version: None,
            updated_at: String::new(),
            clients: None,
            last_client_at: None,
            auto_started: false,
            cluster: None,
        }
    }

    fn launch() -> Launch {
        Launch {
            identity: ProcessIdentity {
                pid: 42,
                start_time: 1,
                cmdline: vec!["dolt".into()],
            },
            launched_at: Instant::now(),
        }
    }

    /// READY=1 once (not again after a restart), STATUS only on a change, STOPPING=1 for a
    /// stop of the service but not for a restart.
    #[test]
    fn ready_once_status_on_change_stopping_for_a_stop_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let notifier = Notifier::connect(path.to_str().unwrap(), None).unwrap();
        let mut n = ServiceNotify {
            notifier: Arc::new(notifier),
            ready_sent: false,
            stopping_sent: false,
            last_status: String::new(),
        };
        let recv = || {
            let mut buf = [0u8; 1024];
            rx.recv(&mut buf)
                .map(|k| String::from_utf8_lossy(&buf[..k]).into_owned())
                .unwrap_or_default()
        };
        let rec = record();
        let running = ServerPhase::Running {
            launch: launch(),
            ready_at: SystemTime::now(),
        };
        n.publish(&ServerPhase::Starting(None), &rec);
        assert_eq!(recv(), "STATUS=starting: launching dolt sql-server");
        n.publish(&ServerPhase::Starting(None), &rec);
        n.publish(&running, &rec);
        let m = recv();
        assert!(
            m.starts_with("READY=1\nSTATUS=running: mysql://root@127.0.0.1:3307/ (dolt pid 42)"),
            "{m:?} (nothing is sent for an unchanged status)"
        );
        let restarting = ServerPhase::Stopping {
            launch: launch(),
            then: Then::Relaunch,
        };
        n.publish(&restarting, &rec);
        assert_eq!(recv(), "STATUS=restarting: stopping dolt pid 42");
        n.publish(&running, &rec);
        assert!(recv().starts_with("STATUS=running"), "no second READY=1");
        let stopping = ServerPhase::Stopping {
            launch: launch(),
            then: Then::Stopped,
        };
        n.publish(&stopping, &rec);
        assert_eq!(recv(), "STOPPING=1\nSTATUS=stopping: stopping dolt pid 42");
        n.publish(&ServerPhase::Stopped, &rec);
        assert_eq!(recv(), "STATUS=stopped");
    }
}

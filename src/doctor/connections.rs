//! The `client connections` check: which processes hold connections to the server and how
//! long each has been quiet, so a user can see why a server does not idle out (the supervisor
//! counts every open connection but its own probe as a client).
//!
//! Dolt's process list cannot name the process behind a session: its `Host` column is the
//! account's host (`localhost`), not the client's address (seen on 2.2.0). So the processes
//! come from the host's side ([`port::peers`]: the client ends of TCP connections to the
//! server's port, their pids from `/proc`, their quiet time from the kernel), and the process
//! list adds what the server sees (each session's command and seconds in it).

use super::*;
use crate::server::port::Peer;

const NAME: &str = "client connections";

/// A session in the server's process list.
#[derive(Debug, Clone, Serialize)]
struct Session {
    id: u64,
    user: String,
    db: Option<String>,
    command: String,
    /// Seconds in its current command (for `Sleep`: idle).
    time_s: u64,
}

/// The server's sessions other than the one asking.
async fn sessions(cfg: &Config, port: u16) -> Result<Vec<Session>, String> {
    let opts = health::probe_opts(cfg, port);
    let fetch = async {
        let mut c = mysql_async::Conn::new(opts).await?;
        let rows: Vec<(u64, String, Option<String>, String, u64)> = c
            .query(
                "SELECT ID, USER, DB, COMMAND, TIME FROM information_schema.PROCESSLIST \
                 WHERE ID <> CONNECTION_ID() ORDER BY ID",
            )
            .await?;
        let _ = c.disconnect().await;
        Ok::<_, mysql_async::Error>(rows)
    };
    match tokio::time::timeout(Duration::from_secs(5), fetch).await {
        Ok(Ok(rows)) => Ok(rows
            .into_iter()
            .map(|(id, user, db, command, time_s)| Session {
                id,
                user,
                db,
                command,
                time_s,
            })
            .collect()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5s".into()),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn short(cmd: &str) -> String {
    const MAX: usize = 80;
    match cmd.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &cmd[..i]),
        None => cmd.to_string(),
    }
}

/// Who holds connections, one entry per process: `pid 1234 (python app.py): 2 connections,
/// quiet 45.0s, 3.1s`.
fn describe_processes(peers: &[&Peer]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < peers.len() {
        let pid = peers[i].pid;
        let group: Vec<&Peer> = peers[i..]
            .iter()
            .take_while(|p| p.pid == pid && pid.is_some())
            .copied()
            .collect();
        let group = if group.is_empty() {
            vec![peers[i]]
        } else {
            group
        };
        i += group.len();
        let who = match (pid, &group[0].command) {
            (Some(pid), Some(cmd)) => format!("pid {pid} ({})", short(cmd)),
            (Some(pid), None) => format!("pid {pid}"),
            _ => format!("a process not visible here (client {})", group[0].client),
        };
        let quiet: Vec<String> = group
            .iter()
            .map(|p| p.idle.map_or_else(|| "?".into(), secs))
            .collect();
        out.push(format!(
            "{who}: {} connection{}, quiet {}",
            group.len(),
            if group.len() == 1 { "" } else { "s" },
            quiet.join(", ")
        ));
    }
    out
}

fn describe_sessions(sessions: &[Session]) -> String {
    if sessions.is_empty() {
        return "none".into();
    }
    sessions
        .iter()
        .map(|s| format!("{} {}s", s.command, s.time_s))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) async fn clients_check(cfg: &Config, st: &Option<InstanceStatus>) -> Check {
    let Some(state) = st
        .as_ref()
        .filter(|s| s.is_ready())
        .and_then(|s| s.state.as_ref())
    else {
        return check(
            NAME,
            Level::Ok,
            "skipped: no supervised server is running and ready",
        );
    };
    let idle_timeout = crate::lifecycle::exclusive::supervisor_idle_timeout(state)
        .unwrap_or(cfg.server.idle_timeout);
    let supervisor = state.supervisor.as_ref().map(|p| p.pid);
    // Before doctor's own connection exists.
    let peers = port::peers(state.port);
    let sessions = sessions(cfg, state.port).await;
    let (probe, clients): (Vec<&Peer>, Vec<&Peer>) = peers
        .iter()
        .partition(|p| p.pid.is_some() && p.pid == supervisor);

    let idle_stop = if idle_timeout.is_zero() {
        "idle stop is off (idle_timeout 0s)".to_string()
    } else {
        format!(
            "the server stops after {} without clients",
            humantime::format_duration(idle_timeout)
        )
    };
    let mut detail = if clients.is_empty() {
        "no client connections (the supervisor's probe aside)".to_string()
    } else {
        format!(
            "{} client connection{}: {}",
            clients.len(),
            if clients.len() == 1 { "" } else { "s" },
            describe_processes(&clients).join("; ")
        )
    };
    match &sessions {
        Ok(s) => detail.push_str(&format!(
            "; the server's sessions (doctor's aside{}): {}",
            if probe.is_empty() {
                ""
            } else {
                ", the supervisor's probe included"
            },
            describe_sessions(s)
        )),
        Err(e) => detail.push_str(&format!("; the server's process list: {e}")),
    }
    if let Ok(s) = &sessions {
        // Sessions with no TCP connection from this host: the unix socket, or another host.
        let other = s.len().saturating_sub(peers.len());
        if other > 0 {
            detail.push_str(&format!(
                "; {other} session{} not over TCP from this host (the unix socket, or another host)",
                if other == 1 { "" } else { "s" }
            ));
        }
    }
    detail.push_str(&format!("; {idle_stop}"));

    // What keeps the server up: a client connection quiet for longer than the idle timeout
    // (without it the server would have stopped), by the kernel's clock or the server's.
    let idle_secs = idle_timeout.as_secs();
    let holding = !idle_timeout.is_zero()
        && (clients
            .iter()
            .any(|p| p.idle.is_some_and(|q| q >= idle_timeout))
            || sessions.as_ref().is_ok_and(|s| {
                idle_secs > 0
                    && s.iter()
                        .any(|x| x.command == "Sleep" && x.time_s >= idle_secs)
            }));
    let json = serde_json::json!({
        "idle_timeout_ms": idle_timeout.as_millis() as u64,
        "processes": peers.iter().map(|p| serde_json::json!({
            "pid": p.pid,
            "command": p.command,
            "client": p.client.to_string(),
            "quiet_ms": p.idle.map(|d| d.as_millis() as u64),
            "supervisor_probe": p.pid.is_some() && p.pid == supervisor,
        })).collect::<Vec<_>>(),
        "sessions": sessions.as_ref().ok(),
        "sessions_error": sessions.as_ref().err(),
    });
    let mut c = if holding {
        check(NAME, Level::Warn, detail).fix(
            "these connections keep the server from idling out: close connections the program \
             does not use (a doltctl ClientPool closes its idle ones after [client] \
             pool_idle_timeout; for other pools set their idle timeout, and a minimum of 0 idle \
             connections)",
        )
    } else {
        check(NAME, Level::Ok, detail)
    };
    c.connections = Some(json);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(pid: Option<i32>, port: u16, quiet_ms: u64) -> Peer {
        Peer {
            pid,
            command: pid.map(|p| format!("app --worker {p}")),
            client: format!("127.0.0.1:{port}").parse().unwrap(),
            idle: Some(Duration::from_millis(quiet_ms)),
        }
    }

    #[test]
    fn processes_are_listed_once_with_each_connections_quiet_time() {
        let peers = [
            peer(Some(10), 40000, 45_000),
            peer(Some(10), 40001, 3_100),
            peer(Some(11), 40002, 200),
            peer(None, 40003, 1_000),
        ];
        let refs: Vec<&Peer> = peers.iter().collect();
        assert_eq!(
            describe_processes(&refs),
            vec![
                "pid 10 (app --worker 10): 2 connections, quiet 45.0s, 3.1s",
                "pid 11 (app --worker 11): 1 connection, quiet 0.2s",
                "a process not visible here (client 127.0.0.1:40003): 1 connection, quiet 1.0s",
            ]
        );
    }
}

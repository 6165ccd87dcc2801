//! `doltctl ps`: one row per instance of this user (supervised or orphaned), from the registry,
//! pruned of instances of which nothing runs any more.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::error::Error;
use crate::lifecycle::registry::{self, Listed};
use crate::lifecycle::state_file::Phase;
use crate::sys::usage;

/// One instance as `ps` shows it. `None` (JSON `null`) where a value is unknown or does not
/// apply (no server: no port, uptime or memory; no supervisor: no client count or idle time).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The data dir.
    pub data_dir: PathBuf,
    /// The phase as `status` shows it (`orphaned` included).
    pub state: Phase,
    /// The live supervisor's pid.
    pub supervisor_pid: Option<i32>,
    /// The live dolt server's pid (supervised or orphaned).
    pub server_pid: Option<i32>,
    /// The host it listens on.
    pub host: Option<String>,
    /// Its TCP port.
    pub port: Option<u16>,
    /// The connection URL, never with a password.
    pub url: Option<String>,
    /// How long the dolt server process has run.
    pub uptime_ms: Option<u64>,
    /// How long it has had no client connection (0 while one is connected).
    pub idle_ms: Option<u64>,
    /// Client connections, as the supervisor last counted them.
    pub clients: Option<u64>,
    /// When a client was last seen (RFC 3339).
    pub last_client_at: Option<String>,
    /// Resident memory of the dolt server process.
    pub rss_bytes: Option<u64>,
    /// Started by a client's auto-start (so `gc --idle` may stop it).
    pub auto_started: bool,
}

/// What `ps` found.
#[derive(Debug, Default)]
pub struct Report {
    /// The instances, by data dir.
    pub rows: Vec<Row>,
    /// Registry files that could not be read, and state files that could not; each names
    /// its file.
    pub problems: Vec<Error>,
    /// Data dirs whose stale entries were removed.
    pub pruned: Vec<PathBuf>,
}

/// Lists every instance of this user, pruning the registry of the dead (the one side effect,
/// asked for by running `ps`).
pub fn ps() -> Report {
    let scan = registry::scan(true);
    let now = SystemTime::now();
    Report {
        rows: scan.instances.iter().map(|l| row(l, now)).collect(),
        problems: scan.problems,
        pruned: scan.pruned,
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

/// The row of one instance at `now`.
pub fn row(l: &Listed, now: SystemTime) -> Row {
    let server = l.server();
    // Where the server listens, as its state records it: only while a server runs.
    let state = l.state().filter(|s| server.is_some() && s.port != 0);
    Row {
        data_dir: l.entry.data_dir.clone(),
        state: l.phase(),
        supervisor_pid: l.supervisor().map(|p| p.pid),
        server_pid: server.map(|p| p.pid),
        host: state.map(|s| s.host.clone()),
        port: state.map(|s| s.port),
        url: state.and_then(|s| s.url.clone()),
        uptime_ms: server.and_then(|p| usage::age(p.start_time)).map(millis),
        idle_ms: l.idle(now).map(millis),
        clients: l.clients(),
        last_client_at: l
            .state()
            .filter(|_| l.clients().is_some())
            .and_then(|s| s.last_client_at.clone()),
        rss_bytes: server.and_then(|p| usage::rss_bytes(p.pid)),
        auto_started: l.auto_started(),
    }
}

/// The rows as a text table, one line per instance under a header; a line saying so when
/// there are none.
pub fn table(rows: &[Row]) -> String {
    if rows.is_empty() {
        return "no doltctl instances are running for this user\n".into();
    }
    let dash = || "-".to_string();
    let opt = |v: Option<String>| v.unwrap_or_else(dash);
    let header = [
        "DATA DIR", "STATE", "PID", "DOLT PID", "PORT", "UPTIME", "IDLE", "CLIENTS", "RSS", "AUTO",
        "URL",
    ]
    .map(String::from)
    .to_vec();
    let mut lines: Vec<Vec<String>> = vec![header];
    for r in rows {
        lines.push(vec![
            r.data_dir.display().to_string(),
            r.state.to_string(),
            opt(r.supervisor_pid.map(|p| p.to_string())),
            opt(r.server_pid.map(|p| p.to_string())),
            opt(r.port.map(|p| p.to_string())),
            opt(r
                .uptime_ms
                .map(|m| super::short_duration(Duration::from_millis(m)))),
            opt(r
                .idle_ms
                .map(|m| super::short_duration(Duration::from_millis(m)))),
            opt(r.clients.map(|c| c.to_string())),
            opt(r.rss_bytes.map(super::short_size)),
            if r.auto_started { "yes" } else { "no" }.into(),
            opt(r.url.clone()),
        ]);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(state: Phase) -> Row {
        Row {
            data_dir: "/srv/app/dolt".into(),
            state,
            supervisor_pid: Some(10),
            server_pid: Some(11),
            host: Some("127.0.0.1".into()),
            port: Some(13306),
            url: Some("mysql://root@127.0.0.1:13306/".into()),
            uptime_ms: Some(252_000),
            idle_ms: Some(60_000),
            clients: Some(0),
            last_client_at: None,
            rss_bytes: Some(118 * 1024 * 1024),
            auto_started: true,
        }
    }

    #[test]
    fn the_table_has_a_header_and_aligned_columns() {
        let mut orphan = sample(Phase::Orphaned);
        orphan.data_dir = "/tmp/x".into();
        (orphan.supervisor_pid, orphan.idle_ms, orphan.clients) = (None, None, None);
        let t = table(&[sample(Phase::Running), orphan]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(
            lines[0].starts_with("DATA DIR") && lines[0].ends_with("URL"),
            "{t}"
        );
        assert!(
            lines[1].contains("running") && lines[1].contains("4m12s"),
            "{t}"
        );
        assert!(
            lines[1].contains("118 MiB") && lines[1].contains("1m0s"),
            "{t}"
        );
        assert!(
            lines[2].contains("orphaned") && lines[2].contains(" - "),
            "{t}"
        );
        // Columns line up: every row's STATE starts where the header's does.
        let col = lines[0].find("STATE").unwrap();
        assert!(lines[1][col..].starts_with("running"), "{t}");
        assert!(lines[2][col..].starts_with("orphaned"), "{t}");
    }

    #[test]
    fn no_instances_says_so() {
        assert!(table(&[]).contains("no doltctl instances"));
    }

    #[test]
    fn json_keys_are_stable() {
        let v = serde_json::to_value(sample(Phase::Running)).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "data_dir",
                "state",
                "supervisor_pid",
                "server_pid",
                "host",
                "port",
                "url",
                "uptime_ms",
                "idle_ms",
                "clients",
                "last_client_at",
                "rss_bytes",
                "auto_started"
            ]
        );
        assert_eq!(v["state"], "running");
    }
}

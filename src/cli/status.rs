//! `doltctl status`: the state file as a person or a script reads it; with `--live`, also a
//! real `SELECT 1` against the recorded server, for readiness probes and `HEALTHCHECK`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::ConnectionInfo;
use crate::config::{Config, Instance};
use crate::error::{Error, Result};
use crate::lifecycle::control::{self, Status};
use crate::lifecycle::state_file::Phase;

use super::{EXIT_NOT_READY, EXIT_NOT_RUNNING, EXIT_ORPHANED};

/// How long `status --live` waits for `SELECT 1` unless told otherwise.
pub const DEFAULT_LIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// `doltctl status [--json] [--live [--timeout D]]`: exit 0 ready, 3 not running, 4 not
/// ready, 5 orphaned. With `live` (the probe's timeout), the exit code is the probe's: 0 when
/// the recorded server answered `SELECT 1` within it, else the plain status's code, or 4
/// (not ready) where that would have been 0: running as recorded, but not answering (stopped
/// with SIGSTOP, wedged, overloaded). Nothing is ever started.
///
/// An unreadable state file is an error, unless a server of ours runs without a supervisor:
/// then that is the status (the file's error goes to stderr), never an error that hides it.
pub fn status(cfg: &Config, json: bool, live: Option<Duration>) -> Result<ExitCode> {
    let st = match control::status(cfg) {
        Ok(st) => st,
        Err(e @ Error::StateFile { .. }) => {
            let instance = Instance::new(&cfg.data_dir);
            let Some(orphan) = control::unsupervised_servers(&instance, None)
                .into_iter()
                .next()
            else {
                return Err(e);
            };
            errln!("doltctl: warning: {e}");
            Status {
                instance,
                state: None,
                supervisor_alive: false,
                server_alive: false,
                orphan: Some(orphan),
            }
        }
        Err(e) => return Err(e),
    };
    let live = match live {
        Some(timeout) => Some(probe_live(&st, cfg, timeout)?),
        None => None,
    };
    if json {
        let mut v = status_json(&st, cfg);
        if let (Some(l), Some(obj)) = (&live, v.as_object_mut()) {
            obj.insert("live".into(), l.json());
        }
        outln!("{v:#}");
    } else {
        out!("{}", status_text(&st, cfg.restart.max_backoff));
        if let Some(l) = &live {
            outln!("  live:       {}", l.text());
        }
    }
    let code = match &live {
        None => exit_code(&st),
        Some(l) => live_exit_code(exit_code(&st), l),
    };
    Ok(ExitCode::from(code))
}

/// What `status --live` found.
#[derive(Debug, Clone, PartialEq)]
struct Live {
    ok: bool,
    latency_ms: Option<u64>,
    error: Option<String>,
}

impl Live {
    fn failed(error: String) -> Live {
        Live {
            ok: false,
            latency_ms: None,
            error: Some(error),
        }
    }

    fn json(&self) -> Value {
        json!({"ok": self.ok, "latency_ms": self.latency_ms, "error": self.error})
    }

    fn text(&self) -> String {
        match (&self.error, self.latency_ms) {
            (None, Some(ms)) => format!("SELECT 1 answered in {ms} ms"),
            (Some(e), _) => format!("SELECT 1 failed: {e}"),
            (None, None) => "SELECT 1 answered".into(),
        }
    }
}

/// 0 when the server answered; otherwise the plain status's code, with "ready" turned into
/// "not ready".
fn live_exit_code(plain: u8, live: &Live) -> u8 {
    match (live.ok, plain) {
        (true, _) => 0,
        (false, 0) => EXIT_NOT_READY,
        (false, code) => code,
    }
}

/// One `SELECT 1` on a fresh connection to the recorded server, within `timeout`. Only a
/// server that is alive as recorded is asked: a recorded port of a dead server may serve
/// someone else by now.
fn probe_live(st: &Status, cfg: &Config, timeout: Duration) -> Result<Live> {
    let Some(s) = st.state.as_ref().filter(|s| s.port != 0) else {
        return Ok(Live::failed("no server port is recorded".into()));
    };
    let alive = st.server_alive || st.orphan.as_ref().is_some_and(|o| Some(o) == s.server());
    if !alive {
        return Ok(Live::failed("no server of this data dir is running".into()));
    }
    let mut probe_cfg = cfg.clone();
    probe_cfg.server.host = s.host.clone();
    let opts = crate::server::health::probe_opts(&probe_cfg, s.port);
    let started = Instant::now();
    let answer = super::runtime(false)?.block_on(crate::server::health::select1(&opts, timeout));
    Ok(match answer {
        Ok(()) => Live {
            ok: true,
            latency_ms: Some(started.elapsed().as_millis() as u64),
            error: None,
        },
        Err(e) => Live::failed(format!("{e} ({}:{})", s.host, s.port)),
    })
}

/// The exit code for a status: 0 ready; 4 while a supervisor runs but its server is not ready;
/// 5 when a server of ours runs without a supervisor; 3 when nothing runs.
fn exit_code(st: &Status) -> u8 {
    if st.is_ready() {
        0
    } else if st.supervisor_alive {
        EXIT_NOT_READY
    } else if st.orphan.is_some() {
        EXIT_ORPHANED
    } else {
        EXIT_NOT_RUNNING
    }
}

/// The same keys in every state, `null` where a value is unknown: a port, URL or DSN only when
/// a port was recorded (never port 0).
fn status_json(st: &Status, cfg: &Config) -> Value {
    let s = st.state.as_ref();
    let port = s.map(|s| s.port).filter(|p| *p != 0);
    // The connection as a Go DSN (the password is never shown here).
    let dsn = s.zip(port).map(|(s, port)| {
        ConnectionInfo {
            host: s.host.clone(),
            port,
            user: cfg.client.user.clone(),
            password: String::new(),
            socket: s.socket.clone(),
            database: None,
            read_only: s.read_only,
        }
        .dsn()
    });
    json!({
        "state": st.phase(),
        "ready": st.is_ready(),
        "data_dir": st.instance.data_dir(),
        "host": s.map(|s| &s.host),
        "port": port,
        "url": port.and(s.and_then(|s| s.url.as_ref())),
        "dsn": dsn,
        "socket": s.and_then(|s| s.socket.as_ref()),
        "user": cfg.client.user,
        "read_only": s.map_or(cfg.server.read_only, |s| s.read_only),
        "supervisor": s.and_then(|s| s.supervisor.as_ref()),
        "supervisor_alive": st.supervisor_alive,
        "server": s.and_then(|s| s.server()),
        "server_alive": st.server_alive,
        "orphan_pid": st.orphan.as_ref().map(|p| p.pid),
        "started_at": s.and_then(|s| s.started_at()),
        "restarts": s.map(|s| s.restarts),
        "cluster": s.and_then(|s| s.cluster.as_ref()),
        "last_error": s.and_then(|s| s.last_error.as_ref()),
        "log_tail": s.map_or(&[][..], |s| &s.log_tail[..]),
        "dolt_version": s.and_then(|s| s.dolt_version.as_ref()),
        "updated_at": s.map(|s| &s.updated_at),
        "exclusive": control::exclusive::live(&st.instance),
    })
}

fn status_text(st: &Status, retry_every: std::time::Duration) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let phase = st.phase();
    let dir = st.instance.data_dir().display();
    let mut line = |l: String| {
        let _ = writeln!(out, "{l}");
    };
    let paused = control::exclusive::live(&st.instance).map(|run| {
        format!(
            "  paused:     for an exclusive command (pid {}: {}) since {}; it starts again when that ends",
            run.process.pid, run.command, run.started_at
        )
    });
    if st.state.is_none() && st.orphan.is_none() {
        line(format!("stopped: no doltctl server has run for {dir}"));
        if let Some(p) = paused {
            line(p);
        }
        return out;
    }
    line(format!("{phase}: {dir}"));
    if let Some(p) = paused {
        line(p);
    }
    if let Some(o) = &st.orphan {
        line(format!(
            "  server pid: {} runs without a supervisor: nothing restarts or health-checks it",
            o.pid
        ));
        line(format!("  command:    {}", o.command()));
        line("  fix:        `doltctl stop` stops it; `doltctl start` replaces it with a supervised server".into());
    }
    let Some(s) = &st.state else {
        return out;
    };
    if st.is_ready() {
        line(format!("  url:        {}", s.url.as_deref().unwrap_or("")));
        if let Some(srv) = s.server() {
            line(format!("  server pid: {}", srv.pid));
        }
        if let Some(t) = s.started_at() {
            line(format!("  ready since {t}"));
        }
    } else if let Some(url) = s.url.as_deref().filter(|_| phase == Phase::Orphaned) {
        line(format!("  url:        {url} (as last recorded)"));
    }
    if let Some(sup) = s.supervisor.as_ref().filter(|_| st.supervisor_alive) {
        line(format!("  supervisor: pid {}", sup.pid));
        if matches!(phase, Phase::Failed | Phase::Backoff) {
            line(format!(
                "  retrying:   by itself, every {} at most; `doltctl restart` retries now, \
                 `doltctl stop` gives up",
                humantime::format_duration(retry_every)
            ));
        }
    }
    if let Some(v) = &s.dolt_version {
        line(format!("  dolt:       {v}"));
    }
    line(format!("  read only:  {}", s.read_only));
    line(format!("  restarts:   {}", s.restarts));
    if let Some(c) = &s.cluster {
        line(format!(
            "  cluster:    node {} is {} at epoch {} (leader: {}{})",
            c.node,
            c.role,
            c.epoch,
            c.leader.as_deref().unwrap_or("none"),
            if c.etcd_reachable {
                ""
            } else {
                "; etcd unreachable"
            }
        ));
    }
    if let Some(e) = &s.last_error {
        line(format!("  last error: {e}"));
        for l in &s.log_tail {
            line(format!("    {l}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Instance;
    use crate::lifecycle::state_file::{PhaseRecord, State};
    use crate::sys::process::ProcessIdentity;

    fn ident(pid: i32) -> ProcessIdentity {
        ProcessIdentity {
            pid,
            start_time: 1,
            cmdline: vec![
                "dolt".into(),
                "sql-server".into(),
                "--config".into(),
                "/nonexistent/doltctl-status/data/.doltctl/dolt-config.yaml".into(),
            ],
        }
    }

    fn state(phase: PhaseRecord, port: u16) -> State {
        State {
            phase,
            supervisor: Some(ident(10)),
            host: "127.0.0.1".into(),
            port,
            socket: None,
            url: (port != 0).then(|| format!("mysql://root@127.0.0.1:{port}/")),
            data_dir: "/nonexistent/doltctl-status/data".into(),
            read_only: false,
            restarts: 2,
            last_error: None,
            log_tail: vec![],
            dolt_version: Some("2.2.0".into()),
            updated_at: "2026-11-28T21:00:01.000Z".into(),
            clients: None,
            last_client_at: None,
            auto_started: false,
            cluster: None,
        }
    }

    fn status(state: Option<State>, supervisor: bool, server: bool, orphan: Option<i32>) -> Status {
        Status {
            instance: Instance::new(std::path::Path::new("/nonexistent/doltctl-status/data")),
            state,
            supervisor_alive: supervisor,
            server_alive: server,
            orphan: orphan.map(ident),
        }
    }

    fn running() -> PhaseRecord {
        PhaseRecord::Running {
            server: ident(11),
            started_at: "2026-11-28T21:00:00.000Z".into(),
        }
    }

    /// Every state a script can meet: the same keys, no port 0 anywhere, the orphan's pid,
    /// and the exit code of the README's table.
    #[test]
    fn json_has_the_same_keys_in_every_state_and_never_port_zero() {
        let cfg = Config::default();
        let cases = [
            (
                "no state file",
                status(None, false, false, None),
                "stopped",
                3,
            ),
            (
                "orphan without a state file",
                status(None, false, false, Some(12)),
                "orphaned",
                5,
            ),
            (
                "running",
                status(Some(state(running(), 3306)), true, true, None),
                "running",
                0,
            ),
            (
                "starting before the first launch",
                status(
                    Some(state(PhaseRecord::Starting { server: None }, 0)),
                    true,
                    false,
                    None,
                ),
                "starting",
                4,
            ),
            (
                "supervisor killed, server alive",
                status(Some(state(running(), 3306)), false, true, Some(11)),
                "orphaned",
                5,
            ),
            (
                "supervisor and server gone",
                status(Some(state(running(), 3306)), false, false, None),
                "stopped",
                3,
            ),
            (
                "failed before any launch",
                status(Some(state(PhaseRecord::Failed, 0)), false, false, None),
                "failed",
                3,
            ),
        ];
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        let reference = keys(&status_json(&cases[0].1, &cfg));
        for (what, st, phase, code) in cases {
            let v = status_json(&st, &cfg);
            assert_eq!(keys(&v), reference, "{what}");
            assert_eq!(v["state"], phase, "{what}");
            assert_eq!(exit_code(&st), code, "{what}");
            assert_ne!(v["port"], 0, "{what}");
            let text = v.to_string();
            assert!(
                !text.contains(":0/") && !text.contains(":0)"),
                "{what}: {text}"
            );
            assert_eq!(
                v["orphan_pid"],
                st.orphan.as_ref().map_or(Value::Null, |o| o.pid.into()),
                "{what}"
            );
            if st.state.as_ref().is_none_or(|s| s.port == 0) {
                for k in ["port", "url", "dsn"] {
                    assert!(v[k].is_null(), "{what}: {k} = {}", v[k]);
                }
            }
        }
    }

    #[test]
    fn live_exit_code_is_0_only_for_an_answer() {
        let ok = Live {
            ok: true,
            latency_ms: Some(1),
            error: None,
        };
        let no = Live::failed("no answer within 2s".into());
        assert_eq!(live_exit_code(0, &ok), 0);
        assert_eq!(live_exit_code(4, &ok), 0);
        assert_eq!(live_exit_code(0, &no), EXIT_NOT_READY);
        assert_eq!(live_exit_code(3, &no), EXIT_NOT_RUNNING);
        assert_eq!(live_exit_code(5, &no), EXIT_ORPHANED);
        assert_eq!(no.json()["ok"], false);
        assert_eq!(ok.json()["latency_ms"], 1);
    }

    #[test]
    fn text_names_the_orphan_and_what_to_do() {
        let st = status(Some(state(running(), 3306)), false, true, Some(11));
        let text = status_text(&st, std::time::Duration::from_secs(30));
        assert!(text.starts_with("orphaned: "), "{text}");
        assert!(
            text.contains("server pid: 11 runs without a supervisor"),
            "{text}"
        );
        assert!(text.contains("doltctl stop"), "{text}");
        let text = status_text(
            &status(None, false, false, Some(12)),
            std::time::Duration::from_secs(30),
        );
        assert!(text.starts_with("orphaned: "), "{text}");
        assert!(text.contains("server pid: 12"), "{text}");
        let text = status_text(
            &status(None, false, false, None),
            std::time::Duration::from_secs(30),
        );
        assert!(text.starts_with("stopped: no doltctl server"), "{text}");
    }
}

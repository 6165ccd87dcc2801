//! The supervisor's optional Prometheus endpoint (`[metrics] listen`): `GET /metrics` and
//! nothing else.
//!
//! The supervisor publishes a [`Snapshot`] at its one publishing point (`Supervisor::publish`,
//! plus the client count of each health check) into a `watch` channel; [`serve`] answers each
//! scrape from the latest snapshot, so a scrape never waits on the supervisor loop.
//!
//! The HTTP side is a hand-written HTTP/1.1 responder (request line, headers skipped, one
//! response, `Connection: close`), not a server crate: one fixed path and two methods need
//! none of routing, keep-alive, bodies or TLS, and a small bounded reader is easier to make
//! safe against slow or hostile clients than a framework is to configure for it (bounded head,
//! a deadline per connection, a cap on concurrent connections).

pub(crate) mod render;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::error::{Error, Result};
use crate::lifecycle::machine::{Event, ServerPhase};
use crate::lifecycle::state_file::{Phase, State};

/// Why the last server ended: a small fixed set, so it can be a label (never free text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitReason {
    /// dolt exited on its own (crash, kill -9, exit before it was ready).
    Crashed,
    /// Killed: not ready within `ready_timeout`.
    NotReady,
    /// Killed: `max_missed` health probes missed.
    Wedged,
    /// Stopped: its data dir was removed or replaced, or it is restarted after a full disk.
    Lost,
    /// No process could be launched.
    LaunchFailed,
    /// Stopped by `doltctl restart` (SIGUSR1).
    Restart,
    /// Stopped by `doltctl stop` (SIGTERM/SIGINT).
    Stop,
    /// Stopped after `idle_timeout` without clients.
    Idle,
}

impl ExitReason {
    /// Every reason, in the order they are rendered.
    pub(crate) const ALL: [ExitReason; 8] = [
        ExitReason::Crashed,
        ExitReason::NotReady,
        ExitReason::Wedged,
        ExitReason::Lost,
        ExitReason::LaunchFailed,
        ExitReason::Restart,
        ExitReason::Stop,
        ExitReason::Idle,
    ];

    /// The label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            ExitReason::Crashed => "crashed",
            ExitReason::NotReady => "not_ready",
            ExitReason::Wedged => "wedged",
            ExitReason::Lost => "lost",
            ExitReason::LaunchFailed => "launch_failed",
            ExitReason::Restart => "restart",
            ExitReason::Stop => "stop",
            ExitReason::Idle => "idle",
        }
    }
}

/// What a scrape shows.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub phase: Phase,
    pub restarts: u32,
    /// Launch to ready, of the last start that became ready.
    pub last_start: Option<Duration>,
    pub last_exit: Option<ExitReason>,
    /// Since when the current server has been ready (only while running).
    pub ready_since: Option<Instant>,
    pub supervisor_started: Instant,
    /// Client connections at the last health check (only while running).
    pub clients: Option<u64>,
    pub data_dir: String,
    pub dolt_version: Option<String>,
}

/// The supervisor's side: what the state file does not hold (start duration, exit reason,
/// clients), and the channel the endpoint reads.
pub(crate) struct Vitals {
    tx: watch::Sender<Snapshot>,
}

impl Vitals {
    /// For a supervisor of `data_dir` starting now.
    pub(crate) fn new(data_dir: &std::path::Path) -> Vitals {
        let snapshot = Snapshot {
            phase: Phase::Starting,
            restarts: 0,
            last_start: None,
            last_exit: None,
            ready_since: None,
            supervisor_started: Instant::now(),
            clients: None,
            data_dir: data_dir.display().to_string(),
            dolt_version: None,
        };
        Vitals {
            tx: watch::channel(snapshot).0,
        }
    }

    /// The snapshots, for [`serve`].
    pub(crate) fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.tx.subscribe()
    }

    /// Notes what `event`, about to be applied in `phase`, says about the server: a start
    /// that became ready, or why a server ends.
    pub(crate) fn observe(&self, phase: &ServerPhase, event: &Event, now: Instant) {
        let has_server = matches!(
            phase,
            ServerPhase::Starting(Some(_)) | ServerPhase::Running { .. }
        );
        let reason = match event {
            Event::Ready { .. } => {
                if let ServerPhase::Starting(Some(launch)) = phase {
                    let took = now.saturating_duration_since(launch.launched_at);
                    self.tx.send_modify(|s| {
                        s.last_start = Some(took);
                        s.ready_since = Some(now);
                    });
                }
                return;
            }
            Event::Exited(_) => ExitReason::Crashed,
            Event::Replaced(_) => ExitReason::Restart,
            Event::NotReady(_) => ExitReason::NotReady,
            Event::Wedged(_) => ExitReason::Wedged,
            Event::Lost(_) => ExitReason::Lost,
            Event::LaunchFailed { .. } => ExitReason::LaunchFailed,
            Event::IdleTimeout => ExitReason::Idle,
            Event::Restart if has_server => ExitReason::Restart,
            Event::Stop if has_server => ExitReason::Stop,
            _ => return,
        };
        self.tx.send_modify(|s| s.last_exit = Some(reason));
    }

    /// The client count of the latest health check.
    pub(crate) fn set_clients(&self, n: u64) {
        self.tx.send_modify(|s| s.clients = Some(n));
    }

    /// Takes the published state (phase, restarts, dolt version).
    pub(crate) fn publish(&self, state: &State) {
        let phase = state.phase.kind();
        self.tx.send_modify(|s| {
            s.phase = phase;
            s.restarts = state.restarts;
            s.dolt_version.clone_from(&state.dolt_version);
            if phase != Phase::Running {
                s.ready_since = None;
                s.clients = None;
            }
        });
    }
}

/// Binds `[metrics] listen`. Failing is fatal to the supervisor, at its start: a scraper that
/// finds nothing would otherwise only say "down", far from the cause. A non-loopback address
/// is allowed (it is configured explicitly) with a warning.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::MetricsListen { addr, source })?;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "[metrics] listen = \"{addr}\" is not a loopback address: the metrics (data dir, \
             phase, client count) can be read from other hosts"
        );
    }
    Ok(listener)
}

/// Largest request head read; a longer one gets 431 and the connection is closed.
const MAX_HEAD: usize = 8 * 1024;
/// How long one connection may take, from accept to the last byte written.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// Connections handled at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 16;

/// Answers scrapes until the supervisor exits (the task is dropped with its runtime).
pub(crate) async fn serve(listener: TcpListener, snapshots: watch::Receiver<Snapshot>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and the like: back off briefly instead of spinning.
                tracing::debug!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let snapshots = snapshots.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(CONNECTION_DEADLINE, answer(stream, &snapshots))
                .await
                .is_err()
            {
                tracing::debug!("metrics: {peer} took longer than {CONNECTION_DEADLINE:?}");
            }
            drop(slot);
        });
    }
}

/// Reads one request head and writes one response.
async fn answer(mut stream: TcpStream, snapshots: &watch::Receiver<Snapshot>) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head_end(&head).is_some() {
            break true;
        }
        if head.len() > MAX_HEAD {
            break false;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    };
    let response = if complete {
        let body = || render::render(&snapshots.borrow(), Instant::now());
        respond(&head, body)
    } else {
        Response::plain(
            431,
            "Request Header Fields Too Large",
            "request head too large\n",
        )
    };
    let _ = stream.write_all(&response.to_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Where the head ends (after the blank line), if it has.
fn head_end(data: &[u8]) -> Option<usize> {
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| data.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

/// One HTTP response.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    reason: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// HEAD: the headers of the GET response, no body.
    head_only: bool,
}

impl Response {
    fn plain(status: u16, reason: &'static str, body: &str) -> Response {
        Response {
            status,
            reason,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
            body: body.into(),
            head_only: false,
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason);
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        let mut bytes = out.into_bytes();
        if !self.head_only {
            bytes.extend_from_slice(self.body.as_bytes());
        }
        bytes
    }
}

/// The response to a complete request head; `body` renders the metrics.
fn respond(head: &[u8], body: impl FnOnce() -> String) -> Response {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::plain(400, "Bad Request", "bad request line\n");
    };
    if !version.starts_with("HTTP/1.") {
        return Response::plain(400, "Bad Request", "HTTP/1.x only\n");
    }
    // A query string (`?name[]=...` from some scrapers) selects nothing here.
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return Response::plain(404, "Not Found", "only /metrics is served here\n");
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut r = Response::plain(405, "Method Not Allowed", "use GET\n");
            r.headers.push(("Allow", "GET, HEAD".into()));
            return r;
        }
    };
    Response {
        status: 200,
        reason: "OK",
        headers: vec![("Content-Type", render::CONTENT_TYPE.into())],
        body: body(),
        head_only,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(head: &str) -> u16 {
        respond(head.as_bytes(), || "m 1\n".into()).status
    }

    #[test]
    fn only_get_and_head_of_metrics_are_answered() {
        assert_eq!(status_of("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), 200);
        assert_eq!(status_of("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), 200);
        assert_eq!(status_of("GET / HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status_of("GET /metrics/ HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status_of("POST /metrics HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status_of("GET /metrics\r\n\r\n"), 400);
        assert_eq!(status_of("GET /metrics SPDY/3\r\n\r\n"), 400);
        assert_eq!(status_of("\r\n\r\n"), 400);
        let r = respond(b"DELETE /metrics HTTP/1.1\r\n\r\n", String::new);
        assert!(r.headers.contains(&("Allow", "GET, HEAD".into())));
    }

    #[test]
    fn a_response_has_its_length_type_and_closes() {
        let r = respond(b"GET /metrics HTTP/1.1\r\n\r\n", || "m 1\n".into());
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(text.contains("Content-Length: 4\r\nConnection: close\r\n\r\nm 1\n"));
        let head = respond(b"HEAD /metrics HTTP/1.1\r\n\r\n", || "m 1\n".into());
        let text = String::from_utf8(head.to_bytes()).unwrap();
        assert!(
            text.ends_with("Content-Length: 4\r\nConnection: close\r\n\r\n"),
            "{text}"
        );
    }

    #[test]
    fn vitals_track_start_duration_exit_reason_and_clients() {
        use crate::lifecycle::machine::Launch;
        let v = Vitals::new(std::path::Path::new("/d"));
        let rx = v.subscribe();
        let t0 = Instant::now();
        let launch = Launch {
            identity: crate::sys::process::ProcessIdentity::current().unwrap(),
            launched_at: t0,
        };
        let ready_at = t0 + Duration::from_millis(1500);
        let at = std::time::SystemTime::now();
        v.observe(
            &ServerPhase::Starting(Some(launch.clone())),
            &Event::Ready { at },
            ready_at,
        );
        assert_eq!(rx.borrow().last_start, Some(Duration::from_millis(1500)));
        assert_eq!(rx.borrow().ready_since, Some(ready_at));
        v.set_clients(2);
        let running = ServerPhase::Running {
            launch,
            ready_at: at,
        };
        v.observe(&running, &Event::Exited("killed".into()), ready_at);
        assert_eq!(rx.borrow().last_exit, Some(ExitReason::Crashed));
        // A stop in backoff ends no server: the reason stays.
        let backoff = ServerPhase::Backoff {
            wait: Duration::ZERO,
        };
        v.observe(&backoff, &Event::Stop, ready_at);
        assert_eq!(rx.borrow().last_exit, Some(ExitReason::Crashed));
        v.observe(&running, &Event::Stop, ready_at);
        assert_eq!(rx.borrow().last_exit, Some(ExitReason::Stop));
        assert_eq!(rx.borrow().clients, Some(2));
    }

    #[test]
    fn the_head_ends_at_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }
}

//! The supervisor's control socket: a Linux abstract unix socket named after the data dir.
//!
//! It needs no file. Binding the name is exclusive for as long as the supervisor lives and the
//! kernel frees it when the process dies, so neither deleting `.doltctl/` (which takes the lock
//! files with it) nor a full disk can let a second supervisor in. And it answers `status` from
//! the supervisor's memory when the state file cannot be written or was deleted.
//!
//! Protocol: connect, read one JSON [`State`] and a newline. A client that sends `watch\n`
//! then gets one more line for every later state, until it hangs up or the supervisor ends:
//! clients waiting for a start are woken by the change instead of polling (on two cores, 16
//! pollers slow the start they wait for). Any other client is done after the first line.

use std::io::BufRead;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener as StdListener, UnixStream};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::config::Instance;
use crate::error::{Error, Result};
use crate::lifecycle::state_file::State;

/// The abstract name for a data dir: its path's hash (the data dir is absolute and canonical).
fn name(instance: &Instance) -> String {
    format!("doltctl/supervisor/{:016x}", instance.hash())
}

fn address(instance: &Instance) -> Result<SocketAddr> {
    SocketAddr::from_abstract_name(name(instance).as_bytes())
        .map_err(|e| Error::io(format!("control socket @{}", name(instance)), e))
}

/// The bound control socket of the one supervisor of a data dir.
pub(crate) struct ControlSocket {
    listener: UnixListener,
}

impl ControlSocket {
    /// Binds the data dir's name; `AlreadyRunning` when another live process holds it.
    pub(crate) fn bind(instance: &Instance) -> Result<ControlSocket> {
        let addr = address(instance)?;
        let std = match StdListener::bind_addr(&addr) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(Error::AlreadyRunning {
                    data_dir: instance.data_dir().to_path_buf(),
                    pid: query(instance, Duration::from_millis(500))
                        .and_then(|s| s.supervisor)
                        .map(|p| p.pid),
                })
            }
            Err(e) => return Err(Error::io(format!("control socket @{}", name(instance)), e)),
        };
        let bound = std
            .set_nonblocking(true)
            .and_then(|()| UnixListener::from_std(std));
        let listener =
            bound.map_err(|e| Error::io(format!("control socket @{}", name(instance)), e))?;
        Ok(ControlSocket { listener })
    }

    /// Answers every connection with the latest state (and watchers with every later one),
    /// until the task is dropped.
    pub(crate) async fn serve(self, state: watch::Receiver<Option<State>>) {
        loop {
            let Ok((stream, _)) = self.listener.accept().await else {
                continue;
            };
            tokio::spawn(answer(stream, state.clone()));
        }
    }
}

/// Writes `state` as one line; a client that does not read within a second is given up.
async fn send(stream: &mut tokio::net::UnixStream, state: &State) -> bool {
    let Ok(mut json) = serde_json::to_vec(state) else {
        return false;
    };
    json.push(b'\n');
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.write_all(&json)).await,
        Ok(Ok(()))
    )
}

async fn answer(mut stream: tokio::net::UnixStream, mut state: watch::Receiver<Option<State>>) {
    let snapshot = state.borrow_and_update().clone();
    let Some(snapshot) = snapshot else {
        return;
    };
    if !send(&mut stream, &snapshot).await {
        return;
    }
    // A watcher says so right away; a plain query hangs up after its line (EOF here), and
    // an older client that reads to the end is released after a short wait.
    let mut request = [0u8; WATCH.len()];
    let asked =
        tokio::time::timeout(Duration::from_millis(100), stream.read_exact(&mut request)).await;
    if !matches!(asked, Ok(Ok(_))) || request != *WATCH {
        return;
    }
    let mut probe = [0u8; 1];
    loop {
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                let next = state.borrow_and_update().clone();
                if let Some(next) = next {
                    if !send(&mut stream, &next).await {
                        return;
                    }
                }
            }
            // The watcher hung up (or sent something it should not): nothing is held for it.
            _ = stream.read(&mut probe) => return,
        }
    }
}

const WATCH: &[u8; 6] = b"watch\n";

/// A subscription to a supervisor's state changes (see the module docs).
pub(crate) struct Watcher {
    lines: tokio::io::Lines<BufReader<tokio::net::UnixStream>>,
}

impl Watcher {
    /// Connects to the data dir's supervisor; `None` when none listens.
    pub(crate) async fn connect(instance: &Instance) -> Option<Watcher> {
        let addr = address(instance).ok()?;
        let std = UnixStream::connect_addr(&addr).ok()?;
        std.set_nonblocking(true).ok()?;
        let mut stream = tokio::net::UnixStream::from_std(std).ok()?;
        stream.write_all(WATCH).await.ok()?;
        Some(Watcher {
            lines: BufReader::new(stream).lines(),
        })
    }

    /// The next state the supervisor publishes (the first call: its current one); `None` once
    /// it has gone away.
    pub(crate) async fn next(&mut self) -> Option<State> {
        let line = self.lines.next_line().await.ok()??;
        serde_json::from_str(&line).ok()
    }
}

/// Asks the data dir's supervisor for its state. `None` when no supervisor listens (or it did
/// not answer within `timeout`). A pure read: connecting changes nothing.
pub(crate) fn query(instance: &Instance, timeout: Duration) -> Option<State> {
    let addr = address(instance).ok()?;
    let stream = UnixStream::connect_addr(&addr).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::state_file::PhaseRecord;

    fn sample(dir: &std::path::Path) -> State {
        State {
            phase: PhaseRecord::Backoff,
            supervisor: crate::sys::process::ProcessIdentity::current(),
            host: "127.0.0.1".into(),
            port: 1,
            socket: None,
            url: None,
            data_dir: dir.to_path_buf(),
            read_only: false,
            restarts: 2,
            last_error: Some("disk full".into()),
            log_tail: vec![],
            dolt_version: None,
            updated_at: "t".into(),
            clients: None,
            last_client_at: None,
            auto_started: false,
            cluster: None,
        }
    }

    // Two workers: `bind` asks the first binder (blocking) while its task must answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_binder_per_data_dir_and_it_answers_with_its_state() {
        let dir = tempfile::tempdir().unwrap();
        let instance = Instance::new(dir.path());
        assert!(query(&instance, Duration::from_millis(200)).is_none());
        let sock = ControlSocket::bind(&instance).unwrap();
        let (tx, rx) = watch::channel(Some(sample(dir.path())));
        let server = tokio::spawn(sock.serve(rx));
        let second = ControlSocket::bind(&instance);
        assert!(
            matches!(second, Err(Error::AlreadyRunning { pid: Some(p), .. }) if p == std::process::id() as i32),
            "a second supervisor is refused, naming the first"
        );
        tx.send_replace(Some(State {
            restarts: 3,
            ..sample(dir.path())
        }));
        let inst = instance.clone();
        let got = tokio::task::spawn_blocking(move || query(&inst, Duration::from_secs(5)))
            .await
            .unwrap()
            .expect("the supervisor answers");
        assert_eq!(got.restarts, 3);
        assert_eq!(got.last_error.as_deref(), Some("disk full"));
        // The name is free again once the supervisor is gone.
        server.abort();
        let _ = server.await;
        ControlSocket::bind(&instance).expect("rebinding after the first is gone");
    }

    #[tokio::test]
    async fn a_watcher_gets_every_new_state_and_holds_nothing_after_it_hangs_up() {
        let dir = tempfile::tempdir().unwrap();
        let instance = Instance::new(dir.path());
        assert!(
            Watcher::connect(&instance).await.is_none(),
            "no supervisor yet"
        );
        let sock = ControlSocket::bind(&instance).unwrap();
        let (tx, rx) = watch::channel(Some(sample(dir.path())));
        let server = tokio::spawn(sock.serve(rx));
        let mut w = Watcher::connect(&instance)
            .await
            .expect("the supervisor listens");
        let first = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
        assert_eq!(first.unwrap().expect("current state").restarts, 2);
        for n in 3..6 {
            tx.send_replace(Some(State {
                restarts: n,
                ..sample(dir.path())
            }));
            let got = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
            assert_eq!(got.unwrap().expect("a new state").restarts, n);
        }
        // The answering task ends when the watcher hangs up, not at the next change.
        drop(w);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while tx.receiver_count() > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the watch task is still there"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The supervisor going away ends the watch.
        let mut w = Watcher::connect(&instance).await.unwrap();
        assert!(w.next().await.is_some());
        server.abort();
        let _ = server.await;
        drop(tx);
        let end = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
        assert!(end.unwrap().is_none(), "EOF once the supervisor is gone");
    }

    #[test]
    fn other_data_dirs_have_other_names() {
        let a = Instance::new(std::path::Path::new("/srv/a"));
        let b = Instance::new(std::path::Path::new("/srv/b"));
        assert_ne!(name(&a), name(&b));
    }
}

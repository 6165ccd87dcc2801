//! The supervisor's control socket: a Linux abstract unix socket named after the data dir.
//!
//! It needs no file. Binding the name is exclusive for as long as the supervisor lives and the
//! kernel frees it when the process dies, so neither deleting `.doltctl/` (which takes the lock
//! files with it) nor a full disk can let a second supervisor in. And it answers `status` from
//! the supervisor's memory when the state file cannot be written or was deleted.
//!
//! Protocol: connect, read one JSON [`State`] and a newline; the supervisor then closes.

use std::io::Read;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener as StdListener, UnixStream};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
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

    /// Answers every connection with the latest state, until the task is dropped.
    pub(crate) async fn serve(self, state: watch::Receiver<Option<State>>) {
        loop {
            let Ok((mut stream, _)) = self.listener.accept().await else {
                continue;
            };
            let snapshot = state.borrow().clone();
            let Some(snapshot) = snapshot else {
                continue;
            };
            // One small write per connection; a client that does not read is not waited for.
            tokio::spawn(async move {
                if let Ok(mut json) = serde_json::to_vec(&snapshot) {
                    json.push(b'\n');
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), stream.write_all(&json)).await;
                }
            });
        }
    }
}

/// Asks the data dir's supervisor for its state. `None` when no supervisor listens (or it did
/// not answer within `timeout`). A pure read: connecting changes nothing.
pub(crate) fn query(instance: &Instance, timeout: Duration) -> Option<State> {
    let addr = address(instance).ok()?;
    let mut stream = UnixStream::connect_addr(&addr).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).ok()?;
    serde_json::from_slice(&buf).ok()
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

    #[test]
    fn other_data_dirs_have_other_names() {
        let a = Instance::new(std::path::Path::new("/srv/a"));
        let b = Instance::new(std::path::Path::new("/srv/b"));
        assert_ne!(name(&a), name(&b));
    }
}

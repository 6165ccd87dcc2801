//! The start lock: held while deciding whether to launch a supervisor and launching it, by
//! `stop`, by `init` while it creates databases, by a supervisor during its idle stop, and by
//! `doltctl exclusive` for its command's whole life. It is an flock, so the kernel releases it
//! when its holder dies.

use std::fs::File;
use std::time::{Duration, Instant};

use nix::fcntl::Flock;

use crate::config::Instance;
use crate::error::{Error, Result};
use crate::sys::locks;

/// Holds the start lock (an flock released on drop or death).
pub struct StartLock(#[allow(dead_code)] Flock<File>);

/// Takes the start lock if it is free right now (the supervisor's idle stop: it yields to a
/// start in progress).
pub fn try_lock_start(instance: &Instance) -> Option<StartLock> {
    locks::try_flock(&instance.start_lock())
        .ok()
        .flatten()
        .map(StartLock)
}

/// Takes the instance's start lock, waiting at most `timeout`: a stuck start must never hang
/// every other client forever. Holding it, nobody launches a supervisor for the instance.
///
/// While an exclusive run (`doltctl exclusive`, see [`super::exclusive`]) holds the lock, it
/// waits at most `paused_wait` for it (a client's `retry_window`), then returns
/// [`Error::ServerPaused`] naming the run. Once the run has ended and only restarts the
/// server, the full `timeout` applies again.
pub async fn lock_start(
    instance: &Instance,
    timeout: Duration,
    paused_wait: Duration,
) -> Result<StartLock> {
    let path = instance.start_lock();
    let deadline = Instant::now() + timeout;
    // When a live exclusive run was first seen holding the lock, and when it was last looked
    // for (the record is read every 100 ms, not on every poll).
    let mut paused_since: Option<Instant> = None;
    let mut looked = None::<Instant>;
    loop {
        if let Some(l) = locks::try_flock(&path)? {
            return Ok(StartLock(l));
        }
        let now = Instant::now();
        if looked.is_none_or(|t| now.duration_since(t) >= Duration::from_millis(100))
            || now >= deadline
        {
            looked = Some(now);
            match super::exclusive::live(instance) {
                Some(run) => {
                    let since = *paused_since.get_or_insert(now);
                    if now.duration_since(since) >= paused_wait || now >= deadline {
                        return Err(run.paused_error(instance));
                    }
                }
                None => paused_since = None,
            }
        }
        if now >= deadline {
            return Err(Error::Timeout {
                what: format!("the start lock {} (another start is stuck)", path.display()),
                waited: timeout,
            });
        }
        // Short: the lock is held only while a supervisor is being launched.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

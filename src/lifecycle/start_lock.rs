//! The start lock: held while deciding whether to launch a supervisor and launching it, by
//! `stop`, by `init` while it creates databases, and by a supervisor during its idle stop. It
//! is an flock, so the kernel releases it when its holder dies.

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
pub async fn lock_start(instance: &Instance, timeout: Duration) -> Result<StartLock> {
    let path = instance.start_lock();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(l) = locks::try_flock(&path)? {
            return Ok(StartLock(l));
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("the start lock {} (another start is stuck)", path.display()),
                waited: timeout,
            });
        }
        // Short: the lock is held only while a supervisor is being launched.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

//! What a process costs, from `/proc`: resident memory and age. Read-only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use procfs::process::Process;

/// Resident memory of `pid` in bytes (`/proc/PID/stat` rss times the page size); `None` when
/// it cannot be read.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let stat = Process::new(pid).ok()?.stat().ok()?;
    Some(stat.rss.saturating_mul(procfs::page_size()))
}

/// How long ago a process with this start time (clock ticks after boot, as
/// [`ProcessIdentity::start_time`](crate::sys::process::ProcessIdentity) records it) started.
pub fn age(start_time: u64) -> Option<Duration> {
    let boot = procfs::boot_time_secs().ok()?;
    let ticks = procfs::ticks_per_second().max(1);
    let started = UNIX_EPOCH
        + Duration::from_secs(boot)
        + Duration::from_millis(start_time.saturating_mul(1000) / ticks);
    Some(
        SystemTime::now()
            .duration_since(started)
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_a_plausible_age() {
        let me = crate::sys::process::ProcessIdentity::current().unwrap();
        assert!(rss_bytes(me.pid).unwrap() > 0);
        // Started before this test ran, and not days ago (boot time has one-second steps).
        let age = age(me.start_time).unwrap();
        assert!(age < Duration::from_secs(24 * 3600), "{age:?}");
        assert!(rss_bytes(-1).is_none());
    }
}

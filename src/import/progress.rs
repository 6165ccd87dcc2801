//! Progress on a terminal for long imports (rows/s, percent).

use super::*;

/// Progress on stderr: only when asked (a terminal) and only for imports that take a while.
pub(super) struct Progress {
    enabled: bool,
    total: u64,
    start: Instant,
    last: Option<Instant>,
}

impl Progress {
    pub(super) fn new(enabled: bool, total: u64) -> Progress {
        Progress {
            enabled,
            total,
            start: Instant::now(),
            last: None,
        }
    }

    pub(super) fn tick(&mut self, rows: u64, done: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let elapsed = now - self.start;
        if elapsed < Duration::from_secs(1)
            || self
                .last
                .is_some_and(|l| now - l < Duration::from_millis(500))
        {
            return;
        }
        self.last = Some(now);
        let pct = if self.total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / self.total as f64
        };
        let rate = rows as f64 / elapsed.as_secs_f64();
        eprint!("\r{pct:5.1}%  {rows} rows  {rate:.0} rows/s\x1b[K");
    }

    pub(super) fn clear(&mut self) {
        if self.last.is_some() {
            eprint!("\r\x1b[K");
            self.last = None;
        }
    }
}

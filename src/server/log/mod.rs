//! The server log: dolt's stdout/stderr and the supervisor's own events in one timestamped
//! timeline, rotated by size while the server runs (`server.log`, `server.log.1`, ...).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{IoContext, Result};
use crate::server::disk;
use crate::sys::clock::now_rfc3339;

/// How many recent lines are kept in memory for error reports.
const TAIL_LINES: usize = 40;

/// Who wrote a line of the server log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Dolt's own output (stdout and stderr).
    Dolt,
    /// The supervisor's events.
    Supervisor,
}

impl Source {
    /// The tag the line carries: `dolt` or `doltctl`.
    pub fn tag(self) -> &'static str {
        match self {
            Source::Dolt => "dolt",
            Source::Supervisor => "doltctl",
        }
    }
}

/// How often a log that cannot be written is tried again (opening, writing, rotating), and
/// how often the file is checked to still be the one at its path.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Lines kept while the file refuses them, written late once it takes lines again.
const BACKLOG_LINES: usize = 500;

pub struct ServerLog {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    /// Dolt's lines also go to stderr (a foreground supervisor).
    echo_dolt: bool,
    retry_every: Duration,
    inner: Mutex<Inner>,
}

struct Inner {
    /// The open log; `None` after a failed write or open, until a retry opens it again.
    file: Option<File>,
    /// Its inode, to notice the file being deleted or replaced under us.
    ino: u64,
    size: u64,
    tail: VecDeque<String>,
    /// Error-looking dolt lines since the last launch: dolt prints its reason for exiting
    /// first and then pages of usage, which would push the reason out of the tail.
    errors: Vec<String>,
    /// Lines that did not reach the file since it last worked.
    dropped: u64,
    /// The last of them (at most `BACKLOG_LINES`), written late when the file works again.
    backlog: VecDeque<String>,
    /// Why the last of them did not.
    failure: Option<String>,
    /// A failed write may have left part of a line in the file.
    partial: bool,
    /// Why rotation failed, while it does.
    rotate_failure: Option<String>,
    /// No retry of the file (or of a failed rotation) before this.
    retry_at: Option<Instant>,
    /// The next check that the file is still the one at `path`.
    check_at: Instant,
}

/// Error lines kept per launch.
const ERROR_LINES: usize = 5;

fn looks_like_error(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "error",
        "fatal",
        "panic",
        "locked",
        "already in use",
        "corrupt",
        "malformed",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// One timeline line, with its newline.
fn format_line(source: Source, text: &str) -> String {
    format!("{} [{}] {}\n", now_rfc3339(), source.tag(), text.trim_end())
}

impl ServerLog {
    pub fn open(path: &Path, max_size: u64, keep: u32) -> Result<ServerLog> {
        let file = open_append(path)?;
        let meta = file.metadata().at(path)?;
        Ok(ServerLog {
            path: path.to_path_buf(),
            max_size,
            keep,
            echo_dolt: false,
            retry_every: RETRY_EVERY,
            inner: Mutex::new(Inner {
                file: Some(file),
                ino: meta.ino(),
                size: meta.len(),
                tail: VecDeque::with_capacity(TAIL_LINES),
                errors: Vec::new(),
                dropped: 0,
                backlog: VecDeque::new(),
                failure: None,
                partial: false,
                rotate_failure: None,
                retry_at: None,
                check_at: Instant::now() + RETRY_EVERY,
            }),
        })
    }

    /// Also writes dolt's lines to stderr, as `[dolt] LINE` (the supervisor's events reach
    /// stderr through tracing already). For a foreground supervisor, so a terminal, journald
    /// or a container log sees the server's output; failed writes (a closed terminal) are
    /// ignored.
    pub fn echo_dolt_to_stderr(mut self, on: bool) -> ServerLog {
        self.echo_dolt = on;
        self
    }

    /// Retries a failing file this often instead of every second (tests).
    #[cfg(test)]
    fn retry_every(mut self, every: Duration) -> ServerLog {
        self.retry_every = every;
        if let Ok(inner) = self.inner.get_mut() {
            inner.check_at = Instant::now() + every;
        }
        self
    }

    /// Appends one line. Logging never fails and never stops: a line the file does not take
    /// (a full disk, a deleted directory, an I/O error) is dropped from the file, kept in the
    /// in-memory tail, and counted. The file is tried again at most every second, with the
    /// lines that come; once it takes one, `N log lines dropped (<error>)` is written first.
    /// A log deleted or replaced under us is noticed within a second and written anew.
    /// Rotation errors are retried alike, and until rotation works the file grows past
    /// `max_size` rather than losing lines.
    pub fn line(&self, source: Source, text: &str) {
        if self.echo_dolt && source == Source::Dolt {
            let _ = writeln!(std::io::stderr().lock(), "[dolt] {}", text.trim_end());
        }
        let line = format_line(source, text);
        let mut inner = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if inner.tail.len() == TAIL_LINES {
            inner.tail.pop_front();
        }
        if source == Source::Dolt && inner.errors.len() < ERROR_LINES && looks_like_error(text) {
            inner.errors.push(line.trim_end().to_string());
        }
        inner.tail.push_back(line.trim_end().to_string());
        self.write(&mut inner, Some(&line));
    }

    /// Tries the file now if lines are waiting (the supervisor calls this on every health
    /// tick), so the lines of an outage reach the file soon after it ends, not with the next
    /// event.
    pub fn retry_now(&self) {
        let mut inner = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if inner.dropped > 0 {
            inner.retry_at = None;
            self.write(&mut inner, None);
        }
    }

    /// Keeps a line that the file refused, for later.
    fn keep(inner: &mut Inner, line: Option<&str>) {
        if let Some(l) = line {
            if inner.backlog.len() == BACKLOG_LINES {
                inner.backlog.pop_front();
            }
            inner.backlog.push_back(l.to_string());
        }
    }

    /// Writes `line` (after any lines kept from an outage) to the file, or keeps and counts it.
    fn write(&self, inner: &mut Inner, line: Option<&str>) {
        let now = Instant::now();
        let retry_due = inner.retry_at.is_none_or(|t| now >= t);
        if inner.file.is_some() && now >= inner.check_at {
            inner.check_at = now + self.retry_every;
            if ino_of(&self.path) != Some(inner.ino) {
                // Deleted or replaced: what we write would reach no reader. Write a new one.
                inner.file = None;
                if self.reopen(inner).is_ok() {
                    let note = format_line(
                        Source::Supervisor,
                        &format!(
                            "{} was removed or replaced: this is a new one",
                            self.path.display()
                        ),
                    );
                    // A failure here is handled with the line itself, below.
                    let _ = self.write_file(inner, &note);
                }
            }
        }
        if inner.file.is_none() {
            if !retry_due {
                if line.is_some() {
                    inner.dropped += 1;
                }
                Self::keep(inner, line);
                return;
            }
            if let Err(e) = self.reopen(inner) {
                self.dropped(inner, now, e.to_string(), line);
                return;
            }
        }
        let len = line.map_or(0, str::len) as u64;
        if inner.size + len > self.max_size && inner.size > 0 && retry_due {
            match self.rotate(inner) {
                Ok(()) => {
                    if let Some(e) = inner.rotate_failure.take() {
                        tracing::info!("rotated {} again (after: {e})", self.path.display());
                    }
                }
                Err(e) => {
                    // Tried again with a line after `retry_every`; meanwhile the file grows
                    // past max_size rather than losing lines.
                    if inner.rotate_failure.is_none() {
                        tracing::warn!(
                            "rotating {}: {e}; retrying every {:?}",
                            self.path.display(),
                            self.retry_every
                        );
                    }
                    inner.rotate_failure = Some(e.to_string());
                    inner.retry_at = Some(now + self.retry_every);
                    if inner.file.is_none() {
                        // Renamed, but no new file could be opened.
                        self.dropped(inner, now, e.to_string(), line);
                        return;
                    }
                }
            }
        }
        if inner.dropped > 0 {
            let note = format!(
                "{}{}",
                if inner.partial { "\n" } else { "" },
                format_line(
                    Source::Supervisor,
                    &format!(
                        "{} log lines dropped ({}); the last {} of them follow, written late",
                        inner.dropped,
                        inner.failure.as_deref().unwrap_or("unknown error"),
                        inner.backlog.len()
                    ),
                )
            );
            let late: String = inner.backlog.iter().map(String::as_str).collect();
            if let Err(e) = self.write_file(inner, &(note + &late)) {
                self.dropped(inner, now, e, line);
                return;
            }
            inner.backlog.clear();
            tracing::info!(
                "{} is written again ({} lines dropped)",
                self.path.display(),
                inner.dropped
            );
            inner.dropped = 0;
            inner.failure = None;
        }
        if let Some(l) = line {
            if let Err(e) = self.write_file(inner, l) {
                self.dropped(inner, now, e, line);
            }
        }
    }

    /// Counts a line dropped for `reason`; the first of an outage is reported through
    /// tracing.
    fn dropped(&self, inner: &mut Inner, now: Instant, reason: String, line: Option<&str>) {
        if inner.failure.is_none() {
            tracing::warn!(
                "{reason}; dropping log lines (kept in memory) and retrying every {:?}",
                self.retry_every
            );
        }
        if line.is_some() {
            inner.dropped += 1;
        }
        Self::keep(inner, line);
        inner.failure = Some(reason);
        inner.retry_at = Some(now + self.retry_every);
    }

    /// Writes all of `s`, noting a partial write; on failure the file is closed (and opened
    /// again at the next retry), and the error says whether the disk is full.
    fn write_file(&self, inner: &mut Inner, s: &str) -> std::result::Result<(), String> {
        let Some(f) = inner.file.as_mut() else {
            return Err(format!("{}: not open", self.path.display()));
        };
        let mut rest = s.as_bytes();
        while !rest.is_empty() {
            match f.write(rest) {
                Ok(0) => {
                    inner.file = None;
                    return Err(format!("{}: wrote nothing", self.path.display()));
                }
                Ok(n) => {
                    inner.size += n as u64;
                    rest = &rest[n..];
                    // The file now ends inside `s` until all of it is written.
                    inner.partial = !rest.is_empty();
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    inner.file = None;
                    let reason = format!("{}: {e}", self.path.display());
                    let full = disk::is_enospc(&e)
                        .then(|| self.path.parent().and_then(disk::full_disk))
                        .flatten();
                    return Err(match full {
                        Some(full) => format!("{reason}: {full}"),
                        None => reason,
                    });
                }
            }
        }
        Ok(())
    }

    /// Opens the file at `path` again (creating it if it was deleted).
    fn reopen(&self, inner: &mut Inner) -> Result<()> {
        let file = open_append(&self.path)?;
        let meta = file.metadata().at(&self.path)?;
        if meta.ino() != inner.ino || meta.len() == 0 {
            // Not the file a failed write may have left mid-line.
            inner.partial = false;
        }
        inner.ino = meta.ino();
        inner.size = meta.len();
        inner.file = Some(file);
        inner.check_at = Instant::now() + self.retry_every;
        Ok(())
    }

    pub fn event(&self, text: &str) {
        tracing::info!("{text}");
        self.line(Source::Supervisor, text);
    }

    /// Forgets the error lines of the previous launch.
    pub fn begin_launch(&self) {
        match self.inner.lock() {
            Ok(mut g) => g.errors.clear(),
            Err(p) => p.into_inner().errors.clear(),
        }
    }

    /// What to show when a launch failed: its first error lines, then the last `n` lines.
    pub fn excerpt(&self, n: usize) -> Vec<String> {
        let errors = match self.inner.lock() {
            Ok(g) => g.errors.clone(),
            Err(p) => p.into_inner().errors.clone(),
        };
        let mut out = errors;
        for l in self.tail(n) {
            if !out.contains(&l) {
                out.push(l);
            }
        }
        out
    }

    /// The last lines written, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let inner = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let skip = inner.tail.len().saturating_sub(n);
        inner.tail.iter().skip(skip).cloned().collect()
    }

    /// Renames the files; the current one stays open (and written) until its rename worked.
    fn rotate(&self, inner: &mut Inner) -> Result<()> {
        rotate_files(&self.path, self.keep)?;
        inner.file = None;
        self.reopen(inner)
    }
}

/// Shifts `path.N` to `path.N+1` (dropping the oldest beyond `keep`) and `path` to `path.1`.
pub fn rotate_files(path: &Path, keep: u32) -> Result<()> {
    let _ = std::fs::remove_file(rotated(path, keep));
    for i in (1..keep).rev() {
        let from = rotated(path, i);
        if from.exists() {
            std::fs::rename(&from, rotated(path, i + 1)).at(&from)?;
        }
    }
    std::fs::rename(path, rotated(path, 1)).at(path)
}

pub fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .at(path)
}

mod read;
use read::ino_of;
pub use read::*;

#[cfg(test)]
mod tests;

//! The server log: dolt's stdout/stderr and the supervisor's own events in one timestamped
//! timeline, rotated by size while the server runs (`server.log`, `server.log.1`, ...).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

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

/// The last `n` lines of the log, reading into rotated files when the current one is short.
pub fn read_tail(path: &Path, keep: u32, n: usize) -> Result<Vec<String>> {
    read_tail_filtered(path, keep, n, Filter::All)
}

/// The last `n` lines that pass `filter`.
pub fn read_tail_filtered(path: &Path, keep: u32, n: usize, filter: Filter) -> Result<Vec<String>> {
    read_selected(path, keep, Some(n), &View::from(filter))
}

/// The lines `view` shows, oldest first: with `n`, only the last `n` of them. Reads the
/// current file and then the rotated ones, newest first, and stops at the first line older
/// than `view.since` (the timeline is in time order).
pub fn read_selected(path: &Path, keep: u32, n: Option<usize>, view: &View) -> Result<Vec<String>> {
    let mut lines: VecDeque<String> = VecDeque::new();
    let full = |lines: &VecDeque<String>| n.is_some_and(|n| lines.len() >= n);
    'files: for i in 0..=keep {
        if full(&lines) {
            break;
        }
        let p = if i == 0 {
            path.to_path_buf()
        } else {
            rotated(path, i)
        };
        let text = match std::fs::read(&p) {
            Ok(t) => String::from_utf8_lossy(&t).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(crate::error::Error::io(&p, e)),
        };
        for l in text.lines().rev() {
            if full(&lines) {
                break 'files;
            }
            if view.before_since(l) {
                break 'files;
            }
            if view.filter.matches(l) {
                lines.push_front(l.to_string());
            }
        }
    }
    Ok(lines.into())
}

/// One line of the timeline, taken apart: `TIME [SOURCE] TEXT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The RFC 3339 timestamp the line starts with, if it has one.
    pub time: Option<&'a str>,
    /// Who wrote it, when the line carries a known tag.
    pub source: Option<Source>,
    /// The text after the tag (the whole line when it has no known form).
    pub text: &'a str,
}

impl<'a> Entry<'a> {
    /// Parses a line as [`ServerLog`] writes it; anything else is all text.
    pub fn parse(line: &'a str) -> Entry<'a> {
        let line = line.trim_end_matches(['\n', '\r']);
        let parsed = line.split_once(' ').and_then(|(time, rest)| {
            humantime::parse_rfc3339(time).ok()?;
            [Source::Dolt, Source::Supervisor].iter().find_map(|s| {
                let tag = format!("[{}]", s.tag());
                let text = rest.strip_prefix(tag.as_str())?;
                let text = text.strip_prefix(' ').unwrap_or(text);
                Some(Entry {
                    time: Some(time),
                    source: Some(*s),
                    text,
                })
            })
        });
        parsed.unwrap_or(Entry {
            time: None,
            source: None,
            text: line,
        })
    }

    /// The line's time, if it has one.
    pub fn system_time(&self) -> Option<SystemTime> {
        self.time.and_then(|t| humantime::parse_rfc3339(t).ok())
    }

    /// `{"time": ..., "source": "dolt"|"doltctl", "text": ...}` (`null` for parts the line
    /// lacks).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "time": self.time,
            "source": self.source.map(Source::tag),
            "text": self.text,
        })
    }
}

/// What `logs` shows and how: which sources, from when, as text or JSON lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// Which sources.
    pub filter: Filter,
    /// Only lines written at or after this time.
    pub since: Option<SystemTime>,
    /// One JSON object per line instead of the line as written.
    pub json: bool,
}

impl From<Filter> for View {
    fn from(filter: Filter) -> View {
        View {
            filter,
            since: None,
            json: false,
        }
    }
}

impl View {
    /// True if `line` is shown. A line without a timestamp is shown (its time is unknown).
    pub fn shows(&self, line: &str) -> bool {
        self.filter.matches(line) && !self.before_since(line)
    }

    /// True if `line` has a time before `since`.
    fn before_since(&self, line: &str) -> bool {
        self.since
            .zip(Entry::parse(line).system_time())
            .is_some_and(|(since, t)| t < since)
    }

    /// The line as printed, without its newline.
    pub fn render(&self, line: &str) -> String {
        let line = line.trim_end_matches(['\n', '\r']);
        if self.json {
            Entry::parse(line).json().to_string()
        } else {
            line.to_string()
        }
    }
}

/// A point in time for `logs --since`: a duration before `now` (`10m`, `1h 30m`), an RFC 3339
/// timestamp (`2024-05-01T10:00:00Z`, `2024-05-01T12:00:00+02:00`, also with a space for the
/// `T`), or a date (`2024-05-01`, midnight UTC). A timestamp without an offset is UTC, as the
/// log's own timestamps are.
pub fn parse_since(s: &str, now: SystemTime) -> std::result::Result<SystemTime, String> {
    let s = s.trim();
    if let Ok(d) = crate::config::parse_duration(s) {
        return now
            .checked_sub(d)
            .ok_or_else(|| format!("{s:?} reaches back before 1970"));
    }
    parse_timestamp(s).ok_or_else(|| {
        format!(
            "{s:?} is neither a duration (10m, 2h, 1d) nor an RFC 3339 timestamp \
             (2024-05-01T10:00:00Z, 2024-05-01T12:00:00+02:00) or a date (2024-05-01)"
        )
    })
}

fn parse_timestamp(s: &str) -> Option<SystemTime> {
    if s.len() == 10 {
        return humantime::parse_rfc3339_weak(&format!("{s} 00:00:00")).ok();
    }
    if let Some(base) = s.strip_suffix(['Z', 'z']) {
        return humantime::parse_rfc3339_weak(base).ok();
    }
    // A numeric offset, +HH:MM or -HH:MM, at the end.
    let split = s.len().checked_sub(6)?;
    let (base, offset) = (s.get(..split)?, s.get(split..)?);
    let sign = match offset.as_bytes().first()? {
        b'+' => 1i64,
        b'-' => -1,
        _ => return humantime::parse_rfc3339_weak(s).ok(),
    };
    let (h, m) = offset.get(1..)?.split_once(':')?;
    let (h, m): (u64, u64) = (h.parse().ok()?, m.parse().ok()?);
    if h > 23 || m > 59 {
        return None;
    }
    let local = humantime::parse_rfc3339_weak(base).ok()?;
    let off = Duration::from_secs(h * 3600 + m * 60);
    // Local time = UTC + offset, so UTC = local - offset.
    if sign > 0 {
        local.checked_sub(off)
    } else {
        local.checked_add(off)
    }
}

/// Which lines of the timeline to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Every line.
    All,
    /// The supervisor's own events.
    Supervisor,
    /// Dolt's output.
    Server,
}

impl Filter {
    /// True if `line` is shown: the supervisor's lines carry ` [doltctl] `, Dolt's ` [dolt] `.
    pub fn matches(self, line: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Supervisor => line.contains(" [doltctl] "),
            Filter::Server => line.contains(" [dolt] "),
        }
    }
}

/// A file being followed, with the part of a line not yet terminated.
struct Followed {
    reader: BufReader<File>,
    ino: u64,
    pending: String,
}

impl Followed {
    fn from_file(f: File, ino: u64) -> Followed {
        Followed {
            reader: BufReader::new(f),
            ino,
            pending: String::new(),
        }
    }

    fn open(path: &Path, from_end: bool) -> Result<Option<Followed>> {
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(crate::error::Error::io(path, e)),
        };
        let ino = f.metadata().at(path)?.ino();
        let mut reader = BufReader::new(f);
        if from_end {
            reader.seek(SeekFrom::End(0)).at(path)?;
        }
        Ok(Some(Followed {
            reader,
            ino,
            pending: String::new(),
        }))
    }

    /// Emits every complete line available; with `all`, a final unterminated one too.
    fn drain(&mut self, path: &Path, out: &mut impl Write, view: &View, all: bool) -> Result<bool> {
        let mut progressed = false;
        loop {
            let n = self.reader.read_line(&mut self.pending).at(path)?;
            if n == 0 {
                break;
            }
            progressed = true;
            if self.pending.ends_with('\n') {
                if view.shows(&self.pending) {
                    writeln!(out, "{}", view.render(&self.pending)).at("stdout")?;
                }
                self.pending.clear();
            }
        }
        if all && !self.pending.is_empty() {
            if view.shows(&self.pending) {
                writeln!(out, "{}", view.render(&self.pending)).at("stdout")?;
            }
            self.pending.clear();
        }
        out.flush().at("stdout")?;
        Ok(progressed)
    }
}

/// The files written after the one with inode `ino`, oldest first, ending with the current
/// log, as open handles. Opened from one consistent view of the names: if a rotation renames
/// files while they are being opened, the view is taken again, so no file is skipped. When
/// `ino` has been rotated out of the kept files already, all kept files are newer.
fn newer_than(path: &Path, keep: u32, ino: u64) -> Result<Vec<(u64, File)>> {
    let names: Vec<PathBuf> = (1..=keep)
        .rev()
        .map(|i| rotated(path, i))
        .chain([path.to_path_buf()])
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut opened = Vec::new();
        for n in &names {
            match File::open(n) {
                Ok(f) => opened.push(Some((f.metadata().at(n)?.ino(), f))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => opened.push(None),
                Err(e) => return Err(crate::error::Error::io(n, e)),
            }
        }
        let stable = names
            .iter()
            .zip(&opened)
            .all(|(n, o)| ino_of(n) == o.as_ref().map(|(i, _)| *i));
        if stable || std::time::Instant::now() >= deadline {
            let files: Vec<(u64, File)> = opened.into_iter().flatten().collect();
            let start = files
                .iter()
                .position(|(i, _)| *i == ino)
                .map_or(0, |p| p + 1);
            return Ok(files.into_iter().skip(start).collect());
        }
    }
}

fn ino_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Prints new lines as they are appended, following the file across rotation without losing
/// a line: when `server.log` becomes a new file, the old one is read to its end, then any file
/// rotated in between, then the new one from its start.
pub fn follow(
    path: &Path,
    keep: u32,
    view: &View,
    mut out: impl Write,
    stop: impl Fn() -> bool,
) -> Result<()> {
    let mut cur = Followed::open(path, true)?;
    loop {
        let mut progressed = false;
        match cur.as_mut() {
            None => {
                // No log yet: follow it from its first line once it appears.
                cur = Followed::open(path, false)?;
                progressed = cur.is_some();
            }
            Some(f) => {
                progressed |= f.drain(path, &mut out, view, false)?;
                if ino_of(path).is_some_and(|ino| ino != f.ino) {
                    // Rotated: the writer is done with our file. Read it to its end, then
                    // every file rotated after it, then follow the new one from its start.
                    f.drain(path, &mut out, view, true)?;
                    let newer = newer_than(path, keep, f.ino)?;
                    let Some((last, rotated_between)) = newer.split_last() else {
                        cur = Followed::open(path, false)?;
                        continue;
                    };
                    for mid in rotated_between {
                        let mut mid = Followed::from_file(mid.1.try_clone().at(path)?, mid.0);
                        mid.drain(path, &mut out, view, true)?;
                    }
                    cur = Some(Followed::from_file(last.1.try_clone().at(path)?, last.0));
                    continue;
                }
            }
        }
        if stop() {
            return Ok(());
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The follower's output, shared with the test, with the number of the last `line N` it
    /// printed so a writer can wait for it.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<(Mutex<Output>, std::sync::Condvar)>);

    #[derive(Default)]
    struct Output {
        bytes: Vec<u8>,
        /// How far `bytes` has been scanned for complete lines.
        scanned: usize,
        last: Option<u32>,
    }

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let (lock, cv) = &*self.0;
            let mut o = lock.lock().unwrap();
            o.bytes.extend_from_slice(b);
            while let Some(n) = o.bytes[o.scanned..].iter().position(|c| *c == b'\n') {
                let line = String::from_utf8_lossy(&o.bytes[o.scanned..o.scanned + n]);
                if let Some((_, num)) = line.rsplit_once("line ") {
                    o.last = num.parse().ok().or(o.last);
                }
                o.scanned += n + 1;
            }
            cv.notify_all();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0 .0.lock().unwrap().bytes).into_owned()
        }

        fn last(&self) -> Option<u32> {
            self.0 .0.lock().unwrap().last
        }

        /// Waits until the follower printed `line n` (or a later one).
        fn wait_for(&self, n: u32, deadline: std::time::Instant) {
            let (lock, cv) = &*self.0;
            let mut o = lock.lock().unwrap();
            while o.last.is_none_or(|l| l < n) {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                assert!(
                    !left.is_zero(),
                    "follower stuck at {:?}, waiting for line {n}",
                    o.last
                );
                o = cv.wait_timeout(o, left).unwrap().0;
            }
        }
    }

    /// A writer rotating fast, never more than `AHEAD` lines (about 1.5 files) ahead of the
    /// follower: the follower then always has rotated files to catch up through, and the file
    /// it reads is never rotated away (that takes 3 more rotations), so no line may be lost
    /// however the two threads are scheduled. The follower stops once it printed the last line
    /// (or at a deadline, and the test then reports what it lost).
    #[test]
    fn follow_across_fast_rotation_loses_no_line_and_keeps_order() {
        use std::sync::Arc;
        use std::time::Instant;
        const LINES: u32 = 3000;
        const AHEAD: u32 = 300;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("server.log");
        // 3 x 16 KiB kept: what the follower must read before it is rotated away. One line
        // pair below is 84 bytes, so a file holds about 195 pairs.
        let log = Arc::new(ServerLog::open(&p, 16 * 1024, 3).unwrap());
        let out = Shared::default();
        let deadline = Instant::now() + Duration::from_secs(60);
        let follower = {
            let (p, out) = (p.clone(), out.clone());
            let seen = out.clone();
            std::thread::spawn(move || {
                follow(&p, 3, &Filter::Server.into(), out, move || {
                    seen.last() == Some(LINES - 1) || Instant::now() > deadline
                })
                .unwrap()
            })
        };
        // The follower starts at the end of the file: wait until it sees lines.
        while !out.text().contains("ping") {
            assert!(Instant::now() < deadline, "follower never started");
            log.line(Source::Dolt, "ping");
            std::thread::sleep(Duration::from_millis(5));
        }
        for i in 0..LINES {
            if i >= AHEAD {
                out.wait_for(i - AHEAD, deadline);
            }
            log.line(Source::Dolt, &format!("line {i:05}"));
            log.line(Source::Supervisor, "event");
        }
        follower.join().unwrap();
        let text = out.text();
        let nums: Vec<u32> = text
            .lines()
            .filter_map(|l| l.rsplit_once("line ").map(|(_, n)| n.parse().unwrap()))
            .collect();
        let missing: Vec<u32> = (0..LINES).filter(|n| !nums.contains(n)).take(5).collect();
        assert!(missing.is_empty(), "lost lines, first: {missing:?}");
        assert!(
            nums.windows(2).all(|w| w[0] + 1 == w[1]),
            "out of order or repeated"
        );
        assert!(
            !text.contains("[doltctl]"),
            "filter let supervisor lines through"
        );
        assert!(rotated(&p, 3).exists(), "the test did not rotate");
    }

    #[test]
    fn entries_parse_into_time_source_and_text() {
        let e = Entry::parse("2024-05-01T10:00:00.123Z [doltctl] server ready after 812 ms\n");
        assert_eq!(e.time, Some("2024-05-01T10:00:00.123Z"));
        assert_eq!(e.source, Some(Source::Supervisor));
        assert_eq!(e.text, "server ready after 812 ms");
        assert_eq!(
            e.json().to_string(),
            r#"{"time":"2024-05-01T10:00:00.123Z","source":"doltctl","text":"server ready after 812 ms"}"#
        );
        let d = Entry::parse("2024-05-01T10:00:00.123Z [dolt] level=info msg=\"[x] y\"");
        assert_eq!(d.source, Some(Source::Dolt));
        assert_eq!(d.text, "level=info msg=\"[x] y\"");
        // Anything else is all text, never an error.
        for odd in [
            "",
            "no timestamp here",
            "2024-05-01T10:00:00Z [other] x",
            "garbage [dolt] x",
        ] {
            let e = Entry::parse(odd);
            assert_eq!((e.time, e.source, e.text), (None, None, odd));
        }
    }

    #[test]
    fn since_takes_durations_timestamps_with_offsets_and_dates() {
        let now = humantime::parse_rfc3339("2024-05-01T12:00:00Z").unwrap();
        let at = |s: &str| humantime::parse_rfc3339(s).unwrap();
        assert_eq!(parse_since("10m", now), Ok(at("2024-05-01T11:50:00Z")));
        assert_eq!(parse_since("1h 30m", now), Ok(at("2024-05-01T10:30:00Z")));
        assert_eq!(
            parse_since("2024-05-01T10:00:00Z", now),
            Ok(at("2024-05-01T10:00:00Z"))
        );
        assert_eq!(
            parse_since("2024-05-01T10:00:00.5Z", now),
            Ok(at("2024-05-01T10:00:00.5Z"))
        );
        assert_eq!(
            parse_since("2024-05-01T12:00:00+02:00", now),
            Ok(at("2024-05-01T10:00:00Z"))
        );
        assert_eq!(
            parse_since("2024-05-01T05:30:00-04:30", now),
            Ok(at("2024-05-01T10:00:00Z"))
        );
        assert_eq!(
            parse_since("2024-05-01 10:00:00", now),
            Ok(at("2024-05-01T10:00:00Z"))
        );
        assert_eq!(
            parse_since("2024-05-01", now),
            Ok(at("2024-05-01T00:00:00Z"))
        );
        for bad in ["", "yesterday", "10 parsecs", "2024-05-01T10:00:00+25:00"] {
            let e = parse_since(bad, now).unwrap_err();
            assert!(e.contains("neither a duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn since_selects_across_rotated_files_and_stops_at_older_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("server.log");
        std::fs::write(
            rotated(&p, 1),
            "2024-05-01T09:00:00.000Z [dolt] old\n2024-05-01T10:00:00.000Z [dolt] at since\n",
        )
        .unwrap();
        std::fs::write(
            &p,
            "2024-05-01T10:30:00.000Z [doltctl] event\n2024-05-01T11:00:00.000Z [dolt] new\n",
        )
        .unwrap();
        let since = humantime::parse_rfc3339("2024-05-01T10:00:00Z").ok();
        let view = View {
            filter: Filter::All,
            since,
            json: false,
        };
        let got = read_selected(&p, 3, None, &view).unwrap();
        let texts: Vec<&str> = got.iter().map(|l| Entry::parse(l).text).collect();
        assert_eq!(texts, ["at since", "event", "new"]);
        let got = read_selected(
            &p,
            3,
            Some(2),
            &View {
                filter: Filter::Server,
                ..view
            },
        )
        .unwrap();
        let texts: Vec<&str> = got.iter().map(|l| Entry::parse(l).text).collect();
        assert_eq!(texts, ["at since", "new"]);
        assert!(!view.shows("2024-05-01T09:59:59.999Z [dolt] x"));
        assert!(view.shows("2024-05-01T10:00:00.000Z [dolt] x"));
    }

    #[test]
    fn rotates_by_size_and_keeps_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("server.log");
        let log = ServerLog::open(&p, 4096, 3).unwrap();
        for i in 0..400 {
            log.line(Source::Dolt, &format!("line {i:05}"));
        }
        assert!(rotated(&p, 1).exists());
        assert!(!rotated(&p, 4).exists());
        for i in 0..=3 {
            let f = if i == 0 { p.clone() } else { rotated(&p, i) };
            if f.exists() {
                assert!(std::fs::metadata(&f).unwrap().len() <= 4096);
            }
        }
        let tail = read_tail(&p, 3, 150).unwrap();
        assert_eq!(tail.len(), 150);
        let nums: Vec<u32> = tail
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(nums, (250..400).collect::<Vec<_>>());
        assert_eq!(log.tail(2).len(), 2);
    }

    fn texts(p: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(p).unwrap();
        text.lines()
            .map(|l| {
                let e = Entry::parse(l);
                assert!(e.time.is_some(), "not a whole timeline line: {l:?}");
                e.text.to_string()
            })
            .collect()
    }

    /// /dev/full refuses every write (ENOSPC) without root: the log points there through a
    /// symlink, then at a real file.
    #[test]
    fn lines_a_full_disk_refuses_are_counted_and_reported_once_writing_works() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("server.log");
        std::os::unix::fs::symlink("/dev/full", &p).unwrap();
        let every = Duration::from_millis(300);
        let log = ServerLog::open(&p, 1 << 20, 3).unwrap().retry_every(every);
        let t0 = Instant::now();
        for i in 0..5 {
            log.line(Source::Dolt, &format!("lost {i}"));
        }
        assert!(
            t0.elapsed() < every,
            "the test was too slow to be within one retry"
        );
        std::fs::remove_file(&p).unwrap();
        // Within the retry interval, the file is not tried: this line is dropped too, though
        // the path could be written now.
        log.line(Source::Dolt, "lost 5");
        assert!(!p.exists(), "the log was tried again before retry_every");
        std::thread::sleep(every);
        log.line(Source::Supervisor, "back");
        let got = texts(&p);
        assert_eq!(got.len(), 8, "{got:?}");
        assert!(
            got[0].starts_with("6 log lines dropped (")
                && got[0].contains("No space left on device")
                && got[0].contains("the last 6 of them follow"),
            "{got:?}"
        );
        // The refused lines come late, in order, then the new one.
        let late: Vec<String> = (0..6).map(|i| format!("lost {i}")).collect();
        assert_eq!(got[1..7], late[..]);
        assert_eq!(got[7], "back");
        // Every line stayed in memory.
        let tail = log.tail(10);
        assert_eq!(tail.len(), 7);
        assert!(tail[0].ends_with("[dolt] lost 0"), "{tail:?}");
        // And it keeps working, with no more notes.
        log.line(Source::Dolt, "more");
        assert_eq!(texts(&p)[8..], ["more".to_string()]);
    }

    #[test]
    fn a_failing_rotation_is_retried_and_loses_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("server.log");
        // server.log.1 a non-empty directory: the rename onto it fails.
        std::fs::create_dir(rotated(&p, 1)).unwrap();
        std::fs::write(rotated(&p, 1).join("x"), "").unwrap();
        let every = Duration::from_millis(200);
        let log = ServerLog::open(&p, 1024, 1).unwrap().retry_every(every);
        for i in 0..40 {
            log.line(Source::Dolt, &format!("line {i:03}"));
        }
        assert!(std::fs::metadata(&p).unwrap().len() > 1024, "kept writing");
        std::fs::remove_dir_all(rotated(&p, 1)).unwrap();
        std::thread::sleep(every);
        for i in 40..50 {
            log.line(Source::Dolt, &format!("line {i:03}"));
        }
        assert!(rotated(&p, 1).is_file(), "rotated once it could");
        let mut all = texts(&rotated(&p, 1));
        all.extend(texts(&p));
        let want: Vec<String> = (0..50).map(|i| format!("line {i:03}")).collect();
        assert_eq!(all, want);
    }

    #[test]
    fn a_deleted_log_is_written_anew() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("server.log");
        let every = Duration::from_millis(100);
        let log = ServerLog::open(&p, 1 << 20, 3).unwrap().retry_every(every);
        log.line(Source::Dolt, "before");
        std::fs::remove_file(&p).unwrap();
        std::thread::sleep(every);
        log.line(Source::Dolt, "after");
        let got = texts(&p);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].ends_with("was removed or replaced: this is a new one"));
        assert_eq!(got[1], "after");
    }

    /// A real full filesystem (root only: a tmpfs): no partial line is left behind, and the
    /// note says the disk is full.
    #[test]
    fn a_full_tmpfs_drops_lines_until_it_has_room() {
        let Some(fs) = disk::TinyTmpfs::mount() else {
            return;
        };
        let p = fs.path().join("server.log");
        let every = Duration::from_millis(100);
        let log = ServerLog::open(&p, 1 << 20, 3).unwrap().retry_every(every);
        log.line(Source::Dolt, "first");
        fs.fill();
        let long = "x".repeat(3000);
        for i in 0..20 {
            log.line(Source::Dolt, &format!("{long} {i}"));
            std::thread::sleep(every / 4);
        }
        fs.unfill();
        std::thread::sleep(every);
        log.line(Source::Dolt, "last");
        let got = texts(&p);
        let note = got
            .iter()
            .find(|t| t.contains("log lines dropped"))
            .expect("a dropped-lines note");
        assert!(
            note.contains("No space left on device") && note.contains("is full ("),
            "{note}"
        );
        let dropped: u64 = note.split(' ').next().unwrap().parse().unwrap();
        assert!(dropped > 0, "{note}");
        // Every line reached the file in the end, the refused ones late.
        let written = got.iter().filter(|t| t.starts_with(&long)).count() as u64;
        assert_eq!(written, 20, "{got:?}");
        assert_eq!(got.first().map(String::as_str), Some("first"));
        assert_eq!(got.last().map(String::as_str), Some("last"));
    }
}

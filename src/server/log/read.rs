//! Reading the server log: the last lines (across rotated files), selections by source and
//! time, JSON lines, and following it across rotation without losing a line.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{IoContext, Result};

use super::{rotated, Source};
use std::collections::VecDeque;

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

pub(super) fn parse_timestamp(s: &str) -> Option<SystemTime> {
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
pub(super) struct Followed {
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
pub(super) fn newer_than(path: &Path, keep: u32, ino: u64) -> Result<Vec<(u64, File)>> {
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

pub(super) fn ino_of(path: &Path) -> Option<u64> {
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

//! The server log: dolt's stdout/stderr and the supervisor's own events in one timestamped
//! timeline, rotated by size while the server runs (`server.log`, `server.log.1`, ...).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{IoContext, Result};
use crate::sys::clock::now_rfc3339;

/// How many recent lines are kept in memory for error reports.
const TAIL_LINES: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Dolt,
    Supervisor,
}

pub struct ServerLog {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    /// Dolt's lines also go to stderr (a foreground supervisor).
    echo_dolt: bool,
    inner: Mutex<Inner>,
}

struct Inner {
    file: Option<File>,
    size: u64,
    tail: VecDeque<String>,
    /// Error-looking dolt lines since the last launch: dolt prints its reason for exiting
    /// first and then pages of usage, which would push the reason out of the tail.
    errors: Vec<String>,
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

impl ServerLog {
    pub fn open(path: &Path, max_size: u64, keep: u32) -> Result<ServerLog> {
        let file = open_append(path)?;
        let size = file.metadata().at(path)?.len();
        Ok(ServerLog {
            path: path.to_path_buf(),
            max_size,
            keep,
            echo_dolt: false,
            inner: Mutex::new(Inner {
                file: Some(file),
                size,
                tail: VecDeque::with_capacity(TAIL_LINES),
                errors: Vec::new(),
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

    /// Appends one line. A log write failure never stops the supervisor: it is reported once
    /// through tracing and the line is kept in the in-memory tail.
    pub fn line(&self, source: Source, text: &str) {
        let tag = match source {
            Source::Dolt => "dolt",
            Source::Supervisor => "doltctl",
        };
        if self.echo_dolt && source == Source::Dolt {
            let _ = writeln!(std::io::stderr().lock(), "[dolt] {}", text.trim_end());
        }
        let line = format!("{} [{tag}] {}\n", now_rfc3339(), text.trim_end());
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
        if inner.size + line.len() as u64 > self.max_size && inner.size > 0 {
            if let Err(e) = self.rotate(&mut inner) {
                tracing::warn!("rotating {}: {e}", self.path.display());
            }
        }
        if let Some(f) = inner.file.as_mut() {
            match f.write_all(line.as_bytes()) {
                Ok(()) => inner.size += line.len() as u64,
                Err(e) => {
                    tracing::warn!("writing {}: {e}", self.path.display());
                    inner.file = None;
                }
            }
        }
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

    fn rotate(&self, inner: &mut Inner) -> Result<()> {
        inner.file = None;
        rotate_files(&self.path, self.keep)?;
        inner.file = Some(open_append(&self.path)?);
        inner.size = 0;
        Ok(())
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
    let mut lines: VecDeque<String> = VecDeque::new();
    for i in 0..=keep {
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
        for l in text.lines().rev().filter(|l| filter.matches(l)) {
            if lines.len() == n {
                break;
            }
            lines.push_front(l.to_string());
        }
        if lines.len() == n {
            break;
        }
    }
    Ok(lines.into())
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
    fn drain(
        &mut self,
        path: &Path,
        out: &mut impl Write,
        filter: Filter,
        all: bool,
    ) -> Result<bool> {
        let mut progressed = false;
        loop {
            let n = self.reader.read_line(&mut self.pending).at(path)?;
            if n == 0 {
                break;
            }
            progressed = true;
            if self.pending.ends_with('\n') {
                if filter.matches(&self.pending) {
                    out.write_all(self.pending.as_bytes()).at("stdout")?;
                }
                self.pending.clear();
            }
        }
        if all && !self.pending.is_empty() {
            if filter.matches(&self.pending) {
                writeln!(out, "{}", self.pending).at("stdout")?;
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
    filter: Filter,
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
                progressed |= f.drain(path, &mut out, filter, false)?;
                if ino_of(path).is_some_and(|ino| ino != f.ino) {
                    // Rotated: the writer is done with our file. Read it to its end, then
                    // every file rotated after it, then follow the new one from its start.
                    f.drain(path, &mut out, filter, true)?;
                    let newer = newer_than(path, keep, f.ino)?;
                    let Some((last, rotated_between)) = newer.split_last() else {
                        cur = Followed::open(path, false)?;
                        continue;
                    };
                    for mid in rotated_between {
                        let mut mid = Followed::from_file(mid.1.try_clone().at(path)?, mid.0);
                        mid.drain(path, &mut out, filter, true)?;
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
                follow(&p, 3, Filter::Server, out, move || {
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
}

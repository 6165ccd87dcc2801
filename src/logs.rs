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
use crate::state::now_rfc3339;

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
            inner: Mutex::new(Inner {
                file: Some(file),
                size,
                tail: VecDeque::with_capacity(TAIL_LINES),
                errors: Vec::new(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line. A log write failure never stops the supervisor: it is reported once
    /// through tracing and the line is kept in the in-memory tail.
    pub fn line(&self, source: Source, text: &str) {
        let tag = match source {
            Source::Dolt => "dolt",
            Source::Supervisor => "doltctl",
        };
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
        let _ = std::fs::remove_file(rotated(&self.path, self.keep));
        for i in (1..self.keep).rev() {
            let from = rotated(&self.path, i);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, i + 1)).at(&from)?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1)).at(&self.path)?;
        inner.file = Some(open_append(&self.path)?);
        inner.size = 0;
        Ok(())
    }
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
        for l in text.lines().rev() {
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

/// Prints new lines as they are appended, following the file across rotation (a new inode
/// or a shorter file means it was rotated: read the rest of the old one, then start over).
pub fn follow(path: &Path, mut out: impl Write, stop: impl Fn() -> bool) -> Result<()> {
    let mut reader: Option<(BufReader<File>, u64)> = None;
    let mut buf = String::new();
    loop {
        if reader.is_none() {
            if let Ok(f) = File::open(path) {
                let ino = f.metadata().at(path)?.ino();
                let mut r = BufReader::new(f);
                r.seek(SeekFrom::End(0)).at(path)?;
                reader = Some((r, ino));
            }
        }
        let mut progressed = false;
        if let Some((r, ino)) = reader.as_mut() {
            loop {
                buf.clear();
                let n = r.read_line(&mut buf).at(path)?;
                if n == 0 || !buf.ends_with('\n') {
                    if n > 0 {
                        // A partial line: re-read it once the writer finishes it.
                        r.seek_relative(-(n as i64)).at(path)?;
                    }
                    break;
                }
                progressed = true;
                out.write_all(buf.as_bytes()).at("stdout")?;
            }
            out.flush().at("stdout")?;
            let current = std::fs::metadata(path).ok();
            let pos = r.stream_position().at(path)?;
            let rotated = match current {
                Some(m) => m.ino() != *ino || m.len() < pos,
                None => false,
            };
            if rotated {
                // Start the new file from its beginning.
                let f = File::open(path).at(path)?;
                let ino = f.metadata().at(path)?.ino();
                reader = Some((BufReader::new(f), ino));
                continue;
            }
        }
        if stop() {
            return Ok(());
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! Tests of the server log: writing through failures, rotation, reading and following.

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

//! Import throughput (run through `scripts/measure-import`). One CSV of ROWS rows (six
//! columns: int, two varchars, decimal, datetime(6), text with quotes, commas, "" and NULLs),
//! loaded into the same empty table in four ways on the same machine:
//! - `doltctl import rows.csv` through the supervised server (one transaction, batches of
//!   1000 rows as prepared multi-row INSERTs);
//! - `dolt table import -u` of the same file with the server stopped (Dolt's own bulk path);
//! - the same rows as a plain multi-row INSERT script (1000 rows per statement), sent statement
//!   by statement over one raw mysql_async connection with autocommit (no doltctl);
//! - that script through `doltctl import insert.sql` (one transaction).
//!
//! Every timing is the wall time of the whole operation (process start to exit for the CLIs);
//! the server is already running where one is used. Medians over ROUNDS. The peak RSS of the
//! `doltctl import rows.csv` process (its VmHWM, from `/usr/bin/time -f %M`) is printed too,
//! the largest over the rounds, and its CPU time (user, sys) each round.
//!
//! Environment: `IMPORT_BENCH_BATCH=N` passes `--batch N` to the CSV import;
//! `IMPORT_BENCH_CSV_ONLY=1` skips the two INSERT-script loads (for 1,000,000-row runs, where
//! only the CSV import and the yardstick matter).
//!
//! Usage: import_bench DOLTCTL_BIN DOLT_BIN [ROUNDS] [ROWS]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

const SCHEMA: &str = "CREATE TABLE t (id int primary key, name varchar(64), email varchar(128), \
                      score decimal(10,2), created datetime(6), note text)";

mod common;
use common::{free_port, median, Sandbox};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: import_bench DOLTCTL_BIN DOLT_BIN [ROUNDS] [ROWS]");
        std::process::exit(2);
    }
    let doltctl = PathBuf::from(&args[1]);
    let dolt = PathBuf::from(&args[2]);
    let rounds: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(3);
    let n: usize = args.get(4).and_then(|r| r.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    let sb = Sandbox::new(&dolt);
    let (tmp, env, data) = (&sb.tmp, &sb.env, &sb.data);
    let app = data.join("app");
    let port = free_port();
    let cfg = sb.config(port);
    let url = format!("mysql://root@127.0.0.1:{port}/app");

    let (csv, script) = generate(n);
    let csv_path = tmp.path().join("rows.csv");
    let sql_path = tmp.path().join("insert.sql");
    std::fs::write(&csv_path, &csv).expect("csv");
    std::fs::write(&sql_path, &script).expect("sql");
    let statements: Vec<String> = doltctl::internals::split_sql(&script)
        .into_iter()
        .map(|s| s.text)
        .collect();

    let mut ours = Vec::new();
    let mut dolts = Vec::new();
    let mut raw = Vec::new();
    let mut ours_sql = Vec::new();
    let mut peak_kib = 0u64;
    let batch = std::env::var("IMPORT_BENCH_BATCH").ok();
    let csv_only = std::env::var("IMPORT_BENCH_CSV_ONLY").is_ok_and(|v| v == "1");
    let csv_arg = csv_path.to_string_lossy().into_owned();
    let mut csv_args = vec!["import", &csv_arg, "--db", "app", "--table", "t"];
    if let Some(b) = &batch {
        csv_args.extend(["--batch", b.as_str()]);
    }
    sb.doltctl(&doltctl, &cfg, &["start"]);
    for _ in 0..rounds {
        reset(&rt, &url);
        let t = Instant::now();
        let rss = peak_rss_kib(&sb, &doltctl, &cfg, &csv_args);
        ours.push(t.elapsed());
        peak_kib = peak_kib.max(rss.unwrap_or(0));
        check(&rt, &url, n);
        if !csv_only {
            load_scripts(
                &rt,
                &sb,
                &doltctl,
                &cfg,
                &url,
                &statements,
                &sql_path,
                n,
                &mut raw,
                &mut ours_sql,
            );
        }

        // Dolt's own bulk import needs the database to itself.
        reset(&rt, &url);
        sb.doltctl(&doltctl, &cfg, &["stop"]);
        let t = Instant::now();
        let out = Command::new(&dolt)
            .args(["table", "import", "-u", "t"])
            .arg(&csv_path)
            .current_dir(&app)
            .envs(env.clone())
            .output()
            .expect("dolt table import");
        dolts.push(t.elapsed());
        assert!(
            out.status.success(),
            "dolt table import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        sb.doltctl(&doltctl, &cfg, &["start"]);
        check(&rt, &url, n);
    }
    sb.doltctl(&doltctl, &cfg, &["stop"]);

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let (o, d) = (median(&ours), median(&dolts));
    println!(
        "rows: {n} ({:.1} MB CSV), rounds: {rounds}, medians",
        csv.len() as f64 / 1e6
    );
    println!(
        "doltctl import rows.csv (server):            {:>8.0} rows/s  {:.2} s  (all: {})",
        rate(o),
        o.as_secs_f64(),
        list(&ours)
    );
    println!(
        "doltctl import rows.csv peak RSS:            {:>8.1} MiB (max over rounds){}",
        peak_kib as f64 / 1024.0,
        batch.map(|b| format!(", --batch {b}")).unwrap_or_default()
    );
    println!(
        "dolt table import -u (server stopped):       {:>8.0} rows/s  {:.2} s  (all: {})  doltctl/dolt {:.2}x",
        rate(d),
        d.as_secs_f64(),
        list(&dolts),
        rate(o) / rate(d)
    );
    if csv_only {
        return;
    }
    let (r, s) = (median(&raw), median(&ours_sql));
    println!(
        "multi-row INSERT script, raw connection:     {:>8.0} rows/s  {:.2} s  (all: {})  doltctl/raw {:.2}x",
        rate(r),
        r.as_secs_f64(),
        list(&raw),
        rate(o) / rate(r)
    );
    println!(
        "same script via doltctl import insert.sql:   {:>8.0} rows/s  {:.2} s  (all: {})",
        rate(s),
        s.as_secs_f64(),
        list(&ours_sql)
    );
}

/// The CSV and the same rows as INSERT statements of 1000 rows.
fn generate(n: usize) -> (String, String) {
    let mut csv = String::from("id,name,email,score,created,note\n");
    let mut sql = String::new();
    for i in 0..n {
        let name = format!("user {i}");
        let email = format!("user{i}@example.com");
        let score = format!("{}.{:02}", i % 10_000, i % 100);
        let created = format!(
            "2024-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
            i % 12 + 1,
            i % 28 + 1,
            i % 24,
            i % 60,
            (i / 60) % 60,
            i % 1_000_000
        );
        let note: Option<String> = match i % 11 {
            0 => None,
            1 => Some(String::new()),
            2 => Some(format!("he said \"hi\", then left; row {i}")),
            _ => Some(format!("a plain note for row {i}")),
        };
        let csv_note = match &note {
            None => String::new(),
            Some(s) => format!("\"{}\"", s.replace('"', "\"\"")),
        };
        let _ = writeln!(csv, "{i},{name},{email},{score},{created},{csv_note}");
        if i % 1000 == 0 {
            if i > 0 {
                sql.push_str(";\n");
            }
            sql.push_str("INSERT INTO t (id,name,email,score,created,note) VALUES ");
        } else {
            sql.push(',');
        }
        let sql_note = match &note {
            None => "NULL".to_string(),
            Some(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''")),
        };
        let _ = write!(
            sql,
            "({i},'{name}','{email}',{score},'{created}',{sql_note})"
        );
    }
    sql.push_str(";\n");
    (csv, sql)
}

/// The INSERT script over a raw connection, then through `doltctl import insert.sql`.
#[allow(clippy::too_many_arguments)]
fn load_scripts(
    rt: &tokio::runtime::Runtime,
    sb: &Sandbox,
    doltctl: &Path,
    cfg: &Path,
    url: &str,
    statements: &[String],
    sql_path: &Path,
    n: usize,
    raw: &mut Vec<Duration>,
    ours_sql: &mut Vec<Duration>,
) {
    reset(rt, url);
    let t = Instant::now();
    rt.block_on(async {
        let mut c = mysql_async::Conn::from_url(url).await.expect("connect");
        for s in statements {
            c.query_drop(s.as_str()).await.expect("insert");
        }
        c.disconnect().await.expect("disconnect");
    });
    raw.push(t.elapsed());
    check(rt, url, n);

    reset(rt, url);
    let t = Instant::now();
    sb.doltctl(
        doltctl,
        cfg,
        &["import", &sql_path.to_string_lossy(), "--db", "app"],
    );
    ours_sql.push(t.elapsed());
    check(rt, url, n);
}

/// Runs `doltctl --config CFG ARGS...` under `/usr/bin/time -f %M`, asserts it succeeded and
/// returns its peak RSS in KiB (`None` without /usr/bin/time, when it runs doltctl directly).
fn peak_rss_kib(sb: &Sandbox, doltctl: &Path, cfg: &Path, args: &[&str]) -> Option<u64> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        sb.doltctl(doltctl, cfg, args);
        return None;
    }
    let out = Command::new(time)
        .args(["-f", "cpu %U %S\npeak-rss-kib %M"])
        .arg(doltctl)
        .arg("--config")
        .arg(cfg)
        .args(args)
        .envs(sb.env.iter().cloned())
        .output()
        .expect("/usr/bin/time doltctl");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "doltctl {args:?}: {err}");
    if let Some(c) = err.lines().find_map(|l| l.strip_prefix("cpu ")) {
        // The server does the work: this shows how little of the wall time is doltctl's own.
        println!("doltctl import rows.csv CPU user, sys:      {c} s");
    }
    err.lines()
        .rev()
        .find_map(|l| l.strip_prefix("peak-rss-kib "))
        .and_then(|v| v.trim().parse().ok())
}

fn reset(rt: &tokio::runtime::Runtime, url: &str) {
    rt.block_on(async {
        let mut c = mysql_async::Conn::from_url(url).await.expect("connect");
        c.query_drop("DROP TABLE IF EXISTS t").await.expect("drop");
        c.query_drop(SCHEMA).await.expect("create");
        c.disconnect().await.expect("disconnect");
    });
}

fn check(rt: &tokio::runtime::Runtime, url: &str, n: usize) {
    let got: Option<i64> = rt.block_on(async {
        let mut c = mysql_async::Conn::from_url(url).await.expect("connect");
        let v = c
            .query_first("SELECT COUNT(*) FROM t")
            .await
            .expect("count");
        c.disconnect().await.expect("disconnect");
        v
    });
    assert_eq!(got, Some(n as i64), "row count after a load");
}

fn list(v: &[Duration]) -> String {
    v.iter()
        .map(|d| format!("{:.2}", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

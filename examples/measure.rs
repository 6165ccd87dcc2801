//! Measurements for the supervisor (run through `scripts/measure`). Every figure is paired
//! with a baseline measured in the same run, on the same machine:
//! - `doltctl start` to ready vs dolt's own time from spawn to the first `SELECT 1` answered
//!   (a tight polling loop);
//! - kill -9 of the server to ready again, and the same under supervisord (`startsecs=1`,
//!   `autorestart=true`, the same dolt command) where `supervisord` is installed;
//! - the idle supervisor's RSS and CPU, next to the idle dolt server's.
//!
//! Usage: measure DOLTCTL_BIN DOLT_BIN [ROUNDS]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use doltctl::internals as health;
use doltctl::State;
use procfs::process::Process;

mod common;
use common::{free_port, median, ms, rss_kib, Sandbox};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: measure DOLTCTL_BIN DOLT_BIN [ROUNDS]");
        std::process::exit(2);
    }
    let doltctl = PathBuf::from(&args[1]);
    let dolt = PathBuf::from(&args[2]);
    let rounds: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(5);
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    let sb = Sandbox::new(&dolt);
    let (env, data) = (&sb.env, &sb.data);

    let mut baseline = Vec::new();
    let mut started = Vec::new();
    let mut healed = Vec::new();
    for _ in 0..rounds {
        baseline.push(rt.block_on(raw_dolt_ready(&dolt, data, env)));
        let port = free_port();
        let cfg = sb.config(port);
        let t = Instant::now();
        sb.doltctl(&doltctl, &cfg, &["start"]);
        started.push(t.elapsed());
        healed.push(kill9_to_ready(data));
        sb.doltctl(&doltctl, &cfg, &["stop"]);
    }

    // Repeated kills 1.5 s apart under one supervisor, as supervisord's series below: each
    // server ran less than `stable_after`, so from the second kill on the backoff grows (the
    // default policy; a crash loop ends in `failed` after max_failures in failure_window, so
    // keep the series below that).
    let mut repeated = Vec::new();
    {
        let port = free_port();
        let cfg = sb.config(port);
        sb.doltctl(&doltctl, &cfg, &["start"]);
        for _ in 0..rounds.min(4) {
            std::thread::sleep(Duration::from_millis(1500));
            repeated.push(kill9_to_ready(data));
        }
        sb.doltctl(&doltctl, &cfg, &["stop"]);
    }

    // The same kill -9 under supervisord, as a reference restart time.
    let supervisord = rt.block_on(supervisord_kill9_to_ready(&dolt, data, env, rounds));

    // Idle usage: a running server, left alone for a while.
    let port = free_port();
    let cfg = sb.config(port);
    sb.doltctl(&doltctl, &cfg, &["start"]);
    let st = state(data);
    let sup = st.supervisor.clone().expect("supervisor").pid;
    let srv = st.server().cloned().expect("server").pid;
    std::thread::sleep(Duration::from_secs(2));
    let window = Duration::from_secs(20);
    let (c0s, c0d) = (cpu_ticks(sup), cpu_ticks(srv));
    std::thread::sleep(window);
    let (c1s, c1d) = (cpu_ticks(sup), cpu_ticks(srv));
    let hz = procfs::ticks_per_second() as f64;
    let pct = |a: u64, b: u64| (b - a) as f64 / hz / window.as_secs_f64() * 100.0;
    let (rss_sup, rss_srv) = (rss_kib(sup).unwrap_or(0), rss_kib(srv).unwrap_or(0));

    // Client side, against the running server: warm connects through the library versus raw
    // mysql_async connects, and `doltctl url` as a process.
    let url = state(data).url.expect("url");
    let conf = doltctl::Config::load(&cfg).expect("config");
    let n = 200;
    let (lib_connect, raw_connect) = rt.block_on(async {
        let client = doltctl::Client::from_config(conf);
        let mut lib = Vec::new();
        let mut raw = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            let c = client.conn().await.expect("library connect");
            lib.push(t.elapsed());
            let _ = c.disconnect().await;
            let t = Instant::now();
            let c = mysql_async::Conn::from_url(url.as_str())
                .await
                .expect("raw connect");
            raw.push(t.elapsed());
            let _ = c.disconnect().await;
        }
        (lib, raw)
    });
    // 16 clients against a running server: what 16 processes cost on this machine anyway.
    let mut warm16 = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        run_sql(&doltctl, &cfg, env, 16);
        warm16.push(t.elapsed());
    }
    let mut url_times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        sb.doltctl(&doltctl, &cfg, &["url"]);
        url_times.push(t.elapsed());
    }
    sb.doltctl(&doltctl, &cfg, &["stop"]);

    // Cold first access: one client on a stopped server, versus 16 at once.
    let mut cold1 = Vec::new();
    let mut cold16 = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        run_sql(&doltctl, &cfg, env, 1);
        cold1.push(t.elapsed());
        sb.doltctl(&doltctl, &cfg, &["stop"]);
        let t = Instant::now();
        run_sql(&doltctl, &cfg, env, 16);
        cold16.push(t.elapsed());
        sb.doltctl(&doltctl, &cfg, &["stop"]);
    }

    let (b, s, h) = (median(&baseline), median(&started), median(&healed));
    println!("rounds: {rounds}");
    println!(
        "dolt spawn -> first SELECT 1 (baseline): median {:.0} ms  (all: {})",
        ms(b),
        list(&baseline)
    );
    println!(
        "doltctl start -> ready:                  median {:.0} ms  (all: {})  ratio {:.2}x",
        ms(s),
        list(&started),
        ms(s) / ms(b)
    );
    println!(
        "kill -9 of dolt -> ready again:          median {:.0} ms  (all: {})  ratio {:.2}x",
        ms(h),
        list(&healed),
        ms(h) / ms(b)
    );
    println!(
        "kill -9 every 1.5 s, one supervisor:     median {:.0} ms  (all: {})  (backoff grows: crashes of servers that ran < stable_after)",
        ms(median(&repeated)),
        list(&repeated)
    );
    match &supervisord {
        Ok(v) => println!(
            "kill -9 under supervisord -> SELECT 1:   median {:.0} ms  (all: {})  doltctl/supervisord {:.2}x",
            ms(median(v)),
            list(v),
            ms(h) / ms(median(v))
        ),
        Err(why) => println!("kill -9 under supervisord: skipped: {why}"),
    }
    println!(
        "idle supervisor: RSS {rss_sup} KiB, CPU {:.3}% over {}s  (idle dolt: RSS {rss_srv} KiB, CPU {:.3}%)",
        pct(c0s, c1s),
        window.as_secs(),
        pct(c0d, c1d)
    );
    let (lc, rc) = (median(&lib_connect), median(&raw_connect));
    println!(
        "warm connect, {n} each: library Client::conn median {:.2} ms vs raw mysql_async {:.2} ms  ratio {:.2}x",
        ms(lc),
        ms(rc),
        ms(lc) / ms(rc)
    );
    println!(
        "`doltctl url` with a running server (process start to exit): median {:.1} ms",
        ms(median(&url_times))
    );
    let (c1, c16) = (median(&cold1), median(&cold16));
    println!(
        "cold first access: 1 client median {:.0} ms; slowest of 16 concurrent median {:.0} ms  ratio {:.2}x  (all 1: {}; all 16: {})",
        ms(c1),
        ms(c16),
        ms(c16) / ms(c1),
        list(&cold1),
        list(&cold16)
    );
    println!(
        "16 concurrent clients on a running server (no start at all): median {:.0} ms; cold 16 minus this, over cold 1: {:.2}x",
        ms(median(&warm16)),
        (ms(c16) - ms(median(&warm16))) / ms(c1)
    );
}

/// Runs `clients` concurrent `doltctl sql -q "select 1"` and waits for the slowest.
fn run_sql(doltctl: &Path, cfg: &Path, env: &[(&str, String)], clients: usize) {
    let children: Vec<_> = (0..clients)
        .map(|_| {
            Command::new(doltctl)
                .arg("--config")
                .arg(cfg)
                .args(["sql", "-q", "select 1"])
                .envs(env.iter().cloned())
                .stdout(Stdio::null())
                .spawn()
                .expect("doltctl sql")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("wait");
        assert!(out.status.success(), "a client failed");
    }
}

fn list(v: &[Duration]) -> String {
    v.iter()
        .map(|d| format!("{:.0}", ms(*d)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn state(data: &Path) -> State {
    State::read(&data.join(".doltctl/state.json"))
        .ok()
        .flatten()
        .expect("state file")
}

/// Dolt on its own: spawn, then poll `SELECT 1` in a tight loop until it answers.
async fn raw_dolt_ready(dolt: &Path, data: &Path, env: &[(&str, String)]) -> Duration {
    let port = free_port();
    let sock = data.join("raw.sock");
    let t = Instant::now();
    let mut child = tokio::process::Command::new(dolt)
        .args([
            "sql-server",
            "-H",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-l",
            "warning",
        ])
        .arg("--socket")
        .arg(&sock)
        .arg("--data-dir")
        .arg(data)
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn dolt");
    let mut cfg = doltctl::Config::default();
    cfg.server.host = "127.0.0.1".into();
    let opts = health::probe_opts(&cfg, port);
    while health::select1(&opts, Duration::from_secs(1))
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let d = t.elapsed();
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = child.wait().await;
    // Dolt writes config.yaml into a data dir served without --config; keep runs comparable.
    let _ = std::fs::remove_file(data.join("config.yaml"));
    d
}

/// supervisord running the same dolt command as the baseline (`startsecs=1`, `autorestart`):
/// kill -9 of dolt, once it has been up past `startsecs`, to the first `SELECT 1` answered by
/// the new process. Err says why it was skipped (no `supervisord` on PATH).
async fn supervisord_kill9_to_ready(
    dolt: &Path,
    data: &Path,
    env: &[(&str, String)],
    rounds: usize,
) -> Result<Vec<Duration>, String> {
    let bin = which::which("supervisord")
        .map_err(|_| "no supervisord on PATH (`pip install supervisor`)".to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port();
    let environment = env
        .iter()
        .filter(|(k, _)| *k != "DOLT_BIN")
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect::<Vec<_>>()
        .join(",");
    let conf = dir.path().join("supervisord.conf");
    let d = dir.path().display();
    std::fs::write(
        &conf,
        format!(
            "[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\n\
             childlogdir={d}\n\n[program:dolt]\ncommand={} sql-server -H 127.0.0.1 -P {port} \
             -l warning --socket {d}/raw.sock --data-dir {}\nenvironment={environment}\n\
             startsecs=1\nautorestart=true\nstopasgroup=true\nkillasgroup=true\n\
             stdout_logfile=NONE\nstderr_logfile=NONE\n",
            dolt.display(),
            data.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut sup = tokio::process::Command::new(&bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let sup_pid = sup.id().expect("supervisord pid");
    let mut cfg = doltctl::Config::default();
    cfg.server.host = "127.0.0.1".into();
    let opts = health::probe_opts(&cfg, port);
    let child = || -> Option<i32> {
        std::fs::read_to_string(format!("/proc/{sup_pid}/task/{sup_pid}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    // Ready: a dolt process under supervisord, other than `old`, answers SELECT 1.
    let ready_other_than = |old: Option<i32>| {
        let opts = opts.clone();
        async move {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(60) {
                if let Some(pid) = child().filter(|p| Some(*p) != old) {
                    if health::select1(&opts, Duration::from_secs(1)).await.is_ok() {
                        return Ok(pid);
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err("dolt did not come back under supervisord within 60 s".to_string())
        }
    };
    let measured = async {
        let mut pid = ready_other_than(None).await?;
        let mut times = Vec::new();
        for _ in 0..rounds {
            // Past startsecs, so supervisord counts it as started (RUNNING), not a failed start.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let t = Instant::now();
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            pid = ready_other_than(Some(pid)).await?;
            times.push(t.elapsed());
        }
        Ok::<_, String>(times)
    }
    .await;
    // supervisord stops its dolt (stopasgroup) on SIGTERM; a dolt left behind is killed too.
    let left = child();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sup_pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = sup.wait().await;
    if let Some(pid) = left.filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = std::fs::remove_file(data.join("config.yaml"));
    measured
}

fn kill9_to_ready(data: &Path) -> Duration {
    let old = state(data).server().cloned().expect("server");
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old.pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    loop {
        if let Ok(Some(s)) = State::read(&data.join(".doltctl/state.json")) {
            if s.is_ready() && s.server().is_some_and(|p| p.pid != old.pid) {
                return t.elapsed();
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// User plus system CPU time of a process, in clock ticks (`/proc/PID/stat`); 0 when gone.
fn cpu_ticks(pid: i32) -> u64 {
    Process::new(pid)
        .and_then(|p| p.stat())
        .map(|s| s.utime + s.stime)
        .unwrap_or(0)
}

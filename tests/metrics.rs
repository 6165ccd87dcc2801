//! The supervisor's Prometheus endpoint (`[metrics] listen`), scraped with a plain TCP GET
//! against a supervisor of the real dolt.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// One request on a fresh connection: the status code and the body.
fn request(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn scrape(port: u16) -> String {
    let (status, body) = request(port, "GET", "/metrics").expect("scrape");
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the series (name with labels) in a scrape.
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn env_with_metrics() -> (TestEnv, u16) {
    let port = free_port();
    let env = TestEnv::with_config(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    (env, port)
}

#[test]
fn metrics_follow_a_kill9_of_dolt_and_count_clients() {
    let (env, port) = env_with_metrics();
    let url = env.start();
    let body = scrape(port);
    // The supervisor's one listening socket is the endpoint (what the off-by-default test
    // relies on to see nothing).
    let sup = env.state().unwrap().supervisor.unwrap();
    assert_eq!(listening_sockets(sup.pid), [format!("127.0.0.1:{port}")]);
    assert_eq!(value(&body, "doltctl_up"), Some(1.0), "{body}");
    assert_eq!(value(&body, "doltctl_ready"), Some(1.0), "{body}");
    assert_eq!(value(&body, "doltctl_phase{phase=\"running\"}"), Some(1.0));
    assert_eq!(value(&body, "doltctl_restarts_total"), Some(0.0));
    assert_eq!(
        value(&body, "doltctl_last_exit_reason{reason=\"none\"}"),
        Some(1.0)
    );
    assert!(value(&body, "doltctl_last_start_duration_seconds").is_some_and(|s| s > 0.0));
    assert!(
        body.contains("# TYPE doltctl_restarts_total counter\n"),
        "{body}"
    );
    let data_dir = env.data_dir.display().to_string();
    assert!(
        body.contains(&format!(
            "doltctl_info{{data_dir=\"{data_dir}\",dolt_version=\""
        )),
        "{body}"
    );

    // An open client connection is counted (without idle_timeout: metrics turn counting on).
    block_on(async {
        let conn = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
        wait_until("a counted client", Duration::from_secs(30), || {
            value(&scrape(port), "doltctl_client_connections").is_some_and(|n| n >= 1.0)
        });
        conn.disconnect().await.unwrap();
    });

    let old = env.server();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old.pid), Signal::SIGKILL).unwrap();
    let mut body = String::new();
    wait_until(
        "ready again after the kill",
        Duration::from_secs(90),
        || {
            body = scrape(port);
            value(&body, "doltctl_restarts_total") == Some(1.0)
                && value(&body, "doltctl_ready") == Some(1.0)
        },
    );
    assert_eq!(
        value(&body, "doltctl_last_exit_reason{reason=\"crashed\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        value(&body, "doltctl_last_exit_reason{reason=\"none\"}"),
        Some(0.0)
    );
    assert_ne!(env.server().pid, old.pid);

    // Nothing but GET (and HEAD) of /metrics.
    assert_eq!(request(port, "GET", "/").unwrap().0, 404);
    assert_eq!(request(port, "GET", "/status").unwrap().0, 404);
    assert_eq!(request(port, "POST", "/metrics").unwrap().0, 405);
    assert_eq!(
        request(port, "HEAD", "/metrics").unwrap(),
        (200, String::new())
    );

    // The endpoint ends with its supervisor.
    env.stop();
    wait_until("the endpoint closed", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_err()
    });
}

/// TCP sockets the process listens on, from /proc.
fn listening_sockets(pid: i32) -> Vec<String> {
    let proc = procfs::process::Process::new(pid).unwrap();
    let mine: Vec<u64> = proc
        .fd()
        .unwrap()
        .flatten()
        .filter_map(|fd| match fd.target {
            procfs::process::FDTarget::Socket(inode) => Some(inode),
            _ => None,
        })
        .collect();
    let mut entries = proc.tcp().unwrap_or_default();
    entries.extend(proc.tcp6().unwrap_or_default());
    entries
        .into_iter()
        .filter(|e| e.state == procfs::net::TcpState::Listen && mine.contains(&e.inode))
        .map(|e| e.local_address.to_string())
        .collect()
}

#[test]
fn metrics_are_off_by_default() {
    let env = TestEnv::new();
    env.start();
    let sup = env.state().unwrap().supervisor.unwrap();
    assert_eq!(listening_sockets(sup.pid), Vec::<String>::new());
    env.stop();
}

#[test]
fn a_bad_listen_value_is_a_config_error_naming_key_and_fix() {
    let env = TestEnv::with_config("[metrics]\nlisten = \"localhost\"\n");
    let out = env.doltctl().arg("start").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metrics.listen"), "{err}");
    assert!(err.contains("invalid address \"localhost\""), "{err}");
    assert!(err.contains("127.0.0.1:9850"), "{err}");
    assert!(env.dolt_servers().is_empty());
}

#[test]
fn a_taken_metrics_port_fails_the_start_naming_key_and_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let env = TestEnv::with_config(&format!("[metrics]\nlisten = \"{addr}\"\n"));
    let out = env.doltctl().arg("start").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "[metrics] listen = \"{addr}\": cannot listen there"
        )),
        "{err}"
    );
    // Fatal before any launch, and recorded for `status`.
    assert!(env.dolt_servers().is_empty());
    let status = env.doltctl().arg("status").output().unwrap();
    assert!(String::from_utf8_lossy(&status.stdout).contains("[metrics] listen"));
}

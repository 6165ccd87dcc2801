//! doltctl under systemd: the sd_notify exchange of a foreground `doltctl run` (read from a
//! real unix datagram socket, against real dolt), and the unit `doltctl service install`
//! writes (checked with `systemd-analyze verify`).

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{block_on, query_i64, wait_until, TestEnv};
use nix::sys::signal::Signal;

/// Datagrams received, each with when it arrived.
type Inbox = Arc<Mutex<Vec<(Instant, String)>>>;

/// Binds `path` and collects everything sent to it on a thread of its own.
fn listen(path: &Path) -> Inbox {
    let sock = UnixDatagram::bind(path).unwrap();
    let inbox: Inbox = Arc::default();
    let sink = inbox.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            sink.lock().unwrap().push((Instant::now(), text));
        }
    });
    inbox
}

fn messages(inbox: &Inbox) -> Vec<String> {
    inbox
        .lock()
        .unwrap()
        .iter()
        .map(|(_, m)| m.clone())
        .collect()
}

fn has(inbox: &Inbox, assignment: &str) -> bool {
    messages(inbox)
        .iter()
        .any(|m| m.lines().any(|l| l == assignment))
}

#[test]
fn run_notifies_ready_after_select1_status_watchdog_and_stopping() {
    let mut env = TestEnv::new();
    let sock = env.dir.path().join("notify.sock");
    let inbox = listen(&sock);
    let mut cmd = env.doltctl_std();
    cmd.arg("run")
        .env("NOTIFY_SOCKET", &sock)
        // Every 100 ms.
        .env("WATCHDOG_USEC", "200000")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    env.extra.push(child);

    wait_until("READY=1", Duration::from_secs(90), || {
        has(&inbox, "READY=1")
    });
    // READY=1 means SELECT 1 already answered: it works now, and the state says running.
    let one = block_on(query_i64(&env.url(), "SELECT 1")).expect("SELECT 1 after READY=1");
    assert_eq!(one, vec![1]);
    assert!(env.state().unwrap().is_ready());
    let before_ready: Vec<String> = messages(&inbox)
        .into_iter()
        .take_while(|m| !m.lines().any(|l| l == "READY=1"))
        .filter(|m| m.starts_with("STATUS="))
        .collect();
    assert!(
        before_ready
            .iter()
            .any(|m| m.starts_with("STATUS=starting")),
        "{before_ready:?}"
    );
    let ready = messages(&inbox)
        .into_iter()
        .find(|m| m.lines().any(|l| l == "READY=1"))
        .unwrap();
    assert!(
        ready.contains(&format!(
            "STATUS=running: mysql://root@127.0.0.1:{}/",
            env.port
        )),
        "{ready:?}"
    );

    // The watchdog is fed again and again.
    let watchdogs = |i: &Inbox| messages(i).iter().filter(|m| *m == "WATCHDOG=1").count();
    let seen = watchdogs(&inbox);
    wait_until("more WATCHDOG=1", Duration::from_secs(10), || {
        watchdogs(&inbox) >= seen + 3
    });

    // dolt does not get the socket: it must not notify for us.
    let server = env.server();
    let environ = std::fs::read(format!("/proc/{}/environ", server.pid)).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    for var in ["NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID="] {
        assert!(
            !environ.split('\0').any(|v| v.starts_with(var)),
            "dolt got {var}"
        );
    }

    let sent_before_stop = inbox.lock().unwrap().len();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    let status = {
        let child = env.extra.last_mut().unwrap();
        let mut status = None;
        wait_until("doltctl run to exit", Duration::from_secs(60), || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    };
    assert!(status.success(), "{status:?}\n{}", env.log());
    assert!(!server.is_running());
    let after: Vec<String> = messages(&inbox)
        .into_iter()
        .skip(sent_before_stop)
        .filter(|m| m != "WATCHDOG=1")
        .collect();
    assert!(
        after
            .first()
            .is_some_and(|m| m.starts_with("STOPPING=1\nSTATUS=stopping")),
        "{after:?}"
    );
    assert_eq!(
        after.last().map(String::as_str),
        Some("STATUS=stopped"),
        "{after:?}"
    );
    assert_eq!(
        messages(&inbox)
            .iter()
            .filter(|m| m.contains("READY=1"))
            .count(),
        1
    );

    // The exchange, for people reading the test output (watchdog pings folded).
    let mut shown = Vec::new();
    let mut pings = 0;
    for m in messages(&inbox) {
        if m == "WATCHDOG=1" {
            pings += 1;
            continue;
        }
        if pings > 0 {
            shown.push(format!("({pings} x WATCHDOG=1)"));
            pings = 0;
        }
        shown.push(m.replace('\n', " | "));
    }
    eprintln!("sd_notify exchange:\n  {}", shown.join("\n  "));
}

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

/// `doltctl service ...` with this env's config, a home and XDG config dir of the test's own.
fn service(env: &TestEnv) -> assert_cmd::Command {
    let mut c = env.doltctl();
    c.env("HOME", env.dir.path().join("home"))
        .env("XDG_CONFIG_HOME", env.dir.path().join("xdg"))
        .arg("service");
    c
}

fn user_unit_dir(env: &TestEnv) -> std::path::PathBuf {
    env.dir.path().join("xdg/systemd/user")
}

/// `systemd-analyze verify` on a unit file: no error, and no warning about the file.
fn verify(unit: &Path) {
    let out = match std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
    {
        Ok(o) => o,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "CI=true and systemd-analyze cannot run ({e}): install the systemd package \
             (scripts/test does, as root)"
        ),
        Err(e) => {
            eprintln!("skipped systemd-analyze verify: {e} (install the systemd package)");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = unit.file_name().unwrap().to_string_lossy();
    let complaints: Vec<&str> = stderr.lines().filter(|l| l.contains(&*name)).collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify {}: {}\n{stderr}\n{}",
        unit.display(),
        out.status,
        std::fs::read_to_string(unit).unwrap()
    );
}

#[test]
fn generated_user_and_system_units_pass_systemd_analyze_verify() {
    let env = TestEnv::new();
    for scope in ["--user", "--system"] {
        let out = service(&env)
            .args(["install", scope, "--print"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let data_dir = std::fs::canonicalize(&env.data_dir).unwrap();
        for line in [
            "Type=notify".to_string(),
            "NotifyAccess=main".into(),
            "Restart=on-failure".into(),
            "KillMode=mixed".into(),
            // stop_timeout = "10s" in the test config, plus the margin.
            "TimeoutStopSec=25s".into(),
            format!(
                "ExecStart={} --config {} --data-dir {} run",
                std::fs::canonicalize(assert_cmd::cargo::cargo_bin("doltctl"))
                    .unwrap()
                    .display(),
                std::fs::canonicalize(&env.config).unwrap().display(),
                data_dir.display()
            ),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{scope}: no {line:?} in\n{text}"
            );
        }
        if scope == "--system" {
            assert!(
                text.contains(&format!("ReadWritePaths={}", data_dir.display())),
                "{text}"
            );
        }
        // `verify` wants the file under a valid unit name.
        let dir = env.dir.path().join(format!("verify{scope}"));
        std::fs::create_dir_all(&dir).unwrap();
        let unit = dir.join("doltctl-verify-test.service");
        std::fs::write(&unit, &text).unwrap();
        verify(&unit);
    }
    // --print wrote nothing.
    assert!(!env.dir.path().join("xdg").exists());
}

#[test]
fn service_install_and_uninstall_round_trip_and_leave_foreign_units_alone() {
    let env = TestEnv::new();
    let dir = user_unit_dir(&env);
    let out = service(&env).args(["install", "--user"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    let units: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(units.len(), 1, "{units:?}");
    let name = units[0].file_name().to_string_lossy().into_owned();
    assert!(
        name.starts_with("doltctl-data-") && name.ends_with(".service"),
        "{name}"
    );
    assert!(
        stdout.contains(&format!("systemctl --user enable --now {name}")),
        "{stdout}"
    );
    let path = dir.join(&name);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644);
    verify(&path);
    // A second install replaces its own unit.
    service(&env).args(["install", "--user"]).assert().success();

    // What `systemctl --user enable` would have made; uninstall removes it too.
    let wants = dir.join("default.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(&path, wants.join(&name)).unwrap();
    let out = service(&env)
        .args(["uninstall", "--user"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!path.exists());
    assert!(std::fs::symlink_metadata(wants.join(&name)).is_err());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("systemctl --user stop {name}")));
    service(&env)
        .args(["uninstall", "--user"])
        .assert()
        .success()
        .stdout(predicates::str::starts_with("not installed: "));

    // A unit doltctl did not write is neither overwritten nor removed.
    let foreign = dir.join("mine.service");
    let text = "[Unit]\nDescription=someone else's\n";
    std::fs::write(&foreign, text).unwrap();
    for args in [
        &["install", "--user", "--name", "mine"][..],
        &["uninstall", "--user", "--name", "mine.service"][..],
    ] {
        service(&env)
            .args(args)
            .assert()
            .code(1)
            .stderr(predicates::str::contains("was not written by doltctl"));
        assert_eq!(std::fs::read_to_string(&foreign).unwrap(), text);
    }
    // A bad name says what is allowed.
    service(&env)
        .args(["install", "--user", "--name", "a b"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("not allowed in a unit name"));
}

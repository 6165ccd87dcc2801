//! Real components for cluster tests: an etcd and a Toxiproxy, each started as a plain child
//! process of the test on reserved free ports, in its own temp dir, and killed on drop (on
//! panic too). No mocks: the tests talk to etcd and inject network faults through a real proxy.
//!
//! Binaries: `ETCD_BIN` / `TOXIPROXY_BIN`, else PATH, else `~/.local/bin`; installed by
//! `scripts/install-etcd.sh` and `scripts/install-toxiproxy.sh` (which `scripts/test` runs).
//! A missing binary fails the test with a message naming the script: tests never skip.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// How long a freshly started etcd or Toxiproxy may take to answer (a loaded 2-core CI box).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Resolves a tool: `$env_var`, else PATH, else `~/.local/bin/NAME`; panics naming `script`.
fn tool_bin(name: &str, env_var: &str, script: &str) -> PathBuf {
    let candidates = [
        std::env::var_os(env_var).map(PathBuf::from),
        which::which(name).ok(),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/bin").join(name)),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: run {script} (or scripts/test, which does), or set {env_var}")
        })
}

/// The etcd server binary.
pub fn etcd_bin() -> PathBuf {
    tool_bin("etcd", "ETCD_BIN", "scripts/install-etcd.sh")
}

/// etcdctl: next to etcd (Debian puts both in /usr/bin), else resolved like etcd.
pub fn etcdctl_bin() -> PathBuf {
    let sibling = etcd_bin().with_file_name("etcdctl");
    if sibling.is_file() {
        return sibling;
    }
    tool_bin("etcdctl", "ETCDCTL_BIN", "scripts/install-etcd.sh")
}

/// The toxiproxy-server binary.
pub fn toxiproxy_bin() -> PathBuf {
    tool_bin(
        "toxiproxy-server",
        "TOXIPROXY_BIN",
        "scripts/install-toxiproxy.sh",
    )
}

/// Polls `probe` until it returns `Some` or `timeout` passes; `what` names it in the panic.
/// `alive` is checked on every round so a child that died fails fast, with its log.
fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut alive: impl FnMut() -> Result<(), String>,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if let Err(why) = alive() {
            panic!("{what}: {why}");
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Err with the process's log if `child` has exited.
fn check_alive(child: &mut Option<Child>, log: &Path) -> Result<(), String> {
    match child.as_mut().map(Child::try_wait) {
        Some(Ok(None)) => Ok(()),
        Some(Ok(Some(status))) => Err(format!(
            "exited with {status}; its log ({}):\n{}",
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        )),
        Some(Err(e)) => Err(format!("cannot wait for it: {e}")),
        None => Err("it is not running".into()),
    }
}

/// SIGTERM, then SIGKILL if it has not exited within `grace`; reaps it either way.
fn terminate(child: &mut Child, grace: Duration) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pid = Pid::from_raw(child.id() as i32);
    // Un-pause first: a SIGSTOPped process would never act on SIGTERM.
    let _ = kill(pid, Signal::SIGCONT);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A log file for a child's stdout and stderr, appended to (a restart keeps the earlier run's).
fn log_file(path: &Path) -> (Stdio, Stdio) {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let f2 = f
        .try_clone()
        .unwrap_or_else(|e| panic!("dup {}: {e}", path.display()));
    (Stdio::from(f), Stdio::from(f2))
}

// ---------------------------------------------------------------------------------------------
// etcd
// ---------------------------------------------------------------------------------------------

/// A single-member etcd on free ports with its own data dir. Killed on drop.
pub struct Etcd {
    dir: tempfile::TempDir,
    name: String,
    client_port: u16,
    peer_port: u16,
    /// Where `/health` is served: the client port, or with TLS a plain-HTTP metrics port.
    health_port: u16,
    tls: Option<EtcdTls>,
    child: Option<Child>,
}

/// The certificate files of an etcd that speaks TLS to clients and checks theirs.
struct EtcdTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl EtcdTls {
    fn of(pki: &super::Pki) -> EtcdTls {
        EtcdTls {
            ca: pki.ca(),
            cert: pki.server_cert(),
            key: pki.server_key(),
            client_cert: pki.client_cert(),
            client_key: pki.client_key(),
        }
    }
}

impl Etcd {
    /// Starts etcd and waits until it reports itself healthy.
    pub fn start() -> Etcd {
        Etcd::start_with(None)
    }

    /// Starts an etcd whose client URL is `https://` with `pki`'s server certificate, which
    /// accepts only clients with a certificate `pki`'s CA signed (`--client-cert-auth`).
    pub fn start_tls(pki: &super::Pki) -> Etcd {
        Etcd::start_with(Some(EtcdTls::of(pki)))
    }

    fn start_with(tls: Option<EtcdTls>) -> Etcd {
        let dir = tempfile::Builder::new()
            .prefix("doltctl-etcd")
            .tempdir()
            .expect("temp dir for etcd");
        let client_port = free_port();
        let mut etcd = Etcd {
            dir,
            name: "test".into(),
            client_port,
            peer_port: free_port(),
            health_port: if tls.is_some() {
                free_port()
            } else {
                client_port
            },
            tls,
            child: None,
        };
        etcd.spawn();
        etcd
    }

    /// "http://127.0.0.1:PORT" (with TLS "https://"), the client URL (etcd clients, etcdctl
    /// --endpoints).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The client port (to put a [`Toxiproxy`] proxy in front of: "127.0.0.1:PORT").
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// "127.0.0.1:PORT" of the client port, as a proxy upstream.
    pub fn client_addr(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The data dir (kept across [`Etcd::restart`]).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Everything etcd logged, across restarts (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The pid of the running etcd, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the etcd process has not exited.
    pub fn is_running(&mut self) -> bool {
        let log = self.log_path();
        check_alive(&mut self.child, &log).is_ok()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "etcd is already running");
        let bin = etcd_bin();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let client = self.endpoint();
        let (out, err) = log_file(&self.log_path());
        let mut cmd = Command::new(&bin);
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.cert)
                .arg("--key-file")
                .arg(&t.key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth")
                // `/health` in plain HTTP, for the readiness check below.
                .arg("--listen-metrics-urls")
                .arg(format!("http://127.0.0.1:{}", self.health_port));
        }
        let child = cmd
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("{}={peer}", self.name)])
            // The cluster token and state only matter on the first start; with a data dir etcd
            // takes its membership from there.
            .args(["--initial-cluster-token", "doltctl-test"])
            .args(["--initial-cluster-state", "new"])
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            // No debug endpoints or metrics listeners beyond the client port.
            .args(["--enable-pprof=false"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        self.child = Some(child);
        self.wait_healthy();
    }

    /// Waits until `/health` on the client URL says `"health":"true"` (etcd has a leader and
    /// serves reads), failing fast with the log if etcd exits.
    pub fn wait_healthy(&mut self) {
        let addr: SocketAddr = ([127, 0, 0, 1], self.health_port).into();
        let log = self.log_path();
        let child = &mut self.child;
        wait_for(
            &format!("etcd on {addr} to be healthy"),
            START_TIMEOUT,
            || check_alive(child, &log),
            || etcd_healthy(addr, Duration::from_secs(1)).then_some(()),
        );
    }

    /// True if etcd answers its health check at `self.endpoint()` within a second.
    pub fn healthy(&self) -> bool {
        etcd_healthy(
            ([127, 0, 0, 1], self.health_port).into(),
            Duration::from_secs(1),
        )
    }

    /// Stops etcd cleanly (SIGTERM, then SIGKILL after 10 s) and reaps it. Its data dir and
    /// ports stay reserved for [`Etcd::restart`]. "etcd down" for the cluster under test.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(10));
        }
    }

    /// Kills etcd with SIGKILL (a crash: no clean shutdown) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes etcd with SIGSTOP: its port still accepts TCP connections (the kernel does) but
    /// nothing answers, like a hung host. [`Etcd::resume`], [`Etcd::stop`] or drop undo it.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Continues an etcd frozen by [`Etcd::pause`].
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = self.pid().expect("etcd is not running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)
            .unwrap_or_else(|e| panic!("{sig} to etcd {pid}: {e}"));
    }

    /// Restarts a TLS etcd with `pki`'s certificates instead (a rotation to a new CA): same
    /// ports and data.
    pub fn restart_with_new_certificates(&mut self, pki: &super::Pki) {
        assert!(self.tls.is_some(), "not a TLS etcd");
        self.stop();
        self.tls = Some(EtcdTls::of(pki));
        self.spawn();
    }

    /// Stops etcd if it runs, starts it again on the same ports with the same data (keys,
    /// leases, revision survive), and waits until it is healthy.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// `etcdctl` (API v3) pointed at this etcd; add the subcommand.
    pub fn etcdctl(&self) -> Command {
        let mut c = Command::new(etcdctl_bin());
        c.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.endpoint())
            .args(["--dial-timeout", "2s", "--command-timeout", "5s"]);
        if let Some(t) = &self.tls {
            c.arg("--cacert")
                .arg(&t.ca)
                .arg("--cert")
                .arg(&t.client_cert)
                .arg("--key")
                .arg(&t.client_key);
        }
        c
    }

    /// Runs `etcdctl ARGS` and returns its stdout; panics (with stderr) if it fails.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self
            .etcdctl()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run etcdctl: {e}"));
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Puts `key` = `value`.
    pub fn put(&self, key: &str, value: &str) {
        // `--` so a value starting with '-' is not read as a flag.
        self.ctl(&["put", "--", key, value]);
    }

    /// The value of `key`, or None if it does not exist.
    pub fn get(&self, key: &str) -> Option<String> {
        let out = self.ctl(&["get", "--print-value-only", "--", key]);
        // etcdctl prints the value and a newline, or nothing for a missing key.
        out.strip_suffix('\n').map(str::to_owned)
    }

    /// Every `key=value` under `prefix`, in key order.
    pub fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let out = self.ctl(&["get", "--prefix", "--", prefix]);
        let lines: Vec<&str> = out.lines().collect();
        lines
            .chunks(2)
            .map(|kv| {
                (
                    kv[0].to_owned(),
                    kv.get(1).copied().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }
}

/// True if etcd's `/health` at `addr` says `"health":"true"` within `timeout`.
pub fn etcd_healthy(addr: SocketAddr, timeout: Duration) -> bool {
    match http_request(addr, "GET", "/health", None, timeout) {
        Ok((200, body)) => body.replace(' ', "").contains("\"health\":\"true\""),
        _ => false,
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() && std::env::var_os("DOLTCTL_KEEP_FAILED").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
            eprintln!("kept etcd dir {}", dir.keep().display());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Toxiproxy
// ---------------------------------------------------------------------------------------------

/// A toxiproxy-server on a free API port. Killed on drop, with every proxy it runs.
pub struct Toxiproxy {
    dir: tempfile::TempDir,
    api: SocketAddr,
    child: Option<Child>,
}

impl Toxiproxy {
    /// Starts toxiproxy-server and waits until its API answers.
    pub fn start() -> Toxiproxy {
        let dir = tempfile::Builder::new()
            .prefix("doltctl-toxiproxy")
            .tempdir()
            .expect("temp dir for toxiproxy");
        let port = free_port();
        let bin = toxiproxy_bin();
        let log = dir.path().join("toxiproxy.log");
        let (out, err) = log_file(&log);
        let child = Command::new(&bin)
            .args(["-host", "127.0.0.1", "-port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut tp = Toxiproxy {
            dir,
            api: ([127, 0, 0, 1], port).into(),
            child: Some(child),
        };
        let api = tp.api;
        let child = &mut tp.child;
        wait_for(
            &format!("toxiproxy API on {api}"),
            START_TIMEOUT,
            || check_alive(child, &log),
            || match http_request(api, "GET", "/version", None, Duration::from_secs(1)) {
                Ok((200, _)) => Some(()),
                _ => None,
            },
        );
        tp
    }

    /// The API address ("127.0.0.1:PORT").
    pub fn api(&self) -> SocketAddr {
        self.api
    }

    /// Everything toxiproxy logged (connections, toxics; for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("toxiproxy.log")).unwrap_or_default()
    }

    /// Creates proxy `name` from a fresh free port on 127.0.0.1 to `upstream` ("HOST:PORT"),
    /// enabled. The upstream need not be up yet: toxiproxy dials it per connection.
    pub fn proxy(&self, name: &str, upstream: &str) -> ProxyHandle {
        let listen = free_port();
        let body = serde_json::json!({
            "name": name,
            "listen": format!("127.0.0.1:{listen}"),
            "upstream": upstream,
            "enabled": true,
        });
        api_call(self.api, "POST", "/proxies", Some(&body), &[201]);
        ProxyHandle {
            api: self.api,
            name: name.to_owned(),
            listen,
        }
    }

    /// Enables every proxy and removes every toxic (toxiproxy's `/reset`).
    pub fn reset(&self) {
        api_call(self.api, "POST", "/reset", None, &[200, 204]);
    }
}

impl Drop for Toxiproxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One proxy of a [`Toxiproxy`]: clients connect to `127.0.0.1:listen()` instead of the
/// upstream. Faults, and what they do to connections:
///
/// - [`disable`](ProxyHandle::disable), a hard partition: closes the listener and every open
///   connection through the proxy; new connections are refused until
///   [`enable`](ProxyHandle::enable). Peers notice at once (reset/EOF, ECONNREFUSED).
/// - [`add_timeout_toxic(0)`](ProxyHandle::add_timeout_toxic), a blackhole: connections stay
///   open and new ones are still accepted, but no byte gets through in either direction, so
///   peers notice only through their own timeouts (what a lost route or a dropped-packet
///   firewall looks like). With a timeout > 0 toxiproxy closes each connection after that many
///   ms of it. [`remove_toxics`](ProxyHandle::remove_toxics) closes the connections the
///   timeout toxic held (their data was dropped), then new connections work again.
/// - [`add_latency`](ProxyHandle::add_latency): delays data in both directions; connections
///   stay up.
#[derive(Clone, Debug)]
pub struct ProxyHandle {
    api: SocketAddr,
    name: String,
    listen: u16,
}

impl ProxyHandle {
    /// The port clients connect to (on 127.0.0.1).
    pub fn listen(&self) -> u16 {
        self.listen
    }

    /// "127.0.0.1:PORT" of [`ProxyHandle::listen`].
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.listen)
    }

    /// The proxy's name in toxiproxy.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn path(&self) -> String {
        format!("/proxies/{}", self.name)
    }

    /// Hard partition: refuses new connections and cuts open ones.
    pub fn disable(&self) {
        self.set_enabled(false);
    }

    /// Ends a [`ProxyHandle::disable`]: the proxy listens again on the same port.
    pub fn enable(&self) {
        self.set_enabled(true);
    }

    fn set_enabled(&self, enabled: bool) {
        let body = serde_json::json!({ "enabled": enabled });
        api_call(self.api, "POST", &self.path(), Some(&body), &[200]);
    }

    /// Blackhole (with `ms` = 0) or delayed cut: a `timeout` toxic on both directions. See the
    /// type's docs for what happens to connections.
    pub fn add_timeout_toxic(&self, ms: u64) {
        for stream in ["upstream", "downstream"] {
            self.add_toxic(
                &format!("timeout_{stream}"),
                "timeout",
                stream,
                serde_json::json!({ "timeout": ms }),
            );
        }
    }

    /// Adds `ms` of latency to each direction (so about 2 × `ms` to a round trip).
    pub fn add_latency(&self, ms: u64) {
        for stream in ["upstream", "downstream"] {
            self.add_toxic(
                &format!("latency_{stream}"),
                "latency",
                stream,
                serde_json::json!({ "latency": ms, "jitter": 0 }),
            );
        }
    }

    /// Adds any toxiproxy toxic (`kind`: latency, bandwidth, slow_close, timeout, reset_peer,
    /// slicer, limit_data) to `stream` ("upstream": client to server, "downstream": server to
    /// client), for every connection.
    pub fn add_toxic(&self, name: &str, kind: &str, stream: &str, attributes: serde_json::Value) {
        let body = serde_json::json!({
            "name": name,
            "type": kind,
            "stream": stream,
            "toxicity": 1.0,
            "attributes": attributes,
        });
        api_call(
            self.api,
            "POST",
            &format!("{}/toxics", self.path()),
            Some(&body),
            &[200],
        );
    }

    /// Removes every toxic of this proxy.
    pub fn remove_toxics(&self) {
        let list = api_call(
            self.api,
            "GET",
            &format!("{}/toxics", self.path()),
            None,
            &[200],
        );
        let toxics: Vec<serde_json::Value> = serde_json::from_str(&list)
            .unwrap_or_else(|e| panic!("toxiproxy listed toxics as {list:?}: {e}"));
        for t in toxics {
            let name = t["name"].as_str().expect("a toxic has a name");
            api_call(
                self.api,
                "DELETE",
                &format!("{}/toxics/{name}", self.path()),
                None,
                &[200, 204],
            );
        }
    }
}

/// Calls the toxiproxy API and returns the body; panics unless the status is one of `ok`.
fn api_call(
    api: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    ok: &[u16],
) -> String {
    match http_request(api, method, path, body, Duration::from_secs(10)) {
        Ok((status, text)) if ok.contains(&status) => text,
        Ok((status, text)) => panic!("toxiproxy {method} {path}: HTTP {status}: {text}"),
        Err(e) => panic!("toxiproxy {method} {path} at {api}: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client: one request per connection (Connection: close), JSON bodies. Enough
// for toxiproxy's API and etcd's /health and JSON gateway; no HTTP crate just for tests.
// ---------------------------------------------------------------------------------------------

/// Sends one request and returns (status, body). `timeout` bounds the connect and each read or
/// write, so a blackholed or frozen peer gives an error rather than a hang.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    use std::io::{Error, ErrorKind};
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: doltctl-tests\r\n\
         Accept: application/json\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let bad = |what: &str| Error::new(ErrorKind::InvalidData, format!("{what} from {addr}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of HTTP headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut payload = raw[split + 4..].to_vec();
    // "HTTP/1.1 200 OK"
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no HTTP status line"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        payload = dechunk(&payload).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok((status, String::from_utf8_lossy(&payload).into_owned()))
}

/// Decodes a chunked body (Go's servers chunk responses whose length they did not know).
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

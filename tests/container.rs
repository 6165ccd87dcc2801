//! The container image and the Kubernetes example, checked without Docker or a cluster (this
//! machine has neither): the image's entrypoint sequence (`scripts/docker-entrypoint.sh`:
//! `doltctl init`, then `doltctl run` with `config/docker.toml`) runs here against the real
//! dolt, on a fresh data dir and again on the same one (as the image's non-root user when the
//! test runs as root, as in CI), and the probes of the Dockerfile and
//! of `deploy/kubernetes/doltctl.yaml` are run against it as written. The manifests are parsed
//! (python3 with PyYAML, which scripts/test installs) and checked against the Dockerfile and
//! the image's config: user, ports, probe commands, grace period.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn read(p: &str) -> String {
    std::fs::read_to_string(repo(p)).unwrap()
}

/// The image's entrypoint, run as the image runs it, on `volume` (which need not exist).
struct Container {
    env: TestEnv,
    volume: PathBuf,
    config: PathBuf,
    sql_port: u16,
    metrics_port: u16,
    bin_dir: PathBuf,
    /// The dolt the container runs: the test's dolt, linked where the image's user can run it.
    dolt: PathBuf,
    /// The image's user (Dockerfile `USER`), when the test runs as root and can become it.
    user: Option<(u32, u32)>,
}

/// The image's `USER uid:gid`.
fn image_user() -> (u32, u32) {
    let dockerfile = read("Dockerfile");
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    let (uid, gid) = user.split_once(':').expect("USER uid:gid");
    (uid.parse().unwrap(), gid.parse().unwrap())
}

/// Gives the tree under `dir` to `uid:gid`, as the image's volume and home belong to its user.
fn chown_tree(dir: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).unwrap();
    if dir.is_dir() && !dir.is_symlink() {
        for e in std::fs::read_dir(dir).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

impl Container {
    fn new() -> Container {
        let env = TestEnv::new();
        let volume = env.dir.path().join("volume");
        let (sql_port, metrics_port) = (free_port(), free_port());
        // config/docker.toml as shipped, with this test's ports.
        let text = read("config/docker.toml");
        assert!(text.contains("\nport = 3306\n") && text.contains("listen = \"0.0.0.0:9850\""));
        let text = text
            .replace("\nport = 3306\n", &format!("\nport = {sql_port}\n"))
            .replace("0.0.0.0:9850", &format!("0.0.0.0:{metrics_port}"));
        let config = env.dir.path().join("docker.toml");
        std::fs::write(&config, text).unwrap();
        let bin_dir = assert_cmd::cargo::cargo_bin("doltctl")
            .parent()
            .unwrap()
            .to_path_buf();
        std::fs::create_dir_all(env.dir.path().join("home")).unwrap();
        // dolt in a directory of the test: the image's user may not reach the installed one
        // (~/.local/bin of root). A hard link when it can be one, else a copy.
        let dolt_dir = env.dir.path().join("bin");
        std::fs::create_dir_all(&dolt_dir).unwrap();
        let dolt = dolt_dir.join("dolt");
        if std::fs::hard_link(dolt_bin(), &dolt).is_err() {
            std::fs::copy(dolt_bin(), &dolt).unwrap();
        }
        // As root (CI), run everything as the image's non-root user, owning the test's tree.
        let user = nix::unistd::getuid().is_root().then(image_user);
        if let Some((uid, gid)) = user {
            chown_tree(env.dir.path(), uid, gid);
        }
        Container {
            env,
            volume,
            config,
            sql_port,
            metrics_port,
            bin_dir,
            dolt,
            user,
        }
    }

    /// A command with the image's environment (Dockerfile `ENV`): doltctl and dolt on PATH.
    fn command(&self, program: &str) -> Command {
        let dockerfile = read("Dockerfile");
        for var in [
            "DOLTCTL_CONFIG=/etc/doltctl/doltctl.toml",
            "DOLT_DISABLE_EVENT_FLUSH=1",
            "DOLT_ROOT_HOST=%",
        ] {
            assert!(dockerfile.contains(var), "the Dockerfile sets {var}");
        }
        let path = format!(
            "{}:{}:/usr/bin:/bin",
            self.bin_dir.display(),
            self.dolt.parent().unwrap().display()
        );
        let mut c = Command::new(program);
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            c.uid(uid).gid(gid);
        }
        c.env_clear()
            .env("PATH", path)
            .env("HOME", self.env.dir.path().join("home"))
            .env("DOLTCTL_CONFIG", &self.config)
            .env("DOLT_BIN", &self.dolt)
            .env("DOLT_DISABLE_EVENT_FLUSH", "1")
            .env("DOLT_ROOT_HOST", "%")
            .env("DOLT_ROOT_PATH", self.env.root())
            // What the image's entrypoint reads.
            .env("DOLTCTL_DATA_DIR", &self.volume)
            .env("DOLTCTL_DB", "app,shop")
            .env("DOLTCTL_PASSWORD", "s3cret")
            .current_dir(self.env.dir.path());
        c
    }

    /// Starts the entrypoint; it becomes the supervisor (exec), so its pid is doltctl's.
    fn start(&mut self) -> i32 {
        let log = std::fs::File::create(self.env.dir.path().join("entrypoint.log")).unwrap();
        let child: Child = self
            .command(repo("scripts/docker-entrypoint.sh").to_str().unwrap())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        self.env.extra.push(child);
        wait_until("the server ready", Duration::from_secs(120), || {
            self.probe(&["doltctl", "--data-dir", "/data", "status"])
        });
        pid
    }

    /// Runs a probe command as written in the Dockerfile or the manifest, with /data being
    /// this test's volume: true when it exits 0.
    fn probe(&self, argv: &[&str]) -> bool {
        let volume = self.volume.to_str().unwrap();
        let argv: Vec<String> = argv.iter().map(|a| a.replace("/data", volume)).collect();
        self.command(&argv[0])
            .args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.env.dir.path().join("entrypoint.log")).unwrap_or_default()
    }

    /// SIGTERM, as `docker stop` and the kubelet send it; the entrypoint (now doltctl) exits 0.
    fn stop(&mut self, pid: i32) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).unwrap();
        let child = self.env.extra.last_mut().unwrap();
        let mut status = None;
        wait_until("the entrypoint to exit", Duration::from_secs(30), || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        assert!(status.unwrap().success(), "{:?}\n{}", status, self.log());
        assert!(self.env.dolt_servers().is_empty());
    }

    fn url(&self, host: &str) -> String {
        format!("mysql://root:s3cret@{host}:{}/", self.sql_port)
    }
}

/// An IPv4 address of this host that is not loopback, if it has one.
fn non_loopback_address() -> Option<String> {
    nix::ifaddrs::getifaddrs()
        .ok()?
        .filter_map(|i| i.address?.as_sockaddr_in().map(|a| a.ip()))
        .find(|ip| !ip.is_loopback())
        .map(|ip| ip.to_string())
}

/// The argv of the Dockerfile's `HEALTHCHECK ... CMD [...]`.
fn healthcheck() -> Vec<String> {
    let dockerfile = read("Dockerfile").replace("\\\n", " ");
    let line = dockerfile
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("a HEALTHCHECK");
    let json = &line[line.find(" CMD ").expect("CMD") + 5..];
    serde_json::from_str(json.trim()).expect("HEALTHCHECK CMD in exec (JSON) form")
}

#[test]
fn the_entrypoint_inits_a_fresh_volume_serves_on_every_interface_and_stops_on_sigterm() {
    let mut c = Container::new();
    assert!(!c.volume.exists());
    let pid = c.start();
    if let Some((uid, _)) = c.user {
        let st = std::fs::metadata(c.volume.join(".doltctl/state.json")).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&st),
            uid,
            "runs as the image's user"
        );
    }
    let log = c.log();
    assert!(
        log.contains("not a loopback address"),
        "metrics exposure is warned: {log}"
    );
    assert!(!log.contains("DOLTCTL_PASSWORD is not set"), "{log}");

    // Root, with the password, from any host (DOLT_ROOT_HOST=%), on every interface.
    let host = non_loopback_address().unwrap_or_else(|| "127.0.0.1".into());
    block_on(async {
        let dbs = {
            let mut conn = mysql_async::Conn::from_url(c.url(&host).as_str())
                .await
                .unwrap();
            use mysql_async::prelude::Queryable;
            let v: Vec<String> = conn.query("SHOW DATABASES").await.unwrap();
            conn.query_drop(
                "USE app; CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1); \
                 CALL dolt_commit('-Am', 'one')",
            )
            .await
            .unwrap();
            conn.disconnect().await.unwrap();
            v
        };
        assert!(
            dbs.contains(&"app".to_string()) && dbs.contains(&"shop".to_string()),
            "{dbs:?}"
        );
    });
    // The metrics endpoint listens on every interface too.
    let metrics = std::net::TcpStream::connect((host.as_str(), c.metrics_port));
    assert!(metrics.is_ok(), "metrics on {host}:{}", c.metrics_port);

    // The liveness probe of the manifest passes while the server runs.
    let manifest = manifest();
    let liveness = probe_command(&manifest, "livenessProbe");
    let liveness: Vec<&str> = liveness.iter().map(String::as_str).collect();
    assert!(c.probe(&liveness));
    c.stop(pid);
    assert!(
        !c.probe(&liveness),
        "liveness fails once the supervisor is gone"
    );

    // A restarted container: init changes nothing, the data is still there.
    let pid = c.start();
    let rows = block_on(query_i64(
        &format!("{}app", c.url("127.0.0.1")),
        "SELECT id FROM t",
    ));
    assert_eq!(rows.unwrap(), [1]);
    c.stop(pid);
}

#[test]
fn the_images_healthcheck_and_the_manifests_probes_pass_against_the_entrypoint() {
    let mut c = Container::new();
    let pid = c.start();
    let manifest = manifest();
    let mut probes = vec![healthcheck()];
    for p in ["startupProbe", "readinessProbe", "livenessProbe"] {
        probes.push(probe_command(&manifest, p));
    }
    for argv in &probes {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        assert!(c.probe(&argv), "{argv:?} fails against a ready server");
    }
    c.stop(pid);
    for argv in &probes[..3] {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        assert!(!c.probe(&argv), "{argv:?} passes with nothing running");
    }
}

/// The Kubernetes example's documents as JSON, parsed by PyYAML.
fn manifest() -> Vec<serde_json::Value> {
    let script = "import json, sys, yaml\n\
                  print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(repo("deploy/kubernetes/doltctl.yaml"))
        .output();
    match out {
        Ok(o) if o.status.success() => serde_json::from_slice(&o.stdout).unwrap(),
        other => {
            let why = format!(
                "cannot parse the manifest with python3 and PyYAML (scripts/test installs \
                 python3-yaml): {other:?}"
            );
            panic!("{why}");
        }
    }
}

fn statefulset(docs: &[serde_json::Value]) -> &serde_json::Value {
    docs.iter()
        .find(|d| d["kind"] == "StatefulSet")
        .expect("a StatefulSet")
}

fn container_of(docs: &[serde_json::Value]) -> &serde_json::Value {
    &statefulset(docs)["spec"]["template"]["spec"]["containers"][0]
}

fn probe_command(docs: &[serde_json::Value], probe: &str) -> Vec<String> {
    serde_json::from_value(container_of(docs)[probe]["exec"]["command"].clone())
        .unwrap_or_else(|e| panic!("{probe}: {e}"))
}

#[test]
fn the_kubernetes_example_matches_the_image() {
    let docs = manifest();
    let cfg = doltctl::Config::load(&repo("config/docker.toml")).unwrap();
    let dockerfile = read("Dockerfile");
    let sts = statefulset(&docs);
    let pod = &sts["spec"]["template"]["spec"];
    let container = container_of(&docs);
    assert_eq!(sts["spec"]["replicas"], 1);

    // The image's user, ports and healthcheck.
    let (uid, gid) = image_user();
    assert_eq!(pod["securityContext"]["runAsUser"], uid);
    assert_eq!(pod["securityContext"]["runAsGroup"], gid);
    assert_eq!(pod["securityContext"]["fsGroup"], gid);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let doltctl::config::PortSetting::Fixed(sql_port) = cfg.server.port else {
        panic!("the image's config has a fixed port");
    };
    let metrics_port = cfg.metrics.listen.expect("metrics on in the image").port();
    let expose = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE");
    assert_eq!(expose, format!("{sql_port} {metrics_port}"));
    let ports: Vec<u64> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [u64::from(sql_port), u64::from(metrics_port)]);
    let annotations = &sts["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], metrics_port.to_string());
    assert_eq!(probe_command(&docs, "readinessProbe"), healthcheck());
    assert_eq!(probe_command(&docs, "startupProbe"), healthcheck());

    // The data volume.
    assert_eq!(cfg.data_dir, Path::new("/data"));
    assert!(dockerfile.contains("\nVOLUME /data\n"));
    let claim = &sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"];
    let mount = &container["volumeMounts"][0];
    assert_eq!(&mount["name"], claim);
    assert_eq!(mount["mountPath"], "/data");

    // The kubelet's SIGKILL comes after doltctl's own (stop_timeout), with room to spare.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(Duration::from_secs(grace) >= cfg.server.stop_timeout * 2);

    // The Service.
    let svc = docs.iter().find(|d| d["kind"] == "Service").unwrap();
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["port"], u64::from(sql_port));
    assert_eq!(
        svc["spec"]["selector"],
        sts["spec"]["selector"]["matchLabels"]
    );
}

//! A replicated cluster of three real dolt servers, each under its own doltctl supervisor
//! (own data dir, Dolt root and OS-given ports on 127.0.0.1), electing the primary through one
//! real etcd; network faults through a real Toxiproxy. Each test prints what it measured
//! (`cargo test --test cluster -- --nocapture`).
//!
//! The tests share a 2-core machine with everything else: each cluster test holds one lock
//! (three dolts at a time), deadlines are generous, and `lease_ttl` is 3s.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{ClusterNode as Node, *};
use mysql_async::prelude::Queryable;

const TTL: Duration = Duration::from_secs(3);

/// One cluster at a time in this binary: three dolts each are enough for two cores.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

struct Cluster {
    nodes: Vec<Node>,
    etcd: Etcd,
}

impl Cluster {
    /// Three nodes on one etcd; `a_etcd` overrides node a's endpoint (a proxy).
    fn new(etcd: Etcd, a_etcd: Option<String>) -> Cluster {
        Cluster::with_links(etcd, a_etcd, |_, _| None)
    }

    /// As [`Cluster::new`]; `link(from, to)` may give the port `from` pushes `to`'s
    /// replication to (a proxy in front of `to`'s remotesapi port).
    fn with_links(
        etcd: Etcd,
        a_etcd: Option<String>,
        link: impl Fn(&str, &Node) -> Option<u16>,
    ) -> Cluster {
        use_built_doltctl();
        let nodes: Vec<Node> = ["a", "b", "c"].iter().map(|n| Node::new(n)).collect();
        for (i, n) in nodes.iter().enumerate() {
            let peers: Vec<PeerAt> = nodes
                .iter()
                .filter(|p| p.name != n.name)
                .map(|p| p.at_via(link(&n.name, p).unwrap_or(p.rport)))
                .collect();
            let endpoint = match (&a_etcd, i) {
                (Some(e), 0) => e.clone(),
                _ => etcd.endpoint(),
            };
            n.write_config(&endpoint, &peers);
        }
        Cluster { nodes, etcd }
    }

    /// `doltctl cluster status --json` through node `via`.
    fn status(&self, via: &str) -> serde_json::Value {
        self.node(via).status_json()
    }

    /// `caught_up` of `node` in `cluster status`.
    fn caught_up_of(&self, node: &str) -> Option<bool> {
        self.node(node).caught_up()
    }

    /// Waits until the leader has marked each of `nodes` caught up (or, with `want` false,
    /// not caught up).
    async fn wait_marked(&self, nodes: &[&str], want: bool, timeout: Duration) -> Duration {
        let nodes: Vec<&Node> = nodes.iter().map(|n| self.node(n)).collect();
        common::wait_marked(&nodes, want, timeout).await
    }

    /// Starts a first (it takes the lease), then b and c.
    fn start(&self) {
        for n in &self.nodes {
            n.start();
        }
    }

    fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    async fn roles(&self) -> Vec<Option<(String, u64)>> {
        let mut v = Vec::new();
        for n in &self.nodes {
            v.push(n.role().await);
        }
        v
    }

    /// Names of the nodes whose dolt says primary.
    async fn primaries(&self) -> Vec<String> {
        let mut v = Vec::new();
        for n in &self.nodes {
            if n.role().await.is_some_and(|r| r.0 == "primary") {
                v.push(n.name.clone());
            }
        }
        v
    }

    /// Waits until exactly one node is primary and the others standby at its epoch.
    async fn settled(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let roles = self.roles().await;
            let primaries: Vec<usize> = (0..3)
                .filter(|i| roles[*i].as_ref().is_some_and(|r| r.0 == "primary"))
                .collect();
            if primaries.len() == 1 {
                let epoch = roles[primaries[0]].as_ref().unwrap().1;
                if roles
                    .iter()
                    .all(|r| r.as_ref().is_some_and(|r| r.1 == epoch))
                {
                    return self.nodes[primaries[0]].name.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "cluster not settled after {timeout:?}: {roles:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn client(&self, via: &str) -> doltctl::Client {
        let mut cfg = doltctl::Config::load(&self.node(via).config()).unwrap();
        cfg.server.dolt_bin = dolt_bin().to_string_lossy().into_owned();
        doltctl::Client::from_config(cfg).database("app")
    }
}

/// What a continuous writer saw.
#[derive(Debug, Default)]
struct Writes {
    /// Ids acknowledged without warning 3024.
    acked: Vec<i64>,
    /// Ids acknowledged with warning 3024 (not durable).
    unreplicated: Vec<i64>,
    /// Errors, with the time since the writer started.
    errors: Vec<(Duration, String)>,
    /// Acknowledgement times (since start) of every write.
    ack_times: Vec<Duration>,
}

/// Inserts first_id, first_id + 1, ... into app.w through the library client (which follows the primary)
/// until `stop`; an error drops the connection and asks the client for a new one.
fn writer(
    client: doltctl::Client,
    first_id: i64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Writes> {
    std::thread::spawn(move || {
        block_on(async move {
            let mut w = Writes::default();
            let start = Instant::now();
            let mut id = first_id - 1;
            let mut conn: Option<mysql_async::Conn> = None;
            while !stop.load(Ordering::Relaxed) {
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => match client.conn().await {
                        Ok(c) => conn.insert(c),
                        Err(e) => {
                            w.errors.push((start.elapsed(), format!("connect: {e}")));
                            continue;
                        }
                    },
                };
                id += 1;
                match c.query_drop(format!("INSERT INTO w VALUES ({id})")).await {
                    Ok(()) => {
                        w.ack_times.push(start.elapsed());
                        match doltctl::client::unreplicated_warning(c).await {
                            Ok(None) => w.acked.push(id),
                            _ => w.unreplicated.push(id),
                        }
                    }
                    Err(e) => {
                        w.errors.push((start.elapsed(), e.to_string()));
                        conn = None;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            w
        })
    })
}

/// Each kind of error the writer saw, with how often and when first and last.
fn error_summary(w: &Writes) -> Vec<String> {
    let mut kinds: std::collections::BTreeMap<String, (usize, Duration, Duration)> =
        Default::default();
    for (t, e) in &w.errors {
        // One kind per message whatever the id or address in it.
        let kind: String = e
            .chars()
            .take(100)
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .collect();
        let k = kinds.entry(kind).or_insert((0, *t, *t));
        k.0 += 1;
        k.2 = *t;
    }
    kinds
        .into_iter()
        .map(|(e, (n, first, last))| format!("{n}x {e:?} ({first:.2?}..{last:.2?})"))
        .collect()
}

/// Waits until a write through `client` is acknowledged without warning 3024: every standby
/// caught up (a returned node takes some seconds). Returns how long that took.
async fn caught_up(client: &doltctl::Client, timeout: Duration) -> Duration {
    let t = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        if let Ok(mut c) = client.conn().await {
            let ok = c
                .query_drop(format!("REPLACE INTO p VALUES (1, {n})"))
                .await
                .is_ok();
            if ok
                && matches!(
                    doltctl::client::unreplicated_warning(&mut c).await,
                    Ok(None)
                )
            {
                return t.elapsed();
            }
        }
        assert!(
            t.elapsed() < timeout,
            "standbys not caught up after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The ids in app.w on `node`.
async fn ids(node: &Node) -> BTreeSet<i64> {
    let url = format!("{}app", node.url());
    query_i64(&url, "SELECT id FROM w")
        .await
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Waits until `node` has `more` rows in app.w beyond what it has now: the writer is getting
/// writes through there.
async fn rows_grow(node: &Node, more: usize) {
    let (start, t) = (ids(node).await.len(), Instant::now());
    while ids(node).await.len() < start + more {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no {more} new rows on {} within 30s",
            node.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn bootstrap(cl: &Cluster) -> String {
    cl.start();
    let primary = cl.settled(Duration::from_secs(30)).await;
    let p = cl.node(&primary);
    exec(
        &p.url(),
        "CREATE DATABASE app; CREATE TABLE app.w (id BIGINT PRIMARY KEY); \
         CREATE TABLE app.p (k INT PRIMARY KEY, v BIGINT)",
    )
    .await
    .unwrap();
    let standbys: Vec<&str> = cl
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| *n != primary)
        .collect();
    cl.wait_marked(&standbys, true, Duration::from_secs(30))
        .await;
    primary
}

#[test]
fn bootstrap_host_loss_under_writes_and_the_old_primarys_return() {
    let _serial = serial();
    let cl = Cluster::new(Etcd::start(), None);
    block_on(async {
        // Bootstrap: a started first and took the lease; exactly one primary.
        let primary = bootstrap(&cl).await;
        assert_eq!(primary, "a");
        assert_eq!(cl.primaries().await, vec!["a".to_string()]);
        let state = cl.node("a").state().unwrap();
        let view = state.cluster.expect("cluster view in the state file");
        assert_eq!(
            (view.node.as_str(), view.role),
            ("a", doltctl::ClusterRole::Primary)
        );
        // Writes replicate (ack timeout on: on the standbys when acknowledged).
        exec(
            &format!("{}app", cl.node("a").url()),
            "INSERT INTO w VALUES (-1)",
        )
        .await
        .unwrap();
        for s in ["b", "c"] {
            assert!(ids(cl.node(s)).await.contains(&-1), "row not on {s}");
        }
        // Each node has its own Dolt root, whatever DOLT_ROOT_PATH said.
        for n in &cl.nodes {
            assert!(
                n.log().contains("ignoring the inherited DOLT_ROOT_PATH"),
                "{}",
                n.log()
            );
        }

        let rounds: usize = std::env::var("DOLTCTL_FAILOVER_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let mut times = Vec::new();
        let mut current = primary;
        for round in 1..=rounds {
            let writer_via = cl
                .nodes
                .iter()
                .find(|n| n.name != current)
                .unwrap()
                .name
                .clone();
            let stop = Arc::new(AtomicBool::new(false));
            let first = ids(cl.node(&current)).await.last().map_or(1, |m| m + 1);
            let handle = writer(cl.client(&writer_via), first, stop.clone());
            // Some acknowledged writes first.
            rows_grow(cl.node(&current), 20).await;
            let old = cl.node(&current);
            let before = ids(old).await.len();
            let killed_at = Instant::now();
            old.kill_host();
            // A standby is primary within TTL + 2 s (+ margin for a loaded machine).
            let new_primary = loop {
                let mut found = None;
                for n in cl.nodes.iter().filter(|n| n.name != current) {
                    if n.role().await.is_some_and(|r| r.0 == "primary") {
                        found = Some(n.name.clone());
                    }
                }
                if let Some(f) = found {
                    break f;
                }
                assert!(
                    killed_at.elapsed() < TTL + Duration::from_secs(6),
                    "no standby promoted within {:?}",
                    killed_at.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let failover = killed_at.elapsed();
            times.push(failover);
            // The writer carries on against the new primary.
            rows_grow(cl.node(&new_primary), 20).await;
            stop.store(true, Ordering::Relaxed);
            let w = handle.join().unwrap();
            let on_new = ids(cl.node(&new_primary)).await;
            let lost: Vec<i64> = w
                .acked
                .iter()
                .filter(|i| !on_new.contains(i))
                .copied()
                .collect();
            assert!(
                lost.is_empty(),
                "acknowledged rows lost in the failover: {lost:?}"
            );
            // How long the client could not write: the longest gap between two acks.
            let gap = w
                .ack_times
                .windows(2)
                .map(|p| p[1] - p[0])
                .max()
                .unwrap_or_default();
            let first_err = w.errors.first().map(|e| e.0);
            let last_err = w.errors.last().map(|e| e.0);
            println!(
                "failover round {round}: {current} lost -> {new_primary} primary after {} ms; \
                 rows on the old primary before: {before}; acknowledged without warning: {}, \
                 with warning 3024: {}, all acknowledged present on {new_primary}: {} rows there; \
                 client errors: {} (first at {:?}, last at {:?}), longest time without an ack {} ms: {:?}",
                failover.as_millis(),
                w.acked.len(),
                w.unreplicated.len(),
                on_new.len(),
                w.errors.len(),
                first_err,
                last_err,
                gap.as_millis(),
                error_summary(&w)
            );
            // The old primary returns: standby at the new epoch, refuses writes.
            old.start();
            let settled = cl.settled(Duration::from_secs(30)).await;
            assert_eq!(settled, new_primary);
            let new_epoch = cl.node(&new_primary).role().await.unwrap().1;
            assert_eq!(old.role().await, Some(("standby".into(), new_epoch)));
            let refused = exec(&format!("{}app", old.url()), "INSERT INTO w VALUES (-2)").await;
            assert!(refused.is_err(), "the old primary took a write");
            let catch_up = caught_up(&cl.client(&new_primary), Duration::from_secs(60)).await;
            let standbys: Vec<&str> = cl
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .filter(|n| *n != new_primary)
                .collect();
            let marked = cl
                .wait_marked(&standbys, true, Duration::from_secs(30))
                .await;
            println!("  {} back as standby at epoch {new_epoch}; writes replicated to every standby again after {} ms, every standby electable {} ms later", old.name, catch_up.as_millis(), marked.as_millis());
            current = new_primary;
        }
        let mut ms: Vec<u128> = times.iter().map(|t| t.as_millis()).collect();
        ms.sort();
        println!("failover times (ms): {ms:?}; median {}", ms[ms.len() / 2]);
    });
}

#[test]
fn switchover_loses_no_acknowledged_write() {
    let _serial = serial();
    let cl = Cluster::new(Etcd::start(), None);
    block_on(async {
        let primary = bootstrap(&cl).await;
        // A library pool, opened before the switchover.
        let pool = cl.client("c").pool().await.unwrap();
        pool.get_conn()
            .await
            .unwrap()
            .query_drop("REPLACE INTO p VALUES (2, 0)")
            .await
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = writer(cl.client("c"), 1, stop.clone());
        rows_grow(cl.node(&primary), 20).await;
        let t = Instant::now();
        let out = cl
            .node("c")
            .doltctl()
            .args(["cluster", "switchover", "--to", "b"])
            .output()
            .unwrap();
        let took = t.elapsed();
        assert!(
            out.status.success(),
            "switchover: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            cl.node(&primary).log()
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "b is the primary"
        );
        // The writer carries on against b.
        rows_grow(cl.node("b"), 20).await;
        stop.store(true, Ordering::Relaxed);
        let w = handle.join().unwrap();
        assert_eq!(cl.settled(Duration::from_secs(20)).await, "b");
        let on_b = ids(cl.node("b")).await;
        let lost: Vec<i64> = w
            .acked
            .iter()
            .filter(|i| !on_b.contains(i))
            .copied()
            .collect();
        assert!(
            lost.is_empty(),
            "acknowledged rows lost in the switchover: {lost:?}"
        );
        assert!(w.unreplicated.is_empty(), "{:?}", w.unreplicated);
        println!(
            "switchover a -> b in {} ms; acknowledged {} rows, all on b; client errors: {:?}",
            took.as_millis(),
            w.acked.len(),
            error_summary(&w)
        );
        // The pool follows the primary: its next connection is b's.
        let t = Instant::now();
        let mut errors = Vec::new();
        loop {
            assert!(t.elapsed() < Duration::from_secs(20), "{errors:?}");
            let r = match pool.get_conn().await {
                Ok(mut conn) => conn
                    .query_drop("REPLACE INTO p VALUES (2, 1)")
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match r {
                Ok(()) => break,
                Err(e) => errors.push(e),
            }
        }
        assert_eq!(
            cl.node("b").count("SELECT v FROM app.p WHERE k = 2").await,
            Some(1)
        );
        println!("a pool opened before the switchover wrote to b; errors on the way: {errors:?}");
        // status shows b as the leader, with lag per database.
        let out = cl
            .node("a")
            .doltctl()
            .args(["cluster", "status", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["leader"], "b");
        assert!(v["lease_expires_at"].is_string(), "{v}");
        let a = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "a")
            .unwrap();
        assert_eq!(a["role"], "standby");
        assert_eq!(a["replication"][0]["database"], "app", "{v}");
        // Without --to: any standby takes over.
        let out = cl
            .node("a")
            .doltctl()
            .args(["cluster", "switchover"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let next = cl.settled(Duration::from_secs(20)).await;
        assert_ne!(next, "b");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{next} is the primary")
        );
    });
}

#[test]
fn etcd_down_means_no_promotion_and_read_only_until_it_returns() {
    let _serial = serial();
    let mut cl = Cluster::new(Etcd::start(), None);
    block_on(bootstrap(&cl));
    cl.etcd.stop();
    let stopped = Instant::now();
    block_on(async {
        // The primary fences itself (ttl/2 after its last renewal) ...
        loop {
            if cl.primaries().await.is_empty() {
                break;
            }
            assert!(
                stopped.elapsed() < TTL + Duration::from_secs(5),
                "still a primary"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let fenced = stopped.elapsed();
        // ... and nobody is promoted while etcd is down: writes are refused everywhere.
        let watch_until = Instant::now() + TTL * 2;
        while Instant::now() < watch_until {
            let p = cl.primaries().await;
            assert!(p.is_empty(), "a primary without etcd: {p:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for n in &cl.nodes {
            let r = exec(&format!("{}app", n.url()), "INSERT INTO w VALUES (7)").await;
            assert!(r.is_err(), "node {} took a write with etcd down", n.name);
        }
        // The CLI says so.
        let out = cl
            .node("b")
            .doltctl()
            .args(["cluster", "status"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(text.contains("UNREACHABLE"), "{text}");
        assert_eq!(out.status.code(), Some(4), "{text}");
        println!(
            "etcd down: primary fenced after {} ms; no primary for {:?}",
            fenced.as_millis(),
            TTL * 2
        );
    });
    cl.etcd.restart();
    block_on(async {
        let back = Instant::now();
        let p = cl.settled(Duration::from_secs(30)).await;
        exec(
            &format!("{}app", cl.node(&p).url()),
            "INSERT INTO w VALUES (8)",
        )
        .await
        .unwrap();
        println!(
            "etcd back: {p} primary after {} ms",
            back.elapsed().as_millis()
        );
    });
}

#[test]
fn a_wiped_standby_is_brought_up_to_date() {
    let _serial = serial();
    let cl = Cluster::new(Etcd::start(), None);
    block_on(async {
        let primary = bootstrap(&cl).await;
        let p = cl.node(&primary);
        exec(
            &format!("{}app", p.url()),
            "INSERT INTO w VALUES (1),(2),(3); CALL dolt_commit('-Am', 'rows')",
        )
        .await
        .unwrap();
        let c = cl.node("c");
        c.stop();
        std::fs::remove_dir_all(c.data_dir().join("app")).unwrap();
        c.start();
        let t = Instant::now();
        loop {
            if c.count("SELECT COUNT(*) FROM app.w").await == Some(3) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "the wiped standby did not get the data:\n{}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "wiped standby had every row {} ms after its start",
            t.elapsed().as_millis()
        );
    });
}

#[test]
fn a_primary_cut_off_from_etcd_fences_itself_before_another_is_promoted() {
    let _serial = serial();
    let etcd = Etcd::start();
    let proxy_server = Toxiproxy::start();
    let proxy = proxy_server.proxy("etcd_a", &etcd.client_addr());
    let cl = Cluster::new(etcd, Some(format!("http://{}", proxy.addr())));
    block_on(async {
        assert_eq!(bootstrap(&cl).await, "a");
        // A blackhole: a's requests to etcd hang (no error), as on a lost route.
        proxy.add_timeout_toxic(0);
        let cut = Instant::now();
        let (mut a_gone, mut other_primary) = (None, None);
        while other_primary.is_none() {
            if a_gone.is_none() && cl.node("a").role().await.is_none_or(|r| r.0 != "primary") {
                a_gone = Some(cut.elapsed());
            }
            for n in ["b", "c"] {
                if cl.node(n).role().await.is_some_and(|r| r.0 == "primary") {
                    other_primary = Some((n, cut.elapsed()));
                }
            }
            assert!(cut.elapsed() < TTL + Duration::from_secs(8), "no promotion");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (new, promoted) = other_primary.unwrap();
        let fenced = a_gone.expect("a still primary when another was promoted");
        assert!(
            fenced < promoted,
            "a fenced at {fenced:?}, {new} promoted at {promoted:?}"
        );
        assert!(
            cl.node("a").log().contains("FENCING"),
            "{}",
            cl.node("a").log()
        );
        println!(
            "partition: a fenced itself {} ms after the cut, {new} promoted at {} ms",
            fenced.as_millis(),
            promoted.as_millis()
        );
        // Healed: a rejoins as a standby of the new primary.
        proxy.remove_toxics();
        assert_eq!(cl.settled(Duration::from_secs(30)).await, new);
    });
}

#[test]
fn bad_cluster_configs_and_an_unreachable_etcd_are_refused_at_start() {
    use_built_doltctl();
    let a = Node::new("a");
    let b = Node::new("b");
    // etcd on a port nobody listens on.
    a.write_config(&format!("http://127.0.0.1:{}", free_port()), &[b.at()]);
    let out = a.doltctl().arg("start").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("etcd"), "{err}");
    // The node listed among its peers.
    a.write_config("http://127.0.0.1:2379", &[b.at(), a.at()]);
    let out = a.doltctl().arg("start").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("which is this node"), "{err}");
}

/// Waits until `node` is primary (or panics after `timeout`); how long it took.
async fn becomes_primary(node: &Node, timeout: Duration) -> Duration {
    node.wait_role("primary", timeout).await
}

#[test]
fn a_standby_not_known_to_be_caught_up_is_never_promoted_and_failover_forces_one() {
    let _serial = serial();
    let cl = Cluster::new(Etcd::start(), None);
    block_on(async {
        assert_eq!(bootstrap(&cl).await, "a");
        let (a, b, c) = (cl.node("a"), cl.node("b"), cl.node("c"));
        // c is down while a takes writes (acknowledged with warning 3024: c missed them);
        // the leader stops counting c as caught up.
        c.stop();
        exec(
            &format!("{}app", a.url()),
            "INSERT INTO w VALUES (1),(2),(3)",
        )
        .await
        .unwrap();
        cl.wait_marked(&["c"], false, Duration::from_secs(30)).await;
        // Then the primary and the standby that has those rows are lost, and c returns.
        a.kill_host();
        b.kill_host();
        c.start();
        // c is not known to be caught up: no election, c stays a read-only standby.
        let until = Instant::now() + TTL * 2 + Duration::from_secs(2);
        while Instant::now() < until {
            assert!(cl.primaries().await.is_empty(), "{}", c.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(exec(&format!("{}app", c.url()), "INSERT INTO w VALUES (9)")
            .await
            .is_err());
        assert_eq!(cl.caught_up_of("c"), Some(false));
        assert!(c.log().contains("not known to be caught up"), "{}", c.log());
        let out = c.doltctl().args(["cluster", "status"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(text.contains("NOT caught up"), "{text}");
        assert_eq!(out.status.code(), Some(4), "{text}");
        println!("cluster status with the primary lost and only a stale standby left:\n{text}");
        // The last primary returns: it leads again (its databases are intact), and c gets
        // the rows it missed.
        a.start();
        let took = becomes_primary(a, Duration::from_secs(30)).await;
        let t = Instant::now();
        while c.count("SELECT COUNT(*) FROM app.w").await != Some(3) {
            assert!(t.elapsed() < Duration::from_secs(30), "{}", a.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "the last primary returned and led again after {} ms; c had the rows it missed {} ms later",
            took.as_millis(),
            t.elapsed().as_millis()
        );
        // Forced: with the last primary gone for good and c relaunched since it was checked,
        // only an operator can pick c; a leader refuses a failover first.
        let out = c
            .doltctl()
            .args(["cluster", "failover", "--to", "c"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("switchover"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        c.stop();
        a.kill_host();
        c.start();
        let until = Instant::now() + TTL + Duration::from_secs(2);
        while Instant::now() < until {
            assert!(cl.primaries().await.is_empty());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let t = Instant::now();
        let out = c
            .doltctl()
            .args(["cluster", "failover", "--to", "c"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            c.log()
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "c is the primary"
        );
        becomes_primary(c, Duration::from_secs(10)).await;
        exec(&format!("{}app", c.url()), "INSERT INTO w VALUES (4)")
            .await
            .unwrap();
        assert_eq!(c.count("SELECT COUNT(*) FROM app.w").await, Some(4));
        println!(
            "cluster failover --to c: c primary and writable after {} ms",
            t.elapsed().as_millis()
        );
    });
}

#[test]
fn a_standby_cut_off_from_the_primary_is_not_promoted_and_is_brought_up_to_date() {
    let _serial = serial();
    let etcd = Etcd::start();
    let proxies = Toxiproxy::start();
    // a pushes its replication to b through a proxy.
    let link = std::cell::RefCell::new(None);
    let cl = Cluster::with_links(etcd, None, |from, to| {
        (from == "a" && to.name == "b").then(|| {
            let p = proxies.proxy("a_to_b", &format!("127.0.0.1:{}", to.rport));
            let port = p.listen();
            *link.borrow_mut() = Some(p);
            port
        })
    });
    let link = link.into_inner().expect("the a -> b proxy");
    block_on(async {
        assert_eq!(bootstrap(&cl).await, "a");
        let (a, b, c) = (cl.node("a"), cl.node("b"), cl.node("c"));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = writer(cl.client("c"), 1, stop.clone());
        rows_grow(a, 5).await;
        // A blackhole between a and b: b falls behind, a's commits wait out the ack timeout
        // for b and come back with warning 3024.
        link.add_timeout_toxic(0);
        let unmarked = cl.wait_marked(&["b"], false, Duration::from_secs(30)).await;
        rows_grow(a, 3).await;
        assert_eq!(cl.caught_up_of("c"), Some(true));
        // The primary is lost: c (caught up) is promoted, never b (behind).
        a.kill_host();
        let promoted = becomes_primary(c, TTL + Duration::from_secs(6)).await;
        assert_eq!(b.role().await.map(|r| r.0), Some("standby".to_string()));
        rows_grow(c, 5).await;
        stop.store(true, Ordering::Relaxed);
        let w = handle.join().unwrap();
        let on_c = ids(c).await;
        let lost: Vec<i64> = w
            .acked
            .iter()
            .filter(|i| !on_c.contains(i))
            .copied()
            .collect();
        assert!(lost.is_empty(), "acknowledged rows lost: {lost:?}");
        // c brings b up to date (b had missed everything since the cut).
        let t = Instant::now();
        while ids(b).await != ids(c).await {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "b not caught up:\n{}",
                c.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!(
            "a -> b cut: b unmarked {} ms after the cut; a lost, c promoted after {} ms; \
             acknowledged {} rows without warning (all on c), {} with warning 3024; \
             b had every row of c {} ms after the writer stopped; client errors: {:?}",
            unmarked.as_millis(),
            promoted.as_millis(),
            w.acked.len(),
            w.unreplicated.len(),
            t.elapsed().as_millis(),
            error_summary(&w)
        );
    });
}

#[test]
fn a_node_promoted_by_hand_outside_doltctl_ends_with_one_writable_primary() {
    let _serial = serial();
    let cl = Cluster::new(Etcd::start(), None);
    block_on(async {
        assert_eq!(bootstrap(&cl).await, "a");
        // Someone promotes b by hand at a higher epoch; Dolt then demotes a.
        exec(
            &cl.node("b").url(),
            "CALL dolt_assume_cluster_role('primary', 10)",
        )
        .await
        .unwrap();
        let t = Instant::now();
        // Healthy again: exactly one dolt says primary, and it is the node holding the lease,
        // for two seconds in a row.
        let mut healthy_since: Option<Instant> = None;
        let primary = loop {
            let st = cl.status("a");
            let primaries = cl.primaries().await;
            let consistent = primaries.len() == 1 && st["leader"] == primaries[0].as_str();
            match (consistent, healthy_since) {
                (true, Some(since)) if since.elapsed() >= Duration::from_secs(2) => {
                    break primaries[0].clone()
                }
                (true, None) => healthy_since = Some(Instant::now()),
                (false, _) => healthy_since = None,
                _ => {}
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "no single primary holding the lease: {primaries:?}, {st:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let p = cl.node(&primary);
        exec(&format!("{}app", p.url()), "INSERT INTO w VALUES (1)")
            .await
            .unwrap();
        // Every node at the new primary's epoch, the write on every standby.
        assert_eq!(cl.settled(Duration::from_secs(30)).await, primary);
        caught_up(&cl.client("c"), Duration::from_secs(30)).await;
        println!(
            "b promoted by hand: {primary} the only primary, holding the lease, {} ms later\n{}",
            (t.elapsed() - Duration::from_secs(2)).as_millis(),
            p.log()
                .lines()
                .chain(cl.node("a").log().lines())
                .chain(cl.node("b").log().lines())
                .filter(|l| l.contains("FENCING") || l.contains("PROMOTED"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    });
}

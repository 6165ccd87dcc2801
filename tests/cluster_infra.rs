//! Smoke tests of the cluster tests' real components (tests/common/cluster_infra.rs): etcd
//! started on free ports keeps its data across a stop/crash and restart, and Toxiproxy in front
//! of etcd and of a real dolt sql-server partitions, blackholes, delays and heals connections.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;

/// How long a fault or its healing may take to show (toxiproxy applies API calls at once; the
/// margin is for a loaded machine).
const FAULT_DEADLINE: Duration = Duration::from_secs(10);

#[test]
fn etcd_stores_keys_and_keeps_them_across_stop_crash_and_restart() {
    let mut etcd = Etcd::start();
    assert!(etcd.endpoint().starts_with("http://127.0.0.1:"));
    etcd.put("/doltctl/team/leader", "a");
    etcd.put("/doltctl/team/epoch", "7");
    assert_eq!(etcd.get("/doltctl/team/leader").as_deref(), Some("a"));
    assert_eq!(etcd.get("/doltctl/team/none"), None);
    assert_eq!(
        etcd.get_prefix("/doltctl/team/"),
        vec![
            ("/doltctl/team/epoch".to_owned(), "7".to_owned()),
            ("/doltctl/team/leader".to_owned(), "a".to_owned()),
        ]
    );

    // Down: no health, and a client gets an error (not a hang) within its timeouts.
    etcd.stop();
    assert!(!etcd.is_running());
    assert!(!etcd.healthy());
    let out = etcd.etcdctl().args(["get", "k"]).output().unwrap();
    assert!(!out.status.success(), "etcdctl against a stopped etcd");

    // Same ports, same data.
    let endpoint = etcd.endpoint();
    etcd.restart();
    assert_eq!(etcd.endpoint(), endpoint);
    assert_eq!(etcd.get("/doltctl/team/leader").as_deref(), Some("a"));

    // A crash (SIGKILL) loses no acknowledged put either.
    etcd.put("/doltctl/team/epoch", "8");
    etcd.kill();
    etcd.restart();
    assert_eq!(
        etcd.get("/doltctl/team/epoch").as_deref(),
        Some("8"),
        "{}",
        etcd.log()
    );

    // A frozen etcd accepts TCP connections but answers nothing: clients time out.
    etcd.pause();
    assert!(!etcd.healthy());
    etcd.resume();
    wait_until("resumed etcd is healthy", FAULT_DEADLINE, || etcd.healthy());
}

#[test]
fn toxiproxy_partitions_blackholes_delays_and_heals_etcd() {
    let etcd = Etcd::start();
    let tp = Toxiproxy::start();
    let proxy = tp.proxy("etcd", &etcd.client_addr());
    let via: std::net::SocketAddr = proxy.addr().parse().unwrap();
    let short = Duration::from_millis(500);
    assert!(
        etcd_healthy(via, Duration::from_secs(2)),
        "etcd through the proxy: {}",
        tp.log()
    );

    // Partition: connections are refused.
    proxy.disable();
    wait_until("a disabled proxy refuses", FAULT_DEADLINE, || {
        std::net::TcpStream::connect_timeout(&via, short).is_err()
    });
    assert!(!etcd_healthy(via, short));
    assert!(etcd.healthy(), "etcd itself is untouched");
    proxy.enable();
    wait_until(
        "an enabled proxy passes etcd through",
        FAULT_DEADLINE,
        || etcd_healthy(via, short),
    );

    // Blackhole: TCP connects, nothing answers.
    proxy.add_timeout_toxic(0);
    assert!(std::net::TcpStream::connect_timeout(&via, short).is_ok());
    let t = Instant::now();
    assert!(!etcd_healthy(via, short));
    assert!(t.elapsed() >= short, "a blackhole answers nothing");
    proxy.remove_toxics();
    wait_until(
        "a healed blackhole passes etcd through",
        FAULT_DEADLINE,
        || etcd_healthy(via, short),
    );

    // Latency: slow, but answers.
    proxy.add_latency(150);
    let t = Instant::now();
    assert!(etcd_healthy(via, Duration::from_secs(5)));
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "latency both ways"
    );
    proxy.remove_toxics();
    tp.reset();
    assert!(etcd_healthy(via, short));
}

#[test]
fn toxiproxy_cuts_and_restores_connections_to_a_real_dolt_server() {
    let env = TestEnv::new();
    env.start();
    let tp = Toxiproxy::start();
    let proxy = tp.proxy("dolt", &format!("127.0.0.1:{}", env.port));
    let url = format!("mysql://root@127.0.0.1:{}/", proxy.listen());
    block_on(async {
        let mut held = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
        let one: Option<i64> = held.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));

        // Partition: the open connection is cut, new ones fail.
        proxy.disable();
        let cut = tokio::time::timeout(FAULT_DEADLINE, held.query_drop("SELECT 1")).await;
        assert!(
            matches!(cut, Ok(Err(_))),
            "an open connection through a disabled proxy fails at once: {cut:?}"
        );
        let fresh = tokio::time::timeout(FAULT_DEADLINE, query_i64(&url, "SELECT 1")).await;
        assert!(matches!(fresh, Ok(Err(_))), "a new connection is refused");

        proxy.enable();
        let deadline = Instant::now() + FAULT_DEADLINE;
        loop {
            match query_i64(&url, "SELECT 1").await {
                Ok(v) => break assert_eq!(v, vec![1]),
                Err(e) => assert!(Instant::now() < deadline, "after enable: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }

        // Blackhole: a query on an open connection gets no answer (until its own timeout).
        let mut held = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
        proxy.add_timeout_toxic(0);
        let hung =
            tokio::time::timeout(Duration::from_millis(500), held.query_drop("SELECT 1")).await;
        assert!(hung.is_err(), "a blackholed query hangs: {hung:?}");
        proxy.remove_toxics();
        assert_eq!(query_i64(&url, "SELECT 1").await.unwrap(), vec![1]);
    });
    // The dolt server itself never noticed.
    block_on(query_i64(&env.url(), "SELECT 1")).unwrap();
}

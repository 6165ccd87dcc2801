//! `doltctl cluster status` and `switchover`, as library calls: every node's role, epoch and
//! reachability (asked over SQL), the replication lag the primary reports per standby and
//! database, and who holds the lease until when; a switchover request and its wait.

use std::time::{Duration, Instant, SystemTime};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde::Serialize;

use super::discover::{node_opts, nodes, NodeAddr};
use super::etcd::Etcd;
use crate::config::Config;
use crate::error::{Error, Result};

/// One node, as `cluster status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Its name.
    pub name: String,
    /// `host:port` of its SQL port.
    pub address: String,
    /// Whether its dolt answered.
    pub reachable: bool,
    /// `@@dolt_cluster_role`.
    pub role: Option<String>,
    /// `@@dolt_cluster_role_epoch`.
    pub epoch: Option<u64>,
    /// Whether the leader found this node's current dolt caught up, so it may be promoted
    /// if the primary is lost (`null` for the leader, or when etcd did not answer).
    pub caught_up: Option<bool>,
    /// Per database, as the primary reports this standby: lag in ms (`null`: unknown) and the
    /// replication error, if any.
    pub replication: Vec<DatabaseLag>,
}

/// One database's replication to one standby.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseLag {
    /// The database.
    pub database: String,
    /// `replication_lag_millis`.
    pub lag_ms: Option<u64>,
    /// `current_error`.
    pub error: Option<String>,
}

/// The whole cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// `[cluster] name`.
    pub cluster: String,
    /// Whether etcd answered.
    pub etcd_reachable: bool,
    /// Why etcd did not answer (refused, timed out, a TLS certificate refused, ...).
    pub etcd_error: Option<String>,
    /// The etcd endpoints asked, comma-separated.
    pub etcd_endpoints: String,
    /// The lease holder, if any.
    pub leader: Option<String>,
    /// The epoch recorded in etcd.
    pub epoch: Option<u64>,
    /// The node that won the last election (it may have lost the lease since).
    pub last_leader: Option<String>,
    /// When the leader's lease expires unless renewed (RFC 3339).
    pub lease_expires_at: Option<String>,
    /// Every node.
    pub nodes: Vec<NodeStatus>,
}

async fn ask_node(
    cfg: &Config,
    n: &NodeAddr,
) -> (Option<(String, u64)>, Vec<(String, String, DatabaseLag)>) {
    let fut = async {
        let mut conn = Conn::new(node_opts(cfg, n)).await.ok()?;
        let role: Option<(String, u64)> = conn
            .query_first("SELECT @@dolt_cluster_role, @@dolt_cluster_role_epoch")
            .await
            .ok()?;
        let mut lags = Vec::new();
        if role.as_ref().is_some_and(|r| r.0 == "primary") {
            let rows: Vec<(String, String, Option<u64>, Option<String>)> = conn
                .query(
                    "SELECT `database`, standby_remote, replication_lag_millis, current_error \
                     FROM dolt_cluster.dolt_cluster_status",
                )
                .await
                .unwrap_or_default();
            for (db, remote, lag, error) in rows {
                lags.push((
                    remote,
                    db.clone(),
                    DatabaseLag {
                        database: db,
                        lag_ms: lag,
                        error,
                    },
                ));
            }
        }
        let _ = conn.disconnect().await;
        Some((role, lags))
    };
    match tokio::time::timeout(Duration::from_secs(3), fut).await {
        Ok(Some((role, lags))) => (role, lags),
        _ => (None, vec![]),
    }
}

/// The config's `[cluster]`, or the error saying `doltctl cluster` needs one.
fn cluster_of(cfg: &Config) -> Result<&crate::config::ClusterConfig> {
    cfg.cluster.as_ref().ok_or_else(|| {
        Error::ConfigValue(
            "this config has no [cluster] section; `doltctl cluster` needs one".into(),
        )
    })
}

/// Gathers the cluster's status (etcd and every node; none of it needs to answer).
pub async fn status(cfg: &Config) -> Result<ClusterStatus> {
    let c = cluster_of(cfg)?;
    let mut st = ClusterStatus {
        cluster: c.name.clone(),
        etcd_reachable: false,
        etcd_error: None,
        etcd_endpoints: c.etcd.join(","),
        leader: None,
        epoch: None,
        last_leader: None,
        lease_expires_at: None,
        nodes: vec![],
    };
    let mut observed = None;
    let reached = match Etcd::connect(c, Duration::from_secs(2)).await {
        // A TLS file that cannot be used is the config's fault, not etcd's.
        Err(e @ Error::ConfigValue(_)) => return Err(e),
        Ok(mut etcd) => etcd.observe().await.map(|o| (etcd, o)),
        Err(e) => Err(e),
    };
    match reached {
        Err(Error::Etcd { message, .. }) => st.etcd_error = Some(message),
        Err(e) => st.etcd_error = Some(e.to_string()),
        Ok((mut etcd, o)) => {
            observed = Some(o.clone());
            st.etcd_reachable = true;
            st.epoch = Some(o.epoch);
            st.last_leader = o.last_leader;
            if let Some(l) = o.leader {
                if let Ok(Some(left)) = etcd.lease_remaining(l.lease).await {
                    st.lease_expires_at = Some(
                        humantime::format_rfc3339_seconds(SystemTime::now() + left).to_string(),
                    );
                }
                st.leader = Some(l.node);
            }
        }
    }
    let mut lags = Vec::new();
    for n in nodes(cfg) {
        let (role, mut l) = ask_node(cfg, &n).await;
        lags.append(&mut l);
        let caught_up = observed
            .as_ref()
            .filter(|_| st.leader.as_deref() != Some(n.name.as_str()))
            .map(|o| o.caught_up(&n.name));
        st.nodes.push(NodeStatus {
            address: format!("{}:{}", n.host, n.port),
            name: n.name,
            reachable: role.is_some(),
            role: role.as_ref().map(|r| r.0.clone()),
            epoch: role.map(|r| r.1),
            caught_up,
            replication: vec![],
        });
    }
    for (remote, _, lag) in lags {
        if let Some(n) = st.nodes.iter_mut().find(|n| n.name == remote) {
            n.replication.push(lag);
        }
    }
    Ok(st)
}

/// With no leader and no node known to be caught up (a whole cluster restarted, or every
/// caught-up node lost): names `to` as the node to promote, and waits up to `wait` until it
/// holds the lease. Writes acknowledged by the last primary and missing on `to` are lost:
/// the operator's call, as with Patroni's `failover`.
pub async fn failover(cfg: &Config, to: &str, wait: Duration) -> Result<String> {
    let c = cluster_of(cfg)?;
    let fail = |m: String| Error::Cluster {
        cluster: c.name.clone(),
        message: m,
    };
    if !nodes(cfg).iter().any(|n| n.name == to) {
        return Err(fail(format!(
            "--to {to:?} is not a node of this cluster (this node and [[cluster.peers]])"
        )));
    }
    let mut etcd = Etcd::connect(c, Duration::from_secs(2)).await?;
    if let Some(l) = etcd.observe().await?.leader {
        return Err(fail(format!(
            "{} holds the leader lease; `doltctl cluster switchover --to {to}` hands over \
             without losing a write",
            l.node
        )));
    }
    if !etcd
        .force_failover(to, wait.max(Duration::from_secs(5)))
        .await?
    {
        return Err(fail(
            "a node took the leader lease meanwhile; see `doltctl cluster status`".into(),
        ));
    }
    let deadline = Instant::now() + wait;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(o) = etcd.observe().await {
            if let Some(l) = o.leader {
                return Ok(l.node);
            }
        }
        if Instant::now() >= deadline {
            return Err(fail(format!(
                "{to} did not take the lease within {wait:?}: is its supervisor running and \
                 its dolt ready? (`doltctl status` and `doltctl logs` on {to})"
            )));
        }
    }
}

/// Asks the primary to hand over (to `to`, or any caught-up standby) and waits up to `wait`
/// until another node holds the lease; returns it.
pub async fn switchover(cfg: &Config, to: Option<&str>, wait: Duration) -> Result<String> {
    let c = cluster_of(cfg)?;
    let fail = |m: String| Error::Cluster {
        cluster: c.name.clone(),
        message: m,
    };
    let mut etcd = Etcd::connect(c, Duration::from_secs(2)).await?;
    let o = etcd.observe().await?;
    let Some(old) = o.leader else {
        return Err(fail(
            "no node holds the leader lease (a failover is under way?); nothing to hand over"
                .into(),
        ));
    };
    if let Some(t) = to {
        if !nodes(cfg).iter().any(|n| n.name == t) {
            return Err(fail(format!(
                "--to {t:?} is not a node of this cluster (this node and [[cluster.peers]])"
            )));
        }
        if t == old.node {
            return Err(fail(format!("{t} is already the primary")));
        }
    }
    etcd.request_switchover(to).await?;
    let deadline = Instant::now() + wait;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(o) = etcd.observe().await {
            if let Some(l) = o.leader.filter(|l| l.node != old.node) {
                return Ok(l.node);
            }
        }
        if Instant::now() >= deadline {
            let _ = etcd.clear_switchover().await;
            return Err(fail(format!(
                "{} is still the primary after {wait:?}: the hand-over waits until every \
                 standby has caught up (up to 10 s) and is dropped when one does not; see \
                 `doltctl logs` on {}",
                old.node, old.node
            )));
        }
    }
}

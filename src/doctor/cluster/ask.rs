//! Asking the cluster for `doctor`: etcd's endpoints one by one, a node's role (and on a
//! primary its replication rows) over SQL, a peer's replication port over TCP. Every request
//! is bounded by [`DEADLINE`]; nothing is written anywhere.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use tokio::task::JoinSet;

use crate::config::{ClusterConfig, Config};
use crate::lifecycle::cluster::discover::{node_opts, NodeAddr};
use crate::lifecycle::cluster::etcd::{Etcd, Observed};

/// The most one check waits for etcd, a node's SQL port or a TCP connect.
pub(super) const DEADLINE: Duration = Duration::from_secs(3);

/// What a node's dolt said over SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NodeAnswer {
    /// `@@dolt_cluster_role`: primary, standby or detected_broken_config.
    pub(super) role: String,
    /// `@@dolt_cluster_role_epoch`.
    pub(super) epoch: u64,
    /// On a primary, when asked: `dolt_cluster.dolt_cluster_status` rows, or why they could
    /// not be read.
    pub(super) replication: Option<std::result::Result<Vec<StatusRow>, String>>,
}

/// One row of `dolt_cluster.dolt_cluster_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StatusRow {
    pub(super) database: String,
    pub(super) standby: String,
    pub(super) lag_ms: Option<u64>,
    pub(super) error: Option<String>,
}

/// One etcd endpoint's answer.
pub(super) struct EndpointAnswer {
    pub(super) endpoint: String,
    pub(super) result: std::result::Result<Observed, String>,
}

/// Each endpoint on its own (so the unreachable ones can be named), all at once.
pub(super) async fn ask_etcd(c: &ClusterConfig) -> Vec<EndpointAnswer> {
    let mut set = JoinSet::new();
    for (i, endpoint) in c.etcd.iter().enumerate() {
        let mut one = c.clone();
        one.etcd = vec![endpoint.clone()];
        set.spawn(async move {
            let read = async {
                let mut etcd = Etcd::connect(&one, DEADLINE).await?;
                etcd.observe().await
            };
            let result = match tokio::time::timeout(DEADLINE, read).await {
                Ok(Ok(o)) => Ok(o),
                Ok(Err(crate::Error::Etcd { message, .. })) => Err(brief(&message)),
                Ok(Err(e)) => Err(brief(&e.to_string())),
                Err(_) => Err(format!("no answer within {DEADLINE:?}")),
            };
            (i, result)
        });
    }
    let mut out: Vec<(usize, EndpointAnswer)> = Vec::new();
    while let Some(joined) = set.join_next().await {
        // A panicked task is an endpoint that did not answer; its index is lost with it,
        // so it is simply absent (the check counts the configured endpoints).
        if let Ok((i, result)) = joined {
            out.push((
                i,
                EndpointAnswer {
                    endpoint: c.etcd[i].clone(),
                    result,
                },
            ));
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, a)| a).collect()
}

/// A node's role and epoch (and, with `status` on a primary, its replication rows).
pub(super) async fn ask_node(
    cfg: &Config,
    n: &NodeAddr,
    status: bool,
) -> std::result::Result<NodeAnswer, String> {
    let opts = node_opts(cfg, n);
    let fut = async {
        let mut conn = mysql_async::Conn::new(opts)
            .await
            .map_err(|e| e.to_string())?;
        let role: Option<(String, u64)> = conn
            .query_first("SELECT @@dolt_cluster_role, @@dolt_cluster_role_epoch")
            .await
            .map_err(|e| e.to_string())?;
        let (role, epoch) = role.ok_or("no row for @@dolt_cluster_role")?;
        let replication = if status && role == "primary" {
            let rows: std::result::Result<Vec<_>, _> = conn
                .query(
                    "SELECT `database`, standby_remote, replication_lag_millis, current_error \
                     FROM dolt_cluster.dolt_cluster_status",
                )
                .await;
            Some(
                rows.map(|rows| {
                    rows.into_iter()
                        .map(|(database, standby, lag_ms, error)| StatusRow {
                            database,
                            standby,
                            lag_ms,
                            error,
                        })
                        .collect()
                })
                .map_err(|e: mysql_async::Error| e.to_string()),
            )
        } else {
            None
        };
        let _ = conn.disconnect().await;
        Ok(NodeAnswer {
            role,
            epoch,
            replication,
        })
    };
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(r) => r.map_err(|e: String| brief(&e)),
        Err(_) => Err(format!("no answer within {DEADLINE:?}")),
    }
}

/// The common causes in a word; gRPC and MySQL errors nest them several layers deep.
fn brief(e: &str) -> String {
    if e.contains("Connection refused") {
        "connection refused".into()
    } else {
        e.to_string()
    }
}

/// One peer: its SQL answer and whether its replication port accepts TCP.
pub(super) struct PeerAnswer {
    pub(super) addr: NodeAddr,
    pub(super) remotesapi_port: u16,
    pub(super) sql: std::result::Result<NodeAnswer, String>,
    pub(super) replication_port: std::result::Result<(), String>,
}

pub(super) async fn ask_peers(cfg: &Config, c: &ClusterConfig) -> Vec<PeerAnswer> {
    let mut set = JoinSet::new();
    for (i, p) in c.peers.iter().enumerate() {
        let cfg = cfg.clone();
        let addr = NodeAddr {
            name: p.name.clone(),
            host: p.host.clone(),
            port: p.port,
        };
        let rport = p.remotesapi_port;
        set.spawn(async move {
            let (sql, replication_port) =
                tokio::join!(ask_node(&cfg, &addr, false), tcp_accepts(&addr.host, rport));
            (
                i,
                PeerAnswer {
                    addr,
                    remotesapi_port: rport,
                    sql,
                    replication_port,
                },
            )
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(a) = joined {
            out.push(a);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, a)| a).collect()
}

/// A TCP connect, closed at once (Dolt's remotesapi is gRPC over HTTP; an accepted connection
/// is all this check claims).
async fn tcp_accepts(host: &str, port: u16) -> std::result::Result<(), String> {
    match tokio::time::timeout(DEADLINE, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(brief(&e.to_string())),
        Err(_) => Err(format!("no answer within {DEADLINE:?}")),
    }
}

//! Finding the primary of a cluster for clients: the node etcd names as leader, mapped to its
//! SQL address from the config; when etcd does not answer, the node whose dolt says
//! `@@dolt_cluster_role` = primary (else any node that answers, for reads).

use std::time::Duration;

use mysql_async::{Opts, OptsBuilder};

use super::etcd::{Etcd, Observed};
use crate::config::{ClusterConfig, Config, PortSetting};
use crate::error::{Error, Result};
use crate::server::cluster::Role;
use crate::server::health::with_known_settings;

/// A node's SQL address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    /// Its node name.
    pub name: String,
    /// Its SQL host.
    pub host: String,
    /// Its SQL port.
    pub port: u16,
}

/// Where the writes go now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Primary {
    /// etcd names this node's lease holder, at this epoch.
    Leader(NodeAddr, u64),
    /// etcd answered: no node holds the lease (a failover is under way), or the leader is
    /// handing over (it is read-only until the next one leads).
    NoLeader,
    /// etcd did not answer (`why`); a node that says it is primary, else one that answers
    /// (read-only), else none.
    EtcdDown {
        /// Why etcd is taken as down.
        why: String,
        /// A node whose dolt says it is primary.
        primary: Option<NodeAddr>,
        /// A node that answers at all (a standby: reads only).
        reachable: Option<NodeAddr>,
    },
}

/// Every node of the cluster: this one (`[server]` host and port) and the peers.
pub fn nodes(cfg: &Config) -> Vec<NodeAddr> {
    let Some(c) = &cfg.cluster else {
        return vec![];
    };
    let port = match cfg.server.port {
        PortSetting::Fixed(p) => p,
        PortSetting::Auto => 0,
    };
    let mut v = vec![NodeAddr {
        name: c.node.clone(),
        host: cfg.server.host.clone(),
        port,
    }];
    v.extend(c.peers.iter().map(|p| NodeAddr {
        name: p.name.clone(),
        host: p.host.clone(),
        port: p.port,
    }));
    v
}

/// Connection options to a node as the configured client user.
pub fn node_opts(cfg: &Config, n: &NodeAddr) -> Opts {
    let b = OptsBuilder::default()
        .ip_or_hostname(n.host.clone())
        .tcp_port(n.port)
        .user(Some(cfg.client.user.clone()))
        .pass((!cfg.client.password.is_empty()).then(|| cfg.client.password.clone()));
    with_known_settings(b).into()
}

/// Reads the cluster's keys once, with `timeout` per request.
pub async fn observe(c: &ClusterConfig, timeout: Duration) -> Result<Observed> {
    Etcd::connect(c, timeout).await?.observe().await
}

/// One look for the primary (see [`Primary`]).
pub async fn primary(cfg: &Config) -> Result<Primary> {
    let Some(c) = &cfg.cluster else {
        return Err(Error::ConfigValue("no [cluster] section".into()));
    };
    let all = nodes(cfg);
    match observe(c, Duration::from_secs(2)).await {
        Ok(o) => Ok(match o.leader {
            Some(_) if o.handover.is_some() => Primary::NoLeader,
            Some(l) => match all.into_iter().find(|n| n.name == l.node) {
                Some(n) => Primary::Leader(n, l.epoch),
                None => {
                    return Err(Error::Cluster {
                        cluster: c.name.clone(),
                        message: format!(
                            "etcd names {:?} as the leader, but this config has no such node; \
                             add it to [[cluster.peers]]",
                            l.node
                        ),
                    })
                }
            },
            None => Primary::NoLeader,
        }),
        Err(e) => {
            let mut primary = None;
            let mut reachable = None;
            for n in all {
                match super::controller::own_role(&node_opts(cfg, &n)).await {
                    Some((Role::Primary, _)) => {
                        primary = Some(n);
                        break;
                    }
                    Some((Role::Standby, _)) if reachable.is_none() => reachable = Some(n),
                    _ => {}
                }
            }
            Ok(Primary::EtcdDown {
                why: e.to_string(),
                primary,
                reachable,
            })
        }
    }
}

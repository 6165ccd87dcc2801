//! The cluster's keys in etcd, and nothing else: reading them in one request, the campaign
//! transaction, lease renewal and revocation, switchover requests. Every call has a deadline:
//! an etcd that does not answer is an error here, and the caller decides what it means.
//!
//! Keys under `/doltctl/<cluster>/`:
//! - `leader`: `{"node", "epoch", "lease"}`, attached to the leader's lease (gone with it);
//! - `epoch`: the highest epoch ever taken; only grows, written in the same transaction that
//!   takes `leader`, guarded by its mod revision;
//! - `switchover`: `{"to"}`, a planned hand-over asked for by `doltctl cluster switchover`;
//! - `handover`: the node a switching primary hands over to ("" = any), on a short lease:
//!   others do not campaign while it lives, clients wait for the next leader; the next
//!   leader's campaign deletes it. `doltctl cluster failover --to` writes it too, when no
//!   node leads;
//! - `launched/<node>`: written by each node whenever a new dolt of its own runs; its mod
//!   revision names that launch;
//! - `synced/<node>`: the launch revision of `node` that the leader found caught up (every
//!   database equal to its own); written only by the lease holder, deleted when it finds the
//!   node behind or unreachable, and all of them by each campaign (a new leader checks anew);
//! - `last_leader`: the node that won the last campaign (no lease: it outlives it);
//! - `databases`: the leader's databases, as a JSON list.
//!
//! Who may campaign ([`electable`](super::decide::electable)) is decided from these keys.

use std::time::Duration;

use std::collections::BTreeMap;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, Txn, TxnOp,
};
use serde::{Deserialize, Serialize};

use super::tls::{files_stamp, hint, FilesStamp};
use crate::config::ClusterConfig;
use crate::error::{Error, Result};

/// The value of the `leader` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    /// The node holding the lease.
    pub node: String,
    /// The epoch it is primary at.
    pub epoch: u64,
    /// Its lease id.
    pub lease: i64,
}

/// The value of the `switchover` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchoverRequest {
    /// The node to hand over to; any caught-up standby when absent.
    pub to: Option<String>,
}

/// Everything under the cluster's prefix, read in one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The leader, if a lease holds the key.
    pub leader: Option<LeaderRecord>,
    /// The highest epoch taken (0 before the first election).
    pub epoch: u64,
    /// The `epoch` key's mod revision (0: absent): the campaign's guard.
    pub epoch_rev: i64,
    /// A pending switchover request.
    pub switchover: Option<SwitchoverRequest>,
    /// During a switchover: the node that should win the next campaign.
    pub handover: Option<String>,
    /// Each node's current launch: the mod revision of its `launched/<node>` key.
    pub launched: BTreeMap<String, i64>,
    /// Each node the leader found caught up, with the launch revision it checked.
    pub synced: BTreeMap<String, i64>,
    /// The node that won the last campaign.
    pub last_leader: Option<String>,
    /// The leader's databases, when it has recorded them.
    pub databases: Option<Vec<String>>,
}

impl Observed {
    /// Whether the leader found `node`'s current launch caught up.
    pub fn caught_up(&self, node: &str) -> bool {
        match (self.launched.get(node), self.synced.get(node)) {
            (Some(l), Some(s)) => l == s,
            _ => false,
        }
    }
}

/// An etcd client error with its causes: "transport error" alone hides the one that says
/// what to fix (a TLS certificate the server refused, a refused connection, ...).
fn with_causes(e: &etcd_client::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}

/// `message`, and what the TLS settings have to do with it when that shows.
fn with_hint(c: &ClusterConfig, message: String) -> String {
    match hint(c, &message) {
        Some(h) => format!("{message} ({h})"),
        None => message,
    }
}

/// A connection to the cluster's etcd.
pub struct Etcd {
    client: Client,
    prefix: String,
    endpoints: String,
    /// The config it was made from, and its TLS files as they were then.
    cluster: ClusterConfig,
    tls_files: FilesStamp,
    timeout: Duration,
    keeper: Option<(i64, LeaseKeeper, LeaseKeepAliveStream)>,
}

impl Etcd {
    /// Connects (lazily: an etcd that is down now may answer later); requests time out after
    /// `timeout`.
    pub async fn connect(c: &ClusterConfig, timeout: Duration) -> Result<Etcd> {
        let endpoints = c.etcd.join(",");
        let tls_files = files_stamp(c);
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(1), timeout);
        if let Some(tls) = super::tls::tls_options(c)? {
            opts = opts.with_tls(tls);
        }
        let client = tokio::time::timeout(timeout, Client::connect(&c.etcd, Some(opts)))
            .await
            .map_err(|_| Error::Etcd {
                endpoints: endpoints.clone(),
                message: format!("no connection within {timeout:?}"),
            })?
            .map_err(|e| Error::Etcd {
                endpoints: endpoints.clone(),
                message: with_hint(c, with_causes(&e)),
            })?;
        Ok(Etcd {
            client,
            prefix: c.prefix(),
            endpoints,
            cluster: c.clone(),
            tls_files,
            timeout,
            keeper: None,
        })
    }

    /// After `etcd_ca`, `etcd_cert` or `etcd_key` changed on disk (a renewed certificate):
    /// replaces this client with one made from them, so that a running supervisor outlives a
    /// certificate rotation. `Ok(true)` when it did; an error (a file half-written, say) keeps
    /// the old client, and the next call tries again.
    pub async fn reload_tls_if_changed(&mut self) -> Result<bool> {
        if files_stamp(&self.cluster) == self.tls_files {
            return Ok(false);
        }
        *self = Etcd::connect(&self.cluster, self.timeout).await?;
        Ok(true)
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn err(&self, message: impl std::fmt::Display) -> Error {
        Error::Etcd {
            endpoints: self.endpoints.clone(),
            message: with_hint(&self.cluster, message.to_string()),
        }
    }

    async fn timed<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.err(format!("{what}: {}", with_causes(&e)))),
            Err(_) => Err(self.err(format!("{what}: no answer within {:?}", self.timeout))),
        }
    }

    /// Reads every key of the cluster in one request.
    pub async fn observe(&mut self) -> Result<Observed> {
        let prefix = self.prefix.clone();
        let mut kv = self.client.kv_client();
        let resp = self
            .timed(
                "reading the cluster's keys",
                kv.get(prefix.as_bytes(), Some(GetOptions::new().with_prefix())),
            )
            .await?;
        let mut o = Observed::default();
        for item in resp.kvs() {
            let name = item.key_str().unwrap_or("").trim_start_matches(&prefix);
            let value = item.value();
            match name {
                "leader" => o.leader = serde_json::from_slice(value).ok(),
                "epoch" => {
                    o.epoch = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    o.epoch_rev = item.mod_revision();
                }
                "switchover" => o.switchover = serde_json::from_slice(value).ok(),
                "handover" => o.handover = std::str::from_utf8(value).ok().map(str::to_string),
                "last_leader" => {
                    o.last_leader = std::str::from_utf8(value).ok().map(str::to_string)
                }
                "databases" => o.databases = serde_json::from_slice(value).ok(),
                other => {
                    if let Some(node) = other.strip_prefix("launched/") {
                        o.launched.insert(node.to_string(), item.mod_revision());
                    } else if let Some(node) = other.strip_prefix("synced/") {
                        if let Some(rev) = std::str::from_utf8(value)
                            .ok()
                            .and_then(|v| v.trim().parse().ok())
                        {
                            o.synced.insert(node.to_string(), rev);
                        }
                    }
                }
            }
        }
        Ok(o)
    }

    /// Grants a lease and, in one transaction, takes `leader` and bumps `epoch`, only if
    /// there is no leader and the epoch is still the one `seen` read. The new leader record,
    /// or `None` when another node was faster (the unused lease is revoked).
    pub async fn campaign(
        &mut self,
        node: &str,
        ttl: Duration,
        seen: &Observed,
    ) -> Result<Option<LeaderRecord>> {
        let grant = self.grant(ttl).await?;
        let record = LeaderRecord {
            node: node.to_string(),
            epoch: seen.epoch + 1,
            lease: grant.id(),
        };
        let value = serde_json::to_vec(&record).map_err(|e| self.err(e))?;
        let txn = Txn::new()
            .when([
                Compare::create_revision(self.key("leader"), CompareOp::Equal, 0),
                Compare::mod_revision(self.key("epoch"), CompareOp::Equal, seen.epoch_rev),
            ])
            .and_then([
                TxnOp::put(
                    self.key("leader"),
                    value,
                    Some(PutOptions::new().with_lease(grant.id())),
                ),
                TxnOp::put(self.key("epoch"), record.epoch.to_string(), None),
                TxnOp::put(self.key("last_leader"), node, None),
                // A hand-over is complete once someone leads.
                TxnOp::delete(self.key("handover"), None),
                // The new leader checks every standby anew.
                TxnOp::delete(
                    self.key("synced/"),
                    Some(DeleteOptions::new().with_prefix()),
                ),
            ]);
        let mut kv = self.client.kv_client();
        let won = self.timed("campaigning", kv.txn(txn)).await?.succeeded();
        if won {
            return Ok(Some(record));
        }
        let _ = self.revoke(grant.id()).await;
        Ok(None)
    }

    /// A new lease of `ttl` (whole seconds, at least 1).
    async fn grant(&mut self, ttl: Duration) -> Result<etcd_client::LeaseGrantResponse> {
        let mut lc = self.client.lease_client();
        self.timed(
            "granting a lease",
            lc.grant(ttl.as_secs().max(1) as i64, None),
        )
        .await
    }

    /// Renews `lease` once; its remaining TTL (0: the lease is gone).
    pub async fn keep_alive(&mut self, lease: i64) -> Result<i64> {
        if self.keeper.as_ref().map(|k| k.0) != Some(lease) {
            let mut lc = self.client.lease_client();
            let (keeper, stream) = self
                .timed("opening the lease keep-alive", lc.keep_alive(lease))
                .await?;
            self.keeper = Some((lease, keeper, stream));
        }
        let timeout = self.timeout;
        let result = match &mut self.keeper {
            Some((_, keeper, stream)) => {
                tokio::time::timeout(timeout, async {
                    keeper.keep_alive().await?;
                    stream.message().await
                })
                .await
            }
            None => return Err(self.err("no keep-alive stream")),
        };
        match result {
            Ok(Ok(Some(r))) => Ok(r.ttl()),
            Ok(Ok(None)) => {
                self.keeper = None;
                Err(self.err("the lease keep-alive stream ended"))
            }
            Ok(Err(e)) => {
                self.keeper = None;
                Err(self.err(format!("renewing the lease: {e}")))
            }
            Err(_) => {
                self.keeper = None;
                Err(self.err(format!("renewing the lease: no answer within {timeout:?}")))
            }
        }
    }

    /// Revokes a lease (its `leader` key goes with it).
    pub async fn revoke(&mut self, lease: i64) -> Result<()> {
        if self.keeper.as_ref().map(|k| k.0) == Some(lease) {
            self.keeper = None;
        }
        let mut lc = self.client.lease_client();
        match self.timed("revoking the lease", lc.revoke(lease)).await {
            Ok(_) => Ok(()),
            // Already expired: as good as revoked.
            Err(e) if e.to_string().contains("requested lease not found") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// How long `lease` has left, if it exists.
    pub async fn lease_remaining(&mut self, lease: i64) -> Result<Option<Duration>> {
        let mut lc = self.client.lease_client();
        let r = self
            .timed("reading the lease", lc.time_to_live(lease, None))
            .await?;
        Ok((r.ttl() > 0).then(|| Duration::from_secs(r.ttl() as u64)))
    }

    /// As the leader holding `leader.lease`: bumps the epoch (a demotion takes the next
    /// epoch) and marks `to` as the node that should win next, on a lease of `ttl`.
    pub async fn prepare_handover(
        &mut self,
        leader: &LeaderRecord,
        to: Option<&str>,
        ttl: Duration,
    ) -> Result<u64> {
        let epoch = leader.epoch + 1;
        let mut ops = vec![
            TxnOp::put(self.key("epoch"), epoch.to_string(), None),
            TxnOp::delete(self.key("switchover"), None),
        ];
        // Always written ("" = any node): clients wait for the next leader rather than
        // write to a primary that is demoting itself.
        let grant = self.grant(ttl).await?;
        ops.push(TxnOp::put(
            self.key("handover"),
            to.unwrap_or(""),
            Some(PutOptions::new().with_lease(grant.id())),
        ));
        let txn = Txn::new()
            .when([Compare::lease(
                self.key("leader"),
                CompareOp::Equal,
                leader.lease,
            )])
            .and_then(ops);
        let mut kv = self.client.kv_client();
        if self
            .timed("preparing the handover", kv.txn(txn))
            .await?
            .succeeded()
        {
            Ok(epoch)
        } else {
            Err(self.err("this node no longer holds the leader lease"))
        }
    }

    /// Asks the primary for a planned hand-over.
    pub async fn request_switchover(&mut self, to: Option<&str>) -> Result<()> {
        let value = serde_json::to_vec(&SwitchoverRequest {
            to: to.map(str::to_string),
        })
        .map_err(|e| self.err(e))?;
        let key = self.key("switchover");
        let mut kv = self.client.kv_client();
        self.timed("asking for a switchover", kv.put(key, value, None))
            .await?;
        Ok(())
    }

    /// Ends a hand-over that failed (the primary stayed primary): clients stop waiting for it.
    pub async fn clear_handover(&mut self) -> Result<()> {
        let key = self.key("handover");
        let mut kv = self.client.kv_client();
        self.timed("clearing the handover", kv.delete(key, None))
            .await?;
        Ok(())
    }

    /// Drops a switchover request (done, or impossible).
    pub async fn clear_switchover(&mut self) -> Result<()> {
        let key = self.key("switchover");
        let mut kv = self.client.kv_client();
        self.timed("clearing the switchover", kv.delete(key, None))
            .await?;
        Ok(())
    }

    /// Records that a new dolt of `node` runs (`what`: its pid and start time, for people
    /// reading etcd); the revision that names this launch.
    pub async fn record_launch(&mut self, node: &str, what: &str) -> Result<i64> {
        let key = self.key(&format!("launched/{node}"));
        let mut kv = self.client.kv_client();
        let r = self
            .timed("recording this node's launch", kv.put(key, what, None))
            .await?;
        r.header()
            .map(|h| h.revision())
            .ok_or_else(|| self.err("recording this node's launch: no revision in the answer"))
    }

    /// As the leader holding `lease`: marks `node`'s launch `launch` as caught up, unless that
    /// node launched again since (then it is checked anew). Whether it was marked.
    pub async fn mark_synced(&mut self, lease: i64, node: &str, launch: i64) -> Result<bool> {
        let txn = Txn::new()
            .when([
                Compare::lease(self.key("leader"), CompareOp::Equal, lease),
                Compare::mod_revision(
                    self.key(&format!("launched/{node}")),
                    CompareOp::Equal,
                    launch,
                ),
            ])
            .and_then([TxnOp::put(
                self.key(&format!("synced/{node}")),
                launch.to_string(),
                None,
            )]);
        let mut kv = self.client.kv_client();
        Ok(self
            .timed("marking a standby caught up", kv.txn(txn))
            .await?
            .succeeded())
    }

    /// `node` is no longer known to be caught up.
    pub async fn unmark_synced(&mut self, node: &str) -> Result<()> {
        let key = self.key(&format!("synced/{node}"));
        let mut kv = self.client.kv_client();
        self.timed("unmarking a standby", kv.delete(key, None))
            .await?;
        Ok(())
    }

    /// As the leader holding `lease`: records its databases.
    pub async fn record_databases(&mut self, lease: i64, dbs: &[String]) -> Result<()> {
        let value = serde_json::to_vec(dbs).map_err(|e| self.err(e))?;
        let txn = Txn::new()
            .when([Compare::lease(self.key("leader"), CompareOp::Equal, lease)])
            .and_then([TxnOp::put(self.key("databases"), value, None)]);
        let mut kv = self.client.kv_client();
        self.timed("recording the databases", kv.txn(txn)).await?;
        Ok(())
    }

    /// With no leader: names `node` as the one to campaign next, whether or not it is known
    /// to be caught up (`doltctl cluster failover`), on a lease of `ttl`. False when a node
    /// leads (then a switchover is the way).
    pub async fn force_failover(&mut self, node: &str, ttl: Duration) -> Result<bool> {
        let grant = self.grant(ttl).await?;
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.key("leader"),
                CompareOp::Equal,
                0,
            )])
            .and_then([TxnOp::put(
                self.key("handover"),
                node,
                Some(PutOptions::new().with_lease(grant.id())),
            )]);
        let mut kv = self.client.kv_client();
        let done = self
            .timed("naming the node to promote", kv.txn(txn))
            .await?
            .succeeded();
        if !done {
            let _ = self.revoke(grant.id()).await;
        }
        Ok(done)
    }
}

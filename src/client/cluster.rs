//! A client of a cluster (`[cluster]` in its config): connections go to the current primary,
//! found through etcd on every (re)connect, so a retry after a failover reaches the new one.
//!
//! - Errors the old primary gives during a failover or switchover ("read-only", "this
//!   connection can no longer be used", refused connections) are retried after rediscovery.
//! - The retry window is at least `2 * lease_ttl + 2s`: a lost primary is replaced after its
//!   lease expires.
//! - A write Dolt acknowledged with warning 3024 ("Timed out replication of commit ...") is
//!   committed on the primary but on no standby yet: it is not durable across a failover.
//!   [`unreplicated_warning`] finds it on a connection; [`Client::execute_report`] returns
//!   it; `doltctl sql` prints it on stderr and exits with code 8.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::connection::ConnectionInfo;
use super::retry::ErrorKind;
use super::{Access, Client};
use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::lifecycle::cluster::discover::{self, Primary};

/// Dolt's warning code for a commit acknowledged without replication.
pub const UNREPLICATED_WARNING: u16 = 3024;

/// The messages a node that is (no longer) primary answers with.
pub(super) fn is_failover_error(e: &mysql_async::Error) -> bool {
    let m = super::retry::server_message(e).to_ascii_lowercase();
    [
        "is read-only",
        "read only mode",
        "can no longer be used",
        "transitioned cluster roles",
    ]
    .iter()
    .any(|t| m.contains(t))
}

/// The retry settings of a cluster client: a window that outlasts a failover.
pub(super) fn client_settings(c: &ClientConfig, lease_ttl: Duration) -> ClientConfig {
    let mut c = c.clone();
    let window = lease_ttl * 2 + Duration::from_secs(2);
    if c.retry_window < window {
        c.retry_window = window;
        c.connect_retries = c.connect_retries.max(60);
    }
    c
}

/// The warning 3024 of the last statement on `conn`, if it had one: the write committed on the
/// primary, but no standby acknowledged it within `ack_writes_timeout`.
pub async fn unreplicated_warning(conn: &mut Conn) -> Result<Option<String>, mysql_async::Error> {
    if conn.get_warnings() == 0 {
        return Ok(None);
    }
    let rows: Vec<(String, u16, String)> = conn.query("SHOW WARNINGS").await?;
    Ok(rows
        .into_iter()
        .find(|(_, code, _)| *code == UNREPLICATED_WARNING)
        .map(|(_, _, m)| m))
}

impl Client {
    /// The error class in this client's mode: in a cluster, a node's "no longer primary"
    /// answers are transient too (the retry rediscovers the primary).
    pub(super) fn kind_of(&self, e: &mysql_async::Error) -> ErrorKind {
        let kind = super::retry::classify(e);
        if self.cfg.cluster.is_some() && is_failover_error(e) {
            return ErrorKind::Transient;
        }
        kind
    }

    /// The primary's address, waiting through a failover (no leader) for the retry window.
    /// With etcd down: a node that says it is primary, else (for a client that does not
    /// write) any node that answers.
    pub(super) async fn cluster_target(&self) -> Result<ConnectionInfo> {
        let Some(c) = &self.cfg.cluster else {
            return Err(Error::ConfigValue("no [cluster] section".into()));
        };
        let window = client_settings(&self.cfg.client, c.lease_ttl).retry_window;
        let deadline = Instant::now() + window;
        let mut why;
        loop {
            let found = discover::primary(&self.cfg).await?;
            let node = match found {
                Primary::Leader(n, _) => return Ok(self.info_for(&n.host, n.port, false)),
                Primary::NoLeader => {
                    why = "etcd shows no leader: a failover or switchover is under way, or no \
                           node known to be caught up is there to take over (`doltctl cluster \
                           status` says which; `doltctl cluster failover --to NODE` promotes one \
                           anyway)"
                        .to_string();
                    None
                }
                Primary::EtcdDown {
                    why: w,
                    primary,
                    reachable,
                } => {
                    why = format!("{w}; with etcd down the cluster is read-only until it returns");
                    match (primary, reachable) {
                        (Some(p), _) => Some((p, false)),
                        (None, Some(r)) if self.access != Access::Write => Some((r, true)),
                        _ => None,
                    }
                }
            };
            if let Some((n, read_only)) = node {
                return Ok(self.info_for(&n.host, n.port, read_only));
            }
            if Instant::now() >= deadline {
                return Err(Error::Cluster {
                    cluster: c.name.clone(),
                    message: format!("no primary within {window:?}: {why}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn info_for(&self, host: &str, port: u16, read_only: bool) -> ConnectionInfo {
        ConnectionInfo {
            host: host.to_string(),
            port,
            user: self.cfg.client.user.clone(),
            password: self.cfg.client.password.clone(),
            socket: None,
            database: self.database.clone(),
            read_only,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: u16, message: &str) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: message.into(),
            state: "HY000".into(),
        })
    }

    #[test]
    fn an_old_primarys_refusals_are_retried_only_in_a_cluster() {
        let e = server_error(1105, "Database app is read-only.");
        let single = Client::from_config(crate::Config::default());
        assert_eq!(single.kind_of(&e), ErrorKind::Permanent);
        let cfg = crate::Config {
            cluster: Some(
                toml::from_str(
                    "name = \"t\"\nnode = \"a\"\netcd = [\"http://127.0.0.1:2379\"]\nremotesapi_port = 1\n",
                )
                .unwrap(),
            ),
            ..Default::default()
        };
        let clustered = Client::from_config(cfg);
        assert_eq!(clustered.kind_of(&e), ErrorKind::Transient);
        let gone = server_error(
            1105,
            "this server transitioned cluster roles. this connection can no longer be used. please reconnect.",
        );
        assert_eq!(clustered.kind_of(&gone), ErrorKind::Transient);
        assert_eq!(
            clustered.kind_of(&server_error(1146, "table not found: t")),
            ErrorKind::Permanent
        );
    }

    #[test]
    fn the_retry_window_outlasts_a_failover() {
        let c = ClientConfig::default();
        let s = client_settings(&c, Duration::from_secs(5));
        assert_eq!(s.retry_window, Duration::from_secs(12));
    }
}

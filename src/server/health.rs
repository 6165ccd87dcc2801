//! Health probes: a real MySQL handshake running `SELECT 1`, always under a timeout. A bare
//! TCP connect says nothing about a wedged server, and bursts of them have crashed servers.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

use crate::config::Config;

/// Connection options for the supervisor's own probes: the configured client user, no
/// database, over TCP (what clients use).
pub fn probe_opts(cfg: &Config, port: u16) -> Opts {
    let opts = OptsBuilder::default()
        .ip_or_hostname(cfg.server.host.clone())
        .tcp_port(port)
        .user(Some(cfg.client.user.clone()))
        .pass((!cfg.client.password.is_empty()).then(|| cfg.client.password.clone()));
    with_known_settings(opts).into()
}

/// Gives mysql_async the two server settings it otherwise asks for with a query on every
/// new connection (`SELECT @@max_allowed_packet, @@wait_timeout`): doltctl's generated config
/// leaves both at Dolt's defaults (1 GiB, 28800 s). One round trip less per connection matters
/// when many clients arrive at once, as at a cold start. No socket lookup either: connections
/// stay on TCP, the address the URL names.
pub fn with_known_settings(opts: OptsBuilder) -> OptsBuilder {
    opts.prefer_socket(false)
        .max_allowed_packet(Some(1 << 30))
        .wait_timeout(Some(28_800))
}

async fn run_select1(conn: &mut Conn) -> Result<(), String> {
    let r: Option<i64> = conn
        .query_first("SELECT 1")
        .await
        .map_err(|e| e.to_string())?;
    match r {
        Some(1) => Ok(()),
        other => Err(format!("SELECT 1 returned {other:?}")),
    }
}

/// One probe on a fresh connection: connect, `SELECT 1`, disconnect.
pub async fn select1(opts: &Opts, timeout: Duration) -> Result<(), String> {
    let fut = async {
        let mut conn = Conn::new(opts.clone()).await.map_err(|e| e.to_string())?;
        let r = run_select1(&mut conn).await;
        let _ = conn.disconnect().await;
        r
    };
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

/// A prober that keeps one connection open between probes (cheap for the server) and opens a
/// new one after any failure.
pub struct Prober {
    opts: Opts,
    conn: Option<Conn>,
}

impl Prober {
    pub fn new(opts: Opts) -> Prober {
        Prober { opts, conn: None }
    }

    /// The options its connections use.
    pub fn opts(&self) -> &Opts {
        &self.opts
    }

    pub async fn probe(&mut self, timeout: Duration) -> Result<(), String> {
        let result = tokio::time::timeout(timeout, async {
            if self.conn.is_none() {
                let c = Conn::new(self.opts.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                self.conn = Some(c);
            }
            match self.conn.as_mut() {
                Some(c) => run_select1(c).await,
                None => Err("no connection".to_string()),
            }
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
        if result.is_err() {
            // A connection in an unknown state is not reused. Dropping it closes the socket.
            self.conn = None;
        }
        result
    }

    /// Client connections other than this prober's own, from the server's process list. An
    /// open idle connection counts: it may be a pool's.
    pub async fn client_connections(&mut self, timeout: Duration) -> Result<u64, String> {
        let conn = self.conn.as_mut().ok_or("no probe connection")?;
        let q = conn.query_first::<u64, _>(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()",
        );
        let r = match tokio::time::timeout(timeout, q).await {
            Ok(Ok(n)) => Ok(n.unwrap_or(0)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        if r.is_err() {
            // Same rule as probe(): a connection in an unknown state is not reused.
            self.conn = None;
        }
        r
    }

    pub async fn close(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), c.disconnect()).await;
        }
    }
}

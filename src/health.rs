//! Health probes: a real MySQL handshake running `SELECT 1`, always under a timeout. A bare
//! TCP connect says nothing about a wedged server, and bursts of them have crashed servers.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

/// Connection options for the supervisor's own probes: root, no database, no pool.
pub fn probe_opts(host: &str, port: u16) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname(host.to_string())
        .tcp_port(port)
        .user(Some("root"))
        .prefer_socket(false)
        .into()
}

/// One probe on a fresh connection: connect, `SELECT 1`, disconnect.
pub async fn select1(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    let fut = async {
        let mut conn = Conn::new(probe_opts(host, port))
            .await
            .map_err(|e| e.to_string())?;
        let r: Option<i64> = conn
            .query_first("SELECT 1")
            .await
            .map_err(|e| e.to_string())?;
        let _ = conn.disconnect().await;
        match r {
            Some(1) => Ok(()),
            other => Err(format!("SELECT 1 returned {other:?}")),
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// A prober that keeps one connection open between probes (cheap for the server) and opens a
/// new one after any failure.
pub struct Prober {
    host: String,
    port: u16,
    conn: Option<Conn>,
}

impl Prober {
    pub fn new(host: &str, port: u16) -> Prober {
        Prober {
            host: host.into(),
            port,
            conn: None,
        }
    }

    pub async fn probe(&mut self, timeout: Duration) -> Result<(), String> {
        let result = tokio::time::timeout(timeout, async {
            if self.conn.is_none() {
                let c = Conn::new(probe_opts(&self.host, self.port))
                    .await
                    .map_err(|e| e.to_string())?;
                self.conn = Some(c);
            }
            let conn = self.conn.as_mut().ok_or("no connection")?;
            let r: Option<i64> = conn
                .query_first("SELECT 1")
                .await
                .map_err(|e| e.to_string())?;
            match r {
                Some(1) => Ok(()),
                other => Err(format!("SELECT 1 returned {other:?}")),
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

    pub async fn close(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), c.disconnect()).await;
        }
    }
}

//! [`ClientPool`]: a connection pool that lets go when idle and finds its server again.
//!
//! A plain `mysql_async::Pool` keeps idle connections open for ever (its defaults keep ten),
//! and the supervisor counts an open connection as a client: a server with an idle pool on it
//! never idles out. And a plain pool is bound to one port: after an idle stop nothing listens
//! there, and it cannot start the server again. A `ClientPool` closes idle connections after
//! `[client] pool_idle_timeout`, keeps no minimum, and takes every connection through the
//! client's retry and auto-start, so the next query after an idle stop wakes the server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::{Conn, Pool, PoolConstraints, PoolOpts};

use super::connection::{target_of, ConnectionInfo};
use super::retry::{classify, sql_error, ErrorKind};
use super::Client;
use crate::error::Result;
use crate::sys::process::ProcessIdentity;

/// At most this many connections open at once per pool (`mysql_async`'s own default).
const MAX_CONNECTIONS: usize = 100;

/// How often a pool looks for connections idle longer than `idle`: a quarter of it, so a
/// connection is closed at most 25% late, but not more often than once a second nor less often
/// than every 30 s (`mysql_async` ignores intervals under a second).
fn ttl_check_interval(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Pool options that let go when idle: no minimum of idle connections, and connections idle
/// longer than `idle` closed (zero: closed as soon as they are returned).
pub(crate) fn idle_pool_opts(idle: Duration) -> PoolOpts {
    let constraints = PoolConstraints::new(0, MAX_CONNECTIONS).unwrap_or_default();
    PoolOpts::default()
        .with_constraints(constraints)
        .with_inactive_connection_ttl(idle)
        .with_ttl_check_interval(ttl_check_interval(idle))
}

/// The `mysql_async` pool in use, and the server it was made for.
#[derive(Clone)]
struct Current {
    pool: Pool,
    info: ConnectionInfo,
    /// The server process its connections go to, when known: while it runs, the pool is used
    /// as it is, without reading the state file.
    server: Option<ProcessIdentity>,
}

impl Current {
    /// Same address, user, database and session setup: the pool's connections fit.
    fn fits(&self, info: &ConnectionInfo) -> bool {
        let a = &self.info;
        (
            &a.host,
            a.port,
            &a.user,
            &a.password,
            &a.database,
            a.read_only,
        ) == (
            &info.host,
            info.port,
            &info.user,
            &info.password,
            &info.database,
            info.read_only,
        )
    }
}

/// A connection pool for a [`Client`], from [`Client::pool`]. Cheap to clone; clones share the
/// pool.
///
/// - **It lets go when idle.** A connection idle longer than `[client] pool_idle_timeout`
///   (default 30 s) is closed, and no minimum of idle connections is kept. An application that
///   holds a pool but does nothing therefore leaves the server without clients, and the
///   server idles out after `[server] idle_timeout` (or `[client] autostart_idle_timeout` for
///   a server a client started).
/// - **It finds the server again.** [`ClientPool::get_conn`] hands out a connection of the
///   current `mysql_async::Pool` while the server it was made for still runs. Otherwise (an
///   idle stop, a crash, a restart on another port) it goes through the client's retry and
///   auto-start, like [`Client::conn`]: it waits for a restart, starts a stopped server, and
///   makes a new inner pool when the address changed.
/// - **It is `mysql_async` underneath.** Connections are plain `mysql_async::Conn`s that go
///   back to the pool when dropped. [`ClientPool::mysql_pool`] gives the current
///   `mysql_async::Pool` itself, for code that wants one. That pool is bound to the server's
///   present address: it does not wake a stopped server; take a new one from
///   [`ClientPool::mysql_pool`] after an error.
///
/// Like a `mysql_async::Pool`, use it within one tokio runtime.
#[derive(Clone)]
pub struct ClientPool {
    client: Client,
    current: Arc<Mutex<Option<Current>>>,
}

impl std::fmt::Debug for ClientPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPool")
            .field("client", &self.client)
            .field("server", &self.current().map(|c| c.info))
            .finish()
    }
}

impl ClientPool {
    pub(super) fn new(client: Client) -> ClientPool {
        ClientPool {
            client,
            current: Arc::default(),
        }
    }

    /// The client this pool connects for.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn current(&self) -> Option<Current> {
        self.current.lock().ok().and_then(|c| c.clone())
    }

    /// A connection from the pool: an idle one if there is one, else a new one. Starts the
    /// server if none runs (auto-start on) and retries transient failures like
    /// [`Client::conn`]. The connection goes back to the pool when dropped.
    pub async fn get_conn(&self) -> Result<Conn> {
        // The common case: the server the pool was made for still runs (a read of
        // /proc/PID/stat and cmdline, no state file).
        if let Some(cur) = self
            .current()
            .filter(|c| c.server.as_ref().is_some_and(ProcessIdentity::is_running))
        {
            match cur.pool.get_conn().await {
                Ok(c) => return Ok(c),
                Err(e) if classify(&e) == ErrorKind::Permanent => {
                    return Err(sql_error(&cur.info, 1, ErrorKind::Permanent, e));
                }
                Err(e) => tracing::debug!("pool for {:?}: {e}; finding the server", cur.info),
            }
        }
        let mut tries = self.client.retries();
        let mut last = None;
        loop {
            tries.attempts += 1;
            let (info, server) = self.client.target_server(&last).await?;
            let pool = self.pool_for(&info, server);
            if let Ok(mut t) = self.client.last_target.lock() {
                *t = Some(target_of(&info.host, info.port));
            }
            match pool.get_conn().await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    let kind = classify(&e);
                    if !tries.again(kind).await {
                        return Err(sql_error(&info, tries.attempts, kind, e));
                    }
                    last = Some(info);
                }
            }
        }
    }

    /// The inner pool for `info`: the current one if its connections fit, else a new one (the
    /// old one is disconnected in the background once its connections are returned).
    fn pool_for(&self, info: &ConnectionInfo, server: Option<ProcessIdentity>) -> Pool {
        let Ok(mut cur) = self.current.lock() else {
            // A panic elsewhere poisoned the lock: serve this call with a pool of its own.
            return Pool::new(self.client.pool_opts(info));
        };
        if let Some(c) = cur.as_mut().filter(|c| c.fits(info)) {
            c.server = server;
            return c.pool.clone();
        }
        let pool = Pool::new(self.client.pool_opts(info));
        let old = cur.replace(Current {
            pool: pool.clone(),
            info: info.clone(),
            server,
        });
        if let Some(old) = old {
            tracing::debug!("server moved from {:?} to {info:?}; new pool", old.info);
            tokio::spawn(async move {
                let _ = old.pool.disconnect().await;
            });
        }
        pool
    }

    /// The current `mysql_async::Pool`, after making sure the server runs (started if needed,
    /// as [`ClientPool::get_conn`] does). It keeps the idle release, but it is bound to the
    /// server's present address and never wakes a stopped server: prefer
    /// [`ClientPool::get_conn`], or ask for the pool again after an error.
    pub async fn mysql_pool(&self) -> Result<Pool> {
        drop(self.get_conn().await?);
        match self.current() {
            Some(c) => Ok(c.pool),
            // Only a poisoned lock leaves none: a pool for the running server.
            None => {
                let info = self.client.ensure().await?;
                Ok(Pool::new(self.client.pool_opts(&info)))
            }
        }
    }

    /// Connections open now (in use or idle in the pool).
    pub fn open_connections(&self) -> usize {
        self.current().map_or(0, |c| {
            c.pool
                .metrics()
                .connection_count
                .load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// Closes every connection; waits until those handed out are dropped. The pool can be
    /// used again afterwards (with new connections).
    pub async fn disconnect(&self) -> Result<()> {
        let old = self.current.lock().ok().and_then(|mut c| c.take());
        match old {
            Some(c) => c
                .pool
                .disconnect()
                .await
                .map_err(|e| sql_error(&c.info, 1, classify(&e), e)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connections_are_released_and_none_kept() {
        let o = idle_pool_opts(Duration::from_secs(30));
        assert_eq!(o.constraints().min(), 0);
        assert_eq!(o.inactive_connection_ttl(), Duration::from_secs(30));
        assert_eq!(o.ttl_check_interval(), Duration::from_millis(7500));
        // Short timeouts are checked every second (mysql_async's floor), long ones every 30 s.
        let short = idle_pool_opts(Duration::from_secs(1));
        assert_eq!(short.ttl_check_interval(), Duration::from_secs(1));
        let long = idle_pool_opts(Duration::from_secs(3600));
        assert_eq!(long.ttl_check_interval(), Duration::from_secs(30));
        // Zero: nothing idles in the pool at all.
        let zero = idle_pool_opts(Duration::ZERO);
        assert_eq!(zero.inactive_connection_ttl(), Duration::ZERO);
        assert_eq!(zero.constraints().min(), 0);
    }
}

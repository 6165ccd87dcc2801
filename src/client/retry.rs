//! Which failures are worth another try ([`ErrorKind`], [`classify`]), the retry budget of one
//! operation, and the [`Error`] a failure that is not retried becomes.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use super::connection::{target_of, ConnectionInfo};
use crate::config::ClientConfig;
use crate::error::Error;

/// Is an error worth retrying (a restart or start in progress), or final?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Retried: the server is starting, restarting or briefly unreachable.
    Transient,
    /// Returned at once: retrying cannot help.
    Permanent,
}

/// Classifies a MySQL error. Retried: connection refused/reset/closed, server gone away, lost
/// connection, a database read only or locked during a restart, too many connections, server
/// starting or shutting down. Everything else (access denied, unknown table, syntax, other
/// statement errors) is permanent.
pub fn classify(e: &mysql_async::Error) -> ErrorKind {
    use mysql_async::{DriverError, Error as E};
    match e {
        E::Io(_) => ErrorKind::Transient,
        E::Driver(DriverError::ConnectionClosed)
        | E::Driver(DriverError::PoolDisconnected)
        | E::Driver(DriverError::PacketOutOfOrder) => ErrorKind::Transient,
        E::Server(s) => {
            let m = s.message.to_ascii_lowercase();
            let transient_code = matches!(
                s.code,
                1040 // too many connections
                | 1053 // server shutdown in progress
                | 1077 // normal shutdown
                | 1152 | 1153 | 1158 | 1159 | 1160 | 1161 // aborted / net errors
                | 2002 | 2003 | 2006 | 2013 // can't connect, gone away, lost connection
            );
            let transient_text = [
                "database is read only",
                "locked by another dolt process",
                "too many connections",
                "server is shutting down",
                "shutting down",
                "starting up",
            ]
            .iter()
            .any(|t| m.contains(t));
            if transient_code || transient_text {
                ErrorKind::Transient
            } else {
                ErrorKind::Permanent
            }
        }
        _ => ErrorKind::Permanent,
    }
}

/// The retry budget of one operation: exponential delays, bounded in count and total time.
pub(super) struct Retries {
    delays: Box<dyn Iterator<Item = Duration> + Send>,
    /// Attempts made so far; the caller counts them.
    pub(super) attempts: u32,
}

impl Retries {
    /// A fresh budget by the `[client]` settings: exponential delays from
    /// `retry_initial_delay`, at most `connect_retries` attempts within `retry_window`.
    pub(super) fn new(c: &ClientConfig) -> Retries {
        Retries::capped(c, c.retry_window)
    }

    /// [`Retries::new`] with no delay longer than `max_delay` (a cluster client: the new
    /// primary is found as soon as it is promoted, not one long backoff later).
    pub(super) fn capped(c: &ClientConfig, max_delay: Duration) -> Retries {
        let delays = ExponentialBuilder::default()
            .with_min_delay(c.retry_initial_delay)
            .with_max_delay(max_delay)
            .with_max_times(c.connect_retries.saturating_sub(1) as usize)
            .with_total_delay(Some(c.retry_window))
            .build();
        Retries {
            delays: Box::new(delays),
            attempts: 0,
        }
    }

    /// After a failure of `kind`: waits and returns true if the operation may run again.
    pub(super) async fn again(&mut self, kind: ErrorKind) -> bool {
        if kind != ErrorKind::Transient {
            return false;
        }
        match self.delays.next() {
            Some(d) => {
                tokio::time::sleep(d).await;
                true
            }
            None => false,
        }
    }
}

/// The server's own message for a server error, else the error as text.
pub(super) fn server_message(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// The MySQL error code of a server error.
pub(super) fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// The error an operation on `info` returns after `attempts` tries, the last failing with `e`.
pub(super) fn sql_error(
    info: &ConnectionInfo,
    attempts: u32,
    kind: ErrorKind,
    e: mysql_async::Error,
) -> Error {
    Error::Sql {
        target: target_of(&info.host, info.port),
        attempts,
        transient: kind == ErrorKind::Transient,
        message: server_message(&e),
        code: server_code(&e),
        source: Some(Box::new(e)),
    }
}

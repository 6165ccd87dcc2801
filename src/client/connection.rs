//! Where a server is and how to reach it: [`ConnectionInfo`], as a URL, a Go DSN or
//! `mysql_async` options.

use std::path::PathBuf;

use mysql_async::OptsBuilder;
use serde::Serialize;

/// Where and how to connect. The password is kept out of `Debug`.
#[derive(Clone, Serialize)]
pub struct ConnectionInfo {
    /// The server's host, as recorded by its supervisor.
    pub host: String,
    /// The server's TCP port.
    pub port: u16,
    /// The MySQL user (`[client] user`).
    pub user: String,
    /// The user's password (`[client] password`); never serialized or shown by `Debug`.
    #[serde(skip)]
    pub password: String,
    /// The server's unix socket, when it exists.
    pub socket: Option<PathBuf>,
    /// The database connections start in, if any.
    pub database: Option<String>,
    /// The server was started read-only.
    pub read_only: bool,
}

impl std::fmt::Debug for ConnectionInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url_redacted())
    }
}

impl ConnectionInfo {
    /// `mysql://user:password@host:port/db`, user and password percent-encoded.
    pub fn url(&self) -> String {
        let mut u = crate::config::url::url_for(&self.user, &self.password, &self.host, self.port);
        if let Some(db) = &self.database {
            u.push_str(&crate::config::url::percent_encode(db));
        }
        u
    }

    /// The URL with the password replaced, for messages and logs.
    pub fn url_redacted(&self) -> String {
        let pw = if self.password.is_empty() { "" } else { "xxx" };
        let mut u = crate::config::url::url_for(&self.user, pw, &self.host, self.port);
        if let Some(db) = &self.database {
            u.push_str(db);
        }
        u
    }

    /// The Go MySQL driver's DSN: `user:password@tcp(host:port)/db`.
    pub fn dsn(&self) -> String {
        let auth = if self.password.is_empty() {
            self.user.clone()
        } else {
            format!("{}:{}", self.user, self.password)
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "{auth}@tcp({host}:{})/{}",
            self.port,
            self.database.as_deref().unwrap_or("")
        )
    }

    /// `mysql_async` connection options for this address (TCP, never the socket).
    pub fn opts(&self) -> OptsBuilder {
        let opts = OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass((!self.password.is_empty()).then(|| self.password.clone()))
            .db_name(self.database.clone());
        crate::server::health::with_known_settings(opts)
    }
}

/// `host:port` as a person would type it: an IPv6 address in brackets.
pub(super) fn target_of(host: &str, port: impl std::fmt::Display) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

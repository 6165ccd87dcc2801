//! `[metrics]`: the supervisor's optional Prometheus endpoint.

use std::net::SocketAddr;

use serde::{Deserialize, Deserializer};

/// `[metrics]`: where the supervisor serves Prometheus metrics on `GET /metrics`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// The address and port to listen on, e.g. `"127.0.0.1:9850"` (an IP address, not a host
    /// name, and a port from 1 to 65535). Unset: no metrics endpoint. A non-loopback address
    /// exposes the metrics to other hosts; the supervisor logs a warning when it binds one.
    /// Default: unset.
    #[serde(deserialize_with = "de_listen")]
    pub listen: Option<SocketAddr>,
}

fn de_listen<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    parse_listen(&s).map(Some).map_err(serde::de::Error::custom)
}

/// Parses `[metrics] listen`: `IP:PORT` (`[IPv6]:PORT`), port not 0.
pub fn parse_listen(s: &str) -> std::result::Result<SocketAddr, String> {
    let fix = "write an IP address and a port, e.g. \"127.0.0.1:9850\" (\"0.0.0.0:9850\" for \
               every interface)";
    match s.trim().parse::<SocketAddr>() {
        // Port 0 would bind a port nobody can find to scrape.
        Ok(a) if a.port() == 0 => Err(format!("invalid address {s:?}: port 0; {fix}")),
        Ok(a) => Ok(a),
        Err(_) => Err(format!("invalid address {s:?}; {fix}")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    #[test]
    fn metrics_are_off_by_default_and_listen_takes_ip_and_port() {
        let c = Config::parse_str("", Path::new("/x/doltctl.toml")).unwrap();
        assert_eq!(c.metrics.listen, None);
        let c = Config::parse_str(
            "[metrics]\nlisten = \"127.0.0.1:9850\"\n",
            Path::new("/x/doltctl.toml"),
        )
        .unwrap();
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9850".parse().unwrap()));
        assert_eq!(
            parse_listen("[::1]:9850"),
            Ok("[::1]:9850".parse().unwrap())
        );
    }

    #[test]
    fn a_bad_listen_value_names_the_key_the_line_and_the_fix() {
        for bad in [
            "\"9850\"",
            "\"localhost:9850\"",
            "\"127.0.0.1:0\"",
            "\"1.2.3.4:99999\"",
            "9850",
        ] {
            let text = format!("[metrics]\nlisten = {bad}\n");
            let msg = Config::parse_str(&text, Path::new("/x/doltctl.toml"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains("/x/doltctl.toml:2:"), "{bad}: {msg}");
            assert!(msg.contains("metrics.listen"), "{bad}: {msg}");
            assert!(
                msg.contains("invalid") && msg.contains("127.0.0.1:9850") || msg.contains("string"),
                "{bad}: {msg}"
            );
        }
    }
}

//! `[cluster]`: this node of a replicated Dolt cluster (direct-to-standby replication, the
//! primary chosen through etcd). Absent: a single server, exactly as without this section.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::parse::de_duration;
use super::settings::{Config, PortSetting};

/// `[cluster]`: this node, its peers and the etcd that elects the primary.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's name; also its key prefix in etcd (`/doltctl/<name>/`).
    pub name: String,
    /// This node's name (unique in the cluster).
    pub node: String,
    /// etcd endpoints, e.g. `["http://127.0.0.1:2379"]`; all `https://` for TLS.
    pub etcd: Vec<String>,
    /// With `https://` endpoints (and only then): the PEM file of the CA that signed etcd's
    /// server certificates (etcd's `--trusted-ca-file`, usually). Relative to the config file.
    #[serde(default)]
    pub etcd_ca: Option<PathBuf>,
    /// The client certificate (PEM) to show an etcd that checks clients
    /// (`--client-cert-auth`); with `etcd_key`.
    #[serde(default)]
    pub etcd_cert: Option<PathBuf>,
    /// The private key (PEM) of `etcd_cert`.
    #[serde(default)]
    pub etcd_key: Option<PathBuf>,
    /// This node's replication (Dolt remotesapi) port.
    pub remotesapi_port: u16,
    /// The leader lease's time to live: a lost primary is replaced about this long after its
    /// last renewal. At least 2s. Default: 5s.
    #[serde(default = "default_lease_ttl", deserialize_with = "de_duration")]
    pub lease_ttl: Duration,
    /// Dolt's `dolt_cluster_ack_writes_timeout_secs`: how long a commit waits for the standbys
    /// before it is acknowledged anyway with warning 3024. 0 to 60s. Default: 5s.
    #[serde(default = "default_ack", deserialize_with = "de_duration")]
    pub ack_writes_timeout: Duration,
    /// Every other node.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
}

/// `[[cluster.peers]]`: another node.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Its node name (its `[cluster] node`).
    pub name: String,
    /// Where it runs (its SQL and remotesapi host).
    pub host: String,
    /// Its SQL port.
    pub port: u16,
    /// Its replication port.
    pub remotesapi_port: u16,
}

fn default_lease_ttl() -> Duration {
    Duration::from_secs(5)
}

fn default_ack() -> Duration {
    Duration::from_secs(5)
}

/// Dolt refuses `dolt_cluster_ack_writes_timeout_secs` above this.
const MAX_ACK_SECS: u64 = 60;

impl ClusterConfig {
    /// The etcd key prefix: `/doltctl/<name>/`.
    pub fn prefix(&self) -> String {
        format!("/doltctl/{}/", self.name)
    }

    /// The peer called `name`, if any.
    pub fn peer(&self, name: &str) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| p.name == name)
    }
}

/// Checks `[cluster]` against itself and `[server]`: the message names the key and the fix.
pub(super) fn validate(cfg: &Config) -> std::result::Result<(), String> {
    let Some(c) = &cfg.cluster else {
        return Ok(());
    };
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.')
    };
    if !name_ok(&c.name) {
        return Err(format!(
            "[cluster] name {:?} is not a usable name (it is an etcd key prefix); use letters, \
             digits, '-', '_' or '.', e.g. \"team\"",
            c.name
        ));
    }
    if !name_ok(&c.node) {
        return Err(format!(
            "[cluster] node {:?} is not a usable node name; use letters, digits, '-', '_' or \
             '.', e.g. \"a\"",
            c.node
        ));
    }
    if c.etcd.is_empty() {
        return Err(
            "[cluster] etcd is empty; list the etcd endpoints, e.g. etcd = [\"http://127.0.0.1:2379\"]"
                .into(),
        );
    }
    for url in &c.etcd {
        check_etcd_url(url)?;
    }
    check_etcd_tls(c)?;
    if c.lease_ttl < Duration::from_secs(2) {
        return Err(format!(
            "[cluster] lease_ttl is {:?}; use at least \"2s\" (the primary renews it every \
             lease_ttl/4 and fences itself after lease_ttl/2 without a renewal)",
            c.lease_ttl
        ));
    }
    if c.ack_writes_timeout > Duration::from_secs(MAX_ACK_SECS)
        || c.ack_writes_timeout.subsec_nanos() != 0
    {
        return Err(format!(
            "[cluster] ack_writes_timeout is {:?}; Dolt takes whole seconds from \"0s\" to \"60s\"",
            c.ack_writes_timeout
        ));
    }
    let PortSetting::Fixed(sql_port) = cfg.server.port else {
        return Err(
            "[server] port is \"auto\", but the peers of a cluster must know it: set a fixed \
             port, e.g. port = 3306"
                .into(),
        );
    };
    if c.remotesapi_port == 0 || sql_port == 0 {
        return Err("[cluster] remotesapi_port and [server] port must not be 0".into());
    }
    // Ports per host: this node's SQL and remotesapi ports, each peer's two.
    let mut taken: HashMap<(String, u16), String> = HashMap::new();
    let mut claim = |host: &str, port: u16, what: String| -> std::result::Result<(), String> {
        let host = normal_host(host);
        if let Some(other) = taken.insert((host.clone(), port), what.clone()) {
            return Err(format!(
                "port {port} on {host} is used twice: by {other} and by {what}; give each its own port"
            ));
        }
        Ok(())
    };
    claim(
        &cfg.server.host,
        sql_port,
        format!("this node's [server] port ({:?})", c.node),
    )?;
    claim(
        &cfg.server.host,
        c.remotesapi_port,
        format!("this node's [cluster] remotesapi_port ({:?})", c.node),
    )?;
    let mut names = vec![c.node.as_str()];
    for p in &c.peers {
        if !name_ok(&p.name) {
            return Err(format!(
                "[[cluster.peers]] name {:?} is not a usable node name; use letters, digits, \
                 '-', '_' or '.'",
                p.name
            ));
        }
        if p.name == c.node {
            return Err(format!(
                "[[cluster.peers]] lists {:?}, which is this node ([cluster] node); list only \
                 the other nodes",
                p.name
            ));
        }
        if names.contains(&p.name.as_str()) {
            return Err(format!(
                "[[cluster.peers]] lists {:?} twice; each node once",
                p.name
            ));
        }
        names.push(&p.name);
        if p.host.trim().is_empty() || p.port == 0 || p.remotesapi_port == 0 {
            return Err(format!(
                "[[cluster.peers]] {:?} needs a host and non-zero port and remotesapi_port",
                p.name
            ));
        }
        claim(&p.host, p.port, format!("peer {:?}'s port", p.name))?;
        claim(
            &p.host,
            p.remotesapi_port,
            format!("peer {:?}'s remotesapi_port", p.name),
        )?;
    }
    Ok(())
}

/// `localhost` and `127.0.0.1` are one host for port clashes.
fn normal_host(h: &str) -> String {
    match h.trim() {
        "localhost" | "::1" | "127.0.0.1" => "127.0.0.1".into(),
        h => h.to_lowercase(),
    }
}

fn check_etcd_url(url: &str) -> std::result::Result<(), String> {
    let bad = || {
        format!(
            "[cluster] etcd has {url:?}, not an endpoint URL; write e.g. \"http://127.0.0.1:2379\""
        )
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let hostport = rest.trim_end_matches('/');
    let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || hostport.contains('/') || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(())
}

/// TLS is all or nothing: every endpoint `https://` with `etcd_ca`, or none and no TLS key.
fn check_etcd_tls(c: &ClusterConfig) -> std::result::Result<(), String> {
    let https = c.etcd.iter().filter(|u| u.starts_with("https://")).count();
    if https != 0 && https != c.etcd.len() {
        return Err(
            "[cluster] etcd mixes http:// and https:// endpoints; one cluster speaks one: \
             write them all https:// (TLS) or all http://"
                .into(),
        );
    }
    if c.etcd_cert.is_some() != c.etcd_key.is_some() {
        return Err(
            "[cluster] etcd_cert and etcd_key go together (the client certificate and its \
             private key): set both, or neither"
                .into(),
        );
    }
    if https == 0 {
        if c.etcd_ca.is_some() || c.etcd_cert.is_some() {
            return Err(
                "[cluster] etcd_ca / etcd_cert / etcd_key are set but the etcd endpoints are \
                 http://, which would send them nothing: write the endpoints https://, or \
                 remove the TLS keys"
                    .into(),
            );
        }
    } else if c.etcd_ca.is_none() {
        return Err(
            "[cluster] etcd uses https:// but etcd_ca is not set: set it to the PEM file of \
             the CA that signed etcd's server certificate (etcd's --trusted-ca-file, usually)"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    const GOOD: &str = r#"
[server]
port = 3306
[cluster]
name = "team"
node = "a"
etcd = ["http://127.0.0.1:2379"]
remotesapi_port = 50051
lease_ttl = "3s"
ack_writes_timeout = "5s"
[[cluster.peers]]
name = "b"
host = "127.0.0.1"
port = 3307
remotesapi_port = 50052
[[cluster.peers]]
name = "c"
host = "127.0.0.1"
port = 3308
remotesapi_port = 50053
"#;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse_str(text, Path::new("/x/doltctl.toml"))
            .and_then(|c| c.validate().map(|()| c))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_three_node_cluster_parses_and_an_absent_section_is_single_node() {
        let c = parse(GOOD).unwrap();
        let k = c.cluster.unwrap();
        assert_eq!(k.node, "a");
        assert_eq!(k.lease_ttl, std::time::Duration::from_secs(3));
        assert_eq!(k.peers.len(), 2);
        assert_eq!(k.prefix(), "/doltctl/team/");
        assert!(parse("").unwrap().cluster.is_none());
        let tls = GOOD.replace(
            "etcd = [\"http://127.0.0.1:2379\"]",
            "etcd = [\"https://etcd1:2379\", \"https://etcd2:2379\"]\netcd_ca = \"ca.pem\"\n\
             etcd_cert = \"a.pem\"\netcd_key = \"a-key.pem\"",
        );
        let k = parse(&tls).unwrap().cluster.unwrap();
        assert_eq!(k.etcd_ca.as_deref(), Some(Path::new("ca.pem")));
        assert_eq!(k.etcd_key.as_deref(), Some(Path::new("a-key.pem")));
        // Loaded from a file, they are relative to its directory, like data_dir.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("doltctl.toml");
        std::fs::write(&file, &tls).unwrap();
        let k = Config::load(&file).unwrap().cluster.unwrap();
        assert_eq!(k.etcd_ca, Some(dir.path().join("ca.pem")));
        assert_eq!(k.etcd_cert, Some(dir.path().join("a.pem")));
        assert_eq!(k.etcd_key, Some(dir.path().join("a-key.pem")));
    }

    #[test]
    fn bad_cluster_configs_name_the_key_and_the_fix() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "name = \"b\"\nhost = \"127.0.0.1\"\nport = 3307",
                "name = \"a\"\nhost = \"127.0.0.1\"\nport = 3307",
                "this node",
            ),
            ("name = \"c\"", "name = \"b\"", "twice"),
            (
                "port = 3308",
                "port = 3306",
                "port 3306 on 127.0.0.1 is used twice",
            ),
            (
                "remotesapi_port = 50053",
                "remotesapi_port = 50051",
                "used twice",
            ),
            (
                "etcd = [\"http://127.0.0.1:2379\"]",
                "etcd = []",
                "etcd is empty",
            ),
            (
                "etcd = [\"http://127.0.0.1:2379\"]",
                "etcd = [\"127.0.0.1:2379\"]",
                "not an endpoint URL",
            ),
            (
                "lease_ttl = \"3s\"",
                "lease_ttl = \"1s\"",
                "at least \"2s\"",
            ),
            (
                "etcd = [\"http://127.0.0.1:2379\"]",
                "etcd = [\"https://127.0.0.1:2379\"]",
                "etcd_ca is not set",
            ),
            (
                "etcd = [\"http://127.0.0.1:2379\"]",
                "etcd = [\"https://127.0.0.1:2379\", \"http://127.0.0.1:2380\"]",
                "mixes http:// and https://",
            ),
            (
                "etcd = [\"http://127.0.0.1:2379\"]",
                "etcd = [\"http://127.0.0.1:2379\"]\netcd_ca = \"ca.pem\"",
                "would send them nothing",
            ),
            (
                "etcd = [\"http://127.0.0.1:2379\"]",
                "etcd = [\"https://127.0.0.1:2379\"]\netcd_ca = \"ca.pem\"\netcd_cert = \"c.pem\"",
                "set both, or neither",
            ),
            (
                "ack_writes_timeout = \"5s\"",
                "ack_writes_timeout = \"61s\"",
                "\"0s\" to \"60s\"",
            ),
            (
                "port = 3306",
                "port = \"auto\"",
                "[server] port is \"auto\"",
            ),
        ];
        for (from, to, want) in cases {
            let text = GOOD.replacen(from, to, 1);
            assert_ne!(text, GOOD, "{from}");
            let err = parse(&text).unwrap_err();
            assert!(err.contains(want), "{to}: {err}");
        }
        let err = parse(&GOOD.replace("node = \"a\"", "node = \"a\"\nport = 1")).unwrap_err();
        assert!(
            err.contains("cluster.port") || err.contains("unknown"),
            "{err}"
        );
    }
}

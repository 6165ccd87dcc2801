//! TLS to etcd: the `[cluster]` keys `etcd_ca`, `etcd_cert` and `etcd_key` read into the etcd
//! client's options, on every connect: each `doltctl cluster` command, and a supervisor at its
//! start and again whenever one of the files changes (certificate rotation needs no restart).

use std::path::Path;
use std::time::SystemTime;

use etcd_client::{Certificate, Identity, TlsOptions};

use crate::config::ClusterConfig;
use crate::error::{Error, Result};

/// The TLS options for `c`'s etcd, or `None` for `http://` endpoints (config validation has
/// made sure the keys and the scheme agree).
pub(crate) fn tls_options(c: &ClusterConfig) -> Result<Option<TlsOptions>> {
    let Some(ca) = &c.etcd_ca else {
        return Ok(None);
    };
    let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read_pem(
        "etcd_ca",
        ca,
        "CERTIFICATE",
    )?));
    if let (Some(cert), Some(key)) = (&c.etcd_cert, &c.etcd_key) {
        tls = tls.identity(Identity::from_pem(
            read_pem("etcd_cert", cert, "CERTIFICATE")?,
            read_pem("etcd_key", key, "PRIVATE KEY")?,
        ));
    }
    Ok(Some(tls))
}

/// The size and modification time of each TLS file, to notice a renewed one (a rename of a
/// new file over it, or a Kubernetes secret's symlink swap, changes them).
pub(crate) type FilesStamp = Vec<Option<(u64, Option<SystemTime>)>>;

/// [`FilesStamp`] of `c`'s TLS files now (empty without TLS).
pub(crate) fn files_stamp(c: &ClusterConfig) -> FilesStamp {
    [&c.etcd_ca, &c.etcd_cert, &c.etcd_key]
        .into_iter()
        .flatten()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.len(), m.modified().ok()))
        })
        .collect()
}

/// The key of `c` to fix for an etcd error `message`, when the error shows a TLS cause (the
/// TLS library's words, as rustls 0.23 writes them); `None` otherwise.
pub(crate) fn hint(c: &ClusterConfig, message: &str) -> Option<String> {
    let has = |words: &[&str]| words.iter().any(|w| message.contains(w));
    if !c.etcd.iter().any(|u| u.starts_with("https://")) {
        // An http:// client talking to a TLS listener has its connection dropped (reset,
        // closed or a broken pipe, as the timing goes); a refused one is an etcd that is down.
        let dropped = [
            "broken pipe",
            "BrokenPipe",
            "ConnectionReset",
            "connection reset",
            "connection closed",
            "frame with invalid size",
        ];
        return has(&dropped).then(|| {
            "if etcd serves TLS, write the endpoints https:// and set [cluster] etcd_ca".into()
        });
    }
    let ca = c
        .etcd_ca
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if has(&["UnknownIssuer", "BadSignature"]) {
        return Some(format!(
            "etcd's certificate is not signed by the CA in [cluster] etcd_ca = {ca}: point \
             etcd_ca at the CA that signed it"
        ));
    }
    if has(&["NotValidForName"]) {
        return Some(
            "etcd's certificate does not name the host written in [cluster] etcd: use a \
             host its subjectAltName lists"
                .into(),
        );
    }
    if has(&["Expired", "NotValidYet"]) {
        return Some("etcd's certificate is expired or not yet valid".into());
    }
    if has(&[
        "BadCertificate",
        "CertificateRequired",
        "UnknownCA",
        "DecryptError",
    ]) {
        return Some(if c.etcd_cert.is_some() {
            "etcd refused this node's client certificate: [cluster] etcd_cert must be \
             signed by the CA etcd trusts (its --trusted-ca-file)"
                .into()
        } else {
            "etcd asks for a client certificate: set [cluster] etcd_cert and etcd_key".into()
        });
    }
    (c.etcd_cert.is_none() && has(&["transport error", "connection closed"])).then(|| {
        "if etcd checks client certificates (--client-cert-auth), set [cluster] etcd_cert \
             and etcd_key"
            .into()
    })
}

/// The PEM text of `[cluster] key`, checked to hold a `-----BEGIN ...{label}-----` block: the
/// TLS library would only say "handshake failed", much later, for a wrong file.
fn read_pem(key: &str, path: &Path, label: &str) -> Result<Vec<u8>> {
    let text = std::fs::read(path).map_err(|e| {
        Error::ConfigValue(format!(
            "[cluster] {key} = {}: cannot read it ({e}); point {key} at a readable PEM file",
            path.display()
        ))
    })?;
    let has_block = String::from_utf8_lossy(&text)
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with(&format!("{label}-----")));
    if !has_block {
        return Err(Error::ConfigValue(format!(
            "[cluster] {key} = {}: no PEM {label} in it (a line \"-----BEGIN ...{label}-----\"); \
             point {key} at the PEM file itself",
            path.display()
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A `[cluster]` with http:// or https:// etcd, and a client certificate or not.
    fn settings(https: bool, client_cert: bool) -> ClusterConfig {
        let scheme = if https { "https" } else { "http" };
        ClusterConfig {
            name: "t".into(),
            node: "a".into(),
            etcd: vec![format!("{scheme}://127.0.0.1:2379")],
            etcd_ca: https.then(|| PathBuf::from("/etc/ca.pem")),
            etcd_cert: client_cert.then(|| PathBuf::from("/etc/a.pem")),
            etcd_key: client_cert.then(|| PathBuf::from("/etc/a-key.pem")),
            remotesapi_port: 50051,
            lease_ttl: std::time::Duration::from_secs(5),
            ack_writes_timeout: std::time::Duration::from_secs(5),
            peers: vec![],
        }
    }

    #[test]
    fn tls_failures_are_traced_to_the_key_to_fix() {
        // The TLS library's words, as seen from etcd 3.4 in tests/cluster_tls.rs.
        let unknown = "invalid peer certificate: UnknownIssuer";
        let h = hint(&settings(true, true), unknown).unwrap();
        assert!(h.contains("etcd_ca = /etc/ca.pem"), "{h}");
        let refused = "received fatal alert: BadCertificate";
        assert!(hint(&settings(true, false), refused)
            .unwrap()
            .contains("set [cluster] etcd_cert"));
        assert!(hint(&settings(true, true), refused)
            .unwrap()
            .contains("refused this node's"));
        let closed = "transport error: hyper::Error(Canceled, \"connection closed\")";
        assert!(hint(&settings(true, false), closed)
            .unwrap()
            .contains("--client-cert-auth"));
        assert!(hint(&settings(true, true), closed).is_none());
        let reset = "transport error: hyper::Error(Io, Kind(ConnectionReset))";
        assert!(hint(&settings(false, false), reset)
            .unwrap()
            .contains("https://"));
        // An etcd that is down is not a TLS matter.
        let down = "transport error: ConnectError(\"tcp connect error\", Connection refused)";
        assert!(hint(&settings(false, false), down).is_none());
        assert!(hint(&settings(true, true), down).is_none());
    }

    #[test]
    fn unreadable_or_wrong_pem_files_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = read_pem("etcd_ca", &missing, "CERTIFICATE")
            .unwrap_err()
            .to_string();
        assert!(err.contains("etcd_ca") && err.contains("nope.pem"), "{err}");
        let key = dir.path().join("key.pem");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = read_pem("etcd_ca", &key, "CERTIFICATE")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no PEM CERTIFICATE"), "{err}");
        assert!(read_pem("etcd_key", &key, "PRIVATE KEY").is_ok());
        let rsa = dir.path().join("rsa.pem");
        std::fs::write(&rsa, "-----BEGIN RSA PRIVATE KEY-----\nAA==\n").unwrap();
        assert!(read_pem("etcd_key", &rsa, "PRIVATE KEY").is_ok());
    }
}

//! TLS to etcd: the `[cluster]` keys `etcd_ca`, `etcd_cert` and `etcd_key` read into the etcd
//! client's options, on every connect: each `doltctl cluster` command, and a supervisor at its
//! start and again whenever one of the files changes (certificate rotation needs no restart).

use std::path::{Path, PathBuf};
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

/// What the TLS settings were, to say which key an etcd error points at.
#[derive(Debug, Clone)]
pub(crate) struct TlsSettings {
    https: bool,
    ca: Option<PathBuf>,
    client_cert: bool,
}

impl TlsSettings {
    pub(crate) fn of(c: &ClusterConfig) -> TlsSettings {
        TlsSettings {
            https: c.etcd.iter().any(|u| u.starts_with("https://")),
            ca: c.etcd_ca.clone(),
            client_cert: c.etcd_cert.is_some(),
        }
    }

    /// The key to fix for an etcd error `message`, when the error shows a TLS cause (the TLS
    /// library's words, as rustls 0.23 writes them); `None` otherwise.
    pub(crate) fn hint(&self, message: &str) -> Option<String> {
        let has = |words: &[&str]| words.iter().any(|w| message.contains(w));
        if !self.https {
            // An http:// client talking to a TLS listener gets its bytes refused.
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
        let ca = self
            .ca
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
            return Some(if self.client_cert {
                "etcd refused this node's client certificate: [cluster] etcd_cert must be \
                 signed by the CA etcd trusts (its --trusted-ca-file)"
                    .into()
            } else {
                "etcd asks for a client certificate: set [cluster] etcd_cert and etcd_key".into()
            });
        }
        (!self.client_cert && has(&["transport error", "connection closed"])).then(|| {
            "if etcd checks client certificates (--client-cert-auth), set [cluster] etcd_cert \
             and etcd_key"
                .into()
        })
    }
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
    use super::*;

    fn settings(https: bool, client_cert: bool) -> TlsSettings {
        TlsSettings {
            https,
            ca: https.then(|| PathBuf::from("/etc/ca.pem")),
            client_cert,
        }
    }

    #[test]
    fn tls_failures_are_traced_to_the_key_to_fix() {
        // The TLS library's words, as seen from etcd 3.4 in tests/cluster_tls.rs.
        let unknown = "invalid peer certificate: UnknownIssuer";
        let hint = settings(true, true).hint(unknown).unwrap();
        assert!(hint.contains("etcd_ca = /etc/ca.pem"), "{hint}");
        let refused = "received fatal alert: BadCertificate";
        assert!(settings(true, false)
            .hint(refused)
            .unwrap()
            .contains("set [cluster] etcd_cert"));
        assert!(settings(true, true)
            .hint(refused)
            .unwrap()
            .contains("refused this node's"));
        let closed = "transport error: hyper::Error(Canceled, \"connection closed\")";
        assert!(settings(true, false)
            .hint(closed)
            .unwrap()
            .contains("--client-cert-auth"));
        assert!(settings(true, true).hint(closed).is_none());
        let reset = "transport error: hyper::Error(Io, Kind(ConnectionReset))";
        assert!(settings(false, false)
            .hint(reset)
            .unwrap()
            .contains("https://"));
        // An etcd that is down is not a TLS matter.
        let down = "transport error: ConnectError(\"tcp connect error\", Connection refused)";
        assert!(settings(false, false).hint(down).is_none());
        assert!(settings(true, true).hint(down).is_none());
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

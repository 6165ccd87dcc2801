//! `doltctl version`: doltctl's version, the dolt binary it would run, and the dolt version it
//! is pinned to.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use crate::config::{Config, ConfigSource};
use crate::error::Result;
use crate::server::dolt;

/// doltctl's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `version` found out about dolt.
struct DoltFound {
    /// The binary doltctl resolves, if any.
    path: Option<PathBuf>,
    /// Its version, if it ran and said.
    version: Option<String>,
    /// Why there is no path or version.
    error: Option<String>,
}

/// `doltctl version [--json]`. Exits 0 when the dolt binary is found and reports a version,
/// else 1 (everything known is still printed; the reason goes to stderr). A config that does
/// not load is reported as a warning, and dolt is then looked for with the built-in defaults
/// and the environment (`DOLT_BIN`).
pub fn version(src: &ConfigSource, json: bool) -> Result<ExitCode> {
    let cfg = match Config::discover(src) {
        Ok(c) => c,
        Err(e) => {
            errln!("doltctl: warning: {e}; looking for dolt with the built-in defaults");
            let mut c = Config::default();
            c.apply_env();
            c
        }
    };
    let dolt = find_dolt(&cfg);
    let ok = dolt.version.is_some();
    if json {
        let v = json!({
            "doltctl": VERSION,
            "dolt": {
                "path": dolt.path,
                "version": dolt.version,
                "error": dolt.error,
            },
            "pinned_dolt": dolt::PINNED_VERSION,
            "dolt_matches_pinned": dolt.version.as_deref() == Some(dolt::PINNED_VERSION),
        });
        outln!("{v:#}");
    } else {
        outln!("doltctl {VERSION}");
        match (&dolt.path, &dolt.version) {
            (Some(p), Some(v)) if v == dolt::PINNED_VERSION => {
                outln!("dolt    {v} ({})", p.display())
            }
            (Some(p), Some(v)) => outln!(
                "dolt    {v} ({}); doltctl is tested with {}",
                p.display(),
                dolt::PINNED_VERSION
            ),
            (Some(p), None) => outln!("dolt    unusable ({})", p.display()),
            (None, _) => outln!("dolt    not found"),
        }
        outln!("pinned  dolt {}", dolt::PINNED_VERSION);
    }
    if let Some(e) = &dolt.error {
        errln!("doltctl: {e}");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn find_dolt(cfg: &Config) -> DoltFound {
    let path = match dolt::resolve_binary(cfg) {
        Ok(p) => p,
        Err(e) => {
            return DoltFound {
                path: None,
                version: None,
                error: Some(e.to_string()),
            }
        }
    };
    // A throwaway root: `dolt version` writes into its root, and `version` changes nothing.
    let asked = tempfile::Builder::new()
        .prefix("doltctl-version")
        .tempdir()
        .map_err(|e| crate::Error::io(std::env::temp_dir(), e))
        .and_then(|root| {
            let env = vec![
                ("DOLT_DISABLE_EVENT_FLUSH".to_string(), "1".to_string()),
                (
                    "DOLT_ROOT_PATH".to_string(),
                    root.path().to_string_lossy().into_owned(),
                ),
            ];
            super::runtime(false)?.block_on(dolt::version(&path, &env))
        });
    match asked {
        Ok(v) => DoltFound {
            path: Some(path),
            version: Some(v),
            error: None,
        },
        Err(e) => DoltFound {
            path: Some(path),
            version: None,
            error: Some(e.to_string()),
        },
    }
}

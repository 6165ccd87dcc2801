//! Who doltctl's commits (`dolt init`, seeds) are by: the config's author, else git's, else
//! doltctl's own.

use std::path::Path;

use crate::config::Config;

/// Used when neither the config nor git names an author.
pub const FALLBACK_AUTHOR_NAME: &str = "doltctl";
/// The email that goes with [`FALLBACK_AUTHOR_NAME`].
pub const FALLBACK_AUTHOR_EMAIL: &str = "doltctl@localhost";

/// Who doltctl's commits are by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    /// The author's name.
    pub name: String,
    /// The author's email address.
    pub email: String,
}

impl std::fmt::Display for Author {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} <{}>", self.name, self.email)
    }
}

/// `[bootstrap] author_name/author_email`, else git's `user.name`/`user.email` (as seen from
/// the config's directory), else doltctl's own identity.
pub fn author(cfg: &Config) -> Author {
    let dir = cfg.resolve(Path::new("."));
    let pick = |configured: &Option<String>, key: &str, fallback: &str| {
        configured
            .clone()
            .or_else(|| git_config(&dir, key))
            .unwrap_or_else(|| fallback.to_string())
    };
    Author {
        name: pick(
            &cfg.bootstrap.author_name,
            "user.name",
            FALLBACK_AUTHOR_NAME,
        ),
        email: pick(
            &cfg.bootstrap.author_email,
            "user.email",
            FALLBACK_AUTHOR_EMAIL,
        ),
    }
}

fn git_config(dir: &Path, key: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["config", "--get", key])
        .current_dir(if dir.is_dir() { dir } else { Path::new("/") })
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let v = String::from_utf8(out.stdout).ok()?.trim().to_string();
    // `Name <email>` is how Dolt takes an author: angle brackets would break it.
    (out.status.success() && !v.is_empty() && !v.contains(['<', '>', '\n'])).then_some(v)
}

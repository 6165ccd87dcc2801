//! The unit's name: `doltctl-<data dir's name>-<hash>.service`. The name part is escaped the
//! way `systemd-escape` escapes (bytes outside `[A-Za-z0-9:_.]` become `\xNN`), except that
//! `-` is kept: it stands for `/` only in path-derived names, which this is not, and a
//! `my-app` directory should not become `my\x2dapp`. The hash of the whole path keeps two
//! data dirs of the same name apart.

use std::path::Path;

use crate::error::{Error, Result};

/// Unit names may be 255 bytes; the name part is kept well below that.
const MAX_PART: usize = 64;

/// The default unit name for a data dir (an absolute path).
pub(crate) fn default_unit_name(data_dir: &Path, hash: u64) -> String {
    let base = data_dir
        .file_name()
        .map(|n| n.as_encoded_bytes().to_vec())
        .unwrap_or_else(|| b"root".to_vec());
    format!("doltctl-{}-{:08x}.service", escape(&base), hash as u32)
}

/// `systemd-escape` of one name, but keeping `-`; cut to [`MAX_PART`] bytes on an escape's
/// boundary.
fn escape(raw: &[u8]) -> String {
    let mut out = String::new();
    for (i, b) in raw.iter().enumerate() {
        let keep =
            b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-') || (*b == b'.' && i > 0);
        let piece = if keep {
            (*b as char).to_string()
        } else {
            format!("\\x{b:02x}")
        };
        if out.len() + piece.len() > MAX_PART {
            break;
        }
        out.push_str(&piece);
    }
    out
}

/// A name given with `--name`: with or without `.service`, only characters valid in a unit
/// name, and no template (`@`).
pub(crate) fn given_unit_name(name: &str) -> Result<String> {
    let full = if name.ends_with(".service") {
        name.to_string()
    } else {
        format!("{name}.service")
    };
    let stem = &full[..full.len() - ".service".len()];
    let bad = stem
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-' | '\\')));
    let why = if stem.is_empty() {
        Some("it is empty".to_string())
    } else if full.len() > 255 {
        Some("it is longer than 255 bytes".to_string())
    } else {
        bad.map(|c| format!("{c:?} is not allowed in a unit name (letters, digits, : _ . - only)"))
    };
    match why {
        Some(message) => Err(Error::ServiceUnit {
            unit: full.into(),
            message: format!("bad --name: {message}"),
        }),
        None => Ok(full),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_escaped_bounded_and_distinct_per_path() {
        assert_eq!(
            default_unit_name(Path::new("/srv/my-app_1.2"), 0x1234_5678_9abc_def0),
            "doltctl-my-app_1.2-9abcdef0.service"
        );
        assert_eq!(
            default_unit_name(Path::new("/home/a/my app/.data"), 0xff),
            "doltctl-\\x2edata-000000ff.service"
        );
        assert_eq!(
            default_unit_name(Path::new("/home/a/dätä"), 1),
            "doltctl-d\\xc3\\xa4t\\xc3\\xa4-00000001.service"
        );
        let long = format!("/x/{}", "é".repeat(100));
        let name = default_unit_name(Path::new(&long), 1);
        assert!(
            name.len() <= "doltctl--00000001.service".len() + MAX_PART,
            "{name}"
        );
        assert!(!name.contains("\\x-") && !name.ends_with("\\x"), "{name}");
        assert_eq!(
            default_unit_name(Path::new("/"), 1),
            "doltctl-root-00000001.service"
        );
    }

    #[test]
    fn given_names_get_the_suffix_and_bad_ones_say_why() {
        assert_eq!(given_unit_name("dolt-app").unwrap(), "dolt-app.service");
        assert_eq!(
            given_unit_name("dolt-app.service").unwrap(),
            "dolt-app.service"
        );
        for bad in ["", ".service", "a b", "a/b", "tmpl@", "x;rm"] {
            let e = given_unit_name(bad).unwrap_err().to_string();
            assert!(e.contains("bad --name"), "{bad}: {e}");
        }
    }
}

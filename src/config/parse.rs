//! Durations and sizes as written in `doltctl.toml`, and the serde helpers that read them.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Durations are parsed by `humantime` (the parser `humantime-serde` wraps). `humantime-serde`
/// itself is not used: its error, `invalid value: string "soon", expected a duration`, drops
/// humantime's reason and the examples of [`parse_duration`]'s message.
pub(super) fn de_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

pub(super) fn de_size<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(u64),
        Str(String),
    }
    match Raw::deserialize(d)? {
        Raw::Num(n) => Ok(n),
        Raw::Str(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

/// Parses durations such as `100ms`, `30s`, `1m 30s`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); write e.g. \"100ms\", \"30s\", \"5m\""))
}

/// Parses sizes such as `50MiB`, `10MB`, `4096` (bytes), with `bytesize`: decimal (`k`, `KB`,
/// `MB`, ...) and binary (`KiB`, `MiB`, ...) units in any case, a space before the unit allowed.
/// Everything accepted before bytesize means the same; bytesize adds `Ki`/`Mi`/`Gi` and the
/// T, P and E units (so `1e` is an exabyte, not an error).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    // bytesize wants a unit after a fractional number ("1.5" alone is an error); a bare number
    // has always meant bytes here.
    let t = if t.ends_with(|c: char| c.is_ascii_digit() || c == '.') {
        format!("{t}B")
    } else {
        t.to_string()
    };
    t.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| {
            format!("invalid size {s:?}; write e.g. \"50MiB\", \"10MB\" or a number of bytes")
        })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::error::Result;

    fn parse(s: &str) -> Result<Config> {
        Config::parse_str(s, Path::new("/x/doltctl.toml"))
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("50MiB").unwrap(), 50 << 20);
        assert_eq!(parse_size("10 MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
    }

    /// Every form doltctl accepted before sizes were parsed with bytesize still means the same.
    #[test]
    fn sizes_keep_their_meaning() {
        for (text, bytes) in [
            ("8KiB", 8 << 10),
            (" 10 MB ", 10_000_000),
            ("1.5KiB", 1536),
            ("1.5", 1),
            ("4096.", 4096),
            (".5 mib", 1 << 19),
            ("2k", 2000),
            ("2kb", 2000),
            ("3M", 3_000_000),
            ("1G", 1_000_000_000),
            ("1gib", 1 << 30),
            ("7b", 7),
            ("7 B", 7),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text:?}");
        }
        for bad in ["", "MiB", "-1", "1.5.5", "10 XB", "1e3", "5 MiBs"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.starts_with("invalid size"), "{bad:?}: {err}");
        }
        let c = parse("[logs]\nmax_size = 8192\n").unwrap();
        assert_eq!(c.logs.max_size, 8192);
    }

    #[test]
    fn durations_parse() {
        for (text, d) in [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            (" 5m ", Duration::from_secs(300)),
            ("1m 30s", Duration::from_secs(90)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(text), Ok(d), "{text:?}");
        }
        assert!(parse_duration("soon")
            .unwrap_err()
            .starts_with("invalid duration \"soon\""));
    }
}

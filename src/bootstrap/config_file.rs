//! The `doltctl.toml` that `init` writes when there is none: the commented example with the
//! data dir and databases filled in. An existing file is never changed.

use std::io::Write;
use std::path::PathBuf;

use crate::config::names::check_db_name;
use crate::config::{Config, ConfigSource, CONFIG_ENV, CONFIG_FILE_NAME};
use crate::error::{Error, IoContext, Result};

/// The commented example config; `init` writes it with the data dir and databases filled in.
pub const CONFIG_TEMPLATE: &str = include_str!("../../config/doltctl.example.toml");

/// The example config with `data_dir` and `[bootstrap] databases` set.
pub fn render_config(data_dir: &str, databases: &[String]) -> Result<String> {
    let dd = format!("data_dir = {}", toml::Value::String(data_dir.to_string()));
    let list: Vec<String> = databases
        .iter()
        .map(|d| toml::Value::String(d.clone()).to_string())
        .collect();
    let dbs = format!("databases = [{}]", list.join(", "));
    let mut seen = (false, false);
    let mut out = String::from("# Written by `doltctl init` from config/doltctl.example.toml.\n");
    for line in CONFIG_TEMPLATE.lines() {
        if !seen.0 && line.starts_with("data_dir = ") {
            out.push_str(&dd);
            seen.0 = true;
        } else if !seen.1 && line.starts_with("databases = ") {
            out.push_str(&dbs);
            seen.1 = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if seen != (true, true) {
        return Err(Error::ConfigValue(
            "the built-in config template has no `data_dir = ` or `databases = ` line \
             (config/doltctl.example.toml was changed); this is a bug in doltctl"
                .into(),
        ));
    }
    Ok(out)
}

/// The config `init` works with: the one doltctl finds (`--config`, `$DOLTCTL_CONFIG`,
/// `doltctl.toml` here or above), written from the template where there is none (at `--config`
/// / `$DOLTCTL_CONFIG` if given, else `./doltctl.toml`). Returns its path and whether it was
/// written now. An existing file is never changed.
pub fn ensure_config(src: &ConfigSource, databases: &[String]) -> Result<(PathBuf, bool)> {
    let cwd = std::env::current_dir().at(".")?;
    let named = src.explicit.clone().or_else(|| {
        std::env::var_os(CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let target = match named {
        Some(p) => cwd.join(p),
        None => match cwd
            .ancestors()
            .map(|d| d.join(CONFIG_FILE_NAME))
            .find(|p| p.is_file())
        {
            Some(found) => found,
            None => cwd.join(CONFIG_FILE_NAME),
        },
    };
    if target.exists() {
        return Ok((target, false));
    }
    for d in databases {
        check_db_name(d).map_err(Error::ConfigValue)?;
    }
    let data_dir = match &src.data_dir_override {
        // Relative paths in the file are relative to the file, on the command line to `.`.
        Some(d) if d.is_relative() && target.parent() != Some(cwd.as_path()) => {
            cwd.join(d).to_string_lossy().into_owned()
        }
        Some(d) => d.to_string_lossy().into_owned(),
        None => crate::Config::default()
            .data_dir
            .to_string_lossy()
            .into_owned(),
    };
    let text = render_config(&data_dir, databases)?;
    // The rendered file must load as it will be read back.
    Config::parse_str(&text, &target)?;
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    // create_new: a config that appeared meanwhile is never overwritten.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .at(&target)?;
    f.write_all(text.as_bytes()).at(&target)?;
    Ok((target, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::Path;

    #[test]
    fn rendered_config_loads_with_the_chosen_values() {
        let text = render_config("my data/dir \"x\"", &["app".into(), "b_2".into()]).unwrap();
        let cfg = Config::parse_str(&text, Path::new("/p/doltctl.toml")).unwrap();
        assert_eq!(cfg.data_dir, PathBuf::from("my data/dir \"x\""));
        assert_eq!(cfg.bootstrap.databases, ["app", "b_2"]);
        assert!(cfg.bootstrap.seed.is_empty());
        // The comments survive.
        assert!(text.contains("[[bootstrap.seed]]"));
        let none = render_config("dolt", &[]).unwrap();
        assert!(none.contains("\ndatabases = []\n"), "{none}");
    }
}

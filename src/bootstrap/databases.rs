//! The databases `init` creates: `dolt init` in `<data_dir>/<name>` while no server runs,
//! `CREATE DATABASE` through the server while one does (Dolt finds databases on disk only at
//! start).

use std::path::Path;

use super::author::Author;
use crate::config::instance::Instance;
use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::import::quote_ident;
use crate::server::dolt;

/// The databases of `names` that the data dir lacks (no `<name>/.dolt`). A directory of such a
/// name that is not empty is an error: it is not a Dolt database, and doltctl does not touch it.
pub(super) fn missing<'a>(instance: &Instance, names: &'a [String]) -> Result<Vec<&'a String>> {
    let missing: Vec<&String> = names
        .iter()
        .filter(|d| !instance.data_dir().join(d).join(".dolt").is_dir())
        .collect();
    for d in &missing {
        let dir = instance.data_dir().join(d);
        let non_empty = std::fs::read_dir(&dir).is_ok_and(|mut r| r.next().is_some());
        if non_empty {
            return Err(Error::DoltCommand {
                what: format!("creating database {d}"),
                message: format!(
                    "{} exists and is not empty but is not a Dolt database (it has no .dolt); \
                 doltctl does not touch it: move it aside or choose another name",
                    dir.display()
                ),
            });
        }
    }
    Ok(missing)
}

/// Creates database `db`: through the running server when `server_up`, else with `dolt init`.
pub(super) async fn create(
    cfg: &Config,
    instance: &Instance,
    db: &str,
    server_up: bool,
    author: &Author,
) -> Result<()> {
    if server_up {
        let client = crate::Client::from_config(cfg.clone());
        client
            .execute(&[format!("CREATE DATABASE IF NOT EXISTS {}", quote_ident(db))])
            .await?;
    } else {
        dolt_init(cfg, instance, db, author).await?;
    }
    Ok(())
}

/// `dolt init` in `<data_dir>/<db>`, with doltctl's root path and an explicit identity.
async fn dolt_init(cfg: &Config, instance: &Instance, db: &str, author: &Author) -> Result<()> {
    let bin = dolt::resolve_binary(cfg)?;
    dolt_init_in(
        &bin,
        instance.data_dir(),
        db,
        author,
        &dolt::dolt_env(instance),
    )
    .await
}

/// Creates database `db` as `<data_dir>/<db>` with `dolt init` (no server may run on
/// `data_dir`), giving dolt the environment `env`. A directory this call created is removed
/// again when `dolt init` fails.
pub(crate) async fn dolt_init_in(
    bin: &Path,
    data_dir: &Path,
    db: &str,
    author: &Author,
    env: &[(String, String)],
) -> Result<()> {
    let dir = data_dir.join(db);
    let created = !dir.exists();
    std::fs::create_dir_all(&dir).at(&dir)?;
    let out = tokio::process::Command::new(bin)
        .args(["init", "--name", &author.name, "--email", &author.email])
        .current_dir(&dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| Error::DoltBinary {
            bin: bin.to_path_buf(),
            message: format!("cannot run: {e}"),
        })?;
    if out.status.success() {
        return Ok(());
    }
    if created {
        // Only what this call created: a half-made database would look like a real one next
        // time.
        let _ = std::fs::remove_dir_all(&dir);
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    Err(Error::DoltCommand {
        what: format!("`dolt init` for database {db} in {}", dir.display()),
        message: format!("{} ({})", text.trim(), dolt::describe_exit(out.status)),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::names::check_db_name;

    #[test]
    fn database_names() {
        assert!(check_db_name("app_1").is_ok());
        for bad in ["", "my-db", "a b", "a/b", "mysql", "x".repeat(65).as_str()] {
            assert!(check_db_name(bad).is_err(), "{bad}");
        }
    }
}

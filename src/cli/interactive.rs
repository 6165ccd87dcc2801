//! `doltctl sql` on a terminal: an interactive session in a MySQL-protocol client
//! (`mariadb`, else `mysql`, found on PATH) pointed at this server. `dolt sql` is not used:
//! it opens the databases' files itself, next to the running server.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;
use crate::error::{Error, Result};

use super::{exec, render, runtime, SqlArgs};

/// The clients tried, in order.
pub const CLIENTS: [&str; 2] = ["mariadb", "mysql"];

/// The first of [`CLIENTS`] on PATH.
fn find_client() -> Result<PathBuf> {
    CLIENTS
        .iter()
        .find_map(|c| which::which(c).ok())
        .ok_or_else(|| Error::NoSqlClient {
            looked: CLIENTS.join(", "),
        })
}

/// Runs the client until it exits and returns its exit code. User, host, port and database
/// are arguments; the password only reaches it through `MYSQL_PWD`. Ctrl-C belongs to the
/// client (it cancels a query there): doltctl does not pass it on a second time.
pub(super) fn sql(cfg: Config, args: &SqlArgs) -> Result<ExitCode> {
    if args.json || args.read_only {
        errln!(
            "doltctl: sql: --json and --read-only apply to statements from -q or stdin, \
             not to an interactive session; pass -q 'SQL' or pipe the statements in"
        );
        return Ok(ExitCode::from(2));
    }
    let program = find_client()?;
    let client = super::cli_client(cfg, args.database.clone());
    let rt = runtime(false)?;
    let info = rt.block_on(client.ensure())?;
    let mut command: Vec<OsString> = vec![
        program.into(),
        format!("--user={}", info.user).into(),
        format!("--host={}", info.host).into(),
        format!("--port={}", info.port).into(),
        "--protocol=TCP".into(),
    ];
    if let Some(db) = &info.database {
        command.push(format!("--database={db}").into());
    }
    let vars = render::env_vars(&info);
    rt.block_on(exec::run(&command, &vars, exec::Forward::TermOnly))
}

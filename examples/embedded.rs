//! A program that embeds doltctl and needs no `doltctl` binary: it installs the supervisor
//! hook, then asks a client for a query result. When no server runs for the data dir, the
//! client starts one, supervised by this same program (started again as a supervisor).
//!
//! Usage: embedded [DATA_DIR]
//!
//! With DATA_DIR: `Client::for_data_dir(DATA_DIR)` (built-in defaults). Without: the config as
//! the CLI finds it (`$DOLTCTL_CONFIG`, else `doltctl.toml` here or above, else defaults).
//! Prints `42` from the server. The server it started keeps running until `doltctl stop` (or
//! `[client] autostart_idle_timeout` without clients).

use std::process::ExitCode;

use mysql_async::prelude::Queryable;

fn main() -> ExitCode {
    // First thing: when this process was started as a supervisor, it runs it and exits here.
    doltctl::run_supervisor_if_requested();

    let client = match std::env::args_os().nth(1) {
        Some(dir) => doltctl::Client::for_data_dir(dir),
        None => doltctl::Client::discover(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let answer = runtime.block_on(async {
        client?
            .with_retry(|conn| {
                Box::pin(async move {
                    let n: Option<i64> = conn.query_first("SELECT 40 + 2").await?;
                    Ok(n.unwrap_or(0))
                })
            })
            .await
    });
    match answer {
        Ok(n) => {
            println!("{n}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("embedded: {e}");
            ExitCode::FAILURE
        }
    }
}

//! `doltctl status`: the state file as a person or a script reads it.

use std::process::ExitCode;

use crate::client::ConnectionInfo;
use crate::config::Config;
use crate::error::Result;
use crate::lifecycle::control;

use super::{EXIT_NOT_READY, EXIT_NOT_RUNNING};

/// `doltctl status [--json]`: exit 0 ready, 3 not running, 4 not ready.
pub fn status(cfg: &Config, json: bool) -> Result<ExitCode> {
    let st = control::status(cfg)?;
    let phase = st.phase();
    let code = if st.is_ready() {
        ExitCode::SUCCESS
    } else if st.supervisor_alive {
        ExitCode::from(EXIT_NOT_READY)
    } else {
        ExitCode::from(EXIT_NOT_RUNNING)
    };
    if json {
        let mut v = match &st.state {
            Some(s) => serde_json::to_value(s).unwrap_or_default(),
            None => serde_json::json!({
                "data_dir": st.instance.data_dir(),
                "read_only": cfg.server.read_only,
            }),
        };
        if let Some(obj) = v.as_object_mut() {
            if let Some(s) = &st.state {
                // The connection as parts and as a Go DSN (the password is never shown here).
                let info = ConnectionInfo {
                    host: s.host.clone(),
                    port: s.port,
                    user: cfg.client.user.clone(),
                    password: String::new(),
                    socket: s.socket.clone(),
                    database: None,
                    read_only: s.read_only,
                };
                obj.insert("user".into(), info.user.clone().into());
                obj.insert("dsn".into(), info.dsn().into());
            }
            obj.insert(
                "state".into(),
                serde_json::to_value(phase).unwrap_or_default(),
            );
            obj.insert("ready".into(), st.is_ready().into());
            obj.insert("supervisor_alive".into(), st.supervisor_alive.into());
            obj.insert("server_alive".into(), st.server_alive.into());
        }
        println!("{v:#}");
        return Ok(code);
    }
    let dir = st.instance.data_dir().display();
    match &st.state {
        None => println!("stopped: no doltctl server has run for {dir}"),
        Some(s) => {
            println!("{phase}: {dir}");
            if st.is_ready() {
                println!("  url:        {}", s.url.as_deref().unwrap_or(""));
                if let Some(srv) = s.server() {
                    println!("  server pid: {}", srv.pid);
                }
                if let Some(t) = s.started_at() {
                    println!("  ready since {t}");
                }
            }
            if let Some(sup) = s.supervisor.as_ref().filter(|_| st.supervisor_alive) {
                println!("  supervisor: pid {}", sup.pid);
            }
            if let Some(v) = &s.dolt_version {
                println!("  dolt:       {v}");
            }
            println!("  read only:  {}", s.read_only);
            println!("  restarts:   {}", s.restarts);
            if let Some(e) = &s.last_error {
                println!("  last error: {e}");
                for l in &s.log_tail {
                    println!("    {l}");
                }
            }
        }
    }
    Ok(code)
}

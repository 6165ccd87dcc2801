//! The `doltctl` command line: a thin layer over the library. Human output on stdout,
//! diagnostics on stderr. Exit codes: 0 ok, 1 error, 2 usage, 3 not running, 4 not ready.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use doltctl::control::{self, Stopped};
use doltctl::{logs, Config, ConfigSource, Phase};

const EXIT_NOT_RUNNING: u8 = 3;
const EXIT_NOT_READY: u8 = 4;

#[derive(Parser)]
#[command(
    name = "doltctl",
    version,
    about = "Supervise dolt sql-server for a data dir"
)]
struct Cli {
    /// Config file (default: $DOLTCTL_CONFIG, else doltctl.toml here or in a parent directory).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data dir, overriding the config's data_dir.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the supervisor in the foreground (logs to stderr; Ctrl-C stops server and supervisor).
    Run {
        /// Serve read-only.
        #[arg(long)]
        read_only: bool,
    },
    /// Start a detached supervisor and wait until the server is ready; prints the URL.
    Start {
        /// Serve read-only.
        #[arg(long)]
        read_only: bool,
    },
    /// Stop the server and its supervisor; not running is success.
    Stop,
    /// Restart the server (also leaves the `failed` state); starts it if not running.
    Restart,
    /// Show the state; exit 0 when running and ready, 3 when not running, 4 when not ready.
    Status {
        /// Print the state as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the connection URL of the running server (exit 3 when not running).
    Url,
    /// Print the server log (dolt's output and the supervisor's events).
    Logs {
        /// Keep printing new lines as they come.
        #[arg(short, long)]
        follow: bool,
        /// How many lines to print first.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.command {
        Cmd::Run { .. } => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DOLTCTL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .init();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("doltctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Two workers are plenty: the supervisor mostly waits.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    let src = ConfigSource {
        explicit: cli.config.clone(),
        data_dir_override: cli.data_dir.clone(),
    };
    let mut cfg = Config::discover(&src)?;
    let rt = runtime()?;
    match cli.command {
        Cmd::Run { read_only } => {
            cfg.server.read_only |= read_only;
            rt.block_on(doltctl::supervisor::Supervisor::run(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Start { read_only } => {
            cfg.server.read_only |= read_only;
            let state = rt.block_on(control::start(&cfg))?;
            println!("{}", state.url.unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Stop => {
            match rt.block_on(control::stop(&cfg))? {
                Stopped::NotRunning => println!("not running"),
                Stopped::Stopped => println!("stopped"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Restart => {
            let state = rt.block_on(control::restart(&cfg))?;
            println!("{}", state.url.unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { json } => status(&cfg, json),
        Cmd::Url => {
            let st = control::status(&cfg)?;
            match st.state.filter(|_| st.supervisor_alive && st.server_alive) {
                Some(s) if s.state == Phase::Running => {
                    println!("{}", s.url.unwrap_or_default());
                    Ok(ExitCode::SUCCESS)
                }
                _ => {
                    eprintln!(
                        "doltctl: no server is running for {}; start one with `doltctl start`",
                        st.instance.data_dir().display()
                    );
                    Ok(ExitCode::from(EXIT_NOT_RUNNING))
                }
            }
        }
        Cmd::Logs { follow, lines } => {
            let inst = doltctl::Instance::new(&cfg.data_dir);
            let path = inst.server_log();
            for l in logs::read_tail(&path, cfg.logs.keep, lines)? {
                println!("{l}");
            }
            if follow {
                logs::follow(&path, std::io::stdout().lock(), || false)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn status(cfg: &Config, json: bool) -> anyhow::Result<ExitCode> {
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
            Some(s) => serde_json::to_value(s)?,
            None => serde_json::json!({
                "data_dir": st.instance.data_dir(),
                "read_only": cfg.server.read_only,
            }),
        };
        if let Some(obj) = v.as_object_mut() {
            obj.insert("state".into(), serde_json::to_value(phase)?);
            obj.insert("ready".into(), st.is_ready().into());
            obj.insert("supervisor_alive".into(), st.supervisor_alive.into());
            obj.insert("server_alive".into(), st.server_alive.into());
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(code);
    }
    let dir = st.instance.data_dir().display();
    match &st.state {
        None => println!("stopped: no doltctl server has run for {dir}"),
        Some(s) => {
            println!("{phase}: {dir}");
            if st.is_ready() {
                println!("  url:        {}", s.url.as_deref().unwrap_or(""));
                if let Some(srv) = &s.server {
                    println!("  server pid: {}", srv.pid);
                }
                if let Some(t) = &s.started_at {
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

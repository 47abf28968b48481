//! The smtpy reference server: SMTP in, durable queue, delivery out, and
//! the HTTP API (`[http] listen`, default 127.0.0.1:8080), plus the
//! operator's commands.
//!
//! ```sh
//! cargo run --example server                          # redb under ./smtpy-data, SMTP on 127.0.0.1:2525
//! cargo run --example server -- --config smtpy.toml serve
//! cargo run --example server -- --config smtpy.toml admin domain create alias.example
//! cargo run --example server -- --config smtpy.toml admin alias create shop@alias.example --mailbox me@mail.example
//! cargo run --example server -- --config smtpy.toml admin alias disable shop@alias.example
//! cargo run --example server -- --config smtpy.toml admin user create --email me@example.org --admin
//! cargo run --example server -- --config smtpy.toml queue list
//! cargo run --example server -- --config smtpy.toml backup --out smtpy-backup.redb
//! ```
//!
//! While `serve` runs on a redb store, store commands are forwarded to it
//! over `<data_dir>/control.sock` (see `control.rs`).
//!
//! Configuration: see `docs/operator-guide.md`. Exit codes: 0 success,
//! 1 runtime failure, 2 bad configuration or usage.

mod admin;
mod backup;
mod cli;
mod config;
mod control;
mod dkim;
mod http;
mod jobs;
mod logging;
mod migrate;
mod policy;
mod queue;
mod reload;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// smtpy reference server.
#[derive(Debug, Parser)]
#[command(name = "server", version, about = "smtpy: email aliasing server")]
pub struct Cli {
    /// TOML configuration file (every key can also be set as SMTPY_<SECTION>__<KEY>).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// `development` (default) or `production` (refuses unsafe settings).
    #[arg(long, global = true, value_parser = ["development", "production"])]
    pub profile: Option<String>,
    /// Directory for the store, keys and the control socket (overrides `data_dir`).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log lines as human-readable text or JSON.
    #[arg(long, global = true, value_parser = ["pretty", "json"])]
    pub log_format: Option<String>,
    /// Log filter, e.g. `info` or `smtpy=debug,info`.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Parse the command line, print `ok` and exit (keeps the docs honest).
    #[arg(long, global = true, hide = true)]
    pub check_args: bool,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run SMTP, the delivery workers and the HTTP API (the default).
    Serve,
    /// Validate the configuration and print it (secrets are not printed).
    CheckConfig,
    /// SQL schema migrations (redb upgrades itself when opened).
    Migrate {
        /// What to do.
        #[command(subcommand)]
        action: migrate::MigrateAction,
    },
    /// Users, domains, mailboxes and aliases.
    Admin {
        /// What to change.
        #[command(subcommand)]
        what: admin::AdminCommand,
    },
    /// DKIM keys of hosted domains.
    Dkim {
        /// What to do.
        #[command(subcommand)]
        action: dkim::DkimAction,
    },
    /// The delivery queue.
    Queue {
        /// What to do.
        #[command(subcommand)]
        action: queue::QueueAction,
    },
    /// Write a consistent copy of the store while it is in use, then verify it.
    Backup {
        /// The backup file to write (replaced if it exists).
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
    /// Verify a backup and put it in place of the store (the server must be stopped).
    Restore {
        /// The backup file.
        #[arg(long, value_name = "PATH")]
        from: PathBuf,
        /// Replace an existing store (kept as `<name>.before-restore`).
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.check_args {
        println!("ok");
        return ExitCode::SUCCESS;
    }
    let overrides = config::Overrides {
        profile: cli.profile.clone(),
        data_dir: cli.data_dir.clone(),
        log_format: cli.log_format.clone(),
        log_level: cli.log_level.clone(),
    };
    let config = match config::Config::load_with(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let log = match logging::init(config.log_format, &config.log_level) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("log.level: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    let result = runtime.block_on(async {
        match command {
            Command::Serve => {
                let source = reload::ConfigSource {
                    file: cli.config.clone(),
                    overrides,
                };
                run::serve(config, source, log).await.map(|()| 0)
            }
            command => cli::run_local(&config, command).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(run::Failure::Usage(msg)) => {
            eprintln!("{msg}");
            ExitCode::from(2)
        }
        Err(run::Failure::Runtime(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}

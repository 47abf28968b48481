//! The smtpy reference server: SMTP in, durable queue, delivery out, and
//! the HTTP API (`[http] listen`, default 127.0.0.1:8080).
//!
//! ```sh
//! cargo run --example server                          # redb under ./smtpy-data, SMTP on 127.0.0.1:2525
//! cargo run --example server -- --config smtpy.toml serve
//! cargo run --example server -- --config smtpy.toml admin domain add alias.example
//! cargo run --example server -- --config smtpy.toml admin alias add shop@alias.example --mailbox me@mail.example
//! cargo run --example server -- --config smtpy.toml admin alias disable shop@alias.example
//! cargo run --example server -- --config smtpy.toml admin user create --email me@example.org --admin
//! ```
//!
//! Configuration: see `docs/operator-guide.md`. Exit codes: 0 success,
//! 1 runtime failure, 2 bad configuration or usage.

mod admin;
mod config;
mod http;
mod logging;
mod policy;
mod reload;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// smtpy reference server.
#[derive(Debug, Parser)]
#[command(name = "server", version, about = "smtpy: email aliasing server")]
struct Cli {
    /// TOML configuration file (every key can also be set as SMTPY_<SECTION>__<KEY>).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run SMTP, the delivery workers and the HTTP API (the default).
    Serve,
    /// Seed and change the store.
    Admin {
        #[command(subcommand)]
        what: admin::AdminCommand,
    },
    /// Validate the configuration and print it (secrets are not printed).
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match config::Config::load(cli.config.as_deref()) {
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
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let source = reload::ConfigSource {
                    file: cli.config.clone(),
                    overrides: config::Overrides::default(),
                };
                run::serve(config, source, log).await
            }
            Command::Admin { what } => admin::run(&config, what).await,
            Command::CheckConfig => {
                print!("{}", config.render());
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
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

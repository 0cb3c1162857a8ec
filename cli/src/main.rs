//! `esbackup`: the command-line front of the engine. No backup logic lives here: it parses
//! options, opens the target, calls the engine and prints the result.

mod args;
mod commands;
mod config;
mod demo;
mod exit;
mod output;
mod progress;

use clap::Parser;

use args::{Cli, Command};
use exit::Failure;

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let json = match &cli.command {
        Command::Backup(a) => a.common.json,
        Command::Restore(a) => a.common.json,
        Command::Verify(a) => a.common.json,
        Command::Status(a) => a.json,
        Command::Demo(a) => a.json,
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(commands::run(cli));
    let code = match result {
        Ok(code) => code,
        Err(Failure { code, message }) => {
            output::error(json, code, &message);
            code
        }
    };
    std::process::exit(code);
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

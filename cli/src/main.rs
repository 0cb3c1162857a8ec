//! `esbackup`: the command-line front of the engine. No backup logic lives here: it parses and
//! resolves options, opens the target, calls the engine and prints the result.

mod args;
mod commands;
mod config;
#[cfg(feature = "demo")]
mod demo;
mod exit;
mod keys;
mod metrics;
mod node;
mod output;
mod password;
mod progress;
mod run;
mod settings;

use exit::Failure;

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match args::parse(args::command(), &argv) {
        Ok(cli) => cli,
        Err(e) => usage_error(e),
    };
    let runs = matches!(cli.command, args::Command::Run(_));
    init_logging(cli.verbose + runs as u8, cli.log_format);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (json, result) = runtime.block_on(commands::run(cli, &argv));
    let code = match result {
        Ok(code) => code,
        Err(Failure { code, message }) => {
            output::error(json, code, &message);
            code
        }
    };
    std::process::exit(code);
}

/// Prints a command-line error (as JSON too when `--json` was asked for) and exits with 2;
/// `--help` and `--version` print and exit 0.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        e.exit();
    }
    let json = std::env::args().any(|a| a == "--json" || a == "--json=true")
        || std::env::var("ESBACKUP_JSON")
            .is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes" | "on"));
    output::error(json, exit::USAGE, &args::first_line(&e));
    std::process::exit(exit::USAGE);
}

/// Logs on stderr at the level `-v` asks for (`run` starts one higher: info), as text or one
/// JSON object a line.
fn init_logging(verbose: u8, format: args::LogFormat) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        args::LogFormat::Text => logs.init(),
        args::LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

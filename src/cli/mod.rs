//! Command-line parsing and printing. Each subcommand lives in its own file and calls
//! into the library; nothing here decides anything the library could.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "the command line is synchronous: it waits for the operator in real time, on no tokio worker"
)]

mod apply;
mod client;
mod delete;
mod describe;
mod diff;
mod export;
mod get;
mod invoke;
mod manifests;
mod run;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for a failure (invalid input, unreachable server, ...).
pub const EXIT_FAILURE: u8 = 1;

#[derive(Parser)]
#[command(
    name = "invok",
    version,
    about = "Keeps pools of function containers on a Docker host at the size their load needs",
    long_about = "Invok reads FunctionPool manifests (YAML, Kubernetes-style) from a directory and keeps \
a pool of Docker containers for each, scaled on CPU and memory, behind an HTTP gateway.\n\n\
Exit codes: 0 success, 1 failure, 2 usage error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Run(run::Args),
    Apply(apply::Args),
    Delete(delete::Args),
    Diff(diff::Args),
    Get(get::Args),
    Describe(describe::Args),
    Invoke(invoke::Args),
    Validate(validate::Args),
    Schema(validate::SchemaArgs),
    Export(export::Args),
}

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Apply(args) => apply::run(args),
        Command::Delete(args) => delete::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Get(args) => get::run(args),
        Command::Describe(args) => describe::run(args),
        Command::Invoke(args) => invoke::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Schema(args) => validate::schema(args),
        Command::Export(args) => export::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default `info`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

//! The `rampart` binary: argument parsing and rendering only. Each
//! subcommand lives in its own module.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod check;
mod gensite;
mod sitedir;
mod wg;

#[derive(Parser)]
#[command(
    name = "rampart",
    version,
    about = "Check, compile, simulate and apply Proxmox-format firewalls"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and resolve a site; print every problem and a summary.
    Check(check::Args),
    /// Write a deterministic synthetic site (for benchmarks).
    GenSite(gensite::Args),
    /// WireGuard: enroll keys, client configs, key rotation, the plan.
    Wg(wg::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(a) => check::run(a),
        Command::GenSite(a) => gensite::run(a),
        Command::Wg(a) => wg::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

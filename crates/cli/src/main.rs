//! The `rampart` binary: argument parsing and rendering only. Each
//! subcommand lives in its own module.

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

mod agent;
mod apply;
mod check;
mod compile;
mod gensite;
mod lab;
mod load;
mod localnet;
mod push;
mod simulate;
mod sitedir;
mod testpolicy;
mod verify;
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
    /// Compile a node (or all) to its ruleset and sysctls.
    Compile(compile::Args),
    /// What happens to one packet, and which line decided it.
    Simulate(simulate::Args),
    /// The node's address and local network, as `pve-firewall localnet` prints them.
    Localnet(localnet::Args),
    /// Run conformance cases against the simulator or (--kernel) real packets.
    TestPolicy(testpolicy::Args),
    /// Compile, check the lock-out guard, and apply atomically (optionally with --confirm).
    Apply(apply::ApplyArgs),
    /// Keep the change applied with --confirm (run it from a NEW connection).
    Confirm(apply::Common),
    /// Return to the last good plan.
    Rollback(apply::Common),
    /// Load the last good plan recorded in the state directory (no site
    /// needed; the boot path). Exit 1 and nothing loaded without a record.
    Restore(apply::Common),
    /// What runs, whether it drifted, and pending confirmations.
    Status(apply::StatusArgs),
    /// Keep this node converged on its site (a directory or an etcd prefix).
    Agent(agent::Args),
    /// Check a site fully, then store it in etcd as one revision.
    Push(push::Args),
    /// Write a deterministic synthetic site (for benchmarks).
    GenSite(gensite::Args),
    /// WireGuard: enroll keys, client configs, key rotation, the plan.
    Wg(wg::Args),
    /// The whole site for real in network namespaces: up, verify, down.
    Lab(lab::Args),
    /// Check every [[expect]] intent across all nodes; print the matrix.
    Verify(verify::Args),
    /// An application allow list (nginx allow/deny) generated from the intents.
    Allowlist(verify::AllowArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    // The lab re-executes this binary inside namespaces to send probes.
    let args: Vec<String> = std::env::args().collect();
    if let Some(code) = rampart_lab::probe::run_if_helper(&args) {
        return ExitCode::from(code as u8);
    }
    // `rampart gen-man DIR`: the man pages, for packaging. Not a clap
    // subcommand, so no page, help line or completion offers it.
    if args.get(1).map(String::as_str) == Some("gen-man") {
        let result = match args.get(2..) {
            Some([dir]) => gen_man(std::path::Path::new(dir)),
            _ => Err(anyhow::anyhow!("usage: rampart gen-man DIR")),
        };
        return match result {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(a) => check::run(a),
        Command::GenSite(a) => gensite::run(a),
        Command::Compile(a) => compile::run(a),
        Command::Apply(a) => apply::apply(a),
        Command::Confirm(a) => apply::confirm(a),
        Command::Rollback(a) => apply::rollback(a),
        Command::Restore(a) => apply::restore(a),
        Command::Status(a) => apply::status(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Localnet(a) => localnet::run(a),
        Command::TestPolicy(a) => testpolicy::run(a),
        Command::Wg(a) => wg::run(a),
        Command::Agent(a) => agent::run(a),
        Command::Push(a) => push::run(a),
        Command::Lab(a) => lab::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Allowlist(a) => verify::allow(a),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "rampart",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Writes rampart.1 and one page per subcommand (rampart-check.1,
/// rampart-wg-enroll.1, ...) into `dir`, from the clap definitions.
fn gen_man(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)?;
    Ok(ExitCode::SUCCESS)
}

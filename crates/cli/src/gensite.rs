//! `rampart gen-site`: write a deterministic synthetic site for benchmarks.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    /// Number of guests, spread round-robin over the nodes.
    #[arg(long, default_value_t = 12)]
    guests: u32,
    /// Rule lines in each guest's firewall file.
    #[arg(long, default_value_t = 10)]
    rules_per_guest: u32,
    /// Seed: the same parameters and seed always give the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Lay the site out as a bare /etc/pve tree (corosync.conf and guest
    /// .conf files instead of site.toml).
    #[arg(long)]
    pve_tree: bool,
    /// Output directory; must not exist or be empty.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let params = rampart_gen::GenParams {
        nodes: a.nodes,
        guests: a.guests,
        rules_per_guest: a.rules_per_guest,
        seed: a.seed,
    };
    let site = if a.pve_tree {
        rampart_gen::generate_pve_tree(&params)
    } else {
        rampart_gen::generate(&params)
    }?;
    if a.out.exists()
        && a.out
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} exists and is not an empty directory; refusing to overwrite it",
            a.out.display()
        );
    }
    let mut bytes = 0usize;
    for (rel, data) in &site.files {
        let path = a.out.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
        bytes += data.len();
    }
    println!(
        "wrote {} files ({} bytes) to {}: {} nodes, {} guests, {} rules per guest, seed {}",
        site.files.len(),
        bytes,
        a.out.display(),
        a.nodes,
        a.guests,
        a.rules_per_guest,
        a.seed
    );
    Ok(ExitCode::SUCCESS)
}

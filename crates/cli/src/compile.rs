//! `rampart compile SITE (--node N | --all) [--backend B] [--keys DIR] [--out DIR]`:
//! print or write each node's complete plan, built by `rampart_plan` (the
//! same plan `rampart apply` and the agent apply): the ruleset, sysctls,
//! and for every WireGuard interface of the node its wg-quick `.conf` and
//! route list, with the firewall rules that go with them (the listen port
//! open to the peers' endpoints, forwarding on gateways).

use anyhow::{Context, Result};
use rampart_plan::{PlanOpts, RefusalKind};
use std::path::PathBuf;
use std::process::ExitCode;

pub use rampart_plan::Wg;

#[derive(clap::Args)]
pub struct Args {
    pub site: PathBuf,
    /// The node to compile.
    #[arg(long, conflicts_with = "all")]
    pub node: Option<String>,
    /// Compile every node.
    #[arg(long)]
    pub all: bool,
    /// The backend; default: the node's own (`backend` in site.toml,
    /// nftables unless it says iptables).
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// The node's WireGuard key store: the plan names its files (never
    /// their contents).
    #[arg(long, value_name = "DIR", default_value = rampart_wg::plan::DEFAULT_KEY_DIR)]
    pub keys: PathBuf,
    /// Write one file set per node under DIR/<node>/ instead of printing.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum BackendArg {
    Nftables,
    Iptables,
}

impl From<BackendArg> for rampart_plan::Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Nftables => rampart_plan::Backend::Nftables,
            BackendArg::Iptables => rampart_plan::Backend::Iptables,
        }
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    let files = crate::sitedir::read_site(&a.site)?;
    let opts = PlanOpts {
        key_dir: a.keys.to_string_lossy().into_owned(),
        backend: a.backend.map(Into::into),
        // compile shows the plan; the guard's findings are printed as
        // warnings, `apply` refuses them.
        force: true,
        origin_revision: String::new(),
    };
    let site = match rampart_plan::load(&files, &opts) {
        Ok(s) => s,
        Err(r) => {
            eprint!("{}", r.rendered);
            eprintln!("error: {}", r.message);
            return Ok(ExitCode::from(1));
        }
    };
    eprint!("{}", site.warnings);
    let nodes: Vec<String> = if a.all {
        site.ir.nodes.iter().map(|n| n.name.to_string()).collect()
    } else {
        match site.pick(a.node.as_deref()) {
            Ok(n) => vec![n],
            Err(r) => anyhow::bail!("{}", r.message),
        }
    };
    if a.all && a.out.is_none() && nodes.len() > 1 {
        eprintln!(
            "note: printing {} nodes one after the other; use --out DIR for one file set per node",
            nodes.len()
        );
    }
    let mut failed = 0;
    for node in &nodes {
        let out = match site.build(node) {
            Ok(out) => out,
            Err(r) => {
                if r.kind != RefusalKind::Invalid {
                    eprint!("{}", r.rendered);
                }
                eprintln!(
                    "error: node `{node}` does not compile: {}; nothing was written for it",
                    r.message
                );
                failed += 1;
                continue;
            }
        };
        eprint!("{}", out.rendered);
        match &a.out {
            Some(dir) => {
                // Names were validated by the parser; the paths still go
                // through the one gate (a single component each, inside --out).
                let component = |s: &str| -> Result<std::path::PathBuf> {
                    Ok(std::path::PathBuf::from(
                        rampart_types::names::path_component(s)?,
                    ))
                };
                let d = dir.join(component(&out.node)?);
                std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
                for (name, text) in &out.files {
                    let p = d.join(component(name)?);
                    std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
                }
                println!(
                    "{}: wrote {}",
                    out.node,
                    out.files
                        .iter()
                        .map(|(n, _)| d.join(n).display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            None => {
                for (name, text) in &out.files {
                    println!("# ==== {} / {} ====", out.node, name);
                    print!("{text}");
                    if !text.ends_with('\n') {
                        println!();
                    }
                }
            }
        }
    }
    if failed > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

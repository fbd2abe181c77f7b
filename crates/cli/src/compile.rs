//! `rampart compile SITE (--node N | --all) [--backend B] [--out DIR]`:
//! print or write each node's complete plan (ruleset and sysctls).

use crate::load::{pick_node, resolved_site};
use anyhow::{Context, Result};
use rampart_resolve::ir;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    pub site: PathBuf,
    /// The node to compile.
    #[arg(long, conflicts_with = "all")]
    pub node: Option<String>,
    /// Compile every node.
    #[arg(long)]
    pub all: bool,
    #[arg(long, value_enum, default_value_t = BackendArg::Nftables)]
    pub backend: BackendArg,
    /// Write one file set per node under DIR/<node>/ instead of printing.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum BackendArg {
    Nftables,
}

/// One node's compiled output, as files: (file name, contents).
pub struct Output {
    pub node: String,
    pub files: Vec<(String, String)>,
}

pub fn compile_node(
    site: &ir::Site,
    node: &str,
    backend: BackendArg,
) -> Result<Output, rampart_types::Diagnostics> {
    match backend {
        BackendArg::Nftables => {
            let plan = rampart_nft::compile(site, node)?;
            if !plan.warnings.is_empty() {
                eprint!("{}", plan.warnings.render(&site.sources));
            }
            Ok(Output {
                node: node.to_string(),
                files: vec![
                    ("ruleset.nft".into(), plan.script.clone()),
                    (
                        "sysctl.conf".into(),
                        sysctl_conf(
                            plan.sysctls
                                .iter()
                                .map(|s| (s.key.as_str(), s.value.as_str(), s.why.as_str())),
                        ),
                    ),
                ],
            })
        }
    }
}

pub fn sysctl_conf<'a>(items: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> String {
    let mut out = String::from("# sysctls rampart sets for this plan (sysctl -p FILE)\n");
    for (k, v, why) in items {
        out.push_str(&format!("# {why}\n{k} = {v}\n"));
    }
    out
}

pub fn run(a: Args) -> Result<ExitCode> {
    let site = match resolved_site(&a.site) {
        Ok(s) => s,
        Err(e) => return e.exit(),
    };
    let nodes: Vec<String> = if a.all {
        site.nodes.iter().map(|n| n.name.clone()).collect()
    } else {
        vec![pick_node(&site, a.node.as_deref())?.name.clone()]
    };
    if a.all && a.out.is_none() && nodes.len() > 1 {
        eprintln!(
            "note: printing {} nodes one after the other; use --out DIR for one file set per node",
            nodes.len()
        );
    }
    let mut failed = 0;
    for node in &nodes {
        match compile_node(&site, node, a.backend) {
            Ok(out) => match &a.out {
                Some(dir) => {
                    let d = dir.join(&out.node);
                    std::fs::create_dir_all(&d)
                        .with_context(|| format!("creating {}", d.display()))?;
                    for (name, text) in &out.files {
                        let p = d.join(name);
                        std::fs::write(&p, text)
                            .with_context(|| format!("writing {}", p.display()))?;
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
            },
            Err(diags) => {
                eprint!("{}", diags.render(&site.sources));
                eprintln!("error: node `{node}` does not compile ({} error(s)); nothing was written for it", diags.errors());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

//! `rampart test-policy [--kernel] DIR...`: run conformance cases (a site
//! plus `packets.toml`) against the simulator, or with real packets in
//! network namespaces.

use crate::sitedir::read_site;
use anyhow::{Context, Result};
use rampart_case::Outcome;
use rampart_resolve::ir;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Case directories (each: site.toml, firewall/, nodes/, packets.toml),
    /// or directories holding such cases (e.g. `conformance`).
    #[arg(required = true)]
    pub cases: Vec<PathBuf>,
    /// Send real packets through the compiled ruleset in network namespaces
    /// (needs root) instead of asking the simulator.
    #[arg(long)]
    pub kernel: bool,
    #[arg(long, value_enum, default_value_t = crate::compile::BackendArg::Nftables)]
    pub backend: crate::compile::BackendArg,
    /// Print every packet, not only the failing ones.
    #[arg(long, short)]
    pub verbose: bool,
}

/// A case, loaded: its resolved site, compiled plan and packets.
pub struct LoadedCase {
    pub name: String,
    pub site: ir::Site,
    pub plan: rampart_nft::Plan,
    /// The same node through the iptables backend (noflush mode, as
    /// `rampart apply` loads it).
    pub ipt: rampart_ipt::IptPlan,
    pub packets_toml: String,
    pub case: rampart_case::Case,
}

/// Load a case directory. Any problem (site errors, a node that does not
/// compile, a bad packets.toml) is an error naming the case.
pub fn load_case(dir: &Path) -> Result<LoadedCase> {
    let name = dir.display().to_string();
    let files = read_site(dir)?;
    let (site, diags) = rampart_resolve::load(&files);
    if diags.has_errors() {
        anyhow::bail!(
            "{name}: the site has errors:\n{}",
            diags.render(&site.sources)
        );
    }
    let packets_toml = std::fs::read_to_string(dir.join("packets.toml"))
        .with_context(|| format!("{name}: reading packets.toml"))?;
    let case = rampart_case::parse(&packets_toml).map_err(|e| anyhow::anyhow!("{name}/{e}"))?;
    let node_name = crate::load::pick_node(&site, case.node.as_deref())
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?
        .name
        .clone();
    let wg = crate::compile::Wg::of(&files);
    if wg.diags.has_errors() {
        anyhow::bail!(
            "{name}: the WireGuard networks of site.toml have errors:\n{}",
            wg.diags.render(&wg.sources)
        );
    }
    let plan = rampart_nft::compile_with_extras(
        &site,
        &node_name,
        &rampart_nft::Caps::default(),
        &wg.extras(&node_name),
    )
    .map_err(|d| {
        anyhow::anyhow!(
            "{name}: node `{node_name}` does not compile:\n{}",
            d.render(&site.sources)
        )
    })?;
    let ipt = rampart_ipt::compile_with_extras(
        &site,
        &node_name,
        rampart_ipt::Mode::Noflush,
        &wg.ipt_extras(&node_name),
    )
    .map_err(|d| {
        anyhow::anyhow!(
            "{name}: node `{node_name}` does not compile for iptables:\n{}",
            d.render(&site.sources)
        )
    })?;
    Ok(LoadedCase {
        name,
        site,
        plan,
        ipt,
        packets_toml,
        case,
    })
}

/// The simulator's packet for a case packet.
pub fn sim_packet(p: &rampart_case::Packet) -> rampart_sim::Packet {
    rampart_sim::Packet::from(p)
}

/// Every packet of a case through the simulator.
pub fn run_sim(c: &LoadedCase) -> Vec<Outcome> {
    c.case
        .packets
        .iter()
        .map(|p| Outcome {
            case: c.name.clone(),
            packet: p.label(),
            expected: p.verdict,
            got: rampart_sim::simulate_plan(&c.site, &c.plan, &sim_packet(p))
                .map(|t| t.verdict)
                .map_err(|e| e.to_string()),
        })
        .collect()
}

/// Load an iptables plan into a namespace as `rampart apply` does: the
/// ipsets, both rule files with `--noflush`, then every hook checked with
/// `-C` and inserted at the top when missing.
pub fn load_ipt(ns: &rampart_lab::Netns, plan: &rampart_ipt::IptPlan) -> rampart_lab::Result<()> {
    ns.exec(&["ipset", "restore"], Some(&plan.ipsets))?;
    let noflush = plan.mode == rampart_ipt::Mode::Noflush;
    for (prog, text) in [("iptables", &plan.v4), ("ip6tables", &plan.v6)] {
        let restore = format!("{prog}-restore");
        let mut argv = vec![restore.as_str()];
        if noflush {
            argv.push("--noflush");
        }
        ns.exec(&argv, Some(text))?;
        for h in &plan.hooks {
            let argv = |args: Vec<String>| -> Vec<String> {
                std::iter::once(prog.to_string()).chain(args).collect()
            };
            let check = argv(h.check_args());
            let check: Vec<&str> = check.iter().map(String::as_str).collect();
            if ns.exec(&check, None).is_err() {
                let ins = argv(h.insert_args());
                let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
                ns.exec(&ins, None)?;
            }
        }
    }
    Ok(())
}

/// Every packet of a case through the real kernel, with the ruleset of
/// `backend` loaded into the lab's node.
pub fn run_kernel(
    c: &LoadedCase,
    helper: rampart_lab::Helper,
    backend: crate::compile::BackendArg,
) -> Result<Vec<Outcome>> {
    let opts = rampart_lab::LabOptions::new(helper);
    let script = c.plan.script.clone();
    let ipt = c.ipt.clone();
    let load = move |lab: &rampart_lab::Lab| match backend {
        crate::compile::BackendArg::Nftables => lab.load_nft(&script),
        crate::compile::BackendArg::Iptables => load_ipt(lab.host(), &ipt),
    };
    let out = rampart_lab::runner::run_case_kernel(&c.name, &c.packets_toml, &c.site, opts, &load)
        .map_err(|e| anyhow::anyhow!("{}: {e}", c.name))?;
    Ok(out)
}

/// The case directories named: a directory with a packets.toml is a case;
/// any other directory stands for its subdirectories that are cases.
pub fn expand(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for a in args {
        if !a.is_dir() {
            anyhow::bail!("`{}` is not a case directory", a.display());
        }
        if a.join("packets.toml").is_file() {
            out.push(a.clone());
            continue;
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(a)
            .with_context(|| format!("listing {}", a.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("packets.toml").is_file())
            .collect();
        if subs.is_empty() {
            anyhow::bail!(
                "`{}` has no packets.toml and no case directories",
                a.display()
            );
        }
        subs.sort();
        out.extend(subs);
    }
    Ok(out)
}

pub fn run(a: Args) -> Result<ExitCode> {
    use std::io::{IsTerminal, Write};
    let mut outcomes = Vec::new();
    let mut broken = 0;
    let dirs = expand(&a.cases)?;
    // The kernel takes a while per case: on a terminal, say how far it got.
    let progress = a.kernel && std::io::stderr().is_terminal();
    let show = |done: usize, name: &str| {
        if progress {
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K[{done}/{}] {name}", dirs.len());
            let _ = e.flush();
        }
    };
    let clear = || {
        if progress {
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K");
            let _ = e.flush();
        }
    };
    for (i, dir) in dirs.iter().enumerate() {
        show(i, &dir.display().to_string());
        let case = match load_case(dir) {
            Ok(c) => c,
            Err(e) => {
                clear();
                eprintln!("error: {e:#}");
                broken += 1;
                continue;
            }
        };
        let got = if a.kernel {
            let helper = rampart_lab::Helper::current_exe(&[rampart_lab::probe::HIDDEN_SUBCOMMAND])
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            match run_kernel(&case, helper, a.backend) {
                Ok(o) => o,
                Err(e) => {
                    clear();
                    eprintln!("error: {e:#}");
                    broken += 1;
                    continue;
                }
            }
        } else {
            run_sim(&case)
        };
        if a.verbose {
            clear();
            for o in &got {
                println!("{o}");
            }
        }
        outcomes.extend(got);
    }
    clear();
    print!("{}", rampart_case::summary(&outcomes));
    if broken > 0 {
        eprintln!("error: {broken} case(s) could not run");
    }
    let failed = outcomes.iter().any(|o| !o.passed());
    Ok(if failed || broken > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

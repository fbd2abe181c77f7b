//! Every case of the conformance suite, with real packets, through the
//! iptables backend: the verdicts must be exactly those of the case files.

mod common;

use rampart_lab::{Helper, LabOptions};
use std::path::PathBuf;

fn suite() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conformance")
}

fn helper() -> Helper {
    Helper::current_exe(&[rampart_lab::probe::HIDDEN_SUBCOMMAND]).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(code) = rampart_lab::probe::run_if_helper(&args) {
        std::process::exit(code);
    }
    if !common::is_root() {
        eprintln!("kernel tests skipped: they need root");
        return;
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let tests: &[(&str, fn())] = &[(
        "conformance_suite_on_the_kernel",
        conformance_suite_on_the_kernel,
    )];
    let mut failed = 0;
    for (name, f) in tests {
        if filter.as_deref().is_some_and(|fl| !name.contains(fl)) {
            continue;
        }
        eprintln!("test {name} ...");
        match std::panic::catch_unwind(f) {
            Ok(()) => eprintln!("test {name} ... ok"),
            Err(_) => {
                eprintln!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        std::process::exit(1);
    }
}

fn conformance_suite_on_the_kernel() {
    let only = std::env::var("RAMPART_CASE").ok();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(suite())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("packets.toml").exists())
        .filter(|p| {
            only.as_deref()
                .map_or(true, |o| p.file_name().unwrap().to_str() == Some(o))
        })
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty());
    let mut all = Vec::new();
    let mut unresolved = 0;
    for dir in &dirs {
        let files = common::read_site(dir);
        let (site, diags) = rampart_resolve::load(&files);
        if diags.has_errors() {
            // The resolver's problem, not this backend's: reported, not run.
            eprintln!(
                "NOT RUN {}: the resolver rejects it:\n{}",
                dir.display(),
                diags.render(&site.sources)
            );
            unresolved += 1;
            continue;
        }
        let packets = std::fs::read_to_string(dir.join("packets.toml")).unwrap();
        let case = match rampart_case::parse(&packets) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("NOT RUN {}: packets.toml: {e}", dir.display());
                unresolved += 1;
                continue;
            }
        };
        let plan = rampart_ipt::compile(
            &site,
            case.node.as_deref().unwrap_or_else(|| &site.nodes[0].name),
        )
        .unwrap_or_else(|d| panic!("{}: {}", dir.display(), d.render(&site.sources)));
        if std::env::var("RAMPART_DEBUG").is_ok() {
            debug_case(&site, &case, &plan);
        }
        let opts = LabOptions::new(helper());
        let outcomes = rampart_lab::runner::run_case_dir(dir, &site, opts, &|lab| {
            common::load_into_lab(lab, &plan)
        })
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let failed: Vec<_> = outcomes.iter().filter(|o| !o.passed()).cloned().collect();
        if !failed.is_empty() {
            eprintln!("{}", rampart_case::summary(&failed));
        }
        all.extend(outcomes);
    }
    let summary = rampart_case::summary(&all);
    eprintln!("{summary} ({unresolved} cases not run: resolver errors)");
    assert!(all.iter().all(|o| o.passed()), "{summary}");
}

/// Probe a case by hand and print the counters (RAMPART_DEBUG=1).
fn debug_case(
    site: &rampart_resolve::ir::Site,
    case: &rampart_case::Case,
    plan: &rampart_ipt::IptPlan,
) {
    let node = case
        .node
        .clone()
        .unwrap_or_else(|| site.nodes[0].name.clone());
    let lab = rampart_lab::Lab::build(site, &node, LabOptions::new(helper())).unwrap();
    common::load_into_lab(&lab, plan).unwrap();
    let probes: Vec<rampart_lab::Probe> = case
        .packets
        .iter()
        .map(rampart_lab::Probe::from_packet)
        .collect();
    for (p, r) in case.packets.iter().zip(lab.probe_all(&probes)) {
        eprintln!("{} -> {:?} (want {:?})", p.label(), r, p.verdict);
    }
    eprintln!(
        "{}",
        lab.host()
            .exec(&["conntrack", "-L", "-f", "ipv6"], None)
            .unwrap_or_default()
    );
    for prog in ["iptables-save"] {
        eprintln!("{}", lab.host().exec(&[prog, "-c"], None).unwrap());
    }
}

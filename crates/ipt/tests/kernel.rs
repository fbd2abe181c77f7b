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
    let tests: &[(&str, fn())] = &[("conformance_suite_on_the_kernel", conformance_suite_on_the_kernel)];
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
        .filter(|p| only.as_deref().map_or(true, |o| p.file_name().unwrap().to_str() == Some(o)))
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty());
    let mut all = Vec::new();
    for dir in &dirs {
        let files = common::read_site(dir);
        let (site, diags) = rampart_resolve::load(&files);
        assert!(!diags.has_errors(), "{}: {}", dir.display(), diags.render(&site.sources));
        let packets = std::fs::read_to_string(dir.join("packets.toml")).unwrap();
        let case = rampart_case::parse(&packets).unwrap();
        let plan = rampart_ipt::compile(&site, case.node.as_deref().unwrap_or_else(|| &site.nodes[0].name))
            .unwrap_or_else(|d| panic!("{}: {}", dir.display(), d.render(&site.sources)));
        let opts = LabOptions::new(helper());
        let outcomes = rampart_lab::runner::run_case_dir(dir, &site, opts, &|lab| common::load_into_lab(lab, &plan))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        all.extend(outcomes);
    }
    let summary = rampart_case::summary(&all);
    eprintln!("{summary}");
    assert!(all.iter().all(|o| o.passed()), "{summary}");
}

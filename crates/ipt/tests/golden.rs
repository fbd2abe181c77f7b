//! Golden outputs: every conformance case compiled for its node (both modes),
//! compared with `tests/golden/<case>/`; every output is restored for real
//! (ipsets first, then `iptables-restore --test` and a real restore) in a
//! throwaway network namespace. `RAMPART_BLESS=1` rewrites the goldens.

mod common;

use rampart_ipt::{compile_with, IptPlan, Mode};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn render(plan: &IptPlan) -> String {
    let mut s = String::new();
    s.push_str("## ipset restore\n");
    s.push_str(&plan.ipsets);
    s.push_str("## iptables-restore\n");
    s.push_str(&plan.v4);
    s.push_str("## ip6tables-restore\n");
    s.push_str(&plan.v6);
    s.push_str("## sysctl\n");
    for (k, v) in &plan.sysctls {
        s.push_str(&format!("{k} = {v}\n"));
    }
    s.push_str("## modules\n");
    for m in &plan.modules {
        s.push_str(m);
        s.push('\n');
    }
    s.push_str("## hooks\n");
    for h in &plan.hooks {
        s.push_str(&h.insert_args().join(" "));
        s.push('\n');
    }
    s
}

fn check_golden(path: &Path, text: &str) {
    if std::env::var("RAMPART_BLESS").is_ok() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(path)
        .unwrap_or_else(|_| panic!("missing golden {} (RAMPART_BLESS=1)", path.display()));
    if want != text {
        for (i, (a, b)) in want.lines().zip(text.lines()).enumerate() {
            if a != b {
                panic!(
                    "{} differs at line {}:\n want: {a}\n  got: {b}",
                    path.display(),
                    i + 1
                );
            }
        }
        panic!("{} differs in length", path.display());
    }
}

/// Restore a plan in a throwaway namespace: `--test` first, then for real.
pub fn restore_check(plan: &IptPlan) {
    if !common::is_root() {
        return;
    }
    let ns =
        rampart_lab::Netns::create(&format!("{}ipt", rampart_lab::netns::unique_prefix())).unwrap();
    ns.exec(&["ipset", "restore"], Some(&plan.ipsets)).unwrap();
    for (prog, text) in [
        ("iptables-restore", &plan.v4),
        ("ip6tables-restore", &plan.v6),
    ] {
        ns.exec(&[prog, "--test"], Some(text))
            .unwrap_or_else(|e| panic!("{prog} --test: {e}\n{text}"));
    }
    common::load_plan(&ns, plan).unwrap_or_else(|e| panic!("restore: {e}"));
    // Loading twice is idempotent (hooks are not duplicated).
    common::load_plan(&ns, plan).unwrap();
    let saved = ns.exec(&["iptables-save", "-t", "filter"], None).unwrap();
    assert_eq!(saved.matches("-j RAMPART-INPUT").count(), 1, "{saved}");
}

#[test]
fn conformance_sites_golden_and_restorable() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("../../conformance"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("packets.toml").exists())
        .collect();
    dirs.sort();
    let mut checked = 0;
    for dir in dirs {
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        let (site, diags) = rampart_resolve::load(&common::read_site(&dir));
        if diags.has_errors() {
            continue;
        }
        for node in &site.nodes {
            for (mode, tag) in [(Mode::Noflush, "noflush"), (Mode::Full, "full")] {
                let plan = compile_with(&site, &node.name, mode)
                    .unwrap_or_else(|d| panic!("{name}: {}", d.render(&site.sources)));
                check_golden(
                    &root().join(format!("tests/golden/{name}/{}.{tag}", node.name)),
                    &render(&plan),
                );
                restore_check(&plan);
                checked += 1;
            }
        }
    }
    assert!(checked > 30, "{checked}");
}

//! Test helpers: read a site directory, load a plan into a lab's host.
#![allow(dead_code)]

use rampart_ipt::IptPlan;
use rampart_lab::{Lab, Netns};
use rampart_types::SiteFiles;
use std::path::Path;

pub fn read_site(root: &Path) -> SiteFiles {
    fn walk(root: &Path, dir: &Path, files: &mut SiteFiles) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(root, &p, files);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                if rel != "packets.toml" {
                    files.insert(rel, std::fs::read(&p).unwrap());
                }
            }
        }
    }
    let mut files = SiteFiles::new();
    walk(root, root, &mut files);
    files
}

/// Load a plan into a namespace: ipsets, both rule files (`--noflush` in
/// noflush mode) and the hooks, checked with `-C` and inserted when missing.
pub fn load_plan(ns: &Netns, plan: &IptPlan) -> rampart_lab::Result<()> {
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
            let check: Vec<String> = std::iter::once(prog.to_string())
                .chain(h.check_args())
                .collect();
            let check: Vec<&str> = check.iter().map(|s| s.as_str()).collect();
            if ns.exec(&check, None).is_err() {
                let ins: Vec<String> = std::iter::once(prog.to_string())
                    .chain(h.insert_args())
                    .collect();
                let ins: Vec<&str> = ins.iter().map(|s| s.as_str()).collect();
                ns.exec(&ins, None)?;
            }
        }
    }
    Ok(())
}

pub fn load_into_lab(lab: &Lab, plan: &IptPlan) -> rampart_lab::Result<()> {
    load_plan(lab.host(), plan)
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

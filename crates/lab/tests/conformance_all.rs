//! Every case of `conformance/` against the simulator AND the kernel: the
//! site is read from the case directory (`site.toml`, `firewall/*.fw`,
//! `nodes/*/host.fw`) through `rampart_resolve::load`, compiled with the
//! nftables backend, every packet simulated on the plan and sent for real
//! through a lab built from the same site with the plan's script loaded.
//! One line per packet where either disagrees with the file, then
//! `N passed, M failed` per side; fails on any mismatch.
//!
//! `CONFORMANCE_CASES=macfilter,dhcp-option cargo test -p rampart-lab
//! --test conformance_all -- --nocapture` runs a subset.

mod common;

use rampart_case::Outcome;
use rampart_lab::runner::run_case_kernel;
use rampart_lab::Lab;
use rampart_types::{Action, Family, SiteFiles};
use std::path::{Path, PathBuf};

fn site_files(dir: &Path) -> SiteFiles {
    fn walk(root: &Path, dir: &Path, out: &mut SiteFiles) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if p.is_dir() {
                walk(root, &p, out);
            } else if rel != "packets.toml" {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut f = SiteFiles::new();
    walk(dir, dir, &mut f);
    f
}

fn sim_packet(p: &rampart_case::Packet) -> rampart_sim::Packet {
    rampart_sim::Packet::from(p)
}

fn show(r: &Result<Action, String>) -> String {
    match r {
        Ok(a) => a.to_string(),
        Err(e) => format!("error ({e})"),
    }
}

/// One case: (simulator outcomes, kernel outcomes), or why it could not run.
fn run(dir: &Path) -> Result<(Vec<Outcome>, Vec<Outcome>), String> {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let (site, diags) = rampart_resolve::load(&site_files(dir));
    if diags.errors() > 0 {
        return Err(format!("{name}: the site does not resolve: {diags:?}"));
    }
    let text = std::fs::read_to_string(dir.join("packets.toml")).map_err(|e| e.to_string())?;
    let case = rampart_case::parse(&text).map_err(|e| format!("{name}/{e}"))?;
    let node = case
        .node
        .clone()
        .or_else(|| (site.nodes.len() == 1).then(|| site.nodes[0].name.to_string()))
        .ok_or_else(|| format!("{name}: which node?"))?;
    let plan = rampart_nft::compile(&site, &node)
        .map_err(|d| format!("{name}: the node does not compile: {d:?}"))?;
    let sim: Vec<Outcome> = case
        .packets
        .iter()
        .map(|p| Outcome {
            case: name.clone(),
            packet: p.label(),
            expected: p.verdict,
            got: rampart_sim::simulate_plan(&site, &plan, &sim_packet(p))
                .map(|t| t.verdict)
                .map_err(|e| e.to_string()),
        })
        .collect();
    let script = plan.script.clone();
    let kernel = run_case_kernel(&name, &text, &site, common::opts(), &|lab: &Lab| {
        lab.load_nft(&script)
    })
    .map_err(|e| format!("{name}: {e}"))?;
    Ok((sim, kernel))
}

#[test]
fn every_conformance_case_on_simulator_and_kernel() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance");
    let only: Option<Vec<String>> = std::env::var("CONFORMANCE_CASES")
        .ok()
        .map(|s| s.split(',').map(str::to_string).collect());
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("packets.toml").exists())
        .filter(|p| {
            only.as_ref().is_none_or(|o| {
                o.iter()
                    .any(|n| p.file_name().unwrap().to_string_lossy() == *n)
            })
        })
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty());
    let _ = Family::V4;
    let (mut sim_all, mut kernel_all, mut broken) = (vec![], vec![], vec![]);
    for dir in &dirs {
        match run(dir) {
            Ok((s, k)) => {
                for (s, k) in s.iter().zip(&k) {
                    if !s.passed() || !k.passed() {
                        println!(
                            "MISMATCH {}: {}: expected {}, sim {}, kernel {}",
                            s.case,
                            s.packet,
                            s.expected,
                            show(&s.got),
                            show(&k.got)
                        );
                    }
                }
                sim_all.extend(s);
                kernel_all.extend(k);
            }
            Err(e) => {
                println!("BROKEN {e}");
                broken.push(e);
            }
        }
    }
    let count = |o: &[Outcome]| {
        let p = o.iter().filter(|o| o.passed()).count();
        format!("{p} passed, {} failed", o.len() - p)
    };
    let (s, k) = (count(&sim_all), count(&kernel_all));
    println!(
        "simulator: {s}\nkernel:    {k}\ncases that could not run: {}",
        broken.len()
    );
    assert!(
        broken.is_empty()
            && sim_all.iter().all(Outcome::passed)
            && kernel_all.iter().all(Outcome::passed),
        "simulator: {s}; kernel: {k}; {} cases could not run",
        broken.len()
    );
}

//! Benchmark: compile every node of the generated 1,000-node / 20,000-guest
//! / 10-rules-per-guest site to nftables. Target: under 2 s in total on the
//! 2-core CI machine. Prints figures; not a timed test.
//!
//! `cargo bench -p rampart-nft --bench compile_all`
//! (`RAMPART_BENCH_NODES`, `_GUESTS`, `_RULES`, `_ROUNDS` change the size.)
//!
//! Two figures: [`rampart_nft::compile_all`] (one shared `SiteCache`, all
//! cores: what `compile --all` costs) and the same work on one thread (each
//! node through `compile_cached`), so the cores' share is visible.

use rampart_nft::{compile_all, compile_cached, Caps, SiteCache};
use std::time::Instant;

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds this process has used (user + system), from /proc: the
/// machine is shared, so wall time alone can mislead.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat(5), counted from the state field (3).
    (tick(11) + tick(12)) / 100.0
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let params = rampart_gen::GenParams {
        nodes: env("RAMPART_BENCH_NODES", 1000),
        guests: env("RAMPART_BENCH_GUESTS", 20_000),
        rules_per_guest: env("RAMPART_BENCH_RULES", 10),
        seed: 1,
    };
    let files = rampart_gen::generate(&params).expect("generate");
    let (site, diags) = rampart_resolve::load(&files);
    assert!(!diags.has_errors(), "{}", diags.render(&site.sources));
    let caps = Caps::default();
    let rounds = env("RAMPART_BENCH_ROUNDS", 3).max(1);
    let (mut rules, mut bytes) = (0usize, 0usize);
    let mut all = Vec::new();
    let mut all_cpu = Vec::new();
    for _ in 0..rounds {
        let (t, c) = (Instant::now(), cpu_s());
        let plans = compile_all(&site, &caps);
        all.push(t.elapsed().as_secs_f64());
        all_cpu.push(cpu_s() - c);
        rules = 0;
        bytes = 0;
        for (_, p) in &plans {
            let plan = p.as_ref().expect("compiles");
            rules += plan
                .ruleset
                .tables
                .iter()
                .flat_map(|t| &t.chains)
                .map(|c| c.rules.len())
                .sum::<usize>();
            bytes += plan.script.len();
        }
    }
    let mut one = Vec::new();
    let mut one_cpu = Vec::new();
    for _ in 0..rounds {
        let (t, c) = (Instant::now(), cpu_s());
        let cache = SiteCache::new(&site);
        for n in &site.nodes {
            let plan = compile_cached(&site, &n.name, &caps, &cache).expect("compiles");
            std::hint::black_box(plan.script.len());
        }
        one.push(t.elapsed().as_secs_f64());
        one_cpu.push(cpu_s() - c);
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "compile all nodes (nftables): {} nodes, {} guests -> {} kernel rules, {:.1} MB of nft script",
        site.nodes.len(),
        site.guests.len(),
        rules,
        bytes as f64 / 1e6
    );
    let (m, lo, hi) = median(all);
    println!(
        "  compile_all ({threads} threads)  median {m:.3} s wall (min {lo:.3}, max {hi:.3}), {:.2} s CPU; target < 2 s -> {:.2}x of budget; {:.2} ms per node",
        median(all_cpu).0,
        m / 2.0,
        m * 1000.0 / site.nodes.len() as f64
    );
    let (m1, lo, hi) = median(one);
    println!(
        "  one thread           median {m1:.3} s wall (min {lo:.3}, max {hi:.3}), {:.2} s CPU; {:.2} ms per node",
        median(one_cpu).0,
        m1 * 1000.0 / site.nodes.len() as f64
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "  load average while measuring: {}",
        load.split_whitespace().next().unwrap_or("?")
    );
}

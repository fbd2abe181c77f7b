//! Benchmark: compile every node of the generated 1,000-node / 20,000-guest
//! / 10-rules-per-guest site to nftables. Target: under 2 s in total on the
//! 2-core CI machine. Prints figures; not a timed test.
//!
//! `cargo bench -p rampart-nft --bench compile_all`

use std::time::Instant;

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
    let mut times = Vec::new();
    let (mut rules, mut bytes) = (0usize, 0usize);
    for _ in 0..env("RAMPART_BENCH_ROUNDS", 3) {
        let t = Instant::now();
        rules = 0;
        bytes = 0;
        for n in &site.nodes {
            let plan = rampart_nft::compile(&site, &n.name).expect("compiles");
            rules += plan
                .ruleset
                .tables
                .iter()
                .flat_map(|t| &t.chains)
                .map(|c| c.rules.len())
                .sum::<usize>();
            bytes += plan.script.len();
        }
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = times[times.len() / 2];
    println!(
        "compile all nodes (nftables): {} nodes, {} guests -> {} kernel rules, {:.1} MB of nft script",
        site.nodes.len(),
        site.guests.len(),
        rules,
        bytes as f64 / 1e6
    );
    println!(
        "  time   median {:.3} s (min {:.3}, max {:.3}); target < 2 s -> {:.2}x of budget; {:.2} ms per node",
        median,
        times[0],
        times[times.len() - 1],
        median / 2.0,
        median * 1000.0 / site.nodes.len() as f64
    );
}

//! Benchmark: parse + resolve the generated 1,000-node / 20,000-guest /
//! 10-rules-per-guest site (`rampart gen-site --nodes 1000 --guests 20000
//! --rules-per-guest 10`). Target: under 2 s and under 1 GiB on the 2-core
//! CI machine. Prints figures; it is not a timed test.
//!
//! `cargo bench -p rampart-resolve --bench parse_resolve`
//! Parameters can be overridden: `RAMPART_BENCH_NODES`, `_GUESTS`, `_RULES`.

use std::time::Instant;

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set size of this process so far, in bytes (Linux).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let params = rampart_gen::GenParams {
        nodes: env("RAMPART_BENCH_NODES", 1000),
        guests: env("RAMPART_BENCH_GUESTS", 20_000),
        rules_per_guest: env("RAMPART_BENCH_RULES", 10),
        seed: 1,
    };
    let files = rampart_gen::generate(&params).expect("generate");
    let input_bytes: usize = files.files.values().map(|v| v.len()).sum();
    let before = peak_rss();
    let rounds = env("RAMPART_BENCH_ROUNDS", 3);
    let mut times = Vec::new();
    let mut ir_rules = 0usize;
    for _ in 0..rounds {
        let t = Instant::now();
        let (site, diags) = rampart_resolve::load(&files);
        times.push(t.elapsed().as_secs_f64());
        assert!(
            !diags.has_errors(),
            "generated site has errors:\n{}",
            diags.render(&site.sources)
        );
        ir_rules = site
            .nodes
            .iter()
            .map(|n| n.firewall.rules.len())
            .sum::<usize>()
            + site.guests.iter().map(|g| g.rules.len()).sum::<usize>();
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = times[times.len() / 2];
    let peak = peak_rss();
    println!("parse+resolve: {} nodes, {} guests, {} rules/guest ({} files, {:.1} MB input, {} IR rules)",
        params.nodes, params.guests, params.rules_per_guest, files.files.len(), input_bytes as f64 / 1e6, ir_rules);
    println!("  time   median {:.3} s over {} rounds (min {:.3}, max {:.3}); target < 2 s -> {:.2}x of budget",
        median, rounds, times[0], times[times.len() - 1], median / 2.0);
    println!("  memory peak {:.0} MiB (of which {:.0} MiB before parsing: generator + input); target < 1024 MiB",
        peak as f64 / 1048576.0, before as f64 / 1048576.0);
}

//! Profiling aid: plans the incremental bench's site cold once, then a
//! one-rule change warm (through the agent's PlanCache) N times, printing
//! the median. `cargo run --release -p rampart-agent --example warm_plan`
//! (under `perf record -g` to see where the warm time goes).
//! Knobs: as the bench (RAMPART_BENCH_GUESTS, _RULES, _ELEMENTS), and
//! RAMPART_WARM_ROUNDS (200).

use rampart_agent::plan_for_cached;
use std::time::{Duration, Instant};

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let guests = env("RAMPART_BENCH_GUESTS", 60);
    let rules = env("RAMPART_BENCH_RULES", 100);
    let elements = env("RAMPART_BENCH_ELEMENTS", 100_000);
    let rounds = env("RAMPART_WARM_ROUNDS", 200).max(1);
    let mut files = rampart_gen::generate(&rampart_gen::GenParams {
        nodes: 1,
        guests,
        rules_per_guest: rules,
        seed: 7,
    })
    .expect("generate");
    let cluster = String::from_utf8(files.files["firewall/cluster.fw"].clone()).unwrap();
    let at = cluster.find("[IPSET blacklist]").expect("blacklist");
    let eol = at + cluster[at..].find('\n').unwrap() + 1;
    let mut extra = String::new();
    for i in 0..elements {
        let a = 0xac10_0000u32 + 2 * i;
        extra.push_str(&format!(
            "{}.{}.{}.{}\n",
            a >> 24,
            (a >> 16) & 255,
            (a >> 8) & 255,
            a & 255
        ));
    }
    let body = format!("{}{extra}{}", &cluster[..eol], &cluster[eol..]);
    files
        .files
        .insert("firewall/cluster.fw".into(), body.into_bytes());
    // A guest rule with a single -dport to change.
    let (path, line) = files
        .files
        .iter()
        .filter(|(p, _)| p.starts_with("firewall/") && !p.ends_with("cluster.fw"))
        .find_map(|(p, b)| {
            String::from_utf8_lossy(b)
                .lines()
                .find(|l| l.starts_with("IN ACCEPT") && l.contains("-dport ") && !l.contains(','))
                .map(|l| (p.clone(), l.to_owned()))
        })
        .expect("a guest rule");
    let changed = |n: u32| {
        let mut f = files.clone();
        let text = String::from_utf8(f.files[&path].clone()).unwrap();
        let at = line.find("-dport ").unwrap() + 7;
        let end = line[at..].find(' ').map(|e| at + e).unwrap_or(line.len());
        let new_line = format!("{}{}{}", &line[..at], 40000 + n, &line[end..]);
        f.files.insert(
            path.clone(),
            text.replacen(&line, &new_line, 1).into_bytes(),
        );
        f
    };
    let opts = rampart_agent::PlanOpts::default();
    let mut cache = rampart_agent::PlanCache::new();
    plan_for_cached(&files, Some("pve1"), &opts, &mut cache).expect("plan");
    let revs: Vec<_> = (1..=rounds).map(|r| changed(r % 50)).collect();
    let mut times: Vec<Duration> = Vec::new();
    for f in &revs {
        let t = Instant::now();
        let p = plan_for_cached(f, Some("pve1"), &opts, &mut cache).expect("plan");
        times.push(t.elapsed());
        std::hint::black_box(p);
    }
    times.sort();
    println!(
        "warm plan_for_cached: median {:.1} ms, min {:.1} ms over {rounds}",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3
    );
}

//! Benchmark: simulator intents checked per second on the generated
//! 1,000-node / 20,000-guest site. Each intent is traced across the site
//! (every node it crosses walks its compiled ruleset). Prints figures; not
//! a timed test.
//!
//! `cargo bench -p rampart-intent --bench intents` (or `bash bench/intents.sh`).
//! RAMPART_BENCH_NODES / _GUESTS / _RULES / _INTENTS change the size.

use rampart_intent::parse::{EndpointSpec, Expect, What};
use rampart_intent::{verify, World};
use rampart_types::{Proto, Span};
use std::time::Instant;

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ep(s: &str) -> EndpointSpec {
    let (base, qual) = match s.split_once('@') {
        Some((b, q)) => (b.to_string(), Some(q.to_string())),
        None => (s.to_string(), None),
    };
    EndpointSpec {
        text: s.to_string(),
        base,
        qual,
        span: Span::default(),
    }
}

fn main() {
    let params = rampart_gen::GenParams {
        nodes: env("RAMPART_BENCH_NODES", 1000),
        guests: env("RAMPART_BENCH_GUESTS", 20_000),
        rules_per_guest: env("RAMPART_BENCH_RULES", 10),
        seed: 1,
    };
    let files = rampart_gen::generate(&params).expect("generate");
    let t = Instant::now();
    let (world, diags) = World::from_files(&files);
    let world = world.unwrap_or_else(|| panic!("{} errors", diags.errors()));
    let build = t.elapsed().as_secs_f64();

    // A deterministic mix: guest -> guest on the same node (bridged),
    // guest -> guest elsewhere over IPv6 (through both nodes), the LAN ->
    // a guest, the internet -> a node's SSH, node -> node cluster traffic.
    let n_intents = env("RAMPART_BENCH_INTENTS", 5000) as usize;
    let guests: Vec<String> = world.site.guests.iter().map(|g| g.zone()).collect();
    let nodes: Vec<String> = world
        .site
        .nodes
        .iter()
        .map(|n| n.name.to_string())
        .collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = |m: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m as u64) as usize
    };
    let mut expects = Vec::with_capacity(n_intents);
    for i in 0..n_intents {
        let (from, to, what, fam) = match i % 5 {
            0 => {
                let g = &world.site.guests[rnd(guests.len())];
                let other = world
                    .site
                    .guests
                    .iter()
                    .find(|h| h.node == g.node && h.id != g.id)
                    .unwrap_or(g);
                (
                    g.zone(),
                    other.zone(),
                    What::Macro(rampart_syntax::tables::find_macro("HTTP").unwrap()),
                    None,
                )
            }
            1 => (
                guests[rnd(guests.len())].clone(),
                guests[rnd(guests.len())].clone(),
                What::Proto {
                    proto: Some(Proto::Tcp),
                    port: Some(443),
                },
                Some(rampart_types::Family::V6),
            ),
            2 => {
                let g = &world.site.guests[rnd(guests.len())];
                let lan = world.site.node(&g.node).unwrap().bridges[0].addresses[0];
                let a = match lan {
                    ipnet::IpNet::V4(n) => n.hosts().nth(200).unwrap().to_string(),
                    ipnet::IpNet::V6(n) => n.hosts().nth(200).unwrap().to_string(),
                };
                (
                    a,
                    g.zone(),
                    What::Macro(rampart_syntax::tables::find_macro("SSH").unwrap()),
                    None,
                )
            }
            3 => (
                "internet".to_string(),
                format!("{}@public", nodes[rnd(nodes.len())]),
                What::Macro(rampart_syntax::tables::find_macro("SSH").unwrap()),
                None,
            ),
            _ => (
                nodes[rnd(nodes.len())].clone(),
                nodes[rnd(nodes.len())].clone(),
                What::Proto {
                    proto: Some(Proto::Udp),
                    port: Some(5405),
                },
                None,
            ),
        };
        expects.push(Expect {
            name: format!("i{i}"),
            from: ep(&from),
            to: ep(&to),
            what,
            family: fam,
            reachable: true,
            reason: None,
            span: Span::default(),
        });
    }

    // Cold: nodes' rulesets compiled on first use.
    let t = Instant::now();
    let (m, d) = verify(&world, &expects);
    let cold = t.elapsed().as_secs_f64();
    assert!(!d.has_errors(), "{} endpoint errors", d.errors());
    let reachable = m.rows.iter().filter(|r| r.got == Some(true)).count();
    // Warm: every ruleset compiled; the figure is the trace itself.
    let mut times = vec![];
    let mut rows = 0;
    for _ in 0..env("RAMPART_BENCH_ROUNDS", 3) {
        let t = Instant::now();
        let (m, _) = verify(&world, &expects);
        rows = m.rows.len();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let warm = times[times.len() / 2];
    println!(
        "intents on the generated site: {} nodes, {} guests; world built in {:.2} s",
        world.site.nodes.len(),
        world.site.guests.len(),
        build
    );
    println!(
        "  cold (compiling each node on first use): {} intents in {:.2} s = {:.0} intents/s",
        expects.len(),
        cold,
        expects.len() as f64 / cold
    );
    println!(
        "  warm: {} intents ({} probes, {} reachable) in {:.3} s = {:.0} intents/s, {:.0} probes/s",
        expects.len(),
        rows,
        reachable,
        warm,
        expects.len() as f64 / warm,
        rows as f64 / warm
    );
}

//! Generate the configs of a 1,000-node mesh and print the time. Target:
//! < 1 s. `cargo bench -p rampart-wg --bench mesh`
//! (`RAMPART_BENCH_NODES`, `RAMPART_BENCH_ROUNDS` change the size.)
//!
//! One round is everything from nothing to every node's config text: a key
//! pair per node (x25519, as `rampart wg enroll` makes them), the site text
//! with the public keys, parse, plan (addresses, peers, AllowedIPs),
//! the checks (bad-inputs 32-40), and the wg-quick `.conf` of every node.
//! The result is checked: every node's config lists all n-1 other nodes,
//! each with its key, endpoint and both tunnel addresses as AllowedIPs.
//! The machine is shared: the figures are medians of several rounds, and
//! the CPU time (both cores) is printed beside the wall time.
use std::time::Instant;

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

struct Round {
    keys: f64,
    plan: f64,
    render: f64,
    total: f64,
    cpu: f64,
}

fn round(n: usize, check: bool) -> Round {
    let c0 = cpu_s();
    let t0 = Instant::now();
    let mut toml = String::new();
    for i in 0..n {
        toml.push_str(&format!(
            "[[node]]\nname = \"n{i}\"\nendpoint = \"192.0.{}.{}\"\n\n",
            2 + i / 250,
            1 + i % 250
        ));
    }
    toml.push_str("[[wireguard]]\nname = \"mesh\"\ninterface = \"wg0\"\npool = [\"10.64.0.0/16\", \"fd64::/64\"]\nlisten_port = 51820\n");
    let mut pubs = Vec::with_capacity(n);
    for i in 0..n {
        let (_, pk) = rampart_wg::keys::test_keypair(&format!("bench{i}"));
        toml.push_str(&format!(
            "\n[[wireguard.member]]\nname = \"n{i}\"\npublic_key = \"{pk}\"\n"
        ));
        pubs.push(pk);
    }
    let keys = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let (plan, diags) = rampart_wg::check(Default::default(), &toml);
    let plan = plan.expect("parsed");
    assert!(!diags.has_errors(), "{:?}", diags.items.first());
    let t_plan = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let confs = rampart_wg::wg_quick_confs(&plan);
    let render = t2.elapsed().as_secs_f64();
    let total = t0.elapsed().as_secs_f64();
    let cpu = cpu_s() - c0;
    if check {
        assert_eq!(plan.interfaces.len(), n);
        assert_eq!(confs.len(), n);
        for (k, i) in plan.interfaces.iter().enumerate() {
            assert_eq!(i.peers.len(), n - 1, "node {k}");
            assert_eq!(i.public_key, pubs[k]);
            for p in &i.peers {
                let j: usize = p.name[1..].parse().unwrap();
                assert_eq!(p.public_key, pubs[j]);
                assert!(p.endpoint.as_deref().is_some_and(|e| e.ends_with(":51820")));
                let them = &plan.interfaces[j].addresses;
                assert_eq!(p.allowed_ips.len(), 2);
                for (a, b) in p.allowed_ips.iter().zip(them) {
                    assert_eq!(a.addr(), b.addr());
                    assert_eq!(a.prefix_len(), a.max_prefix_len());
                }
            }
            assert_eq!(
                confs[k].matches("AllowedIPs = ").count(),
                n - 1,
                "node {k}'s config"
            );
        }
        // The cached renderer gives the same text as the one-by-one renderer.
        for k in [0, n / 2, n - 1] {
            assert_eq!(confs[k], rampart_wg::wg_quick_conf(&plan.interfaces[k]));
        }
    }
    Round {
        keys,
        plan: t_plan,
        render,
        total,
        cpu,
    }
}

fn main() {
    let n: usize = std::env::var("RAMPART_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rounds: usize = std::env::var("RAMPART_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    // The first round is checked (and warms the allocator); not counted.
    let _ = round(n, true);
    let rs: Vec<Round> = (0..rounds).map(|_| round(n, false)).collect();
    let ms = |f: fn(&Round) -> f64| median(rs.iter().map(f).collect()) * 1e3;
    let peers = n * (n - 1);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "wg mesh of {n} nodes ({peers} peer entries, all checked in a first round): median of {rounds}: \
         keys+site {:.0} ms, parse+plan+checks {:.0} ms, render wg-quick {:.0} ms; \
         TOTAL {:.0} ms wall, {:.0} ms CPU (target < 1000 ms); {cpus} CPUs, load average {}",
        ms(|r| r.keys),
        ms(|r| r.plan),
        ms(|r| r.render),
        ms(|r| r.total),
        ms(|r| r.cpu),
        load.split_whitespace().next().unwrap_or("?"),
    );
    if std::env::var("RAMPART_BENCH_ASSERT").is_ok() {
        assert!(ms(|r| r.total) < 1000.0, "over the 1 s target");
    }
}

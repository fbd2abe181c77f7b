//! Generate the configs of a 1,000-node mesh (keys, peers, AllowedIPs,
//! rendered wg-quick and setconf text) and print the time. Target: < 1 s.
use std::time::Instant;

fn main() {
    let n: usize = std::env::var("RAMPART_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
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
    for i in 0..n {
        let (_, pk) = rampart_wg::keys::test_keypair(&format!("bench{i}"));
        toml.push_str(&format!(
            "\n[[wireguard.member]]\nname = \"n{i}\"\npublic_key = \"{pk}\"\n"
        ));
    }
    let t_keys = t0.elapsed();
    let t1 = Instant::now();
    let (plan, diags) = rampart_wg::check(Default::default(), &toml);
    let plan = plan.expect("parsed");
    assert!(!diags.has_errors(), "{:?}", diags.items.first());
    let t_plan = t1.elapsed();
    let t2 = Instant::now();
    let mut bytes = 0usize;
    for i in &plan.interfaces {
        bytes += rampart_wg::wg_quick_conf(i).len();
        bytes += rampart_wg::wg_setconf(i).len();
    }
    let t_render = t2.elapsed();
    let peers: usize = plan.interfaces.iter().map(|i| i.peers.len()).sum();
    let total = t1.elapsed();
    println!(
        "wg mesh of {n} nodes: {} interfaces, {peers} peer entries, {:.1} MB of config; \
         keys {:.0} ms, parse+plan+checks {:.0} ms, render {:.0} ms, total (plan+render) {:.0} ms (target < 1000 ms)",
        plan.interfaces.len(),
        bytes as f64 / 1e6,
        t_keys.as_secs_f64() * 1e3,
        t_plan.as_secs_f64() * 1e3,
        t_render.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3
    );
}

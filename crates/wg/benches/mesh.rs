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
    let tp = Instant::now();
    let _ = rampart_wg::parse_site_toml(Default::default(), &toml);
    let t_parse_only = tp.elapsed();
    let t1 = Instant::now();
    let (plan, diags) = rampart_wg::check(Default::default(), &toml);
    let plan = plan.expect("parsed");
    assert!(!diags.has_errors(), "{:?}", diags.items.first());
    let t_plan = t1.elapsed();
    let t2 = Instant::now();
    let confs = rampart_wg::wg_quick_confs(&plan);
    let bytes: usize = confs.iter().map(|c| c.len()).sum();
    let t_render = t2.elapsed();
    // Everything: key pairs, site text, parse, plan, checks, rendering.
    let total = t0.elapsed();
    let t3 = Instant::now();
    let setconf_bytes: usize = plan
        .interfaces
        .iter()
        .map(|i| rampart_wg::wg_setconf(i).len())
        .sum();
    let t_setconf = t3.elapsed();
    // The cached renderer gives the same text as the one-by-one renderer.
    for k in [0, n / 2, n - 1] {
        assert_eq!(confs[k], rampart_wg::wg_quick_conf(&plan.interfaces[k]));
    }
    let peers: usize = plan.interfaces.iter().map(|i| i.peers.len()).sum();
    println!(
        "wg mesh of {n} nodes: {} interfaces, {peers} peer entries, {:.1} MB of wg-quick config; \
         keys {:.0} ms, parse+plan+checks {:.0} ms (parse alone {:.0} ms), render {:.0} ms; TOTAL {:.0} ms (target < 1000 ms); \
         (extra: wg setconf text for all, {:.1} MB, {:.0} ms)",
        plan.interfaces.len(),
        bytes as f64 / 1e6,
        t_keys.as_secs_f64() * 1e3,
        t_plan.as_secs_f64() * 1e3,
        t_parse_only.as_secs_f64() * 1e3,
        t_render.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3,
        setconf_bytes as f64 / 1e6,
        t_setconf.as_secs_f64() * 1e3,
    );
    if std::env::var("RAMPART_BENCH_ASSERT").is_ok() {
        assert!(total.as_secs_f64() < 1.0, "over the 1 s target");
    }
}

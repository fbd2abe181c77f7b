//! Compile-time figure for a generated large site (printed, not a timed
//! assertion): `cargo test --release -p rampart-nft --test scale -- --ignored --nocapture`.

use rampart_nft::compile;
use rampart_nft::testkit::{list, rule, RuleExt, SiteBuilder};
use rampart_resolve::ir::{AddrMatch, GuestKind, SetScope, Site};
use rampart_types::{Action, Direction};
use std::time::Instant;

fn generated(nodes: u32, guests_per_node: u32, blacklist: u32) -> Site {
    let mut b = SiteBuilder::new();
    let c = b.file("firewall/cluster.fw", "#\n");
    let entries: Vec<String> = (0..blacklist)
        .map(|i| format!("100.{}.{}.{}", i >> 16 & 63, i >> 8 & 255, (i * 7) & 255))
        .collect();
    let refs: Vec<&str> = entries.iter().map(|s| s.as_str()).collect();
    let bl = b.set(
        "blacklist",
        SetScope::Cluster,
        "dc-blacklist",
        &refs,
        b.at(c, 1),
    );
    let office = b.set(
        "office",
        SetScope::Cluster,
        "dc-office",
        &["198.51.100.0/24", "2001:db8:99::/48"],
        b.at(c, 1),
    );
    for n in 0..nodes {
        let name = format!("hv{n}");
        let addr = format!("10.{}.{}.1/16", n >> 8, n & 255);
        b.node(&name, &[("vmbr0", &[addr.as_str()])], &[]);
        b.node_mut(&name).firewall.blacklist = Some(bl);
        b.node_mut(&name).firewall.rules = vec![
            rule(b.at(c, 1), Direction::In, Action::Accept)
                .tcp(443)
                .source(AddrMatch::Set(office)),
            rule(b.at(c, 1), Direction::In, Action::Accept)
                .tcp(8080)
                .source(list(&["203.0.113.0/24"])),
        ];
        for g in 0..guests_per_node {
            let id = 100 + n * guests_per_node + g;
            let a4 = format!("10.{}.{}.{}/16", n >> 8, n & 255, g + 10);
            let mac = format!(
                "0e:00:{:02x}:{:02x}:{:02x}:00",
                id >> 16 & 255,
                id >> 8 & 255,
                id & 255
            );
            b.guest(
                id,
                GuestKind::Vm,
                &name,
                &[("vmbr0", mac.as_str(), &[a4.as_str()])],
                b.at(c, 1),
            );
            b.guest_mut(id).rules = vec![
                rule(b.at(c, 1), Direction::In, Action::Accept).tcp(80),
                rule(b.at(c, 1), Direction::In, Action::Accept)
                    .tcp(22)
                    .source(AddrMatch::Set(office)),
                rule(b.at(c, 1), Direction::Out, Action::Drop).tcp(25),
            ];
        }
    }
    b.build()
}

#[test]
#[ignore]
fn compile_1000_nodes_20000_guests() {
    let site = generated(1000, 20, 10_000);
    let t = Instant::now();
    let mut bytes = 0;
    for n in &site.nodes {
        bytes += compile(&site, &n.name).unwrap().script.len();
    }
    let dt = t.elapsed();
    println!(
        "compiled 1000 nodes / 20000 guests (10k blacklist) in {:.3} s, {} MB of nft text",
        dt.as_secs_f64(),
        bytes / 1_000_000
    );
}

#[test]
fn ruleset_grows_linearly_with_guests() {
    let rules = |g: u32| {
        let site = generated(1, g, 100);
        let p = compile(&site, "hv0").unwrap();
        let t = p
            .ruleset
            .table(rampart_nft::model::TableFamily::Inet)
            .unwrap();
        t.chains.iter().map(|c| c.rules.len()).sum::<usize>()
    };
    let (a, b) = (rules(10), rules(20));
    let c = rules(40);
    // Each guest NIC adds the same number of rules; the base chains don't grow.
    assert_eq!(c - b, 2 * (b - a));
    // And a new packet meets a bounded number of rules in the base chains.
    let site = generated(1, 40, 100);
    let p = compile(&site, "hv0").unwrap();
    let t = p
        .ruleset
        .table(rampart_nft::model::TableFamily::Inet)
        .unwrap();
    assert!(t.chain("hook-forward").unwrap().rules.len() < 12);
}

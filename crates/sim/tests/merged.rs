//! Merged rules (`rampart_nft::merge`) keep their tracing: the simulator
//! names the ORIGINAL policy line that decided, the first in policy order
//! that matches, not the merged kernel rule. Site: `conformance/merged-runs`
//! (its packets also run against the kernel in rampart-lab's conformance).

use rampart_sim::{simulate, Packet};
use rampart_types::{Action, SiteFiles};
use std::path::Path;

fn site() -> rampart_resolve::ir::Site {
    fn walk(root: &Path, dir: &Path, out: &mut SiteFiles) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            if p.is_dir() {
                walk(root, &p, out);
            } else if rel != "packets.toml" {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/merged-runs");
    let mut f = SiteFiles::new();
    walk(&root, &root, &mut f);
    let (site, diags) = rampart_resolve::load(&f);
    assert!(!diags.has_errors(), "{}", diags.render(&site.sources));
    site
}

fn decided(p: Packet) -> (Action, String, String) {
    let site = site();
    let t = simulate(&site, "hv1", &p).unwrap();
    let d = t.decided_by.clone().unwrap();
    (t.verdict, d.origin, d.text)
}

#[test]
fn the_trail_names_the_original_line_of_a_merged_rule() {
    let plan = rampart_nft::compile(&site(), "hv1").unwrap();
    // host.fw:5, 6 and 9 are one kernel rule...
    assert!(plan.script.contains(
        "ip saddr 192.0.2.50-192.0.2.52 tcp dport 8080 return comment \"host.fw:5-6,9\""
    ));
    // ...and each packet is traced to its own line.
    let (v, origin, text) = decided(Packet::tcp("outside", "host", 8080).source("192.0.2.52"));
    assert_eq!(v, Action::Accept);
    assert_eq!(origin, "host.fw:9");
    assert!(
        text.starts_with("ip saddr 192.0.2.52 tcp dport 8080 return comment \"host.fw:9\"")
            && text.contains("3 merged lines: host.fw:5-6,9"),
        "{text}"
    );
    let (_, origin, _) = decided(Packet::tcp("outside", "host", 8080).source("192.0.2.50"));
    assert_eq!(origin, "host.fw:5");
    // A concatenation: the pair's own line.
    let (v, origin, _) = decided(Packet::tcp("outside", "host", 8082).source("192.0.2.61"));
    assert_eq!((v, origin.as_str()), (Action::Drop, "host.fw:8"));
    // A line that may not move keeps losing to the earlier overlapping one.
    let (v, origin, _) = decided(Packet::tcp("outside", "host", 8080).source("192.0.2.53"));
    assert_eq!((v, origin.as_str()), (Action::Reject, "host.fw:10"));
    // Guest chains merge too.
    let (v, origin, _) = decided(Packet::tcp("outside", "vm100", 80).source("192.0.2.51"));
    assert_eq!((v, origin.as_str()), (Action::Accept, "100.fw:8"));
    let (v, origin, _) = decided(Packet::tcp("outside", "vm100", 443).source("192.0.2.52"));
    assert_eq!((v, origin.as_str()), (Action::Accept, "100.fw:9"));
}

#[test]
fn several_matching_lines_of_one_merged_rule_name_the_first() {
    // host.fw:14 (udp 5000:5010) and :15 (udp 6000) are one rule.
    let (v, origin, _) = decided(Packet::udp("outside", "host", 5005).source("192.0.2.99"));
    assert_eq!((v, origin.as_str()), (Action::Accept, "host.fw:14"));
    // :20 (udp 7000:7010) and :21 (udp 7005:7020) joined that rule too, and
    // both match 7007: the first in policy order is named.
    let (v, origin, _) = decided(Packet::udp("outside", "host", 7007).source("192.0.2.99"));
    assert_eq!((v, origin.as_str()), (Action::Accept, "host.fw:20"));
    let (_, origin, _) = decided(Packet::udp("outside", "host", 7015).source("192.0.2.99"));
    assert_eq!(origin, "host.fw:21");
    // 192.0.2.70 udp 5005: host.fw:14 accepts first (the DROP at :16 is later).
    let (v, origin, _) = decided(Packet::udp("outside", "host", 5005).source("192.0.2.70"));
    assert_eq!((v, origin.as_str()), (Action::Accept, "host.fw:14"));
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random policy rule over a small space of sources, protocols and
/// ports (so that runs, overlaps and shadowing happen often), sometimes a
/// `-log` rule before it.
fn random_rules(r: &mut Rng, line: u32) -> Vec<rampart_nft::model::Rule> {
    use rampart_nft::model::*;
    use rampart_types::{Family, IpRange, PortRange};
    let v6 = r.below(5) == 0;
    let fam = if v6 { Family::V6 } else { Family::V4 };
    let host = |i: u64| -> std::net::IpAddr {
        if v6 {
            format!("2001:db8:1::{}", 0x50 + i).parse().unwrap()
        } else {
            format!("192.0.2.{}", 0x50 + i).parse().unwrap()
        }
    };
    let mut ms = Vec::new();
    match r.below(4) {
        0 => {}
        1 | 2 => ms.push(Match::Addr {
            family: fam,
            dir: Dir::Src,
            neg: false,
            target: AddrTarget::Literal(vec![IpRange::host(host(r.below(8)))]),
        }),
        _ => {
            let a = r.below(8);
            let b = a + r.below(4);
            ms.push(Match::Addr {
                family: fam,
                dir: Dir::Src,
                neg: false,
                target: AddrTarget::Literal(vec![IpRange::new(host(a), host(b))]),
            })
        }
    }
    if ms.is_empty() && r.below(2) == 0 {
        ms.push(Match::NfProto(fam));
    }
    let proto = [6u8, 17][r.below(2) as usize];
    let ports = [22u16, 80, 443, 8080];
    match r.below(4) {
        0 => ms.push(Match::L4Proto {
            number: proto,
            name: if proto == 6 { "tcp" } else { "udp" }.into(),
        }),
        1 | 2 => ms.push(Match::Port {
            proto,
            dir: Dir::Dst,
            ports: vec![PortRange::single(ports[r.below(4) as usize])],
        }),
        _ => {
            let lo = ports[r.below(3) as usize];
            ms.push(Match::Port {
                proto,
                dir: Dir::Dst,
                ports: vec![PortRange::new(lo, lo + 500)],
            })
        }
    }
    let comment = format!("host.fw:{line}");
    let (v, a) = match r.below(3) {
        0 => (Verdict::Return, Action::Accept),
        1 => (Verdict::Drop, Action::Drop),
        _ => (Verdict::Jump("reject-packet".into()), Action::Reject),
    };
    let mut out = Vec::new();
    if r.below(8) == 0 {
        let mut log = Rule::new(comment.clone());
        log.matches = ms.clone();
        log.stmts.push(Stmt::Log {
            prefix: "x ".into(),
            group: 0,
        });
        out.push(log);
    }
    let mut rule = Rule::new(comment).v(v).decides(a);
    rule.matches = ms;
    out.push(rule);
    out
}

#[test]
fn merging_never_changes_a_verdict_or_the_line_that_decides() {
    use rampart_nft::model::*;
    let site = rampart_nft::testkit::conformance::host_basics();
    let base = rampart_nft::compile(&site, "hv1").unwrap();
    let mut rng = Rng(0x5eed_0001);
    let (mut merged_rules, mut compared) = (0usize, 0usize);
    for _ in 0..150 {
        let n = 2 + rng.below(30) as u32;
        let mut rules: Vec<Rule> = (0..n).flat_map(|l| random_rules(&mut rng, l + 1)).collect();
        rules.push(
            Rule::new("auto:policy_in DROP")
                .v(Verdict::Drop)
                .decides(Action::Drop),
        );
        let merged = rampart_nft::merge::merge(rules.clone());
        merged_rules += rules.len() - merged.len();
        let with = |rs: Vec<Rule>| {
            let mut p = base.clone();
            let t = p
                .ruleset
                .tables
                .iter_mut()
                .find(|t| t.family == TableFamily::Inet)
                .unwrap();
            t.chains
                .iter_mut()
                .find(|c| c.name == "host-in")
                .unwrap()
                .rules = rs;
            p
        };
        let (plain, fused) = (with(rules), with(merged));
        for i in 0..8u32 {
            for (proto, port) in [
                (6u8, 22u16),
                (6, 80),
                (17, 443),
                (6, 8080),
                (17, 700),
                (6, 1000),
            ] {
                for v6 in [false, true] {
                    let src = if v6 {
                        format!("2001:db8:1::{:x}", 0x50 + i)
                    } else {
                        format!("192.0.2.{}", 0x50 + i)
                    };
                    let p = if proto == 6 {
                        Packet::tcp("outside", "host", port)
                    } else {
                        Packet::udp("outside", "host", port)
                    }
                    .source(&src);
                    let a = rampart_sim::simulate_plan(&site, &plain, &p).unwrap();
                    let b = rampart_sim::simulate_plan(&site, &fused, &p).unwrap();
                    // The verdict, the line that decided, and what was logged.
                    let seen = |t: &rampart_sim::Trace| {
                        (
                            t.verdict,
                            t.decided_by.as_ref().map(|d| d.origin.clone()),
                            t.notes.clone(),
                        )
                    };
                    assert_eq!(
                        seen(&a),
                        seen(&b),
                        "{src} proto {proto} port {port}\nunmerged:\n{}\nmerged:\n{}",
                        host_in(&plain),
                        host_in(&fused),
                    );
                    compared += 1;
                }
            }
        }
    }
    println!("{compared} packets compared, {merged_rules} rules merged away");
    assert!(
        merged_rules > 300,
        "the random chains should merge: {merged_rules}"
    );
}

/// The printed rules of a plan's `inet` host-in chain (assertion messages).
fn host_in(plan: &rampart_nft::Plan) -> String {
    plan.ruleset
        .table(rampart_nft::model::TableFamily::Inet)
        .unwrap()
        .chain("host-in")
        .unwrap()
        .rules
        .iter()
        .map(rampart_nft::print::rule)
        .collect::<Vec<_>>()
        .join("\n")
}

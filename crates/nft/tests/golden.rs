//! Golden outputs of the nftables backend, one per feature. Every golden
//! script must also load: each is checked with `nft -c -f` inside a
//! throwaway network namespace. `UPDATE_GOLDEN=1` rewrites the files.

mod common;

use common::NetNs;
use rampart_nft::testkit::{self, conformance, list, rule, RuleExt, SiteBuilder};
use rampart_nft::{compile, compile_with, Caps, Plan};
use rampart_resolve::ir::{AddrMatch, GuestKind, Platform, SetScope, Site};
use rampart_types::{Action, Direction, Family, LogLevel, Proto};
use std::path::PathBuf;

fn golden(name: &str, plan: &Plan) {
    let mut text = plan.script.clone();
    text.push_str("\n# sysctls:\n");
    for s in &plan.sysctls {
        text.push_str(&format!("# {} = {}\n", s.key, s.value));
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.nft"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    } else {
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("missing {path:?}; run with UPDATE_GOLDEN=1"));
        if want != text {
            let first = want.lines().zip(text.lines()).position(|(a, b)| a != b);
            panic!("{name}: output differs from {path:?} (first differing line {:?}); run with UPDATE_GOLDEN=1 and review", first.map(|x| x + 1));
        }
    }
    let ns = NetNs::new("gold");
    if let Err(e) = ns.nft_check(&plan.script) {
        panic!("{name}: nft -c rejects the script:\n{e}");
    }
}

fn ok(site: &Site, node: &str) -> Plan {
    match compile(site, node) {
        Ok(p) => p,
        Err(d) => panic!("compile failed:\n{}", d.render(&site.sources)),
    }
}

#[test]
fn host_basics() {
    let site = conformance::host_basics();
    let plan = ok(&site, "hv1");
    // No guests: the bridge table only marks bridged packets, and the
    // br_netfilter sysctls are not requested.
    assert!(plan.script.contains("table bridge rampart {"));
    assert!(plan.nics.is_empty());
    assert!(!plan.sysctls.iter().any(|s| s.key.contains("bridge-nf")));
    golden("host_basics", &plan);
}

#[test]
fn guest_basics() {
    let site = conformance::guest_basics();
    let plan = ok(&site, "hv1");
    // 101 has its firewall off: not dispatched.
    assert!(!plan.script.contains("tap101i0"));
    assert!(plan.script.contains("\"tap100i0\" : 0x00010000"));
    assert!(plan
        .sysctls
        .iter()
        .any(|s| s.key == "net.bridge.bridge-nf-call-iptables" && s.value == "1"));
    golden("guest_basics", &plan);
}

/// Every feature at once on one node with two bridges.
fn features_site() -> Site {
    let mut b = SiteBuilder::new();
    let c = b.file("firewall/cluster.fw", &"# cluster\n".repeat(60));
    let h = b.file("nodes/hv1/host.fw", &"# host\n".repeat(30));
    let g = b.file("firewall/100.fw", &"# guest\n".repeat(30));
    b.node(
        "hv1",
        &[
            ("vmbr0", &["192.0.2.10/24", "2001:db8:1::10/64"]),
            ("vmbr1", &[]),
        ],
        &["198.51.100.5", "2001:db8:9::/48"],
    );
    b.node(
        "hv2",
        &[("vmbr0", &["192.0.2.11/24", "2001:db8:1::11/64"])],
        &[],
    );
    b.link_peers();
    let bl = b.set(
        "blacklist",
        SetScope::Cluster,
        "dc-blacklist",
        &["203.0.113.0/24", "!203.0.113.7", "2001:db8:bad::/48"],
        b.at(c, 3),
    );
    let office = b.set(
        "office",
        SetScope::Cluster,
        "dc-office",
        &[
            "198.51.100.0/25",
            "198.51.100.200-198.51.100.210",
            "2001:db8:5::1",
        ],
        b.at(c, 6),
    );
    b.guest(
        100,
        GuestKind::Vm,
        "hv1",
        &[
            (
                "vmbr0",
                "0e:00:00:00:64:00",
                &["192.0.2.100/24", "2001:db8:1::100/64"],
            ),
            ("vmbr1", "0e:00:00:00:64:01", &["10.1.0.100/24"]),
        ],
        b.at(g, 1),
    );
    let ipf = b.set(
        "ipfilter-net0",
        SetScope::Guest(100),
        "g100-ipfilter-net0",
        &["192.0.2.100", "2001:db8:1::100"],
        b.at(g, 4),
    );
    b.guest(
        200,
        GuestKind::Ct,
        "hv1",
        &[("vmbr0", "0e:00:00:00:c8:00", &["192.0.2.200/24"])],
        b.at(g, 1),
    );
    b.guest(
        300,
        GuestKind::Vm,
        "hv2",
        &[("vmbr0", "0e:00:00:01:2c:00", &["192.0.2.30/24"])],
        b.at(g, 1),
    );
    {
        let n = b.node_mut("hv1");
        n.firewall.blacklist = Some(bl);
        let o = &mut n.firewall.options;
        o.tcpflags = true;
        o.tcp_flags_log_level = LogLevel::Info;
        o.protection_synflood = true;
        o.nf_conntrack_helpers = vec!["ftp".into(), "h323".into(), "tftp".into()];
        o.log_level_in = LogLevel::Warning;
        o.nf_conntrack_max = 131072;
        n.firewall.policy_forward = Action::Drop;
    }
    let rules = vec![
        rule(b.at(h, 5), Direction::In, Action::Accept)
            .tcp(8080)
            .iface("vmbr0")
            .log(LogLevel::Info),
        rule(b.at(h, 6), Direction::Out, Action::Reject).tcp(25),
        rule(b.at(c, 10), Direction::In, Action::Accept)
            .proto(Proto::Tcp)
            .dports(&[(80, 80), (443, 443), (8000, 8100)])
            .source(AddrMatch::Set(office)),
        rule(b.at(c, 11), Direction::In, Action::Accept)
            .proto(Proto::Other {
                number: 47,
                name: "gre".into(),
            })
            .source(list(&["192.0.2.0/24", "192.0.2.77", "192.0.3.0/24"])),
        rule(b.at(c, 12), Direction::In, Action::Accept).icmp(true, "echo-request", 128),
        rule(b.at(c, 13), Direction::In, Action::Drop)
            .proto(Proto::Udp)
            .family(Family::V6),
        rule(b.at(c, 14), Direction::Forward, Action::Accept)
            .tcp(22)
            .dest(list(&["10.1.0.0/16"])),
        rule(b.at(c, 15), Direction::In, Action::Accept)
            .proto(Proto::Other {
                number: 132,
                name: "sctp".into(),
            })
            .dports(&[(3868, 3868)]),
    ];
    b.node_mut("hv1").firewall.rules = rules;
    let gr = vec![
        rule(b.at(g, 10), Direction::In, Action::Accept)
            .tcp(22)
            .source(AddrMatch::Set(office))
            .log(LogLevel::Notice),
        rule(b.at(g, 11), Direction::In, Action::Reject)
            .udp(161)
            .iface("net1"),
        rule(b.at(g, 12), Direction::Out, Action::Drop).tcp(25),
        rule(b.at(g, 13), Direction::In, Action::Accept).icmp(false, "echo-request", 8),
    ];
    {
        let gg = b.guest_mut(100);
        gg.rules = gr;
        gg.nics[0].ipfilter = Some(ipf);
        gg.options.dhcp = true;
        gg.options.ndp = true;
        gg.options.radv = false;
        gg.options.ipfilter = true;
        gg.options.log_level_in = LogLevel::Info;
        gg.options.policy_out = Action::Reject;
    }
    {
        let gg = b.guest_mut(200);
        gg.options.macfilter = false;
        gg.options.radv = true;
        gg.options.policy_in = Action::Accept;
    }
    b.build()
}

#[test]
fn features() {
    let site = features_site();
    let plan = ok(&site, "hv1");
    let s = &plan.script;
    // Every rule carries an origin comment.
    for l in s.lines().filter(|l| {
        l.starts_with("\t\t") && !l.starts_with("\t\ttype") && !l.starts_with("\t\tcomment")
    }) {
        if l.contains("flags")
            || l.contains("elements")
            || l.starts_with("\t\t\t")
            || l.trim() == "}"
            || l.contains("size ")
            || l.contains("timeout ")
            || l.contains("l3proto")
        {
            continue;
        }
        assert!(l.contains("comment \""), "rule without comment: {l}");
    }
    assert!(s.contains("comment \"host.fw:5\""));
    assert!(s.contains("comment \"cluster.fw:10\""));
    // ipset with nomatch: the hole is carved.
    assert!(s.contains("203.0.113.0-203.0.113.6,") && s.contains("203.0.113.8-203.0.113.255,"));
    // The guest on hv2 is not on this node.
    assert!(!s.contains("tap300i0"));
    assert!(plan
        .sysctls
        .iter()
        .any(|x| x.key == "net.netfilter.nf_conntrack_max" && x.value == "131072"));
    golden("features", &plan);
    // The other node sees hv1 as a cluster peer.
    let p2 = ok(&site, "hv2");
    assert!(p2.script.contains("192.0.2.10,"));
    golden("features_hv2", &p2);
}

#[test]
fn host_firewall_off_keeps_guests_filtered() {
    let mut site = conformance::guest_basics();
    site.nodes[0].firewall.enabled = false;
    let plan = ok(&site, "hv1");
    assert!(plan.script.contains("auto:host firewall off"));
    assert!(plan.script.contains("nic-tap100i0-in"));
    golden("host_off", &plan);
}

#[test]
fn cluster_off_removes_tables() {
    let mut site = conformance::guest_basics();
    site.cluster.enable = false;
    let plan = ok(&site, "hv1");
    assert!(plan.ruleset.tables.is_empty());
    assert!(plan.script.contains("delete table inet rampart"));
    assert!(!plan.script.contains("flush ruleset"));
    golden("cluster_off", &plan);
}

#[test]
fn xcpng_platform() {
    let mut site = conformance::host_basics();
    site.nodes[0].platform = Platform::Xcpng;
    let plan = ok(&site, "hv1");
    assert!(plan.script.contains("tcp dport { 22, 443, 6640, 6653 }"));
    golden("xcpng", &plan);
}

#[test]
fn ips_without_nft_queue_is_an_error_naming_the_guest() {
    let mut site = conformance::guest_basics();
    site.guests[0].options.ips = true;
    let err = compile(&site, "hv1").unwrap_err();
    let text = err.render(&site.sources);
    assert!(text.contains("E0413"), "{text}");
    assert!(
        text.contains("ips: 1") && text.contains("guest 100"),
        "{text}"
    );
    assert!(text.contains("firewall/100.fw:1"), "{text}");
    // With queue support it compiles to a queue with bypass.
    site.guests[0].options.ips_queues = Some((0, 3));
    let plan = compile_with(
        &site,
        "hv1",
        &Caps {
            nft_queue: true,
            bridge_conntrack: false,
        },
    )
    .unwrap();
    assert!(plan.script.contains("queue num 0-3 fanout,bypass"));
}

#[test]
fn unknown_helper_is_an_error() {
    let mut site = conformance::host_basics();
    site.nodes[0].firewall.options.nf_conntrack_helpers = vec!["quake".into()];
    let err = compile(&site, "hv1").unwrap_err();
    assert!(err
        .render(&site.sources)
        .contains("unknown conntrack helper `quake`"));
}

#[test]
fn unknown_node_is_an_error() {
    let site = conformance::host_basics();
    let err = compile(&site, "nope").unwrap_err();
    assert_eq!(err.items[0].code, "E0410");
}

#[test]
fn output_is_deterministic() {
    let site = features_site();
    let a = ok(&site, "hv1").script;
    let b = ok(&site, "hv1").script;
    assert_eq!(a, b);
}

#[test]
fn probes_detect_this_kernel() {
    let ns = NetNs::new("probe");
    let queue = ns.nft_check(rampart_nft::caps::PROBE_QUEUE).is_ok();
    let brct = ns
        .nft_check(rampart_nft::caps::PROBE_BRIDGE_CONNTRACK)
        .is_ok();
    let caps = Caps::from_probe(queue, brct);
    // This project's kernel: no nft queue, no bridge conntrack.
    assert_eq!(caps, Caps::default());
    assert!(!rampart_nft::Datapath::bridge_conntrack_possible(&caps));
}

#[test]
fn a_large_blacklist_is_one_set_lookup() {
    let mut b = SiteBuilder::new();
    let c = b.file("firewall/cluster.fw", "[IPSET blacklist]\n");
    b.node("hv1", &[("vmbr0", &["192.0.2.10/24"])], &[]);
    let entries: Vec<String> = (0..20000u32)
        .map(|i| format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255))
        .collect();
    let refs: Vec<&str> = entries.iter().map(|s| s.as_str()).collect();
    let bl = b.set(
        "blacklist",
        SetScope::Cluster,
        "dc-blacklist",
        &refs,
        b.at(c, 1),
    );
    b.node_mut("hv1").firewall.blacklist = Some(bl);
    let site = b.build();
    let plan = ok(&site, "hv1");
    let lines_with_saddr = plan
        .script
        .lines()
        .filter(|l| l.contains("saddr @dc-blacklist"))
        .count();
    assert_eq!(lines_with_saddr, 2, "one rule per family");
    // Contiguous addresses merge into one interval.
    assert!(plan.script.contains("10.0.0.0-10.0.78.31"));
    let ns = NetNs::new("big");
    ns.nft_check(&plan.script).unwrap();
    let _ = testkit::guest_options();
}

/// One small golden per feature, on top of the shared guest-basics case.
#[test]
fn one_golden_per_feature() {
    type Tweak = fn(&mut Site);
    let features: &[(&str, Tweak)] = &[
        ("feature_blacklist", |s| {
            let origin = s.sets[0].origin.clone();
            s.sets.push(rampart_resolve::ir::IpSet {
                name: "blacklist".parse().unwrap(),
                scope: SetScope::Cluster,
                kernel_name: "dc-blacklist".parse().unwrap(),
                entries: vec![rampart_resolve::ir::SetEntry {
                    range: testkit::range("203.0.113.0/24"),
                    nomatch: false,
                    origin: origin.clone(),
                }],
                origin,
            });
            s.nodes[0].firewall.blacklist =
                Some(rampart_resolve::ir::SetId(s.sets.len() as u32 - 1));
        }),
        ("feature_ipfilter_macfilter", |s| {
            let origin = s.guests[0].origin.clone();
            s.sets.push(rampart_resolve::ir::IpSet {
                name: "ipfilter-net0".parse().unwrap(),
                scope: SetScope::Guest(100),
                kernel_name: "g100-ipfilter-net0".parse().unwrap(),
                entries: vec![rampart_resolve::ir::SetEntry {
                    range: testkit::range("192.0.2.100"),
                    nomatch: false,
                    origin: origin.clone(),
                }],
                origin,
            });
            s.guests[0].nics[0].ipfilter =
                Some(rampart_resolve::ir::SetId(s.sets.len() as u32 - 1));
            s.guests[0].options.ipfilter = true;
            s.guests[0].options.macfilter = true;
        }),
        ("feature_dhcp_ndp_radv", |s| {
            let o = &mut s.guests[0].options;
            o.dhcp = true;
            o.ndp = true;
            o.radv = true;
        }),
        ("feature_logging", |s| {
            s.guests[0].options.log_level_in = LogLevel::Info;
            s.guests[0].rules[0].log = LogLevel::Warning;
            s.nodes[0].firewall.options.log_level_in = LogLevel::Notice;
            s.cluster.log_ratelimit.rate = 10;
            s.cluster.log_ratelimit.unit = "minute".into();
        }),
        ("feature_logging_no_ratelimit", |s| {
            s.guests[0].options.log_level_out = LogLevel::Debug;
            s.cluster.log_ratelimit.enable = false;
        }),
        ("feature_smurfs_tcpflags_synflood", |s| {
            let o = &mut s.nodes[0].firewall.options;
            o.nosmurfs = true;
            o.smurf_log_level = LogLevel::Info;
            o.tcpflags = true;
            o.protection_synflood = true;
            o.protection_synflood_rate = 50;
            o.protection_synflood_burst = 100;
        }),
        ("feature_conntrack", |s| {
            let o = &mut s.nodes[0].firewall.options;
            o.nf_conntrack_allow_invalid = true;
            o.nf_conntrack_max = 1_000_000;
            o.nf_conntrack_tcp_timeout_established = 3600;
            o.nf_conntrack_helpers = vec![
                "ftp".into(),
                "sip".into(),
                "irc".into(),
                "pptp".into(),
                "sane".into(),
                "amanda".into(),
                "snmp".into(),
                "netbios-ns".into(),
            ];
        }),
        ("feature_forward", |s| {
            let origin = s.guests[0].rules[0].origin.clone();
            s.nodes[0].firewall.policy_forward = Action::Reject;
            s.nodes[0].firewall.rules.push(
                rule(origin, Direction::Forward, Action::Accept)
                    .tcp(22)
                    .iface("vmbr0"),
            );
        }),
        ("feature_reject_policies", |s| {
            s.nodes[0].firewall.policy_in = Action::Reject;
            s.nodes[0].firewall.policy_out = Action::Reject;
            s.guests[0].options.policy_in = Action::Reject;
        }),
        ("feature_linux_platform", |s| {
            s.nodes[0].platform = Platform::Linux;
        }),
    ];
    for (name, tweak) in features {
        let mut site = conformance::guest_basics();
        tweak(&mut site);
        let plan = ok(&site, "hv1");
        golden(name, &plan);
    }
}

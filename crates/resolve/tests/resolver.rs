//! Resolver behaviour: origins, scopes, families, standard sets, defaults.

mod common;
use common::*;
use rampart_resolve::ir::{AddrMatch, SetScope};
use rampart_types::{Action, Direction, Family, IpRange, LogLevel, Origin, Proto, Span};

fn range(s: &str) -> IpRange {
    match s.parse::<ipnet::IpNet>() {
        Ok(n) => IpRange::from_net(&n),
        Err(_) => IpRange::host(s.parse().unwrap()),
    }
}

#[test]
fn group_rules_carry_the_group_line_as_via() {
    let (site, d) = load(&[
        (
            "firewall/cluster.fw",
            "[OPTIONS]\nenable: 1\n\n[group web]\nIN HTTP(ACCEPT)\nIN HTTPS(ACCEPT) -log info\n",
        ),
        (
            "firewall/100.fw",
            "[OPTIONS]\nenable: 1\n[RULES]\nOUT DNS(ACCEPT)\nGROUP web -i net0\n",
        ),
    ]);
    assert_clean(&d);
    let g = site.guest(100).unwrap();
    // DNS has two rows (udp, tcp); web has two rules.
    assert_eq!(g.rules.len(), 4);
    let cluster = site
        .sources
        .files()
        .find(|(_, f)| f.path == "firewall/cluster.fw")
        .unwrap()
        .0;
    let guest = site
        .sources
        .files()
        .find(|(_, f)| f.path == "firewall/100.fw")
        .unwrap()
        .0;
    assert_eq!(
        g.rules[2].origin,
        Origin::Source {
            span: Span::new(cluster, 5, 1, 15),
            via: Some(Span::new(guest, 5, 1, 17))
        }
    );
    assert_eq!(
        g.rules[2].origin.render(&site.sources),
        "cluster.fw:5 via 100.fw:5"
    );
    assert_eq!(g.rules[3].log, LogLevel::Info);
    // -i on the GROUP line applies to the group's rules.
    assert_eq!(g.rules[2].iface.as_deref(), Some("net0"));
    assert_eq!(
        g.rules[0].origin,
        Origin::Source {
            span: Span::new(guest, 4, 1, 15),
            via: None
        }
    );
    assert_eq!(
        (g.rules[0].proto.clone(), g.rules[1].proto.clone()),
        (Some(Proto::Udp), Some(Proto::Tcp))
    );
}

#[test]
fn names_resolve_guest_first_then_cluster() {
    let (site, d) = load(&[
        ("firewall/cluster.fw", "[OPTIONS]\nenable: 0\n[ALIASES]\nsrv 10.1.1.1\nonlydc 10.3.3.3\n[IPSET ops]\n10.9.0.0/16\n"),
        (
            "firewall/100.fw",
            "[ALIASES]\nsrv 10.2.2.2\n[IPSET ops]\n10.8.0.0/16\n[RULES]\nIN ACCEPT -source srv\nIN ACCEPT -source dc/srv\nIN ACCEPT -source guest/srv\nIN ACCEPT -source onlydc\nIN ACCEPT -source +ops\nIN ACCEPT -source +dc/ops\n",
        ),
    ]);
    // `srv` and `guest/srv` are the same address: the lint says so (E0505); nothing else.
    assert!(d.items.iter().all(|x| x.code == "E0505"), "{:#?}", d.items);
    let r = &site.guest(100).unwrap().rules;
    assert_eq!(r[0].source, Some(AddrMatch::List(vec![range("10.2.2.2")])));
    assert_eq!(r[1].source, Some(AddrMatch::List(vec![range("10.1.1.1")])));
    assert_eq!(r[2].source, Some(AddrMatch::List(vec![range("10.2.2.2")])));
    assert_eq!(r[3].source, Some(AddrMatch::List(vec![range("10.3.3.3")])));
    let set = |m: &Option<AddrMatch>| match m {
        Some(AddrMatch::Set(id)) => site.set(*id).scope.clone(),
        o => panic!("{o:?}"),
    };
    assert_eq!(set(&r[4].source), SetScope::Guest(100));
    assert_eq!(set(&r[5].source), SetScope::Cluster);
}

#[test]
fn aliases_in_ipsets_resolve_by_scope() {
    let (site, d) = load(&[
        (
            "firewall/cluster.fw",
            "[OPTIONS]\nenable: 0\n[ALIASES]\nmon 10.1.1.1\n[IPSET watchers]\nmon\n!10.1.1.0/30\n",
        ),
        (
            "firewall/100.fw",
            "[ALIASES]\nmon 10.2.2.2\n[IPSET watchers]\nmon # the guest's own\n",
        ),
    ]);
    assert_clean(&d);
    let dc = site
        .sets
        .iter()
        .find(|s| s.kernel_name == "dc-watchers")
        .unwrap();
    assert_eq!(dc.entries.len(), 2);
    assert!(dc
        .entries
        .iter()
        .any(|e| e.nomatch && e.range == range("10.1.1.0/30")));
    // Longest prefix wins: the /32 entry beats the nomatch /30 for .1, not for .2.
    assert!(dc.contains(&"10.1.1.1".parse().unwrap()));
    assert!(!dc.contains(&"10.1.1.2".parse().unwrap()));
    let g = site
        .sets
        .iter()
        .find(|s| s.kernel_name == "g100-watchers")
        .unwrap();
    assert_eq!(g.entries[0].range, range("10.2.2.2"));
}

#[test]
fn macros_split_by_family() {
    let (site, d) = load(&[(
        "firewall/cluster.fw",
        "[OPTIONS]\nenable: 1\n[RULES]\nIN Ping(ACCEPT)\nIN trcrt(DROP)\nIN Ping(ACCEPT) -source 2001:db8::/32\n",
    )]);
    // the v6-only Ping after the plain Ping can never match: the lint says so (E0501); nothing else.
    assert!(d.items.iter().all(|x| x.code == "E0501"), "{:#?}", d.items);
    let r = &site.node("hv1").unwrap().firewall.rules;
    // Ping: v4 + v6; Trcrt: udp (both) + icmp v4 + icmpv6 v6; Ping with a v6 source: v6 only.
    assert_eq!(r.len(), 6);
    assert_eq!(
        (r[0].family, r[0].proto.clone()),
        (Some(Family::V4), Some(Proto::Icmp))
    );
    assert_eq!(
        (r[1].family, r[1].proto.clone()),
        (Some(Family::V6), Some(Proto::Icmpv6))
    );
    assert_eq!(r[1].icmp_type.as_ref().map(|t| t.ty), Some(128));
    assert_eq!(r[0].icmp_type.as_ref().map(|t| t.ty), Some(8));
    assert_eq!(
        (r[2].family, r[2].proto.clone(), r[2].action),
        (None, Some(Proto::Udp), Action::Drop)
    );
    assert_eq!(r[5].family, Some(Family::V6));
    assert!(r.iter().all(|x| x.dir == Direction::In));
}

#[test]
fn family_is_inferred_from_addresses_and_protocol() {
    let (site, d) = load(&[("firewall/cluster.fw", "[OPTIONS]\nenable: 0\n[RULES]\nIN ACCEPT -p tcp -dport 22\nIN ACCEPT -source 10.0.0.0/8\nOUT ACCEPT -dest 2001:db8::1\nIN ACCEPT -p icmpv6 -icmp-type nd-neighbor-solicit\n")]);
    assert_clean(&d);
    let r = &site.node("hv1").unwrap().firewall.rules;
    assert_eq!(
        r.iter().map(|x| x.family).collect::<Vec<_>>(),
        vec![None, Some(Family::V4), Some(Family::V6), Some(Family::V6)]
    );
    assert_eq!(
        r[3].icmp_type.as_ref().map(|t| (t.ty, t.name.as_str())),
        Some((135, "nd-neighbor-solicit"))
    );
}

#[test]
fn management_set_is_cluster_set_plus_derived_local_network() {
    let (site, d) = load(&[(
        "firewall/cluster.fw",
        "[OPTIONS]\nenable: 0\n[IPSET management]\n198.51.100.5\n",
    )]);
    assert_clean(&d);
    let n = site.node("hv1").unwrap();
    // As pve-firewall's local_network(): the one network holding the node's
    // address (its first address here), not every network of the node.
    assert_eq!(
        n.local_network,
        vec!["192.0.2.0/24".parse::<ipnet::IpNet>().unwrap()]
    );
    let m = site.set(n.firewall.management);
    let e: Vec<String> = m.entries.iter().map(|e| e.range.to_string()).collect();
    assert_eq!(e, vec!["192.0.2.0/24", "198.51.100.5"]);
    assert!(m.kernel_name.len() <= 31);
    assert_eq!(m.scope, SetScope::Node("hv1".parse().unwrap()));
    // Cluster peers: the other node's address.
    let p = site.set(n.firewall.cluster_peers);
    assert_eq!(
        p.entries
            .iter()
            .map(|e| e.range.to_string())
            .collect::<Vec<_>>(),
        vec!["192.0.2.11"]
    );
    assert!(n.firewall.blacklist.is_none());
    let p2 = site.set(site.node("hv2").unwrap().firewall.cluster_peers);
    assert_eq!(
        p2.entries
            .iter()
            .map(|e| e.range.to_string())
            .collect::<Vec<_>>(),
        vec!["192.0.2.10", "2001:db8:1::10"]
    );
}

#[test]
fn local_network_override_per_node() {
    let toml = SITE_TOML.replacen(
        "name = \"hv1\"",
        "name = \"hv1\"\nlocal_network = [\"10.10.0.0/16\"]",
        1,
    );
    let (site, d) = load(&[("site.toml", &toml)]);
    assert_clean(&d);
    assert_eq!(
        site.node("hv1").unwrap().local_network,
        vec!["10.10.0.0/16".parse::<ipnet::IpNet>().unwrap()]
    );
    assert_eq!(
        site.node("hv2").unwrap().local_network,
        vec!["192.0.2.0/24".parse::<ipnet::IpNet>().unwrap()]
    );
}

#[test]
fn host_rules_come_before_cluster_rules_and_disabled_rules_vanish() {
    let (site, d) = load(&[
        ("firewall/cluster.fw", "[OPTIONS]\nenable: 1\n[RULES]\nIN ACCEPT -p tcp -dport 1\n|IN ACCEPT -p tcp -dport 2\nFORWARD DROP -p tcp -dport 3\n"),
        ("nodes/hv1/host.fw", "[RULES]\nIN DROP -p tcp -dport 4\n"),
    ]);
    assert_clean(&d);
    let ports = |n: &str| {
        site.node(n)
            .unwrap()
            .firewall
            .rules
            .iter()
            .map(|r| r.dport[0].lo)
            .collect::<Vec<_>>()
    };
    assert_eq!(ports("hv1"), vec![4, 1, 3]);
    assert_eq!(ports("hv2"), vec![1, 3]);
    assert_eq!(
        site.node("hv1").unwrap().firewall.rules[2].dir,
        Direction::Forward
    );
}

#[test]
fn defaults_are_proxmox_defaults() {
    let (site, d) = load(&[("firewall/100.fw", "[OPTIONS]\nenable: 1\n")]);
    assert_clean(&d);
    assert!(
        !site.cluster.enable,
        "the firewall is off unless cluster.fw enables it"
    );
    assert_eq!(
        (
            site.cluster.policy_in,
            site.cluster.policy_out,
            site.cluster.policy_forward
        ),
        (Action::Drop, Action::Accept, Action::Accept)
    );
    assert_eq!(
        (
            site.cluster.log_ratelimit.rate,
            site.cluster.log_ratelimit.burst
        ),
        (1, 5)
    );
    let h = &site.node("hv1").unwrap().firewall;
    assert!(!h.enabled);
    assert!(h.options.enable && h.options.nosmurfs && !h.options.tcpflags);
    assert_eq!(h.options.nf_conntrack_max, 262_144);
    assert_eq!(h.options.nf_conntrack_tcp_timeout_established, 432_000);
    assert_eq!(h.options.protection_synflood_rate, 200);
    let g = site.guest(100).unwrap();
    assert!(
        g.options.enable && !g.enabled,
        "guest enable needs the cluster enable too"
    );
    assert!(g.options.macfilter && !g.options.ipfilter && !g.options.dhcp);
    assert_eq!(
        (g.options.policy_in, g.options.policy_out),
        (Action::Drop, Action::Accept)
    );
}

#[test]
fn all_options_parse() {
    let (site, d) = load(&[
        (
            "firewall/cluster.fw",
            "[OPTIONS]\nenable: 1\npolicy_in: ACCEPT\npolicy_out: REJECT\npolicy_forward: DROP\nlog_ratelimit: enable=1,rate=10/minute,burst=20\nebtables: 0\n",
        ),
        (
            "nodes/hv1/host.fw",
            "[OPTIONS]\nenable: 0\nlog_level_in: info\nlog_level_out: warning\nlog_level_forward: nolog\nnosmurfs: 0\nsmurf_log_level: debug\ntcpflags: 1\ntcp_flags_log_level: err\nndp: 1\nnf_conntrack_max: 100000\nnf_conntrack_tcp_timeout_established: 8000\nnf_conntrack_tcp_timeout_syn_recv: 30\nnf_conntrack_allow_invalid: 1\nnf_conntrack_helpers: ftp,tftp\nprotection_synflood: 1\nprotection_synflood_rate: 100\nprotection_synflood_burst: 500\nlog_nf_conntrack: 1\nnftables: 1\n",
        ),
        (
            "firewall/100.fw",
            "[OPTIONS]\nenable: 1\nmacfilter: 0\ndhcp: 1\nndp: 1\nradv: 1\nipfilter: 1\npolicy_in: ACCEPT\npolicy_out: DROP\nlog_level_in: alert\nlog_level_out: crit\nips: 1\nips_queues: 0:3\n",
        ),
    ]);
    // Read, and said at their lines to have no effect: ebtables, log_nf_conntrack, nftables.
    let lines: Vec<(String, u32)> = d
        .items
        .iter()
        .map(|x| (x.code.to_string(), x.span.map_or(0, |s| s.line)))
        .collect();
    assert_eq!(
        lines,
        vec![
            ("E0127".into(), 7),
            ("E0127".into(), 19),
            ("E0127".into(), 20)
        ],
        "{d:?}"
    );
    assert_eq!(site.cluster.policy_out, Action::Reject);
    assert_eq!(site.cluster.policy_forward, Action::Drop);
    assert_eq!(
        (
            site.cluster.log_ratelimit.rate,
            site.cluster.log_ratelimit.unit.as_str(),
            site.cluster.log_ratelimit.burst
        ),
        (10, "minute", 20)
    );
    assert!(!site.cluster.ebtables);
    let h = &site.node("hv1").unwrap().firewall;
    assert!(!h.enabled);
    assert_eq!(h.options.nf_conntrack_helpers, vec!["ftp", "tftp"]);
    assert_eq!(h.options.tcp_flags_log_level, LogLevel::Err);
    assert_eq!(h.options.nf_conntrack_tcp_timeout_syn_recv, 30);
    let g = site.guest(100).unwrap();
    assert_eq!(g.options.ips_queues, Some((0, 3)));
    assert!(g.options.radv && !g.options.macfilter);
    // ipfilter on without an explicit set: built from the NIC (its address and MAC link-local).
    let s = site.set(g.nics[0].ipfilter.unwrap());
    let e: Vec<String> = s.entries.iter().map(|e| e.range.to_string()).collect();
    assert_eq!(e, vec!["192.0.2.100", "fe80::c00:ff:fe00:6400"]);
}

#[test]
fn option_values_are_checked() {
    let d = cluster("[OPTIONS]\npolicy_forward: REJECT\nlog_ratelimit: rate=fast\n");
    assert_eq!(
        d.items.iter().filter(|x| x.code == "E0108").count(),
        2,
        "{d:?}"
    );
    let d = diags(&[(
        "nodes/hv1/host.fw",
        "[OPTIONS]\nnf_conntrack_tcp_timeout_syn_recv: 90\nnf_conntrack_helpers: ftp,gopher\nlog_level_in: loud\n",
    )]);
    assert_eq!(
        d.items.iter().filter(|x| x.code == "E0108").count(),
        3,
        "{d:?}"
    );
}

#[test]
fn proxmox_tree_without_site_toml() {
    let files = rampart_types::SiteFiles::new()
        .with("corosync.conf", "totem {\n  version: 2\n}\nnodelist {\n  node {\n    name: pve1\n    nodeid: 1\n    ring0_addr: 10.0.0.11\n  }\n  node {\n    name: pve2\n    nodeid: 2\n    ring0_addr: 10.0.0.12\n  }\n}\n")
        .with("firewall/cluster.fw", "[OPTIONS]\nenable: 1\n")
        .with("firewall/101.fw", "[OPTIONS]\nenable: 1\n[RULES]\nIN SSH(ACCEPT) -i net1\n")
        .with("nodes/pve1/host.fw", "[OPTIONS]\nenable: 1\n")
        .with("nodes/pve1/qemu-server/101.conf", "name: web\nnet0: virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=1\nnet1: e1000=BC:24:11:AA:BB:CD,bridge=vmbr1,tag=10\n\n[snap1]\nnet2: virtio=BC:24:11:AA:BB:CE,bridge=vmbr2\n")
        .with("nodes/pve2/lxc/200.conf", "hostname: db\nnet0: name=eth0,bridge=vmbr0,firewall=1,hwaddr=BC:24:11:00:00:01,ip=10.0.0.50/24,gw=10.0.0.1,ip6=2001:db8::50/64,type=veth\n");
    let (site, d) = rampart_resolve::load(&files);
    // Nothing gives the ring addresses a prefix: the local networks are the
    // addresses alone, which is said (E0507), once per node.
    assert!(
        d.items.len() == 2 && d.items.iter().all(|x| x.code == "E0507"),
        "{d:?}"
    );
    assert_eq!(
        site.nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>(),
        vec!["pve1", "pve2"]
    );
    assert_eq!(
        site.node("pve1").unwrap().addresses,
        vec!["10.0.0.11/32".parse::<ipnet::IpNet>().unwrap()]
    );
    let vm = site.guest(101).unwrap();
    assert_eq!(
        (vm.node.as_str(), vm.name.as_deref(), vm.nics.len()),
        ("pve1", Some("web"), 2)
    );
    assert_eq!(vm.nics[1].vlan, Some(10));
    assert!(!vm.nics[1].firewall);
    assert_eq!(vm.nics[0].ifname, "tap101i0");
    assert_eq!(vm.nics[0].mac, Some([0xbc, 0x24, 0x11, 0xaa, 0xbb, 0xcc]));
    let ct = site.guest(200).unwrap();
    assert_eq!(ct.nics[0].ifname, "veth200i0");
    assert_eq!(ct.nics[0].addresses.len(), 2);
    assert_eq!(ct.node, "pve2");
    // Bridges of a Proxmox tree come from the guests' NICs.
    let b: Vec<&str> = site
        .node("pve1")
        .unwrap()
        .bridges
        .iter()
        .map(|b| b.name.as_str())
        .collect();
    assert_eq!(b, vec!["vmbr0", "vmbr1"]);
    let peers = site.set(site.node("pve1").unwrap().firewall.cluster_peers);
    assert_eq!(peers.entries[0].range.to_string(), "10.0.0.12");
}

#[test]
fn guest_conf_problems_are_reported() {
    let files = rampart_types::SiteFiles::new().with(
        "nodes/pve1/qemu-server/101.conf",
        "net0: virtio=BC:24:11:AA:BB,bridge=vmbr0\nnet1: virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,tag=5000\n",
    );
    let (site, d) = rampart_resolve::load(&files);
    expect_at(
        &d,
        &site.sources,
        "E0124",
        "nodes/pve1/qemu-server/101.conf",
        1,
        14,
    );
    expect_at(
        &d,
        &site.sources,
        "E0124",
        "nodes/pve1/qemu-server/101.conf",
        2,
        49,
    );
}

#[test]
fn site_toml_accepts_the_full_shape_and_ignores_other_crates_keys() {
    let toml = r#"
[site]
name = "lab"
backend = "iptables"

[wireguard]
anything = { goes = 1 }

[lockdown]
x = 1
[[expect]]
y = 2
[egress]
[client]

[[node]]
name = "hv1"
backend = "nftables"
platform = "proxmox"
endpoint = "203.0.113.1:51820"
local_network = ["192.0.2.0/24"]
bridges = { vmbr0 = ["192.0.2.10/24"] }

[[node]]
name = "xen1"
platform = "xcpng"
addresses = ["192.0.2.20/24"]

[[guest]]
id = 100
kind = "ct"
name = "db"
node = "hv1"
nics = [{ name = "net0", bridge = "vmbr0", firewall = false, vlan = 20 }]
"#;
    let (site, d) = load(&[("site.toml", toml)]);
    assert_clean(&d);
    assert_eq!(site.name, "lab");
    use rampart_resolve::ir::{Backend, Platform};
    assert_eq!(
        (site.nodes[0].backend, site.nodes[0].platform),
        (Backend::Nftables, Platform::Proxmox)
    );
    assert_eq!(
        (site.nodes[1].backend, site.nodes[1].platform),
        (Backend::Iptables, Platform::Xcpng)
    );
    let g = site.guest(100).unwrap();
    assert_eq!(
        (g.name.as_deref(), g.nics[0].vlan, g.nics[0].firewall),
        (Some("db"), Some(20), false)
    );
}

#[test]
fn site_toml_errors_carry_line_and_column() {
    let d = expect(
        &[(
            "site.toml",
            "[[node]]\nname = \"hv1\"\nbackend = \"nft\"\n[[nodes]]\n",
        )],
        "E0123",
        "site.toml",
        3,
        11,
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `nftables`?"));
    let d = expect(
        &[(
            "site.toml",
            "[[node]]\nname = \"hv1\"\nbackend = \"nft\"\n[[nodes]]\n",
        )],
        "E0123",
        "site.toml",
        4,
        3,
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `node`?"));
    expect(
        &[("site.toml", "[[node]]\nname = hv1\n")],
        "E0123",
        "site.toml",
        2,
        8,
    );
}

#[test]
fn node_specific_cluster_rules_are_checked_on_every_node() {
    // hv1's local network is IPv6 (site.toml says so), hv2's the IPv4 subnet
    // of its address: `-p icmpv6 -source local_network` can never match on hv2.
    let toml = SITE_TOML.replacen(
        "name = \"hv1\"",
        "name = \"hv1\"\nlocal_network = [\"2001:db8:1::/64\"]",
        1,
    );
    let (site, d) = load(&[
        ("site.toml", &toml),
        (
            "firewall/cluster.fw",
            "[OPTIONS]\nenable: 0\n[RULES]\nIN ACCEPT -p icmpv6 -source local_network\n",
        ),
    ]);
    let x = expect_at(&d, &site.sources, "E0204", "firewall/cluster.fw", 4, 29);
    assert!(x.message.contains("ipv6"), "{}", x.message);
    assert_eq!(site.node("hv1").unwrap().firewall.rules.len(), 1);
    assert_eq!(site.node("hv2").unwrap().firewall.rules.len(), 0);
}

#[test]
fn derived_local_network_is_the_subnet_of_the_nodes_address() {
    let (site, d) = load(&[(
        "firewall/cluster.fw",
        "[OPTIONS]\nenable: 0\n[RULES]\nIN ACCEPT -p tcp -dport 22 -source local_network\n",
    )]);
    assert_clean(&d);
    // hv1 also has an IPv6 network; pve-firewall's local_network is the one
    // network of the node's address (192.0.2.10), so is rampart's.
    let r = &site.node("hv1").unwrap().firewall.rules;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].family, Some(Family::V4));
    assert_eq!(
        r[0].source,
        Some(AddrMatch::List(vec![range("192.0.2.0/24")]))
    );
    assert_eq!(site.node("hv2").unwrap().firewall.rules.len(), 1);
    // A site.toml `local_network` may still name several networks.
    let toml = SITE_TOML.replacen(
        "name = \"hv1\"",
        "name = \"hv1\"\nlocal_network = [\"192.0.2.0/24\", \"2001:db8:1::/64\"]",
        1,
    );
    let (site, d) = load(&[
        ("site.toml", &toml),
        (
            "firewall/cluster.fw",
            "[OPTIONS]\nenable: 0\n[RULES]\nIN ACCEPT -p tcp -dport 22 -source local_network\n",
        ),
    ]);
    assert_clean(&d);
    let r = &site.node("hv1").unwrap().firewall.rules;
    assert_eq!(
        r.iter().map(|x| x.family).collect::<Vec<_>>(),
        vec![Some(Family::V4), Some(Family::V6)]
    );
}

#[test]
fn management_in_rules_is_the_nodes_set_unless_the_guest_has_its_own() {
    let (site, d) = load(&[
        (
            "firewall/cluster.fw",
            "[OPTIONS]\nenable: 0\n[IPSET management]\n198.51.100.5\n",
        ),
        (
            "firewall/100.fw",
            "[RULES]\nIN SSH(ACCEPT) -source +management\nIN SSH(ACCEPT) -source +dc/management\n",
        ),
    ]);
    // the two lines resolve to the same set: the lint says so (E0505); nothing else.
    assert!(d.items.iter().all(|x| x.code == "E0505"), "{:#?}", d.items);
    let g = site.guest(100).unwrap();
    let node_mgmt = site.node("hv1").unwrap().firewall.management;
    assert_eq!(g.rules[0].source, Some(AddrMatch::Set(node_mgmt)));
    assert_eq!(g.rules[1].source, Some(AddrMatch::Set(node_mgmt)));
    let (site, d) = load(&[
        (
            "firewall/cluster.fw",
            "[OPTIONS]\nenable: 0\n[IPSET management]\n198.51.100.5\n",
        ),
        (
            "firewall/100.fw",
            "[IPSET management]\n10.9.9.9\n[RULES]\nIN SSH(ACCEPT) -source +management\n",
        ),
    ]);
    assert_clean(&d);
    match &site.guest(100).unwrap().rules[0].source {
        Some(AddrMatch::Set(id)) => assert_eq!(site.set(*id).kernel_name, "g100-management"),
        o => panic!("{o:?}"),
    }
}

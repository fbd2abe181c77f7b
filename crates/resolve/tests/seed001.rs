//! Every example of the Proxmox firewall document (shared/seeds/001) parses
//! and resolves to what the document says it means.

mod common;
use common::*;
use rampart_resolve::ir::AddrMatch;
use rampart_types::{Action, Direction, Family, Proto};

const CLUSTER_FW: &str = "[OPTIONS]
# enable firewall (cluster wide setting, default is disabled)
enable: 1

[ALIASES]
local_network 1.2.3.4 # use the single ip address
myserveralias 192.168.2.50

[IPSET management] 
192.168.2.10

[IPSET blacklist] 
77.240.159.182
213.87.123.0/24

[IPSET mynetgroup]
192.168.2.0/24

[RULES]
IN HTTP(ACCEPT) -source +management

[group webserver]
IN  ACCEPT -p tcp -dport 80
IN  ACCEPT -p tcp -dport 443
";

const GUEST_FW: &str = "[OPTIONS]
enable: 1
ips: 1
ips_queues: 0

[IPSET ipfilter-net0] # only allow specified IPs on net0
192.168.2.10

[IPSET ipfilter-eth0] # only allow specified IPs on veth eth0
192.168.2.10

[RULES]

#TYPE ACTION [OPTIONS]
#TYPE MACRO(ACTION) [OPTIONS]

# -i      <INTERFACE>
# -source <SOURCE>
# -dest   <DEST>
# -p      <PROTOCOL>
# -dport  <DESTINATION_PORT>
# -sport  <SOURCE_PORT>

IN SSH(ACCEPT) -i net0
IN SSH(ACCEPT) -i net0 # a comment
IN SSH(ACCEPT) -i net0 -source 192.168.2.192  # only allow SSH from 192.168.2.192
IN SSH(ACCEPT) -i net0 -source 10.0.0.1-10.0.0.10 # accept SSH for ip range
IN SSH(ACCEPT) -i net0 -source 10.0.0.1,10.0.0.2,10.0.0.3 #accept ssh for ip list
IN SSH(ACCEPT) -i net0 -source +mynetgroup   # accept ssh for ipset mynetgroup
IN SSH(ACCEPT) -i net0 -source myserveralias   #accept ssh for alias myserveralias

|IN SSH(ACCEPT) -i net0 # disabled rule
GROUP webserver
";

fn load_seed() -> (rampart_resolve::ir::Site, rampart_types::Diagnostics) {
    load(&[
        ("firewall/cluster.fw", CLUSTER_FW),
        ("firewall/100.fw", GUEST_FW),
    ])
}

#[test]
fn every_example_parses_and_resolves_clean() {
    let (_, d) = load_seed();
    // The document's examples, side by side, repeat and shadow each
    // other: only the policy lint (E0501/E0505) may speak.
    assert!(
        d.items
            .iter()
            .all(|x| x.code == "E0501" || x.code == "E0505"),
        "{:#?}",
        d.items
    );
}

#[test]
fn the_examples_mean_what_the_document_says() {
    let (site, _) = load_seed();
    let g = site.guest(100).unwrap();
    assert!(g.enabled);
    assert!(g.options.ips);
    assert_eq!(g.options.ips_queues, Some((0, 0)));
    // 7 SSH rules (the disabled one is gone) + 2 from the group.
    assert_eq!(g.rules.len(), 9);
    for r in &g.rules[..7] {
        assert_eq!(
            (r.dir, r.action, r.proto.clone()),
            (Direction::In, Action::Accept, Some(Proto::Tcp))
        );
        assert_eq!(r.dport, vec![rampart_types::PortRange::single(22)]);
        assert_eq!(r.iface.as_deref(), Some("net0"));
    }
    // range, list, ipset, alias
    assert_eq!(
        g.rules[3].source.as_ref().unwrap(),
        &AddrMatch::List(vec![rampart_types::IpRange::new(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.10".parse().unwrap()
        )])
    );
    match g.rules[4].source.as_ref().unwrap() {
        AddrMatch::List(l) => assert_eq!(l.len(), 3),
        o => panic!("{o:?}"),
    }
    match g.rules[5].source.as_ref().unwrap() {
        AddrMatch::Set(id) => assert_eq!(site.set(*id).kernel_name, "dc-mynetgroup"),
        o => panic!("{o:?}"),
    }
    assert_eq!(g.rules[6].family, Some(Family::V4));
    // The explicit ipfilter set is the NIC's.
    let nic = &g.nics[0];
    assert_eq!(
        site.set(nic.ipfilter.unwrap()).kernel_name,
        "g100-ipfilter-net0"
    );
    // local_network overridden by the alias: management = 192.168.2.10 + 1.2.3.4.
    let n = site.node("hv1").unwrap();
    let m = site.set(n.firewall.management);
    let e: Vec<String> = m.entries.iter().map(|e| e.range.to_string()).collect();
    assert_eq!(e, vec!["1.2.3.4", "192.168.2.10"]);
    assert_eq!(
        n.local_network,
        vec!["1.2.3.4/32".parse::<ipnet::IpNet>().unwrap()]
    );
    // Blacklist is known to every node.
    assert_eq!(site.set(n.firewall.blacklist.unwrap()).entries.len(), 2);
    // Host rule: HTTP from +management, which is the node's management set.
    assert_eq!(n.firewall.rules.len(), 1);
    assert_eq!(
        n.firewall.rules[0].source,
        Some(AddrMatch::Set(n.firewall.management))
    );
}

#[test]
fn host_bits_in_the_documents_management_example_are_warned() {
    // The document lists `192.168.2.10/24`: a host address with a prefix.
    let (site, d) = load(&[(
        "firewall/cluster.fw",
        "[OPTIONS]\nenable: 0\n[IPSET management] \n192.168.2.10\n192.168.2.10/24\n",
    )]);
    let w = expect_at(&d, &site.sources, "E0202", "firewall/cluster.fw", 5, 1);
    assert!(w.message.contains("192.168.2.0/24"));
    assert!(!d.has_errors());
}

/// Read the document itself (when the shared directory is beside the repo)
/// and check every rule line in it, so a transcription slip above cannot hide one.
#[test]
fn every_rule_line_of_the_document_itself_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/seeds/001_e9d2532afc33105d.txt");
    let Ok(doc) = std::fs::read_to_string(&path) else {
        return;
    };
    let rules: Vec<&str> = doc
        .lines()
        .map(|l| l.trim())
        .filter(|l| {
            let w = l
                .trim_start_matches('|')
                .split_whitespace()
                .next()
                .unwrap_or("");
            matches!(w, "IN" | "OUT" | "GROUP")
        })
        .collect();
    assert!(rules.len() >= 12, "found only {rules:?}");
    let guest = format!("[RULES]\n{}\n", rules.join("\n"));
    let (_, d) = load(&[
        ("firewall/cluster.fw", CLUSTER_FW),
        ("firewall/100.fw", &guest),
    ]);
    // The document's examples, side by side, repeat and shadow each
    // other: only the policy lint (E0501/E0505) may speak.
    assert!(
        d.items
            .iter()
            .all(|x| x.code == "E0501" || x.code == "E0505"),
        "{:#?}",
        d.items
    );
}

//! `rampart_plan::build`: the plan of a node has everything apply carries
//! out (listen-port rule, WireGuard interfaces, routes, forwarding) and no
//! key material, for both backends.

use rampart_plan::{build, Backend, PlanOpts, RefusalKind};
use rampart_types::SiteFiles;

const KEYS: [&str; 4] = [
    "SA3KjzlBe4Eie688sw8DwPIXZUMt4Q/pnGcSTLftmX0=",
    "y0u4RJIqkgxzXLc4fmHwHW+M6y1PgDUhvkEnEnBd/1U=",
    "wkgab/3lR1l8Igy/kSc0J9ER5IVR75grSLUgTz5f9E4=",
    "DBEOJ8OPG1L2z7hcNCdEJru+styP75ws13RGLYzfHFg=",
];

/// A hub: gw1 is the gateway and routes the LAN 10.20.0.0/24 behind it;
/// n2 is a member; n3 runs iptables.
fn site(extra_node3: &str) -> SiteFiles {
    let toml = format!(
        r#"[[node]]
name = "gw1"
endpoint = "192.0.2.1"
addresses = ["192.0.2.1/24"]

[[node]]
name = "n2"
endpoint = "192.0.2.2"
addresses = ["192.0.2.2/24"]

[[node]]
name = "n3"
endpoint = "192.0.2.3"
addresses = ["192.0.2.3/24"]
{extra_node3}

[[wireguard]]
name = "ops"
interface = "wg7"
pool = ["10.7.0.0/24"]
listen_port = 51871
topology = "hub"
gateways = ["gw1"]

[[wireguard.member]]
name = "gw1"
public_key = "{}"
routes = ["10.20.0.0/24"]

[[wireguard.member]]
name = "n2"
public_key = "{}"

[[wireguard.member]]
name = "n3"
public_key = "{}"
"#,
        KEYS[0], KEYS[1], KEYS[2]
    );
    SiteFiles::new().with("site.toml", toml).with(
        "firewall/cluster.fw",
        "[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[IPSET management]\n192.0.2.0/24\n",
    )
}

fn opts(key_dir: &str) -> PlanOpts {
    PlanOpts {
        key_dir: key_dir.into(),
        ..PlanOpts::default()
    }
}

#[test]
fn nftables_plan_has_the_listen_rule_interfaces_routes_and_forwarding() {
    let files = site("");
    let np = build(&files, "n2", &opts("/var/lib/test-keys")).unwrap();
    let p = &np.plan;
    assert_eq!(p.backend, Backend::Nftables);
    // The listen port, open to the gateway's endpoint only.
    assert!(
        p.ruleset
            .contains("ip saddr 192.0.2.1 udp dport 51871 return comment \"site.toml:"),
        "{}",
        p.ruleset
    );
    // The interface: key store path under key_dir, never a key.
    assert_eq!(p.wireguard.len(), 1);
    let w = &p.wireguard[0];
    assert_eq!(w.name, "wg7");
    assert_eq!(w.private_key_file, "/var/lib/test-keys/ops.key");
    assert_eq!(w.listen_port, Some(51871));
    assert_eq!(w.peers.len(), 1);
    assert_eq!(w.peers[0].name, "gw1");
    assert_eq!(w.peers[0].public_key, KEYS[0]);
    assert_eq!(w.peers[0].endpoint.as_deref(), Some("192.0.2.1:51871"));
    assert!(w.peers[0].allowed_ips.contains(&"10.20.0.0/24".to_string()));
    // The LAN behind the gateway is an explicit route (Table = off).
    assert!(
        p.routes
            .iter()
            .any(|r| r.dest == "10.20.0.0/24" && r.dev == "wg7" && r.table.is_none()),
        "{:?}",
        p.routes
    );
    // A member does not forward.
    assert!(!p.sysctls.contains_key("net.ipv4.ip_forward"));
    // The files compile prints.
    let names: Vec<&str> = np.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["ruleset.nft", "sysctl.conf", "wg7.conf", "wg7.routes"]
    );
    let conf = &np.files[2].1;
    assert!(conf.contains("Table = off"));
    assert!(conf.contains("/var/lib/test-keys/ops.key"));
    assert!(np.files[3]
        .1
        .contains("ip route replace 10.20.0.0/24 dev wg7"));
    // No private material anywhere in the plan.
    let json = format!("{p:?}");
    assert!(!json.to_lowercase().contains("privatekey ="), "{json}");
}

#[test]
fn the_gateway_forwards() {
    let np = build(&site(""), "gw1", &PlanOpts::default()).unwrap();
    let p = &np.plan;
    assert_eq!(
        p.sysctls.get("net.ipv4.ip_forward").map(String::as_str),
        Some("1")
    );
    assert!(
        p.ruleset.contains("iifname \"wg7\" oifname \"wg7\" return"),
        "{}",
        p.ruleset
    );
    assert_eq!(p.wireguard[0].peers.len(), 2);
    assert_eq!(p.wireguard[0].private_key_file, "/etc/rampart/wg/ops.key");
    let sysctl = &np.files.iter().find(|(n, _)| n == "sysctl.conf").unwrap().1;
    assert!(sysctl
        .contains("# WireGuard: forwarding between the peers of wg7\nnet.ipv4.ip_forward = 1"));
}

#[test]
fn a_node_that_asks_for_iptables_gets_iptables_with_the_listen_rule() {
    let files = site("backend = \"iptables\"");
    let np = build(&files, "n3", &PlanOpts::default()).unwrap();
    let p = &np.plan;
    assert_eq!(p.backend, Backend::Iptables);
    assert!(
        p.ruleset
            .contains("-A RAMPART-HOST-IN -s 192.0.2.1/32 -p udp -m udp --dport 51871"),
        "{}",
        p.ruleset
    );
    assert!(p.ruleset6.is_some() && p.ipsets.is_some());
    let names: Vec<&str> = np.files.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.starts_with(&["iptables.rules", "ip6tables.rules", "ipset.conf"]),
        "{names:?}"
    );
    assert_eq!(p.wireguard.len(), 1);
    // The other nodes stay on nftables; --backend overrides either way.
    assert_eq!(
        build(&files, "n2", &PlanOpts::default())
            .unwrap()
            .plan
            .backend,
        Backend::Nftables
    );
    let forced = PlanOpts {
        backend: Some(Backend::Nftables),
        ..PlanOpts::default()
    };
    assert_eq!(
        build(&files, "n3", &forced).unwrap().plan.backend,
        Backend::Nftables
    );
}

#[test]
fn same_site_same_hash_and_profiles_add_nothing_yet() {
    let a = build(&site(""), "n2", &PlanOpts::default()).unwrap();
    let b = build(&site(""), "n2", &PlanOpts::default()).unwrap();
    assert_eq!(a.plan.content_hash(), b.plan.content_hash());
    assert!(a.plan.rules.is_empty());
}

#[test]
fn refusals_name_their_kind() {
    let r = build(&site(""), "nope", &PlanOpts::default()).unwrap_err();
    assert_eq!(r.kind, RefusalKind::NoNode);
    // A WireGuard error (address outside the pool) refuses every node.
    let mut bad = site("");
    let t = String::from_utf8(bad.get("site.toml").unwrap().to_vec()).unwrap();
    let t = t.replace(
        "name = \"n2\"\npublic_key",
        "name = \"n2\"\naddress = [\"10.9.9.9\"]\npublic_key",
    );
    bad = bad.with("site.toml", t);
    let r = build(&bad, "gw1", &PlanOpts::default()).unwrap_err();
    assert_eq!(r.kind, RefusalKind::Invalid);
    assert!(r.rendered.contains("site.toml:"), "{}", r.rendered);
    // The guard: a node whose management set cannot reach SSH.
    // The management network is blacklisted.
    let lock = site("").with(
        "firewall/cluster.fw",
        "[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[IPSET management]\n192.0.2.0/24\n\n[IPSET blacklist]\n192.0.2.0/24\n",
    );
    let r = build(&lock, "n2", &PlanOpts::default()).unwrap_err();
    assert_eq!(r.kind, RefusalKind::Guard, "{}", r.rendered);
    let forced = PlanOpts {
        force: true,
        ..PlanOpts::default()
    };
    assert!(build(&lock, "n2", &forced).unwrap().forced);
}

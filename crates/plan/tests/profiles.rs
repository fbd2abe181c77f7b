//! The profiles through `rampart_plan::build`: the labs of documents 000
//! and 004 build, and a lockdown whose VPN cannot reach the host is refused
//! with E0503 naming the line (the lock-out check, bad-inputs 29).

use rampart_plan::{build, Backend, PlanOpts, RefusalKind};
use rampart_types::SiteFiles;
use std::path::Path;

fn read_dir(root: &Path) -> SiteFiles {
    fn walk(root: &Path, dir: &Path, files: &mut SiteFiles) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, files);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                files.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut f = SiteFiles::new();
    walk(root, root, &mut f);
    f
}

fn lab(name: &str) -> SiteFiles {
    read_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../labs")
            .join(name),
    )
}

fn with_site_toml(mut files: SiteFiles, f: impl Fn(&str) -> String) -> SiteFiles {
    let text = String::from_utf8(files.get("site.toml").unwrap().to_vec()).unwrap();
    files.insert("site.toml", f(&text));
    files
}

#[test]
fn doc000_builds_an_iptables_lockdown_for_xcp1() {
    let p = build(
        &lab("xcpng-opnsense-wireguard"),
        "xcp1",
        &PlanOpts::default(),
    )
    .unwrap_or_else(|r| panic!("{}\n{}", r.message, r.rendered));
    assert_eq!(p.plan.backend, Backend::Iptables);
    assert!(p
        .plan
        .ruleset
        .contains("-A RAMPART-LOCKDOWN -i xenbr0 -s 10.8.0.0/24 -p tcp -m multiport --dports 22,443,6640,6653,21064 -m comment --comment \"site.toml:76\" -j ACCEPT"));
    assert!(p.plan.ruleset.starts_with("# rampart plan") || p.plan.ruleset.contains("*filter"));
    // The nftables rendering of the same node, for hosts that have it.
    let opts = PlanOpts {
        backend: Some(Backend::Nftables),
        ..PlanOpts::default()
    };
    let p = build(&lab("xcpng-opnsense-wireguard"), "xcp1", &opts).unwrap();
    assert!(p
        .plan
        .ruleset
        .contains("jump lockdown-in comment \"site.toml:74\""));
}

#[test]
fn doc004_builds_policy_routing_and_masquerade() {
    let files = lab("kvm-transparent-egress");
    let k = build(&files, "kvm1", &PlanOpts::default())
        .unwrap_or_else(|r| panic!("{}\n{}", r.message, r.rendered));
    assert_eq!(k.plan.rules.len(), 1);
    assert_eq!(k.plan.rules[0].from, "192.168.100.0/24");
    assert_eq!(k.plan.rules[0].table, 42);
    assert!(k
        .plan
        .routes
        .iter()
        .any(|r| r.dest == "0.0.0.0/0" && r.dev == "wg1" && r.table == Some(42)));
    assert_eq!(
        k.plan
            .sysctls
            .get("net.ipv4.ip_forward")
            .map(String::as_str),
        Some("1")
    );
    assert!(k.plan.ruleset.contains("chain egress-in"));
    let g = build(&files, "cloudgw", &PlanOpts::default()).unwrap();
    assert!(g
        .plan
        .ruleset
        .contains("masquerade comment \"site.toml:60\""));
}

#[test]
fn e0503_client_allowed_ips_miss_the_management_address() {
    // The gateway no longer routes xcp1's /32: the laptop's tunnel would
    // never carry the admin to the host.
    let files = with_site_toml(lab("xcpng-opnsense-wireguard"), |t| {
        t.replace(
            "routes = [\"198.51.100.10/32\", \"10.0.0.0/24\"]",
            "routes = [\"10.0.0.0/24\"]",
        )
    });
    let r = build(&files, "xcp1", &PlanOpts::default()).unwrap_err();
    assert_eq!(r.kind, RefusalKind::Compile);
    assert!(r.rendered.contains("E0503"), "{}", r.rendered);
    assert!(r.rendered.contains("admin-laptop"), "{}", r.rendered);
    assert!(r.rendered.contains("198.51.100.10/32"), "{}", r.rendered);
}

#[test]
fn e0503_wireguard_port_closed_on_the_gateway_guest() {
    // OPNsense's WAN rule no longer admits the WireGuard port.
    let mut files = lab("xcpng-opnsense-wireguard");
    files.insert(
        "firewall/100.fw",
        "[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[RULES]\nIN ACCEPT -i net0 -p tcp -dport 443\n",
    );
    let r = build(&files, "xcp1", &PlanOpts::default()).unwrap_err();
    assert_eq!(r.kind, RefusalKind::Compile);
    assert!(r.rendered.contains("E0503"), "{}", r.rendered);
    assert!(r.rendered.contains("udp/51820"), "{}", r.rendered);
    // The diagnostic points at the lockdown's `vpn` line.
    assert!(r.rendered.contains("site.toml:76"), "{}", r.rendered);
}

#[test]
fn e0503_blacklist_blocks_the_vpn_path() {
    // The node itself is a VPN member; a blacklist entry covers the pool.
    let toml = r#"[[node]]
name = "hv1"
endpoint = "192.0.2.10"
bridges = { vmbr0 = ["192.0.2.10/24"] }

[[wireguard]]
name = "mgmt"
interface = "wg-mgmt"
pool = ["10.9.0.0/24"]
listen_port = 51820
topology = "hub"
gateways = ["hv1"]

[[wireguard.member]]
name = "hv1"
public_key = "SA3KjzlBe4Eie688sw8DwPIXZUMt4Q/pnGcSTLftmX0="

[[client]]
network = "mgmt"
name = "laptop"
public_key = "y0u4RJIqkgxzXLc4fmHwHW+M6y1PgDUhvkEnEnBd/1U="
address = ["10.9.0.2"]

[[lockdown]]
node = "hv1"
vpn = "mgmt"
"#;
    let ok = SiteFiles::new().with("site.toml", toml).with(
        "firewall/cluster.fw",
        "[OPTIONS]\nenable: 1\npolicy_in: DROP\n",
    );
    let p = build(&ok, "hv1", &PlanOpts::default())
        .unwrap_or_else(|r| panic!("{}\n{}", r.message, r.rendered));
    assert!(p.plan.ruleset.contains(
        "iifname \"wg-mgmt\" ip saddr 10.9.0.0/24 tcp dport { 22, 3128, 5900-5999, 8006 } accept"
    ));
    let bad = ok.with(
        "firewall/cluster.fw",
        "[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[IPSET blacklist]\n10.9.0.0/24\n",
    );
    let r = build(&bad, "hv1", &PlanOpts::default()).unwrap_err();
    assert!(r.rendered.contains("E0503"), "{}", r.rendered);
    assert!(r.rendered.contains("blacklist"), "{}", r.rendered);
}

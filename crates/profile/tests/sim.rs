//! The profiles of the two labs, through the simulator: what the source
//! documents say must and must not get through, with the deciding line.

mod common;

use rampart_sim::{simulate_plan, Packet};
use rampart_types::{Action, Proto};

fn verdict(s: &common::Site, plan: &rampart_nft::Plan, p: &Packet) -> (Action, String) {
    let t = simulate_plan(&s.site, plan, p).unwrap_or_else(|e| panic!("{e}: {p:?}"));
    (
        t.verdict,
        t.decided_by.map(|h| h.origin).unwrap_or_default(),
    )
}

#[test]
fn doc000_management_only_through_the_vpn() {
    let s = common::load(common::lab("xcpng-opnsense-wireguard"));
    assert!(
        !s.profiles.diags.has_errors(),
        "{}",
        s.profiles.diags.render(&s.site.sources)
    );
    let plan = s.nft("xcp1");
    // Through the VPN: OPNsense forwards the laptop's packets (10.8.0.2)
    // onto xenbr0.
    for port in [22, 443, 6653, 6640, 21064] {
        let p = Packet::tcp("vm100", "host", port).source("10.8.0.2");
        assert_eq!(
            verdict(&s, &plan, &p).0,
            Action::Accept,
            "tcp/{port} via the VPN"
        );
    }
    let p = Packet::udp("vm100", "host", 5405).source("10.8.0.2");
    assert_eq!(verdict(&s, &plan, &p).0, Action::Accept);
    // From OPNsense's own WAN address (it NATs the tunnel): accepted.
    let p = Packet::tcp("vm100", "host", 22);
    assert_eq!(
        verdict(&s, &plan, &p),
        (Action::Accept, "site.toml:77".into())
    );
    // From the internet: refused, by the lockdown's line.
    for port in [22, 443, 6653] {
        let p = Packet::tcp("outside", "host", port).source("203.0.113.9");
        assert_eq!(
            verdict(&s, &plan, &p),
            (Action::Reject, "site.toml:74".into()),
            "tcp/{port} from the internet"
        );
    }
    // Everything else to the host too (not only management).
    let p = Packet::tcp("outside", "host", 8080).source("203.0.113.9");
    assert_eq!(
        verdict(&s, &plan, &p),
        (Action::Reject, "site.toml:74".into())
    );
    // A VPN source that does not come from the gateway's bridge side... the
    // internal VM (xenbr1) cannot manage the host either.
    let p = Packet::tcp("vm101", "host", 22);
    assert_ne!(verdict(&s, &plan, &p).0, Action::Accept);
    // Replies to the host's own connections still come back.
    let p = Packet::tcp("outside", "host", 22)
        .source("203.0.113.9")
        .established();
    assert_eq!(verdict(&s, &plan, &p).0, Action::Accept);
    // The gateway's WAN admits only the WireGuard port.
    let p = Packet::udp("outside", "vm100", 51820).source("203.0.113.9");
    assert_eq!(verdict(&s, &plan, &p).0, Action::Accept);
    for port in [22, 443] {
        let p = Packet::tcp("outside", "vm100", port).source("203.0.113.9");
        assert_eq!(
            verdict(&s, &plan, &p).0,
            Action::Drop,
            "tcp/{port} to OPNsense"
        );
    }
    // The compiled script names the lockdown's line.
    assert!(
        plan.script
            .contains("jump lockdown-in comment \"site.toml:74\""),
        "{}",
        plan.script
    );
}

#[test]
fn doc004_guests_leave_through_the_tunnel_and_nobody_reaches_the_host() {
    let s = common::load(common::lab("kvm-transparent-egress"));
    assert!(
        !s.profiles.diags.has_errors(),
        "{}",
        s.profiles.diags.render(&s.site.sources)
    );
    let kvm = s.nft("kvm1");
    // The guest's traffic to the internet is forwarded into the tunnel.
    let p = Packet::tcp("vm139", "outside", 80)
        .dest("198.18.0.80")
        .out("wg1");
    assert_eq!(verdict(&s, &kvm, &p).0, Action::Accept);
    // Replies come back.
    let p = Packet::tcp("outside", "vm139", 80)
        .source("198.18.0.80")
        .via("wg1")
        .established();
    assert_eq!(verdict(&s, &kvm, &p).0, Action::Accept);
    // The guest cannot reach the host, on any address.
    for dest in ["192.168.100.1", "192.0.2.20", "10.0.3.2"] {
        let p = Packet::tcp("vm139", "host", 22).dest(dest);
        assert_eq!(
            verdict(&s, &kvm, &p),
            (Action::Drop, "site.toml:62".into()),
            "{dest}"
        );
    }
    let p = Packet::new("vm139", "host", Proto::Icmp);
    assert_eq!(verdict(&s, &kvm, &p).0, Action::Drop);
    // The tunnel peer cannot reach the host.
    for port in [22, 80] {
        let p = Packet::tcp("outside", "host", port)
            .source("10.0.3.1")
            .dest("10.0.3.2")
            .via("wg1");
        assert_eq!(verdict(&s, &kvm, &p), (Action::Drop, "site.toml:60".into()));
    }
    // The home LAN still manages the host.
    let p = Packet::tcp("outside", "host", 22).source("192.0.2.5");
    assert_eq!(verdict(&s, &kvm, &p).0, Action::Accept);

    // The gateway forwards the subnet to the internet and masquerades it.
    let gw = s.nft("cloudgw");
    let p = Packet::tcp("outside", "outside", 443)
        .source("192.168.100.139")
        .dest("198.18.0.80")
        .via("wg1")
        .out("ens3");
    let t = simulate_plan(&s.site, &gw, &p).unwrap();
    assert_eq!(t.verdict, Action::Accept);
    assert!(
        t.notes
            .iter()
            .any(|n| n.contains("masqueraded to the address of ens3")),
        "{:?}",
        t.notes
    );
    assert!(gw
        .script
        .contains("type nat hook postrouting priority 100; policy accept;"));
    assert!(gw.script.contains(
        "oifname \"ens3\" ip saddr 192.168.100.0/24 masquerade comment \"site.toml:60\""
    ));
}

#[test]
fn doc004_routes_rules_and_sysctls() {
    let s = common::load(common::lab("kvm-transparent-egress"));
    let n = s.node("kvm1");
    assert_eq!(n.rules.len(), 1);
    assert_eq!(
        (
            n.rules[0].from.as_str(),
            n.rules[0].table,
            n.rules[0].origin.as_str()
        ),
        ("192.168.100.0/24", 42, "site.toml:60")
    );
    // The network's table already carries the default route (wg plan).
    assert!(n.routes.is_empty(), "{:?}", n.routes);
    assert!(n
        .sysctls
        .iter()
        .any(|(k, v, _)| k == "net.ipv4.ip_forward" && v == "1"));
    let g = s.node("cloudgw");
    assert!(g.rules.is_empty());
    assert_eq!(g.firewall.masquerade.len(), 1);
    assert!(g.sysctls.iter().any(|(k, _, _)| k == "net.ipv4.ip_forward"));
}

#[test]
#[ignore]
fn dump() {
    let s = common::load(common::lab(&std::env::var("LAB").unwrap()));
    let n = std::env::var("NODE").unwrap();
    println!("{}", s.nft(&n).script);
    let i = s.ipt(&n, rampart_ipt::Mode::Full);
    println!("{}\n{}", i.v4, i.v6);
}

//! Guest and host options in the simulator: dhcp, ndp, radv, firewall=0
//! NICs, host firewall off, FORWARD rules on routed traffic, IPS, logging.

use rampart_nft::testkit::{conformance, rule, RuleExt, SiteBuilder};
use rampart_nft::{compile, compile_with, Caps};
use rampart_resolve::ir::{GuestKind, Site};
use rampart_sim::{simulate, simulate_plan, Packet};
use rampart_types::{Action, Direction, LogLevel, Proto};

fn icmp6(from: &str, to: &str, ty: &str) -> Packet {
    Packet {
        icmp_type: Some(ty.into()),
        ..Packet::new(from, to, Proto::Icmpv6)
    }
}

fn v6_site(dhcp: bool, ndp: bool, radv: bool) -> Site {
    let mut b = SiteBuilder::new();
    let f = b.file("firewall/100.fw", "[OPTIONS]\n");
    b.node(
        "hv1",
        &[("vmbr0", &["192.0.2.10/24", "2001:db8:1::10/64"])],
        &[],
    );
    b.guest(
        100,
        GuestKind::Vm,
        "hv1",
        &[(
            "vmbr0",
            "0e:00:00:00:64:00",
            &["192.0.2.100/24", "2001:db8:1::100/64"],
        )],
        b.at(f, 1),
    );
    let g = b.guest_mut(100);
    g.options.dhcp = dhcp;
    g.options.ndp = ndp;
    g.options.radv = radv;
    b.build()
}

#[test]
fn dhcp_option() {
    let p = Packet {
        sport: Some(67),
        ..Packet::udp("outside", "vm100", 68).source("192.0.2.1")
    };
    let t = simulate(&v6_site(true, false, false), "hv1", &p).unwrap();
    assert_eq!(
        (t.verdict, t.decided_by.unwrap().origin.as_str()),
        (Action::Accept, "auto:dhcp")
    );
    let t = simulate(&v6_site(false, false, false), "hv1", &p).unwrap();
    assert_eq!(t.verdict, Action::Drop);
}

#[test]
fn ndp_option() {
    // Router advertisements to the guest pass only with `ndp: 1`.
    let p = icmp6("outside", "vm100", "nd-router-advert").source("2001:db8:1::1");
    let t = simulate(&v6_site(false, true, false), "hv1", &p).unwrap();
    assert_eq!(
        (t.verdict, t.decided_by.unwrap().origin.as_str()),
        (Action::Accept, "auto:ndp")
    );
    let t = simulate(&v6_site(false, false, false), "hv1", &p).unwrap();
    assert_eq!(t.verdict, Action::Drop);
    // Neighbour solicitations pass a DROP policy either way, or IPv6 dies.
    let p = icmp6("outside", "vm100", "nd-neighbor-solicit").source("2001:db8:1::1");
    let t = simulate(&v6_site(false, false, false), "hv1", &p).unwrap();
    assert_eq!(
        (t.verdict, t.decided_by.unwrap().origin.as_str()),
        (
            Action::Accept,
            "auto:neighbour discovery under a DROP/REJECT policy"
        )
    );
}

#[test]
fn radv_option() {
    let p = icmp6("vm100", "outside", "nd-router-advert").dest("2001:db8:1::1");
    let t = simulate(&v6_site(false, false, false), "hv1", &p).unwrap();
    assert_eq!(
        (t.verdict, t.decided_by.unwrap().origin.as_str()),
        (Action::Drop, "auto:radv off")
    );
    let t = simulate(&v6_site(false, false, true), "hv1", &p).unwrap();
    assert_eq!(t.verdict, Action::Accept);
}

#[test]
fn nic_without_firewall_is_not_filtered() {
    let mut site = v6_site(false, false, false);
    site.guests[0].nics[0].firewall = false;
    let t = simulate(
        &site,
        "hv1",
        &Packet::tcp("outside", "vm100", 22).source("192.0.2.50"),
    )
    .unwrap();
    assert_eq!(
        (t.verdict, t.decided_by.unwrap().origin.as_str()),
        (Action::Accept, "auto:bridged, accepted")
    );
}

#[test]
fn host_firewall_off_accepts_at_the_host_but_guests_stay_filtered() {
    let mut site = conformance::guest_basics();
    site.nodes[0].firewall.enabled = false;
    let t = simulate(
        &site,
        "hv1",
        &Packet::tcp("outside", "host", 12345).source("192.0.2.50"),
    )
    .unwrap();
    assert_eq!(
        (t.verdict, t.decided_by.unwrap().origin.as_str()),
        (Action::Accept, "auto:host firewall off")
    );
    let t = simulate(
        &site,
        "hv1",
        &Packet::tcp("outside", "vm100", 12345).source("192.0.2.50"),
    )
    .unwrap();
    assert_eq!(t.verdict, Action::Drop);
}

#[test]
fn forward_rules_apply_to_routed_traffic() {
    let mut b = SiteBuilder::new();
    let c = b.file("firewall/cluster.fw", "#\n#\n#\n#\n#\n");
    let f = b.file("firewall/100.fw", "#\n");
    b.node(
        "hv1",
        &[("vmbr0", &["192.0.2.10/24"]), ("vmbr1", &["10.1.0.1/24"])],
        &[],
    );
    b.guest(
        100,
        GuestKind::Vm,
        "hv1",
        &[("vmbr1", "0e:00:00:00:64:00", &["10.1.0.100/24"])],
        b.at(f, 1),
    );
    b.guest_mut(100).options.policy_in = Action::Accept;
    let fwd = rule(b.at(c, 3), Direction::Forward, Action::Accept).tcp(22);
    let n = b.node_mut("hv1");
    n.firewall.policy_forward = Action::Drop;
    n.firewall.rules = vec![fwd];
    let site = b.build();
    let t = simulate(
        &site,
        "hv1",
        &Packet::tcp("outside", "vm100", 22).source("192.0.2.50"),
    )
    .unwrap();
    println!("{t}");
    assert_eq!(t.verdict, Action::Accept);
    let chains: Vec<&str> = t.steps.iter().map(|s| s.chain.as_str()).collect();
    assert!(
        chains.contains(&"host-forward") && chains.contains(&"nic-tap100i0-in"),
        "{chains:?}"
    );
    let t = simulate(
        &site,
        "hv1",
        &Packet::tcp("outside", "vm100", 80).source("192.0.2.50"),
    )
    .unwrap();
    assert_eq!(
        (t.verdict, t.decided_by.unwrap().origin.as_str()),
        (Action::Drop, "auto:policy_forward DROP")
    );
}

#[test]
fn ips_queue_accepts_with_bypass_and_says_so() {
    let mut site = conformance::guest_basics();
    site.guests[0].options.ips = true;
    assert!(compile(&site, "hv1").is_err());
    let plan = compile_with(
        &site,
        "hv1",
        &Caps {
            nft_queue: true,
            bridge_conntrack: false,
        },
    )
    .unwrap();
    let t = simulate_plan(
        &site,
        &plan,
        &Packet::tcp("outside", "vm100", 80).source("192.0.2.50"),
    )
    .unwrap();
    assert_eq!(t.verdict, Action::Accept);
    assert!(
        t.notes.iter().any(|n| n.contains("NFQUEUE")),
        "{:?}",
        t.notes
    );
}

#[test]
fn logging_is_noted_and_does_not_change_the_verdict() {
    let mut site = conformance::guest_basics();
    site.guests[0].options.log_level_in = LogLevel::Info;
    let t = simulate(
        &site,
        "hv1",
        &Packet::tcp("outside", "vm100", 23).source("192.0.2.50"),
    )
    .unwrap();
    assert_eq!(t.verdict, Action::Drop);
    assert!(
        t.notes.iter().any(|n| n.contains("nflog group 0")),
        "{:?}",
        t.notes
    );
}

#[test]
fn ips_sees_established_traffic_too() {
    let mut site = conformance::guest_basics();
    site.guests[0].options.ips = true;
    let plan = compile_with(
        &site,
        "hv1",
        &Caps {
            nft_queue: true,
            bridge_conntrack: false,
        },
    )
    .unwrap();
    let t = simulate_plan(
        &site,
        &plan,
        &Packet::tcp("outside", "vm100", 80)
            .source("192.0.2.50")
            .established(),
    )
    .unwrap();
    assert_eq!(
        (t.verdict, t.decided_by.unwrap().origin.as_str()),
        (Action::Accept, "auto:ips guest 100")
    );
    // Other guests' established traffic is not queued.
    let t = simulate_plan(
        &site,
        &plan,
        &Packet::tcp("outside", "ct200", 80)
            .source("192.0.2.50")
            .established(),
    )
    .unwrap();
    assert_eq!(t.decided_by.unwrap().origin, "auto:conntrack");
}

#[test]
fn cluster_traffic_between_nodes() {
    let mut b = SiteBuilder::new();
    b.node("hv1", &[("vmbr0", &["192.0.2.10/24"])], &[]);
    b.node("hv2", &[("vmbr0", &["192.0.2.11/24"])], &[]);
    b.node("hv3", &[("vmbr0", &["198.51.100.12/24"])], &[]);
    b.link_peers();
    let site = b.build();
    let t = simulate(&site, "hv1", &Packet::udp("hv3", "host", 5405)).unwrap();
    assert_eq!(
        (t.verdict, t.decided_by.unwrap().origin.as_str()),
        (Action::Accept, "auto:corosync")
    );
    let t = simulate(&site, "hv1", &Packet::udp("host", "hv3", 5404)).unwrap();
    assert_eq!(
        (t.verdict, t.decided_by.unwrap().origin.as_str()),
        (Action::Accept, "auto:corosync")
    );
    // Only 5404-5405, as pve-firewall.
    let t = simulate(&site, "hv1", &Packet::udp("hv3", "host", 5406)).unwrap();
    assert_eq!(t.verdict, Action::Drop);
    let t = simulate(
        &site,
        "hv1",
        &Packet::udp("outside", "host", 5405).source("203.0.113.1"),
    )
    .unwrap();
    assert_eq!(t.verdict, Action::Drop);
    // A node on the local network is management; one elsewhere is not.
    let t = simulate(&site, "hv1", &Packet::tcp("hv2", "host", 22)).unwrap();
    assert_eq!(
        (t.verdict, t.decided_by.unwrap().origin.as_str()),
        (Action::Accept, "auto:management")
    );
    let t = simulate(&site, "hv1", &Packet::tcp("hv3", "host", 22)).unwrap();
    assert_eq!(t.verdict, Action::Drop);
}

#[test]
fn macfilter_drops_another_source_mac() {
    let site = v6_site(false, false, false);
    let mut p = Packet::tcp("vm100", "outside", 80).dest("192.0.2.50");
    let t = simulate(&site, "hv1", &p).unwrap();
    assert_eq!(t.verdict, Action::Accept);
    p.source_mac = Some(rampart_nft::testkit::mac("0e:00:00:00:99:99"));
    let t = simulate(&site, "hv1", &p).unwrap();
    assert_eq!(
        (t.verdict, t.decided_by.unwrap().origin.as_str()),
        (Action::Drop, "auto:macfilter")
    );
    let mut site = site;
    site.guests[0].options.macfilter = false;
    assert_eq!(simulate(&site, "hv1", &p).unwrap().verdict, Action::Accept);
}

//! The lab against the real kernel: build hv1 in namespaces, load a
//! hand-written nft ruleset, send real packets. Needs root (runs only in
//! namespaces it creates).

mod common;

use rampart_lab::{netns, Lab, Observed, PacketProto, Probe};
use rampart_types::Family::{self, V4, V6};
use std::net::IpAddr;

fn p(from: &str, to: &str, proto: PacketProto, dport: Option<u16>, fam: Family) -> Probe {
    Probe::new(from, to, proto, dport, fam)
}

fn with_source(mut pr: Probe, s: &str) -> Probe {
    pr.source = Some(s.parse::<IpAddr>().unwrap());
    pr
}

fn with_dest(mut pr: Probe, d: &str) -> Probe {
    pr.dest = Some(d.parse::<IpAddr>().unwrap());
    pr
}

fn icmp(mut pr: Probe, ty: &str) -> Probe {
    pr.icmp_type = Some(ty.into());
    pr
}

/// Send every probe at once; fail listing each one that saw something else.
fn check(lab: &Lab, table: &[(Probe, Observed)]) {
    let probes: Vec<Probe> = table.iter().map(|(p, _)| p.clone()).collect();
    let got = lab.probe_all(&probes);
    let mut bad = Vec::new();
    for ((pr, want), got) in table.iter().zip(&got) {
        if got.as_ref() != Ok(want) {
            bad.push(format!(
                "{} -> {} {} {:?} {:?} src={:?} dst={:?}: expected {want:?}, got {got:?}",
                pr.from, pr.to, pr.proto, pr.dport, pr.family, pr.source, pr.dest
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} probes disagree:\n{}",
        bad.len(),
        table.len(),
        bad.join("\n")
    );
}

use Observed::{Accept as A, Drop as D, Reject as R};
use PacketProto::{Icmp, Icmpv6, Tcp, Udp};

#[test]
fn nothing_loaded_everything_is_reachable() {
    let lab = Lab::build(&common::basics(), "hv1", common::opts()).unwrap();
    check(
        &lab,
        &[
            (p("outside", "host", Tcp, Some(22), V4), A),
            (p("outside", "vm100", Tcp, Some(22), V4), A),
            (p("outside", "vm100", Tcp, Some(22), V6), A),
            (p("vm100", "ct200", Udp, Some(53), V4), A),
            (p("ct200", "vm100", Icmpv6, None, V6), A),
            (p("host", "vm101", Icmp, None, V4), A),
            (p("hv2", "host", Tcp, Some(8006), V4), A),
            (p("hv2", "vm100", Icmpv6, None, V6), A),
            (p("far1", "host", Tcp, Some(22), V4), A),
            (p("far1", "host", Tcp, Some(22), V6), A),
            (p("vm100", "far1", Udp, Some(5405), V4), A),
            (p("host", "far1", Icmpv6, None, V6), A),
            // Far machines are routed through the outside machine.
            (
                with_source(p("outside", "host", Tcp, Some(443), V4), "203.0.113.9"),
                A,
            ),
            (
                with_source(p("outside", "vm100", Tcp, Some(443), V6), "2001:db8:ff::9"),
                A,
            ),
            (
                with_dest(p("vm101", "outside", Udp, Some(53), V4), "198.51.100.53"),
                A,
            ),
            (
                with_dest(p("host", "outside", Tcp, Some(80), V4), "203.0.113.20"),
                A,
            ),
        ],
    );
}

#[test]
fn hand_written_nft_ruleset_verdicts() {
    let lab = Lab::build(&common::basics(), "hv1", common::opts()).unwrap();
    lab.load_nft(common::RULESET).unwrap();
    check(
        &lab,
        &[
            // Host-targeted (input chain).
            (p("outside", "host", Tcp, Some(22), V4), A),
            (p("outside", "host", Tcp, Some(22), V6), A),
            (p("outside", "host", Tcp, Some(23), V4), D),
            (p("outside", "host", Tcp, Some(23), V6), D),
            (p("outside", "host", Tcp, Some(25), V4), R),
            (p("outside", "host", Tcp, Some(25), V6), R),
            (p("outside", "host", Udp, Some(5001), V4), A),
            (p("outside", "host", Udp, Some(5001), V6), A),
            (p("outside", "host", Udp, Some(5000), V4), R),
            (p("outside", "host", Udp, Some(5000), V6), R),
            (p("outside", "host", Udp, Some(5002), V4), D),
            (p("outside", "host", Icmp, None, V4), A),
            (
                with_source(p("outside", "host", Icmp, None, V4), "203.0.113.77"),
                R,
            ),
            (
                with_source(p("outside", "host", Udp, Some(5000), V4), "203.0.113.77"),
                R,
            ),
            // A "soft" ICMP error on UDP (host unreachable) is a REJECT too.
            (
                with_source(p("outside", "host", Udp, Some(5001), V4), "203.0.113.78"),
                R,
            ),
            (p("outside", "host", Icmpv6, None, V6), A),
            (
                with_source(p("outside", "host", Icmpv6, None, V6), "2001:db8:ff::9"),
                D,
            ),
            (
                with_source(p("outside", "host", Tcp, Some(443), V4), "203.0.113.9"),
                A,
            ),
            (
                with_source(p("outside", "host", Tcp, Some(443), V4), "203.0.113.10"),
                D,
            ),
            (
                with_source(p("outside", "host", Tcp, Some(22), V4), "192.0.2.77"),
                A,
            ),
            (p("hv2", "host", Tcp, Some(22), V4), A),
            (p("vm101", "host", Tcp, Some(8006), V4), D),
            // The host's own output: a drop there is refused locally.
            (
                with_dest(p("host", "outside", Tcp, Some(8081), V4), "203.0.113.20"),
                D,
            ),
            (
                with_dest(p("host", "outside", Tcp, Some(80), V4), "203.0.113.20"),
                A,
            ),
            // Guest-targeted, bridged: forward chain through br_netfilter.
            (p("outside", "vm100", Tcp, Some(80), V4), A),
            (p("outside", "vm100", Tcp, Some(80), V6), A),
            (p("outside", "vm100", Tcp, Some(22), V4), D),
            (p("outside", "vm100", Tcp, Some(22), V6), D),
            (p("outside", "vm100", Tcp, Some(25), V4), R),
            (p("outside", "vm100", Tcp, Some(25), V6), R),
            (p("outside", "vm100", Udp, Some(53), V4), A),
            (p("outside", "vm100", Udp, Some(54), V4), R),
            (p("outside", "vm100", Udp, Some(54), V6), R),
            (p("outside", "vm100", Udp, Some(55), V4), D),
            (p("outside", "vm100", Icmp, None, V4), D),
            (p("outside", "vm100", Icmpv6, None, V6), R),
            (p("vm101", "vm100", Tcp, Some(22), V4), A),
            (p("ct200", "vm100", Tcp, Some(22), V4), D),
            (p("hv2", "vm100", Tcp, Some(80), V4), A),
            (
                with_source(p("outside", "vm100", Tcp, Some(80), V4), "203.0.113.50"),
                A,
            ),
            // Guest-originated.
            (
                with_dest(p("ct200", "outside", Tcp, Some(80), V4), "192.0.2.50"),
                R,
            ),
            (
                with_dest(p("ct200", "outside", Tcp, Some(443), V4), "192.0.2.50"),
                A,
            ),
            (p("ct200", "vm101", Tcp, Some(5555), V4), A),
            (p("ct200", "vm101", Icmp, None, V4), A),
            // ICMP types that get no answer: arrival at the target is ACCEPT.
            (
                icmp(p("outside", "host", Icmp, None, V4), "timestamp-request"),
                A,
            ),
            (
                icmp(p("outside", "host", Icmp, None, V4), "address-mask-request"),
                D,
            ),
            (
                icmp(p("outside", "vm100", Icmp, None, V4), "timestamp-request"),
                D,
            ),
            (
                icmp(p("outside", "ct200", Icmp, None, V4), "timestamp-request"),
                A,
            ),
            (icmp(p("outside", "ct200", Icmpv6, None, V6), "139"), A),
        ],
    );
}

#[test]
fn established_flows_survive_a_ruleset_that_drops_new_ones() {
    let lab = Lab::build(&common::basics(), "hv1", common::opts()).unwrap();
    let mut est = p("outside", "vm100", Tcp, Some(22), V4);
    est.state = rampart_lab::State::Established;
    let mut est6 = p("outside", "host", Tcp, Some(23), V6);
    est6.state = rampart_lab::State::Established;
    let mut udp = p("outside", "host", Udp, Some(5002), V4);
    udp.state = rampart_lab::State::Established;
    let mut ping = with_source(p("outside", "host", Icmpv6, None, V6), "2001:db8:ff::9");
    ping.state = rampart_lab::State::Established;
    let probes = [
        est.clone(),
        est6.clone(),
        udp.clone(),
        ping.clone(),
        // The same packets, new: the ruleset drops them.
        p("outside", "vm100", Tcp, Some(22), V4),
        p("outside", "host", Tcp, Some(23), V6),
        p("outside", "host", Udp, Some(5002), V4),
        with_source(p("outside", "host", Icmpv6, None, V6), "2001:db8:ff::9"),
    ];
    let got = lab.probe_established(&probes, &|lab: &Lab| lab.load_nft(common::RULESET));
    assert_eq!(
        got,
        vec![Ok(A), Ok(A), Ok(A), Ok(A), Ok(D), Ok(D), Ok(D), Ok(D)]
    );

    // Without `ct state established accept`, the same flows die.
    let lab = Lab::build(&common::basics(), "hv1", common::opts()).unwrap();
    let strict = common::RULESET.replace("ct state established,related accept", "");
    let got = lab.probe_established(&[est, est6, udp, ping], &|lab: &Lab| lab.load_nft(&strict));
    assert_eq!(got, vec![Ok(D), Ok(D), Ok(D), Ok(D)]);
}

#[test]
fn layout_names_bridge_ports_like_the_guest_nics() {
    let lab = Lab::build(&common::basics(), "hv1", common::opts()).unwrap();
    let links = lab
        .host()
        .exec(&["ip", "-o", "link", "show", "master", "vmbr0"], None)
        .unwrap();
    assert!(links.contains("tap100i0@"), "{links}");
    assert!(links.contains("tap101i0@"), "{links}");
    assert!(links.contains("veth200i0@"), "{links}");
    assert!(
        !links.contains("tap300i0"),
        "a guest of hv2 is not on hv1: {links}"
    );
    let inside = lab
        .guest("vm100")
        .unwrap()
        .exec(&["ip", "-o", "link", "show", "net0"], None)
        .unwrap();
    assert!(inside.contains("0e:00:00:00:64:00"), "{inside}");
    let nf = lab
        .host()
        .exec(
            &[
                "sysctl",
                "-n",
                "net.bridge.bridge-nf-call-iptables",
                "net.bridge.bridge-nf-call-ip6tables",
            ],
            None,
        )
        .unwrap();
    assert_eq!(nf.split_whitespace().collect::<Vec<_>>(), ["1", "1"]);
}

#[test]
fn namespaces_are_removed_on_drop_and_on_panic() {
    let lab = Lab::build(&common::basics(), "hv1", common::opts()).unwrap();
    let prefix = lab.prefix().to_string();
    // host, out, vm100, vm101, ct200
    assert_eq!(netns::list(&prefix).len(), 5, "{:?}", netns::list(&prefix));
    // A node named in a probe gets its namespace on demand.
    assert_eq!(lab.probe(&p("hv2", "host", Tcp, Some(22), V4)), Ok(A));
    assert_eq!(netns::list(&prefix).len(), 6);
    drop(lab);
    assert_eq!(netns::list(&prefix), Vec::<String>::new());

    let prefix = std::sync::Mutex::new(String::new());
    let r = std::panic::catch_unwind(|| {
        let lab = Lab::build(&common::basics(), "hv1", common::opts()).unwrap();
        *prefix.lock().unwrap() = lab.prefix().to_string();
        panic!("a failing test");
    });
    assert!(r.is_err());
    let prefix = prefix.into_inner().unwrap();
    assert!(!prefix.is_empty());
    assert_eq!(netns::list(&prefix), Vec::<String>::new());
}

#[test]
fn unknown_zones_and_unobservable_probes_are_errors() {
    let lab = Lab::build(&common::basics(), "hv1", common::opts()).unwrap();
    let e = lab
        .probe(&p("vm999", "host", Tcp, Some(22), V4))
        .unwrap_err();
    assert!(e.0.contains("no guest vm999"), "{e}");
    let e = lab
        .probe(&p("vm101", "host", Tcp, Some(22), V6))
        .unwrap_err();
    assert!(e.0.contains("vm101 has no ipv6 address"), "{e}");
    let e = lab
        .probe(&p("nosuchnode", "host", Tcp, Some(22), V4))
        .unwrap_err();
    assert!(e.0.contains("unknown zone"), "{e}");
    let e = lab
        .probe(&p("outside", "host", Icmp, None, V6))
        .unwrap_err();
    assert!(e.0.contains("icmp is not an ipv6 protocol"), "{e}");
    let e = lab.probe(&p("outside", "host", Tcp, None, V4)).unwrap_err();
    assert!(e.0.contains("needs a dport"), "{e}");
}

#[test]
fn two_bridges_and_a_guest_with_two_nics() {
    use common::*;
    use rampart_resolve::ir::GuestKind;
    let site = site(
        vec![node(
            "hv1",
            &[
                ("vmbr0", &["192.0.2.10/24", "2001:db8:1::10/64"]),
                ("vmbr1", &[]),
            ],
        )],
        vec![
            guest(
                100,
                GuestKind::Vm,
                "hv1",
                &[
                    ("vmbr0", [0x0e, 0, 0, 0, 0x64, 0], &["192.0.2.100/24"]),
                    (
                        "vmbr1",
                        [0x0e, 0, 0, 0, 0x64, 1],
                        &["10.1.0.100/24", "fd00:1::100/64"],
                    ),
                ],
            ),
            guest(
                200,
                GuestKind::Ct,
                "hv1",
                &[("vmbr1", [0x0e, 0, 0, 0, 0xc8, 0], &["10.1.0.200/24"])],
            ),
        ],
    );
    let lab = Lab::build(&site, "hv1", common::opts()).unwrap();
    let ports = lab
        .host()
        .exec(&["ip", "-o", "link", "show", "master", "vmbr1"], None)
        .unwrap();
    assert!(
        ports.contains("tap100i1@") && ports.contains("veth200i0@"),
        "{ports}"
    );
    let nics = lab
        .guest("vm100")
        .unwrap()
        .exec(&["ip", "-o", "addr", "show"], None)
        .unwrap();
    assert!(nics.contains("net0    inet 192.0.2.100/24"), "{nics}");
    assert!(nics.contains("net1    inet 10.1.0.100/24"), "{nics}");
    lab.load_nft(
        "table inet rampart_test { chain forward { type filter hook forward priority 0; policy accept;
            ct state established,related accept
            iifname \"vmbr1\" oifname \"vmbr1\" ip daddr 10.1.0.100 tcp dport 22 drop
        }
    }",
    )
    .unwrap();
    check(
        &lab,
        &[
            (p("outside", "vm100", Tcp, Some(22), V4), A),
            (p("outside", "vm100i0", Tcp, Some(22), V4), A),
            (p("outside", "vm100i1", Tcp, Some(22), V4), D),
            (p("outside", "vm100i1", Tcp, Some(22), V6), A),
            (p("ct200", "vm100i1", Tcp, Some(22), V4), D),
            (p("ct200", "vm100i1", Tcp, Some(80), V4), A),
            (p("ct200", "vm100", Tcp, Some(22), V4), A),
            (
                with_source(p("outside", "ct200", Udp, Some(53), V4), "198.51.100.7"),
                A,
            ),
            (p("ct200", "host", Icmp, None, V4), A),
        ],
    );
    let e = lab
        .probe(&p("vm100i2", "host", Tcp, Some(22), V4))
        .unwrap_err();
    assert!(e.0.contains("no NIC net2"), "{e}");
}

#[test]
fn rulesets_are_checked_in_a_throwaway_namespace() {
    netns::nft_check(common::RULESET).unwrap();
    let e =
        netns::nft_check("table inet t {\n chain c {\n  tcp dport 22 acept\n }\n}\n").unwrap_err();
    assert!(e.0.contains("acept"), "{e}");
    netns::iptables_check(
        "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n",
        false,
    )
    .unwrap();
    let e = netns::iptables_check("*filter\n-A NOPE -j ACCEPT\nCOMMIT\n", true).unwrap_err();
    assert!(e.0.contains("ip6tables-restore"), "{e}");
    let e = netns::iptables_check(
        "*filter\n-A INPUT -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n",
        false,
    )
    .unwrap_err();
    assert!(e.0.contains("99999"), "{e}");
}

#[test]
fn the_same_flow_twice_runs_in_rounds() {
    let lab = Lab::build(&common::basics(), "hv1", common::opts()).unwrap();
    let sport = |mut pr: Probe| {
        pr.sport = Some(40000);
        pr
    };
    let mut est = sport(p("outside", "host", Udp, Some(5002), V4));
    est.state = rampart_lab::State::Established;
    let probes = [
        // New after established on the very same 5-tuple: the flush between
        // rounds makes it new again, and the ruleset drops it.
        sport(p("outside", "host", Udp, Some(5002), V4)),
        est,
        sport(p("outside", "host", Tcp, Some(22), V4)),
        sport(p("outside", "host", Tcp, Some(22), V4)),
        sport(p("outside", "host", Udp, Some(5001), V6)),
        sport(p("outside", "host", Udp, Some(5001), V6)),
    ];
    let got = lab.probe_established(&probes, &|lab: &Lab| lab.load_nft(common::RULESET));
    assert_eq!(got, vec![Ok(D), Ok(A), Ok(A), Ok(A), Ok(A), Ok(A)]);
}

#[test]
fn a_lab_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Lab>();
}

#[test]
fn building_a_lab_is_quick() {
    // Not a benchmark: a guard against a lab that takes seconds to build
    // (the conformance suite builds one per case).
    let t = std::time::Instant::now();
    let lab = Lab::build(&common::basics(), "hv1", common::opts()).unwrap();
    let built = t.elapsed();
    drop(lab);
    let total = t.elapsed();
    eprintln!("lab build {built:?}, build + remove {total:?}");
    assert!(
        total < std::time::Duration::from_secs(5),
        "build {built:?}, total {total:?}"
    );
}

#[test]
fn the_helper_can_sit_behind_a_prefix() {
    // As `rampart __probe …` would: here `env <rampart-probe> …`.
    let mut opts = common::opts();
    opts.helper = rampart_lab::Helper {
        exe: "/usr/bin/env".into(),
        prefix: vec![env!("CARGO_BIN_EXE_rampart-probe").into()],
    };
    let lab = Lab::build(&common::basics(), "hv1", opts).unwrap();
    assert_eq!(lab.probe(&p("outside", "vm100", Tcp, Some(22), V4)), Ok(A));
    assert_eq!(lab.probe(&p("outside", "vm100", Udp, Some(53), V6)), Ok(A));
    // A helper that cannot start is an error, not a verdict.
    let mut opts = common::opts();
    opts.helper = rampart_lab::Helper::new("/nonexistent/rampart-probe");
    let lab = Lab::build(&common::basics(), "hv1", opts).unwrap();
    assert!(lab
        .probe(&p("outside", "vm100", Tcp, Some(22), V4))
        .is_err());
    assert!(lab.probe(&p("outside", "vm100", Icmp, None, V4)).is_err());
}

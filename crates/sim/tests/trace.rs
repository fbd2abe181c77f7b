//! The trail: chains entered and the rule that decided.

use rampart_nft::testkit::conformance;
use rampart_sim::{simulate, Packet};
use rampart_types::{Action, Proto};

#[test]
fn guest_to_guest_passes_senders_out_then_receivers_in() {
    let site = conformance::guest_basics();
    // ct200's OUT accepts DNS; vm100's IN does not open 53: its policy drops.
    let t = simulate(&site, "hv1", &Packet::udp("ct200", "vm100", 53)).unwrap();
    println!("{t}");
    assert_eq!(t.verdict, Action::Drop);
    let chains: Vec<&str> = t.steps.iter().map(|s| s.chain.as_str()).collect();
    let out = chains
        .iter()
        .position(|c| *c == "nic-veth200i0-out")
        .expect("sender OUT entered");
    let inn = chains
        .iter()
        .position(|c| *c == "nic-tap100i0-in")
        .expect("receiver IN entered");
    assert!(out < inn);
    assert_eq!(t.steps[0].hook, "bridge prerouting");
    assert!(t.steps.iter().any(|s| s.hook == "inet forward"));
    // The sender's accept is a decision too; the receiver's policy settled it.
    assert_eq!(t.decisions[0].origin, "200.fw:7");
    assert_eq!(
        t.decided_by.unwrap().origin,
        "auto:guest 100 net0 policy_in DROP"
    );
}

#[test]
fn deciding_rule_names_the_group_line_and_the_guest_line() {
    let site = conformance::guest_basics();
    let t = simulate(
        &site,
        "hv1",
        &Packet::tcp("outside", "vm100", 80).source("192.0.2.50"),
    )
    .unwrap();
    assert_eq!(t.verdict, Action::Accept);
    let d = t.decided_by.unwrap();
    assert_eq!(d.origin, "cluster.fw:8 via 100.fw:6");
    assert_eq!(d.chain, "nic-tap100i0-in");
    assert!(d.text.starts_with("tcp dport 80 return"), "{}", d.text);
}

#[test]
fn established_traffic_leaves_at_the_first_rule() {
    let site = conformance::guest_basics();
    let t = simulate(
        &site,
        "hv1",
        &Packet::tcp("outside", "ct200", 23)
            .source("192.0.2.50")
            .established(),
    )
    .unwrap();
    assert_eq!(t.verdict, Action::Accept);
    let d = t.decided_by.unwrap();
    assert_eq!(
        (d.origin.as_str(), d.chain.as_str(), d.index),
        ("auto:conntrack", "hook-forward", 0)
    );
    // And the same packet new is dropped by 200.fw:8.
    let t = simulate(
        &site,
        "hv1",
        &Packet::tcp("outside", "ct200", 23).source("192.0.2.50"),
    )
    .unwrap();
    assert_eq!(t.verdict, Action::Drop);
    assert_eq!(t.decided_by.unwrap().origin, "200.fw:8");
}

#[test]
fn host_out_then_guest_in() {
    let site = conformance::guest_basics();
    let t = simulate(&site, "hv1", &Packet::tcp("host", "vm100", 22)).unwrap();
    assert_eq!(t.verdict, Action::Drop);
    let chains: Vec<&str> = t.steps.iter().map(|s| s.chain.as_str()).collect();
    assert!(
        chains.contains(&"host-out") && chains.contains(&"nic-tap100i0-in"),
        "{chains:?}"
    );
    // From the trusted guest, SSH passes (the ipset).
    let t = simulate(&site, "hv1", &Packet::tcp("vm101", "vm100", 22)).unwrap();
    assert_eq!(t.verdict, Action::Accept);
    assert_eq!(t.decided_by.unwrap().origin, "100.fw:7");
}

#[test]
fn reject_answers_per_family_and_management_is_ipv6_too() {
    let site = conformance::host_basics();
    let t = simulate(
        &site,
        "hv1",
        &Packet::tcp("outside", "host", 25).source("2001:db8:1::77"),
    )
    .unwrap();
    assert_eq!(t.verdict, Action::Reject);
    assert_eq!(t.decided_by.unwrap().origin, "cluster.fw:17");
    let t = simulate(
        &site,
        "hv1",
        &Packet::tcp("outside", "host", 8006).source("2001:db8:1::77"),
    )
    .unwrap();
    assert_eq!(t.verdict, Action::Accept);
    assert_eq!(t.decided_by.unwrap().origin, "auto:management");
    let t = simulate(
        &site,
        "hv1",
        &Packet::tcp("outside", "host", 8006).source("2001:db8:2::77"),
    )
    .unwrap();
    assert_eq!(t.verdict, Action::Drop);
}

#[test]
fn unknown_zone_is_an_error() {
    let site = conformance::host_basics();
    let e = simulate(&site, "hv1", &Packet::new("hv9", "host", Proto::Icmp)).unwrap_err();
    assert!(e.to_string().contains("hv9"), "{e}");
    let e = simulate(&site, "hv1", &Packet::new("vm100", "host", Proto::Icmp)).unwrap_err();
    assert!(e.to_string().contains("vm100"), "{e}");
}

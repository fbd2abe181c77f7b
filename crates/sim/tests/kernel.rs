//! Simulator against the real kernel: the conformance cases' packets sent
//! for real through a node built in network namespaces (host namespace with
//! the bridge and the compiled ruleset loaded, a namespace per guest attached
//! by a veth named like the guest NIC, an `outside` namespace on the bridge).
//! Every packet must get the expected verdict from both.

#[path = "../../nft/tests/common/mod.rs"]
mod common;

#[path = "support/lab.rs"]
mod lab;

use lab::Lab;
use rampart_nft::compile;
use rampart_nft::testkit::conformance;
use rampart_resolve::ir::Site;
use rampart_sim::{simulate_plan, Packet};
use rampart_types::{Action, Proto};

fn run_case(site: &Site, packets_toml: &str) {
    let plan = compile(site, "hv1").unwrap();
    let lab = Lab::build(site, &plan);
    let mut bad = vec![];
    let cases = conformance_packets(packets_toml);
    for (name, p, want) in &cases {
        let t = simulate_plan(site, &plan, p).unwrap();
        let got = lab.send(p, t.source, t.dest);
        if t.verdict != *want || got != want.to_string() {
            bad.push(format!(
                "{name}: expected {want}, simulator {}, kernel {got}\n{t}",
                t.verdict
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} packets disagree:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
}

#[path = "support/packets.rs"]
mod support;
use support::packets as conformance_packets;

#[test]
fn kernel_host_basics() {
    run_case(
        &conformance::host_basics(),
        include_str!("data/host-basics/packets.toml"),
    );
}

#[test]
fn kernel_guest_basics() {
    run_case(
        &conformance::guest_basics(),
        include_str!("data/guest-basics/packets.toml"),
    );
}

#[test]
fn kernel_guest_to_guest_and_established_replies() {
    // Two filtered guests on one bridge: the sender's OUT and the receiver's
    // IN both apply, and replies of an accepted connection pass.
    let site = conformance::guest_basics();
    let plan = compile(&site, "hv1").unwrap();
    let lab = Lab::build(&site, &plan);
    let _ = Action::Accept;
    // vm100 -> ct200 tcp 8080: vm100 OUT policy ACCEPT, ct200 IN policy ACCEPT.
    let p = Packet::tcp("vm100", "ct200", 8080);
    let t = simulate_plan(&site, &plan, &p).unwrap();
    assert_eq!(
        (t.verdict, lab.send(&p, t.source, t.dest).as_str()),
        (Action::Accept, "ACCEPT")
    );
    // ct200 -> vm100 tcp 8080: ct200's OUT policy REJECT answers first.
    let p = Packet::tcp("ct200", "vm100", 8080);
    let t = simulate_plan(&site, &plan, &p).unwrap();
    assert_eq!(
        (t.verdict, lab.send(&p, t.source, t.dest).as_str()),
        (Action::Reject, "REJECT")
    );
    // vm100 -> ct200 tcp 23: vm100's OUT accepts, ct200's IN drops.
    let p = Packet::tcp("vm100", "ct200", 23);
    let t = simulate_plan(&site, &plan, &p).unwrap();
    assert_eq!(
        (t.verdict, lab.send(&p, t.source, t.dest).as_str()),
        (Action::Drop, "DROP")
    );
}

#[test]
fn kernel_features() {
    run_case(
        &rampart_nft::testkit::features(),
        include_str!("data/features/packets.toml"),
    );
}

#[test]
fn kernel_routed_traffic_meets_forward_rules_and_the_guests_in() {
    use rampart_nft::testkit::{rule, RuleExt, SiteBuilder};
    use rampart_resolve::ir::GuestKind;
    use rampart_types::Direction;
    let mut b = SiteBuilder::new();
    let c = b.file("firewall/cluster.fw", "#\n#\n#\n#\n#\n");
    let f = b.file("firewall/100.fw", "#\n#\n#\n");
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
    b.guest_mut(100).rules = vec![rule(b.at(f, 2), Direction::In, Action::Drop).tcp(2222)];
    b.guest_mut(100).options.policy_in = Action::Accept;
    let fwd = vec![
        rule(b.at(c, 3), Direction::Forward, Action::Accept)
            .proto(Proto::Tcp)
            .dports(&[(22, 22), (2222, 2222)]),
        rule(b.at(c, 4), Direction::Forward, Action::Reject).tcp(23),
    ];
    let n = b.node_mut("hv1");
    n.firewall.policy_forward = Action::Drop;
    n.firewall.rules = fwd;
    let site = b.build();
    let plan = compile(&site, "hv1").unwrap();
    let lab = Lab::build(&site, &plan);
    for (dport, want) in [
        (22, Action::Accept),
        (80, Action::Drop),
        (23, Action::Reject),
        (2222, Action::Drop),
    ] {
        let p = Packet::tcp("outside", "vm100", dport).source("192.0.2.50");
        let t = simulate_plan(&site, &plan, &p).unwrap();
        let got = lab.send(&p, t.source, t.dest);
        assert_eq!(
            (t.verdict, got.as_str()),
            (want, want.to_string().as_str()),
            "dport {dport}\n{t}"
        );
    }
}

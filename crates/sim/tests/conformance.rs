//! The shared conformance cases (copied from `shared/conformance/*/packets.toml`)
//! against the simulator, on IR built by hand the way the resolver is to
//! produce it (`rampart_nft::testkit::conformance`).

use rampart_nft::testkit::conformance;
use rampart_nft::{compile, Plan};
use rampart_resolve::ir::Site;
use rampart_sim::{simulate_plan, Packet, State, Zone};
use rampart_types::{Action, Family, Proto};

/// Read a packets.toml into (name, packet, expected verdict).
pub fn packets(text: &str) -> Vec<(String, Packet, Action)> {
    let v: toml::Value = toml::from_str(text).unwrap();
    let mut out = vec![];
    for p in v["packet"].as_array().unwrap() {
        let s = |k: &str| p.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let n = |k: &str| p.get(k).and_then(|x| x.as_integer()).map(|x| x as u16);
        let proto = match s("proto").unwrap().as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "icmp" => Proto::Icmp,
            "icmpv6" => Proto::Icmpv6,
            other => panic!("proto {other}"),
        };
        let pkt = Packet {
            from: Zone::parse(&s("from").unwrap()),
            to: Zone::parse(&s("to").unwrap()),
            proto,
            sport: n("sport"),
            dport: n("dport"),
            icmp_type: s("icmp_type"),
            source: s("source").map(|a| a.parse().unwrap()),
            dest: s("dest").map(|a| a.parse().unwrap()),
            family: s("family").map(|f| if f == "ipv6" { Family::V6 } else { Family::V4 }),
            state: if s("state").as_deref() == Some("established") {
                State::Established
            } else {
                State::New
            },
        };
        let verdict: Action = s("verdict").unwrap().parse().unwrap();
        out.push((s("name").unwrap_or_default(), pkt, verdict));
    }
    out
}

fn run_case(site: &Site, text: &str) {
    let plan: Plan = compile(site, "hv1").unwrap();
    let mut failures = vec![];
    let cases = packets(text);
    assert!(!cases.is_empty());
    for (name, pkt, want) in &cases {
        let t = simulate_plan(site, &plan, pkt).unwrap_or_else(|e| panic!("{name}: {e}"));
        if t.verdict != *want {
            failures.push(format!("{name}: expected {want}, got {}\n{t}", t.verdict));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} packets differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn host_basics() {
    run_case(
        &conformance::host_basics(),
        include_str!("data/host-basics/packets.toml"),
    );
}

#[test]
fn guest_basics() {
    run_case(
        &conformance::guest_basics(),
        include_str!("data/guest-basics/packets.toml"),
    );
}

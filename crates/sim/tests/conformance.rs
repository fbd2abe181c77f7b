//! The shared conformance cases (copied from `shared/conformance/*/packets.toml`)
//! against the simulator, on IR built by hand the way the resolver is to
//! produce it (`rampart_nft::testkit::conformance`).

use rampart_nft::testkit::conformance;
use rampart_nft::{compile, Plan};
use rampart_resolve::ir::Site;
use rampart_sim::simulate_plan;

#[path = "support/packets.rs"]
mod support;
use support::packets;

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

#[test]
fn features() {
    run_case(
        &rampart_nft::testkit::features(),
        include_str!("data/features/packets.toml"),
    );
}

//! The conformance examples (copied from conformance/) run through the
//! kernel runner with hand-written rulesets, and the report format.

mod common;

use rampart_case::summary;
use rampart_lab::runner::{run_case_dir, run_case_kernel};
use rampart_lab::Lab;
use rampart_resolve::ir::GuestKind;
use std::path::Path;

fn dir(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cases")
        .join(name)
}

fn nft_file(name: &str) -> impl Fn(&Lab) -> rampart_lab::Result<()> {
    let text = std::fs::read_to_string(dir(name).join("ruleset.nft")).unwrap();
    move |lab: &Lab| lab.load_nft(&text)
}

fn guest_basics() -> rampart_resolve::ir::Site {
    use common::*;
    site(
        vec![node("hv1", &[("vmbr0", &["192.0.2.10/24"])])],
        vec![
            guest(
                100,
                GuestKind::Vm,
                "hv1",
                &[("vmbr0", [0x0e, 0, 0, 0, 0x64, 0], &["192.0.2.100/24"])],
            ),
            guest(
                101,
                GuestKind::Vm,
                "hv1",
                &[("vmbr0", [0x0e, 0, 0, 0, 0x65, 0], &["192.0.2.101/24"])],
            ),
            guest(
                200,
                GuestKind::Ct,
                "hv1",
                &[("vmbr0", [0x0e, 0, 0, 0, 0xc8, 0], &["192.0.2.200/24"])],
            ),
        ],
    )
}

fn host_basics() -> rampart_resolve::ir::Site {
    use common::*;
    site(
        vec![node(
            "hv1",
            &[("vmbr0", &["192.0.2.10/24", "2001:db8:1::10/64"])],
        )],
        vec![],
    )
}

#[test]
fn guest_basics_case_passes_on_the_kernel() {
    let out = run_case_dir(
        &dir("guest-basics"),
        &guest_basics(),
        common::opts(),
        &nft_file("guest-basics"),
    )
    .unwrap();
    assert_eq!(out.len(), 12);
    assert_eq!(summary(&out), "12 passed, 0 failed\n", "{}", summary(&out));
}

#[test]
fn host_basics_case_passes_on_the_kernel() {
    let out = run_case_dir(
        &dir("host-basics"),
        &host_basics(),
        common::opts(),
        &nft_file("host-basics"),
    )
    .unwrap();
    assert_eq!(summary(&out), "13 passed, 0 failed\n", "{}", summary(&out));
}

#[test]
fn a_wrong_ruleset_is_reported_packet_by_packet() {
    // The host-basics packets against a ruleset that forgot the REJECT
    // and the management set.
    let text = std::fs::read_to_string(dir("host-basics").join("ruleset.nft"))
        .unwrap()
        .replace("tcp dport 25 reject with tcp reset", "")
        .replace("198.51.100.5, ", "");
    let packets = std::fs::read_to_string(dir("host-basics").join("packets.toml")).unwrap();
    let out = run_case_kernel(
        "host-basics",
        &packets,
        &host_basics(),
        common::opts(),
        &|lab: &Lab| lab.load_nft(&text),
    )
    .unwrap();
    assert_eq!(
        summary(&out),
        "FAIL host-basics: management set reaches SSH: expected ACCEPT, got DROP\n\
         FAIL host-basics: explicit REJECT answers: expected REJECT, got DROP\n\
         11 passed, 2 failed\n"
    );
}

#[test]
fn established_packets_in_a_case() {
    let packets = r#"
[[packet]]
name = "an open SSH session outlives a closed port"
from = "outside"
to = "host"
proto = "tcp"
dport = 2222
state = "established"
verdict = "ACCEPT"

[[packet]]
name = "a new one does not"
from = "outside"
to = "host"
proto = "tcp"
dport = 2222
verdict = "DROP"
"#;
    let ruleset = std::fs::read_to_string(dir("host-basics").join("ruleset.nft")).unwrap();
    let out = run_case_kernel(
        "est",
        packets,
        &host_basics(),
        common::opts(),
        &|lab: &Lab| lab.load_nft(&ruleset),
    )
    .unwrap();
    assert_eq!(summary(&out), "2 passed, 0 failed\n", "{}", summary(&out));
}

#[test]
fn a_broken_loader_fails_the_case() {
    let e = run_case_dir(
        &dir("host-basics"),
        &host_basics(),
        common::opts(),
        &|lab: &Lab| lab.load_nft("table inet x { chain y { bogus } }"),
    )
    .unwrap_err();
    assert!(e.0.contains("loading the ruleset"), "{e}");
}

#[test]
fn a_broken_loader_fails_every_packet_of_an_established_case() {
    let packets = "[[packet]]\nfrom = \"outside\"\nto = \"host\"\nproto = \"tcp\"\ndport = 22\nstate = \"established\"\nverdict = \"ACCEPT\"\n\n[[packet]]\nfrom = \"outside\"\nto = \"host\"\nproto = \"tcp\"\ndport = 22\nverdict = \"ACCEPT\"\n";
    let out = run_case_kernel(
        "est",
        packets,
        &host_basics(),
        common::opts(),
        &|lab: &Lab| lab.load_nft("bogus"),
    )
    .unwrap();
    assert_eq!(out.len(), 2);
    for o in &out {
        assert!(
            o.got
                .as_ref()
                .is_err_and(|e| e.contains("loading the ruleset")),
            "{o}"
        );
    }
    assert!(summary(&out).ends_with("0 passed, 2 failed\n"));
}

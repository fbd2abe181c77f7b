//! bad-inputs.md "Policy semantics" 27 and 31 (the lint; 28 and 30, the
//! lock-out and cluster guard, are tested in crates/sim/tests/guard.rs; 29
//! with the lockdown profile). Each asserts the code, the line and the
//! column, and that the case is a warning.

mod common;
use common::*;
use rampart_types::Severity;

#[test]
fn case27_rule_shadowed_by_a_wider_earlier_rule() {
    let d = expect_cluster(
        "[OPTIONS]\nenable: 1\n[RULES]\nIN ACCEPT -p tcp\nIN DROP -p tcp -dport 22\n",
        "E0501",
        5,
        1,
    );
    assert_eq!(d.severity, Severity::Warning);
    assert!(
        d.notes.iter().any(|n| n.contains("cluster.fw:4")),
        "{:?}",
        d.notes
    );
}

#[test]
fn case27_rule_shadowed_by_an_earlier_address_range() {
    expect_cluster(
        "[RULES]\nIN DROP -source 10.0.0.0/8\nIN ACCEPT -source 10.1.2.3 -p tcp -dport 443\n",
        "E0501",
        3,
        1,
    );
}

#[test]
fn case27_a_narrower_earlier_rule_shadows_nothing() {
    let d =
        cluster("[RULES]\nIN ACCEPT -p tcp -dport 22\nIN DROP -p tcp\nOUT DROP -p tcp -dport 22\n");
    assert!(
        !d.items
            .iter()
            .any(|x| x.code == "E0501" || x.code == "E0505"),
        "{:?}",
        d.items
    );
}

#[test]
fn case27_in_a_guest_file() {
    let d = expect(
        &[
            (
                "site.toml",
                "[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n[[guest]]\nid = 100\nnode = \"hv1\"\nnics = [{ name = \"net0\", bridge = \"vmbr0\", mac = \"0e:00:00:00:64:00\", ip = \"192.0.2.100/24\" }]\n",
            ),
            (
                "firewall/100.fw",
                "[OPTIONS]\nenable: 1\n[RULES]\nIN ACCEPT\nIN DROP -p udp -dport 53\n",
            ),
        ],
        "E0501",
        "firewall/100.fw",
        5,
        1,
    );
    assert_eq!(d.severity, Severity::Warning);
}

#[test]
fn case31_identical_rule_repeated() {
    let d = expect_cluster(
        "[RULES]\nIN ACCEPT -p tcp -dport 22\nIN ACCEPT -p tcp -dport 22 # again\n",
        "E0505",
        3,
        1,
    );
    assert_eq!(d.severity, Severity::Warning);
    assert!(
        d.notes.iter().any(|n| n.contains("cluster.fw:2")),
        "{:?}",
        d.notes
    );
}

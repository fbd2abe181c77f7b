//! The lock-out guard (bad-inputs 28 and 30): the simulator proves the admin
//! can still reach SSH and the API, and the cluster can still talk.

use rampart_sim::guard::lockout_check;
use rampart_types::SiteFiles;

const SITE: &str = r#"
[[node]]
name = "hv1"
bridges = { vmbr0 = ["192.0.2.10/24", "2001:db8:1::10/64"] }

[[node]]
name = "hv2"
bridges = { vmbr0 = ["192.0.2.11/24"] }
"#;

fn check(cluster: &str, host: &str) -> rampart_types::Diagnostics {
    let files = SiteFiles::new()
        .with("site.toml", SITE)
        .with("firewall/cluster.fw", cluster)
        .with("nodes/hv1/host.fw", host);
    let (site, diags) = rampart_resolve::load(&files);
    assert!(!diags.has_errors(), "{}", diags.render(&site.sources));
    let plan = rampart_nft::compile(&site, "hv1").expect("compiles");
    lockout_check(&site, &plan, "hv1")
}

const CLUSTER: &str = "[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[IPSET management]\n198.51.100.5\n";

#[test]
fn a_plain_drop_policy_keeps_management_open() {
    let d = check(CLUSTER, "[OPTIONS]\nenable: 1\n");
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn user_rules_cannot_lock_out_the_management_set() {
    // Management services from the management set are accepted before any
    // user rule (by design: a typo in host.fw cannot lock the admin out).
    let d = check(
        CLUSTER,
        "[OPTIONS]\nenable: 1\n\n[RULES]\nIN DROP -p tcp -dport 22\nIN REJECT -p tcp -dport 8006\n",
    );
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn blacklisting_the_admin_is_a_lockout_naming_the_rule() {
    let cluster = format!("{CLUSTER}\n[IPSET blacklist]\n198.51.100.0/24\n");
    let d = check(&cluster, "[OPTIONS]\nenable: 1\n");
    let lock: Vec<_> = d.items.iter().filter(|x| x.code == "E0502").collect();
    assert_eq!(lock.len(), 2, "SSH and the API: {d:?}");
    assert!(
        lock[0].message.contains("SSH") && lock[0].message.contains("dropped"),
        "{}",
        lock[0].message
    );
    assert!(
        lock[0].notes.iter().any(|n| n.contains("blacklist")),
        "the rule to blame: {:?}",
        lock[0].notes
    );
    assert!(d.has_errors());
}

#[test]
fn blacklisting_another_node_blocks_the_cluster() {
    let cluster = format!("{CLUSTER}\n[IPSET blacklist]\n192.0.2.11\n");
    let d = check(&cluster, "[OPTIONS]\nenable: 1\n");
    let c: Vec<_> = d.items.iter().filter(|x| x.code == "E0504").collect();
    assert_eq!(c.len(), 1, "{d:?}");
    assert!(c[0].message.contains("hv2"), "{}", c[0].message);
}

#[test]
fn a_disabled_firewall_is_never_a_lockout() {
    let d = check(
        "[OPTIONS]\nenable: 0\npolicy_in: DROP\n",
        "[RULES]\nIN DROP -p tcp -dport 22\n",
    );
    assert!(d.is_empty(), "{d:?}");
}

//! One test per case of shared/reference/bad-inputs.md, sections "Syntax",
//! "Addresses", "Ports, protocols, macros" and "References and names"
//! (cases 1-25). Each asserts the code, the line and the column.

mod common;
use common::*;
use rampart_types::Severity;

const C: &str = "firewall/cluster.fw";

// ---------- Syntax ----------

#[test]
fn case01_unknown_section() {
    let d = expect_cluster("[OPTIONS]\nenable: 1\n[RULEZ]\nIN ACCEPT\n", "E0101", 3, 2);
    assert_eq!(d.hint.as_deref(), Some("did you mean `RULES`?"));
}

#[test]
fn case01_group_section_in_host_fw() {
    expect(
        &[(
            "nodes/hv1/host.fw",
            "[OPTIONS]\nenable: 1\n\n[group web]\nIN ACCEPT\n",
        )],
        "E0102",
        "nodes/hv1/host.fw",
        4,
        2,
    );
}

#[test]
fn case01_group_section_in_guest_fw() {
    expect(
        &[("firewall/100.fw", "[group web]\n")],
        "E0102",
        "firewall/100.fw",
        1,
        2,
    );
}

#[test]
fn case02_unknown_option_with_hint() {
    let d = expect_cluster("[OPTIONS]\nenable: 1\npolciy_in: DROP\n", "E0103", 3, 1);
    assert_eq!(d.hint.as_deref(), Some("did you mean `policy_in`?"));
    assert_eq!(d.span.unwrap().len, 9);
}

#[test]
fn case02_option_of_another_level() {
    let d = expect(
        &[("nodes/hv1/host.fw", "[OPTIONS]\npolicy_forward: DROP\n")],
        "E0103",
        "nodes/hv1/host.fw",
        2,
        1,
    );
    assert!(d.notes.iter().any(|n| n.contains("cluster.fw")), "{d:?}");
}

#[test]
fn case03_rule_outside_section() {
    expect_cluster("IN ACCEPT -p tcp -dport 22\n[RULES]\n", "E0104", 1, 1);
}

#[test]
fn case03_entry_outside_section_indented() {
    expect_cluster("# header\n   10.0.0.1\n", "E0104", 2, 4);
}

#[test]
fn case04_option_twice() {
    let d = expect_cluster(
        "[OPTIONS]\nenable: 1\npolicy_in: DROP\nenable: 0\n",
        "E0105",
        4,
        1,
    );
    assert!(d.notes[0].contains("line 2"));
}

#[test]
fn case04_section_twice() {
    expect_cluster(
        "[RULES]\nIN ACCEPT -p tcp\n\n[RULES]\nIN DROP\n",
        "E0106",
        4,
        2,
    );
}

#[test]
fn case04_ipset_twice() {
    expect_cluster(
        "[IPSET a1]\n10.0.0.1\n[IPSET A1]\n10.0.0.2\n",
        "E0106",
        3,
        8,
    );
}

#[test]
fn case05_doubled_comma() {
    expect_cluster(
        "[RULES]\nIN ACCEPT -source 10.0.0.1,,10.0.0.2\n",
        "E0107",
        2,
        28,
    );
}

#[test]
fn case05_trailing_comma_in_ports() {
    expect_cluster("[RULES]\nIN ACCEPT -p tcp -dport 22,\n", "E0107", 2, 27);
}

#[test]
fn case05_bad_boolean() {
    let d = expect_cluster("[OPTIONS]\nenable: yes\n", "E0108", 2, 9);
    assert!(d.hint.unwrap().contains('1'));
}

#[test]
fn case06_bom_is_warned_and_stripped() {
    let mut b = vec![0xEF, 0xBB, 0xBF];
    b.extend_from_slice(b"[OPTIONS]\nenable: 1\n");
    let d = expect_bytes(&[(C, &b)], "E0109", C, 1, 1);
    assert_eq!(d.severity, Severity::Warning);
    let (site, diags) = rampart_resolve::load(&site(&[(C, &b)]));
    assert!(!diags.has_errors(), "{diags:?}");
    assert!(
        site.cluster.enable,
        "the BOM must not hide the [OPTIONS] header"
    );
}

#[test]
fn case06_crlf_is_warned_and_read_as_lf() {
    let b = b"[OPTIONS]\r\nenable: 1\r\n";
    let d = expect_bytes(&[(C, b)], "E0112", C, 1, 1);
    assert_eq!(d.severity, Severity::Warning);
    let (site, _) = rampart_resolve::load(&site(&[(C, b)]));
    assert!(site.cluster.enable);
}

#[test]
fn case06_bare_cr_is_an_error() {
    // Old Mac line endings: the whole file is one line with CRs inside.
    expect_bytes(&[(C, b"[OPTIONS]\renable: 1\r")], "E0113", C, 1, 10);
}

#[test]
fn case06_nul_byte() {
    let (site, d) = rampart_resolve::load(&site(&[(C, b"[OPTIONS]\nenable: 1\0\n")]));
    expect_at(&d, &site.sources, "E0110", C, 2, 10);
    assert!(!site.cluster.enable, "a line with a NUL is not read");
}

#[test]
fn case06_invalid_utf8() {
    let (site, d) = rampart_resolve::load(&site(&[(
        C,
        b"[OPTIONS]\nenable: 1\n[RULES]\nIN ACCEPT # caf\xe9\n",
    )]));
    expect_at(&d, &site.sources, "E0111", C, 4, 16);
    assert!(!site.cluster.enable, "nothing of an invalid file is used");
}

#[test]
fn case07_hash_inside_comment() {
    let (site, d) = load(&[(
        C,
        "[OPTIONS]\nenable: 1\n[RULES]\nIN ACCEPT -p tcp -dport 22 # ssh # from anywhere\n",
    )]);
    assert!(!d.has_errors(), "{d:?}");
    assert_eq!(site.nodes[0].firewall.rules.len(), 1);
}

#[test]
fn case07_very_long_line() {
    let long = format!(
        "[RULES]\nIN ACCEPT -source {}\nIN DROP\n",
        "10.0.0.1,".repeat(10_000)
    );
    let (site, d) = load(&[(C, &long)]);
    expect_at(&d, &site.sources, "E0114", C, 2, 1);
    // The next line is still read.
    assert_eq!(site.nodes[0].firewall.rules.len(), 1);
}

#[test]
fn case07_empty_file() {
    let d = expect(&[("firewall/100.fw", "")], "E0115", "firewall/100.fw", 1, 1);
    assert_eq!(d.severity, Severity::Warning);
}

// ---------- Addresses ----------

#[test]
fn case08_invalid_ipv4() {
    expect_cluster("[RULES]\nIN ACCEPT -source 300.1.1.1\n", "E0201", 2, 19);
}

#[test]
fn case08_prefix_too_long_v4() {
    expect_cluster("[IPSET x1]\n10.0.0.0/33\n", "E0201", 2, 1);
}

#[test]
fn case08_prefix_too_long_v6() {
    expect_cluster("[RULES]\nIN ACCEPT -dest ::/129\n", "E0201", 2, 17);
}

#[test]
fn case09_host_bits_warn_and_say_what_it_becomes() {
    let (site, d) = load(&[(
        C,
        "[OPTIONS]\nenable: 1\n[RULES]\nIN ACCEPT -source 10.0.0.5/24\n",
    )]);
    let x = expect_at(&d, &site.sources, "E0202", C, 4, 19);
    assert_eq!(x.severity, Severity::Warning);
    assert!(x.message.contains("10.0.0.0/24"), "{}", x.message);
    let r = &site.nodes[0].firewall.rules[0];
    assert_eq!(
        format!("{:?}", r.source),
        format!(
            "{:?}",
            Some(rampart_resolve::ir::AddrMatch::List(vec!["10.0.0.0/24"
                .parse::<ipnet::IpNet>()
                .map(|n| rampart_types::IpRange::from_net(&n))
                .unwrap()]))
        )
    );
}

#[test]
fn case10_mixed_families_in_list() {
    expect_cluster(
        "[RULES]\nIN ACCEPT -source 10.0.0.1,2001:db8::1\n",
        "E0203",
        2,
        28,
    );
}

#[test]
fn case10_mixed_families_in_rule() {
    expect_cluster(
        "[RULES]\nIN ACCEPT -source 10.0.0.1 -dest 2001:db8::1\n",
        "E0203",
        2,
        34,
    );
}

#[test]
fn case10_mixed_families_through_alias() {
    expect_cluster(
        "[ALIASES]\nsix 2001:db8::1\n[RULES]\nIN ACCEPT -source 10.0.0.1,six\n",
        "E0203",
        4,
        19,
    );
}

#[test]
fn case11_family_contradicts_protocol() {
    expect_cluster(
        "[RULES]\nIN ACCEPT -p icmp -source 2001:db8::1\n",
        "E0204",
        2,
        27,
    );
}

#[test]
fn case11_macro_without_that_family() {
    // DHCPv6 is IPv6-only.
    expect_cluster(
        "[RULES]\nIN DHCPv6(ACCEPT) -source 10.0.0.1\n",
        "E0204",
        2,
        27,
    );
}

#[test]
fn case12_backwards_range() {
    expect_cluster(
        "[RULES]\nIN ACCEPT -source 10.0.0.9-10.0.0.1\n",
        "E0205",
        2,
        19,
    );
}

#[test]
fn case13_empty_ipset_where_a_match_is_needed() {
    expect_cluster(
        "[IPSET nobody]\n\n[RULES]\nIN ACCEPT -source +nobody\n",
        "E0206",
        4,
        20,
    );
}

#[test]
fn case14_any_source_in_management_set() {
    let d = expect_cluster("[IPSET management]\n0.0.0.0/0\n", "E0207", 2, 1);
    assert_eq!(d.severity, Severity::Warning);
}

#[test]
fn case14_any_source_management_rule() {
    let d = expect_cluster(
        "[RULES]\nIN ACCEPT -source ::/0 -p tcp -dport 22\n",
        "E0207",
        2,
        1,
    );
    assert_eq!(d.severity, Severity::Warning);
}

#[test]
fn case15_leading_zero() {
    let d = expect_cluster("[RULES]\nIN ACCEPT -source 010.0.0.1\n", "E0208", 2, 19);
    assert_eq!(d.hint.as_deref(), Some("write `10.0.0.1`"));
}

#[test]
fn case15_zone_id() {
    expect_cluster("[RULES]\nIN ACCEPT -source fe80::1%eth0\n", "E0209", 2, 19);
}

// ---------- Ports, protocols, macros ----------

#[test]
fn case16_port_zero() {
    expect_cluster("[RULES]\nIN ACCEPT -p tcp -dport 0\n", "E0301", 2, 25);
}

#[test]
fn case16_port_too_big() {
    expect_cluster(
        "[RULES]\nIN ACCEPT -p tcp -sport 1024:65536\n",
        "E0301",
        2,
        30,
    );
}

#[test]
fn case16_backwards_port_range() {
    let d = expect_cluster("[RULES]\nIN ACCEPT -p tcp -dport 90:80\n", "E0302", 2, 25);
    assert_eq!(d.hint.as_deref(), Some("write `80:90`"));
}

#[test]
fn case17_port_without_proto() {
    expect_cluster("[RULES]\nIN ACCEPT -dport 22\n", "E0303", 2, 11);
}

#[test]
fn case17_port_with_portless_proto() {
    expect_cluster("[RULES]\nIN ACCEPT -p gre -dport 22\n", "E0304", 2, 18);
    // With icmp/icmpv6, Proxmox reads -dport as the ICMP type (legacy rules).
    let d = expect_cluster("[RULES]\nIN ACCEPT -p icmp -dport 22\n", "E0315", 2, 19);
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(d.hint.as_deref(), Some("write `-icmp-type 22` instead"));
}

#[test]
fn case18_unknown_icmp_type() {
    let d = expect_cluster(
        "[RULES]\nIN ACCEPT -p icmp -icmp-type echo-requst\n",
        "E0305",
        2,
        30,
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `echo-request`?"));
}

#[test]
fn case18_icmp_type_with_port() {
    expect_cluster(
        "[RULES]\nIN ACCEPT -p tcp -dport 22 -icmp-type echo-request\n",
        "E0306",
        2,
        18,
    );
}

#[test]
fn case18_icmp_type_of_other_family() {
    expect_cluster(
        "[RULES]\nIN ACCEPT -p icmpv6 -icmp-type source-quench\n",
        "E0307",
        2,
        32,
    );
}

#[test]
fn case18_icmp_type_without_icmp() {
    expect_cluster(
        "[RULES]\nIN ACCEPT -icmp-type echo-request\n",
        "E0313",
        2,
        22,
    );
}

#[test]
fn case19_unknown_protocol() {
    let d = expect_cluster("[RULES]\nIN ACCEPT -p tpc -dport 22\n", "E0308", 2, 14);
    assert_eq!(d.hint.as_deref(), Some("did you mean `tcp`?"));
}

#[test]
fn case19_unknown_service() {
    let d = expect_cluster("[RULES]\nIN ACCEPT -p tcp -dport sshh\n", "E0309", 2, 25);
    assert_eq!(d.hint.as_deref(), Some("did you mean `ssh`?"));
}

#[test]
fn case19_unknown_macro() {
    let d = expect_cluster("[RULES]\nIN SHH(ACCEPT)\n", "E0310", 2, 4);
    assert_eq!(d.hint.as_deref(), Some("did you mean `SSH`?"));
}

#[test]
fn case20_macro_conflicts_with_protocol() {
    expect_cluster("[RULES]\nIN SSH(ACCEPT) -p udp\n", "E0311", 2, 19);
}

#[test]
fn case20_macro_conflicts_with_port() {
    expect_cluster("[RULES]\nIN HTTP(ACCEPT) -dport 8080\n", "E0311", 2, 17);
}

#[test]
fn case21_duplicate_ipset_entry() {
    let d = expect_cluster(
        "[IPSET web]\n10.0.0.1\n10.0.0.2 # b\n10.0.0.1 # again\n",
        "E0312",
        4,
        1,
    );
    assert_eq!(d.severity, Severity::Warning);
}

// ---------- References and names ----------

#[test]
fn case22_undefined_alias() {
    let d = expect_cluster(
        "[ALIASES]\nmonitor 10.0.0.9\n[RULES]\nIN ACCEPT -source monitr\n",
        "E0401",
        4,
        19,
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `monitor`?"));
}

#[test]
fn case22_undefined_ipset() {
    expect_cluster("[RULES]\nIN ACCEPT -dest +nothere\n", "E0402", 2, 18);
}

#[test]
fn case22_undefined_group() {
    expect(
        &[("firewall/100.fw", "[RULES]\nGROUP webserver\n")],
        "E0403",
        "firewall/100.fw",
        2,
        7,
    );
}

#[test]
fn case22_guest_scope_in_cluster() {
    expect_cluster("[RULES]\nIN ACCEPT -source guest/foo\n", "E0404", 2, 19);
}

#[test]
fn case22_unknown_scope() {
    expect_cluster("[RULES]\nIN ACCEPT -source +vm/foo\n", "E0404", 2, 20);
}

#[test]
fn case22_dc_scope_not_defined() {
    // The guest defines `web`, but `dc/web` asks for the cluster's.
    expect(
        &[(
            "firewall/100.fw",
            "[IPSET web]\n10.0.0.1\n[RULES]\nIN ACCEPT -source +dc/web\n",
        )],
        "E0402",
        "firewall/100.fw",
        4,
        20,
    );
}

#[test]
fn case23_group_includes_itself() {
    expect_cluster(
        "[group loop]\nIN ACCEPT -p tcp\nGROUP loop\n",
        "E0405",
        3,
        7,
    );
}

#[test]
fn case23_group_nesting() {
    expect_cluster(
        "[group a1]\nGROUP b1\n[group b1]\nIN ACCEPT\n",
        "E0406",
        2,
        1,
    );
}

/// Issue 12: Proxmox accepts ipset names up to 64 bytes and hashes the
/// kernel name of long ones; so does rampart. Past 64 it is E0407.
#[test]
fn case24_set_name_too_long_for_kernel_is_hashed() {
    let name = format!("a{}", "b".repeat(63));
    let text = format!(
        "[OPTIONS]\nenable: 1\n\n[IPSET {name}]\n10.0.0.1\n\n[RULES]\nIN ACCEPT -source +{name} -p tcp -dport 22\n"
    );
    let (site, d) = load(&[("site.toml", SITE_TOML), ("firewall/cluster.fw", &text)]);
    assert!(!d.has_errors(), "{d:?}");
    let set = site.sets.iter().find(|s| s.name == name).expect("the set");
    // FNV-31a of `0-<name>`, as pve-firewall's compute_ipset_chain_name.
    let want = format!("dc-{:X}", rampart_resolve::fnv31a(&format!("0-{name}")));
    assert_eq!(set.kernel_name, want);
    assert!(set.kernel_name.len() <= 31);
    // Deterministic: the same name again gives the same kernel name.
    let (again, _) = load(&[("site.toml", SITE_TOML), ("firewall/cluster.fw", &text)]);
    assert_eq!(
        again
            .sets
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .kernel_name,
        want
    );
    let d = expect_cluster(
        &format!("[IPSET a{}]\n10.0.0.1\n", "b".repeat(64)),
        "E0407",
        1,
        8,
    );
    assert!(
        d.message.contains("64") || d.notes.iter().any(|n| n.contains("64")),
        "{d:?}"
    );
}

#[test]
fn case24_interface_name_too_long() {
    expect(
        &[(
            "nodes/hv1/host.fw",
            "[RULES]\nIN ACCEPT -i averyveryverylongif0\n",
        )],
        "E0407",
        "nodes/hv1/host.fw",
        2,
        14,
    );
}

#[test]
fn case24_guest_device_name_too_long() {
    let toml = format!("{SITE_TOML}\n[[guest]]\nid = 123456789\nkind = \"ct\"\nnode = \"hv1\"\nnics = [{{ name = \"net10\", bridge = \"vmbr0\" }}]\n");
    expect(&[("site.toml", &toml)], "E0407", "site.toml", 16, 6);
}

#[test]
fn case24_illegal_characters() {
    expect_cluster("[IPSET bad.name]\n10.0.0.1\n", "E0408", 1, 8);
}

#[test]
fn case25_interface_the_guest_does_not_have() {
    let d = expect(
        &[("firewall/100.fw", "[RULES]\nIN ACCEPT -i net7\n")],
        "E0409",
        "firewall/100.fw",
        2,
        14,
    );
    assert!(d.notes.iter().any(|n| n.contains("net0")));
}

#[test]
fn case25_guest_on_unknown_node() {
    let toml = format!("{SITE_TOML}\n[[guest]]\nid = 101\nnode = \"hv9\"\nnics = []\n");
    expect(&[("site.toml", &toml)], "E0410", "site.toml", 17, 8);
}

#[test]
fn case25_guest_on_unknown_bridge() {
    let toml = format!(
        "{SITE_TOML}\n[[guest]]\nid = 101\nnode = \"hv1\"\nnics = [{{ name = \"net0\", bridge = \"vmbr9\" }}]\n"
    );
    let d = expect(&[("site.toml", &toml)], "E0411", "site.toml", 18, 35);
    assert_eq!(d.hint.as_deref(), Some("did you mean `vmbr0`?"));
}

#[test]
fn case25_duplicate_guest_id() {
    let toml = format!("{SITE_TOML}\n[[guest]]\nid = 100\nnode = \"hv2\"\n");
    expect(&[("site.toml", &toml)], "E0412", "site.toml", 16, 6);
}

#[test]
fn case25_duplicate_guest_id_across_nodes() {
    let conf = "net0: virtio=0E:00:00:00:65:00,bridge=vmbr0,firewall=1\n";
    let (site, d) = rampart_resolve::load(
        &rampart_types::SiteFiles::new()
            .with("nodes/pve1/qemu-server/101.conf", conf)
            .with("nodes/pve2/qemu-server/101.conf", conf),
    );
    expect_at(
        &d,
        &site.sources,
        "E0412",
        "nodes/pve2/qemu-server/101.conf",
        1,
        1,
    );
}

#[test]
fn all_problems_of_a_file_are_reported() {
    let d = cluster("[OPTIONS]\npolciy_in: DROP\nenable: yes\n[RULES]\nIN SHH(ACCEPT)\nIN ACCEPT -p tpc\n[bogus]\n");
    let codes: Vec<&str> = d.items.iter().map(|x| x.code).collect();
    for c in ["E0103", "E0108", "E0310", "E0308", "E0101"] {
        assert!(codes.contains(&c), "{c} missing from {codes:?}");
    }
}

#[test]
fn case13_ipset_without_the_rules_family() {
    let d = expect_cluster(
        "[IPSET v4only]\n10.0.0.0/8\n[RULES]\nIN ACCEPT -p icmpv6 -source +v4only\n",
        "E0206",
        4,
        29,
    );
    assert!(d.message.contains("ipv6"), "{}", d.message);
}

#[test]
fn case25_firewall_file_for_an_unknown_guest() {
    let d = expect(
        &[("firewall/4242.fw", "[OPTIONS]\nenable: 1\n")],
        "E0415",
        "firewall/4242.fw",
        1,
        1,
    );
    assert_eq!(d.severity, Severity::Warning);
}

// ---------- Faults: "never firewall off" by omission (issue 17, docs/fail-closed.md) ----------

fn codes_of(d: &rampart_types::Diagnostics) -> Vec<&'static str> {
    d.items.iter().map(|x| x.code).collect()
}

#[test]
fn case42_empty_cluster_fw_is_an_error_not_firewall_off() {
    let d = expect_cluster("", "E0707", 1, 1);
    assert_eq!(d.severity, Severity::Error);
    assert!(d.hint.as_deref().unwrap().contains("enable: 0"), "{d:?}");
}

#[test]
fn case42_cluster_fw_cut_short_after_options_is_an_error() {
    // What a slow writer has written after 10 bytes.
    expect_cluster("[OPTIONS]\n", "E0707", 1, 1);
    // Proxmox writes a blank line after each section header, options sorted.
    expect_cluster("[OPTIONS]\n\nebtables: 0\n", "E0707", 1, 1);
}

#[test]
fn case42_cluster_fw_with_rules_but_no_enable_is_an_error() {
    // Proxmox would read this as "off"; rampart does not guess.
    let d = cluster("[RULES]\nIN ACCEPT -p tcp -dport 22\n");
    assert!(codes_of(&d).contains(&"E0707"), "{:?}", codes_of(&d));
    assert!(d.has_errors());
}

#[test]
fn case42_explicit_enable_0_is_the_only_way_to_turn_the_firewall_off() {
    let (site, d) = load(&[("firewall/cluster.fw", "[OPTIONS]\n\nenable: 0\n")]);
    assert!(!d.has_errors(), "{:?}", codes_of(&d));
    assert!(!site.cluster.enable);
    let (site, d) = load(&[("firewall/cluster.fw", "[OPTIONS]\n\nenable: 1\n")]);
    assert!(!d.has_errors(), "{:?}", codes_of(&d));
    assert!(site.cluster.enable);
}

#[test]
fn case42_a_fw_file_cut_mid_line_is_an_error() {
    // `-source 10.1.2.0/24` cut to `/2` would open a quarter of the address space.
    let d = expect_cluster(
        "[OPTIONS]\nenable: 1\n[RULES]\nIN ACCEPT -source 10.1.2.0/2",
        "E0708",
        4,
        1,
    );
    assert_eq!(d.severity, Severity::Error);
    expect(
        &[(
            "firewall/100.fw",
            "[OPTIONS]\nenable: 1\n[RULES]\nIN ACCEPT -p tcp",
        )],
        "E0708",
        "firewall/100.fw",
        4,
        1,
    );
    expect(
        &[("nodes/hv1/host.fw", "[OPTIONS]\nenable: 1")],
        "E0708",
        "nodes/hv1/host.fw",
        2,
        1,
    );
}

#[test]
fn case42_missing_cluster_fw_with_other_firewall_files_is_an_error() {
    let files = rampart_types::SiteFiles::new()
        .with("site.toml", SITE_TOML)
        .with("nodes/hv1/host.fw", "[OPTIONS]\nenable: 1\n")
        .with("firewall/100.fw", "[OPTIONS]\nenable: 1\n");
    let (_, d) = rampart_resolve::load(&files);
    let x = d.items.iter().find(|x| x.code == "E0705").expect("E0705");
    assert_eq!(x.severity, Severity::Error);
    // An editor that moved the file away keeps its backup beside it.
    let files = files.with("firewall/cluster.fw.bak", "[OPTIONS]\nenable: 1\n");
    let (_, d) = rampart_resolve::load(&files);
    assert!(codes_of(&d).contains(&"E0705"), "{:?}", codes_of(&d));
}

#[test]
fn case42_a_site_with_only_site_toml_warns() {
    let files = rampart_types::SiteFiles::new().with("site.toml", SITE_TOML);
    let (site, d) = rampart_resolve::load(&files);
    let x = d.items.iter().find(|x| x.code == "E0706").expect("E0706");
    assert_eq!(x.severity, Severity::Warning);
    assert!(!d.has_errors(), "{:?}", codes_of(&d));
    assert!(!site.cluster.enable);
}

#[test]
fn case42_a_leading_zero_guest_file_is_an_error() {
    // `0100.fw` is not guest 100's file: guest 100 would run unfiltered.
    let d = diags(&[("firewall/0100.fw", "[OPTIONS]\nenable: 1\n")]);
    let x = d.items.iter().find(|x| x.code == "E0709").expect("E0709");
    assert_eq!(x.severity, Severity::Error);
    assert!(
        x.hint.as_deref().unwrap().contains("firewall/100.fw"),
        "{x:?}"
    );
}

#[test]
fn case42_other_files_in_firewall_dirs_warn() {
    for p in [
        "firewall/abc.fw",
        "firewall/100.fw~",
        "firewall/notes.txt",
        "nodes/hv1/hots.fw",
    ] {
        let d = diags(&[(p, "[OPTIONS]\nenable: 1\n")]);
        let x = d
            .items
            .iter()
            .find(|x| x.code == "E0710")
            .unwrap_or_else(|| panic!("{p}: {:?}", codes_of(&d)));
        assert_eq!(x.severity, Severity::Warning);
        assert!(x.message.contains(p), "{}", x.message);
        assert!(!d.has_errors(), "{p}: {:?}", codes_of(&d));
    }
}

/// Issue 12: a corosync.conf ring address that is a host name nobody
/// resolves is an error at its line, never a link without peers.
#[test]
fn corosync_host_name_unresolved_is_reported_at_its_line() {
    let coro = "nodelist {\n  node {\n    name: hv1\n    ring0_addr: hv1.example.org\n  }\n  node {\n    name: hv2\n    ring0_addr: nowhere.example.org\n  }\n}\n";
    let d = expect(&[("corosync.conf", coro)], "E0417", "corosync.conf", 8, 17);
    assert!(d.message.contains("nowhere.example.org"), "{}", d.message);
    // hv1 is the site.toml node of that name (its first label): resolved.
    let all = diags(&[("corosync.conf", coro)]);
    assert_eq!(
        all.items.iter().filter(|x| x.code == "E0417").count(),
        1,
        "{all:?}"
    );
}

/// A bare /etc/pve tree: host names from the tree's `hosts` file give the
/// nodes their addresses and the corosync links their peers.
#[test]
fn corosync_host_names_from_the_hosts_file_in_a_bare_tree() {
    let coro = "nodelist {\n  node {\n    name: pve1\n    ring0_addr: pve1\n  }\n  node {\n    name: pve2\n    ring0_addr: pve2.lan\n  }\n}\n";
    let hosts =
        "127.0.0.1 localhost\n10.1.1.11 pve1.lan pve1\n10.1.1.12 pve2.lan pve2 # the second node\n";
    let files = rampart_types::SiteFiles::new()
        .with("corosync.conf", coro)
        .with("hosts", hosts)
        .with("firewall/cluster.fw", "[OPTIONS]\nenable: 1\n");
    let (site, d) = rampart_resolve::load(&files);
    assert!(!d.has_errors(), "{d:?}");
    let n1 = site.node("pve1").unwrap();
    assert_eq!(n1.addresses, vec!["10.1.1.11/32".parse().unwrap()]);
    let link = &n1.firewall.corosync[0];
    assert_eq!(link.local, "10.1.1.11".parse::<std::net::IpAddr>().unwrap());
    let peers: Vec<String> = site
        .set(link.peers)
        .entries
        .iter()
        .map(|e| e.range.start.to_string())
        .collect();
    assert_eq!(peers, vec!["10.1.1.12"]);
}

/// Issue 12 item 10: every problem of a rule at once — an unknown alias, an
/// unknown ipset and a missing `-p` on one line are three errors, in
/// cluster rules, security groups and guest rules alike.
#[test]
fn every_problem_of_a_rule_is_reported() {
    let line = "IN ACCEPT -source nosuchalias -dest +nosuchset -dport 22";
    let want = |d: &rampart_types::Diagnostics, path_line: u32| {
        let mut got: Vec<(String, u32, u32)> = d
            .items
            .iter()
            .filter(|x| x.span.is_some_and(|s| s.line == path_line))
            .map(|x| {
                let s = x.span.unwrap();
                (x.code.to_string(), s.line, s.col)
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("E0303".to_string(), path_line, 48),
                ("E0401".to_string(), path_line, 19),
                ("E0402".to_string(), path_line, 38),
            ],
            "{d:?}"
        );
    };
    want(
        &cluster(&format!("[OPTIONS]\nenable: 1\n\n[RULES]\n{line}\n")),
        5,
    );
    want(
        &cluster(&format!(
            "[OPTIONS]\nenable: 1\n\n[group web]\n{line}\n\n[RULES]\nGROUP web\n"
        )),
        5,
    );
    let toml = format!("{SITE_TOML}\n[[guest]]\nid = 100\nkind = \"vm\"\nnode = \"hv1\"\nnics = [{{ name = \"net0\", bridge = \"vmbr0\" }}]\n");
    want(
        &diags(&[
            ("site.toml", &toml),
            ("firewall/cluster.fw", "[OPTIONS]\nenable: 1\n"),
            (
                "firewall/100.fw",
                &format!("[OPTIONS]\nenable: 1\n\n[RULES]\n{line}\n"),
            ),
        ]),
        5,
    );
}

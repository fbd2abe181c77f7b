//! One golden per feature, from small sites written here; each output is
//! restored for real in a throwaway namespace (ipsets first). Things the
//! backend cannot express are NOT_EXPRESSIBLE errors naming the line.
//! `RAMPART_BLESS=1` rewrites the goldens.

mod common;

use rampart_ipt::{compile, compile_with, IptPlan, Mode};
use rampart_resolve::ir;
use rampart_types::{codes, SiteFiles};
use std::path::PathBuf;

const SITE: &str = r#"
[[node]]
name = "hv1"
bridges = { vmbr0 = ["192.0.2.10/24", "2001:db8:1::10/64"] }

[[guest]]
id = 100
kind = "vm"
node = "hv1"
nics = [
  { name = "net0", bridge = "vmbr0", mac = "0e:00:00:00:64:00", addresses = ["192.0.2.100/24", "2001:db8:1::100/64"], firewall = true },
  { name = "net1", bridge = "vmbr0", mac = "0e:00:00:00:64:01", addresses = ["192.0.2.101/24"], firewall = true },
]

[[guest]]
id = 200
kind = "ct"
node = "hv1"
nics = [
  { name = "net0", bridge = "vmbr0", mac = "0e:00:00:00:c8:00", addresses = ["192.0.2.200/24"], firewall = false },
]
"#;

/// A site from the standard topology plus the given .fw files.
fn site(cluster: &str, host: &str, guest: &str) -> ir::Site {
    site_toml(SITE, cluster, host, guest)
}

fn site_toml(toml: &str, cluster: &str, host: &str, guest: &str) -> ir::Site {
    let mut files = SiteFiles::new()
        .with("site.toml", toml)
        .with("firewall/cluster.fw", cluster);
    if !host.is_empty() {
        files.insert("nodes/hv1/host.fw", host);
    }
    if !guest.is_empty() {
        files.insert("firewall/100.fw", guest);
    }
    let (site, diags) = rampart_resolve::load(&files);
    assert!(!diags.has_errors(), "{}", diags.render(&site.sources));
    site
}

fn golden(name: &str, plan: &IptPlan) {
    let text = format!(
        "## ipset restore\n{}## iptables-restore\n{}## ip6tables-restore\n{}## sysctl\n{}## modules\n{}## hooks\n{}",
        plan.ipsets,
        plan.v4,
        plan.v6,
        plan.sysctls.iter().map(|(k, v)| format!("{k} = {v}\n")).collect::<String>(),
        plan.modules.iter().map(|m| format!("{m}\n")).collect::<String>(),
        plan.hooks.iter().map(|h| h.insert_args().join(" ") + "\n").collect::<String>(),
    );
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/features/{name}"));
    if std::env::var("RAMPART_BLESS").is_ok() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    } else {
        let want =
            std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing {}", path.display()));
        assert!(
            want == text,
            "{name}: output differs from {}:\n{text}",
            path.display()
        );
    }
    restore(plan);
}

fn restore(plan: &IptPlan) {
    if !common::is_root() {
        return;
    }
    let ns = rampart_lab::Netns::create(&format!("{}feat", rampart_lab::netns::unique_prefix()))
        .unwrap();
    ns.exec(&["ipset", "restore"], Some(&plan.ipsets)).unwrap();
    for (prog, text) in [
        ("iptables-restore", &plan.v4),
        ("ip6tables-restore", &plan.v6),
    ] {
        ns.exec(&[prog, "--test"], Some(text))
            .unwrap_or_else(|e| panic!("{prog} --test: {e}\n{text}"));
    }
    // Another tool's chain, loaded first, must survive a noflush load (twice).
    let noflush = plan.mode == Mode::Noflush;
    if noflush {
        for cmd in [
            vec!["iptables", "-N", "OTHER-TOOL"],
            vec![
                "iptables",
                "-A",
                "OTHER-TOOL",
                "-p",
                "tcp",
                "--dport",
                "9",
                "-j",
                "DROP",
            ],
            vec!["iptables", "-A", "INPUT", "-j", "OTHER-TOOL"],
        ] {
            ns.exec(&cmd, None).unwrap();
        }
    }
    common::load_plan(&ns, plan)
        .unwrap_or_else(|e| panic!("restore: {e}\n{}\n{}", plan.v4, plan.v6));
    common::load_plan(&ns, plan).unwrap();
    let saved = ns.exec(&["iptables-save", "-t", "filter"], None).unwrap();
    let hooks = saved
        .lines()
        .filter(|l| l.starts_with("-A INPUT") && l.ends_with("-j RAMPART-INPUT"))
        .count();
    assert_eq!(hooks, 1, "{saved}");
    if noflush {
        assert!(
            saved.contains("-A OTHER-TOOL -p tcp -m tcp --dport 9 -j DROP"),
            "{saved}"
        );
        assert!(saved.contains("-A INPUT -j OTHER-TOOL"), "{saved}");
        let first = saved.lines().find(|l| l.starts_with("-A INPUT")).unwrap();
        assert_eq!(
            first, "-A INPUT -j RAMPART-INPUT",
            "rampart's hook comes first"
        );
    }
}

const ON: &str = "[OPTIONS]\nenable: 1\n";

#[test]
fn host_protections_helpers_and_sysctls() {
    let host = "[OPTIONS]\ntcpflags: 1\nprotection_synflood: 1\nprotection_synflood_rate: 50\nprotection_synflood_burst: 100\n\
                nf_conntrack_helpers: ftp,tftp,sip\nnf_conntrack_max: 100000\nnf_conntrack_allow_invalid: 1\nndp: 1\n";
    let plan = compile(&site(ON, host, ""), "hv1").unwrap();
    assert!(plan.v4.contains("-j CT --helper ftp"));
    assert!(plan
        .v4
        .contains("--hashlimit-above 50/sec --hashlimit-burst 100"));
    assert!(!plan.v4.contains("--ctstate INVALID"), "allow_invalid");
    assert!(plan
        .sysctls
        .contains(&("net.netfilter.nf_conntrack_max".into(), "100000".into())));
    assert!(plan
        .sysctls
        .contains(&("net.bridge.bridge-nf-call-iptables".into(), "1".into())));
    golden("host-protections", &plan);
}

#[test]
fn logging_through_nflog_with_rate_limit() {
    let cluster = "[OPTIONS]\nenable: 1\nlog_ratelimit: enable=1,rate=5/minute,burst=7\n\n[RULES]\nIN ACCEPT -p tcp -dport 80 -log info\n";
    let host = "[OPTIONS]\nlog_level_in: warning\n";
    let plan = compile(&site(cluster, host, ""), "hv1").unwrap();
    assert!(plan.v4.contains("-m limit --limit 5/minute --limit-burst 7 -m comment --comment \"cluster.fw:6\" -j NFLOG --nflog-group 0"), "{}", plan.v4);
    golden("logging", &plan);
}

#[test]
fn guest_options_dhcp_ndp_radv_macfilter_ipfilter_ips_balance() {
    let guest = "[OPTIONS]\nenable: 1\ndhcp: 1\nndp: 1\nradv: 0\nipfilter: 1\nips: 1\nips_queues: 0:3\npolicy_in: REJECT\nlog_level_out: info\n\n\
                 [IPSET ipfilter-net0]\n192.0.2.100\n2001:db8:1::100\n\n\
                 [RULES]\nIN ACCEPT -i net1 -p tcp -dport 22\nOUT DROP -p udp -dport 53,123,161:162\n";
    let plan = compile(&site(ON, "", guest), "hv1").unwrap();
    // net1's rule only in net1's chain; the CT's NIC without firewall has no chain.
    assert!(
        plan.v4.contains("-A RAMPART-tap100i1-IN -p tcp --dport 22"),
        "{}",
        plan.v4
    );
    assert!(!plan.v4.contains("-A RAMPART-tap100i0-IN -p tcp --dport 22"));
    assert!(!plan.v4.contains("veth200i0"));
    assert!(plan.v4.contains("-m mac ! --mac-source 0e:00:00:00:64:00 -m comment --comment \"auto:vm100-macfilter\" -j DROP"));
    assert!(plan
        .v4
        .contains("NFQUEUE --queue-balance 0:3 --queue-bypass"));
    golden("guest-options", &plan);
}

#[test]
fn sets_lists_ranges_and_many_ports() {
    let cluster = "[OPTIONS]\nenable: 1\n\n[IPSET everything]\n0.0.0.0/0\n!10.0.0.0/8\n::/0\n\n\
                   [IPSET ipset-name-at-the-kernel-lim]\n192.0.2.1-192.0.2.9\n\n[RULES]\n\
                   IN ACCEPT -source +everything -p tcp -dport 1000\n\
                   IN ACCEPT -source +ipset-name-at-the-kernel-lim -p tcp -dport 1001\n\
                   IN ACCEPT -source 198.51.100.1,198.51.100.7,203.0.113.0/25 -p tcp -dport 1002\n\
                   IN ACCEPT -source 198.51.100.10-198.51.100.20 -p udp -dport 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,20:30\n";
    let plan = compile(&site(cluster, "", ""), "hv1").unwrap();
    for l in plan.ipsets.lines().filter(|l| l.starts_with("create ")) {
        let name = l.split_whitespace().nth(1).unwrap();
        assert!(name.len() <= 31, "{name}");
    }
    assert!(plan.ipsets.contains("add dc-everything-4-T 0.0.0.0/1\n"));
    assert!(plan.ipsets.contains("10.0.0.0/8 nomatch"));
    assert!(plan
        .v4
        .contains("-m iprange --src-range 198.51.100.10-198.51.100.20"));
    assert_eq!(
        plan.v4.matches("-m multiport --dports").count()
            - plan.v4.matches("auto:management").count()
            - plan.v4.matches("auto:local_network").count(),
        2,
        "{}",
        plan.v4
    );
    golden("sets-lists-ports", &plan);
}

#[test]
fn platforms_xcpng_and_linux() {
    for platform in ["xcpng", "linux"] {
        let toml = SITE.replace(
            "name = \"hv1\"\n",
            &format!("name = \"hv1\"\nplatform = \"{platform}\"\n"),
        );
        let plan = compile(&site_toml(&toml, ON, "", ""), "hv1").unwrap();
        golden(&format!("platform-{platform}"), &plan);
    }
}

#[test]
fn full_mode_replaces_the_tables() {
    let s = site(
        ON,
        "[OPTIONS]\nnf_conntrack_helpers: ftp\n",
        "[OPTIONS]\nenable: 1\n",
    );
    let plan = compile_with(&s, "hv1", Mode::Full).unwrap();
    assert!(plan.hooks.is_empty());
    assert!(plan.v4.contains(":INPUT ACCEPT [0:0]\n"));
    assert!(plan
        .v4
        .contains("-A FORWARD -m comment --comment \"auto:hook\" -j RAMPART-FORWARD"));
    golden("full-mode", &plan);
}

#[test]
fn firewall_off_compiles_to_empty_chains() {
    let plan = compile(
        &site("[OPTIONS]\nenable: 0\n", "", "[OPTIONS]\nenable: 1\n"),
        "hv1",
    )
    .unwrap();
    assert!(!plan.v4.contains("-A RAMPART-INPUT"), "{}", plan.v4);
    golden("firewall-off", &plan);
}

#[test]
fn output_is_deterministic() {
    let s = site(
        ON,
        "",
        "[OPTIONS]\nenable: 1\n\n[RULES]\nIN ACCEPT -source 198.51.100.1,198.51.100.2\n",
    );
    assert_eq!(compile(&s, "hv1").unwrap(), compile(&s, "hv1").unwrap());
}

#[test]
fn not_expressible_is_an_error_naming_the_line() {
    // A FORWARD rule on a guest (the resolver should refuse it; the backend
    // must not drop it silently if one gets through).
    let mut s = site(
        ON,
        "",
        "[OPTIONS]\nenable: 1\n\n[RULES]\nIN ACCEPT -p tcp -dport 80\n",
    );
    let g = s.guests.iter_mut().find(|g| g.id == 100).unwrap();
    g.rules[0].dir = rampart_types::Direction::Forward;
    let err = compile(&s, "hv1").unwrap_err();
    assert!(
        err.items
            .iter()
            .any(|d| d.code == codes::NOT_EXPRESSIBLE.code),
        "{:?}",
        err
    );
    let text = err.render(&s.sources);
    assert!(text.contains("100.fw:5"), "{text}");

    let mut s = site(ON, "", "[OPTIONS]\nenable: 1\nips: 1\n");
    s.guests
        .iter_mut()
        .find(|g| g.id == 100)
        .unwrap()
        .options
        .ips_queues = Some((5, 2));
    let err = compile(&s, "hv1").unwrap_err();
    assert!(err
        .items
        .iter()
        .any(|d| d.code == codes::NOT_EXPRESSIBLE.code));

    let mut s = site(ON, "", "");
    s.nodes[0].firewall.options.nf_conntrack_helpers = vec!["quake3".into()];
    let err = compile(&s, "hv1").unwrap_err();
    assert!(err.render(&s.sources).contains("quake3"));

    assert!(compile(&s, "nope").is_err());
}

//! Golden tests of rendered diagnostics: what a user sees, byte for byte.

mod common;

fn render(files: &[(&str, &str)]) -> String {
    let (site, d) = common::load(files);
    d.render(&site.sources)
}

#[test]
fn golden_cluster_typos() {
    insta::assert_snapshot!(render(&[(
        "firewall/cluster.fw",
        "[OPTIONS]\nenable: yes\npolciy_in: DROP\n\n[RULES]\nIN SHH(ACCEPT) -source 10.0.0.5/24\nIN ACCEPT -p tcp -dport 90:80,sshh\nIN DENY -p tpc\n[RULEZ]\n",
    )]));
}

#[test]
fn golden_references() {
    insta::assert_snapshot!(render(&[
        ("firewall/cluster.fw", "[ALIASES]\nmonitor 203.0.113.9\n[IPSET trusted]\n10.0.0.1\n10.0.0.1\n[group web]\nIN HTTP(ACCEPT)\nGROUP web\n"),
        ("firewall/100.fw", "[RULES]\nIN ACCEPT -source monitr\nIN ACCEPT -source +trustd\nGROUP webb\nIN ACCEPT -i net7\n"),
    ]));
}

#[test]
fn golden_addresses_and_families() {
    insta::assert_snapshot!(render(&[(
        "firewall/cluster.fw",
        "[RULES]\nIN ACCEPT -source 010.0.0.1\nIN ACCEPT -source fe80::1%eth0\nIN ACCEPT -p icmp -source 2001:db8::1\nIN ACCEPT -source 10.0.0.9-10.0.0.1\nIN SSH(ACCEPT) -p udp\nIN ACCEPT -p icmpv6 -icmp-type source-quench\n",
    )]));
}

#[test]
fn golden_encoding() {
    let files = common::site(&[
        (
            "firewall/cluster.fw",
            b"\xef\xbb\xbf[OPTIONS]\r\nenable: 1\r\n",
        ),
        ("firewall/100.fw", b"[RULES]\nIN ACCEPT # caf\xe9\n"),
    ]);
    let (site, d) = rampart_resolve::load(&files);
    insta::assert_snapshot!(d.render(&site.sources));
}

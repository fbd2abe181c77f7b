//! The lab with an iptables-restore loader (the iptables backend's path),
//! both iptables flavours: bridged guest traffic matched by the bridge
//! port, which the lab names like the guest NIC (`tap100i0`).

mod common;

use rampart_lab::{Lab, Observed, PacketProto, Probe};
use rampart_types::Family::{V4, V6};

const V4_RULES: &str = "*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -i lo -j ACCEPT
-A INPUT -p tcp --dport 22 -j ACCEPT
-A INPUT -p tcp --dport 25 -j REJECT --reject-with tcp-reset
-A INPUT -p udp --dport 5000 -j REJECT --reject-with icmp-port-unreachable
-A INPUT -p icmp --icmp-type echo-request -j ACCEPT
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -m physdev --physdev-out tap100i0 --physdev-is-bridged -p tcp --dport 80 -j ACCEPT
-A FORWARD -m physdev --physdev-out tap100i0 --physdev-is-bridged -p tcp --dport 25 -j REJECT --reject-with tcp-reset
-A FORWARD -m physdev --physdev-out tap100i0 --physdev-is-bridged -j DROP
COMMIT
";

const V6_RULES: &str = "*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p ipv6-icmp --icmpv6-type neighbour-solicitation -j ACCEPT
-A INPUT -p ipv6-icmp --icmpv6-type neighbour-advertisement -j ACCEPT
-A INPUT -p tcp --dport 22 -j ACCEPT
-A INPUT -p udp --dport 5000 -j REJECT --reject-with icmp6-adm-prohibited
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -p ipv6-icmp --icmpv6-type neighbour-solicitation -j ACCEPT
-A FORWARD -p ipv6-icmp --icmpv6-type neighbour-advertisement -j ACCEPT
-A FORWARD -m physdev --physdev-out tap100i0 --physdev-is-bridged -p tcp --dport 80 -j ACCEPT
-A FORWARD -m physdev --physdev-out tap100i0 --physdev-is-bridged -p ipv6-icmp -j REJECT --reject-with icmp6-port-unreachable
-A FORWARD -m physdev --physdev-out tap100i0 --physdev-is-bridged -j DROP
COMMIT
";

fn check_flavour(v4: &str, v6: &str) {
    let lab = Lab::build(&common::basics(), "hv1", common::opts()).unwrap();
    lab.load(&[v4], V4_RULES).unwrap();
    lab.load(&[v6], V6_RULES).unwrap();
    use Observed::*;
    use PacketProto::*;
    let table = [
        (Probe::new("outside", "host", Tcp, Some(22), V4), Accept),
        (Probe::new("outside", "host", Tcp, Some(23), V4), Drop),
        (Probe::new("outside", "host", Tcp, Some(25), V4), Reject),
        (Probe::new("outside", "host", Udp, Some(5000), V4), Reject),
        (Probe::new("outside", "host", Icmp, None, V4), Accept),
        (Probe::new("outside", "host", Tcp, Some(22), V6), Accept),
        (Probe::new("outside", "host", Udp, Some(5000), V6), Reject),
        (Probe::new("outside", "host", Icmpv6, None, V6), Drop),
        (Probe::new("outside", "vm100", Tcp, Some(80), V4), Accept),
        (Probe::new("outside", "vm100", Tcp, Some(25), V4), Reject),
        (Probe::new("outside", "vm100", Tcp, Some(22), V4), Drop),
        (Probe::new("outside", "vm100", Tcp, Some(80), V6), Accept),
        (Probe::new("outside", "vm100", Icmpv6, None, V6), Reject),
        (Probe::new("outside", "vm100", Tcp, Some(22), V6), Drop),
        // Another port of the same bridge is not matched.
        (Probe::new("outside", "ct200", Tcp, Some(22), V4), Accept),
        (Probe::new("outside", "ct200", Tcp, Some(22), V6), Accept),
    ];
    let probes: Vec<Probe> = table.iter().map(|(p, _)| p.clone()).collect();
    let got = lab.probe_all(&probes);
    let bad: Vec<String> = table
        .iter()
        .zip(&got)
        .filter(|((_, want), got)| got.as_ref() != Ok(want))
        .map(|((p, want), got)| {
            format!(
                "{} -> {} {} {:?} {:?}: expected {want:?}, got {got:?}",
                p.from, p.to, p.proto, p.dport, p.family
            )
        })
        .collect();
    assert!(bad.is_empty(), "{v4}:\n{}", bad.join("\n"));
}

#[test]
fn iptables_nft_restore() {
    check_flavour("iptables-nft-restore", "ip6tables-nft-restore");
}

#[test]
fn iptables_legacy_restore() {
    check_flavour("iptables-legacy-restore", "ip6tables-legacy-restore");
}

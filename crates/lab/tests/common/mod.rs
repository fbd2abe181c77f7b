//! Hand-made IR for the lab tests (the resolver is built elsewhere; the
//! lab only reads nodes, bridges, guests and NICs).
#![allow(dead_code)]

use ipnet::IpNet;
use rampart_lab::{Helper, LabOptions};
use rampart_resolve::ir::*;
use rampart_types::{Action, LogLevel, Origin, SourceMap};
use std::time::Duration;

pub fn opts() -> LabOptions {
    let mut o = LabOptions::new(Helper::new(env!("CARGO_BIN_EXE_rampart-probe")));
    o.timeout = Duration::from_millis(400);
    o
}

fn nets(a: &[&str]) -> Vec<IpNet> {
    a.iter().map(|s| s.parse().unwrap()).collect()
}

pub fn node(name: &str, bridges: &[(&str, &[&str])]) -> Node {
    let bridges: Vec<Bridge> = bridges
        .iter()
        .map(|(n, a)| Bridge {
            name: n.parse().unwrap(),
            addresses: nets(a),
        })
        .collect();
    let addresses: Vec<IpNet> = bridges.iter().flat_map(|b| b.addresses.clone()).collect();
    Node {
        name: name.parse().unwrap(),
        backend: Backend::Nftables,
        platform: Platform::Proxmox,
        local_network: addresses.iter().map(|a| a.trunc()).collect(),
        addresses,
        bridges,
        firewall: HostFirewall {
            enabled: true,
            options: HostOptions {
                enable: true,
                log_level_in: LogLevel::Nolog,
                log_level_out: LogLevel::Nolog,
                log_level_forward: LogLevel::Nolog,
                nosmurfs: true,
                smurf_log_level: LogLevel::Nolog,
                tcpflags: false,
                tcp_flags_log_level: LogLevel::Nolog,
                ndp: true,
                nf_conntrack_max: 262144,
                nf_conntrack_tcp_timeout_established: 432000,
                nf_conntrack_tcp_timeout_syn_recv: 60,
                nf_conntrack_allow_invalid: false,
                nf_conntrack_helpers: vec![],
                protection_synflood: false,
                protection_synflood_rate: 200,
                protection_synflood_burst: 1000,
                log_nf_conntrack: false,
            },
            policy_in: Action::Drop,
            policy_out: Action::Accept,
            policy_forward: Action::Accept,
            rules: vec![],
            management: SetId(0),
            blacklist: None,
            cluster_peers: SetId(0),
            corosync: vec![],
        },
        origin: Origin::auto("test"),
        saved_files: Default::default(),
    }
}

/// `nics`: (bridge, mac, addresses).
pub fn guest(id: u32, kind: GuestKind, node: &str, nics: &[(&str, [u8; 6], &[&str])]) -> Guest {
    let prefix = if kind == GuestKind::Vm { "tap" } else { "veth" };
    Guest {
        id,
        kind,
        name: None,
        node: node.parse().unwrap(),
        nics: nics
            .iter()
            .enumerate()
            .map(|(i, (bridge, mac, addrs))| Nic {
                index: i as u32,
                name: format!("net{i}").parse().unwrap(),
                ifname: format!("{prefix}{id}i{i}").parse().unwrap(),
                bridge: bridge.parse().unwrap(),
                mac: Some(*mac),
                addresses: nets(addrs),
                firewall: true,
                ipfilter: None,
                vlan: None,
            })
            .collect(),
        enabled: true,
        options: GuestOptions {
            enable: true,
            macfilter: true,
            dhcp: false,
            ndp: true,
            radv: false,
            ipfilter: false,
            policy_in: Action::Drop,
            policy_out: Action::Accept,
            log_level_in: LogLevel::Nolog,
            log_level_out: LogLevel::Nolog,
            ips: false,
            ips_queues: None,
            spans: Default::default(),
        },
        rules: vec![],
        origin: Origin::auto("test"),
    }
}

pub fn site(nodes: Vec<Node>, guests: Vec<Guest>) -> Site {
    Site {
        sources: SourceMap::new(),
        name: "test".parse().unwrap(),
        cluster: ClusterOptions {
            enable: true,
            policy_in: Action::Drop,
            policy_out: Action::Accept,
            policy_forward: Action::Accept,
            log_ratelimit: LogRateLimit {
                enable: true,
                rate: 1,
                unit: "second".into(),
                burst: 5,
            },
            ebtables: true,
        },
        nodes,
        guests,
        sets: vec![IpSet {
            name: "management".parse().unwrap(),
            scope: SetScope::Cluster,
            kernel_name: "management".parse().unwrap(),
            entries: vec![],
            origin: Origin::auto("test"),
        }],
        index: Default::default(),
    }
}

/// guest-basics and host-basics merged: hv1 with vmbr0 (IPv4 and IPv6),
/// vm100, vm101 and ct200 on it, and a second node hv2 on the same LAN.
pub fn basics() -> Site {
    site(
        vec![
            node("hv1", &[("vmbr0", &["192.0.2.10/24", "2001:db8:1::10/64"])]),
            node("hv2", &[("vmbr0", &["192.0.2.11/24", "2001:db8:1::11/64"])]),
            // A node at another site, reached through the outside machine.
            node(
                "far1",
                &[("vmbr0", &["198.51.100.20/24", "2001:db8:99::20/64"])],
            ),
        ],
        vec![
            guest(
                100,
                GuestKind::Vm,
                "hv1",
                &[(
                    "vmbr0",
                    [0x0e, 0, 0, 0, 0x64, 0],
                    &["192.0.2.100/24", "2001:db8:1::100/64"],
                )],
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
                &[(
                    "vmbr0",
                    [0x0e, 0, 0, 0, 0xc8, 0],
                    &["192.0.2.200/24", "2001:db8:1::200/64"],
                )],
            ),
            guest(
                300,
                GuestKind::Vm,
                "hv2",
                &[("vmbr0", [0x0e, 0, 0, 0, 0x2c, 1], &["192.0.2.30/24"])],
            ),
        ],
    )
}

/// A hand-written ruleset in its own table: host rules in `input`, guest
/// rules (bridged, through br_netfilter) in `forward`.
pub const RULESET: &str = r#"
table inet rampart_test {
    chain input {
        type filter hook input priority 0; policy drop;
        ct state established,related accept
        ct state invalid drop
        iif lo accept
        icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept
        ip saddr 192.0.2.0/24 tcp dport 22 accept
        ip6 saddr 2001:db8:1::/64 tcp dport 22 accept
        ip saddr 203.0.113.9 tcp dport 443 accept
        tcp dport 25 reject with tcp reset
        ip saddr 203.0.113.78 udp dport 5001 reject with icmp type host-unreachable
        udp dport 5001 accept
        udp dport 5000 reject
        ip saddr 203.0.113.77 icmp type echo-request reject with icmp type host-unreachable
        icmp type { echo-request, timestamp-request } accept
        ip6 saddr 2001:db8:1::/64 icmpv6 type echo-request accept
    }
    chain forward {
        type filter hook forward priority 0; policy accept;
        ct state established,related accept
        ct state invalid drop
        icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
        ip daddr 192.0.2.100 tcp dport 80 accept
        ip6 daddr 2001:db8:1::100 tcp dport 80 accept
        ip daddr 192.0.2.100 tcp dport 25 reject with tcp reset
        ip6 daddr 2001:db8:1::100 tcp dport 25 reject with tcp reset
        ip daddr 192.0.2.100 udp dport 53 accept
        ip daddr 192.0.2.100 udp dport 54 reject
        ip6 daddr 2001:db8:1::100 udp dport 54 reject
        ip daddr 192.0.2.100 icmp type echo-request drop
        ip6 daddr 2001:db8:1::100 icmpv6 type echo-request reject
        ip saddr 192.0.2.101 ip daddr 192.0.2.100 tcp dport 22 accept
        ip daddr 192.0.2.100 drop
        ip6 daddr 2001:db8:1::100 drop
        ip saddr 192.0.2.200 tcp dport 80 reject with tcp reset
    }
    chain output {
        type filter hook output priority 0; policy accept;
        tcp dport 8081 drop
    }
}
"#;

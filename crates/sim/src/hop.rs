//! One hop of a packet through a node, given by the interfaces it enters
//! and leaves by, rather than by zones. The site-wide reachability check
//! (`rampart verify`, crate `rampart-intent`) follows a packet from node to
//! node — through WireGuard interfaces, routed between bridges, delivered to
//! the node itself or to a guest's bridge port — and asks this module what
//! each node it crosses does with it. The hooks passed are the ones
//! [`crate::Packet`] placement uses for the same path.

use crate::packet::{Placed, Stage, State};
use crate::walk::{self, Trace};
use rampart_nft::model::{Hook, TableFamily};
use rampart_nft::Plan;
use rampart_types::{Family, Proto};
use std::net::IpAddr;

/// Where a packet enters or leaves a node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Attach {
    /// A process of the node itself (source or destination).
    Local,
    /// A port of a bridge: a guest NIC (`tap100i0`), or `outside` for the
    /// wire beyond the bridge (the LAN, the upstream router, other nodes).
    Bridge { bridge: String, port: String },
    /// A routed interface that is not a bridge port: a WireGuard interface
    /// (`wg0`) or a plain uplink.
    Iface(String),
}

/// A packet crossing one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    pub saddr: IpAddr,
    pub daddr: IpAddr,
    pub proto: Proto,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// ICMP type number (echo request when `None`).
    pub icmp_type: Option<u8>,
    pub state: State,
    pub ingress: Attach,
    pub egress: Attach,
    /// Source MAC on a bridge port (a guest's NIC MAC).
    pub ether_saddr: Option<[u8; 6]>,
}

/// What `plan`'s node does with `hop`. Local-to-local is not a hop (it
/// stays on loopback) and is accepted without a walk.
pub fn simulate_hop(plan: &Plan, hop: &Hop) -> Trace {
    let family = Family::of(&hop.saddr);
    let v6 = family == Family::V6;
    let l4 = match &hop.proto {
        Proto::Icmp | Proto::Icmpv6 => {
            if v6 {
                58
            } else {
                1
            }
        }
        p => p.number(),
    };
    let icmp_type = if l4 == 1 || l4 == 58 {
        Some(hop.icmp_type.unwrap_or(if v6 { 128 } else { 8 }))
    } else {
        None
    };
    let (sport, dport) = if hop.proto.has_ports() {
        (Some(hop.sport.unwrap_or(40000)), hop.dport)
    } else {
        (None, None)
    };
    let tcp_flags = if l4 == 6 {
        match hop.state {
            State::New => rampart_nft::model::tcpflag::SYN,
            State::Established => rampart_nft::model::tcpflag::ACK,
        }
    } else {
        0
    };
    let stages = stages(&hop.ingress, &hop.egress);
    let ports = |a: IpAddr, p: Option<u16>| match (a, p) {
        (IpAddr::V6(x), Some(p)) => format!("[{x}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    };
    let summary = format!(
        "{} {} -> {}, {family}, {} ({} -> {})",
        match l4 {
            6 => "tcp".to_string(),
            17 => "udp".to_string(),
            1 => "icmp".to_string(),
            58 => "icmpv6".to_string(),
            n => format!("proto {n}"),
        },
        ports(hop.saddr, sport),
        ports(hop.daddr, dport),
        if hop.state == State::New {
            "new"
        } else {
            "established"
        },
        attach_name(&hop.ingress),
        attach_name(&hop.egress),
    );
    let placed = Placed {
        family,
        saddr: hop.saddr,
        daddr: hop.daddr,
        l4,
        sport,
        dport,
        icmp_type,
        icmp_code: icmp_type.map(|_| 0),
        tcp_flags,
        state: hop.state,
        ct_invalid: hop.state == State::New
            && icmp_type.is_some_and(|t| crate::packet::icmp_error(v6, t)),
        ether_saddr: match hop.ingress {
            Attach::Bridge { .. } => hop.ether_saddr.or(Some([0x02, 0, 0, 0, 0, 0x99])),
            _ => None,
        },
        saddr_fib: vec![],
        dest_broadcast_or_multicast: hop.daddr.is_multicast(),
        stages,
        summary,
    };
    walk::run(plan, placed)
}

fn attach_name(a: &Attach) -> String {
    match a {
        Attach::Local => "local".into(),
        Attach::Bridge { bridge, port } => format!("{bridge}/{port}"),
        Attach::Iface(i) => i.clone(),
    }
}

fn stages(ingress: &Attach, egress: &Attach) -> Vec<Stage> {
    let inet = TableFamily::Inet;
    let br = TableFamily::Bridge;
    let st = |family, hook, iif: Option<&str>, oif: Option<&str>| Stage {
        family,
        hook,
        iif: iif.map(str::to_string),
        oif: oif.map(str::to_string),
    };
    // The routed (L3) interface name and the bridge port, if any.
    let l3 = |a: &Attach| -> (Option<String>, Option<String>) {
        match a {
            Attach::Local => (None, None),
            Attach::Bridge { bridge, port } => (Some(bridge.clone()), Some(port.clone())),
            Attach::Iface(i) => (Some(i.clone()), None),
        }
    };
    let (iif, iport) = l3(ingress);
    let (oif, oport) = l3(egress);
    let mut s = vec![];
    match (ingress, egress) {
        (Attach::Local, Attach::Local) => {}
        (Attach::Local, _) => {
            s.push(st(inet, Hook::Output, None, oif.as_deref()));
            s.push(st(inet, Hook::Postrouting, None, oif.as_deref()));
            if oport.is_some() {
                s.push(st(br, Hook::Output, None, oport.as_deref()));
            }
        }
        (_, Attach::Local) => {
            if iport.is_some() {
                s.push(st(br, Hook::Prerouting, iport.as_deref(), None));
            }
            s.push(st(inet, Hook::Prerouting, iif.as_deref(), None));
            if iport.is_some() {
                s.push(st(br, Hook::Input, iport.as_deref(), None));
            }
            s.push(st(inet, Hook::Input, iif.as_deref(), None));
        }
        (Attach::Bridge { bridge: a, .. }, Attach::Bridge { bridge: b, .. }) if a == b => {
            // Bridged between two ports of one bridge.
            s.push(st(br, Hook::Prerouting, iport.as_deref(), None));
            s.push(st(inet, Hook::Prerouting, iif.as_deref(), None));
            s.push(st(br, Hook::Forward, iport.as_deref(), oport.as_deref()));
            s.push(st(inet, Hook::Forward, iif.as_deref(), oif.as_deref()));
            s.push(st(inet, Hook::Postrouting, None, oif.as_deref()));
            s.push(st(br, Hook::Postrouting, None, oport.as_deref()));
        }
        _ => {
            // Routed by the node from one interface to another.
            if iport.is_some() {
                s.push(st(br, Hook::Prerouting, iport.as_deref(), None));
            }
            s.push(st(inet, Hook::Prerouting, iif.as_deref(), None));
            if iport.is_some() {
                s.push(st(br, Hook::Input, iport.as_deref(), None));
            }
            s.push(st(inet, Hook::Forward, iif.as_deref(), oif.as_deref()));
            s.push(st(inet, Hook::Postrouting, None, oif.as_deref()));
            if oport.is_some() {
                s.push(st(br, Hook::Output, None, oport.as_deref()));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{simulate, Packet};
    use rampart_types::{Action, SiteFiles};

    fn site() -> rampart_resolve::ir::Site {
        let files = SiteFiles::new()
            .with(
                "site.toml",
                "[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n\n[[guest]]\nid = 100\nkind = \"vm\"\nnode = \"hv1\"\nnics = [{ name = \"net0\", bridge = \"vmbr0\", addresses = [\"192.0.2.100/24\"], firewall = true }]\n",
            )
            .with(
                "firewall/cluster.fw",
                "[OPTIONS]\nenable: 1\n\n[RULES]\nIN SSH(ACCEPT) -i wg0\n",
            )
            .with("firewall/100.fw", "[OPTIONS]\nenable: 1\n\n[RULES]\nIN HTTP(ACCEPT)\n");
        let (site, d) = rampart_resolve::load(&files);
        assert!(!d.has_errors(), "{}", d.render(&site.sources));
        site
    }

    fn hop(ingress: Attach, egress: Attach, dport: u16, daddr: &str) -> Hop {
        Hop {
            saddr: "10.0.0.5".parse().unwrap(),
            daddr: daddr.parse().unwrap(),
            proto: Proto::Tcp,
            sport: None,
            dport: Some(dport),
            icmp_type: None,
            state: State::New,
            ingress,
            egress,
            ether_saddr: None,
        }
    }

    #[test]
    fn a_rule_on_a_tunnel_interface_admits_what_arrives_through_it() {
        let site = site();
        let plan = rampart_nft::compile(&site, "hv1").unwrap();
        let wg = Attach::Iface("wg0".into());
        let t = simulate_hop(&plan, &hop(wg.clone(), Attach::Local, 22, "192.0.2.10"));
        assert_eq!(t.verdict, Action::Accept, "{t}");
        assert!(t.decided_by.unwrap().origin.contains("cluster.fw:"));
        // The same packet off the LAN meets the policy.
        let lan = Attach::Bridge {
            bridge: "vmbr0".into(),
            port: "outside".into(),
        };
        let t = simulate_hop(&plan, &hop(lan, Attach::Local, 22, "192.0.2.10"));
        assert_eq!(t.verdict, Action::Drop, "{t}");
    }

    #[test]
    fn routed_into_a_guest_meets_the_guest_rules_like_a_zone_packet() {
        let site = site();
        let plan = rampart_nft::compile(&site, "hv1").unwrap();
        let to_guest = Attach::Bridge {
            bridge: "vmbr0".into(),
            port: "tap100i0".into(),
        };
        for (port, want) in [(80, Action::Accept), (25, Action::Drop)] {
            let t = simulate_hop(
                &plan,
                &hop(
                    Attach::Iface("wg0".into()),
                    to_guest.clone(),
                    port,
                    "192.0.2.100",
                ),
            );
            assert_eq!(t.verdict, want, "{t}");
            // Bridged from the LAN: the zone placement agrees.
            let z = simulate(
                &site,
                "hv1",
                &Packet::tcp("outside", "vm100", port).source("192.0.2.50"),
            )
            .unwrap();
            let lan = Attach::Bridge {
                bridge: "vmbr0".into(),
                port: "outside".into(),
            };
            let mut h = hop(lan, to_guest.clone(), port, "192.0.2.100");
            h.saddr = "192.0.2.50".parse().unwrap();
            let t = simulate_hop(&plan, &h);
            assert_eq!(t.verdict, z.verdict, "{t}\n{z}");
        }
    }
}

//! Packets as users describe them (zones, protocol, ports), and their
//! placement on the node: addresses, interfaces, and the hooks they pass.

use rampart_nft::model::{FibType, Hook, TableFamily};
use rampart_nft::Plan;
use rampart_resolve::ir::{self, GuestKind};
use rampart_types::{Family, Proto};
use serde::Serialize;
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum State {
    #[default]
    New,
    Established,
}

/// `outside`, `host`, `vm<id>`, `vm<id>i<n>`, `ct<id>`, `ct<id>i<n>`, or
/// another node by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Zone {
    Outside,
    Host,
    Guest {
        kind: GuestKind,
        id: u32,
        nic: Option<u32>,
    },
    Node(String),
}

impl Zone {
    pub fn parse(s: &str) -> Zone {
        match s {
            "outside" => return Zone::Outside,
            "host" => return Zone::Host,
            _ => {}
        }
        for (prefix, kind) in [("vm", GuestKind::Vm), ("ct", GuestKind::Ct)] {
            if let Some(rest) = s.strip_prefix(prefix) {
                let (id, nic) = match rest.split_once('i') {
                    Some((a, b)) => (a, b.parse::<u32>().ok()),
                    None => (rest, None),
                };
                if let Ok(id) = id.parse::<u32>() {
                    if nic.is_some() || !rest.contains('i') {
                        return Zone::Guest { kind, id, nic };
                    }
                }
            }
        }
        Zone::Node(s.to_string())
    }
}

/// A packet: the fields of a conformance case's `[[packet]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Packet {
    pub from: Zone,
    pub to: Zone,
    pub proto: Proto,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// Name or number (`echo-request`, `8`); default echo-request.
    pub icmp_type: Option<String>,
    /// ICMP code; default 0.
    pub icmp_code: Option<u8>,
    pub source: Option<IpAddr>,
    pub dest: Option<IpAddr>,
    pub family: Option<Family>,
    pub state: State,
    /// A guest sender using another MAC than its NIC's (`source_mac`).
    pub source_mac: Option<[u8; 6]>,
    /// The packet arrives on this interface rather than a bridge port (a
    /// WireGuard tunnel, a plain NIC): no bridge hooks on that side.
    pub iif: Option<String>,
    /// The packet leaves through this interface rather than a bridge port
    /// (routed into a tunnel, out of a gateway's WAN).
    pub oif: Option<String>,
}

/// A conformance case's packet (`packets.toml`, parsed by `rampart-case`)
/// as the simulator's packet: the one conversion the CLI, the lab and the
/// tests share.
impl From<&rampart_case::Packet> for Packet {
    fn from(p: &rampart_case::Packet) -> Packet {
        use rampart_case::PacketProto;
        let proto = match p.proto {
            PacketProto::Tcp => Proto::Tcp,
            PacketProto::Udp => Proto::Udp,
            PacketProto::Icmp => Proto::Icmp,
            PacketProto::Icmpv6 => Proto::Icmpv6,
        };
        let mut s = Packet::new(&p.from.to_string(), &p.to.to_string(), proto);
        s.dport = p.dport;
        s.sport = p.sport;
        s.source = p.source;
        s.dest = p.dest;
        s.icmp_type = p.icmp_type.clone();
        s.icmp_code = p.icmp_code;
        s.source_mac = p.source_mac;
        s.family = Some(p.family);
        s.state = match p.state {
            rampart_case::State::New => State::New,
            rampart_case::State::Established => State::Established,
        };
        s
    }
}

impl Packet {
    pub fn new(from: &str, to: &str, proto: Proto) -> Packet {
        Packet {
            from: Zone::parse(from),
            to: Zone::parse(to),
            proto,
            sport: None,
            dport: None,
            icmp_type: None,
            icmp_code: None,
            source: None,
            dest: None,
            family: None,
            state: State::New,
            source_mac: None,
            iif: None,
            oif: None,
        }
    }
    pub fn tcp(from: &str, to: &str, dport: u16) -> Packet {
        Packet {
            dport: Some(dport),
            ..Packet::new(from, to, Proto::Tcp)
        }
    }
    pub fn udp(from: &str, to: &str, dport: u16) -> Packet {
        Packet {
            dport: Some(dport),
            ..Packet::new(from, to, Proto::Udp)
        }
    }
    pub fn source(mut self, a: &str) -> Packet {
        self.source = Some(a.parse().expect("address"));
        self
    }
    pub fn dest(mut self, a: &str) -> Packet {
        self.dest = Some(a.parse().expect("address"));
        self
    }
    /// Arriving on interface `i` (see [`Packet::iif`]).
    pub fn via(mut self, i: &str) -> Packet {
        self.iif = Some(i.to_string());
        self
    }
    /// Leaving through interface `i` (see [`Packet::oif`]).
    pub fn out(mut self, i: &str) -> Packet {
        self.oif = Some(i.to_string());
        self
    }
    pub fn established(mut self) -> Packet {
        self.state = State::Established;
        self
    }
}

/// One hook the packet passes, with the interfaces the kernel shows there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stage {
    pub family: TableFamily,
    pub hook: Hook,
    pub iif: Option<String>,
    pub oif: Option<String>,
}

/// The packet as the kernel sees it, plus its path.
#[derive(Clone, Debug, Serialize)]
pub struct Placed {
    pub family: Family,
    pub saddr: IpAddr,
    pub daddr: IpAddr,
    pub l4: u8,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub icmp_type: Option<u8>,
    /// ICMP code (0 unless the packet names one).
    pub icmp_code: Option<u8>,
    pub tcp_flags: u8,
    pub state: State,
    /// Conntrack finds no state for the packet: an ICMP error (unreachable,
    /// time exceeded, ...) that quotes no connection it tracks. `ct state
    /// invalid` matches it, nothing else of conntrack does.
    pub ct_invalid: bool,
    pub ether_saddr: Option<[u8; 6]>,
    pub saddr_fib: Vec<FibType>,
    pub dest_broadcast_or_multicast: bool,
    pub stages: Vec<Stage>,
    pub summary: String,
}

/// Where a zone attaches: its bridge port (none for the host) and addresses.
struct End {
    host: bool,
    port: Option<String>,
    bridge: Option<String>,
    addrs: Vec<ipnet::IpNet>,
    mac: Option<[u8; 6]>,
    guest_filtered_here: bool,
}

const OUTSIDE_PORT: &str = "outside";

fn guest_end(
    site: &ir::Site,
    node: &ir::Node,
    kind: GuestKind,
    id: u32,
    nic: Option<u32>,
) -> Result<End, String> {
    let g = site.guest(id).filter(|g| g.kind == kind).ok_or_else(|| {
        format!(
            "no guest {}{id} in the site",
            if kind == GuestKind::Vm { "vm" } else { "ct" }
        )
    })?;
    let n = match nic {
        Some(i) => g
            .nics
            .iter()
            .find(|n| n.index == i)
            .ok_or_else(|| format!("guest {id} has no NIC net{i}"))?,
        None => g
            .nics
            .first()
            .ok_or_else(|| format!("guest {id} has no NIC"))?,
    };
    if g.node != node.name {
        // A guest on another node is reached through the bridge, like an outside machine.
        return Ok(End {
            host: false,
            port: None,
            bridge: None,
            addrs: n.addresses.clone(),
            mac: n.mac,
            guest_filtered_here: false,
        });
    }
    Ok(End {
        host: false,
        port: Some(n.ifname.to_string()),
        bridge: Some(n.bridge.to_string()),
        addrs: n.addresses.clone(),
        mac: n.mac,
        guest_filtered_here: true,
    })
}

/// ICMP error messages: conntrack relates them to the connection they
/// quote; a new one (quoting nothing it tracks) is invalid.
pub(crate) fn icmp_error(v6: bool, ty: u8) -> bool {
    if v6 {
        matches!(ty, 1..=4)
    } else {
        matches!(ty, 3 | 4 | 5 | 11 | 12)
    }
}

fn parse_icmp(v6: bool, s: &str) -> Option<u8> {
    if let Ok(n) = s.parse::<u8>() {
        return Some(n);
    }
    let alias = match s {
        "ping" => "echo-request",
        "pong" => "echo-reply",
        "neighbor-solicitation" | "neighbour-solicitation" => "nd-neighbor-solicit",
        "neighbor-advertisement" | "neighbour-advertisement" => "nd-neighbor-advert",
        "router-solicitation" if v6 => "nd-router-solicit",
        "router-advertisement" if v6 => "nd-router-advert",
        other => other,
    };
    (0..=255u8).find(|t| rampart_nft::print::icmp_name(v6, *t) == Some(alias))
}

pub fn place(site: &ir::Site, plan: &Plan, p: &Packet) -> Result<Placed, String> {
    let node = site
        .node(&plan.node)
        .ok_or_else(|| format!("no node {}", plan.node))?;
    let family = p
        .family
        .or(p.source.map(|a| Family::of(&a)))
        .or(p.dest.map(|a| Family::of(&a)))
        .or(p.proto.family())
        .unwrap_or(Family::V4);
    // The addresses of the node and every guest inside `net`: asked only
    // for an outside end without an address (a walk over every guest of
    // the site per packet made the lock-out guard of N nodes quadratic).
    let used_in = |net: &ipnet::IpNet| -> std::collections::HashSet<IpAddr> {
        node.addresses
            .iter()
            .map(|a| a.addr())
            .chain(site.guests.iter().flat_map(|g| {
                g.nics
                    .iter()
                    .flat_map(|n| n.addresses.iter().map(|a| a.addr()))
            }))
            .filter(|a| net.contains(a))
            .collect()
    };

    // First pass: the non-outside ends (to learn which bridge outside sits on).
    let end_of = |z: &Zone| -> Result<Option<End>, String> {
        Ok(Some(match z {
            Zone::Host => End {
                host: true,
                port: None,
                bridge: None,
                addrs: node.addresses.clone(),
                mac: None,
                guest_filtered_here: false,
            },
            Zone::Guest { kind, id, nic } => guest_end(site, node, *kind, *id, *nic)?,
            Zone::Node(name) => {
                let other = site
                    .node(name)
                    .ok_or_else(|| format!("unknown zone `{name}` (not a node of the site)"))?;
                End {
                    host: false,
                    port: None,
                    bridge: None,
                    addrs: other.addresses.clone(),
                    mac: None,
                    guest_filtered_here: false,
                }
            }
            Zone::Outside => return Ok(None),
        }))
    };
    let from = end_of(&p.from)?;
    let to = end_of(&p.to)?;
    let peer_bridge = |e: &Option<End>| e.as_ref().and_then(|e| e.bridge.clone());
    // Bridge for ends without one: the bridge whose network holds the
    // address, else the other end's bridge (a machine further away, routed
    // through it), else the first bridge with an address of the family.
    let pick_bridge = |other: &Option<End>, addr: Option<IpAddr>| -> Option<String> {
        if let Some(a) = addr {
            if let Some(b) = node
                .bridges
                .iter()
                .find(|b| b.addresses.iter().any(|n| n.contains(&a)))
            {
                return Some(b.name.to_string());
            }
        }
        if let Some(b) = peer_bridge(other) {
            return Some(b);
        }
        node.bridges
            .iter()
            .find(|b| b.addresses.iter().any(|n| Family::of(&n.addr()) == family))
            .or(node.bridges.first())
            .map(|b| b.name.to_string())
    };
    let outside_end = |other: &Option<End>, given: Option<IpAddr>| -> End {
        let bridge = pick_bridge(other, given);
        let mut addrs = vec![];
        if given.is_none() {
            // An unused address on the bridge's network of the family.
            if let Some(net) = node
                .bridges
                .iter()
                .find(|b| Some(b.name.as_str()) == bridge.as_deref())
                .and_then(|b| b.addresses.iter().find(|n| Family::of(&n.addr()) == family))
            {
                let used = used_in(net);
                if let Some(a) = net.hosts().take(4096).find(|a| !used.contains(a)) {
                    addrs.push(ipnet::IpNet::from(a));
                }
            }
        }
        End {
            host: false,
            port: Some(OUTSIDE_PORT.into()),
            bridge,
            addrs,
            mac: Some([0x02, 0, 0, 0, 0, 0x99]),
            guest_filtered_here: false,
        }
    };
    let from = match from {
        Some(mut e) => {
            if !e.host && e.port.is_none() {
                e.bridge = pick_bridge(&to, e.addrs.first().map(|a| a.addr()));
                e.port = Some(OUTSIDE_PORT.into());
            }
            e
        }
        None => outside_end(&to, p.source),
    };
    let to = match to {
        Some(mut e) => {
            if !e.host && e.port.is_none() {
                e.bridge = pick_bridge(
                    &Some(End { ..clone_end(&from) }),
                    e.addrs.first().map(|a| a.addr()),
                );
                e.port = Some(OUTSIDE_PORT.into());
            }
            e
        }
        None => outside_end(&Some(clone_end(&from)), p.dest),
    };

    // Interfaces that are not bridge ports (tunnels, plain NICs).
    let mut from = from;
    let mut to = to;
    let from_direct = p.iif.is_some() && !from.host;
    let to_direct = p.oif.is_some() && !to.host;
    if from_direct {
        from.bridge = p.iif.clone();
        from.port = None;
    }
    if to_direct {
        to.bridge = p.oif.clone();
        to.port = None;
    }
    let first = |e: &End, what: &str| -> Result<IpAddr, String> {
        e.addrs
            .iter()
            .map(|a| a.addr())
            .find(|a| Family::of(a) == family)
            .ok_or_else(|| format!("the {what} zone has no {family} address; give one explicitly"))
    };
    let saddr = match p.source {
        Some(a) => a,
        None => first(&from, "from")?,
    };
    let daddr = match p.dest {
        Some(a) => a,
        None => first(&to, "to")?,
    };
    if Family::of(&saddr) != family || Family::of(&daddr) != family {
        return Err("source and destination must be of the packet's family".into());
    }

    let v6 = family == Family::V6;
    let (l4, icmp_type) = match &p.proto {
        Proto::Icmp | Proto::Icmpv6 => {
            let name = p.icmp_type.as_deref().unwrap_or("echo-request");
            let isv6 = p.proto == Proto::Icmpv6;
            if isv6 != v6 {
                return Err(format!("{} in an {family} packet", p.proto));
            }
            let t = parse_icmp(isv6, name).ok_or_else(|| format!("unknown ICMP type `{name}`"))?;
            (p.proto.number(), Some(t))
        }
        other => (other.number(), None),
    };
    let (sport, dport) = if p.proto.has_ports() {
        (
            Some(p.sport.unwrap_or(40000)),
            Some(p.dport.ok_or("a tcp/udp packet needs a dport")?),
        )
    } else {
        (None, None)
    };
    let tcp_flags = if l4 == 6 {
        match p.state {
            State::New => rampart_nft::model::tcpflag::SYN,
            State::Established => rampart_nft::model::tcpflag::ACK,
        }
    } else {
        0
    };

    let mut saddr_fib = vec![];
    let is_mc = |a: &IpAddr| a.is_multicast();
    let is_bc = |a: &IpAddr| {
        match a {
        IpAddr::V4(v) => {
            v.is_broadcast()
                || node.bridges.iter().flat_map(|b| b.addresses.iter()).any(|n| matches!(n, ipnet::IpNet::V4(n4) if n4.prefix_len() < 31 && n4.broadcast() == *v))
        }
        IpAddr::V6(_) => false,
    }
    };
    if is_mc(&saddr) {
        saddr_fib.push(FibType::Multicast);
    }
    if is_bc(&saddr) {
        saddr_fib.push(FibType::Broadcast);
    }

    // The path.
    let inet = TableFamily::Inet;
    let br = TableFamily::Bridge;
    let st = |family, hook, iif: Option<&String>, oif: Option<&String>| Stage {
        family,
        hook,
        iif: iif.cloned(),
        oif: oif.cloned(),
    };
    let mut stages = vec![];
    if from.host && to.host {
        return Err("host to host traffic stays on loopback; not simulated".into());
    }
    if from.host {
        stages.push(st(inet, Hook::Output, None, to.bridge.as_ref()));
        stages.push(st(inet, Hook::Postrouting, None, to.bridge.as_ref()));
        if !to_direct {
            stages.push(st(br, Hook::Output, None, to.port.as_ref()));
        }
    } else {
        if !from_direct {
            stages.push(st(br, Hook::Prerouting, from.port.as_ref(), None));
        }
        stages.push(st(inet, Hook::Prerouting, from.bridge.as_ref(), None));
        if to.host {
            if !from_direct {
                stages.push(st(br, Hook::Input, from.port.as_ref(), None));
            }
            stages.push(st(inet, Hook::Input, from.bridge.as_ref(), None));
        } else if from.bridge == to.bridge && !from_direct && !to_direct {
            stages.push(st(br, Hook::Forward, from.port.as_ref(), to.port.as_ref()));
            stages.push(st(
                inet,
                Hook::Forward,
                from.bridge.as_ref(),
                to.bridge.as_ref(),
            ));
            stages.push(st(inet, Hook::Postrouting, None, to.bridge.as_ref()));
            stages.push(st(br, Hook::Postrouting, None, to.port.as_ref()));
        } else {
            // Routed by the node from one interface to another.
            if !from_direct {
                stages.push(st(br, Hook::Input, from.port.as_ref(), None));
            }
            stages.push(st(
                inet,
                Hook::Forward,
                from.bridge.as_ref(),
                to.bridge.as_ref(),
            ));
            stages.push(st(inet, Hook::Postrouting, None, to.bridge.as_ref()));
            if !to_direct {
                stages.push(st(br, Hook::Output, None, to.port.as_ref()));
            }
        }
    }
    let _ = to.guest_filtered_here;
    let proto = match l4 {
        6 => "tcp".to_string(),
        17 => "udp".to_string(),
        1 => "icmp".to_string(),
        58 => "icmpv6".to_string(),
        n => format!("proto {n}"),
    };
    let ports = |a: IpAddr, p: Option<u16>| match (a, p) {
        (IpAddr::V6(x), Some(p)) => format!("[{x}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    };
    let summary = format!(
        "{proto}{} {} -> {}, {family}, {}",
        icmp_type
            .map(|t| format!(
                " type {}",
                rampart_nft::print::icmp_name(v6, t)
                    .map(str::to_string)
                    .unwrap_or(t.to_string())
            ))
            .unwrap_or_default(),
        ports(saddr, sport),
        ports(daddr, dport),
        if p.state == State::New {
            "new"
        } else {
            "established"
        }
    );
    Ok(Placed {
        family,
        saddr,
        daddr,
        l4,
        sport,
        dport,
        icmp_type,
        icmp_code: icmp_type.map(|_| p.icmp_code.unwrap_or(0)),
        tcp_flags,
        state: p.state,
        ct_invalid: p.state == State::New && icmp_type.is_some_and(|t| icmp_error(v6, t)),
        ether_saddr: if from.host {
            None
        } else {
            p.source_mac.or(from.mac)
        },
        saddr_fib,
        dest_broadcast_or_multicast: is_mc(&daddr) || is_bc(&daddr),
        stages,
        summary,
    })
}

fn clone_end(e: &End) -> End {
    End {
        host: e.host,
        port: e.port.clone(),
        bridge: e.bridge.clone(),
        addrs: e.addrs.clone(),
        mac: e.mac,
        guest_filtered_here: e.guest_filtered_here,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn zones() {
        assert_eq!(
            Zone::parse("vm100"),
            Zone::Guest {
                kind: GuestKind::Vm,
                id: 100,
                nic: None
            }
        );
        assert_eq!(
            Zone::parse("ct200i1"),
            Zone::Guest {
                kind: GuestKind::Ct,
                id: 200,
                nic: Some(1)
            }
        );
        assert_eq!(Zone::parse("outside"), Zone::Outside);
        assert_eq!(Zone::parse("hv2"), Zone::Node("hv2".into()));
        assert_eq!(Zone::parse("vmhost"), Zone::Node("vmhost".into()));
    }
}

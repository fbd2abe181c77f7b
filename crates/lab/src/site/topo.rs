//! The shape of a site lab, computed without touching anything: which
//! namespaces, which links between them, which addresses and routes.
//! [`super::up`] carries it out.
//!
//! - `<id>-inet`: the internet. One switch bridge (`s<k>`) per segment
//!   that is shared by several nodes or holds public addresses; on a public
//!   segment it also has an address of its own (the upstream router).
//!   Nodes and clients with a public address off their bridges (an
//!   `endpoint`), or with none at all, hang off it on a point-to-point
//!   link (`wan`). Far addresses (an intent's internet source) go on its
//!   loopback.
//! - `<id>-n-<node>`: a node: its bridges with its addresses, one uplink
//!   per joined bridge (`up<i>`, a port of the bridge), `wan` if any.
//! - `<id>-g-<vm100>`: a guest: NIC `netN` is a veth whose other end, in
//!   the node, is named like the NIC (`tap100i0`) and is a port of its
//!   bridge.
//! - `<id>-c-<client>`: a WireGuard road warrior on a `wan` link.

use super::{Zone, ZoneKind};
use ipnet::IpNet;
use rampart_resolve::ir;
use rampart_types::Family;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Lines for `ip -n NS -batch -`, by namespace, in three phases (devices,
/// links between namespaces, addresses and routes) so every device exists
/// before anything refers to it.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    /// Every namespace, in creation order (`inet` first).
    pub namespaces: Vec<String>,
    /// Namespaces that forward (`ip_forward`, IPv6 forwarding).
    pub forwarding: BTreeSet<String>,
    /// Node namespaces (br_netfilter's sysctls on).
    pub nodes: BTreeSet<String>,
    pub devices: BTreeMap<String, Vec<String>>,
    pub links: BTreeMap<String, Vec<String>>,
    pub config: BTreeMap<String, Vec<String>>,
    /// Every place a probe can start or end: nodes, guests, clients, the
    /// internet.
    pub zones: BTreeMap<String, Zone>,
}

/// Public WireGuard endpoints the lab must make reachable: a node's or a
/// guest member's (`198.51.100.11`), as literal addresses.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    /// node name -> endpoint address
    pub nodes: BTreeMap<String, IpAddr>,
    /// guest id -> endpoint address
    pub guests: BTreeMap<u32, IpAddr>,
    /// WireGuard clients (road warriors), by name.
    pub clients: Vec<String>,
    /// Guests that are WireGuard members (with or without an endpoint).
    pub routers: BTreeSet<u32>,
}

/// Whether an address is on the public internet for the lab: not private
/// (RFC 1918, shared 100.64/10, ULA), not loopback or link-local. The
/// documentation ranges count as public (the sites use them for that).
pub fn is_public(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => {
            let o = v.octets();
            !(v.is_private()
                || v.is_loopback()
                || v.is_link_local()
                || v.is_unspecified()
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(v) => {
            let s = v.segments();
            !(v.is_loopback()
                || v.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

fn any(fam: Family) -> &'static str {
    if fam == Family::V4 {
        "0.0.0.0/0"
    } else {
        "::/0"
    }
}

fn nodad(a: &IpAddr) -> &'static str {
    if a.is_ipv6() {
        " nodad"
    } else {
        ""
    }
}

fn host(a: IpAddr) -> IpNet {
    IpNet::from(a)
}

/// A free address in `net`, counting down from the top.
fn pick_free(net: &IpNet, used: &BTreeSet<IpAddr>) -> Option<IpNet> {
    let mut cur = net.broadcast();
    for _ in 0..4096 {
        cur = match cur {
            IpAddr::V4(v) => IpAddr::V4((u32::from(v).checked_sub(1)?).into()),
            IpAddr::V6(v) => IpAddr::V6((u128::from(v).checked_sub(1)?).into()),
        };
        if !net.contains(&cur) || cur == net.network() {
            return None;
        }
        if !used.contains(&cur) {
            return IpNet::new(cur, net.prefix_len()).ok();
        }
    }
    None
}

/// The address a node or client without a public one gets on its `wan`
/// link: shared address space (100.64.0.0/10), as behind a carrier NAT
/// (there is no NAT in the lab: the internet routes it back).
fn nat_addr(k: usize) -> IpAddr {
    let k = k as u32 + 1;
    IpAddr::V4(std::net::Ipv4Addr::new(
        100,
        64 + (k >> 16) as u8,
        (k >> 8) as u8,
        k as u8,
    ))
}

/// Point-to-point link `k` between the internet and a `wan`: the
/// internet's end and the other end (IPv4 link-local /30s; IPv6 uses
/// fe80::1 / fe80::2 on every link).
fn p2p(k: usize) -> (String, String) {
    let base = 4 * k as u32;
    let a = std::net::Ipv4Addr::from(0xa9fe_0000u32 + base + 1); // 169.254.x.y
    let b = std::net::Ipv4Addr::from(0xa9fe_0000u32 + base + 2);
    (a.to_string(), b.to_string())
}

struct Seg {
    /// (node index, bridge index) of its bridges.
    bridges: Vec<(usize, usize)>,
    nets: BTreeSet<IpNet>,
    public: bool,
    /// The internet's addresses on it (public segments only).
    inet: Vec<IpNet>,
    /// Switch bridge in the internet namespace, when joined.
    switch: Option<String>,
}

/// A bridge of a node as the lab builds it: the site's, plus a `lan0`
/// holding node addresses that are on no bridge.
fn node_bridges(n: &ir::Node) -> Vec<ir::Bridge> {
    let mut out = n.bridges.clone();
    let on_bridges: BTreeSet<IpAddr> = out
        .iter()
        .flat_map(|b| b.addresses.iter().map(|a| a.addr()))
        .collect();
    let rest: Vec<IpNet> = n
        .addresses
        .iter()
        .filter(|a| !on_bridges.contains(&a.addr()))
        .copied()
        .collect();
    if !rest.is_empty() {
        out.push(ir::Bridge {
            name: ir::IfaceName::from_static("lan0"),
            addresses: rest,
        });
    }
    out
}

pub fn plan(site: &ir::Site, eps: &Endpoints, prefix: &str) -> Result<Topology, String> {
    let mut t = Topology::default();
    let inet = format!("{prefix}inet");
    t.namespaces.push(inet.clone());
    t.forwarding.insert(inet.clone());
    let push = |m: &mut BTreeMap<String, Vec<String>>, ns: &str, l: String| {
        m.entry(ns.to_string()).or_default().push(l)
    };

    let bridges: Vec<Vec<ir::Bridge>> = site.nodes.iter().map(node_bridges).collect();
    // Guests' NIC networks and addresses, per (node, bridge).
    let node_idx: BTreeMap<&str, usize> = site
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut used: BTreeSet<IpAddr> = BTreeSet::new();
    let mut bridge_nets: BTreeMap<(usize, usize), BTreeSet<IpNet>> = BTreeMap::new();
    let mut bridge_public: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (ni, bs) in bridges.iter().enumerate() {
        for (bi, b) in bs.iter().enumerate() {
            let e = bridge_nets.entry((ni, bi)).or_default();
            for a in &b.addresses {
                e.insert(a.trunc());
                used.insert(a.addr());
                if is_public(&a.addr()) {
                    bridge_public.insert((ni, bi));
                }
            }
        }
    }
    for g in &site.guests {
        let Some(&ni) = node_idx.get(g.node.as_str()) else {
            return Err(format!(
                "{}: node `{}` is not in the site",
                g.zone(),
                g.node
            ));
        };
        for c in &g.nics {
            let Some(bi) = bridges[ni].iter().position(|b| b.name == c.bridge) else {
                return Err(format!(
                    "{} {}: bridge `{}` is not a bridge of {}",
                    g.zone(),
                    c.name,
                    c.bridge,
                    g.node
                ));
            };
            let e = bridge_nets.entry((ni, bi)).or_default();
            for a in &c.addresses {
                e.insert(a.trunc());
                used.insert(a.addr());
                if is_public(&a.addr()) {
                    bridge_public.insert((ni, bi));
                }
            }
        }
    }
    // Segments: bridges that share a network are one wire.
    let mut segs: Vec<Seg> = Vec::new();
    let mut seg_of: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for (&key, nets) in &bridge_nets {
        let hits: BTreeSet<usize> = segs
            .iter()
            .enumerate()
            .filter(|(_, s)| !nets.is_empty() && s.nets.iter().any(|n| nets.contains(n)))
            .map(|(i, _)| i)
            .collect();
        let target = match hits.iter().next() {
            Some(&first) => first,
            None => {
                segs.push(Seg {
                    bridges: vec![],
                    nets: BTreeSet::new(),
                    public: false,
                    inet: vec![],
                    switch: None,
                });
                segs.len() - 1
            }
        };
        // Merge every other hit into the target.
        for &h in hits.iter().rev().filter(|&&h| h != target) {
            let s = segs.remove(h);
            for b in &s.bridges {
                seg_of.insert(*b, target);
            }
            segs[target].bridges.extend(s.bridges);
            segs[target].nets.extend(s.nets);
            for v in seg_of.values_mut() {
                if *v > h {
                    *v -= 1;
                }
            }
        }
        segs[target].bridges.push(key);
        segs[target].nets.extend(nets.iter().copied());
        seg_of.insert(key, target);
    }
    for s in &mut segs {
        s.public = s.bridges.iter().any(|b| bridge_public.contains(b));
    }
    // Endpoints on a bridge make it public too (a guest member's).
    for s in &mut segs {
        if eps
            .nodes
            .values()
            .chain(eps.guests.values())
            .any(|e| s.nets.iter().any(|n| n.contains(e)))
        {
            s.public = true;
        }
    }
    let mut k = 0;
    for s in &mut segs {
        if !(s.public || s.bridges.len() > 1) {
            continue;
        }
        let sw = format!("s{k}");
        k += 1;
        push(
            &mut t.devices,
            &inet,
            format!("link add {sw} type bridge mcast_snooping 0"),
        );
        push(&mut t.config, &inet, format!("link set {sw} up"));
        if s.public {
            for net in &s.nets {
                if !is_public(&net.addr()) {
                    continue;
                }
                let a = pick_free(net, &used)
                    .ok_or_else(|| format!("no free address in {net} for the internet"))?;
                used.insert(a.addr());
                push(
                    &mut t.config,
                    &inet,
                    format!("addr add {a} dev {sw}{}", nodad(&a.addr())),
                );
                s.inet.push(a);
            }
        }
        s.switch = Some(sw);
    }
    let mut inet_zone = Zone {
        ns: inet.clone(),
        kind: ZoneKind::Internet,
        addrs: segs
            .iter()
            .flat_map(|s| s.inet.iter().map(|a| a.addr()))
            .collect(),
        nets: segs
            .iter()
            .filter(|s| s.switch.is_some())
            .map(|s| {
                (
                    s.switch.clone().unwrap_or_default(),
                    s.nets.iter().copied().collect(),
                )
            })
            .collect(),
        busy_udp: vec![],
    };

    // Nodes.
    let mut wan_k = 0usize;
    for (ni, n) in site.nodes.iter().enumerate() {
        let ns = format!("{prefix}n-{}", n.name);
        t.namespaces.push(ns.clone());
        t.forwarding.insert(ns.clone());
        t.nodes.insert(ns.clone());
        let mut addrs: Vec<IpAddr> = Vec::new();
        let mut nets: Vec<(String, Vec<IpNet>)> = Vec::new();
        let mut defaults: BTreeSet<Family> = BTreeSet::new();
        for (bi, b) in bridges[ni].iter().enumerate() {
            push(
                &mut t.devices,
                &ns,
                format!("link add {} type bridge mcast_snooping 0", b.name),
            );
            push(&mut t.config, &ns, format!("link set {} up", b.name));
            for a in &b.addresses {
                push(
                    &mut t.config,
                    &ns,
                    format!("addr add {a} dev {}{}", b.name, nodad(&a.addr())),
                );
                addrs.push(a.addr());
            }
            nets.push((
                b.name.to_string(),
                bridge_nets
                    .get(&(ni, bi))
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default(),
            ));
        }
        // Uplinks of joined bridges.
        for (bi, b) in bridges[ni].iter().enumerate() {
            let Some(&si) = seg_of.get(&(ni, bi)) else {
                continue;
            };
            let Some(sw) = &segs[si].switch else { continue };
            let up = format!("up{bi}");
            let far = format!("n{ni}b{bi}");
            push(
                &mut t.links,
                &ns,
                format!("link add {up} type veth peer name {far} netns {inet}"),
            );
            push(
                &mut t.links,
                &ns,
                format!("link set {up} master {} up", b.name),
            );
            push(
                &mut t.config,
                &inet,
                format!("link set {far} master {sw} up"),
            );
        }
        // A public endpoint on no bridge, or no public address at all: a
        // `wan` link to the internet.
        let on_bridge = |a: &IpAddr| addrs.contains(a);
        let endpoint = eps
            .nodes
            .get(n.name.as_str())
            .copied()
            .filter(|e| !on_bridge(e));
        let has_public_seg = bridges[ni].iter().enumerate().any(|(bi, _)| {
            seg_of
                .get(&(ni, bi))
                .is_some_and(|&si| segs[si].public && !segs[si].inet.is_empty())
        });
        if endpoint.is_some() || !has_public_seg {
            let wan_addr = endpoint.unwrap_or_else(|| nat_addr(wan_k));
            wan(&mut t, &inet, &ns, wan_k, wan_addr);
            wan_k += 1;
            addrs.push(wan_addr);
            nets.push(("wan".into(), vec![]));
            defaults.insert(Family::V4);
            defaults.insert(Family::V6);
        }
        // Default routes via the internet on the first public segment.
        for fam in Family::both() {
            if defaults.contains(&fam) {
                continue;
            }
            'b: for (bi, b) in bridges[ni].iter().enumerate() {
                let Some(&si) = seg_of.get(&(ni, bi)) else {
                    continue;
                };
                for gw in &segs[si].inet {
                    if Family::of(&gw.addr()) == fam
                        && b.addresses.iter().any(|a| a.contains(&gw.addr()))
                    {
                        push(
                            &mut t.config,
                            &ns,
                            format!("route add {} via {} dev {}", any(fam), gw.addr(), b.name),
                        );
                        break 'b;
                    }
                }
            }
        }
        t.zones.insert(
            n.name.to_string(),
            Zone {
                ns,
                kind: ZoneKind::Node,
                addrs,
                nets,
                busy_udp: vec![],
            },
        );
    }

    // Router guests (several NICs, or a WireGuard member: a firewall VM):
    // the gateway of the other guests on a network with no better one.
    let routers: Vec<IpAddr> = site
        .guests
        .iter()
        .filter(|g| {
            g.nics.len() > 1 || eps.guests.contains_key(&g.id) || eps.routers.contains(&g.id)
        })
        .flat_map(|g| {
            g.nics
                .iter()
                .flat_map(|c| c.addresses.iter().map(|a| a.addr()))
        })
        .collect();
    // Guests.
    for g in &site.guests {
        let ni = node_idx[g.node.as_str()];
        let nns = format!("{prefix}n-{}", g.node);
        let ns = format!("{prefix}g-{}", g.zone());
        t.namespaces.push(ns.clone());
        if g.nics.len() > 1 || eps.guests.contains_key(&g.id) || eps.routers.contains(&g.id) {
            t.forwarding.insert(ns.clone());
        }
        let mut defaults = BTreeSet::new();
        let own: Vec<IpNet> = g
            .nics
            .iter()
            .flat_map(|c| c.addresses.iter().map(|a| a.trunc()))
            .collect();
        let mut routed = BTreeSet::new();
        for c in &g.nics {
            let bi = bridges[ni]
                .iter()
                .position(|b| b.name == c.bridge)
                .expect("checked above");
            let mac = c.mac.map(|m| {
                format!(
                    " address {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    m[0], m[1], m[2], m[3], m[4], m[5]
                )
            });
            push(
                &mut t.links,
                &nns,
                format!(
                    "link add {} type veth peer name {}{} netns {ns}",
                    c.ifname,
                    c.name,
                    mac.unwrap_or_default()
                ),
            );
            push(
                &mut t.links,
                &nns,
                format!("link set {} master {} up", c.ifname, c.bridge),
            );
            push(&mut t.config, &ns, format!("link set {} up", c.name));
            for a in &c.addresses {
                push(
                    &mut t.config,
                    &ns,
                    format!("addr add {a} dev {}{}", c.name, nodad(&a.addr())),
                );
            }
            // Default gateway: the internet on a public segment, else the
            // node's address on the bridge.
            let seg = seg_of.get(&(ni, bi)).map(|&si| &segs[si]);
            for fam in Family::both() {
                if defaults.contains(&fam)
                    || !c.addresses.iter().any(|a| Family::of(&a.addr()) == fam)
                {
                    continue;
                }
                let on_link = |x: &IpAddr| c.addresses.iter().any(|a| a.contains(x));
                let gw = seg
                    .into_iter()
                    .flat_map(|s| s.inet.iter().map(|a| a.addr()))
                    .find(|a| Family::of(a) == fam && on_link(a))
                    .or_else(|| {
                        bridges[ni][bi]
                            .addresses
                            .iter()
                            .map(|a| a.addr())
                            .find(|a| Family::of(a) == fam && on_link(a))
                    })
                    .or_else(|| {
                        let mine: Vec<IpAddr> = c.addresses.iter().map(|a| a.addr()).collect();
                        routers
                            .iter()
                            .copied()
                            .find(|a| Family::of(a) == fam && on_link(a) && !mine.contains(a))
                    });
                if let Some(gw) = gw {
                    push(
                        &mut t.config,
                        &ns,
                        format!("route add {} via {gw} dev {}", any(fam), c.name),
                    );
                    defaults.insert(fam);
                }
            }
            // The node's networks on its other bridges: through the node.
            for (bj, other) in bridges[ni].iter().enumerate() {
                if bj == bi {
                    continue;
                }
                for net in other.addresses.iter().map(|a| a.trunc()) {
                    let fam = Family::of(&net.addr());
                    let via = bridges[ni][bi].addresses.iter().find(|a| {
                        Family::of(&a.addr()) == fam
                            && c.addresses.iter().any(|x| x.contains(&a.addr()))
                    });
                    if let Some(via) = via {
                        if !own.iter().any(|o| o.contains(&net.addr())) && routed.insert(net) {
                            push(
                                &mut t.config,
                                &ns,
                                format!("route add {net} via {} dev {}", via.addr(), c.name),
                            );
                        }
                    }
                }
            }
        }
        t.zones.insert(
            g.zone().to_string(),
            Zone {
                ns,
                kind: ZoneKind::Guest,
                addrs: g
                    .nics
                    .iter()
                    .flat_map(|c| c.addresses.iter().map(|a| a.addr()))
                    .collect(),
                nets: g
                    .nics
                    .iter()
                    .map(|c| {
                        (
                            c.name.to_string(),
                            c.addresses.iter().map(|a| a.trunc()).collect(),
                        )
                    })
                    .collect(),
                busy_udp: vec![],
            },
        );
    }

    // Road warriors.
    for c in &eps.clients {
        let ns = format!("{prefix}c-{c}");
        t.namespaces.push(ns.clone());
        let a = nat_addr(wan_k);
        wan(&mut t, &inet, &ns, wan_k, a);
        wan_k += 1;
        t.zones.insert(
            c.clone(),
            Zone {
                ns,
                kind: ZoneKind::Client,
                addrs: vec![a],
                nets: vec![("wan".into(), vec![])],
                busy_udp: vec![],
            },
        );
    }
    inet_zone.nets.push(("lo".into(), vec![]));
    t.zones.insert("internet".into(), inet_zone);
    Ok(t)
}

/// A point-to-point `wan` link from `ns` to the internet carrying `addr`
/// (/32 or /128), with default routes both families.
fn wan(t: &mut Topology, inet: &str, ns: &str, k: usize, addr: IpAddr) {
    let (ia, na) = p2p(k);
    let far = format!("w{k}");
    let push = |m: &mut BTreeMap<String, Vec<String>>, ns: &str, l: String| {
        m.entry(ns.to_string()).or_default().push(l)
    };
    push(
        &mut t.links,
        ns,
        format!("link add wan type veth peer name {far} netns {inet}"),
    );
    push(&mut t.config, ns, "link set wan up".into());
    push(&mut t.config, ns, format!("addr add {na}/30 dev wan"));
    push(
        &mut t.config,
        ns,
        "addr add fe80::2/64 dev wan nodad".into(),
    );
    push(
        &mut t.config,
        ns,
        format!("addr add {} dev wan{}", host(addr), nodad(&addr)),
    );
    let src = if addr.is_ipv4() {
        format!(" src {addr}")
    } else {
        String::new()
    };
    push(
        &mut t.config,
        ns,
        format!("route add 0.0.0.0/0 via {ia} dev wan{src}"),
    );
    push(
        &mut t.config,
        ns,
        "route add ::/0 via fe80::1 dev wan".into(),
    );
    push(&mut t.config, inet, format!("link set {far} up"));
    push(&mut t.config, inet, format!("addr add {ia}/30 dev {far}"));
    push(
        &mut t.config,
        inet,
        format!("addr add fe80::1/64 dev {far} nodad"),
    );
    let via = if addr.is_ipv4() { na } else { "fe80::2".into() };
    push(
        &mut t.config,
        inet,
        format!("route add {} via {via} dev {far}", host(addr)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_means_not_private() {
        for a in ["198.51.100.10", "203.0.113.1", "8.8.8.8", "2001:db8::1"] {
            assert!(is_public(&a.parse().unwrap()), "{a}");
        }
        for a in [
            "10.0.0.1",
            "192.168.1.1",
            "100.64.0.2",
            "fd00::1",
            "fe80::1",
            "127.0.0.1",
        ] {
            assert!(!is_public(&a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn p2p_links_do_not_overlap() {
        let (a0, b0) = p2p(0);
        let (a1, _) = p2p(1);
        assert_eq!(
            (a0.as_str(), b0.as_str(), a1.as_str()),
            ("169.254.0.1", "169.254.0.2", "169.254.0.5")
        );
        assert_eq!(nat_addr(0).to_string(), "100.64.0.1");
        assert_eq!(nat_addr(255).to_string(), "100.64.1.0");
    }
}

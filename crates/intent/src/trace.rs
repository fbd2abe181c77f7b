//! Following one packet across the site, hop by hop (see `docs/intents.md`,
//! "What `rampart verify` checks").

use crate::world::{AddrKind, Entity, World};
use ipnet::IpNet;
use rampart_sim::hop::{simulate_hop, Attach, Hop};
use rampart_sim::State;
use rampart_types::{Action, Family, Proto};
use rampart_wg::InterfacePlan;
use serde::Serialize;
use std::net::IpAddr;

/// The packet, as the sender's application makes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub family: Family,
    /// `None`: the sender's kernel picks it for the route.
    pub saddr: Option<IpAddr>,
    pub daddr: IpAddr,
    pub proto: Proto,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub icmp_type: Option<u8>,
}

/// A firewall rule that decided, on which node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decider {
    pub node: String,
    /// `cluster.fw:12`, `site.toml:40`, `auto:policy_in DROP`.
    pub origin: String,
    pub chain: String,
    /// The rule as nft prints it.
    pub rule: String,
}

/// What became of the packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub reachable: bool,
    /// The source address used (given, or picked by the sender's route).
    pub saddr: IpAddr,
    /// The firewall decision that settled it: the last accept on the way
    /// (reachable), or the drop/reject (unreachable).
    pub decided_by: Option<Decider>,
    /// Why it stopped when no rule did (no route, not in AllowedIPs...).
    pub reason: Option<String>,
    /// `desktop -wg0-> host1 -vmbr0-> vm100`.
    pub hops: Vec<String>,
    /// Address translations on the way.
    pub notes: Vec<String>,
}

/// Where a packet arrives at an entity.
#[derive(Clone, Debug, PartialEq, Eq)]
enum In {
    /// Sent by the entity itself.
    Origin,
    /// A node's interface.
    At(Attach),
    /// A guest's NIC (already filtered by its node), a peer's tunnel, the
    /// internet's wire.
    Wire,
    /// Through WireGuard interface `iface` of the entity, from peer `from`.
    Tunnel { iface: String },
}

struct Walk<'w> {
    w: &'w World,
    p: Probe,
    saddr: Option<IpAddr>,
    hops: Vec<String>,
    notes: Vec<String>,
    last_accept: Option<Decider>,
}

enum Step {
    Next(Entity, In),
    Done,
    Fail {
        decided_by: Option<Decider>,
        reason: Option<String>,
    },
}

fn fail(reason: impl Into<String>) -> Step {
    Step::Fail {
        decided_by: None,
        reason: Some(reason.into()),
    }
}

/// Route destination: where a node, guest or peer sends a packet.
#[derive(Clone, Debug)]
enum Egress {
    Wg(String),
    Bridge(String),
    Nic(u32),
    Uplink,
    None,
}

/// Follow `probe` from `from` until it is delivered or stopped.
pub fn trace(w: &World, from: &Entity, probe: &Probe) -> Outcome {
    let mut walk = Walk {
        w,
        p: probe.clone(),
        saddr: probe.saddr,
        hops: vec![w.label(from)],
        notes: vec![],
        last_accept: None,
    };
    let mut at = from.clone();
    let mut how = In::Origin;
    for _ in 0..32 {
        match walk.step(&at, &how) {
            Step::Next(e, i) => {
                at = e;
                how = i;
            }
            Step::Done => {
                return walk.outcome(true, None, None);
            }
            Step::Fail { decided_by, reason } => {
                return walk.outcome(false, decided_by, reason);
            }
        }
    }
    walk.outcome(false, None, Some("routing loop (more than 32 hops)".into()))
}

impl World {
    /// A short label for hops.
    pub fn label(&self, e: &Entity) -> String {
        match e {
            Entity::Internet => "internet".into(),
            Entity::Lan { node, bridge } => format!("lan({node}/{bridge})"),
            _ => self.zone(e),
        }
    }
}

fn contains(n: &IpNet, a: &IpAddr) -> bool {
    n.contains(a)
}

/// Longest-prefix match of `a` among the peers' AllowedIPs.
fn wg_peer<'i>(i: &'i InterfacePlan, a: &IpAddr) -> Option<&'i rampart_wg::PeerPlan> {
    i.peers
        .iter()
        .filter_map(|p| {
            p.allowed_ips
                .iter()
                .filter(|n| contains(n, a))
                .map(|n| n.prefix_len())
                .max()
                .map(|l| (l, p))
        })
        .max_by_key(|(l, _)| *l)
        .map(|(_, p)| p)
}

impl<'w> Walk<'w> {
    fn outcome(
        &self,
        reachable: bool,
        decided_by: Option<Decider>,
        reason: Option<String>,
    ) -> Outcome {
        Outcome {
            reachable,
            saddr: self
                .saddr
                .unwrap_or_else(|| self.w.internet_addr(self.p.family)),
            decided_by: if reachable {
                self.last_accept.clone()
            } else {
                decided_by
            },
            reason,
            hops: self.hops.clone(),
            notes: self.notes.clone(),
        }
    }

    fn fam(&self) -> Family {
        self.p.family
    }

    fn owns(&self, e: &Entity, a: &IpAddr) -> bool {
        self.w.addrs_of(e).iter().any(|x| x.addr == *a)
    }

    /// The entity's address of the family in the network of `kind`.
    fn addr_where(&self, e: &Entity, f: impl Fn(&AddrKind) -> bool) -> Option<IpAddr> {
        self.w
            .addrs_of(e)
            .iter()
            .find(|a| Family::of(&a.addr) == self.fam() && f(&a.kind))
            .map(|a| a.addr)
    }

    fn pick_saddr(&mut self, a: Option<IpAddr>) {
        if self.saddr.is_none() {
            self.saddr = a;
        }
    }

    /// The address a node uses towards the internet (endpoint, else its
    /// first bridge or plain address).
    fn public_of(&self, e: &Entity) -> Option<IpAddr> {
        self.addr_where(e, |k| *k == AddrKind::Public)
            .or_else(|| self.addr_where(e, |k| matches!(k, AddrKind::Bridge(_) | AddrKind::Plain)))
            .or_else(|| self.addr_where(e, |k| matches!(k, AddrKind::Nic(_))))
    }

    /// The uplink attachment of a node for public address `a` (or its
    /// first bridge).
    fn uplink(&self, node: &str, a: Option<&IpAddr>) -> Attach {
        let b = a.and_then(|a| self.w.bridge_holding(node, a)).or_else(|| {
            let n = self.w.site.node(node)?;
            n.bridges
                .iter()
                .find(|b| {
                    b.addresses
                        .iter()
                        .any(|x| Family::of(&x.addr()) == self.fam())
                })
                .or(n.bridges.first())
                .map(|b| b.name.to_string())
        });
        match b {
            Some(bridge) => Attach::Bridge {
                bridge,
                port: "outside".into(),
            },
            None => Attach::Iface("uplink".into()),
        }
    }

    /// Run one hop of the packet through `node`'s firewall.
    fn hop(&mut self, node: &str, ingress: Attach, egress: Attach) -> Result<(), Step> {
        let fw = match self.w.firewall(node) {
            Ok(f) => f,
            Err(e) => return Err(fail(e)),
        };
        let saddr = self
            .saddr
            .unwrap_or_else(|| self.w.internet_addr(self.p.family));
        let ether = match &ingress {
            Attach::Bridge { port, .. } if port != "outside" => self.guest_mac(port),
            _ => None,
        };
        let h = Hop {
            saddr,
            daddr: self.p.daddr,
            proto: self.p.proto.clone(),
            sport: self.p.sport,
            dport: self.p.dport,
            icmp_type: self.p.icmp_type,
            state: State::New,
            ingress,
            egress,
            ether_saddr: ether,
        };
        let t = simulate_hop(fw, &h);
        let d = t.decided_by.as_ref().map(|r| Decider {
            node: node.to_string(),
            origin: r.origin.clone(),
            chain: r.chain.clone(),
            rule: r.text.clone(),
        });
        if t.verdict == Action::Accept {
            if d.is_some() {
                self.last_accept = d;
            }
            for n in &t.notes {
                if n.starts_with("masqueraded") {
                    self.masquerade(node, &h.egress);
                }
            }
            Ok(())
        } else {
            Err(Step::Fail {
                decided_by: d,
                reason: Some(format!("{} by {node}", t.verdict)),
            })
        }
    }

    fn guest_mac(&self, port: &str) -> Option<[u8; 6]> {
        self.w
            .site
            .guests
            .iter()
            .flat_map(|g| g.nics.iter())
            .find(|n| n.ifname == port)
            .and_then(|n| n.mac)
    }

    fn masquerade(&mut self, node: &str, egress: &Attach) {
        let e = Entity::Node(node.to_string());
        let new = match egress {
            Attach::Iface(i) => self
                .addr_where(
                    &e,
                    |k| matches!(k, AddrKind::Tunnel { iface, .. } if iface == i),
                )
                .or_else(|| self.public_of(&e)),
            Attach::Bridge { bridge, .. } => self
                .addr_where(&e, |k| matches!(k, AddrKind::Bridge(b) if b == bridge))
                .or_else(|| self.public_of(&e)),
            Attach::Local => None,
        };
        if let Some(a) = new {
            self.notes.push(format!(
                "{node} masquerades {} to {a}",
                self.saddr.map(|s| s.to_string()).unwrap_or_default()
            ));
            self.saddr = Some(a);
        }
    }

    /// Route lookup on a node: policy rules, then the main table (routes,
    /// WireGuard pools, bridges), else the uplink.
    fn node_route(&self, node: &str, iif: Option<&str>) -> (Egress, Option<String>) {
        let d = self.p.daddr;
        let routes = self.w.routes(node);
        let lookup = |table: Option<u32>| -> Option<(u8, Egress, String)> {
            let mut best: Option<(u8, Egress, String)> = None;
            let mut consider = |len: u8, e: Egress, o: String| {
                if best.as_ref().is_none_or(|(l, _, _)| len > *l) {
                    best = Some((len, e, o));
                }
            };
            for r in routes.iter().filter(|r| r.table == table) {
                if r.dest.contains(&d) {
                    let e = self.dev_egress(node, &r.dev);
                    consider(r.dest.prefix_len(), e, r.origin.clone());
                }
            }
            if table.is_none() {
                for i in self.w.wg_ifaces(&Entity::Node(node.to_string())) {
                    for a in &i.addresses {
                        if a.trunc().contains(&d) {
                            consider(
                                a.prefix_len(),
                                Egress::Wg(i.interface.to_string()),
                                format!("auto:wireguard {} pool", i.interface),
                            );
                        }
                    }
                }
                if let Some(nd) = self.w.site.node(node) {
                    for b in &nd.bridges {
                        for a in &b.addresses {
                            if a.trunc().contains(&d) {
                                consider(
                                    a.prefix_len(),
                                    Egress::Bridge(b.name.to_string()),
                                    format!("connected {}", b.name),
                                );
                            }
                        }
                    }
                }
            }
            best
        };
        let s = self.saddr;
        let mut rules = self.w.rules(node);
        rules.sort_by_key(|r| r.priority);
        for r in rules {
            let from_ok = s.is_some_and(|s| r.from.contains(&s));
            let iif_ok = r.iif.as_deref().is_none_or(|i| Some(i) == iif);
            if from_ok && iif_ok {
                if let Some((_, e, o)) = lookup(Some(r.table)) {
                    return (e, Some(format!("{} (table {}, {})", o, r.table, r.origin)));
                }
            }
        }
        match lookup(None) {
            Some((_, e, o)) => (e, Some(o)),
            None => (Egress::Uplink, None),
        }
    }

    fn dev_egress(&self, node: &str, dev: &str) -> Egress {
        let e = Entity::Node(node.to_string());
        if self.w.wg_ifaces(&e).iter().any(|i| i.interface == dev) {
            return Egress::Wg(dev.to_string());
        }
        if self
            .w
            .site
            .node(node)
            .is_some_and(|n| n.bridges.iter().any(|b| b.name == dev))
        {
            return Egress::Bridge(dev.to_string());
        }
        Egress::Uplink
    }

    /// Route lookup on a guest or peer: its WireGuard interfaces' AllowedIPs
    /// and pools, its NICs' networks, else its default.
    fn end_route(&self, e: &Entity) -> Egress {
        let d = self.p.daddr;
        let mut best: Option<(u8, Egress)> = None;
        let mut consider = |len: u8, eg: Egress| {
            if best.as_ref().is_none_or(|(l, _)| len > *l) {
                best = Some((len, eg));
            }
        };
        for i in self.w.wg_ifaces(e) {
            for a in &i.addresses {
                if a.trunc().contains(&d) {
                    consider(a.prefix_len(), Egress::Wg(i.interface.to_string()));
                }
            }
            for p in &i.peers {
                for n in &p.allowed_ips {
                    if n.contains(&d) {
                        consider(n.prefix_len(), Egress::Wg(i.interface.to_string()));
                    }
                }
            }
        }
        if let Entity::Guest(id) = e {
            if let Some(g) = self.w.site.guest(*id) {
                for nic in &g.nics {
                    for a in &nic.addresses {
                        if a.trunc().contains(&d) {
                            consider(a.prefix_len(), Egress::Nic(nic.index));
                        }
                    }
                }
                if best.is_none() {
                    // The default route: the first NIC with the family.
                    let nic = g
                        .nics
                        .iter()
                        .find(|n| {
                            n.addresses
                                .iter()
                                .any(|a| Family::of(&a.addr()) == self.fam())
                        })
                        .or(g.nics.first());
                    return match nic {
                        Some(n) => Egress::Nic(n.index),
                        None => Egress::None,
                    };
                }
            }
        }
        match best {
            Some((_, eg)) => eg,
            None if matches!(e, Entity::Peer(_)) => Egress::Uplink,
            None => Egress::None,
        }
    }

    fn step(&mut self, at: &Entity, how: &In) -> Step {
        let d = self.p.daddr;
        match at {
            Entity::Node(n) => self.at_node(n, how),
            Entity::Guest(id) => {
                if self.owns(at, &d) {
                    return if *how == In::Origin {
                        fail("a guest to itself is not a network path")
                    } else {
                        Step::Done
                    };
                }
                self.from_guest(*id, how)
            }
            Entity::Peer(name) => {
                if self.owns(at, &d) {
                    return Step::Done;
                }
                match self.end_route(at) {
                    Egress::Wg(i) => self.tunnel(at, &i),
                    _ => {
                        if *how != In::Origin {
                            return fail(format!("{name} does not forward to {d}"));
                        }
                        let p = self.public_of(at);
                        self.pick_saddr(p);
                        self.hops.push("internet".into());
                        Step::Next(Entity::Internet, In::Wire)
                    }
                }
            }
            Entity::Internet => self.from_internet(None),
            Entity::Lan { node, bridge } => {
                let n = node.clone();
                let b = bridge.clone();
                self.from_internet(Some((n, b)))
            }
        }
    }

    /// The packet is on the internet (or on a node's LAN): deliver it to
    /// the owner of the destination where it is reachable from there.
    fn from_internet(&mut self, lan: Option<(String, String)>) -> Step {
        let d = self.p.daddr;
        if self.saddr.is_none() {
            let a = self.w.internet_addr(self.fam());
            self.saddr = Some(a);
        }
        // A LAN machine reaches its own bridge's network directly.
        let on_lan = lan.as_ref().and_then(|(node, bridge)| {
            let holds = self.w.bridge_holding(node, &d).as_deref() == Some(bridge.as_str());
            holds.then(|| (node.clone(), bridge.clone()))
        });
        if on_lan.is_none() && !is_public(&d) {
            return fail(format!(
                "{d} is a private address: no route from the internet"
            ));
        }
        let Some(owner) = self.w.owner(&d).cloned() else {
            // A machine of the internet or of a LAN; it must be able to
            // answer the source.
            let s = self.saddr.unwrap_or(d);
            if on_lan.is_none() && !is_public(&s) && lan.is_none() {
                return fail(format!(
                    "{s} is a private source and nothing on the way masquerades it: the internet cannot answer"
                ));
            }
            return Step::Done;
        };
        let kind = self
            .w
            .addrs_of(&owner)
            .iter()
            .find(|a| a.addr == d)
            .map(|a| a.kind.clone());
        if let Some(AddrKind::Tunnel { network, .. }) = &kind {
            return fail(format!(
                "{d} is a tunnel address of WireGuard network {network}: not reachable from {}",
                if lan.is_some() {
                    "the LAN"
                } else {
                    "the internet"
                }
            ));
        }
        match &owner {
            Entity::Node(n) => {
                let ing = match &on_lan {
                    Some((_, b))
                        if self
                            .w
                            .site
                            .node(n)
                            .is_some_and(|x| x.bridges.iter().any(|y| &y.name == b)) =>
                    {
                        Attach::Bridge {
                            bridge: b.clone(),
                            port: "outside".into(),
                        }
                    }
                    _ => self.uplink(n, Some(&d)),
                };
                self.hops.push(n.clone());
                Step::Next(owner.clone(), In::At(ing))
            }
            Entity::Guest(id) => {
                let Some(g) = self.w.site.guest(*id) else {
                    return fail(format!("no guest {id}"));
                };
                let node = g.node.to_string();
                let bridge = g
                    .nics
                    .iter()
                    .find(|n| n.addresses.iter().any(|a| a.addr() == d))
                    .map(|n| n.bridge.to_string());
                let ing = match bridge {
                    Some(bridge) => Attach::Bridge {
                        bridge,
                        port: "outside".into(),
                    },
                    None => self.uplink(&node, Some(&d)),
                };
                self.hops.push(node.to_string());
                Step::Next(Entity::Node(node), In::At(ing))
            }
            Entity::Peer(p) => fail(format!("{p} has no public service at {d}")),
            _ => Step::Done,
        }
    }

    /// A guest sends (or routes) the packet out of one of its NICs or
    /// tunnels.
    fn from_guest(&mut self, id: u32, how: &In) -> Step {
        let e = Entity::Guest(id);
        let Some(g) = self.w.site.guest(id) else {
            return fail(format!("no guest {id}"));
        };
        let d = self.p.daddr;
        let eg = self.end_route(&e);
        let nic = match eg {
            Egress::Wg(i) => return self.tunnel(&e, &i),
            Egress::Nic(i) => i,
            _ => return fail(format!("{} has no route to {d}", self.w.zone(&e))),
        };
        let Some(nic) = g.nics.iter().find(|n| n.index == nic) else {
            return fail("no such NIC");
        };
        if *how == In::Origin {
            let a = nic
                .addresses
                .iter()
                .map(|a| a.addr())
                .find(|a| Family::of(a) == self.fam());
            self.pick_saddr(a);
            if self.saddr.is_none() {
                return fail(format!("{} has no {} address", self.w.zone(&e), self.fam()));
            }
        }
        let node = g.node.clone();
        let ingress = Attach::Bridge {
            bridge: nic.bridge.to_string(),
            port: nic.ifname.to_string(),
        };
        let on_link = nic.addresses.iter().any(|a| a.trunc().contains(&d));
        // The next hop on the bridge: the destination when on-link, else the
        // node when it routes this guest's network, else the upstream.
        let node_e = Entity::Node(node.to_string());
        let node_on_bridge = self.w.addrs_of(&node_e).iter().any(|a| {
            matches!(&a.kind, AddrKind::Bridge(b) if *b == nic.bridge)
                && nic.addresses.iter().any(|n| n.trunc().contains(&a.addr))
        });
        // A router guest on the same network (a WireGuard member, such as
        // a firewall VM) is the gateway of the others.
        let router = || -> Option<Entity> {
            self.w.site.guests.iter().find_map(|r| {
                if r.id == id || self.w.wg_owner(&Entity::Guest(r.id)).is_empty() {
                    return None;
                }
                let on_net = r.nics.iter().any(|rn| {
                    rn.bridge == nic.bridge
                        && rn
                            .addresses
                            .iter()
                            .any(|a| nic.addresses.iter().any(|n| n.trunc().contains(&a.addr())))
                });
                (on_net && r.node == node).then_some(Entity::Guest(r.id))
            })
        };
        let next = if on_link {
            self.w.owner(&d).cloned()
        } else if node_on_bridge && self.w.forwards(&node) {
            Some(node_e.clone())
        } else {
            router()
        };
        match next {
            Some(Entity::Node(n)) if n == node => {
                self.hops.push(n.clone());
                Step::Next(node_e, In::At(ingress))
            }
            Some(Entity::Guest(t))
                if self.w.site.guest(t).is_some_and(|tg| {
                    tg.node == node && tg.nics.iter().any(|x| x.bridge == nic.bridge)
                }) =>
            {
                let tg = self.w.site.guest(t).expect("guest");
                let tn = tg
                    .nics
                    .iter()
                    .find(|x| x.bridge == nic.bridge && x.addresses.iter().any(|a| a.addr() == d))
                    .or_else(|| tg.nics.iter().find(|x| x.bridge == nic.bridge))
                    .expect("nic");
                let egress = Attach::Bridge {
                    bridge: tn.bridge.to_string(),
                    port: tn.ifname.to_string(),
                };
                if let Err(s) = self.hop(&node, ingress, egress) {
                    return s;
                }
                self.hops.push(self.w.zone(&Entity::Guest(t)));
                Step::Next(Entity::Guest(t), In::Wire)
            }
            other => {
                let egress = Attach::Bridge {
                    bridge: nic.bridge.to_string(),
                    port: "outside".into(),
                };
                if let Err(s) = self.hop(&node, ingress, egress) {
                    return s;
                }
                self.off_bridge(&node, &nic.bridge.clone(), other)
            }
        }
    }

    /// The packet left `node` onto the wire of `bridge` (to another node, a
    /// LAN machine or the upstream router).
    fn off_bridge(&mut self, node: &str, bridge: &str, next: Option<Entity>) -> Step {
        let d = self.p.daddr;
        // Off the bridge's network, the upstream router takes it.
        let next = if self.w.bridge_holding(node, &d).as_deref() == Some(bridge) {
            next
        } else {
            None
        };
        match next {
            Some(Entity::Node(m)) => {
                let ing = match self.w.bridge_holding(&m, &d) {
                    Some(b) => Attach::Bridge {
                        bridge: b,
                        port: "outside".into(),
                    },
                    None => self.uplink(&m, Some(&d)),
                };
                self.hops.push(m.clone());
                Step::Next(Entity::Node(m), In::At(ing))
            }
            Some(Entity::Guest(t)) => {
                let Some(tg) = self.w.site.guest(t) else {
                    return fail("no guest");
                };
                let tn = tg
                    .nics
                    .iter()
                    .find(|x| x.addresses.iter().any(|a| a.addr() == d))
                    .map(|x| x.bridge.to_string())
                    .unwrap_or_else(|| bridge.to_string());
                let m = tg.node.to_string();
                self.hops.push(m.clone());
                Step::Next(
                    Entity::Node(m),
                    In::At(Attach::Bridge {
                        bridge: tn,
                        port: "outside".into(),
                    }),
                )
            }
            Some(Entity::Peer(_)) | Some(Entity::Internet) | Some(Entity::Lan { .. }) | None => {
                // Upstream: the internet, or a LAN machine.
                if self.w.owner(&d).is_none()
                    && self.w.bridge_holding(node, &d).as_deref() == Some(bridge)
                {
                    self.hops.push("lan".into());
                    return Step::Done;
                }
                self.hops.push("internet".into());
                Step::Next(Entity::Internet, In::Wire)
            }
        }
    }

    fn at_node(&mut self, n: &str, how: &In) -> Step {
        let d = self.p.daddr;
        let me = Entity::Node(n.to_string());
        let ingress = match how {
            In::Origin => Attach::Local,
            In::At(a) => a.clone(),
            In::Tunnel { iface } => Attach::Iface(iface.clone()),
            In::Wire => self.uplink(n, None),
        };
        if self.owns(&me, &d) {
            if ingress == Attach::Local {
                return fail("a node to itself stays on loopback: not a network path");
            }
            return match self.hop(n, ingress, Attach::Local) {
                Ok(()) => Step::Done,
                Err(s) => s,
            };
        }
        // A guest of this node.
        if let Some(Entity::Guest(t)) = self.w.owner(&d).cloned() {
            if let Some(g) = self.w.site.guest(t).filter(|g| g.node == n) {
                if let Some(nic) = g
                    .nics
                    .iter()
                    .find(|x| x.addresses.iter().any(|a| a.addr() == d))
                {
                    if ingress == Attach::Local {
                        let a = self.addr_where(
                            &me,
                            |k| matches!(k, AddrKind::Bridge(b) if *b == nic.bridge),
                        );
                        self.pick_saddr(a.or_else(|| self.public_of(&me)));
                    } else if !matches!(&ingress, Attach::Bridge { bridge, .. } if *bridge == nic.bridge)
                        && !self.w.forwards(n)
                    {
                        return fail(format!("{n} does not forward (no ip_forward in its plan)"));
                    }
                    let egress = Attach::Bridge {
                        bridge: nic.bridge.to_string(),
                        port: nic.ifname.to_string(),
                    };
                    if let Err(s) = self.hop(n, ingress, egress) {
                        return s;
                    }
                    self.hops.push(self.w.zone(&Entity::Guest(t)));
                    return Step::Next(Entity::Guest(t), In::Wire);
                }
            }
        }
        if ingress != Attach::Local && !self.w.forwards(n) {
            return fail(format!("{n} does not forward (no ip_forward in its plan)"));
        }
        let iif = match &ingress {
            Attach::Bridge { bridge, .. } => Some(bridge.clone()),
            Attach::Iface(i) => Some(i.clone()),
            Attach::Local => None,
        };
        let (eg, _why) = self.node_route(n, iif.as_deref());
        match eg {
            Egress::Wg(i) => {
                if ingress == Attach::Local {
                    let a = self.addr_where(
                        &me,
                        |k| matches!(k, AddrKind::Tunnel { iface, .. } if *iface == i),
                    );
                    self.pick_saddr(a);
                }
                if let Err(s) = self.hop(n, ingress, Attach::Iface(i.clone())) {
                    return s;
                }
                self.tunnel(&me, &i)
            }
            Egress::Bridge(b) => {
                if ingress == Attach::Local {
                    let a = self.addr_where(&me, |k| matches!(k, AddrKind::Bridge(x) if *x == b));
                    self.pick_saddr(a);
                }
                let next = self.w.owner(&d).cloned();
                if let Err(s) = self.hop(
                    n,
                    ingress,
                    Attach::Bridge {
                        bridge: b.clone(),
                        port: "outside".into(),
                    },
                ) {
                    return s;
                }
                self.off_bridge(n, &b, next)
            }
            Egress::Uplink | Egress::Nic(_) | Egress::None => {
                if ingress == Attach::Local {
                    let p = self.public_of(&me);
                    self.pick_saddr(p);
                }
                let up = self.uplink(n, self.public_of(&me).as_ref());
                if let Err(s) = self.hop(n, ingress, up.clone()) {
                    return s;
                }
                match up {
                    Attach::Bridge { bridge, .. } => {
                        let next = self.w.owner(&d).cloned();
                        self.off_bridge(n, &bridge, next)
                    }
                    _ => {
                        self.hops.push("internet".into());
                        Step::Next(Entity::Internet, In::Wire)
                    }
                }
            }
        }
    }

    /// Send the packet into WireGuard interface `iface` of `me`: pick the
    /// peer by AllowedIPs, check the tunnel can be up (the listener's
    /// firewall admits the handshake), and check the peer accepts the inner
    /// source (cryptokey routing).
    fn tunnel(&mut self, me: &Entity, iface: &str) -> Step {
        let d = self.p.daddr;
        let Some(i) = self
            .w
            .wg_ifaces(me)
            .into_iter()
            .find(|x| x.interface == iface)
        else {
            return fail(format!(
                "{} has no WireGuard interface {iface}",
                self.w.label(me)
            ));
        };
        if self.saddr.is_none() {
            let a = i
                .addresses
                .iter()
                .map(|a| a.addr())
                .find(|a| Family::of(a) == self.fam());
            self.saddr = a;
        }
        let Some(peer) = wg_peer(i, &d) else {
            return fail(format!(
                "{d} is in no peer's AllowedIPs on {} {iface}",
                self.w.label(me)
            ));
        };
        let network = i.network.clone();
        let my_owner = i.owner.clone();
        let peer_name = peer.name.clone();
        let peer_has_endpoint = peer.endpoint.is_some();
        let peer_endpoint = peer.endpoint.clone();
        let Some(pi) = self.w.wg.as_ref().and_then(|p| p.get(&network, &peer_name)) else {
            return fail(format!("peer {peer_name} has no interface in {network}"));
        };
        let pe = self.w.wg_entity(&network, &peer_name);
        // The handshake: the side with an endpoint listens.
        let (listener, dialer, port, dial_addr) = if peer_has_endpoint {
            let port = peer_endpoint
                .as_deref()
                .and_then(|e| e.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .or(pi.listen_port);
            (
                pe.clone(),
                me.clone(),
                port,
                peer_endpoint
                    .as_deref()
                    .and_then(crate::world::endpoint_addr),
            )
        } else {
            (me.clone(), pe.clone(), i.listen_port, None)
        };
        // The listener's filter: its own node, or for a guest listener the
        // node whose bridge carries it to the guest's NIC.
        let filter: Option<(String, Option<(String, String)>)> = match &listener {
            Entity::Node(n) => Some((n.clone(), None)),
            Entity::Guest(id) => self.w.site.guest(*id).and_then(|g| {
                let nic = g
                    .nics
                    .iter()
                    .find(|n| dial_addr.is_some_and(|a| n.addresses.iter().any(|x| x.addr() == a)))
                    .or(g.nics.first())?;
                Some((
                    g.node.to_string(),
                    Some((nic.bridge.to_string(), nic.ifname.to_string())),
                ))
            }),
            _ => None,
        };
        if let (Some((ln, to_guest)), Some(port)) = (filter, port) {
            let ln = &ln;
            let fam_outer = dial_addr.map(|a| Family::of(&a)).unwrap_or(self.fam());
            let src = self
                .w
                .addrs_of(&dialer)
                .iter()
                .find(|a| a.kind == AddrKind::Public && Family::of(&a.addr) == fam_outer)
                .or_else(|| {
                    self.w.addrs_of(&dialer).iter().find(|a| {
                        matches!(
                            a.kind,
                            AddrKind::Bridge(_) | AddrKind::Plain | AddrKind::Nic(_)
                        ) && Family::of(&a.addr) == fam_outer
                    })
                })
                .map(|a| a.addr);
            let dst = dial_addr.or_else(|| {
                self.w
                    .addrs_of(&listener)
                    .iter()
                    .find(|a| a.kind == AddrKind::Public && Family::of(&a.addr) == fam_outer)
                    .map(|a| a.addr)
            });
            if let (Some(src), Some(dst)) = (src, dst) {
                if let Ok(fw) = self.w.firewall(ln) {
                    let h = Hop {
                        saddr: src,
                        daddr: dst,
                        proto: Proto::Udp,
                        sport: Some(port),
                        dport: Some(port),
                        icmp_type: None,
                        state: State::New,
                        ingress: match &to_guest {
                            Some((b, _)) => Attach::Bridge {
                                bridge: b.clone(),
                                port: "outside".into(),
                            },
                            None => self.uplink_for(ln, &dst),
                        },
                        egress: match &to_guest {
                            Some((b, p)) => Attach::Bridge {
                                bridge: b.clone(),
                                port: p.clone(),
                            },
                            None => Attach::Local,
                        },
                        ether_saddr: None,
                    };
                    let t = simulate_hop(fw, &h);
                    if t.verdict != Action::Accept {
                        return Step::Fail {
                            decided_by: t.decided_by.map(|r| Decider {
                                node: ln.clone(),
                                origin: r.origin,
                                chain: r.chain,
                                rule: r.text,
                            }),
                            reason: Some(format!(
                                "WireGuard port {port}/udp of {ln} closed to {src} (no tunnel {network} between {} and {})",
                                self.w.label(&dialer),
                                self.w.label(&listener)
                            )),
                        };
                    }
                }
            }
        }
        // Cryptokey routing at the peer: the inner source must be in the
        // AllowedIPs of this sender there.
        let s = self.saddr.unwrap_or(d);
        match wg_peer(pi, &s) {
            Some(p) if p.name == my_owner => {}
            Some(p) => {
                return fail(format!(
                    "{peer_name} drops {s} from {my_owner}: the source is in the AllowedIPs of {} there",
                    p.name
                ))
            }
            None => {
                return fail(format!(
                    "{peer_name} drops {s} from {my_owner}: not in its AllowedIPs on {}",
                    pi.interface
                ))
            }
        }
        self.hops.push(format!("-{iface}-> {}", self.w.label(&pe)));
        Step::Next(
            pe,
            In::Tunnel {
                iface: pi.interface.to_string(),
            },
        )
    }

    fn uplink_for(&self, node: &str, a: &IpAddr) -> Attach {
        match self.w.bridge_holding(node, a) {
            Some(bridge) => Attach::Bridge {
                bridge,
                port: "outside".into(),
            },
            None => match self.w.site.node(node).and_then(|n| n.bridges.first()) {
                Some(b) if self.w.nodes[node].public.contains(a) => Attach::Bridge {
                    bridge: b.name.to_string(),
                    port: "outside".into(),
                },
                _ => Attach::Iface("uplink".into()),
            },
        }
    }
}

/// Whether an address is reachable from the internet: not private (RFC
/// 1918, 100.64/10, ULA), loopback or link-local. Documentation ranges count
/// as public (sites use them for that), as in the lab.
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

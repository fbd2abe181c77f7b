//! The whole site as a network: every node with its compiled firewall
//! model, WireGuard interfaces, routes and policy rules; guests on their
//! bridges; road warriors and the internet. Built once, then asked about
//! many packets ([`crate::trace`]).

use ipnet::IpNet;
use rampart_resolve::ir;
use rampart_types::{Diagnostics, Family, SiteFiles};
use rampart_wg::plan::Role;
use rampart_wg::{InterfacePlan, Plan as WgPlan, WgSite};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

/// Something that sends or receives packets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Entity {
    /// A machine on the internet (beyond every node's uplink).
    Internet,
    /// A machine on the LAN behind a node's bridge that the site does not
    /// declare (an address inside the bridge's network).
    Lan {
        node: String,
        bridge: String,
    },
    Node(String),
    Guest(u32),
    /// A WireGuard participant that is neither a node nor a site guest: a
    /// road warrior (`[[client]]`) or a member of its own.
    Peer(String),
}

/// How an entity holds an address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum AddrKind {
    /// On a bridge of a node (`vmbr0`).
    Bridge(String),
    /// A node address not on a declared bridge.
    Plain,
    /// A tunnel address of WireGuard network `network` on `iface`.
    Tunnel { network: String, iface: String },
    /// A guest NIC (`net0`).
    Nic(u32),
    /// A public endpoint address (`endpoint = ...`).
    Public,
}

/// One address of an entity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Addr {
    pub addr: IpAddr,
    /// The network it sits in (its prefix; a /32 or /128 when unknown).
    pub net: IpNet,
    pub kind: AddrKind,
}

/// A route of a node (besides the connected networks of its bridges).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteEntry {
    pub dest: IpNet,
    pub dev: String,
    /// `None`: the main table.
    pub table: Option<u32>,
    pub origin: String,
}

/// `ip rule from FROM [iif IIF] lookup TABLE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleEntry {
    pub priority: u32,
    pub from: IpNet,
    pub iif: Option<String>,
    pub table: u32,
    pub origin: String,
}

/// The network side of a node.
#[derive(Debug)]
pub struct NodeNet {
    pub name: String,
    pub extras: rampart_nft::Extras,
    pub routes: Vec<RouteEntry>,
    pub rules: Vec<RuleEntry>,
    /// The node forwards packets (a WireGuard gateway, an egress gateway,
    /// `ip_forward` in its plan).
    pub forwards: bool,
    /// Its public address (`endpoint`), when it is a literal address.
    pub public: Vec<IpAddr>,
    fw: OnceLock<Result<rampart_nft::Plan, String>>,
    /// The profiles' share of this node (`[[lockdown]]`, `[[egress]]`),
    /// computed on first use.
    prof: OnceLock<ProfileNet>,
}

/// A node's profile additions in the world's terms.
#[derive(Debug, Default)]
pub struct ProfileNet {
    pub firewall: rampart_types::additions::FirewallAdditions,
    pub routes: Vec<RouteEntry>,
    pub rules: Vec<RuleEntry>,
    pub forwards: bool,
}

/// Extra inputs for nodes, from other parts of the site (egress and
/// lockdown profiles): routes, policy rules, forwarding, and the firewall
/// additions already folded into `extras`.
#[derive(Clone, Debug, Default)]
pub struct NodeExtra {
    pub routes: Vec<RouteEntry>,
    pub rules: Vec<RuleEntry>,
    pub forwards: bool,
}

/// The site as a network.
pub struct World {
    pub site: ir::Site,
    /// The site's profiles, when it has any.
    profiles: Option<rampart_profile::SiteProfiles>,
    pub wg: Option<WgPlan>,
    pub wg_site: Option<WgSite>,
    pub nodes: BTreeMap<String, NodeNet>,
    /// Every address of every entity.
    pub addrs: BTreeMap<Entity, Vec<Addr>>,
    owners: HashMap<IpAddr, Entity>,
    /// Where the internet's own machines live (one per family), outside
    /// every network of the site.
    pub internet: [IpAddr; 2],
    /// Every prefix of the site (to keep invented addresses out of them).
    used: Vec<IpNet>,
}

/// The firewall inputs a node's WireGuard interfaces need (the same the
/// CLI's `compile` gives the nftables backend).
pub fn wg_extras(wg: Option<&WgPlan>, wg_site: Option<&WgSite>, node: &str) -> rampart_nft::Extras {
    let Some(plan) = wg else {
        return rampart_nft::Extras::default();
    };
    let wireguard = plan
        .for_owner(node)
        .map(|i| rampart_nft::WgPort {
            iface: i.interface.clone(),
            port: i.listen_port,
            sources: listen_addresses(i),
            forward: wg_forwards(plan, i),
            origin: listen_origin(wg_site, i),
        })
        .collect();
    rampart_nft::Extras {
        wireguard,
        ..Default::default()
    }
}

/// Whether `i`'s owner forwards between its peers: a gateway, or a member
/// a road warrior dials while it has other peers.
pub fn wg_forwards(plan: &WgPlan, i: &InterfacePlan) -> bool {
    if i.role == Role::Gateway {
        return true;
    }
    i.role == Role::Member
        && i.peers.len() > 1
        && i.peers.iter().any(|p| {
            plan.get(&i.network, &p.name)
                .is_some_and(|c| c.role == Role::Client)
        })
}

fn listen_origin(wg_site: Option<&WgSite>, i: &InterfacePlan) -> String {
    let span = wg_site.and_then(|s| {
        let n = s.network(&i.network)?;
        let own = n
            .members
            .iter()
            .find(|m| m.name == i.owner)
            .and_then(|m| m.listen_port_span);
        Some(own.unwrap_or(n.listen_port_span))
    });
    match span {
        Some(sp) => format!("site.toml:{}", sp.line),
        None => format!("auto:wireguard {}", i.interface),
    }
}

fn listen_addresses(i: &InterfacePlan) -> Option<Vec<IpAddr>> {
    let eps = i.listen_sources()?;
    eps.iter().map(|e| endpoint_addr(e)).collect()
}

/// The address of `host:port` / `[v6]:port` / a bare address.
pub fn endpoint_addr(e: &str) -> Option<IpAddr> {
    e.parse::<SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| e.parse::<IpAddr>())
        .or_else(|_| e.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>())
        .ok()
}

fn host_net(a: IpAddr) -> IpNet {
    IpNet::from(a)
}

impl World {
    /// Parse and resolve `files`, plan the WireGuard networks, and build the
    /// world. Errors of the site (the caller shows them) come back as
    /// diagnostics with `None`.
    pub fn from_files(files: &SiteFiles) -> (Option<World>, Diagnostics) {
        let (site, mut diags) = rampart_resolve::load(files);
        if diags.has_errors() {
            return (None, diags);
        }
        let (wg, wg_site) = match files.get("site.toml") {
            Some(b) => {
                let text = String::from_utf8_lossy(b).into_owned();
                let id = crate::site_toml_id(&site).unwrap_or_default();
                let (plan, d) = rampart_wg::check(id, &text);
                let (ws, _) = rampart_wg::parse_site_toml(id, &text);
                diags.extend(d);
                (plan, ws)
            }
            None => (None, None),
        };
        if diags.has_errors() {
            return (None, diags);
        }
        let extras: BTreeMap<String, (rampart_nft::Extras, NodeExtra)> = site
            .nodes
            .iter()
            .map(|n| {
                (
                    n.name.to_string(),
                    (
                        wg_extras(wg.as_ref(), wg_site.as_ref(), &n.name),
                        NodeExtra::default(),
                    ),
                )
            })
            .collect();
        let profiles = rampart_profile::load(files, &site);
        diags.extend(profiles.diags.clone());
        if diags.has_errors() {
            return (None, diags);
        }
        let mut w = World::new(site, wg, wg_site, extras);
        if !profiles.profiles.is_empty() {
            w.profiles = Some(profiles);
            // Routes and rules of the profiles count as site prefixes.
            w.index();
        }
        (Some(w), diags)
    }

    /// A world from its parts: the resolved site, the WireGuard plan, and
    /// per node the firewall extras and network extras.
    pub fn new(
        site: ir::Site,
        wg: Option<WgPlan>,
        wg_site: Option<WgSite>,
        mut extras: BTreeMap<String, (rampart_nft::Extras, NodeExtra)>,
    ) -> World {
        let mut nodes = BTreeMap::new();
        for n in &site.nodes {
            let (fx, nx) = extras.remove(n.name.as_str()).unwrap_or_default();
            let mut routes = nx.routes;
            let mut forwards = nx.forwards || !nx.rules.is_empty();
            if let Some(plan) = &wg {
                for i in plan.for_owner(&n.name) {
                    forwards |= wg_forwards(plan, i);
                    for r in &i.routes {
                        routes.push(RouteEntry {
                            dest: r.dest,
                            dev: r.dev.to_string(),
                            table: r.table,
                            origin: format!("auto:wireguard {}", i.interface),
                        });
                    }
                }
            }
            let public = wg_site
                .as_ref()
                .and_then(|s| s.node(&n.name))
                .and_then(|ni| ni.endpoint.as_ref())
                .and_then(|e| e.host.trim_matches(|c| c == '[' || c == ']').parse().ok())
                .into_iter()
                .collect();
            nodes.insert(
                n.name.to_string(),
                NodeNet {
                    name: n.name.to_string(),
                    extras: fx,
                    routes,
                    rules: nx.rules,
                    forwards,
                    public,
                    fw: OnceLock::new(),
                    prof: OnceLock::new(),
                },
            );
        }
        let mut w = World {
            site,
            profiles: None,
            wg,
            wg_site,
            nodes,
            addrs: BTreeMap::new(),
            owners: HashMap::new(),
            internet: [
                "198.18.0.1".parse().expect("literal"),
                "2001:db8:ffff:ffff::1".parse().expect("literal"),
            ],
            used: vec![],
        };
        w.index();
        w
    }

    fn index(&mut self) {
        let mut addrs: BTreeMap<Entity, Vec<Addr>> = BTreeMap::new();
        let mut push = |e: &Entity, a: Addr| addrs.entry(e.clone()).or_default().push(a);
        for n in &self.site.nodes {
            let e = Entity::Node(n.name.to_string());
            for b in &n.bridges {
                for a in &b.addresses {
                    push(
                        &e,
                        Addr {
                            addr: a.addr(),
                            net: a.trunc(),
                            kind: AddrKind::Bridge(b.name.to_string()),
                        },
                    );
                }
            }
            for a in &n.addresses {
                if !n.bridges.iter().any(|b| b.addresses.contains(a)) {
                    push(
                        &e,
                        Addr {
                            addr: a.addr(),
                            net: a.trunc(),
                            kind: AddrKind::Plain,
                        },
                    );
                }
            }
            for p in &self.nodes[n.name.as_str()].public {
                push(
                    &e,
                    Addr {
                        addr: *p,
                        net: host_net(*p),
                        kind: AddrKind::Public,
                    },
                );
            }
        }
        for g in &self.site.guests {
            let e = Entity::Guest(g.id);
            for nic in &g.nics {
                for a in &nic.addresses {
                    push(
                        &e,
                        Addr {
                            addr: a.addr(),
                            net: a.trunc(),
                            kind: AddrKind::Nic(nic.index),
                        },
                    );
                }
            }
        }
        if let Some(plan) = &self.wg {
            for i in &plan.interfaces {
                let e = self.wg_entity(&i.network, &i.owner);
                for a in &i.addresses {
                    push(
                        &e,
                        Addr {
                            addr: a.addr(),
                            net: a.trunc(),
                            kind: AddrKind::Tunnel {
                                network: i.network.to_string(),
                                iface: i.interface.to_string(),
                            },
                        },
                    );
                }
            }
        }
        if let Some(ws) = &self.wg_site {
            for n in &ws.networks {
                for m in &n.members {
                    if self.site.node(&m.name).is_some() {
                        continue;
                    }
                    let e = self.wg_entity(&n.name, &m.name);
                    if let Some(a) = m.endpoint.as_ref().and_then(|x| {
                        x.host
                            .trim_matches(|c| c == '[' || c == ']')
                            .parse::<IpAddr>()
                            .ok()
                    }) {
                        push(
                            &e,
                            Addr {
                                addr: a,
                                net: host_net(a),
                                kind: AddrKind::Public,
                            },
                        );
                    }
                }
            }
        }
        // Every prefix of the site, to keep invented addresses out of them.
        let mut used: Vec<IpNet> = addrs
            .values()
            .flatten()
            .map(|a| a.net)
            .chain(
                self.nodes
                    .values()
                    .flat_map(|n| n.routes.iter().map(|r| r.dest)),
            )
            .chain(
                self.nodes
                    .values()
                    .flat_map(|n| n.rules.iter().map(|r| r.from)),
            )
            .filter(|n| n.prefix_len() > 0)
            .collect();
        if let Some(plan) = &self.wg {
            used.extend(
                plan.interfaces
                    .iter()
                    .flat_map(|i| i.peers.iter().flat_map(|p| p.allowed_ips.iter().copied()))
                    .filter(|n| n.prefix_len() > 0),
            );
        }
        used.sort();
        used.dedup();
        self.used = used;
        // The internet's own machines and the road warriors' public addresses.
        self.internet = [
            self.invent(Family::V4, 0).expect("a free IPv4 address"),
            self.invent(Family::V6, 0).expect("a free IPv6 address"),
        ];
        let peers: Vec<Entity> = addrs
            .keys()
            .filter(|e| matches!(e, Entity::Peer(_)))
            .cloned()
            .collect();
        for (k, e) in peers.iter().enumerate() {
            let has_public = addrs[e].iter().any(|a| a.kind == AddrKind::Public);
            if has_public {
                continue;
            }
            for f in Family::both() {
                if let Some(a) = self.invent(f, k as u32 + 1) {
                    addrs.get_mut(e).expect("peer").push(Addr {
                        addr: a,
                        net: host_net(a),
                        kind: AddrKind::Public,
                    });
                }
            }
        }
        let mut owners = HashMap::new();
        for (e, list) in &addrs {
            for a in list {
                owners.entry(a.addr).or_insert_with(|| e.clone());
            }
        }
        self.owners = owners;
        self.addrs = addrs;
    }

    /// The `k`-th address of the internet outside every network of the
    /// site (198.18.0.0/15, the benchmarking range, first; as the lab).
    fn invent(&self, f: Family, k: u32) -> Option<IpAddr> {
        let cands: Vec<IpAddr> = match f {
            Family::V4 => (0..4096u32)
                .map(|i| {
                    let n = u32::from(std::net::Ipv4Addr::new(198, 18, 0, 1)) + i * 256 + k;
                    IpAddr::V4(n.into())
                })
                .collect(),
            Family::V6 => (0..4096u128)
                .map(|i| {
                    let base: u128 = "2001:db8:ffff:ffff::1"
                        .parse::<std::net::Ipv6Addr>()
                        .expect("literal")
                        .into();
                    IpAddr::V6((base - (i << 64) + k as u128).into())
                })
                .collect(),
        };
        cands
            .into_iter()
            .find(|a| !self.used.iter().any(|n| n.contains(a)))
    }

    /// The entity of WireGuard participant `owner` of `network`: a node, a
    /// guest (a member with `guest = VMID` the site declares), or a peer.
    pub fn wg_entity(&self, network: &str, owner: &str) -> Entity {
        if self.site.node(owner).is_some() {
            return Entity::Node(owner.to_string());
        }
        if let Some(ws) = &self.wg_site {
            if let Some(id) = ws
                .network(network)
                .and_then(|n| n.members.iter().find(|m| m.name == owner))
                .and_then(|m| m.guest)
            {
                if self.site.guest(id).is_some() {
                    return Entity::Guest(id);
                }
            }
        }
        Entity::Peer(owner.to_string())
    }

    /// The WireGuard owner name of an entity in `network` (a guest member
    /// has its member name).
    pub fn wg_owner(&self, e: &Entity) -> Vec<String> {
        match e {
            Entity::Node(n) | Entity::Peer(n) => vec![n.clone()],
            Entity::Guest(id) => match &self.wg_site {
                Some(ws) => ws
                    .networks
                    .iter()
                    .flat_map(|n| n.members.iter())
                    .filter(|m| m.guest == Some(*id))
                    .map(|m| m.name.to_string())
                    .collect(),
                None => vec![],
            },
            _ => vec![],
        }
    }

    /// The WireGuard interfaces of an entity.
    pub fn wg_ifaces(&self, e: &Entity) -> Vec<&InterfacePlan> {
        let Some(plan) = &self.wg else { return vec![] };
        let owners = self.wg_owner(e);
        plan.interfaces
            .iter()
            .filter(|i| {
                owners.iter().any(|o| *o == i.owner) && self.wg_entity(&i.network, &i.owner) == *e
            })
            .collect()
    }

    pub fn owner(&self, a: &IpAddr) -> Option<&Entity> {
        self.owners.get(a)
    }

    pub fn addrs_of(&self, e: &Entity) -> &[Addr] {
        self.addrs.get(e).map(|v| v.as_slice()).unwrap_or(&[])
    }

    pub fn internet_addr(&self, f: Family) -> IpAddr {
        match f {
            Family::V4 => self.internet[0],
            Family::V6 => self.internet[1],
        }
    }

    /// The node's compiled firewall model (compiled on first use).
    pub fn firewall(&self, node: &str) -> Result<&rampart_nft::Plan, String> {
        let n = self
            .nodes
            .get(node)
            .ok_or_else(|| format!("no node `{node}`"))?;
        n.fw.get_or_init(|| {
            let mut plan = rampart_nft::compile_with_extras(
                &self.site,
                node,
                &rampart_nft::Caps::default(),
                &n.extras,
            )
            .map_err(|d| format!("node {node} does not compile ({} errors)", d.errors()))?;
            let p = self.profile(node);
            if !p.firewall.is_empty() {
                rampart_nft::add_profile(&mut plan, &p.firewall);
            }
            Ok(plan)
        })
        .as_ref()
        .map_err(|e| e.clone())
    }

    /// The profiles' share of `node` (empty without profiles).
    pub fn profile(&self, node: &str) -> &ProfileNet {
        static EMPTY: OnceLock<ProfileNet> = OnceLock::new();
        let (Some(sp), Some(n)) = (&self.profiles, self.nodes.get(node)) else {
            return EMPTY.get_or_init(ProfileNet::default);
        };
        n.prof.get_or_init(|| {
            let np = sp.for_node(&self.site, node);
            let routes = np
                .routes
                .iter()
                .filter_map(|r| {
                    Some(RouteEntry {
                        dest: r.dest.parse().ok()?,
                        dev: r.dev.to_string(),
                        table: r.table,
                        origin: r.origin.clone(),
                    })
                })
                .collect();
            let rules: Vec<RuleEntry> = np
                .rules
                .iter()
                .filter_map(|r| {
                    Some(RuleEntry {
                        priority: r.priority,
                        from: r.from.parse().ok()?,
                        iif: r.iif.as_ref().map(|i| i.to_string()),
                        table: r.table,
                        origin: r.origin.clone(),
                    })
                })
                .collect();
            let forwards = !rules.is_empty()
                || !np.firewall.masquerade.is_empty()
                || !np.firewall.forward.is_empty()
                || np.sysctls.iter().any(|(k, v, _)| {
                    k.ends_with("forwarding") || k.ends_with("ip_forward") && v == "1"
                });
            ProfileNet {
                firewall: np.firewall,
                routes,
                rules,
                forwards,
            }
        })
    }

    /// Whether `node` forwards packets.
    pub fn forwards(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|n| n.forwards) || self.profile(node).forwards
    }

    /// Every route of `node` (WireGuard's and the profiles').
    pub fn routes(&self, node: &str) -> Vec<&RouteEntry> {
        let mut v: Vec<&RouteEntry> = self
            .nodes
            .get(node)
            .map(|n| n.routes.iter().collect())
            .unwrap_or_default();
        v.extend(self.profile(node).routes.iter());
        v
    }

    /// Every policy rule of `node`.
    pub fn rules(&self, node: &str) -> Vec<&RuleEntry> {
        let mut v: Vec<&RuleEntry> = self
            .nodes
            .get(node)
            .map(|n| n.rules.iter().collect())
            .unwrap_or_default();
        v.extend(self.profile(node).rules.iter());
        v
    }

    /// The zone name the simulator and the lab use for an entity.
    pub fn zone(&self, e: &Entity) -> String {
        match e {
            Entity::Internet | Entity::Lan { .. } => "internet".into(),
            Entity::Node(n) | Entity::Peer(n) => n.clone(),
            Entity::Guest(id) => self
                .site
                .guest(*id)
                .map(|g| g.zone())
                .unwrap_or_else(|| format!("vm{id}")),
        }
    }

    /// A node's bridge whose network holds `a`.
    pub fn bridge_holding(&self, node: &str, a: &IpAddr) -> Option<String> {
        self.site.node(node).and_then(|n| {
            n.bridges
                .iter()
                .find(|b| b.addresses.iter().any(|x| x.contains(a)))
                .map(|b| b.name.to_string())
        })
    }

    /// The LAN machine or internet for a foreign address.
    pub fn foreign(&self, a: &IpAddr) -> Entity {
        for n in &self.site.nodes {
            if let Some(b) = self.bridge_holding(&n.name, a) {
                return Entity::Lan {
                    node: n.name.to_string(),
                    bridge: b,
                };
            }
        }
        Entity::Internet
    }
}

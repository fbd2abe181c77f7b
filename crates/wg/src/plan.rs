//! From the WireGuard view of a site to a plan: per participant of each
//! network, its interface (addresses, port, MTU), its peers with their
//! AllowedIPs, and the routes to install (`Table = off`: rampart installs
//! exactly these, so a `/0` never hijacks the host).
//!
//! ## Address allocation
//! Explicit addresses are reserved first. Every other participant gets, in
//! each pool prefix, the host slot `sha256(network, name, prefix) mod size`,
//! probing linearly past taken slots, participants taken in name order. A
//! participant's address therefore depends only on its own name unless its
//! slot collides, so adding or removing members leaves the others where they
//! are (pin an address with `address = [...]` to make it unconditional;
//! [`Plan::allocation_record`] prints the lines to pin every address).
//!
//! ## Next hops
//! Each participant reaches every other one either directly (a peer) or
//! through a forwarder: a hub member through the first gateway, a partial
//! mesh member through its group's gateway, a client through its first `via`
//! member, anyone through a client's `via` member to reach that client. The
//! AllowedIPs of a peer are the tunnel addresses and routed subnets of every
//! participant reached through it. A participant whose traffic goes through a
//! forwarder gets the pool prefixes on that forwarder instead of one address
//! per participant (`AllowedIPs = 10.0.0.0/24` as in the seeds); the longer
//! prefixes of its direct peers win, as WireGuard matches longest prefix.

use crate::keys::PublicKey;
use crate::schema::{Network, ParticipantName, Topology, WgIfaceName, WgNetworkName, WgSite};
use ipnet::IpNet;
use rampart_types::{codes, Diagnostic, Diagnostics, Span};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

/// Where the node's key store lives unless told otherwise.
pub const DEFAULT_KEY_DIR: &str = "/etc/rampart/wg";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub key_dir: String,
    pub interfaces: Vec<InterfacePlan>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Member,
    Gateway,
    Client,
}

/// One WireGuard interface of one participant (a node, a guest, a client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfacePlan {
    pub network: WgNetworkName,
    /// The participant: node name, guest member name or client name.
    pub owner: ParticipantName,
    pub role: Role,
    pub interface: WgIfaceName,
    /// Tunnel addresses with the pool's prefix length (`10.8.0.3/24`).
    pub addresses: Vec<IpNet>,
    /// `None` for clients (they roam; the kernel picks a port).
    pub listen_port: Option<u16>,
    pub mtu: Option<u16>,
    pub public_key: PublicKey,
    /// The key store file holding the private key (read at apply time; the
    /// plan never contains private material).
    pub private_key_file: String,
    pub peers: Vec<PeerPlan>,
    /// Routes through this interface, besides the pool's connected route.
    pub routes: Vec<Route>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerPlan {
    pub name: ParticipantName,
    pub public_key: PublicKey,
    /// The key store file of the pair's preshared key.
    pub preshared_key_file: Option<String>,
    /// `host:port`.
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub dest: IpNet,
    pub dev: WgIfaceName,
    /// `None` = main table; a `/0` goes only into the network's `table`.
    pub table: Option<u32>,
}

impl InterfacePlan {
    /// The sources the listen port must admit: the peers' endpoints, or
    /// `None` when some peer roams (a client, a member behind NAT) and any
    /// source must be allowed.
    pub fn listen_sources(&self) -> Option<Vec<&str>> {
        self.listen_port?;
        self.peers.iter().map(|p| p.endpoint.as_deref()).collect()
    }
}

impl Plan {
    pub fn get(&self, network: &str, owner: &str) -> Option<&InterfacePlan> {
        self.interfaces
            .iter()
            .find(|i| i.network == network && i.owner == owner)
    }
    /// Every interface a node (or guest member, or client) has.
    pub fn for_owner<'a>(&'a self, owner: &'a str) -> impl Iterator<Item = &'a InterfacePlan> + 'a {
        self.interfaces.iter().filter(move |i| i.owner == owner)
    }
    /// `network owner = [addresses]` lines to pin every allocated address.
    pub fn allocation_record(&self) -> String {
        let mut s = String::new();
        for i in &self.interfaces {
            let a: Vec<String> = i
                .addresses
                .iter()
                .map(|a| format!("\"{}\"", a.addr()))
                .collect();
            s.push_str(&format!(
                "{} {} address = [{}]\n",
                i.network,
                i.owner,
                a.join(", ")
            ));
        }
        s
    }
}

/// Whether the pair (me, p) of a network has a preshared key: every pair
/// of members with `preshared_keys = true`, else the listed pairs. Road
/// warriors never do (their config would have to carry the key).
fn psk(net: &Network, me: &Part, p: &Part) -> bool {
    if me.client || p.client {
        return false;
    }
    net.preshared_keys
        || net
            .preshared_pairs
            .iter()
            .any(|(a, b, _)| (a == me.name && b == p.name) || (a == p.name && b == me.name))
}

/// The preshared pairs of a plan: per network, every pair (a <= b) of
/// members that peer and share a key.
impl Plan {
    pub fn preshared_pairs(
        &self,
    ) -> Vec<(
        rampart_types::names::WgNetworkName,
        ParticipantName,
        ParticipantName,
    )> {
        let mut out = Vec::new();
        for i in &self.interfaces {
            for p in &i.peers {
                if p.preshared_key_file.is_some() && i.owner < p.name {
                    out.push((i.network.clone(), i.owner.clone(), p.name.clone()));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// File names inside the key store, shared with `rampart-keystore`.
pub fn private_key_file(key_dir: &str, network: &str) -> String {
    format!("{key_dir}/{network}.key")
}
pub fn preshared_key_file(key_dir: &str, network: &str, a: &str, b: &str) -> String {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    format!("{key_dir}/psk/{network}/{x}--{y}.psk")
}

// ------------------------------------------------------------ participants

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Synthesized pool prefix: overlaps with direct peers by design.
    Pool,
    Address,
    Route,
}

#[derive(Clone, Debug)]
struct Entry {
    net: IpNet,
    kind: Kind,
    span: Span,
}

struct Part<'a> {
    name: &'a str,
    /// `name`, as the plan names it.
    owner: ParticipantName,
    key: PublicKey,
    key_span: Span,
    span: Span,
    client: bool,
    gateway: bool,
    group: Option<&'a str>,
    /// Machine whose ports it uses (node name, or the guest member's name).
    endpoint: Option<String>,
    listen_port: u16,
    keepalive: Option<u16>,
    via: Vec<usize>,
    explicit: Vec<(IpAddr, Span)>,
    addrs: Vec<(IpAddr, Span)>,
    routes: Vec<(IpNet, Span)>,
    /// The node's own prefixes (management / LAN) and endpoint address.
    own_prefixes: Vec<IpNet>,
}

fn hosts(p: &IpNet) -> (u128, u128, u128) {
    // (base as integer, first usable offset, usable count)
    match p {
        IpNet::V4(n) => {
            let base = u32::from(n.network()) as u128;
            let bits = 32 - n.prefix_len() as u32;
            let total = 1u128 << bits;
            if bits >= 2 {
                (base, 1, total - 2)
            } else {
                (base, 0, total)
            }
        }
        IpNet::V6(n) => {
            let base = u128::from(n.network());
            let bits = 128 - n.prefix_len() as u32;
            let count = if bits >= 128 {
                u128::MAX
            } else {
                (1u128 << bits) - 1
            };
            if bits == 0 {
                (base, 0, 1)
            } else {
                (base, 1, count)
            }
        }
    }
}

fn to_addr(p: &IpNet, v: u128) -> IpAddr {
    match p {
        IpNet::V4(_) => IpAddr::V4((v as u32).into()),
        IpNet::V6(_) => IpAddr::V6(v.into()),
    }
}

fn usable(p: &IpNet, a: IpAddr) -> bool {
    if !p.contains(&a) {
        return false;
    }
    let (base, first, count) = hosts(p);
    let v = match a {
        IpAddr::V4(x) => u32::from(x) as u128,
        IpAddr::V6(x) => u128::from(x),
    };
    let off = v - base;
    off >= first && off - first < count
}

/// The address `name` gets in `pool` of network `net` when nothing else
/// claims the same slot.
pub fn home_address(net: &str, name: &str, pool: &IpNet) -> IpAddr {
    let (base, first, count) = hosts(pool);
    to_addr(pool, base + first + slot(net, name, pool) % count)
}

fn slot(net: &str, name: &str, p: &IpNet) -> u128 {
    let mut h = Sha256::new();
    h.update(net.as_bytes());
    h.update([0]);
    h.update(name.as_bytes());
    h.update([0]);
    h.update(p.to_string().as_bytes());
    let d = h.finalize();
    u128::from_be_bytes(d[..16].try_into().unwrap())
}

fn allocate(net: &Network, parts: &mut [Part], d: &mut Diagnostics) {
    let mut taken: HashMap<IpAddr, usize> = HashMap::new();
    for (i, p) in parts.iter_mut().enumerate() {
        for &(a, span) in &p.explicit {
            if !net.pool.iter().any(|(pool, _)| usable(pool, a)) {
                let pools: Vec<String> = net.pool.iter().map(|(p, _)| p.to_string()).collect();
                d.push(
                    Diagnostic::new(
                        codes::ADDRESS_OUTSIDE_POOL,
                        format!(
                            "tunnel address {a} is outside the pool of network `{}`",
                            net.name
                        ),
                    )
                    .at(span)
                    .note(format!(
                        "the pool is {} (network and broadcast addresses excluded)",
                        pools.join(", ")
                    )),
                );
                continue;
            }
            if let Some(_prev) = taken.insert(a, i) {
                d.push(
                    Diagnostic::new(
                        codes::ADDRESS_USED_TWICE,
                        format!("tunnel address {a} is used twice in network `{}`", net.name),
                    )
                    .at(span)
                    .label("already taken"),
                );
                continue;
            }
            p.addrs.push((a, span));
        }
    }
    for (pool, pool_span) in &net.pool {
        let (base, first, count) = hosts(pool);
        // Phase 1: every participant whose home slot no other one shares
        // (and no explicit address holds) takes it. Its address then depends
        // on nothing but its own name. Phase 2: the colliding ones probe
        // linearly from their home slot, in the order of their own hash
        // (then name), which does not depend on who else exists.
        let mut order: Vec<(u128, usize)> = (0..parts.len())
            .filter(|&i| !parts[i].addrs.iter().any(|(a, _)| pool.contains(a)))
            .map(|i| (slot(&net.name, parts[i].name, pool), i))
            .collect();
        order.sort_by(|a, b| (a.0, parts[a.1].name).cmp(&(b.0, parts[b.1].name)));
        let mut homes: HashMap<u128, usize> = HashMap::new();
        for &(h, _) in &order {
            *homes.entry(h % count).or_default() += 1;
        }
        let mut rest = Vec::new();
        for &(h, i) in &order {
            let a = to_addr(pool, base + first + h % count);
            if homes[&(h % count)] == 1 && !taken.contains_key(&a) {
                taken.insert(a, i);
                let span = parts[i].span;
                parts[i].addrs.push((a, span));
            } else {
                rest.push((h, i));
            }
        }
        for &(h, i) in &rest {
            let start = h % count;
            let mut got = None;
            let mut k: u128 = 0;
            while k < count && k < 1 << 20 {
                let a = to_addr(pool, base + first + (start + k) % count);
                if !taken.contains_key(&a) {
                    got = Some(a);
                    break;
                }
                k += 1;
            }
            match got {
                Some(a) => {
                    taken.insert(a, i);
                    let span = parts[i].span;
                    parts[i].addrs.push((a, span));
                }
                None => {
                    d.push(
                        Diagnostic::new(
                            codes::BAD_OPTION_VALUE,
                            format!("pool {pool} of network `{}` is full", net.name),
                        )
                        .at(*pool_span),
                    );
                    return;
                }
            }
        }
    }
}

fn host_net(a: IpAddr) -> IpNet {
    IpNet::from(a)
}

fn range(n: &IpNet) -> (u8, u128, u128) {
    match n {
        IpNet::V4(x) => (
            4,
            u32::from(x.network()) as u128,
            u32::from(x.broadcast()) as u128,
        ),
        IpNet::V6(x) => (6, u128::from(x.network()), u128::from(x.broadcast())),
    }
}

/// Compute the plan of every network. Errors are diagnostics; the plan is
/// still returned (the caller refuses to apply when there are errors).
pub fn compile(site: &WgSite) -> (Plan, Diagnostics) {
    compile_with(site, DEFAULT_KEY_DIR)
}

#[allow(clippy::needless_range_loop)] // participants are indices into one table
pub fn compile_with(site: &WgSite, key_dir: &str) -> (Plan, Diagnostics) {
    let mut d = Diagnostics::new();
    let mut plan = Plan {
        key_dir: key_dir.to_string(),
        interfaces: Vec::new(),
    };
    // (machine, port) -> network, for E0611.
    let mut ports: HashMap<(ParticipantName, u16), WgNetworkName> = HashMap::new();

    for net in &site.networks {
        let groups: BTreeMap<&str, &str> = match &net.topology {
            Topology::Partial { groups } => groups
                .iter()
                .flat_map(|(g, ms)| ms.iter().map(move |m| (m.as_str(), g.as_str())))
                .collect(),
            _ => BTreeMap::new(),
        };
        let mut parts: Vec<Part> = Vec::new();
        for m in &net.members {
            let node = site.node(&m.name).filter(|_| m.guest.is_none());
            let endpoint = m
                .endpoint
                .as_ref()
                .or(node.and_then(|n| n.endpoint.as_ref()));
            let listen_port = m.listen_port.unwrap_or(net.listen_port);
            let mut own_prefixes = node.map(|n| n.prefixes.clone()).unwrap_or_default();
            if let Some(e) = endpoint {
                if let Ok(a) = e.host.parse::<IpAddr>() {
                    own_prefixes.push(IpNet::from(a));
                }
            }
            let port_span = m.listen_port_span.unwrap_or(net.listen_port_span);
            if listen_port != 0 {
                if let Some(prev) = ports.insert((m.name.clone(), listen_port), net.name.clone()) {
                    d.push(
                        Diagnostic::new(
                            codes::DUPLICATE_LISTEN_PORT,
                            format!("`{}` would listen on port {listen_port} for both `{prev}` and `{}`", m.name, net.name),
                        )
                        .at(port_span)
                        .hint("give one of the networks another `listen_port` (or a per-member `listen_port`)"),
                    );
                }
            }
            parts.push(Part {
                name: &m.name,
                owner: m.name.clone(),
                key: m.public_key,
                key_span: m.key_span,
                span: m.span,
                client: false,
                gateway: net.gateways.contains(&m.name),
                group: groups.get(m.name.as_str()).copied(),
                endpoint: endpoint.map(|e| e.render(listen_port)),
                listen_port,
                keepalive: m.persistent_keepalive.or(net.persistent_keepalive),
                via: Vec::new(),
                explicit: m.addresses.clone(),
                addrs: Vec::new(),
                routes: m.routes.clone(),
                own_prefixes,
            });
        }
        let member_count = parts.len();
        for c in site.clients.iter().filter(|c| c.network == net.name) {
            let via = c
                .via
                .iter()
                .filter_map(|(v, _)| parts[..member_count].iter().position(|p| p.name == v))
                .collect();
            parts.push(Part {
                name: &c.name,
                owner: c.name.clone().into(),
                key: c.public_key,
                key_span: c.key_span,
                span: c.span,
                client: true,
                gateway: false,
                group: None,
                endpoint: None,
                listen_port: 0,
                keepalive: Some(c.persistent_keepalive),
                via,
                explicit: c.addresses.clone(),
                addrs: Vec::new(),
                routes: Vec::new(),
                own_prefixes: Vec::new(),
            });
        }
        let client_routes: HashMap<usize, Vec<(IpNet, Span)>> = site
            .clients
            .iter()
            .filter(|c| c.network == net.name)
            .enumerate()
            .map(|(k, c)| (member_count + k, c.routes.clone()))
            .collect();

        allocate(net, &mut parts, &mut d);

        let primary_gw = net
            .gateways
            .first()
            .and_then(|g| parts.iter().position(|p| p.name == g));
        let group_gw = |g: Option<&str>| -> Option<usize> {
            let g = g?;
            parts[..member_count]
                .iter()
                .position(|p| p.gateway && p.group == Some(g))
        };
        let n = parts.len();
        // Direct peers.
        let direct = |i: usize, j: usize| -> bool {
            if i == j {
                return false;
            }
            let (a, b) = (&parts[i], &parts[j]);
            if a.client || b.client {
                return (a.client && a.via.contains(&j)) || (b.client && b.via.contains(&i));
            }
            match net.topology {
                Topology::Mesh => true,
                Topology::Hub => a.gateway || b.gateway,
                Topology::Partial { .. } => {
                    (a.group.is_some() && a.group == b.group) || (a.gateway && b.gateway)
                }
            }
        };
        // Default forwarder of i (for targets that are not direct peers).
        let forwarder = |i: usize| -> Option<usize> {
            let p = &parts[i];
            if p.client {
                return p.via.first().copied();
            }
            if p.gateway && !matches!(net.topology, Topology::Partial { .. }) {
                return None;
            }
            match net.topology {
                Topology::Mesh => None,
                Topology::Hub => primary_gw,
                Topology::Partial { .. } => {
                    if p.gateway {
                        None
                    } else {
                        group_gw(p.group)
                    }
                }
            }
        };
        let next_hop = |i: usize, t: usize| -> Option<usize> {
            if direct(i, t) {
                return Some(t);
            }
            let via_of = |t: usize| -> usize {
                // Reach a partial-mesh member through its group's gateway.
                if let (Topology::Partial { .. }, false) = (&net.topology, parts[t].gateway) {
                    group_gw(parts[t].group).unwrap_or(t)
                } else {
                    t
                }
            };
            let mut t2 = t;
            if parts[t].client {
                t2 = *parts[t].via.first()?;
                if direct(i, t2) {
                    return Some(t2);
                }
            }
            if let Some(f) = forwarder(i) {
                return Some(f);
            }
            let g = via_of(t2);
            if g != i && direct(i, g) {
                return Some(g);
            }
            None
        };

        // A listed preshared pair must be a pair that peers.
        for (a, b, span) in &net.preshared_pairs {
            let i = parts[..member_count].iter().position(|p| p.name == a);
            let j = parts[..member_count].iter().position(|p| p.name == b);
            if let (Some(i), Some(j)) = (i, j) {
                if !direct(i, j) {
                    d.push(
                        Diagnostic::new(
                            codes::BAD_PRESHARED_PAIR,
                            format!(
                                "`{a}` and `{b}` are not peers in network `{}` (topology), so they share no key",
                                net.name
                            ),
                        )
                        .at(*span)
                        .hint("list only pairs that peer directly (in a hub: a gateway and a member)"),
                    );
                }
            }
        }

        let has_dup_keys = {
            let mut seen = HashSet::new();
            parts.iter().any(|p| !seen.insert(p.key))
        };
        // Each interface depends only on the shared, read-only participant
        // table: build them on every core (results stay in order).
        let build = |i: usize| -> (InterfacePlan, Diagnostics) {
            let mut d = Diagnostics::new();
            let me = &parts[i];
            let fwd = forwarder(i);
            // (peer index, entry) in the order they are found; grouped by
            // peer below. One vector per interface instead of one per peer:
            // a 1,000-node mesh has a million peers.
            let mut flat: Vec<(usize, Entry)> = Vec::with_capacity(2 * n);
            let mut has = vec![false; n];
            let mut pooled = false;
            let hops: Vec<Option<usize>> = (0..n)
                .map(|t| {
                    if t == i {
                        None
                    } else {
                        next_hop(i, t).filter(|&h| h != i)
                    }
                })
                .collect();
            // A peer's own addresses and routes first, then what it forwards.
            let order = (0..n)
                .filter(|&t| hops[t] == Some(t))
                .chain((0..n).filter(|&t| hops[t].is_some_and(|h| h != t)));
            for t in order {
                let h = hops[t].expect("filtered");
                has[h] = true;
                for &(a, span) in &parts[t].addrs {
                    if Some(h) == fwd && t != h {
                        if !pooled {
                            pooled = true;
                            for (p, ps) in &net.pool {
                                flat.push((
                                    h,
                                    Entry {
                                        net: *p,
                                        kind: Kind::Pool,
                                        span: *ps,
                                    },
                                ));
                            }
                        }
                    } else {
                        flat.push((
                            h,
                            Entry {
                                net: host_net(a),
                                kind: Kind::Address,
                                span,
                            },
                        ));
                    }
                }
                for &(r, span) in &parts[t].routes {
                    flat.push((
                        h,
                        Entry {
                            net: r,
                            kind: Kind::Route,
                            span,
                        },
                    ));
                }
            }
            if let (Some(f), Some(rs)) = (fwd, client_routes.get(&i)) {
                has[f] = true;
                for &(r, span) in rs {
                    flat.push((
                        f,
                        Entry {
                            net: r,
                            kind: Kind::Route,
                            span,
                        },
                    ));
                }
            }
            // Direct peers with nothing routed still appear (e.g. no address allocated).
            for t in 0..n {
                if !has[t] && direct(i, t) {
                    has[t] = true;
                }
            }
            // Stable: each peer's entries keep the order they were found in
            // (already sorted in a mesh, so this is one pass).
            flat.sort_by_key(|(h, _)| *h);
            let mut ranges = Vec::new();
            let mut k = 0;
            for h in (0..n).filter(|&h| has[h]) {
                let start = k;
                while k < flat.len() && flat[k].0 == h {
                    k += 1;
                }
                ranges.push((h, start, k));
            }
            let flat: Vec<Entry> = flat.into_iter().map(|(_, e)| e).collect();
            // Peer index -> its entries, in peer order.
            let entries: Vec<(usize, &[Entry])> =
                ranges.iter().map(|&(h, a, b)| (h, &flat[a..b])).collect();

            check_interface(me, &parts, &entries, has_dup_keys, &mut d);

            let own_pools: Vec<IpNet> = me
                .addrs
                .iter()
                .filter_map(|(a, _)| {
                    net.pool
                        .iter()
                        .find(|(p, _)| p.contains(a))
                        .map(|(p, _)| *p)
                })
                .collect();
            let mut routes = Vec::new();
            let mut peers = Vec::new();
            for &(h, es) in &entries {
                let p = &parts[h];
                let mut allowed: Vec<IpNet> = Vec::new();
                for e in es {
                    if !allowed.contains(&e.net) {
                        allowed.push(e.net);
                    }
                }
                for a in &allowed {
                    if own_pools.iter().any(|pool| pool.contains(a)) {
                        continue;
                    }
                    if a.prefix_len() == 0 {
                        if let Some(t) = net.table {
                            routes.push(Route {
                                dest: *a,
                                dev: net.interface.clone(),
                                table: Some(t),
                            });
                        }
                    } else {
                        routes.push(Route {
                            dest: *a,
                            dev: net.interface.clone(),
                            table: None,
                        });
                    }
                }
                // Keepalive only towards a peer that has an endpoint to keep.
                let keepalive = if p.endpoint.is_some() {
                    me.keepalive
                } else {
                    None
                };
                peers.push(PeerPlan {
                    name: p.owner.clone(),
                    public_key: p.key,
                    preshared_key_file: psk(net, me, p)
                        .then(|| preshared_key_file(key_dir, &net.name, me.name, p.name)),
                    endpoint: p.endpoint.clone(),
                    allowed_ips: allowed,
                    persistent_keepalive: keepalive,
                });
            }
            routes.sort();
            routes.dedup();
            let ip = InterfacePlan {
                network: net.name.clone(),
                owner: me.owner.clone(),
                role: if me.client {
                    Role::Client
                } else if me.gateway {
                    Role::Gateway
                } else {
                    Role::Member
                },
                interface: net.interface.clone(),
                addresses: me
                    .addrs
                    .iter()
                    .map(|(a, _)| {
                        let len = net
                            .pool
                            .iter()
                            .find(|(p, _)| p.contains(a))
                            .map(|(p, _)| p.prefix_len())
                            .unwrap_or(0);
                        IpNet::new(*a, len).unwrap_or_else(|_| IpNet::from(*a))
                    })
                    .collect(),
                listen_port: (!me.client).then_some(me.listen_port),
                mtu: net.mtu,
                public_key: me.key,
                private_key_file: private_key_file(key_dir, &net.name),
                peers,
                routes,
            };
            (ip, d)
        };
        let threads = std::thread::available_parallelism()
            .map(|x| x.get())
            .unwrap_or(1)
            .min(8);
        let results: Vec<(InterfacePlan, Diagnostics)> = if n < 64 || threads < 2 {
            (0..n).map(build).collect()
        } else {
            let chunk = n.div_ceil(threads);
            std::thread::scope(|sc| {
                let handles: Vec<_> = (0..n)
                    .step_by(chunk)
                    .map(|lo| {
                        let build = &build;
                        sc.spawn(move || (lo..(lo + chunk).min(n)).map(build).collect::<Vec<_>>())
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("plan worker"))
                    .collect()
            })
        };
        for (ip, dd) in results {
            plan.interfaces.push(ip);
            d.extend(dd);
        }

        // Pairs that can never meet (E0613).
        for i in 0..n {
            for j in (i + 1)..n {
                if direct(i, j) && parts[i].endpoint.is_none() && parts[j].endpoint.is_none() {
                    d.push(
                        Diagnostic::new(
                            codes::NO_ENDPOINT,
                            format!("`{}` and `{}` are peers but neither has an endpoint: they can never meet", parts[i].name, parts[j].name),
                        )
                        .at(parts[j].span)
                        .hint("give one of them an `endpoint` (on its `[[node]]` or on the member)"),
                    );
                }
            }
        }
    }
    d.items.dedup();
    let mut seen = HashSet::new();
    d.items.retain(|x| seen.insert((x.code, x.span)));
    (plan, d)
}

fn check_interface(
    me: &Part,
    parts: &[Part],
    entries: &[(usize, &[Entry])],
    has_dup_keys: bool,
    d: &mut Diagnostics,
) {
    // Keys: own key on a peer (E0604), two peers with one key (E0603).
    // Only possible when the network holds a key twice (checked once).
    let mut keys: HashMap<PublicKey, usize> = HashMap::new();
    for &(h, _) in entries.iter().filter(|_| has_dup_keys) {
        let p = &parts[h];
        if p.key == me.key {
            d.push(
                Diagnostic::new(
                    codes::PEER_IS_SELF,
                    format!(
                        "peer `{}` has the same public key as `{}` itself",
                        p.name, me.name
                    ),
                )
                .at(p.key_span)
                .hint("every member and client needs its own key pair"),
            );
        } else if let Some(&prev) = keys.get(&p.key) {
            d.push(
                Diagnostic::new(
                    codes::DUPLICATE_PUBLIC_KEY,
                    format!(
                        "`{}` and `{}` have the same public key (both peers of `{}`)",
                        parts[prev].name, p.name, me.name
                    ),
                )
                .at(p.key_span)
                .hint("every member and client needs its own key pair"),
            );
        } else {
            keys.insert(p.key, h);
        }
    }
    // /0 on more than one peer (E0606), per family.
    for fam in [4u8, 6] {
        let mut first: Option<usize> = None;
        for &(h, es) in entries {
            if let Some(e) = es
                .iter()
                .find(|e| e.net.prefix_len() == 0 && range(&e.net).0 == fam)
            {
                match first {
                    None => first = Some(h),
                    Some(f) if f != h => d.push(
                        Diagnostic::new(
                            codes::MULTIPLE_DEFAULT_ROUTES,
                            format!(
                                "`{}` would route {} to both `{}` and `{}`",
                                me.name, e.net, parts[f].name, parts[h].name
                            ),
                        )
                        .at(e.span)
                        .hint("only one peer of an interface can carry the default route"),
                    ),
                    _ => {}
                }
            }
        }
    }
    // Overlaps between peers (E0605): a sweep over sorted ranges. Pool
    // summaries are meant to be overridden by longer prefixes; /0 is E0606.
    // Tunnel addresses are distinct host prefixes (E0609 guards that), so
    // without routed subnets nothing can overlap.
    let has_routes = entries
        .iter()
        .flat_map(|(_, es)| es.iter())
        .any(|e| e.kind == Kind::Route);
    let mut ivs: Vec<(u8, u128, u128, usize, &Entry)> = entries
        .iter()
        .flat_map(|&(h, es)| es.iter().map(move |e| (h, e)))
        .filter(|(_, e)| has_routes && e.kind != Kind::Pool && e.net.prefix_len() != 0)
        .map(|(h, e)| {
            let (f, s, t) = range(&e.net);
            (f, s, t, h, e)
        })
        .collect();
    ivs.sort_by_key(|a| (a.0, a.1, std::cmp::Reverse(a.2)));
    let mut cur: Option<(u8, u128, usize, &Entry)> = None;
    for &(f, s, t, h, e) in &ivs {
        if let Some((cf, cend, ch, ce)) = cur {
            if cf == f && s <= cend {
                if ch != h {
                    let (later, earlier) =
                        if (e.span.line, e.span.col) >= (ce.span.line, ce.span.col) {
                            (e, ce)
                        } else {
                            (ce, e)
                        };
                    d.push(
                        Diagnostic::new(
                            codes::OVERLAPPING_ALLOWED_IPS,
                            format!(
                                "on `{}`, {} (peer `{}`) overlaps {} (peer `{}`)",
                                me.name, e.net, parts[h].name, ce.net, parts[ch].name
                            ),
                        )
                        .at(later.span)
                        .note(format!("the other prefix is at line {}", earlier.span.line))
                        .hint("a destination must belong to exactly one peer"),
                    );
                }
                if t > cend {
                    cur = Some((f, t, h, e));
                }
                continue;
            }
        }
        cur = Some((f, t, h, e));
    }
    // Swallowing the node's own prefixes (E0607).
    for &(h, es) in entries {
        for e in es {
            if e.net.prefix_len() == 0 {
                continue;
            }
            if let Some(own) = me.own_prefixes.iter().find(|o| e.net.contains(*o)) {
                d.push(
                    Diagnostic::new(
                        codes::ALLOWED_IPS_SWALLOW,
                        format!(
                            "{} via peer `{}` swallows `{}`'s own prefix {own}",
                            e.net, parts[h].name, me.name
                        ),
                    )
                    .at(e.span)
                    .label("would route the node's own network into the tunnel")
                    .hint("announce a narrower prefix, or leave this node out of the network"),
                );
            }
        }
    }
}

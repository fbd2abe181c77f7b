//! Intents against the world: endpoints resolved, each probe traced, the
//! matrix of expected and got.

use crate::parse::{what_label, EndpointSpec, Expect, What};
use crate::trace::{trace, Decider, Probe};
use crate::world::{AddrKind, Entity, World};
use rampart_syntax::suggest::did_you_mean;
use rampart_syntax::tables::{icmp_type, macros};
use rampart_types::{codes, Diagnostic, Diagnostics, Family, Proto};
use serde::Serialize;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// A resolved endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub entity: Entity,
    /// A fixed address (an address endpoint, or one picked by `@WHERE`).
    pub addr: Option<IpAddr>,
    /// The `@WHERE` qualifier.
    pub qual: Option<String>,
}

/// The packet the lab sends for real for one row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LabProbe {
    /// Zone of the lab the packet starts in: `internet`, a node, `vm100`, a client.
    pub from: String,
    pub to: String,
    pub source: IpAddr,
    pub dest: IpAddr,
    /// `tcp`, `udp`, `icmp`, `icmpv6`.
    pub proto: String,
    pub dport: Option<u16>,
    pub sport: Option<u16>,
    pub icmp_type: Option<u8>,
    pub family: Family,
}

/// One line of the matrix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    pub intent: String,
    /// `site.toml:LINE` of the `[[expect]]`.
    pub origin: String,
    pub from: String,
    pub to: String,
    /// `SSH`, `DNS udp/53`, `tcp/8080`, `ping`, `any (12 probes)`.
    pub service: String,
    pub expected: bool,
    /// `None`: the probe could not be built (no address of the family...).
    pub got: Option<bool>,
    pub decided_by: Option<Decider>,
    /// Why, when no rule decided (no route, AllowedIPs, ...).
    pub reason: Option<String>,
    pub hops: Vec<String>,
    pub notes: Vec<String>,
    /// The intent's `reason`.
    pub why: Option<String>,
    pub probe: Option<LabProbe>,
}

impl Row {
    pub fn ok(&self) -> bool {
        self.got == Some(self.expected)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Matrix {
    pub rows: Vec<Row>,
}

impl Matrix {
    pub fn misses(&self) -> usize {
        self.rows.iter().filter(|r| !r.ok()).count()
    }
    /// One diagnostic (E0506) per missed row, at its `[[expect]]`.
    pub fn diagnostics(&self, expects: &[Expect]) -> Diagnostics {
        let mut d = Diagnostics::new();
        for r in self.rows.iter().filter(|r| !r.ok()) {
            let span = expects.iter().find(|e| e.name == r.intent).map(|e| e.span);
            let got = match r.got {
                Some(true) => "reachable",
                Some(false) => "unreachable",
                None => "not checkable",
            };
            let mut x = Diagnostic::new(
                codes::INTENT_MISSED,
                format!(
                    "intent `{}` ({}) expects {}, got {got}",
                    r.intent,
                    r.service,
                    if r.expected {
                        "reachable"
                    } else {
                        "unreachable"
                    }
                ),
            );
            if let Some(s) = span {
                x = x.at(s);
            }
            if let Some(dc) = &r.decided_by {
                x = x.note(format!(
                    "decided by {} on {}: {}",
                    dc.origin, dc.node, dc.rule
                ));
            }
            if let Some(re) = &r.reason {
                x = x.note(re.clone());
            }
            if let Some(w) = &r.why {
                x = x.note(format!("reason: {w}"));
            }
            d.push(x);
        }
        d
    }
}

/// Resolve an endpoint of an intent.
pub fn resolve(w: &World, ep: &EndpointSpec) -> Result<Endpoint, Diagnostic> {
    let base = ep.base.as_str();
    let unknown = |msg: String| {
        let mut names: Vec<String> = vec!["internet".into()];
        names.extend(w.site.nodes.iter().map(|n| n.name.to_string()));
        names.extend(w.site.guests.iter().map(|g| g.zone()));
        names.extend(w.site.guests.iter().filter_map(|g| g.name.clone()));
        names.extend(w.addrs.keys().filter_map(|e| match e {
            Entity::Peer(p) => Some(p.clone()),
            _ => None,
        }));
        let mut d = Diagnostic::new(codes::UNKNOWN_ENDPOINT, msg).at(ep.span).note(
            "endpoints: internet, a node, vm<ID>/ct<ID>[i<N>], a guest name, a WireGuard client or member, an address",
        );
        if let Some(h) = did_you_mean(base, names.iter().map(String::as_str)) {
            d = d.hint(h);
        }
        d
    };
    let entity = if base == "internet" || base == "outside" {
        Entity::Internet
    } else if let Ok(a) = base.parse::<IpAddr>() {
        let e = w.owner(&a).cloned().unwrap_or_else(|| w.foreign(&a));
        if ep.qual.is_some() {
            return Err(unknown(format!(
                "`{}`: an address takes no `@` qualifier",
                ep.text
            )));
        }
        return Ok(Endpoint {
            entity: e,
            addr: Some(a),
            qual: None,
        });
    } else if w.site.node(base).is_some() {
        Entity::Node(base.to_string())
    } else if let Some(g) = guest_by_name(w, base) {
        let (id, nic) = g;
        let qual = match nic {
            Some(n) => Some(format!("net{n}")),
            None => ep.qual.clone(),
        };
        return finish(w, ep, Entity::Guest(id), qual, unknown);
    } else if let Some(e) = w
        .addrs
        .keys()
        .find(|e| matches!(e, Entity::Peer(p) if p == base))
    {
        e.clone()
    } else if let Some(e) = wg_member_guest(w, base) {
        e
    } else {
        return Err(unknown(format!("unknown endpoint `{base}`")));
    };
    finish(w, ep, entity, ep.qual.clone(), unknown)
}

fn finish(
    w: &World,
    ep: &EndpointSpec,
    entity: Entity,
    qual: Option<String>,
    unknown: impl Fn(String) -> Diagnostic,
) -> Result<Endpoint, Diagnostic> {
    // `vm100@192.0.2.99`: the endpoint sending from (or answering at) that
    // address, its own or not (a spoofing test).
    if let Some(a) = qual.as_deref().and_then(|q| q.parse::<IpAddr>().ok()) {
        if entity != Entity::Internet {
            return Ok(Endpoint {
                entity,
                addr: Some(a),
                qual: None,
            });
        }
    }
    if let Some(q) = &qual {
        if entity == Entity::Internet {
            return Err(unknown(format!(
                "`{}`: `internet` takes no qualifier",
                ep.text
            )));
        }
        let known = qualifiers(w, &entity);
        if !known.contains(q) {
            let mut d = Diagnostic::new(
                codes::UNKNOWN_ENDPOINT,
                format!("`{}` has no `{q}`", ep.base),
            )
            .at(ep.span)
            .note(format!(
                "qualifiers of {}: {}",
                ep.base,
                known.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
            if let Some(h) = did_you_mean(q, known.iter().map(String::as_str)) {
                d = d.hint(h);
            }
            return Err(d);
        }
    }
    Ok(Endpoint {
        entity,
        addr: None,
        qual,
    })
}

fn guest_by_name(w: &World, s: &str) -> Option<(u32, Option<u32>)> {
    for g in &w.site.guests {
        if g.name.as_deref() == Some(s) || g.zone() == s {
            return Some((g.id, None));
        }
        if let Some(rest) = s.strip_prefix(&g.zone()) {
            if let Some(n) = rest.strip_prefix('i').and_then(|n| n.parse::<u32>().ok()) {
                if g.nics.iter().any(|x| x.index == n) {
                    return Some((g.id, Some(n)));
                }
            }
        }
    }
    None
}

fn wg_member_guest(w: &World, s: &str) -> Option<Entity> {
    let ws = w.wg_site.as_ref()?;
    for n in &ws.networks {
        if n.members.iter().any(|m| m.name == s) {
            return Some(w.wg_entity(&n.name, s));
        }
    }
    None
}

/// The `@WHERE` qualifiers an entity has.
pub fn qualifiers(w: &World, e: &Entity) -> BTreeSet<String> {
    let mut q = BTreeSet::new();
    for a in w.addrs_of(e) {
        match &a.kind {
            AddrKind::Bridge(b) => {
                q.insert(b.clone());
            }
            AddrKind::Tunnel { network, iface } => {
                q.insert(network.clone());
                q.insert(iface.clone());
            }
            AddrKind::Nic(i) => {
                q.insert(format!("net{i}"));
            }
            AddrKind::Public | AddrKind::Plain => {}
        }
    }
    if matches!(e, Entity::Node(_) | Entity::Peer(_) | Entity::Guest(_)) {
        q.insert("public".into());
    }
    q
}

/// Addresses of an endpoint matching its qualifier, in preference order.
fn qualified(w: &World, ep: &Endpoint, f: Family) -> Vec<(IpAddr, AddrKind)> {
    if let Some(a) = ep.addr {
        return if Family::of(&a) == f {
            vec![(a, AddrKind::Plain)]
        } else {
            vec![]
        };
    }
    if ep.entity == Entity::Internet {
        return vec![(w.internet_addr(f), AddrKind::Public)];
    }
    let all = w
        .addrs_of(&ep.entity)
        .iter()
        .filter(|a| Family::of(&a.addr) == f);
    match &ep.qual {
        None => all.map(|a| (a.addr, a.kind.clone())).collect(),
        Some(q) => {
            let v: Vec<_> = all
                .filter(|a| match &a.kind {
                    AddrKind::Bridge(b) => b == q,
                    AddrKind::Tunnel { network, iface } => network == q || iface == q,
                    AddrKind::Nic(i) => format!("net{i}") == *q,
                    AddrKind::Public => q == "public",
                    AddrKind::Plain => false,
                })
                .map(|a| (a.addr, a.kind.clone()))
                .collect();
            if v.is_empty() && q == "public" {
                // No endpoint: the first bridge or NIC address.
                w.addrs_of(&ep.entity)
                    .iter()
                    .filter(|a| Family::of(&a.addr) == f)
                    .filter(|a| {
                        matches!(
                            a.kind,
                            AddrKind::Bridge(_) | AddrKind::Plain | AddrKind::Nic(_)
                        )
                    })
                    .map(|a| (a.addr, a.kind.clone()))
                    .take(1)
                    .collect()
            } else {
                v
            }
        }
    }
}

/// Which address of `to` the sender `from` would use (docs/intents.md).
fn pick_dest(w: &World, from: &Endpoint, to: &Endpoint, f: Family) -> Option<IpAddr> {
    let cands = qualified(w, to, f);
    if cands.is_empty() {
        return None;
    }
    if cands.len() == 1 || to.addr.is_some() {
        return Some(cands[0].0);
    }
    // 1. A tunnel address the sender routes into one of its interfaces.
    let mine = w.wg_ifaces(&from.entity);
    for (a, k) in &cands {
        if matches!(k, AddrKind::Tunnel { .. })
            && mine.iter().any(|i| {
                i.addresses.iter().any(|x| x.trunc().contains(a))
                    || i.peers.iter().any(|p| {
                        p.allowed_ips
                            .iter()
                            .any(|n| n.prefix_len() > 0 && n.contains(a))
                    })
            })
        {
            return Some(*a);
        }
    }
    // 2. An address on a network the sender shares.
    let my_nets: Vec<ipnet::IpNet> = w
        .addrs_of(&from.entity)
        .iter()
        .filter(|a| !matches!(a.kind, AddrKind::Tunnel { .. } | AddrKind::Public))
        .map(|a| a.net)
        .filter(|n| n.prefix_len() < if f == Family::V4 { 32 } else { 128 })
        .collect();
    let lan_of_from: Option<ipnet::IpNet> = match (&from.entity, from.addr) {
        (Entity::Lan { .. }, Some(a)) => w
            .site
            .nodes
            .iter()
            .flat_map(|n| n.bridges.iter().flat_map(|b| b.addresses.iter()))
            .find(|n| n.contains(&a))
            .map(|n| n.trunc()),
        _ => None,
    };
    for (a, k) in &cands {
        if matches!(k, AddrKind::Tunnel { .. }) {
            continue;
        }
        if my_nets
            .iter()
            .chain(lan_of_from.iter())
            .any(|n| n.contains(a))
        {
            return Some(*a);
        }
    }
    // 3. The public address, else the first bridge/NIC address.
    for want in [0, 1] {
        for (a, k) in &cands {
            let hit = match want {
                0 => *k == AddrKind::Public,
                _ => matches!(k, AddrKind::Bridge(_) | AddrKind::Plain | AddrKind::Nic(_)),
            };
            if hit {
                return Some(*a);
            }
        }
    }
    Some(cands[0].0)
}

fn has_family(w: &World, ep: &Endpoint, f: Family) -> bool {
    !qualified(w, ep, f).is_empty()
}

/// One probe of an intent: protocol, ports, ICMP type, family constraint.
#[derive(Clone, Debug)]
struct ProbeSpec {
    label: String,
    proto: Option<Proto>,
    dport: Option<u16>,
    sport: Option<u16>,
    icmp: Option<String>,
    family: Option<Family>,
}

fn probes_of(w: &World, e: &Expect, to: &Endpoint) -> Vec<ProbeSpec> {
    match &e.what {
        What::Macro(i) => {
            let m = &macros()[*i];
            let many = m.rows.len() > 1;
            m.rows
                .iter()
                .map(|r| {
                    let dport = r.dport.first().map(|p| p.lo);
                    let label = if many {
                        match (&r.proto, dport) {
                            (p, Some(d)) => format!("{} {p}/{d}", m.name),
                            (p, None) => format!("{} {p}", m.name),
                        }
                    } else {
                        m.name.to_string()
                    };
                    ProbeSpec {
                        label,
                        proto: Some(r.proto.clone()),
                        dport,
                        sport: r.sport.first().map(|p| p.lo),
                        icmp: r.icmp_type.map(str::to_string),
                        family: r.family.or(r.proto.family()),
                    }
                })
                .collect()
        }
        What::Proto { proto, port } => vec![ProbeSpec {
            label: what_label(&e.what),
            proto: proto.clone().or(port.map(|_| Proto::Tcp)),
            dport: *port,
            sport: None,
            icmp: None,
            family: proto.as_ref().and_then(|p| p.family()),
        }],
        What::Any => any_probes(w, to),
    }
}

/// `service = "any"`: ping, the management and WireGuard ports, and every
/// destination port a rule of the destination's node mentions.
fn any_probes(w: &World, to: &Endpoint) -> Vec<ProbeSpec> {
    let node = match &to.entity {
        Entity::Node(n) => Some(n.clone()),
        Entity::Guest(id) => w.site.guest(*id).map(|g| g.node.to_string()),
        _ => None,
    };
    let mut ports: BTreeSet<(u8, u16)> = [22u16, 80, 443, 3128, 5900, 8006]
        .into_iter()
        .map(|p| (6, p))
        .collect();
    if let Some(n) = &node {
        if let Ok(fw) = w.firewall(n) {
            for t in &fw.ruleset.tables {
                for c in &t.chains {
                    for r in &c.rules {
                        // A merged rule's lines are its original rules.
                        let lines = r.merged.iter().map(|p| &p.matches);
                        for m in std::iter::once(&r.matches).chain(lines).flatten() {
                            if let rampart_nft::model::Match::Port {
                                proto,
                                dir: rampart_nft::model::Dir::Dst,
                                ports: ps,
                            } = m
                            {
                                for p in ps {
                                    for pr in [6u8, 17] {
                                        if *proto == pr || (*proto != 6 && *proto != 17) {
                                            ports.insert((pr, p.lo));
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        for i in w.wg_ifaces(&Entity::Node(n.clone())) {
            if let Some(p) = i.listen_port {
                ports.insert((17, p));
            }
        }
    }
    let mut out = vec![ProbeSpec {
        label: "ping".into(),
        proto: None,
        dport: None,
        sport: None,
        icmp: None,
        family: None,
    }];
    for (pr, p) in ports.into_iter().take(256) {
        out.push(ProbeSpec {
            label: format!("{}/{p}", if pr == 6 { "tcp" } else { "udp" }),
            proto: Some(if pr == 6 { Proto::Tcp } else { Proto::Udp }),
            dport: Some(p),
            sport: None,
            icmp: None,
            family: None,
        });
    }
    out
}

/// Check every intent; diagnostics for endpoints that do not resolve.
pub fn verify(w: &World, expects: &[Expect]) -> (Matrix, Diagnostics) {
    let mut diags = Diagnostics::new();
    let mut m = Matrix::default();
    for e in expects {
        let from = resolve(w, &e.from);
        let to = resolve(w, &e.to);
        let (from, to) = match (from, to) {
            (Ok(f), Ok(t)) => (f, t),
            (a, b) => {
                for x in [a.err(), b.err()].into_iter().flatten() {
                    diags.push(x);
                }
                continue;
            }
        };
        m.rows.extend(check(w, e, &from, &to));
    }
    (m, diags)
}

fn row_base(e: &Expect, service: String) -> Row {
    Row {
        intent: e.name.clone(),
        origin: e.origin(),
        from: e.from.text.clone(),
        to: e.to.text.clone(),
        service,
        expected: e.reachable,
        got: None,
        decided_by: None,
        reason: None,
        hops: vec![],
        notes: vec![],
        why: e.reason.clone(),
        probe: None,
    }
}

/// The rows of one intent.
pub fn check(w: &World, e: &Expect, from: &Endpoint, to: &Endpoint) -> Vec<Row> {
    let mut specs = probes_of(w, e, to);
    // Rows of a macro bound to a family (Ping's icmp and icmpv6) apply
    // where both ends have that family (or the one the intent asks for).
    if matches!(e.what, What::Macro(_)) && specs.len() > 1 {
        let fits = |s: &ProbeSpec| match (s.family, e.family) {
            (Some(f), Some(want)) => f == want,
            (Some(f), None) => has_family(w, from, f) && has_family(w, to, f),
            (None, _) => true,
        };
        if specs.iter().any(fits) {
            let before = specs.len();
            specs.retain(fits);
            if specs.len() == 1 && before > 1 {
                let m = &macros()[match e.what {
                    What::Macro(i) => i,
                    _ => unreachable!("macro"),
                }];
                if m.rows.iter().all(|r| r.dport.is_empty()) {
                    specs[0].label = m.name.to_string();
                }
            }
        }
    }
    let any = e.what == What::Any;
    let mut rows = vec![];
    for s in &specs {
        rows.push(check_one(w, e, from, to, s));
    }
    if !any {
        return rows;
    }
    // `any`: one row; reachable when some probe is.
    let n = rows.len();
    let mut r = row_base(e, format!("any ({n} probes)"));
    let hit = rows.iter().find(|x| x.got == Some(true));
    let pick = hit
        .or(rows.iter().find(|x| x.got.is_some()))
        .or(rows.first());
    if let Some(p) = pick {
        r.got = if rows.iter().any(|x| x.got.is_some()) {
            Some(hit.is_some())
        } else {
            None
        };
        r.decided_by = p.decided_by.clone();
        r.reason = match hit {
            Some(h) => Some(format!("{} is reachable", h.service)),
            None => p.reason.clone(),
        };
        r.hops = p.hops.clone();
        r.notes = p.notes.clone();
        r.probe = p.probe.clone();
    }
    vec![r]
}

fn check_one(w: &World, e: &Expect, from: &Endpoint, to: &Endpoint, s: &ProbeSpec) -> Row {
    let mut row = row_base(e, s.label.clone());
    // The family: asked, forced by the protocol, else IPv4 when both ends
    // have one.
    let fam = match e.family.or(s.family) {
        Some(f) => f,
        None => {
            if has_family(w, from, Family::V4) && has_family(w, to, Family::V4) {
                Family::V4
            } else {
                Family::V6
            }
        }
    };
    if let (Some(f1), Some(f2)) = (e.family, s.family) {
        if f1 != f2 {
            row.reason = Some(format!("{} is {f2} only", s.label));
            return row;
        }
    }
    let Some(daddr) = pick_dest(w, from, to, fam) else {
        row.reason = Some(format!("{} has no {fam} address", e.to.text));
        return row;
    };
    let saddr = match (from.addr, &from.qual) {
        (Some(a), _) => Some(a),
        (None, Some(_)) => match qualified(w, from, fam).first() {
            Some((a, _)) => Some(*a),
            None => {
                row.reason = Some(format!("{} has no {fam} address", e.from.text));
                return row;
            }
        },
        (None, None) => None,
    };
    if saddr.is_none() && !has_family(w, from, fam) {
        row.reason = Some(format!("{} has no {fam} address", e.from.text));
        return row;
    }
    let proto = match &s.proto {
        Some(p) => match (p, fam) {
            (Proto::Icmp, Family::V6) => Proto::Icmpv6,
            (Proto::Icmpv6, Family::V4) => Proto::Icmp,
            (p, _) => p.clone(),
        },
        None => match fam {
            Family::V4 => Proto::Icmp,
            Family::V6 => Proto::Icmpv6,
        },
    };
    let icmp_type = match (&proto, &s.icmp) {
        (Proto::Icmp | Proto::Icmpv6, Some(name)) => icmp_type(name, fam).map(|(t, _)| t),
        (Proto::Icmp, None) => Some(8),
        (Proto::Icmpv6, None) => Some(128),
        _ => None,
    };
    let probe = Probe {
        family: fam,
        saddr,
        daddr,
        proto: proto.clone(),
        sport: s.sport,
        dport: s.dport,
        icmp_type,
    };
    let out = trace(w, &from.entity, &probe);
    row.got = Some(out.reachable);
    row.decided_by = out.decided_by;
    row.reason = out.reason;
    row.hops = out.hops;
    row.notes = out.notes;
    let to_zone = match w.owner(&daddr) {
        Some(o) => w.zone(o),
        None => w.zone(&to.entity),
    };
    row.probe = Some(LabProbe {
        from: w.zone(&from.entity),
        to: to_zone,
        source: out.saddr,
        dest: daddr,
        proto: proto.to_string(),
        dport: s.dport,
        sport: s.sport,
        icmp_type,
        family: fam,
    });
    row
}

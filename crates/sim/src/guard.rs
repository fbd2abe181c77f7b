//! The lock-out guard: before a plan is applied, prove with the simulator
//! that the admin can still get in and the cluster still talks.
//!
//! - A new TCP connection from the node's management set to its SSH and API
//!   ports must be accepted (bad-inputs 28, code E0502).
//! - Cluster traffic from every other node to the node's cluster ports must
//!   be accepted (bad-inputs 30, code E0504).

use crate::{simulate_plan, Packet, State, Zone};
use rampart_nft::Plan;
use rampart_resolve::ir::{self, Platform};
use rampart_types::{codes, Action, Diagnostic, Diagnostics, Family, Proto};
use std::net::IpAddr;

/// The ports a lock-out would hurt most: SSH and the platform's API.
fn admin_ports(p: Platform) -> Vec<(u16, &'static str)> {
    match p {
        Platform::Proxmox => vec![(22, "SSH"), (8006, "the web UI/API")],
        Platform::Xcpng => vec![(22, "SSH"), (443, "XAPI/HTTPS")],
        Platform::Linux => vec![(22, "SSH")],
    }
}

/// Management entries probed at most (one representative address each).
pub const MAX_PROBED_ENTRIES: usize = 64;

/// One address per management entry of `family` that the set really
/// matches: the entry's first host (not the network address of a prefix),
/// skipping the node's own addresses.
fn probe_sources(set: &ir::IpSet, family: Family, avoid: &[IpAddr]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for e in set.entries_of(family).filter(|e| !e.nomatch) {
        let start = e.range.start;
        let candidates = [next(start), Some(start)];
        if let Some(a) = candidates
            .into_iter()
            .flatten()
            .find(|a| e.range.contains(a) && set.contains(a) && !avoid.contains(a))
        {
            if !out.contains(&a) {
                out.push(a);
            }
        }
        if out.len() >= MAX_PROBED_ENTRIES {
            break;
        }
    }
    out
}

fn next(a: IpAddr) -> Option<IpAddr> {
    match a {
        IpAddr::V4(v) => u32::from(v).checked_add(1).map(|n| IpAddr::V4(n.into())),
        IpAddr::V6(v) => u128::from(v).checked_add(1).map(|n| IpAddr::V6(n.into())),
    }
}

/// Check `plan` (compiled for `node`) against the lock-out rules. Returns
/// errors with the rule to blame in a note; empty when the node is safe or
/// its firewall is off.
pub fn lockout_check(site: &ir::Site, plan: &Plan, node: &str) -> Diagnostics {
    let mut out = Diagnostics::new();
    let Some(n) = site.node(node) else { return out };
    if !n.firewall.enabled {
        return out;
    }
    let mgmt = site.set(n.firewall.management);
    let own: Vec<IpAddr> = n.addresses.iter().map(|a| a.addr()).collect();
    let mut probed = false;
    for family in Family::both() {
        let Some(dest) = own.iter().find(|a| Family::of(a) == family).copied() else {
            continue;
        };
        for source in probe_sources(mgmt, family, &own) {
            probed = true;
            for (port, what) in admin_ports(n.platform) {
                if let Some(d) = probe_admin(site, plan, node, source, dest, port, what) {
                    out.push(d);
                }
            }
        }
    }
    if !probed && n.firewall.policy_in != Action::Accept {
        out.push(
            Diagnostic::new(
                codes::LOCKOUT,
                format!(
                    "`{node}` has policy_in {} and an empty management set: nothing proves an admin can reach it",
                    n.firewall.policy_in
                ),
            )
            .hint("add your admin addresses to `[IPSET management]` in cluster.fw (local_network is added automatically when the node has addresses)"),
        );
    }
    // (peer node, its address, this node's address, port): one probe per
    // peer and family; corosync link by link on Proxmox.
    let mut probes: Vec<(String, IpAddr, IpAddr, u16)> = Vec::new();
    let (_, cluster_udp, _) = rampart_nft::platform_ports(n.platform);
    if n.platform == ir::Platform::Proxmox {
        // The node owning each address (first in site order), once: a
        // search per peer entry made the guard of N nodes cubic.
        let mut owner: std::collections::HashMap<IpAddr, &ir::Node> =
            std::collections::HashMap::new();
        for o in site.nodes.iter().filter(|o| o.name != n.name) {
            for a in &o.addresses {
                owner.entry(a.addr()).or_insert(o);
            }
        }
        let mut probed_peers: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for link in &n.firewall.corosync {
            let family = Family::of(&link.local);
            for e in site.set(link.peers).entries_of(family) {
                let src = e.range.start;
                let Some(other) = owner.get(&src).copied() else {
                    continue;
                };
                if probed_peers.insert(other.name.as_str()) {
                    probes.push((other.name.to_string(), src, link.local, 5405));
                }
            }
        }
    } else if let Some(range) = cluster_udp.first() {
        for other in site.nodes.iter().filter(|o| o.name != n.name) {
            for family in Family::both() {
                let Some(src) = other
                    .addresses
                    .iter()
                    .map(|a| a.addr())
                    .find(|a| Family::of(a) == family)
                else {
                    continue;
                };
                let Some(dest) = own.iter().find(|a| Family::of(a) == family).copied() else {
                    continue;
                };
                probes.push((other.name.to_string(), src, dest, range.lo));
                break;
            }
        }
    }
    for (other, src, dest, port) in probes {
        let family = Family::of(&src);
        let mut p = Packet::new(&other, "host", Proto::Udp);
        p.from = Zone::Node(other.clone());
        p.source = Some(src);
        p.dest = Some(dest);
        p.dport = Some(port);
        p.family = Some(family);
        match simulate_plan(site, plan, &p) {
            Ok(t) if t.verdict == Action::Accept => {}
            Ok(t) => {
                let mut d = Diagnostic::new(
                    codes::CLUSTER_BLOCKED,
                    format!(
                        "cluster traffic (udp/{port}) from `{other}` ({src}) to `{node}` would be {}",
                        verb(t.verdict)
                    ),
                );
                if let Some(hit) = &t.decided_by {
                    d = d.note(format!("decided by {}: {}", hit.origin, hit.text));
                }
                out.push(d);
            }
            Err(_) => {}
        }
    }
    out
}

/// One new connection from `source` to an admin port; a diagnostic when it
/// does not get through.
fn probe_admin(
    site: &ir::Site,
    plan: &Plan,
    node: &str,
    source: IpAddr,
    dest: IpAddr,
    port: u16,
    what: &str,
) -> Option<Diagnostic> {
    let mut p = Packet::new("outside", "host", Proto::Tcp);
    p.source = Some(source);
    p.dest = Some(dest);
    p.dport = Some(port);
    p.state = State::New;
    p.family = Some(Family::of(&source));
    match simulate_plan(site, plan, &p) {
        Ok(t) if t.verdict == Action::Accept => None,
        Ok(t) => {
            let mut d = Diagnostic::new(
                codes::LOCKOUT,
                format!(
                    "{what} (tcp/{port}) on `{node}` would be {} for the management address {source}",
                    verb(t.verdict)
                ),
            )
            .hint("accept it before the rule that blocks it, take the admin's address out of the blacklist, or apply with --force if you have console access");
            if let Some(hit) = &t.decided_by {
                d = d.note(format!(
                    "decided by {} ({} {} #{}): {}",
                    hit.origin, hit.table, hit.chain, hit.index, hit.text
                ));
            }
            Some(d)
        }
        Err(e) => Some(Diagnostic::new(
            codes::LOCKOUT,
            format!("cannot prove management access to `{node}`: {e}"),
        )),
    }
}

fn verb(a: Action) -> &'static str {
    match a {
        Action::Accept => "accepted",
        Action::Drop => "dropped",
        Action::Reject => "rejected",
    }
}

//! The rules of rampart's profiles (`[[lockdown]]`, `[[egress]]`), given as
//! backend-neutral [`FirewallAdditions`] by `rampart-profile`, added to a
//! compiled plan:
//!
//! - `hook-input` jumps to `egress-in` (drops from the tunnel and from the
//!   egress guests) right after conntrack, loopback and the guests' OUT
//!   rules, before `host-in`;
//! - `host-in` jumps to `lockdown-in` (management services: accepted from
//!   the VPN path and the named addresses, refused from anywhere else)
//!   after the blacklist and the packet sanity rules, before the
//!   management set and the node's own rules;
//! - `host-in` ends, after the node's own rules and the WireGuard listen
//!   ports, with a refusal of everything else (lockdown), neighbour
//!   discovery excepted;
//! - `host-forward` accepts the egress flows before its policy;
//! - `nat-postrouting` (`type nat hook postrouting priority srcnat`)
//!   masquerades on a gateway.
//!
//! Every rule's comment is the profile's origin (`site.toml:LINE`).

use crate::compile::Plan;
use crate::model::*;
use rampart_types::additions::{FirewallAdditions, Path, Service};
use rampart_types::{Action, Family, IpRange, PortRange};

pub const EGRESS_CHAIN: &str = "egress-in";
pub const LOCKDOWN_CHAIN: &str = "lockdown-in";
pub const NAT_CHAIN: &str = "nat-postrouting";
/// `srcnat`.
pub const NAT_PRIORITY: i32 = 100;
/// The rules of `host-in` that stay before the lockdown: the blacklist and
/// the packet sanity checks.
const FIRST: [&str; 4] = [
    "auto:blacklist",
    "auto:nosmurfs",
    "auto:tcpflags",
    "auto:protection_synflood",
];

/// Add `a` to `plan` (see the module docs) and reprint its script.
pub fn add_profile(plan: &mut Plan, a: &FirewallAdditions) {
    if a.is_empty() {
        return;
    }
    if plan.ruleset.table(TableFamily::Inet).is_none() {
        // The firewall is off: only a gateway's masquerade has a place.
        if a.masquerade.is_empty() {
            return;
        }
        plan.ruleset
            .absent
            .retain(|(f, n)| !(*f == TableFamily::Inet && n == crate::TABLE));
        plan.ruleset
            .tables
            .insert(0, Table::new(TableFamily::Inet, crate::TABLE));
    }
    let table = plan
        .ruleset
        .tables
        .iter_mut()
        .find(|t| t.family == TableFamily::Inet)
        .expect("inet table");

    // egress-in: jumped from hook-input before host-in (nothing from the
    // tunnel or the guests reaches any host rule).
    if !a.host_drop.is_empty() {
        let mut c = Chain::regular(EGRESS_CHAIN);
        c.comment = Some("egress: the host refuses the tunnel and the egress guests".into());
        for d in &a.host_drop {
            for r in addr_variants(&d.sources, Dir::Src) {
                let mut rule = Rule::new(d.origin.clone());
                if let Some(i) = &d.iif {
                    rule = rule.m(ifname(Dir::Src, i));
                }
                if let Some(m) = r {
                    rule = rule.m(m);
                }
                c.rules.push(rule.v(Verdict::Drop).decides(Action::Drop));
            }
        }
        let jump = Rule::new(a.host_drop[0].origin.clone()).v(Verdict::Jump(EGRESS_CHAIN.into()));
        table.chains.push(c);
        if let Some(hi) = table.chains.iter_mut().find(|c| c.name == "hook-input") {
            let at = hi
                .rules
                .iter()
                .position(|r| r.comment == "auto:host IN")
                .unwrap_or(hi.rules.len().saturating_sub(1));
            hi.rules.insert(at, jump);
        }
    }
    // lockdown-in: jumped from host-in after the blacklist and the packet
    // sanity rules, before the management set and the node's own rules.
    if let Some(l) = &a.lockdown {
        let mut c = Chain::regular(LOCKDOWN_CHAIN);
        c.comment = Some("lockdown: management only through the VPN or named addresses".into());
        for p in &l.paths {
            c.rules.extend(path_rules(p, &l.services));
        }
        for s in &l.services {
            for (m, _) in service_matches(s) {
                let reject = match s {
                    Service::Tcp(_) => RejectWith::TcpReset,
                    _ => RejectWith::PortUnreachable,
                };
                let mut rule = Rule::new(l.origin.clone());
                for x in m {
                    rule = rule.m(x);
                }
                c.rules
                    .push(rule.v(Verdict::Reject(reject)).decides(Action::Reject));
            }
        }
        let jump = Rule::new(l.origin.clone()).v(Verdict::Jump(LOCKDOWN_CHAIN.into()));
        table.chains.push(c);
        if let Some(hi) = table.chains.iter_mut().find(|c| c.name == "host-in") {
            let at = hi
                .rules
                .iter()
                .position(|r| !FIRST.iter().any(|p| r.comment.starts_with(p)))
                .unwrap_or(hi.rules.len());
            hi.rules.insert(at, jump);
        }
    }
    // The refusal of everything else, at the end of host-in.
    if let Some(l) = a.lockdown.as_ref().filter(|l| l.refuse_rest) {
        if let Some(c) = table.chains.iter_mut().find(|c| c.name == "host-in") {
            let at = c
                .rules
                .iter()
                .position(|r| r.comment.starts_with("auto:policy_in "))
                .unwrap_or(c.rules.len());
            let rules = vec![
                Rule::new(l.origin.clone())
                    .m(Match::Icmp {
                        v6: true,
                        types: vec![135, 136],
                        code: None,
                    })
                    .v(Verdict::Return)
                    .decides(Action::Accept),
                Rule::new(l.origin.clone())
                    .m(Match::L4Proto {
                        number: 6,
                        name: "tcp".into(),
                    })
                    .v(Verdict::Reject(RejectWith::TcpReset))
                    .decides(Action::Reject),
                Rule::new(l.origin.clone())
                    .v(Verdict::Reject(RejectWith::PortUnreachable))
                    .decides(Action::Reject),
            ];
            c.rules.splice(at..at, rules);
        }
    }
    // Forwarded flows, before the forward policy.
    if !a.forward.is_empty() {
        if let Some(c) = table.chains.iter_mut().find(|c| c.name == "host-forward") {
            let at = c
                .rules
                .iter()
                .position(|r| r.comment.starts_with("auto:policy_forward "))
                .unwrap_or(c.rules.len());
            let mut rules = vec![];
            for f in &a.forward {
                for fam in Family::both() {
                    let src = of_family(&f.sources, fam);
                    let dst = of_family(&f.dests, fam);
                    if (!f.sources.is_empty() && src.is_empty())
                        || (!f.dests.is_empty() && dst.is_empty())
                    {
                        continue;
                    }
                    if f.sources.is_empty() && f.dests.is_empty() && fam == Family::V6 {
                        continue;
                    }
                    let mut r = Rule::new(f.origin.clone())
                        .m(ifname(Dir::Src, &f.iif))
                        .m(ifname(Dir::Dst, &f.oif));
                    if !src.is_empty() {
                        r = r.m(addr(fam, Dir::Src, src));
                    }
                    if !dst.is_empty() {
                        r = r.m(addr(fam, Dir::Dst, dst));
                    }
                    rules.push(r.v(Verdict::Return).decides(Action::Accept));
                }
            }
            c.rules.splice(at..at, rules);
        }
    }
    if !a.masquerade.is_empty() {
        let mut c = Chain::base(NAT_CHAIN, Hook::Postrouting, NAT_PRIORITY);
        if let Some(b) = c.base.as_mut() {
            b.nat = true;
        }
        c.comment = Some("egress gateway: masquerade".into());
        for m in &a.masquerade {
            for fam in Family::both() {
                let src = of_family(&m.sources, fam);
                if src.is_empty() {
                    continue;
                }
                c.rules.push(
                    Rule::new(m.origin.clone())
                        .m(ifname(Dir::Dst, &m.oif))
                        .m(addr(fam, Dir::Src, src))
                        .s(Stmt::Masquerade),
                );
            }
        }
        table.chains.push(c);
    }
    let header = format!(
        "rampart plan for node {}: generated, do not edit.\nWith the WireGuard interfaces and the site's profiles (lockdown, egress).",
        plan.node
    );
    plan.script = crate::print::script(&plan.ruleset, &header);
}

fn ifname(dir: Dir, name: &str) -> Match {
    Match::Ifname {
        dir,
        name: name.to_string(),
    }
}

fn addr(family: Family, dir: Dir, r: Vec<IpRange>) -> Match {
    Match::Addr {
        family,
        dir,
        neg: false,
        target: AddrTarget::Literal(r),
    }
}

fn of_family(rs: &[IpRange], f: Family) -> Vec<IpRange> {
    let mut v: Vec<IpRange> = rs.iter().filter(|r| r.family() == f).copied().collect();
    v.sort();
    v.dedup();
    v
}

/// One address match per family present (`None`: any source).
fn addr_variants(rs: &[IpRange], dir: Dir) -> Vec<Option<Match>> {
    if rs.is_empty() {
        return vec![None];
    }
    Family::both()
        .into_iter()
        .filter_map(|f| {
            let v = of_family(rs, f);
            (!v.is_empty()).then(|| Some(addr(f, dir, v)))
        })
        .collect()
}

/// The matches of a service, per family where it matters (ping).
fn service_matches(s: &Service) -> Vec<(Vec<Match>, Option<Family>)> {
    let port = |proto: u8, ports: &[PortRange]| Match::Port {
        proto,
        dir: Dir::Dst,
        ports: ports.to_vec(),
    };
    match s {
        Service::Tcp(p) => vec![(vec![port(6, p)], None)],
        Service::Udp(p) => vec![(vec![port(17, p)], None)],
        Service::Ping => vec![
            (
                vec![Match::Icmp {
                    v6: false,
                    types: vec![8],
                    code: None,
                }],
                Some(Family::V4),
            ),
            (
                vec![Match::Icmp {
                    v6: true,
                    types: vec![128],
                    code: None,
                }],
                Some(Family::V6),
            ),
        ],
    }
}

fn path_rules(p: &Path, services: &[Service]) -> Vec<Rule> {
    let mut out = vec![];
    for s in services {
        for (ms, fam) in service_matches(s) {
            for f in Family::both() {
                if fam.is_some_and(|x| x != f) {
                    continue;
                }
                let src = of_family(&p.sources, f);
                if src.is_empty() {
                    continue;
                }
                let mut r = Rule::new(p.origin.clone());
                if let Some(i) = &p.iif {
                    r = r.m(ifname(Dir::Src, i));
                }
                r = r.m(addr(f, Dir::Src, src));
                for m in &ms {
                    r = r.m(m.clone());
                }
                out.push(r.v(Verdict::Accept).decides(Action::Accept));
            }
        }
    }
    out
}

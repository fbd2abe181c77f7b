//! Walking the ruleset model the way nf_tables evaluates it.

use crate::packet::{Placed, Stage, State};
use rampart_nft::model::*;
use rampart_nft::Plan;
use rampart_types::{Action, IpRange};
use serde::Serialize;
use std::fmt;

/// A chain the packet entered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// `inet forward`, `bridge prerouting`.
    pub hook: String,
    pub table: String,
    pub chain: String,
    /// Call depth (0 = base chain).
    pub depth: usize,
}

/// A rule that matched and decided something (or ended the walk).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleHit {
    pub table: String,
    pub chain: String,
    /// 0-based position in the chain.
    pub index: usize,
    /// Where it comes from: `cluster.fw:42`, `auto:management`.
    pub origin: String,
    /// The rule as nft prints it.
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Trace {
    pub verdict: Action,
    /// `tcp 192.0.2.50:40000 -> 192.0.2.100:80, ipv4, new`
    pub packet: String,
    /// The addresses the packet was given (defaults filled in).
    pub source: std::net::IpAddr,
    pub dest: std::net::IpAddr,
    pub steps: Vec<Step>,
    /// Every firewall decision taken on the way (accepts by OUT chains,
    /// then IN chains...), in order.
    pub decisions: Vec<RuleHit>,
    /// The decision that settled the verdict: the last one taken.
    pub decided_by: Option<RuleHit>,
    /// Things the simulator assumed (rate limits not reached, logging...).
    pub notes: Vec<String>,
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}  ({})", self.verdict, self.packet)?;
        for s in &self.steps {
            if s.depth == 0 {
                writeln!(f, "  {}: {} {}", s.hook, s.table, s.chain)?;
            } else {
                writeln!(f, "  {}-> {}", "  ".repeat(s.depth), s.chain)?;
            }
        }
        if let Some(d) = &self.decided_by {
            writeln!(
                f,
                "  decided by {}  [{} #{}: {}]",
                d.origin,
                d.chain,
                d.index + 1,
                d.text
            )?;
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        Ok(())
    }
}

enum Flow {
    /// Fell off the end of the chain or `return`.
    Return,
    Accept,
    Drop,
    Reject,
}

struct Walker<'a> {
    p: &'a Placed,
    mark: u32,
    stage: &'a Stage,
    hook_label: String,
    steps: Vec<Step>,
    decisions: Vec<RuleHit>,
    terminal: Option<RuleHit>,
    notes: Vec<String>,
}

pub fn run(plan: &Plan, p: Placed) -> Trace {
    let mut mark = 0u32;
    let mut steps = vec![];
    let mut decisions = vec![];
    let mut notes = vec![];
    let mut verdict = Action::Accept;
    let mut terminal = None;
    'stages: for stage in &p.stages {
        let mut bases: Vec<(&Table, &Chain, i32)> = vec![];
        for t in plan
            .ruleset
            .tables
            .iter()
            .filter(|t| t.family == stage.family)
        {
            for c in &t.chains {
                if let Some(b) = &c.base {
                    // NAT chains see only the first packet of a connection.
                    if b.nat && p.state == crate::State::Established {
                        continue;
                    }
                    if b.hook == stage.hook {
                        bases.push((t, c, b.priority));
                    }
                }
            }
        }
        bases.sort_by_key(|(_, _, prio)| *prio);
        for (t, c, _) in bases {
            let mut w = Walker {
                p: &p,
                mark,
                stage,
                hook_label: format!("{} {}", stage.family.name(), stage.hook.name()),
                steps: std::mem::take(&mut steps),
                decisions: std::mem::take(&mut decisions),
                terminal: None,
                notes: std::mem::take(&mut notes),
            };
            let flow = w.chain(t, c, 0);
            mark = w.mark;
            steps = w.steps;
            decisions = w.decisions;
            notes = w.notes;
            if w.terminal.is_some() {
                terminal = w.terminal;
            }
            match flow {
                Flow::Accept | Flow::Return => {}
                Flow::Drop => {
                    verdict = Action::Drop;
                    break 'stages;
                }
                Flow::Reject => {
                    verdict = Action::Reject;
                    break 'stages;
                }
            }
        }
    }
    let decided_by = decisions.last().cloned().or(terminal);
    Trace {
        verdict,
        packet: p.summary.clone(),
        source: p.saddr,
        dest: p.daddr,
        steps,
        decisions,
        decided_by,
        notes,
    }
}

/// The Proxmox names of the ipsets a rule names whose kernel name does not
/// show it (long names are hashed): ` (@dc-1A2B3C_v4 is +the-long-name)`.
fn proxmox_set_names(t: &Table, matches: &[Match]) -> String {
    let mut out = String::new();
    for m in matches {
        let Match::Addr {
            target: AddrTarget::Set(n),
            ..
        } = m
        else {
            continue;
        };
        let Some(set) = t.sets.iter().find(|s| &s.name == n) else {
            continue;
        };
        let Some(rest) = set.comment.strip_prefix("ipset ") else {
            continue;
        };
        let name = rest.split(" (").next().unwrap_or(rest);
        // Only the sets of cluster.fw (`dc-`) and guests (`g<vmid>-`).
        let user = n.starts_with("dc-")
            || n.strip_prefix('g').is_some_and(|r| {
                r.split_once('-')
                    .is_some_and(|(id, _)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
            });
        if user && !n.contains(name) {
            out.push_str(&format!(" (@{n} is +{name})"));
        }
    }
    out
}

fn in_ranges(rs: &[IpRange], a: &std::net::IpAddr) -> bool {
    rs.iter().any(|r| r.contains(a))
}

impl<'a> Walker<'a> {
    fn hit(&self, t: &Table, c: &Chain, i: usize, r: &Rule) -> RuleHit {
        // A rule merged from several policy lines: the first line, in
        // policy order, that matches the packet decided.
        if let Some(part) = r
            .merged
            .iter()
            .find(|p| p.matches.iter().all(|m| self.matches(t, m)))
        {
            let line = Rule {
                matches: part.matches.clone(),
                stmts: vec![],
                verdict: r.verdict.clone(),
                comment: part.comment.clone(),
                decision: r.decision,
                merged: vec![],
            };
            return RuleHit {
                table: format!("{} {}", t.family.name(), t.name),
                chain: c.name.clone(),
                index: i,
                origin: part.comment.clone(),
                text: format!(
                    "{}; in the kernel one rule with {} merged lines: {}",
                    rampart_nft::print::rule(&line),
                    r.merged.len(),
                    r.comment
                ),
            };
        }
        RuleHit {
            table: format!("{} {}", t.family.name(), t.name),
            chain: c.name.clone(),
            index: i,
            origin: r.comment.clone(),
            text: format!(
                "{}{}",
                rampart_nft::print::rule(r),
                proxmox_set_names(t, &r.matches)
            ),
        }
    }

    fn chain(&mut self, t: &'a Table, c: &'a Chain, depth: usize) -> Flow {
        self.steps.push(Step {
            hook: self.hook_label.clone(),
            table: format!("{} {}", t.family.name(), t.name),
            chain: c.name.clone(),
            depth,
        });
        if depth > 32 {
            self.notes
                .push(format!("jump depth exceeded at {}", c.name));
            return Flow::Drop;
        }
        for (i, r) in c.rules.iter().enumerate() {
            if !r.matches.iter().all(|m| self.matches(t, m)) {
                continue;
            }
            if !self.stmts(t, r) {
                continue;
            }
            let Some(v) = &r.verdict else { continue };
            if r.decision.is_some() {
                let h = self.hit(t, c, i, r);
                self.decisions.push(h);
            }
            let v = match v {
                Verdict::Vmap { key, map } => {
                    let Some(k) = self.vmap_key(key) else {
                        continue;
                    };
                    let m = t.map(map).expect("map exists");
                    match m.lookup(&k) {
                        Some(MapValue::Verdict(v)) => v.clone(),
                        _ => continue,
                    }
                }
                v => v.clone(),
            };
            let flow = match &v {
                Verdict::Accept => Flow::Accept,
                Verdict::Drop => Flow::Drop,
                Verdict::Reject(_) => Flow::Reject,
                Verdict::Return => Flow::Return,
                Verdict::Queue { lo, hi } => {
                    self.notes.push(format!(
                        "handed to NFQUEUE {lo}-{hi} with bypass: accepted when no IPS listens"
                    ));
                    Flow::Accept
                }
                Verdict::Jump(name) | Verdict::Goto(name) => {
                    let target = t.chain(name).expect("chain exists");
                    match self.chain(t, target, depth + 1) {
                        Flow::Return => {
                            if matches!(v, Verdict::Goto(_)) {
                                return Flow::Return;
                            }
                            continue;
                        }
                        f => return f,
                    }
                }
                Verdict::Vmap { .. } => unreachable!("vmap values are not vmaps"),
            };
            if !matches!(flow, Flow::Return) {
                self.terminal = Some(self.hit(t, c, i, r));
            }
            return flow;
        }
        Flow::Return
    }

    fn vmap_key(&self, k: &VmapKey) -> Option<Key> {
        match k {
            VmapKey::MarkMasked(m) => Some(Key::Mark(self.mark & m)),
            VmapKey::Ifname(Dir::Src) => self.stage.iif.clone().map(Key::Ifname),
            VmapKey::Ifname(Dir::Dst) => self.stage.oif.clone().map(Key::Ifname),
            VmapKey::Addr(f, d) => {
                if *f != self.p.family {
                    return None;
                }
                let a = if *d == Dir::Src {
                    self.p.saddr
                } else {
                    self.p.daddr
                };
                Some(Key::Addr(IpRange::host(a)))
            }
        }
    }

    /// Run a rule's statements; false when one stops the rule (a meter not
    /// over its rate, a failed map lookup).
    fn stmts(&mut self, t: &Table, r: &Rule) -> bool {
        for s in &r.stmts {
            match s {
                Stmt::Limit(_) => {}
                Stmt::MeterOver { .. } => {
                    // One packet never exceeds a per-source rate.
                    return false;
                }
                Stmt::Log { prefix, group } => self.notes.push(format!(
                    "logged to nflog group {group}: {prefix:?} ({})",
                    r.comment
                )),
                Stmt::MarkSet(m) => self.mark = *m,
                Stmt::MarkOr(m) => self.mark |= *m,
                Stmt::MarkFromIifnameMap(map) => {
                    let Some(i) = &self.stage.iif else {
                        return false;
                    };
                    match t.map(map).and_then(|m| m.lookup(&Key::Ifname(i.clone()))) {
                        Some(MapValue::Mark(m)) => self.mark = *m,
                        _ => return false,
                    }
                }
                Stmt::CtHelperSet(h) => self.notes.push(format!("conntrack helper {h} assigned")),
                Stmt::Masquerade => self.notes.push(format!(
                    "masqueraded to the address of {} ({})",
                    self.stage.oif.as_deref().unwrap_or("the output interface"),
                    r.comment
                )),
            }
        }
        true
    }

    fn matches(&self, t: &Table, m: &Match) -> bool {
        let p = self.p;
        match m {
            Match::NfProto(f) => p.family == *f,
            Match::L4Proto { number, .. } => p.l4 == *number,
            Match::Ifname { dir, name } => {
                let i = if *dir == Dir::Src {
                    &self.stage.iif
                } else {
                    &self.stage.oif
                };
                match (i.as_deref(), name.strip_suffix('*')) {
                    (Some(i), Some(prefix)) => i.starts_with(prefix),
                    (i, None) => i == Some(name.as_str()),
                    (None, Some(_)) => false,
                }
            }
            Match::IfnameSet { dir, set } => {
                let i = if *dir == Dir::Src {
                    &self.stage.iif
                } else {
                    &self.stage.oif
                };
                match i {
                    Some(i) => t
                        .set(set)
                        .is_some_and(|s| s.contains(&Key::Ifname(i.clone()))),
                    None => false,
                }
            }
            Match::Addr {
                family,
                dir,
                neg,
                target,
            } => {
                if p.family != *family {
                    return false;
                }
                let a = if *dir == Dir::Src { p.saddr } else { p.daddr };
                let inside = match target {
                    AddrTarget::Set(s) => t
                        .set(s)
                        .is_some_and(|s| s.contains(&Key::Addr(IpRange::host(a)))),
                    AddrTarget::Literal(rs) => in_ranges(rs, &a),
                };
                inside != *neg
            }
            Match::Port { proto, dir, ports } => {
                if (*proto == 6 || *proto == 17) && p.l4 != *proto {
                    return false;
                }
                let port = if *dir == Dir::Src { p.sport } else { p.dport };
                port.is_some_and(|x| ports.iter().any(|r| r.contains(x)))
            }
            Match::Icmp { v6, types, code } => {
                let l4 = if *v6 { 58 } else { 1 };
                p.l4 == l4
                    && p.family
                        == if *v6 {
                            rampart_types::Family::V6
                        } else {
                            rampart_types::Family::V4
                        }
                    && p.icmp_type.is_some_and(|ty| types.contains(&ty))
                    && code.is_none_or(|c| p.icmp_code == Some(c))
            }
            Match::Ct(states) if p.ct_invalid => states.contains(&CtState::Invalid),
            Match::Ct(states) => states.iter().any(|s| {
                matches!(
                    (s, p.state),
                    (CtState::New, State::New) | (CtState::Established, State::Established)
                )
            }),
            Match::EtherSaddrNot(mac) => p.ether_saddr.is_some_and(|m| m != *mac),
            Match::FibSaddrType(ts) => ts.iter().any(|x| p.saddr_fib.contains(x)),
            Match::TcpFlags { mask, value } => p.l4 == 6 && p.tcp_flags & mask == *value,
            Match::Mark { mask, value } => self.mark & mask == *value,
            Match::PktTypeBroadMulti => p.dest_broadcast_or_multicast,
            Match::Concat { fields, elements } => {
                let mut key = Vec::with_capacity(fields.len());
                for f in fields {
                    match f {
                        Field::Addr(family, dir) => {
                            if p.family != *family {
                                return false;
                            }
                            key.push(Elem::Addr(IpRange::host(if *dir == Dir::Src {
                                p.saddr
                            } else {
                                p.daddr
                            })));
                        }
                        Field::Port(proto, dir) => {
                            if (*proto == 6 || *proto == 17) && p.l4 != *proto {
                                return false;
                            }
                            let port = if *dir == Dir::Src { p.sport } else { p.dport };
                            let Some(x) = port else { return false };
                            key.push(Elem::Port(rampart_types::PortRange::single(x)));
                        }
                    }
                }
                elements
                    .iter()
                    .any(|e| e.iter().zip(&key).all(|(a, b)| a.overlaps(b)))
            }
        }
    }
}

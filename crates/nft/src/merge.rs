//! Rule merging: a run of consecutive policy rules in one chain with the
//! same verdict and the same match shape — they differ only in literal
//! addresses and/or ports — becomes one rule matching a set.
//!
//! Why: every rule a new packet falls through costs ~15 ns in an `inet`
//! table, a set lookup costs nothing measurable
//! (`shared/reference/dataplane-costs.md`), so a 10,000-line policy written
//! as 10,000 linear rules makes new connections ten times slower.
//!
//! Same semantics, by construction:
//! - only consecutive rules, and only rules with the same verdict and the
//!   same firewall decision, no statements (no log, limit, meter, mark) and
//!   a terminal verdict (accept, drop, return, reject, queue): within such
//!   a run the first match and any match give the same result, so the run
//!   is "the packet matches one of them";
//! - the matches other than literal address lists and port lists are equal
//!   (same interfaces, protocol, ICMP type, families, named sets);
//! - one varying field: the union of the lists; several: a concatenation
//!   (`ip saddr . tcp dport { a . p, ... }`) of each rule's combinations,
//!   with a new merged rule started wherever an element would overlap an
//!   earlier one (the kernel refuses overlapping concatenated intervals);
//! - IPv4 and IPv6 never share a rule (the family is part of the shape).
//!
//! Tracing: the merged rule keeps each original rule ([`Part`]): the
//! simulator names the first original line, in policy order, that matches
//! the packet; the comment names them all (`host.fw:12-111`).

use crate::model::*;
use crate::sets;
use rampart_types::PortRange;
use std::collections::HashSet;

/// A field that may differ within a run.
fn slot(m: &Match) -> Option<Field> {
    match m {
        Match::Addr {
            family,
            dir,
            neg: false,
            target: AddrTarget::Literal(_),
        } => Some(Field::Addr(*family, *dir)),
        Match::Port { proto, dir, .. } => Some(Field::Port(*proto, *dir)),
        _ => None,
    }
}

fn values(m: &Match) -> Vec<Elem> {
    match m {
        Match::Addr {
            target: AddrTarget::Literal(rs),
            ..
        } => rs.iter().map(|r| Elem::Addr(*r)).collect(),
        Match::Port { ports, .. } => ports.iter().map(|p| Elem::Port(*p)).collect(),
        _ => vec![],
    }
}

fn mergeable(r: &Rule) -> bool {
    let terminal = match &r.verdict {
        Some(Verdict::Accept | Verdict::Drop | Verdict::Return | Verdict::Reject(_)) => true,
        Some(Verdict::Queue { .. }) => true,
        // The shared REJECT chain always ends in a verdict.
        Some(Verdict::Jump(c)) => c == "reject-packet",
        _ => false,
    };
    terminal
        && r.stmts.is_empty()
        && r.merged.is_empty()
        && r.decision.is_some()
        && !r.comment.starts_with("auto:")
        && r.matches.iter().any(|m| slot(m).is_some())
}

fn same_shape(a: &Rule, b: &Rule) -> bool {
    a.verdict == b.verdict
        && a.decision == b.decision
        && a.matches.len() == b.matches.len()
        && a.matches
            .iter()
            .zip(&b.matches)
            .all(|(x, y)| match slot(x) {
                Some(f) => slot(y) == Some(f),
                None => x == y,
            })
}

/// How many earlier items (rules or groups) a rule may move past to join a
/// group of its shape: bounds the work per rule.
const LOOKBACK: usize = 64;

/// A rule of the output in the making: one fixed rule, or a group of
/// mergeable rules of one shape (in policy order), with what the item can
/// match, over-approximated, to prove a later rule disjoint from it.
struct Item {
    rules: Vec<Rule>,
    mergeable: bool,
    /// Computed on first use for a fixed rule (most are never asked).
    facts: std::cell::OnceCell<Facts>,
    /// Once a group: per varying field, the union of the members' values.
    proj: Vec<(Field, Intervals)>,
}

/// What every packet a rule matches has, as far as merging needs to know.
struct Facts {
    family: Option<rampart_types::Family>,
    l4: Option<u8>,
    /// The exact values of literal address and port matches.
    fields: Vec<(Field, Vec<(u128, u128)>)>,
}

fn addr_u(a: &std::net::IpAddr) -> u128 {
    match a {
        std::net::IpAddr::V4(v) => u32::from(*v) as u128,
        std::net::IpAddr::V6(v) => u128::from(*v),
    }
}

fn elem_u(e: &Elem) -> (u128, u128) {
    match e {
        Elem::Addr(r) => (addr_u(&r.start), addr_u(&r.end)),
        Elem::Port(p) => (p.lo as u128, p.hi as u128),
    }
}

fn facts(r: &Rule) -> Facts {
    use rampart_types::Family;
    let mut f = Facts {
        family: None,
        l4: None,
        fields: vec![],
    };
    let l4_of = |proto: u8| (proto == 6 || proto == 17).then_some(proto);
    for m in &r.matches {
        match m {
            Match::NfProto(x) => f.family = Some(*x),
            Match::L4Proto { number, .. } => f.l4 = Some(*number),
            Match::Icmp { v6, .. } => {
                f.family = Some(if *v6 { Family::V6 } else { Family::V4 });
                f.l4 = Some(if *v6 { 58 } else { 1 });
            }
            Match::Addr { family, .. } => {
                f.family = Some(*family);
                if let Some(k) = slot(m) {
                    f.fields.push((k, values(m).iter().map(elem_u).collect()));
                }
            }
            Match::Port { proto, .. } => {
                f.l4 = l4_of(*proto).or(f.l4);
                if let Some(k) = slot(m) {
                    f.fields.push((k, values(m).iter().map(elem_u).collect()));
                }
            }
            Match::Concat { fields, .. } => {
                for k in fields {
                    match k {
                        Field::Addr(fam, _) => f.family = Some(*fam),
                        Field::Port(proto, _) => f.l4 = l4_of(*proto).or(f.l4),
                    }
                }
            }
            _ => {}
        }
    }
    f
}

/// Disjoint closed intervals over u128, for "does this value meet any of
/// the group's values" in O(log n).
#[derive(Default)]
struct Intervals(std::collections::BTreeMap<u128, u128>);

impl Intervals {
    fn meets(&self, lo: u128, hi: u128) -> bool {
        self.0
            .range(..=hi)
            .next_back()
            .is_some_and(|(_, e)| *e >= lo)
    }
    fn insert(&mut self, mut lo: u128, mut hi: u128) {
        // Absorb every interval that touches [lo, hi].
        while let Some((&s, &e)) = self.0.range(..=hi.saturating_add(1)).next_back() {
            if e.saturating_add(1) < lo {
                break;
            }
            self.0.remove(&s);
            lo = lo.min(s);
            hi = hi.max(e);
        }
        self.0.insert(lo, hi);
    }
}

impl Item {
    /// A rule that is not mergeable.
    fn new(r: Rule) -> Item {
        Item {
            mergeable: false,
            facts: std::cell::OnceCell::new(),
            rules: vec![r],
            proj: Vec::new(),
        }
    }

    fn project(&mut self, f: &Facts) {
        for (k, vs) in &f.fields {
            let iv = match self.proj.iter_mut().find(|(j, _)| j == k) {
                Some((_, iv)) => iv,
                None => {
                    self.proj.push((*k, Intervals::default()));
                    &mut self.proj.last_mut().expect("just pushed").1
                }
            };
            for (lo, hi) in vs {
                iv.insert(*lo, *hi);
            }
        }
    }

    /// Add a rule of the same shape (its facts `f`).
    fn push(&mut self, r: Rule, f: &Facts) {
        if self.rules.len() == 1 {
            // A group now: keep the union of the members' values.
            let first = match self.facts.get_mut() {
                Some(f) => std::mem::take(&mut f.fields),
                None => Vec::new(),
            };
            let one = Facts {
                family: None,
                l4: None,
                fields: first,
            };
            self.project(&one);
        }
        self.project(f);
        self.rules.push(r);
    }

    /// No packet matches both `r` (with facts `f`) and any rule of this item.
    fn disjoint(&self, f: &Facts) -> bool {
        let mine = self.facts.get_or_init(|| facts(&self.rules[0]));
        if let (Some(a), Some(b)) = (f.family, mine.family) {
            if a != b {
                return true;
            }
        }
        if let (Some(a), Some(b)) = (f.l4, mine.l4) {
            if a != b {
                return true;
            }
        }
        f.fields.iter().any(|(k, vs)| {
            if self.rules.len() == 1 {
                // One rule: its own exact values.
                mine.fields.iter().any(|(j, ws)| {
                    j == k
                        && !vs
                            .iter()
                            .any(|(lo, hi)| ws.iter().any(|(a, b)| a <= hi && lo <= b))
                })
            } else {
                self.proj
                    .iter()
                    .any(|(j, iv)| j == k && !vs.iter().any(|(lo, hi)| iv.meets(*lo, *hi)))
            }
        })
    }
}

/// The rules of a chain with mergeable rules merged: a rule joins the
/// last earlier group of its shape and verdict when no rule in between
/// can match a packet it matches (so moving it up changes nothing); runs
/// of one shape are the simple case.
pub fn merge(rules: Vec<Rule>) -> Vec<Rule> {
    let flags: Vec<bool> = rules.iter().map(mergeable).collect();
    if flags.iter().filter(|m| **m).nth(1).is_none() {
        return rules;
    }
    // Nothing moves before the first mergeable rule or past the last one:
    // only the rules between need looking at.
    let first = flags.iter().position(|m| *m).unwrap_or(0);
    let last = flags.iter().rposition(|m| *m).unwrap_or(0);
    let mut rules = rules.into_iter();
    let mut out: Vec<Rule> = Vec::with_capacity(rules.len());
    out.extend(rules.by_ref().take(first));
    let mut items: Vec<Item> = Vec::with_capacity(last + 1 - first);
    for (r, m) in rules.by_ref().take(last + 1 - first).zip(&flags[first..]) {
        if *m {
            let f = facts(&r);
            let mut target = None;
            for j in (0..items.len()).rev().take(LOOKBACK) {
                let it = &items[j];
                if it.mergeable && same_shape(&it.rules[0], &r) {
                    target = Some(j);
                    break;
                }
                if !it.disjoint(&f) {
                    break;
                }
            }
            match target {
                Some(j) => items[j].push(r, &f),
                None => items.push(Item {
                    mergeable: true,
                    facts: f.into(),
                    rules: vec![r],
                    proj: Vec::new(),
                }),
            }
        } else {
            items.push(Item::new(r));
        }
    }
    for it in items {
        emit(it.rules, &mut out);
    }
    out.extend(rules);
    out
}

fn emit(run: Vec<Rule>, out: &mut Vec<Rule>) {
    if run.len() < 2 {
        out.extend(run);
        return;
    }
    let varying = varying(&run);
    if varying.len() <= 1 {
        out.push(combine(run, &varying));
        return;
    }
    // Several fields vary: a concatenation over them, a new one started
    // wherever an element would overlap an earlier one.
    let mut group: Vec<Rule> = Vec::new();
    let mut elems = Tuples::default();
    for r in run {
        let ts = tuples(&r, &varying);
        if ts.iter().any(|t| elems.overlaps(t)) {
            flush(
                std::mem::take(&mut group),
                &varying,
                std::mem::take(&mut elems),
                out,
            );
        }
        for t in ts {
            elems.insert(t);
        }
        group.push(r);
    }
    flush(group, &varying, elems, out);
}

fn varying(run: &[Rule]) -> Vec<usize> {
    let first = &run[0];
    (0..first.matches.len())
        .filter(|&i| run.iter().any(|r| r.matches[i] != first.matches[i]))
        .collect()
}

/// A group of a run whose elements (over the run's `varying` fields) do
/// not overlap.
fn flush(group: Vec<Rule>, varying: &[usize], elems: Tuples, out: &mut Vec<Rule>) {
    if group.len() < 2 {
        out.extend(group);
        return;
    }
    let v = self::varying(&group);
    if v.len() <= 1 {
        out.push(combine(group, &v));
    } else {
        out.push(concat(group, varying, elems.list));
    }
}

/// Every combination of a rule's values in the varying fields.
fn tuples(r: &Rule, varying: &[usize]) -> Vec<Vec<Elem>> {
    let mut acc: Vec<Vec<Elem>> = vec![vec![]];
    for &i in varying {
        let vs = values(&r.matches[i]);
        acc = acc
            .into_iter()
            .flat_map(|t| {
                vs.iter().map(move |v| {
                    let mut t = t.clone();
                    t.push(*v);
                    t
                })
            })
            .collect();
    }
    acc
}

/// The elements of one concatenation, in order, without repeats. Small
/// ones are searched linearly; from [`INDEX_FROM`] elements on they are
/// indexed by the interval of their first field, so the overlap check
/// looks only at elements whose first field can meet the new one's:
/// O(log n) per element for the per-host and per-subnet rules real
/// policies have, instead of a scan of every earlier element.
#[derive(Default)]
struct Tuples {
    list: Vec<Vec<Elem>>,
    index: Option<Index>,
}

const INDEX_FROM: usize = 32;

/// Elements by the interval `[lo, hi]` of their first field, bucketed by
/// width class `k` (`hi - lo < 2^k`): an element of class `k` that meets
/// `[a, b]` starts in `(a - 2^k, b]`, one range lookup per class in use.
#[derive(Default)]
struct Index {
    exact: HashSet<Vec<Elem>>,
    classes: Vec<(u32, std::collections::BTreeMap<u128, Vec<usize>>)>,
}

/// The width class of an interval: the bit length of `hi - lo`.
fn class(lo: u128, hi: u128) -> u32 {
    128 - (hi - lo).leading_zeros()
}

fn overlap(a: &[Elem], b: &[Elem]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.overlaps(y))
}

impl Tuples {
    /// Does `t` overlap an element other than an exact repeat of itself (a
    /// repeat is harmless: it is dropped)?
    fn overlaps(&self, t: &[Elem]) -> bool {
        let Some(ix) = &self.index else {
            return self.list.iter().any(|u| u != t && overlap(u, t));
        };
        if ix.exact.contains(t) {
            return false;
        }
        let (a, b) = elem_u(&t[0]);
        ix.classes.iter().any(|(k, starts)| {
            let from = match 1u128.checked_shl(*k) {
                Some(w) => a.saturating_sub(w - 1),
                None => 0,
            };
            starts
                .range(from..=b)
                .any(|(_, is)| is.iter().any(|i| overlap(&self.list[*i], t)))
        })
    }

    fn insert(&mut self, t: Vec<Elem>) {
        if self.index.is_none() && self.list.len() >= INDEX_FROM {
            let mut ix = Index::default();
            for (i, u) in self.list.iter().enumerate() {
                ix.add(i, u);
            }
            self.index = Some(ix);
        }
        match &mut self.index {
            None => {
                if !self.list.contains(&t) {
                    self.list.push(t);
                }
            }
            Some(ix) => {
                if !ix.exact.contains(&t) {
                    ix.add(self.list.len(), &t);
                    self.list.push(t);
                }
            }
        }
    }
}

impl Index {
    fn add(&mut self, i: usize, t: &[Elem]) {
        self.exact.insert(t.to_vec());
        let (lo, hi) = elem_u(&t[0]);
        let k = class(lo, hi);
        let starts = match self.classes.iter_mut().position(|(c, _)| *c == k) {
            Some(p) => &mut self.classes[p].1,
            None => {
                self.classes.push((k, Default::default()));
                &mut self.classes.last_mut().expect("just pushed").1
            }
        };
        starts.entry(lo).or_default().push(i);
    }
}

fn parts(run: Vec<Rule>) -> Vec<Part> {
    run.into_iter()
        .map(|r| Part {
            matches: r.matches,
            comment: r.comment,
        })
        .collect()
}

/// At most one field varies: the union of its lists.
fn combine(run: Vec<Rule>, varying: &[usize]) -> Rule {
    let mut merged = template(&run[0]);
    if let Some(&i) = varying.first() {
        merged.matches[i] = match &run[0].matches[i] {
            Match::Addr {
                family, dir, neg, ..
            } => Match::Addr {
                family: *family,
                dir: *dir,
                neg: *neg,
                target: AddrTarget::Literal(sets::merge(
                    *family,
                    run.iter().flat_map(|r| match &r.matches[i] {
                        Match::Addr {
                            target: AddrTarget::Literal(rs),
                            ..
                        } => rs.clone(),
                        _ => vec![],
                    }),
                )),
            },
            Match::Port { proto, dir, .. } => Match::Port {
                proto: *proto,
                dir: *dir,
                ports: union_ports(run.iter().flat_map(|r| match &r.matches[i] {
                    Match::Port { ports, .. } => ports.clone(),
                    _ => vec![],
                })),
            },
            m => m.clone(),
        };
    }
    merged.comment = origins(&run);
    merged.merged = parts(run);
    merged
}

fn concat(run: Vec<Rule>, varying: &[usize], mut elements: Vec<Vec<Elem>>) -> Rule {
    let fields: Vec<Field> = varying
        .iter()
        .filter_map(|&i| slot(&run[0].matches[i]))
        .collect();
    let mut merged = template(&run[0]);
    let at = varying[0];
    merged.matches = run[0]
        .matches
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == at || !varying.contains(i))
        .map(|(i, m)| {
            if i == at {
                Match::Concat {
                    fields: fields.clone(),
                    elements: std::mem::take(&mut elements),
                }
            } else {
                m.clone()
            }
        })
        .collect();
    merged.comment = origins(&run);
    merged.merged = parts(run);
    merged
}

/// A merged rule's start: the first rule's matches and verdict (its
/// comment and members are filled in by the caller).
fn template(r: &Rule) -> Rule {
    Rule {
        matches: r.matches.clone(),
        stmts: vec![],
        verdict: r.verdict.clone(),
        comment: String::new(),
        decision: r.decision,
        merged: vec![],
    }
}

fn union_ports(ps: impl Iterator<Item = PortRange>) -> Vec<PortRange> {
    let mut v: Vec<PortRange> = ps.collect();
    v.sort();
    let mut out: Vec<PortRange> = Vec::new();
    for r in v {
        if let Some(l) = out.last_mut() {
            if r.lo as u32 <= l.hi as u32 + 1 {
                l.hi = l.hi.max(r.hi);
                continue;
            }
        }
        out.push(r);
    }
    out
}

/// The comment of a merged rule: its origins, consecutive lines of one
/// file as a range (`host.fw:12-111`, `host.fw:3,5,7-9, cluster.fw:4`).
pub fn origins(run: &[Rule]) -> String {
    // (file, the group line it came through), lines.
    type Lines<'a> = Vec<((&'a str, Option<&'a str>), Vec<u32>)>;
    let mut files: Lines = Vec::new();
    let mut other: Vec<&str> = Vec::new();
    for r in run {
        let c = r.comment.as_str();
        let (head, via) = match c.as_bytes().windows(5).position(|w| w == b" via ") {
            Some(i) => (&c[..i], Some(&c[i + 5..])),
            None => (c, None),
        };
        let parsed = head
            .rsplit_once(':')
            .filter(|(f, _)| !f.is_empty() && !f.as_bytes().contains(&b' '))
            .and_then(|(f, l)| l.parse::<u32>().ok().map(|l| ((f, via), l)));
        match parsed {
            Some((k, l)) => match files.iter_mut().find(|(g, _)| *g == k) {
                Some((_, ls)) => ls.push(l),
                None => files.push((k, vec![l])),
            },
            None => {
                if !other.contains(&r.comment.as_str()) {
                    other.push(&r.comment)
                }
            }
        }
    }
    let mut out: Vec<String> = Vec::new();
    for ((f, via), mut ls) in files {
        ls.sort_unstable();
        ls.dedup();
        let mut spans: Vec<String> = Vec::new();
        let mut i = 0;
        while i < ls.len() {
            let mut j = i;
            while j + 1 < ls.len() && ls[j + 1] == ls[j] + 1 {
                j += 1;
            }
            spans.push(if j > i {
                format!("{}-{}", ls[i], ls[j])
            } else {
                ls[i].to_string()
            });
            i = j + 1;
        }
        let mut s = format!("{f}:{}", spans.join(","));
        if let Some(v) = via {
            s.push_str(" via ");
            s.push_str(v);
        }
        out.push(s);
    }
    out.extend(other.into_iter().map(String::from));
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_types::{Action, Family, IpRange};

    fn r(line: u32, src: &str, port: u16, v: Verdict) -> Rule {
        let a = if src.contains('/') {
            IpRange::from_net(&src.parse().unwrap())
        } else {
            IpRange::host(src.parse().unwrap())
        };
        Rule::new(format!("host.fw:{line}"))
            .m(Match::Addr {
                family: Family::V4,
                dir: Dir::Src,
                neg: false,
                target: AddrTarget::Literal(vec![a]),
            })
            .m(Match::Port {
                proto: 6,
                dir: Dir::Dst,
                ports: vec![PortRange::single(port)],
            })
            .v(v)
            .decides(Action::Accept)
    }

    #[test]
    fn a_run_with_one_varying_field_becomes_one_set() {
        let rules: Vec<Rule> = (0..5)
            .map(|i| r(10 + i, &format!("10.0.0.{i}"), 22, Verdict::Return))
            .collect();
        let m = merge(rules);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].comment, "host.fw:10-14");
        assert_eq!(m[0].merged.len(), 5);
        assert_eq!(
            crate::print::rule(&m[0]),
            "ip saddr 10.0.0.0-10.0.0.4 tcp dport 22 return comment \"host.fw:10-14\""
        );
    }

    #[test]
    fn never_across_a_different_verdict_or_a_log_rule() {
        let mut rules = vec![
            r(1, "10.0.0.1", 22, Verdict::Return),
            r(2, "10.0.0.2", 22, Verdict::Drop),
            r(3, "10.0.0.3", 22, Verdict::Drop),
        ];
        let mut log = r(4, "10.0.0.4", 22, Verdict::Drop);
        log.verdict = None;
        log.decision = None;
        log.stmts.push(Stmt::Log {
            prefix: "x".into(),
            group: 0,
        });
        rules.push(log);
        rules.push(r(4, "10.0.0.4", 22, Verdict::Drop));
        let m = merge(rules);
        let c: Vec<&str> = m.iter().map(|r| r.comment.as_str()).collect();
        assert_eq!(c, ["host.fw:1", "host.fw:2-3", "host.fw:4", "host.fw:4"]);
    }

    #[test]
    fn two_varying_fields_make_a_concatenation_split_where_elements_overlap() {
        let rules = vec![
            r(1, "10.0.0.1", 22, Verdict::Drop),
            r(2, "10.0.0.2", 80, Verdict::Drop),
            r(3, "10.0.0.0/24", 80, Verdict::Drop),
            r(4, "10.0.1.1", 443, Verdict::Drop),
        ];
        let m = merge(rules);
        let t: Vec<String> = m.iter().map(crate::print::rule).collect();
        assert_eq!(
            t,
            [
                "ip saddr . tcp dport { 10.0.0.1 . 22, 10.0.0.2 . 80 } drop comment \"host.fw:1-2\"",
                "ip saddr . tcp dport { 10.0.0.0/24 . 80, 10.0.1.1 . 443 } drop comment \"host.fw:3-4\""
            ]
        );
    }

    #[test]
    fn a_rule_joins_an_earlier_group_only_past_rules_it_cannot_meet() {
        let rules = vec![
            r(1, "10.0.0.1", 22, Verdict::Return),
            r(2, "10.0.0.2", 80, Verdict::Drop),
            // disjoint from line 2 (other source): joins line 1
            r(3, "10.0.0.3", 22, Verdict::Return),
            r(4, "10.0.0.0/24", 22, Verdict::Drop),
            // meets line 4 (10.0.0.5 is in 10.0.0.0/24, port 22): stays after it
            r(5, "10.0.0.5", 22, Verdict::Return),
        ];
        let m = merge(rules);
        let c: Vec<&str> = m.iter().map(|r| r.comment.as_str()).collect();
        assert_eq!(c, ["host.fw:1,3", "host.fw:2,4", "host.fw:5"]);
        assert_eq!(
            crate::print::rule(&m[1]),
            "ip saddr . tcp dport { 10.0.0.2 . 80, 10.0.0.0/24 . 22 } drop comment \"host.fw:2,4\""
        );
    }

    /// The indexed overlap check answers as a scan of every element does,
    /// over random mixes of hosts, subnets, wide ranges and port ranges.
    #[test]
    fn indexed_overlap_equals_the_linear_scan() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for _ in 0..20 {
            let mut t = Tuples::default();
            for _ in 0..400 {
                let base = next(1 << 12) as u32;
                let width = match next(4) {
                    0 => 0,
                    1 => next(16) as u32,
                    2 => next(300) as u32,
                    _ => next(1 << 12) as u32,
                };
                let a = IpRange {
                    start: std::net::Ipv4Addr::from(base).into(),
                    end: std::net::Ipv4Addr::from(base.saturating_add(width)).into(),
                };
                let lo = next(50) as u16;
                let p = PortRange::new(lo, lo + next(3) as u16);
                let e = vec![Elem::Addr(a), Elem::Port(p)];
                let linear = t.list.iter().any(|u| u != &e && overlap(u, &e));
                assert_eq!(t.overlaps(&e), linear, "{e:?}");
                t.insert(e);
            }
        }
    }

    #[test]
    fn origins_compress_line_ranges() {
        let rules: Vec<Rule> = [3, 5, 7, 8, 9]
            .iter()
            .map(|l| r(*l, "10.0.0.1", 22, Verdict::Drop))
            .collect();
        assert_eq!(origins(&rules), "host.fw:3,5,7-9");
        let mut g = rules.clone();
        for (r, c) in g.iter_mut().zip([
            "cluster.fw:8 via 100.fw:6",
            "cluster.fw:9 via 100.fw:6",
            "cluster.fw:9 via 101.fw:2",
            "auto:x",
            "host.fw:1",
        ]) {
            r.comment = c.into();
        }
        assert_eq!(
            origins(&g),
            "cluster.fw:8-9 via 100.fw:6, cluster.fw:9 via 101.fw:2, host.fw:1, auto:x"
        );
    }
}

//! Policy lints (bad-inputs 27 and 31): rules that can never match because
//! an earlier rule of the same list already decides every packet they
//! would (E0501), and rules that repeat an earlier one exactly (E0505).
//! Both are warnings (`--deny-warnings` makes them errors). The lock-out
//! (E0502) and cluster (E0504) checks need the compiled ruleset and live in
//! the simulator's guard.
//!
//! Every action of a Proxmox rule is final, so a rule is dead when an
//! earlier rule of the same chain (same direction, same zone) matches a
//! superset of its packets: same or wider interface, family, addresses,
//! protocol, ports and ICMP type.

use crate::ir::{AddrMatch, Rule, Site};
use rampart_types::{codes, Diagnostic, Diagnostics, PortRange, SourceMap};
use std::collections::{HashMap, HashSet};

/// The lint memo's maps are keyed by a rule list's spans (10,000 rules on a
/// big site, hashed three times per revision): a fast hasher, not SipHash
/// (the maps are only looked up, never iterated, so output does not depend
/// on it).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;
type FastSet<K> = HashSet<K, foldhash::fast::FixedState>;

/// Lists longer than this get the exact-repeat check only (the superset
/// check compares every pair).
const PAIRWISE_LIMIT: usize = 2000;

/// Lint every rule list of the site: each node's host rules (host.fw, then
/// cluster.fw) and each guest's rules.
pub fn lint(site: &Site) -> Diagnostics {
    lint_with(site, None)
}

/// The findings of the previous [`lint_cached`] per rule list, reused for a
/// list whose rules (spans included) are unchanged while the site's file
/// paths are the same (findings name `file:line`). Holds the lists of the
/// last site linted, nothing older.
#[derive(Default)]
pub struct LintMemo {
    paths: Vec<String>,
    lists: FastMap<Vec<Option<rampart_types::Span>>, (Vec<Rule>, Vec<Diagnostic>)>,
}

/// [`lint`], reusing what `memo` kept of unchanged rule lists; the result
/// is the same.
pub fn lint_cached(site: &Site, memo: &mut LintMemo) -> Diagnostics {
    lint_with(site, Some(memo))
}

fn lint_with(site: &Site, mut memo: Option<&mut LintMemo>) -> Diagnostics {
    let paths: Vec<String> = match memo {
        Some(_) => site.sources.files().map(|(_, f)| f.path.clone()).collect(),
        None => Vec::new(),
    };
    let mut old = match memo.as_deref_mut() {
        Some(m) if m.paths == paths => std::mem::take(&mut m.lists),
        _ => FastMap::default(),
    };
    let mut new = FastMap::default();
    let mut out = Diagnostics::new();
    let mut seen_lists: FastSet<Vec<Option<rampart_types::Span>>> = FastSet::default();
    let mut reported: FastSet<(&'static str, rampart_types::Span)> = FastSet::default();
    // A node's list is host.fw then cluster.fw: each file's part is linted
    // on its own, so the cluster rules (the same on every node) are linted
    // once, not once per node. A host.fw rule shadowing a cluster.fw rule
    // is not reported.
    let mut lists: Vec<Vec<&Rule>> = Vec::new();
    for n in &site.nodes {
        let mut by_file: Vec<(Option<rampart_types::FileId>, Vec<&Rule>)> = Vec::new();
        for r in &n.firewall.rules {
            let f = r.origin.span().map(|s| s.file);
            match by_file.iter_mut().find(|(k, _)| *k == f) {
                Some((_, v)) => v.push(r),
                None => by_file.push((f, vec![r])),
            }
        }
        lists.extend(by_file.into_iter().map(|(_, v)| v));
    }
    lists.extend(site.guests.iter().map(|g| g.rules.iter().collect()));
    for rules in &lists {
        let key: Vec<_> = rules.iter().map(|r| r.origin.span()).collect();
        if !seen_lists.insert(key.clone()) {
            continue; // the same cluster rules on another node
        }
        // Unchanged rules keep the copy the memo holds; changed ones are
        // linted and copied.
        let (kept, found) = match old.remove(&key) {
            Some((r, d)) if r.iter().eq(rules.iter().copied()) => (r, d),
            _ => (Vec::new(), lint_list(rules, &site.sources)),
        };
        if memo.is_some() {
            let kept = if kept.is_empty() {
                rules.iter().map(|r| (*r).clone()).collect()
            } else {
                kept
            };
            new.insert(key, (kept, found.clone()));
        }
        for d in found {
            if let Some(s) = d.span {
                if !reported.insert((d.code, s)) {
                    continue;
                }
            }
            out.push(d);
        }
    }
    if let Some(m) = memo {
        m.paths = paths;
        m.lists = new;
    }
    out
}

fn covers_addr(a: &Option<AddrMatch>, b: &Option<AddrMatch>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(x), Some(y)) if x == y => true,
        (Some(AddrMatch::List(xs)), Some(AddrMatch::List(ys))) => ys.iter().all(|y| {
            xs.iter()
                .any(|x| x.contains(&y.start) && x.contains(&y.end))
        }),
        _ => false,
    }
}

fn covers_ports(a: &[PortRange], b: &[PortRange]) -> bool {
    if a.is_empty() {
        return true;
    }
    if b.is_empty() {
        return false;
    }
    b.iter()
        .all(|y| a.iter().any(|x| x.lo <= y.lo && y.hi <= x.hi))
}

/// `a` matches every packet `b` matches.
fn covers(a: &Rule, b: &Rule) -> bool {
    a.dir == b.dir
        && (a.iface.is_none() || a.iface == b.iface)
        && (a.family.is_none() || a.family == b.family)
        && covers_addr(&a.source, &b.source)
        && covers_addr(&a.dest, &b.dest)
        && (a.proto.is_none() || a.proto == b.proto)
        && covers_ports(&a.dport, &b.dport)
        && covers_ports(&a.sport, &b.sport)
        && (a.icmp_type.is_none() || a.icmp_type == b.icmp_type)
}

fn same_match(a: &Rule, b: &Rule) -> bool {
    a.dir == b.dir
        && a.iface == b.iface
        && a.family == b.family
        && a.source == b.source
        && a.dest == b.dest
        && a.proto == b.proto
        && a.dport == b.dport
        && a.sport == b.sport
        && a.icmp_type == b.icmp_type
}

fn key(r: &Rule) -> String {
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        r.dir,
        r.action,
        r.iface,
        r.family,
        r.source,
        r.dest,
        r.proto,
        r.dport,
        r.sport,
        r.icmp_type
    )
}

/// A rule line and the rules it expanded to (a macro gives several).
struct Line<'a> {
    span: rampart_types::Span,
    rules: Vec<&'a Rule>,
}

fn lint_list(rules: &[&Rule], map: &SourceMap) -> Vec<Diagnostic> {
    let mut lines: Vec<Line> = Vec::new();
    for &r in rules {
        let Some(s) = r.origin.span() else { continue };
        match lines.last_mut() {
            Some(l) if l.span == s => l.rules.push(r),
            _ => lines.push(Line {
                span: s,
                rules: vec![r],
            }),
        }
    }
    let mut out = Vec::new();
    let mut dead: HashSet<usize> = HashSet::new();
    // Exact repeats: a line whose rules are exactly an earlier line's.
    let mut first: HashMap<Vec<String>, usize> = HashMap::new();
    for (j, l) in lines.iter().enumerate() {
        let mut k: Vec<String> = l.rules.iter().map(|r| key(r)).collect();
        k.sort();
        match first.get(&k) {
            Some(&i) => {
                dead.insert(j);
                out.push(
                    Diagnostic::new(codes::REPEATED_RULE, "this rule repeats an earlier one")
                        .at(l.span)
                        .label("identical to an earlier rule, so it never decides anything")
                        .note(format!("first written at {}", map.short(lines[i].span)))
                        .hint("remove one of the two"),
                );
            }
            None => {
                first.insert(k, j);
            }
        }
    }
    if rules.len() > PAIRWISE_LIMIT {
        return out;
    }
    // Shadowed: every rule of the line is covered by a rule of earlier lines.
    for (j, l) in lines.iter().enumerate() {
        if dead.contains(&j) {
            continue;
        }
        let mut by: Option<&Rule> = None;
        let all = l.rules.iter().all(|b| {
            lines[..j]
                .iter()
                .flat_map(|e| e.rules.iter())
                .find(|a| covers(a, b))
                .map(|a| by = Some(a))
                .is_some()
        });
        let Some(a) = by.filter(|_| all) else {
            continue;
        };
        let at = a.origin.span().map(|s| map.short(s)).unwrap_or_default();
        let what = if l.rules.len() == 1 && same_match(a, l.rules[0]) {
            format!("the rule at {at} matches the same packets first")
        } else {
            format!("the rule at {at} matches every packet this one would, first")
        };
        out.push(
            Diagnostic::new(codes::SHADOWED_RULE, "this rule can never match")
                .at(l.span)
                .label("shadowed by an earlier rule")
                .note(format!("{what} ({} decides them)", a.action))
                .hint("move it above that rule, narrow the earlier rule, or remove it"),
        );
    }
    out
}

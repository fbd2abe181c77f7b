//! Two-phase replace: the host never sees a half-applied policy, and a
//! packet the old and the new policy both accept is never refused.
//!
//! Replacing rampart's tables in one `nft -f` transaction is atomic for the
//! rules, but not for the sets born in it: on this kernel an interval set
//! (named, or anonymous inside a rule) created in the same transaction that
//! makes the rules using it live misses lookups while the commit runs
//! (`tests/kernel_interval_sets.rs` proves it). So a new plan goes in as:
//!
//! 1. **stage** — one transaction adds every set, map, helper and chain of
//!    the new plan under a kernel name of its own, `NAME.<hash>`, where the
//!    hash covers the object's text with its references already renamed
//!    (so a changed set renames every chain that uses it, up to the hooks).
//!    A base chain's rules go into a regular chain `HOOKCHAIN.<hash>` that
//!    ends with the chain's policy as an explicit verdict. Nothing staged is
//!    reachable from a hook yet.
//! 2. **switch** — one small transaction points each base chain (same name
//!    and hook as compiled) at its staged body with a single `jump`, and
//!    removes the tables the plan drops. No set is created here.
//! 3. **clean up** — one transaction deletes every object of the old
//!    generation. Leftovers of an interrupted apply are unreachable and go
//!    with the next clean-up.
//!
//! When the kernel provably still runs the recorded plan (its ruleset
//! generation did not move), staged objects whose kernel name already exists
//! are reused: a one-rule change stages that chain and its callers only,
//! never the 100,000-element set next to it. Otherwise every name gets a
//! fresh salt and everything is staged anew (a hand-flushed chain is never
//! trusted).
//!
//! A script this module does not understand (top-level commands other than
//! table blocks, objects other than sets, maps, chains and ct helpers) is
//! applied the old way, in one transaction.

use crate::error::Error;
use crate::nftscript::TableRef;
use crate::system::System;
use std::collections::{BTreeMap, BTreeSet};

/// One lexical token of an nft script, with its raw text.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Space(String),
    Newline,
    Comment(String),
    Str(String),
    Open,
    Close,
    Semi,
    Comma,
    Word(String),
}

impl Tok {
    fn text(&self) -> &str {
        match self {
            Tok::Space(s) | Tok::Comment(s) | Tok::Str(s) | Tok::Word(s) => s,
            Tok::Newline => "\n",
            Tok::Open => "{",
            Tok::Close => "}",
            Tok::Semi => ";",
            Tok::Comma => ",",
        }
    }
}

fn lex(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\n' => out.push(Tok::Newline),
            ' ' | '\t' | '\r' => {
                let mut w = String::from(c);
                while let Some(&n) = it.peek() {
                    if n == ' ' || n == '\t' || n == '\r' {
                        w.push(n);
                        it.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Space(w));
            }
            '#' => {
                let mut w = String::from(c);
                while let Some(&n) = it.peek() {
                    if n == '\n' {
                        break;
                    }
                    w.push(n);
                    it.next();
                }
                out.push(Tok::Comment(w));
            }
            '"' => {
                let mut w = String::from(c);
                for n in it.by_ref() {
                    w.push(n);
                    if n == '"' {
                        break;
                    }
                }
                out.push(Tok::Str(w));
            }
            '{' => out.push(Tok::Open),
            '}' => out.push(Tok::Close),
            ';' => out.push(Tok::Semi),
            ',' => out.push(Tok::Comma),
            _ => {
                let mut w = String::from(c);
                while let Some(&n) = it.peek() {
                    if matches!(
                        n,
                        ' ' | '\t' | '\r' | '\n' | '#' | '"' | '{' | '}' | ';' | ','
                    ) {
                        break;
                    }
                    w.push(n);
                    it.next();
                }
                out.push(Tok::Word(w));
            }
        }
    }
    out
}

/// Kinds of named objects this module stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Helper,
    Set,
    Map,
    Chain,
}

impl Kind {
    fn keyword(self) -> &'static str {
        match self {
            Kind::Helper => "ct helper",
            Kind::Set => "set",
            Kind::Map => "map",
            Kind::Chain => "chain",
        }
    }
}

#[derive(Clone, Debug)]
struct Obj {
    kind: Kind,
    name: String,
    body: Vec<Tok>,
}

/// A base chain's hook spec and policy, split from its rules.
#[derive(Clone, Debug, PartialEq, Eq)]
struct BaseSpec {
    /// e.g. `type filter hook input priority 0` (plus device statements).
    spec: Vec<String>,
    policy: String,
    hook: String,
    ctype: String,
    priority: Option<i64>,
}

#[derive(Clone, Debug)]
struct TableDef {
    table: TableRef,
    objects: Vec<Obj>,
}

/// A plan script as this module understands it.
#[derive(Clone, Debug, Default)]
struct Script {
    tables: Vec<TableDef>,
}

fn words(toks: &[Tok]) -> Vec<&str> {
    toks.iter()
        .filter_map(|t| match t {
            Tok::Word(w) => Some(w.as_str()),
            Tok::Str(s) => Some(s.as_str()),
            _ => None,
        })
        .collect()
}

/// Statements of a token run at depth 0 (split on newline and `;`), each
/// without surrounding space; nested braces stay inside their statement.
fn statements(toks: &[Tok]) -> Vec<Vec<Tok>> {
    let mut out = Vec::new();
    let mut cur: Vec<Tok> = Vec::new();
    let mut depth = 0usize;
    for t in toks {
        match t {
            Tok::Open => {
                depth += 1;
                cur.push(t.clone());
            }
            Tok::Close => {
                depth = depth.saturating_sub(1);
                cur.push(t.clone());
            }
            Tok::Newline | Tok::Semi if depth == 0 => out.push(std::mem::take(&mut cur)),
            Tok::Comment(_) if depth == 0 => {}
            Tok::Newline => cur.push(Tok::Space(" ".into())),
            Tok::Comment(_) => {}
            _ => cur.push(t.clone()),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|mut s| {
            while matches!(s.first(), Some(Tok::Space(_))) {
                s.remove(0);
            }
            while matches!(s.last(), Some(Tok::Space(_))) {
                s.pop();
            }
            s
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// Index of the `}` closing the `{` just before `from`.
fn close_of(toks: &[Tok], from: usize) -> Option<usize> {
    let mut depth = 1usize;
    for (i, t) in toks.iter().enumerate().skip(from) {
        match t {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Top-level walk: (head words, optional block body) per statement.
fn blocks(toks: &[Tok]) -> Result<Vec<(Vec<String>, Option<Vec<Tok>>)>, String> {
    let mut out = Vec::new();
    let mut head: Vec<Tok> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Newline | Tok::Semi => {
                let w: Vec<String> = words(&head).into_iter().map(String::from).collect();
                if !w.is_empty() {
                    out.push((w, None));
                }
                head.clear();
            }
            Tok::Open => {
                let end = close_of(toks, i + 1).ok_or("unbalanced braces")?;
                let w: Vec<String> = words(&head).into_iter().map(String::from).collect();
                out.push((w, Some(toks[i + 1..end].to_vec())));
                head.clear();
                i = end;
            }
            Tok::Close => return Err("unbalanced braces".into()),
            Tok::Comment(_) => {}
            t => head.push(t.clone()),
        }
        i += 1;
    }
    let w: Vec<String> = words(&head).into_iter().map(String::from).collect();
    if !w.is_empty() {
        out.push((w, None));
    }
    Ok(out)
}

fn parse(script: &str) -> Result<Script, String> {
    let toks = lex(script);
    let mut out = Script::default();
    for (head, body) in blocks(&toks)? {
        let h: Vec<&str> = head.iter().map(String::as_str).collect();
        match (h.as_slice(), body) {
            (["table", f, n] | ["add", "table", f, n], None)
            | (["delete" | "destroy", "table", f, n], None) => {
                let _ = (f, n);
            }
            (["table", f, n] | ["add", "table", f, n], Some(body)) => {
                let table = TableRef {
                    family: f.to_string(),
                    name: n.to_string(),
                };
                if out.tables.iter().any(|t| t.table == table) {
                    return Err(format!("table {table} defined twice"));
                }
                let mut objects = Vec::new();
                for (oh, ob) in blocks(&body)? {
                    let o: Vec<&str> = oh.iter().map(String::as_str).collect();
                    let (kind, name) = match o.as_slice() {
                        ["set", n] => (Kind::Set, n),
                        ["map", n] => (Kind::Map, n),
                        ["chain", n] => (Kind::Chain, n),
                        ["ct", "helper", n] => (Kind::Helper, n),
                        ["comment", _] if ob.is_none() => continue,
                        _ => return Err(format!("`{}` in table {table}", oh.join(" "))),
                    };
                    let Some(body) = ob else {
                        return Err(format!("`{}` without a body", oh.join(" ")));
                    };
                    if name.starts_with('"') {
                        return Err(format!("quoted object name {name}"));
                    }
                    objects.push(Obj {
                        kind,
                        name: name.to_string(),
                        body,
                    });
                }
                out.tables.push(TableDef { table, objects });
            }
            _ => return Err(format!("top-level statement `{}`", head.join(" "))),
        }
    }
    Ok(out)
}

fn named_priority(family: &str, name: &str) -> Option<i64> {
    let bridge = family == "bridge";
    Some(match (name, bridge) {
        ("raw", false) => -300,
        ("mangle", false) => -150,
        ("dstnat", false) => -100,
        ("filter", false) => 0,
        ("security", false) => 50,
        ("srcnat", false) => 100,
        ("dstnat", true) => -300,
        ("filter", true) => -200,
        ("out", true) => 100,
        ("srcnat", true) => 300,
        _ => return None,
    })
}

/// `priority 0`, `priority -150`, `priority filter + 10`.
fn parse_priority(family: &str, w: &[&str]) -> Option<i64> {
    let base = match w.first()? {
        x => x
            .parse::<i64>()
            .ok()
            .or_else(|| named_priority(family, x))?,
    };
    match w.get(1..) {
        Some([]) | None => Some(base),
        Some(["+", n]) => Some(base + n.parse::<i64>().ok()?),
        Some(["-", n]) => Some(base - n.parse::<i64>().ok()?),
        _ => None,
    }
}

/// Split a chain body into (base spec, chain comment, rule statements).
fn split_chain(
    family: &str,
    body: &[Tok],
) -> Result<(Option<BaseSpec>, Option<Vec<Tok>>, Vec<Vec<Tok>>), String> {
    let mut spec = Vec::new();
    let mut policy = None;
    let mut comment = None;
    let mut rules = Vec::new();
    for st in statements(body) {
        let w = words(&st);
        match w.first().copied() {
            Some("type") | Some("device") | Some("devices") => {
                spec.push(st.iter().map(Tok::text).collect::<String>())
            }
            Some("policy") => {
                policy = Some(w.get(1).ok_or("policy without a verdict")?.to_string())
            }
            Some("comment") if w.len() == 2 => comment = Some(st),
            _ => rules.push(st),
        }
    }
    if spec.is_empty() {
        if policy.is_some() {
            return Err("policy on a regular chain".into());
        }
        return Ok((None, comment, rules));
    }
    let line = spec.join("; ");
    let sw: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|s| !s.is_empty())
        .collect();
    let after = |k: &str| sw.iter().position(|w| *w == k).and_then(|i| sw.get(i + 1));
    let hook = after("hook")
        .ok_or("base chain without a hook")?
        .to_string();
    let ctype = after("type")
        .ok_or("base chain without a type")?
        .to_string();
    let priority = sw.iter().position(|w| *w == "priority").and_then(|i| {
        let rest: Vec<&str> = sw[i + 1..]
            .iter()
            .copied()
            .take_while(|w| !matches!(*w, "device" | "devices" | "policy"))
            .collect();
        parse_priority(family, &rest)
    });
    let policy = policy.unwrap_or_else(|| "accept".into());
    if !matches!(policy.as_str(), "accept" | "drop") {
        return Err(format!("base chain policy `{policy}`"));
    }
    Ok((
        Some(BaseSpec {
            spec,
            policy,
            hook,
            ctype,
            priority,
        }),
        comment,
        rules,
    ))
}

/// Rename the references in a token run: `@set`, `jump`/`goto CHAIN`, and
/// `set "helper"` (ct helper assignment).
fn rename_refs(
    toks: &[Tok],
    sets: &BTreeMap<String, String>,
    chains: &BTreeMap<String, String>,
    helpers: &BTreeMap<String, String>,
) -> String {
    let mut out = String::new();
    let mut prev: Option<&str> = None;
    for t in toks {
        match t {
            Tok::Word(w) => {
                let r = if let Some(n) = w.strip_prefix('@') {
                    sets.get(n).map(|k| format!("@{k}"))
                } else if matches!(prev, Some("jump") | Some("goto")) {
                    chains.get(w.as_str()).cloned()
                } else {
                    None
                };
                out.push_str(r.as_deref().unwrap_or(w));
                prev = Some(w);
            }
            Tok::Str(s) => {
                let inner = s.trim_matches('"');
                match (prev, helpers.get(inner)) {
                    (Some("set"), Some(k)) => out.push_str(&format!("\"{k}\"")),
                    _ => out.push_str(s),
                }
                prev = None;
            }
            Tok::Space(_) => out.push_str(t.text()),
            _ => {
                out.push_str(t.text());
                prev = None;
            }
        }
    }
    out
}

/// What the kernel has in rampart's tables (names only; no elements, no rules).
#[derive(Clone, Debug, Default)]
pub struct KernelObjects {
    /// table -> chain name -> (type, hook, prio, policy) when a base chain.
    chains: BTreeMap<TableRef, BTreeMap<String, Option<(String, String, i64, String)>>>,
    sets: BTreeMap<TableRef, BTreeSet<String>>,
    maps: BTreeMap<TableRef, BTreeSet<String>>,
    helpers: BTreeMap<TableRef, BTreeSet<String>>,
}

impl KernelObjects {
    /// Parse `nft -j` listings of chains, sets, maps and ct helpers.
    fn from_json(listings: &[String], wanted: &BTreeSet<TableRef>) -> Result<Self, String> {
        let mut k = KernelObjects::default();
        for l in listings {
            let v: serde_json::Value =
                serde_json::from_str(l).map_err(|e| format!("nft -j output: {e}"))?;
            let Some(items) = v.get("nftables").and_then(|x| x.as_array()) else {
                continue;
            };
            for it in items {
                let Some((kind, o)) = it.as_object().and_then(|m| m.iter().next()) else {
                    continue;
                };
                let s = |f: &str| o.get(f).and_then(|x| x.as_str()).unwrap_or("").to_string();
                let t = TableRef {
                    family: s("family"),
                    name: s("table"),
                };
                if !wanted.contains(&t) {
                    continue;
                }
                let name = s("name");
                if name.starts_with("__") {
                    continue; // anonymous sets live and die with their rules
                }
                match kind.as_str() {
                    "chain" => {
                        let base = o.get("hook").map(|_| {
                            (
                                s("type"),
                                s("hook"),
                                o.get("prio").and_then(|p| p.as_i64()).unwrap_or(i64::MIN),
                                s("policy"),
                            )
                        });
                        k.chains.entry(t).or_default().insert(name, base);
                    }
                    "set" => {
                        k.sets.entry(t).or_default().insert(name);
                    }
                    "map" => {
                        k.maps.entry(t).or_default().insert(name);
                    }
                    "ct helper" => {
                        k.helpers.entry(t).or_default().insert(name);
                    }
                    _ => {}
                }
            }
        }
        Ok(k)
    }

    fn has(&self, t: &TableRef, kind: Kind, name: &str) -> bool {
        match kind {
            Kind::Chain => self.chains.get(t).is_some_and(|c| c.contains_key(name)),
            Kind::Set => self.sets.get(t).is_some_and(|c| c.contains(name)),
            Kind::Map => self.maps.get(t).is_some_and(|c| c.contains(name)),
            Kind::Helper => self.helpers.get(t).is_some_and(|c| c.contains(name)),
        }
    }
}

/// What the kernel holds after `script` was staged with `salt` and its
/// clean-up ran: used instead of listing the kernel while the ruleset
/// generation shows that nothing changed since.
pub fn recorded_objects(script: &str, salt: &str, pins: &Pins) -> Option<KernelObjects> {
    let parsed = parse(script).ok()?;
    let mut k = KernelObjects::default();
    for td in &parsed.tables {
        let t = td.table.clone();
        for n in name_table(td, salt, pins).ok()? {
            match n.kind {
                Kind::Chain => {
                    let chains = k.chains.entry(t.clone()).or_default();
                    if let Some(b) = &n.base {
                        chains.insert(
                            n.name.clone(),
                            Some((
                                b.ctype.clone(),
                                b.hook.clone(),
                                b.priority.unwrap_or(i64::MIN),
                                b.policy.clone(),
                            )),
                        );
                    }
                    chains.insert(n.kname.clone(), None);
                }
                Kind::Set => {
                    k.sets.entry(t.clone()).or_default().insert(n.kname);
                }
                Kind::Map => {
                    k.maps.entry(t.clone()).or_default().insert(n.kname);
                }
                Kind::Helper => {
                    k.helpers.entry(t.clone()).or_default().insert(n.kname);
                }
            }
        }
    }
    Some(k)
}

/// Read what runs in `tables` (the ones that exist).
pub fn list_kernel(sys: &dyn System, tables: &BTreeSet<TableRef>) -> Result<KernelObjects, Error> {
    let mut listings = vec![
        sys.nft_list_json(&["list", "chains"])?,
        sys.nft_list_json(&["-t", "list", "sets"])?,
        sys.nft_list_json(&["-t", "list", "maps"])?,
    ];
    let k = KernelObjects::from_json(&listings, tables).map_err(Error::InvalidPlan)?;
    // ct helpers are listed per table; only tables that exist have any.
    for t in k.chains.keys() {
        listings.push(sys.nft_list_json(&["list", "ct", "helpers", "table", &t.family, &t.name])?);
    }
    KernelObjects::from_json(&listings, tables).map_err(Error::InvalidPlan)
}

fn short_hash(parts: &[&str]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let d = h.finalize();
    d.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

/// Longest object name the kernel takes (NFT_NAME_MAXLEN - 1).
const MAX_NAME: usize = 255;

/// One object of a table as it goes into the kernel.
#[derive(Clone, Debug)]
struct Named {
    kind: Kind,
    /// The plan's name.
    name: String,
    /// The kernel's name, `NAME.<hash>`.
    kname: String,
    /// Body text with references renamed; for sets and maps without the
    /// elements (those are in `elements`).
    decl: String,
    /// Set/map elements, references renamed (empty for chains and helpers).
    elements: Vec<String>,
    /// Base chain: its hook spec and policy.
    base: Option<BaseSpec>,
}

/// Split a set/map body into its declaration and its elements.
fn split_elements(body: &[Tok]) -> (Vec<Tok>, Vec<Vec<Tok>>) {
    let mut decl = Vec::new();
    let mut elems = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if let Tok::Word(w) = &body[i] {
            if w == "elements" {
                // `elements = { ... }`
                let mut j = i + 1;
                while j < body.len() && !matches!(body[j], Tok::Open) {
                    j += 1;
                }
                if let Some(end) = close_of(body, j + 1) {
                    let mut cur = Vec::new();
                    let mut depth = 0usize;
                    for t in &body[j + 1..end] {
                        match t {
                            Tok::Comma if depth == 0 => elems.push(std::mem::take(&mut cur)),
                            Tok::Open => {
                                depth += 1;
                                cur.push(t.clone());
                            }
                            Tok::Close => {
                                depth = depth.saturating_sub(1);
                                cur.push(t.clone());
                            }
                            Tok::Newline | Tok::Comment(_) => cur.push(Tok::Space(" ".into())),
                            _ => cur.push(t.clone()),
                        }
                    }
                    elems.push(cur);
                    i = end + 1;
                    continue;
                }
            }
        }
        decl.push(body[i].clone());
        i += 1;
    }
    (decl, elems)
}

fn squeeze(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Chains the kernel holds under a name other than the hash of what they
/// hold: `family table chain` -> kernel name. An in-place change
/// ([`in_place`]) refills a staged chain without renaming it (and so without
/// renaming its callers); the record keeps the name it has.
pub type Pins = BTreeMap<String, String>;

/// Kernel names and texts of one table's objects. A name's hash covers the
/// object's declaration with references already renamed, so renaming
/// propagates from a changed chain to the chains that jump to it, up to
/// the hook. Set and map elements are not part of the name: they change in
/// place, in the switch transaction.
fn name_table(td: &TableDef, salt: &str, pins: &Pins) -> Result<Vec<Named>, String> {
    let mut split = BTreeMap::new();
    for o in td.objects.iter().filter(|o| o.kind == Kind::Chain) {
        let sp =
            split_chain(&td.table.family, &o.body).map_err(|e| format!("chain {}: {e}", o.name))?;
        split.insert(o.name.clone(), sp);
    }
    let hash = |kind: &str, name: &str, text: &str| {
        format!("{name}.{}", short_hash(&[salt, kind, name, text]))
    };
    let mut helpers: BTreeMap<String, String> = BTreeMap::new();
    let mut sets: BTreeMap<String, String> = BTreeMap::new();
    let mut chains: BTreeMap<String, String> = BTreeMap::new();
    let mut named: BTreeMap<(Kind, String), Named> = BTreeMap::new();
    let no = BTreeMap::new();
    for o in &td.objects {
        match o.kind {
            Kind::Helper => {
                let decl: String = o.body.iter().map(Tok::text).collect();
                let kname = hash("helper", &o.name, &squeeze(&decl));
                helpers.insert(o.name.clone(), kname.clone());
                named.insert(
                    (o.kind, o.name.clone()),
                    Named {
                        kind: o.kind,
                        name: o.name.clone(),
                        kname,
                        decl,
                        elements: vec![],
                        base: None,
                    },
                );
            }
            Kind::Set | Kind::Map => {
                let (decl, _) = split_elements(&o.body);
                let decl = rename_refs(&decl, &no, &no, &no);
                let kname = hash(o.kind.keyword(), &o.name, &squeeze(&decl));
                sets.insert(o.name.clone(), kname);
            }
            Kind::Chain => {}
        }
    }
    // Chains in dependency order (nft forbids jump loops).
    let jumps = |o: &Obj| -> Vec<String> {
        let mut r = Vec::new();
        let mut prev: Option<&str> = None;
        for tk in &o.body {
            match tk {
                Tok::Word(w) => {
                    if matches!(prev, Some("jump") | Some("goto")) {
                        r.push(w.clone());
                    }
                    prev = Some(w);
                }
                Tok::Space(_) => {}
                _ => prev = None,
            }
        }
        r
    };
    let defined: BTreeSet<&str> = td
        .objects
        .iter()
        .filter(|o| o.kind == Kind::Chain)
        .map(|o| o.name.as_str())
        .collect();
    let mut left: Vec<&Obj> = td
        .objects
        .iter()
        .filter(|o| o.kind == Kind::Chain)
        .collect();
    while !left.is_empty() {
        let before = left.len();
        let mut next = Vec::new();
        for o in left {
            let ready = jumps(o)
                .iter()
                .all(|n| !defined.contains(n.as_str()) || chains.contains_key(n));
            if !ready {
                next.push(o);
                continue;
            }
            let (base, comment, rules) = &split[&o.name];
            let mut body = String::new();
            if let Some(c) = comment {
                body.push_str(&format!(
                    "\t\t{}\n",
                    c.iter().map(Tok::text).collect::<String>()
                ));
            }
            for r in rules {
                body.push_str(&format!(
                    "\t\t{}\n",
                    rename_refs(r, &sets, &chains, &helpers)
                ));
            }
            if let Some(b) = base {
                body.push_str(&format!(
                    "\t\t{} comment \"policy of base chain {}\"\n",
                    b.policy, o.name
                ));
            }
            let kname = match pins.get(&format!("{} {}", td.table, o.name)) {
                Some(pinned) => pinned.clone(),
                None => hash("chain", &o.name, &squeeze(&body)),
            };
            chains.insert(o.name.clone(), kname.clone());
            named.insert(
                (o.kind, o.name.clone()),
                Named {
                    kind: o.kind,
                    name: o.name.clone(),
                    kname,
                    decl: body,
                    elements: vec![],
                    base: base.clone(),
                },
            );
        }
        if next.len() == before {
            return Err("chains jump to each other in a loop".into());
        }
        left = next;
    }
    for o in td
        .objects
        .iter()
        .filter(|o| matches!(o.kind, Kind::Set | Kind::Map))
    {
        let (decl, elems) = split_elements(&o.body);
        let decl = rename_refs(&decl, &no, &no, &no);
        let elements = elems
            .iter()
            .map(|e| squeeze(&rename_refs(e, &sets, &chains, &helpers)))
            .filter(|e| !e.is_empty())
            .collect();
        named.insert(
            (o.kind, o.name.clone()),
            Named {
                kind: o.kind,
                name: o.name.clone(),
                kname: sets[&o.name].clone(),
                decl,
                elements,
                base: None,
            },
        );
    }
    let mut out = Vec::new();
    for o in &td.objects {
        let n = named
            .remove(&(o.kind, o.name.clone()))
            .expect("named every object");
        if n.kname.len() > MAX_NAME {
            return Err(format!("`{}` is too long with its hash", n.kname));
        }
        out.push(n);
    }
    Ok(out)
}

/// The key of a set or map element (what `delete element` takes).
fn element_key(kind: Kind, e: &str) -> &str {
    match kind {
        Kind::Map => e.split(" : ").next().unwrap_or(e).trim(),
        _ => e,
    }
}

/// What the caller knows about what runs.
#[derive(Clone, Debug)]
pub struct Running<'a> {
    /// The plan script the kernel provably runs (its ruleset generation did
    /// not move since it was applied), with the salt its names were made
    /// with. `None`: nothing in the kernel may be reused.
    pub script: Option<(&'a str, &'a str)>,
    /// The record's pins (see [`Pins`]) for that script.
    pub pins: &'a Pins,
    /// A salt no name in the kernel was made with (used when names made
    /// with the usual salt already exist but cannot be trusted).
    pub fresh_salt: &'a str,
}

/// The three transactions of one apply.
#[derive(Clone, Debug)]
pub struct Staged {
    /// Adds the new objects (unreachable from any hook).
    pub stage: String,
    /// Points the base chains at their staged bodies, changes set and map
    /// elements in place, removes dropped tables.
    pub switch: String,
    /// Deletes the objects no longer used.
    pub cleanup: String,
    /// Deletes what `stage` added (after a failed switch).
    pub unstage: String,
    /// The salt the kernel names were made with (record it).
    pub salt: String,
    /// Chains staged anew (`family table chain`, plan names).
    pub chains: Vec<String>,
    /// Objects staged and reused.
    pub staged: usize,
    pub reused: usize,
    pub elements_added: usize,
    pub elements_deleted: usize,
    /// The kernel names of the new plan's objects once this ran.
    pub names: KernelNames,
}

impl Staged {
    /// One script for `nft -c`: stage then switch, as one (checked, never
    /// committed) transaction.
    pub fn check_script(&self) -> String {
        format!("{}{}", self.stage, self.switch)
    }

    /// Run the three transactions. An error in stage or switch leaves the
    /// old policy in force (the staged objects are removed again, best
    /// effort); a failed clean-up only leaves unreachable objects behind,
    /// which the next clean-up takes.
    pub fn apply(&self, sys: &dyn System) -> Result<(), Error> {
        self.apply_marked(sys, &mut crate::Timings::default())
    }

    /// [`Staged::apply`], marking each transaction's time in `tm`.
    pub fn apply_marked(&self, sys: &dyn System, tm: &mut crate::Timings) -> Result<(), Error> {
        if !self.stage.is_empty() {
            sys.nft_apply(&self.stage)?;
            tm.mark("nft stage");
        }
        if let Err(e) = sys.nft_apply(&self.switch) {
            if !self.unstage.is_empty() {
                let _ = sys.nft_apply(&self.unstage);
            }
            return Err(e);
        }
        tm.mark("nft switch");
        if !self.cleanup.is_empty() {
            let _ = sys.nft_apply(&self.cleanup);
            tm.mark("nft cleanup");
        }
        Ok(())
    }
}

/// Build the transactions that replace `tables` (every table rampart
/// replaces: the plan's and those it drops) with `script`. `Ok(None)`: the
/// script is not one this module stages (apply it in one transaction).
pub fn stage(
    script: &str,
    tables: &BTreeSet<TableRef>,
    kernel: &KernelObjects,
    running: &Running,
) -> Result<Option<Staged>, String> {
    let Ok(parsed) = parse(script) else {
        return Ok(None);
    };
    let (old_parsed, salt) = match running.script {
        Some((old, salt)) => match parse(old) {
            Ok(p) => (Some(p), salt.to_string()),
            Err(_) => (None, String::new()),
        },
        None => (None, String::new()),
    };
    let first = stage_with(
        &parsed,
        tables,
        kernel,
        old_parsed.as_ref(),
        running.pins,
        &salt,
    )?;
    match first {
        Some(s) => Ok(Some(s)),
        // Names made with this salt exist but cannot be trusted.
        None => stage_with(
            &parsed,
            tables,
            kernel,
            None,
            &Pins::new(),
            running.fresh_salt,
        ),
    }
}

/// `Ok(None)` when a computed name exists in the kernel without being known
/// to hold what the name promises.
fn stage_with(
    parsed: &Script,
    tables: &BTreeSet<TableRef>,
    kernel: &KernelObjects,
    old: Option<&Script>,
    old_pins: &Pins,
    salt: &str,
) -> Result<Option<Staged>, String> {
    let no_pins = Pins::new();
    let mut out = Staged {
        stage: String::new(),
        switch: String::new(),
        cleanup: String::new(),
        unstage: String::new(),
        salt: salt.to_string(),
        chains: Vec::new(),
        staged: 0,
        reused: 0,
        elements_added: 0,
        elements_deleted: 0,
        names: KernelNames::new(),
    };
    let (mut cl_flush, mut cl_del, mut cl_chains) = (String::new(), String::new(), String::new());
    let (mut un_flush, mut un_del, mut un_chains) = (String::new(), String::new(), String::new());
    let mut el_del = String::new();
    let mut el_add = String::new();
    let mut hooks = String::new();
    let defined: BTreeSet<TableRef> = parsed.tables.iter().map(|t| t.table.clone()).collect();
    for t in tables.difference(&defined) {
        out.switch
            .push_str(&format!("add table {t}\ndelete table {t}\n"));
    }
    for td in &parsed.tables {
        let t = &td.table;
        let named = name_table(td, salt, &no_pins)?;
        out.names.insert(t.clone(), table_names(&named));
        // What the kernel provably holds under each name.
        let old_named: BTreeMap<(Kind, String), Named> =
            match old.and_then(|o| o.tables.iter().find(|ot| &ot.table == t)) {
                Some(otd) => name_table(otd, salt, old_pins)?
                    .into_iter()
                    .map(|n| ((n.kind, n.kname.clone()), n))
                    .collect(),
                None => BTreeMap::new(),
            };
        let mut new_names: BTreeSet<(Kind, String)> = BTreeSet::new();
        let mut stage_body = String::new();
        for n in &named {
            new_names.insert((n.kind, n.kname.clone()));
            let in_kernel = kernel.has(t, n.kind, &n.kname);
            match (in_kernel, old_named.get(&(n.kind, n.kname.clone()))) {
                // A pinned name holds what the record's plan says, which
                // may not be what the name's hash promises: reuse it only
                // for the same text.
                (true, Some(o)) if o.base != n.base || squeeze(&o.decl) != squeeze(&n.decl) => {
                    return Ok(None)
                }
                (true, Some(o)) => {
                    out.reused += 1;
                    if matches!(n.kind, Kind::Set | Kind::Map) && o.elements != n.elements {
                        let ob: BTreeSet<&str> = o.elements.iter().map(String::as_str).collect();
                        let nb: BTreeSet<&str> = n.elements.iter().map(String::as_str).collect();
                        let gone: Vec<&str> =
                            ob.difference(&nb).map(|e| element_key(n.kind, e)).collect();
                        let came: Vec<&str> = nb.difference(&ob).copied().collect();
                        if !gone.is_empty() {
                            out.elements_deleted += gone.len();
                            el_del.push_str(&format!(
                                "delete element {t} {} {{ {} }}\n",
                                n.kname,
                                gone.join(", ")
                            ));
                        }
                        if !came.is_empty() {
                            out.elements_added += came.len();
                            el_add.push_str(&format!(
                                "add element {t} {} {{ {} }}\n",
                                n.kname,
                                came.join(", ")
                            ));
                        }
                    }
                    continue;
                }
                (true, None) => return Ok(None),
                (false, _) => {}
            }
            out.staged += 1;
            let mut body = n.decl.trim_end().to_string();
            if !n.elements.is_empty() {
                body.push_str(&format!(
                    "\n\t\telements = {{\n\t\t\t{},\n\t\t}}",
                    n.elements.join(",\n\t\t\t")
                ));
            }
            stage_body.push_str(&format!(
                "\t{} {} {{\n{}\n\t}}\n",
                n.kind.keyword(),
                n.kname,
                body
            ));
            match n.kind {
                Kind::Chain => {
                    out.chains.push(format!("{t} {}", n.name));
                    un_flush.push_str(&format!("flush chain {t} {}\n", n.kname));
                    un_chains.push_str(&format!("delete chain {t} {}\n", n.kname));
                }
                k => un_del.push_str(&format!("delete {} {t} {}\n", k.keyword(), n.kname)),
            }
        }
        if !stage_body.is_empty() {
            out.stage
                .push_str(&format!("add table {t}\ntable {t} {{\n{stage_body}}}\n"));
        }
        // Switch: each base chain jumps to its body.
        hooks.push_str(&format!("add table {t}\n"));
        let kchains = kernel.chains.get(t);
        let mut bases = BTreeSet::new();
        for n in named.iter().filter(|n| n.base.is_some()) {
            let b = n.base.as_ref().expect("base");
            bases.insert(n.name.clone());
            let decl = format!(
                "add chain {t} {} {{ {}; policy {}; }}\n",
                n.name,
                b.spec.join("; "),
                b.policy
            );
            let same = match kchains.and_then(|c| c.get(&n.name)) {
                None => None,
                Some(Some((ty, hook, prio, _))) => {
                    Some(ty == &b.ctype && hook == &b.hook && Some(*prio) == b.priority)
                }
                Some(None) => Some(false),
            };
            match same {
                None => hooks.push_str(&decl),
                Some(true) => {
                    hooks.push_str(&decl);
                    hooks.push_str(&format!("flush chain {t} {}\n", n.name));
                }
                Some(false) => {
                    hooks.push_str(&format!(
                        "flush chain {t} {0}\ndelete chain {t} {0}\n",
                        n.name
                    ));
                    hooks.push_str(&decl);
                }
            }
            hooks.push_str(&format!("add rule {t} {} jump {}\n", n.name, n.kname));
        }
        if let Some(kc) = kchains {
            for (name, base) in kc {
                if base.is_some() && !bases.contains(name) {
                    hooks.push_str(&format!(
                        "flush chain {t} {name}\ndelete chain {t} {name}\n"
                    ));
                }
            }
            for (name, base) in kc {
                if base.is_none() && !new_names.contains(&(Kind::Chain, name.clone())) {
                    cl_flush.push_str(&format!("flush chain {t} {name}\n"));
                    cl_chains.push_str(&format!("delete chain {t} {name}\n"));
                }
            }
        }
        for (kind, map) in [
            (Kind::Map, &kernel.maps),
            (Kind::Set, &kernel.sets),
            (Kind::Helper, &kernel.helpers),
        ] {
            for name in map.get(t).into_iter().flatten() {
                if !new_names.contains(&(kind, name.clone())) {
                    cl_del.push_str(&format!("delete {} {t} {name}\n", kind.keyword()));
                }
            }
        }
    }
    // Element deletes before adds: a map key whose value changed is deleted, then added.
    out.switch.push_str(&format!("{el_del}{el_add}{hooks}"));
    out.cleanup = format!("{cl_flush}{cl_del}{cl_chains}");
    out.unstage = format!("{un_flush}{un_del}{un_chains}");
    Ok(Some(out))
}

/// Kernel names of one table's objects (plan name -> kernel name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableNames {
    /// Sets and maps.
    pub sets: BTreeMap<String, String>,
    pub chains: BTreeMap<String, String>,
    pub helpers: BTreeMap<String, String>,
}

/// Kernel names of a staged plan's objects, per table.
pub type KernelNames = BTreeMap<TableRef, TableNames>;

fn table_names(named: &[Named]) -> TableNames {
    let mut tn = TableNames::default();
    for n in named {
        let m = match n.kind {
            Kind::Set | Kind::Map => &mut tn.sets,
            Kind::Chain => &mut tn.chains,
            Kind::Helper => &mut tn.helpers,
        };
        m.insert(n.name.clone(), n.kname.clone());
    }
    tn
}

/// The kernel names `script` gets when staged with `salt`, honouring `pins`.
pub fn kernel_names(script: &str, salt: &str, pins: &Pins) -> Result<KernelNames, String> {
    let parsed = parse(script)?;
    let mut out = KernelNames::new();
    for td in &parsed.tables {
        out.insert(td.table.clone(), table_names(&name_table(td, salt, pins)?));
    }
    Ok(out)
}

/// The rules chain `name` of a staged table holds for `old_body` and must
/// hold for `new_body` (references renamed to `names`, a base chain's
/// policy as the last rule), or `None` when they are the same. An error when
/// more than the rules changed (hook, policy, comment) or a reference has
/// no kernel name.
pub(crate) fn chain_rules_for_kernel(
    family: &str,
    name: &str,
    old_body: &str,
    new_body: &str,
    names: &TableNames,
) -> Result<Option<(Vec<String>, Vec<String>)>, String> {
    let (ob, oc, orules) = split_chain(family, &lex(old_body))?;
    let (nb, nc, nrules) = split_chain(family, &lex(new_body))?;
    if ob != nb {
        return Err(format!("hook or policy of chain {name} changed"));
    }
    let text = |c: &Option<Vec<Tok>>| {
        c.as_ref()
            .map(|c| squeeze(&c.iter().map(Tok::text).collect::<String>()))
    };
    if text(&oc) != text(&nc) {
        return Err(format!("the comment of chain {name} changed"));
    }
    let no = TableNames::default();
    let rename = |rules: &[Vec<Tok>], n: &TableNames| -> Vec<String> {
        let mut out: Vec<String> = rules
            .iter()
            .map(|r| rename_refs(r, &n.sets, &n.chains, &n.helpers))
            .collect();
        if let Some(b) = &nb {
            out.push(format!(
                "{} comment \"policy of base chain {name}\"",
                b.policy
            ));
        }
        out
    };
    // Same rules (before renaming: the names did not change)?
    if rename(&orules, &no)
        .iter()
        .map(|r| squeeze(r))
        .eq(rename(&nrules, &no).iter().map(|r| squeeze(r)))
    {
        return Ok(None);
    }
    for r in &nrules {
        let mut prev: Option<&str> = None;
        for t in r {
            if let Tok::Word(w) = t {
                if let Some(set) = w.strip_prefix('@') {
                    if !names.sets.contains_key(set) {
                        return Err(format!("chain {name}: no set or map `{set}`"));
                    }
                } else if matches!(prev, Some("jump") | Some("goto"))
                    && !names.chains.contains_key(w.as_str())
                {
                    return Err(format!("chain {name}: no chain `{w}` to jump to"));
                }
                prev = Some(w);
            } else if !matches!(t, Tok::Space(_)) {
                prev = None;
            }
        }
    }
    Ok(Some((rename(&orules, names), rename(&nrules, names))))
}

/// Drop the `.<10 hex>` hash of staged names in a listing.
pub fn unhash(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.'
            && i > 0
            && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-' || b[i - 1] == b'_')
            && i + 11 <= b.len()
            && b[i + 1..i + 11]
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
            && b.get(i + 11)
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'.'))
        {
            i += 11;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The policy in force in an `nft list table` listing: the objects the base
/// chains reach (through jumps, gotos, set and map references and helper
/// assignments), staged names without their hash, in name order. Two
/// listings with the same policy in force give the same text, whatever
/// unreachable leftovers of an interrupted apply they also hold and however
/// the hook chains reach their rules (directly, or through a staged body).
pub fn in_force(listing: &str) -> String {
    let body = listing.trim_end();
    let Some((head, rest)) = body.split_once('\n') else {
        return body.to_string();
    };
    let rest = rest.strip_suffix('}').unwrap_or(rest);
    let mut objs: BTreeMap<String, String> = BTreeMap::new();
    for block in rest.split("\n\n") {
        let block = block.trim_end();
        let first = block.lines().next().unwrap_or("").trim();
        let w: Vec<&str> = first.split_whitespace().collect();
        let name = match w.as_slice() {
            ["ct", "helper", n, ..] => n.to_string(),
            [_, n, ..] => n.to_string(),
            _ => continue,
        };
        objs.insert(name, block.to_string());
    }
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = objs
        .iter()
        .filter(|(_, b)| b.contains(" hook "))
        .map(|(n, _)| n.clone())
        .collect();
    while let Some(n) = todo.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        let Some(b) = objs.get(&n) else { continue };
        for t in lex(b) {
            if let Tok::Word(w) | Tok::Str(w) = t {
                let w = w.trim_matches('"');
                let w = w.strip_prefix('@').unwrap_or(w);
                if objs.contains_key(w) && !seen.contains(w) {
                    todo.push(w.to_string());
                }
            }
        }
    }
    // A hook chain that only jumps to its staged body reads as that body.
    let mut out: Vec<String> = Vec::new();
    for n in &seen {
        let b = unhash(&objs[n]);
        if b.contains(" hook ") {
            let lines: Vec<&str> = b.lines().collect();
            let raw: Vec<&str> = objs[n].lines().collect();
            if raw.len() == 4 && raw[2].trim().starts_with("jump ") {
                let target = raw[2].trim().trim_start_matches("jump ").to_string();
                if let Some(tb) = objs.get(&target).filter(|_| &target != n) {
                    let tb = unhash(tb);
                    let mut body: Vec<&str> = tb.lines().skip(1).collect();
                    body.pop();
                    // the explicit policy verdict of the staged body
                    if body
                        .last()
                        .is_some_and(|l| l.contains("policy of base chain"))
                    {
                        body.pop();
                    }
                    out.push(format!(
                        "{}\n{}\n{}\n\t}}",
                        lines[0],
                        lines[1],
                        body.join("\n")
                    ));
                    continue;
                }
            }
        }
        if b.lines().next().is_some_and(|l| l.contains("chain ")) && !b.contains(" hook ") {
            // a staged hook body is shown with its hook chain
            let stem = unhash(n);
            if seen.iter().any(|o| o != n && unhash(o) == stem) {
                continue;
            }
        }
        out.push(b);
    }
    out.sort();
    format!("{head}\n{}\n}}\n", out.join("\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = r#"#!/usr/sbin/nft -f
# header
table inet rampart
delete table inet rampart
table inet rampart {
	ct helper ftp-21 {
		type "ftp" protocol tcp
		l3proto inet
	}
	set mgmt_v4 {
		type ipv4_addr
		flags interval
		comment "ipset management (auto:management)"
		elements = {
			192.0.2.0/24,
		}
	}
	map by-mark {
		type mark : verdict
		elements = {
			0x00010000 : jump nic-a,
		}
	}
	chain hook-input {
		type filter hook input priority 0; policy drop;
		comment "the hook"
		meta mark vmap @by-mark
		jump host-in comment "auto:host IN"
	}
	chain host-in {
		ip saddr @mgmt_v4 tcp dport { 22, 5900-5999 } accept comment "cluster.fw:3"
		ct helper set "ftp-21"
		return
	}
	chain nic-a {
		comment "guest NIC"
		drop
	}
}

table bridge rampart
delete table bridge rampart
"#;

    fn tables() -> BTreeSet<TableRef> {
        ["inet", "bridge"]
            .iter()
            .map(|f| TableRef {
                family: f.to_string(),
                name: "rampart".into(),
            })
            .collect()
    }

    #[test]
    fn stages_renamed_objects_and_switches_hooks_with_one_jump() {
        let s = stage(PLAN, &tables(), &KernelObjects::default(), &fresh())
            .unwrap()
            .unwrap();
        assert_eq!(s.staged, 6);
        // nothing in the staging transaction hooks into the packet path
        assert!(!s.stage.contains("hook input"), "{}", s.stage);
        assert!(s.stage.contains("\tset mgmt_v4."));
        assert!(s.stage.contains("ip saddr @mgmt_v4."));
        assert!(s.stage.contains("jump host-in."));
        assert!(s.stage.contains("ct helper set \"ftp-21."));
        assert!(s.stage.contains(": jump nic-a."), "{}", s.stage);
        assert!(s.stage.contains("meta mark vmap @by-mark."));
        assert!(s
            .stage
            .contains("drop comment \"policy of base chain hook-input\""));
        // the switch creates no set: only the hook chain and its jump
        assert!(!s.switch.contains("set "), "{}", s.switch);
        assert!(s.switch.contains(
            "add chain inet rampart hook-input { type filter hook input priority 0; policy drop; }"
        ));
        assert!(s
            .switch
            .contains("add rule inet rampart hook-input jump hook-input."));
        assert!(s
            .switch
            .contains("add table bridge rampart\ndelete table bridge rampart\n"));
    }

    static NO_PINS: Pins = Pins::new();

    fn fresh() -> Running<'static> {
        Running {
            script: None,
            pins: &NO_PINS,
            fresh_salt: "x",
        }
    }

    #[test]
    fn a_changed_chain_renames_its_callers_up_to_the_hook_and_nothing_else() {
        let a = stage(PLAN, &tables(), &KernelObjects::default(), &fresh())
            .unwrap()
            .unwrap();
        let changed = PLAN.replace("\t\treturn\n", "\t\ttcp dport 80 accept\n\t\treturn\n");
        let b = stage(&changed, &tables(), &KernelObjects::default(), &fresh())
            .unwrap()
            .unwrap();
        let names = |s: &Staged| -> BTreeSet<String> {
            s.stage
                .lines()
                .filter_map(|l| l.trim().strip_suffix(" {"))
                .map(String::from)
                .collect()
        };
        let (na, nb) = (names(&a), names(&b));
        let same: Vec<_> = na.intersection(&nb).collect();
        assert!(
            same.iter().any(|n| n.starts_with("chain nic-a.")),
            "{same:?}"
        );
        assert!(
            same.iter().any(|n| n.starts_with("map by-mark.")),
            "{same:?}"
        );
        assert!(
            same.iter().any(|n| n.starts_with("ct helper ftp-21.")),
            "{same:?}"
        );
        assert!(
            same.iter().any(|n| n.starts_with("set mgmt_v4.")),
            "{same:?}"
        );
        for n in ["chain host-in.", "chain hook-input."] {
            assert!(!same.iter().any(|s| s.starts_with(n)), "{n} should change");
        }
    }

    #[test]
    fn scripts_it_does_not_understand_are_left_to_one_transaction() {
        let k = KernelObjects::default();
        assert!(
            stage("add rule inet rampart x accept\n", &tables(), &k, &fresh())
                .unwrap()
                .is_none()
        );
        assert!(stage(
            "table inet rampart {\n\tcounter c {\n\t}\n}\n",
            &tables(),
            &k,
            &fresh()
        )
        .unwrap()
        .is_none());
    }

    #[test]
    fn priorities() {
        assert_eq!(parse_priority("inet", &["0"]), Some(0));
        assert_eq!(parse_priority("inet", &["-150"]), Some(-150));
        assert_eq!(parse_priority("inet", &["filter", "+", "10"]), Some(10));
        assert_eq!(parse_priority("bridge", &["filter"]), Some(-200));
    }
}

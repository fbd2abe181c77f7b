//! Incremental apply: when the running plan and the new one differ only in
//! the rules of some chains and in set/map elements, the kernel gets one
//! small `nft -f` transaction instead of the whole tables again:
//! `delete element` / `add element` for the changed elements, and
//! `flush chain` + `add rule` for the chains whose rules changed. A
//! 100,000-element table is not sent again for a one-rule change (the whole
//! replace costs ~0.3 s there, this costs a few ms).
//!
//! Pure: [`diff`] compares two plan scripts and returns the transaction, or
//! why only a full replace will do (a table, set, map, chain or other object
//! added, removed or redeclared; a script this parser does not understand).
//! Whether the kernel still runs the recorded plan is the caller's question
//! (apply checks the ruleset generation, see [`crate::genid`]).

use std::collections::{BTreeMap, BTreeSet};

/// What changes between two plans, as one nft transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    /// The `nft -f` script (one transaction). Empty when nothing changes.
    pub script: String,
    /// Chains flushed and refilled (`family table chain`).
    pub chains: Vec<String>,
    /// Elements added and deleted (a changed map value counts in both).
    pub elements_added: usize,
    pub elements_deleted: usize,
    /// For a change made in place ([`crate::inplace`]): the commands of
    /// `script`, which apply may send as its own netlink batch.
    pub in_place: Vec<crate::inplace::Cmd>,
    /// Set element changes made in place (sent with `in_place`, in the
    /// same transaction).
    pub in_place_sets: Vec<crate::inplace::SetChange>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.script.is_empty()
    }
}

/// The new plan differs from the old one in a way only a full replace applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeedsFull(pub String);

impl std::fmt::Display for NeedsFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One object of a table body, as the plan declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Obj {
    /// `set NAME { ... }` / `map NAME { ... }`: declaration statements and elements.
    Set {
        map: bool,
        header: Vec<String>,
        elements: Vec<String>,
    },
    /// `chain NAME { ... }`: declaration statements (type/hook/policy/comment...) and rules.
    Chain {
        header: Vec<String>,
        rules: Vec<String>,
    },
    /// Anything else (`ct helper`, `counter`, table flags...): compared as text.
    Other(String),
}

/// A parsed script: `family name` -> object head (`set x`, `chain y`, ...) -> object.
type Tables = BTreeMap<(String, String), BTreeMap<String, Obj>>;

/// Split `text` at depth 0 on any of `seps`, keeping quoted strings and
/// brace groups whole; drops `#` comments; trims and skips empty pieces.
fn split_top(text: &str, seps: &[char]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut in_str = false;
    let mut in_comment = false;
    for c in text.chars() {
        if in_comment {
            if c == '\n' {
                in_comment = false;
            } else {
                continue;
            }
        }
        if in_str {
            cur.push(c);
            if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                cur.push(c);
                continue;
            }
            '#' => {
                in_comment = true;
                continue;
            }
            '{' => depth += 1,
            '}' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| "unbalanced `}`".to_owned())?;
            }
            _ => {}
        }
        if depth == 0 && seps.contains(&c) {
            let t = cur.trim();
            if !t.is_empty() {
                out.push(t.to_owned());
            }
            cur.clear();
        } else {
            cur.push(c);
        }
    }
    if depth != 0 || in_str {
        return Err("unbalanced braces or quotes".into());
    }
    let t = cur.trim();
    if !t.is_empty() {
        out.push(t.to_owned());
    }
    Ok(out)
}

/// Collapse runs of whitespace (outside quotes) to one space.
fn squeeze(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_str = false;
    let mut space = false;
    for c in s.trim().chars() {
        if in_str {
            out.push(c);
            if c == '"' {
                in_str = false;
            }
            continue;
        }
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        if c == '"' {
            in_str = true;
        }
        out.push(c);
    }
    out
}

/// `head { body }` -> (head, body); None when the statement has no block.
fn head_body(stmt: &str) -> Option<(&str, &str)> {
    let open = {
        // first `{` outside quotes
        let mut in_str = false;
        let mut at = None;
        for (i, c) in stmt.char_indices() {
            match c {
                '"' => in_str = !in_str,
                '{' if !in_str => {
                    at = Some(i);
                    break;
                }
                _ => {}
            }
        }
        at?
    };
    let body = stmt[open + 1..].trim_end();
    let body = body.strip_suffix('}')?;
    Some((stmt[..open].trim(), body))
}

const FAMILIES: &[&str] = &["ip", "ip6", "inet", "arp", "bridge", "netdev"];

fn table_ref(words: &[&str]) -> Option<(String, String)> {
    match words {
        [f, n] if FAMILIES.contains(f) => Some((f.to_string(), n.to_string())),
        [n] => Some(("ip".into(), n.to_string())),
        _ => None,
    }
}

fn parse_set(map: bool, body: &str) -> Result<Obj, String> {
    let mut header = Vec::new();
    let mut elements = Vec::new();
    for stmt in split_top(body, &['\n', ';'])? {
        let s = squeeze(&stmt);
        if let Some(rest) = s.strip_prefix("elements") {
            let rest = rest.trim_start();
            let rest = rest
                .strip_prefix('=')
                .ok_or_else(|| format!("cannot read `{s}`"))?
                .trim();
            let inner = rest
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .ok_or_else(|| format!("cannot read `{s}`"))?;
            for e in split_top(inner, &[','])? {
                elements.push(squeeze(&e));
            }
        } else {
            header.push(s);
        }
    }
    Ok(Obj::Set {
        map,
        header,
        elements,
    })
}

fn is_chain_header(s: &str) -> bool {
    ["type ", "policy ", "comment ", "devices ", "flags "]
        .iter()
        .any(|p| s.starts_with(p))
}

fn parse_chain(body: &str) -> Result<Obj, String> {
    let mut header = Vec::new();
    let mut rules = Vec::new();
    for line in split_top(body, &['\n'])? {
        let s = squeeze(&line);
        if is_chain_header(&s) {
            // `type filter hook input priority 0; policy accept;`
            for part in split_top(&s, &[';'])? {
                header.push(squeeze(&part));
            }
        } else {
            for part in split_top(&s, &[';'])? {
                let p = squeeze(&part);
                if is_chain_header(&p) {
                    header.push(p);
                } else {
                    rules.push(p);
                }
            }
        }
    }
    Ok(Obj::Chain { header, rules })
}

/// Parse a plan script of the shape rampart's compiler writes: per table,
/// `table T` / `delete table T` lines and one `table T { ... }` block.
fn parse(script: &str) -> Result<Tables, String> {
    let mut tables: Tables = BTreeMap::new();
    for stmt in split_top(script, &['\n', ';'])? {
        match head_body(&stmt) {
            None => {
                let s = squeeze(&stmt);
                let words: Vec<&str> = s.split_whitespace().collect();
                let ok = match words.as_slice() {
                    ["table", rest @ ..] | ["add", "table", rest @ ..] => table_ref(rest).is_some(),
                    ["delete", "table", rest @ ..] | ["destroy", "table", rest @ ..] => {
                        table_ref(rest).is_some()
                    }
                    _ => false,
                };
                if !ok {
                    return Err(format!("top-level statement `{s}`"));
                }
            }
            Some((head, body)) => {
                let words: Vec<&str> = head.split_whitespace().collect();
                let tref = match words.as_slice() {
                    ["table", rest @ ..] | ["add", "table", rest @ ..] => table_ref(rest),
                    _ => None,
                }
                .ok_or_else(|| format!("top-level block `{head}`"))?;
                if tables.contains_key(&tref) {
                    return Err(format!("table {} {} declared twice", tref.0, tref.1));
                }
                let mut objs = BTreeMap::new();
                for item in split_top(body, &['\n', ';'])? {
                    let (key, obj) = match head_body(&item) {
                        Some((h, b)) => {
                            let h = squeeze(h);
                            let obj = if h.starts_with("set ") {
                                parse_set(false, b)?
                            } else if h.starts_with("map ") {
                                parse_set(true, b)?
                            } else if h.starts_with("chain ") {
                                parse_chain(b)?
                            } else {
                                Obj::Other(squeeze(&split_top(b, &['\n', ';'])?.join("; ")))
                            };
                            (h, obj)
                        }
                        None => {
                            let s = squeeze(&item);
                            (format!("\0{s}"), Obj::Other(s))
                        }
                    };
                    if objs.insert(key.clone(), obj).is_some() {
                        return Err(format!("`{key}` declared twice"));
                    }
                }
                tables.insert(tref, objs);
            }
        }
    }
    Ok(tables)
}

/// The key of a map element (`key : value` -> `key`); a set element is its own key.
fn element_key(map: bool, e: &str) -> &str {
    if !map {
        return e;
    }
    // first ` : ` outside quotes
    let mut in_str = false;
    let b = e.as_bytes();
    for i in 0..b.len() {
        match b[i] {
            b'"' => in_str = !in_str,
            b':' if !in_str && i > 0 && b[i - 1] == b' ' && b.get(i + 1) == Some(&b' ') => {
                return e[..i].trim_end();
            }
            _ => {}
        }
    }
    e
}

/// Compare two plan scripts. `Ok(delta)` when the new plan can be reached
/// from the old one (as it runs) by element and chain-content changes only.
pub fn diff(old: &str, new: &str) -> Result<Delta, NeedsFull> {
    let old = parse(old).map_err(|e| NeedsFull(format!("running plan not understood: {e}")))?;
    let new = parse(new).map_err(|e| NeedsFull(format!("new plan not understood: {e}")))?;
    let old_keys: BTreeSet<_> = old.keys().collect();
    let new_keys: BTreeSet<_> = new.keys().collect();
    if old_keys != new_keys {
        return Err(NeedsFull("tables added or removed".into()));
    }
    let mut del = String::new();
    let mut add = String::new();
    let mut chains_script = String::new();
    let mut delta = Delta {
        script: String::new(),
        chains: Vec::new(),
        elements_added: 0,
        elements_deleted: 0,
        in_place: Vec::new(),
        in_place_sets: Vec::new(),
    };
    for (tref, new_objs) in &new {
        let old_objs = &old[tref];
        let t = format!("{} {}", tref.0, tref.1);
        if old_objs.keys().ne(new_objs.keys()) {
            return Err(NeedsFull(format!("objects of table {t} added or removed")));
        }
        for (key, nobj) in new_objs {
            let oobj = &old_objs[key];
            match (oobj, nobj) {
                (
                    Obj::Set {
                        map: om,
                        header: oh,
                        elements: oe,
                    },
                    Obj::Set {
                        map: nm,
                        header: nh,
                        elements: ne,
                    },
                ) => {
                    if om != nm || oh != nh {
                        return Err(NeedsFull(format!("`{key}` of table {t} redeclared")));
                    }
                    if oe == ne {
                        continue;
                    }
                    let name = key.split_whitespace().nth(1).unwrap_or_default();
                    let map = *nm;
                    let oset: BTreeSet<&str> = oe.iter().map(String::as_str).collect();
                    let nset: BTreeSet<&str> = ne.iter().map(String::as_str).collect();
                    let gone: Vec<&str> = oset
                        .difference(&nset)
                        .map(|e| element_key(map, e))
                        .collect();
                    let came: Vec<&str> = nset.difference(&oset).copied().collect();
                    if !gone.is_empty() {
                        delta.elements_deleted += gone.len();
                        del.push_str(&format!(
                            "delete element {t} {name} {{ {} }}\n",
                            gone.join(", ")
                        ));
                    }
                    if !came.is_empty() {
                        delta.elements_added += came.len();
                        add.push_str(&format!(
                            "add element {t} {name} {{ {} }}\n",
                            came.join(", ")
                        ));
                    }
                }
                (
                    Obj::Chain {
                        header: oh,
                        rules: or,
                    },
                    Obj::Chain {
                        header: nh,
                        rules: nr,
                    },
                ) => {
                    if oh != nh {
                        return Err(NeedsFull(format!("`{key}` of table {t} redeclared")));
                    }
                    if or == nr {
                        continue;
                    }
                    let name = key.split_whitespace().nth(1).unwrap_or_default();
                    delta.chains.push(format!("{t} {name}"));
                    chains_script.push_str(&format!("flush chain {t} {name}\n"));
                    for r in nr {
                        chains_script.push_str(&format!("add rule {t} {name} {r}\n"));
                    }
                }
                (a, b) if a == b => {}
                _ => return Err(NeedsFull(format!("`{}` of table {t} changed", show(key)))),
            }
        }
    }
    // Deletes first: a map key whose value changed is deleted, then added.
    delta.script = format!("{del}{add}{chains_script}");
    Ok(delta)
}

fn show(key: &str) -> &str {
    key.trim_start_matches('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "#!/usr/sbin/nft -f\n# generated\n\ntable inet rampart\ndelete table inet rampart\ntable inet rampart {\n\tset bl {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\tcomment \"ipset blacklist (cluster.fw:38)\"\n\t\telements = {\n\t\t\t10.0.0.1,\n\t\t\t10.0.1.0-10.0.1.44,\n\t\t}\n\t}\n\tmap m {\n\t\ttype mark : verdict\n\t\telements = {\n\t\t\t0x00010000 : jump a,\n\t\t\t0x00020000 : jump b,\n\t\t}\n\t}\n\tchain hook-input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tct state established,related accept comment \"auto:conntrack\"\n\t\tjump a\n\t}\n\tchain a {\n\t\tcomment \"guest 100 net0 IN\"\n\t\ttcp dport { 22, 80 } return comment \"100.fw:3\"\n\t\tdrop\n\t}\n\tchain b {\n\t\tdrop\n\t}\n}\n\ntable bridge rampart\ndelete table bridge rampart\ntable bridge rampart {\n\tchain hook-forward {\n\t\ttype filter hook forward priority -200; policy accept;\n\t\tmeta mark set meta mark or 0x00008000\n\t}\n}\n";

    #[test]
    fn same_plan_is_an_empty_delta() {
        let d = diff(OLD, OLD).unwrap();
        assert!(d.is_empty());
        // Whitespace and layout do not count.
        let relaid = OLD.replace("\t\t\t10.0.0.1,\n", "\t\t\t10.0.0.1,   ");
        assert!(diff(OLD, &relaid).unwrap().is_empty());
    }

    #[test]
    fn one_rule_refills_only_its_chain() {
        let new = OLD.replace("{ 22, 80 }", "{ 22, 443 }");
        let d = diff(OLD, &new).unwrap();
        assert_eq!(d.chains, vec!["inet rampart a".to_string()]);
        assert_eq!(
            d.script,
            "flush chain inet rampart a\n\
             add rule inet rampart a tcp dport { 22, 443 } return comment \"100.fw:3\"\n\
             add rule inet rampart a drop\n"
        );
    }

    #[test]
    fn elements_are_added_and_deleted_map_values_replaced() {
        let new = OLD
            .replace("\t\t\t10.0.0.1,\n", "\t\t\t10.0.0.2,\n\t\t\t10.0.0.9,\n")
            .replace("0x00020000 : jump b", "0x00020000 : jump a");
        let d = diff(OLD, &new).unwrap();
        assert_eq!(
            d.script,
            "delete element inet rampart m { 0x00020000 }\n\
             delete element inet rampart bl { 10.0.0.1 }\n\
             add element inet rampart m { 0x00020000 : jump a }\n\
             add element inet rampart bl { 10.0.0.2, 10.0.0.9 }\n"
        );
        assert_eq!((d.elements_added, d.elements_deleted), (3, 2));
        assert!(d.chains.is_empty());
    }

    #[test]
    fn structure_changes_need_a_full_replace() {
        for (from, to, why) in [
            (
                "policy accept;\n\t\tct",
                "policy drop;\n\t\tct",
                "redeclared",
            ),
            ("\tchain b {\n", "\tchain c {\n", "added or removed"),
            ("flags interval\n", "", "redeclared"),
            (
                "table bridge rampart {",
                "table bridge rampart2 {",
                "tables",
            ),
            (
                "comment \"guest 100 net0 IN\"",
                "comment \"guest 100 net0 in\"",
                "redeclared",
            ),
        ] {
            let new = OLD.replace(from, to);
            assert_ne!(new, OLD, "{from}");
            let e = diff(OLD, &new).unwrap_err();
            assert!(e.0.contains(why), "{from}: {e}");
        }
        let e = diff(OLD, &format!("{OLD}add rule inet rampart b accept\n")).unwrap_err();
        assert!(e.0.contains("not understood"), "{e}");
    }

    #[test]
    fn one_line_declarations_parse_like_blocks() {
        let a = "table inet rampart {\n  set big { type ipv4_addr; elements = { 10.0.0.1, 10.0.0.2 } }\n  chain input {\n    type filter hook input priority 0; policy accept;\n    ip saddr @big drop\n    tcp dport 1 drop\n  }\n}\n";
        let b = a
            .replace("10.0.0.2 }", "10.0.0.3 }")
            .replace("dport 1", "dport 2");
        let d = diff(a, &b).unwrap();
        assert_eq!(
            d.script,
            "delete element inet rampart big { 10.0.0.2 }\n\
             add element inet rampart big { 10.0.0.3 }\n\
             flush chain inet rampart input\n\
             add rule inet rampart input ip saddr @big drop\n\
             add rule inet rampart input tcp dport 2 drop\n"
        );
    }

    #[test]
    fn quoted_braces_and_hashes_do_not_confuse_the_parser() {
        let a = "table inet rampart {\n chain c {\n  tcp dport 1 drop comment \"x { # y\"\n }\n}\n";
        let b = a.replace("dport 1", "dport 2");
        let d = diff(a, &b).unwrap();
        assert_eq!(
            d.script,
            "flush chain inet rampart c\nadd rule inet rampart c tcp dport 2 drop comment \"x { # y\"\n"
        );
    }
}

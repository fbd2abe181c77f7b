//! In-place change of a staged ruleset: the fast path of a small change.
//!
//! After a staged replace ([`crate::twophase`]) the kernel runs every chain
//! under a content-hashed name (`NAME.<hash>`). A change to the rules of a
//! few chains would, staged, rename those chains and their callers up to
//! the hooks, and re-point verdict map elements at the new names: three
//! transactions, and element commands make `nft` (1.0.6) fetch every set
//! element of the table first (~2 s at 100,000 elements).
//!
//! When the new plan differs from the running one only in the rules of
//! some chains, and none of the new rules carries an anonymous set that
//! could be an interval set (such a set, created in the transaction that
//! makes its rule live, misses lookups while the commit runs; see
//! `tests/kernel_interval_sets.rs`), the change is instead one transaction
//! of `flush chain` + `add rule` on each changed chain, under the kernel
//! name it already has. The transaction is atomic (the host never sees a
//! half-refilled chain); no set is created or replaced; nothing is renamed.
//! The refilled chain keeps its old name, so the record pins it
//! ([`Pins`]): names derived from the record stay what the kernel holds.
//!
//! Pure: [`in_place`] compares two plan scripts as objects (byte slices,
//! compared whole; only changed chains are tokenized) and returns the
//! transaction, or why the change needs the staged path.

use crate::nftscript::TableRef;
use crate::twophase::{KernelNames, Pins};
use std::collections::BTreeMap;

/// What moves the kernel from the running plan to the new one: rule
/// changes in some staged chains, made in one transaction by [`script`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InPlace {
    pub changes: Vec<ChainChange>,
    /// Element changes of sets whose declaration stayed the same.
    pub sets: Vec<SetChange>,
    /// The record's pins after this change.
    pub pins: Pins,
    /// Chains changed (`family table chain`, plan names).
    pub chains: Vec<String>,
}

/// The rules of one staged chain, as the kernel holds them and as it must.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainChange {
    pub table: TableRef,
    /// The kernel's name of the chain.
    pub kname: String,
    /// Its rules now (in chain order) and after; references renamed.
    pub old: Vec<String>,
    pub new: Vec<String>,
}

impl ChainChange {
    /// Rules kept at the start and the end (compared as nft reads them).
    fn common(&self) -> (usize, usize) {
        let eq = |a: &String, b: &String| a.split_whitespace().eq(b.split_whitespace());
        let p = self
            .old
            .iter()
            .zip(&self.new)
            .take_while(|(a, b)| eq(a, b))
            .count();
        let max_q = self.old.len().min(self.new.len()) - p;
        let q = self
            .old
            .iter()
            .rev()
            .zip(self.new.iter().rev())
            .take(max_q)
            .take_while(|(a, b)| eq(a, b))
            .count();
        (p, q)
    }

    /// The rules added (they are created by the transaction).
    pub fn added(&self) -> &[String] {
        let (p, q) = self.common();
        &self.new[p..self.new.len() - q]
    }
}

/// The elements of one set that change, under the set's kernel name
/// (set names do not depend on elements, so they stay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetChange {
    pub table: TableRef,
    pub kname: String,
    pub shape: crate::setelem::SetShape,
    /// Element texts deleted and added, as the plans print them.
    pub deleted: Vec<String>,
    pub added: Vec<String>,
    /// The set held no element before.
    pub was_empty: bool,
}

impl SetChange {
    /// The change as `nft -f` reads it (deletes first).
    pub fn nft(&self) -> String {
        let mut s = String::new();
        for (verb, elems) in [("delete", &self.deleted), ("add", &self.added)] {
            if !elems.is_empty() {
                s.push_str(&format!(
                    "{verb} element {} {} {{ {} }}\n",
                    self.table,
                    self.kname,
                    elems.join(", ")
                ));
            }
        }
        s
    }

    /// The kernel elements deleted and added (boundaries of intervals).
    pub fn kernel(
        &self,
    ) -> Result<
        (
            Vec<crate::setelem::KernelElem>,
            Vec<crate::setelem::KernelElem>,
        ),
        String,
    > {
        let d: Vec<&str> = self.deleted.iter().map(String::as_str).collect();
        let a: Vec<&str> = self.added.iter().map(String::as_str).collect();
        crate::setelem::changes(&self.shape, &d, &a, self.was_empty)
    }
}

/// The set element changes of `sets` as one script (after any rule commands).
pub fn render_sets(sets: &[SetChange]) -> String {
    sets.iter().map(SetChange::nft).collect()
}

/// A set's body split into its declaration (statement lines other than the
/// elements) and the text of its element lines, as rampart's printer
/// writes them: one statement per line, `elements = {` on a line of its
/// own, one element per line, `}` alone.
fn split_set_body(body: &str) -> Result<(Vec<&str>, &str), String> {
    let mut header = Vec::new();
    let mut elements = "";
    let mut rest = body;
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest.as_bytes()) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let t = line.trim();
        if t.starts_with("elements") {
            if t.split_whitespace().collect::<Vec<_>>() != ["elements", "=", "{"] {
                return Err(format!("set element block `{t}`"));
            }
            // Up to the line holding only `}`.
            let b = next.as_bytes();
            let mut i = 0;
            let end = loop {
                let j = memchr::memchr(b'\n', &b[i..]).map_or(b.len(), |k| i + k);
                if next[i..j].trim() == "}" {
                    break Some((i, j));
                }
                if j >= b.len() {
                    break None;
                }
                i = j + 1;
            };
            let (close, after) = end.ok_or("unterminated set element block")?;
            elements = &next[..close];
            rest = next.get(after + 1..).unwrap_or("");
            continue;
        }
        if !t.is_empty() {
            header.push(t);
        }
        rest = next;
    }
    Ok((header, elements))
}

/// Element lines of `text` (`ELEM,` each), trimmed, without commas.
fn element_lines(text: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    for l in text.split('\n') {
        let t = l.trim();
        if t.is_empty() {
            continue;
        }
        let e = t.strip_suffix(',').unwrap_or(t).trim();
        if e.contains([',', '{', '}', '#', ';']) {
            return Err(format!("set element line `{t}`"));
        }
        out.push(e);
    }
    Ok(out)
}

/// The element lines that differ between two element blocks: the common
/// lines at the start and the end are skipped by comparing bytes, so a
/// one-element change in a 100,000-element set reads a few lines.
fn differing_lines<'a>(old: &'a str, new: &'a str) -> (&'a str, &'a str) {
    let (o, n) = (old.as_bytes(), new.as_bytes());
    let mut p = o.iter().zip(n).take_while(|(a, b)| a == b).count();
    // Back to the start of the line.
    while p > 0 && o[p - 1] != b'\n' {
        p -= 1;
    }
    let max_s = o.len().min(n.len()) - p;
    let mut s = o
        .iter()
        .rev()
        .zip(n.iter().rev())
        .take(max_s)
        .take_while(|(a, b)| a == b)
        .count();
    // Forward to a line end: the suffix starts a line in both texts.
    let line_start = |t: &[u8], s: usize| s == t.len() || t[t.len() - s - 1] == b'\n';
    while s > 0 && !(line_start(o, s) && line_start(n, s)) {
        s -= 1;
    }
    (&old[p..o.len() - s], &new[p..n.len() - s])
}

/// The element change of set `name`, or an error when more than its
/// elements changed or its kind is not one changed in place.
fn set_change(
    t: &TableRef,
    name: &str,
    kname: &str,
    old_body: &str,
    new_body: &str,
) -> Result<SetChange, String> {
    let (oh, oe) = split_set_body(old_body)?;
    let (nh, ne) = split_set_body(new_body)?;
    if oh != nh {
        return Err(format!(
            "the declaration of set {name} of table {t} changed"
        ));
    }
    let shape = crate::setelem::SetShape::from_header(nh.iter().copied())
        .ok_or_else(|| format!("set {name} of table {t} is not one changed in place"))?;
    let (od, nd) = differing_lines(oe, ne);
    let (ol, nl) = (element_lines(od)?, element_lines(nd)?);
    let old: std::collections::HashSet<&str> = ol.iter().copied().collect();
    let new: std::collections::HashSet<&str> = nl.iter().copied().collect();
    let change = SetChange {
        table: t.clone(),
        kname: kname.to_string(),
        shape,
        deleted: ol
            .iter()
            .filter(|e| !new.contains(*e))
            .map(|e| e.to_string())
            .collect(),
        added: nl
            .iter()
            .filter(|e| !old.contains(*e))
            .map(|e| e.to_string())
            .collect(),
        was_empty: oe.trim().is_empty(),
    };
    // Every element must be one the encoder makes.
    change.kernel()?;
    Ok(change)
}

/// One command of an in-place transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// `delete rule T C handle H`
    Delete {
        table: TableRef,
        chain: String,
        handle: u64,
    },
    /// `add rule T C RULE` (at the end)
    Append {
        table: TableRef,
        chain: String,
        rule: String,
    },
    /// `insert rule T C RULE` (at the head)
    Prepend {
        table: TableRef,
        chain: String,
        rule: String,
    },
    /// `insert rule T C handle H RULE` (before the rule with handle H)
    InsertBefore {
        table: TableRef,
        chain: String,
        handle: u64,
        rule: String,
    },
}

impl Cmd {
    /// The command as `nft -f` reads it.
    pub fn nft(&self) -> String {
        match self {
            Cmd::Delete {
                table,
                chain,
                handle,
            } => {
                format!("delete rule {table} {chain} handle {handle}\n")
            }
            Cmd::Append { table, chain, rule } => format!("add rule {table} {chain} {rule}\n"),
            Cmd::Prepend { table, chain, rule } => format!("insert rule {table} {chain} {rule}\n"),
            Cmd::InsertBefore {
                table,
                chain,
                handle,
                rule,
            } => format!("insert rule {table} {chain} handle {handle} {rule}\n"),
        }
    }
}

/// The `nft -f` script of `cmds` (one transaction).
pub fn render(cmds: &[Cmd]) -> String {
    cmds.iter().map(Cmd::nft).collect()
}

/// Rules recreated rather than positioned by handle, at most: `nft`
/// (1.0.6) positions a rule by handle only after fetching every rule of
/// the ruleset, unless apply sends the batch itself
/// ([`crate::mnldump`]); appending, prepending and deleting by handle cost
/// a few ms either way.
const RECREATE_AT_MOST: usize = 16;

/// The one transaction of `ip`, given the handles of each changed chain's
/// rules in chain order (`handles(table, kernel chain name)`). The rules
/// that differ are deleted by handle and the new ones put in their place:
/// appended when nothing follows them, prepended when nothing precedes
/// them, else positioned before the first rule kept after them. A few kept
/// rules without an interval set are deleted and added again instead (so
/// the new rules append or prepend); rules with an interval set are never
/// recreated (see the module doc).
pub fn commands(
    ip: &InPlace,
    mut handles: impl FnMut(&TableRef, &str) -> Result<Vec<u64>, String>,
) -> Result<Vec<Cmd>, String> {
    let mut out = Vec::new();
    for c in &ip.changes {
        let h = handles(&c.table, &c.kname)?;
        if h.len() != c.old.len() {
            return Err(format!(
                "chain {} {} holds {} rules, the record says {}",
                c.table,
                c.kname,
                h.len(),
                c.old.len()
            ));
        }
        let (p, q) = c.common();
        let table = || c.table.clone();
        let chain = || c.kname.clone();
        let added = &c.new[p..c.new.len() - q];
        let safe = |rules: &[String]| {
            rules.len() <= RECREATE_AT_MOST && !rules.iter().any(|r| may_hold_interval_set(r))
        };
        let suffix = &c.new[c.new.len() - q..];
        let prefix = &c.new[..p];
        let by_append = q == 0 || safe(suffix);
        let by_prepend = p == 0 || safe(prefix);
        let delete = |hs: &[u64], out: &mut Vec<Cmd>| {
            for &handle in hs {
                out.push(Cmd::Delete {
                    table: table(),
                    chain: chain(),
                    handle,
                });
            }
        };
        if by_append && (!by_prepend || q <= p) {
            // Delete from the change to the end; append the rest again.
            delete(&h[p..], &mut out);
            for r in added.iter().chain(suffix) {
                out.push(Cmd::Append {
                    table: table(),
                    chain: chain(),
                    rule: r.clone(),
                });
            }
        } else if by_prepend {
            // Delete from the start to the end of the change; insert at
            // the head, last rule first.
            delete(&h[..h.len() - q], &mut out);
            for r in prefix.iter().chain(added).rev() {
                out.push(Cmd::Prepend {
                    table: table(),
                    chain: chain(),
                    rule: r.clone(),
                });
            }
        } else {
            delete(&h[p..h.len() - q], &mut out);
            let before = h[h.len() - q];
            for r in added {
                out.push(Cmd::InsertBefore {
                    table: table(),
                    chain: chain(),
                    handle: before,
                    rule: r.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// [`commands`] as one `nft -f` script.
pub fn script(
    ip: &InPlace,
    handles: impl FnMut(&TableRef, &str) -> Result<Vec<u64>, String>,
) -> Result<String, String> {
    commands(ip, handles).map(|c| render(&c))
}

/// A top-level or table-level block of a script: head words and body.
#[derive(Debug)]
struct RawBlock<'a> {
    head: Vec<&'a str>,
    body: Option<&'a str>,
}

/// Split `text` into statements at depth 0 (newline and `;`), with the
/// body of each `head { body }` as a slice. Quotes and `#` comments are
/// respected. Linear, no per-character allocation.
fn push_head<'a>(out: &mut Vec<RawBlock<'a>>, s: &'a str) {
    let head: Vec<&str> = strip_comment(s).split_whitespace().collect();
    if !head.is_empty() {
        out.push(RawBlock { head, body: None });
    }
}

fn raw_blocks(text: &str) -> Result<Vec<RawBlock<'_>>, String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut i = 0usize;
    while i < b.len() {
        match b[i] {
            b'"' | b'#' => {
                i = skip_inert(b, i);
                continue;
            }
            b'\n' | b';' => {
                push_head(&mut out, &text[start..i]);
                start = i + 1;
            }
            b'{' => {
                let end = close_of(b, i + 1).ok_or("unbalanced braces")?;
                let head: Vec<&str> = strip_comment(&text[start..i]).split_whitespace().collect();
                out.push(RawBlock {
                    head,
                    body: Some(&text[i + 1..end]),
                });
                i = end + 1;
                start = i;
                continue;
            }
            b'}' => return Err("unbalanced braces".into()),
            _ => {}
        }
        i += 1;
    }
    if start < b.len() {
        push_head(&mut out, &text[start..]);
    }
    Ok(out)
}

/// Drop `#` comments (outside quotes) from a statement's text.
fn strip_comment(s: &str) -> &str {
    let mut in_str = false;
    for (i, c) in s.bytes().enumerate() {
        match c {
            b'"' => in_str = !in_str,
            b'#' if !in_str => return &s[..i],
            _ => {}
        }
    }
    s
}

/// Past the quoted string (`"…"`, to just after its closing quote) or the
/// `#` comment (to its newline) starting at `i`: text where braces and
/// separators mean nothing.
fn skip_inert(b: &[u8], i: usize) -> usize {
    if b[i] == b'"' {
        let close = b[i + 1..].iter().position(|&c| c == b'"');
        close.map_or(b.len(), |k| i + 1 + k + 1)
    } else {
        b[i..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(b.len(), |k| i + k)
    }
}

/// Index of the `}` closing the `{` just before `from`. The scan jumps
/// from one brace or quote to the next with `memchr` (set element blocks
/// are megabytes of addresses); a `#` between them starts a comment.
fn close_of(b: &[u8], from: usize) -> Option<usize> {
    let mut depth = 1usize;
    let mut i = from;
    while i < b.len() {
        let j = i + memchr::memchr3(b'{', b'}', b'"', &b[i..])?;
        if let Some(h) = memchr::memchr(b'#', &b[i..j]) {
            i = skip_inert(b, i + h);
            continue;
        }
        match b[j] {
            b'"' => {
                i = skip_inert(b, j);
                continue;
            }
            b'{' => depth += 1,
            _ => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
        }
        i = j + 1;
    }
    None
}

/// Tables -> (object head, e.g. `chain x`) -> body, plus the top-level
/// statements (`table T`, `delete table T`) in order.
type RawScript<'a> = (Vec<String>, BTreeMap<TableRef, BTreeMap<String, &'a str>>);

fn raw_script(script: &str) -> Result<RawScript<'_>, String> {
    let mut top = Vec::new();
    let mut tables = BTreeMap::new();
    for blk in raw_blocks(script)? {
        match (blk.head.as_slice(), blk.body) {
            (["table" | "add" | "delete" | "destroy", ..], None) => top.push(blk.head.join(" ")),
            (["table", f, n] | ["add", "table", f, n], Some(body)) => {
                let t = TableRef {
                    family: f.to_string(),
                    name: n.to_string(),
                };
                let mut objs = BTreeMap::new();
                for o in raw_blocks(body)? {
                    let Some(ob) = o.body else {
                        // a table-level statement (`flags ...`, `comment ...`)
                        objs.insert(format!("\0{}", o.head.join(" ")), "");
                        continue;
                    };
                    if objs.insert(o.head.join(" "), ob).is_some() {
                        return Err(format!("`{}` twice in table {t}", o.head.join(" ")));
                    }
                }
                if tables.insert(t.clone(), objs).is_some() {
                    return Err(format!("table {t} defined twice"));
                }
                top.push(format!("table {t} {{}}"));
            }
            _ => return Err(format!("top-level statement `{}`", blk.head.join(" "))),
        }
    }
    Ok((top, tables))
}

/// Whether an anonymous set or map in this (renamed) rule could be an
/// interval set: any element with a range, a prefix or a wildcard. nft
/// 1.0.6 makes `{ 10.0.0.1, 10.0.0.2 }`, `{ 2001:db8::1, 2001:db8::2 }` and
/// `{ 22, 80 }` constant hash sets (flags 3 in `nft --debug=netlink`) and
/// `{ 10.0.0.0/8, 10.1.0.1 }` an interval set (flags 7). Conservative: a
/// false "yes" only sends the change down the staged path.
pub fn may_hold_interval_set(rule: &str) -> bool {
    let b = rule.as_bytes();
    let mut depth = 0usize;
    let mut in_str = false;
    let mut prev_word = "";
    let mut word_start = None;
    for i in 0..=b.len() {
        let c = b.get(i).copied().unwrap_or(b' ');
        if in_str {
            if c == b'"' {
                in_str = false;
            }
            continue;
        }
        let boundary = matches!(c, b' ' | b'\t' | b'\n' | b'{' | b'}' | b',' | b'"');
        if boundary {
            if let Some(s) = word_start.take() {
                let w = &rule[s..i];
                if depth > 0 && !matches!(prev_word, "jump" | "goto") && interval_like(w) {
                    return true;
                }
                prev_word = w;
            }
        } else if word_start.is_none() {
            word_start = Some(i);
        }
        match c {
            b'"' => {
                in_str = true;
                if depth > 0 && b.get(i + 1..).is_some_and(|r| r.contains(&b'*')) {
                    // a quoted element with a wildcard (`"tap*"`) is an interval
                    let end = rule[i + 1..]
                        .find('"')
                        .map(|e| i + 1 + e)
                        .unwrap_or(b.len());
                    if rule[i + 1..end].contains('*') {
                        return true;
                    }
                }
            }
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn interval_like(w: &str) -> bool {
    if w == ":" || w == "." {
        return false;
    }
    let digits_dash = w.contains('-') && w.bytes().any(|c| c.is_ascii_digit());
    digits_dash || w.contains('/') || w.contains('*')
}

/// The one transaction from `old` (running, staged with `names`, i.e. the
/// record's salt and `pins`) to `new`, or why the change needs the staged
/// path. `names` are the kernel names of the running plan's objects.
pub fn in_place(old: &str, new: &str, names: &KernelNames, pins: &Pins) -> Result<InPlace, String> {
    let (old_top, old_tables) = raw_script(old)?;
    let (new_top, new_tables) = raw_script(new)?;
    if old_top != new_top {
        return Err("tables added, removed or reordered".into());
    }
    let mut out = InPlace {
        changes: Vec::new(),
        sets: Vec::new(),
        pins: pins.clone(),
        chains: Vec::new(),
    };
    for (t, nobjs) in &new_tables {
        let oobjs = &old_tables[t];
        if oobjs.len() != nobjs.len() || oobjs.keys().ne(nobjs.keys()) {
            return Err(format!("objects of table {t} added or removed"));
        }
        let tn = names
            .get(t)
            .ok_or_else(|| format!("no kernel names for table {t}"))?;
        for (head, nbody) in nobjs {
            let obody = oobjs[head];
            if obody == *nbody {
                continue;
            }
            if let Some(name) = head.strip_prefix("set ") {
                let kname = tn
                    .sets
                    .get(name)
                    .ok_or_else(|| format!("no kernel name for set {name} of table {t}"))?;
                let c = set_change(t, name, kname, obody, nbody)?;
                if !c.deleted.is_empty() || !c.added.is_empty() {
                    out.sets.push(c);
                }
                continue;
            }
            let Some(name) = head.strip_prefix("chain ") else {
                return Err(format!(
                    "`{}` of table {t} changed",
                    head.trim_start_matches('\0')
                ));
            };
            let rules = crate::twophase::chain_rules_for_kernel(&t.family, name, obody, nbody, tn)?;
            let Some((old_rules, new_rules)) = rules else {
                continue;
            };
            let kname = tn
                .chains
                .get(name)
                .ok_or_else(|| format!("no kernel name for chain {name} of table {t}"))?;
            let change = ChainChange {
                table: t.clone(),
                kname: kname.clone(),
                old: old_rules,
                new: new_rules,
            };
            if let Some(r) = change.added().iter().find(|r| may_hold_interval_set(r)) {
                return Err(format!(
                    "chain {name} of table {t}: a new rule may hold an interval set (`{r}`)"
                ));
            }
            out.changes.push(change);
            out.chains.push(format!("{t} {name}"));
            out.pins.insert(format!("{t} {name}"), kname.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twophase::{kernel_names, stage, KernelObjects, Running};
    use std::collections::BTreeSet;

    const PLAN: &str = "table inet rampart\ndelete table inet rampart\ntable inet rampart {\n\tset bl {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = {\n\t\t\t10.0.0.1,\n\t\t\t10.0.1.0/24,\n\t\t}\n\t}\n\tmap disp {\n\t\ttype ifname : verdict\n\t\telements = {\n\t\t\t\"tap100i0\" : jump g100,\n\t\t}\n\t}\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n\t\tct state established,related accept # conntrack\n\t\tip saddr @bl drop\n\t\tiifname vmap @disp\n\t\ttcp dport 22 accept comment \"cluster.fw:3\"\n\t}\n\tchain g100 {\n\t\tcomment \"guest 100\"\n\t\ttcp dport 80 accept comment \"100.fw:4\"\n\t\tjump common\n\t}\n\tchain common {\n\t\tudp dport 53 accept\n\t}\n}\n";

    fn tables() -> BTreeSet<TableRef> {
        [TableRef {
            family: "inet".into(),
            name: "rampart".into(),
        }]
        .into()
    }

    fn names(script: &str, pins: &Pins) -> KernelNames {
        kernel_names(script, "s", pins).expect("names")
    }

    /// Handles 10, 11, ... for each chain's rules as the record has them.
    fn with_handles(ip: &InPlace) -> String {
        script(ip, |_, k| {
            let c = ip.changes.iter().find(|c| c.kname == k).unwrap();
            Ok((10..10 + c.old.len() as u64).collect())
        })
        .unwrap()
    }

    #[test]
    fn a_rule_change_refills_only_its_chain_under_its_kernel_name() {
        let n = names(PLAN, &Pins::new());
        let new = PLAN.replace("dport 80 accept", "dport 8080 accept");
        let d = in_place(PLAN, &new, &n, &Pins::new()).unwrap();
        let t = &n[&tables().into_iter().next().unwrap()];
        let g = &t.chains["g100"];
        assert!(g.starts_with("g100."), "{g}");
        // Rule 10 replaced: nothing before it, so it is deleted and the
        // new one inserted at the head (no positioning by handle).
        assert_eq!(
            with_handles(&d),
            format!(
                "delete rule inet rampart {g} handle 10\ninsert rule inet rampart {g} tcp dport 8080 accept comment \"100.fw:4\"\n"
            )
        );
        // Appended at the end, removed from the end.
        let more = PLAN.replace(
            "\t\tjump common\n",
            "\t\tjump common\n\t\tudp dport 1 drop\n",
        );
        let d2 = in_place(PLAN, &more, &n, &Pins::new()).unwrap();
        assert_eq!(
            with_handles(&d2),
            format!("add rule inet rampart {g} udp dport 1 drop\n")
        );
        let d3 = in_place(&more, PLAN, &n, &Pins::new()).unwrap();
        assert_eq!(
            with_handles(&d3),
            format!("delete rule inet rampart {g} handle 12\n")
        );
        // The kernel holding other rules than the record: refused.
        assert!(script(&d, |_, _| Ok(vec![1])).is_err());
        assert_eq!(d.chains, vec!["inet rampart g100".to_string()]);
        assert_eq!(d.pins.get("inet rampart g100"), Some(g));
        // The pinned record derives the names the kernel holds: the
        // chain's and every other one unchanged.
        let after = names(&new, &d.pins);
        assert_eq!(after, n);
    }

    #[test]
    fn base_chain_rules_refill_its_staged_body_with_the_policy_last() {
        let n = names(PLAN, &Pins::new());
        let t = &n[&tables().into_iter().next().unwrap()];
        let new = PLAN.replace("tcp dport 22 accept", "tcp dport 2222 accept");
        let d = in_place(PLAN, &new, &n, &Pins::new()).unwrap();
        let body = &t.chains["input"];
        assert!(body.starts_with("input."), "{body}");
        let c = &d.changes[0];
        assert_eq!(&c.kname, body);
        assert_eq!(c.old[1], format!("ip saddr @{} drop", t.sets["bl"]));
        assert_eq!(c.new[2], format!("iifname vmap @{}", t.sets["disp"]));
        assert_eq!(
            c.new.last().unwrap(),
            "drop comment \"policy of base chain input\""
        );
        // One rule after the change (the policy): deleted and appended again.
        assert_eq!(
            with_handles(&d),
            format!("delete rule inet rampart {body} handle 13\ndelete rule inet rampart {body} handle 14\nadd rule inet rampart {body} tcp dport 2222 accept comment \"cluster.fw:3\"\nadd rule inet rampart {body} drop comment \"policy of base chain input\"\n")
        );
    }

    #[test]
    fn differing_lines_are_whole_lines() {
        for (o, n, want) in [
            ("A\nB\n", "A\nB\nC\n", ("", "C\n")),
            ("B\nC\n", "A\nB\nC\n", ("", "A\n")),
            ("A\nB\n", "AB\n", ("A\nB\n", "AB\n")),
            ("A\nX\nC\n", "A\nY\nC\n", ("X\n", "Y\n")),
            ("", "A\n", ("", "A\n")),
            ("A\n", "", ("A\n", "")),
            ("AB\n", "B\n", ("AB\n", "B\n")),
        ] {
            assert_eq!(differing_lines(o, n), want, "{o:?} -> {n:?}");
        }
    }

    #[test]
    fn set_elements_change_in_place_under_the_kernel_name() {
        let n = names(PLAN, &Pins::new());
        let kname = n[&tables().into_iter().next().unwrap()].sets["bl"].clone();
        let new = PLAN.replace("\t\t\t10.0.0.1,\n", "\t\t\t10.0.0.2,\n\t\t\t10.0.0.7,\n");
        let ip = in_place(PLAN, &new, &n, &Pins::new()).unwrap();
        assert!(ip.changes.is_empty());
        assert_eq!(ip.sets.len(), 1);
        let c = &ip.sets[0];
        assert_eq!(c.kname, kname);
        assert_eq!(c.deleted, ["10.0.0.1"]);
        assert_eq!(c.added, ["10.0.0.2", "10.0.0.7"]);
        assert_eq!(
            c.nft(),
            format!("delete element inet rampart {kname} {{ 10.0.0.1 }}\nadd element inet rampart {kname} {{ 10.0.0.2, 10.0.0.7 }}\n")
        );
        // A comment that looks like an element block is still the header.
        let tricky = PLAN.replace(
            "flags interval",
            "flags interval\n\t\tcomment \"elements = { 1.2.3.4, }\"",
        );
        let tricky2 = tricky.replace("\t\t\t10.0.0.1,\n", "");
        let ip = in_place(
            &tricky,
            &tricky2,
            &names(&tricky, &Pins::new()),
            &Pins::new(),
        )
        .unwrap();
        assert_eq!(ip.sets[0].deleted, ["10.0.0.1"]);
        assert!(ip.sets[0].added.is_empty());
        // The last element gone: the block goes, the set stays.
        let emptied = PLAN.replace(
            "\t\telements = {\n\t\t\t10.0.0.1,\n\t\t\t10.0.1.0/24,\n\t\t}\n",
            "",
        );
        assert_ne!(emptied, PLAN);
        let ip = in_place(PLAN, &emptied, &n, &Pins::new()).unwrap();
        assert_eq!(ip.sets[0].deleted, ["10.0.0.1", "10.0.1.0/24"]);
        let ip = in_place(&emptied, PLAN, &names(&emptied, &Pins::new()), &Pins::new()).unwrap();
        assert!(ip.sets[0].was_empty);
    }

    #[test]
    fn what_the_staged_path_must_do_is_refused() {
        let n = names(PLAN, &Pins::new());
        for (from, to, why) in [
            ("flags interval", "flags interval,timeout", "set bl"),
            (
                "\"tap100i0\" : jump g100",
                "\"tap101i0\" : jump g100",
                "map disp",
            ),
            ("policy drop;", "policy accept;", "hook"),
            ("\tchain common {", "\tchain other {", "added or removed"),
            ("comment \"guest 100\"", "comment \"guest 101\"", "comment"),
            (
                "tcp dport 80 accept",
                "ip saddr { 10.0.0.0/8 } accept",
                "interval",
            ),
            (
                "tcp dport 80 accept",
                "tcp dport { 80-90 } accept",
                "interval",
            ),
            (
                "tcp dport 80 accept",
                "iifname { \"tap*\" } accept",
                "interval",
            ),
            (
                "tcp dport 80 accept",
                "ip6 saddr { fe80::/64 } accept",
                "interval",
            ),
            (
                "tcp dport 80 accept",
                "ip saddr { 10.0.0.1-10.0.0.9 } accept",
                "interval",
            ),
            ("tcp dport 80 accept", "jump nowhere", "nowhere"),
        ] {
            let new = PLAN.replace(from, to);
            assert_ne!(new, PLAN, "{from}");
            let e = in_place(PLAN, &new, &n, &Pins::new()).unwrap_err();
            assert!(e.contains(why), "{from} -> {to}: {e}");
        }
        // Hash sets (plain ports, protocol names) are fine in a new rule.
        let new = PLAN.replace("tcp dport 80 accept", "tcp dport { 80, 443 } accept");
        assert!(in_place(PLAN, &new, &n, &Pins::new()).is_ok());
        // Layout and comments alone change nothing.
        let new = PLAN.replace("# conntrack", "# state");
        assert_eq!(
            with_handles(&in_place(PLAN, &new, &n, &Pins::new()).unwrap()),
            ""
        );
        // Rules kept around a changed one may hold interval sets: they are
        // not recreated.
        let a = PLAN.replace("jump common", "ip saddr { 10.0.0.0/8 } jump common");
        let b = a.replace("dport 80 accept", "dport 81 accept");
        let na = names(&a, &Pins::new());
        let d = in_place(&a, &b, &na, &Pins::new()).unwrap();
        let g = &na[&tables().into_iter().next().unwrap()].chains["g100"];
        assert_eq!(
            with_handles(&d),
            format!("delete rule inet rampart {g} handle 10\ninsert rule inet rampart {g} tcp dport 81 accept comment \"100.fw:4\"\n")
        );
        // Interval sets on both sides: positioned by handle.
        let a2 = a.replace(
            "tcp dport 80 accept comment \"100.fw:4\"",
            "ip saddr { 10.1.0.0/16 } accept\n\t\ttcp dport 80 accept",
        );
        let b2 = a2.replace("dport 80 accept", "dport 81 accept");
        let na2 = names(&a2, &Pins::new());
        let d = in_place(&a2, &b2, &na2, &Pins::new()).unwrap();
        let g2 = &na2[&tables().into_iter().next().unwrap()].chains["g100"];
        let s = with_handles(&d);
        assert_eq!(
            s,
            format!("delete rule inet rampart {g2} handle 11\ninsert rule inet rampart {g2} handle 12 tcp dport 81 accept\n")
        );
        assert!(!s.contains("/8") && !s.contains("/16"));
    }

    #[test]
    fn a_later_staged_apply_never_reuses_a_pinned_name_for_other_rules() {
        // Running: PLAN staged, then g100 refilled in place (pinned).
        let n = names(PLAN, &Pins::new());
        let v2 = PLAN.replace("dport 80 accept", "dport 8080 accept");
        let d = in_place(PLAN, &v2, &n, &Pins::new()).unwrap();
        let kernel = crate::twophase::recorded_objects(&v2, "s", &d.pins).unwrap();
        // Back to PLAN's g100: its content hash is the pinned name, which
        // holds v2's rules: the staged path must not reuse it.
        let running = Running {
            script: Some((&v2, "s")),
            pins: &d.pins,
            fresh_salt: "fresh",
        };
        let st = stage(PLAN, &tables(), &kernel, &running).unwrap().unwrap();
        assert_eq!(st.salt, "fresh", "{st:?}");
        // A different change reuses what did not change and restages g100.
        let v3 = PLAN.replace("dport 80 accept", "dport 9090 accept");
        let st = stage(&v3, &tables(), &kernel, &running).unwrap().unwrap();
        assert_eq!(st.salt, "s");
        assert!(st.stage.contains("dport 9090"), "{}", st.stage);
        assert!(st
            .cleanup
            .contains(&n[&tables().into_iter().next().unwrap()].chains["g100"]));
        let _ = KernelObjects::default();
    }

    #[test]
    fn interval_detection() {
        for r in [
            "ip saddr { 10.0.0.0/8 } accept",
            "tcp dport { 5900-5999 } accept",
            "ip6 saddr { fe80::/64 } accept",
            "iifname { \"tap*\" } drop",
        ] {
            assert!(may_hold_interval_set(r), "{r}");
        }
        for r in [
            "tcp dport { 22, 80 } accept",
            "ip saddr { 10.0.0.1, 10.0.0.2 } accept",
            "ip6 saddr { 2001:db8:ffff::b4, 2001:db8:ffff::1b4 } tcp dport 179 return",
            "meta l4proto { tcp, udp } accept",
            "icmp type { echo-request, echo-reply } accept",
            "iifname vmap { \"tap100i0\" : jump g100.0123456789 }",
            "ip saddr 10.0.0.0/8 accept comment \"x { 10.0.0.0/8 }\"",
            "ip saddr @bl.0123456789 drop",
        ] {
            assert!(!may_hold_interval_set(r), "{r}");
        }
    }
}

//! What an nft script touches: the tables it names at top level. rampart only
//! ever loads scripts that name its own tables, never `flush ruleset`, never
//! `include`.

use std::collections::BTreeSet;

/// An nftables table: family and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableRef {
    pub family: String,
    pub name: String,
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.family, self.name)
    }
}

/// True for the tables rampart owns: `rampart`, `rampart-*`, `rampart_*`.
pub fn is_owned(name: &str) -> bool {
    name == "rampart" || name.starts_with("rampart-") || name.starts_with("rampart_")
}

const FAMILIES: &[&str] = &["ip", "ip6", "inet", "arp", "bridge", "netdev"];
const VERBS: &[&str] = &[
    "add", "create", "delete", "destroy", "flush", "insert", "replace", "reset", "list",
];
const OBJECTS: &[&str] = &[
    "table",
    "chain",
    "rule",
    "set",
    "map",
    "element",
    "flowtable",
    "counter",
    "quota",
    "limit",
    "ct",
    "secmark",
    "synproxy",
];

/// Split a script into top-level statement heads (text at brace depth 0,
/// cut at `;`, newline or `{`), skipping comments and quoted strings.
fn top_level_heads(script: &str) -> Vec<String> {
    let b = script.as_bytes();
    let mut heads = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0usize;
    // Past the quoted string starting at `i` (unterminated: to the end).
    let string_end =
        |i: usize| memchr::memchr(b'"', &b[i + 1..]).map_or(b.len(), |k| i + 1 + k + 1);
    // To the newline ending the comment at `i` (the newline is kept).
    let comment_end = |i: usize| memchr::memchr(b'\n', &b[i..]).map_or(b.len(), |k| i + k);
    let take = |cur: &mut Vec<u8>| String::from_utf8_lossy(&std::mem::take(cur)).into_owned();
    while i < b.len() {
        if depth > 0 {
            // Inside a block only braces, quotes and comments matter: jump
            // from one to the next (set element blocks are megabytes).
            let Some(off) = memchr::memchr3(b'{', b'}', b'"', &b[i..]) else {
                break;
            };
            let j = i + off;
            if let Some(h) = memchr::memchr(b'#', &b[i..j]) {
                i = comment_end(i + h);
                continue;
            }
            match b[j] {
                b'"' => {
                    i = string_end(j);
                    continue;
                }
                b'{' => depth += 1,
                _ => depth -= 1,
            }
            i = j + 1;
            continue;
        }
        match b[i] {
            b'#' => {
                i = comment_end(i);
                continue;
            }
            b'"' => {
                let e = string_end(i);
                cur.extend_from_slice(&b[i..e]);
                i = e;
                continue;
            }
            b'{' => {
                heads.push(take(&mut cur));
                depth += 1;
            }
            b'}' => {}
            b';' | b'\n' => heads.push(take(&mut cur)),
            c => cur.push(c),
        }
        i += 1;
    }
    heads.push(take(&mut cur));
    heads.retain(|h| !h.trim().is_empty());
    heads
}

/// The tables a script names, or why rampart must not load it.
pub fn script_tables(script: &str) -> Result<BTreeSet<TableRef>, String> {
    let mut out = BTreeSet::new();
    for head in top_level_heads(script) {
        let toks: Vec<&str> = head.split_whitespace().collect();
        let mut i = 0;
        match toks.first().copied() {
            Some("include") => return Err("`include` is not allowed in a rampart plan".into()),
            Some("define") | Some("undefine") | Some("redefine") => continue,
            _ => {}
        }
        if i < toks.len() && VERBS.contains(&toks[i]) {
            i += 1;
        }
        let Some(obj) = toks.get(i).copied() else {
            continue;
        };
        if obj == "ruleset" {
            return Err(format!("`{}` touches the whole ruleset", head.trim()));
        }
        if !OBJECTS.contains(&obj) {
            return Err(format!(
                "unrecognised top-level statement `{}`",
                head.trim()
            ));
        }
        i += 1;
        if obj == "ct" {
            i += 1; // ct helper|timeout|expectation
        }
        let (family, name) = match (toks.get(i), toks.get(i + 1)) {
            (Some(f), Some(n)) if FAMILIES.contains(f) => (f.to_string(), n.to_string()),
            (Some(n), _) => ("ip".to_string(), n.to_string()),
            _ => return Err(format!("statement without a table: `{}`", head.trim())),
        };
        if !is_owned(&name) {
            return Err(format!(
                "statement `{}` touches table `{family} {name}`, which rampart does not own",
                head.trim()
            ));
        }
        out.insert(TableRef { family, name });
    }
    Ok(out)
}

/// `add table T; delete table T` for every table: in one `nft -f`
/// transaction this removes the table whether or not it exists.
pub fn delete_prelude<'a>(tables: impl IntoIterator<Item = &'a TableRef>) -> String {
    let mut s = String::new();
    for t in tables {
        s.push_str(&format!("add table {t}\ndelete table {t}\n"));
    }
    s
}

/// Parse `nft list tables` output.
pub fn parse_list_tables(out: &str) -> Vec<TableRef> {
    out.lines()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            match t.as_slice() {
                ["table", f, n] => Some(TableRef {
                    family: f.to_string(),
                    name: n.to_string(),
                }),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(f: &str, n: &str) -> TableRef {
        TableRef {
            family: f.into(),
            name: n.into(),
        }
    }

    #[test]
    fn finds_own_tables() {
        let s = "# comment { with brace\ntable inet rampart {}\ndelete table inet rampart\n\
                 table inet rampart {\n chain c { comment \"}{\"; tcp dport 22 drop; }\n}\n\
                 add table bridge rampart; add rule inet rampart c accept\n";
        let got = script_tables(s).unwrap();
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            vec![t("bridge", "rampart"), t("inet", "rampart")]
        );
    }

    #[test]
    fn refuses_foreign_tables_and_ruleset() {
        assert!(script_tables("flush ruleset\n")
            .unwrap_err()
            .contains("whole ruleset"));
        assert!(script_tables("table inet filter {}\n")
            .unwrap_err()
            .contains("inet filter"));
        assert!(script_tables("add rule ip nat postrouting masquerade\n").is_err());
        assert!(script_tables("include \"/etc/x\"\n").is_err());
        assert!(script_tables("table rampartx {}\n").is_err());
        // A comment inside a block holding a brace and a quote hides
        // neither the end of the block nor the foreign table after it.
        let hidden = "table inet rampart {\n chain c { # odd } \" {\n tcp dport 22 drop\n }\n}\n\
                      table ip filter {}\n";
        assert!(script_tables(hidden).unwrap_err().contains("ip filter"));
    }

    #[test]
    fn parses_list_tables() {
        let v = parse_list_tables("table inet rampart\ntable ip filter\n");
        assert_eq!(v, vec![t("inet", "rampart"), t("ip", "filter")]);
    }
}

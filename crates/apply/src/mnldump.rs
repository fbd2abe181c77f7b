//! The netlink batch `nft` builds, read back from `nft --debug=mnl`.
//!
//! `nft` 1.0.6 places a rule by handle (`insert rule T C handle H ...`)
//! only after fetching every rule of the ruleset (~0.1 s at 10,000 rules),
//! while prepending, appending and deleting by handle need no rule cache.
//! For an in-place change ([`crate::inplace`]) apply therefore asks `nft`
//! to build the transaction with each positioned rule *prepended*, in
//! check mode (`-c`: the kernel validates the batch and aborts it), and
//! reads the batch back from the `--debug=mnl` dump on stdout. It then
//! sends that batch itself with `NFTA_RULE_POSITION` set on those rules
//! ([`crate::netlink::nft_batch`]): the expressions, set references and
//! comments are exactly what `nft` compiled for this kernel.
//!
//! The dump is libmnl's `mnl_nlmsg_fprintf` layout: every line carries four
//! bytes of the message (a length, type and flags, sequence, port id, the
//! `nfgenmsg` header, an attribute header, or four payload bytes), so the
//! bytes are rebuilt line by line; a message whose rebuilt length differs
//! from its stated length is an error (apply then uses `nft -f`).
//! Pure: text in, messages out.

use crate::inplace::Cmd;

/// One netlink message of the batch: its type (`subsys << 8 | msg`) and
/// everything after the 16-byte `nlmsghdr` (`nfgenmsg` and attributes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    pub ty: u16,
    pub payload: Vec<u8>,
}

/// `NFNL_MSG_BATCH_BEGIN` / `_END`.
pub const BATCH_BEGIN: u16 = 16;
pub const BATCH_END: u16 = 17;

/// Drop ANSI colour escapes (`ESC [ ... m`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut it = line.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn hex4(cell: &str) -> Option<[u8; 4]> {
    let v: Vec<u8> = cell
        .split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).ok())
        .collect::<Option<_>>()?;
    v.try_into().ok()
}

/// Every message the dump shows, in order (requests of the cache fill
/// first, then the batch).
pub fn messages(dump: &str) -> Result<Vec<Msg>, String> {
    struct Cur {
        len: usize,
        ty: Option<u16>,
        payload: Vec<u8>,
    }
    let mut out = Vec::new();
    let mut cur: Option<Cur> = None;
    let finish = |c: Cur, out: &mut Vec<Msg>| -> Result<(), String> {
        let ty = c.ty.ok_or("a message without a type line")?;
        if c.payload.len() + 16 != c.len {
            return Err(format!(
                "message of type {ty}: {} bytes rebuilt, {} stated",
                c.payload.len() + 16,
                c.len
            ));
        }
        out.push(Msg {
            ty,
            payload: c.payload,
        });
        Ok(())
    };
    for raw in dump.lines() {
        let line = plain(raw);
        let Some((cell, what)) = line.split_once('\t') else {
            continue;
        };
        let cell = cell.trim();
        if !cell.starts_with('|') || !cell.ends_with('|') || cell.len() < 2 {
            continue; // separators and anything that is not a dump line
        }
        let inner = &cell[1..cell.len() - 1];
        let what: String = what
            .split('\t')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        match what.as_str() {
            "|messagelength|" => {
                if let Some(c) = cur.take() {
                    finish(c, &mut out)?;
                }
                let len = inner
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| format!("message length `{inner}`"))?;
                cur = Some(Cur {
                    len,
                    ty: None,
                    payload: Vec::with_capacity(len),
                });
            }
            "|type|flags|" => {
                let c = cur.as_mut().ok_or("type line outside a message")?;
                let ty = inner
                    .split('|')
                    .next()
                    .and_then(|t| t.trim().parse::<u16>().ok())
                    .ok_or_else(|| format!("type `{inner}`"))?;
                c.ty = Some(ty);
            }
            "|sequencenumber|" | "|portID|" => {}
            "|extraheader|" | "|data|" => {
                let c = cur.as_mut().ok_or("payload outside a message")?;
                let b = hex4(inner).ok_or_else(|| format!("payload line `{inner}`"))?;
                c.payload.extend_from_slice(&b);
            }
            "|len|flags|type|" => {
                let c = cur.as_mut().ok_or("attribute outside a message")?;
                let f: Vec<&str> = inner.split('|').map(str::trim).collect();
                let [len, flags, ty] = f.as_slice() else {
                    return Err(format!("attribute header `{inner}`"));
                };
                let len: u16 = len.parse().map_err(|_| format!("attribute `{inner}`"))?;
                let mut ty: u16 = ty.parse().map_err(|_| format!("attribute `{inner}`"))?;
                if flags.contains('N') {
                    ty |= 0x8000;
                }
                if flags.contains('B') {
                    ty |= 0x4000;
                }
                c.payload.extend_from_slice(&len.to_ne_bytes());
                c.payload.extend_from_slice(&ty.to_ne_bytes());
            }
            _ => {}
        }
    }
    if let Some(c) = cur.take() {
        finish(c, &mut out)?;
    }
    Ok(out)
}

/// The messages of the (last) batch in the dump, without its begin and
/// end markers.
pub fn batch(dump: &str) -> Result<Vec<Msg>, String> {
    let all = messages(dump)?;
    let start = all
        .iter()
        .rposition(|m| m.ty == BATCH_BEGIN)
        .ok_or("no batch in nft's netlink dump")?;
    Ok(all[start + 1..]
        .iter()
        .take_while(|m| m.ty != BATCH_END)
        .cloned()
        .collect())
}

const NEWRULE: u16 = 0x0a06;
const DELRULE: u16 = 0x0a08;
const NEWSET: u16 = 0x0a09;
const NEWSETELEM: u16 = 0x0a0c;
const NFTA_RULE_POSITION: u16 = 6;

/// What `nft -c --debug=mnl` is given for `cmds`: every rule positioned by
/// handle is prepended instead (no rule cache needed), in the same order.
pub fn check_script(cmds: &[Cmd]) -> String {
    cmds.iter()
        .map(|c| match c {
            Cmd::InsertBefore {
                table, chain, rule, ..
            } => Cmd::Prepend {
                table: table.clone(),
                chain: chain.clone(),
                rule: rule.clone(),
            }
            .nft(),
            other => other.nft(),
        })
        .collect()
}

/// The transaction of `cmds` as netlink messages (type, flags, payload),
/// from nft's dump of [`check_script`]: each rule that was positioned by
/// handle gets its position back. An error when the batch does not hold
/// exactly one rule message per rule command and one delete per delete
/// (then apply sends the script through `nft -f` instead).
pub fn in_place_batch(cmds: &[Cmd], dump: &str) -> Result<Vec<(u16, u16, Vec<u8>)>, String> {
    use crate::netlink::{nla, NLM_F_APPEND, NLM_F_CREATE};
    let msgs = batch(dump)?;
    let mut adds = cmds.iter().filter(|c| !matches!(c, Cmd::Delete { .. }));
    let want_del = cmds
        .iter()
        .filter(|c| matches!(c, Cmd::Delete { .. }))
        .count();
    let mut dels = 0usize;
    let mut out = Vec::with_capacity(msgs.len());
    for m in msgs {
        let (flags, payload) = match m.ty {
            DELRULE => {
                dels += 1;
                (0, m.payload)
            }
            NEWSET | NEWSETELEM => (NLM_F_CREATE, m.payload),
            NEWRULE => {
                let c = adds
                    .next()
                    .ok_or("more rules in nft's batch than commands")?;
                if crate::netlink::attrs(m.payload.get(4..).unwrap_or_default())
                    .iter()
                    .any(|(t, _)| *t == NFTA_RULE_POSITION)
                {
                    return Err("a rule in nft's batch is already positioned".into());
                }
                match c {
                    Cmd::Append { .. } => (NLM_F_CREATE | NLM_F_APPEND, m.payload),
                    Cmd::Prepend { .. } => (NLM_F_CREATE, m.payload),
                    Cmd::InsertBefore { handle, .. } => {
                        let mut p = m.payload;
                        p.extend_from_slice(&nla(NFTA_RULE_POSITION, &handle.to_be_bytes()));
                        (NLM_F_CREATE, p)
                    }
                    Cmd::Delete { .. } => unreachable!("filtered out"),
                }
            }
            other => {
                return Err(format!(
                    "unexpected message type {other:#06x} in nft's batch"
                ))
            }
        };
        out.push((m.ty, flags, payload));
    }
    if adds.next().is_some() || dels != want_del {
        return Err("nft's batch does not match the commands".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nft -c --debug=mnl` of `insert rule inet t c tcp dport 22 accept
    /// comment "x"` (cache requests cut to one), as nft 1.0.6 prints it.
    const DUMP: &str = "----------------\t------------------
|  0000000020  |\t| message length |
| 02576 | R--- |\t|  type | flags  |
|  0000000000  |\t| sequence number|
|  0000000000  |\t|     port ID    |
----------------\t------------------
| 00 00 00 00  |\t|  extra header  |
----------------\t------------------
----------------\t------------------
|  0000000020  |\t| message length |
| 00016 | R--- |\t|  type | flags  |
|  0000000000  |\t| sequence number|
|  0000000000  |\t|     port ID    |
----------------\t------------------
| 00 00 00 0a  |\t|  extra header  |
----------------\t------------------
----------------\t------------------
|  0000000056  |\t| message length |
| 02566 | R--- |\t|  type | flags  |
|  0000000001  |\t| sequence number|
|  0000000000  |\t|     port ID    |
----------------\t------------------
| 01 00 00 00  |\t|  extra header  |
|\u{1b}[1;31m00006\u{1b}[0m|\u{1b}[1;32m--\u{1b}[0m|\u{1b}[1;34m00001\u{1b}[0m|\t|len |flags| type|
| 74 00 00 00  |\t|      data      |\t t      
|00006|--|00002|\t|len |flags| type|
| 63 00 00 00  |\t|      data      |\t c      
|00012|N-|00004|\t|len |flags| type|
|00008|-B|00001|\t|len |flags| type|
| 00 00 00 16  |\t|      data      |\t        
|00007|--|00007|\t|len |flags| type|
| 01 01 78 00  |\t|      data      |\t   x     
----------------\t------------------
";

    #[test]
    fn the_batch_is_rebuilt_byte_for_byte() {
        let all = messages(DUMP).unwrap();
        assert_eq!(
            all.iter().map(|m| m.ty).collect::<Vec<_>>(),
            vec![2576, 16, 2566]
        );
        let b = batch(DUMP).unwrap();
        assert_eq!(b.len(), 1);
        let p = &b[0].payload;
        assert_eq!(p.len(), 40);
        assert_eq!(&p[..4], &[1, 0, 0, 0]); // nfgenmsg: inet
        let at = crate::netlink::attrs(&p[4..]);
        assert_eq!(at[0], (1, &b"t\0"[..]));
        assert_eq!(at[1], (2, &b"c\0"[..]));
        assert_eq!(at[2].0, 4);
        // nested + byte-order flags come back as type bits
        assert_eq!(&p[24..28], &[8, 0, 0x01, 0x40]);
        assert_eq!(&at[2].1[4..8], &[0, 0, 0, 0x16]);
        assert_eq!(at[3], (7, &[1u8, 1, b'x'][..]));
    }

    #[test]
    fn a_truncated_dump_is_an_error_not_a_short_message() {
        let cut: String = DUMP
            .lines()
            .take(DUMP.lines().count() - 3)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(messages(&cut).unwrap_err().contains("stated"));
        assert!(batch("nothing here\n").is_err());
    }
}

//! Set element changes as rampart's own netlink messages.
//!
//! Adding one address to a 100,000-element blacklist through `nft -f`
//! costs about 2 s: nft 1.0.6 fetches every element of the table before it
//! sends an element command. The change itself is one small transaction of
//! `NFT_MSG_DELSETELEM` / `NFT_MSG_NEWSETELEM` messages, which apply sends
//! itself ([`crate::netlink::nft_batch`], with the recorded ruleset
//! generation in the batch header so that a kernel that changed since is
//! never edited blindly).
//!
//! The encoding follows what `nft` sends for the same command on this
//! kernel (`nft --debug=netlink add element ...`):
//! - a key is its value in network byte order (`ipv4_addr` 4 bytes,
//!   `ipv6_addr` 16), `ifname` 16 bytes NUL-padded (sets of other key
//!   types, e.g. `mark`, go through nft: no kernel test covers them here);
//! - in an interval set a range `a-b` is two elements, `a` and `b+1`
//!   flagged `NFT_SET_ELEM_INTERVAL_END`; a range that ends at the last
//!   address has no end element and its start carries the "open interval"
//!   user data nft prints it by; an interval set's first element ever also
//!   brings the end element at zero that nft puts in every interval set.
//!
//! A range that grows, shrinks, splits or merges with its neighbour is
//! deleted whole and added again as the new ranges, in the same
//! transaction, so a lookup sees the old set or the new one
//! (`tests/incremental.rs::set_element_changes_are_one_transaction_in_place`
//! proves the result is the set a full apply of the new plan gives).
//!
//! Pure: text in, messages out.

use crate::netlink::{nla, NFNL_SUBSYS_NFTABLES, NLM_F_CREATE};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_DATA_VALUE: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;
/// libnftnl's user data: `NFTNL_UDATA_SET_ELEM_FLAGS` = 1 holding
/// `NFTNL_SET_ELEM_F_INTERVAL_OPEN` = 1 (u32, host order).
const UDATA_INTERVAL_OPEN: [u8; 6] = [1, 4, 1, 0, 0, 0];
/// Elements per message: a message stays well under the 64 KiB an
/// attribute length can express.
const PER_MESSAGE: usize = 512;

/// The key type of a set rampart changes in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Ipv4,
    Ipv6,
    Ifname,
}

/// What the encoder needs of a set's declaration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetShape {
    pub key: KeyKind,
    pub interval: bool,
}

impl SetShape {
    /// The shape of a `set` declared by `header` (its statements other than
    /// `elements`, as a plan prints them: `type ipv4_addr`, `flags
    /// interval`, `comment "..."`), or `None` when the set is of a kind
    /// this encoder does not make (dynamic sets, timeouts, concatenations,
    /// other key types): apply then lets nft send the change.
    pub fn from_header<'a>(header: impl IntoIterator<Item = &'a str>) -> Option<SetShape> {
        let mut key = None;
        let mut interval = false;
        for stmt in header {
            let mut w = stmt.split_whitespace();
            match w.next() {
                Some("type") => {
                    key = Some(match (w.next(), w.next()) {
                        (Some("ipv4_addr"), None) => KeyKind::Ipv4,
                        (Some("ipv6_addr"), None) => KeyKind::Ipv6,
                        (Some("ifname"), None) => KeyKind::Ifname,
                        _ => return None,
                    })
                }
                Some("flags") => {
                    let flags: Vec<&str> = w.flat_map(|f| f.split(',')).collect();
                    if flags.iter().any(|f| *f != "interval" && !f.is_empty()) {
                        return None;
                    }
                    interval = flags.contains(&"interval");
                }
                Some("comment") => {}
                _ => return None,
            }
        }
        Some(SetShape {
            key: key?,
            interval,
        })
    }

    fn width(&self) -> usize {
        match self.key {
            KeyKind::Ipv4 => 4,
            KeyKind::Ipv6 => 16,
            KeyKind::Ifname => 16,
        }
    }
}

/// One element as the kernel holds it: a key, and in an interval set
/// whether it ends a range or starts one that runs to the last address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelElem {
    pub key: Vec<u8>,
    pub end: bool,
    pub open: bool,
}

/// An inclusive range of keys (big-endian bytes of equal width).
fn range_of(shape: &SetShape, text: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let t = text.trim();
    let bad = || format!("cannot read set element `{t}`");
    match shape.key {
        KeyKind::Ifname => {
            let name = t
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .unwrap_or(t);
            if name.is_empty()
                || name.len() > 15
                || name.contains(['*', '"', '\\', '\0'])
                || !name.is_ascii()
            {
                return Err(bad());
            }
            let mut k = name.as_bytes().to_vec();
            k.resize(16, 0);
            Ok((k.clone(), k))
        }
        KeyKind::Ipv4 | KeyKind::Ipv6 => {
            let v6 = shape.key == KeyKind::Ipv6;
            let addr = |s: &str| -> Result<u128, String> {
                match s.trim().parse::<IpAddr>().map_err(|_| bad())? {
                    IpAddr::V4(a) if !v6 => Ok(u32::from(a) as u128),
                    IpAddr::V6(a) if v6 => Ok(u128::from(a)),
                    _ => Err(bad()),
                }
            };
            let bits = if v6 { 128 } else { 32 };
            let (lo, hi) = if let Some((a, p)) = t.split_once('/') {
                let p: u32 = p.trim().parse().map_err(|_| bad())?;
                if p > bits {
                    return Err(bad());
                }
                let a = addr(a)?;
                let host = if p == bits {
                    0
                } else if p == 0 {
                    if v6 {
                        u128::MAX
                    } else {
                        u32::MAX as u128
                    }
                } else {
                    (1u128 << (bits - p)) - 1
                };
                if a & host != 0 {
                    return Err(bad());
                }
                (a, a | host)
            } else if let Some((a, b)) = t.split_once('-') {
                (addr(a)?, addr(b)?)
            } else {
                let a = addr(t)?;
                (a, a)
            };
            if lo > hi {
                return Err(bad());
            }
            if (lo != hi) && !shape.interval {
                return Err(format!("`{t}` is a range in a set without intervals"));
            }
            let bytes = |v: u128| -> Vec<u8> {
                if v6 {
                    Ipv6Addr::from(v).octets().to_vec()
                } else {
                    Ipv4Addr::from(v as u32).octets().to_vec()
                }
            };
            Ok((bytes(lo), bytes(hi)))
        }
    }
}

/// The big-endian successor of `k`, or `None` past the last key.
fn succ(k: &[u8]) -> Option<Vec<u8>> {
    let mut out = k.to_vec();
    for b in out.iter_mut().rev() {
        if *b == 0xff {
            *b = 0;
        } else {
            *b += 1;
            return Some(out);
        }
    }
    None
}

/// The kernel elements of one set element as a plan prints it.
pub fn kernel_elems(shape: &SetShape, text: &str) -> Result<Vec<KernelElem>, String> {
    let (lo, hi) = range_of(shape, text)?;
    if !shape.interval {
        return Ok(vec![KernelElem {
            key: lo,
            end: false,
            open: false,
        }]);
    }
    Ok(match succ(&hi) {
        Some(e) => vec![
            KernelElem {
                key: lo,
                end: false,
                open: false,
            },
            KernelElem {
                key: e,
                end: true,
                open: false,
            },
        ],
        None => vec![KernelElem {
            key: lo,
            end: false,
            open: true,
        }],
    })
}

/// The element changes that turn a set holding `old` into one holding
/// `new`: `old` the elements deleted and `new` those added (texts as a
/// plan prints them). Returns (deleted, added) kernel elements. A changed
/// range is deleted whole and added whole (both boundaries), as nft does:
/// moving one boundary inside a transaction can pass through a set the
/// kernel refuses as overlapping (an end inside a range).
pub fn changes(
    shape: &SetShape,
    old: &[&str],
    new: &[&str],
    set_was_empty: bool,
) -> Result<(Vec<KernelElem>, Vec<KernelElem>), String> {
    let mut del = Vec::new();
    let mut add = Vec::new();
    for t in old {
        del.extend(kernel_elems(shape, t)?);
    }
    for t in new {
        add.extend(kernel_elems(shape, t)?);
    }
    if shape.interval && set_was_empty && !add.is_empty() {
        // nft's end element at zero, which every interval set it filled
        // holds (an `add element` without EXCL keeps one that exists).
        let zero = KernelElem {
            key: vec![0; shape.width()],
            end: true,
            open: false,
        };
        if !add.contains(&zero) {
            add.insert(0, zero);
        }
    }
    Ok((del, add))
}

/// Netlink messages (type, flags, payload after the `nlmsghdr`) deleting
/// then adding elements of set `set` (its kernel name) in table
/// `family name`. Batches of [`PER_MESSAGE`] elements.
pub fn messages(
    family: u8,
    table: &str,
    set: &str,
    deleted: &[KernelElem],
    added: &[KernelElem],
) -> Vec<(u16, u16, Vec<u8>)> {
    let mut out = Vec::new();
    for (ty, flags, elems) in [
        (NFT_MSG_DELSETELEM, 0u16, deleted),
        (NFT_MSG_NEWSETELEM, NLM_F_CREATE, added),
    ] {
        for chunk in elems.chunks(PER_MESSAGE) {
            out.push((
                (NFNL_SUBSYS_NFTABLES << 8) | ty,
                flags,
                payload(family, table, set, chunk),
            ));
        }
    }
    out
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn payload(family: u8, table: &str, set: &str, elems: &[KernelElem]) -> Vec<u8> {
    let mut p = vec![family, 0, 0, 0];
    p.extend(nla(NFTA_SET_ELEM_LIST_TABLE, &cstr(table)));
    p.extend(nla(NFTA_SET_ELEM_LIST_SET, &cstr(set)));
    let mut list = Vec::new();
    for e in elems {
        let mut el = nla(
            NFTA_SET_ELEM_KEY | NLA_F_NESTED,
            &nla(NFTA_DATA_VALUE, &e.key),
        );
        if e.end {
            el.extend(nla(
                NFTA_SET_ELEM_FLAGS,
                &NFT_SET_ELEM_INTERVAL_END.to_be_bytes(),
            ));
        }
        if e.open {
            el.extend(nla(NFTA_SET_ELEM_USERDATA, &UDATA_INTERVAL_OPEN));
        }
        list.extend(nla(NFTA_LIST_ELEM | NLA_F_NESTED, &el));
    }
    p.extend(nla(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, &list));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4i() -> SetShape {
        SetShape {
            key: KeyKind::Ipv4,
            interval: true,
        }
    }

    #[test]
    fn shapes_from_plan_headers() {
        assert_eq!(
            SetShape::from_header(["type ipv4_addr", "flags interval", "comment \"x, y\""]),
            Some(v4i())
        );
        assert_eq!(
            SetShape::from_header(["type ifname", "comment \"the node's bridges\""]),
            Some(SetShape {
                key: KeyKind::Ifname,
                interval: false
            })
        );
        assert_eq!(
            SetShape::from_header(["type ipv4_addr", "size 65535", "flags dynamic,timeout"]),
            None
        );
        assert_eq!(
            SetShape::from_header(["type ipv4_addr . inet_service"]),
            None
        );
        assert_eq!(SetShape::from_header(["comment \"no type\""]), None);
        assert_eq!(SetShape::from_header(["type mark"]), None);
    }

    #[test]
    fn ranges_become_start_and_end_past_it() {
        let e = kernel_elems(&v4i(), "10.0.2.0-10.0.2.9").unwrap();
        assert_eq!(e[0].key, vec![10, 0, 2, 0]);
        assert_eq!(e[1].key, vec![10, 0, 2, 10]);
        assert!(!e[0].end && e[1].end);
        let p = kernel_elems(&v4i(), "10.0.1.0/24").unwrap();
        assert_eq!(p[1].key, vec![10, 0, 2, 0]);
        let one = kernel_elems(&v4i(), "10.0.1.5").unwrap();
        assert_eq!(one[1].key, vec![10, 0, 1, 6]);
        // The last range of the address space has no end element.
        let top = kernel_elems(&v4i(), "255.255.255.0/24").unwrap();
        assert_eq!(top.len(), 1);
        assert!(top[0].open);
        let v6 = SetShape {
            key: KeyKind::Ipv6,
            interval: true,
        };
        let e6 = kernel_elems(&v6, "2001:db8::/64").unwrap();
        assert_eq!(e6[1].key[..8], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1]);
    }

    #[test]
    fn bad_elements_are_refused() {
        for t in [
            "10.0.0.1/33",
            "10.0.0.1/24",
            "10.0.0.9-10.0.0.1",
            "::1",
            "x",
        ] {
            assert!(kernel_elems(&v4i(), t).is_err(), "{t}");
        }
        let plain = SetShape {
            key: KeyKind::Ipv4,
            interval: false,
        };
        assert!(kernel_elems(&plain, "10.0.0.0/24").is_err());
        let ifn = SetShape {
            key: KeyKind::Ifname,
            interval: false,
        };
        assert!(kernel_elems(&ifn, "\"eth*\"").is_err());
        assert_eq!(
            kernel_elems(&ifn, "\"vmbr0\"").unwrap()[0].key[..6],
            *b"vmbr0\0"
        );
    }

    #[test]
    fn a_changed_range_goes_whole_and_comes_back_whole() {
        // 10.0.0.0-10.0.0.5 grows by 10.0.0.6.
        let (del, add) = changes(
            &v4i(),
            &["10.0.0.0-10.0.0.5"],
            &["10.0.0.0-10.0.0.6"],
            false,
        )
        .unwrap();
        assert_eq!(del.len(), 2);
        assert_eq!(del[1].key, vec![10, 0, 0, 6]);
        assert_eq!(add.len(), 2);
        assert_eq!(add[1].key, vec![10, 0, 0, 7]);
        // A split: one range becomes two.
        let (del, add) = changes(
            &v4i(),
            &["10.0.0.0/24"],
            &["10.0.0.0-10.0.0.9", "10.0.0.11-10.0.0.255"],
            false,
        )
        .unwrap();
        assert_eq!(del.len(), 2);
        assert_eq!(add.len(), 4);
        // The first elements of an empty interval set bring the zero end.
        let (_, add) = changes(&v4i(), &[], &["10.0.0.1"], true).unwrap();
        assert_eq!(add[0].key, vec![0, 0, 0, 0]);
        assert!(add[0].end);
    }

    #[test]
    fn messages_carry_table_set_and_elements() {
        let (_, add) = changes(&v4i(), &[], &["10.0.1.5"], false).unwrap();
        let m = messages(1, "rampart", "bl.abc", &[], &add);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].0, (10 << 8) | 12);
        assert_eq!(m[0].1, NLM_F_CREATE);
        let p = &m[0].2;
        assert_eq!(p[0], 1);
        let attrs = crate::netlink::attrs(&p[4..]);
        assert_eq!(attrs[0], (1, &b"rampart\0"[..]));
        assert_eq!(attrs[1], (2, &b"bl.abc\0"[..]));
        assert_eq!(attrs[2].0 & 0x7fff, 3);
        let many: Vec<KernelElem> = (0..1200u32)
            .map(|i| KernelElem {
                key: i.to_be_bytes().to_vec(),
                end: false,
                open: false,
            })
            .collect();
        assert_eq!(messages(1, "t", "s", &many, &[]).len(), 3);
    }
}

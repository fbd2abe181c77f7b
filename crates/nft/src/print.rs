//! The model as `nft -f` text: one atomic transaction that (re)creates
//! rampart's own tables and touches nothing else.

use crate::model::*;
use rampart_types::{Family, IpRange, PortRange};
use std::fmt::Write;
use std::net::IpAddr;

/// The whole script. Each owned table is declared, deleted and recreated in
/// the same file, so the kernel swaps it atomically whether or not it existed.
pub fn script(rs: &Ruleset, header: &str) -> String {
    // Room for the rules (~100 bytes each) and the sets' elements (~20).
    let size: usize = rs
        .tables
        .iter()
        .map(|t| {
            t.chains.iter().map(|c| c.rules.len() * 100).sum::<usize>()
                + t.sets.iter().map(|s| s.elements.len() * 20).sum::<usize>()
                + t.maps.iter().map(|m| m.elements.len() * 40).sum::<usize>()
        })
        .sum();
    let mut out = String::with_capacity(size + 4096);
    out.push_str("#!/usr/sbin/nft -f\n");
    for l in header.lines() {
        // The header names the node and site: one comment line each, whatever they hold.
        let _ = writeln!(out, "# {}", rampart_types::escape::printable(l));
    }
    for t in &rs.tables {
        out.push('\n');
        let _ = writeln!(out, "table {} {}", t.family.name(), t.name);
        let _ = writeln!(out, "delete table {} {}", t.family.name(), t.name);
        table(&mut out, t);
    }
    for (f, name) in &rs.absent {
        out.push('\n');
        let _ = writeln!(out, "table {} {}", f.name(), name);
        let _ = writeln!(out, "delete table {} {}", f.name(), name);
    }
    out
}

fn table(out: &mut String, t: &Table) {
    let _ = writeln!(out, "table {} {} {{", t.family.name(), t.name);
    for h in &t.helpers {
        let _ = writeln!(out, "\tct helper {} {{", h.name);
        let _ = writeln!(out, "\t\ttype \"{}\" protocol {}", h.kind, h.proto);
        if t.family == TableFamily::Inet {
            let _ = writeln!(out, "\t\tl3proto inet");
        }
        let _ = writeln!(out, "\t}}");
    }
    for s in &t.sets {
        let _ = writeln!(out, "\tset {} {{", s.name);
        let _ = writeln!(out, "\t\ttype {}", s.key.name());
        if let Some(d) = &s.dynamic {
            let _ = writeln!(out, "\t\tsize {}", d.size);
            let _ = writeln!(out, "\t\tflags dynamic,timeout");
            let _ = writeln!(out, "\t\ttimeout {}s", d.timeout_s);
        } else if s.interval {
            let _ = writeln!(out, "\t\tflags interval");
        }
        let _ = writeln!(out, "\t\tcomment {}", quote(&s.comment));
        if !s.elements.is_empty() {
            out.push_str("\t\telements = {\n");
            out.push_str(s.elements.rendered(|keys| {
                let mut t = String::with_capacity(keys.len() * 20);
                for e in keys {
                    t.push_str("\t\t\t");
                    push_key(&mut t, e);
                    t.push_str(",\n");
                }
                t
            }));
            out.push_str("\t\t}\n");
        }
        let _ = writeln!(out, "\t}}");
    }
    for m in &t.maps {
        let _ = writeln!(out, "\tmap {} {{", m.name);
        let _ = writeln!(
            out,
            "\t\ttype {} : {}",
            m.key.name(),
            if m.value_is_verdict {
                "verdict"
            } else {
                "mark"
            }
        );
        if m.interval {
            let _ = writeln!(out, "\t\tflags interval");
        }
        let _ = writeln!(out, "\t\tcomment {}", quote(&m.comment));
        if !m.elements.is_empty() {
            let _ = writeln!(out, "\t\telements = {{");
            for (k, v) in &m.elements {
                let v = match v {
                    MapValue::Mark(x) => format!("{x:#010x}"),
                    MapValue::Verdict(v) => verdict(v),
                };
                let _ = writeln!(out, "\t\t\t{} : {},", key(k), v);
            }
            let _ = writeln!(out, "\t\t}}");
        }
        let _ = writeln!(out, "\t}}");
    }
    for c in &t.chains {
        let _ = writeln!(out, "\tchain {} {{", c.name);
        if let Some(b) = &c.base {
            let _ = writeln!(
                out,
                "\t\ttype {} hook {} priority {}; policy {};",
                if b.nat { "nat" } else { "filter" },
                b.hook.name(),
                b.priority,
                if b.policy_accept { "accept" } else { "drop" }
            );
        }
        if let Some(cm) = &c.comment {
            let _ = writeln!(out, "\t\tcomment {}", quote(cm));
        }
        for r in &c.rules {
            out.push_str("\t\t");
            push_rule(out, r, true);
            out.push('\n');
        }
        let _ = writeln!(out, "\t}}");
    }
    let _ = writeln!(out, "}}");
}

/// One rule as nft text (without indentation).
pub fn rule(r: &Rule) -> String {
    let mut s = String::new();
    push_rule(&mut s, r, false);
    s
}

/// Anonymous sets longer than this are written one element per line in
/// the script (a merged run of a long policy stays readable).
const INLINE_MAX: usize = 8;

/// `{ a, b }`, or with `long` one element a line (inside a chain's rule).
fn push_anon<T>(out: &mut String, items: &[T], long: bool, f: impl Fn(&mut String, &T)) {
    if long && items.len() > INLINE_MAX {
        out.push_str("{\n");
        for it in items {
            out.push_str("\t\t\t");
            f(out, it);
            out.push_str(",\n");
        }
        out.push_str("\t\t}");
        return;
    }
    out.push_str("{ ");
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        f(out, it);
    }
    out.push_str(" }");
}

fn push_port(out: &mut String, p: &PortRange) {
    push_u32(out, p.lo as u32);
    if p.hi != p.lo {
        out.push('-');
        push_u32(out, p.hi as u32);
    }
}

fn push_field(out: &mut String, f: &Field) {
    match f {
        Field::Addr(family, d) => {
            out.push_str(fam(*family));
            out.push(' ');
            out.push_str(dir(*d));
        }
        Field::Port(proto, d) => {
            out.push_str(match proto {
                6 => "tcp",
                17 => "udp",
                _ => "th",
            });
            out.push_str(match d {
                Dir::Src => " sport",
                Dir::Dst => " dport",
            });
        }
    }
}

fn push_elem(out: &mut String, e: &Elem) {
    match e {
        Elem::Addr(r) => push_range(out, r),
        Elem::Port(p) => push_port(out, p),
    }
}

/// What a match costs the kernel per packet, for the order of a rule's
/// matches: 0 a load and a compare, 1 a set lookup, 2 a route lookup.
/// A rule's matches are a conjunction and the kernel stops at the first
/// that fails, so the compares go first: a packet that fails one never
/// pays for the lookups (a merged `ip saddr { 2,500 addresses } tcp dport
/// 22` is `tcp dport 22 ip saddr { … }`, and a connection to port 8080
/// skips the set). The order of matches of one class is kept (so a
/// `th dport` stays after its `meta l4proto`); verdicts do not change,
/// only the work spent on packets the rule does not match.
fn match_cost(m: &Match) -> u8 {
    match m {
        Match::NfProto(_)
        | Match::L4Proto { .. }
        | Match::Ifname { .. }
        | Match::Ct(_)
        | Match::Mark { .. }
        | Match::TcpFlags { .. }
        | Match::EtherSaddrNot(_) => 0,
        Match::Addr {
            target: AddrTarget::Literal(rs),
            ..
        } if rs.len() == 1 => 0,
        Match::Port { ports, .. } if ports.len() == 1 => 0,
        Match::Icmp { types, .. } if types.len() == 1 => 0,
        Match::Addr { .. }
        | Match::Port { .. }
        | Match::Icmp { .. }
        | Match::IfnameSet { .. }
        | Match::PktTypeBroadMulti
        | Match::Concat { .. } => 1,
        Match::FibSaddrType(_) => 2,
    }
}

fn push_rule(out: &mut String, r: &Rule, long: bool) {
    for cost in 0..=2 {
        for m in r.matches.iter().filter(|m| match_cost(m) == cost) {
            push_matcher(out, m, long);
            out.push(' ');
        }
    }
    for s in &r.stmts {
        match s {
            Stmt::Limit(l) => {
                out.push_str("limit rate ");
                push_limit(out, l);
            }
            Stmt::Log { prefix, group } => {
                out.push_str("log prefix ");
                push_quoted(out, prefix);
                out.push_str(" group ");
                push_u32(out, *group as u32);
            }
            s => out.push_str(&stmt(s)),
        }
        out.push(' ');
    }
    if let Some(v) = &r.verdict {
        match v {
            Verdict::Accept => out.push_str("accept"),
            Verdict::Drop => out.push_str("drop"),
            Verdict::Return => out.push_str("return"),
            Verdict::Jump(c) => {
                out.push_str("jump ");
                out.push_str(c);
            }
            v => out.push_str(&verdict(v)),
        }
        out.push(' ');
    }
    out.push_str("comment ");
    push_quoted(out, &r.comment);
}

fn quote(s: &str) -> String {
    let mut t = String::with_capacity(s.len() + 2);
    push_quoted(&mut t, s);
    t
}

/// An interface name as an nft string: the same sanitizing, cut to
/// IFNAMSIZ - 1 (names were validated; this only keeps the script loadable).
fn quote_ifname(s: &str) -> String {
    format!("\"{}\"", rampart_types::escape::nft_str(s, 15))
}

fn push_quoted(out: &mut String, s: &str) {
    // nft strings have no escapes: the text is sanitized by construction
    // (no `"`, `\`, control or non-ASCII characters) and cut to nft's
    // 128-byte comment limit (rampart_types::escape::nft_str).
    out.push('"');
    out.push_str(&rampart_types::escape::nft_str(
        s,
        rampart_types::escape::NFT_COMMENT_MAX,
    ));
    out.push('"');
}

fn fam(f: Family) -> &'static str {
    match f {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

fn dir(d: Dir) -> &'static str {
    match d {
        Dir::Src => "saddr",
        Dir::Dst => "daddr",
    }
}

fn ifdir(d: Dir) -> &'static str {
    match d {
        Dir::Src => "iifname",
        Dir::Dst => "oifname",
    }
}

pub fn range(r: &IpRange) -> String {
    let mut s = String::new();
    push_range(&mut s, r);
    s
}

/// `10.0.0.1`, `10.0.0.0/24`, `10.0.0.1-10.0.0.10`: as [`IpRange`]'s
/// `Display`, with IPv4 written by hand (sets of thousands of addresses are
/// printed for every node).
pub fn push_range(out: &mut String, r: &IpRange) {
    if r.start == r.end {
        push_addr(out, &r.start);
    } else if let Some(n) = r.as_net() {
        push_addr(out, &n.addr());
        out.push('/');
        push_u32(out, n.prefix_len() as u32);
    } else {
        push_addr(out, &r.start);
        out.push('-');
        push_addr(out, &r.end);
    }
}

fn push_addr(out: &mut String, a: &IpAddr) {
    match a {
        IpAddr::V4(v) => {
            for (i, o) in v.octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u32(out, *o as u32);
            }
        }
        IpAddr::V6(v) => push_v6(out, v),
    }
}

/// An IPv6 address as `Ipv6Addr`'s `Display` writes it (RFC 5952: the
/// first longest run of two or more zero groups becomes `::`; IPv4-mapped
/// addresses end in dotted quad), without going through `fmt`.
fn push_v6(out: &mut String, v: &std::net::Ipv6Addr) {
    if let Some(v4) = v.to_ipv4_mapped() {
        out.push_str("::ffff:");
        push_addr(out, &IpAddr::V4(v4));
        return;
    }
    let seg = v.segments();
    let (mut best, mut best_len, mut cur, mut cur_len) = (0, 0, 0, 0);
    for (i, s) in seg.iter().enumerate() {
        if *s == 0 {
            if cur_len == 0 {
                cur = i;
            }
            cur_len += 1;
            if cur_len > best_len {
                best = cur;
                best_len = cur_len;
            }
        } else {
            cur_len = 0;
        }
    }
    let hex = |out: &mut String, part: &[u16]| {
        for (i, s) in part.iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            let mut started = false;
            for shift in [12, 8, 4, 0] {
                let d = (s >> shift) & 0xf;
                if d != 0 || started || shift == 0 {
                    started = true;
                    out.push(char::from_digit(d as u32, 16).unwrap_or('0'));
                }
            }
        }
    };
    if best_len > 1 {
        hex(out, &seg[..best]);
        out.push_str("::");
        hex(out, &seg[best + best_len..]);
    } else {
        hex(out, &seg);
    }
}

fn push_u32(out: &mut String, mut x: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (x % 10) as u8;
        x /= 10;
        if x == 0 {
            break;
        }
    }
    for b in &buf[i..] {
        out.push(*b as char);
    }
}

fn key(k: &Key) -> String {
    let mut s = String::new();
    push_key(&mut s, k);
    s
}

fn push_key(out: &mut String, k: &Key) {
    match k {
        Key::Addr(r) => push_range(out, r),
        Key::Ifname(n) => out.push_str(&quote_ifname(n)),
        Key::Mark(m) => {
            let _ = write!(out, "{m:#010x}");
        }
    }
}

fn anon<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    if items.len() == 1 {
        f(&items[0])
    } else {
        format!(
            "{{ {} }}",
            items.iter().map(f).collect::<Vec<_>>().join(", ")
        )
    }
}

pub fn proto_name(n: u8) -> Option<&'static str> {
    Some(match n {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        58 => "ipv6-icmp",
        _ => return None,
    })
}

pub fn icmp_name(v6: bool, t: u8) -> Option<&'static str> {
    let v4: &[(u8, &str)] = &[
        (0, "echo-reply"),
        (3, "destination-unreachable"),
        (4, "source-quench"),
        (5, "redirect"),
        (8, "echo-request"),
        (9, "router-advertisement"),
        (10, "router-solicitation"),
        (11, "time-exceeded"),
        (12, "parameter-problem"),
        (13, "timestamp-request"),
        (14, "timestamp-reply"),
        (15, "info-request"),
        (16, "info-reply"),
        (17, "address-mask-request"),
        (18, "address-mask-reply"),
    ];
    let v6t: &[(u8, &str)] = &[
        (1, "destination-unreachable"),
        (2, "packet-too-big"),
        (3, "time-exceeded"),
        (4, "parameter-problem"),
        (128, "echo-request"),
        (129, "echo-reply"),
        (130, "mld-listener-query"),
        (131, "mld-listener-report"),
        (132, "mld-listener-done"),
        (133, "nd-router-solicit"),
        (134, "nd-router-advert"),
        (135, "nd-neighbor-solicit"),
        (136, "nd-neighbor-advert"),
        (137, "nd-redirect"),
    ];
    let table = if v6 { v6t } else { v4 };
    table.iter().find(|(n, _)| *n == t).map(|(_, s)| *s)
}

fn port(p: &PortRange) -> String {
    p.to_string()
}

fn push_matcher(out: &mut String, m: &Match, long: bool) {
    if let Match::Concat { fields, elements } = m {
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push_str(" . ");
            }
            push_field(out, f);
        }
        out.push(' ');
        push_anon(out, elements, long, |out, t| {
            for (i, e) in t.iter().enumerate() {
                if i > 0 {
                    out.push_str(" . ");
                }
                push_elem(out, e);
            }
        });
        return;
    }
    if let Match::Addr {
        family,
        dir: d,
        neg,
        target,
    } = m
    {
        out.push_str(fam(*family));
        out.push(' ');
        out.push_str(dir(*d));
        out.push(' ');
        if *neg {
            out.push_str("!= ");
        }
        match target {
            AddrTarget::Set(s) => {
                out.push('@');
                out.push_str(s);
            }
            AddrTarget::Literal(rs) if rs.len() == 1 => push_range(out, &rs[0]),
            AddrTarget::Literal(rs) => push_anon(out, rs, long, push_range),
        }
        return;
    }
    match m {
        Match::Port {
            proto,
            dir: d,
            ports,
        } => {
            out.push_str(match proto {
                6 => "tcp",
                17 => "udp",
                _ => "th",
            });
            out.push_str(match d {
                Dir::Src => " sport ",
                Dir::Dst => " dport ",
            });
            if ports.len() == 1 {
                push_port(out, &ports[0]);
            } else {
                push_anon(out, ports, long, push_port);
            }
        }
        Match::L4Proto { number, .. } if proto_name(*number).is_some() => {
            out.push_str("meta l4proto ");
            out.push_str(proto_name(*number).unwrap_or_default());
        }
        Match::NfProto(Family::V4) => out.push_str("meta nfproto ipv4"),
        Match::NfProto(Family::V6) => out.push_str("meta nfproto ipv6"),
        Match::Icmp { v6, types, code } => {
            let p = if *v6 { "icmpv6" } else { "icmp" };
            out.push_str(p);
            out.push_str(" type ");
            let one = |out: &mut String, t: &u8| match icmp_name(*v6, *t) {
                Some(n) => out.push_str(n),
                None => push_u32(out, *t as u32),
            };
            if types.len() == 1 {
                one(out, &types[0]);
            } else {
                out.push_str("{ ");
                for (i, t) in types.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    one(out, t);
                }
                out.push_str(" }");
            }
            if let Some(c) = code {
                out.push(' ');
                out.push_str(p);
                out.push_str(" code ");
                push_u32(out, *c as u32);
            }
        }
        Match::Ct(states) => {
            out.push_str("ct state ");
            for (i, st) in states.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(st.name());
            }
        }
        m => out.push_str(&matcher(m)),
    }
}

fn matcher(m: &Match) -> String {
    match m {
        Match::Concat { .. } => {
            let mut s = String::new();
            push_matcher(&mut s, m, false);
            s
        }
        Match::NfProto(f) => format!("meta nfproto {f}"),
        Match::L4Proto { number, .. } => match proto_name(*number) {
            Some(n) => format!("meta l4proto {n}"),
            None => format!("meta l4proto {number}"),
        },
        Match::Ifname { dir: d, name } => format!("{} {}", ifdir(*d), quote_ifname(name)),
        Match::IfnameSet { dir: d, set } => format!("{} @{}", ifdir(*d), set),
        Match::Addr {
            family,
            dir: d,
            neg,
            target,
        } => {
            let op = if *neg { "!= " } else { "" };
            let t = match target {
                AddrTarget::Set(s) => format!("@{s}"),
                AddrTarget::Literal(rs) => anon(rs, range),
            };
            format!("{} {} {}{}", fam(*family), dir(*d), op, t)
        }
        Match::Port {
            proto,
            dir: d,
            ports,
        } => {
            let p = match proto {
                6 => "tcp",
                17 => "udp",
                _ => "th",
            };
            let d = match d {
                Dir::Src => "sport",
                Dir::Dst => "dport",
            };
            format!("{p} {d} {}", anon(ports, port))
        }
        Match::Icmp { v6, types, code } => {
            let p = if *v6 { "icmpv6" } else { "icmp" };
            let mut s = format!(
                "{p} type {}",
                anon(types, |t| icmp_name(*v6, *t)
                    .map(str::to_string)
                    .unwrap_or_else(|| t.to_string()))
            );
            if let Some(c) = code {
                let _ = write!(s, " {p} code {c}");
            }
            s
        }
        Match::Ct(states) => {
            format!(
                "ct state {}",
                states
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
        Match::EtherSaddrNot(mac) => format!("ether saddr != {}", mac_str(mac)),
        Match::FibSaddrType(ts) => format!(
            "fib saddr type {}",
            anon(ts, |t| match t {
                FibType::Broadcast => "broadcast".to_string(),
                FibType::Multicast => "multicast".to_string(),
            })
        ),
        Match::TcpFlags { mask, value } => {
            format!(
                "tcp flags & ({}) == {}",
                flags(*mask),
                if *value == 0 {
                    "0x0".to_string()
                } else {
                    flags(*value)
                }
            )
        }
        Match::Mark { mask, value } => format!("meta mark & {mask:#010x} == {value:#010x}"),
        Match::PktTypeBroadMulti => "meta pkttype { broadcast, multicast }".to_string(),
    }
}

pub fn mac_str(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn flags(v: u8) -> String {
    tcpflag::NAMES
        .iter()
        .filter(|(b, _)| v & b != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join("|")
}

fn limit(l: &Limit) -> String {
    let mut s = String::new();
    push_limit(&mut s, l);
    s
}

fn push_limit(out: &mut String, l: &Limit) {
    push_u32(out, l.rate);
    out.push('/');
    out.push_str(&l.unit);
    out.push_str(" burst ");
    push_u32(out, l.burst);
    out.push_str(" packets");
}

fn stmt(s: &Stmt) -> String {
    match s {
        Stmt::Limit(l) => format!("limit rate {}", limit(l)),
        Stmt::MeterOver {
            set,
            family,
            limit: l,
        } => {
            format!(
                "add @{set} {{ {} saddr limit rate over {} }}",
                fam(*family),
                limit(l)
            )
        }
        Stmt::Log { prefix, group } => format!("log prefix {} group {group}", quote(prefix)),
        Stmt::MarkSet(m) => format!("meta mark set {m:#010x}"),
        Stmt::MarkOr(m) => format!("meta mark set meta mark or {m:#010x}"),
        Stmt::MarkFromIifnameMap(map) => format!("meta mark set iifname map @{map}"),
        Stmt::CtHelperSet(h) => format!("ct helper set {}", quote(h)),
        Stmt::Masquerade => "masquerade".to_string(),
    }
}

pub fn verdict(v: &Verdict) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Return => "return".into(),
        Verdict::Jump(c) => format!("jump {c}"),
        Verdict::Goto(c) => format!("goto {c}"),
        Verdict::Reject(RejectWith::TcpReset) => "reject with tcp reset".into(),
        Verdict::Reject(RejectWith::PortUnreachable) => {
            "reject with icmpx type port-unreachable".into()
        }
        Verdict::Reject(RejectWith::HostUnreachable) => {
            "reject with icmpx type host-unreachable".into()
        }
        Verdict::Queue { lo, hi } if lo == hi => format!("queue num {lo} bypass"),
        Verdict::Queue { lo, hi } => format!("queue num {lo}-{hi} fanout,bypass"),
        Verdict::Vmap { key, map } => {
            let k = match key {
                VmapKey::MarkMasked(m) => format!("meta mark & {m:#010x}"),
                VmapKey::Ifname(d) => ifdir(*d).to_string(),
                VmapKey::Addr(f, d) => format!("{} {}", fam(*f), dir(*d)),
            };
            format!("{k} vmap @{map}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn check(a: Ipv6Addr) {
        let mut s = String::new();
        push_v6(&mut s, &a);
        assert_eq!(s, a.to_string());
    }

    #[test]
    fn v6_text_is_std_text() {
        for a in [
            "::",
            "::1",
            "1::",
            "2001:db8::1",
            "2001:db8:0:0:1:0:0:1",
            "2001:0:0:1:0:0:0:1",
            "fe80::1:2",
            "::ffff:10.0.0.1",
            "::10.0.0.1",
            "1:0:1:0:1:0:1:0",
            "0:1::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db8:ab00::",
            "a:b:c:d:e:f:0:1",
        ] {
            check(a.parse().unwrap());
        }
    }

    proptest::proptest! {
        #[test]
        fn v6_text_is_std_text_for_any(seg in proptest::array::uniform8(proptest::prop_oneof![
            proptest::strategy::Just(0u16), proptest::strategy::Just(0xffff), 1u16..=0x10, proptest::num::u16::ANY
        ])) {
            check(Ipv6Addr::from(seg));
        }
    }
}

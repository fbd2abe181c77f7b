//! The model as `nft -f` text: one atomic transaction that (re)creates
//! rampart's own tables and touches nothing else.

use crate::model::*;
use rampart_types::{Family, IpRange, PortRange};
use std::fmt::Write;

/// The whole script. Each owned table is declared, deleted and recreated in
/// the same file, so the kernel swaps it atomically whether or not it existed.
pub fn script(rs: &Ruleset, header: &str) -> String {
    let mut out = String::new();
    out.push_str("#!/usr/sbin/nft -f\n");
    for l in header.lines() {
        let _ = writeln!(out, "# {l}");
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
            let _ = writeln!(out, "\t\telements = {{");
            for e in &s.elements {
                let _ = writeln!(out, "\t\t\t{},", key(e));
            }
            let _ = writeln!(out, "\t\t}}");
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
            let _ = writeln!(out, "\t\t{}", rule(r));
        }
        let _ = writeln!(out, "\t}}");
    }
    let _ = writeln!(out, "}}");
}

/// One rule as nft text (without indentation).
pub fn rule(r: &Rule) -> String {
    let mut parts: Vec<String> = Vec::new();
    for m in &r.matches {
        parts.push(matcher(m));
    }
    for s in &r.stmts {
        parts.push(stmt(s));
    }
    if let Some(v) = &r.verdict {
        parts.push(verdict(v));
    }
    parts.push(format!("comment {}", quote(&r.comment)));
    parts.join(" ")
}

fn quote(s: &str) -> String {
    // nft comments are at most 128 bytes and cannot hold a double quote.
    let mut t: String = s.replace('"', "'");
    if t.len() > 127 {
        let mut cut = 124;
        while !t.is_char_boundary(cut) {
            cut -= 1;
        }
        t.truncate(cut);
        t.push_str("...");
    }
    format!("\"{t}\"")
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
    r.to_string()
}

fn key(k: &Key) -> String {
    match k {
        Key::Addr(r) => range(r),
        Key::Ifname(n) => format!("\"{n}\""),
        Key::Mark(m) => format!("{m:#010x}"),
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

fn matcher(m: &Match) -> String {
    match m {
        Match::NfProto(f) => format!("meta nfproto {f}"),
        Match::L4Proto { number, .. } => match proto_name(*number) {
            Some(n) => format!("meta l4proto {n}"),
            None => format!("meta l4proto {number}"),
        },
        Match::Ifname { dir: d, name } => format!("{} \"{}\"", ifdir(*d), name),
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
    format!("{}/{} burst {} packets", l.rate, l.unit, l.burst)
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
        Stmt::CtHelperSet(h) => format!("ct helper set \"{h}\""),
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

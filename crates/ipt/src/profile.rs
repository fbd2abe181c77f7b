//! The rules of rampart's profiles ([`FirewallAdditions`] from
//! `rampart-profile`) added to a compiled iptables plan, in the same places
//! as the nftables backend puts them (see `rampart_nft::profile`):
//! `RAMPART-EGRESS` jumped from `RAMPART-INPUT` before `RAMPART-HOST-IN`,
//! `RAMPART-LOCKDOWN` from `RAMPART-HOST-IN` after its blacklist and
//! packet sanity rules; the refusal of everything else before the
//! `HOST-IN` policy; egress forwarding before the `HOST-FWD` policy; and a
//! `nat` table section with `RAMPART-POSTROUTING` masquerading on a gateway.

use crate::{Hook, IptPlan, Mode, PREFIX};
use rampart_types::additions::{FirewallAdditions, Service};
use rampart_types::{Family, IpRange, PortRange};

/// Add `a` to both families' texts of `plan`.
pub fn add_profile(plan: &mut IptPlan, a: &FirewallAdditions) {
    if a.is_empty() {
        return;
    }
    plan.v4 = add_to(&plan.v4, Family::V4, a, plan.mode);
    plan.v6 = add_to(&plan.v6, Family::V6, a, plan.mode);
    if !a.masquerade.is_empty() && plan.mode == Mode::Noflush {
        plan.hooks.push(Hook {
            table: "nat",
            chain: "POSTROUTING",
            target: format!("{PREFIX}POSTROUTING"),
        });
    }
    if !a.forward.is_empty() || !a.masquerade.is_empty() {
        // Forwarding is the profile's own need; the sysctls come with the
        // node's profile (rampart-profile), not from here.
    }
}

fn comment(o: &str) -> String {
    format!(
        "-m comment --comment {}",
        rampart_types::escape::ipt_quoted(o, 250)
    )
}

fn of(rs: &[IpRange], f: Family) -> Vec<IpRange> {
    let mut v: Vec<IpRange> = rs.iter().filter(|r| r.family() == f).copied().collect();
    v.sort();
    v.dedup();
    v
}

fn addr(r: &IpRange, src: bool) -> String {
    match r.as_net() {
        Some(n) => format!("{} {n}", if src { "-s" } else { "-d" }),
        None => format!(
            "-m iprange --{}-range {}-{}",
            if src { "src" } else { "dst" },
            r.start,
            r.end
        ),
    }
}

fn ports(ps: &[PortRange]) -> Vec<String> {
    // multiport takes 15 ports, a range counting twice.
    let mut out = vec![];
    let mut cur: Vec<String> = vec![];
    let mut n = 0;
    for p in ps {
        let w = if p.lo == p.hi { 1 } else { 2 };
        if n + w > 15 {
            out.push(cur.join(","));
            cur.clear();
            n = 0;
        }
        cur.push(if p.lo == p.hi {
            p.lo.to_string()
        } else {
            format!("{}:{}", p.lo, p.hi)
        });
        n += w;
    }
    if !cur.is_empty() {
        out.push(cur.join(","));
    }
    out
}

/// The match texts of a service in family `f`.
fn service(s: &Service, f: Family) -> Vec<String> {
    match s {
        Service::Tcp(p) => ports(p)
            .into_iter()
            .map(|x| format!("-p tcp -m multiport --dports {x}"))
            .collect(),
        Service::Udp(p) => ports(p)
            .into_iter()
            .map(|x| format!("-p udp -m multiport --dports {x}"))
            .collect(),
        Service::Ping => vec![match f {
            Family::V4 => "-p icmp -m icmp --icmp-type echo-request".into(),
            Family::V6 => "-p ipv6-icmp -m icmp6 --icmpv6-type echo-request".into(),
        }],
    }
}

fn add_to(text: &str, f: Family, a: &FirewallAdditions, mode: Mode) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let Some(filter) = lines.iter().position(|l| l == "*filter") else {
        return text.to_string();
    };
    let commit = filter
        + lines[filter..]
            .iter()
            .position(|l| l == "COMMIT")
            .unwrap_or(lines.len() - filter);
    let input = format!("{PREFIX}INPUT");
    let hin = format!("{PREFIX}HOST-IN");
    let hfwd = format!("{PREFIX}HOST-FWD");
    let egress = format!("{PREFIX}EGRESS");
    let lock = format!("{PREFIX}LOCKDOWN");
    let unreach = match f {
        Family::V4 => "icmp-port-unreachable",
        Family::V6 => "icmp6-port-unreachable",
    };

    let mut decls: Vec<String> = vec![];
    let mut jumps: Vec<String> = vec![];
    let mut chain_rules: Vec<String> = vec![];
    let mut lock_jump: Option<String> = None;
    if !a.host_drop.is_empty() {
        decls.push(format!(":{egress} - [0:0]"));
        jumps.push(format!(
            "-A {input} {} -j {egress}",
            comment(&a.host_drop[0].origin)
        ));
        for d in &a.host_drop {
            let iif = d
                .iif
                .as_ref()
                .map(|i| format!("-i {i} "))
                .unwrap_or_default();
            if d.sources.is_empty() {
                chain_rules.push(format!("-A {egress} {iif}{} -j DROP", comment(&d.origin)));
            }
            for r in of(&d.sources, f) {
                chain_rules.push(format!(
                    "-A {egress} {iif}{} {} -j DROP",
                    addr(&r, true),
                    comment(&d.origin)
                ));
            }
        }
    }
    if let Some(l) = &a.lockdown {
        decls.push(format!(":{lock} - [0:0]"));
        lock_jump = Some(format!("-A {hin} {} -j {lock}", comment(&l.origin)));
        for p in &l.paths {
            let iif = p
                .iif
                .as_ref()
                .map(|i| format!("-i {i} "))
                .unwrap_or_default();
            for r in of(&p.sources, f) {
                for s in &l.services {
                    for m in service(s, f) {
                        chain_rules.push(format!(
                            "-A {lock} {iif}{} {m} {} -j ACCEPT",
                            addr(&r, true),
                            comment(&p.origin)
                        ));
                    }
                }
            }
        }
        for s in &l.services {
            for m in service(s, f) {
                let rej = if matches!(s, Service::Tcp(_)) {
                    "tcp-reset"
                } else {
                    unreach
                };
                chain_rules.push(format!(
                    "-A {lock} {m} {} -j REJECT --reject-with {rej}",
                    comment(&l.origin)
                ));
            }
        }
    }
    // Chain rules go at the end of the filter table, declarations after
    // RAMPART-INPUT's.
    lines.splice(commit..commit, chain_rules);
    if !jumps.is_empty() {
        let at = lines
            .iter()
            .position(|l| {
                l.starts_with(&format!("-A {input} ")) && l.ends_with(&format!("-j {hin}"))
            })
            .or_else(|| {
                lines
                    .iter()
                    .rposition(|l| l.starts_with(&format!("-A {input} ")))
                    .map(|i| i + 1)
            })
            .unwrap_or(commit);
        lines.splice(at..at, jumps);
    }
    if let Some(j) = lock_jump {
        // After the blacklist and the packet sanity rules of HOST-IN.
        let first = [
            "\"auto:blacklist",
            "\"auto:nosmurfs",
            "\"auto:tcpflags",
            "\"auto:synflood",
        ];
        let start = format!("-A {hin} ");
        let at = lines
            .iter()
            .position(|x| x.starts_with(&start) && !first.iter().any(|f| x.contains(f)))
            .or_else(|| {
                lines
                    .iter()
                    .rposition(|x| x.starts_with(&start))
                    .map(|i| i + 1)
            });
        if let Some(at) = at {
            lines.insert(at, j);
        }
    }
    if !decls.is_empty() {
        let at = lines
            .iter()
            .position(|l| l == &format!(":{input} - [0:0]"))
            .map(|i| i + 1)
            .unwrap_or(filter + 1);
        lines.splice(at..at, decls);
    }
    if let Some(l) = a.lockdown.as_ref().filter(|l| l.refuse_rest) {
        let c = comment(&l.origin);
        let mut rules = vec![];
        if f == Family::V6 {
            for t in ["neighbour-solicitation", "neighbour-advertisement"] {
                rules.push(format!(
                    "-A {hin} -p ipv6-icmp -m icmp6 --icmpv6-type {t} {c} -j ACCEPT"
                ));
            }
        }
        rules.push(format!(
            "-A {hin} -p tcp {c} -j REJECT --reject-with tcp-reset"
        ));
        rules.push(format!("-A {hin} {c} -j REJECT --reject-with {unreach}"));
        let at = lines
            .iter()
            .position(|x| x.starts_with(&format!("-A {hin} ")) && x.contains("\"auto:policy-in\""))
            .or_else(|| {
                lines
                    .iter()
                    .rposition(|x| x.starts_with(&format!("-A {hin} ")))
                    .map(|i| i + 1)
            });
        if let Some(at) = at {
            lines.splice(at..at, rules);
        }
    }
    if !a.forward.is_empty() {
        let mut rules = vec![];
        for fw in &a.forward {
            let src = of(&fw.sources, f);
            let dst = of(&fw.dests, f);
            if (!fw.sources.is_empty() && src.is_empty())
                || (!fw.dests.is_empty() && dst.is_empty())
            {
                continue;
            }
            let srcs: Vec<String> = if src.is_empty() {
                vec![String::new()]
            } else {
                src.iter().map(|r| format!(" {}", addr(r, true))).collect()
            };
            let dsts: Vec<String> = if dst.is_empty() {
                vec![String::new()]
            } else {
                dst.iter().map(|r| format!(" {}", addr(r, false))).collect()
            };
            for s in &srcs {
                for d in &dsts {
                    rules.push(format!(
                        "-A {hfwd} -i {} -o {}{s}{d} {} -j RETURN",
                        fw.iif,
                        fw.oif,
                        comment(&fw.origin)
                    ));
                }
            }
        }
        let at = lines
            .iter()
            .position(|x| {
                x.starts_with(&format!("-A {hfwd} ")) && x.contains("\"auto:policy-forward\"")
            })
            .or_else(|| {
                lines
                    .iter()
                    .rposition(|x| x.starts_with(&format!("-A {hfwd} ")))
                    .map(|i| i + 1)
            });
        if let Some(at) = at {
            lines.splice(at..at, rules);
        }
    }
    let masq: Vec<String> = a
        .masquerade
        .iter()
        .flat_map(|m| {
            of(&m.sources, f).into_iter().map(move |r| {
                format!(
                    "-A {PREFIX}POSTROUTING -o {} {} {} -j MASQUERADE",
                    m.oif,
                    addr(&r, true),
                    comment(&m.origin)
                )
            })
        })
        .collect();
    if !masq.is_empty() {
        let filter = lines.iter().position(|l| l == "*filter").unwrap_or(0);
        let mut nat = vec!["*nat".to_string()];
        if mode == Mode::Full {
            for c in ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"] {
                nat.push(format!(":{c} ACCEPT [0:0]"));
            }
        }
        nat.push(format!(":{PREFIX}POSTROUTING - [0:0]"));
        if mode == Mode::Full {
            nat.push(format!(
                "-A POSTROUTING -m comment --comment \"auto:hook\" -j {PREFIX}POSTROUTING"
            ));
        }
        nat.extend(masq);
        nat.push("COMMIT".into());
        lines.splice(filter..filter, nat);
    }
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

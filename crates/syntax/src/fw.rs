//! The Proxmox firewall file format (.fw).

use crate::addr::{parse_addr_spec, parse_net, valid_name};
use crate::ast::*;
use crate::suggest::{closest, did_you_mean};
use crate::tables::{self, find_macro, icmp_type, macros, parse_proto, service_port};
use crate::text::Line;
use rampart_types::{
    codes, Action, Diagnostic, Diagnostics, Direction, Family, FileId, LogLevel, PortRange, Proto,
};
use std::collections::{HashMap, HashSet};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum OptType {
    Bool,
    /// ACCEPT, DROP, REJECT (false: REJECT not allowed)
    Policy(bool),
    Log,
    U32(u32, u32),
    RateLimit,
    Helpers,
    Queues,
}

const CLUSTER_OPTS: &[(&str, OptType)] = &[
    ("enable", OptType::Bool),
    ("policy_in", OptType::Policy(true)),
    ("policy_out", OptType::Policy(true)),
    ("policy_forward", OptType::Policy(false)),
    ("log_ratelimit", OptType::RateLimit),
    ("ebtables", OptType::Bool),
];

const HOST_OPTS: &[(&str, OptType)] = &[
    ("enable", OptType::Bool),
    ("log_level_in", OptType::Log),
    ("log_level_out", OptType::Log),
    ("log_level_forward", OptType::Log),
    ("nosmurfs", OptType::Bool),
    ("smurf_log_level", OptType::Log),
    ("tcpflags", OptType::Bool),
    ("tcp_flags_log_level", OptType::Log),
    ("ndp", OptType::Bool),
    ("nf_conntrack_max", OptType::U32(32768, u32::MAX)),
    (
        "nf_conntrack_tcp_timeout_established",
        OptType::U32(7875, u32::MAX),
    ),
    ("nf_conntrack_tcp_timeout_syn_recv", OptType::U32(30, 60)),
    ("nf_conntrack_allow_invalid", OptType::Bool),
    ("nf_conntrack_helpers", OptType::Helpers),
    ("protection_synflood", OptType::Bool),
    ("protection_synflood_rate", OptType::U32(1, u32::MAX)),
    ("protection_synflood_burst", OptType::U32(1, u32::MAX)),
    ("log_nf_conntrack", OptType::Bool),
    ("nftables", OptType::Bool),
];

const GUEST_OPTS: &[(&str, OptType)] = &[
    ("enable", OptType::Bool),
    ("macfilter", OptType::Bool),
    ("dhcp", OptType::Bool),
    ("ndp", OptType::Bool),
    ("radv", OptType::Bool),
    ("ipfilter", OptType::Bool),
    ("policy_in", OptType::Policy(true)),
    ("policy_out", OptType::Policy(true)),
    ("log_level_in", OptType::Log),
    ("log_level_out", OptType::Log),
    ("ips", OptType::Bool),
    ("ips_queues", OptType::Queues),
];

/// The conntrack helpers pve-firewall knows.
pub const HELPERS: &[&str] = &[
    "amanda",
    "ftp",
    "irc",
    "netbios-ns",
    "pptp",
    "sane",
    "sip",
    "snmp",
    "tftp",
];

fn opts_of(kind: FwKind) -> &'static [(&'static str, OptType)] {
    match kind {
        FwKind::Cluster => CLUSTER_OPTS,
        FwKind::Host => HOST_OPTS,
        FwKind::Guest => GUEST_OPTS,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sect {
    None,
    Options,
    Aliases,
    IpSet(usize),
    Rules,
    Group(usize),
    /// After a bad header: lines are skipped until the next header.
    Skip,
}

/// Where a rule line sits: decides the allowed directions.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RuleCtx<'a> {
    File(FwKind),
    Group(&'a str),
}

struct Parser<'d> {
    kind: FwKind,
    diags: &'d mut Diagnostics,
    seen_opts: HashMap<&'static str, rampart_types::Span>,
    seen_sections: HashMap<String, rampart_types::Span>,
    alias_names: HashMap<String, rampart_types::Span>,
    /// Rules with a problem on their line (see [`FwFile::broken_rules`]).
    broken: Vec<RuleLine>,
}

/// Strip a `# comment`; returns (body, comment).
fn split_comment(s: &str) -> (&str, Option<String>) {
    match s.find('#') {
        Some(p) => {
            let c = s[p + 1..].trim();
            (
                &s[..p],
                if c.is_empty() {
                    None
                } else {
                    Some(c.to_string())
                },
            )
        }
        None => (s, None),
    }
}

/// Parse one .fw file.
pub fn parse_fw(
    file: FileId,
    kind: FwKind,
    text: &str,
    bad_lines: &HashSet<u32>,
    diags: &mut Diagnostics,
) -> FwFile {
    let mut out = FwFile::new(file, kind);
    let mut p = Parser {
        kind,
        diags,
        seen_opts: HashMap::new(),
        seen_sections: HashMap::new(),
        alias_names: HashMap::new(),
        broken: Vec::new(),
    };
    let mut sect = Sect::None;
    for (i, raw) in text.split('\n').enumerate() {
        let no = i as u32 + 1;
        if bad_lines.contains(&no) {
            continue;
        }
        let line = Line {
            file,
            no,
            text: raw,
        };
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t.starts_with('[') {
            sect = p.header(&line, t, &mut out);
            continue;
        }
        match sect {
            Sect::None => {
                p.diags.push(
                    Diagnostic::new(codes::OUTSIDE_SECTION, "line outside any section")
                        .at(line.whole())
                        .hint(match kind {
                            FwKind::Host => "put it under [OPTIONS] or [RULES]",
                            _ => "put it under a section header such as [RULES] or [OPTIONS]",
                        }),
                );
            }
            Sect::Skip => {}
            Sect::Options => p.option(&line, t, &mut out.options),
            Sect::Aliases => {
                if let Some(a) = p.alias(&line, t) {
                    out.aliases.push(a);
                }
            }
            Sect::IpSet(i) => {
                if let Some(e) = p.ipset_entry(&line, t) {
                    out.ipsets[i].entries.push(e);
                }
            }
            Sect::Rules => {
                if let Some(r) = p.rule(&line, RuleCtx::File(kind)) {
                    out.rules.push(r);
                }
            }
            Sect::Group(g) => {
                let name = out.groups[g].name.value.clone();
                if let Some(r) = p.rule(&line, RuleCtx::Group(&name)) {
                    out.groups[g].rules.push(r);
                }
            }
        }
    }
    out.broken_rules = p.broken;
    out
}

impl<'d> Parser<'d> {
    fn header(&mut self, line: &Line, t: &str, out: &mut FwFile) -> Sect {
        let Some(close) = t.find(']') else {
            self.diags.push(
                Diagnostic::new(
                    codes::MALFORMED_SECTION,
                    "section header without a closing `]`",
                )
                .at(line.span(t)),
            );
            return Sect::Skip;
        };
        let inside = &t[1..close];
        let rest = t[close + 1..].trim();
        let comment = if rest.is_empty() {
            None
        } else if let Some(c) = rest.strip_prefix('#') {
            let c = c.trim();
            (!c.is_empty()).then(|| c.to_string())
        } else {
            self.diags.push(
                Diagnostic::new(
                    codes::MALFORMED_SECTION,
                    format!("unexpected `{rest}` after the section header"),
                )
                .at(line.span(rest))
                .hint("a comment after a header starts with `#`"),
            );
            return Sect::Skip;
        };
        let words: Vec<&str> = inside.split_whitespace().collect();
        let Some(&kw) = words.first() else {
            self.diags.push(
                Diagnostic::new(codes::MALFORMED_SECTION, "empty section header").at(line.span(t)),
            );
            return Sect::Skip;
        };
        let kwu = kw.to_ascii_uppercase();
        let named = matches!(kwu.as_str(), "IPSET" | "GROUP");
        let known = matches!(kwu.as_str(), "OPTIONS" | "ALIASES" | "RULES") || named;
        if !known {
            let mut d = Diagnostic::new(
                codes::UNKNOWN_SECTION,
                format!("unknown section `[{inside}]`"),
            )
            .at(line.span(kw))
            .label("not a section of a .fw file");
            if let Some(h) = did_you_mean(kw, ["OPTIONS", "ALIASES", "RULES", "IPSET", "group"]) {
                d = d.hint(h);
            }
            self.diags.push(d);
            return Sect::Skip;
        }
        if named && words.len() != 2 || !named && words.len() != 1 {
            let msg = if named {
                format!("`[{kw} ...]` takes exactly one name")
            } else {
                format!("`[{kw}]` takes no name")
            };
            self.diags
                .push(Diagnostic::new(codes::MALFORMED_SECTION, msg).at(line.span(inside.trim())));
            return Sect::Skip;
        }
        let allowed = match (self.kind, kwu.as_str()) {
            (FwKind::Cluster, _) => true,
            (FwKind::Host, "OPTIONS" | "RULES") => true,
            (FwKind::Host, _) => false,
            (FwKind::Guest, "GROUP") => false,
            (FwKind::Guest, _) => true,
        };
        if !allowed {
            let what = if kwu == "GROUP" {
                "security groups are defined in cluster.fw only".to_string()
            } else {
                format!("host.fw holds only [OPTIONS] and [RULES]; define [{kwu}] in cluster.fw")
            };
            self.diags.push(
                Diagnostic::new(
                    codes::SECTION_NOT_ALLOWED,
                    format!(
                        "section `[{inside}]` is not allowed in {}",
                        self.kind.file_name()
                    ),
                )
                .at(line.span(kw))
                .note(what),
            );
            return Sect::Skip;
        }
        let key = if named {
            format!("{} {}", kwu, words[1].to_ascii_lowercase())
        } else {
            kwu.clone()
        };
        if let Some(prev) = self.seen_sections.get(&key) {
            self.diags.push(
                Diagnostic::new(
                    codes::DUPLICATE_SECTION,
                    format!("section `[{inside}]` given twice"),
                )
                .at(line.span(if named { words[1] } else { kw }))
                .note(format!("first given on line {}", prev.line))
                .hint("merge the two sections"),
            );
            return Sect::Skip;
        }
        self.seen_sections.insert(key, line.whole());
        match kwu.as_str() {
            "OPTIONS" => Sect::Options,
            "ALIASES" => Sect::Aliases,
            "RULES" => Sect::Rules,
            _ => {
                let name = words[1];
                let kind = if kwu == "IPSET" {
                    rampart_types::names::NameKind::IpSet
                } else {
                    rampart_types::names::NameKind::Group
                };
                if let Err(e) = rampart_types::names::validate(kind, name) {
                    self.diags.push(e.diagnostic(line.span(name)));
                    return Sect::Skip;
                }
                let span = line.span(name);
                if kwu == "IPSET" {
                    let Ok(name) = IpSetName::parse(name) else {
                        return Sect::Skip; // validated just above
                    };
                    out.ipsets.push(IpSetDef {
                        name: Spanned::new(name, span),
                        comment,
                        entries: Vec::new(),
                        span: line.whole(),
                    });
                    Sect::IpSet(out.ipsets.len() - 1)
                } else {
                    let Ok(name) = GroupName::parse(name) else {
                        return Sect::Skip; // validated just above
                    };
                    out.groups.push(GroupDef {
                        name: Spanned::new(name, span),
                        comment,
                        rules: Vec::new(),
                        span: line.whole(),
                    });
                    Sect::Group(out.groups.len() - 1)
                }
            }
        }
    }

    fn option(&mut self, line: &Line, t: &str, o: &mut FwOptions) {
        let (body, _) = split_comment(t);
        let body = body.trim();
        let Some((k, v)) = body.split_once(':') else {
            self.diags.push(
                Diagnostic::new(
                    codes::MALFORMED_ENTRY,
                    format!("expected `key: value`, found `{body}`"),
                )
                .at(line.span(body)),
            );
            return;
        };
        let k = k.trim_end();
        let v = v.trim();
        let table = opts_of(self.kind);
        let Some(&(key, ty)) = table.iter().find(|(n, _)| *n == k) else {
            let mut d = Diagnostic::new(codes::UNKNOWN_OPTION, format!("unknown option `{k}`"))
                .at(line.span(k))
                .label(format!("not an option of {}", self.kind.file_name()));
            let elsewhere: Vec<&str> = [FwKind::Cluster, FwKind::Host, FwKind::Guest]
                .into_iter()
                .filter(|&kd| kd != self.kind && opts_of(kd).iter().any(|(n, _)| *n == k))
                .map(|kd| kd.file_name())
                .collect();
            if !elsewhere.is_empty() {
                d = d.note(format!("`{k}` is an option of {}", elsewhere.join(" and ")));
            } else if let Some(h) = did_you_mean(k, table.iter().map(|(n, _)| *n)) {
                d = d.hint(h);
            }
            self.diags.push(d);
            return;
        };
        if let Some(prev) = self.seen_opts.get(key) {
            self.diags.push(
                Diagnostic::new(
                    codes::DUPLICATE_OPTION,
                    format!("option `{key}` given twice"),
                )
                .at(line.span(k))
                .note(format!("first given on line {}", prev.line)),
            );
            return;
        }
        self.seen_opts.insert(key, line.span(k));
        o.spans.insert(key.to_string(), line.span(k));
        let vspan = if v.is_empty() {
            line.span_at(line.offset(k) + k.len(), 1)
        } else {
            line.span(v)
        };
        let bad = |diags: &mut Diagnostics, msg: String, hint: &str| {
            diags.push(
                Diagnostic::new(codes::BAD_OPTION_VALUE, msg)
                    .at(vspan)
                    .hint(hint.to_string()),
            );
        };
        // pve-firewall's cluster.fw takes `enable: <number>`: a number above 1
        // is a timestamp (Proxmox's pending enable), on for 60 seconds after
        // that time and off from then on.
        if self.kind == FwKind::Cluster
            && key == "enable"
            && v.len() > 1
            && v.len() <= 20
            && v.bytes().all(|b| b.is_ascii_digit())
            && v.trim_start_matches('0').len() > 1
        {
            o.enable = Some(false);
            o.enable_span = Some(line.span(k));
            self.diags.push(
                Diagnostic::new(
                    codes::ENABLE_TIMESTAMP,
                    format!("`enable: {v}` is a timestamp: the firewall is off"),
                )
                .at(vspan)
                .note("pve-firewall reads a number above 1 as the time of a pending enable: on for 60 seconds after it, off from then on; rampart has no clock in its compiler and takes it as off, as Proxmox does once the minute is over")
                .hint("write `enable: 1` to turn the firewall on"),
            );
            return;
        }
        match ty {
            OptType::Bool => match v {
                "1" | "0" => {
                    let b = v == "1";
                    match key {
                        "enable" => {
                            o.enable = Some(b);
                            o.enable_span = Some(line.span(k));
                        }
                        "ebtables" => {
                            o.ebtables = Some(b);
                            self.no_effect(line, k, v, if b {
                                "rampart writes no ebtables (layer-2) rules: `macfilter` and `ipfilter` act on IP packets, as pve-firewall's iptables rules do, but ARP and other non-IP frames are not filtered as pve-firewall's ebtables rules would"
                            } else {
                                "rampart writes no ebtables (layer-2) rules either way; IP packets get the same verdicts"
                            });
                        }
                        "nosmurfs" => o.nosmurfs = Some(b),
                        "tcpflags" => o.tcpflags = Some(b),
                        "ndp" => o.ndp = Some(b),
                        "nf_conntrack_allow_invalid" => o.nf_conntrack_allow_invalid = Some(b),
                        "protection_synflood" => o.protection_synflood = Some(b),
                        "log_nf_conntrack" => {
                            o.log_nf_conntrack = Some(b);
                            if b {
                                self.no_effect(line, k, v, "pve-firewall's logger then logs conntrack events; rampart's agent does not log them (the ruleset is the same)");
                            }
                        }
                        "nftables" => {
                            o.nftables = Some(b);
                            self.no_effect(line, k, v, "Proxmox picks its nftables-based firewall with it; rampart's backend is `backend` in site.toml (or `--backend`), and both backends give the same verdicts");
                        }
                        "macfilter" => o.macfilter = Some(b),
                        "dhcp" => o.dhcp = Some(b),
                        "radv" => o.radv = Some(b),
                        "ipfilter" => o.ipfilter = Some(b),
                        "ips" => o.ips = Some(b),
                        _ => {}
                    }
                }
                _ => bad(
                    self.diags,
                    format!("`{key}` takes a boolean, found `{v}`"),
                    "write `1` (on) or `0` (off)",
                ),
            },
            OptType::Policy(reject_ok) => {
                let a = match v {
                    "ACCEPT" | "accept" => Some(Action::Accept),
                    "DROP" | "drop" => Some(Action::Drop),
                    "REJECT" | "reject" if reject_ok => Some(Action::Reject),
                    _ => None,
                };
                match a {
                    Some(a) => match key {
                        "policy_in" => o.policy_in = Some(a),
                        "policy_out" => o.policy_out = Some(a),
                        _ => o.policy_forward = Some(a),
                    },
                    None => bad(
                        self.diags,
                        format!(
                            "`{key}` takes {}, found `{v}`",
                            if reject_ok {
                                "ACCEPT, DROP or REJECT"
                            } else {
                                "ACCEPT or DROP"
                            }
                        ),
                        if reject_ok {
                            "write ACCEPT, DROP or REJECT"
                        } else {
                            "write ACCEPT or DROP"
                        },
                    ),
                }
            }
            OptType::Log => match LogLevel::parse(v) {
                Some(l) if !v.is_empty() => match key {
                    "log_level_in" => o.log_level_in = Some(l),
                    "log_level_out" => o.log_level_out = Some(l),
                    "log_level_forward" => o.log_level_forward = Some(l),
                    "smurf_log_level" => o.smurf_log_level = Some(l),
                    _ => o.tcp_flags_log_level = Some(l),
                },
                _ => bad(
                    self.diags,
                    format!("`{key}` takes a log level, found `{v}`"),
                    "log levels: nolog, emerg, alert, crit, err, warning, notice, info, debug",
                ),
            },
            OptType::U32(min, max) => match v.parse::<u32>() {
                Ok(n) if n >= min && n <= max && v.bytes().all(|b| b.is_ascii_digit()) => match key
                {
                    "nf_conntrack_max" => o.nf_conntrack_max = Some(n),
                    "nf_conntrack_tcp_timeout_established" => {
                        o.nf_conntrack_tcp_timeout_established = Some(n)
                    }
                    "nf_conntrack_tcp_timeout_syn_recv" => {
                        o.nf_conntrack_tcp_timeout_syn_recv = Some(n)
                    }
                    "protection_synflood_rate" => o.protection_synflood_rate = Some(n),
                    _ => o.protection_synflood_burst = Some(n),
                },
                _ => {
                    let range = if max == u32::MAX {
                        format!("{min} or more")
                    } else {
                        format!("{min} to {max}")
                    };
                    bad(
                        self.diags,
                        format!("`{key}` takes a number ({range}), found `{v}`"),
                        "write a plain decimal number",
                    );
                }
            },
            OptType::RateLimit => match parse_ratelimit(v) {
                Ok(r) => o.log_ratelimit = Some(r),
                Err(m) => bad(
                    self.diags,
                    format!("`{key}`: {m}"),
                    "e.g. `enable=1,rate=1/second,burst=5`",
                ),
            },
            OptType::Helpers => {
                let mut hs = Vec::new();
                let mut ok = true;
                if !v.is_empty() {
                    for h in v.split(',') {
                        if h.is_empty() {
                            self.diags.push(
                                Diagnostic::new(
                                    codes::EMPTY_LIST_ELEMENT,
                                    format!("empty element in the list `{v}`"),
                                )
                                .at(vspan)
                                .label("empty or doubled comma"),
                            );
                            ok = false;
                        } else if !HELPERS.contains(&h) {
                            let mut d = Diagnostic::new(
                                codes::BAD_OPTION_VALUE,
                                format!("unknown conntrack helper `{h}`"),
                            )
                            .at(line.span(h))
                            .note(format!("helpers: {}", HELPERS.join(", ")));
                            if let Some(x) = did_you_mean(h, HELPERS.iter().copied()) {
                                d = d.hint(x);
                            }
                            self.diags.push(d);
                            ok = false;
                        } else {
                            hs.push(h.to_string());
                        }
                    }
                }
                if ok {
                    o.nf_conntrack_helpers = Some(hs);
                }
            }
            OptType::Queues => {
                let parse = |s: &str| -> Option<u16> {
                    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| s.parse().ok())
                        .flatten()
                };
                let q = match v.split_once(':') {
                    Some((a, b)) => parse(a).zip(parse(b)).filter(|(a, b)| a <= b),
                    None => parse(v).map(|a| (a, a)),
                };
                match q {
                    Some(q) => o.ips_queues = Some(q),
                    None => bad(
                        self.diags,
                        format!("`{key}` takes `N` or `N:M`, found `{v}`"),
                        "e.g. `ips_queues: 0` or `ips_queues: 0:3`",
                    ),
                }
            }
        }
    }

    /// An option rampart reads but that changes nothing it does: said at its line.
    fn no_effect(&mut self, line: &Line, k: &str, v: &str, why: &str) {
        self.diags.push(
            Diagnostic::new(
                codes::OPTION_WITHOUT_EFFECT,
                format!("`{k}: {v}` has no effect in rampart"),
            )
            .at(line.span(k))
            .note(why.to_string()),
        );
    }

    fn alias(&mut self, line: &Line, t: &str) -> Option<AliasDef> {
        let (body, comment) = split_comment(t);
        let words: Vec<&str> = body.split_whitespace().collect();
        if words.len() != 2 {
            self.diags.push(
                Diagnostic::new(
                    codes::MALFORMED_ENTRY,
                    "an alias is `name address [# comment]`",
                )
                .at(line.span(body.trim())),
            );
            return None;
        }
        let (name, value) = (words[0], words[1]);
        let alias_name = match AliasName::parse(name) {
            Ok(n) => n,
            Err(e) => {
                self.diags.push(e.diagnostic(line.span(name)));
                return None;
            }
        };
        let lname = name.to_ascii_lowercase();
        if let Some(prev) = self.alias_names.get(&lname) {
            self.diags.push(
                Diagnostic::new(
                    codes::DUPLICATE_NAME,
                    format!("alias `{name}` defined twice"),
                )
                .at(line.span(name))
                .note(format!("first defined on line {}", prev.line)),
            );
            return None;
        }
        self.alias_names.insert(lname, line.span(name));
        if value.contains('-') && !value.contains(':') {
            self.diags.push(
                Diagnostic::new(
                    codes::INVALID_ADDRESS,
                    format!("an alias is one address or network, not the range `{value}`"),
                )
                .at(line.span(value))
                .hint("use an [IPSET] for ranges and lists"),
            );
            return None;
        }
        let net = parse_net(line, value, self.diags)?;
        Some(AliasDef {
            name: Spanned::new(alias_name, line.span(name)),
            net: Spanned::new(net, line.span(value)),
            comment,
            span: line.whole(),
        })
    }

    fn ipset_entry(&mut self, line: &Line, t: &str) -> Option<IpSetEntry> {
        let (body, comment) = split_comment(t);
        let words: Vec<&str> = body.split_whitespace().collect();
        if words.len() != 1 {
            self.diags.push(
                Diagnostic::new(
                    codes::MALFORMED_ENTRY,
                    "an ipset entry is `[!]address|alias [# comment]`, one per line",
                )
                .at(line.span(body.trim())),
            );
            return None;
        }
        let w = words[0];
        let (nomatch, v) = match w.strip_prefix('!') {
            Some(v) => (true, v),
            None => (false, w),
        };
        if v.is_empty() {
            self.diags.push(
                Diagnostic::new(codes::MALFORMED_ENTRY, "`!` without an address").at(line.span(w)),
            );
            return None;
        }
        let item = if v.contains(',') {
            self.diags.push(
                Diagnostic::new(codes::MALFORMED_ENTRY, "one ipset entry per line")
                    .at(line.span(v))
                    .hint("put each address on its own line"),
            );
            return None;
        } else {
            match crate::addr::parse_addr_item(line, v, self.diags)? {
                AddrItem::Range(r) => SetItem::Range(r),
                AddrItem::Alias(a) => SetItem::Alias(a),
            }
        };
        Some(IpSetEntry {
            nomatch,
            item,
            comment,
            span: line.span(v),
        })
    }

    fn rule(&mut self, line: &Line, ctx: RuleCtx) -> Option<RuleLine> {
        let (body, comment) = split_comment(line.text);
        let body = body.trim();
        if body.is_empty() {
            // A line holding only a comment (`   # x`) is handled by the caller; nothing here.
            return None;
        }
        let (enabled, rest) = match body.strip_prefix('|') {
            Some(r) => (false, r.trim_start()),
            None => (true, body),
        };
        let span = line.span(body);
        let toks: Vec<&str> = rest.split_whitespace().collect();
        let Some(&head) = toks.first() else {
            self.diags.push(
                Diagnostic::new(codes::MALFORMED_RULE, "`|` without a rule")
                    .at(span)
                    .hint("`|` disables the rule that follows it on the same line"),
            );
            return None;
        };
        let upper = head.to_ascii_uppercase();
        let dir = match upper.as_str() {
            "IN" => Some(Direction::In),
            "OUT" => Some(Direction::Out),
            "FORWARD" => Some(Direction::Forward),
            "GROUP" => None,
            _ => {
                let mut d = Diagnostic::new(
                    codes::MALFORMED_RULE,
                    format!("a rule starts with IN, OUT, FORWARD or GROUP, not `{head}`"),
                )
                .at(line.span(head));
                if let Some(h) = did_you_mean(head, ["IN", "OUT", "FORWARD", "GROUP"]) {
                    d = d.hint(h);
                }
                self.diags.push(d);
                return None;
            }
        };
        let Some(dir) = dir else {
            return self.group_rule(line, &toks, span, enabled, comment, ctx);
        };
        if dir == Direction::Forward && ctx == RuleCtx::File(FwKind::Guest) {
            self.diags.push(
                Diagnostic::new(
                    codes::DIRECTION_NOT_ALLOWED,
                    "FORWARD rules are not allowed in a guest's firewall",
                )
                .at(line.span(head))
                .note("guest rules are IN or OUT, seen from the guest"),
            );
            return None;
        }
        let Some(&verb_tok) = toks.get(1) else {
            self.diags.push(
                Diagnostic::new(codes::MALFORMED_RULE, format!("`{head}` without an action"))
                    .at(line.span(head))
                    .hint("e.g. `IN ACCEPT -p tcp -dport 22` or `IN SSH(ACCEPT)`"),
            );
            return None;
        };
        let Some(verb) = self.verb(line, verb_tok) else {
            // Still read the options, to report their problems too.
            let _ = self.rule_opts(line, &toks[2..], ctx, false);
            return None;
        };
        let action = match &verb {
            RuleVerb::Plain(a) | RuleVerb::Macro { action: a, .. } => *a,
        };
        if dir == Direction::Forward && action == Action::Reject {
            self.diags.push(
                Diagnostic::new(
                    codes::DIRECTION_NOT_ALLOWED,
                    "REJECT is not allowed on FORWARD rules",
                )
                .at(line.span(verb_tok))
                .hint("use DROP"),
            );
            return None;
        }
        let (opts, ok) = self.rule_opts(line, &toks[2..], ctx, false);
        let ok = ok && self.check_rule(&verb, &opts, verb_tok).is_some();
        let r = RuleLine {
            span,
            enabled,
            body: RuleBody::Rule {
                dir: Spanned::new(dir, line.span(head)),
                verb: Spanned::new(verb, line.span(verb_tok)),
                opts,
            },
            comment,
        };
        if !ok {
            // Its other problems (names) are the resolver's to report.
            self.broken.push(r);
            return None;
        }
        Some(r)
    }

    fn group_rule(
        &mut self,
        line: &Line,
        toks: &[&str],
        span: rampart_types::Span,
        enabled: bool,
        comment: Option<String>,
        ctx: RuleCtx,
    ) -> Option<RuleLine> {
        let head = toks[0];
        let Some(&name) = toks.get(1) else {
            self.diags.push(
                Diagnostic::new(codes::MALFORMED_RULE, "`GROUP` without a group name")
                    .at(line.span(head)),
            );
            return None;
        };
        if let RuleCtx::Group(own) = ctx {
            if own.eq_ignore_ascii_case(name) {
                self.diags.push(
                    Diagnostic::new(
                        codes::REFERENCE_CYCLE,
                        format!("security group `{own}` includes itself"),
                    )
                    .at(line.span(name))
                    .label("cycle"),
                );
            } else {
                self.diags.push(
                    Diagnostic::new(
                        codes::NESTING_TOO_DEEP,
                        format!("security group `{own}` includes group `{name}`"),
                    )
                    .at(line.span(head))
                    .note("security groups cannot contain GROUP lines; nesting depth is 1")
                    .hint(format!(
                        "reference `{name}` next to `{own}` where they are used"
                    )),
                );
            }
            return None;
        }
        if !valid_name(name) {
            self.diags.push(
                Diagnostic::new(
                    codes::ILLEGAL_NAME,
                    format!("`{name}` is not a valid group name"),
                )
                .at(line.span(name))
                .note("names start with a letter and hold at least two of [A-Za-z0-9_-]"),
            );
            return None;
        }
        let (opts, ok) = self.rule_opts(line, &toks[2..], ctx, true);
        if !ok {
            return None;
        }
        Some(RuleLine {
            span,
            enabled,
            body: RuleBody::Group {
                name: Spanned::new(name.to_string(), line.span(name)),
                iface: opts.iface,
            },
            comment,
        })
    }

    fn verb(&mut self, line: &Line, tok: &str) -> Option<RuleVerb> {
        let plain = |s: &str| match s {
            "ACCEPT" => Some(Action::Accept),
            "DROP" => Some(Action::Drop),
            "REJECT" => Some(Action::Reject),
            _ => None,
        };
        if let Some(a) = plain(tok) {
            return Some(RuleVerb::Plain(a));
        }
        if let Some(open) = tok.find('(') {
            if tok.ends_with(')') && open > 0 {
                let mname = &tok[..open];
                let inner = &tok[open + 1..tok.len() - 1];
                let Some(a) = plain(inner) else {
                    self.unknown_action(line, inner);
                    return None;
                };
                return match find_macro(mname) {
                    Some(index) => Some(RuleVerb::Macro { index, action: a }),
                    None => {
                        let mut d = Diagnostic::new(
                            codes::UNKNOWN_MACRO,
                            format!("unknown macro `{mname}`"),
                        )
                        .at(line.span(mname))
                        .label("not a macro");
                        if let Some(h) = did_you_mean(mname, macros().iter().map(|m| m.name)) {
                            d = d.hint(h);
                        }
                        self.diags.push(d);
                        None
                    }
                };
            }
            self.diags.push(
                Diagnostic::new(
                    codes::MALFORMED_RULE,
                    format!("`{tok}` is not `MACRO(ACTION)`"),
                )
                .at(line.span(tok)),
            );
            return None;
        }
        self.unknown_action(line, tok);
        None
    }

    fn unknown_action(&mut self, line: &Line, tok: &str) {
        let mut d = Diagnostic::new(codes::UNKNOWN_ACTION, format!("unknown action `{tok}`"))
            .at(line.span(tok))
            .note("actions are ACCEPT, DROP and REJECT (upper-case), or MACRO(ACTION)");
        let up = tok.to_ascii_uppercase();
        if matches!(up.as_str(), "ACCEPT" | "DROP" | "REJECT") {
            d = d.hint(format!("actions are upper-case: `{up}`"));
        } else if up == "DENY" {
            d = d.hint("did you mean `DROP`?");
        } else if find_macro(tok).is_some() {
            d = d.hint(format!(
                "a macro takes an action: `{}(ACCEPT)`",
                macros()[find_macro(tok).unwrap_or(0)].name
            ));
        } else if let Some(h) = did_you_mean(tok, ["ACCEPT", "DROP", "REJECT"]) {
            d = d.hint(h);
        }
        self.diags.push(d);
    }

    fn rule_opts(
        &mut self,
        line: &Line,
        toks: &[&str],
        ctx: RuleCtx,
        group_line: bool,
    ) -> (RuleOpts, bool) {
        let mut o = RuleOpts::default();
        let mut ok = true;
        let mut seen: HashMap<&'static str, ()> = HashMap::new();
        // pve-firewall keeps the ICMP type of legacy rules in `-dport` when
        // the protocol is written `icmp` or `icmpv6` (and no `-icmp-type`).
        let legacy_icmp: Option<(Family, &str)> = if toks
            .iter()
            .any(|t| matches!(*t, "-icmp-type" | "--icmp-type"))
        {
            None
        } else {
            toks.windows(2).find_map(|w| match (w[0], w[1]) {
                ("-p" | "-proto" | "--proto", "icmp") => Some((Family::V4, "icmp")),
                ("-p" | "-proto" | "--proto", "icmpv6") => Some((Family::V6, "icmpv6")),
                _ => None,
            })
        };
        let mut i = 0;
        while i < toks.len() {
            let flag = toks[i];
            i += 1;
            let Some(name) = flag.strip_prefix("--").or_else(|| flag.strip_prefix('-')) else {
                self.diags.push(
                    Diagnostic::new(codes::MALFORMED_RULE, format!("unexpected `{flag}`"))
                        .at(line.span(flag))
                        .hint("options start with `-`, e.g. `-p tcp -dport 22`; a comment starts with `#`"),
                );
                ok = false;
                continue;
            };
            let key: &'static str = match name {
                "i" | "iface" => "i",
                "source" => "source",
                "dest" => "dest",
                "p" | "proto" => "p",
                "dport" => "dport",
                "sport" => "sport",
                "icmp-type" => "icmp-type",
                "log" => "log",
                _ => {
                    let mut d = Diagnostic::new(
                        codes::UNKNOWN_RULE_OPTION,
                        format!("unknown rule option `{flag}`"),
                    )
                    .at(line.span(flag));
                    if let Some(h) = closest(
                        name,
                        [
                            "i",
                            "source",
                            "dest",
                            "p",
                            "dport",
                            "sport",
                            "icmp-type",
                            "log",
                        ],
                    ) {
                        d = d.hint(format!("did you mean `-{}`?", h));
                    }
                    self.diags.push(d);
                    ok = false;
                    // Skip its value if it seems to have one.
                    if toks.get(i).is_some_and(|t| !t.starts_with('-')) {
                        i += 1;
                    }
                    continue;
                }
            };
            if group_line && key != "i" {
                self.diags.push(
                    Diagnostic::new(
                        codes::UNKNOWN_RULE_OPTION,
                        format!("`{flag}` is not allowed on a GROUP line"),
                    )
                    .at(line.span(flag))
                    .note("a GROUP line takes only `-i`"),
                );
                ok = false;
                if toks.get(i).is_some() {
                    i += 1;
                }
                continue;
            }
            let Some(&val) = toks.get(i) else {
                self.diags.push(
                    Diagnostic::new(
                        codes::MISSING_OPTION_VALUE,
                        format!("`{flag}` needs a value"),
                    )
                    .at(line.span(flag)),
                );
                ok = false;
                continue;
            };
            i += 1;
            if seen.insert(key, ()).is_some() {
                self.diags.push(
                    Diagnostic::new(
                        codes::DUPLICATE_RULE_OPTION,
                        format!("`{flag}` given twice"),
                    )
                    .at(line.span(flag))
                    .hint("use a comma list, or two rules"),
                );
                ok = false;
                continue;
            }
            let flag_span = line.span(flag);
            let vs = line.span(val);
            match key {
                "i" => match self.check_iface(line, val, ctx) {
                    Some(i) => o.iface = Some(Spanned::new(i, vs)),
                    None => ok = false,
                },
                "source" | "dest" => match parse_addr_spec(line, val, self.diags) {
                    Some(a) => {
                        let s = Some(Spanned::new(a, vs));
                        if key == "source" {
                            o.source = s
                        } else {
                            o.dest = s
                        }
                    }
                    None => ok = false,
                },
                "p" => {
                    match parse_proto(val) {
                        Some(p) => {
                            if p.number() == 0 {
                                self.diags.push(proto_zero_warning(val, vs));
                            }
                            o.proto = Some(Spanned::new(p, vs))
                        }
                        None => {
                            let mut d = Diagnostic::new(codes::UNKNOWN_PROTOCOL, format!("unknown protocol `{val}`"))
                            .at(vs)
                            .note("protocols are names from /etc/protocols (lower-case) or numbers 0-255");
                            if let Some(h) =
                                did_you_mean(val, tables::PROTOCOLS.iter().map(|(n, _)| *n))
                            {
                                d = d.hint(h);
                            }
                            self.diags.push(d);
                            ok = false;
                        }
                    }
                }
                "dport" if legacy_icmp.is_some() => {
                    let (fam, pname) = legacy_icmp.unwrap_or((Family::V4, "icmp"));
                    let lower = val.to_ascii_lowercase();
                    // Proxmox takes a type number (0-255) or a type name here, no
                    // code; `any` (ICMP only) matches every type.
                    let any = fam == Family::V4 && lower == "any";
                    if !any && (lower.contains('/') || icmp_type(&lower, fam).is_none()) {
                        let mut d = Diagnostic::new(
                            codes::UNKNOWN_ICMP_TYPE,
                            format!("`-dport {val}` on a `-p {pname}` rule is not an ICMP type"),
                        )
                        .at(vs)
                        .note(format!(
                            "with `-p {pname}`, Proxmox reads `-dport` as the ICMP type (a number 0-255 or a type name)"
                        ));
                        if let Some(h) = did_you_mean(val, tables::icmp_names()) {
                            d = d.hint(h);
                        }
                        self.diags.push(d);
                        ok = false;
                    } else {
                        self.diags.push(
                            Diagnostic::new(
                                codes::LEGACY_ICMP_DPORT,
                                format!("`-dport {val}` on a `-p {pname}` rule is read as the ICMP type `{lower}`"),
                            )
                            .at(flag_span)
                            .note("Proxmox keeps the ICMP type of rules written by older releases in `-dport`, and matches it")
                            .hint(if any {
                                format!("drop `-dport {val}`: `-p {pname}` alone matches every ICMP type")
                            } else {
                                format!("write `-icmp-type {val}` instead")
                            }),
                        );
                        if !any {
                            o.icmp_type = Some(Spanned::new(lower, vs));
                        }
                    }
                }
                "dport" | "sport" => match self.ports(line, val) {
                    Some(p) => {
                        let s = Some(Spanned::new(p, flag_span));
                        if key == "dport" {
                            o.dport = s
                        } else {
                            o.sport = s
                        }
                    }
                    None => ok = false,
                },
                "icmp-type" => {
                    let lower = val.to_ascii_lowercase();
                    if icmp_type(&lower, Family::V4).is_none()
                        && icmp_type(&lower, Family::V6).is_none()
                    {
                        let mut d = Diagnostic::new(
                            codes::UNKNOWN_ICMP_TYPE,
                            format!("unknown ICMP type `{val}`"),
                        )
                        .at(vs);
                        if let Some(h) = did_you_mean(val, tables::icmp_names()) {
                            d = d.hint(h);
                        }
                        self.diags.push(d);
                        ok = false;
                    } else {
                        o.icmp_type = Some(Spanned::new(lower, vs));
                    }
                }
                _ => match LogLevel::parse(val) {
                    Some(l) => o.log = Some(Spanned::new(l, vs)),
                    None => {
                        let mut d = Diagnostic::new(codes::BAD_OPTION_VALUE, format!("unknown log level `{val}`"))
                            .at(vs)
                            .note("log levels: nolog, emerg, alert, crit, err, warning, notice, info, debug");
                        if let Some(h) = did_you_mean(val, LogLevel::ALL.iter().map(|(n, _)| *n)) {
                            d = d.hint(h);
                        }
                        self.diags.push(d);
                        ok = false;
                    }
                },
            }
        }
        (o, ok)
    }

    /// The rule's interface, or `None` with a diagnostic.
    fn check_iface(&mut self, line: &Line, val: &str, ctx: RuleCtx) -> Option<RuleIfaceName> {
        let guest = ctx == RuleCtx::File(FwKind::Guest);
        if guest {
            let ok = val.strip_prefix("net").is_some_and(|n| {
                !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit())
            });
            if !ok {
                self.diags.push(
                    Diagnostic::new(
                        codes::UNKNOWN_INTERFACE,
                        format!("`{val}` is not a guest interface"),
                    )
                    .at(line.span(val))
                    .hint("guest rules name the guest's NICs: `net0`, `net1`, ..."),
                );
            }
            if !ok {
                return None;
            }
            return self.iface_name(line, val);
        }
        if val.len() > 15 {
            self.diags.push(
                Diagnostic::new(
                    codes::NAME_TOO_LONG,
                    format!("interface name `{val}` is longer than 15 bytes"),
                )
                .at(line.span(val))
                .note("Linux interface names hold at most 15 bytes"),
            );
            return None;
        }
        if val.is_empty()
            || val == "."
            || val == ".."
            || !val
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-+=@".contains(&b))
        {
            self.diags.push(
                Diagnostic::new(
                    codes::ILLEGAL_NAME,
                    format!("`{val}` is not a valid interface name"),
                )
                .at(line.span(val)),
            );
            return None;
        }
        self.iface_name(line, val)
    }

    /// The checks above are the rule of [`RuleIfaceName`]; the parse is
    /// what makes the value one.
    fn iface_name(&mut self, line: &Line, val: &str) -> Option<RuleIfaceName> {
        match RuleIfaceName::parse(val) {
            Ok(n) => Some(n),
            Err(e) => {
                self.diags.push(e.diagnostic(line.span(val)));
                None
            }
        }
    }

    /// `N`, `N:M`, service names, comma lists.
    fn ports(&mut self, line: &Line, val: &str) -> Option<Vec<PortRange>> {
        let mut out = Vec::new();
        let mut ok = true;
        let base = line.offset(val);
        let mut off = 0usize;
        for part in val.split(',') {
            let start = off;
            off += part.len() + 1;
            if part.is_empty() {
                let pos = if start < val.len() {
                    start
                } else {
                    start.saturating_sub(1)
                };
                self.diags.push(
                    Diagnostic::new(
                        codes::EMPTY_LIST_ELEMENT,
                        format!("empty element in the port list `{val}`"),
                    )
                    .at(line.span_at(base + pos, 1))
                    .label("empty or doubled comma"),
                );
                ok = false;
                continue;
            }
            let ps = &val[start..start + part.len()];
            let one = |s: &str, diags: &mut Diagnostics| -> Option<u16> {
                if s.bytes().all(|b| b.is_ascii_digit()) {
                    let n: u64 = if s.len() > 6 {
                        u64::MAX
                    } else {
                        s.parse().unwrap_or(u64::MAX)
                    };
                    if n == 0 || n > 65535 {
                        diags.push(
                            Diagnostic::new(
                                codes::PORT_OUT_OF_RANGE,
                                format!("port `{s}` is out of range"),
                            )
                            .at(line.span(s))
                            .label("ports are 1 to 65535"),
                        );
                        return None;
                    }
                    Some(n as u16)
                } else if let Some(p) = service_port(s) {
                    Some(p)
                } else {
                    let mut d = Diagnostic::new(
                        codes::UNKNOWN_SERVICE,
                        format!("unknown service name `{s}`"),
                    )
                    .at(line.span(s));
                    if s.contains('-')
                        && s.split('-')
                            .all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
                    {
                        d = d.hint(format!(
                            "port ranges use a colon: `{}`",
                            s.replace('-', ":")
                        ));
                    } else if let Some(h) =
                        did_you_mean(s, tables::SERVICES.iter().map(|(n, _)| *n))
                    {
                        d = d.hint(h);
                    }
                    diags.push(d);
                    None
                }
            };
            match ps.split_once(':') {
                Some((a, b)) => {
                    let (x, y) = (one(a, self.diags), one(b, self.diags));
                    match (x, y) {
                        (Some(x), Some(y)) if x <= y => out.push(PortRange::new(x, y)),
                        (Some(_), Some(_)) => {
                            self.diags.push(
                                Diagnostic::new(
                                    codes::BACKWARDS_PORT_RANGE,
                                    format!("port range `{ps}` runs backwards"),
                                )
                                .at(line.span(ps))
                                .hint(format!("write `{b}:{a}`")),
                            );
                            ok = false;
                        }
                        _ => ok = false,
                    }
                }
                None => match one(ps, self.diags) {
                    Some(p) => out.push(PortRange::single(p)),
                    None => ok = false,
                },
            }
        }
        ok.then_some(out)
    }

    /// Checks a single line can decide: ports vs protocol, ICMP types, macro conflicts.
    fn check_rule(&mut self, verb: &RuleVerb, o: &RuleOpts, verb_tok: &str) -> Option<()> {
        let mut ok = true;
        let macro_ = match verb {
            RuleVerb::Macro { index, .. } => Some(&macros()[*index]),
            RuleVerb::Plain(_) => None,
        };
        if let Some(m) = macro_ {
            let conflict = |what: &str, span: rampart_types::Span, diags: &mut Diagnostics| {
                diags.push(
                    Diagnostic::new(
                        codes::MACRO_CONFLICT,
                        format!("macro `{}` fixes {what}; the rule sets it too", m.name),
                    )
                    .at(span)
                    .note(format!(
                        "`{verb_tok}` brings its own protocol, ports and ICMP type"
                    ))
                    .hint(format!(
                        "drop {what} here, or write the rule without the macro"
                    )),
                );
            };
            if let Some(p) = &o.proto {
                if m.rows.iter().any(|r| r.proto != p.value) {
                    conflict("the protocol", p.span, self.diags);
                    ok = false;
                }
            }
            if let Some(d) = &o.dport {
                if m.rows.iter().any(|r| !r.dport.is_empty()) {
                    conflict("the destination port", d.span, self.diags);
                    ok = false;
                }
            }
            if let Some(d) = &o.sport {
                if m.rows.iter().any(|r| !r.sport.is_empty()) {
                    conflict("the source port", d.span, self.diags);
                    ok = false;
                }
            }
            if let Some(t) = &o.icmp_type {
                if m.rows.iter().any(|r| r.icmp_type.is_some()) {
                    conflict("the ICMP type", t.span, self.diags);
                    ok = false;
                }
            }
        }
        // The protocols the rule will have (its own, or each macro row's).
        let protos: Vec<Proto> = match (&o.proto, macro_) {
            (Some(p), _) => vec![p.value.clone()],
            (None, Some(m)) => m.rows.iter().map(|r| r.proto.clone()).collect(),
            (None, None) => vec![],
        };
        for (port, flag) in [(&o.dport, "-dport"), (&o.sport, "-sport")] {
            let Some(port) = port else { continue };
            if protos.is_empty() {
                self.diags.push(
                    Diagnostic::new(codes::PORT_WITHOUT_PROTO, format!("`{flag}` without `-p`"))
                        .at(port.span)
                        .label("ports need a protocol")
                        .hint("add `-p tcp` or `-p udp`"),
                );
                ok = false;
            } else if let Some(p) = protos.iter().find(|p| !p.has_ports()) {
                self.diags.push(
                    Diagnostic::new(
                        codes::PORT_WITH_PORTLESS_PROTO,
                        format!("`{flag}` with protocol `{p}`, which has no ports"),
                    )
                    .at(port.span)
                    .label(format!("{p} has no ports")),
                );
                ok = false;
            }
        }
        if let Some(t) = &o.icmp_type {
            if let Some(d) = o.dport.as_ref().or(o.sport.as_ref()) {
                self.diags.push(
                    Diagnostic::new(
                        codes::ICMP_TYPE_WITH_PORT,
                        "an ICMP type together with a port",
                    )
                    .at(d.span)
                    .note(format!(
                        "`-icmp-type {}` matches ICMP, which has no ports",
                        t.value
                    )),
                );
                ok = false;
            }
            let icmp: Vec<&Proto> = protos
                .iter()
                .filter(|p| matches!(p, Proto::Icmp | Proto::Icmpv6))
                .collect();
            if icmp.is_empty() {
                self.diags.push(
                    Diagnostic::new(
                        codes::ICMP_TYPE_WITHOUT_ICMP,
                        "`-icmp-type` on a rule that is not icmp or icmpv6",
                    )
                    .at(t.span)
                    .hint("add `-p icmp` or `-p icmpv6`"),
                );
                ok = false;
            }
            for p in icmp {
                let fam = p.family().unwrap_or(Family::V4);
                if icmp_type(&t.value, fam).is_none() {
                    let other = if fam == Family::V4 {
                        "ICMPv6"
                    } else {
                        "ICMP (IPv4)"
                    };
                    self.diags.push(
                        Diagnostic::new(
                            codes::ICMP_TYPE_FAMILY,
                            format!("`{}` is an {other} type; it cannot match `-p {p}`", t.value),
                        )
                        .at(t.span)
                        .hint(format!(
                            "use `-p {}`",
                            if fam == Family::V4 { "icmpv6" } else { "icmp" }
                        )),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(())
    }
}

fn parse_ratelimit(v: &str) -> Result<RateLimitOpt, String> {
    let mut r = RateLimitOpt {
        enable: true,
        rate: 1,
        unit: "second".into(),
        burst: 5,
    };
    if v.is_empty() {
        return Err("missing value".into());
    }
    for kv in v.split(',') {
        let Some((k, val)) = kv.split_once('=') else {
            return Err(format!("expected `key=value`, found `{kv}`"));
        };
        match k {
            "enable" => {
                r.enable = match val {
                    "1" => true,
                    "0" => false,
                    _ => return Err(format!("`enable` takes 0 or 1, found `{val}`")),
                }
            }
            "rate" => {
                let (n, unit) = val.split_once('/').unwrap_or((val, "second"));
                r.rate = n
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("bad rate `{val}`"))?;
                if !["second", "minute", "hour", "day"].contains(&unit) {
                    return Err(format!(
                        "bad rate unit `{unit}` (second, minute, hour, day)"
                    ));
                }
                r.unit = unit.to_string();
            }
            "burst" => {
                r.burst = val
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("bad burst `{val}`"))?
            }
            _ => return Err(format!("unknown key `{k}` (enable, rate, burst)")),
        }
    }
    Ok(r)
}

/// `-p 0` / `-p ip` / `-p hopopt`: Proxmox's `pve-firewall` hands the name to
/// iptables, where protocol 0 means "any protocol"; rampart gives it that
/// meaning on both backends (the rule carries no protocol match at all).
fn proto_zero_warning(val: &str, at: rampart_types::Span) -> Diagnostic {
    Diagnostic::new(
        codes::PROTO_ZERO_MATCHES_ALL,
        format!("`-p {val}` matches every protocol, as in Proxmox"),
    )
    .at(at)
    .label("protocol 0: any protocol")
    .note(
        "pve-firewall passes protocol 0 to iptables, which reads it as \"all protocols\"; \
         rampart compiles the rule without a protocol match on both backends",
    )
    .hint("leave out `-p` to say so plainly, or name the protocol you mean")
}

//! An independent, deliberately strict checker of the Proxmox firewall format,
//! used by the tests to prove that generated (and hand-written example) sites
//! are valid: real macros spelled as in `macros.tsv`, defined aliases, sets
//! and groups, ports in range, no host bits, one family per rule, `-i netN`
//! only for NICs the guest has, guests on bridges their node has.
//!
//! It is test code, not rampart's parser: it exists so that the generator is
//! checked by something it does not share code with.

#![allow(dead_code, clippy::collapsible_match, clippy::collapsible_if)]

use rampart_types::SiteFiles;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

pub const MACROS_TSV: &str = include_str!("../macros.tsv");

/// Macro name (exact case) -> families it has rows for ("any", "ipv4", "ipv6").
pub fn macros() -> HashMap<String, BTreeSet<String>> {
    let mut m: HashMap<String, BTreeSet<String>> = HashMap::new();
    for line in MACROS_TSV.lines() {
        if line.starts_with('#') || line.starts_with("name\t") || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        m.entry(cols[0].to_string())
            .or_default()
            .insert(cols[5].to_string());
    }
    m
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fam {
    V4,
    V6,
}

fn fam_of(ip: &IpAddr) -> Fam {
    if ip.is_ipv4() {
        Fam::V4
    } else {
        Fam::V6
    }
}

/// A literal IP or CIDR without host bits; returns its family.
pub fn cidr(s: &str) -> Result<Fam, String> {
    let (ip, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = ip.parse().map_err(|_| format!("bad address `{s}`"))?;
    if let Some(l) = len {
        let l: u32 = l.parse().map_err(|_| format!("bad prefix `{s}`"))?;
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        if l > bits {
            return Err(format!("prefix too long `{s}`"));
        }
        let v: u128 = match ip {
            IpAddr::V4(a) => u32::from(a) as u128,
            IpAddr::V6(a) => u128::from(a),
        };
        let host_mask = if l == bits {
            0
        } else {
            (1u128 << (bits - l)) - 1
        };
        if v & host_mask != 0 {
            return Err(format!("host bits set in `{s}`"));
        }
    }
    Ok(fam_of(&ip))
}

fn range_or_cidr(s: &str) -> Result<Fam, String> {
    if let Some((a, b)) = s.split_once('-') {
        let a: IpAddr = a.parse().map_err(|_| format!("bad range start `{s}`"))?;
        let b: IpAddr = b.parse().map_err(|_| format!("bad range end `{s}`"))?;
        if fam_of(&a) != fam_of(&b) {
            return Err(format!("mixed range `{s}`"));
        }
        let ok = match (a, b) {
            (IpAddr::V4(a), IpAddr::V4(b)) => a <= b,
            (IpAddr::V6(a), IpAddr::V6(b)) => a <= b,
            _ => false,
        };
        if !ok {
            return Err(format!("backwards range `{s}`"));
        }
        return Ok(fam_of(&a));
    }
    cidr(s)
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic())
        && s.len() >= 2
        && s.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
}

#[derive(Default, Debug)]
pub struct Scope {
    pub aliases: HashMap<String, Fam>,
    pub ipsets: HashMap<String, Vec<String>>,
}

#[derive(Default, Debug)]
pub struct Parsed {
    pub options: Vec<(String, String)>,
    pub scope: Scope,
    /// (section, line number, text) of every rule line (disabled ones too).
    pub rules: Vec<(String, usize, String)>,
    pub groups: BTreeMap<String, Vec<(usize, String)>>,
    pub sections: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Zone {
    Cluster,
    Host,
    Guest,
}

const CLUSTER_OPTS: &[&str] = &[
    "enable",
    "policy_in",
    "policy_out",
    "policy_forward",
    "log_ratelimit",
    "ebtables",
];
const HOST_OPTS: &[&str] = &[
    "enable",
    "log_level_in",
    "log_level_out",
    "log_level_forward",
    "nosmurfs",
    "smurf_log_level",
    "tcpflags",
    "tcp_flags_log_level",
    "ndp",
    "nf_conntrack_max",
    "nf_conntrack_tcp_timeout_established",
    "nf_conntrack_tcp_timeout_syn_recv",
    "nf_conntrack_allow_invalid",
    "nf_conntrack_helpers",
    "protection_synflood",
    "protection_synflood_rate",
    "protection_synflood_burst",
    "log_nf_conntrack",
];
const GUEST_OPTS: &[&str] = &[
    "enable",
    "macfilter",
    "dhcp",
    "ndp",
    "radv",
    "ipfilter",
    "policy_in",
    "policy_out",
    "log_level_in",
    "log_level_out",
    "ips",
    "ips_queues",
];
const LOG_LEVELS: &[&str] = &[
    "nolog", "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

fn strip_comment(l: &str) -> &str {
    match l.find('#') {
        Some(i) => l[..i].trim(),
        None => l.trim(),
    }
}

pub fn parse_fw(text: &str, zone: Zone, errs: &mut Vec<String>, file: &str) -> Parsed {
    let mut p = Parsed::default();
    let mut section: Option<String> = None;
    let mut seen_sections = HashSet::new();
    let mut set_entries: HashSet<String> = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let ln = i + 1;
        let line = strip_comment(raw);
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            let inner = line
                .strip_prefix('[')
                .and_then(|l| l.strip_suffix(']'))
                .unwrap_or_else(|| {
                    errs.push(format!("{file}:{ln}: bad section header"));
                    ""
                });
            let lower = inner.to_ascii_lowercase();
            let ok = match zone {
                Zone::Cluster => {
                    matches!(lower.as_str(), "options" | "aliases" | "rules")
                        || lower.starts_with("ipset ")
                        || lower.starts_with("group ")
                }
                Zone::Guest => {
                    matches!(lower.as_str(), "options" | "aliases" | "rules")
                        || lower.starts_with("ipset ")
                }
                Zone::Host => matches!(lower.as_str(), "options" | "rules"),
            };
            if !ok {
                errs.push(format!("{file}:{ln}: section [{inner}] not allowed here"));
            }
            if !seen_sections.insert(lower.clone()) {
                errs.push(format!("{file}:{ln}: section [{inner}] twice"));
            }
            if let Some(name) = lower.strip_prefix("ipset ") {
                if !is_name(name) {
                    errs.push(format!("{file}:{ln}: bad ipset name `{name}`"));
                }
                p.scope.ipsets.insert(name.to_string(), Vec::new());
                set_entries.clear();
            }
            if let Some(name) = lower.strip_prefix("group ") {
                if !is_name(name) {
                    errs.push(format!("{file}:{ln}: bad group name `{name}`"));
                }
                p.groups.insert(name.to_string(), Vec::new());
            }
            p.sections.push(lower.clone());
            section = Some(lower);
            continue;
        }
        let Some(sec) = section.clone() else {
            errs.push(format!("{file}:{ln}: line outside any section"));
            continue;
        };
        if sec == "options" {
            let Some((k, v)) = line.split_once(':') else {
                errs.push(format!("{file}:{ln}: option without `:`"));
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            let allowed = match zone {
                Zone::Cluster => CLUSTER_OPTS,
                Zone::Host => HOST_OPTS,
                Zone::Guest => GUEST_OPTS,
            };
            if !allowed.contains(&k) {
                errs.push(format!("{file}:{ln}: unknown option `{k}`"));
            }
            if p.options.iter().any(|(o, _)| o == k) {
                errs.push(format!("{file}:{ln}: option `{k}` twice"));
            }
            check_option_value(k, v, errs, file, ln);
            p.options.push((k.to_string(), v.to_string()));
        } else if sec == "aliases" {
            let mut it = line.split_whitespace();
            let (Some(name), Some(val), None) = (it.next(), it.next(), it.next()) else {
                errs.push(format!("{file}:{ln}: alias needs a name and one address"));
                continue;
            };
            if !is_name(name) {
                errs.push(format!("{file}:{ln}: bad alias name `{name}`"));
            }
            match cidr(val) {
                Ok(f) => {
                    if p.scope.aliases.insert(name.to_lowercase(), f).is_some() {
                        errs.push(format!("{file}:{ln}: alias `{name}` twice"));
                    }
                }
                Err(e) => errs.push(format!("{file}:{ln}: {e}")),
            }
        } else if let Some(name) = sec.strip_prefix("ipset ") {
            if line.split_whitespace().count() != 1 {
                errs.push(format!("{file}:{ln}: one entry per line"));
            }
            if !set_entries.insert(line.trim_start_matches('!').to_string()) {
                errs.push(format!("{file}:{ln}: duplicate ipset entry `{line}`"));
            }
            p.scope.ipsets.get_mut(name).unwrap().push(line.to_string());
        } else if sec == "rules" {
            p.rules.push((sec, ln, line.to_string()));
        } else if let Some(name) = sec.strip_prefix("group ") {
            p.groups.get_mut(name).unwrap().push((ln, line.to_string()));
        }
    }
    p
}

fn check_option_value(k: &str, v: &str, errs: &mut Vec<String>, file: &str, ln: usize) {
    let bad = |errs: &mut Vec<String>| errs.push(format!("{file}:{ln}: bad value `{v}` for {k}"));
    match k {
        "enable"
        | "ebtables"
        | "nosmurfs"
        | "tcpflags"
        | "ndp"
        | "macfilter"
        | "dhcp"
        | "radv"
        | "ipfilter"
        | "ips"
        | "nf_conntrack_allow_invalid"
        | "protection_synflood"
        | "log_nf_conntrack" => {
            if v != "0" && v != "1" {
                bad(errs)
            }
        }
        "policy_in" | "policy_out" => {
            if !["ACCEPT", "DROP", "REJECT"].contains(&v) {
                bad(errs)
            }
        }
        "policy_forward" => {
            if !["ACCEPT", "DROP"].contains(&v) {
                bad(errs)
            }
        }
        k if k.starts_with("log_level") || k.ends_with("log_level") => {
            if !LOG_LEVELS.contains(&v) {
                bad(errs)
            }
        }
        "nf_conntrack_max"
        | "nf_conntrack_tcp_timeout_established"
        | "nf_conntrack_tcp_timeout_syn_recv"
        | "protection_synflood_rate"
        | "protection_synflood_burst" => {
            if v.parse::<u32>().is_err() {
                bad(errs)
            }
        }
        "nf_conntrack_helpers" => {
            for h in v.split(',') {
                if ![
                    "amanda",
                    "ftp",
                    "irc",
                    "netbios-ns",
                    "pptp",
                    "sane",
                    "sip",
                    "snmp",
                    "tftp",
                ]
                .contains(&h)
                {
                    bad(errs)
                }
            }
        }
        "ips_queues" => {
            let ok = v
                .split(':')
                .all(|x| !x.is_empty() && x.parse::<u16>().is_ok())
                && v.split(':').count() <= 2;
            if !ok {
                bad(errs)
            }
        }
        "log_ratelimit" => {
            for kv in v.split(',') {
                let Some((a, _)) = kv.split_once('=') else {
                    bad(errs);
                    continue;
                };
                if !["enable", "rate", "burst"].contains(&a) {
                    bad(errs)
                }
            }
        }
        _ => {}
    }
}

/// Everything a rule may reference, for one file.
pub struct Refs<'a> {
    pub cluster: &'a Scope,
    pub guest: Option<&'a Scope>,
    pub groups: &'a BTreeMap<String, Vec<(usize, String)>>,
    /// `Some(nics)` in a guest file, `None` elsewhere.
    pub nics: Option<&'a BTreeSet<String>>,
    pub zone: Zone,
    pub in_group: bool,
}

impl Refs<'_> {
    fn alias(&self, name: &str) -> Option<Fam> {
        let lname = name.to_lowercase();
        if let Some(n) = lname.strip_prefix("dc/") {
            return self.cluster.aliases.get(n).copied();
        }
        if let Some(n) = lname.strip_prefix("guest/") {
            return self.guest?.aliases.get(n).copied();
        }
        if let Some(g) = self.guest {
            if let Some(f) = g.aliases.get(&lname) {
                return Some(*f);
            }
        }
        if lname == "local_network" {
            return Some(Fam::V4);
        }
        self.cluster.aliases.get(&lname).copied()
    }
    fn ipset(&self, name: &str) -> bool {
        let lname = name.to_lowercase();
        if let Some(n) = lname.strip_prefix("dc/") {
            return self.cluster.ipsets.contains_key(n);
        }
        if let Some(n) = lname.strip_prefix("guest/") {
            return self.guest.is_some_and(|g| g.ipsets.contains_key(n));
        }
        self.guest.is_some_and(|g| g.ipsets.contains_key(&lname))
            || self.cluster.ipsets.contains_key(&lname)
    }
}

/// Checks the entries of every set of `scope` (aliases looked up in `refs`).
pub fn check_sets(scope: &Scope, refs: &Refs, errs: &mut Vec<String>, file: &str) {
    for (name, entries) in &scope.ipsets {
        for e in entries {
            let v = e.trim_start_matches('!');
            if v.contains(['.', ':']) {
                if let Err(m) = cidr(v) {
                    errs.push(format!("{file}: set {name}: {m}"));
                }
            } else if refs.alias(v).is_none() {
                errs.push(format!("{file}: set {name}: undefined alias `{v}`"));
            }
        }
    }
}

const SERVICES: &[(&str, u32)] = &[("ssh", 22), ("http", 80), ("https", 443)];

fn ports(v: &str) -> Result<(), String> {
    if v.is_empty() || v.split(',').any(|x| x.is_empty()) {
        return Err(format!("empty port in `{v}`"));
    }
    for item in v.split(',') {
        let (a, b) = item.split_once(':').unwrap_or((item, item));
        let num = |x: &str| -> Result<u32, String> {
            if let Some((_, n)) = SERVICES.iter().find(|(s, _)| *s == x) {
                return Ok(*n);
            }
            let n: u32 = x.parse().map_err(|_| format!("bad port `{x}`"))?;
            if !(1..=65535).contains(&n) {
                return Err(format!("port out of range `{x}`"));
            }
            Ok(n)
        };
        if num(a)? > num(b)? {
            return Err(format!("backwards port range `{item}`"));
        }
    }
    Ok(())
}

/// Checks one rule line (with or without the leading `|`).
pub fn check_rule(
    line: &str,
    refs: &Refs,
    macros: &HashMap<String, BTreeSet<String>>,
) -> Result<(), String> {
    let line = line.strip_prefix('|').unwrap_or(line).trim();
    let toks: Vec<&str> = line.split_whitespace().collect();
    let dir = *toks.first().ok_or("empty rule")?;
    if dir == "GROUP" {
        if refs.in_group {
            return Err("GROUP inside a group".into());
        }
        let name = toks.get(1).ok_or("GROUP without a name")?;
        if !refs.groups.contains_key(&name.to_lowercase()) {
            return Err(format!("undefined group `{name}`"));
        }
        match &toks[2..] {
            [] => {}
            ["-i", n] => check_iface(n, refs)?,
            other => return Err(format!("unexpected after GROUP: {other:?}")),
        }
        return Ok(());
    }
    match (dir, refs.zone) {
        ("IN" | "OUT", _) => {}
        ("FORWARD", Zone::Cluster | Zone::Host) => {}
        _ => return Err(format!("direction `{dir}` not allowed here")),
    }
    let act = *toks.get(1).ok_or("no action")?;
    let mut fams: BTreeSet<String> = BTreeSet::new();
    let mut is_macro = false;
    let action = if let Some(open) = act.find('(') {
        let name = &act[..open];
        let a = act[open + 1..]
            .strip_suffix(')')
            .ok_or("bad macro syntax")?;
        let rows = macros
            .get(name)
            .ok_or_else(|| format!("unknown macro `{name}` (exact case)"))?;
        if !rows.contains("any") && rows.len() == 1 {
            fams.insert(rows.iter().next().unwrap().clone());
        }
        is_macro = true;
        a
    } else {
        act
    };
    if !["ACCEPT", "DROP", "REJECT"].contains(&action) {
        return Err(format!("bad action `{action}`"));
    }
    if dir == "FORWARD" && action == "REJECT" {
        return Err("REJECT on FORWARD".into());
    }
    let mut opts: HashMap<&str, &str> = HashMap::new();
    let mut i = 2;
    while i < toks.len() {
        let k = toks[i].trim_start_matches('-');
        let v = *toks
            .get(i + 1)
            .ok_or_else(|| format!("option `{k}` without value"))?;
        if opts.insert(k, v).is_some() {
            return Err(format!("option `{k}` twice"));
        }
        i += 2;
    }
    for (k, v) in &opts {
        match *k {
            "i" => check_iface(v, refs)?,
            "source" | "dest" => {
                if let Some(f) = address(v, refs)? {
                    fams.insert(
                        match f {
                            Fam::V4 => "ipv4",
                            Fam::V6 => "ipv6",
                        }
                        .into(),
                    );
                }
            }
            "p" => match *v {
                "tcp" | "udp" => {}
                "icmp" => {
                    fams.insert("ipv4".into());
                }
                "icmpv6" | "ipv6-icmp" => {
                    fams.insert("ipv6".into());
                }
                other => return Err(format!("unexpected protocol `{other}`")),
            },
            "dport" | "sport" => ports(v)?,
            "icmp-type" => {}
            "log" => {
                if !LOG_LEVELS.contains(v) {
                    return Err(format!("bad log level `{v}`"));
                }
            }
            other => return Err(format!("unknown option `-{other}`")),
        }
    }
    if is_macro
        && (opts.contains_key("p") || opts.contains_key("dport") || opts.contains_key("sport"))
    {
        return Err("macro with its own -p/-dport/-sport".into());
    }
    if (opts.contains_key("dport") || opts.contains_key("sport"))
        && !matches!(opts.get("p"), Some(&"tcp") | Some(&"udp"))
    {
        return Err("ports without -p tcp/udp".into());
    }
    if opts.contains_key("icmp-type") && !matches!(opts.get("p"), Some(&"icmp") | Some(&"icmpv6")) {
        return Err("-icmp-type without -p icmp/icmpv6".into());
    }
    if fams.len() > 1 {
        return Err(format!("mixed families {fams:?}"));
    }
    Ok(())
}

fn check_iface(n: &str, refs: &Refs) -> Result<(), String> {
    match refs.nics {
        Some(nics) => {
            if !nics.contains(n) {
                return Err(format!("guest has no NIC `{n}`"));
            }
        }
        None => {
            if n.starts_with("net") && refs.zone == Zone::Host {
                return Err(format!("`-i {n}` in a host rule"));
            }
        }
    }
    Ok(())
}

/// The family of an address expression (`None`: an ipset, either family).
fn address(v: &str, refs: &Refs) -> Result<Option<Fam>, String> {
    if let Some(set) = v.strip_prefix('+') {
        if !refs.ipset(set) {
            return Err(format!("undefined ipset `{set}`"));
        }
        return Ok(None);
    }
    if !v.contains(['.', ':']) {
        return refs
            .alias(v)
            .map(Some)
            .ok_or_else(|| format!("undefined alias `{v}`"));
    }
    let mut fam = None;
    for item in v.split(',') {
        let f = range_or_cidr(item)?;
        if fam.is_some_and(|x| x != f) {
            return Err(format!("mixed families in `{v}`"));
        }
        fam = Some(f);
    }
    Ok(fam)
}

/// Nodes with their bridges, guests with their NIC names.
#[derive(Default, Debug)]
pub struct Topology {
    pub bridges: HashMap<String, BTreeSet<String>>,
    pub guest_nics: BTreeMap<u64, BTreeSet<String>>,
}

/// Checks a whole site with a `site.toml`; returns every problem found and
/// the number of rule lines per file.
pub fn check_site(site: &SiteFiles) -> (Vec<String>, BTreeMap<String, usize>) {
    let mut errs = Vec::new();
    let text = |p: &str| String::from_utf8(site.get(p).unwrap_or_default().to_vec()).unwrap();

    // site.toml: nodes, bridges, guests, NICs
    let toml: toml::Value = toml::from_str(&text("site.toml")).expect("site.toml parses");
    let mut bridges: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut used_ips: HashSet<IpAddr> = HashSet::new();
    for n in toml
        .get("node")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        let name = n["name"].as_str().unwrap().to_string();
        let br: BTreeSet<String> = n["bridges"].as_table().unwrap().keys().cloned().collect();
        for addrs in n["bridges"].as_table().unwrap().values() {
            for a in addrs.as_array().unwrap() {
                let a = a.as_str().unwrap();
                match a.split('/').next().unwrap().parse::<IpAddr>() {
                    Err(_) => errs.push(format!("site.toml: node {name}: bad address {a}")),
                    Ok(ip) => {
                        if !used_ips.insert(ip) {
                            errs.push(format!("site.toml: node {name}: address {ip} used twice"));
                        }
                    }
                }
            }
        }
        if bridges.insert(name.clone(), br).is_some() {
            errs.push(format!("site.toml: node {name} twice"));
        }
    }
    let mut guest_nics: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let mut macs = HashSet::new();
    for g in toml
        .get("guest")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        let id = g["id"].as_integer().unwrap() as u64;
        let node = g["node"].as_str().unwrap();
        let kind = g["kind"].as_str().unwrap();
        if kind != "vm" && kind != "ct" {
            errs.push(format!("site.toml: guest {id}: bad kind {kind}"));
        }
        let Some(br) = bridges.get(node) else {
            errs.push(format!("site.toml: guest {id} on unknown node {node}"));
            continue;
        };
        let mut nics = BTreeSet::new();
        for nic in g["nics"].as_array().unwrap() {
            let b = nic["bridge"].as_str().unwrap();
            if !br.contains(b) {
                errs.push(format!("site.toml: guest {id} on unknown bridge {b}"));
            }
            let mac = nic["mac"].as_str().unwrap().to_ascii_lowercase();
            if !macs.insert(mac.clone()) {
                errs.push(format!("site.toml: MAC {mac} twice"));
            }
            for a in nic["addresses"].as_array().unwrap() {
                let a = a.as_str().unwrap();
                match a.split('/').next().unwrap().parse::<IpAddr>() {
                    Err(_) => errs.push(format!("site.toml: guest {id}: bad address {a}")),
                    Ok(ip) => {
                        if !used_ips.insert(ip) {
                            errs.push(format!("site.toml: guest {id}: address {ip} used twice"));
                        }
                    }
                }
            }
            nics.insert(nic["name"].as_str().unwrap().to_string());
        }
        if guest_nics.insert(id, nics).is_some() {
            errs.push(format!("site.toml: guest id {id} twice"));
        }
    }
    let topo = Topology {
        bridges,
        guest_nics,
    };
    let (more, counts) = check_fw(site, &topo);
    errs.extend(more);
    (errs, counts)
}

/// Checks every `.fw` file of a site against a topology.
pub fn check_fw(site: &SiteFiles, topo: &Topology) -> (Vec<String>, BTreeMap<String, usize>) {
    let mut errs = Vec::new();
    let mut counts = BTreeMap::new();
    let macros = macros();
    let text = |p: &str| String::from_utf8(site.get(p).unwrap_or_default().to_vec()).unwrap();
    let (bridges, guest_nics) = (&topo.bridges, &topo.guest_nics);

    // cluster.fw
    let cluster = parse_fw(
        &text("firewall/cluster.fw"),
        Zone::Cluster,
        &mut errs,
        "cluster.fw",
    );
    let crefs = Refs {
        cluster: &cluster.scope,
        guest: None,
        groups: &cluster.groups,
        nics: None,
        zone: Zone::Cluster,
        in_group: false,
    };
    check_sets(&cluster.scope, &crefs, &mut errs, "cluster.fw");
    for (_, ln, r) in &cluster.rules {
        if let Err(e) = check_rule(r, &crefs, &macros) {
            errs.push(format!("cluster.fw:{ln}: {e}: {r}"));
        }
    }
    counts.insert("firewall/cluster.fw".to_string(), cluster.rules.len());
    let grefs = Refs {
        in_group: true,
        ..crefs
    };
    for (name, rules) in &cluster.groups {
        for (ln, r) in rules {
            // group rules may land in any guest: only IN/OUT, no -i netN
            if let Err(e) = check_rule(r, &grefs, &macros) {
                errs.push(format!("cluster.fw:{ln}: group {name}: {e}: {r}"));
            }
        }
    }

    for (path, bytes) in &site.files {
        let file = path.as_str();
        let body = String::from_utf8(bytes.clone()).unwrap();
        if let Some(node) = file
            .strip_prefix("nodes/")
            .and_then(|r| r.strip_suffix("/host.fw"))
        {
            if !bridges.contains_key(node) {
                errs.push(format!("{file}: host.fw of an unknown node"));
            }
            let p = parse_fw(&body, Zone::Host, &mut errs, file);
            let refs = Refs {
                zone: Zone::Host,
                ..crefs
            };
            for (_, ln, r) in &p.rules {
                if let Err(e) = check_rule(r, &refs, &macros) {
                    errs.push(format!("{file}:{ln}: {e}: {r}"));
                }
            }
            counts.insert(file.to_string(), p.rules.len());
        } else if let Some(id) = file
            .strip_prefix("firewall/")
            .and_then(|r| r.strip_suffix(".fw"))
            .and_then(|r| r.parse::<u64>().ok())
        {
            let Some(nics) = guest_nics.get(&id) else {
                errs.push(format!("{file}: no such guest in site.toml"));
                continue;
            };
            let p = parse_fw(&body, Zone::Guest, &mut errs, file);
            for set in p.scope.ipsets.keys() {
                if let Some(nic) = set.strip_prefix("ipfilter-") {
                    if !nics.contains(nic) {
                        errs.push(format!("{file}: {set} for a NIC the guest lacks"));
                    }
                }
            }
            let refs = Refs {
                cluster: &cluster.scope,
                guest: Some(&p.scope),
                groups: &cluster.groups,
                nics: Some(nics),
                zone: Zone::Guest,
                in_group: false,
            };
            check_sets(&p.scope, &refs, &mut errs, file);
            for (_, ln, r) in &p.rules {
                if let Err(e) = check_rule(r, &refs, &macros) {
                    errs.push(format!("{file}:{ln}: {e}: {r}"));
                }
            }
            counts.insert(file.to_string(), p.rules.len());
        }
    }
    (errs, counts)
}

/// A NIC as a Proxmox guest `.conf` describes it.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct ConfNic {
    pub name: String,
    pub bridge: String,
    pub mac: String,
    pub firewall: bool,
    /// Containers only: `ip=` and `ip6=` (not dhcp/auto).
    pub addresses: BTreeSet<String>,
}

/// (vmid) -> (node, kind, NICs) from nodes/<node>/{qemu-server,lxc}/<vmid>.conf
pub fn conf_guests(site: &SiteFiles) -> BTreeMap<u64, (String, String, Vec<ConfNic>)> {
    let mut out = BTreeMap::new();
    for (path, bytes) in &site.files {
        let parts: Vec<&str> = path.split('/').collect();
        let (node, kind, file) = match parts.as_slice() {
            ["nodes", node, "qemu-server", f] => (*node, "vm", *f),
            ["nodes", node, "lxc", f] => (*node, "ct", *f),
            _ => continue,
        };
        let id: u64 = file.strip_suffix(".conf").unwrap().parse().unwrap();
        let mut nics = Vec::new();
        for line in std::str::from_utf8(bytes).unwrap().lines() {
            if line.starts_with('[') {
                break; // snapshots follow
            }
            let Some((key, val)) = line.split_once(": ") else {
                continue;
            };
            if !(key.starts_with("net") && key[3..].parse::<u32>().is_ok()) {
                continue;
            }
            let mut nic = ConfNic {
                name: key.to_string(),
                bridge: String::new(),
                mac: String::new(),
                firewall: false,
                addresses: BTreeSet::new(),
            };
            for (i, kv) in val.split(',').enumerate() {
                let (k, v) = kv.split_once('=').unwrap();
                match k {
                    "bridge" => nic.bridge = v.to_string(),
                    "firewall" => nic.firewall = v == "1",
                    "hwaddr" => nic.mac = v.to_ascii_uppercase(),
                    "ip" | "ip6" if v != "dhcp" && v != "auto" && v != "manual" => {
                        nic.addresses.insert(v.to_string());
                    }
                    _ if i == 0 && kind == "vm" => nic.mac = v.to_ascii_uppercase(),
                    _ => {}
                }
            }
            assert!(!nic.bridge.is_empty(), "{path}: {key} without bridge");
            assert!(nic.mac.len() == 17, "{path}: {key} without MAC");
            nics.push(nic);
        }
        out.insert(id, (node.to_string(), kind.to_string(), nics));
    }
    out
}

/// Topology of a bare /etc/pve tree: nodes from corosync.conf, guests and
/// their NICs from the .conf files, bridges as the guests use them.
pub fn pve_topology(site: &SiteFiles) -> Topology {
    let mut topo = Topology::default();
    let corosync =
        String::from_utf8(site.get("corosync.conf").expect("corosync.conf").to_vec()).unwrap();
    for line in corosync.lines() {
        if let Some(n) = line.trim().strip_prefix("name: ") {
            if corosync.contains("nodelist") {
                topo.bridges
                    .entry(n.trim().to_string())
                    .or_default()
                    .insert("vmbr0".into());
            }
        }
    }
    for (id, (node, _, nics)) in conf_guests(site) {
        let br = topo
            .bridges
            .get_mut(&node)
            .unwrap_or_else(|| panic!("guest {id} on {node}, not in corosync.conf"));
        for n in &nics {
            br.insert(n.bridge.clone());
        }
        topo.guest_nics
            .insert(id, nics.iter().map(|n| n.name.clone()).collect());
    }
    topo
}

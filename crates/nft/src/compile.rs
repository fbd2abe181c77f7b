//! IR -> ruleset model for one node.

use crate::caps::Caps;
use crate::model::*;
use crate::sets;
use rampart_resolve::ir::{self, AddrMatch, Guest, Nic, Platform, SetId};
use rampart_types::{
    codes, Action, Diagnostic, Diagnostics, Direction, Family, IpRange, LogLevel, Origin,
    PortRange, Proto,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// `kept` is the (range, nomatch) list of the `family` entries of `entries`.
fn same_entries(kept: &[(IpRange, bool)], entries: &[ir::SetEntry], family: Family) -> bool {
    let mut kept = kept.iter();
    for e in entries {
        if e.range.family() != family {
            continue;
        }
        match kept.next() {
            Some(&(r, n)) if r == e.range && n == e.nomatch => {}
            _ => return false,
        }
    }
    kept.next().is_none()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Name of the tables rampart owns (`inet rampart`, `bridge rampart`).
pub const TABLE: &str = "rampart";
/// Mark bits holding the id of the guest NIC a bridged packet came in on.
pub const IN_MASK: u32 = 0xffff_0000;
/// Mark bit set on every packet the bridge forwards (bridge forward hook).
pub const BRIDGED: u32 = 0x0000_8000;
/// Mark bits holding the id of the guest NIC a bridged packet goes out on.
pub const OUT_MASK: u32 = 0x0000_7fff;
/// nflog group of every log rule (pvefw-logger listens on group 0).
pub const NFLOG_GROUP: u16 = 0;
/// Longest `log prefix` nft accepts (bytes).
pub const LOG_PREFIX_MAX: usize = 127;
/// Priority of the bridge-family chains: before br_netfilter (0 / -1).
pub const BRIDGE_PRIORITY: i32 = -200;
/// Priority of the inet chains: `filter`, after conntrack (-200).
pub const INET_PRIORITY: i32 = 0;

/// A node's compiled plan: the ruleset (model and text) and the sysctls.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub node: ir::NodeName,
    pub ruleset: Ruleset,
    /// The `nft -f` script: one atomic transaction.
    pub script: String,
    pub sysctls: Vec<Sysctl>,
    /// The guest NICs that are filtered, with the id their packets carry
    /// in the mark.
    pub nics: Vec<NicSlot>,
    /// Warnings (never errors: errors fail the compile).
    pub warnings: Diagnostics,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Sysctl {
    pub key: String,
    pub value: String,
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NicSlot {
    pub id: u32,
    pub guest: u32,
    pub nic: ir::NicName,
    pub ifname: ir::IfaceName,
    pub bridge: ir::IfaceName,
}

/// Compile `node` of `site` for the kernel rampart assumes by default
/// ([`Caps::default`]).
pub fn compile(site: &ir::Site, node: &str) -> Result<Plan, Diagnostics> {
    compile_with(site, node, &Caps::default())
}

/// Compile `node` of `site` for a kernel with `caps` (see [`crate::caps`]).
pub fn compile_with(site: &ir::Site, node: &str, caps: &Caps) -> Result<Plan, Diagnostics> {
    compile_cached(site, node, caps, &SiteCache::new(site))
}

/// What the nodes of one site share, so that compiling many of them does
/// the site-wide work once: the nft sets made of the site's ipsets (the
/// cluster `blacklist`, the nodes' list, tenant sets...), each computed and
/// printed once and shared by every plan that names it.
///
/// Build it once per site (it must be used with that site only) and pass it
/// to [`compile_cached`], or let [`compile_all`] do both.
pub struct SiteCache {
    /// Per [`SetId`], the set's v4 and v6 nft set.
    sets: Vec<[OnceLock<Set>; 2]>,
    /// Indices into `site.guests` of each node's guests, in site order.
    guests: std::collections::HashMap<ir::NodeName, Vec<usize>>,
    /// What the previous revision's compile kept (taken as used), and what
    /// this one keeps; `None`: keep nothing (a one-off compile).
    memo: Option<(Mutex<SetMemo>, Mutex<SetMemo>)>,
}

/// What a [`SiteCache`] computed that the next revision can reuse where its
/// inputs are equal: each set's elements (and their rendered `nft` text),
/// by kernel name and family, with the ipset entries they were made of —
/// a set whose entries are unchanged is not merged and printed again —
/// and each chain's merged rules (see `crate::merge`), by node and chain,
/// with the rules they were merged from. Take it from one revision's cache
/// with [`SiteCache::into_memo`], give it to the next one's with
/// [`SiteCache::with_memo`]. Holds what the last compile used, nothing
/// older.
#[derive(Default)]
pub struct SetMemo {
    sets: HashMap<(String, Family), MemoSet>,
    merged: HashMap<(String, String), MemoChain>,
}

struct MemoChain {
    /// The chain's rules before merging.
    input: Vec<Rule>,
    /// After (`None` while the plan that holds them is out).
    output: Option<Vec<Rule>>,
    /// Where the output went (heap address and length of the list).
    lent: (usize, usize),
}

impl SetMemo {
    /// Take back the merged rules of the chains of `plan`, the plan of
    /// `node` compiled last with this memo, instead of keeping a copy:
    /// only the very lists handed out (same heap address and length).
    /// The caller passes a plan nothing changed after compiling (no
    /// extras, no profile additions); anything else is merged again.
    pub fn recycle(&mut self, node: &str, plan: Plan) {
        for t in plan.ruleset.tables {
            if t.family != TableFamily::Inet {
                continue;
            }
            for c in t.chains {
                if let Some(m) = self.merged.get_mut(&(node.to_owned(), c.name)) {
                    if m.output.is_none() && (c.rules.as_ptr() as usize, c.rules.len()) == m.lent {
                        m.output = Some(c.rules);
                    }
                }
            }
        }
    }
}

struct MemoSet {
    /// The ipset's entries of the family: what the elements are made of.
    entries: Vec<(IpRange, bool)>,
    elements: Elements,
    interval: bool,
}

impl SiteCache {
    pub fn new(site: &ir::Site) -> Self {
        Self::build(site, None)
    }

    /// [`SiteCache::new`], reusing what `memo` kept of the previous
    /// revision where the inputs are equal (the plans are the same).
    pub fn with_memo(site: &ir::Site, memo: SetMemo) -> Self {
        Self::build(site, Some(memo))
    }

    fn build(site: &ir::Site, memo: Option<SetMemo>) -> Self {
        let mut guests: HashMap<ir::NodeName, Vec<usize>> = Default::default();
        for (i, g) in site.guests.iter().enumerate() {
            guests.entry(g.node.clone()).or_default().push(i);
        }
        SiteCache {
            sets: site.sets.iter().map(|_| Default::default()).collect(),
            guests,
            memo: memo.map(|m| (Mutex::new(m), Mutex::new(SetMemo::default()))),
        }
    }

    /// What this revision's compiles computed, for the next revision's
    /// [`SiteCache::with_memo`].
    pub fn into_memo(self) -> SetMemo {
        self.memo
            .map(|(_, new)| new.into_inner().unwrap_or_else(|e| e.into_inner()))
            .unwrap_or_default()
    }

    /// `rules` of chain `chain` of `node`, merged (`crate::merge`).
    fn merged(&self, node: &str, chain: &str, rules: Vec<Rule>) -> Vec<Rule> {
        let Some((old, new)) = &self.memo else {
            return crate::merge::merge(rules);
        };
        let key = (node.to_owned(), chain.to_owned());
        let prev = lock(old).merged.remove(&key);
        let (input, out) = match prev {
            Some(m) if m.output.is_some() && m.input == rules => {
                (m.input, m.output.unwrap_or_default())
            }
            _ => {
                let o = crate::merge::merge(rules.clone());
                (rules, o)
            }
        };
        // The output is lent to the plan: given back by `SetMemo::recycle`.
        let lent = (out.as_ptr() as usize, out.len());
        lock(new).merged.insert(
            key,
            MemoChain {
                input,
                output: None,
                lent,
            },
        );
        out
    }

    /// The guests on `node`, in site order (as [`ir::Site::guests_on`]).
    fn guests_on<'s>(&'s self, site: &'s ir::Site, node: &str) -> impl Iterator<Item = &'s Guest> {
        self.guests
            .get(node)
            .into_iter()
            .flatten()
            .map(move |i| &site.guests[*i])
    }

    fn set(&self, site: &ir::Site, id: SetId, family: Family) -> &Set {
        let fi = if family == Family::V4 { 0 } else { 1 };
        self.sets[id.0 as usize][fi].get_or_init(|| {
            let s = site.set(id);
            let of_family = || s.entries_of(family).map(|e| (e.range, e.nomatch));
            let key = (s.kernel_name.to_string(), family);
            let prev = self
                .memo
                .as_ref()
                .and_then(|(old, _)| lock(old).sets.remove(&key))
                .filter(|m| same_entries(&m.entries, &s.entries, family));
            let m = match prev {
                Some(m) => m,
                None => {
                    let ranges = sets::effective(s, family);
                    MemoSet {
                        entries: if self.memo.is_some() {
                            of_family().collect()
                        } else {
                            Vec::new()
                        },
                        interval: sets::needs_interval(&ranges),
                        elements: ranges.into_iter().map(Key::Addr).collect(),
                    }
                }
            };
            let (elements, interval) = (m.elements.clone(), m.interval);
            if let Some((_, new)) = &self.memo {
                lock(new).sets.insert(key, m);
            }
            Set {
                name: format!(
                    "{}_{}",
                    s.kernel_name,
                    if family == Family::V4 { "v4" } else { "v6" }
                ),
                key: KeyType::of(family),
                interval,
                dynamic: None,
                elements,
                comment: format!("ipset {} ({})", s.name, s.origin.render(&site.sources)),
            }
        })
    }
}

/// Compile every node of `site` (in site order), sharing one [`SiteCache`]
/// and using the machine's cores. The result is the same as compiling each
/// node with [`compile_with`].
pub fn compile_all(site: &ir::Site, caps: &Caps) -> Vec<(ir::NodeName, Result<Plan, Diagnostics>)> {
    let cache = SiteCache::new(site);
    let n = site.nodes.len();
    let threads = std::thread::available_parallelism()
        .map(|t| t.get())
        .unwrap_or(1)
        .min(n.max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<Result<Plan, Diagnostics>>> = (0..n).map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        done.push((i, compile_cached(site, &site.nodes[i].name, caps, &cache)));
                    }
                    done
                })
            })
            .collect();
        for w in workers {
            for (i, r) in w.join().expect("a compile thread panicked") {
                results[i] = Some(r);
            }
        }
    });
    site.nodes
        .iter()
        .zip(results)
        .map(|(node, r)| (node.name.clone(), r.expect("every node compiled")))
        .collect()
}

/// [`compile_with`], sharing the site-wide work in `cache` (built for `site`).
pub fn compile_cached(
    site: &ir::Site,
    node: &str,
    caps: &Caps,
    cache: &SiteCache,
) -> Result<Plan, Diagnostics> {
    let Some(n) = site.node(node) else {
        let mut d = Diagnostics::new();
        let names: Vec<&str> = site.nodes.iter().map(|n| n.name.as_str()).collect();
        d.push(
            Diagnostic::new(codes::UNKNOWN_NODE, format!("no node `{node}` in the site"))
                .note(format!("nodes: {}", names.join(", "))),
        );
        return Err(d);
    };
    let mut cx = Cx {
        site,
        cache,
        node: n,
        caps,
        diags: Diagnostics::new(),
        warnings: Diagnostics::new(),
        sets: BTreeMap::new(),
    };
    let plan = cx.build();
    if cx.diags.has_errors() {
        let mut d = cx.diags;
        d.sort();
        return Err(d);
    }
    Ok(plan)
}

struct Cx<'a> {
    site: &'a ir::Site,
    cache: &'a SiteCache,
    node: &'a ir::Node,
    caps: &'a Caps,
    diags: Diagnostics,
    warnings: Diagnostics,
    /// Named sets created so far, by name.
    sets: BTreeMap<String, Set>,
}

/// How a policy chain spells ACCEPT: `return` to let the caller go on (the
/// receiver's IN after the sender's OUT), or a queue for IPS.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    /// Host rules name host interfaces: `iifname` for IN/FORWARD, `oifname` for OUT.
    host: bool,
    accept: &'a Verdict,
    /// Log prefix's VMID and chain: `0:PVEFW-HOST-IN` / `100:tap100i0-IN`.
    log_tag: &'a str,
}

fn l4(p: &Proto) -> Match {
    Match::L4Proto {
        number: p.number(),
        name: p.name().to_string(),
    }
}

fn reject_chain() -> Verdict {
    Verdict::Jump("reject-packet".into())
}

impl<'a> Cx<'a> {
    fn origin(&self, o: &Origin) -> String {
        o.render(&self.site.sources)
    }

    fn error(&mut self, o: &Origin, msg: String, hint: Option<&str>) {
        let mut d = Diagnostic::new(codes::NOT_EXPRESSIBLE, msg);
        if let Some(s) = o.span() {
            d = d.at(s);
        }
        if let Some(h) = hint {
            d = d.hint(h);
        }
        self.diags.push(d.note(format!("from {}", self.origin(o))));
    }

    /// The name of the nft set holding `id`'s entries of `family`, created on first use.
    fn set_ref(&mut self, id: SetId, family: Family) -> String {
        let set = self.cache.set(self.site, id, family);
        if !self.sets.contains_key(&set.name) {
            self.sets.insert(set.name.clone(), set.clone());
        }
        set.name.clone()
    }

    fn addr_match(&mut self, a: &AddrMatch, family: Family, dir: Dir) -> Option<Match> {
        let target = match a {
            AddrMatch::Set(id) => AddrTarget::Set(self.set_ref(*id, family)),
            AddrMatch::List(l) => {
                let m = sets::merge(family, l.iter().copied());
                if m.is_empty() {
                    return None;
                }
                AddrTarget::Literal(m)
            }
        };
        Some(Match::Addr {
            family,
            dir,
            neg: false,
            target,
        })
    }

    /// The match lists of an IR rule: one per family it applies to
    /// (a rule naming a set in both families becomes two nft rules).
    fn rule_matches(&mut self, r: &ir::Rule, ctx: Ctx) -> Vec<Vec<Match>> {
        let is_set = |a: &Option<AddrMatch>| matches!(a, Some(AddrMatch::Set(_)));
        let families: Vec<Option<Family>> = match r.family {
            Some(f) => vec![Some(f)],
            None if is_set(&r.source) || is_set(&r.dest) => {
                vec![Some(Family::V4), Some(Family::V6)]
            }
            None => {
                let lf = |a: &Option<AddrMatch>| match a {
                    Some(AddrMatch::List(l)) => l.first().map(|x| x.family()),
                    _ => None,
                };
                vec![lf(&r.source).or(lf(&r.dest))]
            }
        };
        let mut out = Vec::new();
        'fam: for f in families {
            let mut ms = Vec::new();
            if let Some(i) = &r.iface {
                if ctx.host {
                    let dir = if r.dir == Direction::Out {
                        Dir::Dst
                    } else {
                        Dir::Src
                    };
                    // iptables' trailing `+` wildcard (`eth+`) is nft's
                    // `eth*`; a lone `+` (any interface) matches every
                    // packet, so it needs no match at all.
                    match i.strip_suffix('+') {
                        Some("") => {}
                        Some(prefix) => ms.push(Match::Ifname {
                            dir,
                            name: format!("{prefix}*"),
                        }),
                        None => ms.push(Match::Ifname {
                            dir,
                            name: i.to_string(),
                        }),
                    }
                }
            }
            let mut implied = false;
            for (a, d) in [(&r.source, Dir::Src), (&r.dest, Dir::Dst)] {
                if let Some(a) = a {
                    let Some(f) = f else { continue };
                    match self.addr_match(a, f, d) {
                        Some(m) => {
                            ms.push(m);
                            implied = true;
                        }
                        None => continue 'fam,
                    }
                }
            }
            if let Some(f) = f {
                if !implied && r.proto.as_ref().and_then(|p| p.family()).is_none() {
                    ms.push(Match::NfProto(f));
                }
            }
            if let Some(p) = &r.proto {
                match p {
                    Proto::Icmp | Proto::Icmpv6 => {
                        let v6 = *p == Proto::Icmpv6;
                        match &r.icmp_type {
                            Some(t) => ms.push(Match::Icmp {
                                v6,
                                types: vec![t.ty],
                                code: t.code,
                            }),
                            None => ms.push(l4(p)),
                        }
                    }
                    _ => {
                        let n = p.number();
                        // Protocol 0 is "any protocol" (iptables' `-p 0`,
                        // Proxmox's meaning; resolve already drops it).
                        if n != 0
                            && (!(n == 6 || n == 17) || (r.dport.is_empty() && r.sport.is_empty()))
                        {
                            ms.push(l4(p));
                        }
                        if !r.sport.is_empty() {
                            ms.push(Match::Port {
                                proto: n,
                                dir: Dir::Src,
                                ports: norm_ports(&r.sport),
                            });
                        }
                        if !r.dport.is_empty() {
                            ms.push(Match::Port {
                                proto: n,
                                dir: Dir::Dst,
                                ports: norm_ports(&r.dport),
                            });
                        }
                    }
                }
            }
            out.push(ms);
        }
        out
    }

    /// `limit` + `log` statements of a logged rule. The prefix is
    /// pve-firewall's (`:VMID:LEVEL:CHAIN: ACTION: `, `policy ACTION: ` for a
    /// policy; see `rampart_types::fwlog`) followed by the rule's origin, so
    /// a log reader maps every line back to the line that produced it; cut
    /// to nft's 127-byte prefix limit.
    fn log_stmts(
        &self,
        level: LogLevel,
        tag: &str,
        verdict: &str,
        origin: &str,
    ) -> Option<Vec<Stmt>> {
        let sys = level.syslog()?;
        let mut v = Vec::new();
        let rl = &self.site.cluster.log_ratelimit;
        if rl.enable {
            v.push(Stmt::Limit(Limit {
                rate: rl.rate,
                unit: rl.unit.clone(),
                burst: rl.burst,
            }));
        }
        let (vmid, chain) = tag.split_once(':').unwrap_or(("0", tag));
        let prefix = rampart_types::fwlog::prefix(
            vmid.parse().unwrap_or(0),
            sys,
            chain,
            verdict,
            origin,
            LOG_PREFIX_MAX,
        );
        v.push(Stmt::Log {
            prefix,
            group: NFLOG_GROUP,
        });
        Some(v)
    }

    fn action_verdict(&self, a: Action, ctx: Ctx) -> Verdict {
        match a {
            Action::Accept => ctx.accept.clone(),
            Action::Drop => Verdict::Drop,
            Action::Reject => reject_chain(),
        }
    }

    /// An IR rule as nft rules (a log rule before each when `-log` is set).
    fn user_rule(&mut self, r: &ir::Rule, ctx: Ctx, out: &mut Vec<Rule>) {
        let comment = self.origin(&r.origin);
        for ms in self.rule_matches(r, ctx) {
            if let Some(stmts) = self.log_stmts(r.log, ctx.log_tag, &r.action.to_string(), &comment)
            {
                out.push(Rule {
                    matches: ms.clone(),
                    stmts,
                    verdict: None,
                    comment: comment.clone(),
                    decision: None,
                    merged: vec![],
                });
            }
            out.push(Rule {
                matches: ms,
                stmts: vec![],
                verdict: Some(self.action_verdict(r.action, ctx)),
                comment: comment.clone(),
                decision: Some(r.action),
                merged: vec![],
            });
        }
    }

    fn policy(&self, a: Action, level: LogLevel, ctx: Ctx, what: &str, out: &mut Vec<Rule>) {
        let comment = format!("auto:{what} {a}");
        if a != Action::Accept {
            // Like Proxmox's standard DROP/REJECT chains: neighbour
            // discovery keeps working under a DROP or REJECT policy, or
            // IPv6 could not work at all (the `ndp` option adds router
            // discovery and redirects before the rules).
            out.push(
                Rule::new("auto:neighbour discovery under a DROP/REJECT policy")
                    .m(Match::Icmp {
                        v6: true,
                        types: vec![135, 136],
                        code: None,
                    })
                    .v(Verdict::Return)
                    .decides(Action::Accept),
            );
        }
        if let Some(stmts) = self.log_stmts(level, ctx.log_tag, &format!("policy {a}"), &comment) {
            out.push(Rule {
                matches: vec![],
                stmts,
                verdict: None,
                comment: comment.clone(),
                decision: None,
                merged: vec![],
            });
        }
        out.push(Rule::new(comment).v(self.action_verdict(a, ctx)).decides(a));
    }

    fn blacklist(&mut self, out: &mut Vec<Rule>) {
        if let Some(bl) = self.node.firewall.blacklist {
            let origin = self.origin(&self.site.set(bl).origin);
            for f in Family::both() {
                let s = self.set_ref(bl, f);
                out.push(
                    Rule::new(format!("auto:blacklist {origin}"))
                        .m(Match::Addr {
                            family: f,
                            dir: Dir::Src,
                            neg: false,
                            target: AddrTarget::Set(s),
                        })
                        .v(Verdict::Drop)
                        .decides(Action::Drop),
                );
            }
        }
    }

    fn build(&mut self) -> Plan {
        let node = self.node;
        let site = self.site;
        let header = format!(
            "rampart plan for node {}: generated, do not edit.",
            node.name
        );
        let mut plan_nics = Vec::new();
        let mut sysctls = Vec::new();
        if !site.cluster.enable {
            let rs = Ruleset {
                tables: vec![],
                absent: vec![
                    (TableFamily::Inet, TABLE.into()),
                    (TableFamily::Bridge, TABLE.into()),
                ],
            };
            let script = crate::print::script(
                &rs,
                &format!("{header}\nThe cluster firewall is off: rampart's tables are removed."),
            );
            return Plan {
                node: node.name.clone(),
                ruleset: rs,
                script,
                sysctls,
                nics: plan_nics,
                warnings: std::mem::take(&mut self.warnings),
            };
        }
        let opts = &node.firewall.options;
        let host_on = node.firewall.enabled;

        // Guest NICs behind the firewall, numbered for the mark.
        let mut slots: Vec<(&Guest, &Nic, u32)> = Vec::new();
        for g in self.cache.guests_on(site, &node.name) {
            if !g.enabled {
                continue;
            }
            for nic in &g.nics {
                if nic.firewall {
                    let id = slots.len() as u32 + 1;
                    slots.push((g, nic, id));
                }
            }
        }
        if slots.len() as u32 > OUT_MASK {
            self.error(
                &node.origin,
                format!(
                    "node `{}` has more than {} filtered guest NICs",
                    node.name, OUT_MASK
                ),
                None,
            );
        }
        for (g, nic, id) in &slots {
            plan_nics.push(NicSlot {
                id: *id,
                guest: g.id,
                nic: nic.name.clone(),
                ifname: nic.ifname.clone(),
                bridge: nic.bridge.clone(),
            });
        }

        let mut inet = Table::new(TableFamily::Inet, TABLE);
        let accept_ret = Verdict::Return;

        // --- conntrack helpers
        let mut helper_rules = Vec::new();
        for h in &opts.nf_conntrack_helpers {
            let Some(defs) = helper_defs(h) else {
                self.error(
                    &node.origin,
                    format!("unknown conntrack helper `{h}` in nf_conntrack_helpers"),
                    Some("known helpers: amanda, ftp, h323, irc, netbios-ns, pptp, sane, sip, snmp, tftp"),
                );
                continue;
            };
            for (kind, proto, port) in defs {
                let name = format!("helper-{}-{}", h, proto);
                let name = name.replace('.', "");
                inet.helpers.push(CtHelper {
                    name: name.clone(),
                    kind: kind.to_string(),
                    proto: proto.to_string(),
                    comment: format!("auto:nf_conntrack_helpers {h}"),
                });
                let pn = if proto == "tcp" { 6 } else { 17 };
                helper_rules.push(
                    Rule::new(format!("auto:nf_conntrack_helpers {h}"))
                        .m(Match::Port {
                            proto: pn,
                            dir: Dir::Dst,
                            ports: vec![PortRange::single(port)],
                        })
                        .s(Stmt::CtHelperSet(name)),
                );
            }
        }
        // log_nf_conntrack: warned about at its line by the parser (no effect).

        // --- shared chains
        let mut reject = Chain::regular("reject-packet");
        reject.comment =
            Some("REJECT: tcp reset, udp port unreachable, else host unreachable".into());
        reject.rules = vec![
            Rule::new("auto:reject no answer to broadcast/multicast")
                .m(Match::PktTypeBroadMulti)
                .v(Verdict::Drop),
            Rule::new("auto:reject")
                .m(l4(&Proto::Tcp))
                .v(Verdict::Reject(RejectWith::TcpReset)),
            Rule::new("auto:reject")
                .m(l4(&Proto::Udp))
                .v(Verdict::Reject(RejectWith::PortUnreachable)),
            Rule::new("auto:reject").v(Verdict::Reject(RejectWith::HostUnreachable)),
        ];

        let mut tcpflags = Chain::regular("tcp-flags");
        tcpflags.comment = Some("tcpflags: impossible TCP flag combinations".into());
        {
            use tcpflag::*;
            let all = FIN | SYN | RST | PSH | ACK | URG;
            let bad = [
                (FIN | SYN, FIN | SYN),
                (SYN | RST, SYN | RST),
                (FIN | RST, FIN | RST),
                (FIN | ACK, FIN),
                (ACK | URG, URG),
                (PSH | ACK, PSH),
                (all, 0),
                (all, FIN | PSH | URG),
            ];
            for (mask, value) in bad {
                if let Some(stmts) = self.log_stmts(
                    opts.tcp_flags_log_level,
                    "0:PVEFW-logflags",
                    "DROP",
                    "auto:tcpflags",
                ) {
                    tcpflags.rules.push(Rule {
                        matches: vec![Match::TcpFlags { mask, value }],
                        stmts,
                        verdict: None,
                        comment: "auto:tcpflags".into(),
                        decision: None,
                        merged: vec![],
                    });
                }
                tcpflags.rules.push(
                    Rule::new("auto:tcpflags")
                        .m(Match::TcpFlags { mask, value })
                        .v(Verdict::Drop)
                        .decides(Action::Drop),
                );
            }
        }

        // --- host chains
        let mut host_in = Chain::regular("host-in");
        let mut host_out = Chain::regular("host-out");
        let mut host_fwd = Chain::regular("host-forward");
        if !host_on {
            for c in [&mut host_in, &mut host_out, &mut host_fwd] {
                c.rules.push(
                    Rule::new("auto:host firewall off")
                        .v(Verdict::Return)
                        .decides(Action::Accept),
                );
            }
        } else {
            let ctx_in = Ctx {
                host: true,
                accept: &accept_ret,
                log_tag: "0:PVEFW-HOST-IN",
            };
            let ctx_out = Ctx {
                host: true,
                accept: &accept_ret,
                log_tag: "0:PVEFW-HOST-OUT",
            };
            let ctx_fwd = Ctx {
                host: true,
                accept: &accept_ret,
                log_tag: "0:PVEFW-HOST-FORWARD",
            };
            let mut r = Vec::new();
            self.blacklist(&mut r);
            if opts.nosmurfs {
                let m = vec![
                    Match::NfProto(Family::V4),
                    Match::FibSaddrType(vec![FibType::Broadcast, FibType::Multicast]),
                ];
                if let Some(stmts) = self.log_stmts(
                    opts.smurf_log_level,
                    "0:PVEFW-smurflog",
                    "DROP",
                    "auto:nosmurfs",
                ) {
                    r.push(Rule {
                        matches: m.clone(),
                        stmts,
                        verdict: None,
                        comment: "auto:nosmurfs".into(),
                        decision: None,
                        merged: vec![],
                    });
                }
                r.push(Rule {
                    matches: m,
                    stmts: vec![],
                    verdict: Some(Verdict::Drop),
                    comment: "auto:nosmurfs".into(),
                    decision: Some(Action::Drop),
                    merged: vec![],
                });
            }
            if opts.tcpflags {
                r.push(
                    Rule::new("auto:tcpflags")
                        .m(l4(&Proto::Tcp))
                        .v(Verdict::Jump("tcp-flags".into())),
                );
            }
            if opts.protection_synflood {
                for f in Family::both() {
                    let set = format!("synflood_{}", if f == Family::V4 { "v4" } else { "v6" });
                    self.sets.insert(
                        set.clone(),
                        Set {
                            name: set.clone(),
                            key: KeyType::of(f),
                            interval: false,
                            dynamic: Some(DynamicSet {
                                size: 65535,
                                timeout_s: 60,
                            }),
                            elements: Elements::default(),
                            comment: "auto:protection_synflood meter".into(),
                        },
                    );
                    let limit = Limit {
                        rate: opts.protection_synflood_rate,
                        unit: "second".into(),
                        burst: opts.protection_synflood_burst,
                    };
                    r.push(
                        Rule::new("auto:protection_synflood")
                            .m(Match::NfProto(f))
                            .m(Match::TcpFlags {
                                mask: tcpflag::FIN | tcpflag::SYN | tcpflag::RST | tcpflag::ACK,
                                value: tcpflag::SYN,
                            })
                            .s(Stmt::MeterOver {
                                set,
                                family: f,
                                limit,
                            })
                            .v(Verdict::Drop)
                            .decides(Action::Drop),
                    );
                }
            }
            if opts.ndp {
                let nd = Rule::new("auto:ndp")
                    .m(Match::Icmp {
                        v6: true,
                        types: vec![133, 134, 135, 136, 137],
                        code: None,
                    })
                    .v(Verdict::Return)
                    .decides(Action::Accept);
                // The node's own neighbour discovery must get out too.
                host_out.rules.push(nd.clone());
                r.push(nd);
            }
            let (mgmt_tcp, cl_udp, cl_tcp) = platform_ports(node.platform);
            for f in Family::both() {
                let s = self.set_ref(node.firewall.management, f);
                r.push(
                    Rule::new("auto:management")
                        .m(Match::Addr {
                            family: f,
                            dir: Dir::Src,
                            neg: false,
                            target: AddrTarget::Set(s),
                        })
                        .m(Match::Port {
                            proto: 6,
                            dir: Dir::Dst,
                            ports: mgmt_tcp.clone(),
                        })
                        .v(Verdict::Return)
                        .decides(Action::Accept),
                );
            }
            for f in Family::both() {
                let s = self.set_ref(node.firewall.cluster_peers, f);
                for (proto, ports) in [(17u8, &cl_udp), (6u8, &cl_tcp)] {
                    if ports.is_empty() {
                        continue;
                    }
                    r.push(
                        Rule::new("auto:cluster")
                            .m(Match::Addr {
                                family: f,
                                dir: Dir::Src,
                                neg: false,
                                target: AddrTarget::Set(s.clone()),
                            })
                            .m(Match::Port {
                                proto,
                                dir: Dir::Dst,
                                ports: ports.clone(),
                            })
                            .v(Verdict::Return)
                            .decides(Action::Accept),
                    );
                    host_out.rules.push(
                        Rule::new("auto:cluster")
                            .m(Match::Addr {
                                family: f,
                                dir: Dir::Dst,
                                neg: false,
                                target: AddrTarget::Set(s.clone()),
                            })
                            .m(Match::Port {
                                proto,
                                dir: Dir::Dst,
                                ports: ports.clone(),
                            })
                            .v(Verdict::Return)
                            .decides(Action::Accept),
                    );
                }
            }
            host_in.rules = r;
            let rules = node.firewall.rules.clone();
            for rule in &rules {
                match rule.dir {
                    Direction::In => {
                        let mut v = Vec::new();
                        self.user_rule(rule, ctx_in, &mut v);
                        host_in.rules.extend(v);
                    }
                    Direction::Out => {
                        let mut v = Vec::new();
                        self.user_rule(rule, ctx_out, &mut v);
                        host_out.rules.extend(v);
                    }
                    Direction::Forward => {
                        let mut v = Vec::new();
                        self.user_rule(rule, ctx_fwd, &mut v);
                        host_fwd.rules.extend(v);
                    }
                }
            }
            // Corosync, ring by ring (pve-firewall: after the rules and the
            // management rules, before the policies).
            if node.platform == Platform::Proxmox {
                for link in &node.firewall.corosync {
                    let f = if link.local.is_ipv4() {
                        Family::V4
                    } else {
                        Family::V6
                    };
                    if site_set_empty(self.site, link.peers, f) {
                        continue;
                    }
                    let s = self.set_ref(link.peers, f);
                    let me = AddrTarget::Literal(vec![IpRange::host(link.local)]);
                    let ports = Match::Port {
                        proto: 17,
                        dir: Dir::Dst,
                        ports: vec![PortRange::new(5404, 5405)],
                    };
                    let addr = |dir, target| Match::Addr {
                        family: f,
                        dir,
                        neg: false,
                        target,
                    };
                    host_in.rules.push(
                        Rule::new("auto:corosync")
                            .m(addr(Dir::Src, AddrTarget::Set(s.clone())))
                            .m(addr(Dir::Dst, me.clone()))
                            .m(ports.clone())
                            .v(Verdict::Return)
                            .decides(Action::Accept),
                    );
                    host_out.rules.push(
                        Rule::new("auto:corosync")
                            .m(addr(Dir::Src, me))
                            .m(addr(Dir::Dst, AddrTarget::Set(s)))
                            .m(ports)
                            .v(Verdict::Return)
                            .decides(Action::Accept),
                    );
                }
            }
            let mut v = Vec::new();
            self.policy(
                node.firewall.policy_in,
                opts.log_level_in,
                ctx_in,
                "policy_in",
                &mut v,
            );
            host_in.rules.extend(v);
            // pve-firewall's PVEFW-HOST-OUT: after the rules, before the
            // policy, the node may reach the local network's API, SSH, VNC
            // consoles and SPICE proxy (tcp 8006, 22, 5900-5999, 3128).
            if node.platform == Platform::Proxmox {
                for net in &node.local_network {
                    let f = if net.addr().is_ipv4() {
                        Family::V4
                    } else {
                        Family::V6
                    };
                    host_out.rules.push(
                        Rule::new("auto:local_network")
                            .m(Match::Addr {
                                family: f,
                                dir: Dir::Dst,
                                neg: false,
                                target: AddrTarget::Literal(vec![IpRange::from_net(net)]),
                            })
                            .m(Match::Port {
                                proto: 6,
                                dir: Dir::Dst,
                                ports: localnet_out_ports(),
                            })
                            .v(Verdict::Return)
                            .decides(Action::Accept),
                    );
                }
            }
            let mut v = Vec::new();
            self.policy(
                node.firewall.policy_out,
                opts.log_level_out,
                ctx_out,
                "policy_out",
                &mut v,
            );
            host_out.rules.extend(v);
            let mut v = Vec::new();
            self.policy(
                node.firewall.policy_forward,
                opts.log_level_forward,
                ctx_fwd,
                "policy_forward",
                &mut v,
            );
            host_fwd.rules.extend(v);
        }

        // --- guest NIC chains and dispatch maps
        let mut out_by_in = Map {
            name: "nic-out-by-in".into(),
            key: KeyType::Mark,
            interval: false,
            value_is_verdict: true,
            elements: vec![],
            comment: "sender's OUT chain by the NIC id in mark bits 16-31".into(),
        };
        let mut in_by_out = Map {
            name: "nic-in-by-out".into(),
            key: KeyType::Mark,
            interval: false,
            value_is_verdict: true,
            elements: vec![],
            comment: "receiver's IN chain by the NIC id in mark bits 0-14".into(),
        };
        let mut by_addr: [BTreeMap<IpAddr, (String, u32)>; 2] = [BTreeMap::new(), BTreeMap::new()];
        let mut guest_chains = Vec::new();
        let mut bridge_in_mark = Vec::new();
        let mut bridge_out_mark = Vec::new();
        let mut bridge_chains = Vec::new();
        let mut ips_by_out = Map {
            name: "ips-by-out".into(),
            key: KeyType::Mark,
            interval: false,
            value_is_verdict: true,
            elements: vec![],
            comment: "established traffic to IPS guests goes to their queue too".into(),
        };
        let mut ips_chains = Vec::new();
        for (g, nic, id) in slots.clone() {
            let (cin, cout) = self.guest_chains(g, nic);
            if g.options.ips {
                let (lo, hi) = g.options.ips_queues.unwrap_or((0, 0));
                let name = format!("ips-{}", nic.ifname);
                let mut c = Chain::regular(name.clone());
                c.rules.push(
                    Rule::new(format!("auto:ips guest {}", g.id))
                        .v(Verdict::Queue { lo, hi })
                        .decides(Action::Accept),
                );
                ips_chains.push(c);
                ips_by_out
                    .elements
                    .push((Key::Mark(id), MapValue::Verdict(Verdict::Jump(name))));
            }
            out_by_in.elements.push((
                Key::Mark(id << 16),
                MapValue::Verdict(Verdict::Jump(cout.name.clone())),
            ));
            in_by_out.elements.push((
                Key::Mark(id),
                MapValue::Verdict(Verdict::Jump(cin.name.clone())),
            ));
            for a in &nic.addresses {
                let addr = a.addr();
                let fi = if addr.is_ipv4() { 0 } else { 1 };
                if let Some((_, other)) = by_addr[fi].get(&addr) {
                    if *other != g.id {
                        self.error(
                            &g.origin,
                            format!("address {addr} of guest {} NIC {} is also used by guest {other}", g.id, nic.name),
                            Some("each guest address must belong to one guest so host traffic reaches the right IN chain"),
                        );
                    }
                    continue;
                }
                by_addr[fi].insert(addr, (cin.name.clone(), g.id));
            }
            guest_chains.push(cin);
            guest_chains.push(cout);
            bridge_in_mark.push((
                Key::Ifname(nic.ifname.to_string()),
                MapValue::Mark(id << 16),
            ));
            let mc = format!("mark-out-{}", nic.ifname);
            bridge_out_mark.push((
                Key::Ifname(nic.ifname.to_string()),
                MapValue::Verdict(Verdict::Jump(mc.clone())),
            ));
            let mut c = Chain::regular(mc);
            c.rules
                .push(Rule::new(format!("auto:guest {} {}", g.id, nic.name)).s(Stmt::MarkOr(id)));
            bridge_chains.push(c);
        }
        let mut addr_maps = Vec::new();
        for (fi, f) in [(0, Family::V4), (1, Family::V6)] {
            addr_maps.push(Map {
                name: format!("guest-in-{}", if f == Family::V4 { "v4" } else { "v6" }),
                key: KeyType::of(f),
                interval: false,
                value_is_verdict: true,
                elements: by_addr[fi]
                    .iter()
                    .map(|(a, (c, _))| {
                        (
                            Key::Addr(IpRange::host(*a)),
                            MapValue::Verdict(Verdict::Jump(c.clone())),
                        )
                    })
                    .collect(),
                comment:
                    "receiver's IN chain by guest address, for traffic the node sends or routes"
                        .into(),
            });
        }
        let bridges = Set {
            name: "bridges".into(),
            key: KeyType::Ifname,
            interval: false,
            dynamic: None,
            elements: node
                .bridges
                .iter()
                .map(|b| Key::Ifname(b.name.to_string()))
                .collect(),
            comment: "the node's bridges".into(),
        };

        // --- base chains
        let ct_rules = |allow_invalid: bool| {
            let mut v = vec![Rule::new("auto:conntrack")
                .m(Match::Ct(vec![CtState::Established, CtState::Related]))
                .v(Verdict::Accept)
                .decides(Action::Accept)];
            if !allow_invalid {
                v.push(
                    Rule::new("auto:conntrack")
                        .m(Match::Ct(vec![CtState::Invalid]))
                        .v(Verdict::Drop)
                        .decides(Action::Drop),
                );
            }
            v
        };
        let allow_invalid = opts.nf_conntrack_allow_invalid;
        let sender_out = || {
            Rule::new("auto:guest OUT of the sending NIC").v(Verdict::Vmap {
                key: VmapKey::MarkMasked(IN_MASK),
                map: "nic-out-by-in".into(),
            })
        };
        let to_guest = |f: Family| {
            Rule::new("auto:guest IN of the receiving address")
                .m(Match::IfnameSet {
                    dir: Dir::Dst,
                    set: "bridges".into(),
                })
                .v(Verdict::Vmap {
                    key: VmapKey::Addr(f, Dir::Dst),
                    map: format!("guest-in-{}", if f == Family::V4 { "v4" } else { "v6" }),
                })
        };

        let mut input = Chain::base("hook-input", Hook::Input, INET_PRIORITY);
        input.rules.extend(ct_rules(allow_invalid));
        input.rules.push(
            Rule::new("auto:loopback")
                .m(Match::Ifname {
                    dir: Dir::Src,
                    name: "lo".into(),
                })
                .v(Verdict::Accept)
                .decides(Action::Accept),
        );
        input.rules.push(sender_out());
        input
            .rules
            .push(Rule::new("auto:host IN").v(Verdict::Jump("host-in".into())));
        input
            .rules
            .push(Rule::new("auto:accepted").v(Verdict::Accept));

        let mut output = Chain::base("hook-output", Hook::Output, INET_PRIORITY);
        output.rules.extend(helper_rules.iter().cloned());
        output.rules.extend(ct_rules(allow_invalid));
        output.rules.push(
            Rule::new("auto:loopback")
                .m(Match::Ifname {
                    dir: Dir::Dst,
                    name: "lo".into(),
                })
                .v(Verdict::Accept)
                .decides(Action::Accept),
        );
        output
            .rules
            .push(Rule::new("auto:host OUT").v(Verdict::Jump("host-out".into())));
        output.rules.push(to_guest(Family::V4));
        output.rules.push(to_guest(Family::V6));
        output
            .rules
            .push(Rule::new("auto:accepted").v(Verdict::Accept));

        let mut forward = Chain::base("hook-forward", Hook::Forward, INET_PRIORITY);
        if !ips_by_out.elements.is_empty() {
            forward.rules.push(
                Rule::new("auto:ips established")
                    .m(Match::Ct(vec![CtState::Established, CtState::Related]))
                    .m(Match::Mark {
                        mask: BRIDGED,
                        value: BRIDGED,
                    })
                    .v(Verdict::Vmap {
                        key: VmapKey::MarkMasked(OUT_MASK),
                        map: "ips-by-out".into(),
                    }),
            );
        }
        forward.rules.extend(ct_rules(allow_invalid));
        forward.rules.push(sender_out());
        forward.rules.push(
            Rule::new("auto:guest IN of the receiving NIC")
                .m(Match::Mark {
                    mask: BRIDGED,
                    value: BRIDGED,
                })
                .v(Verdict::Vmap {
                    key: VmapKey::MarkMasked(OUT_MASK),
                    map: "nic-in-by-out".into(),
                }),
        );
        forward.rules.push(
            Rule::new("auto:bridged, accepted")
                .m(Match::Mark {
                    mask: BRIDGED,
                    value: BRIDGED,
                })
                .v(Verdict::Accept),
        );
        forward
            .rules
            .push(Rule::new("auto:host FORWARD").v(Verdict::Jump("host-forward".into())));
        forward.rules.push(to_guest(Family::V4));
        forward.rules.push(to_guest(Family::V6));
        forward
            .rules
            .push(Rule::new("auto:accepted").v(Verdict::Accept));

        if !helper_rules.is_empty() {
            let mut pre = Chain::base("hook-prerouting", Hook::Prerouting, INET_PRIORITY);
            pre.rules = helper_rules;
            inet.chains.push(pre);
        }
        inet.chains.push(input);
        inet.chains.push(forward);
        inet.chains.push(output);
        inet.chains.push(host_in);
        inet.chains.push(host_out);
        inet.chains.push(host_fwd);
        inet.chains.extend(guest_chains);
        inet.chains.push(tcpflags);
        inet.chains.push(reject);
        inet.maps.push(out_by_in);
        inet.maps.push(in_by_out);
        if !ips_by_out.elements.is_empty() {
            inet.maps.push(ips_by_out);
            inet.chains.extend(ips_chains);
        }
        inet.maps.extend(addr_maps);
        let mut all_sets: Vec<Set> = std::mem::take(&mut self.sets).into_values().collect();
        all_sets.push(bridges);
        all_sets.sort_by(|a, b| a.name.cmp(&b.name));
        inet.sets = all_sets;

        // Runs of policy lines that differ only in addresses/ports become
        // one rule matching a set (see `merge`).
        for c in &mut inet.chains {
            if c.rules.len() > 1 {
                c.rules = self
                    .cache
                    .merged(&node.name, &c.name, std::mem::take(&mut c.rules));
            }
        }
        let mut rs = Ruleset::default();
        rs.tables.push(inet);
        // The bridge table exists whenever the node has bridges, even with no
        // filtered guest: it marks bridged packets, so that with br_netfilter
        // on (its default), bridged traffic is told apart from routed
        // traffic and never meets policy_forward.
        if node.bridges.is_empty() {
            rs.absent.push((TableFamily::Bridge, TABLE.into()));
        } else {
            let mut br = Table::new(TableFamily::Bridge, TABLE);
            br.maps.push(Map {
                name: "nic-in-mark".into(),
                key: KeyType::Ifname,
                interval: false,
                value_is_verdict: false,
                elements: bridge_in_mark,
                comment: "mark of each filtered guest NIC, as ingress port".into(),
            });
            br.maps.push(Map {
                name: "nic-out-mark".into(),
                key: KeyType::Ifname,
                interval: false,
                value_is_verdict: true,
                elements: bridge_out_mark,
                comment: "adds the egress guest NIC's id to the mark".into(),
            });
            let mut pre = Chain::base("hook-prerouting", Hook::Prerouting, BRIDGE_PRIORITY);
            pre.rules
                .push(Rule::new("auto:datapath clear mark").s(Stmt::MarkSet(0)));
            pre.rules.push(
                Rule::new("auto:datapath ingress NIC")
                    .s(Stmt::MarkFromIifnameMap("nic-in-mark".into())),
            );
            let mut fwd = Chain::base("hook-forward", Hook::Forward, BRIDGE_PRIORITY);
            fwd.rules
                .push(Rule::new("auto:datapath bridged").s(Stmt::MarkOr(BRIDGED)));
            fwd.rules
                .push(Rule::new("auto:datapath egress NIC").v(Verdict::Vmap {
                    key: VmapKey::Ifname(Dir::Dst),
                    map: "nic-out-mark".into(),
                }));
            br.chains.push(pre);
            br.chains.push(fwd);
            br.chains.extend(bridge_chains);
            rs.tables.push(br);
        }
        if !slots.is_empty() {
            sysctls.push(Sysctl {
                key: "net.bridge.bridge-nf-call-iptables".into(),
                value: "1".into(),
                why: "bridged IPv4 of guests passes the inet hooks, where conntrack works (br_netfilter)".into(),
            });
            sysctls.push(Sysctl {
                key: "net.bridge.bridge-nf-call-ip6tables".into(),
                value: "1".into(),
                why: "bridged IPv6 of guests passes the inet hooks (br_netfilter)".into(),
            });
        }
        sysctls.push(Sysctl {
            key: "net.netfilter.nf_conntrack_max".into(),
            value: opts.nf_conntrack_max.to_string(),
            why: "host option nf_conntrack_max".into(),
        });
        sysctls.push(Sysctl {
            key: "net.netfilter.nf_conntrack_tcp_timeout_established".into(),
            value: opts.nf_conntrack_tcp_timeout_established.to_string(),
            why: "host option nf_conntrack_tcp_timeout_established".into(),
        });
        sysctls.push(Sysctl {
            key: "net.netfilter.nf_conntrack_tcp_timeout_syn_recv".into(),
            value: opts.nf_conntrack_tcp_timeout_syn_recv.to_string(),
            why: "host option nf_conntrack_tcp_timeout_syn_recv".into(),
        });
        sysctls.sort_by(|a, b| a.key.cmp(&b.key));
        let script = crate::print::script(&rs, &header);
        Plan {
            node: node.name.clone(),
            ruleset: rs,
            script,
            sysctls,
            nics: plan_nics,
            warnings: std::mem::take(&mut self.warnings),
        }
    }

    fn guest_chains(&mut self, g: &Guest, nic: &Nic) -> (Chain, Chain) {
        let o = &g.options;
        let tag_in = format!(
            "{}:{}",
            g.id,
            rampart_types::fwlog::nic_chain(&nic.ifname, false)
        );
        let tag_out = format!(
            "{}:{}",
            g.id,
            rampart_types::fwlog::nic_chain(&nic.ifname, true)
        );
        let queue;
        let accept_in = if o.ips {
            if !self.caps.nft_queue {
                // Point at the `ips: 1` line of the guest's .fw file.
                let at = o
                    .spans
                    .get("ips")
                    .map(|s| Origin::line(*s))
                    .unwrap_or_else(|| g.origin.clone());
                self.error(
                    &at,
                    format!(
                        "guest {} has `ips: 1`, but this kernel's nftables has no `queue` support (nft_queue), so accepted traffic cannot reach the IPS",
                        g.id
                    ),
                    Some("use the iptables backend for this node (xt NFQUEUE works here), or turn ips off"),
                );
            }
            let (lo, hi) = o.ips_queues.unwrap_or((0, 0));
            queue = Verdict::Queue { lo, hi };
            &queue
        } else {
            &Verdict::Return
        };
        let ctx_in = Ctx {
            host: false,
            accept: accept_in,
            log_tag: &tag_in,
        };
        let ctx_out = Ctx {
            host: false,
            accept: &Verdict::Return,
            log_tag: &tag_out,
        };
        let who = format!("guest {} {}", g.id, nic.name);

        let mut cout = Chain::regular(format!("nic-{}-out", nic.ifname));
        cout.comment = Some(format!("{who} OUT"));
        if o.macfilter {
            if let Some(mac) = nic.mac {
                cout.rules.push(
                    Rule::new("auto:macfilter")
                        .m(Match::EtherSaddrNot(mac))
                        .v(Verdict::Drop)
                        .decides(Action::Drop),
                );
            }
        }
        if !o.radv {
            cout.rules.push(
                Rule::new("auto:radv off")
                    .m(Match::Icmp {
                        v6: true,
                        types: vec![134],
                        code: None,
                    })
                    .v(Verdict::Drop)
                    .decides(Action::Drop),
            );
        }
        if o.dhcp {
            cout.rules
                .push(dhcp_rule(68, 67).v(Verdict::Return).decides(Action::Accept));
            cout.rules.push(
                dhcp_rule(546, 547)
                    .v(Verdict::Return)
                    .decides(Action::Accept),
            );
        }
        // Neighbour discovery leaves before ipfilter (ND uses link-local
        // and unspecified sources); with `ndp: 1` router solicitations too.
        let nd_types = if o.ndp {
            vec![133, 135, 136]
        } else {
            vec![135, 136]
        };
        cout.rules.push(
            Rule::new(if o.ndp {
                "auto:ndp"
            } else {
                "auto:neighbour discovery"
            })
            .m(Match::Icmp {
                v6: true,
                types: nd_types,
                code: None,
            })
            .v(Verdict::Return)
            .decides(Action::Accept),
        );
        if let Some(ipf) = nic.ipfilter {
            let origin = self.origin(&self.site.set(ipf).origin);
            for f in Family::both() {
                let s = self.set_ref(ipf, f);
                let mut r = Rule::new(format!("auto:ipfilter {origin}")).m(Match::Addr {
                    family: f,
                    dir: Dir::Src,
                    neg: true,
                    target: AddrTarget::Set(s),
                });
                if f == Family::V6 {
                    if let Some(mac) = nic.mac {
                        r = r.m(Match::Addr {
                            family: f,
                            dir: Dir::Src,
                            neg: true,
                            target: AddrTarget::Literal(vec![IpRange::host(IpAddr::V6(
                                link_local(&mac),
                            ))]),
                        });
                    }
                }
                cout.rules.push(r.v(Verdict::Drop).decides(Action::Drop));
            }
        }

        let mut cin = Chain::regular(format!("nic-{}-in", nic.ifname));
        cin.comment = Some(format!("{who} IN"));
        self.blacklist(&mut cin.rules);
        if o.dhcp {
            cin.rules.push(
                dhcp_rule(67, 68)
                    .v(accept_in.clone())
                    .decides(Action::Accept),
            );
            cin.rules.push(
                dhcp_rule(547, 546)
                    .v(accept_in.clone())
                    .decides(Action::Accept),
            );
        }
        if o.ndp {
            cin.rules.push(
                Rule::new("auto:ndp")
                    .m(Match::Icmp {
                        v6: true,
                        types: vec![134, 135, 136, 137],
                        code: None,
                    })
                    .v(accept_in.clone())
                    .decides(Action::Accept),
            );
        }
        for r in &g.rules {
            if r.iface
                .as_ref()
                .is_some_and(|i| i.as_str() != nic.name.as_str())
            {
                continue;
            }
            match r.dir {
                Direction::In => {
                    let mut v = Vec::new();
                    self.user_rule(r, ctx_in, &mut v);
                    cin.rules.extend(v);
                }
                Direction::Out => {
                    let mut v = Vec::new();
                    self.user_rule(r, ctx_out, &mut v);
                    cout.rules.extend(v);
                }
                Direction::Forward => self.error(
                    &r.origin,
                    format!(
                        "guest {}: FORWARD rules exist only in host and cluster firewalls",
                        g.id
                    ),
                    None,
                ),
            }
        }
        let mut v = Vec::new();
        self.policy(
            o.policy_in,
            o.log_level_in,
            ctx_in,
            &format!("{who} policy_in"),
            &mut v,
        );
        cin.rules.extend(v);
        let mut v = Vec::new();
        self.policy(
            o.policy_out,
            o.log_level_out,
            ctx_out,
            &format!("{who} policy_out"),
            &mut v,
        );
        cout.rules.extend(v);
        (cin, cout)
    }
}

fn dhcp_rule(sport: u16, dport: u16) -> Rule {
    Rule::new("auto:dhcp")
        .m(Match::Port {
            proto: 17,
            dir: Dir::Src,
            ports: vec![PortRange::single(sport)],
        })
        .m(Match::Port {
            proto: 17,
            dir: Dir::Dst,
            ports: vec![PortRange::single(dport)],
        })
}

/// The EUI-64 link-local address of a MAC (what the guest's kernel uses).
pub fn link_local(mac: &[u8; 6]) -> Ipv6Addr {
    let m = mac;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

fn norm_ports(p: &[PortRange]) -> Vec<PortRange> {
    if p.len() == 1 {
        return p.to_vec();
    }
    let mut v = p.to_vec();
    v.sort();
    let mut out: Vec<PortRange> = Vec::new();
    for r in v {
        if let Some(l) = out.last_mut() {
            if r.lo as u32 <= l.hi as u32 + 1 {
                l.hi = l.hi.max(r.hi);
                continue;
            }
        }
        out.push(r);
    }
    out
}

/// What pve-firewall's PVEFW-HOST-OUT lets the node reach on its local
/// network (tcp): 22, 3128, 5900-5999, 8006.
pub fn localnet_out_ports() -> Vec<PortRange> {
    vec![
        PortRange::single(22),
        PortRange::single(3128),
        PortRange::new(5900, 5999),
        PortRange::single(8006),
    ]
}

/// Management TCP ports, cluster UDP ports, cluster TCP ports.
pub fn platform_ports(p: Platform) -> (Vec<PortRange>, Vec<PortRange>, Vec<PortRange>) {
    let s = PortRange::single;
    let r = PortRange::new;
    match p {
        Platform::Proxmox => (
            vec![s(22), s(3128), r(5900, 5999), s(8006), r(60000, 60050)],
            // Corosync is opened link by link (`HostFirewall::corosync`).
            vec![],
            vec![],
        ),
        Platform::Xcpng => (
            vec![s(22), s(443), s(6640), s(6653)],
            vec![r(5404, 5405)],
            vec![s(21064)],
        ),
        Platform::Linux => (vec![s(22)], vec![], vec![]),
    }
}

/// Kernel helper names, protocol and port of a `nf_conntrack_helpers` entry.
fn helper_defs(name: &str) -> Option<Vec<(&'static str, &'static str, u16)>> {
    Some(match name {
        "ftp" => vec![("ftp", "tcp", 21)],
        "tftp" => vec![("tftp", "udp", 69)],
        "sip" => vec![("sip", "udp", 5060)],
        "irc" => vec![("irc", "tcp", 6667)],
        "pptp" => vec![("pptp", "tcp", 1723)],
        "sane" => vec![("sane", "tcp", 6566)],
        "amanda" => vec![("amanda", "udp", 10080)],
        "snmp" => vec![("snmp", "udp", 161)],
        "netbios-ns" => vec![("netbios-ns", "udp", 137)],
        "h323" => vec![("RAS", "udp", 1719), ("Q.931", "tcp", 1720)],
        _ => return None,
    })
}

/// Does set `id` hold no entry of family `f`?
fn site_set_empty(site: &ir::Site, id: SetId, f: Family) -> bool {
    site.set(id).entries_of(f).next().is_none()
}

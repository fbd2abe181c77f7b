//! Syntax tree -> IR.

use crate::ir::{self, AddrMatch, IcmpType, IpSet, SetEntry, SetId, SetScope};
use ipnet::IpNet;
use rampart_syntax::ast::{
    self as ast, AddrItem, AddrSpec, FwFile, NameRef, RuleBody, RuleLine, RuleVerb, Scope, SetItem,
    SiteAst, Spanned,
};
use rampart_syntax::suggest::did_you_mean;
use rampart_syntax::tables::{icmp_type, macros};
use rampart_types::{
    codes, Action, Diagnostic, Diagnostics, Direction, Family, IpRange, LogLevel, Origin,
    PortRange, Proto, SourceMap, Span,
};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr};

/// Kernel limit for set names (nft sets and ipsets): 31 bytes.
pub const MAX_SET_NAME: usize = 31;
/// Linux interface names: 15 bytes.
pub const MAX_IFNAME: usize = 15;
/// pve-firewall's limit for security group names.
pub const MAX_GROUP_NAME: usize = 18;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Owner {
    Cluster,
    Guest(u32),
}

struct AliasDefR {
    net: IpNet,
}

/// The ipsets of the previous resolve, reused when a set's entries (after
/// alias lookup, spans included) are the same: sorting and deduplicating a
/// 100,000-entry blacklist is the resolver's biggest cost. Holds the sets
/// of the last site resolved, nothing older.
#[derive(Default)]
pub struct SetMemo {
    sets: HashMap<(Owner, String), MemoSet>,
}

struct MemoSet {
    /// The entries as listed: range, nomatch, the entry's span.
    items: Vec<(IpRange, bool, Span)>,
    /// What they became: sorted, deduplicated (`None` while the IR that
    /// holds them is out), and the duplicates reported.
    entries: Option<Vec<SetEntry>>,
    diags: Vec<Diagnostic>,
    /// The set in that IR, and where its entries were (the very list
    /// handed out: heap address and length).
    id: SetId,
    lent: (usize, usize),
}

impl SetMemo {
    /// Take back the entries of the sets of `site`, the IR of the last
    /// [`resolve_cached`] with this memo, instead of keeping a copy of
    /// each: only the very lists it handed out (same heap address and
    /// length), which nothing changes (the IR is read-only to every
    /// backend). Anything else is left, and resolved again next time.
    pub fn recycle(&mut self, site: ir::Site) {
        let mut sets: Vec<Option<IpSet>> = site.sets.into_iter().map(Some).collect();
        for m in self.sets.values_mut() {
            if m.entries.is_none() {
                let slot = sets.get_mut(m.id.0 as usize);
                m.entries = slot
                    .filter(|s| {
                        s.as_ref().is_some_and(|s| {
                            (s.entries.as_ptr() as usize, s.entries.len()) == m.lent
                        })
                    })
                    .and_then(Option::take)
                    .map(|s| s.entries);
            }
        }
    }
}

struct Resolver<'a> {
    ast: &'a SiteAst,
    diags: Diagnostics,
    /// The previous resolve's sets (taken), and this one's (`None`: keep none).
    memo_old: HashMap<(Owner, String), MemoSet>,
    memo_new: Option<HashMap<(Owner, String), MemoSet>>,
    sets: Vec<IpSet>,
    set_index: HashMap<(Owner, String), SetId>,
    aliases: HashMap<(Owner, String), AliasDefR>,
    kernel_names: HashSet<String>,
    groups: HashMap<String, &'a ast::GroupDef>,
    nodes: Vec<ir::Node>,
    node_index: HashMap<ir::NodeName, usize>,
    /// Per node (same index as `nodes`): bridges are not declared.
    implicit_bridges: Vec<bool>,
    cluster_opts: ir::ClusterOptions,
}

/// A set before [`Resolver::add_set`] checks the kernel name it wants.
struct NewSet {
    name: ir::IpSetName,
    scope: SetScope,
    kernel_name: String,
    entries: Vec<SetEntry>,
    origin: Origin,
}

/// Where a rule is being resolved.
#[derive(Clone, Copy)]
struct Ctx<'c> {
    guest: Option<u32>,
    guest_nics: Option<&'c [ir::NicName]>,
    node: Option<usize>,
    via: Option<Span>,
    group_iface: Option<&'c Spanned<ir::RuleIfaceName>>,
    /// Report problems (false for repeated resolutions of the same lines).
    report: bool,
}

/// An address operand after name resolution.
enum Resolved {
    Set(SetId),
    List(Vec<IpRange>),
}

/// Resolve a parsed site. `sources` is the map the parser built; it moves into the IR.
pub fn resolve(ast: &SiteAst, sources: SourceMap) -> (ir::Site, Diagnostics) {
    resolve_with(ast, sources, None)
}

/// [`resolve`], reusing the ipsets of the previous resolve that `memo`
/// kept where their entries are unchanged; the result is the same.
pub fn resolve_cached(
    ast: &SiteAst,
    sources: SourceMap,
    memo: &mut SetMemo,
) -> (ir::Site, Diagnostics) {
    resolve_with(ast, sources, Some(memo))
}

fn resolve_with(
    ast: &SiteAst,
    sources: SourceMap,
    mut memo: Option<&mut SetMemo>,
) -> (ir::Site, Diagnostics) {
    let cluster_opts = cluster_options(ast.cluster.as_ref());
    let mut r = Resolver {
        ast,
        diags: Diagnostics::new(),
        memo_old: memo
            .as_deref_mut()
            .map(|m| std::mem::take(&mut m.sets))
            .unwrap_or_default(),
        memo_new: memo.is_some().then(HashMap::new),
        sets: Vec::new(),
        set_index: HashMap::new(),
        aliases: HashMap::new(),
        kernel_names: HashSet::new(),
        groups: HashMap::new(),
        nodes: Vec::new(),
        node_index: HashMap::new(),
        implicit_bridges: Vec::new(),
        cluster_opts,
    };
    r.collect_definitions();
    r.build_nodes();
    let guests = r.build_guests();
    r.add_implicit_bridges(&guests);
    r.build_host_rules();
    r.check_broken_rules();
    r.check_unused_files(&guests);
    if let (Some(m), Some(new)) = (memo, r.memo_new.take()) {
        m.sets = new;
    }
    let mut diags = std::mem::take(&mut r.diags);
    diags.sort();
    diags.items.dedup();
    let site = ir::Site {
        sources,
        name: ast
            .name
            .as_ref()
            .map(|n| n.value.clone())
            .unwrap_or_else(|| ir::SiteName::from_static("site")),
        cluster: r.cluster_opts.clone(),
        nodes: r.nodes,
        guests,
        sets: r.sets,
        index: Default::default(),
    };
    (site, diags)
}

fn cluster_options(f: Option<&FwFile>) -> ir::ClusterOptions {
    let o = f.map(|f| f.options.clone()).unwrap_or_default();
    let rl = o.log_ratelimit.clone();
    ir::ClusterOptions {
        enable: o.enable.unwrap_or(false),
        policy_in: o.policy_in.unwrap_or(Action::Drop),
        policy_out: o.policy_out.unwrap_or(Action::Accept),
        policy_forward: o.policy_forward.unwrap_or(Action::Accept),
        log_ratelimit: match rl {
            Some(r) => ir::LogRateLimit {
                enable: r.enable,
                rate: r.rate,
                unit: r.unit,
                burst: r.burst,
            },
            None => ir::LogRateLimit {
                enable: true,
                rate: 1,
                unit: "second".into(),
                burst: 5,
            },
        },
        ebtables: o.ebtables.unwrap_or(true),
    }
}

pub fn host_options(o: &ast::FwOptions) -> ir::HostOptions {
    ir::HostOptions {
        enable: o.enable.unwrap_or(true),
        log_level_in: o.log_level_in.unwrap_or_default(),
        log_level_out: o.log_level_out.unwrap_or_default(),
        log_level_forward: o.log_level_forward.unwrap_or_default(),
        nosmurfs: o.nosmurfs.unwrap_or(true),
        smurf_log_level: o.smurf_log_level.unwrap_or_default(),
        tcpflags: o.tcpflags.unwrap_or(false),
        tcp_flags_log_level: o.tcp_flags_log_level.unwrap_or_default(),
        ndp: o.ndp.unwrap_or(false),
        nf_conntrack_max: o.nf_conntrack_max.unwrap_or(262_144),
        nf_conntrack_tcp_timeout_established: o
            .nf_conntrack_tcp_timeout_established
            .unwrap_or(432_000),
        nf_conntrack_tcp_timeout_syn_recv: o.nf_conntrack_tcp_timeout_syn_recv.unwrap_or(60),
        nf_conntrack_allow_invalid: o.nf_conntrack_allow_invalid.unwrap_or(false),
        nf_conntrack_helpers: o.nf_conntrack_helpers.clone().unwrap_or_default(),
        protection_synflood: o.protection_synflood.unwrap_or(false),
        protection_synflood_rate: o.protection_synflood_rate.unwrap_or(200),
        protection_synflood_burst: o.protection_synflood_burst.unwrap_or(1000),
        log_nf_conntrack: o.log_nf_conntrack.unwrap_or(false),
    }
}

pub fn guest_options(o: &ast::FwOptions) -> ir::GuestOptions {
    ir::GuestOptions {
        enable: o.enable.unwrap_or(false),
        macfilter: o.macfilter.unwrap_or(true),
        dhcp: o.dhcp.unwrap_or(false),
        ndp: o.ndp.unwrap_or(false),
        radv: o.radv.unwrap_or(false),
        ipfilter: o.ipfilter.unwrap_or(false),
        policy_in: o.policy_in.unwrap_or(Action::Drop),
        policy_out: o.policy_out.unwrap_or(Action::Accept),
        log_level_in: o.log_level_in.unwrap_or_default(),
        log_level_out: o.log_level_out.unwrap_or_default(),
        ips: o.ips.unwrap_or(false),
        ips_queues: o.ips_queues,
        spans: o.spans.clone(),
    }
}

/// FNV-1a over the bytes, the top bit cleared (Proxmox's `fnv31a`).
pub fn fnv31a(s: &str) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in s.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h & 0x7fff_ffff
}

fn host_range(a: IpAddr) -> IpRange {
    IpRange::host(a)
}

/// The IPv6 link-local address a MAC gives (EUI-64).
fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    let m = mac;
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]]),
    )
}

fn fam_name(f: &[Family]) -> String {
    f.first()
        .map_or_else(|| "empty".to_string(), |x| x.to_string())
}

fn short(name: &str, max: usize) -> bool {
    name.len() <= max
}

impl<'a> Resolver<'a> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Register a set; checks the kernel name it wants.
    fn add_set(&mut self, set: NewSet, name_span: Option<Span>) -> SetId {
        let id = SetId(self.sets.len() as u32);
        let mut kernel_name = set.kernel_name;
        if !short(&kernel_name, MAX_SET_NAME) {
            if let Some(sp) = name_span {
                self.push(
                    Diagnostic::new(
                        codes::NAME_TOO_LONG,
                        format!(
                            "ipset `{}` becomes the kernel set `{}`, longer than {MAX_SET_NAME} bytes",
                            set.name, kernel_name
                        ),
                    )
                    .at(sp)
                    .hint(format!("shorten the name by {} bytes", kernel_name.len() - MAX_SET_NAME)),
                );
            }
            // Keep the IR valid all the same: a unique short name.
            kernel_name = format!("s{}", id.0);
        }
        // Composed of validated names (`dc-` and an ipset name, a node tag of
        // `[A-Za-z0-9_-]`), so only the length could fail, handled above.
        let mut kernel_name = ir::KernelSetName::parse(&kernel_name)
            .unwrap_or_else(|_| ir::KernelSetName::derived(format!("s{}", id.0)));
        if !self.kernel_names.insert(kernel_name.to_string()) {
            kernel_name = ir::KernelSetName::derived(format!("s{}", id.0));
            self.kernel_names.insert(kernel_name.to_string());
        }
        self.sets.push(IpSet {
            name: set.name,
            scope: set.scope,
            kernel_name,
            entries: set.entries,
            origin: set.origin,
        });
        id
    }

    fn collect_definitions(&mut self) {
        let ast = self.ast;
        // Aliases first (sets refer to them).
        if let Some(c) = &ast.cluster {
            for a in &c.aliases {
                self.aliases.insert(
                    (Owner::Cluster, a.name.value.to_ascii_lowercase()),
                    AliasDefR { net: a.net.value },
                );
            }
            for g in &c.groups {
                let key = g.name.value.to_ascii_lowercase();
                if let Some(prev) = self.groups.get(&key) {
                    let line = prev.span.line;
                    self.push(
                        Diagnostic::new(
                            codes::DUPLICATE_NAME,
                            format!("security group `{}` defined twice", g.name.value),
                        )
                        .at(g.name.span)
                        .note(format!("first defined on line {line}")),
                    );
                    continue;
                }
                if g.name.value.len() > MAX_GROUP_NAME {
                    self.push(
                        Diagnostic::new(
                            codes::NAME_TOO_LONG,
                            format!(
                                "security group name `{}` is longer than {MAX_GROUP_NAME} bytes",
                                g.name.value
                            ),
                        )
                        .at(g.name.span)
                        .note(
                            "Proxmox limits group names to 18 characters (they become chain names)",
                        ),
                    );
                }
                self.groups.insert(key, g);
            }
        }
        for (&id, f) in &ast.guest_fw {
            for a in &f.aliases {
                self.aliases.insert(
                    (Owner::Guest(id), a.name.value.to_ascii_lowercase()),
                    AliasDefR { net: a.net.value },
                );
            }
        }
        if let Some(c) = &ast.cluster {
            for s in &c.ipsets {
                self.define_set(Owner::Cluster, s);
            }
        }
        for (&id, f) in &ast.guest_fw {
            for s in &f.ipsets {
                self.define_set(Owner::Guest(id), s);
            }
        }
    }

    fn define_set(&mut self, owner: Owner, s: &ast::IpSetDef) {
        let lname = s.name.value.to_ascii_lowercase();
        if self.set_index.contains_key(&(owner, lname.clone())) {
            // Same name twice in one file is reported by the parser as a duplicate section.
            return;
        }
        let (scope, kernel_name) = match owner {
            Owner::Cluster => (SetScope::Cluster, format!("dc-{}", s.name.value)),
            Owner::Guest(id) => (SetScope::Guest(id), format!("g{id}-{}", s.name.value)),
        };
        // Proxmox accepts ipset names up to 64 bytes and hashes the ones too
        // long for the kernel (compute_ipset_chain_name: FNV-31a of
        // `<vmid>-<name>`); so does rampart. The Proxmox name stays in the
        // set's comment and in the simulator's output.
        let kernel_name = if kernel_name.len() <= MAX_SET_NAME {
            kernel_name
        } else {
            match owner {
                Owner::Cluster => format!("dc-{:X}", fnv31a(&format!("0-{}", s.name.value))),
                Owner::Guest(id) => {
                    format!("g{id}-{:X}", fnv31a(&format!("{id}-{}", s.name.value)))
                }
            }
        };
        let key = (owner, s.name.value.to_string());
        // The previous result, unless the IR that held its entries was not
        // given back ([`SetMemo::recycle`]).
        let prev = self.memo_old.remove(&key).filter(|m| m.entries.is_some());
        // Unchanged addresses only (the common case of a big set): checked
        // against the entries as written, no list built.
        let same_ranges = |m: &MemoSet| {
            m.items.len() == s.entries.len()
                && m.items.iter().zip(&s.entries).all(|(&(r, n, sp), e)| {
                    matches!(e.item, SetItem::Range(x) if x == r) && n == e.nomatch && sp == e.span
                })
        };
        let (items, entries, dups) = match prev {
            Some(m) if same_ranges(&m) => (m.items, m.entries.unwrap_or_default(), m.diags),
            prev => {
                // The entries as ranges (aliases looked up, their problems reported).
                let mut items: Vec<(IpRange, bool, Span)> = Vec::with_capacity(s.entries.len());
                for e in &s.entries {
                    match &e.item {
                        SetItem::Range(r) => items.push((*r, e.nomatch, e.span)),
                        SetItem::Alias(n) => {
                            if let Some(r) = self.lookup_alias_for_set(owner, n) {
                                items.push((r, e.nomatch, e.span));
                            }
                        }
                    }
                }
                let (entries, dups) = match prev {
                    Some(m) if m.items == items => (m.entries.unwrap_or_default(), m.diags),
                    _ => dedup_entries(&s.name.value, &items),
                };
                (items, entries, dups)
            }
        };
        self.diags.items.extend(dups.iter().cloned());
        let lent = (entries.as_ptr() as usize, entries.len());
        let id = self.finish_set(owner, s, lname, scope, kernel_name, entries);
        if let Some(new) = &mut self.memo_new {
            // The entries are lent to the IR: given back by `recycle`.
            new.insert(
                key,
                MemoSet {
                    items,
                    entries: None,
                    diags: dups,
                    id,
                    lent,
                },
            );
        }
    }

    fn finish_set(
        &mut self,
        owner: Owner,
        s: &ast::IpSetDef,
        lname: String,
        scope: SetScope,
        kernel_name: String,
        entries: Vec<SetEntry>,
    ) -> SetId {
        let set = NewSet {
            name: s.name.value.clone(),
            scope,
            kernel_name,
            entries,
            origin: Origin::line(s.span),
        };
        let id = self.add_set(set, Some(s.name.span));
        self.set_index.insert((owner, lname), id);
        id
    }

    /// An alias inside an ipset: guest sets see the guest's aliases, then the cluster's.
    fn lookup_alias_for_set(&mut self, owner: Owner, n: &NameRef) -> Option<IpRange> {
        let key = n.name.to_ascii_lowercase();
        let order: Vec<Owner> = match (n.scope, owner) {
            (Scope::Dc, _) => vec![Owner::Cluster],
            (Scope::Guest, Owner::Guest(id)) => vec![Owner::Guest(id)],
            (Scope::Guest, Owner::Cluster) => {
                self.push(
                    Diagnostic::new(
                        codes::UNKNOWN_SCOPE,
                        format!("`guest/{}`: cluster.fw has no guest scope", n.name),
                    )
                    .at(n.span)
                    .hint(format!("write `{}` or `dc/{}`", n.name, n.name)),
                );
                return None;
            }
            (Scope::Auto, Owner::Guest(id)) => vec![Owner::Guest(id), Owner::Cluster],
            (Scope::Auto, Owner::Cluster) => vec![Owner::Cluster],
        };
        for o in &order {
            if let Some(a) = self.aliases.get(&(*o, key.clone())) {
                return Some(IpRange::from_net(&a.net));
            }
        }
        self.undefined_alias(n, &order);
        None
    }

    fn undefined_alias(&mut self, n: &NameRef, order: &[Owner]) {
        let cands: Vec<String> = self
            .aliases
            .keys()
            .filter(|(o, _)| order.contains(o))
            .map(|(_, k)| k.clone())
            .collect();
        let mut d = Diagnostic::new(
            codes::UNDEFINED_ALIAS,
            format!("undefined alias `{}`", n.name),
        )
        .at(n.span)
        .label("not defined in any [ALIASES] in scope");
        if let Some(h) = did_you_mean(&n.name, cands.iter().map(|s| s.as_str())) {
            d = d.hint(h);
        }
        self.push(d);
    }

    fn build_nodes(&mut self) {
        let ast = self.ast;
        let cluster_local = self
            .aliases
            .get(&(Owner::Cluster, "local_network".to_string()))
            .map(|a| a.net);
        let mgmt = self
            .set_index
            .get(&(Owner::Cluster, "management".to_string()))
            .copied();
        let blacklist = self
            .set_index
            .get(&(Owner::Cluster, "blacklist".to_string()))
            .copied();
        if let Some(m) = mgmt {
            let any: Vec<Span> = self.sets[m.0 as usize]
                .entries
                .iter()
                .filter(|e| !e.nomatch && e.range.as_net().is_some_and(|n| n.prefix_len() == 0))
                .filter_map(|e| e.origin.span())
                .collect();
            for sp in any {
                self.push(
                    Diagnostic::new(
                        codes::ANY_MANAGEMENT_SOURCE,
                        "the management set admits every address",
                    )
                    .at(sp)
                    .note("anyone on the internet may then reach SSH and the web interface")
                    .hint("list the admin networks instead"),
                );
            }
        }
        let mut seen: HashMap<String, Span> = HashMap::new();
        let mut decls: Vec<&ast::NodeDecl> = Vec::new();
        for n in &ast.nodes {
            if let Some(prev) = seen.get(n.name.value.as_str()) {
                let pl = prev.line;
                self.push(
                    Diagnostic::new(
                        codes::DUPLICATE_NAME,
                        format!("node `{}` declared twice", n.name.value),
                    )
                    .at(n.name.span)
                    .note(format!("first declared on line {pl}")),
                );
                continue;
            }
            seen.insert(n.name.value.to_string(), n.name.span);
            decls.push(n);
        }
        // Addresses of all nodes, for cluster peers.
        let all_addrs: Vec<Vec<IpNet>> = decls
            .iter()
            .map(|n| {
                n.bridges
                    .iter()
                    .flat_map(|b| b.addresses.iter().map(|a| a.value))
                    .chain(n.addresses.iter().map(|a| a.value))
                    .collect()
            })
            .collect();
        let mut all_peers: Vec<(IpRange, usize)> = all_addrs
            .iter()
            .enumerate()
            .flat_map(|(j, a)| a.iter().map(move |n| (host_range(n.addr()), j)))
            .collect();
        all_peers.sort();
        for (i, n) in decls.iter().enumerate() {
            let addresses = all_addrs[i].clone();
            let local_network: Vec<IpNet> = if let Some(ln) = &n.local_network {
                ln.iter().map(|x| x.value).collect()
            } else if let Some(net) = cluster_local {
                vec![net]
            } else {
                // As pve-firewall's local_network(): the one network holding
                // the node's address (the address the cluster knows it by:
                // its lowest corosync ring, else its first address).
                let ring_ip = ast
                    .corosync
                    .as_ref()
                    .and_then(|c| {
                        c.nodes
                            .iter()
                            .find(|x| x.name.value == n.name.value.as_str())
                    })
                    .and_then(|x| {
                        x.rings
                            .iter()
                            .filter_map(|(r, a)| match a.value {
                                ast::RingAddr::Ip(ip) => Some((*r, ip)),
                                ast::RingAddr::Host(_) => None,
                            })
                            .min_by_key(|(r, _)| *r)
                            .map(|(_, ip)| ip)
                    });
                let primary = ring_ip.or_else(|| addresses.first().map(|a| a.addr()));
                let v: Vec<IpNet> = primary
                    .map(|ip| {
                        addresses
                            .iter()
                            .find(|a| a.addr() == ip)
                            .or_else(|| addresses.iter().find(|a| a.contains(&ip)))
                            .map(|a| a.trunc())
                            .unwrap_or_else(|| IpNet::from(ip))
                    })
                    .into_iter()
                    .collect();
                if !v.is_empty() && v.iter().all(|x| x.prefix_len() == x.max_prefix_len()) {
                    let name = n.name.value.as_str();
                    self.push(
                        Diagnostic::new(
                            codes::LOCAL_NETWORK_HOST_ONLY,
                            format!("the local network of `{name}` is only its own address"),
                        )
                        .at(n.span)
                        .note("Proxmox takes the network of the node's address from its routes; the site gives the address no prefix, so the management set and the local-network rules hold this address alone")
                        .hint(format!("add `nodes/{name}/interfaces` (a copy of the node's /etc/network/interfaces), a `local_network` alias in cluster.fw, or the node's prefix in site.toml")),
                    );
                }
                v
            };
            let platform = match n.platform.as_ref().map(|p| p.value) {
                Some(ast::PlatformName::Xcpng) => ir::Platform::Xcpng,
                Some(ast::PlatformName::Linux) => ir::Platform::Linux,
                _ => ir::Platform::Proxmox,
            };
            let backend = match n.backend.as_ref().or(ast.backend.as_ref()).map(|b| b.value) {
                Some(ast::BackendName::Iptables) => ir::Backend::Iptables,
                Some(ast::BackendName::Nftables) => ir::Backend::Nftables,
                None if platform == ir::Platform::Xcpng => ir::Backend::Iptables,
                None => ir::Backend::Nftables,
            };
            let tag = if n.name.value.len() <= 16
                && n.name
                    .value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                n.name.value.to_string()
            } else {
                format!("{i}")
            };
            // Management: the cluster set plus local_network.
            let mut entries: Vec<SetEntry> = mgmt
                .map(|m| self.sets[m.0 as usize].entries.clone())
                .unwrap_or_default();
            for net in &local_network {
                entries.push(SetEntry {
                    range: IpRange::from_net(net),
                    nomatch: false,
                    origin: Origin::auto("auto:local_network"),
                });
            }
            entries.sort_by(|a, b| (a.range, a.nomatch).cmp(&(b.range, b.nomatch)));
            entries.dedup_by(|a, b| a.range == b.range && a.nomatch == b.nomatch);
            let management = self.add_set(
                NewSet {
                    name: ir::IpSetName::from_static("management"),
                    scope: SetScope::Node(n.name.value.clone()),
                    kernel_name: format!("n-{tag}-mgmt"),
                    entries,
                    origin: Origin::auto("auto:management"),
                },
                None,
            );
            // Every other node's addresses: the global sorted list minus this node's.
            let mut peers: Vec<SetEntry> = Vec::with_capacity(all_peers.len());
            for &(range, j) in &all_peers {
                if j != i && peers.last().map_or(true, |l: &SetEntry| l.range != range) {
                    // The peer's own declaration (no allocation per entry: these sets
                    // grow with the square of the number of nodes).
                    peers.push(SetEntry {
                        range,
                        nomatch: false,
                        origin: Origin::line(decls[j].span),
                    });
                }
            }
            let cluster_peers = self.add_set(
                NewSet {
                    name: ir::IpSetName::from_static("cluster_peers"),
                    scope: SetScope::Node(n.name.value.clone()),
                    kernel_name: format!("n-{tag}-peers"),
                    entries: peers,
                    origin: Origin::auto("auto:cluster_peers"),
                },
                None,
            );
            let corosync = self.corosync_links(i, n, &tag, &all_addrs, cluster_peers);
            let host_opts = ast
                .hosts
                .get(n.name.value.as_str())
                .map(|h| host_options(&h.options))
                .unwrap_or_else(|| host_options(&Default::default()));
            let enabled = self.cluster_opts.enable && host_opts.enable;
            let sf = &n.saved_files;
            if let (Some(f), ir::Backend::Nftables) = (sf.first(), backend) {
                self.push(
                    Diagnostic::new(
                        codes::SITE_TOML,
                        format!(
                            "node `{}` uses the nftables backend: its rules are not kept in an iptables-restore file",
                            n.name.value
                        ),
                    )
                    .at(f.span)
                    .label("only for an iptables-backend node")
                    .hint("add `backend = \"iptables\"` to the node (XCP-ng nodes are iptables by default), or remove the file option"),
                );
            }
            let saved_files = match backend {
                ir::Backend::Iptables => ir::SavedFiles {
                    iptables: sf.iptables.as_ref().map(|s| s.value.clone()),
                    ip6tables: sf.ip6tables.as_ref().map(|s| s.value.clone()),
                    ipset: sf.ipset.as_ref().map(|s| s.value.clone()),
                },
                ir::Backend::Nftables => Default::default(),
            };
            self.node_index
                .insert(n.name.value.clone(), self.nodes.len());
            self.implicit_bridges.push(n.implicit_bridges);
            self.nodes.push(ir::Node {
                name: n.name.value.clone(),
                backend,
                platform,
                bridges: n
                    .bridges
                    .iter()
                    .map(|b| ir::Bridge {
                        name: b.name.value.clone(),
                        addresses: b.addresses.iter().map(|a| a.value).collect(),
                    })
                    .collect(),
                addresses,
                local_network,
                firewall: ir::HostFirewall {
                    enabled,
                    options: host_opts,
                    policy_in: self.cluster_opts.policy_in,
                    policy_out: self.cluster_opts.policy_out,
                    policy_forward: self.cluster_opts.policy_forward,
                    rules: Vec::new(),
                    management,
                    blacklist,
                    cluster_peers,
                    corosync,
                },
                origin: Origin::line(n.span),
                saved_files,
            });
        }
    }

    /// The corosync links of node `i` (`n`), ring by ring as pve-firewall
    /// opens them: from corosync.conf when the site has one (this node's
    /// `ringN_addr` and the other nodes' `ringN_addr` of the same family);
    /// otherwise each of the node's addresses with every other node's
    /// addresses (`cluster_peers`).
    fn corosync_links(
        &mut self,
        i: usize,
        n: &ast::NodeDecl,
        tag: &str,
        all_addrs: &[Vec<IpNet>],
        cluster_peers: SetId,
    ) -> Vec<ir::CorosyncLink> {
        let ast = self.ast;
        let Some(c) = &ast.corosync else {
            return all_addrs[i]
                .iter()
                .enumerate()
                .map(|(k, a)| ir::CorosyncLink {
                    ring: k as u32,
                    local: a.addr(),
                    peers: cluster_peers,
                    origin: Origin::line(n.span),
                })
                .collect();
        };
        let ip_of = |a: &ast::Spanned<ast::RingAddr>| match a.value {
            ast::RingAddr::Ip(ip) => Some(ip),
            ast::RingAddr::Host(_) => None,
        };
        let Some(me) = c
            .nodes
            .iter()
            .find(|x| x.name.value == n.name.value.as_str())
        else {
            return Vec::new();
        };
        let mut links = Vec::new();
        let mut done: HashSet<u32> = HashSet::new();
        for (ring, a) in &me.rings {
            let Some(local) = ip_of(a) else { continue };
            if !done.insert(*ring) {
                continue;
            }
            let mut entries: Vec<SetEntry> = c
                .nodes
                .iter()
                .filter(|x| x.name.value != me.name.value)
                .flat_map(|x| x.rings.iter().filter(|(r, _)| r == ring))
                .filter_map(|(_, pa)| {
                    ip_of(pa)
                        .filter(|ip| ip.is_ipv4() == local.is_ipv4())
                        .map(|ip| SetEntry {
                            range: host_range(ip),
                            nomatch: false,
                            origin: Origin::line(pa.span),
                        })
                })
                .collect();
            entries.sort_by(|a, b| a.range.cmp(&b.range));
            entries.dedup_by(|a, b| a.range == b.range);
            let peers = self.add_set(
                NewSet {
                    name: ir::IpSetName::derived(format!("corosync_ring{ring}")),
                    scope: SetScope::Node(n.name.value.clone()),
                    kernel_name: format!("n-{tag}-ring{ring}"),
                    entries,
                    origin: Origin::line(a.span),
                },
                None,
            );
            links.push(ir::CorosyncLink {
                ring: *ring,
                local,
                peers,
                origin: Origin::line(a.span),
            });
        }
        links
    }

    fn build_guests(&mut self) -> Vec<ir::Guest> {
        let ast = self.ast;
        let mut out: Vec<ir::Guest> = Vec::with_capacity(ast.guests.len());
        let mut seen: HashMap<u32, Span> = HashMap::new();
        for g in &ast.guests {
            let id = g.id.value;
            if let Some(prev) = seen.get(&id) {
                let p = *prev;
                self.push(
                    Diagnostic::new(
                        codes::DUPLICATE_GUEST,
                        format!("two guests with the id {id}"),
                    )
                    .at(g.id.span)
                    .note(format!(
                        "the other is declared at line {} of file #{}",
                        p.line, p.file.0
                    )),
                );
                continue;
            }
            seen.insert(id, g.id.span);
            let node_idx = match &g.node {
                Some(n) => match self.node_index.get(n.value.as_str()) {
                    Some(&i) => Some(i),
                    None => {
                        let mut d = Diagnostic::new(
                            codes::UNKNOWN_NODE,
                            format!(
                                "guest {id} is on node `{}`, which the site does not declare",
                                n.value
                            ),
                        )
                        .at(n.span);
                        if let Some(h) =
                            did_you_mean(&n.value, self.nodes.iter().map(|x| x.name.as_str()))
                        {
                            d = d.hint(h);
                        }
                        self.push(d);
                        continue;
                    }
                },
                None if self.nodes.len() == 1 => Some(0),
                None => {
                    self.push(
                        Diagnostic::new(codes::UNKNOWN_NODE, format!("guest {id}: no node given"))
                            .at(g.span)
                            .hint("add `node = \"...\"` to the guest, or put its .conf under nodes/<node>/"),
                    );
                    continue;
                }
            };
            let Some(node_name) = node_idx.map(|i| self.nodes[i].name.clone()) else {
                continue; // every arm above gives a node or skips the guest
            };
            let fw = ast.guest_fw.get(&id);
            let options = fw
                .map(|f| guest_options(&f.options))
                .unwrap_or_else(|| guest_options(&Default::default()));
            let mut nics: Vec<ir::Nic> = Vec::new();
            let mut nic_names: Vec<ir::NicName> = Vec::new();
            for n in &g.nics {
                if nic_names.contains(&n.name.value) {
                    self.push(
                        Diagnostic::new(
                            codes::DUPLICATE_NAME,
                            format!("guest {id} has two NICs named `{}`", n.name.value),
                        )
                        .at(n.name.span),
                    );
                    continue;
                }
                if let Some(i) = node_idx {
                    let node = &self.nodes[i];
                    let implicit = self.implicit_bridges[i];
                    if !implicit && !node.bridges.iter().any(|b| b.name == n.bridge.value) {
                        let mut d = Diagnostic::new(
                            codes::UNKNOWN_BRIDGE,
                            format!(
                                "NIC `{}` of guest {id} is on bridge `{}`, which node `{}` does not have",
                                n.name.value, n.bridge.value, node.name
                            ),
                        )
                        .at(n.bridge.span);
                        if let Some(h) = did_you_mean(
                            &n.bridge.value,
                            node.bridges.iter().map(|b| b.name.as_str()),
                        ) {
                            d = d.hint(h);
                        }
                        self.push(d);
                    }
                }
                let prefix = match g.kind {
                    ast::GuestKindName::Vm => "tap",
                    ast::GuestKindName::Ct => "veth",
                };
                let ifname = format!("{prefix}{id}i{}", n.index);
                // A prefix and two numbers: only the length can break the rule.
                let Ok(ifname) = ir::IfaceName::parse(&ifname) else {
                    self.push(
                        Diagnostic::new(
                            codes::NAME_TOO_LONG,
                            format!(
                                "the host device of NIC `{}` would be `{ifname}`, longer than {MAX_IFNAME} bytes",
                                n.name.value
                            ),
                        )
                        .at(g.id.span)
                        .note("Linux interface names hold at most 15 bytes; use a shorter vmid"),
                    );
                    // The NIC is left out; its rules still resolve against its name.
                    nic_names.push(n.name.value.clone());
                    continue;
                };
                // `ipfilter-` and a NIC name (at most 13 bytes): an ipset name.
                let ipfilter_name = ir::IpSetName::derived(format!("ipfilter-{}", n.name.value));
                let explicit = self
                    .set_index
                    .get(&(Owner::Guest(id), ipfilter_name.to_string()))
                    .copied();
                let ipfilter = match explicit {
                    Some(s) => Some(s),
                    None if options.ipfilter => {
                        let mut entries: Vec<SetEntry> = n
                            .addresses
                            .iter()
                            .map(|a| SetEntry {
                                range: host_range(a.value.addr()),
                                nomatch: false,
                                origin: Origin::line(a.span),
                            })
                            .collect();
                        if let Some(mac) = n.mac {
                            entries.push(SetEntry {
                                range: host_range(IpAddr::V6(link_local(mac))),
                                nomatch: false,
                                origin: Origin::auto("auto:ipfilter-link-local"),
                            });
                        }
                        entries.sort_by(|a, b| a.range.cmp(&b.range));
                        entries.dedup_by(|a, b| a.range == b.range);
                        Some(self.add_set(
                            NewSet {
                                name: ipfilter_name.clone(),
                                scope: SetScope::Guest(id),
                                kernel_name: format!("g{id}-{ipfilter_name}"),
                                entries,
                                origin: Origin::auto("auto:ipfilter"),
                            },
                            None,
                        ))
                    }
                    None => None,
                };
                nic_names.push(n.name.value.clone());
                nics.push(ir::Nic {
                    index: n.index,
                    name: n.name.value.clone(),
                    ifname,
                    bridge: n.bridge.value.clone(),
                    mac: n.mac,
                    addresses: n.addresses.iter().map(|a| a.value).collect(),
                    firewall: n.firewall,
                    ipfilter,
                    vlan: n.vlan,
                });
            }
            let mut rules = Vec::new();
            if let Some(f) = fw {
                let ctx = Ctx {
                    guest: Some(id),
                    guest_nics: Some(&nic_names),
                    node: node_idx,
                    via: None,
                    group_iface: None,
                    report: true,
                };
                self.resolve_rules(&f.rules, ctx, true, &mut rules);
            }
            out.push(ir::Guest {
                id,
                kind: match g.kind {
                    ast::GuestKindName::Vm => ir::GuestKind::Vm,
                    ast::GuestKindName::Ct => ir::GuestKind::Ct,
                },
                name: g.name.as_ref().map(|n| n.value.clone()),
                node: node_name,
                nics,
                enabled: self.cluster_opts.enable && options.enable,
                options,
                rules,
                origin: Origin::line(g.span),
            });
        }
        out
    }

    /// Nodes read from a Proxmox tree declare no bridges: give them the
    /// bridges their guests' NICs name (without addresses).
    fn add_implicit_bridges(&mut self, guests: &[ir::Guest]) {
        for g in guests {
            let Some(&i) = self.node_index.get(g.node.as_str()) else {
                continue;
            };
            if !self.implicit_bridges[i] {
                continue;
            }
            for n in &g.nics {
                if !self.nodes[i].bridges.iter().any(|b| b.name == n.bridge) {
                    self.nodes[i].bridges.push(ir::Bridge {
                        name: n.bridge.clone(),
                        addresses: Vec::new(),
                    });
                }
            }
        }
        for n in &mut self.nodes {
            n.bridges.sort_by(|a, b| a.name.cmp(&b.name));
        }
    }

    fn build_host_rules(&mut self) {
        let ast = self.ast;
        let cluster_rules: &[RuleLine] = ast
            .cluster
            .as_ref()
            .map(|c| c.rules.as_slice())
            .unwrap_or(&[]);
        // Cluster rules resolve the same on every node unless they name
        // `local_network` (derived per node): resolve once, reuse.
        let mut cached: Option<Vec<ir::Rule>> = None;
        let node_specific = self.uses_local_network(cluster_rules);
        if self.nodes.is_empty() && !cluster_rules.is_empty() {
            // No node: still check the rules.
            let ctx = Ctx {
                guest: None,
                guest_nics: None,
                node: None,
                via: None,
                group_iface: None,
                report: true,
            };
            let mut sink = Vec::new();
            self.resolve_rules(cluster_rules, ctx, true, &mut sink);
        }
        for i in 0..self.nodes.len() {
            let name = self.nodes[i].name.clone();
            let mut rules = Vec::new();
            if let Some(h) = ast.hosts.get(name.as_str()) {
                let ctx = Ctx {
                    guest: None,
                    guest_nics: None,
                    node: Some(i),
                    via: None,
                    group_iface: None,
                    report: true,
                };
                self.resolve_rules(&h.rules, ctx, true, &mut rules);
            }
            match (&cached, node_specific) {
                (Some(c), false) => rules.extend(c.iter().cloned()),
                _ => {
                    let ctx = Ctx {
                        guest: None,
                        guest_nics: None,
                        node: Some(i),
                        via: None,
                        group_iface: None,
                        report: true,
                    };
                    let mut cr = Vec::new();
                    self.resolve_rules(cluster_rules, ctx, true, &mut cr);
                    if !node_specific {
                        cached = Some(cr.clone());
                    }
                    rules.extend(cr);
                }
            }
            self.lint_management_rules(&rules);
            self.nodes[i].firewall.rules = rules;
        }
    }

    /// Case 14: a host rule admitting any source to a management port.
    fn lint_management_rules(&mut self, rules: &[ir::Rule]) {
        for r in rules {
            if r.dir != Direction::In || r.action != Action::Accept {
                continue;
            }
            let any_src = match &r.source {
                Some(AddrMatch::List(l)) => l
                    .iter()
                    .any(|x| x.as_net().is_some_and(|n| n.prefix_len() == 0)),
                _ => false,
            };
            let mgmt_port = r.proto == Some(Proto::Tcp)
                && r.dport.iter().any(|p| p.contains(22) || p.contains(8006));
            if any_src && mgmt_port {
                if let Origin::Source { span, .. } = r.origin {
                    self.push(
                        Diagnostic::new(
                            codes::ANY_MANAGEMENT_SOURCE,
                            "management port open to any source address",
                        )
                        .at(span)
                        .note("SSH and the web interface are then reachable from everywhere")
                        .hint("use `-source +management` or list the admin networks"),
                    );
                }
            }
        }
    }

    fn uses_local_network(&self, rules: &[RuleLine]) -> bool {
        let check = |s: &Option<Spanned<AddrSpec>>| {
            match s {
            Some(Spanned { value: AddrSpec::List(l), .. }) => {
                l.iter().any(|i| matches!(&i.value, AddrItem::Alias(n) if n.name.eq_ignore_ascii_case("local_network")))
            }
            Some(Spanned { value: AddrSpec::Set(n), .. }) => n.name.eq_ignore_ascii_case("management"),
            None => false,
        }
        };
        rules.iter().any(|r| match &r.body {
            RuleBody::Rule { opts, .. } => check(&opts.source) || check(&opts.dest),
            RuleBody::Group { name, .. } => self
                .groups
                .get(&name.value.to_ascii_lowercase())
                .is_some_and(|g| self.uses_local_network(&g.rules)),
        })
    }

    fn check_unused_files(&mut self, guests: &[ir::Guest]) {
        let ast = self.ast;
        let known: HashSet<u32> = guests.iter().map(|g| g.id).collect();
        let declared: HashSet<u32> = ast.guests.iter().map(|g| g.id.value).collect();
        for (id, f) in &ast.guest_fw {
            if !known.contains(id) && !declared.contains(id) {
                self.push(
                    Diagnostic::new(
                        codes::UNKNOWN_GUEST,
                        format!(
                            "firewall/{id}.fw is for guest {id}, which the site does not declare"
                        ),
                    )
                    .at(Span::new(f.file, 1, 1, 0))
                    .note("its rules apply to nothing")
                    .hint(format!(
                        "declare guest {id} in site.toml (or add its .conf), or delete the file"
                    )),
                );
            }
        }
        for (node, f) in &ast.hosts {
            if !self.node_index.contains_key(node) {
                let mut d = Diagnostic::new(
                    codes::UNKNOWN_NODE,
                    format!("host.fw for node `{node}`, which the site does not declare"),
                )
                .at(Span::new(f.file, 1, 1, 0));
                if let Some(h) = did_you_mean(node, self.nodes.iter().map(|n| n.name.as_str())) {
                    d = d.hint(h);
                }
                self.push(d);
            }
        }
    }

    /// Resolve a list of rule lines (a file's [RULES] or a group body).
    fn resolve_rules(&mut self, rules: &[RuleLine], ctx: Ctx, top: bool, out: &mut Vec<ir::Rule>) {
        for r in rules {
            if !r.enabled {
                continue;
            }
            match &r.body {
                RuleBody::Group { name, iface } => {
                    if !top {
                        continue; // reported by the parser
                    }
                    let key = name.value.to_ascii_lowercase();
                    let Some(g) = self.groups.get(&key).copied() else {
                        if ctx.report {
                            let mut d = Diagnostic::new(
                                codes::UNDEFINED_GROUP,
                                format!("undefined security group `{}`", name.value),
                            )
                            .at(name.span)
                            .label("no [group] of this name in cluster.fw");
                            let names: Vec<&str> = self
                                .groups
                                .values()
                                .map(|g| g.name.value.as_str())
                                .collect();
                            if let Some(h) = did_you_mean(&name.value, names) {
                                d = d.hint(h);
                            }
                            self.push(d);
                        }
                        continue;
                    };
                    if let Some(i) = iface {
                        if !self.check_guest_iface(i, ctx) {
                            continue;
                        }
                    }
                    let gctx = Ctx {
                        via: Some(r.span),
                        group_iface: iface.as_ref(),
                        ..ctx
                    };
                    self.resolve_rules(&g.rules, gctx, false, out);
                }
                RuleBody::Rule { dir, verb, opts } => {
                    self.resolve_rule(r, dir, verb, opts, ctx, out)
                }
            }
        }
    }

    /// Rules the parser refused for a problem of their line are not
    /// compiled, but their names are still looked up: a rule with an
    /// unknown alias, an unknown ipset and a missing `-p` reports all three.
    fn check_broken_rules(&mut self) {
        let ast = self.ast;
        let base = Ctx {
            guest: None,
            guest_nics: None,
            node: (!self.nodes.is_empty()).then_some(0),
            via: None,
            group_iface: None,
            report: true,
        };
        let mut files: Vec<(&FwFile, Ctx)> = Vec::new();
        if let Some(c) = &ast.cluster {
            files.push((c, base));
        }
        for (name, h) in &ast.hosts {
            let node = self.node_index.get(name).copied().or(base.node);
            files.push((h, Ctx { node, ..base }));
        }
        for (id, g) in &ast.guest_fw {
            files.push((
                g,
                Ctx {
                    guest: Some(*id),
                    ..base
                },
            ));
        }
        for (f, ctx) in files {
            for r in &f.broken_rules {
                if let RuleBody::Rule { opts, .. } = &r.body {
                    for a in [&opts.source, &opts.dest].into_iter().flatten() {
                        let _ = self.resolve_addr(a, ctx);
                    }
                }
            }
        }
    }

    fn check_guest_iface(&mut self, i: &Spanned<ir::RuleIfaceName>, ctx: Ctx) -> bool {
        if let (Some(nics), Some(id)) = (ctx.guest_nics, ctx.guest) {
            if !nics.iter().any(|n| n.as_str() == i.value.as_str()) {
                if ctx.report {
                    let have = if nics.is_empty() {
                        "no NICs".to_string()
                    } else {
                        nics.iter()
                            .map(|n| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    let mut d = Diagnostic::new(
                        codes::UNKNOWN_INTERFACE,
                        format!("guest {id} has no interface `{}`", i.value),
                    )
                    .at(i.span)
                    .note(format!("guest {id} has {have}"));
                    if let Some(h) = did_you_mean(&i.value, nics.iter().map(|s| s.as_str())) {
                        d = d.hint(h);
                    }
                    self.push(d);
                }
                return false;
            }
        }
        true
    }

    fn lookup_set(&mut self, n: &NameRef, ctx: Ctx) -> Option<SetId> {
        let key = n.name.to_ascii_lowercase();
        // `management` means the node's management set (cluster set + local_network).
        // (A guest's own `management` set still wins for an unscoped name.)
        let guest_has_own = n.scope == Scope::Auto
            && ctx
                .guest
                .is_some_and(|g| self.set_index.contains_key(&(Owner::Guest(g), key.clone())));
        if key == "management" && n.scope != Scope::Guest && !guest_has_own {
            if let Some(i) = ctx.node {
                return Some(self.nodes[i].firewall.management);
            }
        }
        let order: Vec<Owner> = match (n.scope, ctx.guest) {
            (Scope::Dc, _) => vec![Owner::Cluster],
            (Scope::Guest, Some(g)) => vec![Owner::Guest(g)],
            (Scope::Guest, None) => {
                if ctx.report {
                    self.push(
                        Diagnostic::new(
                            codes::UNKNOWN_SCOPE,
                            format!("`guest/{}`: there is no guest scope here", n.name),
                        )
                        .at(n.span)
                        .hint(format!("write `+{}` or `+dc/{}`", n.name, n.name)),
                    );
                }
                return None;
            }
            (Scope::Auto, Some(g)) => vec![Owner::Guest(g), Owner::Cluster],
            (Scope::Auto, None) => vec![Owner::Cluster],
        };
        for o in &order {
            if let Some(id) = self.set_index.get(&(*o, key.clone())) {
                return Some(*id);
            }
        }
        if ctx.report {
            let cands: Vec<String> = self
                .set_index
                .keys()
                .filter(|(o, _)| order.contains(o))
                .map(|(_, k)| k.clone())
                .collect();
            let mut d = Diagnostic::new(
                codes::UNDEFINED_IPSET,
                format!("undefined ipset `{}`", n.name),
            )
            .at(n.span)
            .label("not defined by any [IPSET] in scope");
            if let Some(h) = did_you_mean(&n.name, cands.iter().map(|s| s.as_str())) {
                d = d.hint(h);
            }
            self.push(d);
        }
        None
    }

    /// An alias in a rule: its ranges, and whether they are the node's derived
    /// `local_network` (which may hold both families; the rule is then split).
    fn lookup_alias(&mut self, n: &NameRef, ctx: Ctx) -> Option<(Vec<IpRange>, bool)> {
        let key = n.name.to_ascii_lowercase();
        let order: Vec<Owner> = match (n.scope, ctx.guest) {
            (Scope::Dc, _) => vec![Owner::Cluster],
            (Scope::Guest, Some(g)) => vec![Owner::Guest(g)],
            (Scope::Guest, None) => {
                if ctx.report {
                    self.push(
                        Diagnostic::new(
                            codes::UNKNOWN_SCOPE,
                            format!("`guest/{}`: there is no guest scope here", n.name),
                        )
                        .at(n.span)
                        .hint(format!("write `{}` or `dc/{}`", n.name, n.name)),
                    );
                }
                return None;
            }
            (Scope::Auto, Some(g)) => vec![Owner::Guest(g), Owner::Cluster],
            (Scope::Auto, None) => vec![Owner::Cluster],
        };
        for o in &order {
            if let Some(a) = self.aliases.get(&(*o, key.clone())) {
                return Some((vec![IpRange::from_net(&a.net)], false));
            }
        }
        if key == "local_network" && n.scope != Scope::Guest {
            if let Some(i) = ctx.node {
                return Some((
                    self.nodes[i]
                        .local_network
                        .iter()
                        .map(IpRange::from_net)
                        .collect(),
                    true,
                ));
            }
        }
        if ctx.report {
            self.undefined_alias(n, &order);
        }
        None
    }

    fn resolve_addr(&mut self, spec: &Spanned<AddrSpec>, ctx: Ctx) -> Option<Resolved> {
        match &spec.value {
            AddrSpec::Set(n) => {
                let id = self.lookup_set(n, ctx)?;
                let set = &self.sets[id.0 as usize];
                if !set.entries.iter().any(|e| !e.nomatch)
                    && !matches!(set.scope, SetScope::Node(_))
                {
                    if ctx.report {
                        let name = set.name.clone();
                        self.push(
                            Diagnostic::new(
                                codes::EMPTY_MATCH,
                                format!(
                                    "ipset `{name}` holds no address, so this rule can never match"
                                ),
                            )
                            .at(n.span)
                            .hint(format!("add entries to [IPSET {name}] or remove the rule")),
                        );
                    }
                    return None;
                }
                Some(Resolved::Set(id))
            }
            AddrSpec::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                let mut derived = false;
                for it in items {
                    match &it.value {
                        AddrItem::Range(r) => out.push(*r),
                        AddrItem::Alias(n) => {
                            match self.lookup_alias(n, ctx) {
                                Some((v, _)) if v.is_empty() => {
                                    if ctx.report {
                                        self.push(
                                        Diagnostic::new(
                                            codes::EMPTY_MATCH,
                                            format!("alias `{}` resolves to no address here", n.name),
                                        )
                                        .at(n.span)
                                        .note("the node has no address to derive local_network from"),
                                    );
                                    }
                                    ok = false;
                                }
                                Some((v, d)) => {
                                    derived |= d;
                                    out.extend(v)
                                }
                                None => ok = false,
                            }
                        }
                    }
                }
                if !ok {
                    return None;
                }
                let fams: HashSet<Family> = out.iter().map(|r| r.family()).collect();
                if fams.len() > 1 && !derived {
                    if ctx.report {
                        self.push(
                            Diagnostic::new(
                                codes::MIXED_FAMILIES,
                                "IPv4 and IPv6 mixed in one address list (through an alias)",
                            )
                            .at(spec.span)
                            .hint("write one rule per family"),
                        );
                    }
                    return None;
                }
                Some(Resolved::List(out))
            }
        }
    }

    fn resolve_rule(
        &mut self,
        line: &RuleLine,
        dir: &Spanned<Direction>,
        verb: &Spanned<RuleVerb>,
        o: &ast::RuleOpts,
        ctx: Ctx,
        out: &mut Vec<ir::Rule>,
    ) {
        let origin = Origin::Source {
            span: line.span,
            via: ctx.via,
        };
        if ctx.guest.is_some() && dir.value == Direction::Forward {
            if ctx.report {
                self.push(
                    Diagnostic::new(
                        codes::DIRECTION_NOT_ALLOWED,
                        "a FORWARD rule in a group used by a guest",
                    )
                    .at(dir.span)
                    .note(format!(
                        "pulled in by {}",
                        ctx.via
                            .map(|v| format!("line {}", v.line))
                            .unwrap_or_default()
                    ))
                    .note("guest rules are IN or OUT"),
                );
            }
            return;
        }
        // Interface.
        let iface = match (&o.iface, ctx.group_iface) {
            (Some(i), _) => {
                if !self.check_guest_iface(i, ctx) {
                    return;
                }
                Some(i.value.clone())
            }
            (None, Some(g)) => Some(g.value.clone()),
            (None, None) => None,
        };
        let source = match &o.source {
            Some(s) => match self.resolve_addr(s, ctx) {
                Some(r) => Some((r, s.span)),
                None => return,
            },
            None => None,
        };
        let dest = match &o.dest {
            Some(s) => match self.resolve_addr(s, ctx) {
                Some(r) => Some((r, s.span)),
                None => return,
            },
            None => None,
        };
        // Families the literal addresses allow (a derived local_network may
        // hold both: the rule is then split per family).
        let lit_fams = |r: &Option<(Resolved, Span)>| -> Option<(Vec<Family>, Span)> {
            match r {
                Some((Resolved::List(l), sp)) => {
                    let mut f: Vec<Family> = l.iter().map(|x| x.family()).collect();
                    f.sort();
                    f.dedup();
                    Some((f, *sp))
                }
                _ => None,
            }
        };
        let (sf, df) = (lit_fams(&source), lit_fams(&dest));
        let variants: Vec<(Option<Family>, Option<Span>)> = match (&sf, &df) {
            (Some((a, _)), Some((b, bs))) => {
                let both: Vec<(Option<Family>, Option<Span>)> = a
                    .iter()
                    .filter(|f| b.contains(f))
                    .map(|f| (Some(*f), Some(*bs)))
                    .collect();
                if both.is_empty() {
                    if ctx.report {
                        self.push(
                            Diagnostic::new(
                                codes::MIXED_FAMILIES,
                                format!(
                                    "source is {} but destination is {}",
                                    fam_name(a),
                                    fam_name(b)
                                ),
                            )
                            .at(*bs)
                            .note("a rule matches one address family"),
                        );
                    }
                    return;
                }
                both
            }
            (Some((a, sp)), None) | (None, Some((a, sp))) => {
                a.iter().map(|f| (Some(*f), Some(*sp))).collect()
            }
            (None, None) => vec![(None, None)],
        };
        let split = variants.len() > 1;
        let set_fams =
            |r: &Option<(Resolved, Span)>, sets: &[IpSet]| -> Option<(SetId, Span, bool, bool)> {
                match r {
                    Some((Resolved::Set(id), sp)) => {
                        let s = &sets[id.0 as usize];
                        let has = |f: Family| {
                            s.entries
                                .iter()
                                .any(|e| !e.nomatch && e.range.family() == f)
                        };
                        Some((*id, *sp, has(Family::V4), has(Family::V6)))
                    }
                    _ => None,
                }
            };
        let set_checks: Vec<(SetId, Span, bool, bool)> =
            [set_fams(&source, &self.sets), set_fams(&dest, &self.sets)]
                .into_iter()
                .flatten()
                .collect();
        let mut family_empty: Option<(SetId, Span, Family)> = None;
        // Rows: the macro's, or the rule itself.
        struct Row {
            proto: Option<Proto>,
            dport: Vec<PortRange>,
            sport: Vec<PortRange>,
            icmp: Option<String>,
            family: Option<Family>,
        }
        let (action, rows): (Action, Vec<Row>) = match &verb.value {
            RuleVerb::Plain(a) => (
                *a,
                vec![Row {
                    // Protocol 0 (`ip`, `hopopt`) is "any protocol", as
                    // in Proxmox (warned in syntax, E0314).
                    proto: o
                        .proto
                        .as_ref()
                        .map(|p| p.value.clone())
                        .filter(|p| p.number() != 0),
                    dport: o
                        .dport
                        .as_ref()
                        .map(|d| d.value.clone())
                        .unwrap_or_default(),
                    sport: o
                        .sport
                        .as_ref()
                        .map(|d| d.value.clone())
                        .unwrap_or_default(),
                    icmp: o.icmp_type.as_ref().map(|t| t.value.clone()),
                    family: None,
                }],
            ),
            RuleVerb::Macro { index, action } => (
                *action,
                macros()[*index]
                    .rows
                    .iter()
                    .map(|m| Row {
                        proto: Some(m.proto.clone()),
                        dport: if m.dport.is_empty() {
                            o.dport
                                .as_ref()
                                .map(|d| d.value.clone())
                                .unwrap_or_default()
                        } else {
                            m.dport.clone()
                        },
                        sport: if m.sport.is_empty() {
                            o.sport
                                .as_ref()
                                .map(|d| d.value.clone())
                                .unwrap_or_default()
                        } else {
                            m.sport.clone()
                        },
                        icmp: m
                            .icmp_type
                            .map(|s| s.to_string())
                            .or_else(|| o.icmp_type.as_ref().map(|t| t.value.clone())),
                        family: m.family,
                    })
                    .collect(),
            ),
        };
        let mut produced = 0;
        let mut conflict: Option<(Family, Family, Option<Span>)> = None;
        for (vfam, vspan) in &variants {
            for row in &rows {
                let pf = row.proto.as_ref().and_then(|p| p.family());
                let mut fam: Option<Family> = None;
                let mut bad = false;
                for f in [row.family, pf, *vfam].into_iter().flatten() {
                    match fam {
                        Some(x) if x != f => {
                            conflict = Some((x, f, *vspan));
                            bad = true;
                        }
                        _ => fam = Some(f),
                    }
                }
                if bad {
                    continue;
                }
                if let Some(f) = fam {
                    if let Some((id, sp, _, _)) = set_checks
                        .iter()
                        .find(|(_, _, v4, v6)| !(if f == Family::V4 { *v4 } else { *v6 }))
                    {
                        family_empty = Some((*id, *sp, f));
                        continue;
                    }
                }
                let icmp_type = match &row.icmp {
                    Some(name) => {
                        let f = pf.unwrap_or(Family::V4);
                        match icmp_type(name, f) {
                            Some((ty, code)) => Some(IcmpType {
                                name: name.clone(),
                                ty,
                                code,
                            }),
                            None => continue, // reported by the parser
                        }
                    }
                    None => None,
                };
                produced += 1;
                let to_match = |r: &Option<(Resolved, Span)>| {
                    r.as_ref().map(|(x, _)| match x {
                        Resolved::Set(id) => AddrMatch::Set(*id),
                        Resolved::List(l) if split => AddrMatch::List(
                            l.iter()
                                .filter(|r| Some(r.family()) == fam)
                                .copied()
                                .collect(),
                        ),
                        Resolved::List(l) => AddrMatch::List(l.clone()),
                    })
                };
                out.push(ir::Rule {
                    origin: origin.clone(),
                    dir: dir.value,
                    action,
                    family: fam,
                    iface: iface.clone(),
                    source: to_match(&source),
                    dest: to_match(&dest),
                    proto: row.proto.clone(),
                    dport: row.dport.clone(),
                    sport: row.sport.clone(),
                    icmp_type,
                    log: o.log.as_ref().map(|l| l.value).unwrap_or(LogLevel::Nolog),
                });
            }
        }
        if produced == 0 && conflict.is_none() {
            if let Some((id, sp, f)) = family_empty {
                if ctx.report {
                    let name = self.sets[id.0 as usize].name.clone();
                    self.push(
                        Diagnostic::new(
                            codes::EMPTY_MATCH,
                            format!("ipset `{name}` holds no {f} address, and this rule is {f}-only: it can never match"),
                        )
                        .at(sp)
                        .hint(format!("add {f} entries to [IPSET {name}]")),
                    );
                }
            }
        }
        if produced == 0 {
            if let Some((a, b, vspan)) = conflict {
                if ctx.report {
                    let at = vspan
                        .or(o.proto.as_ref().map(|p| p.span))
                        .unwrap_or(verb.span);
                    self.push(
                        Diagnostic::new(
                            codes::FAMILY_CONFLICT,
                            format!("this rule mixes {a} and {b}: it can never match"),
                        )
                        .at(at)
                        .label(format!("{b} here"))
                        .note(match &verb.value {
                            RuleVerb::Macro { index, .. } => {
                                format!("macro `{}` has no {} variant", macros()[*index].name, b)
                            }
                            RuleVerb::Plain(_) => format!("the protocol is {a}-only"),
                        }),
                    );
                }
            }
        }
    }
}

/// An ipset's entries sorted and deduplicated, and a diagnostic per
/// duplicate (set `name`).
fn dedup_entries(name: &str, items: &[(IpRange, bool, Span)]) -> (Vec<SetEntry>, Vec<Diagnostic>) {
    let mut entries: Vec<SetEntry> = Vec::with_capacity(items.len());
    let mut diags = Vec::new();
    let mut seen: HashMap<(IpRange, bool), Span> = HashMap::new();
    for &(range, nomatch, span) in items {
        if let Some(prev) = seen.get(&(range, nomatch)) {
            let pl = prev.line;
            diags.push(
                Diagnostic::new(
                    codes::DUPLICATE_SET_ENTRY,
                    format!("`{range}` is already in ipset `{name}`"),
                )
                .at(span)
                .label("duplicate")
                .note(format!("first listed on line {pl}")),
            );
            continue;
        }
        seen.insert((range, nomatch), span);
        entries.push(SetEntry {
            range,
            nomatch,
            origin: Origin::line(span),
        });
    }
    entries.sort_by(|a, b| (a.range, a.nomatch).cmp(&(b.range, b.nomatch)));
    (entries, diags)
}

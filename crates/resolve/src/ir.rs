//! The intermediate representation: a site with everything resolved.
//!
//! Invariants a backend may rely on:
//! - Macros are expanded (one IR rule per macro row), groups inlined in place
//!   of their `GROUP` line, disabled (`|`) rules removed.
//! - Aliases are replaced by addresses; ipset references point into
//!   [`Site::sets`] by [`SetId`].
//! - Every rule has at most one family: `family: None` means the rule matches
//!   both IPv4 and IPv6 (it names no address and no family-bound protocol);
//!   a rule whose source/dest is a set matches, in each family, the set's
//!   entries of that family.
//! - Ports are only present with a protocol that has ports; ICMP types only
//!   with icmp/icmpv6.
//! - Every rule carries its [`Origin`].
//! - Every name is a validated type of [`rampart_types::names`]
//!   ([`NodeName`], [`IfaceName`], [`IpSetName`], ...), never a `String`:
//!   a value of one passed its kind's rule, at parse time for names the site
//!   gives and at construction for names rampart derives (`tap100i0`,
//!   `ipfilter-net0`, `management`). The one free-text field is
//!   [`Guest::name`]. Kernel set names ([`IpSet::kernel_name`],
//!   [`KernelSetName`]) are rampart's own, derived by the resolver from
//!   validated names; no site writes one.

use ipnet::IpNet;
pub use rampart_types::names::{
    IfaceName, IpSetName, KernelSetName, NicName, NodeName, RuleIfaceName, SiteName,
};
use rampart_types::{
    Action, Direction, Family, IpRange, LogLevel, Origin, PortRange, Proto, SourceMap,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// Every file read, to render origins and diagnostics.
    pub sources: SourceMap,
    pub name: SiteName,
    pub cluster: ClusterOptions,
    pub nodes: Vec<Node>,
    pub guests: Vec<Guest>,
    /// All IP sets, indexed by [`SetId`].
    pub sets: Vec<IpSet>,
    /// Node and guest positions by name and id, built on first lookup
    /// (the simulator looks nodes up for every packet; a linear search
    /// made the lock-out guard of N nodes cubic).
    #[serde(skip)]
    pub index: SiteIndex,
}

/// Lookup tables of a [`Site`], built lazily. Always equal to another
/// (they are a cache of the site's own vectors); a lookup checks what it
/// finds, so a site changed after a lookup falls back to a search.
#[derive(Clone, Debug, Default)]
pub struct SiteIndex {
    nodes: std::sync::OnceLock<std::collections::HashMap<String, usize>>,
    guests: std::sync::OnceLock<std::collections::HashMap<u32, usize>>,
}

impl PartialEq for SiteIndex {
    fn eq(&self, _: &SiteIndex) -> bool {
        true
    }
}

impl Site {
    pub fn set(&self, id: SetId) -> &IpSet {
        &self.sets[id.0 as usize]
    }
    pub fn node(&self, name: &str) -> Option<&Node> {
        let idx = self.index.nodes.get_or_init(|| {
            let mut m = std::collections::HashMap::with_capacity(self.nodes.len());
            for (i, n) in self.nodes.iter().enumerate() {
                m.entry(n.name.to_string()).or_insert(i);
            }
            m
        });
        match idx.get(name).and_then(|&i| self.nodes.get(i)) {
            Some(n) if n.name == name => Some(n),
            _ => self.nodes.iter().find(|n| n.name == name),
        }
    }
    pub fn guest(&self, id: u32) -> Option<&Guest> {
        let idx = self.index.guests.get_or_init(|| {
            let mut m = std::collections::HashMap::with_capacity(self.guests.len());
            for (i, g) in self.guests.iter().enumerate() {
                m.entry(g.id).or_insert(i);
            }
            m
        });
        match idx.get(&id).and_then(|&i| self.guests.get(i)) {
            Some(g) if g.id == id => Some(g),
            _ => self.guests.iter().find(|g| g.id == id),
        }
    }
    pub fn guests_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Guest> + 'a {
        self.guests.iter().filter(move |g| g.node == node)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SetId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Nftables,
    Iptables,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Proxmox VE: management ports 22, 8006, 5900-5999, 3128, 60000-60050; corosync 5404-5405/udp ring by ring.
    Proxmox,
    /// XCP-ng: 22, 443, 6653, 6640, cluster 5404-5405, 21064.
    Xcpng,
    /// A plain Linux KVM host: 22.
    Linux,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    Vm,
    Ct,
}

/// `log_ratelimit: enable=1,rate=1/second,burst=5`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRateLimit {
    pub enable: bool,
    /// Packets per `unit`.
    pub rate: u32,
    /// `second`, `minute`, `hour` or `day`.
    pub unit: String,
    pub burst: u32,
}

/// `[OPTIONS]` of cluster.fw, with Proxmox's defaults applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterOptions {
    /// Default false: a cluster.fw without `enable: 1` leaves the firewall off.
    pub enable: bool,
    pub policy_in: Action,
    pub policy_out: Action,
    pub policy_forward: Action,
    pub log_ratelimit: LogRateLimit,
    pub ebtables: bool,
}

/// `[OPTIONS]` of host.fw, with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostOptions {
    pub enable: bool,
    pub log_level_in: LogLevel,
    pub log_level_out: LogLevel,
    pub log_level_forward: LogLevel,
    pub nosmurfs: bool,
    pub smurf_log_level: LogLevel,
    pub tcpflags: bool,
    pub tcp_flags_log_level: LogLevel,
    pub ndp: bool,
    pub nf_conntrack_max: u32,
    pub nf_conntrack_tcp_timeout_established: u32,
    pub nf_conntrack_tcp_timeout_syn_recv: u32,
    pub nf_conntrack_allow_invalid: bool,
    /// e.g. `["ftp", "tftp"]`.
    pub nf_conntrack_helpers: Vec<String>,
    pub protection_synflood: bool,
    pub protection_synflood_rate: u32,
    pub protection_synflood_burst: u32,
    pub log_nf_conntrack: bool,
}

/// `[OPTIONS]` of `<vmid>.fw`, with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestOptions {
    pub enable: bool,
    pub macfilter: bool,
    pub dhcp: bool,
    pub ndp: bool,
    pub radv: bool,
    pub ipfilter: bool,
    pub policy_in: Action,
    pub policy_out: Action,
    pub log_level_in: LogLevel,
    pub log_level_out: LogLevel,
    pub ips: bool,
    /// `ips_queues: 0` or `0:3` (a balanced range); `None` = queue 0.
    pub ips_queues: Option<(u16, u16)>,
    /// Where each option was written in the guest's `.fw` file (the key's
    /// span), by name: diagnostics about an option point at its line.
    #[serde(default)]
    pub spans: std::collections::BTreeMap<String, rampart_types::Span>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: NodeName,
    pub backend: Backend,
    pub platform: Platform,
    pub bridges: Vec<Bridge>,
    /// The node's own addresses with their prefix length (`192.0.2.10/24`).
    pub addresses: Vec<IpNet>,
    /// As pve-firewall detects it: the network holding the node's address
    /// (its lowest corosync ring address, else its first address), or the
    /// `local_network` alias when cluster.fw overrides it (or site.toml's
    /// `local_network`).
    pub local_network: Vec<IpNet>,
    pub firewall: HostFirewall,
    pub origin: Origin,
    /// Where an iptables-backend node keeps its rules for the boot
    /// (`iptables_file` and friends in site.toml); empty unless set.
    #[serde(default, skip_serializing_if = "SavedFiles::is_empty")]
    pub saved_files: SavedFiles,
}

/// Files `apply` writes after the switch, each with a backup of the one it
/// replaces, so the host boots into what runs (an XCP-ng host loads
/// `/etc/sysconfig/ipset` with `ipset restore`, then
/// `/etc/sysconfig/iptables` with `iptables-restore`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedFiles {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6tables: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipset: Option<String>,
}

impl SavedFiles {
    pub fn is_empty(&self) -> bool {
        self.iptables.is_none() && self.ip6tables.is_none() && self.ipset.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bridge {
    pub name: IfaceName,
    pub addresses: Vec<IpNet>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostFirewall {
    /// cluster `enable` and host `enable` both on.
    pub enabled: bool,
    pub options: HostOptions,
    /// From cluster.fw.
    pub policy_in: Action,
    pub policy_out: Action,
    pub policy_forward: Action,
    /// host.fw rules first, then cluster.fw rules, in file order, all
    /// directions (IN, OUT, FORWARD); groups inlined.
    pub rules: Vec<Rule>,
    /// This node's management set: the cluster `management` ipset plus
    /// `local_network`. Always present (possibly empty).
    pub management: SetId,
    /// The cluster `blacklist` set, when defined.
    pub blacklist: Option<SetId>,
    /// Addresses of the other nodes of the cluster (corosync peers).
    pub cluster_peers: SetId,
    /// Corosync links, ring by ring as pve-firewall opens them (udp
    /// 5404-5405, in and out, after the node's rules): this node's address
    /// on a ring and the other nodes' addresses on the same ring. From
    /// corosync.conf; without one, each of the node's addresses is a link to
    /// every other node's addresses of its family.
    #[serde(default)]
    pub corosync: Vec<CorosyncLink>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorosyncLink {
    /// `N` of `ringN_addr` (the address's index without corosync.conf).
    pub ring: u32,
    /// This node's address on the ring.
    pub local: std::net::IpAddr,
    /// The other nodes' addresses on the ring (entries of `local`'s family
    /// are the ones used).
    pub peers: SetId,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Guest {
    pub id: u32,
    pub kind: GuestKind,
    /// The guest's `name:` (VM) or `hostname:` (container): free text, as
    /// written; never part of a script, a path or a key.
    pub name: Option<String>,
    pub node: NodeName,
    pub nics: Vec<Nic>,
    /// cluster `enable` and the guest's own `enable` both on.
    pub enabled: bool,
    pub options: GuestOptions,
    /// IN and OUT rules in file order, groups inlined. `iface` names a NIC
    /// (`net0`) of this guest.
    pub rules: Vec<Rule>,
    pub origin: Origin,
}

impl Guest {
    /// `vm100` / `ct200`: the zone name used by the simulator and tests.
    pub fn zone(&self) -> String {
        match self.kind {
            GuestKind::Vm => format!("vm{}", self.id),
            GuestKind::Ct => format!("ct{}", self.id),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Nic {
    /// `n` of `netN`.
    pub index: u32,
    /// `net0`
    pub name: NicName,
    /// The device on the host: `tap100i0` (VM) or `veth200i0` (container),
    /// derived by rampart from the vmid and the NIC number.
    pub ifname: IfaceName,
    pub bridge: IfaceName,
    pub mac: Option<[u8; 6]>,
    pub addresses: Vec<IpNet>,
    /// `firewall=1` on the NIC: it sits behind the guest firewall.
    pub firewall: bool,
    /// `ipfilter-netN`, or the set built from the NIC's addresses when the
    /// guest's `ipfilter` option is on and no explicit set exists.
    pub ipfilter: Option<SetId>,
    pub vlan: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub origin: Origin,
    pub dir: Direction,
    pub action: Action,
    /// `None`: both families.
    pub family: Option<Family>,
    /// Host rules: a host interface (`vmbr0`); guest rules: a NIC (`net0`).
    pub iface: Option<RuleIfaceName>,
    pub source: Option<AddrMatch>,
    pub dest: Option<AddrMatch>,
    pub proto: Option<Proto>,
    /// Empty: any port.
    pub dport: Vec<PortRange>,
    pub sport: Vec<PortRange>,
    pub icmp_type: Option<IcmpType>,
    pub log: LogLevel,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AddrMatch {
    Set(SetId),
    /// Literal addresses (from the rule, or from an alias), one family.
    List(Vec<IpRange>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IcmpType {
    /// As written, lower-case (`echo-request`, `port-unreachable`, `8`).
    pub name: String,
    pub ty: u8,
    pub code: Option<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SetScope {
    Cluster,
    Guest(u32),
    /// Sets rampart builds per node (management with local_network, cluster peers).
    Node(NodeName),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IpSet {
    /// As users know it: `management`, `blacklist`, `trusted`, `ipfilter-net0`.
    pub name: IpSetName,
    pub scope: SetScope,
    /// Unique across the site and safe for nft set / ipset names (≤ 31
    /// bytes, `[A-Za-z0-9_-]`), e.g. `dc-trusted`, `g100-ipfilter-net0`:
    /// rampart's own name, derived by the resolver.
    pub kernel_name: KernelSetName,
    /// Entries of both families, sorted and deduplicated.
    pub entries: Vec<SetEntry>,
    pub origin: Origin,
}

impl IpSet {
    pub fn entries_of(&self, family: Family) -> impl Iterator<Item = &SetEntry> {
        self.entries
            .iter()
            .filter(move |e| e.range.family() == family)
    }
    /// Does the set match `addr`? Longest-prefix wins between a match and a
    /// `nomatch` entry, as ipset's hash:net does.
    pub fn contains(&self, addr: &std::net::IpAddr) -> bool {
        let mut best: Option<(u128, bool)> = None;
        for e in &self.entries {
            if e.range.contains(addr) {
                let size = range_size(&e.range);
                if best.map_or(true, |(s, _)| size < s) {
                    best = Some((size, !e.nomatch));
                }
            }
        }
        best.map_or(false, |(_, m)| m)
    }
}

fn range_size(r: &IpRange) -> u128 {
    use std::net::IpAddr::*;
    match (r.start, r.end) {
        (V4(a), V4(b)) => (u32::from(b) - u32::from(a)) as u128,
        (V6(a), V6(b)) => u128::from(b) - u128::from(a),
        _ => u128::MAX,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetEntry {
    pub range: IpRange,
    /// `!10.0.0.5`: excluded from the set.
    pub nomatch: bool,
    pub origin: Origin,
}

//! The syntax tree: what the files say, with a span on everything a
//! diagnostic may point at. Values are already typed and checked where a
//! single line decides (addresses, ports, options); everything that needs the
//! whole site (names, scopes, families across aliases) is the resolver's job.

use ipnet::IpNet;
pub use rampart_types::names::{
    AliasName, GroupName, IfaceName, IpSetName, NicName, NodeName, RuleIfaceName, SiteName,
};
use rampart_types::{Action, Direction, FileId, IpRange, LogLevel, PortRange, Proto, Span};
use serde::Serialize;
use std::collections::BTreeMap;

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }
}

/// The whole site as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SiteAst {
    /// `[site] name`, or the directory-less default `site`.
    pub name: Option<Spanned<SiteName>>,
    /// `[site] backend`: the default for nodes that do not name one.
    pub backend: Option<Spanned<BackendName>>,
    /// True when the site has a site.toml (otherwise nodes and guests come
    /// from corosync.conf and the guest .conf files).
    pub has_site_toml: bool,
    pub nodes: Vec<NodeDecl>,
    pub guests: Vec<GuestDecl>,
    /// `firewall/cluster.fw`, when present.
    pub cluster: Option<FwFile>,
    /// `nodes/<node>/host.fw`, by node directory name.
    pub hosts: BTreeMap<NodeName, FwFile>,
    /// `firewall/<vmid>.fw`, by vmid.
    pub guest_fw: BTreeMap<u32, FwFile>,
    /// `corosync.conf`, when present (read with or without site.toml): the
    /// cluster's links, ring by ring, host names already resolved.
    pub corosync: Option<CorosyncConf>,
}

/// What corosync.conf says about the cluster's links.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CorosyncConf {
    pub nodes: Vec<CorosyncNode>,
    /// `totem { transport: udp }` (multicast) when written.
    pub transport: Option<Spanned<String>>,
    /// `totem { ip_version: ... }` when written (`ipv6-4` is corosync's default).
    pub ip_version: Option<Spanned<String>>,
}

/// One `node { }` of corosync.conf's nodelist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CorosyncNode {
    pub name: Spanned<String>,
    /// `ringN_addr` by N, in file order.
    pub rings: Vec<(u32, Spanned<RingAddr>)>,
    pub span: Span,
}

/// A `ringN_addr` value: an address, or a host name to resolve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum RingAddr {
    Ip(std::net::IpAddr),
    Host(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum BackendName {
    Nftables,
    Iptables,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum PlatformName {
    Proxmox,
    Xcpng,
    Linux,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum GuestKindName {
    Vm,
    Ct,
}

/// `iptables_file`, `ip6tables_file`, `ipset_file` of a `[[node]]`:
/// absolute paths, checked at parse time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SavedFileDecls {
    pub iptables: Option<Spanned<String>>,
    pub ip6tables: Option<Spanned<String>>,
    pub ipset: Option<Spanned<String>>,
}

impl SavedFileDecls {
    pub fn is_empty(&self) -> bool {
        self.first().is_none()
    }
    /// The first one given (for a diagnostic about all of them).
    pub fn first(&self) -> Option<&Spanned<String>> {
        self.iptables
            .as_ref()
            .or(self.ip6tables.as_ref())
            .or(self.ipset.as_ref())
    }
}

/// Where a node or guest was declared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeDecl {
    pub name: Spanned<NodeName>,
    pub backend: Option<Spanned<BackendName>>,
    pub platform: Option<Spanned<PlatformName>>,
    pub bridges: Vec<BridgeDecl>,
    /// Addresses not bound to a bridge (`addresses = [...]`, corosync ring addresses).
    pub addresses: Vec<Spanned<IpNet>>,
    /// `local_network = [...]`: overrides the derived local network.
    pub local_network: Option<Vec<Spanned<IpNet>>>,
    pub endpoint: Option<Spanned<String>>,
    /// Files an iptables-backend node keeps its rules in for the boot
    /// (`/etc/sysconfig/iptables` and friends on XCP-ng); none unless set.
    #[serde(skip_serializing_if = "SavedFileDecls::is_empty")]
    pub saved_files: SavedFileDecls,
    /// The node's bridges are not declared (a site without site.toml): the
    /// bridges guests name are taken as they are.
    pub implicit_bridges: bool,
    /// The declaration as a whole (the `[[node]]` header or the directory).
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BridgeDecl {
    pub name: Spanned<IfaceName>,
    pub addresses: Vec<Spanned<IpNet>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GuestDecl {
    pub id: Spanned<u32>,
    pub kind: GuestKindName,
    /// `None` when nothing says which node runs it (reported by the resolver).
    pub node: Option<Spanned<NodeName>>,
    pub name: Option<Spanned<String>>,
    pub nics: Vec<NicDecl>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NicDecl {
    pub index: u32,
    pub name: Spanned<NicName>,
    pub bridge: Spanned<IfaceName>,
    pub mac: Option<[u8; 6]>,
    pub addresses: Vec<Spanned<IpNet>>,
    pub firewall: bool,
    pub vlan: Option<u16>,
}

/// Which file a .fw file is; decides which sections, directions and options it may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum FwKind {
    Cluster,
    Host,
    Guest,
}

impl FwKind {
    pub fn file_name(&self) -> &'static str {
        match self {
            FwKind::Cluster => "cluster.fw",
            FwKind::Host => "host.fw",
            FwKind::Guest => "<vmid>.fw",
        }
    }
}

/// One parsed .fw file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FwFile {
    pub file: FileId,
    pub kind: FwKind,
    pub options: FwOptions,
    pub aliases: Vec<AliasDef>,
    pub ipsets: Vec<IpSetDef>,
    pub rules: Vec<RuleLine>,
    pub groups: Vec<GroupDef>,
    /// Rules (of `[RULES]` or a group) with a problem of their own line,
    /// already reported: never compiled, kept so that the resolver reports
    /// their undefined aliases and ipsets too (every problem of a rule at once).
    pub broken_rules: Vec<RuleLine>,
}

impl FwFile {
    pub fn new(file: FileId, kind: FwKind) -> Self {
        FwFile {
            file,
            kind,
            options: FwOptions::default(),
            aliases: Vec::new(),
            ipsets: Vec::new(),
            rules: Vec::new(),
            groups: Vec::new(),
            broken_rules: Vec::new(),
        }
    }
}

/// `log_ratelimit: enable=1,rate=1/second,burst=5`
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimitOpt {
    pub enable: bool,
    pub rate: u32,
    pub unit: String,
    pub burst: u32,
}

/// Every `[OPTIONS]` key of every level, as written (`None` = not given).
/// Which keys a file may carry is checked by the parser.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FwOptions {
    pub enable: Option<bool>,
    pub policy_in: Option<Action>,
    pub policy_out: Option<Action>,
    pub policy_forward: Option<Action>,
    pub log_ratelimit: Option<RateLimitOpt>,
    pub ebtables: Option<bool>,
    pub log_level_in: Option<LogLevel>,
    pub log_level_out: Option<LogLevel>,
    pub log_level_forward: Option<LogLevel>,
    pub nosmurfs: Option<bool>,
    pub smurf_log_level: Option<LogLevel>,
    pub tcpflags: Option<bool>,
    pub tcp_flags_log_level: Option<LogLevel>,
    pub ndp: Option<bool>,
    pub nf_conntrack_max: Option<u32>,
    pub nf_conntrack_tcp_timeout_established: Option<u32>,
    pub nf_conntrack_tcp_timeout_syn_recv: Option<u32>,
    pub nf_conntrack_allow_invalid: Option<bool>,
    pub nf_conntrack_helpers: Option<Vec<String>>,
    pub protection_synflood: Option<bool>,
    pub protection_synflood_rate: Option<u32>,
    pub protection_synflood_burst: Option<u32>,
    pub log_nf_conntrack: Option<bool>,
    pub nftables: Option<bool>,
    pub macfilter: Option<bool>,
    pub dhcp: Option<bool>,
    pub radv: Option<bool>,
    pub ipfilter: Option<bool>,
    pub ips: Option<bool>,
    pub ips_queues: Option<(u16, u16)>,
    /// Where `enable` was written, if it was.
    pub enable_span: Option<Span>,
    /// Where each option given was written (its key), by option name.
    pub spans: std::collections::BTreeMap<String, Span>,
}

/// `dc/name`, `guest/name` or a bare name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Scope {
    /// No prefix: the guest's own definitions first, then the cluster's.
    Auto,
    Dc,
    Guest,
}

/// A name reference (alias or ipset) with its scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NameRef {
    pub scope: Scope,
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AliasDef {
    pub name: Spanned<AliasName>,
    /// The network (host bits cleared; a warning was given if there were any).
    pub net: Spanned<IpNet>,
    pub comment: Option<String>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IpSetDef {
    pub name: Spanned<IpSetName>,
    pub comment: Option<String>,
    pub entries: Vec<IpSetEntry>,
    /// The `[IPSET name]` header line.
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum SetItem {
    Range(IpRange),
    Alias(NameRef),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IpSetEntry {
    pub nomatch: bool,
    pub item: SetItem,
    pub comment: Option<String>,
    /// The entry text (without `!` and comment).
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupDef {
    pub name: Spanned<GroupName>,
    pub comment: Option<String>,
    pub rules: Vec<RuleLine>,
    /// The `[group name]` header line.
    pub span: Span,
}

/// One element of an address list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum AddrItem {
    /// IP, CIDR (host bits cleared) or `a-b` range.
    Range(IpRange),
    Alias(NameRef),
}

/// `-source`/`-dest`: a set reference alone, or a list of addresses and aliases.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum AddrSpec {
    Set(NameRef),
    List(Vec<Spanned<AddrItem>>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum RuleVerb {
    Plain(Action),
    /// `SSH(ACCEPT)`: the index into [`crate::macros::MACROS`].
    Macro {
        index: usize,
        action: Action,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RuleOpts {
    pub iface: Option<Spanned<RuleIfaceName>>,
    pub source: Option<Spanned<AddrSpec>>,
    pub dest: Option<Spanned<AddrSpec>>,
    pub proto: Option<Spanned<Proto>>,
    pub dport: Option<Spanned<Vec<PortRange>>>,
    pub sport: Option<Spanned<Vec<PortRange>>>,
    /// Lower-case, as written; checked against the family by the resolver.
    pub icmp_type: Option<Spanned<String>>,
    pub log: Option<Spanned<LogLevel>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum RuleBody {
    Rule {
        dir: Spanned<Direction>,
        verb: Spanned<RuleVerb>,
        opts: RuleOpts,
    },
    Group {
        name: Spanned<String>,
        iface: Option<Spanned<RuleIfaceName>>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleLine {
    /// The rule text (from `|` or the direction to the end of the options).
    pub span: Span,
    pub enabled: bool,
    pub body: RuleBody,
    pub comment: Option<String>,
}

//! A typed model of the nftables ruleset rampart emits.
//!
//! The compiler builds this model; [`crate::print`] turns it into the text
//! `nft -f` loads, and the simulator (`rampart-sim`) walks it packet by
//! packet. Only what rampart emits is modelled, so both sides stay exact.

use rampart_types::{Action, Family, IpRange, PortRange};
use serde::{Serialize, Serializer};
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum TableFamily {
    Inet,
    Bridge,
}

impl TableFamily {
    pub fn name(&self) -> &'static str {
        match self {
            TableFamily::Inet => "inet",
            TableFamily::Bridge => "bridge",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Ruleset {
    /// Tables rampart owns, replaced atomically.
    pub tables: Vec<Table>,
    /// Tables rampart owns but that this plan leaves absent (deleted).
    pub absent: Vec<(TableFamily, String)>,
}

impl Ruleset {
    pub fn table(&self, family: TableFamily) -> Option<&Table> {
        self.tables.iter().find(|t| t.family == family)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Table {
    pub family: TableFamily,
    pub name: String,
    pub helpers: Vec<CtHelper>,
    pub sets: Vec<Set>,
    pub maps: Vec<Map>,
    pub chains: Vec<Chain>,
}

impl Table {
    pub fn new(family: TableFamily, name: &str) -> Self {
        Table {
            family,
            name: name.to_string(),
            helpers: vec![],
            sets: vec![],
            maps: vec![],
            chains: vec![],
        }
    }
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }
    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name)
    }
    pub fn map(&self, name: &str) -> Option<&Map> {
        self.maps.iter().find(|s| s.name == name)
    }
}

/// `ct helper NAME { type "ftp" protocol tcp; l3proto inet; }`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CtHelper {
    pub name: String,
    /// Kernel helper name: `ftp`, `tftp`, `sip`, `RAS`, `Q.931`, ...
    pub kind: String,
    /// `tcp` or `udp`.
    pub proto: String,
    pub comment: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum KeyType {
    Ipv4,
    Ipv6,
    Ifname,
    Mark,
}

impl KeyType {
    pub fn name(&self) -> &'static str {
        match self {
            KeyType::Ipv4 => "ipv4_addr",
            KeyType::Ipv6 => "ipv6_addr",
            KeyType::Ifname => "ifname",
            KeyType::Mark => "mark",
        }
    }
    pub fn of(family: Family) -> Self {
        match family {
            Family::V4 => KeyType::Ipv4,
            Family::V6 => KeyType::Ipv6,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Key {
    /// An address, a CIDR or a range (interval sets only for the latter two).
    Addr(IpRange),
    Ifname(String),
    Mark(u32),
}

/// A named set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Set {
    pub name: String,
    pub key: KeyType,
    /// `flags interval`: needed for prefixes and ranges.
    pub interval: bool,
    /// A dynamic set filled from the packet path (SYN-flood meter).
    pub dynamic: Option<DynamicSet>,
    /// Disjoint, sorted.
    pub elements: Elements,
    pub comment: String,
}

/// The elements of a set. Cheap to clone: the plans of one site share the
/// elements of a cluster-wide set (see [`crate::SiteCache`]), and their
/// `nft` text is rendered once, on first print.
#[derive(Clone, Default)]
pub struct Elements(Arc<ElementsInner>);

#[derive(Default)]
struct ElementsInner {
    keys: Vec<Key>,
    text: OnceLock<String>,
    /// Every key an address range, sorted, each ending before the next
    /// starts (found once per shared value).
    disjoint: OnceLock<bool>,
}

impl Elements {
    /// The text `render` makes of the keys, made once per shared value.
    pub fn rendered(&self, render: impl FnOnce(&[Key]) -> String) -> &str {
        self.0.text.get_or_init(|| render(&self.0.keys))
    }

    /// Does an element cover `k` ([`key_matches`])? A binary search when
    /// the keys are disjoint sorted address ranges (the simulator looks
    /// addresses up in a 100,000-element blacklist), a scan otherwise.
    pub fn covers(&self, k: &Key) -> bool {
        let keys = &self.0.keys;
        let disjoint = *self.0.disjoint.get_or_init(|| {
            keys.iter().all(|e| matches!(e, Key::Addr(_)))
                && keys.windows(2).all(|w| match w {
                    [Key::Addr(a), Key::Addr(b)] => a.end < b.start,
                    _ => false,
                })
        });
        match k {
            Key::Addr(a) if disjoint => {
                // The only element that may hold `a`: the last one starting
                // at or before it.
                let i = keys.partition_point(|e| matches!(e, Key::Addr(r) if r.start <= a.start));
                i > 0 && key_matches(&keys[i - 1], k)
            }
            _ => keys.iter().any(|e| key_matches(e, k)),
        }
    }
}

impl From<Vec<Key>> for Elements {
    fn from(keys: Vec<Key>) -> Self {
        Elements(Arc::new(ElementsInner {
            keys,
            text: OnceLock::new(),
            disjoint: OnceLock::new(),
        }))
    }
}

impl FromIterator<Key> for Elements {
    fn from_iter<I: IntoIterator<Item = Key>>(iter: I) -> Self {
        Elements::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl Deref for Elements {
    type Target = [Key];
    fn deref(&self) -> &[Key] {
        &self.0.keys
    }
}

impl<'a> IntoIterator for &'a Elements {
    type Item = &'a Key;
    type IntoIter = std::slice::Iter<'a, Key>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.keys.iter()
    }
}

impl PartialEq for Elements {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.keys == other.0.keys
    }
}

impl fmt::Debug for Elements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys.iter()).finish()
    }
}

impl Serialize for Elements {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.keys.serialize(s)
    }
}

impl Set {
    pub fn contains(&self, k: &Key) -> bool {
        self.elements.covers(k)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DynamicSet {
    pub size: u32,
    pub timeout_s: u32,
}

/// Does an element `e` of a set or map cover the lookup key `k`?
pub fn key_matches(e: &Key, k: &Key) -> bool {
    match (e, k) {
        (Key::Addr(r), Key::Addr(a)) => r.contains(&a.start),
        (a, b) => a == b,
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum MapValue {
    Mark(u32),
    Verdict(Verdict),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Map {
    pub name: String,
    pub key: KeyType,
    pub interval: bool,
    /// `mark` or `verdict`.
    pub value_is_verdict: bool,
    pub elements: Vec<(Key, MapValue)>,
    pub comment: String,
}

impl Map {
    pub fn lookup(&self, k: &Key) -> Option<&MapValue> {
        self.elements
            .iter()
            .find(|(e, _)| key_matches(e, k))
            .map(|(_, v)| v)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub fn name(&self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BaseHook {
    pub hook: Hook,
    pub priority: i32,
    /// Always accept in rampart's tables: decisions are explicit rules.
    pub policy_accept: bool,
    /// `type nat` instead of `type filter` (the egress gateway's
    /// masquerade in postrouting).
    pub nat: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Chain {
    pub name: String,
    pub base: Option<BaseHook>,
    pub comment: Option<String>,
    pub rules: Vec<Rule>,
}

impl Chain {
    pub fn regular(name: impl Into<String>) -> Self {
        Chain {
            name: name.into(),
            base: None,
            comment: None,
            rules: vec![],
        }
    }
    pub fn base(name: impl Into<String>, hook: Hook, priority: i32) -> Self {
        Chain {
            name: name.into(),
            base: Some(BaseHook {
                hook,
                priority,
                policy_accept: true,
                nat: false,
            }),
            comment: None,
            rules: vec![],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub stmts: Vec<Stmt>,
    pub verdict: Option<Verdict>,
    /// The origin, rendered (`cluster.fw:42`, `auto:management`).
    pub comment: String,
    /// When this rule is a firewall decision (a user rule, a policy, an
    /// automatic accept), the action it stands for. `return` in a policy
    /// chain means ACCEPT; the trail reports the last decision taken.
    pub decision: Option<Action>,
    /// A rule merged from a run of policy lines (`crate::merge`): each
    /// original rule's matches and origin, in policy order. The simulator
    /// names the first of them that matches the packet; empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merged: Vec<Part>,
}

/// One original rule inside a merged rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Part {
    pub matches: Vec<Match>,
    /// Its origin (`host.fw:12`).
    pub comment: String,
}

impl Rule {
    pub fn new(comment: impl Into<String>) -> Self {
        Rule {
            matches: vec![],
            stmts: vec![],
            verdict: None,
            comment: comment.into(),
            decision: None,
            merged: vec![],
        }
    }
    pub fn m(mut self, m: Match) -> Self {
        self.matches.push(m);
        self
    }
    pub fn s(mut self, s: Stmt) -> Self {
        self.stmts.push(s);
        self
    }
    pub fn v(mut self, v: Verdict) -> Self {
        self.verdict = Some(v);
        self
    }
    pub fn decides(mut self, a: Action) -> Self {
        self.decision = Some(a);
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Dir {
    Src,
    Dst,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum AddrTarget {
    /// `@name`
    Set(String),
    /// One element or an anonymous set, disjoint and sorted.
    Literal(Vec<IpRange>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CtState {
    Invalid,
    Established,
    Related,
    New,
}

impl CtState {
    pub fn name(&self) -> &'static str {
        match self {
            CtState::Invalid => "invalid",
            CtState::Established => "established",
            CtState::Related => "related",
            CtState::New => "new",
        }
    }
}

/// TCP flag bits as the kernel numbers them.
pub mod tcpflag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const NAMES: [(u8, &str); 6] = [
        (FIN, "fin"),
        (SYN, "syn"),
        (RST, "rst"),
        (PSH, "psh"),
        (ACK, "ack"),
        (URG, "urg"),
    ];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FibType {
    Broadcast,
    Multicast,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Match {
    /// `meta nfproto ipv4`
    NfProto(Family),
    /// `meta l4proto N` (tcp/udp/icmp/icmpv6 by name)
    L4Proto { number: u8, name: String },
    /// `iifname "x"` / `oifname "x"`; a trailing `*` is nft's wildcard
    /// (`"eth*"`: every name starting with `eth`)
    Ifname { dir: Dir, name: String },
    /// `oifname @set`
    IfnameSet { dir: Dir, set: String },
    /// `ip saddr @s` / `ip6 daddr != { ... }`
    Addr {
        family: Family,
        dir: Dir,
        neg: bool,
        target: AddrTarget,
    },
    /// `tcp dport { 22, 80 }`; for protocols other than tcp/udp, `th dport`
    /// after an `L4Proto` match.
    Port {
        proto: u8,
        dir: Dir,
        ports: Vec<PortRange>,
    },
    /// `icmp type { ... }` / `icmpv6 type ...` and optionally a code.
    Icmp {
        v6: bool,
        types: Vec<u8>,
        code: Option<u8>,
    },
    /// `ct state { ... }`
    Ct(Vec<CtState>),
    /// `ether saddr != MAC`
    EtherSaddrNot([u8; 6]),
    /// `fib saddr type { broadcast, multicast }`
    FibSaddrType(Vec<FibType>),
    /// `tcp flags & MASK == VALUE`
    TcpFlags { mask: u8, value: u8 },
    /// `meta mark & MASK == VALUE`
    Mark { mask: u32, value: u32 },
    /// `meta pkttype { broadcast, multicast }`
    PktTypeBroadMulti,
    /// `ip saddr . tcp dport { 10.0.0.1 . 22, 10.0.0.0/28 . 80-90 }`: the
    /// packet's fields, concatenated, are one of the elements (a merged
    /// run of rules that differ in more than one field; no two elements
    /// overlap, as the kernel requires).
    Concat {
        fields: Vec<Field>,
        elements: Vec<Vec<Elem>>,
    },
}

/// A field of a concatenation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Field {
    /// `ip saddr` / `ip6 daddr`
    Addr(Family, Dir),
    /// `tcp dport` / `udp sport` (`th` for other protocols, after an
    /// `L4Proto` match)
    Port(u8, Dir),
}

/// One field's value in a concatenation element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Elem {
    Addr(IpRange),
    Port(PortRange),
}

impl Elem {
    pub fn overlaps(&self, o: &Elem) -> bool {
        match (self, o) {
            (Elem::Addr(a), Elem::Addr(b)) => a.start <= b.end && b.start <= a.end,
            (Elem::Port(a), Elem::Port(b)) => a.lo <= b.hi && b.lo <= a.hi,
            _ => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Limit {
    pub rate: u32,
    pub unit: String,
    pub burst: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Stmt {
    /// `limit rate R/unit burst B packets`: passes while under the rate.
    Limit(Limit),
    /// `add @set { ip saddr limit rate over R/second burst B packets }`: a
    /// per-source meter; the rule continues only when the source is over.
    MeterOver {
        set: String,
        family: Family,
        limit: Limit,
    },
    /// `log prefix "..." group N`
    Log { prefix: String, group: u16 },
    /// `meta mark set 0x...`
    MarkSet(u32),
    /// `meta mark set meta mark or 0x...`
    MarkOr(u32),
    /// `meta mark set iifname map @m`
    MarkFromIifnameMap(String),
    /// `ct helper set "name"`
    CtHelperSet(String),
    /// `masquerade`: source NAT to the output interface's address (only in
    /// a `type nat` postrouting chain).
    Masquerade,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RejectWith {
    TcpReset,
    /// `icmpx type port-unreachable`
    PortUnreachable,
    /// `icmpx type host-unreachable`
    HostUnreachable,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum VmapKey {
    /// `meta mark & MASK`
    MarkMasked(u32),
    Ifname(Dir),
    Addr(Family, Dir),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
    Jump(String),
    Goto(String),
    Reject(RejectWith),
    /// `queue num LO[-HI] [fanout,]bypass`
    Queue {
        lo: u16,
        hi: u16,
    },
    /// `KEY vmap @map`
    Vmap {
        key: VmapKey,
        map: String,
    },
}

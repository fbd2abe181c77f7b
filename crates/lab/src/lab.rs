//! A node built for real in network namespaces.
//!
//! Layout (one lab, names `rlab-<pid>-<n>-<role>`):
//! - `host`: the node. Its bridges (`vmbr0`…) with the node's addresses,
//!   forwarding on, br_netfilter's `bridge-nf-call-iptables/ip6tables = 1`
//!   (per namespace), a default route per family via the outside machine on
//!   the first bridge that has one. The ruleset is loaded here.
//! - one namespace per guest: every NIC is a veth pair whose host end is
//!   named exactly like the NIC's `ifname` (`tap100i0`, `veth200i0`) and is a
//!   port of the NIC's bridge; the guest end is named like the NIC (`net0`)
//!   and has the NIC's MAC and addresses.
//! - `out`: the outside machine, one leg per bridge (named like the bridge)
//!   with an address in each network of that bridge. Sources and
//!   destinations further away are added to its loopback; the host's (and
//!   by default the guests') routes lead there.
//! - one namespace per other node a probe names, on the bridges where its
//!   addresses are on-link.
//!
//! Guests' default gateway: by default the outside machine of the NIC's
//! bridge ([`GuestGateway::Outside`]): guest traffic to far addresses is
//! bridged to the upstream router, as on a Proxmox node, and does not cross
//! the node's own IP stack. [`GuestGateway::Node`] routes it through the
//! node instead.

use crate::netns::{self, Netns};
use crate::probe::{self, Observed, ProbeProto, Spec};
use crate::{Error, Result};
use ipnet::IpNet;
use rampart_case::{GuestKind as CaseKind, PacketProto, State, Zone};
use rampart_resolve::ir;
use rampart_types::Family;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// How to start the probe helper inside a namespace: an executable and
/// the arguments that select the helper (none for `rampart-probe`, e.g.
/// `["__probe"]` for a hidden subcommand of `rampart`).
#[derive(Clone, Debug)]
pub struct Helper {
    pub exe: PathBuf,
    pub prefix: Vec<String>,
}

impl Helper {
    pub fn new(exe: impl Into<PathBuf>) -> Helper {
        Helper {
            exe: exe.into(),
            prefix: Vec::new(),
        }
    }
    /// The running executable re-executed with `prefix` (a hidden
    /// subcommand that calls [`probe::helper_main`]).
    pub fn current_exe(prefix: &[&str]) -> Result<Helper> {
        let exe =
            std::env::current_exe().map_err(|e| Error::new(format!("current executable: {e}")))?;
        Ok(Helper {
            exe,
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GuestGateway {
    /// The outside machine's address on the NIC's bridge.
    #[default]
    Outside,
    /// The node's address on the NIC's bridge.
    Node,
}

#[derive(Clone, Debug)]
pub struct LabOptions {
    pub helper: Helper,
    /// How long to wait for an answer before calling it DROP.
    pub timeout: Duration,
    pub guest_gateway: GuestGateway,
}

impl LabOptions {
    pub fn new(helper: Helper) -> LabOptions {
        LabOptions {
            helper,
            timeout: Duration::from_millis(400),
            guest_gateway: GuestGateway::Outside,
        }
    }
}

/// One packet to send for real.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub from: Zone,
    pub to: Zone,
    pub proto: PacketProto,
    /// Required for tcp/udp.
    pub dport: Option<u16>,
    pub sport: Option<u16>,
    /// ICMP type name or number; `None` = echo-request.
    pub icmp_type: Option<String>,
    /// ICMP code; `None` = 0.
    pub icmp_code: Option<u8>,
    /// Default: the from-zone's first address of `family`.
    pub source: Option<IpAddr>,
    /// Default: the to-zone's first address of `family`.
    pub dest: Option<IpAddr>,
    pub family: Family,
    pub state: State,
    /// A guest sender's MAC for this probe instead of its NIC's: the NIC's
    /// address is changed for the probe (which runs in a round of its own,
    /// neighbour caches flushed before and after) and restored.
    pub source_mac: Option<[u8; 6]>,
}

impl Probe {
    pub fn new(
        from: &str,
        to: &str,
        proto: PacketProto,
        dport: Option<u16>,
        family: Family,
    ) -> Probe {
        Probe {
            from: Zone::parse(from),
            to: Zone::parse(to),
            proto,
            dport,
            sport: None,
            icmp_type: None,
            icmp_code: None,
            source: None,
            dest: None,
            family,
            state: State::New,
            source_mac: None,
        }
    }
    pub fn from_packet(p: &rampart_case::Packet) -> Probe {
        Probe {
            from: p.from.clone(),
            to: p.to.clone(),
            proto: p.proto,
            dport: p.dport,
            sport: p.sport,
            icmp_type: p.icmp_type.clone(),
            icmp_code: p.icmp_code,
            source: p.source,
            dest: p.dest,
            family: p.family,
            state: p.state,
            source_mac: p.source_mac,
        }
    }
}

/// ICMP identifiers of probes, unique among the probes of this process.
static ICMP_ID: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);

fn is_echo(s: &Spec) -> bool {
    is_echo_type(s.icmp_type, Family::of(&s.dst))
}

fn is_echo_type(ty: u8, family: Family) -> bool {
    ty == if family == Family::V4 { 8 } else { 128 }
}

const CONNTRACK_TABLE: &str = "rampart_lab_conntrack";
const CONNTRACK_ON: &str = "table inet rampart_lab_conntrack {\n\
    chain track {\n\
        type filter hook prerouting priority -300; policy accept;\n\
        ct state new counter\n\
    }\n\
}\n";

struct Bridge {
    name: String,
    /// Networks on the bridge: the node's and its guests'.
    nets: Vec<IpNet>,
    /// The outside machine's address in each network.
    outside: Vec<IpNet>,
}

const WATCH_TABLE: &str = "rampart_lab_watch";

/// Reading a probe's verdict at the node instead of from an answer (a
/// spoofed source the answer cannot reach): a counter where the packet
/// arrives past the firewall (the target's namespace before anything else;
/// the node's input after every other chain), and one on the node's own
/// output for the reset or unreachable a REJECT sends to the source.
/// Arrived: ACCEPT; answered by the node: REJECT; neither: DROP.
struct Watch {
    /// Namespace and chain (`pre` / `in`) where arrival is counted.
    arrive_ns: String,
    arrive_chain: &'static str,
    arrive: String,
    /// Counted on the node's output and at the sender: a REJECT of bridged
    /// traffic goes back out of the port it came in by.
    reject: String,
    /// In the sender's output: the NIC's own source becomes the spoofed one.
    rewrite: String,
    sender_ns: String,
    id: u16,
}

impl Watch {
    fn new(lab: &Lab, sns: &str, dns: &str, s: &Spec) -> Watch {
        let v4 = s.dst.is_ipv4();
        let l3 = if v4 { "ip" } else { "ip6" };
        let (l4, icmp) = match (s.proto, v4) {
            (ProbeProto::Tcp, _) => ("tcp", ""),
            (ProbeProto::Udp, _) => ("udp", ""),
            (ProbeProto::Icmp, true) => ("icmp", "icmp"),
            (ProbeProto::Icmp, false) => ("ipv6-icmp", "icmpv6"),
        };
        let src = s.spoof.unwrap_or(s.src);
        let mut arrive = format!("{l3} saddr {src} {l3} daddr {} meta l4proto {l4}", s.dst);
        let mut rewrite = format!("{l3} saddr {} meta l4proto {l4}", s.src);
        let reject = match s.proto {
            ProbeProto::Icmp => {
                // The probe's identifier sits at bytes 4-5 of its header.
                let m = format!(" {icmp} type {} @th,32,16 {}", s.icmp_type, s.id);
                arrive.push_str(&m);
                rewrite.push_str(&m);
                format!("{l3} daddr {src} {icmp} type destination-unreachable")
            }
            ProbeProto::Tcp => {
                let m = format!(" th sport {} th dport {}", s.sport, s.dport);
                arrive.push_str(&m);
                rewrite.push_str(&m);
                format!(
                    "{l3} daddr {src} tcp sport {} tcp dport {} tcp flags & rst == rst",
                    s.dport, s.sport
                )
            }
            ProbeProto::Udp => {
                let m = format!(" th sport {} th dport {}", s.sport, s.dport);
                arrive.push_str(&m);
                rewrite.push_str(&m);
                let unreach = if v4 { "icmp" } else { "icmpv6" };
                format!("{l3} daddr {src} {unreach} type destination-unreachable")
            }
        };
        let to_host = dns == lab.host.ns.name();
        Watch {
            arrive_ns: dns.to_string(),
            arrive_chain: if to_host { "in" } else { "pre" },
            arrive,
            reject,
            rewrite: format!("{rewrite} {l3} saddr set {src}"),
            sender_ns: sns.to_string(),
            id: s.id,
        }
    }

    fn install(lab: &Lab, watched: &[(usize, Watch)]) -> Result<()> {
        if watched.is_empty() {
            return Ok(());
        }
        let mut per_ns: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (_, w) in watched {
            per_ns.entry(w.arrive_ns.clone()).or_default().push(format!(
                "add counter inet {WATCH_TABLE} a{id}\nadd rule inet {WATCH_TABLE} {} {} counter name a{id}",
                w.arrive_chain,
                w.arrive,
                id = w.id
            ));
            per_ns
                .entry(lab.host.ns.name().to_string())
                .or_default()
                .push(format!(
                    "add counter inet {WATCH_TABLE} r{id}\nadd rule inet {WATCH_TABLE} out {} counter name r{id}",
                    w.reject,
                    id = w.id
                ));
            per_ns.entry(w.sender_ns.clone()).or_default().push(format!(
                "add counter inet {WATCH_TABLE} s{id}\nadd rule inet {WATCH_TABLE} pre {} counter name s{id}\nadd rule inet {WATCH_TABLE} out {}",
                w.reject,
                w.rewrite,
                id = w.id
            ));
        }
        for (ns, lines) in per_ns {
            let text = format!(
                "add table inet {WATCH_TABLE}\n\
                 add chain inet {WATCH_TABLE} pre {{ type filter hook prerouting priority -450; policy accept; }}\n\
                 add chain inet {WATCH_TABLE} in {{ type filter hook input priority 1000; policy accept; }}\n\
                 add chain inet {WATCH_TABLE} out {{ type filter hook output priority -1000; policy accept; }}\n\
                 {}\n",
                lines.join("\n")
            );
            Netns::borrowed(&ns).exec(&["nft", "-f", "-"], Some(&text))?;
        }
        Ok(())
    }

    /// Every watched probe's verdict; the tables are removed.
    fn read(lab: &Lab, watched: &[(usize, Watch)]) -> Vec<(usize, Result<Observed>)> {
        if watched.is_empty() {
            return Vec::new();
        }
        let mut namespaces: BTreeSet<String> = watched
            .iter()
            .flat_map(|(_, w)| [w.arrive_ns.clone(), w.sender_ns.clone()])
            .collect();
        namespaces.insert(lab.host.ns.name().to_string());
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut failed = None;
        for ns in &namespaces {
            let n = Netns::borrowed(ns);
            match n.exec(
                &["nft", "list", "counters", "table", "inet", WATCH_TABLE],
                None,
            ) {
                Ok(text) => {
                    let mut name = None;
                    for line in text.lines().map(str::trim) {
                        if let Some(rest) = line.strip_prefix("counter ") {
                            name = rest.split_whitespace().next().map(str::to_string);
                        } else if let (Some(nm), Some(rest)) =
                            (&name, line.strip_prefix("packets "))
                        {
                            let k: u64 = rest
                                .split_whitespace()
                                .next()
                                .and_then(|x| x.parse().ok())
                                .unwrap_or(0);
                            *counts.entry(nm.clone()).or_default() += k;
                        }
                    }
                }
                Err(e) => failed = Some(e),
            }
            let _ = n.exec(&["nft", "delete", "table", "inet", WATCH_TABLE], None);
        }
        watched
            .iter()
            .map(|(i, w)| {
                if let Some(e) = &failed {
                    return (*i, Err(e.clone()));
                }
                let got = |k: String| counts.get(&k).copied().unwrap_or(0) > 0;
                let o = if got(format!("a{}", w.id)) {
                    Observed::Accept
                } else if got(format!("r{}", w.id)) || got(format!("s{}", w.id)) {
                    Observed::Reject
                } else {
                    Observed::Drop
                };
                (*i, Ok(o))
            })
            .collect()
    }
}

/// Loads a ruleset into a lab (typically into [`Lab::host`]).
pub type Loader<'a> = &'a dyn Fn(&Lab) -> Result<()>;

/// Interfaces of a namespace with their on-link networks.
type Ifaces = Vec<(String, Vec<IpNet>)>;
/// A guest's NICs: index and addresses.
type NicAddrs = Vec<(u32, Vec<IpAddr>)>;
/// A running helper: its process, standard input and output.
type Running = (Child, ChildStdin, BufReader<ChildStdout>);

struct Member {
    ns: Netns,
    /// Interface name in the namespace and its on-link networks.
    ifaces: Ifaces,
    /// Own addresses, in order (first of a family = the default).
    addrs: Vec<IpAddr>,
}

/// A node built in namespaces. Everything is removed on drop.
pub struct Lab {
    prefix: String,
    opts: LabOptions,
    site_node: ir::Node,
    other_nodes: Vec<ir::Node>,
    bridges: Vec<Bridge>,
    host: Member,
    outside: Member,
    /// Per guest: (NIC index, its addresses) in NIC order, and the namespace.
    guests: BTreeMap<(CaseKind, u32), (NicAddrs, Member)>,
    nodes: Mutex<BTreeMap<String, Member>>,
    /// (namespace, address) pairs added on demand for explicit source/dest.
    added: Mutex<BTreeSet<(String, IpAddr)>>,
}

fn nodad(a: &IpNet) -> &'static str {
    if a.addr().is_ipv6() {
        " nodad"
    } else {
        ""
    }
}

/// The routing table (and rule priority) of a guest's NIC `netN`.
fn nic_table(index: u32) -> u32 {
    1000 + index
}

/// Whether `gw` lies in one of the networks of `addrs`.
fn on_link(addrs: &[IpNet], gw: &IpAddr) -> bool {
    addrs.iter().any(|a| a.trunc().contains(gw))
}

/// ` onlink` for a gateway outside every network of the interface's
/// addresses (a guest with 10.0.200.1/24 on a 192.0.2.0/24 bridge, normal
/// for Proxmox containers): the kernel refuses such a nexthop otherwise.
fn onlink(addrs: &[IpNet], gw: &IpAddr) -> &'static str {
    if on_link(addrs, gw) {
        ""
    } else {
        " onlink"
    }
}

fn host_net(a: IpAddr) -> IpNet {
    IpNet::from(a)
}

/// A free address in `net` for the outside machine: from the top down.
fn pick_free(net: &IpNet, used: &BTreeSet<IpAddr>) -> Result<IpNet> {
    let mut cur = net.broadcast();
    for _ in 0..4096 {
        cur = match cur {
            IpAddr::V4(v) => IpAddr::V4((u32::from(v) - 1).into()),
            IpAddr::V6(v) => IpAddr::V6((u128::from(v) - 1).into()),
        };
        if !net.contains(&cur) || cur == net.network() {
            break;
        }
        if !used.contains(&cur) {
            return IpNet::new(cur, net.prefix_len()).map_err(|e| Error::new(e.to_string()));
        }
    }
    Err(Error::new(format!(
        "no free address left in {net} for the outside machine"
    )))
}

impl Lab {
    /// Build `node` of `site`: see the module documentation.
    pub fn build(site: &ir::Site, node: &str, opts: LabOptions) -> Result<Lab> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Error::new(
                "the lab needs root (it creates network namespaces)",
            ));
        }
        netns::sweep_stale();
        let n = site
            .node(node)
            .ok_or_else(|| Error::new(format!("no node `{node}` in the site")))?;
        let prefix = netns::unique_prefix();
        let guests: Vec<&ir::Guest> = site.guests_on(node).collect();

        // Networks and addresses in use, per bridge.
        let mut used: BTreeSet<IpAddr> = n
            .bridges
            .iter()
            .flat_map(|b| b.addresses.iter().map(|a| a.addr()))
            .collect();
        used.extend(guests.iter().flat_map(|g| {
            g.nics
                .iter()
                .flat_map(|c| c.addresses.iter().map(|a| a.addr()))
        }));
        used.extend(
            site.nodes
                .iter()
                .flat_map(|o| o.addresses.iter().map(|a| a.addr())),
        );
        let mut bridges = Vec::new();
        for b in &n.bridges {
            let mut nets: Vec<IpNet> = b.addresses.iter().map(|a| a.trunc()).collect();
            for g in &guests {
                for c in g.nics.iter().filter(|c| c.bridge == b.name) {
                    nets.extend(c.addresses.iter().map(|a| a.trunc()));
                }
            }
            let mut seen = BTreeSet::new();
            nets.retain(|x| seen.insert(*x));
            let mut outside = Vec::new();
            for net in &nets {
                let a = pick_free(net, &used)?;
                used.insert(a.addr());
                outside.push(a);
            }
            bridges.push(Bridge {
                name: b.name.to_string(),
                nets,
                outside,
            });
        }
        for g in &guests {
            for c in &g.nics {
                if !n.bridges.iter().any(|b| b.name == c.bridge) {
                    return Err(Error::new(format!(
                        "{} {}: bridge `{}` is not a bridge of {node}",
                        g.zone(),
                        c.name,
                        c.bridge
                    )));
                }
            }
        }

        // The host: bridges, addresses, forwarding, br_netfilter (its
        // sysctls appear once the module is loaded; they are per namespace).
        if !std::path::Path::new("/proc/sys/net/bridge").exists() {
            let _ = Command::new("modprobe")
                .arg("br_netfilter")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let host_ns = Netns::create(&format!("{prefix}host"))?;
        host_ns
            .sysctl(&[
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv6.conf.all.forwarding", "1"),
                ("net.bridge.bridge-nf-call-iptables", "1"),
                ("net.bridge.bridge-nf-call-ip6tables", "1"),
            ])
            .map_err(|e| {
                Error::new(format!(
                    "{e} (is br_netfilter loaded? `modprobe br_netfilter`)"
                ))
            })?;
        let mut lines = Vec::new();
        for b in &n.bridges {
            lines.push(format!("link add {} type bridge mcast_snooping 0", b.name));
            lines.push(format!("link set {} up", b.name));
            for a in &b.addresses {
                lines.push(format!("addr add {a} dev {}{}", b.name, nodad(a)));
            }
        }
        host_ns.ip_batch(&lines)?;
        let host = Member {
            ns: host_ns,
            ifaces: n
                .bridges
                .iter()
                .map(|b| {
                    (
                        b.name.to_string(),
                        b.addresses.iter().map(|a| a.trunc()).collect(),
                    )
                })
                .collect(),
            addrs: n
                .bridges
                .iter()
                .flat_map(|b| b.addresses.iter().map(|a| a.addr()))
                .collect(),
        };

        // The outside machine.
        let out_ns = Netns::create(&format!("{prefix}out"))?;
        // The upstream router: it routes between the bridges' networks.
        out_ns.sysctl(&[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
        ])?;
        let mut host_lines = Vec::new();
        let mut out_lines = Vec::new();
        for (i, b) in bridges.iter().enumerate() {
            host_lines.push(format!(
                "link add out{i} type veth peer name {} netns {}",
                b.name,
                out_ns.name()
            ));
            host_lines.push(format!("link set out{i} master {} up", b.name));
            out_lines.push(format!("link set {} up", b.name));
            for a in &b.outside {
                out_lines.push(format!("addr add {a} dev {}{}", b.name, nodad(a)));
            }
        }
        // Default routes: the host's towards the outside machine on the
        // first bridge where both have the family; the outside machine's
        // towards the host.
        for fam in Family::both() {
            let is = |a: &IpAddr| Family::of(a) == fam;
            'bridges: for (b, nb) in bridges.iter().zip(&n.bridges) {
                if let (Some(o), Some(h)) = (
                    b.outside.iter().find(|o| is(&o.addr())),
                    nb.addresses.iter().find(|a| is(&a.addr())),
                ) {
                    let any = if fam == Family::V4 {
                        "0.0.0.0/0"
                    } else {
                        "::/0"
                    };
                    host_lines.push(format!("route add {any} via {} dev {}", o.addr(), b.name));
                    out_lines.push(format!("route add {any} via {} dev {}", h.addr(), b.name));
                    break 'bridges;
                }
            }
        }
        // One outside machine per bridge, in one namespace: a source in
        // one of the node's networks on bridge i is a machine on bridge i,
        // so it reaches the node's other networks through the node (routed,
        // FORWARD traffic), never over its own leg on another bridge.
        // Source-based tables for its own packets (`iif lo`; what it
        // forwards as the upstream router keeps the main table) do that:
        // table 100+i holds bridge i's networks and a default route via
        // the node's address there.
        // Far addresses (on loopback) keep the main table: the upstream
        // router, with a leg on every bridge.
        let mut out_rules = Vec::new();
        for (i, (b, nb)) in bridges.iter().zip(&n.bridges).enumerate() {
            let table = 100 + i;
            let nets: BTreeSet<IpNet> = nb.addresses.iter().map(|a| a.trunc()).collect();
            // The guests' networks on the bridge are on-link too (a
            // container with an address outside the node's network is
            // still on the same wire).
            for net in b.nets.iter().filter(|x| !nets.contains(x)) {
                out_lines.push(format!("route add {net} dev {} table {table}", b.name));
            }
            let mut defaults = BTreeSet::new();
            for net in nets {
                let fam = Family::of(&net.addr());
                // `ip -batch` cannot switch family per line: rules go apart.
                out_rules.push((fam, net, table));
                out_lines.push(format!("route add {net} dev {} table {table}", b.name));
                let h = nb.addresses.iter().find(|a| Family::of(&a.addr()) == fam);
                if let (Some(h), true) = (h, defaults.insert(fam)) {
                    let any = if fam == Family::V4 {
                        "0.0.0.0/0"
                    } else {
                        "::/0"
                    };
                    out_lines.push(format!(
                        "route add {any} via {} dev {} table {table}",
                        h.addr(),
                        b.name
                    ));
                }
            }
        }
        host.ns.ip_batch(&host_lines)?;
        out_ns.ip_batch(&out_lines)?;
        for (fam, net, table) in out_rules {
            let (f, net, t) = (
                if fam == Family::V4 { "-4" } else { "-6" },
                net.to_string(),
                table.to_string(),
            );
            out_ns.exec(
                &[
                    "ip", f, "rule", "add", "from", &net, "iif", "lo", "lookup", &t, "priority", &t,
                ],
                None,
            )?;
        }
        let outside = Member {
            ns: out_ns,
            ifaces: bridges
                .iter()
                .map(|b| (b.name.clone(), b.nets.clone()))
                .collect(),
            addrs: bridges
                .iter()
                .flat_map(|b| b.outside.iter().map(|a| a.addr()))
                .collect(),
        };

        // Guests.
        let mut guest_members = BTreeMap::new();
        for g in &guests {
            let kind = match g.kind {
                ir::GuestKind::Vm => CaseKind::Vm,
                ir::GuestKind::Ct => CaseKind::Ct,
            };
            let ns = Netns::create(&format!("{prefix}{}", g.zone()))?;
            let mut hl = Vec::new();
            let mut gl = Vec::new();
            let mut defaults = BTreeSet::new();
            // Each NIC has a routing table of its own, chosen by the source
            // address: a packet from `vm100i1` (net1's address) leaves by
            // net1 even when net0 is on the same network.
            let mut rules = Vec::new();
            for c in &g.nics {
                let mac = c.mac.map(|m| {
                    format!(
                        " address {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                        m[0], m[1], m[2], m[3], m[4], m[5]
                    )
                });
                hl.push(format!(
                    "link add {} type veth peer name {}{} netns {}",
                    c.ifname,
                    c.name,
                    mac.unwrap_or_default(),
                    ns.name()
                ));
                hl.push(format!("link set {} master {} up", c.ifname, c.bridge));
                gl.push(format!("link set {} up", c.name));
                for a in &c.addresses {
                    gl.push(format!("addr add {a} dev {}{}", c.name, nodad(a)));
                }
                let bi = n
                    .bridges
                    .iter()
                    .position(|b| b.name == c.bridge)
                    .expect("checked above");
                let table = nic_table(c.index);
                let mut nets = BTreeSet::new();
                for a in &c.addresses {
                    if nets.insert(a.trunc()) {
                        gl.push(format!(
                            "route add {} dev {} table {table}",
                            a.trunc(),
                            c.name
                        ));
                    }
                    let f = if a.addr().is_ipv4() { "-4" } else { "-6" };
                    rules.push([f.to_string(), a.addr().to_string(), table.to_string()]);
                }
                for fam in Family::both() {
                    if !c.addresses.iter().any(|a| Family::of(&a.addr()) == fam) {
                        continue;
                    }
                    let candidates: Vec<IpAddr> = match opts.guest_gateway {
                        GuestGateway::Outside => {
                            bridges[bi].outside.iter().map(|a| a.addr()).collect()
                        }
                        GuestGateway::Node => {
                            n.bridges[bi].addresses.iter().map(|a| a.addr()).collect()
                        }
                    };
                    // In the NIC's own network when there is one (the
                    // outside machine has an address in each network of the
                    // bridge), else any of the family, on-link.
                    let of_fam = || candidates.iter().copied().filter(|a| Family::of(a) == fam);
                    let gw = of_fam()
                        .find(|a| on_link(&c.addresses, a))
                        .or_else(|| of_fam().next());
                    if let Some(gw) = gw {
                        let any = if fam == Family::V4 {
                            "0.0.0.0/0"
                        } else {
                            "::/0"
                        };
                        let route = format!(
                            "route add {any} via {gw} dev {}{}",
                            c.name,
                            onlink(&c.addresses, &gw)
                        );
                        gl.push(format!("{route} table {table}"));
                        if defaults.insert(fam) {
                            gl.push(route);
                        }
                    }
                }
            }
            // The node's networks on other bridges are reached through the
            // node (routed), as the outside machines there reach ours.
            let own: Vec<IpNet> = g
                .nics
                .iter()
                .flat_map(|c| c.addresses.iter().map(|a| a.trunc()))
                .collect();
            let mut routed = BTreeSet::new();
            for c in &g.nics {
                let bi = n
                    .bridges
                    .iter()
                    .position(|b| b.name == c.bridge)
                    .expect("checked above");
                for (bj, other) in n.bridges.iter().enumerate() {
                    if bj == bi {
                        continue;
                    }
                    for net in other.addresses.iter().map(|a| a.trunc()) {
                        let fam = Family::of(&net.addr());
                        let via = n.bridges[bi]
                            .addresses
                            .iter()
                            .find(|a| Family::of(&a.addr()) == fam);
                        let has_fam = c.addresses.iter().any(|a| Family::of(&a.addr()) == fam);
                        if let (Some(via), true) = (via, has_fam) {
                            if !own.iter().any(|o| o.contains(&net.addr())) {
                                let route = format!(
                                    "route add {net} via {} dev {}{}",
                                    via.addr(),
                                    c.name,
                                    onlink(&c.addresses, &via.addr())
                                );
                                gl.push(format!("{route} table {}", nic_table(c.index)));
                                if routed.insert(net) {
                                    gl.push(route);
                                }
                            }
                        }
                    }
                }
            }
            host.ns.ip_batch(&hl)?;
            ns.ip_batch(&gl)?;
            for [f, a, t] in &rules {
                ns.exec(
                    &[
                        "ip", f, "rule", "add", "from", a, "lookup", t, "priority", t,
                    ],
                    None,
                )?;
            }
            let member = Member {
                ns,
                ifaces: g
                    .nics
                    .iter()
                    .map(|c| {
                        (
                            c.name.to_string(),
                            c.addresses.iter().map(|a| a.trunc()).collect(),
                        )
                    })
                    .collect(),
                addrs: g
                    .nics
                    .iter()
                    .flat_map(|c| c.addresses.iter().map(|a| a.addr()))
                    .collect(),
            };
            let per_nic = g
                .nics
                .iter()
                .map(|c| (c.index, c.addresses.iter().map(|a| a.addr()).collect()))
                .collect();
            guest_members.insert((kind, g.id), (per_nic, member));
        }

        Ok(Lab {
            prefix,
            opts,
            site_node: n.clone(),
            other_nodes: site
                .nodes
                .iter()
                .filter(|o| o.name != node)
                .cloned()
                .collect(),
            bridges,
            host,
            outside,
            guests: guest_members,
            nodes: Mutex::new(BTreeMap::new()),
            added: Mutex::new(BTreeSet::new()),
        })
    }

    /// `rlab-<pid>-<n>-`: every namespace of this lab starts with it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The node's namespace (load rulesets here).
    pub fn host(&self) -> &Netns {
        &self.host.ns
    }

    /// The outside machine's namespace.
    pub fn outside(&self) -> &Netns {
        &self.outside.ns
    }

    /// A guest's namespace by zone (`vm100`, `ct200`).
    pub fn guest(&self, zone: &str) -> Option<&Netns> {
        match Zone::parse(zone) {
            Zone::Guest { kind, id, .. } => self.guests.get(&(kind, id)).map(|(_, m)| &m.ns),
            _ => None,
        }
    }

    /// Run a loader program in the host namespace with `text` on its
    /// standard input, e.g. `["nft", "-f", "-"]` or `["iptables-restore"]`.
    pub fn load(&self, argv: &[&str], text: &str) -> Result<()> {
        self.host.ns.exec(argv, Some(text)).map(|_| ())
    }

    /// `nft -f -` in the host namespace.
    pub fn load_nft(&self, ruleset: &str) -> Result<()> {
        self.load(&["nft", "-f", "-"], ruleset)
    }

    fn add_node(&self, name: &str) -> Result<()> {
        let mut nodes = self.nodes.lock().unwrap();
        if nodes.contains_key(name) {
            return Ok(());
        }
        let o = self
            .other_nodes
            .iter()
            .find(|o| o.name == name)
            .ok_or_else(|| {
                Error::new(format!(
                    "unknown zone `{name}`: not host, outside, a guest of {} or a node",
                    self.site_node.name
                ))
            })?;
        let ns = Netns::create(&format!("{}node-{}", self.prefix, nodes.len()))?;
        let mut hl = Vec::new();
        let mut nl = Vec::new();
        let mut ifaces = Vec::new();
        let mut defaults = BTreeSet::new();
        for (i, b) in self.bridges.iter().enumerate() {
            let mine: Vec<&IpNet> = o
                .addresses
                .iter()
                .filter(|a| b.nets.iter().any(|n| n.contains(&a.addr())))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let host_end = format!("n{}b{i}", nodes.len());
            hl.push(format!(
                "link add {host_end} type veth peer name {} netns {}",
                b.name,
                ns.name()
            ));
            hl.push(format!("link set {host_end} master {} up", b.name));
            nl.push(format!("link set {} up", b.name));
            for a in &mine {
                let net = b
                    .nets
                    .iter()
                    .find(|n| n.contains(&a.addr()))
                    .expect("filtered");
                let a = IpNet::new(a.addr(), net.prefix_len())
                    .map_err(|e| Error::new(e.to_string()))?;
                nl.push(format!("addr add {a} dev {}{}", b.name, nodad(&a)));
                let fam = Family::of(&a.addr());
                if defaults.insert(fam) {
                    if let Some(gw) = b.outside.iter().find(|x| Family::of(&x.addr()) == fam) {
                        let any = if fam == Family::V4 {
                            "0.0.0.0/0"
                        } else {
                            "::/0"
                        };
                        nl.push(format!("route add {any} via {} dev {}", gw.addr(), b.name));
                    }
                }
            }
            ifaces.push((b.name.clone(), b.nets.clone()));
        }
        let mut ol = Vec::new();
        if ifaces.is_empty() {
            // No address on our bridges: a node further away, behind the
            // outside machine (like a far source), on a point-to-point link.
            let k = nodes.len();
            let out_end = format!("node{k}");
            ol.push(format!(
                "link add {out_end} type veth peer name wan netns {}",
                ns.name()
            ));
            ol.push(format!("link set {out_end} up"));
            ol.push(format!("addr add 169.254.{k}.1/30 dev {out_end}"));
            ol.push(format!("addr add fe80::1/64 dev {out_end} nodad"));
            nl.push("link set wan up".to_string());
            nl.push(format!("addr add 169.254.{k}.2/30 dev wan"));
            nl.push("addr add fe80::2/64 dev wan nodad".to_string());
            nl.push("route add 0.0.0.0/0 via 169.254.{k}.1 dev wan".replace("{k}", &k.to_string()));
            nl.push("route add ::/0 via fe80::1 dev wan".to_string());
            for a in &o.addresses {
                let h = host_net(a.addr());
                nl.push(format!("addr add {h} dev wan{}", nodad(&h)));
                let via = if a.addr().is_ipv4() {
                    format!("169.254.{k}.2")
                } else {
                    "fe80::2".to_string()
                };
                ol.push(format!("route add {h} via {via} dev {out_end}"));
            }
            ifaces.push(("wan".to_string(), Vec::new()));
        }
        self.host.ns.ip_batch(&hl)?;
        self.outside.ns.ip_batch(&ol)?;
        ns.ip_batch(&nl)?;
        let addrs = o.addresses.iter().map(|a| a.addr()).collect();
        nodes.insert(name.to_string(), Member { ns, ifaces, addrs });
        Ok(())
    }

    /// The namespace of a zone, its default address of `family`, and the
    /// interface an extra address goes on.
    fn zone_info(&self, zone: &Zone, family: Family) -> Result<(String, Option<IpAddr>, Ifaces)> {
        let pick = |m: &Member| m.addrs.iter().copied().find(|a| Family::of(a) == family);
        Ok(match zone {
            Zone::Host => (
                self.host.ns.name().to_string(),
                pick(&self.host),
                self.host.ifaces.clone(),
            ),
            Zone::Outside => (
                self.outside.ns.name().to_string(),
                pick(&self.outside),
                self.outside.ifaces.clone(),
            ),
            Zone::Guest { kind, id, nic } => {
                let (indexes, m) = self.guests.get(&(*kind, *id)).ok_or_else(|| {
                    Error::new(format!("no guest {zone} on {}", self.site_node.name))
                })?;
                let pos = match nic {
                    None => 0,
                    Some(i) => indexes
                        .iter()
                        .position(|x| x.0 == *i)
                        .ok_or_else(|| Error::new(format!("{zone}: no NIC net{i}")))?,
                };
                if indexes.is_empty() {
                    return Err(Error::new(format!("{zone} has no NIC")));
                }
                let (ifname, _) = &m.ifaces[pos];
                let addr = indexes[pos]
                    .1
                    .iter()
                    .copied()
                    .find(|a| Family::of(a) == family);
                (
                    m.ns.name().to_string(),
                    addr,
                    vec![(ifname.clone(), m.ifaces[pos].1.clone())],
                )
            }
            Zone::Node(name) => {
                self.add_node(name)?;
                let nodes = self.nodes.lock().unwrap();
                let m = &nodes[name];
                (m.ns.name().to_string(), pick(m), m.ifaces.clone())
            }
        })
    }

    /// Make sure `addr` exists in the zone's namespace: on the interface
    /// whose network holds it, or (outside: a far machine) on loopback.
    fn ensure_addr(
        &self,
        zone: &Zone,
        ns: &str,
        ifaces: &[(String, Vec<IpNet>)],
        addr: IpAddr,
        has: bool,
    ) -> Result<()> {
        if has {
            return Ok(());
        }
        let mut added = self.added.lock().unwrap();
        if added.contains(&(ns.to_string(), addr)) {
            return Ok(());
        }
        let on_link = ifaces.iter().find_map(|(i, nets)| {
            nets.iter()
                .find(|n| n.contains(&addr))
                .map(|n| (i, n.prefix_len()))
        });
        let line = match (zone, on_link) {
            (_, Some((i, p))) => {
                let a = IpNet::new(addr, p).map_err(|e| Error::new(e.to_string()))?;
                format!("addr add {a} dev {i}{}", nodad(&a))
            }
            (Zone::Outside, None) => format!(
                "addr add {} dev lo{}",
                host_net(addr),
                nodad(&host_net(addr))
            ),
            (_, None) => {
                let i = &ifaces
                    .first()
                    .ok_or_else(|| Error::new(format!("{zone} has no interface")))?
                    .0;
                format!(
                    "addr add {} dev {i}{}",
                    host_net(addr),
                    nodad(&host_net(addr))
                )
            }
        };
        Netns::borrowed(ns).ip_batch(&[line])?;
        if let Zone::Guest { .. } = zone {
            // Sent from the NIC it was added to (see `nic_table`).
            let index = ifaces
                .first()
                .and_then(|(i, _)| i.strip_prefix("net"))
                .and_then(|i| i.parse::<u32>().ok());
            if let Some(index) = index {
                let t = nic_table(index).to_string();
                let f = if addr.is_ipv4() { "-4" } else { "-6" };
                Netns::borrowed(ns).exec(
                    &[
                        "ip",
                        f,
                        "rule",
                        "add",
                        "from",
                        &addr.to_string(),
                        "lookup",
                        &t,
                        "priority",
                        &t,
                    ],
                    None,
                )?;
            }
        }
        added.insert((ns.to_string(), addr));
        Ok(())
    }

    fn owns(&self, ns: &str, addr: IpAddr) -> bool {
        let in_member = |m: &Member| m.ns.name() == ns && m.addrs.contains(&addr);
        in_member(&self.host)
            || in_member(&self.outside)
            || self.guests.values().any(|(_, m)| in_member(m))
            || self.nodes.lock().unwrap().values().any(in_member)
    }

    fn icmp_type(p: &Probe) -> Result<u8> {
        let v4 = p.family == Family::V4;
        let name = p.icmp_type.as_deref().unwrap_or("echo-request");
        if let Ok(n) = name.parse::<u8>() {
            return Ok(n);
        }
        let n = match (name, v4) {
            ("echo-request" | "ping", true) => 8,
            ("echo-request" | "ping", false) => 128,
            ("echo-reply" | "pong", true) => 0,
            ("echo-reply" | "pong", false) => 129,
            ("destination-unreachable", true) => 3,
            ("destination-unreachable", false) => 1,
            ("source-quench", true) => 4,
            ("redirect", true) => 5,
            ("router-advertisement", true) => 9,
            ("router-solicitation", true) => 10,
            ("time-exceeded", true) => 11,
            ("time-exceeded", false) => 3,
            ("parameter-problem", true) => 12,
            ("parameter-problem", false) => 4,
            ("timestamp-request", true) => 13,
            ("timestamp-reply", true) => 14,
            ("address-mask-request", true) => 17,
            ("address-mask-reply", true) => 18,
            ("packet-too-big", false) => 2,
            ("router-solicitation" | "nd-router-solicit", false) => 133,
            ("router-advertisement" | "nd-router-advert", false) => 134,
            ("neighbour-solicitation" | "neighbor-solicitation" | "nd-neighbor-solicit", false) => {
                135
            }
            (
                "neighbour-advertisement" | "neighbor-advertisement" | "nd-neighbor-advert",
                false,
            ) => 136,
            ("redirect" | "nd-redirect", false) => 137,
            _ => return Err(Error::new(format!("unknown ICMP type `{name}`"))),
        };
        Ok(n)
    }

    /// Resolve a probe into the namespaces and the helper's spec.
    fn resolve(&self, p: &Probe) -> Result<(String, String, Spec)> {
        let (sns, mut sdef, sif) = self.zone_info(&p.from, p.family)?;
        let (dns, mut ddef, dif) = self.zone_info(&p.to, p.family)?;
        // The outside machine's default address is the one on the other
        // end's network when it has one (a machine on that bridge, as the
        // simulator places it), else its first of the family.
        let near = |ifaces: &Ifaces| {
            self.outside.addrs.iter().copied().find(|a| {
                Family::of(a) == p.family
                    && ifaces
                        .iter()
                        .any(|(_, nets)| nets.iter().any(|n| n.contains(a)))
            })
        };
        if p.from == Zone::Outside {
            sdef = near(&dif).or(sdef);
        }
        if p.to == Zone::Outside {
            ddef = near(&sif).or(ddef);
        }
        let src = p
            .source
            .or(sdef)
            .ok_or_else(|| Error::new(format!("{} has no {} address", p.from, p.family)))?;
        let dst = p
            .dest
            .or(ddef)
            .ok_or_else(|| Error::new(format!("{} has no {} address", p.to, p.family)))?;
        if Family::of(&src) != p.family || Family::of(&dst) != p.family {
            return Err(Error::new(format!(
                "source {src} / dest {dst} are not {}",
                p.family
            )));
        }
        let proto = match p.proto {
            PacketProto::Tcp => ProbeProto::Tcp,
            PacketProto::Udp => ProbeProto::Udp,
            PacketProto::Icmp | PacketProto::Icmpv6 => ProbeProto::Icmp,
        };
        let icmp_type = if proto == ProbeProto::Icmp {
            Self::icmp_type(p)?
        } else {
            0
        };
        if proto != ProbeProto::Icmp && p.dport.is_none() {
            return Err(Error::new(format!("a {} probe needs a dport", p.proto)));
        }
        if p.state == State::Established
            && proto == ProbeProto::Icmp
            && !is_echo_type(icmp_type, p.family)
        {
            return Err(Error::new("established ICMP probes are echo requests only"));
        }
        match (p.proto, p.family) {
            (PacketProto::Icmp, Family::V6) | (PacketProto::Icmpv6, Family::V4) => {
                return Err(Error::new(format!(
                    "{} is not an {} protocol",
                    p.proto, p.family
                )))
            }
            _ => {}
        }
        // A source read at the firewall is not added to the sender (another
        // machine that owns it would become unreachable from there): the
        // probe is sent from the NIC's own address and the sender's
        // namespace rewrites the source (see `Watch`).
        let watched = self.reads_at_firewall(p, &sns, src);
        let (src, spoof) = if watched {
            let own = sdef.ok_or_else(|| {
                Error::new(format!(
                    "{} has no {} address to send from",
                    p.from, p.family
                ))
            })?;
            (own, Some(src))
        } else {
            (src, None)
        };
        self.ensure_addr(&p.from, &sns, &sif, src, watched || self.owns(&sns, src))?;
        self.ensure_addr(&p.to, &dns, &dif, dst, self.owns(&dns, dst))?;
        // A watched TCP/UDP probe gets a source port of its own, so its
        // counters tell it from another probe with the same addresses.
        let id = ICMP_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sport = match p.sport {
            Some(sp) => sp,
            None if watched && proto != ProbeProto::Icmp => 20000 + id % 10000,
            None => 0,
        };
        let spec = Spec {
            proto,
            src,
            dst,
            sport,
            dport: p.dport.unwrap_or(0),
            icmp_type,
            icmp_code: p.icmp_code.unwrap_or(0),
            id,
            spoof,
        };
        Ok((sns, dns, spec))
    }

    /// A guest sending from an address it does not own, where no answer
    /// can come back to it: outside every network of the sending NIC, or
    /// an address another machine of the lab owns (the answer goes there).
    fn reads_at_firewall(&self, p: &Probe, sns: &str, src: IpAddr) -> bool {
        if p.source.is_none() || !matches!(p.from, Zone::Guest { .. }) || self.owns(sns, src) {
            return false;
        }
        let Ok((_, _, sif)) = self.zone_info(&p.from, p.family) else {
            return false;
        };
        let on_link = sif
            .iter()
            .any(|(_, nets)| nets.iter().any(|n| n.contains(&src)));
        let elsewhere = self.host.addrs.contains(&src)
            || self.outside.addrs.contains(&src)
            || self.guests.values().any(|(_, m)| m.addrs.contains(&src))
            || self
                .nodes
                .lock()
                .unwrap()
                .values()
                .any(|m| m.addrs.contains(&src));
        !on_link || elsewhere
    }

    fn helper(&self, ns: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns])
            .arg(&self.opts.helper.exe)
            .args(&self.opts.helper.prefix);
        c
    }

    /// Send one probe and observe the kernel's answer.
    pub fn probe(&self, p: &Probe) -> Result<Observed> {
        self.probe_all(std::slice::from_ref(p))
            .pop()
            .expect("one result")
    }

    /// Send every probe at once (new-state probes run in parallel, so a
    /// batch of DROPs costs one timeout) and observe each answer.
    /// Established probes are opened first, before anything else, with
    /// whatever ruleset is loaded: use [`Lab::probe_established`] to open
    /// them before the ruleset is loaded.
    pub fn probe_all(&self, probes: &[Probe]) -> Vec<Result<Observed>> {
        self.run_probes(probes, None)
    }

    /// Established-flow probes: every connection is opened first (with no
    /// ruleset, or whatever is loaded now), then `load` runs (load the
    /// ruleset under test), then each probe sends data over its connection:
    /// ACCEPT if the echo comes back. This is how a live host sees a new
    /// ruleset: conntrack keeps the connections it had. New-state probes in
    /// the same batch run after the load.
    pub fn probe_established(
        &self,
        probes: &[Probe],
        load: &dyn Fn(&Lab) -> Result<()>,
    ) -> Vec<Result<Observed>> {
        self.run_probes(probes, Some(load))
    }

    /// Probes that name the same source port and flow cannot be in flight
    /// together: they go in rounds (established ones first), with the
    /// node's conntrack table flushed between rounds so each starts new.
    fn run_probes(&self, probes: &[Probe], load: Option<Loader>) -> Vec<Result<Observed>> {
        // The local ports a probe binds: the sender's (when it names a
        // `sport`) and the listener's. Two probes that bind the same port
        // in one namespace cannot run together (a listener is shared by
        // probes to the same destination, so listener/listener is fine).
        type Binding = (PacketProto, String, Option<IpAddr>, u16, Family);
        let sender = |p: &Probe| -> Option<Binding> {
            p.sport
                .map(|sp| (p.proto, p.from.to_string(), p.source, sp, p.family))
        };
        let listener = |p: &Probe| -> Option<Binding> {
            p.dport
                .map(|dp| (p.proto, p.to.to_string(), p.dest, dp, p.family))
        };
        let mut order: Vec<usize> = (0..probes.len())
            .filter(|&i| probes[i].source_mac.is_none())
            .collect();
        let with_mac: Vec<usize> = (0..probes.len())
            .filter(|&i| probes[i].source_mac.is_some())
            .collect();
        if !with_mac.is_empty() {
            // The others first (with the ruleset load), then one round per
            // probe with a MAC of its own.
            let rest: Vec<Probe> = order.iter().map(|&i| probes[i].clone()).collect();
            let mut results: Vec<Option<Result<Observed>>> = probes.iter().map(|_| None).collect();
            let mut load = load;
            if !rest.is_empty() {
                for (&i, r) in order.iter().zip(self.run_probes(&rest, load.take())) {
                    results[i] = Some(r);
                }
            }
            for i in with_mac {
                if let Some(l) = load.take() {
                    if let Err(e) = l(self) {
                        results[i] = Some(Err(e));
                        continue;
                    }
                }
                results[i] = Some(self.probe_with_mac(&probes[i]));
            }
            return results
                .into_iter()
                .map(|r| r.expect("every probe ran"))
                .collect();
        }
        order.sort_by_key(|&i| probes[i].state != State::Established);
        // (probes, senders' bindings, listeners' bindings) per round.
        type Round = (Vec<usize>, Vec<Binding>, Vec<Binding>);
        let mut rounds: Vec<Round> = Vec::new();
        for i in order {
            let (s, l) = (sender(&probes[i]), listener(&probes[i]));
            let r = rounds.iter().position(|(_, ss, ls)| {
                s.as_ref()
                    .is_none_or(|s| !ss.contains(s) && !ls.contains(s))
                    && l.as_ref().is_none_or(|l| !ss.contains(l))
            });
            let r = r.unwrap_or_else(|| {
                rounds.push((Vec::new(), Vec::new(), Vec::new()));
                rounds.len() - 1
            });
            rounds[r].0.push(i);
            rounds[r].1.extend(s);
            rounds[r].2.extend(l);
        }
        if rounds.len() <= 1 {
            return self.run_round(probes, load);
        }
        let mut results: Vec<Option<Result<Observed>>> = probes.iter().map(|_| None).collect();
        let mut load = load;
        for (n, (idx, _, _)) in rounds.iter().enumerate() {
            if n > 0 {
                let _ = self.host.ns.exec(&["conntrack", "-F"], None);
            }
            let batch: Vec<Probe> = idx.iter().map(|&i| probes[i].clone()).collect();
            for (&i, r) in idx.iter().zip(self.run_round(&batch, load.take())) {
                results[i] = Some(r);
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every probe is in a round"))
            .collect()
    }

    /// One probe sent from another MAC than its guest NIC's: set it, flush
    /// the neighbour caches of every namespace (so answers find the new
    /// MAC), send, restore the NIC's MAC and flush again.
    fn probe_with_mac(&self, p: &Probe) -> Result<Observed> {
        let mac = p.source_mac.expect("a probe with a MAC");
        let Zone::Guest { .. } = &p.from else {
            return Err(Error::new(format!(
                "source_mac on a probe from {}: only guests can have one",
                p.from
            )));
        };
        let (ns, _, ifaces) = self.zone_info(&p.from, p.family)?;
        let ifname = &ifaces
            .first()
            .ok_or_else(|| Error::new(format!("{} has no interface", p.from)))?
            .0;
        let show = Netns::borrowed(&ns)
            .exec(&["cat", &format!("/sys/class/net/{ifname}/address")], None)?;
        let original = show.trim().to_string();
        let fmt = |m: [u8; 6]| {
            format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            )
        };
        let flush = || {
            let mut all = vec![
                ns.clone(),
                self.host.ns.name().to_string(),
                self.outside.ns.name().to_string(),
            ];
            all.extend(self.guests.values().map(|(_, m)| m.ns.name().to_string()));
            for n in all {
                let _ = Netns::borrowed(&n).ip_batch(&["neigh flush all".to_string()]);
            }
        };
        Netns::borrowed(&ns).ip_batch(&[format!("link set {ifname} address {}", fmt(mac))])?;
        flush();
        let r = self
            .run_round(std::slice::from_ref(p), None)
            .pop()
            .expect("one result");
        let restore =
            Netns::borrowed(&ns).ip_batch(&[format!("link set {ifname} address {original}")]);
        flush();
        restore?;
        r
    }

    fn run_round(&self, probes: &[Probe], load: Option<Loader>) -> Vec<Result<Observed>> {
        let mut results: Vec<Option<Result<Observed>>> = probes.iter().map(|_| None).collect();
        let mut resolved = Vec::new();
        for (i, p) in probes.iter().enumerate() {
            match self.resolve(p) {
                Ok(r) => resolved.push((i, p.state, r)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        // Listeners, one helper per target namespace.
        let mut listen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (_, _, (_, dns, s)) in &resolved {
            let arg = match s.proto {
                ProbeProto::Tcp => format!("--tcp {},{}", s.dst, s.dport),
                ProbeProto::Udp => format!("--udp {},{}", s.dst, s.dport),
                // Only an echo request is answered: for any other type, the
                // target watches for it and arrival means ACCEPT.
                ProbeProto::Icmp if is_echo(s) => continue,
                ProbeProto::Icmp if s.dst.is_ipv4() => "--icmp4".to_string(),
                ProbeProto::Icmp => "--icmp6".to_string(),
            };
            listen.entry(dns.clone()).or_default().insert(arg);
        }
        let mut servers = Vec::new();
        for (ns, args) in &listen {
            match self.start_server(ns, args) {
                Ok((child, stdin, out)) => servers.push((ns.clone(), child, stdin, out)),
                Err(e) => {
                    for (i, _, (_, dns, _)) in &resolved {
                        if dns == ns {
                            results[*i] = Some(Err(e.clone()));
                        }
                    }
                }
            }
        }
        let failed: BTreeSet<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_some())
            .map(|(i, _)| i)
            .collect();
        let resolved: Vec<_> = resolved
            .into_iter()
            .filter(|(i, _, _)| !failed.contains(i))
            .collect();

        // Established: open, then load, then exchange.
        let est: Vec<_> = resolved
            .iter()
            .filter(|(_, st, _)| *st == State::Established)
            .collect();
        let mut held = Vec::new();
        let mut est_ok = true;
        let tracking = !est.is_empty();
        if tracking {
            // Conntrack only tracks once something in the namespace uses it:
            // a table of our own that matches on it (and decides nothing)
            // keeps it on while the connections open.
            if let Err(e) = self.host.ns.exec(&["nft", "-f", "-"], Some(CONNTRACK_ON)) {
                for (i, _, _) in &est {
                    results[*i] = Some(Err(e.clone()));
                }
            }
        }
        let est: Vec<_> = est
            .into_iter()
            .filter(|(i, _, _)| results[*i].is_none())
            .collect();
        if !est.is_empty() {
            let mut by_ns: BTreeMap<&str, Vec<(usize, &Spec)>> = BTreeMap::new();
            for (i, _, (sns, _, s)) in &est {
                by_ns.entry(sns.as_str()).or_default().push((*i, s));
            }
            for (ns, list) in by_ns {
                match self.start_sender(ns, &list, true) {
                    Ok((child, stdin, mut stdout, idx)) => {
                        // Wait for every probe to connect or fail.
                        let mut line = String::new();
                        let mut seen = 0;
                        while seen < idx.len() {
                            line.clear();
                            if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                                break;
                            }
                            seen += 1;
                            if let Some((k, r, _)) = probe::parse_result_line(line.trim_end()) {
                                results[idx[k]] = Some(r.map_err(Error::new));
                            }
                        }
                        held.push((child, stdin, stdout, idx));
                    }
                    Err(e) => {
                        for (i, _) in list {
                            results[i] = Some(Err(e.clone()));
                        }
                    }
                }
            }
        }
        if let Some(load) = load {
            if let Err(e) = load(self) {
                est_ok = false;
                for r in results.iter_mut().filter(|r| r.is_none()) {
                    *r = Some(Err(Error::new(format!("loading the ruleset: {e}"))));
                }
            }
        }
        if tracking {
            let _ = self
                .host
                .ns
                .exec(&["nft", "delete", "table", "inet", CONNTRACK_TABLE], None);
        }
        // Go: established exchanges and every new-state probe, all at once.
        let mut senders = Vec::new();
        for (mut child, mut stdin, stdout, idx) in held {
            if !est_ok {
                // No ruleset under test: the flows must not report.
                let _ = child.kill();
                let _ = child.wait();
                continue;
            }
            let _ = stdin.write_all(b"go\n");
            let _ = stdin.flush();
            senders.push((child, Some(stdin), stdout, idx));
        }
        // Spoofed sources the answer cannot come back to: the verdict is
        // read at the node (see `Watch`).
        let watched: Vec<(usize, Watch)> = if est_ok {
            resolved
                .iter()
                .filter(|(_, st, _)| *st == State::New)
                .filter(|(_, _, (_, _, s))| s.spoof.is_some())
                .map(|(i, _, (sns, dns, s))| (*i, Watch::new(self, sns, dns, s)))
                .collect()
        } else {
            Vec::new()
        };
        let watching = Watch::install(self, &watched);
        if let Err(e) = &watching {
            for (i, _) in &watched {
                results[*i] = Some(Err(e.clone()));
            }
        }
        if est_ok {
            let mut by_ns: BTreeMap<&str, Vec<(usize, &Spec)>> = BTreeMap::new();
            for (i, st, (sns, _, s)) in &resolved {
                if *st == State::New {
                    by_ns.entry(sns.as_str()).or_default().push((*i, s));
                }
            }
            for (ns, list) in by_ns {
                match self.start_sender(ns, &list, false) {
                    Ok((child, stdin, stdout, idx)) => {
                        senders.push((child, Some(stdin), stdout, idx))
                    }
                    Err(e) => {
                        for (i, _) in list {
                            results[i] = Some(Err(e.clone()));
                        }
                    }
                }
            }
        }
        for (mut child, stdin, mut stdout, idx) in senders {
            let mut line = String::new();
            loop {
                line.clear();
                if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some((k, r, _)) = probe::parse_result_line(line.trim_end()) {
                    if let Some(&i) = idx.get(k) {
                        results[i] = Some(r.map_err(Error::new));
                    }
                }
            }
            drop(stdin);
            let _ = child.wait();
        }
        if watching.is_ok() {
            for (i, o) in Watch::read(self, &watched) {
                if matches!(results[i], Some(Ok(_)) | None) {
                    results[i] = Some(o);
                }
            }
        }
        // Close the listeners; they report which ICMP probes arrived.
        let mut seen = BTreeSet::new();
        for (ns, mut child, stdin, mut out) in servers {
            drop(stdin);
            let mut line = String::new();
            while out.read_line(&mut line).unwrap_or(0) > 0 {
                let f: Vec<&str> = line.split_whitespace().collect();
                if let ["seen", fam, ty, id] = f.as_slice() {
                    seen.insert((ns.clone(), fam.to_string(), ty.to_string(), id.to_string()));
                }
                line.clear();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for (i, _, (_, dns, s)) in &resolved {
            if s.proto == ProbeProto::Icmp && !is_echo(s) && results[*i] == Some(Ok(Observed::Drop))
            {
                let fam = if s.dst.is_ipv4() { "4" } else { "6" };
                if seen.contains(&(
                    dns.clone(),
                    fam.to_string(),
                    s.icmp_type.to_string(),
                    s.id.to_string(),
                )) {
                    results[*i] = Some(Ok(Observed::Accept));
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::new("the probe helper gave no answer"))))
            .collect()
    }

    fn start_server(&self, ns: &str, args: &BTreeSet<String>) -> Result<Running> {
        let mut c = self.helper(ns);
        c.arg("serve");
        for a in args {
            c.args(a.split(' '));
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::new(format!(
                    "starting the probe helper {:?}: {e}",
                    self.opts.helper.exe
                ))
            })?;
        let stdin = child.stdin.take().expect("piped");
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        if line.trim() != "ready" {
            let _ = child.kill();
            let out = child.wait_with_output();
            let err = out
                .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
                .unwrap_or_default();
            return Err(Error::new(format!(
                "listeners in {ns} did not start: {err}"
            )));
        }
        Ok((child, stdin, out))
    }

    #[allow(clippy::type_complexity)]
    fn start_sender(
        &self,
        ns: &str,
        list: &[(usize, &Spec)],
        hold: bool,
    ) -> Result<(Child, ChildStdin, BufReader<ChildStdout>, Vec<usize>)> {
        let mut c = self.helper(ns);
        c.arg("send")
            .arg("--timeout-ms")
            .arg(self.opts.timeout.as_millis().to_string());
        if hold {
            c.arg("--hold");
        }
        for (_, s) in list {
            c.arg(s.encode());
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                Error::new(format!(
                    "starting the probe helper {:?}: {e}",
                    self.opts.helper.exe
                ))
            })?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Ok((child, stdin, stdout, list.iter().map(|(i, _)| *i).collect()))
    }
}

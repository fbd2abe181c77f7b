//! Every protocol of the table (`rampart_syntax::tables::PROTOCOLS`, names
//! and numbers) means the same on the simulator, the nftables kernel and the
//! iptables kernel (issue 17 item 3: `-p ip` once matched nothing on
//! nftables and everything on iptables).
//!
//! One site holds, per table entry, `IN ACCEPT -p P -dest A` with an
//! address `A` of its own (IPv4 and IPv6, where the protocol's family
//! allows), under `policy_in: DROP`. The plan is applied by
//! `rampart_apply::apply`, once as nftables and once as iptables, into a node
//! namespace; a peer namespace sends raw IP packets of the entry's protocol
//! (and of contrasting protocols: for `ip`/`hopopt`, protocol 0, several) to
//! each address, and raw sockets in the node see what the firewall let in
//! (a raw socket receives after the INPUT hook). The simulator's verdict on
//! the same packet must be what each kernel did.
//!
//! What cannot be sent as a packet of its own (protocol 0 itself; on IPv6
//! the extension headers `hopopt`, `ipv6-route`, `ipv6-frag`, `ah`,
//! `ipv6-nonxt`, `ipv6-opts`, which both kernels skip to find the
//! transport protocol) is compared at compile level instead: the protocol
//! set each backend's rule text denotes (`meta l4proto N` / `-p N`, or no
//! protocol match = every protocol) must be the same.

use rampart_apply::{apply, ApplyOpts, HostSystem, Scheduler};
use rampart_plan::{Backend, PlanOpts};
use rampart_sim::{simulate_plan, Packet};
use rampart_syntax::tables::{parse_proto, PROTOCOLS};
use rampart_types::{Action, Family, Proto, SiteFiles};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static N: AtomicUsize = AtomicUsize::new(0);

const PEER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
const PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x50);
const NODE4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const NODE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// IPv6 next headers both kernels step over to find the transport protocol.
fn v6_extension(n: u8) -> bool {
    matches!(n, 0 | 43 | 44 | 51 | 59 | 60)
}

/// The destination address of table entry `i`.
fn addr(i: usize, f: Family) -> IpAddr {
    match f {
        Family::V4 => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100 + i as u8)),
        Family::V6 => IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            1,
            0,
            0,
            0,
            0,
            0x1000 + i as u16,
        )),
    }
}

fn families_of(p: &Proto) -> Vec<Family> {
    match p.family() {
        Some(f) => vec![f],
        None => vec![Family::V4, Family::V6],
    }
}

/// The site, and for each rule line its (entry, family).
fn site() -> (SiteFiles, BTreeMap<usize, (usize, Family)>) {
    let mut addrs = vec![format!("{NODE4}/24"), format!("{NODE6}/64")];
    let mut rules = String::from("[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[RULES]\n");
    let mut lines = BTreeMap::new();
    let mut line = 6;
    for (i, (name, _)) in PROTOCOLS.iter().enumerate() {
        let p = parse_proto(name).unwrap();
        for f in families_of(&p) {
            let a = addr(i, f);
            addrs.push(match f {
                Family::V4 => format!("{a}/24"),
                Family::V6 => format!("{a}/64"),
            });
            rules.push_str(&format!("IN ACCEPT -p {name} -dest {a}\n"));
            lines.insert(line, (i, f));
            line += 1;
        }
    }
    let toml = format!(
        "[[node]]\nname = \"hv1\"\nbridges = {{ vmbr0 = [{}] }}\n",
        addrs
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    (
        SiteFiles::new()
            .with("site.toml", toml.as_str())
            .with("firewall/cluster.fw", rules.as_str()),
        lines,
    )
}

/// The protocols a rule's text matches: `None` = every protocol.
type ProtoSet = Option<BTreeSet<u8>>;

fn number_of(word: &str) -> u8 {
    word.parse()
        .ok()
        .or_else(|| parse_proto(word).map(|p| p.number()))
        .unwrap_or_else(|| panic!("protocol word `{word}`"))
}

/// `meta l4proto X` in an nft rule line (or `tcp dport`-style implied
/// protocols, which these rules do not use).
fn nft_protos(rule: &str) -> ProtoSet {
    let w: Vec<&str> = rule.split_whitespace().collect();
    w.windows(2)
        .find(|x| x[0] == "l4proto")
        .map(|x| BTreeSet::from([number_of(x[1])]))
}

/// `-p X` in an iptables rule line.
fn ipt_protos(rule: &str) -> ProtoSet {
    let w: Vec<&str> = rule.split_whitespace().collect();
    w.windows(2)
        .find(|x| x[0] == "-p")
        .map(|x| BTreeSet::from([number_of(x[1])]))
        .filter(|s| !s.contains(&0))
}

/// The rule lines of a ruleset text carrying `cluster.fw:LINE` (or merged
/// rules: `cluster.fw:FIRST-LAST`, `cluster.fw:5,7`), by line.
fn rules_by_line(text: &str) -> BTreeMap<usize, Vec<String>> {
    let mut m: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for l in text.lines() {
        if let Some(pos) = l.find("cluster.fw:") {
            let runs: String = l[pos + 11..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '-' || *c == ',')
                .collect();
            for run in runs.split(',') {
                let (a, b) = run.split_once('-').unwrap_or((run, run));
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    for n in a..=b {
                        m.entry(n).or_default().push(l.to_string());
                    }
                }
            }
        }
    }
    m
}

#[test]
fn every_table_protocol_compiles_to_the_same_set_on_both_backends() {
    let (files, lines) = site();
    let nft = rampart_plan::build(&files, "hv1", &PlanOpts::default()).expect("plan");
    let ipt = rampart_plan::build(
        &files,
        "hv1",
        &PlanOpts {
            backend: Some(Backend::Iptables),
            ..PlanOpts::default()
        },
    )
    .expect("plan");
    let nft_rules = rules_by_line(&nft.plan.ruleset);
    let ipt_text = format!(
        "{}\n{}",
        ipt.plan.ruleset,
        ipt.plan.ruleset6.clone().unwrap_or_default()
    );
    let ipt_rules = rules_by_line(&ipt_text);
    let mut bad = Vec::new();
    for (line, (i, f)) in &lines {
        let (name, number) = PROTOCOLS[*i];
        let want: ProtoSet = (number != 0).then(|| BTreeSet::from([number]));
        let n = nft_rules.get(line).cloned().unwrap_or_default();
        let p = ipt_rules
            .get(line)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l.starts_with("-A"))
            .collect::<Vec<_>>();
        if n.len() != 1 || p.len() != 1 {
            bad.push(format!(
                "line {line} (-p {name}, {f}): nft {n:?}, iptables {p:?}"
            ));
            continue;
        }
        let (sn, sp) = (nft_protos(&n[0]), ipt_protos(&p[0]));
        if sn != want || sp != want {
            bad.push(format!(
                "-p {name} ({f}): meaning {want:?}, nft {sn:?} `{}`, iptables {sp:?} `{}`",
                n[0].trim(),
                p[0]
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

struct Ns {
    name: String,
}

impl Ns {
    fn new(tag: &str) -> Ns {
        let name = format!(
            "rproto-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        run("ip", &["netns", "add", &name]);
        let ns = Ns { name };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }
    fn run(&self, args: &[&str]) -> String {
        let mut a = vec!["netns", "exec", &self.name];
        a.extend_from_slice(args);
        run("ip", &a)
    }
    fn sys(&self) -> HostSystem {
        let mut s = HostSystem::in_netns(&self.name);
        s.scheduler = Scheduler::Detached;
        s
    }
    /// A raw socket created inside this namespace.
    fn raw(&self, f: Family, proto: u8) -> Socket {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("netns file");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let d = match f {
                Family::V4 => Domain::IPV4,
                Family::V6 => Domain::IPV6,
            };
            Socket::new(d, Type::RAW, Some(Protocol::from(proto as i32)))
                .unwrap_or_else(|e| panic!("raw socket {f} {proto}: {e}"))
        })
        .join()
        .unwrap()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

fn run(prog: &str, args: &[&str]) -> String {
    let o = Command::new(prog).args(args).output().expect("spawn");
    assert!(
        o.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A node namespace (`vmbr0` with every address of the site) and a peer.
fn pair(tag: &str, site_addrs: &[String]) -> (Ns, Ns) {
    let node = Ns::new(&format!("{tag}n"));
    let peer = Ns::new(&format!("{tag}p"));
    run(
        "ip",
        &[
            "link", "add", "vmbr0", "netns", &node.name, "type", "veth", "peer", "name", "eth0",
            "netns", &peer.name,
        ],
    );
    for a in site_addrs {
        node.run(&["ip", "addr", "add", a, "dev", "vmbr0", "nodad"]);
    }
    node.run(&["ip", "link", "set", "vmbr0", "up"]);
    peer.run(&["ip", "addr", "add", &format!("{PEER4}/24"), "dev", "eth0"]);
    peer.run(&[
        "ip",
        "addr",
        "add",
        &format!("{PEER6}/64"),
        "dev",
        "eth0",
        "nodad",
    ]);
    peer.run(&["ip", "link", "set", "eth0", "up"]);
    (node, peer)
}

fn csum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += w as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut b = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            b.extend_from_slice(&s.octets());
            b.extend_from_slice(&d.octets());
            b.extend_from_slice(&[0, proto]);
            b.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            b.extend_from_slice(&s.octets());
            b.extend_from_slice(&d.octets());
            b.extend_from_slice(&(len as u32).to_be_bytes());
            b.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => unreachable!(),
    }
    b.chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .sum()
}

/// SCTP's CRC32c (Castagnoli, reflected), as the header stores it.
fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for b in data {
        c ^= *b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
        }
    }
    !c
}

const SPORT: u16 = 40000;
const DPORT: u16 = 4444;

/// The transport payload of a probe of `proto` carrying `marker`: a
/// well-formed first packet (TCP SYN, UDP datagram, ICMP echo request, SCTP
/// INIT, DCCP Request, GRE), or the bare marker.
fn payload(proto: u8, src: IpAddr, dst: IpAddr, marker: &[u8]) -> Vec<u8> {
    let ports = [SPORT.to_be_bytes(), DPORT.to_be_bytes()].concat();
    let mut b = match proto {
        6 => {
            let mut h = ports.clone();
            h.extend_from_slice(&1u32.to_be_bytes()); // seq
            h.extend_from_slice(&0u32.to_be_bytes()); // ack
            h.extend_from_slice(&[5 << 4, 0x02]); // doff 5, SYN
            h.extend_from_slice(&65535u16.to_be_bytes());
            h.extend_from_slice(&[0, 0, 0, 0]); // csum, urg
            h
        }
        17 | 136 => {
            let mut h = ports.clone();
            let len = 8 + marker.len();
            // UDP: length; UDP-Lite: checksum coverage 0 (all).
            h.extend_from_slice(&(if proto == 17 { len as u16 } else { 0 }).to_be_bytes());
            h.extend_from_slice(&[0, 0]);
            h
        }
        1 => vec![8, 0, 0, 0, 0, 1, 0, 1],
        58 => vec![128, 0, 0, 0, 0, 1, 0, 1],
        132 => {
            // One INIT chunk (conntrack wants it alone), the marker as an
            // unrecognised parameter ("skip"), and a real CRC32c.
            let mut h = ports.clone();
            h.extend_from_slice(&[0; 8]); // vtag 0, crc32c below
            let plen = 4 + marker.len();
            h.extend_from_slice(&[1, 0]);
            h.extend_from_slice(&((20 + plen) as u16).to_be_bytes()); // INIT
            h.extend_from_slice(&1u32.to_be_bytes()); // initiate tag
            h.extend_from_slice(&65535u32.to_be_bytes()); // a_rwnd
            h.extend_from_slice(&[0, 1, 0, 1]); // streams
            h.extend_from_slice(&1u32.to_be_bytes()); // initial TSN
            h.extend_from_slice(&0x8001u16.to_be_bytes());
            h.extend_from_slice(&(plen as u16).to_be_bytes());
            h.extend_from_slice(marker);
            while h.len() % 4 != 0 {
                h.push(0);
            }
            let c = crc32c(&h);
            h[8..12].copy_from_slice(&c.to_le_bytes());
            return h;
        }
        135 => {
            // Mobility header (raw sockets drop malformed ones): no next
            // header, Binding Refresh Request, the marker as padding; the
            // kernel fills in the checksum.
            let mut h = vec![59, 0, 0, 0, 0, 0, 0, 0];
            h.extend_from_slice(marker);
            while h.len() % 8 != 0 {
                h.push(0);
            }
            h[1] = (h.len() / 8 - 1) as u8;
            return h;
        }
        33 => {
            let mut h = ports.clone();
            h.extend_from_slice(&[5, 0, 0, 0]); // doff 5, ccval/cscov, csum
            h.extend_from_slice(&[0x01, 0, 0, 0]); // Request, X=1, seq high
            h.extend_from_slice(&1u32.to_be_bytes()); // seq low
            h.extend_from_slice(&0u32.to_be_bytes()); // service code
            h
        }
        47 => vec![0, 0, 0x08, 0x00],
        _ => Vec::new(),
    };
    b.extend_from_slice(marker);
    let at = match proto {
        6 => Some(16),
        17 | 136 => Some(6),
        1 => Some(2),
        _ => None,
    };
    if let Some(at) = at {
        let start = if proto == 1 {
            0
        } else {
            pseudo(src, dst, proto, b.len())
        };
        let c = csum(&b, start);
        b[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    b
}

struct Probe {
    entry: usize,
    family: Family,
    proto: u8,
}

/// What the simulator says of a probe.
fn simulated(model: &rampart_nft::Plan, ir: &rampart_resolve::ir::Site, p: &Probe) -> bool {
    let proto = parse_proto(&p.proto.to_string()).unwrap();
    let mut pk = Packet::new("outside", "host", proto.clone());
    pk.family = Some(p.family);
    pk.source = Some(match p.family {
        Family::V4 => IpAddr::V4(PEER4),
        Family::V6 => IpAddr::V6(PEER6),
    });
    pk.dest = Some(addr(p.entry, p.family));
    if proto.has_ports() {
        pk.sport = Some(SPORT);
        pk.dport = Some(DPORT);
    }
    let t = simulate_plan(ir, model, &pk).unwrap_or_else(|e| panic!("simulate: {e}"));
    t.verdict == Action::Accept
}

fn probes() -> Vec<Probe> {
    let mut v = Vec::new();
    for (i, (name, number)) in PROTOCOLS.iter().enumerate() {
        let p = parse_proto(name).unwrap();
        for f in [Family::V4, Family::V6] {
            let sendable = |n: u8| n != 0 && !(f == Family::V6 && v6_extension(n));
            let mut ps: Vec<u8> = Vec::new();
            if sendable(*number) {
                ps.push(*number);
            }
            // Contrast: another protocol to the same address (for
            // protocol 0, "every protocol", several).
            if *number == 0 {
                ps.extend([6, 17, 47, 132, 50]);
                ps.push(if f == Family::V4 { 1 } else { 58 });
            } else {
                ps.push(if *number == 6 { 17 } else { 6 });
            }
            // Entries of the other family have no address of this one.
            if p.family().is_some_and(|pf| pf != f) {
                continue;
            }
            for proto in ps {
                v.push(Probe {
                    entry: i,
                    family: f,
                    proto,
                });
            }
        }
    }
    v
}

/// Apply `plan` in a fresh node namespace, send every probe from the
/// peer, and say which arrived.
fn kernel(
    tag: &str,
    np: &rampart_plan::NodePlan,
    site_addrs: &[String],
    ps: &[Probe],
) -> Vec<bool> {
    let (node, peer) = pair(tag, site_addrs);
    let state = tempfile::tempdir().unwrap();
    apply(&node.sys(), &np.plan, &ApplyOpts::new(state.path()))
        .unwrap_or_else(|e| panic!("{tag}: apply: {e}"));
    // The probes' DCCP checksums are not computed: conntrack is told not
    // to check them (the rules under test do not look at checksums).
    node.run(&["sysctl", "-qw", "net.netfilter.nf_conntrack_checksum=0"]);
    let mut rx: BTreeMap<(Family, u8), Socket> = BTreeMap::new();
    for p in ps {
        rx.entry((p.family, p.proto))
            .or_insert_with(|| node.raw(p.family, p.proto));
    }
    let mut tx: BTreeMap<(Family, u8), Socket> = BTreeMap::new();
    for p in ps {
        // (The kernel fills in ICMPv6 checksums itself.)
        tx.entry((p.family, p.proto))
            .or_insert_with(|| peer.raw(p.family, p.proto));
    }
    // Neighbours first (ARP/ND for every address), so no probe waits.
    for _ in 0..2 {
        for (idx, p) in ps.iter().enumerate() {
            let marker = format!("RMPT{idx:05}");
            let (src, dst) = match p.family {
                Family::V4 => (IpAddr::V4(PEER4), addr(p.entry, p.family)),
                Family::V6 => (IpAddr::V6(PEER6), addr(p.entry, p.family)),
            };
            let body = payload(p.proto, src, dst, marker.as_bytes());
            let to = SockAddr::from(SocketAddr::new(dst, 0));
            let _ = tx[&(p.family, p.proto)].send_to(&body, &to);
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    let mut seen = BTreeSet::new();
    for s in rx.values() {
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        while let Ok(n) = std::io::Read::read(&mut &*s, &mut buf) {
            let b = &buf[..n];
            if let Some(pos) = b.windows(4).position(|w| w == b"RMPT") {
                if let Ok(id) = std::str::from_utf8(&b[pos + 4..(pos + 9).min(b.len())])
                    .unwrap_or("")
                    .parse::<usize>()
                {
                    seen.insert(id);
                }
            }
        }
    }
    (0..ps.len()).map(|i| seen.contains(&i)).collect()
}

#[test]
fn every_table_protocol_gets_the_same_verdict_from_simulator_nftables_and_iptables() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (files, _) = site();
    let site_addrs: Vec<String> = {
        let mut v = vec![format!("{NODE4}/24"), format!("{NODE6}/64")];
        for (i, (name, _)) in PROTOCOLS.iter().enumerate() {
            for f in families_of(&parse_proto(name).unwrap()) {
                v.push(match f {
                    Family::V4 => format!("{}/24", addr(i, f)),
                    Family::V6 => format!("{}/64", addr(i, f)),
                });
            }
        }
        v
    };
    let ps = probes();
    let mut table = Vec::new();
    for backend in [Backend::Nftables, Backend::Iptables] {
        let np = rampart_plan::build(
            &files,
            "hv1",
            &PlanOpts {
                backend: Some(backend),
                ..PlanOpts::default()
            },
        )
        .expect("plan");
        let site = rampart_plan::load(&files, &PlanOpts::default()).unwrap();
        let sim: Vec<bool> = ps
            .iter()
            .map(|p| simulated(&np.model, &site.ir, p))
            .collect();
        let tag = if backend == Backend::Nftables {
            "n"
        } else {
            "i"
        };
        let got = kernel(tag, &np, &site_addrs, &ps);
        table.push((backend, sim, got));
    }
    let mut bad = Vec::new();
    for (k, p) in ps.iter().enumerate() {
        let (name, _) = PROTOCOLS[p.entry];
        let row: Vec<String> = table
            .iter()
            .map(|(b, sim, got)| format!("{b:?}: sim {} kernel {}", sim[k], got[k]))
            .collect();
        let all = table
            .iter()
            .flat_map(|(_, sim, got)| [sim[k], got[k]])
            .collect::<Vec<_>>();
        if all.iter().any(|x| *x != all[0]) {
            bad.push(format!(
                "rule `-p {name}`, {} packet of protocol {}: {}",
                p.family,
                p.proto,
                row.join("; ")
            ));
        }
    }
    // The entries under test really open their addresses: every packet of
    // the rule's own protocol, and everything for `ip` / `hopopt`.
    let accepted = table[0].1.iter().filter(|x| **x).count();
    assert!(accepted > PROTOCOLS.len(), "only {accepted} accepted");
    assert!(
        bad.is_empty(),
        "{} disagreements:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

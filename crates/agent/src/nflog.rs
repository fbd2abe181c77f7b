//! The firewall's log: packets the compiled ruleset logs through its nflog
//! group (`log prefix ":VMID:CHAIN:LEVEL: ACTION: ORIGIN " group 0`, rate
//! limited by the site's `log_ratelimit`) become structured log lines like
//! Proxmox's firewall log, plus the rule's origin:
//!
//! ```text
//! 0 6 host-in DROP: IN=veth0 OUT= SRC=10.1.0.2 DST=10.1.0.1 LEN=60 TTL=64 PROTO=TCP SPT=40000 DPT=111 SYN ORIGIN=cluster.fw:78
//! ```
//!
//! [`decode`] and [`LogLine`] are pure (bytes of one netlink datagram in,
//! records out); [`NflogReader`] is the thin shell around a
//! NETLINK_NETFILTER socket bound to the group (in the agent's namespace).

use rampart_apply::netlink::{self, NFNL_SUBSYS_ULOG, NLMSG_ERROR, NLM_F_ACK, NLM_F_REQUEST};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_PACKET_HDR: u16 = 1;
const NFULA_MARK: u16 = 2;
const NFULA_TIMESTAMP: u16 = 3;
const NFULA_IFINDEX_INDEV: u16 = 4;
const NFULA_IFINDEX_OUTDEV: u16 = 5;
const NFULA_IFINDEX_PHYSINDEV: u16 = 6;
const NFULA_IFINDEX_PHYSOUTDEV: u16 = 7;
const NFULA_HWADDR: u16 = 8;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_TIMEOUT: u16 = 3;
const NFULA_CFG_QTHRESH: u16 = 4;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;

/// One logged packet, decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogLine {
    /// Kernel timestamp (seconds, microseconds) when the packet had one.
    pub time: Option<(u64, u32)>,
    /// From the prefix: guest id (0 for the host), chain tag, syslog level,
    /// verdict, and the rule's origin (`cluster.fw:78`, `auto:policy_in DROP`).
    pub vmid: String,
    pub chain: String,
    pub level: String,
    pub verdict: String,
    pub origin: String,
    /// The prefix as the kernel gave it, when it is not rampart's.
    pub raw_prefix: Option<String>,
    pub family: u8,
    pub mark: Option<u32>,
    pub in_if: Option<u32>,
    pub out_if: Option<u32>,
    pub physin_if: Option<u32>,
    pub physout_if: Option<u32>,
    pub mac: Option<String>,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub len: Option<u16>,
    pub ttl: Option<u8>,
    pub proto: Option<String>,
    pub spt: Option<u16>,
    pub dpt: Option<u16>,
    /// TCP flags (`SYN ACK`...) or ICMP `TYPE=n CODE=n`.
    pub extra: Option<String>,
}

fn be16(b: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(..2)?.try_into().ok()?))
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn be64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// Split rampart's prefix `:VMID:CHAIN:LEVEL: ACTION: ORIGIN `.
pub fn parse_prefix(p: &str) -> Option<(String, String, String, String, String)> {
    let rest = p.strip_prefix(':')?;
    let mut it = rest.splitn(4, ':');
    let vmid = it.next()?;
    let chain = it.next()?;
    let level = it.next()?;
    let tail = it.next()?.strip_prefix(' ')?;
    let (verdict, origin) = match tail.split_once(": ") {
        Some((v, o)) => (v, o.trim_end()),
        None => (tail.trim_end().trim_end_matches(':'), ""),
    };
    if vmid.is_empty() || !vmid.bytes().all(|b| b.is_ascii_digit()) || verdict.is_empty() {
        return None;
    }
    Some((
        vmid.into(),
        chain.into(),
        level.into(),
        verdict.into(),
        origin.into(),
    ))
}

/// Fill the L3/L4 fields from the logged packet (starting at the IP header).
fn decode_payload(l: &mut LogLine, p: &[u8]) {
    let Some(&first) = p.first() else { return };
    let (proto, l4): (u8, &[u8]) = match first >> 4 {
        4 if p.len() >= 20 => {
            let ihl = usize::from(first & 15) * 4;
            l.len = be16(&p[2..]);
            l.ttl = Some(p[8]);
            l.src = Some(IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15])));
            l.dst = Some(IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19])));
            let frag = be16(&p[6..]).unwrap_or(0) & 0x1fff;
            if frag != 0 {
                l.proto = Some(format!("{}", p[9]));
                return;
            }
            (p[9], p.get(ihl..).unwrap_or(&[]))
        }
        6 if p.len() >= 40 => {
            l.len = be16(&p[4..]).map(|n| n.saturating_add(40));
            l.ttl = Some(p[7]);
            let a: [u8; 16] = p[8..24].try_into().expect("16 bytes");
            let b: [u8; 16] = p[24..40].try_into().expect("16 bytes");
            l.src = Some(IpAddr::V6(Ipv6Addr::from(a)));
            l.dst = Some(IpAddr::V6(Ipv6Addr::from(b)));
            // Skip hop-by-hop, routing and destination options headers.
            let (mut nh, mut off) = (p[6], 40usize);
            while matches!(nh, 0 | 43 | 60) && off + 8 <= p.len() {
                nh = p[off];
                off += (usize::from(p[off + 1]) + 1) * 8;
            }
            (nh, p.get(off..).unwrap_or(&[]))
        }
        _ => return,
    };
    match proto {
        6 => {
            l.proto = Some("TCP".into());
            l.spt = be16(l4);
            l.dpt = l4.get(2..).and_then(be16);
            if let Some(&f) = l4.get(13) {
                let names = [
                    (0x02, "SYN"),
                    (0x10, "ACK"),
                    (0x01, "FIN"),
                    (0x04, "RST"),
                    (0x08, "PSH"),
                    (0x20, "URG"),
                ];
                let set: Vec<&str> = names
                    .iter()
                    .filter(|(b, _)| f & b != 0)
                    .map(|(_, n)| *n)
                    .collect();
                if !set.is_empty() {
                    l.extra = Some(set.join(" "));
                }
            }
        }
        17 => {
            l.proto = Some("UDP".into());
            l.spt = be16(l4);
            l.dpt = l4.get(2..).and_then(be16);
        }
        1 | 58 => {
            l.proto = Some(if proto == 1 { "ICMP" } else { "ICMPv6" }.into());
            if l4.len() >= 2 {
                l.extra = Some(format!("TYPE={} CODE={}", l4[0], l4[1]));
            }
        }
        n => l.proto = Some(n.to_string()),
    }
}

/// Decode every logged packet in one netlink datagram (other messages,
/// such as ACKs, are skipped).
pub fn decode(buf: &[u8]) -> Vec<LogLine> {
    let mut out = Vec::new();
    for (ty, _, payload) in netlink::messages(buf) {
        if ty != (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET || payload.len() < 4 {
            continue;
        }
        let mut l = LogLine {
            family: payload[0],
            ..LogLine::default()
        };
        for (at, v) in netlink::attrs(&payload[4..]) {
            match at {
                NFULA_PACKET_HDR => {}
                NFULA_MARK => l.mark = be32(v),
                NFULA_TIMESTAMP => {
                    if let (Some(s), Some(us)) = (be64(v), v.get(8..).and_then(be64)) {
                        l.time = Some((s, us as u32));
                    }
                }
                NFULA_IFINDEX_INDEV => l.in_if = be32(v),
                NFULA_IFINDEX_OUTDEV => l.out_if = be32(v),
                NFULA_IFINDEX_PHYSINDEV => l.physin_if = be32(v),
                NFULA_IFINDEX_PHYSOUTDEV => l.physout_if = be32(v),
                NFULA_HWADDR => {
                    if let Some(n) = be16(v) {
                        let n = usize::from(n).min(8);
                        if let Some(a) = v.get(4..4 + n) {
                            l.mac = Some(
                                a.iter()
                                    .map(|b| format!("{b:02x}"))
                                    .collect::<Vec<_>>()
                                    .join(":"),
                            );
                        }
                    }
                }
                NFULA_PAYLOAD => decode_payload(&mut l, v),
                NFULA_PREFIX => {
                    let s = String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or(&[]))
                        .into_owned();
                    match parse_prefix(&s) {
                        Some((vmid, chain, level, verdict, origin)) => {
                            l.vmid = vmid;
                            l.chain = chain;
                            l.level = level;
                            l.verdict = verdict;
                            l.origin = origin;
                        }
                        None => l.raw_prefix = Some(s),
                    }
                }
                _ => {}
            }
        }
        out.push(l);
    }
    out
}

impl LogLine {
    /// Proxmox-style text: `VMID LEVEL CHAIN VERDICT: IN=.. OUT=.. SRC=..
    /// DST=.. ... PROTO=.. SPT=.. DPT=.. ORIGIN=..`, interface names given
    /// by `ifname`.
    pub fn render(&self, ifname: &dyn Fn(u32) -> String) -> String {
        let mut s = match &self.raw_prefix {
            Some(p) => format!("- - - {}:", p.trim_end()),
            None => format!(
                "{} {} {} {}:",
                self.vmid, self.level, self.chain, self.verdict
            ),
        };
        let name = |i: Option<u32>| i.map(ifname).unwrap_or_default();
        let _ = write!(s, " IN={} OUT={}", name(self.in_if), name(self.out_if));
        if self.physin_if.is_some() {
            let _ = write!(s, " PHYSIN={}", name(self.physin_if));
        }
        if self.physout_if.is_some() {
            let _ = write!(s, " PHYSOUT={}", name(self.physout_if));
        }
        if let Some(m) = &self.mac {
            let _ = write!(s, " MAC={m}");
        }
        if let (Some(a), Some(b)) = (self.src, self.dst) {
            let _ = write!(s, " SRC={a} DST={b}");
        }
        if let Some(n) = self.len {
            let _ = write!(s, " LEN={n}");
        }
        if let Some(n) = self.ttl {
            let _ = write!(s, " TTL={n}");
        }
        if let Some(p) = &self.proto {
            let _ = write!(s, " PROTO={p}");
        }
        if let Some(p) = self.spt {
            let _ = write!(s, " SPT={p}");
        }
        if let Some(p) = self.dpt {
            let _ = write!(s, " DPT={p}");
        }
        if let Some(x) = &self.extra {
            let _ = write!(s, " {x}");
        }
        if !self.origin.is_empty() {
            let _ = write!(s, " ORIGIN={}", self.origin);
        }
        s
    }
}

/// The group-bind and packet-mode requests for `group` (deliver each
/// packet at once, at most `copy` bytes of it).
pub fn config_messages(group: u16, copy: u32) -> Vec<Vec<u8>> {
    let flags = NLM_F_REQUEST | NLM_F_ACK;
    let msg = |seq, attrs: &[u8]| {
        netlink::nfnl_message(
            NFNL_SUBSYS_ULOG,
            NFULNL_MSG_CONFIG,
            flags,
            seq,
            0,
            group,
            attrs,
        )
    };
    let mut mode = copy.to_be_bytes().to_vec();
    mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
    vec![
        msg(1, &netlink::nla(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND])),
        msg(
            2,
            &[
                netlink::nla(NFULA_CFG_MODE, &mode),
                netlink::nla(NFULA_CFG_QTHRESH, &1u32.to_be_bytes()),
                netlink::nla(NFULA_CFG_TIMEOUT, &0u32.to_be_bytes()),
            ]
            .concat(),
        ),
    ]
}

/// A socket bound to an nflog group.
pub struct NflogReader {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl NflogReader {
    /// Bind `group` in network namespace `netns` (or the caller's). Fails
    /// with EBUSY when another listener (pvefw-logger, ulogd) has the group.
    pub fn bind(netns: Option<&str>, group: u16) -> std::io::Result<NflogReader> {
        use nix::sys::socket::{recv, send, MsgFlags};
        let fd = netlink::nfnl_socket(netns)?;
        netlink::set_recv_timeout(&fd, Duration::from_secs(2))?;
        let mut buf = vec![0u8; 1 << 16];
        for m in config_messages(group, 256) {
            send(fd.as_raw_fd(), &m, MsgFlags::empty()).map_err(std::io::Error::from)?;
            let n =
                recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(std::io::Error::from)?;
            for (ty, _, payload) in netlink::messages(&buf[..n]) {
                if ty == NLMSG_ERROR {
                    if let Some(code) = netlink::error_code(payload).filter(|c| *c != 0) {
                        return Err(std::io::Error::from_raw_os_error(-code));
                    }
                }
            }
        }
        netlink::set_recv_timeout(&fd, Duration::from_millis(500))?;
        Ok(NflogReader { fd, buf })
    }

    /// Wait (up to the socket's timeout) for logged packets.
    pub fn next_batch(&mut self) -> std::io::Result<Vec<LogLine>> {
        use nix::sys::socket::{recv, MsgFlags};
        match recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::empty()) {
            Ok(n) => Ok(decode(&self.buf[..n])),
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => Ok(Vec::new()),
            // The kernel dropped messages (our buffer overran): keep reading.
            Err(nix::errno::Errno::ENOBUFS) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Interface names by index, read in the namespace (`ip -o link`) and
/// refreshed when an unknown index shows up.
pub struct IfNames {
    netns: Option<String>,
    names: std::collections::HashMap<u32, String>,
}

impl IfNames {
    pub fn new(netns: Option<String>) -> IfNames {
        let mut n = IfNames {
            netns,
            names: Default::default(),
        };
        n.refresh();
        n
    }

    fn refresh(&mut self) {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = std::process::Command::new("ip");
                c.args(["netns", "exec", ns, "ip", "-o", "link"]);
                c
            }
            None => {
                let mut c = std::process::Command::new("ip");
                c.args(["-o", "link"]);
                c
            }
        };
        if let Ok(out) = cmd.output() {
            self.names = parse_ip_link(&String::from_utf8_lossy(&out.stdout));
        }
    }

    /// The name of a known index (`ifN` otherwise), without refreshing.
    pub fn known(&self, index: u32) -> String {
        self.names
            .get(&index)
            .cloned()
            .unwrap_or_else(|| format!("if{index}"))
    }

    pub fn name(&mut self, index: u32) -> String {
        if !self.names.contains_key(&index) {
            self.refresh();
        }
        self.names
            .get(&index)
            .cloned()
            .unwrap_or_else(|| format!("if{index}"))
    }
}

/// `ip -o link` lines: `3: veth0@if2: <...> ...` -> 3 -> veth0.
pub fn parse_ip_link(text: &str) -> std::collections::HashMap<u32, String> {
    text.lines()
        .filter_map(|l| {
            let (idx, rest) = l.split_once(": ")?;
            let name = rest.split(':').next()?.split('@').next()?.trim();
            Some((idx.trim().parse().ok()?, name.to_owned()))
        })
        .collect()
}

/// Read the group until `stop` says so, handing each line to `sink`
/// (the agent logs it through tracing). Runs in its own thread.
pub fn run(
    mut reader: NflogReader,
    netns: Option<String>,
    stop: &dyn Fn() -> bool,
    sink: &mut dyn FnMut(&LogLine, String),
) {
    let mut names = IfNames::new(netns);
    while !stop() {
        match reader.next_batch() {
            Ok(lines) => {
                for l in lines {
                    for i in [l.in_if, l.out_if, l.physin_if, l.physout_if]
                        .into_iter()
                        .flatten()
                    {
                        names.name(i);
                    }
                    let text = l.render(&|i| names.known(i));
                    sink(&l, text);
                }
            }
            Err(e) => {
                tracing::warn!("firewall log: reading the nflog group failed: {e}");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Log one line through tracing, with its fields (target `rampart::fwlog`).
pub fn trace(l: &LogLine, text: &str) {
    tracing::info!(
        target: "rampart::fwlog",
        vmid = %l.vmid,
        chain = %l.chain,
        verdict = %l.verdict,
        // RULE_ORIGIN= in the journal (cluster.fw:78).
        rule_origin = %l.origin,
        src = %l.src.map(|a| a.to_string()).unwrap_or_default(),
        dst = %l.dst.map(|a| a.to_string()).unwrap_or_default(),
        proto = %l.proto.clone().unwrap_or_default(),
        dpt = l.dpt.unwrap_or(0),
        "{text}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One NFULNL_MSG_PACKET datagram, laid out as the kernel sends it (a
    /// TCP SYN from 10.1.0.2:40000 to 10.1.0.1:111 logged on input of
    /// ifindex 2 by `:0:host-in:6: DROP: cluster.fw:78 `).
    fn captured() -> Vec<u8> {
        let mut ip = vec![
            0x45, 0x00, 0x00, 0x3c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 10, 1, 0, 2,
            10, 1, 0, 1,
        ];
        let tcp = [
            0x9c, 0x40, 0x00, 0x6f, 0, 0, 0, 1, 0, 0, 0, 0, 0xa0, 0x02, 0xfa, 0xf0, 0, 0, 0, 0,
        ];
        ip.extend_from_slice(&tcp);
        let attrs = [
            netlink::nla(NFULA_PACKET_HDR, &[0x08, 0x00, 1, 0]),
            netlink::nla(NFULA_PREFIX, b":0:host-in:6: DROP: cluster.fw:78 \0"),
            netlink::nla(NFULA_IFINDEX_INDEV, &2u32.to_be_bytes()),
            netlink::nla(
                NFULA_HWADDR,
                &[0, 6, 0, 0, 0xbc, 0x24, 0x11, 0xaa, 0xbb, 0xcc, 0, 0],
            ),
            netlink::nla(
                NFULA_TIMESTAMP,
                &[1_790_000_000u64.to_be_bytes(), 250u64.to_be_bytes()].concat(),
            ),
            netlink::nla(NFULA_PAYLOAD, &ip),
        ]
        .concat();
        netlink::nfnl_message(NFNL_SUBSYS_ULOG, NFULNL_MSG_PACKET, 0, 0, 2, 0, &attrs)
    }

    #[test]
    fn decodes_a_logged_tcp_syn() {
        let lines = decode(&captured());
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(
            (l.vmid.as_str(), l.chain.as_str(), l.level.as_str()),
            ("0", "host-in", "6")
        );
        assert_eq!(
            (l.verdict.as_str(), l.origin.as_str()),
            ("DROP", "cluster.fw:78")
        );
        assert_eq!(l.time, Some((1_790_000_000, 250)));
        assert_eq!(l.mac.as_deref(), Some("bc:24:11:aa:bb:cc"));
        let text = l.render(&|i| format!("eth{i}"));
        assert_eq!(
            text,
            "0 6 host-in DROP: IN=eth2 OUT= MAC=bc:24:11:aa:bb:cc SRC=10.1.0.2 DST=10.1.0.1 \
             LEN=60 TTL=64 PROTO=TCP SPT=40000 DPT=111 SYN ORIGIN=cluster.fw:78"
        );
    }

    #[test]
    fn decodes_ipv6_udp_and_foreign_prefixes() {
        let mut ip6 = vec![0x60, 0, 0, 0, 0, 8, 17, 63];
        ip6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        ip6.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        ip6.extend_from_slice(&[0x00, 0x35, 0x13, 0x88, 0, 8, 0, 0]);
        let attrs = [
            netlink::nla(NFULA_PREFIX, b"someone else \0"),
            netlink::nla(NFULA_IFINDEX_OUTDEV, &5u32.to_be_bytes()),
            netlink::nla(NFULA_PAYLOAD, &ip6),
        ]
        .concat();
        let m = netlink::nfnl_message(NFNL_SUBSYS_ULOG, NFULNL_MSG_PACKET, 0, 0, 10, 0, &attrs);
        let l = &decode(&m)[0];
        assert_eq!(l.raw_prefix.as_deref(), Some("someone else "));
        assert_eq!(
            l.render(&|i| format!("if{i}")),
            "- - - someone else: IN= OUT=if5 SRC=2001:db8::1 DST=2001:db8::2 LEN=48 TTL=63 PROTO=UDP SPT=53 DPT=5000"
        );
    }

    #[test]
    fn prefixes_with_and_without_origin() {
        assert_eq!(
            parse_prefix(":100:tap100i0-in:6: ACCEPT: cluster.fw:52 via 100.fw:23 "),
            Some((
                "100".into(),
                "tap100i0-in".into(),
                "6".into(),
                "ACCEPT".into(),
                "cluster.fw:52 via 100.fw:23".into()
            ))
        );
        assert_eq!(
            parse_prefix(":0:host-in:6: DROP: ").map(|p| p.4),
            Some(String::new())
        );
        assert_eq!(parse_prefix("DROP "), None);
        assert_eq!(parse_prefix(":x:c:6: DROP: "), None);
    }

    #[test]
    fn truncated_and_garbage_datagrams_do_not_panic() {
        let full = captured();
        for n in 0..full.len() {
            let _ = decode(&full[..n]);
        }
        let mut bad = full.clone();
        bad[16 + 4] = 0xff; // an attribute length past the end
        let _ = decode(&bad);
        assert!(decode(&[0u8; 3]).is_empty());
    }

    #[test]
    fn config_binds_the_group_in_packet_mode() {
        let m = config_messages(7, 256);
        let (ty, flags, payload) = netlink::messages(&m[0])[0];
        assert_eq!(ty, (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG);
        assert_eq!(flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(&payload[2..4], &7u16.to_be_bytes());
        assert_eq!(
            netlink::attrs(&payload[4..]),
            vec![(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND][..])]
        );
    }

    #[test]
    fn ip_link_names() {
        let m =
            parse_ip_link("1: lo: <LOOPBACK,UP> mtu 65536\n3: veth0@if2: <BROADCAST> mtu 1500\n");
        assert_eq!(m[&1], "lo");
        assert_eq!(m[&3], "veth0");
    }
}

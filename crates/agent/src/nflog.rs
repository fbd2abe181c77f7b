//! The firewall's log: packets the compiled ruleset logs through its nflog
//! group (prefix `:VMID:LEVEL:CHAIN: ACTION: ORIGIN `, pve-firewall's format
//! plus the rule's origin, the same from both backends; rate limited by the
//! site's `log_ratelimit`) become lines in pvefw-logger's format, so parsers
//! written for `/var/log/pve-firewall.log` (fail2ban filters, dashboards)
//! read them unchanged; the rule's origin comes last:
//!
//! ```text
//! 0 6 PVEFW-HOST-IN 07/Dec/2026:16:51:49 +0000 DROP: IN=veth0 MAC=.. SRC=10.1.0.2 DST=10.1.0.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=4660 DF PROTO=TCP SPT=40000 DPT=111 SEQ=1 ACK=0 WINDOW=64240 SYN ORIGIN=cluster.fw:78
//! ```
//!
//! `VMID LEVEL CHAIN TIME ZONE MSG`, then the interfaces and the packet as
//! pvefw-logger prints them. The time is UTC (`+0000`); pvefw-logger prints
//! the node's local time.
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
    /// From the prefix: guest id (0 for the host), Proxmox's chain name,
    /// syslog level, verdict (`DROP`, `policy DROP`), and the rule's origin
    /// (`cluster.fw:78`, `auto:policy_in DROP`).
    pub vmid: String,
    pub chain: String,
    pub level: String,
    pub verdict: String,
    pub origin: String,
    /// The prefix as the kernel gave it, when it is not in pve-firewall's
    /// format (another tool's).
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
    pub proto: Option<String>,
    pub spt: Option<u16>,
    pub dpt: Option<u16>,
    /// The packet as pvefw-logger prints it, from `SRC=` on (each field
    /// followed by a space).
    pub packet: String,
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

/// Split a pve-firewall prefix into (vmid, chain, level, verdict, origin).
pub fn parse_prefix(p: &str) -> Option<(String, String, String, String, String)> {
    let x = rampart_types::fwlog::parse(p)?;
    Some((
        x.vmid.to_string(),
        x.chain,
        x.level.to_string(),
        x.verdict,
        x.origin,
    ))
}

/// The transport header, as pvefw-logger prints it.
fn decode_l4(l: &mut LogLine, proto: u8, v6: bool, h: &[u8]) {
    let out = &mut l.packet;
    let short = |out: &mut String, name: &str| {
        let _ = write!(out, "PROTO={name} LEN={} INVALID=LEN ", h.len());
    };
    match proto {
        6 => {
            l.proto = Some("TCP".into());
            if h.len() < 20 {
                return short(out, "TCP");
            }
            let (sp, dp) = (be16(h).unwrap_or(0), be16(&h[2..]).unwrap_or(0));
            (l.spt, l.dpt) = (Some(sp), Some(dp));
            let _ = write!(
                out,
                "PROTO=TCP SPT={sp} DPT={dp} SEQ={} ACK={} WINDOW={} ",
                be32(&h[4..]).unwrap_or(0),
                be32(&h[8..]).unwrap_or(0),
                be16(&h[14..]).unwrap_or(0)
            );
            let f = h[13];
            for (bit, name) in [
                (0x20, "URG"),
                (0x10, "ACK"),
                (0x08, "PSH"),
                (0x04, "RST"),
                (0x02, "SYN"),
                (0x01, "FIN"),
            ] {
                if f & bit != 0 {
                    let _ = write!(out, "{name} ");
                }
            }
            if f & 0x20 != 0 {
                let _ = write!(out, "URGP={} ", be16(&h[18..]).unwrap_or(0));
            }
        }
        17 => {
            l.proto = Some("UDP".into());
            if h.len() < 8 {
                return short(out, "UDP");
            }
            let (sp, dp) = (be16(h).unwrap_or(0), be16(&h[2..]).unwrap_or(0));
            (l.spt, l.dpt) = (Some(sp), Some(dp));
            let _ = write!(
                out,
                "PROTO=UDP SPT={sp} DPT={dp} LEN={} ",
                be16(&h[4..]).unwrap_or(0)
            );
        }
        1 | 58 => {
            let name = if v6 { "ICMPV6" } else { "ICMP" };
            l.proto = Some(name.into());
            if h.len() < 8 {
                return short(out, name);
            }
            let (ty, code) = (h[0], h[1]);
            let _ = write!(out, "PROTO={name} TYPE={ty} CODE={code} ");
            let echo = if v6 {
                matches!(ty, 128 | 129)
            } else {
                matches!(ty, 0 | 8)
            };
            if echo {
                let _ = write!(
                    out,
                    "ID={} SEQ={} ",
                    be16(&h[4..]).unwrap_or(0),
                    be16(&h[6..]).unwrap_or(0)
                );
            } else if !v6 && ty == 3 && code == 4 {
                let _ = write!(out, "MTU={} ", be16(&h[6..]).unwrap_or(0));
            } else if v6 && ty == 2 {
                let _ = write!(out, "MTU={} ", be32(&h[4..]).unwrap_or(0));
            }
        }
        132 => {
            l.proto = Some("SCTP".into());
            if h.len() < 12 {
                return short(out, "SCTP");
            }
            let (sp, dp) = (be16(h).unwrap_or(0), be16(&h[2..]).unwrap_or(0));
            (l.spt, l.dpt) = (Some(sp), Some(dp));
            let _ = write!(out, "PROTO=SCTP SPT={sp} DPT={dp} ");
        }
        n => {
            let name = match n {
                2 => "IGMP".to_string(),
                50 => "ESP".to_string(),
                51 => "AH".to_string(),
                n => n.to_string(),
            };
            let _ = write!(out, "PROTO={name} ");
            l.proto = Some(name);
        }
    }
}

/// Fill the L3/L4 fields from the logged packet (starting at the IP header).
fn decode_payload(l: &mut LogLine, p: &[u8]) {
    let Some(&first) = p.first() else { return };
    match first >> 4 {
        4 => {
            if p.len() < 20 {
                let _ = write!(l.packet, "LEN={} INVALID=LEN ", p.len());
                return;
            }
            let ihl = usize::from(first & 15) * 4;
            if p.len() <= ihl {
                l.packet.push_str("INVALID=IHL ");
                return;
            }
            let src = IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15]));
            let dst = IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19]));
            (l.src, l.dst) = (Some(src), Some(dst));
            let off = be16(&p[6..]).unwrap_or(0);
            let _ = write!(
                l.packet,
                "SRC={src} DST={dst} LEN={} TOS=0x{:02X} PREC=0x{:02X} TTL={} ID={} ",
                be16(&p[2..]).unwrap_or(0),
                p[1] & 0x1e,
                p[1] & 0xe0,
                p[8],
                be16(&p[4..]).unwrap_or(0)
            );
            if off & 0x1fff != 0 {
                let _ = write!(l.packet, "FRAG={} ", off & 0x1fff);
            }
            if off & 0x4000 != 0 {
                l.packet.push_str("DF ");
            }
            if off & 0x2000 != 0 {
                l.packet.push_str("MF ");
            }
            if off & 0x1fff != 0 {
                // A later fragment: no transport header to read.
                let _ = write!(l.packet, "PROTO={} ", p[9]);
                l.proto = Some(p[9].to_string());
                return;
            }
            decode_l4(l, p[9], false, &p[ihl..]);
        }
        6 => {
            if p.len() < 40 {
                let _ = write!(l.packet, "LEN={} INVALID=LEN ", p.len());
                return;
            }
            let a: [u8; 16] = p[8..24].try_into().expect("16 bytes");
            let b: [u8; 16] = p[24..40].try_into().expect("16 bytes");
            let (src, dst) = (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)));
            (l.src, l.dst) = (Some(src), Some(dst));
            let flow = be32(p).unwrap_or(0);
            let _ = write!(
                l.packet,
                "SRC={src} DST={dst} LEN={} TC={} FLOWLBL={} HOPLIMIT={} ",
                be16(&p[4..]).unwrap_or(0),
                (flow >> 20) & 0xff,
                flow & 0xfffff,
                p[7]
            );
            // Extension headers: hop-by-hop, routing, destination options.
            let (mut nh, mut off) = (p[6], 40usize);
            while matches!(nh, 0 | 43 | 60) && off + 8 <= p.len() {
                match nh {
                    0 => l.packet.push_str("NEXTHDR=HOPOPTS "),
                    60 => l.packet.push_str("NEXTHDR=DSTOPTS "),
                    _ => {}
                }
                nh = p[off];
                off += (usize::from(p[off + 1]) + 1) * 8;
            }
            decode_l4(l, nh, true, p.get(off..).unwrap_or(&[]));
        }
        _ => {}
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
        let mut packet = None;
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
                NFULA_PAYLOAD => packet = Some(v),
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
        // Decoded last: the MAC comes before the packet in the line.
        if let Some(p) = packet {
            decode_payload(&mut l, p);
        }
        out.push(l);
    }
    out
}

impl LogLine {
    /// The line as pvefw-logger writes it: `VMID LEVEL CHAIN TIME ZONE MSG`
    /// (`0 6 PVEFW-HOST-IN 07/Dec/2026:16:51:49 +0000 DROP: `), the
    /// interfaces present (`IN=`, `OUT=`, `PHYSIN=`, `PHYSOUT=`, named by
    /// `ifname`), `MAC=`, the packet, `mark=` when set; then rampart's
    /// `ORIGIN=`. A prefix of another tool prints as `0 6 - TIME PREFIX`,
    /// as pvefw-logger prints it. `now` (seconds) stands in for a packet
    /// without a timestamp.
    pub fn render(&self, ifname: &dyn Fn(u32) -> String, now: u64) -> String {
        let time = pve_time(self.time.map_or(now, |t| t.0));
        let mut s = match &self.raw_prefix {
            Some(p) => format!("0 6 - {time} {p}"),
            None => format!(
                "{} {} {} {time} {}: ",
                self.vmid, self.level, self.chain, self.verdict
            ),
        };
        for (k, i) in [
            ("IN", self.in_if),
            ("OUT", self.out_if),
            ("PHYSIN", self.physin_if),
            ("PHYSOUT", self.physout_if),
        ] {
            if let Some(i) = i.filter(|i| *i > 0) {
                let _ = write!(s, "{k}={} ", ifname(i));
            }
        }
        if let Some(m) = &self.mac {
            let _ = write!(s, "MAC={m} ");
        }
        s.push_str(&self.packet);
        if let Some(m) = self.mark.filter(|m| *m != 0) {
            let _ = write!(s, "mark={m} ");
        }
        if !self.origin.is_empty() {
            let _ = write!(s, "ORIGIN={}", self.origin);
        }
        s.truncate(s.trim_end().len());
        s
    }
}

/// `07/Dec/2026:16:51:49 +0000` (pvefw-logger's `%d/%b/%Y:%H:%M:%S %z`),
/// in UTC.
pub fn pve_time(secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
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
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let text = l.render(&|i| names.known(i), now);
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
    /// ifindex 2 by `:0:6:PVEFW-HOST-IN: DROP: cluster.fw:78 `).
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
            netlink::nla(NFULA_PREFIX, b":0:6:PVEFW-HOST-IN: DROP: cluster.fw:78 \0"),
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
            ("0", "PVEFW-HOST-IN", "6")
        );
        assert_eq!(
            (l.verdict.as_str(), l.origin.as_str()),
            ("DROP", "cluster.fw:78")
        );
        assert_eq!(l.time, Some((1_790_000_000, 250)));
        assert_eq!(l.mac.as_deref(), Some("bc:24:11:aa:bb:cc"));
        let text = l.render(&|i| format!("eth{i}"), 0);
        assert_eq!(
            text,
            "0 6 PVEFW-HOST-IN 21/Sep/2026:14:13:20 +0000 DROP: IN=eth2 MAC=bc:24:11:aa:bb:cc \
             SRC=10.1.0.2 DST=10.1.0.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=4660 DF PROTO=TCP \
             SPT=40000 DPT=111 SEQ=1 ACK=0 WINDOW=64240 SYN ORIGIN=cluster.fw:78"
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
            l.render(&|i| format!("if{i}"), 86_400 * 366),
            "0 6 - 02/Jan/1971:00:00:00 +0000 someone else OUT=if5 SRC=2001:db8::1 DST=2001:db8::2 \
             LEN=8 TC=0 FLOWLBL=0 HOPLIMIT=63 PROTO=UDP SPT=53 DPT=5000 LEN=8"
        );
    }

    #[test]
    fn prefixes_with_and_without_origin() {
        assert_eq!(
            parse_prefix(":100:6:tap100i0-IN: ACCEPT: cluster.fw:52 via 100.fw:23 "),
            Some((
                "100".into(),
                "tap100i0-IN".into(),
                "6".into(),
                "ACCEPT".into(),
                "cluster.fw:52 via 100.fw:23".into()
            ))
        );
        assert_eq!(
            parse_prefix(":0:4:PVEFW-HOST-IN: policy DROP: ").map(|p| (p.3, p.4)),
            Some(("policy DROP".into(), String::new()))
        );
        assert_eq!(parse_prefix("DROP "), None);
        assert_eq!(parse_prefix(":x:6:c: DROP: "), None);
    }

    #[test]
    fn icmp_and_dates() {
        let mut l = LogLine::default();
        let ip = [
            0x45, 0, 0, 28, 0, 7, 0, 0, 64, 1, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2, 8, 0, 0, 0, 0, 9,
            0, 1,
        ];
        decode_payload(&mut l, &ip);
        assert_eq!(
            l.packet,
            "SRC=192.0.2.1 DST=192.0.2.2 LEN=28 TOS=0x00 PREC=0x00 TTL=64 ID=7 PROTO=ICMP TYPE=8 \
             CODE=0 ID=9 SEQ=1 "
        );
        assert_eq!(pve_time(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(pve_time(951_782_400), "29/Feb/2000:00:00:00 +0000");
        assert_eq!(pve_time(1_790_000_000), "21/Sep/2026:14:13:20 +0000");
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

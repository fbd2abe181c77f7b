//! The conformance case format: `packets.toml` (see
//! `conformance/README.md`) and the way outcomes are reported.
//!
//! Pure: text in, data out. The simulator (`rampart test-policy`) and the
//! kernel lab (`rampart test-policy --kernel`) both read cases through this
//! crate and report through [`Outcome`] and [`summary`], so their output is
//! the same line for line.

use rampart_types::{Action, Family};
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;

/// A zone a packet comes from or goes to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Zone {
    /// The node itself.
    Host,
    /// A machine on the node's bridge that is neither the node nor a guest
    /// (or, with a `source`/`dest` outside the bridge networks, further
    /// away, routed through the bridge).
    Outside,
    /// `vm100`, `ct200` (`nic: None`: the first NIC), `vm100i1` (`net1`).
    Guest {
        kind: GuestKind,
        id: u32,
        nic: Option<u32>,
    },
    /// Another node, by name.
    Node(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GuestKind {
    Vm,
    Ct,
}

impl Zone {
    /// `outside`, `host`, `vm100`, `vm100i1`, `ct200`, `ct200i0`; any other
    /// name is a node name.
    pub fn parse(s: &str) -> Zone {
        match s {
            "host" => return Zone::Host,
            "outside" => return Zone::Outside,
            _ => {}
        }
        for (prefix, kind) in [("vm", GuestKind::Vm), ("ct", GuestKind::Ct)] {
            if let Some(rest) = s.strip_prefix(prefix) {
                let (id, nic) = match rest.split_once('i') {
                    Some((id, nic)) => (id, Some(nic)),
                    None => (rest, None),
                };
                let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
                if digits(id) && nic.is_none_or(digits) {
                    if let (Ok(id), Ok(nic)) = (id.parse(), nic.map(str::parse).transpose()) {
                        return Zone::Guest { kind, id, nic };
                    }
                }
            }
        }
        Zone::Node(s.to_string())
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Host => f.write_str("host"),
            Zone::Outside => f.write_str("outside"),
            Zone::Guest { kind, id, nic } => {
                let k = match kind {
                    GuestKind::Vm => "vm",
                    GuestKind::Ct => "ct",
                };
                match nic {
                    Some(n) => write!(f, "{k}{id}i{n}"),
                    None => write!(f, "{k}{id}"),
                }
            }
            Zone::Node(n) => f.write_str(n),
        }
    }
}

/// The protocols a case packet can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketProto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
}

impl PacketProto {
    pub fn name(self) -> &'static str {
        match self {
            PacketProto::Tcp => "tcp",
            PacketProto::Udp => "udp",
            PacketProto::Icmp => "icmp",
            PacketProto::Icmpv6 => "icmpv6",
        }
    }
    pub fn has_ports(self) -> bool {
        matches!(self, PacketProto::Tcp | PacketProto::Udp)
    }
}

impl fmt::Display for PacketProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Connection state of the packet: `new` opens a connection;
/// `established` belongs to a connection that already exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum State {
    #[default]
    New,
    Established,
}

/// One `[[packet]]` with its defaults resolved (except addresses, which
/// depend on the site: see [`Packet::source`] / [`Packet::dest`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// 0-based position in the file.
    pub index: usize,
    pub name: Option<String>,
    pub from: Zone,
    pub to: Zone,
    pub proto: PacketProto,
    pub dport: Option<u16>,
    pub sport: Option<u16>,
    /// `echo-request` unless given (icmp/icmpv6 only).
    pub icmp_type: Option<String>,
    /// The ICMP code (icmp/icmpv6 only); 0 unless given.
    pub icmp_code: Option<u8>,
    pub source: Option<IpAddr>,
    pub dest: Option<IpAddr>,
    pub family: Family,
    pub state: State,
    /// `source_mac = "xx:xx:xx:xx:xx:xx"`: a guest sender uses this MAC
    /// instead of its NIC's (guest senders only).
    pub source_mac: Option<[u8; 6]>,
    pub verdict: Action,
}

impl Packet {
    /// The name to print: the packet's `name`, or `packet #N` (1-based).
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("packet #{}", self.index + 1),
        }
    }
    /// `echo-request` when no type is given.
    pub fn icmp_type_name(&self) -> &str {
        self.icmp_type.as_deref().unwrap_or("echo-request")
    }
}

/// A parsed `packets.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// `node = "hv1"`; `None`: the site's only node.
    pub node: Option<String>,
    pub packets: Vec<Packet>,
}

/// A `packets.toml` that cannot be read, with the place it went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseError {
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "packets.toml:{l}: {}", self.message),
            None => write!(f, "packets.toml: {}", self.message),
        }
    }
}

impl std::error::Error for CaseError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    node: Option<String>,
    #[serde(default)]
    packet: Vec<toml::Spanned<RawPacket>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPacket {
    name: Option<String>,
    from: String,
    to: String,
    proto: String,
    dport: Option<u16>,
    sport: Option<u16>,
    icmp_type: Option<String>,
    icmp_code: Option<u8>,
    source: Option<String>,
    dest: Option<String>,
    family: Option<String>,
    state: Option<String>,
    source_mac: Option<String>,
    verdict: String,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// Parse `packets.toml`. Every packet is checked: a known protocol and
/// verdict, ports only with tcp/udp (and `dport` required there), an ICMP
/// type only with icmp/icmpv6, addresses and family that agree.
pub fn parse(text: &str) -> Result<Case, CaseError> {
    let raw: RawCase = toml::from_str(text).map_err(|e| CaseError {
        line: e.span().map(|s| line_of(text, s.start)),
        message: e.message().to_string(),
    })?;
    let mut packets = Vec::new();
    for (index, sp) in raw.packet.into_iter().enumerate() {
        let line = Some(line_of(text, sp.span().start));
        let err = |message: String| CaseError { line, message };
        let p = sp.into_inner();
        let proto = match p.proto.to_ascii_lowercase().as_str() {
            "tcp" => PacketProto::Tcp,
            "udp" => PacketProto::Udp,
            "icmp" => PacketProto::Icmp,
            "icmpv6" | "ipv6-icmp" => PacketProto::Icmpv6,
            other => {
                return Err(err(format!(
                    "unknown proto `{other}` (expected tcp, udp, icmp or icmpv6)"
                )))
            }
        };
        let verdict: Action = p.verdict.parse().map_err(|_| {
            err(format!(
                "unknown verdict `{}` (expected ACCEPT, DROP or REJECT)",
                p.verdict
            ))
        })?;
        let addr = |what: &str, s: &Option<String>| -> Result<Option<IpAddr>, CaseError> {
            s.as_deref()
                .map(|s| {
                    s.parse::<IpAddr>()
                        .map_err(|_| err(format!("`{what}` is not an IP address: `{s}`")))
                })
                .transpose()
        };
        let source = addr("source", &p.source)?;
        let dest = addr("dest", &p.dest)?;
        let explicit = match p.family.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None => None,
            Some("ipv4") | Some("inet") | Some("4") => Some(Family::V4),
            Some("ipv6") | Some("inet6") | Some("6") => Some(Family::V6),
            Some(f) => return Err(err(format!("unknown family `{f}` (expected ipv4 or ipv6)"))),
        };
        let proto_family = match proto {
            PacketProto::Icmp => Some(Family::V4),
            PacketProto::Icmpv6 => Some(Family::V6),
            _ => None,
        };
        let mut family = None;
        for (what, f) in [
            ("family", explicit),
            ("source", source.as_ref().map(Family::of)),
            ("dest", dest.as_ref().map(Family::of)),
            ("proto", proto_family),
        ] {
            if let Some(f) = f {
                match family {
                    Some((w, g)) if g != f => {
                        return Err(err(format!("{what} is {f} but {w} is {g}")))
                    }
                    Some(_) => {}
                    None => family = Some((what, f)),
                }
            }
        }
        let family = family.map_or(Family::V4, |(_, f)| f);
        if proto.has_ports() {
            if p.dport.is_none() {
                return Err(err(format!("a {proto} packet needs a `dport`")));
            }
            if p.icmp_type.is_some() {
                return Err(err(format!("`icmp_type` on a {proto} packet")));
            }
            if p.icmp_code.is_some() {
                return Err(err(format!("`icmp_code` on a {proto} packet")));
            }
        } else if p.dport.is_some() || p.sport.is_some() {
            return Err(err(format!("ports on a {proto} packet")));
        }
        let state = match p.state.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("new") => State::New,
            Some("established") => State::Established,
            Some(s) => {
                return Err(err(format!(
                    "unknown state `{s}` (expected new or established)"
                )))
            }
        };
        let source_mac = match &p.source_mac {
            None => None,
            Some(m) => Some(parse_mac(m).ok_or_else(|| {
                err(format!(
                    "`source_mac` is not a MAC address (xx:xx:xx:xx:xx:xx): `{m}`"
                ))
            })?),
        };
        let from = Zone::parse(&p.from);
        if source_mac.is_some() && !matches!(from, Zone::Guest { .. }) {
            return Err(err(format!(
                "`source_mac` on a packet from `{from}`: only guest senders can have one"
            )));
        }
        packets.push(Packet {
            index,
            name: p.name,
            from,
            to: Zone::parse(&p.to),
            proto,
            dport: p.dport,
            sport: p.sport,
            icmp_type: p.icmp_type.map(|t| t.to_ascii_lowercase()),
            icmp_code: p.icmp_code,
            source,
            dest,
            family,
            state,
            source_mac,
            verdict,
        });
    }
    Ok(Case {
        node: raw.node,
        packets,
    })
}

/// `0e:00:00:00:64:01` (or with `-`) -> bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut m = [0u8; 6];
    for (b, p) in m.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    Some(m)
}

/// What one packet of one case got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The case directory as given.
    pub case: String,
    /// [`Packet::label`].
    pub packet: String,
    pub expected: Action,
    /// The verdict, or why none could be had (a probe that could not run).
    pub got: Result<Action, String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.got.as_ref().is_ok_and(|g| *g == self.expected)
    }
}

impl fmt::Display for Outcome {
    /// `FAIL guest-basics: an explicit IN DROP: expected DROP, got ACCEPT`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = if self.passed() { "ok" } else { "FAIL" };
        match &self.got {
            Ok(g) => write!(
                f,
                "{status} {}: {}: expected {}, got {g}",
                self.case, self.packet, self.expected
            ),
            Err(e) => write!(
                f,
                "{status} {}: {}: expected {}, got error: {e}",
                self.case, self.packet, self.expected
            ),
        }
    }
}

/// The report of a run: one line per failing packet, then
/// `N passed, M failed`.
pub fn summary(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for o in outcomes.iter().filter(|o| !o.passed()) {
        out.push_str(&o.to_string());
        out.push('\n');
    }
    let passed = outcomes.iter().filter(|o| o.passed()).count();
    out.push_str(&format!(
        "{passed} passed, {} failed\n",
        outcomes.len() - passed
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones() {
        assert_eq!(Zone::parse("host"), Zone::Host);
        assert_eq!(Zone::parse("outside"), Zone::Outside);
        assert_eq!(
            Zone::parse("vm100"),
            Zone::Guest {
                kind: GuestKind::Vm,
                id: 100,
                nic: None
            }
        );
        assert_eq!(
            Zone::parse("ct200i1"),
            Zone::Guest {
                kind: GuestKind::Ct,
                id: 200,
                nic: Some(1)
            }
        );
        assert_eq!(Zone::parse("vmhost"), Zone::Node("vmhost".into()));
        assert_eq!(Zone::parse("vm1i"), Zone::Node("vm1i".into()));
        for z in ["host", "outside", "vm100", "vm100i2", "ct7", "hv2"] {
            assert_eq!(Zone::parse(z).to_string(), z);
        }
    }

    #[test]
    fn shared_examples_parse() {
        let text = r#"
node = "hv1"

[[packet]]
name = "ssh"
from = "outside"
to = "vm100"
source = "192.0.2.50"
proto = "tcp"
dport = 22
verdict = "DROP"

[[packet]]
from = "outside"
to = "host"
source = "2001:db8:1::77"
proto = "icmpv6"
verdict = "accept"
"#;
        let c = parse(text).unwrap();
        assert_eq!(c.node.as_deref(), Some("hv1"));
        assert_eq!(c.packets.len(), 2);
        let p = &c.packets[0];
        assert_eq!(
            (p.proto, p.dport, p.family, p.verdict),
            (PacketProto::Tcp, Some(22), Family::V4, Action::Drop)
        );
        let q = &c.packets[1];
        assert_eq!(
            (q.family, q.verdict, q.label()),
            (Family::V6, Action::Accept, "packet #2".to_string())
        );
        assert_eq!(q.icmp_type_name(), "echo-request");
    }

    #[test]
    fn source_mac() {
        let base = "[[packet]]\nto = \"outside\"\nsource = \"192.0.2.50\"\nproto = \"icmp\"\nverdict = \"DROP\"\n";
        let c = parse(&format!(
            "{base}from = \"vm100\"\nsource_mac = \"0e:00:00:00:64:ff\"\n"
        ))
        .unwrap();
        assert_eq!(c.packets[0].source_mac, Some([0x0e, 0, 0, 0, 0x64, 0xff]));
        let e = parse(&format!(
            "{base}from = \"vm100\"\nsource_mac = \"0e:00:00\"\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("not a MAC"), "{e}");
        let e = parse(&format!(
            "{base}from = \"host\"\nsource_mac = \"0e:00:00:00:64:ff\"\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("only guest senders"), "{e}");
    }

    #[test]
    fn icmp_code() {
        let base = "[[packet]]\nfrom = \"outside\"\nto = \"host\"\nverdict = \"DROP\"\n";
        let c = parse(&format!(
            "{base}proto = \"icmp\"\nicmp_type = \"destination-unreachable\"\nicmp_code = 1\n"
        ))
        .unwrap();
        assert_eq!(c.packets[0].icmp_code, Some(1));
        let e = parse(&format!(
            "{base}proto = \"tcp\"\ndport = 1\nicmp_code = 1\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("`icmp_code` on a tcp"), "{e}");
        assert!(parse(&format!("{base}proto = \"icmp\"\nicmp_code = 256\n")).is_err());
    }

    #[test]
    fn family_conflicts_are_errors_with_line() {
        let text = "[[packet]]\nfrom = \"outside\"\nto = \"host\"\nsource = \"2001:db8::1\"\nproto = \"icmp\"\nverdict = \"DROP\"\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(
            e.message.contains("proto is ipv4 but source is ipv6"),
            "{e}"
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let base = "[[packet]]\nfrom = \"outside\"\nto = \"host\"\n";
        for (extra, needle) in [
            ("proto = \"tcp\"\nverdict = \"DROP\"\n", "needs a `dport`"),
            (
                "proto = \"icmp\"\ndport = 3\nverdict = \"DROP\"\n",
                "ports on a icmp",
            ),
            (
                "proto = \"sctp\"\ndport = 3\nverdict = \"DROP\"\n",
                "unknown proto",
            ),
            (
                "proto = \"tcp\"\ndport = 3\nverdict = \"MAYBE\"\n",
                "unknown verdict",
            ),
            (
                "proto = \"tcp\"\ndport = 3\nverdict = \"DROP\"\ncolour = 1\n",
                "unknown field",
            ),
            ("proto = \"tcp\"\ndport = 70000\nverdict = \"DROP\"\n", ""),
        ] {
            let e = parse(&format!("{base}{extra}")).unwrap_err();
            assert!(e.message.contains(needle), "{e}");
            assert!(e.line.is_some());
        }
    }

    #[test]
    fn summary_lists_failures_then_counts() {
        let o = |got| Outcome {
            case: "c".into(),
            packet: "p".into(),
            expected: Action::Drop,
            got,
        };
        let s = summary(&[
            o(Ok(Action::Drop)),
            o(Ok(Action::Accept)),
            o(Err("no route".into())),
        ]);
        assert_eq!(
            s,
            "FAIL c: p: expected DROP, got ACCEPT\nFAIL c: p: expected DROP, got error: no route\n1 passed, 2 failed\n"
        );
    }
}

//! The WireGuard tables of `site.toml`.
//!
//! ```toml
//! [[node]]
//! name = "hv1"
//! endpoint = "198.51.100.10"          # public address (port: the network's listen_port)
//!
//! [[wireguard]]
//! name = "mgmt"
//! interface = "wg0"
//! pool = ["10.8.0.0/24"]
//! listen_port = 51820
//! topology = "hub"                     # mesh | hub | partial
//! gateways = ["fw"]
//!
//! [[wireguard.member]]
//! name = "fw"
//! guest = 100
//! endpoint = "198.51.100.11:51820"
//! public_key = "..."
//! address = ["10.8.0.1"]
//! routes = ["198.51.100.10/32", "10.0.0.0/24"]
//!
//! [[client]]
//! network = "mgmt"
//! name = "laptop"
//! public_key = "..."
//! ```
//!
//! See `docs/wireguard.md` for every field. Other top-level keys belong to
//! the site parser and are ignored here; inside `[[wireguard]]` and
//! `[[client]]` unknown keys are errors.

use crate::keys::{decode_key, PublicKey};
use ipnet::IpNet;
pub use rampart_types::names::{
    NodeName, ParticipantName, WgClientName, WgIfaceName, WgNetworkName, WgPeerName,
};
use rampart_types::{codes, Diagnostic, Diagnostics, FileId, Span};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use toml::Spanned;

/// The WireGuard view of a site.
#[derive(Clone, Debug, PartialEq)]
pub struct WgSite {
    pub nodes: Vec<NodeInfo>,
    pub networks: Vec<Network>,
    pub clients: Vec<Client>,
}

impl WgSite {
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.name == name)
    }
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }
}

/// What a `[[node]]` tells WireGuard: its public endpoint and the prefixes
/// that must never be swallowed by AllowedIPs (its bridges' networks).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    pub name: NodeName,
    pub endpoint: Option<Endpoint>,
    /// Networks of the node's own addresses (management / LAN).
    pub prefixes: Vec<IpNet>,
    pub span: Span,
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`. A missing port means the
/// network's listen port of that member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: Option<u16>,
    pub span: Span,
}

impl Endpoint {
    /// Parse an endpoint text. Errors say what is wrong.
    pub fn parse(text: &str, span: Span) -> Result<Endpoint, String> {
        if text.is_empty() {
            return Err("empty endpoint".into());
        }
        if text.chars().any(|c| c.is_whitespace()) {
            return Err("whitespace in endpoint".into());
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let Some(close) = rest.find(']') else {
                return Err("`[` without a closing `]`".into());
            };
            let host = &rest[..close];
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("`{host}` inside brackets is not an IPv6 address"));
            }
            let after = &rest[close + 1..];
            if after.is_empty() {
                (host, None)
            } else if let Some(p) = after.strip_prefix(':') {
                (host, Some(p))
            } else {
                return Err(format!("unexpected `{after}` after `]`"));
            }
        } else if text.contains(']') {
            return Err("`]` without an opening `[`".into());
        } else if text.matches(':').count() > 1 {
            if text.parse::<std::net::Ipv6Addr>().is_ok() {
                (text, None)
            } else {
                return Err(
                    "an IPv6 endpoint with a port needs brackets: `[2001:db8::1]:51820`".into(),
                );
            }
        } else if let Some((h, p)) = text.split_once(':') {
            (h, Some(p))
        } else {
            (text, None)
        };
        if host.is_empty() {
            return Err("missing host".into());
        }
        if !host.contains(':') {
            // IPv4 or a DNS name.
            let looks_v4 = host.chars().all(|c| c.is_ascii_digit() || c == '.');
            if looks_v4 && host.parse::<std::net::Ipv4Addr>().is_err() {
                return Err(format!("`{host}` is not a valid IPv4 address"));
            }
            if !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            {
                return Err(format!("`{host}` is neither an address nor a host name"));
            }
        }
        let port = match port {
            None => None,
            Some("") => return Err("missing port after `:`".into()),
            Some(p) => match p.parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => Some(n as u16),
                _ => return Err(format!("`{p}` is not a port (1-65535)")),
            },
        };
        Ok(Endpoint {
            host: host.to_string(),
            port,
            span,
        })
    }

    /// `host:port` as WireGuard wants it (IPv6 in brackets).
    pub fn render(&self, default_port: u16) -> String {
        let port = self.port.unwrap_or(default_port);
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Every member peers with every member.
    Mesh,
    /// Members peer only with the gateways, which forward.
    Hub,
    /// Groups mesh internally; each group has one gateway; gateways mesh.
    Partial {
        /// Group labels (only ever compared) to their members.
        groups: BTreeMap<String, Vec<ParticipantName>>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub name: WgNetworkName,
    pub interface: WgIfaceName,
    pub pool: Vec<(IpNet, Span)>,
    pub listen_port: u16,
    pub mtu: Option<u16>,
    pub topology: Topology,
    pub gateways: Vec<ParticipantName>,
    pub members: Vec<Member>,
    /// Keepalive every member sends to its peers (default none).
    pub persistent_keepalive: Option<u16>,
    /// A preshared key for every pair of members that peer (files in the
    /// key store; road warriors' pairs excepted).
    pub preshared_keys: bool,
    /// `preshared_pairs = [["a", "b"], ...]`: preshared keys for these
    /// pairs of members only (checked: both members, and they peer).
    pub preshared_pairs: Vec<(String, String, Span)>,
    /// Routing table for a `/0` in AllowedIPs (none: no default route at all).
    pub table: Option<u32>,
    pub span: Span,
    pub interface_span: Span,
    pub listen_port_span: Span,
    pub mtu_span: Option<Span>,
}

impl Network {
    pub fn has_ipv6(&self) -> bool {
        self.pool.iter().any(|(p, _)| matches!(p, IpNet::V6(_)))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// A node's name, or a guest member's own.
    pub name: ParticipantName,
    pub public_key: PublicKey,
    /// Explicit tunnel addresses (one per pool family at most).
    pub addresses: Vec<(IpAddr, Span)>,
    /// Overrides the node's endpoint (required for a guest member that has one).
    pub endpoint: Option<Endpoint>,
    /// Subnets this member routes (a gateway's LAN, a management /32).
    pub routes: Vec<(IpNet, Span)>,
    pub listen_port: Option<u16>,
    pub listen_port_span: Option<Span>,
    /// A guest (firewall/gateway VM) rather than a node.
    pub guest: Option<u32>,
    pub persistent_keepalive: Option<u16>,
    pub span: Span,
    pub key_span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Client {
    pub network: WgNetworkName,
    pub name: WgClientName,
    pub public_key: PublicKey,
    pub addresses: Vec<(IpAddr, Span)>,
    /// Default 25.
    pub persistent_keepalive: u16,
    /// Extra destinations the client sends through its gateway (e.g. a
    /// hypervisor's management /32, or `0.0.0.0/0`).
    pub routes: Vec<(IpNet, Span)>,
    /// Members it connects to; default: the network's gateways.
    pub via: Vec<(ParticipantName, Span)>,
    pub span: Span,
    pub key_span: Span,
}

// ---------------------------------------------------------------- raw serde

#[derive(Deserialize)]
struct RawSite {
    #[serde(default)]
    node: Vec<RawNode>,
    #[serde(default)]
    wireguard: Vec<Spanned<RawNetwork>>,
    #[serde(default)]
    client: Vec<Spanned<RawClient>>,
}

#[derive(Deserialize)]
struct RawNode {
    name: Spanned<String>,
    #[serde(default)]
    endpoint: Option<Spanned<String>>,
    #[serde(default)]
    bridges: Option<toml::Value>,
    #[serde(default)]
    addresses: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    name: Spanned<String>,
    interface: Spanned<String>,
    pool: Spanned<Vec<Spanned<String>>>,
    listen_port: Spanned<i64>,
    #[serde(default)]
    mtu: Option<Spanned<i64>>,
    #[serde(default)]
    topology: Option<Spanned<String>>,
    #[serde(default)]
    gateways: Vec<Spanned<String>>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<Spanned<String>>>,
    #[serde(default)]
    persistent_keepalive: Option<Spanned<i64>>,
    #[serde(default)]
    preshared_keys: bool,
    #[serde(default)]
    preshared_pairs: Vec<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    table: Option<Spanned<i64>>,
    #[serde(default, rename = "member")]
    members: Vec<Spanned<RawMember>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    name: Spanned<String>,
    public_key: Spanned<String>,
    #[serde(default)]
    address: Vec<Spanned<String>>,
    #[serde(default)]
    endpoint: Option<Spanned<String>>,
    #[serde(default)]
    routes: Vec<Spanned<String>>,
    #[serde(default)]
    listen_port: Option<Spanned<i64>>,
    #[serde(default)]
    guest: Option<Spanned<i64>>,
    #[serde(default)]
    persistent_keepalive: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    network: Spanned<String>,
    name: Spanned<String>,
    public_key: Spanned<String>,
    #[serde(default)]
    address: Vec<Spanned<String>>,
    #[serde(default)]
    persistent_keepalive: Option<Spanned<i64>>,
    #[serde(default)]
    routes: Vec<Spanned<String>>,
    #[serde(default)]
    via: Vec<Spanned<String>>,
}

// ---------------------------------------------------------------- positions

/// Byte offsets to 1-based line and character column.
pub(crate) struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
    file: FileId,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(file: FileId, text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { text, starts, file }
    }
    pub(crate) fn span(&self, range: std::ops::Range<usize>) -> Span {
        let start = range.start.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= start);
        let line_start = self.starts[line - 1];
        let col = self.text[line_start..start].chars().count() + 1;
        let end = range.end.clamp(start, self.text.len());
        let len = self.text[start..end]
            .chars()
            .take_while(|&c| c != '\n')
            .count();
        Span::new(self.file, line as u32, col as u32, len as u32)
    }
    fn of<T>(&self, s: &Spanned<T>) -> Span {
        self.span(s.span())
    }
}

// ---------------------------------------------------------------- checks

const PRIVATE_KEY_NAMES: &[&str] = &["privatekey", "presharedkey", "secretkey"];

/// Find private keys anywhere in a site file: a `private_key = ...`
/// (`PrivateKey`, `preshared_key`, ...) entry, or a value that is a
/// WireGuard key under a key name containing `private`. E0602 at the key.
pub fn scan_private_keys(file: FileId, text: &str) -> Diagnostics {
    let mut d = Diagnostics::new();
    for (i, line) in text.split('\n').enumerate() {
        let trimmed = line.trim_start();
        let lead = line.chars().count() - trimmed.chars().count();
        let Some(sep) = trimmed.find(['=', ':']) else {
            continue;
        };
        let key = trimmed[..sep].trim().trim_matches('"');
        let norm: String = key
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if key.starts_with('#') || norm.is_empty() {
            continue;
        }
        let value = trimmed[sep + 1..]
            .trim()
            .trim_matches('"')
            .trim_matches('\'');
        let named = PRIVATE_KEY_NAMES.contains(&norm.as_str());
        let key_looking = decode_key(value).is_ok()
            && ["private", "psk", "secret"]
                .iter()
                .any(|w| norm.contains(w));
        if named || key_looking {
            d.push(
                Diagnostic::new(codes::PRIVATE_KEY_IN_SITE, format!("private key `{key}` in the site files"))
                    .at(Span::new(file, i as u32 + 1, lead as u32 + 1, key.chars().count() as u32))
                    .label("secrets never belong in the site")
                    .hint("keys live in each node's key store; put only `public_key` in site.toml (`rampart wg enroll` prints it)"),
            );
        }
    }
    d
}

/// `preshared_pairs`: each entry two different members of the network
/// (road warriors carry no preshared key: their config would have to hold
/// it). Whether they peer is checked with the topology (plan).
fn preshared_pairs(
    rn: &RawNetwork,
    members: &[Member],
    l: &Lines,
    d: &mut Diagnostics,
) -> Vec<(String, String, Span)> {
    let mut out: Vec<(String, String, Span)> = Vec::new();
    for pair in &rn.preshared_pairs {
        let span = l.of(pair);
        let names = pair.get_ref();
        if names.len() != 2 {
            d.push(
                Diagnostic::new(
                    codes::BAD_PRESHARED_PAIR,
                    format!(
                        "a preshared pair names two members, this one {}",
                        names.len()
                    ),
                )
                .at(span)
                .hint("write each pair as `[\"a\", \"b\"]`"),
            );
            continue;
        }
        let (a, b) = (&names[0], &names[1]);
        let mut ok = true;
        for n in [a, b] {
            if !members.iter().any(|m| m.name.as_str() == n.get_ref()) {
                ok = false;
                d.push(
                    Diagnostic::new(
                        codes::BAD_PRESHARED_PAIR,
                        format!(
                            "`{}` is not a member of network `{}`",
                            n.get_ref(),
                            rn.name.get_ref()
                        ),
                    )
                    .at(l.of(n))
                    .note("preshared keys are for pairs of members; road warriors (`[[client]]`) get none"),
                );
            }
        }
        if ok && a.get_ref() == b.get_ref() {
            ok = false;
            d.push(
                Diagnostic::new(
                    codes::BAD_PRESHARED_PAIR,
                    format!("`{}` paired with itself", a.get_ref()),
                )
                .at(span),
            );
        }
        if !ok {
            continue;
        }
        let (x, y) = if a.get_ref() <= b.get_ref() {
            (a.get_ref(), b.get_ref())
        } else {
            (b.get_ref(), a.get_ref())
        };
        if out.iter().any(|(p, q, _)| p == x && q == y) {
            d.push(
                Diagnostic::new(
                    codes::BAD_PRESHARED_PAIR,
                    format!("the pair ({x}, {y}) is listed twice"),
                )
                .at(span),
            );
            continue;
        }
        out.push((x.clone(), y.clone(), span));
    }
    out
}

/// The names a list gives that are participant names; any other is no
/// member, and reported as that by the caller.
fn participants(v: &[Spanned<String>]) -> Vec<ParticipantName> {
    v.iter()
        .filter_map(|x| ParticipantName::parse(x.get_ref()).ok())
        .collect()
}

fn parse_key(s: &Spanned<String>, l: &Lines, d: &mut Diagnostics) -> Option<PublicKey> {
    match decode_key(s.get_ref()) {
        Ok(k) => Some(PublicKey(k)),
        Err(e) => {
            d.push(
                Diagnostic::new(codes::MALFORMED_KEY, format!("malformed public key: {e}"))
                    .at(l.of(s))
                    .label("not a WireGuard key")
                    .hint(
                        "a key is 44 characters of base64 ending in `=`, as `wg pubkey` prints it",
                    ),
            );
            None
        }
    }
}

fn parse_net(s: &Spanned<String>, l: &Lines, d: &mut Diagnostics) -> Option<IpNet> {
    let t = s.get_ref();
    let parsed = t
        .parse::<IpNet>()
        .or_else(|_| t.parse::<IpAddr>().map(IpNet::from));
    match parsed {
        Ok(n) => {
            if n.trunc() != n {
                d.push(
                    Diagnostic::new(codes::HOST_BITS_SET, format!("host bits set in `{t}`"))
                        .at(l.of(s))
                        .hint(format!("did you mean `{}`?", n.trunc())),
                );
            }
            Some(n.trunc())
        }
        Err(_) => {
            d.push(
                Diagnostic::new(codes::INVALID_ADDRESS, format!("invalid prefix `{t}`"))
                    .at(l.of(s)),
            );
            None
        }
    }
}

fn parse_addr(s: &Spanned<String>, l: &Lines, d: &mut Diagnostics) -> Option<(IpAddr, Span)> {
    match s.get_ref().parse::<IpAddr>() {
        Ok(a) => Some((a, l.of(s))),
        Err(_) => {
            d.push(
                Diagnostic::new(codes::INVALID_ADDRESS, format!("invalid tunnel address `{}`", s.get_ref()))
                    .at(l.of(s))
                    .hint("a tunnel address is a plain address (`10.8.0.1`); the prefix length comes from the pool"),
            );
            None
        }
    }
}

fn keepalive(s: &Spanned<i64>, l: &Lines, d: &mut Diagnostics) -> Option<u16> {
    let v = *s.get_ref();
    if (1..=65535).contains(&v) {
        Some(v as u16)
    } else {
        d.push(
            Diagnostic::new(codes::KEEPALIVE_RANGE, format!("persistent_keepalive {v} is outside 1-65535"))
                .at(l.of(s))
                .hint("seconds between keepalives; 25 is the usual value behind NAT; leave it out to disable"),
        );
        None
    }
}

fn port(s: &Spanned<i64>, l: &Lines, d: &mut Diagnostics) -> Option<u16> {
    let v = *s.get_ref();
    if (1..=65535).contains(&v) {
        Some(v as u16)
    } else {
        d.push(
            Diagnostic::new(
                codes::PORT_OUT_OF_RANGE,
                format!("listen_port {v} is outside 1-65535"),
            )
            .at(l.of(s)),
        );
        None
    }
}

fn endpoint(s: &Spanned<String>, l: &Lines, d: &mut Diagnostics) -> Option<Endpoint> {
    match Endpoint::parse(s.get_ref(), l.of(s)) {
        Ok(e) => Some(e),
        Err(why) => {
            d.push(
                Diagnostic::new(
                    codes::MALFORMED_ENDPOINT,
                    format!("malformed endpoint `{}`: {why}", s.get_ref()),
                )
                .at(l.of(s))
                .hint("write `host`, `host:port`, `[2001:db8::1]` or `[2001:db8::1]:51820`"),
            );
            None
        }
    }
}

fn node_prefixes(v: &Option<toml::Value>, out: &mut Vec<IpNet>) {
    fn walk(v: &toml::Value, out: &mut Vec<IpNet>) {
        match v {
            toml::Value::String(s) => {
                if let Ok(n) = s.parse::<IpNet>() {
                    out.push(n.trunc());
                } else if let Ok(a) = s.parse::<IpAddr>() {
                    out.push(IpNet::from(a));
                }
            }
            toml::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            toml::Value::Table(t) => t.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    if let Some(v) = v {
        walk(v, out);
    }
}

/// Parse the WireGuard view of `site.toml`. Returns `None` only when the
/// TOML itself cannot be read; field-level problems are diagnostics and the
/// offending item is left out.
pub fn parse_site_toml(file: FileId, text: &str) -> (Option<WgSite>, Diagnostics) {
    let l = Lines::new(file, text);
    let mut d = Diagnostics::new();
    let raw: RawSite = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let msg = e.message().to_string();
            let code = if msg.contains("unknown field") {
                codes::UNKNOWN_OPTION
            } else {
                codes::SITE_TOML
            };
            let mut diag = Diagnostic::new(code, format!("site.toml: {msg}"));
            if let Some(r) = e.span() {
                diag = diag.at(l.span(r));
            }
            d.push(diag);
            return (None, d);
        }
    };

    let mut nodes = Vec::new();
    for n in &raw.node {
        let mut prefixes = Vec::new();
        node_prefixes(&n.bridges, &mut prefixes);
        node_prefixes(&n.addresses, &mut prefixes);
        // A bad node name is the site parser's error (E0408 at the line);
        // here the node is only left out.
        let Ok(name) = NodeName::parse(n.name.get_ref()) else {
            continue;
        };
        nodes.push(NodeInfo {
            name,
            endpoint: n.endpoint.as_ref().and_then(|e| endpoint(e, &l, &mut d)),
            prefixes,
            span: l.of(&n.name),
        });
    }

    let mut networks = Vec::new();
    // Networks left out for a bad interface name (already reported).
    let mut refused: Vec<WgNetworkName> = Vec::new();
    for rn in &raw.wireguard {
        let span = l.of(rn);
        let rn = rn.get_ref();
        let iface = rn.interface.get_ref();
        let net_name = match WgNetworkName::parse(rn.name.get_ref()) {
            Ok(n) => n,
            Err(e) => {
                // The network's name names key store files: refused, the network left out.
                d.push(e.diagnostic(l.of(&rn.name)));
                continue;
            }
        };
        let interface = WgIfaceName::parse(iface).ok();
        if interface.is_none() {
            d.push(
                Diagnostic::new(codes::BAD_INTERFACE_NAME, format!("invalid interface name `{}`", rampart_types::escape::printable(iface)))
                    .at(l.of(&rn.interface))
                    .label("must match [a-zA-Z0-9_=+.-]{1,15}")
                    .hint("the kernel limits interface names to 15 characters of letters, digits and `_=+.-`"),
            );
        }
        let pool: Vec<(IpNet, Span)> = rn
            .pool
            .get_ref()
            .iter()
            .filter_map(|p| parse_net(p, &l, &mut d).map(|n| (n, l.of(p))))
            .collect();
        if rn.pool.get_ref().is_empty() {
            d.push(
                Diagnostic::new(codes::BAD_OPTION_VALUE, "empty address pool").at(l.of(&rn.pool)),
            );
        }
        let listen_port = port(&rn.listen_port, &l, &mut d).unwrap_or(0);
        let mtu = match &rn.mtu {
            None => None,
            Some(m) => {
                let v = *m.get_ref();
                if !(576..=65535).contains(&v) {
                    d.push(
                        Diagnostic::new(
                            codes::BAD_OPTION_VALUE,
                            format!("mtu {v} is outside 576-65535"),
                        )
                        .at(l.of(m)),
                    );
                    None
                } else {
                    Some(v as u16)
                }
            }
        };
        let topo_name = rn
            .topology
            .as_ref()
            .map(|t| t.get_ref().as_str())
            .unwrap_or("mesh");
        let topology = match topo_name {
            "mesh" => Topology::Mesh,
            "hub" => Topology::Hub,
            "partial" => Topology::Partial {
                groups: rn
                    .groups
                    .iter()
                    .map(|(g, ms)| (g.clone(), participants(ms)))
                    .collect(),
            },
            other => {
                d.push(
                    Diagnostic::new(
                        codes::BAD_OPTION_VALUE,
                        format!("unknown topology `{other}`"),
                    )
                    .at(l.of(rn.topology.as_ref().unwrap()))
                    .hint("one of `mesh`, `hub`, `partial`"),
                );
                Topology::Mesh
            }
        };
        let needs_gw = !matches!(topology, Topology::Mesh);
        if needs_gw && rn.gateways.is_empty() {
            d.push(
                Diagnostic::new(
                    codes::BAD_OPTION_VALUE,
                    format!("topology `{topo_name}` needs `gateways`"),
                )
                .at(rn.topology.as_ref().map(|t| l.of(t)).unwrap_or(span)),
            );
        }
        if !matches!(topology, Topology::Partial { .. }) && !rn.groups.is_empty() {
            d.push(
                Diagnostic::new(
                    codes::BAD_OPTION_VALUE,
                    "`groups` is only used with `topology = \"partial\"`",
                )
                .at(rn.topology.as_ref().map(|t| l.of(t)).unwrap_or(span)),
            );
        }
        let mut members = Vec::new();
        let mut seen = BTreeMap::new();
        for rm in &rn.members {
            let mspan = l.of(&rm.get_ref().name);
            let rm = rm.get_ref();
            let name = rm.name.get_ref().clone();
            if seen.insert(name.clone(), mspan).is_some() {
                d.push(
                    Diagnostic::new(
                        codes::DUPLICATE_NAME,
                        format!(
                            "member `{name}` listed twice in network `{}`",
                            rn.name.get_ref()
                        ),
                    )
                    .at(mspan),
                );
                continue;
            }
            let Some(public_key) = parse_key(&rm.public_key, &l, &mut d) else {
                continue;
            };
            let node = nodes.iter().find(|n| n.name == name);
            let member_name: ParticipantName = match node {
                Some(n) => n.name.clone().into(),
                // A guest member's name is its own (it names key files).
                None => match WgPeerName::parse(&name) {
                    Ok(p) => p.into(),
                    Err(e) => {
                        d.push(e.diagnostic(mspan));
                        continue;
                    }
                },
            };
            let is_node = node.is_some();
            if !is_node && rm.guest.is_none() {
                d.push(
                    Diagnostic::new(codes::UNKNOWN_NODE, format!("member `{name}` is not a `[[node]]` of the site"))
                        .at(mspan)
                        .hint("a firewall or gateway guest is a member with `guest = VMID` (and its own `endpoint`)"),
                );
                continue;
            }
            members.push(Member {
                name: member_name,
                public_key,
                addresses: rm
                    .address
                    .iter()
                    .filter_map(|a| parse_addr(a, &l, &mut d))
                    .collect(),
                endpoint: rm.endpoint.as_ref().and_then(|e| endpoint(e, &l, &mut d)),
                routes: rm
                    .routes
                    .iter()
                    .filter_map(|r| parse_net(r, &l, &mut d).map(|n| (n, l.of(r))))
                    .collect(),
                listen_port: rm.listen_port.as_ref().and_then(|p| port(p, &l, &mut d)),
                listen_port_span: rm.listen_port.as_ref().map(|p| l.of(p)),
                guest: rm
                    .guest
                    .as_ref()
                    .and_then(|g| match u32::try_from(*g.get_ref()) {
                        Ok(v) if v > 0 => Some(v),
                        _ => {
                            d.push(
                                Diagnostic::new(
                                    codes::BAD_OPTION_VALUE,
                                    format!("guest {} is not a VMID", g.get_ref()),
                                )
                                .at(l.of(g)),
                            );
                            None
                        }
                    }),
                persistent_keepalive: rm
                    .persistent_keepalive
                    .as_ref()
                    .and_then(|k| keepalive(k, &l, &mut d)),
                span: mspan,
                key_span: l.of(&rm.public_key),
            });
        }
        for g in rn.gateways.iter().chain(rn.groups.values().flatten()) {
            if !seen.contains_key(g.get_ref()) {
                d.push(
                    Diagnostic::new(
                        codes::UNKNOWN_NODE,
                        format!(
                            "`{}` is not a member of network `{}`",
                            g.get_ref(),
                            rn.name.get_ref()
                        ),
                    )
                    .at(l.of(g)),
                );
            }
        }
        if let Topology::Partial { groups } = &topology {
            let mut group_of: BTreeMap<&str, &str> = BTreeMap::new();
            for (g, ms) in &rn.groups {
                for m in ms {
                    if let Some(prev) = group_of.insert(m.get_ref(), g) {
                        d.push(
                            Diagnostic::new(
                                codes::BAD_OPTION_VALUE,
                                format!("`{}` is in groups `{prev}` and `{g}`", m.get_ref()),
                            )
                            .at(l.of(m)),
                        );
                    }
                }
                let gws = ms
                    .iter()
                    .filter(|m| rn.gateways.iter().any(|x| x.get_ref() == m.get_ref()))
                    .count();
                if gws != 1 {
                    d.push(
                        Diagnostic::new(codes::BAD_OPTION_VALUE, format!("group `{g}` has {gws} gateways; a partial mesh needs exactly one per group"))
                            .at(ms.first().map(|m| l.of(m)).unwrap_or(span)),
                    );
                }
            }
            for m in &members {
                if !group_of.contains_key(m.name.as_str()) {
                    d.push(
                        Diagnostic::new(
                            codes::BAD_OPTION_VALUE,
                            format!("member `{}` is in no group", m.name),
                        )
                        .at(m.span),
                    );
                }
            }
            let _ = groups;
        }
        if let (Some(mtu), Some(m)) = (mtu, &rn.mtu) {
            let has_v6 = pool.iter().any(|(p, _)| matches!(p, IpNet::V6(_)));
            if mtu < 1280 && has_v6 {
                d.push(
                    Diagnostic::new(
                        codes::MTU_TOO_SMALL,
                        format!("mtu {mtu} is below 1280, the IPv6 minimum, but the pool has IPv6"),
                    )
                    .at(l.of(m))
                    .hint("use at least 1280 (WireGuard's default is 1420)"),
                );
            }
        }
        let Some(interface) = interface else {
            // Reported above; its clients are not reported again.
            refused.push(net_name);
            continue;
        };
        let psk_pairs = preshared_pairs(&rn, &members, &l, &mut d);
        networks.push(Network {
            name: net_name,
            interface,
            pool,
            listen_port,
            mtu,
            topology,
            gateways: participants(&rn.gateways),
            members,
            persistent_keepalive: rn
                .persistent_keepalive
                .as_ref()
                .and_then(|k| keepalive(k, &l, &mut d)),
            preshared_keys: rn.preshared_keys,
            preshared_pairs: psk_pairs,
            table: rn.table.as_ref().and_then(|t| {
                let v = *t.get_ref();
                if (1..=0xFFFF_FFFF).contains(&v) && !(253..=255).contains(&v) {
                    Some(v as u32)
                } else {
                    d.push(
                        Diagnostic::new(codes::BAD_OPTION_VALUE, format!("table {v} is not a usable routing table"))
                            .at(l.of(t))
                            .hint("use a table of its own (1-252 or above 255); 253-255 are default/main/local"),
                    );
                    None
                }
            }),
            span,
            interface_span: l.of(&rn.interface),
            listen_port_span: l.of(&rn.listen_port),
            mtu_span: rn.mtu.as_ref().map(|m| l.of(m)),
        });
    }

    let mut clients = Vec::new();
    for rc in &raw.client {
        let span = l.of(&rc.get_ref().name);
        let rc = rc.get_ref();
        let client_name = match WgClientName::parse(rc.name.get_ref()) {
            Ok(n) => n,
            Err(e) => {
                // The client's name names its key and config files.
                d.push(e.diagnostic(span));
                continue;
            }
        };
        if refused.iter().any(|n| n == rc.network.get_ref()) {
            continue;
        }
        let Some(net) = networks.iter().find(|n| n.name == *rc.network.get_ref()) else {
            d.push(
                Diagnostic::new(
                    codes::BAD_OPTION_VALUE,
                    format!(
                        "no `[[wireguard]]` network named `{}`",
                        rc.network.get_ref()
                    ),
                )
                .at(l.of(&rc.network)),
            );
            continue;
        };
        let Some(public_key) = parse_key(&rc.public_key, &l, &mut d) else {
            continue;
        };
        let persistent_keepalive = match &rc.persistent_keepalive {
            None => 25,
            Some(k) => keepalive(k, &l, &mut d).unwrap_or(25),
        };
        // A `via` that is no participant name is no member either: reported
        // below as that, when it is the only one.
        let bad_via: Vec<(String, Span)> = rc
            .via
            .iter()
            .filter(|v| ParticipantName::parse(v.get_ref()).is_err())
            .map(|v| (v.get_ref().clone(), l.of(v)))
            .collect();
        let via: Vec<(ParticipantName, Span)> = if rc.via.is_empty() {
            net.gateways.iter().map(|g| (g.clone(), span)).collect()
        } else {
            rc.via
                .iter()
                .filter_map(|v| Some((ParticipantName::parse(v.get_ref()).ok()?, l.of(v))))
                .collect()
        };
        if via.is_empty() && bad_via.is_empty() {
            d.push(
                Diagnostic::new(
                    codes::BAD_OPTION_VALUE,
                    format!("client `{}` has nothing to connect to", rc.name.get_ref()),
                )
                .at(span)
                .hint("in a mesh, say which member it connects through: `via = [\"hv1\"]`"),
            );
            continue;
        }
        // In the order written.
        let shown: Vec<(&str, Span)> = if rc.via.is_empty() {
            via.iter().map(|(v, s)| (v.as_str(), *s)).collect()
        } else {
            rc.via
                .iter()
                .map(|v| (v.get_ref().as_str(), l.of(v)))
                .collect()
        };
        for (v, vs) in shown {
            if !net.members.iter().any(|m| m.name == v) {
                d.push(
                    Diagnostic::new(
                        codes::UNKNOWN_NODE,
                        format!("`{v}` is not a member of network `{}`", net.name),
                    )
                    .at(vs),
                );
            }
        }
        if !bad_via.is_empty() {
            continue;
        }
        clients.push(Client {
            network: net.name.clone(),
            name: client_name,
            public_key,
            addresses: rc
                .address
                .iter()
                .filter_map(|a| parse_addr(a, &l, &mut d))
                .collect(),
            persistent_keepalive,
            routes: rc
                .routes
                .iter()
                .filter_map(|r| parse_net(r, &l, &mut d).map(|n| (n, l.of(r))))
                .collect(),
            via,
            span,
            key_span: l.of(&rc.public_key),
        });
    }
    (
        Some(WgSite {
            nodes,
            networks,
            clients,
        }),
        d,
    )
}

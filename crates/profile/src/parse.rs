//! `[[lockdown]]` and `[[egress]]` in `site.toml`, with spans. Other
//! top-level keys belong to other parsers and are ignored here; inside these
//! tables unknown keys are errors (E0103).

use ipnet::IpNet;
use rampart_resolve::ir::Platform;
use rampart_types::names::{IfaceName, Name, NodeName, WgIfaceName, WgNetworkName};
use rampart_types::{codes, Diagnostic, Diagnostics, FileId, PortRange, Span};
use serde::Deserialize;
use std::net::IpAddr;
use toml::Spanned;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profiles {
    pub lockdowns: Vec<Lockdown>,
    pub egress: Vec<Egress>,
}

impl Profiles {
    pub fn is_empty(&self) -> bool {
        self.lockdowns.is_empty() && self.egress.is_empty()
    }
}

/// One entry of `services`: `22/tcp`, `5404-5405/udp`, `ping`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceSpec {
    Tcp(PortRange),
    Udp(PortRange),
    Ping,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Lockdown {
    pub node: NodeName,
    pub node_span: Span,
    /// The management VPN: a `[[wireguard]]` network.
    pub vpn: Option<(WgNetworkName, Span)>,
    /// Overrides the node's platform for the default service list.
    pub platform: Option<Platform>,
    /// Replaces the platform's service list.
    pub services: Option<Vec<(ServiceSpec, Span)>>,
    /// Addresses (or prefixes) that may connect without the VPN.
    pub allow: Vec<(IpNet, Span)>,
    /// The management address clients use (default: the node's first).
    pub address: Option<(IpAddr, Span)>,
    /// The interface VPN traffic arrives on (default: the VPN's interface on
    /// the node, or the bridges of the gateway guest).
    pub interface: Option<(WgIfaceName, Span)>,
    /// Refuse every other new connection to the host (default true).
    pub refuse_rest: bool,
    /// The `[[lockdown]]` table.
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Egress {
    /// The hypervisor whose guests leave through the tunnel.
    pub node: NodeName,
    pub node_span: Span,
    pub subnet: IpNet,
    pub subnet_span: Span,
    /// The `[[wireguard]]` network of the tunnel.
    pub network: WgNetworkName,
    pub network_span: Span,
    /// The bridge the guests sit on (default: the node's bridge with an
    /// address in the subnet).
    pub bridge: Option<(IfaceName, Span)>,
    /// Routing table (default: the network's `table`).
    pub table: Option<u32>,
    /// `ip rule` priority (default 1000).
    pub priority: u32,
    /// The gateway's internet interface (default: its bridge holding its
    /// endpoint address).
    pub gateway_wan: Option<(WgIfaceName, Span)>,
    pub span: Span,
}

pub const DEFAULT_PRIORITY: u32 = 1000;

#[derive(Deserialize)]
struct RawSite {
    #[serde(default)]
    lockdown: Vec<Spanned<RawLockdown>>,
    #[serde(default)]
    egress: Vec<Spanned<RawEgress>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLockdown {
    node: Spanned<String>,
    #[serde(default)]
    vpn: Option<Spanned<String>>,
    #[serde(default)]
    platform: Option<Spanned<String>>,
    #[serde(default)]
    services: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    address: Option<Spanned<String>>,
    #[serde(default)]
    interface: Option<Spanned<String>>,
    #[serde(default)]
    refuse_rest: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEgress {
    node: Spanned<String>,
    subnet: Spanned<String>,
    network: Spanned<String>,
    #[serde(default)]
    bridge: Option<Spanned<String>>,
    #[serde(default)]
    table: Option<Spanned<i64>>,
    #[serde(default)]
    priority: Option<Spanned<i64>>,
    #[serde(default)]
    gateway_wan: Option<Spanned<String>>,
}

/// Byte offsets to 1-based line and character column.
struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
    file: FileId,
}

impl<'a> Lines<'a> {
    fn new(file: FileId, text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { text, starts, file }
    }
    fn span(&self, range: std::ops::Range<usize>) -> Span {
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
    /// A table's span: its header line (`[[lockdown]]`), found backwards
    /// from the table's first key.
    fn table(&self, s: &Spanned<impl Sized>, header: &str) -> Span {
        let start = s.span().start;
        let before = &self.text[..start.min(self.text.len())];
        let at_line_start = before
            .rfind(&format!("\n{header}"))
            .map(|i| i + 1)
            .or_else(|| before.starts_with(header).then_some(0));
        match at_line_start {
            Some(i) => self.span(i..i + header.len()),
            None => self.span(s.span()),
        }
    }
}

/// The name `v` holds, as its validated type; E0407/E0408 at the value
/// (and `ok` cleared: the table is left out) when it breaks its rule.
fn name<N: Name>(v: &Spanned<String>, l: &Lines, d: &mut Diagnostics, ok: &mut bool) -> Option<N> {
    match N::parse_name(v.get_ref()) {
        Ok(n) => Some(n),
        Err(e) => {
            d.push(e.diagnostic(l.of(v)));
            *ok = false;
            None
        }
    }
}

/// [`name`] of an optional value, with its span.
fn opt_name<N: Name>(
    v: Option<&Spanned<String>>,
    l: &Lines,
    d: &mut Diagnostics,
    ok: &mut bool,
) -> Option<(N, Span)> {
    let v = v?;
    name(v, l, d, ok).map(|n| (n, l.of(v)))
}

fn bad(d: &mut Diagnostics, span: Span, msg: String, hint: &str) {
    let mut x = Diagnostic::new(codes::BAD_OPTION_VALUE, msg).at(span);
    if !hint.is_empty() {
        x = x.hint(hint.to_string());
    }
    d.push(x);
}

fn parse_net(s: &Spanned<String>, l: &Lines, d: &mut Diagnostics) -> Option<IpNet> {
    let t = s.get_ref().trim();
    if let Ok(n) = t.parse::<IpNet>() {
        if n.trunc() != n {
            d.push(
                Diagnostic::new(codes::HOST_BITS_SET, format!("host bits set in `{t}`"))
                    .at(l.of(s))
                    .hint(format!("did you mean `{}`?", n.trunc())),
            );
        }
        return Some(n.trunc());
    }
    if let Ok(a) = t.parse::<IpAddr>() {
        return Some(IpNet::from(a));
    }
    d.push(
        Diagnostic::new(
            codes::INVALID_ADDRESS,
            format!("`{t}` is not an address or prefix"),
        )
        .at(l.of(s)),
    );
    None
}

/// `22/tcp`, `5404-5405/udp`, `ping` (also `tcp/22`).
pub fn parse_service(s: &str) -> Result<ServiceSpec, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("ping") || s.eq_ignore_ascii_case("icmp") {
        return Ok(ServiceSpec::Ping);
    }
    let (a, b) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not PORT/PROTO (`22/tcp`, `5404-5405/udp`) or `ping`"))?;
    let (ports, proto) = if a.eq_ignore_ascii_case("tcp") || a.eq_ignore_ascii_case("udp") {
        (b, a)
    } else {
        (a, b)
    };
    let port = |x: &str| -> Result<u16, String> {
        match x.trim().parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
            _ => Err(format!("`{x}` is not a port (1-65535)")),
        }
    };
    let range = match ports.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (port(lo)?, port(hi)?);
            if lo > hi {
                return Err(format!("backwards port range `{ports}`"));
            }
            PortRange::new(lo, hi)
        }
        None => PortRange::single(port(ports)?),
    };
    match proto.to_ascii_lowercase().as_str() {
        "tcp" => Ok(ServiceSpec::Tcp(range)),
        "udp" => Ok(ServiceSpec::Udp(range)),
        other => Err(format!("unknown protocol `{other}` (tcp or udp)")),
    }
}

/// Parse the profiles of `site.toml` (`file` is its id in the source map).
pub fn parse(file: FileId, text: &str) -> (Profiles, Diagnostics) {
    let l = Lines::new(file, text);
    let mut d = Diagnostics::new();
    let mut out = Profiles::default();
    let raw: RawSite = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            // The site parser reports TOML syntax errors; only errors inside
            // our tables are ours.
            let msg = e.message().to_string();
            let ours = e.span().is_some_and(|r| {
                let before = &text[..r.start.min(text.len())];
                let last = before.rfind("[[");
                last.is_some_and(|i| {
                    before[i..].starts_with("[[lockdown]]") || before[i..].starts_with("[[egress]]")
                })
            });
            if ours || msg.contains("lockdown") || msg.contains("egress") {
                let code = if msg.contains("unknown field") {
                    codes::UNKNOWN_OPTION
                } else {
                    codes::SITE_TOML
                };
                let mut x = Diagnostic::new(code, format!("site.toml: {msg}"));
                if let Some(r) = e.span() {
                    x = x.at(l.span(r));
                }
                d.push(x);
            }
            return (out, d);
        }
    };
    for rl in &raw.lockdown {
        let span = l.table(rl, "[[lockdown]]");
        let r = rl.get_ref();
        let mut ok = true;
        let node = name::<NodeName>(&r.node, &l, &mut d, &mut ok);
        let vpn = opt_name::<WgNetworkName>(r.vpn.as_ref(), &l, &mut d, &mut ok);
        let interface = opt_name::<WgIfaceName>(r.interface.as_ref(), &l, &mut d, &mut ok);
        let (true, Some(node)) = (ok, node) else {
            continue;
        };
        let platform =
            r.platform
                .as_ref()
                .and_then(|p| match p.get_ref().to_ascii_lowercase().as_str() {
                    "xcp-ng" | "xcpng" | "xenserver" => Some(Platform::Xcpng),
                    "proxmox" | "pve" => Some(Platform::Proxmox),
                    "linux" | "kvm" => Some(Platform::Linux),
                    other => {
                        bad(
                            &mut d,
                            l.of(p),
                            format!("unknown platform `{other}`"),
                            "one of `xcp-ng`, `proxmox`, `linux`",
                        );
                        None
                    }
                });
        let services = r.services.as_ref().map(|list| {
            if list.is_empty() {
                bad(
                    &mut d,
                    span,
                    "an empty `services` list locks nothing down".into(),
                    "leave `services` out to take the platform's list",
                );
            }
            list.iter()
                .filter_map(|s| match parse_service(s.get_ref()) {
                    Ok(v) => Some((v, l.of(s))),
                    Err(m) => {
                        bad(&mut d, l.of(s), m, "");
                        None
                    }
                })
                .collect()
        });
        let allow = r
            .allow
            .iter()
            .filter_map(|a| parse_net(a, &l, &mut d).map(|n| (n, l.of(a))))
            .collect::<Vec<_>>();
        for (n, sp) in &allow {
            if n.prefix_len() == 0 {
                d.push(
                    Diagnostic::new(
                        codes::ANY_MANAGEMENT_SOURCE,
                        format!("`{n}` in `allow` admits everyone: the lockdown locks nothing"),
                    )
                    .at(*sp),
                );
            }
        }
        let address = r
            .address
            .as_ref()
            .and_then(|a| match a.get_ref().trim().parse::<IpAddr>() {
                Ok(x) => Some((x, l.of(a))),
                Err(_) => {
                    d.push(
                        Diagnostic::new(
                            codes::INVALID_ADDRESS,
                            format!("`{}` is not an address", a.get_ref()),
                        )
                        .at(l.of(a)),
                    );
                    None
                }
            });
        out.lockdowns.push(Lockdown {
            node,
            node_span: l.of(&r.node),
            vpn,
            platform,
            services,
            allow,
            address,
            interface,
            refuse_rest: r.refuse_rest.unwrap_or(true),
            span,
        });
    }
    for re in &raw.egress {
        let span = l.table(re, "[[egress]]");
        let r = re.get_ref();
        let mut ok = true;
        let node = name::<NodeName>(&r.node, &l, &mut d, &mut ok);
        let network = name::<WgNetworkName>(&r.network, &l, &mut d, &mut ok);
        let bridge = opt_name::<IfaceName>(r.bridge.as_ref(), &l, &mut d, &mut ok);
        let gateway_wan = opt_name::<WgIfaceName>(r.gateway_wan.as_ref(), &l, &mut d, &mut ok);
        let (true, Some(node), Some(network)) = (ok, node, network) else {
            continue;
        };
        let Some(subnet) = parse_net(&r.subnet, &l, &mut d) else {
            continue;
        };
        let table = r.table.as_ref().and_then(|t| {
            let v = *t.get_ref();
            if (1..=252).contains(&v) || (256..=u32::MAX as i64).contains(&v) {
                Some(v as u32)
            } else {
                bad(
                    &mut d,
                    l.of(t),
                    format!(
                        "table {v} is not usable (1-252 or above 255; 253-255 are the kernel's)"
                    ),
                    "",
                );
                None
            }
        });
        let priority = match &r.priority {
            None => DEFAULT_PRIORITY,
            Some(p) => {
                let v = *p.get_ref();
                if (1..32766).contains(&v) {
                    v as u32
                } else {
                    bad(
                        &mut d,
                        l.of(p),
                        format!("priority {v} must be 1-32765 (before the main table's rule)"),
                        "",
                    );
                    DEFAULT_PRIORITY
                }
            }
        };
        out.egress.push(Egress {
            node,
            node_span: l.of(&r.node),
            subnet,
            subnet_span: l.of(&r.subnet),
            network,
            network_span: l.of(&r.network),
            bridge,
            table,
            priority,
            gateway_wan,
            span,
        });
    }
    (out, d)
}

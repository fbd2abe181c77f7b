//! site.toml: nodes, bridges, guests and NICs, with spans on every value.

use crate::addr::parse_iface_addr;
use crate::ast::*;
use crate::conf::parse_mac;
use crate::suggest::did_you_mean;
use rampart_types::names::SiteName;
use rampart_types::{codes, Diagnostic, Diagnostics, FileId, Span};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use toml::Spanned as TSpanned;

/// A TOML value with spans all the way down.
#[derive(Debug)]
enum SValue {
    Str(String),
    Int(i64),
    Float,
    Bool(bool),
    Array(Vec<TSpanned<SValue>>),
    Table(Vec<(TSpanned<String>, TSpanned<SValue>)>),
    Other,
}

impl<'de> Deserialize<'de> for SValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a TOML value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<SValue, E> {
                Ok(SValue::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<SValue, E> {
                Ok(SValue::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<SValue, E> {
                Ok(SValue::Int(v as i64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<SValue, E> {
                let _ = v;
                Ok(SValue::Float)
            }
            fn visit_str<E>(self, v: &str) -> Result<SValue, E> {
                Ok(SValue::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<SValue, E> {
                Ok(SValue::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<SValue, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element::<TSpanned<SValue>>()? {
                    v.push(x);
                }
                Ok(SValue::Array(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<SValue, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = a.next_key::<TSpanned<String>>()? {
                    // A datetime is a map with a magic key; treat it as an opaque value.
                    if k.get_ref().starts_with("$__toml_private") {
                        let _ = a.next_value::<de::IgnoredAny>()?;
                        return Ok(SValue::Other);
                    }
                    let val = a.next_value::<TSpanned<SValue>>()?;
                    v.push((k, val));
                }
                Ok(SValue::Table(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl SValue {
    fn kind(&self) -> &'static str {
        match self {
            SValue::Str(_) => "a string",
            SValue::Int(_) => "an integer",
            SValue::Float => "a float",
            SValue::Bool(_) => "a boolean",
            SValue::Array(_) => "an array",
            SValue::Table(_) => "a table",
            SValue::Other => "a datetime",
        }
    }
}

struct Ctx<'a> {
    file: FileId,
    text: &'a str,
    line_starts: Vec<usize>,
    diags: &'a mut Diagnostics,
}

impl<'a> Ctx<'a> {
    fn span(&self, r: std::ops::Range<usize>) -> Span {
        let start = r.start.min(self.text.len());
        let end = r.end.min(self.text.len()).max(start);
        let li = match self.line_starts.binary_search(&start) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let ls = self.line_starts[li];
        let line_end = self.text[ls..]
            .find('\n')
            .map_or(self.text.len(), |p| ls + p);
        let col = crate::text::col_of(&self.text[ls..line_end], start - ls);
        let e = end.min(line_end);
        let len = self.text.get(start..e).map_or(0, |s| s.chars().count());
        Span::new(self.file, li as u32 + 1, col, len as u32)
    }
    fn sp<T>(&self, s: &TSpanned<T>) -> Span {
        self.span(s.span())
    }
    fn err(&mut self, span: Span, msg: impl Into<String>) {
        self.diags
            .push(Diagnostic::new(codes::SITE_TOML, msg).at(span));
    }
    fn unknown_key(&mut self, k: &TSpanned<String>, known: &[&str], what: &str) {
        let mut d = Diagnostic::new(
            codes::SITE_TOML,
            format!("unknown key `{}` in {what}", k.get_ref()),
        )
        .at(self.sp(k))
        .note(format!("keys of {what}: {}", known.join(", ")));
        if let Some(h) = did_you_mean(k.get_ref(), known.iter().copied()) {
            d = d.hint(h);
        }
        self.diags.push(d);
    }
    fn string(&mut self, v: &TSpanned<SValue>, what: &str) -> Option<Spanned<String>> {
        match v.get_ref() {
            SValue::Str(s) => Some(Spanned::new(s.clone(), self.sp(v))),
            o => {
                let m = format!("`{what}` must be a string, found {}", o.kind());
                self.err(self.sp(v), m);
                None
            }
        }
    }
    /// A string naming something of `kind`: refused (E0407/E0408 at the
    /// value, with what is allowed) unless it passes the kind's rule.
    fn name<N: rampart_types::names::Name>(
        &mut self,
        v: &TSpanned<SValue>,
        what: &str,
    ) -> Option<Spanned<N>> {
        let s = self.string(v, what)?;
        match N::parse_name(&s.value) {
            Ok(n) => Some(Spanned::new(n, s.span)),
            Err(e) => {
                self.diags.push(e.diagnostic(s.span));
                None
            }
        }
    }
    fn table<'v>(
        &mut self,
        v: &'v TSpanned<SValue>,
        what: &str,
    ) -> Option<&'v [(TSpanned<String>, TSpanned<SValue>)]> {
        match v.get_ref() {
            SValue::Table(t) => Some(t),
            o => {
                let m = format!("`{what}` must be a table, found {}", o.kind());
                self.err(self.sp(v), m);
                None
            }
        }
    }
    fn array<'v>(&mut self, v: &'v TSpanned<SValue>, what: &str) -> Option<&'v [TSpanned<SValue>]> {
        match v.get_ref() {
            SValue::Array(a) => Some(a),
            o => {
                let m = format!("`{what}` must be an array, found {}", o.kind());
                self.err(self.sp(v), m);
                None
            }
        }
    }
    fn addrs(&mut self, v: &TSpanned<SValue>, what: &str) -> Vec<Spanned<ipnet::IpNet>> {
        let mut out = Vec::new();
        for a in self.array(v, what).unwrap_or(&[]) {
            if let Some(s) = self.string(a, what) {
                match parse_iface_addr(&s.value) {
                    Ok(n) => out.push(Spanned::new(n, s.span)),
                    Err(e) => {
                        let mut d = Diagnostic::new(e.code, e.msg).at(s.span);
                        if let Some(h) = e.hint {
                            d = d.hint(h);
                        }
                        self.diags.push(d);
                    }
                }
            }
        }
        out
    }
}

const TOP_KEYS: &[&str] = &[
    "site",
    "node",
    "guest",
    "wireguard",
    "client",
    "lockdown",
    "egress",
    "expect",
];
const SITE_KEYS: &[&str] = &["name", "backend"];
const NODE_KEYS: &[&str] = &[
    "name",
    "bridges",
    "backend",
    "platform",
    "local_network",
    "endpoint",
    "addresses",
    "iptables_file",
    "ip6tables_file",
    "ipset_file",
];
const GUEST_KEYS: &[&str] = &["id", "kind", "node", "name", "nics"];
const NIC_KEYS: &[&str] = &[
    "name",
    "bridge",
    "mac",
    "addresses",
    "firewall",
    "vlan",
    "tag",
];

/// Parse site.toml into the AST's site header, nodes and guests.
pub fn parse_site_toml(file: FileId, text: &str, ast: &mut SiteAst, diags: &mut Diagnostics) {
    let mut line_starts = vec![0];
    line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    let mut cx = Ctx {
        file,
        text,
        line_starts,
        diags,
    };
    let root: TSpanned<SValue> = match toml::from_str::<TSpanned<SValue>>(text) {
        Ok(v) => v,
        Err(e) => {
            let span = e
                .span()
                .map(|r| cx.span(r))
                .unwrap_or(Span::new(file, 1, 1, 0));
            let msg = e.message().to_string();
            cx.err(span, format!("site.toml is not valid TOML: {msg}"));
            return;
        }
    };
    let Some(top) = cx.table(&root, "site.toml") else {
        return;
    };
    for (k, v) in top {
        match k.get_ref().as_str() {
            "site" => {
                let Some(t) = cx.table(v, "site") else {
                    continue;
                };
                for (k2, v2) in t {
                    match k2.get_ref().as_str() {
                        "name" => ast.name = cx.name::<SiteName>(v2, "site.name"),
                        "backend" => ast.backend = backend(&mut cx, v2),
                        _ => cx.unknown_key(k2, SITE_KEYS, "[site]"),
                    }
                }
            }
            "node" => {
                for n in cx.array(v, "node").unwrap_or(&[]) {
                    if let Some(nd) = node(&mut cx, n) {
                        ast.nodes.push(nd);
                    }
                }
            }
            "guest" => {
                for g in cx.array(v, "guest").unwrap_or(&[]) {
                    if let Some(gd) = guest(&mut cx, g) {
                        ast.guests.push(gd);
                    }
                }
            }
            "wireguard" | "client" | "lockdown" | "egress" | "expect" => {}
            _ => cx.unknown_key(k, TOP_KEYS, "site.toml"),
        }
    }
}

fn backend(cx: &mut Ctx, v: &TSpanned<SValue>) -> Option<Spanned<BackendName>> {
    let s = cx.string(v, "backend")?;
    let b = match s.value.as_str() {
        "nftables" => BackendName::Nftables,
        "iptables" => BackendName::Iptables,
        _ => {
            let mut d = Diagnostic::new(codes::SITE_TOML, format!("unknown backend `{}`", s.value))
                .at(s.span)
                .note("backends: nftables, iptables");
            if let Some(h) = did_you_mean(&s.value, ["nftables", "iptables"]) {
                d = d.hint(h);
            }
            cx.diags.push(d);
            return None;
        }
    };
    Some(Spanned::new(b, s.span))
}

fn node(cx: &mut Ctx, v: &TSpanned<SValue>) -> Option<NodeDecl> {
    let t = cx.table(v, "node")?;
    let span = cx.sp(v);
    let mut name = None;
    let mut bad_name = false;
    // The declaration's fields; the name is set last (it must be valid).
    struct Fields {
        backend: Option<Spanned<BackendName>>,
        platform: Option<Spanned<PlatformName>>,
        bridges: Vec<BridgeDecl>,
        addresses: Vec<Spanned<ipnet::IpNet>>,
        local_network: Option<Vec<Spanned<ipnet::IpNet>>>,
        endpoint: Option<Spanned<String>>,
        saved: SavedFileDecls,
    }
    let mut nd = Fields {
        backend: None,
        platform: None,
        bridges: Vec::new(),
        addresses: Vec::new(),
        local_network: None,
        endpoint: None,
        saved: SavedFileDecls::default(),
    };
    for (k, val) in t {
        match k.get_ref().as_str() {
            "name" => {
                name = cx.name::<NodeName>(val, "node.name");
                bad_name = name.is_none();
            }
            "backend" => nd.backend = backend(cx, val),
            "platform" => {
                if let Some(s) = cx.string(val, "platform") {
                    let p = match s.value.as_str() {
                        "proxmox" => Some(PlatformName::Proxmox),
                        "xcpng" => Some(PlatformName::Xcpng),
                        "linux" => Some(PlatformName::Linux),
                        _ => None,
                    };
                    match p {
                        Some(p) => nd.platform = Some(Spanned::new(p, s.span)),
                        None => {
                            let mut d = Diagnostic::new(
                                codes::SITE_TOML,
                                format!("unknown platform `{}`", s.value),
                            )
                            .at(s.span)
                            .note("platforms: proxmox, xcpng, linux");
                            if let Some(h) = did_you_mean(&s.value, ["proxmox", "xcpng", "linux"]) {
                                d = d.hint(h);
                            }
                            cx.diags.push(d);
                        }
                    }
                }
            }
            "bridges" => {
                if let Some(bt) = cx.table(val, "bridges") {
                    for (bk, bv) in bt {
                        let addresses = cx.addrs(bv, "bridge addresses");
                        let bname = match IfaceName::parse(bk.get_ref()) {
                            Ok(b) => b,
                            Err(e) => {
                                cx.diags.push(e.diagnostic(cx.sp(bk)));
                                continue;
                            }
                        };
                        nd.bridges.push(BridgeDecl {
                            name: Spanned::new(bname, cx.sp(bk)),
                            addresses,
                        });
                    }
                }
            }
            "addresses" => nd.addresses = cx.addrs(val, "addresses"),
            "local_network" => {
                let nets = cx.addrs(val, "local_network");
                nd.local_network = Some(
                    nets.into_iter()
                        .map(|n| Spanned::new(n.value.trunc(), n.span))
                        .collect(),
                );
            }
            "endpoint" => nd.endpoint = cx.string(val, "endpoint"),
            "iptables_file" => nd.saved.iptables = saved_path(cx, val, "iptables_file"),
            "ip6tables_file" => nd.saved.ip6tables = saved_path(cx, val, "ip6tables_file"),
            "ipset_file" => nd.saved.ipset = saved_path(cx, val, "ipset_file"),
            _ => cx.unknown_key(k, NODE_KEYS, "[[node]]"),
        }
    }
    let name = match name {
        Some(n) => n,
        // Refused above, at the name.
        None if bad_name => return None,
        _ => {
            cx.err(span, "a [[node]] needs a `name`");
            return None;
        }
    };
    Some(NodeDecl {
        name,
        backend: nd.backend,
        platform: nd.platform,
        bridges: nd.bridges,
        addresses: nd.addresses,
        local_network: nd.local_network,
        endpoint: nd.endpoint,
        saved_files: nd.saved,
        implicit_bridges: false,
        span,
    })
}

/// A file rampart writes as root: an absolute, plain path (no `.` or `..`
/// components, no control characters), so it names one file whatever the
/// working directory.
fn saved_path(cx: &mut Ctx, v: &TSpanned<SValue>, what: &str) -> Option<Spanned<String>> {
    let s = cx.string(v, what)?;
    let p = std::path::Path::new(&s.value);
    let plain = p.components().all(|c| {
        matches!(
            c,
            std::path::Component::RootDir | std::path::Component::Normal(_)
        )
    });
    let why = if s.value.chars().any(|c| c.is_control()) {
        Some("control characters in the path")
    } else if !p.is_absolute() {
        Some("not an absolute path")
    } else if !plain || s.value.ends_with('/') || p.file_name().is_none() {
        Some("not a plain file path (`.`, `..` or a trailing `/`)")
    } else {
        None
    };
    if let Some(why) = why {
        cx.diags.push(
            Diagnostic::new(
                codes::SITE_TOML,
                format!(
                    "`{what}` = `{}`: {why}",
                    rampart_types::escape::printable(&s.value)
                ),
            )
            .at(s.span)
            .hint(format!(
                "write the full path of the file, e.g. `{what} = \"/etc/sysconfig/{}\"`",
                what.trim_end_matches("_file")
            )),
        );
        return None;
    }
    Some(s)
}

fn guest(cx: &mut Ctx, v: &TSpanned<SValue>) -> Option<GuestDecl> {
    let t = cx.table(v, "guest")?;
    let span = cx.sp(v);
    let mut id = None;
    let mut kind = None;
    let mut node = None;
    let mut name = None;
    let mut nics = Vec::new();
    let mut bad_node = false;
    for (k, val) in t {
        match k.get_ref().as_str() {
            "id" => match val.get_ref() {
                SValue::Int(i) if (100..=999_999_999).contains(i) => {
                    id = Some(Spanned::new(*i as u32, cx.sp(val)))
                }
                _ => cx.err(
                    cx.sp(val),
                    "`id` must be an integer from 100 to 999999999 (a Proxmox vmid)",
                ),
            },
            "kind" => {
                if let Some(s) = cx.string(val, "kind") {
                    match s.value.as_str() {
                        "vm" => kind = Some(GuestKindName::Vm),
                        "ct" => kind = Some(GuestKindName::Ct),
                        _ => cx.err(s.span, format!("`kind` is `vm` or `ct`, not `{}`", s.value)),
                    }
                }
            }
            "node" => {
                node = cx.name::<NodeName>(val, "node");
                bad_node = node.is_none();
            }
            "name" => name = cx.string(val, "name"),
            "nics" => {
                for (i, n) in cx.array(val, "nics").unwrap_or(&[]).iter().enumerate() {
                    if let Some(nic) = nic(cx, n, i as u32) {
                        nics.push(nic);
                    }
                }
            }
            _ => cx.unknown_key(k, GUEST_KEYS, "[[guest]]"),
        }
    }
    let Some(id) = id else {
        cx.err(span, "a [[guest]] needs an `id`");
        return None;
    };
    if bad_node {
        // Refused at the name; the guest is left out rather than placed.
        return None;
    }
    let kind = kind.unwrap_or(GuestKindName::Vm);
    Some(GuestDecl {
        id,
        kind,
        node,
        name,
        nics,
        span,
    })
}

fn nic(cx: &mut Ctx, v: &TSpanned<SValue>, pos: u32) -> Option<NicDecl> {
    let t = cx.table(v, "nic")?;
    let span = cx.sp(v);
    let mut name = None;
    let mut bridge = None;
    let mut mac = None;
    let mut addresses = Vec::new();
    let mut firewall = true;
    let mut vlan = None;
    for (k, val) in t {
        match k.get_ref().as_str() {
            "name" => name = cx.string(val, "nic name"),
            "bridge" => {
                bridge = cx.name::<IfaceName>(val, "bridge");
                if bridge.is_none() {
                    return None;
                }
            }
            "mac" => {
                if let Some(s) = cx.string(val, "mac") {
                    match parse_mac(&s.value) {
                        Some(m) => mac = Some(m),
                        None => cx.err(s.span, format!("`{}` is not a MAC address", s.value)),
                    }
                }
            }
            "addresses" => addresses = cx.addrs(val, "nic addresses"),
            "firewall" => match val.get_ref() {
                SValue::Bool(b) => firewall = *b,
                o => {
                    let m = format!("`firewall` must be a boolean, found {}", o.kind());
                    cx.err(cx.sp(val), m)
                }
            },
            "vlan" | "tag" => match val.get_ref() {
                SValue::Int(i) if (1..=4094).contains(i) => vlan = Some(*i as u16),
                _ => cx.err(cx.sp(val), "a VLAN tag is an integer from 1 to 4094"),
            },
            _ => cx.unknown_key(k, NIC_KEYS, "a NIC"),
        }
    }
    let name = name.unwrap_or_else(|| Spanned::new(format!("net{pos}"), span));
    let index = match (
        NicName::parse(&name.value),
        name.value
            .strip_prefix("net")
            .and_then(|n| n.parse::<u32>().ok()),
    ) {
        (Ok(nic), Some(i)) if name.value.len() <= 6 => (nic, i),
        _ => {
            cx.diags.push(
                Diagnostic::new(
                    codes::SITE_TOML,
                    format!("NIC name `{}` is not `netN`", name.value),
                )
                .at(name.span)
                .hint("guest NICs are named as Proxmox names them: net0, net1, ..."),
            );
            return None;
        }
    };
    let Some(bridge) = bridge else {
        cx.err(span, format!("NIC `{}` needs a `bridge`", name.value));
        return None;
    };
    let (nic_name, index) = index;
    Some(NicDecl {
        index,
        name: Spanned::new(nic_name, name.span),
        bridge,
        mac,
        addresses,
        firewall,
        vlan,
    })
}

//! Proxmox's own files: guest configs (`qemu-server/<vmid>.conf`,
//! `lxc/<vmid>.conf`) for NICs, and `corosync.conf` for nodes.

use crate::addr::parse_iface_addr;
use crate::ast::*;
use crate::text::Line;
use rampart_types::{codes, Diagnostic, Diagnostics, FileId, Span};

const VM_MODELS: &[&str] = &[
    "virtio",
    "e1000",
    "e1000e",
    "e1000-82540em",
    "e1000-82544gc",
    "e1000-82545em",
    "rtl8139",
    "vmxnet3",
    "ne2k_pci",
    "ne2k_isa",
    "pcnet",
    "i82551",
    "i82557b",
    "i82559er",
];

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        m[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(m)
}

/// Parse a guest config for its name and NICs. Only the main section (before
/// any `[snapshot]`) counts.
pub fn parse_guest_conf(
    file: FileId,
    text: &str,
    bad_lines: &std::collections::HashSet<u32>,
    id: u32,
    kind: GuestKindName,
    node: Option<Spanned<NodeName>>,
    diags: &mut Diagnostics,
) -> GuestDecl {
    let mut g = GuestDecl {
        id: Spanned::new(id, Span::new(file, 1, 1, 0)),
        kind,
        node,
        name: None,
        nics: Vec::new(),
        span: Span::new(file, 1, 1, 0),
    };
    for (i, raw) in text.split('\n').enumerate() {
        let no = i as u32 + 1;
        if bad_lines.contains(&no) {
            continue;
        }
        let line = Line {
            file,
            no,
            text: raw,
        };
        let t = raw.trim();
        if t.starts_with('[') {
            break;
        }
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let Some((k, v)) = t.split_once(':') else {
            diags
                .push(Diagnostic::new(codes::GUEST_CONF, "expected `key: value`").at(line.span(t)));
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if (k == "name" && kind == GuestKindName::Vm)
            || (k == "hostname" && kind == GuestKindName::Ct)
        {
            g.name = Some(Spanned::new(v.to_string(), line.span(v)));
            continue;
        }
        let Some(idx) = k.strip_prefix("net").and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // `net+5` parses as a number too: the key itself must be a NIC name.
        let nic_name = match NicName::parse(k) {
            Ok(n) => n,
            Err(e) => {
                diags.push(e.diagnostic(line.span(k)));
                continue;
            }
        };
        if let Some(nic) = parse_nic(&line, k, nic_name, idx, v, kind, diags) {
            g.nics.push(nic);
        }
    }
    g.nics.sort_by_key(|n| n.index);
    g
}

fn parse_nic(
    line: &Line,
    k: &str,
    nic_name: NicName,
    idx: u32,
    v: &str,
    kind: GuestKindName,
    diags: &mut Diagnostics,
) -> Option<NicDecl> {
    let mut bridge = None;
    let mut mac = None;
    let mut firewall = false;
    let mut vlan = None;
    let mut addresses = Vec::new();
    let mut ok = true;
    let bad = |part: &str, msg: String, diags: &mut Diagnostics| {
        diags.push(Diagnostic::new(codes::GUEST_CONF, msg).at(line.span(part)));
    };
    for (i, part) in v.split(',').enumerate() {
        let Some((pk, pv)) = part.split_once('=') else {
            bad(
                part,
                format!("expected `key=value` in `{k}`, found `{part}`"),
                diags,
            );
            ok = false;
            continue;
        };
        match pk {
            "bridge" => match IfaceName::parse(pv) {
                Ok(b) => bridge = Some(Spanned::new(b, line.span(pv))),
                Err(e) => {
                    diags.push(e.diagnostic(line.span(pv)));
                    ok = false;
                }
            },
            "firewall" => match pv {
                "1" => firewall = true,
                "0" => firewall = false,
                _ => {
                    bad(pv, format!("`firewall` takes 0 or 1, found `{pv}`"), diags);
                    ok = false;
                }
            },
            "tag" => match pv.parse::<u16>() {
                Ok(t) if (1..=4094).contains(&t) => vlan = Some(t),
                _ => {
                    bad(pv, format!("VLAN tag `{pv}` is not 1-4094"), diags);
                    ok = false;
                }
            },
            "hwaddr" | "macaddr" => match parse_mac(pv) {
                Some(m) => mac = Some(m),
                None => {
                    bad(pv, format!("`{pv}` is not a MAC address"), diags);
                    ok = false;
                }
            },
            "ip" | "ip6" if kind == GuestKindName::Ct => {
                if !matches!(pv, "dhcp" | "manual" | "auto") {
                    match parse_iface_addr(pv) {
                        Ok(n) if (pk == "ip") == n.addr().is_ipv4() => {
                            addresses.push(Spanned::new(n, line.span(pv)))
                        }
                        Ok(_) => {
                            bad(
                                pv,
                                format!("`{pk}={pv}` has the wrong address family"),
                                diags,
                            );
                            ok = false;
                        }
                        Err(e) => {
                            crate::addr::push_err(line, pv, e, diags);
                            ok = false;
                        }
                    }
                }
            }
            m if i == 0 && kind == GuestKindName::Vm && VM_MODELS.contains(&m) => {
                match parse_mac(pv) {
                    Some(x) => mac = Some(x),
                    None => {
                        bad(pv, format!("`{pv}` is not a MAC address"), diags);
                        ok = false;
                    }
                }
            }
            _ => {}
        }
    }
    let Some(bridge) = bridge else {
        if ok {
            diags.push(
                Diagnostic::new(codes::GUEST_CONF, format!("`{k}` has no bridge"))
                    .at(line.span(k))
                    .note("NICs without a bridge are not filtered by the firewall"),
            );
        }
        return None;
    };
    if !ok {
        return None;
    }
    Some(NicDecl {
        index: idx,
        name: Spanned::new(nic_name, line.span(k)),
        bridge,
        mac,
        addresses,
        firewall,
        vlan,
    })
}

/// corosync.conf: the nodelist (`node { name: x  ring0_addr: a }`) and
/// totem's `transport` / `ip_version`. Ring addresses stay as written (an
/// address or a host name); [`crate::parse_site`] resolves host names.
pub fn parse_corosync(file: FileId, text: &str, diags: &mut Diagnostics) -> CorosyncConf {
    let mut out = CorosyncConf::default();
    let mut depth_stack: Vec<String> = Vec::new();
    // The node being read: its name as written, its rings, its span.
    struct Cur {
        name: Option<Spanned<String>>,
        rings: Vec<(u32, Spanned<RingAddr>)>,
        span: Span,
    }
    let mut cur: Option<Cur> = None;
    for (i, raw) in text.split('\n').enumerate() {
        let line = Line {
            file,
            no: i as u32 + 1,
            text: raw,
        };
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(name) = t.strip_suffix('{') {
            let name = name.trim().to_string();
            if name == "node" && depth_stack.last().map(|s| s.as_str()) == Some("nodelist") {
                cur = Some(Cur {
                    name: None,
                    rings: Vec::new(),
                    span: line.whole(),
                });
            }
            depth_stack.push(name);
            continue;
        }
        if t == "}" {
            if depth_stack.pop().as_deref() == Some("node") {
                if let Some(n) = cur.take() {
                    match n.name.filter(|s| !s.value.is_empty()) {
                        None => diags.push(
                            Diagnostic::new(codes::GUEST_CONF, "corosync node without a name")
                                .at(n.span),
                        ),
                        Some(name) => match NodeName::parse(&name.value) {
                            Err(e) => diags.push(e.diagnostic(name.span)),
                            Ok(_) => out.nodes.push(CorosyncNode {
                                name,
                                rings: n.rings,
                                span: n.span,
                            }),
                        },
                    }
                }
            }
            continue;
        }
        let Some((k, v)) = t.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if depth_stack.len() == 1 && depth_stack[0] == "totem" {
            if k == "transport" {
                out.transport = Some(Spanned::new(v.to_string(), line.span(v)));
            } else if k == "ip_version" {
                out.ip_version = Some(Spanned::new(v.to_string(), line.span(v)));
            }
            continue;
        }
        let Some(n) = cur.as_mut() else { continue };
        if k == "name" {
            n.name = Some(Spanned::new(v.to_string(), line.span(v)));
        } else if let Some(ring) = k
            .strip_prefix("ring")
            .and_then(|r| r.strip_suffix("_addr"))
            .and_then(|r| r.parse::<u32>().ok())
        {
            let value = if let Ok(ip) = crate::addr::parse_ip(v) {
                RingAddr::Ip(ip)
            } else if is_host_name(v) {
                RingAddr::Host(v.to_ascii_lowercase())
            } else {
                diags.push(
                    Diagnostic::new(
                        codes::INVALID_ADDRESS,
                        format!("`{k}` is neither an address nor a host name",),
                    )
                    .at(line.span(v))
                    .note("corosync cannot use this link; rampart opens nothing for it"),
                );
                continue;
            };
            n.rings.push((ring, Spanned::new(value, line.span(v))));
        }
    }
    out
}

/// A DNS host name: labels of letters, digits and `-`, dot-separated.
pub fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// `/etc/hosts`: `address name [aliases...]`, `#` comments. Every name
/// (lower-case) with its addresses in file order.
pub fn parse_hosts(text: &str) -> Vec<(String, std::net::IpAddr)> {
    let mut out = Vec::new();
    for raw in text.split('\n') {
        let t = raw.split('#').next().unwrap_or("").trim();
        let mut it = t.split_whitespace();
        let Some(addr) = it.next() else { continue };
        let Ok(ip) = crate::addr::parse_ip(addr) else {
            continue;
        };
        for name in it {
            out.push((name.to_ascii_lowercase(), ip));
        }
    }
    out
}

/// `/etc/network/interfaces` (ifupdown2, as Proxmox writes it): every
/// `iface NAME inet|inet6 static` stanza's `address` (CIDR, or with a
/// `netmask` line), by interface name, in file order.
pub fn parse_interfaces(file: FileId, text: &str) -> Vec<(String, Spanned<ipnet::IpNet>)> {
    let mut out: Vec<(String, Spanned<ipnet::IpNet>)> = Vec::new();
    // The stanza being read; its address without a prefix waits for `netmask`.
    let mut iface: Option<String> = None;
    let mut pending: Option<(std::net::IpAddr, Span)> = None;
    let flush = |iface: &Option<String>,
                 pending: &mut Option<(std::net::IpAddr, Span)>,
                 out: &mut Vec<(String, Spanned<ipnet::IpNet>)>| {
        if let (Some(i), Some((ip, sp))) = (iface, pending.take()) {
            let len = if ip.is_ipv4() { 32 } else { 128 };
            if let Ok(n) = ipnet::IpNet::new(ip, len) {
                out.push((i.clone(), Spanned::new(n, sp)));
            }
        }
    };
    for (i, raw) in text.split('\n').enumerate() {
        let line = Line {
            file,
            no: i as u32 + 1,
            text: raw,
        };
        let t = raw.split('#').next().unwrap_or("").trim();
        let mut w = t.split_whitespace();
        let Some(k) = w.next() else { continue };
        match k {
            "iface" => {
                flush(&iface, &mut pending, &mut out);
                iface = w.next().map(|s| s.to_string());
            }
            "auto" | "allow-hotplug" | "source" | "source-directory" | "mapping" => {
                flush(&iface, &mut pending, &mut out);
                iface = None;
            }
            "address" => {
                flush(&iface, &mut pending, &mut out);
                let Some(v) = w.next() else { continue };
                let sp = line.span(v);
                if let Some((a, l)) = v.split_once('/') {
                    if let (Ok(ip), Ok(l)) = (crate::addr::parse_ip(a), l.parse::<u8>()) {
                        if let (Some(i), Ok(n)) = (&iface, ipnet::IpNet::new(ip, l)) {
                            out.push((i.clone(), Spanned::new(n, sp)));
                        }
                    }
                } else if let Ok(ip) = crate::addr::parse_ip(v) {
                    pending = Some((ip, sp));
                }
            }
            "netmask" => {
                let Some(v) = w.next() else { continue };
                if let (Some(i), Some((ip, sp))) = (&iface, pending) {
                    let len = match v.parse::<std::net::Ipv4Addr>() {
                        Ok(m)
                            if u32::from(m).leading_ones() + u32::from(m).trailing_zeros()
                                == 32 =>
                        {
                            Some(u32::from(m).leading_ones() as u8)
                        }
                        _ => v.parse::<u8>().ok(),
                    };
                    if let Some(n) = len.and_then(|l| ipnet::IpNet::new(ip, l).ok()) {
                        out.push((i.clone(), Spanned::new(n, sp)));
                        pending = None;
                    }
                }
            }
            _ => {}
        }
    }
    flush(&iface, &mut pending, &mut out);
    out
}

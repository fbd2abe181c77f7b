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

/// Nodes of corosync.conf: `nodelist { node { name: x  ring0_addr: a } }`.
pub fn parse_corosync(file: FileId, text: &str, diags: &mut Diagnostics) -> Vec<NodeDecl> {
    let mut out = Vec::new();
    let mut depth_stack: Vec<String> = Vec::new();
    // The node being read: its name as written, its addresses, its span.
    struct Cur {
        name: Option<Spanned<String>>,
        addresses: Vec<Spanned<ipnet::IpNet>>,
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
                    addresses: Vec::new(),
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
                            Ok(v) => out.push(NodeDecl {
                                name: Spanned::new(v, name.span),
                                backend: None,
                                platform: None,
                                bridges: Vec::new(),
                                addresses: n.addresses,
                                local_network: None,
                                endpoint: None,
                                implicit_bridges: true,
                                span: n.span,
                            }),
                        },
                    }
                }
            }
            continue;
        }
        let Some(n) = cur.as_mut() else { continue };
        let Some((k, v)) = t.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k == "name" {
            n.name = Some(Spanned::new(v.to_string(), line.span(v)));
        } else if k.starts_with("ring") && k.ends_with("_addr") {
            if let Ok(ip) = crate::addr::parse_ip(v) {
                let len = if ip.is_ipv4() { 32 } else { 128 };
                if let Ok(net) = ipnet::IpNet::new(ip, len) {
                    n.addresses.push(Spanned::new(net, line.span(v)));
                }
            }
        }
    }
    out
}

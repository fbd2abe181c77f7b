//! Addresses, prefixes, ranges and names, strictly.

use crate::ast::{AddrItem, AddrSpec, NameRef, Scope, Spanned};
use crate::text::Line;
use ipnet::IpNet;
use rampart_types::{codes, Diagnostic, Diagnostics, Family, IpRange};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Names of aliases, ipsets and groups: a letter, then letters, digits, `-` or `_`.
pub fn valid_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic())
        && s.len() >= 2
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// Does this token look like an address (as opposed to a name)?
pub fn looks_like_address(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit()) || s.contains(':')
}

/// An address problem: code and message (span computed by the caller).
pub struct AddrErr {
    pub code: rampart_types::codes::Code,
    pub msg: String,
    pub hint: Option<String>,
}

fn err(code: rampart_types::codes::Code, msg: impl Into<String>) -> AddrErr {
    AddrErr {
        code,
        msg: msg.into(),
        hint: None,
    }
}

/// One IP address, strictly: dotted quad without leading zeros, or IPv6 without zone id.
pub fn parse_ip(s: &str) -> Result<IpAddr, AddrErr> {
    if s.contains('%') {
        return Err(AddrErr {
            code: codes::ZONE_ID,
            msg: format!("`{s}` carries an IPv6 zone id, which a firewall rule cannot match"),
            hint: Some(format!(
                "drop the zone: `{}`",
                s.split('%').next().unwrap_or("")
            )),
        });
    }
    if s.contains(':') {
        return s.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| {
            err(
                codes::INVALID_ADDRESS,
                format!("`{s}` is not a valid IPv6 address"),
            )
        });
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4
        || parts
            .iter()
            .any(|p| p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(err(
            codes::INVALID_ADDRESS,
            format!("`{s}` is not a valid IPv4 address"),
        ));
    }
    let mut o = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        let v: u16 = p.parse().unwrap_or(999);
        if v > 255 {
            return Err(err(
                codes::INVALID_ADDRESS,
                format!("`{s}` is not a valid IPv4 address: octet `{p}` is above 255"),
            ));
        }
        if p.len() > 1 && p.starts_with('0') {
            let fixed: Vec<String> = parts
                .iter()
                .map(|q| q.parse::<u16>().unwrap_or(0).to_string())
                .collect();
            return Err(AddrErr {
                code: codes::LEADING_ZERO,
                msg: format!(
                    "`{s}` has a leading zero in octet `{p}` (some tools read it as octal)"
                ),
                hint: Some(format!("write `{}`", fixed.join("."))),
            });
        }
        o[i] = v as u8;
    }
    Ok(IpAddr::V4(Ipv4Addr::from(o)))
}

/// `addr/len` or `addr`: returns the address and prefix length.
pub fn parse_prefixed(s: &str) -> Result<(IpAddr, u8), AddrErr> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip = parse_ip(a)?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match p {
        None => max,
        Some(p) => {
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(
                    codes::INVALID_ADDRESS,
                    format!("`{s}`: `/{p}` is not a prefix length"),
                ));
            }
            let n: u16 = p.parse().unwrap_or(999);
            if n > max as u16 {
                return Err(err(
                    codes::INVALID_ADDRESS,
                    format!("`{s}`: prefix /{n} is longer than {max} bits"),
                ));
            }
            n as u8
        }
    };
    Ok((ip, len))
}

/// A network for a rule or set: host bits are cleared with a warning that
/// says what it becomes. Returns the network.
pub fn parse_net(line: &Line, tok: &str, diags: &mut Diagnostics) -> Option<IpNet> {
    match parse_prefixed(tok) {
        Ok((ip, len)) => {
            let net = IpNet::new(ip, len).ok()?;
            let trunc = net.trunc();
            if trunc.addr() != ip {
                diags.push(
                    Diagnostic::new(
                        codes::HOST_BITS_SET,
                        format!("`{tok}` has host bits set; it is read as `{trunc}`"),
                    )
                    .at(line.span(tok))
                    .label(format!("becomes {trunc}"))
                    .hint(format!("write `{trunc}`, or `{ip}` for the single host")),
                );
            }
            warn_v4_mapped(line, tok, trunc.addr(), trunc.prefix_len(), diags);
            Some(trunc)
        }
        Err(e) => {
            push_err(line, tok, e, diags);
            None
        }
    }
}

/// `::ffff:1.2.3.4` (or a network inside `::ffff:0:0/96`): no packet the
/// firewall sees carries one (IPv4 traffic is IPv4 in the kernel, and IPv6
/// packets do not carry mapped addresses on the wire), so a rule or set
/// entry with it never matches. Warned at the token (E0210).
pub fn warn_v4_mapped(line: &Line, tok: &str, ip: IpAddr, len: u8, diags: &mut Diagnostics) {
    let IpAddr::V6(v6) = ip else { return };
    let Some(v4) = v6.to_ipv4_mapped() else {
        return;
    };
    diags.push(
        Diagnostic::new(
            codes::V4_MAPPED_V6,
            format!("`{tok}` is an IPv4-mapped IPv6 address; it never matches"),
        )
        .at(line.span(tok))
        .label("IPv4-mapped")
        .note(
            "the kernel filters IPv4 traffic as IPv4, and IPv6 packets on the wire \
             do not carry IPv4-mapped addresses",
        )
        .hint(if len >= 128 {
            format!("write the IPv4 address `{v4}`")
        } else {
            format!("write the IPv4 network `{v4}/{}`", len.saturating_sub(96))
        }),
    );
}

pub fn push_err(line: &Line, tok: &str, e: AddrErr, diags: &mut Diagnostics) {
    let mut d = Diagnostic::new(e.code, e.msg).at(line.span(tok));
    if let Some(h) = e.hint {
        d = d.hint(h);
    }
    diags.push(d);
}

/// A name with an optional `dc/` or `guest/` scope.
pub fn parse_name_ref(
    line: &Line,
    tok: &str,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<NameRef> {
    let (scope, name) = match tok.split_once('/') {
        Some(("dc", n)) => (Scope::Dc, n),
        Some(("guest", n)) => (Scope::Guest, n),
        Some((s, _)) => {
            diags.push(
                Diagnostic::new(
                    codes::UNKNOWN_SCOPE,
                    format!("unknown scope `{s}/` in `{tok}`"),
                )
                .at(line.span(&tok[..s.len()]))
                .hint("scopes are `dc/` (cluster.fw) and `guest/` (the guest's own file)"),
            );
            return None;
        }
        None => (Scope::Auto, tok),
    };
    if !valid_name(name) {
        diags.push(
            Diagnostic::new(
                codes::ILLEGAL_NAME,
                format!("`{name}` is not a valid {what} name"),
            )
            .at(line.span(name))
            .note("names start with a letter and hold at least two of [A-Za-z0-9_-]"),
        );
        return None;
    }
    Some(NameRef {
        scope,
        name: name.to_string(),
        span: line.span(tok),
    })
}

/// One element of an address list: IP, CIDR, range, or alias name.
pub fn parse_addr_item(line: &Line, tok: &str, diags: &mut Diagnostics) -> Option<AddrItem> {
    if !looks_like_address(tok) {
        return parse_name_ref(line, tok, "alias", diags).map(AddrItem::Alias);
    }
    if let Some((a, b)) = tok.split_once('-') {
        if !a.contains('/') && !b.contains('/') {
            let ia = parse_ip(a);
            let ib = parse_ip(b);
            let (ia, ib) = match (ia, ib) {
                (Ok(x), Ok(y)) => (x, y),
                (Err(e), _) => {
                    push_err(line, a, e, diags);
                    return None;
                }
                (_, Err(e)) => {
                    push_err(line, b, e, diags);
                    return None;
                }
            };
            if Family::of(&ia) != Family::of(&ib) {
                diags.push(
                    Diagnostic::new(
                        codes::MIXED_FAMILIES,
                        format!("range `{tok}` mixes IPv4 and IPv6"),
                    )
                    .at(line.span(tok)),
                );
                return None;
            }
            if ia > ib {
                diags.push(
                    Diagnostic::new(
                        codes::BACKWARDS_RANGE,
                        format!("range `{tok}` runs backwards"),
                    )
                    .at(line.span(tok))
                    .label("start is above end")
                    .hint(format!("write `{b}-{a}`")),
                );
                return None;
            }
            warn_v4_mapped(line, a, ia, 128, diags);
            if ib != ia {
                warn_v4_mapped(line, b, ib, 128, diags);
            }
            return Some(AddrItem::Range(IpRange::new(ia, ib)));
        }
    }
    parse_net(line, tok, diags).map(|n| AddrItem::Range(IpRange::from_net(&n)))
}

/// `-source`/`-dest` value: `+set`, or a comma list of addresses and aliases.
pub fn parse_addr_spec(line: &Line, tok: &str, diags: &mut Diagnostics) -> Option<AddrSpec> {
    if let Some(set) = tok.strip_prefix('+') {
        if set.contains(',') {
            diags.push(
                Diagnostic::new(
                    codes::INVALID_ADDRESS,
                    format!("an ipset reference stands alone; `{tok}` is a list"),
                )
                .at(line.span(tok))
                .hint("put the other addresses into the ipset"),
            );
            return None;
        }
        return parse_name_ref(line, set, "ipset", diags).map(AddrSpec::Set);
    }
    let mut items = Vec::new();
    let mut ok = true;
    let mut fam: Option<(Family, &str)> = None;
    let mut off = 0usize;
    for part in tok.split(',') {
        let start = off;
        off += part.len() + 1;
        let part_slice = &tok[start..start + part.len()];
        if part.is_empty() {
            let sp = if tok.is_empty() {
                line.span(tok)
            } else {
                let pos = if start < tok.len() { start } else { start - 1 };
                line.span_at(line.offset(tok) + pos, 1)
            };
            diags.push(
                Diagnostic::new(
                    codes::EMPTY_LIST_ELEMENT,
                    format!("empty element in the list `{tok}`"),
                )
                .at(sp)
                .label("empty or doubled comma"),
            );
            ok = false;
            continue;
        }
        if part.starts_with('+') {
            diags.push(
                Diagnostic::new(
                    codes::INVALID_ADDRESS,
                    "an ipset reference cannot be part of a list",
                )
                .at(line.span(part_slice))
                .hint("put the other addresses into the ipset"),
            );
            ok = false;
            continue;
        }
        match parse_addr_item(line, part_slice, diags) {
            Some(item) => {
                if let AddrItem::Range(r) = &item {
                    match fam {
                        Some((f, first)) if f != r.family() => {
                            diags.push(
                                Diagnostic::new(
                                    codes::MIXED_FAMILIES,
                                    "IPv4 and IPv6 mixed in one address list",
                                )
                                .at(line.span(part_slice))
                                .label(format!("{} after {} `{first}`", r.family(), f))
                                .hint("write one rule per family"),
                            );
                            ok = false;
                        }
                        None => fam = Some((r.family(), part_slice)),
                        _ => {}
                    }
                }
                items.push(Spanned::new(item, line.span(part_slice)));
            }
            None => ok = false,
        }
    }
    if ok {
        Some(AddrSpec::List(items))
    } else {
        None
    }
}

/// An interface address from site.toml or a guest .conf (`192.0.2.10/24`):
/// host bits are expected here and kept.
pub fn parse_iface_addr(s: &str) -> Result<IpNet, AddrErr> {
    let (ip, len) = parse_prefixed(s)?;
    IpNet::new(ip, len).map_err(|_| {
        err(
            codes::INVALID_ADDRESS,
            format!("`{s}` is not a valid address"),
        )
    })
}

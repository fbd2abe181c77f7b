//! The firewall log prefix, in pve-firewall's format so Proxmox's log
//! daemon (pvefw-logger) and rampart's agent read it alike:
//!
//! ```text
//! :VMID:LEVEL:CHAIN: MSG
//! :0:6:PVEFW-HOST-IN: DROP: cluster.fw:78
//! :100:4:tap100i0-IN: policy DROP: auto:policy_in DROP
//! ```
//!
//! VMID is the guest (0 for the node), LEVEL the syslog severity digit,
//! CHAIN Proxmox's chain name (at most 28 bytes, no `:` or space), and MSG
//! what pve-firewall writes there (`ACTION: ` for a rule, `policy ACTION: `
//! for a chain policy) followed by the rule's origin, which rampart adds so
//! a log line leads back to the line of the file that logged it. Both
//! backends build the prefix here; the agent parses it here. Pure.

/// Longest chain name pvefw-logger accepts in a prefix.
pub const CHAIN_MAX: usize = 28;

/// Proxmox's chain names, by the place a rule sits.
pub const HOST_IN: &str = "PVEFW-HOST-IN";
pub const HOST_OUT: &str = "PVEFW-HOST-OUT";
pub const HOST_FORWARD: &str = "PVEFW-HOST-FORWARD";

/// A guest NIC's chain: `tap100i0-IN` / `veth200i0-OUT` (pve-firewall's
/// `$iface-$direction`).
pub fn nic_chain(ifname: &str, out: bool) -> String {
    format!("{ifname}-{}", if out { "OUT" } else { "IN" })
}

/// A prefix, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix {
    pub vmid: u32,
    /// Syslog severity, 0-7.
    pub level: u8,
    pub chain: String,
    /// What pve-firewall writes before the colon: `DROP`, `policy DROP`.
    pub verdict: String,
    /// rampart's addition after it (`cluster.fw:78`); may be cut short.
    pub origin: String,
}

/// Build the prefix, cut to `max` bytes (the backend's limit: nft 127,
/// iptables' NFLOG 63). The cut falls in the origin first; the prefix keeps
/// its trailing space so the packet fields that follow stay apart.
pub fn prefix(
    vmid: u32,
    level: u8,
    chain: &str,
    verdict: &str,
    origin: &str,
    max: usize,
) -> String {
    let clean =
        |s: &str| -> String { s.chars().filter(|c| *c != '"' && !c.is_control()).collect() };
    let mut p = format!(":{vmid}:{}:{chain}: {}: ", level.min(7), clean(verdict));
    if !origin.is_empty() {
        p.push_str(&clean(origin));
        p.push(' ');
    }
    if p.len() > max {
        let mut cut = max.saturating_sub(1);
        while !p.is_char_boundary(cut) {
            cut -= 1;
        }
        p.truncate(cut);
        p.push(' ');
    }
    p
}

/// Parse a prefix as pvefw-logger does (`:` digits `:` a level 0-7 `:` a
/// chain of 1-28 bytes without `:` or space, then `: `); `None` for any
/// other text (another tool's prefix).
pub fn parse(p: &str) -> Option<Prefix> {
    let rest = p.strip_prefix(':')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let vmid: u32 = if digits == 0 {
        0
    } else {
        rest[..digits].parse().ok()?
    };
    let rest = rest[digits..].strip_prefix(':')?;
    let level = match rest.as_bytes() {
        [l @ b'0'..=b'7', b':', ..] => l - b'0',
        _ => return None,
    };
    let rest = &rest[2..];
    let end = rest.find([':', ' ']).unwrap_or(rest.len());
    let chain = &rest[..end];
    if chain.is_empty() || chain.len() > CHAIN_MAX {
        return None;
    }
    let msg = rest[end..].strip_prefix(": ")?;
    let (verdict, origin) = match msg.split_once(": ") {
        Some((v, o)) => (v, o.trim_end()),
        None => (msg.trim_end().trim_end_matches(':'), ""),
    };
    Some(Prefix {
        vmid,
        level,
        chain: chain.to_string(),
        verdict: verdict.to_string(),
        origin: origin.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses_proxmox_prefixes() {
        let p = prefix(0, 6, HOST_IN, "DROP", "cluster.fw:78", 127);
        assert_eq!(p, ":0:6:PVEFW-HOST-IN: DROP: cluster.fw:78 ");
        let q = parse(&p).unwrap();
        assert_eq!(
            (
                q.vmid,
                q.level,
                q.chain.as_str(),
                q.verdict.as_str(),
                q.origin.as_str()
            ),
            (0, 6, "PVEFW-HOST-IN", "DROP", "cluster.fw:78")
        );
        let p = prefix(
            100,
            4,
            &nic_chain("tap100i0", false),
            "policy DROP",
            "",
            127,
        );
        assert_eq!(p, ":100:4:tap100i0-IN: policy DROP: ");
        let q = parse(&p).unwrap();
        assert_eq!((q.verdict.as_str(), q.origin.as_str()), ("policy DROP", ""));
        // pve-firewall's own prefixes parse too.
        let q = parse(":117:6:tap117i0-IN: policy REJECT: ").unwrap();
        assert_eq!((q.vmid, q.chain.as_str()), (117, "tap117i0-IN"));
    }

    #[test]
    fn cuts_to_the_limit_in_the_origin() {
        let p = prefix(
            100,
            6,
            "tap100i0-OUT",
            "ACCEPT",
            "cluster.fw:52 via group web at 100.fw:23",
            63,
        );
        assert!(p.len() <= 63, "{p}");
        assert!(
            p.starts_with(":100:6:tap100i0-OUT: ACCEPT: cluster.fw:52"),
            "{p}"
        );
        assert!(p.ends_with(' '));
        assert_eq!(parse(&p).unwrap().verdict, "ACCEPT");
    }

    #[test]
    fn other_prefixes_are_not_ours() {
        for p in [
            "DROP ",
            ":x:6:c: DROP: ",
            ":0:8:c: DROP: ",
            ":0:6:: DROP: ",
            ":0:6:c DROP: ",
            ":0:6:a-chain-name-longer-than-28-bytes: DROP: ",
            ":0:host-in:6: DROP: ",
        ] {
            assert_eq!(parse(p), None, "{p}");
        }
    }
}

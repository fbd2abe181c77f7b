//! Sysctl ordering: changes that close the host are applied *before* the new
//! ruleset, changes that open it *after*, so there is no moment where the
//! host is more open than both the old and the new state.

use std::collections::BTreeMap;

/// When a sysctl change runs relative to the ruleset transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Tightens: runs before the ruleset.
    Before,
    /// Relaxes, or unknown: runs after the ruleset.
    After,
}

/// How restrictive a value of a known key is (higher = more closed), or
/// `None` for keys whose direction rampart does not know.
fn strictness(key: &str, value: &str) -> Option<i64> {
    let leaf = key.rsplit(['.', '/']).next().unwrap_or(key);
    let v: i64 = value.trim().parse().ok()?;
    // Keys where turning it on opens the host (forwarding, redirects, ...).
    const OPENING: &[&str] = &[
        "ip_forward",
        "forwarding",
        "accept_redirects",
        "secure_redirects",
        "send_redirects",
        "accept_source_route",
        "proxy_arp",
        "proxy_ndp",
        "ip_nonlocal_bind",
        "nf_conntrack_tcp_loose",
        "route_localnet",
    ];
    // Keys where turning it on closes the host (filtering, hardening).
    const CLOSING: &[&str] = &[
        "tcp_syncookies",
        "icmp_echo_ignore_all",
        "icmp_echo_ignore_broadcasts",
        "bridge-nf-call-iptables",
        "bridge-nf-call-ip6tables",
        "bridge-nf-call-arptables",
        "log_martians",
    ];
    if leaf == "rp_filter" {
        // 0 off, 2 loose, 1 strict.
        return Some(match v {
            0 => 0,
            2 => 1,
            _ => 2,
        });
    }
    if OPENING.contains(&leaf) {
        return Some(-(v.min(1)));
    }
    if CLOSING.contains(&leaf) {
        return Some(v.min(1));
    }
    None
}

/// Phase of changing `key` from `old` to `new`.
pub fn phase(key: &str, old: Option<&str>, new: &str) -> Phase {
    match (old.and_then(|o| strictness(key, o)), strictness(key, new)) {
        (Some(o), Some(n)) if n > o => Phase::Before,
        _ => Phase::After,
    }
}

/// Ordered sysctl writes: (key, value).
pub type Changes = Vec<(String, String)>;

/// Split the changes `target` needs (given `current` values) into the ones
/// that run before and after the ruleset. Keys already at their value are
/// left out.
pub fn order(
    current: &BTreeMap<String, String>,
    target: &BTreeMap<String, String>,
) -> (Changes, Changes) {
    let mut before = Vec::new();
    let mut after = Vec::new();
    for (k, v) in target {
        let old = current.get(k).map(String::as_str);
        if old.map(str::trim) == Some(v.trim()) {
            continue;
        }
        match phase(k, old, v) {
            Phase::Before => before.push((k.clone(), v.clone())),
            Phase::After => after.push((k.clone(), v.clone())),
        }
    }
    (before, after)
}

/// A key rampart will write: dotted or slashed path characters only.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && !key.contains("..")
        && !key.starts_with(['.', '/'])
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
}

/// A value rampart will write: one line, printable.
pub fn valid_value(v: &str) -> bool {
    !v.is_empty()
        && v.chars()
            .all(|c| c == ' ' || c == '\t' || c.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_off_is_before_on_is_after() {
        assert_eq!(phase("net.ipv4.ip_forward", Some("1"), "0"), Phase::Before);
        assert_eq!(phase("net.ipv4.ip_forward", Some("0"), "1"), Phase::After);
        assert_eq!(
            phase("net.ipv6.conf.all.forwarding", Some("1"), "0"),
            Phase::Before
        );
        assert_eq!(
            phase("net.ipv4.conf.all.rp_filter", Some("2"), "1"),
            Phase::Before
        );
        assert_eq!(
            phase("net.ipv4.conf.all.rp_filter", Some("1"), "2"),
            Phase::After
        );
        assert_eq!(
            phase("net.bridge.bridge-nf-call-iptables", Some("0"), "1"),
            Phase::Before
        );
        assert_eq!(phase("net.core.somaxconn", Some("1"), "2"), Phase::After);
    }

    #[test]
    fn order_skips_unchanged() {
        let cur: BTreeMap<_, _> = [("net.ipv4.ip_forward".to_string(), "1".to_string())].into();
        let tgt: BTreeMap<_, _> = [
            ("net.ipv4.ip_forward".to_string(), "1".to_string()),
            ("net.ipv4.conf.all.rp_filter".to_string(), "1".to_string()),
        ]
        .into();
        let (b, a) = order(&cur, &tgt);
        assert!(b.is_empty());
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn keys_are_checked() {
        assert!(valid_key("net.ipv4.conf.eth0/100.forwarding"));
        assert!(!valid_key("../../etc/passwd"));
        assert!(!valid_key("net.ipv4;rm"));
        assert!(!valid_value("1\n2"));
    }
}

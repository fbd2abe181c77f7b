//! Network vocabulary: families, protocols, ports, ranges, actions.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
    pub fn both() -> [Family; 2] {
        [Family::V4, Family::V6]
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
    Forward,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::In => "IN",
            Direction::Out => "OUT",
            Direction::Forward => "FORWARD",
        })
    }
}

/// A rule's action, and a packet's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    Accept,
    Drop,
    Reject,
}

pub type Verdict = Action;

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Accept => "ACCEPT",
            Action::Drop => "DROP",
            Action::Reject => "REJECT",
        })
    }
}

impl std::str::FromStr for Action {
    type Err = ();
    /// Case-insensitive, as pve-firewall reads it.
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_uppercase().as_str() {
            "ACCEPT" => Ok(Action::Accept),
            "DROP" => Ok(Action::Drop),
            "REJECT" => Ok(Action::Reject),
            _ => Err(()),
        }
    }
}

/// An IP protocol as a rule names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// Any other protocol by number, with the name it was written as
    /// (`gre`, `esp`, `47`, ...).
    Other {
        number: u8,
        name: String,
    },
}

impl Proto {
    pub fn number(&self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Icmp => 1,
            Proto::Icmpv6 => 58,
            Proto::Other { number, .. } => *number,
        }
    }
    /// Protocols that carry ports (tcp, udp, udplite, dccp, sctp).
    pub fn has_ports(&self) -> bool {
        matches!(self.number(), 6 | 17 | 33 | 132 | 136)
    }
    /// The family a protocol forces, if any (icmp: IPv4, icmpv6: IPv6).
    pub fn family(&self) -> Option<Family> {
        match self {
            Proto::Icmp => Some(Family::V4),
            Proto::Icmpv6 => Some(Family::V6),
            _ => None,
        }
    }
    pub fn name(&self) -> &str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Icmpv6 => "icmpv6",
            Proto::Other { name, .. } => name,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An inclusive port range; a single port has `lo == hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn single(p: u16) -> Self {
        PortRange { lo: p, hi: p }
    }
    pub fn new(lo: u16, hi: u16) -> Self {
        PortRange { lo, hi }
    }
    pub fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
}

impl fmt::Display for PortRange {
    /// `22` or `5900-5999` (nft style).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// An inclusive address range of one family. A CIDR is a range too
/// ([`IpRange::from_net`]); keep the CIDR form where there is one
/// ([`IpRange::as_net`]) so output stays readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IpRange {
    pub start: IpAddr,
    pub end: IpAddr,
}

impl IpRange {
    pub fn new(start: IpAddr, end: IpAddr) -> Self {
        debug_assert_eq!(Family::of(&start), Family::of(&end));
        IpRange { start, end }
    }
    pub fn host(a: IpAddr) -> Self {
        IpRange { start: a, end: a }
    }
    pub fn from_net(n: &ipnet::IpNet) -> Self {
        IpRange {
            start: n.network(),
            end: n.broadcast(),
        }
    }
    pub fn family(&self) -> Family {
        Family::of(&self.start)
    }
    pub fn contains(&self, a: &IpAddr) -> bool {
        Family::of(a) == self.family() && self.start <= *a && *a <= self.end
    }
    /// The CIDR this range is exactly, if it is one.
    pub fn as_net(&self) -> Option<ipnet::IpNet> {
        let (s, e) = (to_u128(&self.start), to_u128(&self.end));
        let bits = match self.family() {
            Family::V4 => 32,
            Family::V6 => 128,
        };
        let size = e.wrapping_sub(s).wrapping_add(1);
        let host_bits = if size == 0 {
            bits
        } else if size.is_power_of_two() {
            size.trailing_zeros()
        } else {
            return None;
        };
        if host_bits < 128 && s & ((1u128 << host_bits) - 1) != 0 {
            return None;
        }
        ipnet::IpNet::new(self.start, (bits - host_bits) as u8).ok()
    }
}

impl fmt::Display for IpRange {
    /// `10.0.0.1`, `10.0.0.0/24` or `10.0.0.1-10.0.0.10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else if let Some(n) = self.as_net() {
            write!(f, "{n}")
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

fn to_u128(a: &IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(*v) as u128,
        IpAddr::V6(v) => u128::from(*v),
    }
}

/// Log levels of `-log` and the `log_level_*` options, syslog names.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    #[default]
    Nolog,
    Emerg,
    Alert,
    Crit,
    Err,
    Warning,
    Notice,
    Info,
    Debug,
}

impl LogLevel {
    pub const ALL: [(&'static str, LogLevel); 9] = [
        ("nolog", LogLevel::Nolog),
        ("emerg", LogLevel::Emerg),
        ("alert", LogLevel::Alert),
        ("crit", LogLevel::Crit),
        ("err", LogLevel::Err),
        ("warning", LogLevel::Warning),
        ("notice", LogLevel::Notice),
        ("info", LogLevel::Info),
        ("debug", LogLevel::Debug),
    ];
    pub fn parse(s: &str) -> Option<LogLevel> {
        Self::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, l)| *l)
    }
    pub fn name(&self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, l)| l == self)
            .map(|(n, _)| *n)
            .unwrap_or("nolog")
    }
    /// The syslog severity number (0 = emerg ... 7 = debug); `None` for nolog.
    pub fn syslog(&self) -> Option<u8> {
        match self {
            LogLevel::Nolog => None,
            l => Some(*l as u8 - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn range_as_net() {
        let r = IpRange::new("10.0.0.0".parse().unwrap(), "10.0.0.255".parse().unwrap());
        assert_eq!(r.to_string(), "10.0.0.0/24");
        let r = IpRange::new("10.0.0.1".parse().unwrap(), "10.0.0.10".parse().unwrap());
        assert_eq!(r.to_string(), "10.0.0.1-10.0.0.10");
        let r = IpRange::new(
            "::".parse().unwrap(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
        );
        assert_eq!(r.to_string(), "::/0");
        let r = IpRange::new(
            "0.0.0.0".parse().unwrap(),
            "255.255.255.255".parse().unwrap(),
        );
        assert_eq!(r.to_string(), "0.0.0.0/0");
    }
    #[test]
    fn log_levels() {
        assert_eq!(LogLevel::parse("WARNING"), Some(LogLevel::Warning));
        assert_eq!(LogLevel::Emerg.syslog(), Some(0));
        assert_eq!(LogLevel::Debug.syslog(), Some(7));
    }
}

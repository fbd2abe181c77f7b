//! Firewall rules a node needs for rampart's profiles (`[[lockdown]]`,
//! `[[egress]]` in `site.toml`), in a backend-neutral form: the profile
//! crate produces them, the nftables and iptables backends render them.
//! Every item carries its origin (`site.toml:LINE`), written into the rule
//! comment.

use crate::names::DevName;
use crate::net::{IpRange, PortRange};

/// Everything the profiles add to one node's firewall.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FirewallAdditions {
    /// VPN-only management (document 000).
    pub lockdown: Option<Lockdown>,
    /// Packets to the host dropped before any other host rule (document
    /// 004: everything from the tunnel and from the egress guests).
    pub host_drop: Vec<HostDrop>,
    /// Forwarded flows accepted before the node's forward policy.
    pub forward: Vec<ForwardAccept>,
    /// Source NAT to the output interface's address (a gateway).
    pub masquerade: Vec<Masquerade>,
}

impl FirewallAdditions {
    pub fn is_empty(&self) -> bool {
        self.lockdown.is_none()
            && self.host_drop.is_empty()
            && self.forward.is_empty()
            && self.masquerade.is_empty()
    }
}

/// A management service: a protocol and its ports (ICMP: echo request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Service {
    Tcp(Vec<PortRange>),
    Udp(Vec<PortRange>),
    /// ICMP / ICMPv6 echo request (ping).
    Ping,
}

/// Where new connections to the management services may come from: an
/// input interface (none = any) and source addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    pub iif: Option<DevName>,
    /// Disjoint source ranges of either family.
    pub sources: Vec<IpRange>,
    pub origin: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lockdown {
    pub services: Vec<Service>,
    /// Accepted paths (the management VPN; named addresses).
    pub paths: Vec<Path>,
    /// Refuse every other new connection to the host, after the node's own
    /// rules and the WireGuard listen ports (neighbour discovery excepted).
    pub refuse_rest: bool,
    /// `site.toml:LINE` of the `[[lockdown]]`.
    pub origin: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostDrop {
    pub iif: Option<DevName>,
    /// Empty = any source.
    pub sources: Vec<IpRange>,
    pub origin: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardAccept {
    pub iif: DevName,
    pub oif: DevName,
    /// Empty = any.
    pub sources: Vec<IpRange>,
    /// Empty = any.
    pub dests: Vec<IpRange>,
    pub origin: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Masquerade {
    pub oif: DevName,
    pub sources: Vec<IpRange>,
    pub origin: String,
}

//! Names a site gives things, as validated identifiers.
//!
//! Every name in a site is untrusted input (docs/trust-model.md): it is
//! written by whoever can write `site.toml` or push a site to etcd, and it
//! ends up in nftables scripts, iptables-restore input, wg-quick files,
//! sysctl keys, `ip` arguments, file paths, etcd keys and namespace names.
//! Each kind of name has one rule here, checked once by the parser that
//! reads it; a value of one of the types below has passed its rule.
//!
//! [`path_component`] is the one gate for a file path built from a name.

use crate::codes::{self, Code};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::fmt;

/// What a name names; decides its rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NameKind {
    /// A node: a host name (RFC 1123 labels).
    Node,
    /// A Linux network interface or bridge.
    Iface,
    /// The interface of a `.fw` rule (`-i`): a host interface, possibly
    /// with Proxmox's `+` wildcard, or a guest NIC (`net0`).
    RuleIface,
    /// A guest NIC: `net` and its number (`net0`).
    Nic,
    /// A WireGuard interface (wg-quick's `[a-zA-Z0-9_=+.-]{1,15}`).
    WgIface,
    /// Any network device a route, `ip rule` or firewall rule names: a
    /// bridge, a WireGuard interface, a WAN interface. The wider of the two
    /// rules above, so every [`IfaceName`] and [`WgIfaceName`] is one.
    Dev,
    /// A Proxmox ipset.
    IpSet,
    /// A Proxmox alias.
    Alias,
    /// A Proxmox security group.
    Group,
    /// A `[[wireguard]]` network.
    WgNetwork,
    /// A member of a WireGuard network.
    WgPeer,
    /// A `[[client]]` (road warrior).
    WgClient,
    /// A participant of a WireGuard network: a node (by its node name), a
    /// guest member or a client. Either rule; every [`NodeName`],
    /// [`WgPeerName`] and [`WgClientName`] is one.
    Participant,
    /// A lab (namespace prefix).
    Lab,
    /// The `[site] name`.
    Site,
    /// A kernel set (nft set, ipset) rampart names after a site's ipset:
    /// `dc-trusted`, `g100-ipfilter-net0`, `n-pve1-mgmt`, or `s7` when that
    /// would not fit. Never written by a site; derived by the resolver.
    KernelSet,
}

/// The longest ipset name accepted (Proxmox's own limit). A name too long
/// for the kernel (31 bytes with rampart's prefix) is not refused: the
/// resolver derives a short kernel name by hashing, as Proxmox does.
pub const MAX_IPSET_NAME: usize = 64;
/// The longest alias name accepted (Proxmox: 64).
pub const MAX_ALIAS_NAME: usize = 64;
/// The longest security group name the parser accepts (the resolver then
/// holds them to 18 bytes: they become chain names).
pub const MAX_GROUP_NAME: usize = 64;
/// Linux's IFNAMSIZ - 1.
pub const MAX_IFNAME: usize = 15;
/// The longest node name: a DNS name.
pub const MAX_NODE_NAME: usize = 253;
/// The longest kernel set name rampart uses (ipset's limit, 31 bytes; nft
/// allows more).
pub const MAX_KERNEL_SET_NAME: usize = 31;
/// The longest label-style name (WireGuard networks, peers, clients, labs, the site).
pub const MAX_LABEL_NAME: usize = 63;

impl NameKind {
    /// What the name is, for a message: "node name".
    pub fn what(self) -> &'static str {
        match self {
            NameKind::Node => "node name",
            NameKind::Iface => "interface name",
            NameKind::RuleIface => "interface name",
            NameKind::Nic => "guest NIC name",
            NameKind::WgIface => "WireGuard interface name",
            NameKind::Dev => "device name",
            NameKind::IpSet => "ipset name",
            NameKind::Alias => "alias name",
            NameKind::Group => "security group name",
            NameKind::WgNetwork => "WireGuard network name",
            NameKind::WgPeer => "WireGuard member name",
            NameKind::WgClient => "WireGuard client name",
            NameKind::Participant => "WireGuard participant name",
            NameKind::Lab => "lab name",
            NameKind::Site => "site name",
            NameKind::KernelSet => "kernel set name",
        }
    }

    /// What is allowed, for a note.
    pub fn allowed(self) -> &'static str {
        match self {
            NameKind::Node => {
                "node names are host names: dot-separated labels of 1 to 63 letters, digits and `-`, not starting or ending with `-`, 253 bytes at most"
            }
            NameKind::Iface => {
                "interface names hold 1 to 15 bytes of letters, digits and `_.-`, and are not `.` or `..`"
            }
            NameKind::RuleIface => {
                "rule interfaces hold 1 to 15 bytes of letters, digits and `_.+=@-`, and are not `.` or `..`"
            }
            NameKind::Nic => "guest NICs are `net` and a number of 1 to 10 digits: `net0`",
            NameKind::WgIface => {
                "WireGuard interface names hold 1 to 15 bytes of letters, digits and `_=+.-`, and are not `.` or `..`"
            }
            NameKind::Dev => {
                "device names hold 1 to 15 bytes of letters, digits and `_=+.-`, and are not `.` or `..`"
            }
            NameKind::IpSet => {
                "ipset names start with a letter and hold 2 to 64 of [A-Za-z0-9_-]"
            }
            NameKind::Alias => {
                "alias names start with a letter and hold 2 to 64 of [A-Za-z0-9_-]"
            }
            NameKind::Group => {
                "security group names start with a letter and hold 2 to 64 of [A-Za-z0-9_-] (18 at most to compile)"
            }
            NameKind::KernelSet => "kernel set names hold 1 to 31 of [A-Za-z0-9_-]",
            NameKind::Participant => {
                "WireGuard participants are nodes (host names) or members and clients (1 to 63 of [A-Za-z0-9_.-], starting with a letter or digit)"
            }
            NameKind::WgNetwork | NameKind::WgPeer | NameKind::WgClient | NameKind::Lab | NameKind::Site => {
                "these names start with a letter or digit and hold 1 to 63 of [A-Za-z0-9_.-]"
            }
        }
    }

    fn max_len(self) -> Option<usize> {
        match self {
            NameKind::Node => Some(MAX_NODE_NAME),
            NameKind::Iface
            | NameKind::WgIface
            | NameKind::Dev
            | NameKind::RuleIface
            | NameKind::Nic => Some(MAX_IFNAME),
            NameKind::IpSet => Some(MAX_IPSET_NAME),
            NameKind::Alias => Some(MAX_ALIAS_NAME),
            // Bounded like its siblings; the resolver reports the tighter
            // 18-byte chain-name limit with its own hint.
            NameKind::Group => Some(MAX_GROUP_NAME),
            // Checked by the two rules it is made of.
            NameKind::Participant => None,
            NameKind::KernelSet => Some(MAX_KERNEL_SET_NAME),
            NameKind::WgNetwork
            | NameKind::WgPeer
            | NameKind::WgClient
            | NameKind::Lab
            | NameKind::Site => Some(MAX_LABEL_NAME),
        }
    }

    fn chars_ok(self, s: &str) -> bool {
        let b = s.as_bytes();
        match self {
            NameKind::Node => s.split('.').all(|l| {
                let lb = l.as_bytes();
                !lb.is_empty()
                    && lb.len() <= 63
                    && lb.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                    && lb[0] != b'-'
                    && lb[lb.len() - 1] != b'-'
            }),
            NameKind::Iface => {
                !b.is_empty()
                    && s != "."
                    && s != ".."
                    && b.iter()
                        .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
            }
            NameKind::RuleIface => {
                !b.is_empty()
                    && s != "."
                    && s != ".."
                    && b.iter()
                        .all(|c| c.is_ascii_alphanumeric() || b"_.+=@-".contains(c))
            }
            NameKind::Nic => s.strip_prefix("net").is_some_and(|n| {
                (1..=10).contains(&n.len()) && n.bytes().all(|c| c.is_ascii_digit())
            }),
            NameKind::WgIface | NameKind::Dev => {
                !b.is_empty()
                    && s != "."
                    && s != ".."
                    && b.iter()
                        .all(|c| c.is_ascii_alphanumeric() || b"_=+.-".contains(c))
            }
            NameKind::KernelSet => {
                !b.is_empty()
                    && b.iter()
                        .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
            }
            NameKind::Participant => {
                validate(NameKind::Node, s).is_ok() || validate(NameKind::WgPeer, s).is_ok()
            }
            NameKind::IpSet | NameKind::Alias | NameKind::Group => {
                b.len() >= 2
                    && b[0].is_ascii_alphabetic()
                    && b.iter()
                        .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
            }
            NameKind::WgNetwork
            | NameKind::WgPeer
            | NameKind::WgClient
            | NameKind::Lab
            | NameKind::Site => {
                !b.is_empty()
                    && b[0].is_ascii_alphanumeric()
                    && b.iter()
                        .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
            }
        }
    }
}

/// Why a name was refused: the code (E0407 or E0408), a message quoting the
/// name escaped ([`crate::escape::printable`]), and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameError {
    pub kind: NameKind,
    pub code: Code,
    pub message: String,
    pub allowed: &'static str,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.allowed)
    }
}

impl std::error::Error for NameError {}

impl NameError {
    /// The diagnostic for a refused name written at `span`.
    pub fn diagnostic(&self, span: crate::Span) -> crate::Diagnostic {
        crate::Diagnostic::new(self.code, self.message.clone())
            .at(span)
            .note(self.allowed)
    }
}

/// Check `s` against the rule of `kind`.
pub fn validate(kind: NameKind, s: &str) -> Result<(), NameError> {
    let shown = crate::escape::printable(s);
    if let Some(max) = kind.max_len() {
        if s.len() > max && kind.chars_ok(&s[..floor_boundary(s, max)]) {
            return Err(NameError {
                kind,
                code: codes::NAME_TOO_LONG,
                message: format!(
                    "{} `{shown}` is {} bytes long, more than {max}",
                    kind.what(),
                    s.len()
                ),
                allowed: kind.allowed(),
            });
        }
    }
    let long = kind.max_len().is_some_and(|m| s.len() > m);
    if long || !kind.chars_ok(s) {
        let message = if s.is_empty() {
            format!("empty {}", kind.what())
        } else {
            format!("`{shown}` is not a valid {}", kind.what())
        };
        return Err(NameError {
            kind,
            code: codes::ILLEGAL_NAME,
            message,
            allowed: kind.allowed(),
        });
    }
    Ok(())
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The validated name types: parse a string into one.
pub trait Name: Sized {
    const KIND: NameKind;
    fn parse_name(s: &str) -> Result<Self, NameError>;
}

macro_rules! name_type {
    ($(#[$m:meta])* $t:ident, $kind:expr) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $t(String);

        impl $t {
            /// The rule this type enforces.
            pub const KIND: NameKind = $kind;
            /// Validate and wrap.
            pub fn parse(s: &str) -> Result<Self, NameError> {
                validate(Self::KIND, s)?;
                Ok($t(s.to_string()))
            }
            /// A name written in rampart's own source (`"management"`):
            /// checked like any other; a literal that breaks the rule is a
            /// bug in rampart and panics.
            pub fn from_static(s: &'static str) -> Self {
                Self::derived(s.to_string())
            }
            /// A name rampart composes from names that were already
            /// validated (`ipfilter-net0` from `net0`, `tap100i0` from a
            /// vmid and a NIC number). Still checked: a composition that
            /// can break the rule is a bug in rampart and panics, so a
            /// value of this type has always passed [`validate`].
            pub fn derived(s: String) -> Self {
                match validate(Self::KIND, &s) {
                    Ok(()) => $t(s),
                    Err(e) => panic!("rampart derived a bad {}: {e}", Self::KIND.what()),
                }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Name for $t {
            const KIND: NameKind = $kind;
            fn parse_name(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }

        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        /// An argument of a command (`ip link add NAME`): one argv word.
        impl AsRef<std::ffi::OsStr> for $t {
            fn as_ref(&self) -> &std::ffi::OsStr {
                self.0.as_ref()
            }
        }
        impl Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, o: &str) -> bool {
                self.0 == o
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, o: &&str) -> bool {
                self.0 == *o
            }
        }
        impl PartialEq<String> for $t {
            fn eq(&self, o: &String) -> bool {
                &self.0 == o
            }
        }
        impl PartialEq<$t> for String {
            fn eq(&self, o: &$t) -> bool {
                *self == o.0
            }
        }
        impl PartialEq<$t> for str {
            fn eq(&self, o: &$t) -> bool {
                self == o.0
            }
        }
        impl PartialEq<$t> for &str {
            fn eq(&self, o: &$t) -> bool {
                *self == o.0
            }
        }
        impl std::str::FromStr for $t {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }
        impl TryFrom<String> for $t {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                validate(Self::KIND, &s)?;
                Ok($t(s))
            }
        }
        impl From<$t> for String {
            fn from(n: $t) -> String {
                n.0
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        /// Deserializing validates too (a record read back is input again).
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $t::try_from(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A node's name ([`NameKind::Node`]).
    NodeName,
    NameKind::Node
);
name_type!(
    /// A bridge or other Linux interface ([`NameKind::Iface`]).
    IfaceName,
    NameKind::Iface
);
name_type!(
    /// The interface of a `.fw` rule ([`NameKind::RuleIface`]).
    RuleIfaceName,
    NameKind::RuleIface
);
name_type!(
    /// A guest NIC, `net0` ([`NameKind::Nic`]).
    NicName,
    NameKind::Nic
);
name_type!(
    /// A WireGuard interface ([`NameKind::WgIface`]).
    WgIfaceName,
    NameKind::WgIface
);
name_type!(
    /// A network device of either kind ([`NameKind::Dev`]).
    DevName,
    NameKind::Dev
);

/// A bridge or interface is a device: its rule is narrower.
impl From<IfaceName> for DevName {
    fn from(n: IfaceName) -> DevName {
        DevName(n.0)
    }
}

/// A WireGuard interface is a device: the same rule.
impl From<WgIfaceName> for DevName {
    fn from(n: WgIfaceName) -> DevName {
        DevName(n.0)
    }
}

name_type!(
    /// A Proxmox ipset ([`NameKind::IpSet`]).
    IpSetName,
    NameKind::IpSet
);
name_type!(
    /// A Proxmox alias ([`NameKind::Alias`]).
    AliasName,
    NameKind::Alias
);
name_type!(
    /// A Proxmox security group ([`NameKind::Group`]).
    GroupName,
    NameKind::Group
);
name_type!(
    /// A `[[wireguard]]` network ([`NameKind::WgNetwork`]).
    WgNetworkName,
    NameKind::WgNetwork
);
name_type!(
    /// A WireGuard network member ([`NameKind::WgPeer`]).
    WgPeerName,
    NameKind::WgPeer
);
name_type!(
    /// A road-warrior client ([`NameKind::WgClient`]).
    WgClientName,
    NameKind::WgClient
);
name_type!(
    /// A node, guest member or client of a WireGuard network
    /// ([`NameKind::Participant`]).
    ParticipantName,
    NameKind::Participant
);

impl From<NodeName> for ParticipantName {
    fn from(n: NodeName) -> ParticipantName {
        ParticipantName(n.0)
    }
}
impl From<WgPeerName> for ParticipantName {
    fn from(n: WgPeerName) -> ParticipantName {
        ParticipantName(n.0)
    }
}
/// A client's rule is a member's rule.
impl From<WgClientName> for ParticipantName {
    fn from(n: WgClientName) -> ParticipantName {
        ParticipantName(n.0)
    }
}

name_type!(
    /// A lab ([`NameKind::Lab`]).
    LabName,
    NameKind::Lab
);
name_type!(
    /// The site's name ([`NameKind::Site`]).
    SiteName,
    NameKind::Site
);

/// Names of related kinds compare by their text (a member named like a
/// node is that node; a bridge named in a rule is that bridge).
macro_rules! cross_eq {
    ($($a:ident <=> $b:ident),* $(,)?) => {$(
        impl PartialEq<$b> for $a {
            fn eq(&self, o: &$b) -> bool {
                self.0 == o.0
            }
        }
        impl PartialEq<$a> for $b {
            fn eq(&self, o: &$a) -> bool {
                self.0 == o.0
            }
        }
    )*};
}

cross_eq!(
    NodeName <=> ParticipantName,
    WgPeerName <=> ParticipantName,
    WgClientName <=> ParticipantName,
    IfaceName <=> DevName,
    WgIfaceName <=> DevName,
    IfaceName <=> WgIfaceName,
    RuleIfaceName <=> NicName,
    RuleIfaceName <=> IfaceName,
);

name_type!(
    /// A kernel set rampart derives ([`NameKind::KernelSet`]): built by the
    /// resolver with [`KernelSetName::derived`] or checked with
    /// [`KernelSetName::parse`]; no site writes one.
    KernelSetName,
    NameKind::KernelSet
);

/// A file path component built from a name was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathError(pub String);

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PathError {}

/// The one gate for a file name or directory name built from a name of the
/// site (a node, a client, a network, a lab, a store key segment): `s` is
/// returned only if it is a single normal path component: not empty, not
/// `.` or `..`, no `/`, no NUL, no control character, at most 255 bytes.
pub fn path_component(s: &str) -> Result<&str, PathError> {
    let bad = |why: &str| {
        Err(PathError(format!(
            "`{}` cannot be a file name: {why}",
            crate::escape::printable(s)
        )))
    };
    if s.is_empty() {
        return bad("it is empty");
    }
    if s == "." || s == ".." {
        return bad("it names a directory itself");
    }
    if s.contains('/') {
        return bad("it holds a `/`");
    }
    if s.contains('\0') {
        return bad("it holds a NUL byte");
    }
    if s.chars().any(|c| c.is_control()) {
        return bad("it holds a control character");
    }
    if s.len() > 255 {
        return bad("it is longer than 255 bytes");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_host_names() {
        for ok in ["pve1", "hv-1", "a.b.c", "X", "pve1.example.com"] {
            assert!(NodeName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            "../../trav",
            "a/b",
            "a b",
            "a\nb",
            "a\"b",
            "a{b",
            "a;b",
            "a#b",
            "a\0b",
            "pvé",
            "a_b",
            "..",
        ] {
            let e = NodeName::parse(bad).unwrap_err();
            assert_eq!(e.code, codes::ILLEGAL_NAME, "{bad:?}");
            assert!(
                !e.message.contains('\n') && !e.message.contains('\0'),
                "{}",
                e.message
            );
        }
        let long = "a".repeat(254);
        assert_eq!(
            NodeName::parse(&long).unwrap_err().code,
            codes::ILLEGAL_NAME
        );
        let long = vec!["a".repeat(60); 5].join(".");
        assert_eq!(
            NodeName::parse(&long).unwrap_err().code,
            codes::NAME_TOO_LONG
        );
    }

    #[test]
    fn interface_names() {
        assert!(IfaceName::parse("vmbr0").is_ok());
        assert!(IfaceName::parse("eth0.100").is_ok());
        assert_eq!(
            IfaceName::parse("abcdefghijklmnop").unwrap_err().code,
            codes::NAME_TOO_LONG
        );
        for bad in ["", ".", "..", "a/b", "a+b", "a b", "a\n"] {
            assert!(IfaceName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(WgIfaceName::parse("wg=+0").is_ok());
        assert!(WgIfaceName::parse("..").is_err());
    }

    #[test]
    fn proxmox_names() {
        assert!(IpSetName::parse("management").is_ok());
        assert!(IpSetName::parse(&format!("a{}", "b".repeat(63))).is_ok());
        assert_eq!(
            IpSetName::parse(&format!("a{}", "b".repeat(64)))
                .unwrap_err()
                .code,
            codes::NAME_TOO_LONG
        );
        for bad in ["a", "1ab", "a.b", "a/b", "-ab"] {
            assert!(AliasName::parse(bad).is_err(), "{bad}");
        }
        assert!(GroupName::parse("web-servers").is_ok());
    }

    /// What an attacker would put in a name: every kind refuses all of it,
    /// with E0407 or E0408 and a message that shows the text escaped.
    fn hostile() -> Vec<String> {
        let mut v: Vec<String> = [
            "",
            "a\nb",
            "a\rb",
            "a\"b",
            "a'b",
            "a{b",
            "a}b",
            "a;b",
            "a#b",
            "a/b",
            "..",
            ".",
            "../x",
            "a\0b",
            "a\u{e9}b",
            "\u{202e}ab",
            "a b",
            "a\tb",
            "a\\b",
            "a$b",
            "a`b",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push("a".repeat(300));
        v.push(format!("{}\ntable inet x {{ }}", "a".repeat(10)));
        v
    }

    fn refuses_hostile<N: Name>() {
        for bad in hostile() {
            let e = match N::parse_name(&bad) {
                Ok(_) => panic!("{:?} accepted {bad:?}", N::KIND),
                Err(e) => e,
            };
            assert!(
                e.code == codes::ILLEGAL_NAME || e.code == codes::NAME_TOO_LONG,
                "{:?} {bad:?}: {:?}",
                N::KIND,
                e.code
            );
            // Shown escaped (a tab is left as it is by `printable`).
            assert!(
                !e.message.chars().any(|c| c.is_control() && c != '\t'),
                "{:?}: {:?}",
                N::KIND,
                e.message
            );
            assert_eq!(e.kind, N::KIND);
        }
    }

    #[test]
    fn every_kind_refuses_hostile_text() {
        refuses_hostile::<NodeName>();
        refuses_hostile::<IfaceName>();
        refuses_hostile::<RuleIfaceName>();
        refuses_hostile::<NicName>();
        refuses_hostile::<WgIfaceName>();
        refuses_hostile::<DevName>();
        refuses_hostile::<IpSetName>();
        refuses_hostile::<AliasName>();
        refuses_hostile::<GroupName>();
        refuses_hostile::<WgNetworkName>();
        refuses_hostile::<WgPeerName>();
        refuses_hostile::<WgClientName>();
        refuses_hostile::<ParticipantName>();
        refuses_hostile::<LabName>();
        refuses_hostile::<SiteName>();
        refuses_hostile::<KernelSetName>();
    }

    #[test]
    fn rule_interfaces_and_nics() {
        for ok in ["vmbr0", "eth+", "+", "eth0.100", "wg=0", "a@b", "net0"] {
            assert!(RuleIfaceName::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            RuleIfaceName::parse("abcdefghijklmnop").unwrap_err().code,
            codes::NAME_TOO_LONG
        );
        for ok in ["net0", "net31", "net4294967295"] {
            assert!(NicName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "net",
            "net+5",
            "net-1",
            "net 1",
            "eth0",
            "Net0",
            "net12345678901",
        ] {
            assert!(NicName::parse(bad).is_err(), "{bad}");
        }
        // A NIC is always a valid rule interface (guest rules name NICs).
        assert!(RuleIfaceName::parse(NicName::parse("net4294967295").unwrap().as_str()).is_ok());
    }

    #[test]
    fn devices_participants_and_kernel_sets() {
        assert!(DevName::parse("wg+=0").is_ok());
        assert_eq!(
            DevName::parse("abcdefghijklmnop").unwrap_err().code,
            codes::NAME_TOO_LONG
        );
        // Node names (dotted, long) and member names (underscores) are both
        // participants; a label may start with a digit.
        for ok in [
            "hv1",
            "pve1.example.com",
            "fw_gw",
            "9lives",
            &vec!["a".repeat(60); 4].join("."),
        ] {
            assert!(ParticipantName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["-a", "_a", ".a"] {
            assert!(ParticipantName::parse(bad).is_err(), "{bad}");
        }
        assert!(KernelSetName::parse("g100-ipfilter-net0").is_ok());
        assert_eq!(
            KernelSetName::parse(&"a".repeat(32)).unwrap_err().code,
            codes::NAME_TOO_LONG
        );
        assert!(KernelSetName::parse("dc.trusted").is_err());
    }

    /// The conversions between kinds are sound: the source's rule is
    /// narrower than the target's, over every short string of a telling
    /// alphabet.
    #[test]
    fn conversions_only_widen() {
        let alphabet = ['a', 'Z', '0', '-', '_', '.', '+', '=', '@', '/', ' '];
        let mut words = vec![String::new()];
        for _ in 0..3 {
            let next: Vec<String> = words
                .iter()
                .flat_map(|w| alphabet.iter().map(move |c| format!("{w}{c}")))
                .collect();
            words.extend(next);
        }
        for w in &words {
            let ok = |k: NameKind| validate(k, w).is_ok();
            if ok(NameKind::Iface) || ok(NameKind::WgIface) {
                assert!(ok(NameKind::Dev), "{w:?}");
            }
            if ok(NameKind::Node) || ok(NameKind::WgPeer) || ok(NameKind::WgClient) {
                assert!(ok(NameKind::Participant), "{w:?}");
            }
            if ok(NameKind::Iface) || ok(NameKind::Nic) {
                assert!(ok(NameKind::RuleIface), "{w:?}");
            }
        }
    }

    #[test]
    fn derived_names_are_checked_too() {
        assert_eq!(IpSetName::from_static("management").as_str(), "management");
        assert_eq!(
            IfaceName::derived("tap100i0".to_string()).as_str(),
            "tap100i0"
        );
        let r = std::panic::catch_unwind(|| IfaceName::derived("tap12345678901i0".to_string()));
        assert!(
            r.is_err(),
            "a derived name that breaks its rule is a bug, not a value"
        );
    }

    #[test]
    fn deserializing_validates() {
        use serde::de::value::{Error, StrDeserializer};
        let de = |s: &'static str| StrDeserializer::<Error>::new(s);
        assert_eq!(NodeName::deserialize(de("pve1")).unwrap(), "pve1");
        assert!(NodeName::deserialize(de("../../trav")).is_err());
        assert!(DevName::deserialize(de("a b")).is_err());
        assert!(ParticipantName::deserialize(de("a\nb")).is_err());
    }

    #[test]
    fn path_components() {
        assert_eq!(path_component("pve1"), Ok("pve1"));
        for bad in ["", ".", "..", "../x", "a/b", "a\0b", "a\nb"] {
            assert!(path_component(bad).is_err(), "{bad:?}");
        }
        assert!(path_component(&"a".repeat(256)).is_err());
    }
}

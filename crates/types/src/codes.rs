//! The stable diagnostic codes. One constant per kind of problem; the
//! numbers follow `shared/reference/bad-inputs.md` section by section:
//! E01xx syntax, E02xx addresses, E03xx ports/protocols/macros, E04xx
//! references and names, E05xx policy semantics, E06xx WireGuard, E07xx
//! faults. A code never changes meaning once released; add new ones at the
//! end of their section.

use crate::diag::Severity;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code {
    pub code: &'static str,
    pub severity: Severity,
    /// One line saying what the code is about (for `rampart explain` and docs).
    pub title: &'static str,
}

const fn e(code: &'static str, title: &'static str) -> Code {
    Code {
        code,
        severity: Severity::Error,
        title,
    }
}
const fn w(code: &'static str, title: &'static str) -> Code {
    Code {
        code,
        severity: Severity::Warning,
        title,
    }
}

// --- Syntax (bad-inputs 1-7) ---
pub const UNKNOWN_SECTION: Code = e("E0101", "unknown section");
pub const SECTION_NOT_ALLOWED: Code = e("E0102", "section not allowed in this file");
pub const UNKNOWN_OPTION: Code = e("E0103", "unknown option key");
pub const OUTSIDE_SECTION: Code = e("E0104", "rule or entry outside any section");
pub const DUPLICATE_OPTION: Code = e("E0105", "option given twice");
pub const DUPLICATE_SECTION: Code = e("E0106", "section given twice");
pub const EMPTY_LIST_ELEMENT: Code = e("E0107", "empty element in a list (empty or doubled comma)");
pub const BAD_OPTION_VALUE: Code = e("E0108", "invalid option value");
pub const BOM: Code = w("E0109", "byte-order mark (ignored)");
pub const NUL_BYTE: Code = e("E0110", "NUL byte in file");
pub const INVALID_UTF8: Code = e("E0111", "file is not valid UTF-8");
pub const CRLF: Code = w("E0112", "CRLF line endings (read as LF)");
pub const BARE_CR: Code = e("E0113", "carriage return without line feed");
pub const LINE_TOO_LONG: Code = e("E0114", "line too long");
pub const EMPTY_FILE: Code = w("E0115", "empty file");
pub const MALFORMED_RULE: Code = e("E0116", "malformed rule");
pub const UNKNOWN_RULE_OPTION: Code = e("E0117", "unknown rule option");
pub const MISSING_OPTION_VALUE: Code = e("E0118", "rule option without a value");
pub const DUPLICATE_RULE_OPTION: Code = e("E0119", "rule option given twice");
pub const DIRECTION_NOT_ALLOWED: Code = e("E0120", "direction or action not allowed here");
pub const UNKNOWN_ACTION: Code = e("E0121", "unknown action");
pub const MALFORMED_SECTION: Code = e("E0122", "malformed section header");
pub const SITE_TOML: Code = e("E0123", "site.toml is invalid");
pub const GUEST_CONF: Code = e("E0124", "malformed guest configuration line");
pub const MISSING_SITE_FILE: Code = e("E0125", "required site file is missing");
pub const MALFORMED_ENTRY: Code = e("E0126", "malformed alias or ipset entry");
pub const OPTION_WITHOUT_EFFECT: Code = w("E0127", "option has no effect in rampart");
pub const ENABLE_TIMESTAMP: Code = w("E0128", "cluster `enable` holds a timestamp");

// --- Addresses (8-15) ---
pub const INVALID_ADDRESS: Code = e("E0201", "invalid address or prefix");
pub const HOST_BITS_SET: Code = w("E0202", "host bits set in a CIDR");
pub const MIXED_FAMILIES: Code = e("E0203", "IPv4 and IPv6 mixed in one list or rule");
pub const FAMILY_CONFLICT: Code = e("E0204", "address family contradicts the protocol");
pub const BACKWARDS_RANGE: Code = e("E0205", "backwards address range");
pub const EMPTY_MATCH: Code = e("E0206", "alias or ipset resolves to nothing");
pub const ANY_MANAGEMENT_SOURCE: Code = w("E0207", "any-address source for management");
pub const LEADING_ZERO: Code = e("E0208", "leading zero in an IPv4 octet");
pub const ZONE_ID: Code = e("E0209", "IPv6 zone id not allowed");
pub const V4_MAPPED_V6: Code = w("E0210", "IPv4-mapped IPv6 address (never matches)");

// --- Ports, protocols, macros (16-21) ---
pub const PORT_OUT_OF_RANGE: Code = e("E0301", "port out of range");
pub const BACKWARDS_PORT_RANGE: Code = e("E0302", "backwards port range");
pub const PORT_WITHOUT_PROTO: Code = e("E0303", "port given without -p");
pub const PORT_WITH_PORTLESS_PROTO: Code = e("E0304", "port given for a protocol without ports");
pub const UNKNOWN_ICMP_TYPE: Code = e("E0305", "unknown ICMP type");
pub const ICMP_TYPE_WITH_PORT: Code = e("E0306", "ICMP type together with a port");
pub const ICMP_TYPE_FAMILY: Code = e("E0307", "ICMP type of the other family");
pub const UNKNOWN_PROTOCOL: Code = e("E0308", "unknown protocol");
pub const UNKNOWN_SERVICE: Code = e("E0309", "unknown service name");
pub const UNKNOWN_MACRO: Code = e("E0310", "unknown macro");
pub const MACRO_CONFLICT: Code = e("E0311", "macro conflicts with the rule's own options");
pub const DUPLICATE_SET_ENTRY: Code = w("E0312", "duplicate ipset entry");
pub const ICMP_TYPE_WITHOUT_ICMP: Code = e("E0313", "ICMP type on a rule that is not icmp/icmpv6");
pub const PROTO_ZERO_MATCHES_ALL: Code = w(
    "E0314",
    "protocol 0 (`ip`, `hopopt`) matches every protocol",
);

pub const LEGACY_ICMP_DPORT: Code = w(
    "E0315",
    "ICMP type written in `-dport` (legacy Proxmox rule)",
);

// --- References and names (22-26) ---
pub const UNDEFINED_ALIAS: Code = e("E0401", "undefined alias");
pub const UNDEFINED_IPSET: Code = e("E0402", "undefined ipset");
pub const UNDEFINED_GROUP: Code = e("E0403", "undefined security group");
pub const UNKNOWN_SCOPE: Code = e("E0404", "scope does not exist here");
pub const REFERENCE_CYCLE: Code = e("E0405", "reference cycle");
pub const NESTING_TOO_DEEP: Code = e("E0406", "nesting too deep");
pub const NAME_TOO_LONG: Code = e("E0407", "name exceeds a kernel limit");
pub const ILLEGAL_NAME: Code = e("E0408", "illegal characters in a name");
pub const UNKNOWN_INTERFACE: Code = e("E0409", "interface the guest does not have");
pub const UNKNOWN_NODE: Code = e("E0410", "unknown node");
pub const UNKNOWN_BRIDGE: Code = e("E0411", "unknown bridge");
pub const DUPLICATE_GUEST: Code = e("E0412", "two guests with the same id");
pub const NOT_EXPRESSIBLE: Code = e("E0413", "the backend cannot express this");
pub const DUPLICATE_NAME: Code = e("E0414", "name defined twice");
pub const UNKNOWN_GUEST: Code = w(
    "E0415",
    "firewall file for a guest the site does not declare",
);
pub const UNKNOWN_ENDPOINT: Code = e("E0416", "unknown intent endpoint");
pub const UNRESOLVED_HOST: Code = e("E0417", "host name the site does not resolve");

// --- Policy semantics (27-31) ---
pub const SHADOWED_RULE: Code = w("E0501", "rule can never match (shadowed)");
pub const LOCKOUT: Code = e("E0502", "management access would be locked out");
pub const VPN_PORT_UNREACHABLE: Code = e(
    "E0503",
    "management is VPN-only but the WireGuard port is unreachable",
);
pub const CLUSTER_BLOCKED: Code = e("E0504", "cluster traffic between nodes is blocked");
pub const REPEATED_RULE: Code = w("E0505", "identical rule repeated");
pub const INTENT_MISSED: Code = e("E0506", "an [[expect]] intent is not met");
pub const LOCAL_NETWORK_HOST_ONLY: Code =
    w("E0507", "local network is only the node's own address");

// --- WireGuard (32-41) ---
pub const MALFORMED_KEY: Code = e("E0601", "malformed WireGuard key");
pub const PRIVATE_KEY_IN_SITE: Code = e("E0602", "private key in the site files");
pub const DUPLICATE_PUBLIC_KEY: Code = e("E0603", "two peers with the same public key");
pub const PEER_IS_SELF: Code = e("E0604", "peer has the node's own key");
pub const OVERLAPPING_ALLOWED_IPS: Code = e("E0605", "overlapping AllowedIPs");
pub const MULTIPLE_DEFAULT_ROUTES: Code = e("E0606", "/0 in AllowedIPs of more than one peer");
pub const ALLOWED_IPS_SWALLOW: Code = e("E0607", "AllowedIPs swallow the node's own prefix");
pub const ADDRESS_OUTSIDE_POOL: Code = e("E0608", "tunnel address outside the pool");
pub const ADDRESS_USED_TWICE: Code = e("E0609", "tunnel address used twice");
pub const BAD_INTERFACE_NAME: Code = e("E0610", "invalid interface name");
pub const DUPLICATE_LISTEN_PORT: Code = e("E0611", "two interfaces with the same listen port");
pub const MALFORMED_ENDPOINT: Code = e("E0612", "malformed endpoint");
pub const NO_ENDPOINT: Code = e("E0613", "neither side of a pair has an endpoint");
pub const KEEPALIVE_RANGE: Code = e("E0614", "PersistentKeepalive out of range");
pub const MTU_TOO_SMALL: Code = e("E0615", "MTU below 1280 with IPv6");
pub const KEY_FILE_PERMISSIONS: Code = e("E0616", "key file permissions or owner unsafe");
pub const BAD_PRESHARED_PAIR: Code = e(
    "E0617",
    "a preshared pair that is not two members that peer",
);

// --- Faults (42-43) ---
pub const SITE_UNREADABLE: Code = e("E0701", "site missing or unreadable");
pub const APPLY_FAILED: Code = e("E0702", "apply failed; previous ruleset kept");
pub const STORE_UNREACHABLE: Code = e("E0703", "cluster store unreachable");
pub const DISK_FULL: Code = e("E0704", "no space left to write state");
pub const CLUSTER_FW_MISSING: Code = e(
    "E0705",
    "firewall/cluster.fw is missing while other firewall files exist",
);
pub const NO_FIREWALL_FILES: Code = w("E0706", "the site has no firewall files");
pub const ENABLE_UNSET: Code = e(
    "E0707",
    "cluster.fw does not say `enable: 0` or `enable: 1`",
);
pub const TRUNCATED_FILE: Code = e("E0708", "file does not end with a newline (truncated?)");
pub const MISNAMED_GUEST_FILE: Code = e("E0709", "guest firewall file name with a leading zero");
pub const IGNORED_FILE: Code = w("E0710", "file in a firewall directory is not read");
pub const SITE_TOO_LARGE: Code = e("E0711", "site file or site over the size limit");

/// Every code, for `rampart explain` and for a test that codes are unique.
pub const ALL: &[Code] = &[
    UNKNOWN_SECTION,
    SECTION_NOT_ALLOWED,
    UNKNOWN_OPTION,
    OUTSIDE_SECTION,
    DUPLICATE_OPTION,
    DUPLICATE_SECTION,
    EMPTY_LIST_ELEMENT,
    BAD_OPTION_VALUE,
    BOM,
    NUL_BYTE,
    INVALID_UTF8,
    CRLF,
    BARE_CR,
    LINE_TOO_LONG,
    EMPTY_FILE,
    MALFORMED_RULE,
    UNKNOWN_RULE_OPTION,
    MISSING_OPTION_VALUE,
    DUPLICATE_RULE_OPTION,
    DIRECTION_NOT_ALLOWED,
    UNKNOWN_ACTION,
    MALFORMED_SECTION,
    SITE_TOML,
    GUEST_CONF,
    MISSING_SITE_FILE,
    MALFORMED_ENTRY,
    OPTION_WITHOUT_EFFECT,
    ENABLE_TIMESTAMP,
    INVALID_ADDRESS,
    HOST_BITS_SET,
    MIXED_FAMILIES,
    FAMILY_CONFLICT,
    BACKWARDS_RANGE,
    EMPTY_MATCH,
    ANY_MANAGEMENT_SOURCE,
    LEADING_ZERO,
    ZONE_ID,
    V4_MAPPED_V6,
    PORT_OUT_OF_RANGE,
    BACKWARDS_PORT_RANGE,
    PORT_WITHOUT_PROTO,
    PORT_WITH_PORTLESS_PROTO,
    UNKNOWN_ICMP_TYPE,
    ICMP_TYPE_WITH_PORT,
    ICMP_TYPE_FAMILY,
    UNKNOWN_PROTOCOL,
    UNKNOWN_SERVICE,
    UNKNOWN_MACRO,
    MACRO_CONFLICT,
    DUPLICATE_SET_ENTRY,
    ICMP_TYPE_WITHOUT_ICMP,
    PROTO_ZERO_MATCHES_ALL,
    LEGACY_ICMP_DPORT,
    UNDEFINED_ALIAS,
    UNDEFINED_IPSET,
    UNDEFINED_GROUP,
    UNKNOWN_SCOPE,
    REFERENCE_CYCLE,
    NESTING_TOO_DEEP,
    NAME_TOO_LONG,
    ILLEGAL_NAME,
    UNKNOWN_INTERFACE,
    UNKNOWN_NODE,
    UNKNOWN_BRIDGE,
    DUPLICATE_GUEST,
    NOT_EXPRESSIBLE,
    DUPLICATE_NAME,
    UNKNOWN_GUEST,
    UNKNOWN_ENDPOINT,
    UNRESOLVED_HOST,
    SHADOWED_RULE,
    LOCKOUT,
    VPN_PORT_UNREACHABLE,
    CLUSTER_BLOCKED,
    REPEATED_RULE,
    INTENT_MISSED,
    LOCAL_NETWORK_HOST_ONLY,
    MALFORMED_KEY,
    PRIVATE_KEY_IN_SITE,
    DUPLICATE_PUBLIC_KEY,
    PEER_IS_SELF,
    OVERLAPPING_ALLOWED_IPS,
    MULTIPLE_DEFAULT_ROUTES,
    ALLOWED_IPS_SWALLOW,
    ADDRESS_OUTSIDE_POOL,
    ADDRESS_USED_TWICE,
    BAD_INTERFACE_NAME,
    DUPLICATE_LISTEN_PORT,
    MALFORMED_ENDPOINT,
    NO_ENDPOINT,
    KEEPALIVE_RANGE,
    MTU_TOO_SMALL,
    KEY_FILE_PERMISSIONS,
    BAD_PRESHARED_PAIR,
    SITE_UNREADABLE,
    APPLY_FAILED,
    STORE_UNREACHABLE,
    DISK_FULL,
    CLUSTER_FW_MISSING,
    NO_FIREWALL_FILES,
    ENABLE_UNSET,
    TRUNCATED_FILE,
    MISNAMED_GUEST_FILE,
    IGNORED_FILE,
    SITE_TOO_LARGE,
];

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in ALL {
            assert!(seen.insert(c.code), "duplicate code {}", c.code);
        }
    }
}

//! The tables the language refers to: macros, protocols, ICMP types and
//! service names. Shipped with rampart; nothing is read from the host.

use rampart_types::{Family, PortRange, Proto};
use std::sync::OnceLock;

/// One row of a macro: a protocol with its fixed ports or ICMP type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacroRow {
    pub proto: Proto,
    pub dport: Vec<PortRange>,
    pub sport: Vec<PortRange>,
    pub icmp_type: Option<&'static str>,
    /// `None`: both families.
    pub family: Option<Family>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Macro {
    /// The preferred spelling (`SSH`, `HTTP/3`).
    pub name: &'static str,
    pub rows: Vec<MacroRow>,
}

const MACROS_TSV: &str = include_str!("macros.tsv");

fn parse_ports_static(s: &str) -> Vec<PortRange> {
    if s.is_empty() {
        return Vec::new();
    }
    s.split(',')
        .map(|p| match p.split_once(':') {
            Some((a, b)) => PortRange::new(
                a.parse().expect("macro port"),
                b.parse().expect("macro port"),
            ),
            None => PortRange::single(p.parse().expect("macro port")),
        })
        .collect()
}

/// All macros, in the table's order.
pub fn macros() -> &'static [Macro] {
    static M: OnceLock<Vec<Macro>> = OnceLock::new();
    M.get_or_init(|| {
        let mut out: Vec<Macro> = Vec::new();
        for line in MACROS_TSV.lines() {
            if line.starts_with('#') || line.starts_with("name\t") || line.trim().is_empty() {
                continue;
            }
            let f: Vec<&'static str> = line.split('\t').collect();
            let (name, proto, dport, sport, icmp, fam) = (f[0], f[1], f[2], f[3], f[4], f[5]);
            let row = MacroRow {
                proto: parse_proto(proto).expect("macro protocol"),
                dport: parse_ports_static(dport),
                sport: parse_ports_static(sport),
                icmp_type: if icmp.is_empty() { None } else { Some(icmp) },
                family: match fam {
                    "ipv4" => Some(Family::V4),
                    "ipv6" => Some(Family::V6),
                    _ => None,
                },
            };
            match out.last_mut() {
                Some(m) if m.name == name => m.rows.push(row),
                _ => out.push(Macro {
                    name,
                    rows: vec![row],
                }),
            }
        }
        out
    })
}

/// Find a macro by name, case-insensitively (as pve-firewall does).
pub fn find_macro(name: &str) -> Option<usize> {
    macros()
        .iter()
        .position(|m| m.name.eq_ignore_ascii_case(name))
}

/// IP protocols by name (as /etc/protocols names them) and number.
pub const PROTOCOLS: &[(&str, u8)] = &[
    ("ip", 0),
    ("hopopt", 0),
    ("icmp", 1),
    ("igmp", 2),
    ("ggp", 3),
    ("ipencap", 4),
    ("st", 5),
    ("tcp", 6),
    ("egp", 8),
    ("igp", 9),
    ("pup", 12),
    ("udp", 17),
    ("hmp", 20),
    ("xns-idp", 22),
    ("rdp", 27),
    ("iso-tp4", 29),
    ("dccp", 33),
    ("xtp", 36),
    ("ddp", 37),
    ("idpr-cmtp", 38),
    ("ipv6", 41),
    ("ipv6-route", 43),
    ("ipv6-frag", 44),
    ("idrp", 45),
    ("rsvp", 46),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("skip", 57),
    ("ipv6-icmp", 58),
    ("icmpv6", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("rspf", 73),
    ("vmtp", 81),
    ("eigrp", 88),
    ("ospf", 89),
    ("ax.25", 93),
    ("ipip", 94),
    ("etherip", 97),
    ("encap", 98),
    ("pim", 103),
    ("ipcomp", 108),
    ("vrrp", 112),
    ("l2tp", 115),
    ("isis", 124),
    ("sctp", 132),
    ("fc", 133),
    ("mobility-header", 135),
    ("udplite", 136),
    ("mpls-in-ip", 137),
    ("manet", 138),
    ("hip", 139),
    ("shim6", 140),
    ("wesp", 141),
    ("rohc", 142),
];

/// A protocol by name or number (0-255). Names are lower-case, as in /etc/protocols.
pub fn parse_proto(s: &str) -> Option<Proto> {
    let number = if let Some(&(_, n)) = PROTOCOLS.iter().find(|(name, _)| *name == s) {
        n
    } else if !s.is_empty()
        && s.len() <= 3
        && s.bytes().all(|b| b.is_ascii_digit())
        && !(s.len() > 1 && s.starts_with('0'))
    {
        s.parse::<u16>().ok().filter(|n| *n <= 255)? as u8
    } else {
        return None;
    };
    Some(match number {
        6 => Proto::Tcp,
        17 => Proto::Udp,
        1 => Proto::Icmp,
        58 => Proto::Icmpv6,
        n => Proto::Other {
            number: n,
            name: s.to_string(),
        },
    })
}

/// ICMP (IPv4) type names: (name, type, code).
pub const ICMP4_TYPES: &[(&str, u8, Option<u8>)] = &[
    ("echo-reply", 0, None),
    ("pong", 0, None),
    ("destination-unreachable", 3, None),
    ("network-unreachable", 3, Some(0)),
    ("host-unreachable", 3, Some(1)),
    ("protocol-unreachable", 3, Some(2)),
    ("port-unreachable", 3, Some(3)),
    ("fragmentation-needed", 3, Some(4)),
    ("source-route-failed", 3, Some(5)),
    ("network-unknown", 3, Some(6)),
    ("host-unknown", 3, Some(7)),
    ("network-prohibited", 3, Some(9)),
    ("host-prohibited", 3, Some(10)),
    ("tos-network-unreachable", 3, Some(11)),
    ("tos-host-unreachable", 3, Some(12)),
    ("communication-prohibited", 3, Some(13)),
    ("host-precedence-violation", 3, Some(14)),
    ("precedence-cutoff", 3, Some(15)),
    ("source-quench", 4, None),
    ("redirect", 5, None),
    ("network-redirect", 5, Some(0)),
    ("host-redirect", 5, Some(1)),
    ("tos-network-redirect", 5, Some(2)),
    ("tos-host-redirect", 5, Some(3)),
    ("echo-request", 8, None),
    ("ping", 8, None),
    ("router-advertisement", 9, None),
    ("router-solicitation", 10, None),
    ("time-exceeded", 11, None),
    ("ttl-exceeded", 11, None),
    ("ttl-zero-during-transit", 11, Some(0)),
    ("ttl-zero-during-reassembly", 11, Some(1)),
    ("parameter-problem", 12, None),
    ("ip-header-bad", 12, Some(0)),
    ("required-option-missing", 12, Some(1)),
    ("timestamp-request", 13, None),
    ("timestamp-reply", 14, None),
    ("address-mask-request", 17, None),
    ("address-mask-reply", 18, None),
];

/// ICMPv6 type names: (name, type, code).
pub const ICMP6_TYPES: &[(&str, u8, Option<u8>)] = &[
    ("destination-unreachable", 1, None),
    ("no-route", 1, Some(0)),
    ("communication-prohibited", 1, Some(1)),
    ("beyond-scope", 1, Some(2)),
    ("address-unreachable", 1, Some(3)),
    ("port-unreachable", 1, Some(4)),
    ("failed-policy", 1, Some(5)),
    ("reject-route", 1, Some(6)),
    ("packet-too-big", 2, None),
    ("time-exceeded", 3, None),
    ("ttl-exceeded", 3, None),
    ("ttl-zero-during-transit", 3, Some(0)),
    ("ttl-zero-during-reassembly", 3, Some(1)),
    ("parameter-problem", 4, None),
    ("bad-header", 4, Some(0)),
    ("unknown-header-type", 4, Some(1)),
    ("unknown-option", 4, Some(2)),
    ("echo-request", 128, None),
    ("ping", 128, None),
    ("echo-reply", 129, None),
    ("pong", 129, None),
    ("mld-listener-query", 130, None),
    ("mld-listener-report", 131, None),
    ("mld-listener-done", 132, None),
    ("router-solicitation", 133, None),
    ("nd-router-solicit", 133, None),
    ("router-advertisement", 134, None),
    ("nd-router-advert", 134, None),
    ("neighbour-solicitation", 135, None),
    ("neighbor-solicitation", 135, None),
    ("nd-neighbor-solicit", 135, None),
    ("neighbour-advertisement", 136, None),
    ("neighbor-advertisement", 136, None),
    ("nd-neighbor-advert", 136, None),
    ("redirect", 137, None),
    ("nd-redirect", 137, None),
    ("mld2-listener-report", 143, None),
];

/// Look an ICMP type up for a family: a name, `N` or `N/M`.
pub fn icmp_type(name: &str, family: Family) -> Option<(u8, Option<u8>)> {
    let lower = name.to_ascii_lowercase();
    let table = match family {
        Family::V4 => ICMP4_TYPES,
        Family::V6 => ICMP6_TYPES,
    };
    if let Some(&(_, t, c)) = table.iter().find(|(n, _, _)| *n == lower) {
        return Some((t, c));
    }
    let num = |s: &str| -> Option<u8> {
        if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u16>().ok().filter(|n| *n <= 255).map(|n| n as u8)
    };
    match lower.split_once('/') {
        Some((t, c)) => Some((num(t)?, Some(num(c)?))),
        None => Some((num(&lower)?, None)),
    }
}

/// All ICMP type names of both families (for did-you-mean).
pub fn icmp_names() -> impl Iterator<Item = &'static str> {
    ICMP4_TYPES
        .iter()
        .chain(ICMP6_TYPES.iter())
        .map(|(n, _, _)| *n)
}

/// Service names for ports (the common part of /etc/services), tcp and udp alike.
pub const SERVICES: &[(&str, u16)] = &[
    ("tcpmux", 1),
    ("echo", 7),
    ("discard", 9),
    ("daytime", 13),
    ("ftp-data", 20),
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("time", 37),
    ("whois", 43),
    ("nicname", 43),
    ("tacacs", 49),
    ("domain", 53),
    ("bootps", 67),
    ("bootpc", 68),
    ("tftp", 69),
    ("gopher", 70),
    ("finger", 79),
    ("http", 80),
    ("www", 80),
    ("kerberos", 88),
    ("pop3", 110),
    ("sunrpc", 111),
    ("auth", 113),
    ("ident", 113),
    ("nntp", 119),
    ("ntp", 123),
    ("epmap", 135),
    ("netbios-ns", 137),
    ("netbios-dgm", 138),
    ("netbios-ssn", 139),
    ("imap", 143),
    ("imap2", 143),
    ("snmp", 161),
    ("snmp-trap", 162),
    ("bgp", 179),
    ("irc", 194),
    ("ldap", 389),
    ("https", 443),
    ("microsoft-ds", 445),
    ("kpasswd", 464),
    ("submissions", 465),
    ("smtps", 465),
    ("isakmp", 500),
    ("syslog", 514),
    ("printer", 515),
    ("talk", 517),
    ("ntalk", 518),
    ("route", 520),
    ("rtsp", 554),
    ("nntps", 563),
    ("submission", 587),
    ("ipp", 631),
    ("ldaps", 636),
    ("rsync", 873),
    ("ftps-data", 989),
    ("ftps", 990),
    ("telnets", 992),
    ("imaps", 993),
    ("pop3s", 995),
    ("socks", 1080),
    ("openvpn", 1194),
    ("ms-sql-s", 1433),
    ("ms-sql-m", 1434),
    ("l2tp", 1701),
    ("pptp", 1723),
    ("radius", 1812),
    ("radius-acct", 1813),
    ("nfs", 2049),
    ("mysql", 3306),
    ("ms-wbt-server", 3389),
    ("svn", 3690),
    ("ipsec-nat-t", 4500),
    ("sip", 5060),
    ("sips", 5061),
    ("xmpp-client", 5222),
    ("xmpp-server", 5269),
    ("mdns", 5353),
    ("postgresql", 5432),
    ("amqp", 5672),
    ("x11", 6000),
    ("redis", 6379),
    ("http-alt", 8080),
    ("webcache", 8080),
    ("git", 9418),
    ("zabbix-agent", 10050),
    ("zabbix-trapper", 10051),
    ("hkp", 11371),
];

pub fn service_port(name: &str) -> Option<u16> {
    SERVICES.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn all_88_macros_load() {
        assert_eq!(macros().len(), 88);
        let ping = &macros()[find_macro("ping").unwrap()];
        assert_eq!(ping.rows.len(), 2);
        assert_eq!(ping.rows[1].proto, Proto::Icmpv6);
        assert_eq!(
            find_macro("http/3").map(|i| macros()[i].name),
            Some("HTTP/3")
        );
    }
    #[test]
    fn protocols() {
        assert_eq!(parse_proto("tcp"), Some(Proto::Tcp));
        assert_eq!(parse_proto("58"), Some(Proto::Icmpv6));
        assert_eq!(parse_proto("gre").unwrap().number(), 47);
        assert_eq!(parse_proto("256"), None);
        assert_eq!(parse_proto("TCP"), None);
    }
    #[test]
    fn icmp() {
        assert_eq!(icmp_type("echo-request", Family::V4), Some((8, None)));
        assert_eq!(icmp_type("echo-request", Family::V6), Some((128, None)));
        assert_eq!(icmp_type("3/4", Family::V4), Some((3, Some(4))));
        assert_eq!(icmp_type("nd-router-advert", Family::V4), None);
    }
}

//! Reading a conformance case's packets.toml.

use rampart_sim::{Packet, State, Zone};
use rampart_types::{Action, Family, Proto};

/// Read a packets.toml into (name, packet, expected verdict).
pub fn packets(text: &str) -> Vec<(String, Packet, Action)> {
    let v: toml::Value = toml::from_str(text).unwrap();
    let mut out = vec![];
    for p in v["packet"].as_array().unwrap() {
        let s = |k: &str| p.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let n = |k: &str| p.get(k).and_then(|x| x.as_integer()).map(|x| x as u16);
        let proto = match s("proto").unwrap().as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "icmp" => Proto::Icmp,
            "icmpv6" => Proto::Icmpv6,
            other => panic!("proto {other}"),
        };
        let pkt = Packet {
            from: Zone::parse(&s("from").unwrap()),
            to: Zone::parse(&s("to").unwrap()),
            proto,
            sport: n("sport"),
            dport: n("dport"),
            icmp_type: s("icmp_type"),
            source: s("source").map(|a| a.parse().unwrap()),
            dest: s("dest").map(|a| a.parse().unwrap()),
            family: s("family").map(|f| if f == "ipv6" { Family::V6 } else { Family::V4 }),
            state: if s("state").as_deref() == Some("established") {
                State::Established
            } else {
                State::New
            },
            source_mac: s("source_mac").map(|m| rampart_nft::testkit::mac(&m)),
        };
        let verdict: Action = s("verdict").unwrap().parse().unwrap();
        out.push((s("name").unwrap_or_default(), pkt, verdict));
    }
    out
}

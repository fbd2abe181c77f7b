//! Reading a conformance case's packets.toml with the shared case parser.

use rampart_sim::Packet;
use rampart_types::Action;

/// Read a packets.toml into (name, packet, expected verdict).
pub fn packets(text: &str) -> Vec<(String, Packet, Action)> {
    let case = rampart_case::parse(text).unwrap_or_else(|e| panic!("packets.toml: {e}"));
    case.packets
        .iter()
        .map(|p| (p.label(), Packet::from(p), p.verdict))
        .collect()
}

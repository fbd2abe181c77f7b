//! The simulator: what happens to a packet on a node, and which rule decided.
//!
//! It compiles the node with the nftables backend and walks the resulting
//! [`rampart_nft::model::Ruleset`] the way the kernel does: the hooks a
//! packet passes on its path (bridge prerouting, bridge forward, and the
//! `inet` hooks br_netfilter calls), each hook's base chains in priority
//! order, jumps, gotos, returns, verdict maps, sets, and the packet mark the
//! bridge table writes. The text `nft -f` loads is printed from the same
//! model, so the simulator and the kernel see the same rules.

mod packet;
mod walk;

pub mod guard;
pub mod hop;
pub use packet::{Packet, State, Zone};
pub use walk::{RuleHit, Step, Trace};

use rampart_nft::{compile, Plan};
use rampart_resolve::ir;
use rampart_types::Diagnostics;
use std::fmt;

#[derive(Debug)]
pub enum SimError {
    /// The node does not compile: the simulator has nothing to walk.
    Compile(Diagnostics),
    /// The packet cannot be placed (unknown zone, no address of the family...).
    Packet(String),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Compile(d) => write!(f, "the node does not compile ({} errors)", d.errors()),
            SimError::Packet(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for SimError {}

/// Compile `node` and simulate `packet` on it.
pub fn simulate(site: &ir::Site, node: &str, packet: &Packet) -> Result<Trace, SimError> {
    let plan = compile(site, node).map_err(SimError::Compile)?;
    simulate_plan(site, &plan, packet)
}

/// Simulate `packet` on an already compiled plan (many packets, one compile).
pub fn simulate_plan(site: &ir::Site, plan: &Plan, packet: &Packet) -> Result<Trace, SimError> {
    let placed = packet::place(site, plan, packet).map_err(SimError::Packet)?;
    Ok(walk::run(plan, placed))
}

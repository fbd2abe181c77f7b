//! The nftables backend: IR -> a typed ruleset model ([`model`]) for one
//! node, printed as one atomic `nft -f` transaction ([`print`]), plus the
//! sysctls the datapath needs. The simulator walks the same model.
//!
//! Datapath for bridged guests: see `docs/datapath.md`. In short, the
//! `bridge rampart` table writes the ingress and egress guest NIC into the
//! packet mark, br_netfilter hands bridged packets to `inet rampart`, where
//! conntrack works and verdict maps keyed by the mark pick each NIC's chain.

pub mod caps;
mod compile;
pub mod extras;
pub mod merge;
pub mod model;
pub mod print;
pub mod profile;
pub mod sets;
pub mod testkit;

pub use caps::{Caps, Datapath};
pub use compile::{
    compile, compile_all, compile_cached, compile_with, link_local, platform_ports, NicSlot, Plan,
    SetMemo, SiteCache, Sysctl, BRIDGED, BRIDGE_PRIORITY, INET_PRIORITY, IN_MASK, NFLOG_GROUP,
    OUT_MASK, TABLE,
};
pub use extras::{compile_with_extras, compile_with_extras_cached, Extras, WgPort};
pub use profile::add_profile;

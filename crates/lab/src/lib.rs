//! rampart's namespace lab: a node built for real on this machine.
//!
//! - [`Lab::build`] turns one node of an [`ir::Site`] into network
//!   namespaces (the node with its bridges, one per guest, an outside
//!   machine, other nodes on demand), all removed on drop.
//! - A ruleset is loaded in the node's namespace ([`Lab::load`],
//!   [`Lab::load_nft`], or any code given [`Lab::host`]).
//! - [`Lab::probe`] / [`Lab::probe_all`] send real packets (TCP connect,
//!   UDP request/answer, ICMP echo) and report what the kernel did:
//!   [`Observed`] ACCEPT, DROP or REJECT.
//! - [`runner::run_case_kernel`] runs a conformance case (`packets.toml`).
//!
//! The packets are sent by a helper program run inside the namespaces
//! ([`probe::helper_main`]): the `rampart-probe` binary of this crate, or
//! `rampart` itself through a hidden subcommand ([`Helper`]).
//!
//! [`ir::Site`]: rampart_resolve::ir::Site

pub mod lab;
pub mod netns;
pub mod probe;
pub mod runner;
pub mod site;

pub use lab::{GuestGateway, Helper, Lab, LabOptions, Probe};
pub use netns::{iptables_check, nft_check, Netns};
pub use probe::Observed;
pub use rampart_case::{PacketProto, State, Zone};

/// A lab error: what failed, with the command and its stderr.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

impl Error {
    pub fn new(msg: impl Into<String>) -> Error {
        Error(msg.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

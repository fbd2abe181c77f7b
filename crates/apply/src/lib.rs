//! rampart-apply: the only crate that touches the system.
//!
//! A [`Plan`] (ruleset text, sysctls, metadata) is applied by [`apply`] as one
//! kernel transaction for rampart's own tables, optionally under a
//! `--confirm` deadline whose revert is scheduled before the change and
//! survives the caller. [`confirm`], [`rollback`] and [`status`] complete the
//! cycle. Everything system-facing goes through the [`System`] trait;
//! [`HostSystem`] is the real one (optionally inside a network namespace).

mod apply;
mod error;
pub mod incremental;
pub mod inplace;
pub mod legacy;
pub mod mnldump;
pub mod net;
pub mod netlink;
pub mod nftscript;
mod plan;
pub mod revert;
pub mod setelem;
pub mod state;
pub mod sysctl;
mod system;
pub mod twophase;

pub use apply::{
    apply, check_drift, confirm, kernel_hash, record_kernel_hash, restore, rollback, status,
    ApplyMode, ApplyOpts, ApplyOutcome, Drift, Status, Timings,
};
pub use error::Error;
pub use legacy::LegacyWrite;
pub use nftscript::TableRef;
pub use plan::{Applied, Backend, Plan, PlanMeta, PolicyRule, Route, SavedFiles, WgIface, WgPeer};
pub use state::{Pending, StateDir, DEFAULT_STATE_DIR};
pub use system::{
    clean_stale_scripts, HostSystem, IpFamily, Programs, Scheduler, System, NETNS_WG_ROOT,
};

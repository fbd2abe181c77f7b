//! rampart's shared vocabulary. Everything here is plain data: no I/O, no clock.
//!
//! - [`span`]: files of a site, positions in them, and the [`Origin`] every
//!   compiled rule carries back to the line that produced it.
//! - [`diag`]: diagnostics with stable codes ([`codes`]).
//! - [`net`]: families, protocols, ports, address ranges, actions.
//! - [`names`]: validated identifiers (node, interface, ipset, ...) and the
//!   one gate for file names built from them; [`escape`]: one escaping
//!   function per output language.
//! - [`files`]: a site as a set of (relative path, bytes): the only input the
//!   pure core reads. The shell fills it from a directory or from etcd.

pub mod additions;
pub mod codes;
pub mod diag;
pub mod escape;
pub mod files;
pub mod fwlog;
pub mod names;
pub mod net;
pub mod span;

pub use diag::{Diagnostic, Diagnostics, Severity};
pub use files::SiteFiles;
pub use net::{Action, Direction, Family, IpRange, LogLevel, PortRange, Proto, Verdict};
pub use span::{FileId, Origin, SourceMap, Span};

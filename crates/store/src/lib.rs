//! Where a site comes from, and where node status goes.
//!
//! A [`SiteStore`] hands out [`Snapshot`]s: a complete [`SiteFiles`] plus a
//! revision string. Two stores exist:
//!
//! - [`DirStore`]: a site directory on the node (`revision` = content hash).
//! - [`EtcdStore`]: an etcd prefix written by [`EtcdStore::push`] as one
//!   transaction (`revision` = etcd mod revision of the site manifest).
//!
//! Fail closed: a missing, empty, unreadable or unreachable site is an
//! [`StoreError`] (codes `E0701` [`codes::SITE_UNREADABLE`] and `E0703`
//! [`codes::STORE_UNREACHABLE`]), never an empty site. The caller keeps its
//! last good snapshot and its last good ruleset.
//!
//! The API is blocking. The etcd store runs its own small tokio runtime
//! inside; do not call it from inside an async task (use `spawn_blocking`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rampart_types::codes::{self, Code};
use rampart_types::files::SiteFiles;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod dir;
mod etcd;
mod retry;
#[cfg(feature = "testing")]
pub mod testing;

pub use dir::{
    read_site_dir, DirOptions, DirStore, DirWatch, SiteRead, MAX_FILE_SIZE, MAX_TOTAL_SIZE,
};
pub use etcd::{parse_endpoints, EtcdOptions, EtcdStore, EtcdWatch, Manifest, DEFAULT_PREFIX};
pub use retry::{Backoff, RetryPolicy, Sleeper, ThreadSleeper};

/// A complete site as read at one point in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub files: SiteFiles,
    /// Directory store: the content hash. etcd store: the mod revision of
    /// the site manifest (a decimal number). Compare for equality only.
    pub revision: String,
    /// [`content_hash`] of `files` (for both stores; etcd checks it against
    /// the manifest written by the push).
    pub hash: String,
}

/// What a node reports after each attempt to apply a site revision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The site revision the node's running ruleset came from.
    pub applied_revision: Option<String>,
    /// Hash of the plan that runs.
    pub plan_hash: Option<String>,
    /// Errors of the last attempt (compile errors, guard refusals, apply
    /// failures, store errors); empty when the last attempt succeeded.
    #[serde(default)]
    pub errors: Vec<String>,
    /// Unix time (seconds) of the last successful apply.
    pub applied_at: Option<u64>,
    pub agent_version: String,
}

/// An error of a store, always carrying one of the fault codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError {
    pub code: Code,
    pub message: String,
}

impl StoreError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn unreadable(message: impl Into<String>) -> Self {
        Self::new(codes::SITE_UNREADABLE, message)
    }
    pub fn unreachable(message: impl Into<String>) -> Self {
        Self::new(codes::STORE_UNREACHABLE, message)
    }
    /// Worth retrying: the store may come back (etcd down or partitioned).
    pub fn is_transient(&self) -> bool {
        self.code == codes::STORE_UNREACHABLE
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "error[{}]: {}: {}",
            self.code.code, self.code.title, self.message
        )
    }
}

impl std::error::Error for StoreError {}

/// A source of site snapshots and a sink for node status.
pub trait SiteStore: Send + Sync {
    /// Read the whole site, now. Errors rather than returning a partial or
    /// empty site.
    fn load(&self) -> Result<Snapshot, StoreError>;

    /// Start watching. `last` is the revision the caller already has (its
    /// last good snapshot); the watch yields only snapshots with another
    /// revision. `None`: the first call to `next` yields the current site.
    fn watch(&self, last: Option<&str>) -> Result<Box<dyn SiteWatch>, StoreError>;

    /// Record a node's status (overwrites the previous one of that node).
    fn put_status(&self, node: &str, status: &NodeStatus) -> Result<(), StoreError>;

    /// Every node's last status, by node name.
    fn statuses(&self) -> Result<BTreeMap<String, NodeStatus>, StoreError>;
}

/// A running watch (see [`SiteStore::watch`]).
pub trait SiteWatch: Send {
    /// Block up to `timeout` for the next complete snapshot whose revision
    /// differs from the last one yielded (or the `last` given to `watch`).
    /// `Ok(None)`: nothing changed in time. `Err`: the site is unreadable or
    /// the store unreachable right now; the watch stays usable and a later
    /// call resumes where it left off.
    fn next(&mut self, timeout: Duration) -> Result<Option<Snapshot>, StoreError>;
}

/// The content hash of a site: sha256 over the sorted (path, bytes) pairs,
/// each length-prefixed so that no two sites share an encoding. Hex.
pub fn content_hash(files: &SiteFiles) -> String {
    let mut h = Sha256::new();
    h.update(b"rampart-site-v1\n");
    for (path, bytes) in &files.files {
        h.update((path.len() as u64).to_be_bytes());
        h.update(path.as_bytes());
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }
    hex::encode(h.finalize())
}

/// A valid node name for status keys and files: `[A-Za-z0-9._-]`, 1..=64,
/// not starting with a dot.
pub fn check_node_name(node: &str) -> Result<(), StoreError> {
    let ok = !node.is_empty()
        && node.len() <= 64
        && !node.starts_with('.')
        && rampart_types::names::path_component(node).is_ok()
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::new(
            codes::SITE_UNREADABLE,
            format!(
                "invalid node name `{}` for a status record",
                rampart_types::escape::printable(node)
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_paths_and_bytes_and_is_unambiguous() {
        let a = SiteFiles::new().with("a", "bc");
        let b = SiteFiles::new().with("ab", "c");
        assert_ne!(content_hash(&a), content_hash(&b));
        assert_eq!(content_hash(&a), content_hash(&a.clone()));
        assert_ne!(content_hash(&SiteFiles::new()), content_hash(&a));
    }

    #[test]
    fn error_display_carries_code() {
        let e = StoreError::unreachable("etcd at http://x: connection refused");
        assert!(e.to_string().starts_with("error[E0703]"), "{e}");
        assert!(e.is_transient());
        assert!(!StoreError::unreadable("x").is_transient());
    }

    #[test]
    fn endpoints_from_a_flag() {
        assert_eq!(
            parse_endpoints("10.0.0.1:2379, https://e2:2379,"),
            ["http://10.0.0.1:2379", "https://e2:2379"]
        );
        assert!(parse_endpoints("").is_empty());
    }

    #[test]
    fn node_names() {
        assert!(check_node_name("hv1").is_ok());
        assert!(check_node_name("node-2.example_x").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(check_node_name(bad).is_err(), "{bad}");
        }
    }
}

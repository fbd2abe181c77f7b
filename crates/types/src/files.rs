//! A site as bytes: what the pure core reads.

use std::collections::BTreeMap;

/// The files of a site, keyed by their path relative to the site root with
/// `/` separators (`site.toml`, `firewall/cluster.fw`, `nodes/hv1/host.fw`,
/// `qemu-server/100.conf`, `nodes/hv1/lxc/200.conf`, ...).
///
/// The shell fills it from a directory or from an etcd prefix; the parser and
/// everything after it only ever see this value, so tests feed fixtures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SiteFiles {
    pub files: BTreeMap<String, Vec<u8>>,
}

impl SiteFiles {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.files.insert(path.into(), bytes.into());
    }

    /// Builder form for tests: `SiteFiles::new().with("site.toml", "...")`.
    pub fn with(mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        self.insert(path, bytes);
        self
    }

    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(|v| v.as_slice())
    }

    /// Paths directly or indirectly under `dir` (no trailing slash), sorted.
    pub fn under<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let prefix = format!("{dir}/");
        self.files
            .iter()
            .filter(move |(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

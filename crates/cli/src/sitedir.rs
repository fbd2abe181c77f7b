//! Reading a site directory into [`SiteFiles`]: the only I/O `check` does.
//! The reader is the agent's ([`rampart_store::read_site_dir`]): one rule
//! for what is read, skipped and refused (crates/store/README.md).

use anyhow::Result;
use rampart_types::SiteFiles;
use std::path::Path;

/// Read the site under `root` with the default limits. Names skipped on
/// purpose (editor backups, swap files) are reported as warnings on
/// stderr; anything the reader refuses (a dangling or escaping symlink, a
/// FIFO, a symlinked `firewall/`, a file over the size limit) is an error
/// naming the path.
pub fn read_site(root: &Path) -> Result<SiteFiles> {
    let read = rampart_store::read_site_dir(root, &rampart_store::DirOptions::default())?;
    for p in &read.skipped {
        eprintln!(
            "warning[{}]: `{p}` is not read (editor backup or swap file)",
            rampart_types::codes::IGNORED_FILE.code
        );
    }
    Ok(read.files)
}

//! Reading a site directory into [`SiteFiles`]: the only I/O `check` does.

use anyhow::{bail, Context, Result};
use rampart_types::SiteFiles;
use std::path::Path;

/// Read every regular file under `root` (symlinks are not followed: in a
/// real /etc/pve, `qemu-server` and `lxc` are links into `nodes/<this>/`).
pub fn read_site(root: &Path) -> Result<SiteFiles> {
    let meta = std::fs::metadata(root)
        .with_context(|| format!("cannot read site directory `{}`", root.display()))?;
    if !meta.is_dir() {
        bail!("`{}` is not a directory", root.display());
    }
    let mut files = SiteFiles::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let rd =
            std::fs::read_dir(&dir).with_context(|| format!("cannot list `{}`", dir.display()))?;
        for entry in rd {
            let entry = entry.with_context(|| format!("cannot list `{}`", dir.display()))?;
            let ft = entry.file_type()?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if ft.is_symlink() {
                continue;
            }
            if ft.is_dir() {
                if name.starts_with('.') {
                    continue;
                }
                stack.push((entry.path(), path));
            } else if ft.is_file() {
                let bytes = std::fs::read(entry.path())
                    .with_context(|| format!("cannot read `{}`", entry.path().display()))?;
                files.insert(path, bytes);
            }
        }
    }
    Ok(files)
}

//! The directory store: a site is a directory tree on the node.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rampart_types::files::SiteFiles;

use crate::{
    check_node_name, content_hash, NodeStatus, SiteStore, SiteWatch, Snapshot, StoreError,
};

/// Default per-file limit: 8 MiB (a 100,000-entry blacklist is ~2 MB).
pub const MAX_FILE_SIZE: u64 = 8 << 20;
/// Default limit for the whole site: 32 MiB (the generated 1,000-node,
/// 20,000-guest benchmark site is ~15 MB).
pub const MAX_TOTAL_SIZE: u64 = 32 << 20;

/// What [`read_site_dir`] read: the files, and the names it skipped on
/// purpose (editor backups and swap files; hidden names are not listed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SiteRead {
    pub files: SiteFiles,
    pub skipped: Vec<String>,
}

/// Read a site directory: the one reader of the CLI and the agent (crate
/// README, "Directory store", for the rule). Fails closed, naming the path:
/// a symlink that dangles or leaves the tree, a symlinked `firewall/`,
/// `nodes/` or `nodes/<node>/`, a FIFO, socket or device, a file over the
/// size limit, a file that changed while it was read.
pub fn read_site_dir(root: &Path, opts: &DirOptions) -> Result<SiteRead, StoreError> {
    let store = DirStore::with_options(root, opts.clone());
    let mut skipped = Vec::new();
    let files = store.read_files_noting(&mut skipped)?;
    Ok(SiteRead { files, skipped })
}

/// Limits and timings of a [`DirStore`].
#[derive(Clone, Debug)]
pub struct DirOptions {
    /// A file larger than this makes the site unreadable (fail closed,
    /// `E0711`). Parsing costs about 30 times a file's size in memory.
    pub max_file_size: u64,
    /// All files together larger than this make the site unreadable
    /// (`E0711`).
    pub max_total_size: u64,
    /// More files than this makes the site unreadable.
    pub max_files: usize,
    /// Deepest directory nesting read.
    pub max_depth: usize,
    /// How often a watch looks at the tree's fingerprint (mtimes, sizes).
    pub poll_interval: Duration,
    /// A change is read only once the fingerprint stayed the same this long,
    /// so a half-written edit is never compiled.
    pub debounce: Duration,
    /// With inotify: when every write seen was completed (the file was
    /// closed after writing, or renamed into place), the change is read
    /// after this much quiet instead of `debounce`.
    pub settle: Duration,
    /// Wake up on inotify events instead of waiting for the next poll (the
    /// poll stays as a safety net). Default true; off or unavailable, the
    /// watch polls.
    pub inotify: bool,
    /// With inotify: while a file has been written to and not closed yet
    /// (a slow writer, `cat > file` still running), the change is not read
    /// until it is closed, or for at most this long after its first write.
    pub open_write_wait: Duration,
    /// Where `put_status` writes `<node>.json`. `None`: statuses are kept in
    /// memory for the life of the store only.
    pub status_dir: Option<PathBuf>,
}

impl Default for DirOptions {
    fn default() -> Self {
        Self {
            max_file_size: MAX_FILE_SIZE,
            max_total_size: MAX_TOTAL_SIZE,
            max_files: 100_000,
            max_depth: 16,
            poll_interval: Duration::from_millis(100),
            debounce: Duration::from_millis(100),
            settle: Duration::from_millis(5),
            inotify: true,
            open_write_wait: Duration::from_secs(2),
            status_dir: None,
        }
    }
}

/// A site directory (see the crate README for what is read and skipped).
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
    opts: DirOptions,
    mem_status: Mutex<BTreeMap<String, NodeStatus>>,
}

/// Skipped names: hidden files and directories, editor backups and swap
/// files, emacs autosaves.
fn skipped(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swo")
        || name.ends_with(".swx")
        || (name.starts_with('#') && name.ends_with('#'))
}

/// `firewall`, `nodes` and `nodes/<node>`: read only as real directories.
fn is_site_dir(rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    matches!(parts.as_slice(), ["firewall"] | ["nodes"] | ["nodes", _])
}

fn too_large(message: String) -> StoreError {
    StoreError::new(rampart_types::codes::SITE_TOO_LARGE, message)
}

/// What must not change while a file is read.
fn stamp_of(m: &fs::Metadata) -> (u64, i64, i64, i64, i64, u64) {
    (
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.ino(),
    )
}

/// One file of the tree as the fingerprint sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    path: String,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
}

type Fingerprint = Result<Vec<Stamp>, String>;

impl DirStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self::with_options(root, DirOptions::default())
    }

    pub fn with_options(root: impl Into<PathBuf>, opts: DirOptions) -> Self {
        Self {
            root: root.into(),
            opts,
            mem_status: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Walk the tree, calling `visit(relative path, target path, metadata of
    /// the target)` for every regular file that is read.
    fn walk(
        &self,
        skipped: &mut Vec<String>,
        visit: &mut dyn FnMut(&str, &Path, &fs::Metadata) -> Result<(), StoreError>,
    ) -> Result<usize, StoreError> {
        let shown = self.root.display();
        let meta = fs::metadata(&self.root)
            .map_err(|e| StoreError::unreadable(format!("site directory {shown}: {e}")))?;
        if !meta.is_dir() {
            return Err(StoreError::unreadable(format!(
                "site {shown} is not a directory"
            )));
        }
        let canon = fs::canonicalize(&self.root)
            .map_err(|e| StoreError::unreadable(format!("site directory {shown}: {e}")))?;
        let mut count = 0;
        let mut total = 0;
        self.walk_dir(
            &canon,
            &canon,
            "",
            0,
            &mut (&mut count, &mut total, skipped),
            visit,
        )?;
        if count == 0 {
            return Err(StoreError::unreadable(format!(
                "site directory {shown} has no files (an empty site is never read as \"no firewall\")"
            )));
        }
        Ok(count)
    }

    fn walk_dir(
        &self,
        canon_root: &Path,
        dir: &Path,
        rel: &str,
        depth: usize,
        acc: &mut (&mut usize, &mut u64, &mut Vec<String>),
        visit: &mut dyn FnMut(&str, &Path, &fs::Metadata) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if depth > self.opts.max_depth {
            return Err(StoreError::unreadable(format!(
                "{}: nested deeper than {} directories",
                dir.display(),
                self.opts.max_depth
            )));
        }
        let rd = fs::read_dir(dir)
            .map_err(|e| StoreError::unreadable(format!("{}: {e}", dir.display())))?;
        let mut entries = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| StoreError::unreadable(format!("{}: {e}", dir.display())))?;
            entries.push(ent);
        }
        entries.sort_by_key(|e| e.file_name());
        for ent in entries {
            let path = ent.path();
            let name = ent.file_name();
            let Some(name) = name.to_str() else {
                return Err(StoreError::unreadable(format!(
                    "{}: file name is not UTF-8",
                    path.display()
                )));
            };
            let relpath = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            if skipped(name) {
                if !name.starts_with('.') {
                    acc.2.push(relpath);
                }
                continue;
            }
            let lmeta = fs::symlink_metadata(&path)
                .map_err(|e| StoreError::unreadable(format!("{}: {e}", path.display())))?;
            let (target, meta) = if lmeta.file_type().is_symlink() {
                let target = fs::canonicalize(&path).map_err(|e| {
                    StoreError::unreadable(format!("{}: broken symlink: {e}", path.display()))
                })?;
                if !target.starts_with(canon_root) {
                    return Err(StoreError::unreadable(format!(
                        "{}: symlink leaves the site tree (to {})",
                        path.display(),
                        target.display()
                    )));
                }
                let meta = fs::metadata(&target)
                    .map_err(|e| StoreError::unreadable(format!("{}: {e}", path.display())))?;
                if meta.is_dir() {
                    if is_site_dir(&relpath) {
                        return Err(StoreError::unreadable(format!(
                            "{}: `{relpath}` is a symlink to a directory (to {}); rampart reads `{relpath}` only as a real directory (directory links are aliases, like /etc/pve/local, and are not followed)",
                            path.display(),
                            target.display()
                        )));
                    }
                    // An alias of a directory read under its own path
                    // (/etc/pve/local, qemu-server, lxc).
                    continue;
                }
                (target, meta)
            } else {
                (path.clone(), lmeta)
            };
            if meta.is_dir() {
                if name.ends_with(".fw") || name.ends_with(".conf") || name.ends_with(".toml") {
                    return Err(StoreError::unreadable(format!(
                        "{}: a directory where a site file is expected",
                        path.display()
                    )));
                }
                self.walk_dir(canon_root, &target, &relpath, depth + 1, acc, visit)?;
            } else if meta.is_file() {
                *acc.0 += 1;
                if *acc.0 > self.opts.max_files {
                    return Err(StoreError::unreadable(format!(
                        "site has more than {} files",
                        self.opts.max_files
                    )));
                }
                if meta.len() > self.opts.max_file_size {
                    return Err(too_large(format!(
                        "{}: {} bytes, more than the limit of {} bytes for one site file",
                        path.display(),
                        meta.len(),
                        self.opts.max_file_size
                    )));
                }
                *acc.1 += meta.len();
                if *acc.1 > self.opts.max_total_size {
                    return Err(too_large(format!(
                        "{}: the site's files add up to more than the limit of {} bytes for a whole site",
                        path.display(),
                        self.opts.max_total_size
                    )));
                }
                visit(&relpath, &target, &meta)?;
            } else {
                return Err(StoreError::unreadable(format!(
                    "{}: not a regular file or directory",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    /// Read the whole tree into [`SiteFiles`].
    pub fn read_files(&self) -> Result<SiteFiles, StoreError> {
        self.read_files_noting(&mut Vec::new())
    }

    /// [`DirStore::read_files`], noting the names skipped. Each file is
    /// checked unchanged (size, mtime, ctime, inode) between before and
    /// after its read; a file being written is read again, a few times,
    /// then refused.
    fn read_files_noting(&self, skipped: &mut Vec<String>) -> Result<SiteFiles, StoreError> {
        let mut files = SiteFiles::new();
        let cap = self.opts.max_file_size;
        self.walk(skipped, &mut |rel, target, _meta| {
            let mut tries = 0;
            let buf = loop {
                let read = || -> std::io::Result<(Vec<u8>, bool)> {
                    let f = fs::File::open(target)?;
                    let before = stamp_of(&f.metadata()?);
                    let mut buf = Vec::new();
                    (&f).take(cap + 1).read_to_end(&mut buf)?;
                    let after = stamp_of(&f.metadata()?);
                    Ok((buf, before == after))
                };
                let (buf, stable) = read()
                    .map_err(|e| StoreError::unreadable(format!("{}: {e}", target.display())))?;
                if buf.len() as u64 > cap {
                    return Err(too_large(format!(
                        "{}: grew past the limit of {cap} bytes for one site file while read",
                        target.display()
                    )));
                }
                if stable {
                    break buf;
                }
                tries += 1;
                if tries >= 5 {
                    return Err(StoreError::unreadable(format!(
                        "{}: changed while it was read (5 times); read again once it is written",
                        target.display()
                    )));
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            files.insert(rel, buf);
            Ok(())
        })?;
        Ok(files)
    }

    fn fingerprint(&self) -> Fingerprint {
        let mut out = Vec::new();
        self.walk(&mut Vec::new(), &mut |rel, _target, m| {
            out.push(Stamp {
                path: rel.to_string(),
                len: m.len(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ctime: (m.ctime(), m.ctime_nsec()),
                ino: m.ino(),
            });
            Ok(())
        })
        .map(|_| out)
        .map_err(|e| e.to_string())
    }

    fn status_path(&self, dir: &Path, node: &str) -> PathBuf {
        dir.join(format!("{node}.json"))
    }
}

impl SiteStore for DirStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let files = self.read_files()?;
        let hash = content_hash(&files);
        Ok(Snapshot {
            files,
            revision: hash.clone(),
            hash,
        })
    }

    fn watch(&self, last: Option<&str>) -> Result<Box<dyn SiteWatch>, StoreError> {
        let store = DirStore::with_options(self.root.clone(), self.opts.clone());
        let notify = if self.opts.inotify {
            Notify::new(&store)
        } else {
            None
        };
        Ok(Box::new(DirWatch {
            store,
            last_revision: last.map(str::to_string),
            seen: None,
            pending: None,
            notify,
            complete: false,
            open: std::collections::HashSet::new(),
            open_since: None,
        }))
    }

    fn put_status(&self, node: &str, status: &NodeStatus) -> Result<(), StoreError> {
        check_node_name(node)?;
        let Some(dir) = &self.opts.status_dir else {
            self.mem_status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(node.to_string(), status.clone());
            return Ok(());
        };
        let json = serde_json::to_vec_pretty(status).expect("status serialises");
        let path = self.status_path(dir, node);
        let tmp = dir.join(format!(".{node}.json.tmp"));
        let write = || -> std::io::Result<()> {
            fs::create_dir_all(dir)?;
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            let code = if e.raw_os_error() == Some(28) {
                rampart_types::codes::DISK_FULL
            } else {
                rampart_types::codes::SITE_UNREADABLE
            };
            StoreError::new(code, format!("writing status {}: {e}", path.display()))
        })
    }

    fn statuses(&self) -> Result<BTreeMap<String, NodeStatus>, StoreError> {
        let Some(dir) = &self.opts.status_dir else {
            return Ok(self
                .mem_status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone());
        };
        let mut out = BTreeMap::new();
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(StoreError::unreadable(format!("{}: {e}", dir.display()))),
        };
        for ent in rd {
            let ent = ent.map_err(|e| StoreError::unreadable(format!("{}: {e}", dir.display())))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            let Some(node) = name.strip_suffix(".json") else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let bytes = fs::read(ent.path())
                .map_err(|e| StoreError::unreadable(format!("{}: {e}", ent.path().display())))?;
            let st: NodeStatus = serde_json::from_slice(&bytes).map_err(|e| {
                StoreError::unreadable(format!("{}: bad status record: {e}", ent.path().display()))
            })?;
            out.insert(node.to_string(), st);
        }
        Ok(out)
    }
}

/// A debounced watch of a [`DirStore`]: inotify wakes it as soon as
/// something in the tree changes; the fingerprint (paths, sizes, times,
/// inodes), polled as well, decides what changed.
pub struct DirWatch {
    store: DirStore,
    last_revision: Option<String>,
    /// The fingerprint the last load (or error) was made from.
    seen: Option<Fingerprint>,
    /// A changed fingerprint and since when it has been stable.
    pending: Option<(Fingerprint, Instant)>,
    notify: Option<Notify>,
    /// Every write inotify reported since the last change was completed.
    complete: bool,
    /// Files written to and not closed yet (inotify), and since when.
    open: std::collections::HashSet<(nix::sys::inotify::WatchDescriptor, std::ffi::OsString)>,
    open_since: Option<Instant>,
}

/// inotify watches on every directory of the tree.
struct Notify {
    fd: nix::sys::inotify::Inotify,
}

impl Notify {
    fn mask() -> nix::sys::inotify::AddWatchFlags {
        use nix::sys::inotify::AddWatchFlags as F;
        F::IN_CLOSE_WRITE
            | F::IN_MOVED_TO
            | F::IN_MOVED_FROM
            | F::IN_CREATE
            | F::IN_DELETE
            | F::IN_MODIFY
            | F::IN_ATTRIB
            | F::IN_DELETE_SELF
            | F::IN_MOVE_SELF
    }

    /// Watch the root and every directory under it (hidden ones too: a
    /// hidden temp file renamed into place is seen by its rename).
    fn new(store: &DirStore) -> Option<Notify> {
        use nix::sys::inotify::{InitFlags, Inotify};
        let fd = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        let mut dirs = vec![(store.root.clone(), 0usize)];
        while let Some((d, depth)) = dirs.pop() {
            if fd.add_watch(&d, Self::mask()).is_err() && depth == 0 {
                return None;
            }
            if depth >= store.opts.max_depth {
                continue;
            }
            if let Ok(rd) = fs::read_dir(&d) {
                for ent in rd.flatten() {
                    if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        dirs.push((ent.path(), depth + 1));
                    }
                }
            }
        }
        Some(Notify { fd })
    }

    /// Wait up to `d` for events. Returns (any event, every write completed,
    /// the directory layout changed); `open` gains the files written to and
    /// loses those closed, removed or moved away.
    fn wait(
        &self,
        d: Duration,
        open: &mut std::collections::HashSet<(
            nix::sys::inotify::WatchDescriptor,
            std::ffi::OsString,
        )>,
    ) -> (bool, bool, bool) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use nix::sys::inotify::AddWatchFlags as F;
        use std::os::fd::AsFd;
        let ms =
            PollTimeout::try_from(d.as_millis().min(60_000) as u32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, ms).unwrap_or(0) <= 0 {
            return (false, true, false);
        }
        let (mut any, mut complete, mut dirs) = (false, true, false);
        while let Ok(evs) = self.fd.read_events() {
            if evs.is_empty() {
                break;
            }
            for e in evs {
                any = true;
                if let Some(name) = &e.name {
                    let key = (e.wd, name.clone());
                    if e.mask.contains(F::IN_MODIFY) {
                        open.insert(key);
                    } else if e
                        .mask
                        .intersects(F::IN_CLOSE_WRITE | F::IN_DELETE | F::IN_MOVED_FROM)
                    {
                        open.remove(&key);
                    }
                }
                if e.mask.contains(F::IN_MODIFY) {
                    complete = false;
                }
                if e.mask.intersects(F::IN_CLOSE_WRITE | F::IN_MOVED_TO) {
                    complete = true;
                }
                if e.mask
                    .intersects(F::IN_ISDIR | F::IN_DELETE_SELF | F::IN_MOVE_SELF | F::IN_IGNORED)
                {
                    dirs = true;
                }
            }
        }
        (any, complete, dirs)
    }
}

impl DirWatch {
    /// No file is half written: every file written to was closed, or the
    /// first unclosed write is older than `open_write_wait`.
    fn writes_closed(&self, now: Instant) -> bool {
        match self.open_since {
            None => true,
            Some(t) => now.duration_since(t) >= self.store.opts.open_write_wait,
        }
    }

    /// How long a changed tree must stay unchanged before it is read.
    fn quiet(&self) -> Duration {
        if self.notify.is_some() && self.complete {
            self.store.opts.settle.min(self.store.opts.debounce)
        } else {
            self.store.opts.debounce
        }
    }
}

impl SiteWatch for DirWatch {
    /// Errors are reported once per change of the tree's state (a site that
    /// stays missing does not make every call fail at once).
    fn next(&mut self, timeout: Duration) -> Result<Option<Snapshot>, StoreError> {
        let deadline = Instant::now() + timeout;
        let opts = &self.store.opts;
        loop {
            let now = Instant::now();
            let fp = self.store.fingerprint();
            match self.pending.take() {
                None => {
                    if self.seen.as_ref() != Some(&fp) {
                        self.pending = Some((fp, now));
                    }
                }
                Some((pfp, since)) => {
                    if pfp != fp {
                        self.pending = Some((fp, now));
                    } else if now.duration_since(since) >= self.quiet() && self.writes_closed(now) {
                        let snap = self.store.load();
                        // Read only what stayed put during the read: a
                        // tree that changed meanwhile is read again once
                        // it is quiet.
                        let after = self.store.fingerprint();
                        if after != fp {
                            self.pending = Some((after, Instant::now()));
                        } else {
                            self.seen = Some(fp);
                            let snap = snap?;
                            if self.last_revision.as_deref() != Some(snap.revision.as_str()) {
                                self.last_revision = Some(snap.revision.clone());
                                return Ok(Some(snap));
                            }
                        }
                    } else {
                        self.pending = Some((pfp, since));
                    }
                }
            }
            if now >= deadline {
                return Ok(None);
            }
            let mut nap = opts.poll_interval;
            if let Some((_, since)) = &self.pending {
                // Look again when the debounce window closes (or earlier, to
                // notice a write that restarts it).
                let closes = (*since + self.quiet()).saturating_duration_since(now);
                nap = nap.min(closes).max(Duration::from_millis(1));
            }
            let nap = nap.min(deadline - now);
            match &self.notify {
                Some(n) => {
                    let (any, complete, dirs) = n.wait(nap, &mut self.open);
                    if any {
                        self.complete = complete;
                    }
                    if self.open.is_empty() {
                        self.open_since = None;
                    } else if self.open_since.is_none() {
                        self.open_since = Some(Instant::now());
                    }
                    if dirs {
                        // New or removed directories: watch the tree anew.
                        self.notify = Notify::new(&self.store);
                        self.open.clear();
                        self.open_since = None;
                    }
                }
                None => std::thread::sleep(nap),
            }
        }
    }
}

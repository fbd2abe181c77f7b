//! The state directory: what runs, what was good, what came before, and the
//! pending confirmation. Every write is atomic (temp file, fsync, rename,
//! fsync of the directory); files are 0600, the directory 0700.

use crate::error::Error;
use crate::plan::Applied;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/rampart";

pub const CURRENT: &str = "current.plan";
pub const LAST_GOOD: &str = "last-good.plan";
pub const PREVIOUS: &str = "previous.plan";

/// A change applied with `--confirm`, waiting for `confirm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub id: String,
    pub plan_hash: String,
    pub applied_at: u64,
    /// Unix seconds after which the revert runs.
    pub deadline: u64,
    /// The session that applied (e.g. `$SSH_CONNECTION`), if known.
    pub session: Option<String>,
    /// How the revert was scheduled (pid/log or systemd unit).
    pub scheduled: String,
}

#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Open (creating it 0700 if missing) a state directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<StateDir, Error> {
        let root = root.into();
        if !root.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&root)
                .map_err(|e| Error::io(&root, e))?;
            // recursive() applies the mode before umask; enforce it.
            fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(&root, e))?;
        } else {
            // Never leave plans (addresses, topology) readable by others.
            let md = fs::metadata(&root).map_err(|e| Error::io(&root, e))?;
            if md.permissions().mode() & 0o077 != 0 {
                fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
                    .map_err(|e| Error::io(&root, e))?;
            }
        }
        Ok(StateDir { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Atomically replace `name` with `data` (mode `mode`).
    pub fn write(&self, name: &str, data: &[u8], mode: u32) -> Result<(), Error> {
        write_atomic(&self.path(name), data, mode)
    }

    /// The record `name`. The last record read or written is kept in
    /// memory while its file is provably the same (device, inode, size,
    /// modification and change times: records are only ever replaced by a
    /// rename, which makes a new inode), so an agent's run of small changes
    /// does not parse megabytes of JSON each time.
    pub fn read_applied(&self, name: &str) -> Result<Option<Applied>, Error> {
        let path = self.path(name);
        let Some(id) = file_id(&path)? else {
            return Ok(None);
        };
        if let Some(a) = record_cache::get(&path, id) {
            return Ok(Some(a));
        }
        let a: Option<Applied> = read_json(&path)?;
        if let Some(a) = &a {
            // Keep it only if the file did not change while it was read.
            if file_id(&path)? == Some(id) {
                record_cache::put(&path, id, a);
            }
        }
        Ok(a)
    }

    pub fn write_applied(&self, name: &str, a: &Applied) -> Result<(), Error> {
        let data = serde_json::to_vec_pretty(a).expect("serializable");
        self.write(name, &data, 0o600)?;
        let path = self.path(name);
        if let Ok(Some(id)) = file_id(&path) {
            record_cache::put(&path, id, a);
        }
        Ok(())
    }

    /// Atomically make `to` a copy of `from` (a hard link when the file
    /// system allows; records are never modified in place, only replaced).
    pub fn link_as(&self, from: &str, to: &str) -> Result<(), Error> {
        let src = self.path(from);
        let tmp = self.path(&format!(".{to}.link.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        if fs::hard_link(&src, &tmp).is_ok() {
            let res = fs::rename(&tmp, self.path(to))
                .and_then(|()| fs::File::open(&self.root)?.sync_all());
            if res.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            return res.map_err(|e| Error::io(&self.path(to), e));
        }
        let data = fs::read(&src).map_err(|e| Error::io(&src, e))?;
        self.write(to, &data, 0o600)
    }

    pub fn remove(&self, name: &str) -> Result<(), Error> {
        match fs::remove_file(self.path(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&self.path(name), e)),
        }
    }

    /// Take the state lock: an advisory `flock` on `lock` (which also
    /// holds the pid of the holder, for the message). The kernel drops the
    /// lock with the process that holds it (exit, crash, `kill -9`), so a
    /// lock file left behind, even one naming a live unrelated process
    /// (pid 1 after a reboot), never blocks. The file itself stays: removing
    /// it would let two processes lock two different files.
    pub fn lock(&self) -> Result<StateLock, Error> {
        use nix::fcntl::{Flock, FlockArg};
        let path = self.path("lock");
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(mut held) => {
                use std::io::{Seek, SeekFrom};
                // Best effort: the pid is only informative.
                let _ = held.set_len(0);
                let _ = held.seek(SeekFrom::Start(0));
                let _ = writeln!(held, "{}", std::process::id());
                Ok(StateLock { _file: held })
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                let pid = holder.trim();
                Err(Error::Busy(if pid.is_empty() {
                    "unknown".into()
                } else {
                    pid.to_owned()
                }))
            }
            Err((_, e)) => Err(Error::io(&path, e.into())),
        }
    }

    /// The pending confirmation, if any (`pending-<id>.json`).
    pub fn pending(&self) -> Result<Option<Pending>, Error> {
        let rd = fs::read_dir(&self.root).map_err(|e| Error::io(&self.root, e))?;
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(&self.root, e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if name.starts_with("pending-") && name.ends_with(".json") {
                return read_json(&ent.path());
            }
        }
        Ok(None)
    }
}

/// What identifies one version of a file: device, inode, size,
/// modification and change time (ns).
type FileId = (u64, u64, u64, i64, i64, i64, i64);

fn file_id(path: &Path) -> Result<Option<FileId>, Error> {
    use std::os::unix::fs::MetadataExt;
    match fs::metadata(path) {
        Ok(m) => Ok(Some((
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// One record kept in memory (the process's last read or write).
mod record_cache {
    use super::FileId;
    use crate::plan::Applied;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    static CACHE: Mutex<Option<(PathBuf, FileId, Applied)>> = Mutex::new(None);

    pub fn get(path: &Path, id: FileId) -> Option<Applied> {
        let g = CACHE.lock().ok()?;
        match g.as_ref() {
            Some((p, i, a)) if p == path && *i == id => Some(a.clone()),
            _ => None,
        }
    }

    pub fn put(path: &Path, id: FileId, a: &Applied) {
        if let Ok(mut g) = CACHE.lock() {
            *g = Some((path.to_owned(), id, a.clone()));
        }
    }
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, Error> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                path: path.to_owned(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Write `data` to a temp file beside `path`, fsync it, rename it over
/// `path`, fsync the directory. A reader sees the old or the new file, never
/// a torn one, even after a crash.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let res = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map_err(|e| Error::io(path, e))
}

/// Held while apply/confirm/rollback run; released on drop (and by the
/// kernel when the process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: nix::fcntl::Flock<fs::File>,
}

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

    /// The file `name` of the state directory. Names are rampart's own
    /// (constants, ids it made); one that is not a single path component
    /// (rampart_types::names::path_component) still stays inside the
    /// directory: its `/`, NUL and control characters become `_`.
    pub fn path(&self, name: &str) -> PathBuf {
        match rampart_types::names::path_component(name) {
            Ok(n) => self.root.join(n),
            Err(_) => {
                let safe: String = name
                    .chars()
                    .map(|c| if c == '/' || c.is_control() { '_' } else { c })
                    .collect();
                let safe = match safe.as_str() {
                    "" | "." | ".." => format!("_{safe}"),
                    _ => safe,
                };
                self.root.join(safe)
            }
        }
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
                let p: Option<Pending> = read_json(&ent.path())?;
                // The id names the revert script and snapshots: rampart
                // makes it from digits and hex; anything else is corrupt.
                if let Some(p) = &p {
                    let ok = !p.id.is_empty()
                        && p.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                    if !ok {
                        return Err(Error::Corrupt {
                            path: ent.path(),
                            message: format!(
                                "pending id `{}` is not one rampart writes",
                                rampart_types::escape::printable(&p.id)
                            ),
                        });
                    }
                }
                return Ok(p);
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

/// The record of an apply, written before the kernel changes, so that a
/// full or failing state disk refuses the change instead of leaving the
/// kernel ahead of the record: the new `current.plan` in a temp file
/// (fsynced), with fixed-width slots of white space for what is known only
/// after the switch (kernel hash, ruleset generation, staging, failed
/// steps), and hard links ready for `previous.plan` and `last-good.plan`.
/// [`StateDir::commit`] fills the slots in place (no new blocks) and renames.
/// Dropped without commit, it removes its files.
#[derive(Debug)]
pub struct PreparedRecord {
    tmp: Option<PathBuf>,
    file: fs::File,
    /// (field, offset, width) in the temp file.
    slots: Vec<(&'static str, u64, usize)>,
    prev_link: Option<PathBuf>,
    lg_link: Option<PathBuf>,
}

impl Drop for PreparedRecord {
    fn drop(&mut self) {
        for p in [&self.tmp, &self.prev_link, &self.lg_link]
            .into_iter()
            .flatten()
        {
            let _ = fs::remove_file(p);
        }
    }
}

/// The slot fields of [`Applied`] and their widths.
const SLOTS: [(&str, usize); 6] = [
    ("kernel_hash", 80),
    ("nft_genid", 80),
    ("nft_staged", 8),
    ("nft_salt", 160),
    ("nft_pins", 0),
    ("incomplete", 2048),
];

fn slot_value(a: &Applied, field: &str) -> String {
    let v = match field {
        "kernel_hash" => serde_json::to_string(&a.kernel_hash),
        "nft_genid" => serde_json::to_string(&a.nft_genid),
        "nft_staged" => serde_json::to_string(&a.nft_staged),
        "nft_salt" => serde_json::to_string(&a.nft_salt),
        "nft_pins" => serde_json::to_string(&a.nft_pins),
        "incomplete" => serde_json::to_string(&a.incomplete),
        _ => unreachable!("no slot {field}"),
    };
    v.expect("serializable")
}

impl StateDir {
    /// Write the record `a` will become (see [`PreparedRecord`]): slot
    /// values may change until [`StateDir::commit`] as long as they fit
    /// (`nft_pins` may only shrink).
    pub fn prepare(
        &self,
        a: &Applied,
        previous: bool,
        last_good: bool,
    ) -> Result<PreparedRecord, Error> {
        #[derive(Serialize)]
        struct Slotted<'a> {
            plan: &'a crate::plan::Plan,
            plan_hash: &'a str,
            applied_at: u64,
            kernel_hash: &'a str,
            nft_genid: &'a str,
            nft_staged: &'a str,
            nft_salt: &'a str,
            nft_pins: &'a str,
            incomplete: &'a str,
            sysctls_before: &'a std::collections::BTreeMap<String, String>,
        }
        let marks: Vec<String> = (0..SLOTS.len())
            .map(|i| format!("\u{1}slot{i}\u{1}"))
            .collect();
        let data = serde_json::to_vec_pretty(&Slotted {
            plan: &a.plan,
            plan_hash: &a.plan_hash,
            applied_at: a.applied_at,
            kernel_hash: &marks[0],
            nft_genid: &marks[1],
            nft_staged: &marks[2],
            nft_salt: &marks[3],
            nft_pins: &marks[4],
            incomplete: &marks[5],
            sysctls_before: &a.sysctls_before,
        })
        .expect("serializable");
        // Replace each mark (the last occurrence: the plan comes first, and
        // a quoted key cannot occur inside a string) by its slot.
        let mut out = Vec::with_capacity(data.len() + 4096);
        let mut slots = Vec::new();
        let mut rest: &[u8] = &data;
        let mut found = Vec::new();
        for (i, (field, width)) in SLOTS.iter().enumerate() {
            let pat = format!(
                "\"{field}\": {}",
                serde_json::to_string(&marks[i]).expect("str")
            );
            let at = memchr::memmem::rfind(&data, pat.as_bytes())
                .expect("slot mark in the serialized record");
            let width = match *width {
                0 => slot_value(a, field).len() + 16,
                w => w,
            };
            found.push((
                at + field.len() + 4,
                pat.len() - field.len() - 4,
                *field,
                width,
            ));
        }
        found.sort();
        let mut pos = 0;
        for (at, len, field, width) in found {
            out.extend_from_slice(&rest[..at - pos]);
            slots.push((field, out.len() as u64, width));
            out.resize(out.len() + width, b' ');
            rest = &rest[at - pos + len..];
            pos = at + len;
        }
        out.extend_from_slice(rest);
        let tmp = self.path(&format!(".{CURRENT}.new.{}", std::process::id()));
        let mut rec = PreparedRecord {
            tmp: None,
            file: fs::File::open(&self.root).map_err(|e| Error::io(&self.root, e))?,
            slots,
            prev_link: None,
            lg_link: None,
        };
        let _ = fs::remove_file(&tmp);
        let file = (|| {
            let mut f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&out)?;
            f.sync_all()?;
            Ok(f)
        })();
        rec.tmp = Some(tmp.clone());
        rec.file = file.map_err(|e| Error::io(&tmp, e))?;
        for s in &rec.slots {
            let v = slot_value(a, s.0);
            if v.len() > s.2 && s.0 != "incomplete" {
                return Err(Error::Corrupt {
                    path: tmp.clone(),
                    message: format!("slot {} too small for {v}", s.0),
                });
            }
        }
        if previous && self.path(CURRENT).exists() {
            let link = self.path(&format!(".{PREVIOUS}.link.{}", std::process::id()));
            let _ = fs::remove_file(&link);
            if fs::hard_link(self.path(CURRENT), &link).is_err() {
                let data =
                    fs::read(self.path(CURRENT)).map_err(|e| Error::io(&self.path(CURRENT), e))?;
                write_file(&link, &data, 0o600).map_err(|e| Error::io(&link, e))?;
            }
            rec.prev_link = Some(link);
        }
        if last_good {
            let link = self.path(&format!(".{LAST_GOOD}.new.{}", std::process::id()));
            let _ = fs::remove_file(&link);
            fs::hard_link(&tmp, &link).map_err(|e| Error::io(&link, e))?;
            rec.lg_link = Some(link);
        }
        Ok(rec)
    }

    /// Make the prepared record `a` what runs: fill its slots, then
    /// `previous.plan` <- the old record, `current.plan` <- this one, and
    /// `last-good.plan` <- this one when prepared so and `a` is complete.
    pub fn commit(&self, mut rec: PreparedRecord, a: &Applied) -> Result<(), Error> {
        use std::os::unix::fs::FileExt;
        let tmp = rec.tmp.clone().expect("prepared");
        let fill = (|| {
            for (field, off, width) in &rec.slots {
                let mut v = slot_value(a, field);
                if v.len() > *width && *field == "incomplete" {
                    let mut msg = a.incomplete.clone().unwrap_or_default();
                    while serde_json::to_string(&msg).map_or(0, |s| s.len()) > *width {
                        let cut = msg.char_indices().nth_back(16).map_or(0, |(i, _)| i);
                        msg.truncate(cut);
                    }
                    v = serde_json::to_string(&msg).expect("str");
                }
                if v.len() > *width {
                    return Err(std::io::Error::other(format!(
                        "{field} does not fit its slot"
                    )));
                }
                let mut buf = v.into_bytes();
                buf.resize(*width, b' ');
                rec.file.write_all_at(&buf, *off)?;
            }
            rec.file.sync_all()
        })();
        if let Err(e) = fill {
            // Not expected (the slots were sized for it): write it whole.
            drop(rec);
            let _ = e;
            self.link_as(CURRENT, PREVIOUS).ok();
            return self.write_applied(CURRENT, a);
        }
        if let Some(link) = rec.prev_link.take() {
            fs::rename(&link, self.path(PREVIOUS)).map_err(|e| {
                let _ = fs::remove_file(&link);
                Error::io(&self.path(PREVIOUS), e)
            })?;
        }
        fs::rename(&tmp, self.path(CURRENT)).map_err(|e| Error::io(&self.path(CURRENT), e))?;
        rec.tmp = None;
        if let Some(link) = rec.lg_link.take() {
            if a.incomplete.is_none() {
                fs::rename(&link, self.path(LAST_GOOD)).map_err(|e| {
                    let _ = fs::remove_file(&link);
                    Error::io(&self.path(LAST_GOOD), e)
                })?;
            } else {
                let _ = fs::remove_file(&link);
            }
        }
        fs::File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(&self.root, e))?;
        if let Ok(Some(id)) = file_id(&self.path(CURRENT)) {
            record_cache::put(&self.path(CURRENT), id, a);
        }
        Ok(())
    }
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;

    fn rec(plan: &str) -> Applied {
        Applied {
            plan: Plan::nftables("n1".parse().unwrap(), plan),
            plan_hash: "ab".repeat(32),
            applied_at: 7,
            kernel_hash: None,
            nft_genid: None,
            nft_staged: true,
            nft_salt: Some("123-456".into()),
            nft_pins: [(
                "inet rampart input".to_string(),
                "input.0123456789".to_string(),
            )]
            .into(),
            incomplete: None,
            sysctls_before: [("net.ipv4.ip_forward".to_string(), "0".to_string())].into(),
        }
    }

    #[test]
    fn prepared_record_commits_the_values_known_after_the_switch() {
        let tmp = tempfile::tempdir().unwrap();
        let st = StateDir::open(tmp.path()).unwrap();
        // A plan text holding what the slots look like must not confuse them.
        let tricky = "table inet rampart { comment \"\\\"kernel_hash\\\": \u{1}slot0\u{1}\" }\n";
        let first = rec(tricky);
        st.write_applied(CURRENT, &first).unwrap();
        let mut a = rec("table inet rampart {}\n");
        let p = st.prepare(&a, true, true).unwrap();
        // Nothing visible yet.
        assert_eq!(st.read_applied(CURRENT).unwrap().unwrap(), first);
        a.kernel_hash = Some("cd".repeat(32));
        a.nft_genid = Some("4242/17".into());
        a.nft_staged = false;
        a.nft_salt = None;
        a.nft_pins.clear();
        st.commit(p, &a).unwrap();
        let back: Applied = read_json(&st.path(CURRENT)).unwrap().unwrap();
        assert_eq!(back, a);
        let lg: Applied = read_json(&st.path(LAST_GOOD)).unwrap().unwrap();
        assert_eq!(lg, a);
        let prev: Applied = read_json(&st.path(PREVIOUS)).unwrap().unwrap();
        assert_eq!(prev, first);
        // Incomplete: recorded, never last good; a long message is cut.
        let mut b = rec("table inet rampart { }\n");
        let p = st.prepare(&b, true, true).unwrap();
        b.incomplete = Some("sysctl x: failed ".repeat(500));
        st.commit(p, &b).unwrap();
        let back: Applied = read_json(&st.path(CURRENT)).unwrap().unwrap();
        assert!(back
            .incomplete
            .as_ref()
            .unwrap()
            .starts_with("sysctl x: failed"));
        assert_eq!(back.plan, b.plan);
        let lg: Applied = read_json(&st.path(LAST_GOOD)).unwrap().unwrap();
        assert_eq!(lg, a);
        // Dropped without commit: no files left.
        let p = st.prepare(&b, true, true).unwrap();
        drop(p);
        let names: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }
}

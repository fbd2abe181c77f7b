//! The legacy escape hatch (source document 000): before replacing an
//! `/etc/sysconfig/iptables`-style file, keep a timestamped backup and tell
//! the admin the command that brings the old rules back from a console.

use crate::error::Error;
use crate::plan::{Backend, Plan};
use crate::state::write_atomic;
use crate::system::Programs;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A replacement decided before anything is written, so the revert script
/// can name the backup before the change happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyPrep {
    pub path: PathBuf,
    /// Where the current file will be copied; `None` if there is no file yet.
    pub backup: Option<PathBuf>,
    mode: u32,
    /// The file already holds exactly what would be written (and is 0600):
    /// nothing to write, no backup (a re-apply or `rampart restore` at boot
    /// would otherwise pile up identical backups).
    pub unchanged: bool,
}

/// The result of replacing the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyWrite {
    pub path: PathBuf,
    pub backup: Option<PathBuf>,
    /// Shell commands that restore the previous rules (print them).
    pub recovery: String,
    /// Nothing was written: the file already held these rules.
    pub unchanged: bool,
}

/// `YYYYmmddTHHMMSSZ` for a Unix time (UTC).
pub fn timestamp(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Decide the backup name for replacing `path` at time `now`.
pub fn prepare(path: &Path, now: u64) -> Result<LegacyPrep, Error> {
    match fs::metadata(path) {
        Ok(md) => {
            let mut backup =
                PathBuf::from(format!("{}.rampart-{}", path.display(), timestamp(now)));
            let mut n = 1;
            while backup.exists() {
                backup =
                    PathBuf::from(format!("{}.rampart-{}.{n}", path.display(), timestamp(now)));
                n += 1;
            }
            Ok(LegacyPrep {
                path: path.to_owned(),
                backup: Some(backup),
                mode: md.permissions().mode() & 0o7777,
                unchanged: false,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LegacyPrep {
            path: path.to_owned(),
            backup: None,
            mode: 0o600,
            unchanged: false,
        }),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Every boot file of `plan` (its `saved_files`, or `legacy_file` for the
/// iptables one), prepared before the switch in the order the boot loads
/// them: the ipsets (`ipset restore`), then `iptables-restore`, then
/// `ip6tables-restore`. Each with the text it will hold and the command that
/// loads it. A directory that does not exist refuses the apply here, before
/// anything changes.
pub fn prepare_all(
    plan: &Plan,
    legacy_file: Option<&Path>,
    programs: &Programs,
    now: u64,
) -> Result<Vec<(LegacyPrep, String, String)>, Error> {
    let sf = &plan.saved_files;
    let v4 = sf.iptables.as_deref().map(Path::new).or(legacy_file);
    if plan.backend == Backend::Nftables {
        if v4.is_some() || !sf.is_empty() {
            return Err(Error::InvalidPlan(
                "iptables-restore files (iptables_file, ip6tables_file, ipset_file) need an iptables plan".into(),
            ));
        }
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let files = [
        (
            sf.ipset.as_deref().map(Path::new),
            plan.ipsets.clone().unwrap_or_default(),
            format!("{} restore -exist", programs.ipset),
        ),
        (v4, plan.ruleset.clone(), programs.iptables_restore.clone()),
        (
            sf.ip6tables.as_deref().map(Path::new),
            plan.ruleset6.clone().unwrap_or_default(),
            programs.ip6tables_restore.clone(),
        ),
    ];
    for (path, content, cmd) in files {
        let Some(path) = path else { continue };
        if !path.is_absolute() {
            return Err(Error::InvalidPlan(format!(
                "{}: a saved rules file must be an absolute path",
                path.display()
            )));
        }
        let dir = path.parent().unwrap_or(Path::new("/"));
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::InvalidPlan(format!(
                    "{}: cannot save the rules there: {} is not a directory",
                    path.display(),
                    dir.display()
                )))
            }
            Err(e) => return Err(Error::io(dir, e)),
        }
        if fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            return Err(Error::InvalidPlan(format!(
                "{}: is a directory, not a rules file",
                path.display()
            )));
        }
        let mut prep = prepare(path, now)?;
        if prep.mode == 0o600 && fs::read(path).is_ok_and(|old| old == content.as_bytes()) {
            prep.backup = None;
            prep.unchanged = true;
        }
        out.push((prep, content, cmd));
    }
    Ok(out)
}

/// Copy the current file to the backup (fsynced, its mode), then replace
/// the file atomically with `content`, mode 0600 (as `service iptables
/// save` leaves it: only root reads the host's policy).
pub fn commit(prep: &LegacyPrep, content: &str, restore_cmd: &str) -> Result<LegacyWrite, Error> {
    if prep.unchanged {
        return Ok(LegacyWrite {
            path: prep.path.clone(),
            backup: None,
            recovery: recovery(prep, restore_cmd),
            unchanged: true,
        });
    }
    if let Some(b) = &prep.backup {
        let old = fs::read(&prep.path).map_err(|e| Error::io(&prep.path, e))?;
        write_atomic(b, &old, prep.mode)?;
    }
    write_atomic(&prep.path, content.as_bytes(), 0o600)?;
    Ok(LegacyWrite {
        path: prep.path.clone(),
        backup: prep.backup.clone(),
        recovery: recovery(prep, restore_cmd),
        unchanged: false,
    })
}

fn recovery(prep: &LegacyPrep, restore_cmd: &str) -> String {
    let p = prep.path.display();
    if prep.unchanged {
        return format!("# {p} is unchanged: it already held these rules");
    }
    match &prep.backup {
        Some(b) => format!("{restore_cmd} < {b}\ncp -p {b} {p}", b = b.display()),
        None => format!("# {p} did not exist before rampart wrote it\nrm {p}"),
    }
}

/// Shell lines for the revert script that put the old file back.
pub(crate) fn revert_lines(prep: &LegacyPrep) -> String {
    if prep.unchanged {
        return String::new();
    }
    let p = crate::revert::sh_quote(&prep.path.to_string_lossy());
    match &prep.backup {
        Some(b) => format!(
            "cp -p {} {p}.rampart-tmp && mv {p}.rampart-tmp {p}\n",
            crate::revert::sh_quote(&b.to_string_lossy())
        ),
        None => format!("rm -f {p}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0), "19700101T000000Z");
        assert_eq!(timestamp(1_700_000_000), "20231114T221320Z");
        assert_eq!(timestamp(951_782_400), "20000229T000000Z");
    }

    #[test]
    fn backup_then_replace() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("iptables");
        fs::write(&f, "*filter\nOLD\nCOMMIT\n").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
        let prep = prepare(&f, 1_700_000_000).unwrap();
        let w = commit(&prep, "*filter\nNEW\nCOMMIT\n", "iptables-restore").unwrap();
        let b = w.backup.clone().unwrap();
        assert!(b
            .to_string_lossy()
            .ends_with("iptables.rampart-20231114T221320Z"));
        assert_eq!(fs::read_to_string(&b).unwrap(), "*filter\nOLD\nCOMMIT\n");
        assert_eq!(fs::read_to_string(&f).unwrap(), "*filter\nNEW\nCOMMIT\n");
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&b).unwrap().permissions().mode() & 0o777,
            0o640,
            "the backup is a copy of the old file"
        );
        assert!(w
            .recovery
            .starts_with(&format!("iptables-restore < {}", b.display())));
        // A second replacement in the same second keeps both backups.
        let prep2 = prepare(&f, 1_700_000_000).unwrap();
        assert_ne!(prep2.backup, prep.backup);
    }

    #[test]
    fn no_file_yet() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("iptables");
        let w = commit(&prepare(&f, 5).unwrap(), "x\n", "iptables-restore").unwrap();
        assert!(w.backup.is_none());
        assert!(w.recovery.contains("did not exist"));
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

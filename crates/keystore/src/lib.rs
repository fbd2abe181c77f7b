//! The node's WireGuard key store: the only part of rampart's WireGuard
//! support that touches files.
//!
//! Layout (the directory is mode 0700, every file 0600 from the moment it
//! exists, all owned by root):
//!
//! ```text
//! /etc/rampart/wg/
//!   mgmt.key               current private key of network `mgmt`
//!   mgmt.next.key          the next key during a rotation
//!   psk/mgmt/a--b.psk      preshared key of the pair (a, b)
//! ```
//!
//! A key file readable or writable by group or others, or not owned by the
//! expected owner (root), is refused (E0616) rather than used.

use rampart_types::{codes, Diagnostic};
use rampart_wg::plan::{preshared_key_file, private_key_file};
use rampart_wg::{PresharedKey, PrivateKey, PublicKey};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error(
        "{path}: mode {mode:04o} lets group or others in; refusing to use it (chmod {want:04o})"
    )]
    Permissions { path: PathBuf, mode: u32, want: u32 },
    #[error("{path}: owned by uid {uid}, expected {want}; refusing to use it")]
    Owner { path: PathBuf, uid: u32, want: u32 },
    #[error("{path}: not a valid WireGuard key ({why})")]
    Malformed { path: PathBuf, why: String },
    #[error("{path}: no such key")]
    Missing { path: PathBuf },
    /// A network or member name that is not a single file name (the
    /// site's names are validated by the parser; this is the store's own
    /// gate, rampart_types::names::path_component).
    #[error("key store: {0}")]
    BadName(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl KeyStoreError {
    /// As a diagnostic (E0616 for permission and owner problems).
    pub fn to_diagnostic(&self) -> Diagnostic {
        let code = match self {
            KeyStoreError::Permissions { .. } | KeyStoreError::Owner { .. } => {
                codes::KEY_FILE_PERMISSIONS
            }
            KeyStoreError::Malformed { .. } => codes::MALFORMED_KEY,
            _ => codes::APPLY_FAILED,
        };
        Diagnostic::new(code, self.to_string())
    }
}

/// Every name a key file's path is built from must be one path component.
fn names(parts: &[&str]) -> Result<(), KeyStoreError> {
    for p in parts {
        rampart_types::names::path_component(p)
            .map_err(|e| KeyStoreError::BadName(e.to_string()))?;
    }
    Ok(())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyStoreError + '_ {
    move |source| KeyStoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct KeyStore {
    dir: PathBuf,
    owner: u32,
}

impl KeyStore {
    /// Open (creating it 0700 if missing) a key store whose files must be
    /// owned by root.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, KeyStoreError> {
        Self::open_owned_by(dir, 0)
    }

    /// Same, with another expected owner (tests, unprivileged agents).
    pub fn open_owned_by(dir: impl AsRef<Path>, owner: u32) -> Result<Self, KeyStoreError> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io(&dir))?;
        }
        let ks = KeyStore { dir, owner };
        ks.check(&ks.dir, 0o700)?;
        Ok(ks)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check(&self, path: &Path, want: u32) -> Result<(), KeyStoreError> {
        let m = fs::symlink_metadata(path).map_err(io(path))?;
        let mode = m.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyStoreError::Permissions {
                path: path.to_path_buf(),
                mode,
                want,
            });
        }
        if m.uid() != self.owner {
            return Err(KeyStoreError::Owner {
                path: path.to_path_buf(),
                uid: m.uid(),
                want: self.owner,
            });
        }
        Ok(())
    }

    pub fn key_path(&self, network: &str) -> PathBuf {
        PathBuf::from(private_key_file(&self.dir.to_string_lossy(), network))
    }
    pub fn next_key_path(&self, network: &str) -> PathBuf {
        self.dir.join(format!("{network}.next.key"))
    }
    pub fn psk_path(&self, network: &str, a: &str, b: &str) -> PathBuf {
        PathBuf::from(preshared_key_file(
            &self.dir.to_string_lossy(),
            network,
            a,
            b,
        ))
    }

    /// Write `text` to `path` through a 0600 temporary file created with
    /// O_EXCL, then rename: the secret is never in a file with wider modes
    /// and never half-written. Fails if `path` exists and `replace` is false.
    fn write_secret(&self, path: &Path, text: &str, replace: bool) -> Result<(), KeyStoreError> {
        let parent = path.parent().unwrap_or(&self.dir);
        if !parent.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io(parent))?;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{name}.tmp.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        // The umask can only remove bits; make sure it is exactly 0600.
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io(&tmp))?;
        f.write_all(format!("{text}\n").as_bytes())
            .map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        if !replace && path.exists() {
            let _ = fs::remove_file(&tmp);
            return Err(KeyStoreError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists"),
            });
        }
        fs::rename(&tmp, path).map_err(io(path))?;
        if let Ok(d) = fs::File::open(parent) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn read_secret(&self, path: &Path) -> Result<String, KeyStoreError> {
        if !path.exists() {
            return Err(KeyStoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        self.check(path, 0o600)?;
        let mut s = String::new();
        fs::File::open(path)
            .map_err(io(path))?
            .read_to_string(&mut s)
            .map_err(io(path))?;
        Ok(s.trim_end_matches('\n').to_string())
    }

    /// The private key of `network` (checked: mode, owner, format).
    pub fn load(&self, network: &str) -> Result<PrivateKey, KeyStoreError> {
        names(&[network])?;
        let path = self.key_path(network);
        let text = self.read_secret(&path)?;
        PrivateKey::parse(&text).map_err(|e| KeyStoreError::Malformed {
            path,
            why: e.to_string(),
        })
    }

    /// Generate the key of `network` if there is none; return its public
    /// key (what goes into site.toml as `public_key`).
    pub fn enroll(&self, network: &str) -> Result<PublicKey, KeyStoreError> {
        names(&[network])?;
        let path = self.key_path(network);
        if path.exists() {
            return Ok(self.load(network)?.public_key());
        }
        let k = PrivateKey::generate();
        self.write_secret(&path, &k.expose_base64(), false)?;
        Ok(k.public_key())
    }

    /// Start a rotation: generate the next key (if not already there) and
    /// return its public key, to publish to the peers before [`promote`].
    ///
    /// [`promote`]: KeyStore::promote
    pub fn rotate(&self, network: &str) -> Result<PublicKey, KeyStoreError> {
        names(&[network])?;
        let path = self.next_key_path(network);
        if path.exists() {
            return self.next_public(network).map(|k| k.expect("exists"));
        }
        let k = PrivateKey::generate();
        self.write_secret(&path, &k.expose_base64(), false)?;
        Ok(k.public_key())
    }

    /// The public key of the pending next key, if a rotation is under way.
    pub fn next_public(&self, network: &str) -> Result<Option<PublicKey>, KeyStoreError> {
        names(&[network])?;
        let path = self.next_key_path(network);
        if !path.exists() {
            return Ok(None);
        }
        let text = self.read_secret(&path)?;
        PrivateKey::parse(&text)
            .map(|k| Some(k.public_key()))
            .map_err(|e| KeyStoreError::Malformed {
                path,
                why: e.to_string(),
            })
    }

    /// Finish a rotation: the next key becomes the current one (atomic
    /// rename). Returns the new current public key.
    pub fn promote(&self, network: &str) -> Result<PublicKey, KeyStoreError> {
        names(&[network])?;
        let next = self.next_key_path(network);
        let pk = self
            .next_public(network)?
            .ok_or(KeyStoreError::Missing { path: next.clone() })?;
        let cur = self.key_path(network);
        fs::rename(&next, &cur).map_err(io(&cur))?;
        Ok(pk)
    }

    /// The preshared key of the pair (a, b) on `network`, generated if missing.
    pub fn preshared(
        &self,
        network: &str,
        a: &str,
        b: &str,
    ) -> Result<PresharedKey, KeyStoreError> {
        names(&[network, a, b])?;
        let path = self.psk_path(network, a, b);
        if !path.exists() {
            let k = PresharedKey::generate();
            self.write_secret(&path, &k.expose_base64(), false)?;
            return Ok(k);
        }
        let text = self.read_secret(&path)?;
        PresharedKey::parse(&text).map_err(|e| KeyStoreError::Malformed {
            path,
            why: e.to_string(),
        })
    }

    /// The preshared key of the pair (a, b) on `network` if the store has
    /// one (checked: mode, owner, format); never generates.
    pub fn preshared_if_any(
        &self,
        network: &str,
        a: &str,
        b: &str,
    ) -> Result<Option<PresharedKey>, KeyStoreError> {
        names(&[network, a, b])?;
        let path = self.psk_path(network, a, b);
        match self.read_secret(&path) {
            Ok(text) => {
                PresharedKey::parse(&text)
                    .map(Some)
                    .map_err(|e| KeyStoreError::Malformed {
                        path,
                        why: e.to_string(),
                    })
            }
            Err(KeyStoreError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Store `key` as the preshared key of the pair (a, b) on `network`
    /// (the other member's store holds the same key). Replaces an existing
    /// one only with `replace`.
    pub fn put_preshared(
        &self,
        network: &str,
        a: &str,
        b: &str,
        key: &PresharedKey,
        replace: bool,
    ) -> Result<PathBuf, KeyStoreError> {
        names(&[network, a, b])?;
        let path = self.psk_path(network, a, b);
        self.write_secret(&path, &key.expose_base64(), replace)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn uid() -> u32 {
        fs::metadata("/proc/self").unwrap().uid()
    }
    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn names_that_are_not_one_file_name_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let ks = KeyStore::open(t.path().join("wg")).unwrap();
        for bad in ["../../x", "..", "", "a/b", "a\0b"] {
            assert!(
                matches!(ks.enroll(bad), Err(KeyStoreError::BadName(_))),
                "{bad:?}"
            );
            assert!(matches!(
                ks.preshared("mgmt", bad, "b"),
                Err(KeyStoreError::BadName(_))
            ));
        }
        // Nothing was created next to the store.
        let left: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("wg")]);
        assert!(ks.enroll("mgmt").is_ok());
    }

    #[test]
    fn store_is_0700_and_keys_0600() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("wg");
        let ks = KeyStore::open_owned_by(&dir, uid()).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let pk = ks.enroll("mgmt").unwrap();
        let p = ks.key_path("mgmt");
        assert_eq!(mode(&p), 0o600);
        // Enrolling again returns the same key, does not regenerate.
        assert_eq!(ks.enroll("mgmt").unwrap(), pk);
        assert_eq!(ks.load("mgmt").unwrap().public_key(), pk);
        // No temporary left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let psk = ks.preshared("mgmt", "b", "a").unwrap();
        assert_eq!(mode(&ks.psk_path("mgmt", "a", "b")), 0o600);
        assert_eq!(ks.preshared("mgmt", "a", "b").unwrap(), psk);
        // The other member's store gets the same key; replaced only when asked.
        let other = tempfile::tempdir().unwrap();
        let ks2 = KeyStore::open_owned_by(other.path().join("wg"), uid()).unwrap();
        assert_eq!(ks2.preshared_if_any("mgmt", "a", "b").unwrap(), None);
        ks2.put_preshared("mgmt", "b", "a", &psk, false).unwrap();
        assert_eq!(
            ks2.preshared_if_any("mgmt", "a", "b").unwrap(),
            Some(psk.clone())
        );
        assert_eq!(mode(&ks2.psk_path("mgmt", "a", "b")), 0o600);
        let fresh = PresharedKey::generate();
        assert!(ks2.put_preshared("mgmt", "a", "b", &fresh, false).is_err());
        ks2.put_preshared("mgmt", "a", "b", &fresh, true).unwrap();
        assert_eq!(
            ks2.preshared_if_any("mgmt", "a", "b").unwrap(),
            Some(fresh.clone())
        );
        assert!(ks2.put_preshared("mgmt", "../x", "b", &psk, true).is_err());
    }

    #[test]
    fn refuses_a_key_readable_by_others() {
        let t = tempfile::tempdir().unwrap();
        let ks = KeyStore::open_owned_by(t.path().join("wg"), uid()).unwrap();
        ks.enroll("mgmt").unwrap();
        let p = ks.key_path("mgmt");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let e = ks.load("mgmt").unwrap_err();
        assert!(
            matches!(e, KeyStoreError::Permissions { mode: 0o640, .. }),
            "{e}"
        );
        let d = e.to_diagnostic();
        assert_eq!(d.code, "E0616");
        // The error never carries key material.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        let secret = fs::read_to_string(&p).unwrap();
        assert!(!d.message.contains(secret.trim()));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o604)).unwrap();
        assert!(
            ks.enroll("mgmt").is_err(),
            "enroll must not use an exposed key either"
        );
    }

    #[test]
    fn refuses_a_store_directory_open_to_others() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("wg");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let e = KeyStore::open_owned_by(&dir, uid()).err().expect("refused");
        assert_eq!(e.to_diagnostic().code, "E0616");
    }

    #[test]
    fn refuses_a_key_not_owned_by_the_expected_owner() {
        if uid() != 0 {
            return; // chown needs root; the suite runs as root in CI.
        }
        let t = tempfile::tempdir().unwrap();
        let ks = KeyStore::open(t.path().join("wg")).unwrap();
        ks.enroll("mgmt").unwrap();
        std::os::unix::fs::chown(ks.key_path("mgmt"), Some(1000), Some(1000)).unwrap();
        let e = ks.load("mgmt").unwrap_err();
        assert!(
            matches!(
                e,
                KeyStoreError::Owner {
                    uid: 1000,
                    want: 0,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.to_diagnostic().code, "E0616");
    }

    #[test]
    fn rotation_keeps_current_until_promoted() {
        let t = tempfile::tempdir().unwrap();
        let ks = KeyStore::open_owned_by(t.path().join("wg"), uid()).unwrap();
        let old = ks.enroll("mgmt").unwrap();
        assert_eq!(ks.next_public("mgmt").unwrap(), None);
        let next = ks.rotate("mgmt").unwrap();
        assert_ne!(next, old);
        assert_eq!(mode(&ks.next_key_path("mgmt")), 0o600);
        assert_eq!(
            ks.rotate("mgmt").unwrap(),
            next,
            "rotate is idempotent until promoted"
        );
        assert_eq!(
            ks.load("mgmt").unwrap().public_key(),
            old,
            "current key unchanged during rotation"
        );
        assert_eq!(ks.promote("mgmt").unwrap(), next);
        assert_eq!(ks.load("mgmt").unwrap().public_key(), next);
        assert_eq!(mode(&ks.key_path("mgmt")), 0o600);
        assert_eq!(ks.next_public("mgmt").unwrap(), None);
    }
}

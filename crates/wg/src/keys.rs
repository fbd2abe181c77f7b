//! WireGuard keys: x25519, encoded like `wg genkey` / `wg pubkey` (standard
//! base64 of 32 bytes, 44 characters with one `=`).
//!
//! [`PrivateKey`] and [`PresharedKey`] never print their material: their
//! `Debug` shows `<redacted>` and they have no `Display`. The only way to the
//! secret text is the explicitly named [`PrivateKey::expose_base64`], used by
//! the key store and by the renderer when it writes a file *for* the key store.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand_core::{OsRng, RngCore};
use std::fmt;
use x25519_dalek::{PublicKey as XPublic, StaticSecret};

/// Why a key text was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Not 44 characters of standard base64 ending in `=`.
    Encoding(String),
    /// Decoded, but not 32 bytes.
    Length(usize),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Encoding(why) => write!(f, "not a base64 WireGuard key: {why}"),
            KeyError::Length(n) => {
                write!(f, "a WireGuard key is 32 bytes, this one decodes to {n}")
            }
        }
    }
}

impl std::error::Error for KeyError {}

/// Decode a key exactly as `wg` does: 44 characters of standard base64
/// with padding, nothing before or after, 32 bytes.
pub fn decode_key(text: &str) -> Result<[u8; 32], KeyError> {
    if let Ok(b) = STANDARD.decode(text) {
        if b.len() != 32 {
            return Err(KeyError::Length(b.len()));
        }
    }
    if text.len() != 44 {
        return Err(KeyError::Encoding(format!(
            "{} characters, expected 44",
            text.chars().count()
        )));
    }
    if !text.ends_with('=') || text.ends_with("==") {
        return Err(KeyError::Encoding(
            "expected exactly one `=` at the end".into(),
        ));
    }
    let bytes = STANDARD
        .decode(text)
        .map_err(|e| KeyError::Encoding(e.to_string()))?;
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::Length(bytes.len()))?;
    // Canonical encoding only: the last character's unused bits must be zero.
    if STANDARD.encode(arr) != text {
        return Err(KeyError::Encoding(
            "non-canonical base64 (unused bits set)".into(),
        ));
    }
    Ok(arr)
}

/// A public key. Printing it is fine.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        decode_key(text).map(PublicKey)
    }
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

/// Clamp 32 bytes into an x25519 private scalar, as `wg genkey` does.
pub fn clamp(mut k: [u8; 32]) -> [u8; 32] {
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    k
}

/// A private key. Never printed: `Debug` is redacted, there is no `Display`.
#[derive(Clone)]
pub struct PrivateKey(StaticSecret);

impl PrivateKey {
    /// A fresh key from the operating system's random source, clamped like
    /// `wg genkey`.
    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        OsRng.fill_bytes(&mut b);
        PrivateKey::from_bytes(clamp(b))
    }
    /// Use 32 bytes as they are (`wg pubkey` accepts unclamped keys too and
    /// clamps when it computes; so does x25519).
    pub fn from_bytes(b: [u8; 32]) -> Self {
        PrivateKey(StaticSecret::from(b))
    }
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        decode_key(text).map(PrivateKey::from_bytes)
    }
    pub fn public_key(&self) -> PublicKey {
        PublicKey(XPublic::from(&self.0).to_bytes())
    }
    /// The secret as `wg genkey` prints it. Named so that every use stands out.
    pub fn expose_base64(&self) -> String {
        STANDARD.encode(self.0.to_bytes())
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// A preshared key (`wg genpsk`): 32 random bytes, no clamping.
#[derive(Clone, PartialEq, Eq)]
pub struct PresharedKey([u8; 32]);

impl PresharedKey {
    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        OsRng.fill_bytes(&mut b);
        PresharedKey(b)
    }
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        decode_key(text).map(PresharedKey)
    }
    pub fn expose_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PresharedKey(<redacted>)")
    }
}

/// A stable pseudo-random public key for tests and benchmarks:
/// the public key of a private key derived from `seed` (not secret!).
pub fn test_keypair(seed: &str) -> (PrivateKey, PublicKey) {
    use sha2::{Digest, Sha256};
    let d: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
    let k = PrivateKey::from_bytes(clamp(d));
    let p = k.public_key();
    (k, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_clamped_and_roundtrip() {
        let k = PrivateKey::generate();
        let t = k.expose_base64();
        let b = decode_key(&t).unwrap();
        assert_eq!(b[0] & 7, 0);
        assert_eq!(b[31] & 0x80, 0);
        assert_eq!(b[31] & 0x40, 0x40);
        assert_eq!(PrivateKey::parse(&t).unwrap().public_key(), k.public_key());
    }

    #[test]
    fn debug_never_prints_private_material() {
        let k = PrivateKey::generate();
        let secret = k.expose_base64();
        let shown = format!("{k:?} {:?}", PresharedKey::generate());
        assert!(!shown.contains(&secret));
        assert_eq!(shown, "PrivateKey(<redacted>) PresharedKey(<redacted>)");
    }

    #[test]
    fn malformed_keys_are_refused() {
        let good = PrivateKey::generate().public_key().to_base64();
        assert!(PublicKey::parse(&good).is_ok());
        assert!(
            PublicKey::parse(&format!("{good}x")).is_err(),
            "trailing character"
        );
        assert!(
            PublicKey::parse(&format!(" {good}")).is_err(),
            "leading space"
        );
        assert!(PublicKey::parse(&good[..43]).is_err(), "missing padding");
        assert!(PublicKey::parse("AAAA").is_err());
        assert!(PublicKey::parse(&good.replace('=', "A")).is_err());
        // 33 bytes of base64.
        assert!(matches!(
            PublicKey::parse(&STANDARD.encode([1u8; 33])),
            Err(KeyError::Length(33))
        ));
    }
}

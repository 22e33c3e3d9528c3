//! Slot ids and the HMAC-SHA-256 signatures in upload URLs. The GET path carries a MAC
//! of (id, filename), so file URLs cannot be guessed; the PUT URL adds a MAC over the
//! whole slot and its expiry, so a client can neither change what it may upload nor
//! extend the deadline.

use std::io;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::slots::Slot;

type HmacSha256 = Hmac<Sha256>;

/// Hex digits of MAC kept in URLs (128 bits).
const MAC_HEX: usize = 32;

/// A fresh slot id: 128 random bits in hex.
pub(crate) fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Whether `id` looks like a slot id (and so is safe as a file name).
pub fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Signs and checks URLs with the server's upload key.
pub struct Signer {
    key: Vec<u8>,
}

impl Signer {
    pub fn new(key: &[u8]) -> Self {
        Signer { key: key.to_vec() }
    }

    /// The key in `path`, created with 32 random bytes (owner-only) when missing.
    pub(crate) fn from_file(path: &Path) -> io::Result<Self> {
        match std::fs::read(path) {
            Ok(key) if key.len() >= 32 => Ok(Signer::new(&key)),
            Ok(_) => Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} is too short", path.display()))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                write_private(path, &key)?;
                Ok(Signer::new(&key))
            }
            Err(err) => Err(err),
        }
    }

    fn mac(&self, parts: &[&str]) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
        for part in parts {
            mac.update(part.as_bytes());
            // A separator no part contains, so ("ab","c") and ("a","bc") differ.
            mac.update(&[0]);
        }
        let digest = mac.finalize().into_bytes();
        digest.iter().map(|b| format!("{b:02x}")).collect::<String>()[..MAC_HEX].to_owned()
    }

    /// The MAC in a file's GET path.
    pub fn file_mac(&self, id: &str, filename: &str) -> String {
        self.mac(&["get", id, filename])
    }

    /// The `signature` of a slot's PUT URL.
    pub(crate) fn put_signature(&self, slot: &Slot) -> String {
        let (size, expires) = (slot.size.to_string(), slot.expires_at.to_string());
        self.mac(&["put", &slot.id, &slot.filename, &size, &slot.content_type, &expires])
    }

    /// Whether `presented` equals `expected`, in constant time.
    pub fn matches(expected: &str, presented: &str) -> bool {
        bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, key: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(key)
}

#[cfg(not(unix))]
fn write_private(path: &Path, key: &[u8]) -> io::Result<()> {
    std::fs::write(path, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_depend_on_every_part_and_the_key() {
        let signer = Signer::new(b"k");
        let mac = signer.file_mac("a", "bc");
        assert_eq!(mac.len(), MAC_HEX);
        assert_ne!(mac, signer.file_mac("ab", "c"));
        assert_ne!(mac, Signer::new(b"other").file_mac("a", "bc"));
        assert!(Signer::matches(&mac, &signer.file_mac("a", "bc")));
        assert!(valid_id(&new_id()));
        assert!(!valid_id("../../etc/passwd"));
    }
}

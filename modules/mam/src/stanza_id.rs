//! XEP-0359 stanza ids: made by the server, unique in their archive, and verifiable
//! without the database.
//!
//! An id is 9 random bytes followed by the first 6 bytes of an HMAC-SHA-256 over the
//! archive owner and those bytes, keyed with a secret kept in `mam_secret`. The
//! router's synchronous hook can so tell our own `<stanza-id by=owner/>` — on a copy
//! coming back from offline storage or a stream-management resend, already archived —
//! from one a sender made up (XEP-0359 §5: those are removed).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const RANDOM_BYTES: usize = 9;
const TAG_BYTES: usize = 6;

/// The key ids are made and checked with.
#[derive(Clone)]
pub struct IdKey(Vec<u8>);

impl IdKey {
    /// A key from its stored form (base64); `None` if it is not one.
    pub fn from_stored(text: &str) -> Option<IdKey> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        (bytes.len() >= 32).then_some(IdKey(bytes))
    }

    /// A new random key and its stored form.
    pub fn generate() -> (IdKey, String) {
        let bytes: [u8; 32] = rand::random();
        (IdKey(bytes.to_vec()), URL_SAFE_NO_PAD.encode(bytes))
    }

    fn tag(&self, owner: &str, random: &[u8]) -> [u8; TAG_BYTES] {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            // HMAC takes keys of any length; this arm cannot be reached.
            Err(_) => return [0; TAG_BYTES],
        };
        mac.update(owner.as_bytes());
        mac.update(&[0]);
        mac.update(random);
        let digest = mac.finalize().into_bytes();
        let mut tag = [0; TAG_BYTES];
        tag.copy_from_slice(&digest[..TAG_BYTES]);
        tag
    }

    /// A fresh id for a message in `owner`'s archive.
    pub fn new_id(&self, owner: &str) -> String {
        let random: [u8; RANDOM_BYTES] = rand::random();
        let mut bytes = random.to_vec();
        bytes.extend_from_slice(&self.tag(owner, &random));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Whether `id` was made by [`IdKey::new_id`] for `owner`.
    pub fn verify(&self, owner: &str, id: &str) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(id) else { return false };
        if bytes.len() != RANDOM_BYTES + TAG_BYTES {
            return false;
        }
        let (random, tag) = bytes.split_at(RANDOM_BYTES);
        // Not secret-dependent timing worth guarding: a forger learns nothing useful
        // from it, the worst outcome of a forged id is a message left unarchived.
        self.tag(owner, random) == tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_verify_for_their_owner_only() {
        let (key, stored) = IdKey::generate();
        let id = key.new_id("alice@example.org");
        assert_eq!(id.len(), 20);
        assert!(key.verify("alice@example.org", &id));
        assert!(!key.verify("bob@example.org", &id));
        assert!(!key.verify("alice@example.org", "made-up"));
        let reloaded = IdKey::from_stored(&stored).expect("stored key");
        assert!(reloaded.verify("alice@example.org", &id));
        let (other, _) = IdKey::generate();
        assert!(!other.verify("alice@example.org", &id));
    }
}

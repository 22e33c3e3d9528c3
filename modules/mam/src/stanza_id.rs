//! XEP-0359 stanza ids: made by the server, unique in their archive, and verifiable
//! without the database.
//!
//! An id is the message's 8-byte row id (big-endian, see `store::row_at`) followed by
//! the first 6 bytes of an HMAC-SHA-256 over the archive owner and those bytes, keyed
//! with a secret kept in `mam_secret`. So a query's `after-id` or `ids` leads straight
//! to a row without an index on the ids, and the router's synchronous hook can tell
//! our own `<stanza-id by=owner/>` — on a copy coming back from offline storage or a
//! stream-management resend, already archived — from one a sender made up (XEP-0359
//! §5: those are removed).
//!
//! Ids made before rows had server-set ids (9 random bytes and the tag) still verify;
//! the archive finds them in its `legacy_id` column.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const ROW_BYTES: usize = 8;
const LEGACY_RANDOM_BYTES: usize = 9;
const TAG_BYTES: usize = 6;

/// Where an id a client gave points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdRef {
    /// A row of the owner's archive (the id is ours and verifies).
    Row(i64),
    /// Anything else: looked up among the ids of older rows.
    Legacy(String),
}

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

    fn tag(&self, owner: &str, payload: &[u8]) -> [u8; TAG_BYTES] {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            // HMAC takes keys of any length; this arm cannot be reached.
            Err(_) => return [0; TAG_BYTES],
        };
        mac.update(owner.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        let digest = mac.finalize().into_bytes();
        let mut tag = [0; TAG_BYTES];
        tag.copy_from_slice(&digest[..TAG_BYTES]);
        tag
    }

    /// The id of row `row` of `owner`'s archive.
    pub fn id_for(&self, owner: &str, row: i64) -> String {
        let row = row.to_be_bytes();
        let mut bytes = row.to_vec();
        bytes.extend_from_slice(&self.tag(owner, &row));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Where `id`, given for `owner`'s archive, points.
    pub fn resolve(&self, owner: &str, id: &str) -> IdRef {
        match URL_SAFE_NO_PAD.decode(id) {
            Ok(bytes) if bytes.len() == ROW_BYTES + TAG_BYTES => {
                let (row, tag) = bytes.split_at(ROW_BYTES);
                match <[u8; ROW_BYTES]>::try_from(row) {
                    Ok(row_bytes) if self.tag(owner, row) == tag => IdRef::Row(i64::from_be_bytes(row_bytes)),
                    _ => IdRef::Legacy(id.to_string()),
                }
            }
            _ => IdRef::Legacy(id.to_string()),
        }
    }

    /// Whether `id` was made by this key for `owner`, in either form.
    pub fn verify(&self, owner: &str, id: &str) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(id) else { return false };
        let payload = match bytes.len() {
            n if n == ROW_BYTES + TAG_BYTES => ROW_BYTES,
            n if n == LEGACY_RANDOM_BYTES + TAG_BYTES => LEGACY_RANDOM_BYTES,
            _ => return false,
        };
        let (payload, tag) = bytes.split_at(payload);
        // Not secret-dependent timing worth guarding: a forger learns nothing useful
        // from it, the worst outcome of a forged id is a message left unarchived.
        self.tag(owner, payload) == tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_verify_for_their_owner_only() {
        let (key, stored) = IdKey::generate();
        let id = key.id_for("alice@example.org", 7_000_000_000_000_000);
        assert_eq!(id.len(), 19);
        assert!(key.verify("alice@example.org", &id));
        assert!(!key.verify("bob@example.org", &id));
        assert!(!key.verify("alice@example.org", "made-up"));
        let reloaded = IdKey::from_stored(&stored).expect("stored key");
        assert!(reloaded.verify("alice@example.org", &id));
        let (other, _) = IdKey::generate();
        assert!(!other.verify("alice@example.org", &id));
    }

    #[test]
    fn ids_lead_back_to_their_row_in_their_archive_only() {
        let (key, _) = IdKey::generate();
        let id = key.id_for("alice@example.org", 42 << 8);
        assert_eq!(key.resolve("alice@example.org", &id), IdRef::Row(42 << 8));
        assert_eq!(key.resolve("bob@example.org", &id), IdRef::Legacy(id.clone()), "not a row of bob's");
        assert_eq!(key.resolve("alice@example.org", "x"), IdRef::Legacy("x".into()));
    }

    #[test]
    fn ids_of_the_earlier_form_still_verify() {
        let (key, _) = IdKey::generate();
        let random = [7u8; LEGACY_RANDOM_BYTES];
        let mut bytes = random.to_vec();
        bytes.extend_from_slice(&key.tag("alice@example.org", &random));
        let id = URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(id.len(), 20);
        assert!(key.verify("alice@example.org", &id));
        assert!(!key.verify("bob@example.org", &id));
        assert_eq!(key.resolve("alice@example.org", &id), IdRef::Legacy(id.clone()));
    }
}

//! SCRAM credentials (RFC 5802 §3): what the server stores instead of a password.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::SaslError;

/// The hash of a SCRAM family (RFC 5802, RFC 7677).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramHash {
    /// SCRAM-SHA-1
    Sha1,
    /// SCRAM-SHA-256
    Sha256,
    /// SCRAM-SHA-512 (draft-melnikov-scram-sha-512)
    Sha512,
}

impl ScramHash {
    /// The mechanism name without `-PLUS`, also the key credentials are stored under.
    pub fn mechanism_name(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SCRAM-SHA-1",
            ScramHash::Sha256 => "SCRAM-SHA-256",
            ScramHash::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// HMAC with this hash.
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => {
                let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha256 => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha512 => {
                let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    /// The plain hash.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
            ScramHash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `Hi(password, salt, i)`, i.e. PBKDF2 with HMAC of this hash.
    pub(crate) fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => pbkdf2::pbkdf2_hmac_array::<Sha1, 20>(password, salt, iterations).to_vec(),
            ScramHash::Sha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec(),
            ScramHash::Sha512 => pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec(),
        }
    }

    /// The hash a mechanism name without `-PLUS` stands for.
    pub fn from_mechanism_name(name: &str) -> Option<Self> {
        [ScramHash::Sha1, ScramHash::Sha256, ScramHash::Sha512].into_iter().find(|h| h.mechanism_name() == name)
    }
}

/// Stored SCRAM keys for one account and hash. Knowing them does not let anyone log in
/// (StoredKey is a hash of the client key), only impersonate the server.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// Which hash the keys were made with.
    pub hash: ScramHash,
    /// Random per account.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("hash", &self.hash)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredentials {
    /// New credentials with a random 16-byte salt. The password is SASLprep'd
    /// (RFC 4013) first, as every SCRAM client does.
    pub fn derive(password: &str, hash: ScramHash, iterations: u32) -> Result<Self, SaslError> {
        Self::derive_with_salt(password, hash, iterations, &rand::random::<[u8; 16]>())
    }

    /// Credentials for a given salt.
    pub fn derive_with_salt(password: &str, hash: ScramHash, iterations: u32, salt: &[u8]) -> Result<Self, SaslError> {
        let prepared = stringprep::saslprep(password).map_err(|_| SaslError::BadPassword)?;
        let salted = hash.salted_password(prepared.as_bytes(), salt, iterations);
        Ok(Self::from_salted_password(hash, salt, iterations, &salted))
    }

    /// Credentials from a client-computed `SaltedPassword` (the XEP-0480 SCRAM upgrade
    /// task: the client derives it from the password with the salt and iteration count
    /// the server chose).
    pub fn from_salted_password(hash: ScramHash, salt: &[u8], iterations: u32, salted: &[u8]) -> Self {
        let client_key = hash.hmac(salted, b"Client Key");
        ScramCredentials {
            hash,
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.hash(&client_key),
            server_key: hash.hmac(salted, b"Server Key"),
        }
    }

    /// The length of this hash's output, which a client's `SaltedPassword` must have.
    pub fn output_len(hash: ScramHash) -> usize {
        match hash {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
            ScramHash::Sha512 => 64,
        }
    }

    /// Whether `password` matches, compared in constant time (used by PLAIN).
    pub fn verify_password(&self, password: &str) -> bool {
        match Self::derive_with_salt(password, self.hash, self.iterations, &self.salt) {
            Ok(candidate) => bool::from(candidate.stored_key.ct_eq(&self.stored_key)),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    #[test]
    fn rfc7677_test_vector() {
        // RFC 7677 §3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, i=4096.
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("b64");
        let creds = ScramCredentials::derive_with_salt("pencil", ScramHash::Sha256, 4096, &salt).expect("derive");
        let salted = ScramHash::Sha256.salted_password(b"pencil", &salt, 4096);
        let server_key = ScramHash::Sha256.hmac(&salted, b"Server Key");
        assert_eq!(creds.server_key, server_key);
        assert!(creds.verify_password("pencil"));
        assert!(!creds.verify_password("pencil2"));
    }

    #[test]
    fn saslprep_maps_equivalent_passwords() {
        // RFC 4013: U+00AD (soft hyphen) maps to nothing, U+2003 (em space) to a space.
        let creds = ScramCredentials::derive("I\u{00AD}X", ScramHash::Sha1, 4096).expect("derive");
        assert!(creds.verify_password("IX"));
        let creds = ScramCredentials::derive("a\u{2003}b", ScramHash::Sha1, 4096).expect("derive");
        assert!(creds.verify_password("a b"));
        assert!(ScramCredentials::derive("\u{0007}", ScramHash::Sha1, 4096).is_err());
    }
}

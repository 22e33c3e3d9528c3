//! A SCRAM client (RFC 5802 / RFC 7677), written for the tests independently of the
//! server's implementation.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
    Sha512,
}

fn hmac(hash: Hash, key: &[u8], data: &[u8]) -> Vec<u8> {
    match hash {
        Hash::Sha1 => {
            let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Hash::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Hash::Sha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

fn h(hash: Hash, data: &[u8]) -> Vec<u8> {
    match hash {
        Hash::Sha1 => Sha1::digest(data).to_vec(),
        Hash::Sha256 => Sha256::digest(data).to_vec(),
        Hash::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// `SaltedPassword` (RFC 5802 §3), also what an XEP-0480 upgrade task sends.
pub fn salted(hash: Hash, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    match hash {
        Hash::Sha1 => {
            let mut out = [0u8; 20];
            pbkdf2::pbkdf2::<Hmac<Sha1>>(password.as_bytes(), salt, iterations, &mut out).expect("pbkdf2");
            out.to_vec()
        }
        Hash::Sha256 => {
            let mut out = [0u8; 32];
            pbkdf2::pbkdf2::<Hmac<Sha256>>(password.as_bytes(), salt, iterations, &mut out).expect("pbkdf2");
            out.to_vec()
        }
        Hash::Sha512 => {
            let mut out = [0u8; 64];
            pbkdf2::pbkdf2::<Hmac<Sha512>>(password.as_bytes(), salt, iterations, &mut out).expect("pbkdf2");
            out.to_vec()
        }
    }
}

/// One client-side exchange.
pub struct ScramClient {
    hash: Hash,
    gs2_header: String,
    cb_data: Vec<u8>,
    nonce: String,
    client_first_bare: String,
    password: String,
    server_signature: Vec<u8>,
}

impl ScramClient {
    /// `cb`: `None` for no channel binding (`n,,`), `Some((name, data))` for `p=name`.
    pub fn new(hash: Hash, user: &str, password: &str, cb: Option<(&str, Vec<u8>)>) -> Self {
        let nonce = B64.encode(rand::random::<[u8; 18]>());
        let (gs2_header, cb_data) = match cb {
            None => ("n,,".to_owned(), Vec::new()),
            Some((name, data)) => (format!("p={name},,"), data),
        };
        ScramClient {
            hash,
            client_first_bare: format!("n={user},r={nonce}"),
            gs2_header,
            cb_data,
            nonce,
            password: password.to_owned(),
            server_signature: Vec::new(),
        }
    }

    /// Replaces the GS2 header (to test downgrade detection, e.g. `y,,`).
    pub fn with_gs2_header(mut self, header: &str) -> Self {
        self.gs2_header = header.to_owned();
        self
    }

    pub fn client_first(&self) -> String {
        format!("{}{}", self.gs2_header, self.client_first_bare)
    }

    /// The client-final message for `server_first`.
    pub fn client_final(&mut self, server_first: &str) -> Result<String, String> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            match part.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v.to_owned()),
                Some(("s=", v)) => salt = Some(B64.decode(v).map_err(|e| e.to_string())?),
                Some(("i=", v)) => iterations = Some(v.parse::<u32>().map_err(|e| e.to_string())?),
                _ => {}
            }
        }
        let (nonce, salt, iterations) = (nonce.ok_or("no nonce")?, salt.ok_or("no salt")?, iterations.ok_or("no i")?);
        if !nonce.starts_with(&self.nonce) {
            return Err("server nonce does not extend ours".into());
        }
        let mut cbind = self.gs2_header.as_bytes().to_vec();
        cbind.extend_from_slice(&self.cb_data);
        let without_proof = format!("c={},r={nonce}", B64.encode(&cbind));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let salted = salted(self.hash, &self.password, &salt, iterations);
        let client_key = hmac(self.hash, &salted, b"Client Key");
        let stored_key = h(self.hash, &client_key);
        let signature = hmac(self.hash, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let server_key = hmac(self.hash, &salted, b"Server Key");
        self.server_signature = hmac(self.hash, &server_key, auth_message.as_bytes());
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// The XEP-0474 `h` attribute the server-first-message should carry for what the
    /// client saw advertised: sorted mechanisms joined by U+001E, then U+001F and the
    /// sorted channel-binding types, hashed with this exchange's hash.
    pub fn expected_downgrade_hash(&self, mechanisms: &[String], cb_types: &[String]) -> String {
        let mut mechanisms = mechanisms.to_vec();
        mechanisms.sort();
        let mut input = mechanisms.join("\u{1e}");
        if !cb_types.is_empty() {
            let mut types = cb_types.to_vec();
            types.sort();
            input.push('\u{1f}');
            input.push_str(&types.join("\u{1e}"));
        }
        B64.encode(h(self.hash, input.as_bytes()))
    }

    /// Checks the server-final message (`v=…`): the server proved it knows the keys.
    pub fn verify_server_final(&self, server_final: &str) -> bool {
        server_final.strip_prefix("v=").and_then(|v| B64.decode(v).ok()).is_some_and(|v| v == self.server_signature)
    }
}

//! SCRAM server side (RFC 5802, RFC 7677), with channel binding for the -PLUS
//! variants: `tls-exporter` (RFC 9266) and `tls-server-end-point` (RFC 5929), and the
//! downgrade protection of XEP-0474 as an extension attribute of the server-first-message.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use subtle::ConstantTimeEq;

use super::{ChannelBinding, SaslFailure, ScramCredentials, ScramHash, Step};

/// Longest client message accepted; real ones are well under 1 KiB.
const MAX_MESSAGE: usize = 4096;

enum State {
    ClientFirst,
    Credentials(First),
    ClientFinal { first: First, server_first: String, creds: ScramCredentials, known: bool },
    Done,
}

struct First {
    gs2_header: String,
    cb_data: Vec<u8>,
    username: String,
    authzid: Option<String>,
    client_first_bare: String,
    nonce: String,
}

/// One SCRAM exchange.
pub(super) struct Scram {
    hash: ScramHash,
    plus: bool,
    cb: ChannelBinding,
    state: State,
    server_nonce: String,
    /// The XEP-0474 extension of the server-first-message (`,h=` and the hash).
    downgrade_protection: String,
}

impl Scram {
    pub(super) fn new(hash: ScramHash, plus: bool, cb: ChannelBinding, advertised: Option<&str>) -> Self {
        Scram {
            hash,
            plus,
            cb,
            state: State::ClientFirst,
            server_nonce: BASE64.encode(rand::random::<[u8; 18]>()),
            downgrade_protection: advertised
                .map(|a| format!(",h={}", BASE64.encode(hash.hash(a.as_bytes()))))
                .unwrap_or_default(),
        }
    }

    #[cfg(test)]
    pub(super) fn set_server_nonce(&mut self, nonce: &str) {
        self.server_nonce = nonce.to_owned();
    }

    pub(super) fn step(&mut self, input: &[u8]) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::ClientFirst => match self.client_first(input) {
                Ok(first) => {
                    let username = first.username.clone();
                    self.state = State::Credentials(first);
                    Step::NeedCredentials { username, hash: self.hash }
                }
                Err(failure) => Step::Failure(failure),
            },
            State::ClientFinal { first, server_first, creds, known } => {
                match self.client_final(input, &first, &server_first, &creds) {
                    Ok(server_final) if known => Step::Success {
                        username: first.username,
                        authzid: first.authzid,
                        additional_data: Some(server_final.into_bytes()),
                    },
                    Ok(_) => Step::Failure(SaslFailure::NotAuthorized),
                    Err(failure) => Step::Failure(failure),
                }
            }
            State::Credentials(_) | State::Done => Step::Failure(SaslFailure::MalformedRequest),
        }
    }

    pub(super) fn credentials(&mut self, creds: Option<ScramCredentials>) -> Step {
        let State::Credentials(first) = std::mem::replace(&mut self.state, State::Done) else {
            return Step::Failure(SaslFailure::MalformedRequest);
        };
        let known = creds.as_ref().is_some_and(|c| c.hash == self.hash);
        let creds = match creds {
            Some(creds) if known => creds,
            _ => fake_credentials(self.hash, &first.username),
        };
        let nonce = format!("{}{}", first.nonce, self.server_nonce);
        let server_first =
            format!("r={nonce},s={},i={}{}", BASE64.encode(&creds.salt), creds.iterations, self.downgrade_protection);
        let challenge = server_first.clone().into_bytes();
        self.state = State::ClientFinal { first: First { nonce, ..first }, server_first, creds, known };
        Step::Challenge(challenge)
    }

    /// `gs2-header client-first-message-bare` (RFC 5802 §7).
    fn client_first(&self, input: &[u8]) -> Result<First, SaslFailure> {
        if input.len() > MAX_MESSAGE {
            return Err(SaslFailure::MalformedRequest);
        }
        let text = std::str::from_utf8(input).map_err(|_| SaslFailure::MalformedRequest)?;
        let mut parts = text.splitn(3, ',');
        let (Some(flag), Some(raw_authzid), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SaslFailure::MalformedRequest);
        };
        let cb_data = match (flag, self.plus) {
            ("n", false) => Vec::new(),
            // The client can do channel binding but thinks we cannot: we advertised
            // -PLUS whenever we can, so someone removed it (RFC 5802 §6).
            ("y", false) if self.cb.types().is_empty() => Vec::new(),
            ("y", false) => return Err(SaslFailure::NotAuthorized),
            (flag, true) => {
                let name = flag.strip_prefix("p=").ok_or(SaslFailure::NotAuthorized)?;
                self.cb.data(name).ok_or(SaslFailure::NotAuthorized)?.to_vec()
            }
            _ => return Err(SaslFailure::NotAuthorized),
        };
        let authzid = match raw_authzid {
            "" => None,
            a => Some(decode_saslname(a.strip_prefix("a=").ok_or(SaslFailure::MalformedRequest)?)?),
        };
        let mut attrs = bare.split(',');
        let user = attrs.next().and_then(|a| a.strip_prefix("n=")).ok_or(SaslFailure::MalformedRequest)?;
        let nonce = attrs.next().and_then(|a| a.strip_prefix("r=")).ok_or(SaslFailure::MalformedRequest)?;
        if bare.starts_with("m=") || nonce.is_empty() || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(SaslFailure::MalformedRequest);
        }
        let username = decode_saslname(user)?;
        let username = stringprep::saslprep(&username).map_err(|_| SaslFailure::MalformedRequest)?.into_owned();
        if username.is_empty() {
            return Err(SaslFailure::MalformedRequest);
        }
        Ok(First {
            gs2_header: format!("{flag},{raw_authzid},"),
            cb_data,
            username,
            authzid,
            client_first_bare: bare.to_owned(),
            nonce: nonce.to_owned(),
        })
    }

    /// `c=… ,r=… [,ext] ,p=…`; returns the server-final message.
    fn client_final(
        &self,
        input: &[u8],
        first: &First,
        server_first: &str,
        creds: &ScramCredentials,
    ) -> Result<String, SaslFailure> {
        if input.len() > MAX_MESSAGE {
            return Err(SaslFailure::MalformedRequest);
        }
        let text = std::str::from_utf8(input).map_err(|_| SaslFailure::MalformedRequest)?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(SaslFailure::MalformedRequest)?;
        let mut attrs = without_proof.split(',');
        let cbind = attrs.next().and_then(|a| a.strip_prefix("c=")).ok_or(SaslFailure::MalformedRequest)?;
        let nonce = attrs.next().and_then(|a| a.strip_prefix("r=")).ok_or(SaslFailure::MalformedRequest)?;
        let cbind = BASE64.decode(cbind).map_err(|_| SaslFailure::MalformedRequest)?;
        let proof = BASE64.decode(proof).map_err(|_| SaslFailure::MalformedRequest)?;
        let mut expected_cbind = first.gs2_header.as_bytes().to_vec();
        expected_cbind.extend_from_slice(&first.cb_data);
        if !bool::from(cbind.ct_eq(&expected_cbind)) || nonce != first.nonce {
            return Err(SaslFailure::NotAuthorized);
        }
        let auth_message = format!("{},{server_first},{without_proof}", first.client_first_bare);
        let signature = self.hash.hmac(&creds.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(SaslFailure::NotAuthorized);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !bool::from(self.hash.hash(&client_key).ct_eq(&creds.stored_key)) {
            return Err(SaslFailure::NotAuthorized);
        }
        let server_signature = self.hash.hmac(&creds.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)))
    }
}

/// RFC 5802 §5.1 saslname: `=2C` is `,`, `=3D` is `=`, any other `=` is an error.
fn decode_saslname(name: &str) -> Result<String, SaslFailure> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(SaslFailure::MalformedRequest),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Credentials for an unknown user, stable for the life of the process, so that the
/// salt a client sees does not tell whether the account exists.
fn fake_credentials(hash: ScramHash, username: &str) -> ScramCredentials {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    let secret = SECRET.get_or_init(rand::random);
    let salt = hash.hmac(secret, username.as_bytes())[..16].to_vec();
    ScramCredentials {
        hash,
        salt,
        iterations: crate::auth::SCRAM_ITERATIONS,
        stored_key: hash.hmac(secret, b"stored"),
        server_key: hash.hmac(secret, b"server"),
    }
}

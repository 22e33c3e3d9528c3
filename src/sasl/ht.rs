//! The Hashed Token mechanisms (draft-schmaus-kitten-sasl-ht-08) that FAST (XEP-0484)
//! authenticates with: one message each way. The client sends `authcid NUL
//! HMAC(token, "Initiator" || cb-data)`, the server answers with
//! `HMAC(token, "Responder" || cb-data)` as additional data, which proves that it knew
//! the token too. Only SHA-256 is implemented, as in every FAST client.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{ChannelBinding, SaslFailure};

/// Channel binding of an HT mechanism (the suffix of its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HtBinding {
    /// `-NONE`: no channel binding.
    None,
    /// `-ENDP`: `tls-server-end-point` (RFC 5929).
    EndPoint,
    /// `-EXPR`: `tls-exporter` (RFC 9266).
    Exporter,
}

/// An HT mechanism over SHA-256. `-UNIQ` (`tls-unique`) is not one: it does not exist
/// for TLS 1.3 (RFC 9266) and rustls does not expose it for TLS 1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HtMechanism(pub HtBinding);

impl HtMechanism {
    /// The mechanism name.
    pub fn name(self) -> &'static str {
        match self.0 {
            HtBinding::None => "HT-SHA-256-NONE",
            HtBinding::EndPoint => "HT-SHA-256-ENDP",
            HtBinding::Exporter => "HT-SHA-256-EXPR",
        }
    }

    /// The mechanism called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [HtBinding::Exporter, HtBinding::EndPoint, HtBinding::None]
            .into_iter()
            .map(HtMechanism)
            .find(|m| m.name() == name)
    }

    /// The mechanisms a connection with `cb` can use, channel binding first.
    pub fn offered(cb: &ChannelBinding) -> Vec<HtMechanism> {
        let mut offered = Vec::new();
        if cb.tls_exporter.is_some() {
            offered.push(HtMechanism(HtBinding::Exporter));
        }
        if cb.tls_server_end_point.is_some() {
            offered.push(HtMechanism(HtBinding::EndPoint));
        }
        offered.push(HtMechanism(HtBinding::None));
        offered
    }

    /// The channel-binding data this mechanism hashes, `None` when the connection has none.
    pub fn cb_data(self, cb: &ChannelBinding) -> Option<Vec<u8>> {
        match self.0 {
            HtBinding::None => Some(Vec::new()),
            HtBinding::EndPoint => cb.tls_server_end_point.clone(),
            HtBinding::Exporter => cb.tls_exporter.clone(),
        }
    }
}

/// The client's message: the authentication identity and its hashed token.
#[derive(Debug, PartialEq, Eq)]
pub struct HtInitiator {
    /// The SASLprep'd authcid (the account's localpart).
    pub username: String,
    /// `HMAC(token, "Initiator" || cb-data)`.
    pub hashed_token: Vec<u8>,
}

/// Parses the initial response, `authcid NUL initiator-hashed-token`.
pub fn parse_initiator(message: &[u8]) -> Result<HtInitiator, SaslFailure> {
    let at = message.iter().position(|b| *b == 0).ok_or(SaslFailure::MalformedRequest)?;
    let (authcid, hashed_token) = (&message[..at], &message[at + 1..]);
    let authcid = std::str::from_utf8(authcid).map_err(|_| SaslFailure::MalformedRequest)?;
    let username = stringprep::saslprep(authcid).map_err(|_| SaslFailure::MalformedRequest)?;
    if username.is_empty() || hashed_token.len() != 32 {
        return Err(SaslFailure::MalformedRequest);
    }
    Ok(HtInitiator { username: username.into_owned(), hashed_token: hashed_token.to_vec() })
}

fn hmac(token: &[u8], label: &[u8], cb_data: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(token).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(label);
    mac.update(cb_data);
    mac.finalize().into_bytes().to_vec()
}

/// Whether `hashed_token` is what a client holding `token` sends, in constant time.
pub fn initiator_matches(token: &[u8], cb_data: &[u8], hashed_token: &[u8]) -> bool {
    bool::from(hmac(token, b"Initiator", cb_data).ct_eq(hashed_token))
}

/// The server's answer, the additional data of `<success/>`.
pub fn responder(token: &[u8], cb_data: &[u8]) -> Vec<u8> {
    hmac(token, b"Responder", cb_data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The expected values are from `printf 'Initiator' | openssl dgst -sha256 -hmac
    /// secret-token` (and `'Responderxyz'`, with `xyz` as channel-binding data).
    #[test]
    fn hashes_and_parsing() {
        let token = b"secret-token";
        let initiator = hmac(token, b"Initiator", b"");
        assert_eq!(hex(&initiator), "3f6de92b45cddc50c601ad166458f7b5874565e399f3006b1afb03f0bb03ff88");
        assert_eq!(hex(&responder(token, b"xyz")), "6a732bf46e7530904727f3832c977fc32d0af56ca779b78c95168bb9cabc05b5");
        let mut message = b"alice\0".to_vec();
        message.extend_from_slice(&initiator);
        let parsed = parse_initiator(&message).expect("parses");
        assert_eq!(parsed.username, "alice");
        assert!(initiator_matches(token, b"", &parsed.hashed_token));
        assert!(!initiator_matches(b"other-token", b"", &parsed.hashed_token));
        assert!(!initiator_matches(token, b"cb", &parsed.hashed_token), "bound to the channel-binding data");
        assert_ne!(responder(token, b""), initiator);
        assert_eq!(parse_initiator(b"alice"), Err(SaslFailure::MalformedRequest));
        assert_eq!(parse_initiator(b"\0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), Err(SaslFailure::MalformedRequest));
        assert_eq!(parse_initiator(b"alice\0short"), Err(SaslFailure::MalformedRequest));
    }

    #[test]
    fn names_and_offers() {
        assert_eq!(HtMechanism::from_name("HT-SHA-256-ENDP"), Some(HtMechanism(HtBinding::EndPoint)));
        assert_eq!(HtMechanism::from_name("HT-SHA-256-UNIQ"), None);
        let names =
            |cb: &ChannelBinding| HtMechanism::offered(cb).into_iter().map(HtMechanism::name).collect::<Vec<_>>();
        assert_eq!(names(&ChannelBinding::default()), ["HT-SHA-256-NONE"]);
        let cb = ChannelBinding { tls_exporter: Some(vec![1]), tls_server_end_point: Some(vec![2]) };
        assert_eq!(names(&cb), ["HT-SHA-256-EXPR", "HT-SHA-256-ENDP", "HT-SHA-256-NONE"]);
        assert_eq!(HtMechanism(HtBinding::Exporter).cb_data(&cb), Some(vec![1]));
        assert_eq!(HtMechanism(HtBinding::EndPoint).cb_data(&ChannelBinding::default()), None);
    }
}

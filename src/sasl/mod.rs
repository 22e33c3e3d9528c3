//! SASL for client streams (RFC 6120 §6): SCRAM-SHA-1 and SCRAM-SHA-256, each with a
//! -PLUS variant using channel binding, and PLAIN over TLS. Sans-IO: the c2s layer
//! moves base64 in and out of `<auth/>`, `<challenge/>`, `<response/>` and looks up
//! credentials when asked ([`Step::NeedCredentials`]).

mod credentials;
mod plain;
mod scram;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

pub use credentials::{ScramCredentials, ScramHash};

/// Problems deriving credentials.
#[derive(Debug, thiserror::Error)]
pub enum SaslError {
    /// The password contains characters SASLprep (RFC 4013) prohibits.
    #[error("the password contains prohibited characters")]
    BadPassword,
}

/// A SASL mechanism the server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// SCRAM-SHA-256-PLUS (RFC 7677 with channel binding)
    ScramSha256Plus,
    /// SCRAM-SHA-1-PLUS (RFC 5802 with channel binding)
    ScramSha1Plus,
    /// SCRAM-SHA-256 (RFC 7677)
    ScramSha256,
    /// SCRAM-SHA-1 (RFC 5802)
    ScramSha1,
    /// PLAIN (RFC 4616)
    Plain,
}

impl Mechanism {
    /// The IANA name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// The mechanism called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Mechanism::ScramSha256Plus,
            Mechanism::ScramSha1Plus,
            Mechanism::ScramSha256,
            Mechanism::ScramSha1,
            Mechanism::Plain,
        ]
        .into_iter()
        .find(|m| m.name() == name)
    }
}

/// Channel-binding data of the connection, filled in by the TLS layer.
#[derive(Debug, Clone, Default)]
pub struct ChannelBinding {
    /// RFC 9266 `tls-exporter` (TLS 1.3 only).
    pub tls_exporter: Option<Vec<u8>>,
    /// RFC 5929 `tls-server-end-point`.
    pub tls_server_end_point: Option<Vec<u8>>,
}

impl ChannelBinding {
    /// The binding types available, for the XEP-0440 advertisement.
    pub fn types(&self) -> Vec<&'static str> {
        let mut types = Vec::new();
        if self.tls_exporter.is_some() {
            types.push("tls-exporter");
        }
        if self.tls_server_end_point.is_some() {
            types.push("tls-server-end-point");
        }
        types
    }

    fn data(&self, name: &str) -> Option<&[u8]> {
        match name {
            "tls-exporter" => self.tls_exporter.as_deref(),
            "tls-server-end-point" => self.tls_server_end_point.as_deref(),
            _ => None,
        }
    }
}

/// What to offer: -PLUS only with channel-binding data, PLAIN only when encrypted.
pub fn offered_mechanisms(cb: &ChannelBinding, encrypted: bool) -> Vec<Mechanism> {
    let mut mechanisms = Vec::new();
    if !cb.types().is_empty() {
        mechanisms.extend([Mechanism::ScramSha256Plus, Mechanism::ScramSha1Plus]);
    }
    mechanisms.extend([Mechanism::ScramSha256, Mechanism::ScramSha1]);
    if encrypted {
        mechanisms.push(Mechanism::Plain);
    }
    mechanisms
}

/// The SASL failure conditions of RFC 6120 §6.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslFailure {
    /// The client aborted.
    Aborted,
    /// The account is disabled.
    AccountDisabled,
    /// The mechanism needs TLS first.
    EncryptionRequired,
    /// Bad base64.
    IncorrectEncoding,
    /// The authorization identity is not allowed.
    InvalidAuthzid,
    /// Not a mechanism we offered.
    InvalidMechanism,
    /// The client's message makes no sense.
    MalformedRequest,
    /// Wrong credentials, unknown user, or failed channel binding.
    NotAuthorized,
    /// Try later (throttled, or the database is unavailable).
    TemporaryAuthFailure,
}

impl SaslFailure {
    /// The element name for `<failure/>`.
    pub fn condition(self) -> &'static str {
        match self {
            SaslFailure::Aborted => "aborted",
            SaslFailure::AccountDisabled => "account-disabled",
            SaslFailure::EncryptionRequired => "encryption-required",
            SaslFailure::IncorrectEncoding => "incorrect-encoding",
            SaslFailure::InvalidAuthzid => "invalid-authzid",
            SaslFailure::InvalidMechanism => "invalid-mechanism",
            SaslFailure::MalformedRequest => "malformed-request",
            SaslFailure::NotAuthorized => "not-authorized",
            SaslFailure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

/// The next thing the c2s layer must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send `<challenge/>` with these bytes.
    Challenge(Vec<u8>),
    /// Look up the account's credentials for `hash`, then call [`SaslServer::credentials`].
    NeedCredentials {
        /// The SASLprep'd authentication identity.
        username: String,
        /// Which credentials are needed.
        hash: ScramHash,
    },
    /// Authenticated.
    Success {
        /// The authenticated user.
        username: String,
        /// The requested authorization identity, for the caller to check.
        authzid: Option<String>,
        /// Additional data for `<success/>` (the SCRAM server-final message).
        additional_data: Option<Vec<u8>>,
    },
    /// Failed.
    Failure(SaslFailure),
}

enum Exchange {
    Scram(Box<scram::Scram>),
    Plain(plain::Plain),
}

/// One authentication exchange.
pub struct SaslServer {
    exchange: Exchange,
}

impl SaslServer {
    /// Starts `mechanism` on a connection with channel-binding data `cb`.
    pub fn start(mechanism: Mechanism, cb: ChannelBinding) -> Self {
        let exchange = match mechanism {
            Mechanism::ScramSha256Plus => Exchange::Scram(Box::new(scram::Scram::new(ScramHash::Sha256, true, cb))),
            Mechanism::ScramSha1Plus => Exchange::Scram(Box::new(scram::Scram::new(ScramHash::Sha1, true, cb))),
            Mechanism::ScramSha256 => Exchange::Scram(Box::new(scram::Scram::new(ScramHash::Sha256, false, cb))),
            Mechanism::ScramSha1 => Exchange::Scram(Box::new(scram::Scram::new(ScramHash::Sha1, false, cb))),
            Mechanism::Plain => Exchange::Plain(plain::Plain::new()),
        };
        SaslServer { exchange }
    }

    /// Processes the client's initial response or a `<response/>`.
    pub fn step(&mut self, client_data: &[u8]) -> Step {
        match &mut self.exchange {
            Exchange::Scram(s) => s.step(client_data),
            Exchange::Plain(p) => p.step(client_data),
        }
    }

    /// Continues after [`Step::NeedCredentials`]; `None` for an unknown user (the
    /// exchange goes on with fake credentials and fails like a wrong password).
    pub fn credentials(&mut self, creds: Option<ScramCredentials>) -> Step {
        match &mut self.exchange {
            Exchange::Scram(s) => s.credentials(creds),
            Exchange::Plain(p) => p.credentials(creds),
        }
    }
}

/// Decodes the base64 text of `<auth/>` or `<response/>`; `=` is an empty response
/// (RFC 6120 §6.4.2).
pub fn decode_b64(text: &str) -> Result<Vec<u8>, SaslFailure> {
    if text == "=" {
        return Ok(Vec::new());
    }
    BASE64.decode(text).map_err(|_| SaslFailure::IncorrectEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(hash: ScramHash, salt_b64: &str) -> ScramCredentials {
        let salt = BASE64.decode(salt_b64).expect("b64");
        ScramCredentials::derive_with_salt("pencil", hash, 4096, &salt).expect("derive")
    }

    fn exchange(mechanism: Mechanism, server_nonce: &str, cb: ChannelBinding) -> SaslServer {
        let mut server = SaslServer::start(mechanism, cb);
        if let Exchange::Scram(s) = &mut server.exchange {
            s.set_server_nonce(server_nonce);
        }
        server
    }

    #[test]
    fn rfc5802_scram_sha1_example() {
        let mut server = exchange(Mechanism::ScramSha1, "3rfcNHYJY1ZVvWVs7j", ChannelBinding::default());
        assert_eq!(
            server.step(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"),
            Step::NeedCredentials { username: "user".into(), hash: ScramHash::Sha1 }
        );
        assert_eq!(
            server.credentials(Some(creds(ScramHash::Sha1, "QSXCR+Q6sek8bf92"))),
            Step::Challenge(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096".to_vec())
        );
        assert_eq!(
            server.step(b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="),
            Step::Success {
                username: "user".into(),
                authzid: None,
                additional_data: Some(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=".to_vec())
            }
        );
    }

    #[test]
    fn rfc7677_scram_sha256_example() {
        let mut server = exchange(Mechanism::ScramSha256, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", ChannelBinding::default());
        assert!(matches!(server.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"), Step::NeedCredentials { .. }));
        assert_eq!(
            server.credentials(Some(creds(ScramHash::Sha256, "W22ZaJ0SNY7soEsUEjb6gQ=="))),
            Step::Challenge(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".to_vec()
            )
        );
        assert_eq!(
            server.step(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
            Step::Success {
                username: "user".into(),
                authzid: None,
                additional_data: Some(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec())
            }
        );
    }

    #[test]
    fn wrong_proof_and_unknown_user_fail_alike() {
        let final_message = b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let mut server = exchange(Mechanism::ScramSha1, "3rfcNHYJY1ZVvWVs7j", ChannelBinding::default());
        server.step(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        server.credentials(Some(creds(ScramHash::Sha1, "QSXCR+Q6sek8bf92")));
        assert_eq!(server.step(final_message), Step::Failure(SaslFailure::NotAuthorized));

        let mut unknown = exchange(Mechanism::ScramSha1, "3rfcNHYJY1ZVvWVs7j", ChannelBinding::default());
        unknown.step(b"n,,n=nobody,r=fyko+d2lbbFgONRv9qkxdawL");
        let Step::Challenge(first) = unknown.credentials(None) else { panic!("challenge expected") };
        let mut again = exchange(Mechanism::ScramSha1, "x", ChannelBinding::default());
        again.step(b"n,,n=nobody,r=abc");
        let Step::Challenge(second) = again.credentials(None) else { panic!("challenge expected") };
        let salt = |c: &[u8]| String::from_utf8_lossy(c).split(',').nth(1).map(str::to_owned);
        assert_eq!(salt(&first), salt(&second), "fake salt is stable per user");
        assert_eq!(unknown.step(final_message), Step::Failure(SaslFailure::NotAuthorized));
    }

    fn cb() -> ChannelBinding {
        ChannelBinding { tls_exporter: Some(vec![7; 32]), tls_server_end_point: Some(vec![9; 32]) }
    }

    /// Runs a whole -PLUS exchange as a client would, with `client_cb` as the data the
    /// client binds to.
    fn plus_exchange(cb_name: &str, client_cb: &[u8]) -> Step {
        let password_creds = ScramCredentials::derive("pencil", ScramHash::Sha256, 4096).expect("derive");
        let mut server = SaslServer::start(Mechanism::ScramSha256Plus, cb());
        let gs2 = format!("p={cb_name},,");
        assert!(matches!(server.step(format!("{gs2}n=user,r=abcdef").as_bytes()), Step::NeedCredentials { .. }));
        let Step::Challenge(server_first) = server.credentials(Some(password_creds.clone())) else {
            panic!("challenge")
        };
        let server_first = String::from_utf8(server_first).expect("utf8");
        let nonce = server_first.split(',').next().and_then(|r| r.strip_prefix("r=")).expect("nonce");
        let mut cbind = gs2.into_bytes();
        cbind.extend_from_slice(client_cb);
        let without_proof = format!("c={},r={nonce}", BASE64.encode(&cbind));
        let auth_message = format!("n=user,r=abcdef,{server_first},{without_proof}");
        let salted = pbkdf2::pbkdf2_hmac_array::<sha2::Sha256, 32>(b"pencil", &password_creds.salt, 4096);
        let client_key = ScramHash::Sha256.hmac(&salted, b"Client Key");
        let signature = ScramHash::Sha256.hmac(&password_creds.stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        server.step(format!("{without_proof},p={}", BASE64.encode(proof)).as_bytes())
    }

    #[test]
    fn plus_with_either_binding_type_succeeds_and_wrong_data_fails() {
        assert!(matches!(plus_exchange("tls-exporter", &[7; 32]), Step::Success { .. }));
        assert!(matches!(plus_exchange("tls-server-end-point", &[9; 32]), Step::Success { .. }));
        assert_eq!(plus_exchange("tls-exporter", &[9; 32]), Step::Failure(SaslFailure::NotAuthorized));
    }

    #[test]
    fn channel_binding_flag_rules() {
        let start = |mechanism, cb: ChannelBinding, first: &[u8]| SaslServer::start(mechanism, cb).step(first);
        // -PLUS needs p=<known type>.
        assert_eq!(start(Mechanism::ScramSha256Plus, cb(), b"n,,n=u,r=x"), Step::Failure(SaslFailure::NotAuthorized));
        assert_eq!(
            start(Mechanism::ScramSha256Plus, cb(), b"p=tls-unique,,n=u,r=x"),
            Step::Failure(SaslFailure::NotAuthorized)
        );
        // p= with a non-PLUS mechanism.
        assert_eq!(
            start(Mechanism::ScramSha256, cb(), b"p=tls-exporter,,n=u,r=x"),
            Step::Failure(SaslFailure::NotAuthorized)
        );
        // y while we offered -PLUS: downgrade.
        assert_eq!(start(Mechanism::ScramSha256, cb(), b"y,,n=u,r=x"), Step::Failure(SaslFailure::NotAuthorized));
        // y without TLS binding data is honest.
        assert!(matches!(
            start(Mechanism::ScramSha256, ChannelBinding::default(), b"y,,n=u,r=x"),
            Step::NeedCredentials { .. }
        ));
    }

    #[test]
    fn malformed_messages_fail_without_panicking() {
        for first in [
            &b""[..],
            b"n,,",
            b"n,,r=x",
            b"n,,n=u",
            b"x,,n=u,r=x",
            b"n,,m=ext,n=u,r=x",
            b"n,,n=a=b,r=x",
            b"\xff,,n=u,r=x",
        ] {
            let step = SaslServer::start(Mechanism::ScramSha1, ChannelBinding::default()).step(first);
            assert!(matches!(step, Step::Failure(_)), "{:?} gave {step:?}", String::from_utf8_lossy(first));
        }
        let huge = vec![b'a'; 100_000];
        assert!(matches!(
            SaslServer::start(Mechanism::ScramSha1, ChannelBinding::default()).step(&huge),
            Step::Failure(_)
        ));
        let mut server = SaslServer::start(Mechanism::ScramSha1, ChannelBinding::default());
        server.step(b"n,,n=u,r=x");
        server.credentials(None);
        for last in [&b"garbage"[..], b"c=biws,p=", b"c=!!!,r=x,p=AAAA"] {
            let mut s = SaslServer::start(Mechanism::ScramSha1, ChannelBinding::default());
            s.step(b"n,,n=u,r=x");
            s.credentials(None);
            assert!(matches!(s.step(last), Step::Failure(_)));
        }
    }

    #[test]
    fn escaped_usernames_and_authzid() {
        let step =
            SaslServer::start(Mechanism::ScramSha1, ChannelBinding::default()).step(b"n,a=admin=40x,n=a=2Cb=3Dc,r=x");
        assert!(matches!(step, Step::Failure(SaslFailure::MalformedRequest)), "=40 is not a valid escape");
        let step = SaslServer::start(Mechanism::ScramSha1, ChannelBinding::default()).step(b"n,a=me,n=a=2Cb=3Dc,r=x");
        assert_eq!(step, Step::NeedCredentials { username: "a,b=c".into(), hash: ScramHash::Sha1 });
    }

    #[test]
    fn plain_checks_the_password_against_scram_keys() {
        let stored = ScramCredentials::derive("secret", ScramHash::Sha256, 4096).expect("derive");
        let mut server = SaslServer::start(Mechanism::Plain, ChannelBinding::default());
        assert_eq!(
            server.step(b"\0alice\0secret"),
            Step::NeedCredentials { username: "alice".into(), hash: ScramHash::Sha256 }
        );
        assert_eq!(
            server.credentials(Some(stored.clone())),
            Step::Success { username: "alice".into(), authzid: None, additional_data: None }
        );
        let mut wrong = SaslServer::start(Mechanism::Plain, ChannelBinding::default());
        wrong.step(b"\0alice\0guess");
        assert_eq!(wrong.credentials(Some(stored)), Step::Failure(SaslFailure::NotAuthorized));
        for bad in [&b"alice"[..], b"\0\0pw", b"\0alice\0", b"a\0b\0c\0d"] {
            assert_eq!(
                SaslServer::start(Mechanism::Plain, ChannelBinding::default()).step(bad),
                Step::Failure(SaslFailure::MalformedRequest)
            );
        }
    }

    #[test]
    fn offers_and_names() {
        let names = |m: Vec<Mechanism>| m.into_iter().map(Mechanism::name).collect::<Vec<_>>();
        assert_eq!(names(offered_mechanisms(&ChannelBinding::default(), false)), ["SCRAM-SHA-256", "SCRAM-SHA-1"]);
        assert_eq!(
            names(offered_mechanisms(&cb(), true)),
            ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
        );
        assert_eq!(Mechanism::from_name("SCRAM-SHA-1-PLUS"), Some(Mechanism::ScramSha1Plus));
        assert_eq!(Mechanism::from_name("DIGEST-MD5"), None);
        assert_eq!(decode_b64("="), Ok(Vec::new()));
        assert_eq!(decode_b64("*"), Err(SaslFailure::IncorrectEncoding));
    }
}

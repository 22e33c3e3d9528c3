//! SASL for client streams (RFC 6120 §6): SCRAM-SHA-1, SCRAM-SHA-256 and SCRAM-SHA-512,
//! each with a -PLUS variant using channel binding and SCRAM downgrade protection
//! (XEP-0474), PLAIN over TLS, and the HT token mechanisms of FAST ([`ht`]). Sans-IO: the c2s layer
//! moves base64 in and out of `<auth/>`, `<challenge/>`, `<response/>` and looks up
//! credentials when asked ([`Step::NeedCredentials`]).

mod credentials;
pub mod ht;
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
    /// SCRAM with channel binding (`-PLUS`).
    ScramPlus(ScramHash),
    /// SCRAM without channel binding.
    Scram(ScramHash),
    /// PLAIN (RFC 4616)
    Plain,
}

/// Every mechanism, strongest first.
const ALL_MECHANISMS: [Mechanism; 7] = [
    Mechanism::ScramPlus(ScramHash::Sha512),
    Mechanism::ScramPlus(ScramHash::Sha256),
    Mechanism::ScramPlus(ScramHash::Sha1),
    Mechanism::Scram(ScramHash::Sha512),
    Mechanism::Scram(ScramHash::Sha256),
    Mechanism::Scram(ScramHash::Sha1),
    Mechanism::Plain,
];

impl Mechanism {
    /// The IANA name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramPlus(ScramHash::Sha512) => "SCRAM-SHA-512-PLUS",
            Mechanism::ScramPlus(ScramHash::Sha256) => "SCRAM-SHA-256-PLUS",
            Mechanism::ScramPlus(ScramHash::Sha1) => "SCRAM-SHA-1-PLUS",
            Mechanism::Scram(hash) => hash.mechanism_name(),
            Mechanism::Plain => "PLAIN",
        }
    }

    /// The mechanism called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        ALL_MECHANISMS.into_iter().find(|m| m.name() == name)
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

/// What to offer: SCRAM for the hashes every account has keys for (`hashes`; a client
/// picking a hash its account lacks could not log in), -PLUS only with channel-binding
/// data, PLAIN only when encrypted.
pub fn offered_mechanisms(cb: &ChannelBinding, encrypted: bool, hashes: &[ScramHash]) -> Vec<Mechanism> {
    ALL_MECHANISMS
        .into_iter()
        .filter(|m| match m {
            Mechanism::ScramPlus(hash) => !cb.types().is_empty() && hashes.contains(hash),
            Mechanism::Scram(hash) => hashes.contains(hash),
            Mechanism::Plain => encrypted,
        })
        .collect()
}

/// The string XEP-0474 (SSDP) hashes into SCRAM's server-first-message: the advertised
/// mechanism names sorted and joined by U+001E, then, when XEP-0440 channel-binding
/// types were advertised, U+001F and the sorted types joined by U+001E. Sorting is
/// by octets (`i;octet`), which is what `str` ordering is.
pub fn downgrade_protection_input(mechanisms: &[&str], cb_types: &[&str]) -> String {
    let mut mechanisms = mechanisms.to_vec();
    mechanisms.sort_unstable();
    let mut input = mechanisms.join("\u{1e}");
    if !cb_types.is_empty() {
        let mut types = cb_types.to_vec();
        types.sort_unstable();
        input.push('\u{1f}');
        input.push_str(&types.join("\u{1e}"));
    }
    input
}

/// The SASL failure conditions of RFC 6120 §6.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslFailure {
    /// The client aborted.
    Aborted,
    /// The account is disabled.
    AccountDisabled,
    /// The credentials (a FAST token) are no longer valid.
    CredentialsExpired,
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
            SaslFailure::CredentialsExpired => "credentials-expired",
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
    /// Starts `mechanism` on a connection with channel-binding data `cb`. SCRAM
    /// signs `advertised` (see [`downgrade_protection_input`]; `None` only to check
    /// the RFC examples) into its first challenge, so a client can tell whether the
    /// offer it saw was tampered with.
    pub fn start(mechanism: Mechanism, cb: ChannelBinding, advertised: Option<&str>) -> Self {
        let exchange = match mechanism {
            Mechanism::ScramPlus(hash) => Exchange::Scram(Box::new(scram::Scram::new(hash, true, cb, advertised))),
            Mechanism::Scram(hash) => Exchange::Scram(Box::new(scram::Scram::new(hash, false, cb, advertised))),
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
        let mut server = SaslServer::start(mechanism, cb, None);
        if let Exchange::Scram(s) = &mut server.exchange {
            s.set_server_nonce(server_nonce);
        }
        server
    }

    #[test]
    fn rfc5802_scram_sha1_example() {
        let mut server = exchange(Mechanism::Scram(ScramHash::Sha1), "3rfcNHYJY1ZVvWVs7j", ChannelBinding::default());
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
        let mut server =
            exchange(Mechanism::Scram(ScramHash::Sha256), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", ChannelBinding::default());
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
        let mut server = exchange(Mechanism::Scram(ScramHash::Sha1), "3rfcNHYJY1ZVvWVs7j", ChannelBinding::default());
        server.step(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        server.credentials(Some(creds(ScramHash::Sha1, "QSXCR+Q6sek8bf92")));
        assert_eq!(server.step(final_message), Step::Failure(SaslFailure::NotAuthorized));

        let mut unknown = exchange(Mechanism::Scram(ScramHash::Sha1), "3rfcNHYJY1ZVvWVs7j", ChannelBinding::default());
        unknown.step(b"n,,n=nobody,r=fyko+d2lbbFgONRv9qkxdawL");
        let Step::Challenge(first) = unknown.credentials(None) else { panic!("challenge expected") };
        let mut again = exchange(Mechanism::Scram(ScramHash::Sha1), "x", ChannelBinding::default());
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
        let mut server = SaslServer::start(Mechanism::ScramPlus(ScramHash::Sha256), cb(), None);
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
        let start = |mechanism, cb: ChannelBinding, first: &[u8]| SaslServer::start(mechanism, cb, None).step(first);
        // -PLUS needs p=<known type>.
        assert_eq!(
            start(Mechanism::ScramPlus(ScramHash::Sha256), cb(), b"n,,n=u,r=x"),
            Step::Failure(SaslFailure::NotAuthorized)
        );
        assert_eq!(
            start(Mechanism::ScramPlus(ScramHash::Sha256), cb(), b"p=tls-unique,,n=u,r=x"),
            Step::Failure(SaslFailure::NotAuthorized)
        );
        // p= with a non-PLUS mechanism.
        assert_eq!(
            start(Mechanism::Scram(ScramHash::Sha256), cb(), b"p=tls-exporter,,n=u,r=x"),
            Step::Failure(SaslFailure::NotAuthorized)
        );
        // y while we offered -PLUS: downgrade.
        assert_eq!(
            start(Mechanism::Scram(ScramHash::Sha256), cb(), b"y,,n=u,r=x"),
            Step::Failure(SaslFailure::NotAuthorized)
        );
        // y without TLS binding data is honest.
        assert!(matches!(
            start(Mechanism::Scram(ScramHash::Sha256), ChannelBinding::default(), b"y,,n=u,r=x"),
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
            let step =
                SaslServer::start(Mechanism::Scram(ScramHash::Sha1), ChannelBinding::default(), None).step(first);
            assert!(matches!(step, Step::Failure(_)), "{:?} gave {step:?}", String::from_utf8_lossy(first));
        }
        let huge = vec![b'a'; 100_000];
        assert!(matches!(
            SaslServer::start(Mechanism::Scram(ScramHash::Sha1), ChannelBinding::default(), None).step(&huge),
            Step::Failure(_)
        ));
        let mut server = SaslServer::start(Mechanism::Scram(ScramHash::Sha1), ChannelBinding::default(), None);
        server.step(b"n,,n=u,r=x");
        server.credentials(None);
        for last in [&b"garbage"[..], b"c=biws,p=", b"c=!!!,r=x,p=AAAA"] {
            let mut s = SaslServer::start(Mechanism::Scram(ScramHash::Sha1), ChannelBinding::default(), None);
            s.step(b"n,,n=u,r=x");
            s.credentials(None);
            assert!(matches!(s.step(last), Step::Failure(_)));
        }
    }

    #[test]
    fn escaped_usernames_and_authzid() {
        let step = SaslServer::start(Mechanism::Scram(ScramHash::Sha1), ChannelBinding::default(), None)
            .step(b"n,a=admin=40x,n=a=2Cb=3Dc,r=x");
        assert!(matches!(step, Step::Failure(SaslFailure::MalformedRequest)), "=40 is not a valid escape");
        let step = SaslServer::start(Mechanism::Scram(ScramHash::Sha1), ChannelBinding::default(), None)
            .step(b"n,a=me,n=a=2Cb=3Dc,r=x");
        assert_eq!(step, Step::NeedCredentials { username: "a,b=c".into(), hash: ScramHash::Sha1 });
    }

    #[test]
    fn plain_checks_the_password_against_scram_keys() {
        let stored = ScramCredentials::derive("secret", ScramHash::Sha1, 4096).expect("derive");
        let mut server = SaslServer::start(Mechanism::Plain, ChannelBinding::default(), None);
        assert_eq!(
            server.step(b"\0alice\0secret"),
            Step::NeedCredentials { username: "alice".into(), hash: ScramHash::Sha1 }
        );
        assert_eq!(
            server.credentials(Some(stored.clone())),
            Step::Success { username: "alice".into(), authzid: None, additional_data: None }
        );
        let mut wrong = SaslServer::start(Mechanism::Plain, ChannelBinding::default(), None);
        wrong.step(b"\0alice\0guess");
        assert_eq!(wrong.credentials(Some(stored)), Step::Failure(SaslFailure::NotAuthorized));
        for bad in [&b"alice"[..], b"\0\0pw", b"\0alice\0", b"a\0b\0c\0d"] {
            assert_eq!(
                SaslServer::start(Mechanism::Plain, ChannelBinding::default(), None).step(bad),
                Step::Failure(SaslFailure::MalformedRequest)
            );
        }
    }

    #[test]
    fn offers_and_names() {
        let names = |m: Vec<Mechanism>| m.into_iter().map(Mechanism::name).collect::<Vec<_>>();
        let all = [ScramHash::Sha1, ScramHash::Sha256, ScramHash::Sha512];
        assert_eq!(
            names(offered_mechanisms(&ChannelBinding::default(), false, &all)),
            ["SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1"]
        );
        assert_eq!(
            names(offered_mechanisms(&cb(), true, &all[..2])),
            ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
        );
        assert_eq!(Mechanism::from_name("SCRAM-SHA-512-PLUS"), Some(Mechanism::ScramPlus(ScramHash::Sha512)));
        assert_eq!(Mechanism::from_name("SCRAM-SHA-1-PLUS"), Some(Mechanism::ScramPlus(ScramHash::Sha1)));
        assert_eq!(Mechanism::from_name("DIGEST-MD5"), None);
        assert_eq!(decode_b64("="), Ok(Vec::new()));
        assert_eq!(decode_b64("*"), Err(SaslFailure::IncorrectEncoding));
    }

    /// XEP-0474 §4.3: the example's `h` for SCRAM-SHA-1 with two mechanisms and two
    /// channel-binding types, advertised in the other order.
    #[test]
    fn downgrade_protection_matches_the_xep_example() {
        let input =
            downgrade_protection_input(&["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"], &["tls-server-end-point", "tls-exporter"]);
        assert_eq!(input, "SCRAM-SHA-1\u{1e}SCRAM-SHA-1-PLUS\u{1f}tls-exporter\u{1e}tls-server-end-point");
        let mut server = SaslServer::start(Mechanism::Scram(ScramHash::Sha1), ChannelBinding::default(), Some(&input));
        let Step::NeedCredentials { .. } = server.step(b"n,,n=user,r=abc") else { panic!("first step") };
        let Step::Challenge(challenge) = server.credentials(Some(creds(ScramHash::Sha1, "QSXCR+Q6sek8bf92"))) else {
            panic!("no challenge")
        };
        let challenge = String::from_utf8(challenge).expect("utf-8");
        assert!(challenge.ends_with(",i=4096,h=G6k/rBLDqgOhRRaCuuatSDFkJ08="), "{challenge}");
        assert_eq!(downgrade_protection_input(&["PLAIN", "SCRAM-SHA-256"], &[]), "PLAIN\u{1e}SCRAM-SHA-256");
    }

    /// A whole SCRAM-SHA-512 exchange, the client side computed here from RFC 5802 §3.
    #[test]
    fn scram_sha512_exchange() {
        let hash = ScramHash::Sha512;
        let stored = ScramCredentials::derive("pencil", hash, 4096).expect("derive");
        let mut server = SaslServer::start(Mechanism::Scram(hash), ChannelBinding::default(), Some("SCRAM-SHA-512"));
        let first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        assert!(matches!(server.step(format!("n,,{first_bare}").as_bytes()), Step::NeedCredentials { .. }));
        let Step::Challenge(server_first) = server.credentials(Some(stored.clone())) else { panic!("challenge") };
        let server_first = String::from_utf8(server_first).expect("utf-8");
        let nonce = server_first.split(',').next().and_then(|r| r.strip_prefix("r=")).expect("nonce");
        let salted = hash.salted_password(b"pencil", &stored.salt, 4096);
        let client_key = hash.hmac(&salted, b"Client Key");
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{first_bare},{server_first},{without_proof}");
        let signature = hash.hmac(&hash.hash(&client_key), auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
        let last = format!("{without_proof},p={}", BASE64.encode(proof));
        let Step::Success { additional_data: Some(server_final), .. } = server.step(last.as_bytes()) else {
            panic!("no success")
        };
        let expected = hash.hmac(&hash.hmac(&salted, b"Server Key"), auth_message.as_bytes());
        assert_eq!(server_final, format!("v={}", BASE64.encode(expected)).into_bytes());
        assert_eq!(
            ScramCredentials::from_salted_password(hash, &stored.salt, 4096, &salted),
            stored,
            "keys from an upgrade task's SaltedPassword are the ones a password derives"
        );
    }
}

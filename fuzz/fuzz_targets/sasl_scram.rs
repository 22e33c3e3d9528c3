//! A SCRAM exchange (RFC 5802, RFC 7677, -PLUS with RFC 9266 channel binding) driven by
//! arbitrary client messages: the client-first message, then the client-final one
//! (the input split at its first NUL). Invariants: no panic, and success never comes
//! from a client that does not know the password (the fuzzer cannot compute a proof).
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling::sasl::{ChannelBinding, Mechanism, SaslServer, ScramCredentials, ScramHash, Step};

const MECHANISMS: [Mechanism; 4] = [
    Mechanism::Scram(ScramHash::Sha1),
    Mechanism::Scram(ScramHash::Sha256),
    Mechanism::ScramPlus(ScramHash::Sha256),
    Mechanism::ScramPlus(ScramHash::Sha512),
];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, input)) = data.split_first() else { return };
    let mechanism = MECHANISMS[usize::from(choice) % MECHANISMS.len()];
    let cb = ChannelBinding { tls_exporter: Some(vec![1; 32]), tls_server_end_point: Some(vec![2; 32]) };
    let mut server = SaslServer::start(mechanism, cb, Some("SCRAM-SHA-256,SCRAM-SHA-256-PLUS|tls-exporter"));
    let (first, last) = match input.iter().position(|&b| b == 0) {
        Some(at) => (&input[..at], &input[at + 1..]),
        None => (input, &[][..]),
    };
    let hash = match server.step(first) {
        Step::NeedCredentials { hash, .. } => hash,
        Step::Success { .. } => panic!("success before any proof"),
        _ => return,
    };
    let creds = ScramCredentials::derive_with_salt("pencil", hash, 4096, b"salt").expect("credentials");
    match server.credentials(Some(creds)) {
        Step::Challenge(_) => {}
        Step::Success { .. } => panic!("success before any proof"),
        _ => return,
    }
    assert!(!matches!(server.step(last), Step::Success { .. }), "a guessed proof succeeded");
});

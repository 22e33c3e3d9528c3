//! SASL2 (XEP-0388) from the client side: SCRAM and FAST (XEP-0484) HT logins, written
//! for the tests independently of the server.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use minidom::Element;

use super::scram::ScramClient;
use super::{Conn, TestServer};

pub const NS_SASL2: &str = "urn:xmpp:sasl:2";
pub const NS_FAST: &str = "urn:xmpp:fast:0";
/// The user-agent id every test login sends.
pub const USER_AGENT: &str = "d4565fa7-4d72-4749-b3d3-740edbf87770";

/// A connection after STARTTLS, and the features offered on it.
pub async fn tls_conn(server: &TestServer) -> (Conn, Element) {
    let mut conn = Conn::tcp(server.addr()).await;
    conn.open().await;
    let features = conn.starttls().await;
    (conn, features)
}

/// A SCRAM exchange in the SASL2 profile with `inline` requests (XML) in
/// `<authenticate/>`; the `<success/>` (its server signature checked) or `<failure/>`.
pub async fn authenticate_scram(conn: &mut Conn, mechanism: &str, mut client: ScramClient, inline: &str) -> Element {
    let first = B64.encode(client.client_first());
    conn.send(&format!(
        "<authenticate xmlns='{NS_SASL2}' mechanism='{mechanism}'><initial-response>{first}</initial-response>\
         <user-agent id='{USER_AGENT}'><software>test</software><device>bench</device></user-agent>\
         {inline}</authenticate>"
    ))
    .await;
    let challenge = conn.recv().await;
    if challenge.name() == "failure" {
        return challenge;
    }
    assert_eq!((challenge.name(), challenge.ns().as_str()), ("challenge", NS_SASL2), "{challenge:?}");
    let server_first = String::from_utf8(B64.decode(challenge.text()).expect("b64")).expect("utf8");
    let Ok(final_message) = client.client_final(&server_first) else { panic!("bad server-first {server_first}") };
    conn.send(&format!("<response xmlns='{NS_SASL2}'>{}</response>", B64.encode(final_message))).await;
    let outcome = conn.recv().await;
    if outcome.name() == "success" {
        let data = outcome.get_child("additional-data", NS_SASL2).expect("server-final in additional-data");
        let server_final = String::from_utf8(B64.decode(data.text()).expect("b64")).expect("utf8");
        assert!(client.verify_server_final(&server_final), "server signature invalid: {server_final}");
    }
    outcome
}

/// `HMAC-SHA-256(token, label || cb_data)` (draft-schmaus-kitten-sasl-ht-08 §3).
pub fn ht_hmac(token: &str, label: &[u8], cb_data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()).expect("any key length");
    mac.update(label);
    mac.update(cb_data);
    mac.finalize().into_bytes().to_vec()
}

/// A FAST login of `user` with `token` and the HT `mechanism`, with `extra` XML in
/// `<authenticate/>`: the server's single answer, its HT responder message checked
/// when it is `<success/>`.
pub async fn authenticate_token(conn: &mut Conn, user: &str, mechanism: &str, token: &str, extra: &str) -> Element {
    let cb_data = match mechanism {
        "HT-SHA-256-EXPR" => conn.tls_exporter(),
        "HT-SHA-256-ENDP" => conn.tls_server_end_point(),
        _ => Vec::new(),
    };
    let mut initial = format!("{user}\0").into_bytes();
    initial.extend_from_slice(&ht_hmac(token, b"Initiator", &cb_data));
    conn.send(&format!(
        "<authenticate xmlns='{NS_SASL2}' mechanism='{mechanism}'><initial-response>{}</initial-response>\
         <user-agent id='{USER_AGENT}'><software>test</software></user-agent>{extra}</authenticate>",
        B64.encode(initial)
    ))
    .await;
    let answer = conn.recv().await;
    if answer.name() == "success" {
        let data = answer.get_child("additional-data", NS_SASL2).expect("the HT responder message");
        assert_eq!(B64.decode(data.text()).expect("b64"), ht_hmac(token, b"Responder", &cb_data));
    }
    answer
}

/// The FAST token in a `<success/>`, if one was issued.
pub fn issued_token(success: &Element) -> Option<String> {
    success.get_child("token", NS_FAST).and_then(|t| t.attr("token")).map(str::to_owned)
}

//! Extensible SASL Profile (XEP-0388) over real sockets: the `<authentication/>`
//! feature, a SCRAM exchange through `<authenticate/>`/`<challenge/>`/`<response/>`,
//! `<success/>` with the authorization identifier and no stream restart, `<failure/>`.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::scram::{Hash, ScramClient};
use common::{Conn, HOST, TestServer};
use minidom::Element;

const NS_SASL2: &str = "urn:xmpp:sasl:2";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

fn sasl2_mechanisms(features: &Element) -> Vec<String> {
    features
        .get_child("authentication", NS_SASL2)
        .map(|m| m.children().filter(|c| c.name() == "mechanism").map(|c| c.text()).collect())
        .unwrap_or_default()
}

async fn tls_conn(server: &TestServer) -> (Conn, Element) {
    let mut conn = Conn::tcp(server.addr()).await;
    conn.open().await;
    let features = conn.starttls().await;
    (conn, features)
}

/// A SCRAM exchange in the SASL2 profile; the `<success/>` or `<failure/>` element.
async fn authenticate(conn: &mut Conn, mechanism: &str, mut client: ScramClient) -> Element {
    let first = B64.encode(client.client_first());
    conn.send(&format!(
        "<authenticate xmlns='{NS_SASL2}' mechanism='{mechanism}'><initial-response>{first}</initial-response>\
         <user-agent id='d4565fa7-4d72-4749-b3d3-740edbf87770'><software>test</software><device>bench</device></user-agent>\
         </authenticate>"
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

#[tokio::test]
async fn sasl2_is_offered_only_after_tls_with_the_legacy_mechanisms() {
    let server = TestServer::start().await;
    let mut conn = Conn::tcp(server.addr()).await;
    let before = conn.open().await;
    assert!(sasl2_mechanisms(&before).is_empty(), "no SASL2 before TLS: {before:?}");
    let features = conn.starttls().await;
    let legacy: Vec<String> =
        features.get_child("mechanisms", NS_SASL).map(|m| m.children().map(|c| c.text()).collect()).unwrap_or_default();
    assert!(!legacy.is_empty());
    assert_eq!(sasl2_mechanisms(&features), legacy);
}

#[tokio::test]
async fn sasl2_scram_succeeds_without_restart_and_binds() {
    let server = TestServer::start().await;
    server.add_user("alice", "correct horse").await;
    for (mechanism, hash, cb) in [
        ("SCRAM-SHA-256", Hash::Sha256, false),
        ("SCRAM-SHA-1", Hash::Sha1, false),
        ("SCRAM-SHA-256-PLUS", Hash::Sha256, true),
    ] {
        let (mut conn, _) = tls_conn(&server).await;
        let binding = cb.then(|| ("tls-exporter", conn.tls_exporter()));
        let client = ScramClient::new(hash, "alice", "correct horse", binding);
        let success = authenticate(&mut conn, mechanism, client).await;
        assert_eq!((success.name(), success.ns().as_str()), ("success", NS_SASL2), "{mechanism}: {success:?}");
        let authzid = success.get_child("authorization-identifier", NS_SASL2).expect("authorization-identifier");
        assert_eq!(authzid.text(), format!("alice@{HOST}"));
        // No stream restart: the post-authentication features follow directly.
        let features = conn.recv().await;
        assert_eq!(features.name(), "features", "{features:?}");
        assert!(features.has_child("bind", "urn:ietf:params:xml:ns:xmpp-bind"), "{features:?}");
        let jid = conn.bind(Some("phone")).await.expect("bound");
        assert_eq!(jid, format!("alice@{HOST}/phone"));
    }
}

#[tokio::test]
async fn sasl2_wrong_password_fails_in_the_sasl2_namespace() {
    let server = TestServer::start().await;
    server.add_user("alice", "correct horse").await;
    let (mut conn, _) = tls_conn(&server).await;
    let failure =
        authenticate(&mut conn, "SCRAM-SHA-256", ScramClient::new(Hash::Sha256, "alice", "wrong", None)).await;
    assert_eq!((failure.name(), failure.ns().as_str()), ("failure", NS_SASL2), "{failure:?}");
    assert!(failure.has_child("not-authorized", NS_SASL), "{failure:?}");
    // The stream stays usable for another attempt.
    let success =
        authenticate(&mut conn, "SCRAM-SHA-256", ScramClient::new(Hash::Sha256, "alice", "correct horse", None)).await;
    assert_eq!(success.name(), "success", "{success:?}");
}

#[tokio::test]
async fn sasl2_unknown_mechanism_and_abort() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let (mut conn, _) = tls_conn(&server).await;
    conn.send(&format!("<authenticate xmlns='{NS_SASL2}' mechanism='X-NOPE'/>")).await;
    let failure = conn.recv().await;
    assert!(failure.has_child("invalid-mechanism", NS_SASL), "{failure:?}");
    // Without an initial response the server asks for one; the client aborts.
    conn.send(&format!("<authenticate xmlns='{NS_SASL2}' mechanism='SCRAM-SHA-256'/>")).await;
    let challenge = conn.recv().await;
    assert_eq!(challenge.name(), "challenge", "{challenge:?}");
    conn.send(&format!("<abort xmlns='{NS_SASL2}'/>")).await;
    let failure = conn.recv().await;
    assert_eq!(failure.ns(), NS_SASL2);
    assert!(failure.has_child("aborted", NS_SASL), "{failure:?}");
}

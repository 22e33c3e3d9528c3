//! Stream negotiation over real sockets: STARTTLS, direct TLS, every SASL mechanism
//! (RFC 6120 §5–§6, RFC 5802/7677, RFC 9266, RFC 5929, XEP-0368, XEP-0440).

mod common;

use common::scram::{Hash, ScramClient};
use common::{Conn, HOST, TestServer};

fn mechanisms(features: &minidom::Element) -> Vec<String> {
    features
        .get_child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
        .map(|m| m.children().map(|c| c.text()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn before_tls_only_starttls_is_offered_and_auth_is_refused() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let mut conn = Conn::tcp(server.addr()).await;
    let features = conn.open().await;
    let starttls = features.get_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls").expect("starttls offered");
    assert!(starttls.has_child("required", "urn:ietf:params:xml:ns:xmpp-tls"));
    assert!(mechanisms(&features).is_empty(), "no SASL before TLS: {features:?}");
    assert_eq!(conn.auth_plain("alice", "pw").await, Err("encryption-required".to_owned()));
    assert_eq!(conn.auth("alice", "pw").await, Err("encryption-required".to_owned()));
}

#[tokio::test]
async fn after_starttls_scram_plus_and_channel_binding_types_are_advertised() {
    let server = TestServer::start().await;
    let mut conn = Conn::tcp(server.addr()).await;
    conn.open().await;
    let features = conn.starttls().await;
    let offered = mechanisms(&features);
    for mechanism in ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"] {
        assert!(offered.iter().any(|m| m == mechanism), "{mechanism} missing from {offered:?}");
    }
    let cb = features.get_child("sasl-channel-binding", "urn:xmpp:sasl-cb:0").expect("XEP-0440 advertisement");
    let types: Vec<_> = cb.children().filter_map(|c| c.attr("type")).collect();
    assert!(types.contains(&"tls-exporter") && types.contains(&"tls-server-end-point"), "{types:?}");
    assert!(features.get_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls").is_none());
}

async fn tls_conn(server: &TestServer) -> Conn {
    let mut conn = Conn::tcp(server.addr()).await;
    conn.open().await;
    conn.starttls().await;
    conn
}

#[tokio::test]
async fn every_scram_variant_authenticates_and_binds() {
    let server = TestServer::start().await;
    server.add_user("alice", "correct horse").await;
    let cases: [(&str, Hash, Option<&str>); 6] = [
        ("SCRAM-SHA-1", Hash::Sha1, None),
        ("SCRAM-SHA-256", Hash::Sha256, None),
        ("SCRAM-SHA-1-PLUS", Hash::Sha1, Some("tls-exporter")),
        ("SCRAM-SHA-256-PLUS", Hash::Sha256, Some("tls-exporter")),
        ("SCRAM-SHA-1-PLUS", Hash::Sha1, Some("tls-server-end-point")),
        ("SCRAM-SHA-256-PLUS", Hash::Sha256, Some("tls-server-end-point")),
    ];
    for (mechanism, hash, cb_type) in cases {
        let mut conn = tls_conn(&server).await;
        let cb = cb_type.map(|t| {
            let data = if t == "tls-exporter" { conn.tls_exporter() } else { conn.tls_server_end_point() };
            (t, data)
        });
        let client = ScramClient::new(hash, "alice", "correct horse", cb);
        conn.auth_scram(mechanism, client).await.unwrap_or_else(|e| panic!("{mechanism} {cb_type:?}: {e}"));
        let features = conn.open().await;
        assert!(features.has_child("bind", "urn:ietf:params:xml:ns:xmpp-bind"), "{features:?}");
        let jid = conn.bind(Some("desk")).await.expect("bound");
        assert_eq!(jid, format!("alice@{HOST}/desk"));
    }
}

#[tokio::test]
async fn wrong_channel_binding_data_is_rejected() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let mut conn = tls_conn(&server).await;
    let client = ScramClient::new(Hash::Sha256, "alice", "pw", Some(("tls-exporter", vec![0u8; 32])));
    assert_eq!(conn.auth_scram("SCRAM-SHA-256-PLUS", client).await, Err("not-authorized".to_owned()));
}

#[tokio::test]
async fn claiming_no_server_support_for_binding_is_a_downgrade() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let mut conn = tls_conn(&server).await;
    // `y,,` says "I support channel binding but think you don't": we advertised -PLUS,
    // so someone stripped it in transit (RFC 5802 §6).
    let client = ScramClient::new(Hash::Sha256, "alice", "pw", None).with_gs2_header("y,,");
    assert!(conn.auth_scram("SCRAM-SHA-256", client).await.is_err());
}

#[tokio::test]
async fn wrong_password_and_unknown_user_fail_alike() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let mut conn = tls_conn(&server).await;
    assert_eq!(conn.auth("alice", "wrong").await, Err("not-authorized".to_owned()));
    assert_eq!(conn.auth("nobody", "pw").await, Err("not-authorized".to_owned()));
    assert_eq!(conn.auth_plain("alice", "wrong").await, Err("not-authorized".to_owned()));
    // The stream survives failures: the right password still works.
    assert_eq!(conn.auth("alice", "pw").await, Ok(()));
}

#[tokio::test]
async fn plain_works_over_tls_and_usernames_are_normalised() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let mut conn = tls_conn(&server).await;
    conn.auth_plain("Alice", "pw").await.expect("PLAIN over TLS, case-insensitive user");
    conn.open().await;
    assert_eq!(conn.bind(Some("r")).await.expect("bound"), format!("alice@{HOST}/r"));
}

#[tokio::test]
async fn repeated_failures_are_throttled() {
    let throttled = || {
        let text = starling::metrics::handle().render();
        text.lines()
            .find(|l| l.starts_with("starling_auth_throttled_total"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = throttled();
    let server = TestServer::start_with(|c| c.limits.auth_failures = 3).await;
    server.add_user("alice", "pw").await;
    let mut conn = tls_conn(&server).await;
    for _ in 0..3 {
        assert_eq!(conn.auth("alice", "wrong").await, Err("not-authorized".to_owned()));
    }
    assert_eq!(conn.auth("alice", "pw").await, Err("temporary-auth-failure".to_owned()));
    assert!(throttled() > before, "counted in starling_auth_throttled_total");
}

#[tokio::test]
async fn unknown_mechanism_is_refused() {
    let server = TestServer::start().await;
    let mut conn = tls_conn(&server).await;
    conn.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'>=</auth>").await;
    let failure = conn.recv().await;
    assert!(failure.has_child("invalid-mechanism", "urn:ietf:params:xml:ns:xmpp-sasl"), "{failure:?}");
}

#[tokio::test]
async fn direct_tls_with_alpn_logs_in() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let mut conn = Conn::direct_tls(server.tls_addr(), &[b"xmpp-client"]).await;
    assert_eq!(conn.tls().and_then(|t| t.alpn_protocol()), Some(&b"xmpp-client"[..]));
    let features = conn.open().await;
    assert!(features.get_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls").is_none());
    let exporter = conn.tls_exporter();
    let client = ScramClient::new(Hash::Sha256, "alice", "pw", Some(("tls-exporter", exporter)));
    conn.auth_scram("SCRAM-SHA-256-PLUS", client).await.expect("authenticated");
    conn.open().await;
    conn.bind(None).await.expect("server-generated resource");
}

#[tokio::test]
async fn unknown_host_is_refused_with_host_unknown() {
    let server = TestServer::start().await;
    let mut conn = Conn::tcp(server.addr()).await;
    conn.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='elsewhere.test' version='1.0'>").await;
    assert_eq!(conn.stream_error().await.as_deref(), Some("host-unknown"));
}

#[tokio::test]
async fn stanzas_before_authentication_are_not_authorized() {
    let server = TestServer::start().await;
    let mut conn = Conn::tcp(server.addr()).await;
    conn.open().await;
    conn.send("<message to='alice@localhost'><body>hi</body></message>").await;
    assert_eq!(conn.stream_error().await.as_deref(), Some("not-authorized"));
}

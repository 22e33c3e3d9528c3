//! A reload picks up renewed certificates for new connections without dropping the
//! connections already open (RFC 6120 sessions keep their TLS state).

mod common;

use common::{Conn, HOST, TestServer};

/// The certificate the server presents on a new STARTTLS connection.
async fn served_certificate(server: &TestServer) -> Vec<u8> {
    let mut conn = Conn::tcp(server.addr()).await;
    conn.open().await;
    conn.starttls().await;
    let tls = conn.tls().expect("TLS");
    tls.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref().to_vec()).expect("a certificate")
}

#[tokio::test]
async fn a_reload_serves_a_renewed_certificate_and_keeps_open_sessions() {
    let files = tempfile::tempdir().expect("dir");
    let path = files.path().join("starling.toml");
    let server = TestServer::start().await;
    std::fs::write(&path, common::test_config_text(server.dir.path())).expect("written");
    let mut server = server;
    server.stop().await;
    server.config.path = path;
    server.restart().await;
    server.add_user("alice", "pw").await;
    let mut alice = server.login("alice", "laptop").await;
    let before = served_certificate(&server).await;

    // "Renewal": the old files go, the generator writes a new key and certificate.
    let certs = server.dir.path().join("certs");
    for file in [format!("{HOST}.crt"), format!("{HOST}.key")] {
        std::fs::remove_file(certs.join(file)).expect("removed");
    }
    let control = server.server.as_ref().expect("running").control.clone();
    let report = control.reload_now().await.expect("reloaded");
    assert!(report.applied.iter().any(|a| a == "certificates"), "{report:?}");
    let after = served_certificate(&server).await;
    assert_ne!(before, after, "new connections get the new certificate");
    assert!(certs.join(format!("{HOST}.crt")).exists());

    // The session opened before the reload carries on.
    alice
        .send(&format!("<message to='alice@{HOST}/laptop' type='chat' id='self'><body>still here</body></message>"))
        .await;
    assert_eq!(alice.recv_message().await.attr("id"), Some("self"));
    let (pong, _) =
        alice.iq(&format!("<iq type='get' id='{{id}}' to='{HOST}'><ping xmlns='urn:xmpp:ping'/></iq>")).await;
    assert_eq!(pong.attr("type"), Some("result"));
}

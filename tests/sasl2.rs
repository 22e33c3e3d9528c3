//! Extensible SASL Profile (XEP-0388) over real sockets: the `<authentication/>`
//! feature, a SCRAM exchange through `<authenticate/>`/`<challenge/>`/`<response/>`,
//! `<success/>` with the authorization identifier and no stream restart, `<failure/>`.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::scram::{Hash, ScramClient};
use common::{Client, Conn, HOST, TestServer};
use minidom::Element;

const NS_SASL2: &str = "urn:xmpp:sasl:2";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND2: &str = "urn:xmpp:bind:0";
const NS_SM: &str = "urn:xmpp:sm:3";
const NS_CARBONS: &str = "urn:xmpp:carbons:2";
const USER_AGENT: &str = "d4565fa7-4d72-4749-b3d3-740edbf87770";

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
async fn authenticate(conn: &mut Conn, mechanism: &str, client: ScramClient) -> Element {
    authenticate_with(conn, mechanism, client, "").await
}

/// A SCRAM exchange in the SASL2 profile with `inline` requests (XML) in
/// `<authenticate/>`; the `<success/>` or `<failure/>` element.
async fn authenticate_with(conn: &mut Conn, mechanism: &str, mut client: ScramClient, inline: &str) -> Element {
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

/// SASL2 authentication as alice with `inline` requests: the connection and `<success/>`.
async fn sasl2_login(server: &TestServer, inline: &str) -> (Conn, Element) {
    let (mut conn, _) = tls_conn(server).await;
    let client = ScramClient::new(Hash::Sha256, "alice", "pw", None);
    let success = authenticate_with(&mut conn, "SCRAM-SHA-256", client, inline).await;
    assert_eq!((success.name(), success.ns().as_str()), ("success", NS_SASL2), "{success:?}");
    (conn, success)
}

/// Bind 2 with stream management, carbons and CSI enabled inline, as Conversations does.
const BIND2_ALL: &str = "<bind xmlns='urn:xmpp:bind:0'><tag>AwesomeXMPP</tag>\
    <enable xmlns='urn:xmpp:sm:3' resume='true'/><enable xmlns='urn:xmpp:carbons:2'/>\
    <inactive xmlns='urn:xmpp:csi:0'/></bind>";

#[tokio::test]
async fn bind2_advertises_its_inline_features_and_binds_with_sm_and_carbons_enabled() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let (_, features) = tls_conn(&server).await;
    let inline = features.get_child("authentication", NS_SASL2).and_then(|a| a.get_child("inline", NS_SASL2));
    let inline = inline.expect("SASL2 inline features");
    assert!(inline.has_child("sm", NS_SM), "SM resumption offered inline: {inline:?}");
    let vars: Vec<&str> = inline
        .get_child("bind", NS_BIND2)
        .and_then(|b| b.get_child("inline", NS_BIND2))
        .map(|i| i.children().filter_map(|f| f.attr("var")).collect())
        .unwrap_or_default();
    for var in [NS_SM, NS_CARBONS, "urn:xmpp:csi:0"] {
        assert!(vars.contains(&var), "{var} offered for Bind 2: {vars:?}");
    }

    let (mut phone, success) = sasl2_login(&server, BIND2_ALL).await;
    let jid = success.get_child("authorization-identifier", NS_SASL2).expect("authzid").text();
    let resource = jid.strip_prefix(&format!("alice@{HOST}/")).expect("a full JID of alice");
    assert!(resource.starts_with("AwesomeXMPP."), "resource from the tag: {resource}");
    let bound = success.get_child("bound", NS_BIND2).expect("<bound/> in <success/>");
    let enabled = bound.get_child("enabled", NS_SM).expect("SM enabled inline");
    assert_eq!(enabled.attr("resume"), Some("true"));
    assert!(enabled.attr("id").is_some());
    // The same installation gets the same prefix next time (XEP-0386 §2.4).
    let (_again, success) = sasl2_login(&server, "<bind xmlns='urn:xmpp:bind:0'><tag>AwesomeXMPP</tag></bind>").await;
    let again = success.get_child("authorization-identifier", NS_SASL2).expect("authzid").text();
    let prefix = |jid: &str| jid.split('~').next().map(str::to_owned);
    assert_eq!(prefix(&again), prefix(&jid));
    assert_ne!(again, jid);

    // No stream features and no bind request: the session runs. A message alice
    // sends from her laptop comes to the phone as a carbon, CSI notwithstanding.
    let mut laptop = Client::login(server.addr(), "alice", "pw", Some("laptop")).await;
    laptop.send(&format!("<message to='bob@{HOST}' type='chat' id='c1'><body>hi</body></message>")).await;
    let carbon = phone.recv().await;
    assert_eq!(carbon.name(), "message", "first thing after <success/>: {carbon:?}");
    let sent = carbon.get_child("sent", NS_CARBONS).expect("a sent carbon");
    assert!(sent.children().next().is_some_and(|f| f.name() == "forwarded"), "{carbon:?}");
    // Stream management counts from the inline enable: the carbon is stanza 1.
    phone.send(&format!("<r xmlns='{NS_SM}'/>")).await;
    loop {
        let next = phone.recv().await;
        if next.is("a", NS_SM) {
            assert_eq!(next.attr("h"), Some("0"), "nothing handled from the phone yet");
            break;
        }
    }
}

#[tokio::test]
async fn sm_resumes_through_sasl2_in_one_round_trip() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let (mut phone, success) = sasl2_login(&server, BIND2_ALL).await;
    let jid = success.get_child("authorization-identifier", NS_SASL2).expect("authzid").text();
    let enabled = success.get_child("bound", NS_BIND2).and_then(|b| b.get_child("enabled", NS_SM)).expect("enabled");
    let previd = enabled.attr("id").expect("resumption id").to_owned();
    phone.send(&format!("<presence/><iq type='get' id='p1' to='{HOST}'><ping xmlns='urn:xmpp:ping'/></iq>")).await;
    while phone.recv().await.attr("id") != Some("p1") {}
    drop(phone);

    // While the session hibernates, bob writes; resumption through SASL2 delivers it.
    let mut bob = Client::login(server.addr(), "bob", "pw", Some("desk")).await;
    bob.send(&format!("<message to='{jid}' type='chat' id='m1'><body>while away</body></message>")).await;
    bob.sync().await;
    let inline = format!("<resume xmlns='{NS_SM}' previd='{previd}' h='0'/>");
    let (mut phone, success) = sasl2_login(&server, &inline).await;
    assert_eq!(success.get_child("authorization-identifier", NS_SASL2).map(|a| a.text()), Some(jid.clone()));
    let resumed = success.get_child("resumed", NS_SM).expect("<resumed/> in <success/>");
    assert_eq!(resumed.attr("previd"), Some(previd.as_str()));
    assert_eq!(resumed.attr("h"), Some("2"), "the server handled the presence and the ping");
    loop {
        let stanza = phone.recv().await;
        if stanza.name() == "message" {
            assert_eq!(stanza.get_child("body", "jabber:client").map(|b| b.text()).as_deref(), Some("while away"));
            break;
        }
    }

    // An unknown id: <failed/> inside <success/>, and Bind 2 in the same request still binds.
    let inline = format!("<resume xmlns='{NS_SM}' previd='nope' h='0'/><bind xmlns='urn:xmpp:bind:0'/>");
    let (_conn, success) = sasl2_login(&server, &inline).await;
    assert!(success.has_child("failed", NS_SM), "{success:?}");
    assert!(success.has_child("bound", NS_BIND2), "{success:?}");
}

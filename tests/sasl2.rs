//! Extensible SASL Profile (XEP-0388) over real sockets: the `<authentication/>`
//! feature, a SCRAM exchange through `<authenticate/>`/`<challenge/>`/`<response/>`,
//! `<success/>` with the authorization identifier and no stream restart, `<failure/>`.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::sasl2::{NS_FAST, NS_SASL2, authenticate_scram, authenticate_token, issued_token, tls_conn};
use common::scram::{Hash, ScramClient};
use common::{Client, Conn, HOST, TestServer};
use minidom::Element;

const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND2: &str = "urn:xmpp:bind:0";
const NS_SM: &str = "urn:xmpp:sm:3";
const NS_CARBONS: &str = "urn:xmpp:carbons:2";

fn sasl2_mechanisms(features: &Element) -> Vec<String> {
    features
        .get_child("authentication", NS_SASL2)
        .map(|m| m.children().filter(|c| c.name() == "mechanism").map(|c| c.text()).collect())
        .unwrap_or_default()
}

/// A SCRAM exchange in the SASL2 profile; the `<success/>` or `<failure/>` element.
async fn authenticate(conn: &mut Conn, mechanism: &str, client: ScramClient) -> Element {
    authenticate_scram(conn, mechanism, client, "").await
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
    let success = authenticate_scram(&mut conn, "SCRAM-SHA-256", client, inline).await;
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

/// The FAST (XEP-0484) HT mechanisms offered inline.
fn fast_mechanisms(features: &Element) -> Vec<String> {
    features
        .get_child("authentication", NS_SASL2)
        .and_then(|a| a.get_child("inline", NS_SASL2))
        .and_then(|i| i.get_child("fast", NS_FAST))
        .map(|f| f.children().filter(|c| c.name() == "mechanism").map(|c| c.text()).collect())
        .unwrap_or_default()
}

/// A FAST login as alice on a new connection, the mechanism checked to be offered.
async fn fast_login(server: &TestServer, mechanism: &str, token: &str, fast: &str, inline: &str) -> (Conn, Element) {
    let (mut conn, features) = tls_conn(server).await;
    assert!(fast_mechanisms(&features).iter().any(|m| m == mechanism), "{mechanism} offered: {features:?}");
    let answer = authenticate_token(&mut conn, "alice", mechanism, token, &format!("{fast}{inline}")).await;
    (conn, answer)
}

#[tokio::test]
async fn fast_token_is_issued_then_logs_in_in_one_round_trip_bound_to_its_mechanism_and_counter() {
    let mut server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let (_, features) = tls_conn(&server).await;
    assert_eq!(fast_mechanisms(&features), ["HT-SHA-256-EXPR", "HT-SHA-256-ENDP", "HT-SHA-256-NONE"]);

    let request = format!("<request-token xmlns='{NS_FAST}' mechanism='HT-SHA-256-EXPR'/>");
    let (_first, success) = sasl2_login(&server, &request).await;
    let token = success.get_child("token", NS_FAST).expect("a token in <success/>");
    let expiry = chrono::DateTime::parse_from_rfc3339(token.attr("expiry").expect("expiry")).expect("XEP-0082 time");
    let days = (expiry.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days();
    assert!((20..=21).contains(&days), "the default lifetime is 21 days, got {days}");
    let token = token.attr("token").expect("token").to_owned();
    // Only a random id is stored, never the token.
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        token_id: String,
    }
    let rows: Vec<Row> = server
        .db()
        .run(|c| {
            use diesel::RunQueryDsl;
            diesel::sql_query("SELECT token_id FROM account_fast_tokens").load(c)
        })
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1);
    assert!(!token.contains(&rows[0].token_id) && rows[0].token_id != token);

    // One round trip: the first answer to <authenticate/> is <success/> with <bound/>.
    let counted = |n: u32| format!("<fast xmlns='{NS_FAST}' count='{n}'/>");
    let bind = "<bind xmlns='urn:xmpp:bind:0'><tag>AwesomeXMPP</tag></bind>";
    let (_conn, success) = fast_login(&server, "HT-SHA-256-EXPR", &token, &counted(1), bind).await;
    assert_eq!(success.name(), "success", "{success:?}");
    assert!(success.has_child("bound", NS_BIND2), "{success:?}");
    assert_eq!(issued_token(&success), None, "a fresh token is not rotated");

    // The counter must grow: the same one again is a replay.
    let (_conn, failure) = fast_login(&server, "HT-SHA-256-EXPR", &token, &counted(1), "").await;
    assert!(failure.has_child("not-authorized", NS_SASL), "replayed counter: {failure:?}");
    // Bound to the mechanism it was issued for.
    let (_conn, failure) = fast_login(&server, "HT-SHA-256-NONE", &token, &counted(5), "").await;
    assert_eq!(failure.name(), "failure", "{failure:?}");
    let (_conn, failure) = fast_login(&server, "HT-SHA-256-EXPR", "guessed", &counted(6), "").await;
    assert_eq!(failure.name(), "failure", "{failure:?}");

    // Tokens survive a restart (the key file and the rows persist).
    server.restart().await;
    let (_conn, success) = fast_login(&server, "HT-SHA-256-EXPR", &token, &counted(7), "").await;
    assert_eq!(success.name(), "success", "{success:?}");

    // Invalidation: the login succeeds, then the token is gone.
    let invalidate = format!("<fast xmlns='{NS_FAST}' count='8' invalidate='true'/>");
    let (_conn, success) = fast_login(&server, "HT-SHA-256-EXPR", &token, &invalidate, "").await;
    assert_eq!(success.name(), "success", "{success:?}");
    assert_eq!(issued_token(&success), None);
    let (_conn, failure) = fast_login(&server, "HT-SHA-256-EXPR", &token, &counted(9), "").await;
    assert!(failure.has_child("not-authorized", NS_SASL), "invalidated: {failure:?}");
}

#[tokio::test]
async fn fast_tokens_rotate_keeping_the_old_one_until_the_new_one_is_used() {
    let server = TestServer::start_with(|c| c.c2s.fast_token_rotation = 0).await;
    server.add_user("alice", "pw").await;
    let request = format!("<request-token xmlns='{NS_FAST}' mechanism='HT-SHA-256-NONE'/>");
    let (_conn, success) = sasl2_login(&server, &request).await;
    let first = issued_token(&success).expect("first token");

    // Due for rotation: the login with it brings a second token...
    let (_conn, success) = fast_login(&server, "HT-SHA-256-NONE", &first, "", "").await;
    assert_eq!(success.name(), "success", "{success:?}");
    let second = issued_token(&success).expect("rotated token");
    assert_ne!(second, first);
    // ...but the first one still works, in case the client never saw the second.
    let (_conn, success) = fast_login(&server, "HT-SHA-256-NONE", &first, "", "").await;
    assert_eq!(success.name(), "success", "{success:?}");
    let third = issued_token(&success).expect("rotated again");
    // An issued but unused token is replaced by the next one issued.
    let (_conn, failure) = fast_login(&server, "HT-SHA-256-NONE", &second, "", "").await;
    assert_eq!(failure.name(), "failure", "{failure:?}");
    // Using the newest retires the old one.
    let (_conn, success) = fast_login(&server, "HT-SHA-256-NONE", &third, "", "").await;
    assert_eq!(success.name(), "success", "{success:?}");
    let (_conn, failure) = fast_login(&server, "HT-SHA-256-NONE", &first, "", "").await;
    assert_eq!(failure.name(), "failure", "the old token is gone once the new one is used: {failure:?}");

    // A new password logs every token holder out.
    let jid = starling::auth::account_jid(&format!("alice@{HOST}"), &[HOST.to_owned()]).expect("jid");
    starling::auth::set_password(server.db(), &jid, "new pw").await.expect("password changed");
    let newest = issued_token(&success).expect("rotated");
    let (_conn, failure) = fast_login(&server, "HT-SHA-256-NONE", &newest, "", "").await;
    assert_eq!(failure.name(), "failure", "{failure:?}");
}

/// The XEP-0474 hash in the first challenge matches what this connection was offered
/// (SASL2 and legacy SASL each hash their own list), and would not match a list a
/// man in the middle stripped of its strongest mechanisms.
#[tokio::test]
async fn scram_downgrade_protection_hashes_the_offer_and_exposes_a_stripped_list() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let (mut conn, features) = tls_conn(&server).await;
    let offered = sasl2_mechanisms(&features);
    assert!(offered.contains(&"SCRAM-SHA-512-PLUS".to_owned()), "{offered:?}");
    let cb_types: Vec<String> = features
        .get_child("sasl-channel-binding", "urn:xmpp:sasl-cb:0")
        .map(|c| c.children().filter_map(|t| t.attr("type")).map(str::to_owned).collect())
        .unwrap_or_default();
    assert!(!cb_types.is_empty());
    let client = ScramClient::new(Hash::Sha1, "alice", "pw", None);
    conn.send(&format!(
        "<authenticate xmlns='{NS_SASL2}' mechanism='SCRAM-SHA-1'><initial-response>{}</initial-response></authenticate>",
        B64.encode(client.client_first())
    ))
    .await;
    let challenge = conn.recv().await;
    let server_first = String::from_utf8(B64.decode(challenge.text()).expect("b64")).expect("utf8");
    let sent = server_first.split(',').find_map(|a| a.strip_prefix("h=")).expect("an h attribute").to_owned();
    assert_eq!(sent, client.expected_downgrade_hash(&offered, &cb_types));
    let stripped: Vec<String> = offered.iter().filter(|m| m.starts_with("SCRAM-SHA-1")).cloned().collect();
    assert_ne!(sent, client.expected_downgrade_hash(&stripped, &cb_types), "a stripped list is detected");
    assert_ne!(sent, client.expected_downgrade_hash(&offered, &[]), "stripped channel bindings are detected");

    // Legacy SASL: the same attribute over its own list, and the exchange completes.
    let mut conn = Conn::tcp(server.addr()).await;
    conn.open().await;
    let features = conn.starttls().await;
    let legacy: Vec<String> =
        features.get_child("mechanisms", NS_SASL).map(|m| m.children().map(|c| c.text()).collect()).unwrap_or_default();
    let mut client = ScramClient::new(Hash::Sha512, "alice", "pw", None);
    conn.send(&format!(
        "<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-512'>{}</auth>",
        B64.encode(client.client_first())
    ))
    .await;
    let challenge = conn.recv().await;
    let server_first = String::from_utf8(B64.decode(challenge.text()).expect("b64")).expect("utf8");
    let sent = server_first.split(',').find_map(|a| a.strip_prefix("h=")).expect("an h attribute");
    assert_eq!(sent, client.expected_downgrade_hash(&legacy, &cb_types));
    let last = client.client_final(&server_first).expect("client-final");
    conn.send(&format!("<response xmlns='{NS_SASL}'>{}</response>", B64.encode(last))).await;
    let success = conn.recv().await;
    assert_eq!(success.name(), "success", "SCRAM-SHA-512 works: {success:?}");
}

/// XEP-0480: an account imported with SCRAM-SHA-1 keys only gains SHA-256 and SHA-512
/// keys through upgrade tasks at its next SASL2 login; only then are those mechanisms
/// offered again, and they work with the password.
#[tokio::test]
async fn a_sha1_only_account_gains_sha256_and_sha512_keys_through_upgrade_tasks() {
    let mut server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server
        .db()
        .run(|c| {
            use diesel::RunQueryDsl;
            diesel::sql_query("DELETE FROM account_credentials WHERE mechanism <> 'SCRAM-SHA-1'").execute(c)
        })
        .await
        .expect("keys removed");
    server.restart().await;
    let (mut conn, features) = tls_conn(&server).await;
    let offered = sasl2_mechanisms(&features);
    assert!(offered.iter().all(|m| m.starts_with("SCRAM-SHA-1") || m == "PLAIN"), "{offered:?}");
    let upgrades: Vec<String> = features
        .get_child("authentication", NS_SASL2)
        .map(|a| a.children().filter(|c| c.is("upgrade", "urn:xmpp:sasl:upgrade:0")).map(|c| c.text()).collect())
        .unwrap_or_default();
    assert_eq!(upgrades, ["UPGR-SCRAM-SHA-256", "UPGR-SCRAM-SHA-512"]);

    let mut client = ScramClient::new(Hash::Sha1, "alice", "pw", None);
    conn.send(&format!(
        "<authenticate xmlns='{NS_SASL2}' mechanism='SCRAM-SHA-1'><initial-response>{}</initial-response>\
         <upgrade xmlns='urn:xmpp:sasl:upgrade:0'>UPGR-SCRAM-SHA-256</upgrade>\
         <upgrade xmlns='urn:xmpp:sasl:upgrade:0'>UPGR-SCRAM-SHA-512</upgrade></authenticate>",
        B64.encode(client.client_first())
    ))
    .await;
    let challenge = conn.recv().await;
    let server_first = String::from_utf8(B64.decode(challenge.text()).expect("b64")).expect("utf8");
    let last = client.client_final(&server_first).expect("client-final");
    conn.send(&format!("<response xmlns='{NS_SASL2}'>{}</response>", B64.encode(last))).await;
    for (task, hash) in [("UPGR-SCRAM-SHA-256", Hash::Sha256), ("UPGR-SCRAM-SHA-512", Hash::Sha512)] {
        let ask = conn.recv().await;
        assert_eq!(ask.name(), "continue", "{ask:?}");
        let tasks: Vec<String> =
            ask.get_child("tasks", NS_SASL2).map(|t| t.children().map(|c| c.text()).collect()).unwrap_or_default();
        assert_eq!(tasks, [task]);
        if let Some(data) = ask.get_child("additional-data", NS_SASL2) {
            let server_final = String::from_utf8(B64.decode(data.text()).expect("b64")).expect("utf8");
            assert!(client.verify_server_final(&server_final), "SCRAM's final message comes with the first task");
        }
        conn.send(&format!("<next xmlns='{NS_SASL2}' task='{task}'/>")).await;
        let data = conn.recv().await;
        let salt = data.get_child("salt", "urn:xmpp:scram-upgrade:0").expect("salt");
        let iterations: u32 = salt.attr("iterations").and_then(|i| i.parse().ok()).expect("iterations");
        let salted = common::scram::salted(hash, "pw", &B64.decode(salt.text().trim()).expect("b64"), iterations);
        conn.send(&format!(
            "<task-data xmlns='{NS_SASL2}'><hash xmlns='urn:xmpp:scram-upgrade:0'>{}</hash></task-data>",
            B64.encode(salted)
        ))
        .await;
    }
    let success = conn.recv().await;
    assert_eq!(success.name(), "success", "{success:?}");

    let (_, features) = tls_conn(&server).await;
    let offered = sasl2_mechanisms(&features);
    assert!(
        offered.contains(&"SCRAM-SHA-256".to_owned()) && offered.contains(&"SCRAM-SHA-512".to_owned()),
        "{offered:?}"
    );
    for (mechanism, hash) in [("SCRAM-SHA-256", Hash::Sha256), ("SCRAM-SHA-512", Hash::Sha512)] {
        let (mut conn, _) = tls_conn(&server).await;
        let success = authenticate(&mut conn, mechanism, ScramClient::new(hash, "alice", "pw", None)).await;
        assert_eq!(success.name(), "success", "{mechanism} with the upgraded keys: {success:?}");
    }
}

/// XEP-0478: the stanza size limit and idle time are announced before and after
/// authentication, and a stanza over the announced size ends the stream.
#[tokio::test]
async fn stream_limits_are_announced_and_enforced() {
    let server = TestServer::start_with(|c| {
        c.limits.max_stanza_bytes = 10_000;
        c.c2s.idle_timeout = 840;
    })
    .await;
    server.add_user("alice", "pw").await;
    let limits = |features: &Element| {
        let limits = features.get_child("limits", "urn:xmpp:stream-limits:0").expect("limits");
        let value = |name| limits.get_child(name, "urn:xmpp:stream-limits:0").map(|v| v.text());
        (value("max-bytes"), value("idle-seconds"))
    };
    let expected = (Some("10000".to_owned()), Some("840".to_owned()));
    let (_, features) = tls_conn(&server).await;
    assert_eq!(limits(&features), expected);
    let (mut conn, _) = sasl2_login(&server, "").await;
    let features = conn.recv().await;
    assert_eq!(limits(&features), expected, "after authentication: {features:?}");
    conn.bind(Some("big")).await.expect("bound");
    let body = "x".repeat(10_001);
    conn.send(&format!("<message to='alice@{HOST}'><body>{body}</body></message>")).await;
    assert_eq!(conn.stream_error().await.as_deref(), Some("policy-violation"));
}

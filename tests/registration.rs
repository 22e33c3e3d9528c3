//! XEP-0077 In-Band Registration over real sockets: closed by default, open and
//! invite-token hosts, only over TLS, the per-IP rate limit, `conflict` and
//! `not-acceptable`, password change and account removal by the logged-in user (which
//! leaves no rows in the database).

mod common;

use common::{Client, Conn, TestServer};
use diesel::RunQueryDsl;
use minidom::Element;

const NS_REGISTER: &str = "jabber:iq:register";
const FEATURE: &str = "http://jabber.org/features/iq-register";

async fn server(settings: &str) -> TestServer {
    let value: toml::Value = toml::from_str(settings).expect("register settings");
    TestServer::start_with(move |c| {
        c.modules.settings.insert("register".into(), value);
    })
    .await
}

/// A stream after STARTTLS, and the features offered on it.
async fn secured(server: &TestServer) -> (Conn, Element) {
    let mut conn = Conn::tcp(server.addr()).await;
    conn.open().await;
    let features = conn.starttls().await;
    (conn, features)
}

fn offers_registration(features: &Element) -> bool {
    features.get_child("register", FEATURE).is_some()
}

async fn iq(conn: &mut Conn, xml: &str) -> Element {
    conn.send(xml).await;
    conn.recv().await
}

fn register_request(user: &str, password: &str) -> String {
    format!(
        "<iq type='set' id='reg'><query xmlns='{NS_REGISTER}'><username>{user}</username><password>{password}</password></query></iq>"
    )
}

fn form_request(user: &str, password: &str, token: &str) -> String {
    format!(
        "<iq type='set' id='reg'><query xmlns='{NS_REGISTER}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>{NS_REGISTER}</value></field>\
         <field var='username'><value>{user}</value></field>\
         <field var='password'><value>{password}</value></field>\
         <field var='token'><value>{token}</value></field></x></query></iq>"
    )
}

/// The defined condition of an error reply; "" for a result.
fn condition(reply: &Element) -> String {
    match reply.get_child("error", "jabber:client") {
        Some(error) => error.children().map(|c| c.name().to_owned()).find(|n| n != "text").unwrap_or_default(),
        None => {
            assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
            String::new()
        }
    }
}

async fn register(server: &TestServer, user: &str, password: &str) -> String {
    let (mut conn, _) = secured(server).await;
    condition(&iq(&mut conn, &register_request(user, password)).await)
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn rows_of(server: &TestServer, table: &str, user: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE username = '{user}'");
    let db = server.server.as_ref().expect("running").context.db().clone();
    db.run(move |c| diesel::sql_query(sql).get_result::<Count>(c)).await.expect("count").n
}

#[tokio::test]
async fn registration_is_closed_by_default() {
    let server = TestServer::start().await;
    let (mut conn, features) = secured(&server).await;
    assert!(!offers_registration(&features), "{features:?}");
    let fields = iq(&mut conn, &format!("<iq type='get' id='f'><query xmlns='{NS_REGISTER}'/></iq>")).await;
    assert_eq!(condition(&fields), "service-unavailable");
    assert_eq!(condition(&iq(&mut conn, &register_request("mallory", "long enough")).await), "service-unavailable");
    assert!(!server.can_log_in("mallory", "long enough").await);
}

#[tokio::test]
async fn open_registration_creates_an_account_that_logs_in() {
    let server = server("mode = 'open'").await;
    let (mut conn, features) = secured(&server).await;
    assert!(offers_registration(&features), "{features:?}");
    let fields = iq(&mut conn, &format!("<iq type='get' id='f'><query xmlns='{NS_REGISTER}'/></iq>")).await;
    let query = fields.get_child("query", NS_REGISTER).expect("fields");
    assert!(query.get_child("username", NS_REGISTER).is_some() && query.get_child("password", NS_REGISTER).is_some());
    let form = query.get_child("x", "jabber:x:data").expect("a data form");
    let vars: Vec<_> = form.children().filter_map(|f| f.attr("var")).collect();
    assert_eq!(vars, ["FORM_TYPE", "username", "password"]);

    assert_eq!(condition(&iq(&mut conn, &register_request("Juliet", "wherefore art")).await), "");
    // XEP-0077 §3.1: the client goes on to authenticate on the same stream.
    conn.auth("juliet", "wherefore art").await.expect("the new account logs in");

    assert_eq!(register(&server, "juliet", "another one").await, "conflict", "a taken name");
    assert_eq!(register(&server, "a@b", "long enough").await, "not-acceptable", "a bad username");
    assert_eq!(register(&server, "", "long enough").await, "not-acceptable", "no username");
    assert_eq!(register(&server, "romeo", "short").await, "not-acceptable", "a short password");
    assert!(!server.can_log_in("romeo", "short").await);
}

#[tokio::test]
async fn registration_needs_tls() {
    let server = server("mode = 'open'").await;
    let mut conn = Conn::tcp(server.addr()).await;
    let features = conn.open().await;
    assert!(!offers_registration(&features), "offered before TLS: {features:?}");
    conn.send(&register_request("eve", "long enough")).await;
    assert_eq!(conn.stream_error().await.as_deref(), Some("not-authorized"));
    assert!(!server.can_log_in("eve", "long enough").await);
}

#[tokio::test]
async fn invite_tokens_are_required_single_use_and_expire() {
    let server = server("mode = 'closed'\n[hosts.localhost]\nmode = 'invite-token'").await;
    let db = server.server.as_ref().expect("running").context.db().clone();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let token = db
        .run(move |c| starling_mod_register::store::issue(c, "localhost", 1, now, now + 3_600_000))
        .await
        .expect("token");
    let expired = db
        .run(move |c| starling_mod_register::store::issue(c, "localhost", 1, now - 10, now - 1))
        .await
        .expect("token");

    let (mut conn, features) = secured(&server).await;
    assert!(offers_registration(&features));
    let fields = iq(&mut conn, &format!("<iq type='get' id='f'><query xmlns='{NS_REGISTER}'/></iq>")).await;
    let form = fields.get_child("query", NS_REGISTER).and_then(|q| q.get_child("x", "jabber:x:data")).expect("form");
    assert!(form.children().any(|f| f.attr("var") == Some("token")), "{form:?}");

    assert_eq!(condition(&iq(&mut conn, &register_request("nick", "long enough")).await), "not-acceptable");
    assert_eq!(condition(&iq(&mut conn, &form_request("nick", "long enough", "guessed")).await), "not-acceptable");
    assert_eq!(condition(&iq(&mut conn, &form_request("nick", "long enough", &expired)).await), "not-acceptable");
    assert_eq!(condition(&iq(&mut conn, &form_request("nick", "long enough", &token)).await), "");
    assert_eq!(
        condition(&iq(&mut conn, &form_request("nora", "long enough", &token)).await),
        "not-acceptable",
        "a token is single-use by default"
    );
    assert!(server.can_log_in("nick", "long enough").await);
    assert!(!server.can_log_in("nora", "long enough").await);
}

#[tokio::test]
async fn a_taken_name_does_not_spend_the_token() {
    let server = server("mode = 'invite-token'").await;
    server.add_user("taken", "pw").await;
    let db = server.server.as_ref().expect("running").context.db().clone();
    let token = db.run(|c| starling_mod_register::store::issue(c, "localhost", 1, 0, i64::MAX)).await.expect("token");
    let (mut conn, _) = secured(&server).await;
    assert_eq!(condition(&iq(&mut conn, &form_request("taken", "long enough", &token)).await), "conflict");
    assert_eq!(condition(&iq(&mut conn, &form_request("fresh", "long enough", &token)).await), "");
}

#[tokio::test]
async fn registrations_per_ip_are_limited() {
    let server = server("mode = 'open'\nregistrations_per_ip_per_hour = 2").await;
    assert_eq!(register(&server, "one", "long enough").await, "");
    assert_eq!(register(&server, "two", "long enough").await, "");
    assert_eq!(register(&server, "three", "long enough").await, "resource-constraint");
    assert!(!server.can_log_in("three", "long enough").await);
}

#[tokio::test]
async fn a_user_changes_the_password_and_removes_the_account() {
    let server = server("mode = 'open'").await;
    assert_eq!(register(&server, "bob", "first password").await, "");
    let mut bob = Client::login(server.addr(), "bob", "first password", Some("phone")).await;

    let (info, _) = bob.iq(&format!("<iq type='get' id='{{id}}'><query xmlns='{NS_REGISTER}'/></iq>")).await;
    let query = info.get_child("query", NS_REGISTER).expect("query");
    assert!(query.get_child("registered", NS_REGISTER).is_some(), "{info:?}");
    assert_eq!(query.get_child("username", NS_REGISTER).map(|u| u.text()).as_deref(), Some("bob"));

    let change = |user: &str, password: &str| {
        format!(
            "<iq type='set' id='{{id}}' to='localhost'><query xmlns='{NS_REGISTER}'><username>{user}</username><password>{password}</password></query></iq>"
        )
    };
    let (other, _) = bob.iq(&change("alice", "second password")).await;
    assert_eq!(condition(&other), "not-allowed", "only one's own password");
    let (short, _) = bob.iq(&change("bob", "2short")).await;
    assert_eq!(condition(&short), "not-acceptable");
    let (changed, _) = bob.iq(&change("bob", "second password")).await;
    assert_eq!(condition(&changed), "");
    assert!(!server.can_log_in("bob", "first password").await);
    assert!(server.can_log_in("bob", "second password").await);

    bob.iq("<iq type='set' id='{id}'><query xmlns='jabber:iq:roster'><item jid='carol@localhost'/></query></iq>").await;
    assert!(rows_of(&server, "roster_items", "bob").await > 0);
    let mut other_session = Client::login(server.addr(), "bob", "second password", Some("laptop")).await;
    other_session.sync().await;

    bob.send(&format!("<iq type='set' id='unreg'><query xmlns='{NS_REGISTER}'><remove/></query></iq>")).await;
    let answer = loop {
        let stanza = bob.recv().await;
        if stanza.attr("id") == Some("unreg") {
            break stanza;
        }
    };
    assert_eq!(condition(&answer), "", "the removal is answered before the stream ends");
    assert_eq!(bob.conn.stream_error().await.as_deref(), Some("not-authorized"));
    assert_eq!(other_session.conn.stream_error().await.as_deref(), Some("not-authorized"));
    for table in ["accounts", "account_credentials", "roster_items", "roster_versions"] {
        assert_eq!(rows_of(&server, table, "bob").await, 0, "{table} still has bob's rows");
    }
    assert!(!server.can_log_in("bob", "second password").await);
}

/// With `new_accounts_contacts_only_hours`, an account registered in-band may message
/// only its contacts: whoever wrote to it first or approved its subscription request.
/// Admin-made accounts are not restricted, and the restriction survives a restart.
#[tokio::test]
async fn new_accounts_may_only_message_their_contacts_at_first() {
    let mut server = server("mode = \"open\"\nnew_accounts_contacts_only_hours = 24").await;
    for user in ["alice", "bob", "carol"] {
        server.add_user(user, "pw").await;
    }
    assert_eq!(register(&server, "newbie", "long enough").await, "");
    let mut newbie = Client::login(server.addr(), "newbie", "long enough", Some("phone")).await;
    let mut bob = server.login("bob", "desk").await;
    let mut alice = server.login("alice", "desk").await;
    let mut carol = server.login("carol", "desk").await;
    // Available, so that the subscription request below reaches her.
    carol.presence(0).await;

    newbie.send("<message to='bob@localhost/desk' type='chat' id='spam'><body>buy now</body></message>").await;
    let refusal = newbie.recv_message().await;
    assert_eq!(condition(&refusal), "policy-violation", "{refusal:?}");
    assert!(bob.sync().await.iter().all(|s| s.name() != "message"), "bob got nothing");

    // Alice writes first: newbie may answer her.
    alice.send("<message to='newbie@localhost/phone' type='chat'><body>welcome!</body></message>").await;
    newbie.recv_message().await;
    newbie.send("<message to='alice@localhost/desk' type='chat' id='r'><body>thanks</body></message>").await;
    assert_eq!(
        alice.recv_message().await.get_child("body", "jabber:client").map(|b| b.text()).as_deref(),
        Some("thanks")
    );

    // Carol approves newbie's subscription request: she is a contact now.
    newbie.presence(0).await;
    newbie.send("<presence to='carol@localhost' type='subscribe'/>").await;
    let request = loop {
        let stanza = carol.recv().await;
        if stanza.name() == "presence" && stanza.attr("type") == Some("subscribe") {
            break stanza;
        }
    };
    assert_eq!(request.attr("from"), Some("newbie@localhost"));
    carol.send("<presence to='newbie@localhost' type='subscribed'/>").await;
    while newbie.recv().await.attr("type") != Some("subscribed") {}
    newbie.send("<message to='carol@localhost/desk' type='chat'><body>hi carol</body></message>").await;
    assert_eq!(
        carol.recv_message().await.get_child("body", "jabber:client").map(|b| b.text()).as_deref(),
        Some("hi carol")
    );

    // An account an admin made is not restricted.
    alice.send("<message to='bob@localhost/desk' type='chat'><body>hi bob</body></message>").await;
    assert_eq!(
        bob.recv_message().await.get_child("body", "jabber:client").map(|b| b.text()).as_deref(),
        Some("hi bob")
    );

    // Restarted: still restricted towards strangers, contacts from the roster kept.
    drop((newbie, bob, alice, carol));
    server.restart().await;
    let mut newbie = Client::login(server.addr(), "newbie", "long enough", Some("phone")).await;
    newbie.send("<message to='bob@localhost' type='chat'><body>buy now</body></message>").await;
    assert_eq!(condition(&newbie.recv_message().await), "policy-violation");
    let mut carol = server.login("carol", "desk").await;
    carol.presence(0).await;
    newbie.send("<message to='carol@localhost/desk' type='chat'><body>still me</body></message>").await;
    assert_eq!(
        carol.recv_message().await.get_child("body", "jabber:client").map(|b| b.text()).as_deref(),
        Some("still me")
    );
}

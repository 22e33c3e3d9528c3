//! Invitations over real sockets: XEP-0401 ad-hoc commands create invites, XEP-0445
//! `<preauth/>` opens in-band registration on a closed host, XEP-0379 roster invites
//! make the inviter and the invitee subscribed both ways (new and existing accounts),
//! spent, expired and unknown tokens are refused, and users may only invite when
//! allowed.

mod common;

use common::{Client, Conn, HOST, TestServer};
use minidom::Element;

const NS_REGISTER: &str = "jabber:iq:register";
const COMMANDS: &str = "http://jabber.org/protocol/commands";
const INVITE: &str = "urn:xmpp:invite#invite";
const CREATE_ACCOUNT: &str = "urn:xmpp:invite#create-account";

async fn server(settings: &str) -> TestServer {
    let value: toml::Value = toml::from_str(settings).expect("register settings");
    let server = TestServer::start_with(move |c| {
        c.server.admins = vec!["admin@localhost".into()];
        c.modules.settings.insert("register".into(), value);
    })
    .await;
    server.add_user("admin", "pw").await;
    server.add_user("bob", "pw").await;
    server
}

async fn secured(server: &TestServer) -> Conn {
    let mut conn = Conn::tcp(server.addr()).await;
    conn.open().await;
    conn.starttls().await;
    conn
}

async fn iq(conn: &mut Conn, xml: &str) -> Element {
    conn.send(xml).await;
    conn.recv().await
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

fn preauth(token: &str) -> String {
    format!("<iq type='set' id='pa'><preauth xmlns='urn:xmpp:pars:0' token='{token}'/></iq>")
}

fn register_request(user: &str, password: &str) -> String {
    format!(
        "<iq type='set' id='reg'><query xmlns='{NS_REGISTER}'><username>{user}</username><password>{password}</password></query></iq>"
    )
}

/// Registers `user` after presenting `token` with `<preauth/>`: the two conditions.
async fn register_with(server: &TestServer, token: &str, user: &str) -> (String, String) {
    let mut conn = secured(server).await;
    let pre = condition(&iq(&mut conn, &preauth(token)).await);
    let reg = condition(&iq(&mut conn, &register_request(user, "long enough")).await);
    (pre, reg)
}

/// Runs a command and returns the fields of its result form.
async fn execute(client: &mut Client, node: &str) -> Result<Vec<(String, String)>, String> {
    let (reply, _) = client
        .iq(&format!("<iq type='set' id='{{id}}' to='{HOST}'><command xmlns='{COMMANDS}' node='{node}'/></iq>"))
        .await;
    if reply.attr("type") == Some("error") {
        return Err(condition(&reply));
    }
    let command = reply.get_child("command", COMMANDS).expect("command");
    assert_eq!(command.attr("status"), Some("completed"), "{reply:?}");
    let form = command.get_child("x", "jabber:x:data").expect("result form");
    Ok(form
        .children()
        .filter(|f| f.name() == "field")
        .map(|f| {
            let value = f.children().find(|v| v.name() == "value").map(|v| v.text()).unwrap_or_default();
            (f.attr("var").unwrap_or_default().to_owned(), value)
        })
        .collect())
}

fn value<'a>(fields: &'a [(String, String)], var: &str) -> &'a str {
    fields.iter().find(|(v, _)| v == var).map(|(_, value)| value.as_str()).unwrap_or_else(|| panic!("no {var}"))
}

/// The token in an invite URI.
fn token_of(uri: &str) -> String {
    uri.split(';').find_map(|p| p.strip_prefix("preauth=")).expect("preauth in the URI").to_owned()
}

/// `contact`'s subscription in `client`'s roster, if it is there.
async fn subscription(client: &mut Client, contact: &str) -> Option<String> {
    let (reply, _) = client.iq("<iq type='get' id='{id}'><query xmlns='jabber:iq:roster'/></iq>").await;
    let query = reply.get_child("query", "jabber:iq:roster").expect("roster");
    query.children().find(|i| i.attr("jid") == Some(contact)).and_then(|i| i.attr("subscription").map(str::to_owned))
}

#[tokio::test]
async fn an_admin_account_invite_opens_registration_on_a_closed_host_once() {
    let server = server("mode = 'closed'").await;
    let mut admin = server.login("admin", "laptop").await;
    let fields = execute(&mut admin, CREATE_ACCOUNT).await.expect("admins may create account invites");
    let uri = value(&fields, "uri");
    assert!(uri.starts_with("xmpp:localhost?register;preauth="), "{uri}");
    assert!(value(&fields, "expire").ends_with('Z'), "{fields:?}");
    let token = token_of(uri);

    // Without the key the closed host refuses.
    let mut conn = secured(&server).await;
    assert_eq!(condition(&iq(&mut conn, &register_request("juliet", "long enough")).await), "service-unavailable");

    assert_eq!(register_with(&server, &token, "juliet").await, (String::new(), String::new()));
    let mut conn = secured(&server).await;
    conn.auth("juliet", "long enough").await.expect("the invited account logs in");

    // Single use: the spent token is unknown now.
    assert_eq!(register_with(&server, &token, "nora").await.0, "item-not-found");
    assert_eq!(register_with(&server, "0123456789abcdef0123456789abcdef", "nora").await.0, "item-not-found");
}

#[tokio::test]
async fn a_roster_invite_subscribes_inviter_and_new_user_both_ways() {
    let server = server("users_may_invite = true").await;
    let mut bob = server.login("bob", "phone").await;
    let fields = execute(&mut bob, INVITE).await.expect("users may invite here");
    let uri = value(&fields, "uri");
    assert!(uri.starts_with("xmpp:bob@localhost?roster;preauth=") && uri.ends_with(";ibr=y"), "{uri}");

    assert_eq!(register_with(&server, &token_of(uri), "juliet").await, (String::new(), String::new()));
    let mut juliet = Client::login(server.addr(), "juliet", "long enough", Some("web")).await;
    assert_eq!(subscription(&mut juliet, "bob@localhost").await.as_deref(), Some("both"));
    assert_eq!(subscription(&mut bob, "juliet@localhost").await.as_deref(), Some("both"));
}

#[tokio::test]
async fn an_existing_user_presenting_a_roster_invite_becomes_a_contact() {
    let server = server("users_may_invite = true").await;
    server.add_user("alice", "pw").await;
    let mut bob = server.login("bob", "phone").await;
    let token = token_of(value(&execute(&mut bob, INVITE).await.expect("invite"), "uri"));
    let mut alice = server.login("alice", "laptop").await;
    let (reply, _) =
        alice.iq(&format!("<iq type='set' id='{{id}}'><preauth xmlns='urn:xmpp:pars:0' token='{token}'/></iq>")).await;
    assert_eq!(condition(&reply), "");
    assert_eq!(subscription(&mut alice, "bob@localhost").await.as_deref(), Some("both"));
    assert_eq!(subscription(&mut bob, "alice@localhost").await.as_deref(), Some("both"));
    let (again, _) =
        alice.iq(&format!("<iq type='set' id='{{id}}'><preauth xmlns='urn:xmpp:pars:0' token='{token}'/></iq>")).await;
    assert_eq!(condition(&again), "item-not-found", "spent");
}

#[tokio::test]
async fn users_may_not_invite_unless_allowed() {
    let server = server("mode = 'closed'").await;
    let mut bob = server.login("bob", "phone").await;
    assert_eq!(execute(&mut bob, INVITE).await, Err("forbidden".to_owned()));
    assert!(execute(&mut bob, CREATE_ACCOUNT).await.is_err(), "admin-only");
    let mut admin = server.login("admin", "laptop").await;
    let uri = execute(&mut admin, INVITE).await.expect("admins always may").into_iter().find(|(v, _)| v == "uri");
    assert!(uri.is_some_and(|(_, uri)| uri.starts_with("xmpp:admin@localhost?roster;preauth=")));
}

#[tokio::test]
async fn an_expired_invite_is_refused() {
    let server = server("mode = 'closed'").await;
    let db = server.server.as_ref().expect("running").context.db().clone();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let expired = db
        .run(move |c| starling_mod_register::store::issue(c, "localhost", 5, now - 10, now - 1))
        .await
        .expect("token");
    let (pre, reg) = register_with(&server, &expired, "late").await;
    assert_eq!((pre.as_str(), reg.as_str()), ("item-not-found", "service-unavailable"));
    let mut conn = secured(&server).await;
    assert!(conn.auth("late", "long enough").await.is_err());
}

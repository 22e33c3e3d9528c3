//! Invitations over real sockets: XEP-0401 ad-hoc commands create invites, XEP-0445
//! `<preauth/>` opens in-band registration on a closed host, XEP-0379 roster invites
//! make the inviter and the invitee subscribed both ways (new and existing accounts),
//! spent, expired and unknown tokens are refused, and users may only invite when
//! allowed. The landing page shows the invite (and renders in headless Chromium) and
//! its form creates the account.

mod common;

use common::{Client, Conn, HOST, TestServer, http};
use hyper::Request;
use minidom::Element;

const NS_REGISTER: &str = "jabber:iq:register";
const COMMANDS: &str = "http://jabber.org/protocol/commands";
const INVITE: &str = "urn:xmpp:invite#invite";
const CREATE_ACCOUNT: &str = "urn:xmpp:invite#create-account";

async fn server(settings: &str) -> TestServer {
    let value: toml::Value = toml::from_str(settings).expect("register settings");
    let server = TestServer::start_with(move |c| {
        c.server.admins = vec!["admin@localhost".into()];
        c.http.listen = vec!["127.0.0.1:0".parse().expect("addr")];
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

    // Without the key the closed host refuses; it announces the invite path only.
    let mut conn = Conn::tcp(server.addr()).await;
    conn.open().await;
    let features = conn.starttls().await;
    assert!(features.get_child("register", "urn:xmpp:ibr-token:0").is_some(), "{features:?}");
    assert!(features.get_child("register", "urn:xmpp:invite").is_some(), "{features:?}");
    assert!(features.get_child("register", "http://jabber.org/features/iq-register").is_none(), "{features:?}");
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
    let (items, _) = bob
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='{HOST}'><query xmlns='http://jabber.org/protocol/disco#items' node='{COMMANDS}'/></iq>"
        ))
        .await;
    assert!(!format!("{items:?}").contains(INVITE), "offered: {items:?}");
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

/// The path of a landing URL.
fn path_of(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("http URL");
    rest[rest.find('/').expect("path")..].to_owned()
}

async fn post_form(server: &TestServer, path: &str, body: &str) -> http::Reply {
    let request = Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("content-length", body.len())
        .body(axum::body::Body::from(body.to_owned()))
        .expect("request");
    http::request(server.http_addr(), request).await
}

#[tokio::test]
async fn the_landing_page_shows_the_invite_and_its_form_creates_the_account() {
    let server = server("users_may_invite = true").await;
    let mut bob = server.login("bob", "phone").await;
    let fields = execute(&mut bob, INVITE).await.expect("invite");
    let (uri, landing) = (value(&fields, "uri").to_owned(), value(&fields, "landing-url").to_owned());
    assert_eq!(landing, format!("http://localhost:{}/invite/{}", server.http_addr().port(), token_of(&uri)));

    let page = http::get(server.http_addr(), &path_of(&landing), &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").starts_with("text/html"), "{}", page.header("content-type"));
    let html = page.text();
    assert!(html.contains(&format!("href=\"{uri}\"")), "{html}");
    assert!(html.contains("bob@localhost invites you"), "{html}");
    assert!(html.contains("conversations.im") && html.contains("<form method=\"post\""), "{html}");

    let short = post_form(&server, &path_of(&landing), "username=juliet&password=short").await;
    assert_eq!(short.status, 200);
    assert!(short.text().contains("at least 8 characters"), "{}", short.text());
    let created = post_form(&server, &path_of(&landing), "username=Juliet&password=long+enough").await;
    assert_eq!(created.status, 200);
    assert!(created.text().contains("juliet@localhost"), "{}", created.text());

    let mut juliet = Client::login(server.addr(), "juliet", "long enough", Some("web")).await;
    assert_eq!(subscription(&mut juliet, "bob@localhost").await.as_deref(), Some("both"));
    assert_eq!(subscription(&mut bob, "juliet@localhost").await.as_deref(), Some("both"));

    // Spent: the page says so, and the form creates nothing.
    assert_eq!(http::get(server.http_addr(), &path_of(&landing), &[]).await.status, 404);
    assert_eq!(post_form(&server, &path_of(&landing), "username=nora&password=long+enough").await.status, 404);
    assert_eq!(http::get(server.http_addr(), "/invite/%3Cscript%3E", &[]).await.status, 404);
}

#[tokio::test]
async fn the_landing_page_keeps_the_per_address_registration_limit() {
    let server = server("users_may_invite = true\nregistrations_per_ip_per_hour = 1").await;
    let mut bob = server.login("bob", "phone").await;
    let mut landing = Vec::new();
    for _ in 0..2 {
        let fields = execute(&mut bob, INVITE).await.expect("invite");
        landing.push(path_of(value(&fields, "landing-url")));
    }
    let created = post_form(&server, &landing[0], "username=juliet&password=long+enough").await;
    assert!(created.text().contains("juliet@localhost"), "{}", created.text());
    let refused = post_form(&server, &landing[1], "username=romeo&password=long+enough").await;
    assert!(refused.text().contains("Too many accounts"), "{}", refused.text());
    assert!(!server.can_log_in("romeo", "long enough").await, "no account made");
    // The invite was not spent: it still shows.
    assert_eq!(http::get(server.http_addr(), &landing[1], &[]).await.status, 200);
}

/// Headless Chromium renders the landing page (screenshot in target/artefacts); under
/// CI a missing browser is a failure.
#[tokio::test]
async fn the_landing_page_renders_in_headless_chromium() {
    const CHROMIUM: &str = "/usr/bin/chromium";
    if !common::peers::installed(CHROMIUM) {
        return;
    }
    let server = server("mode = 'closed'").await;
    let mut admin = server.login("admin", "laptop").await;
    let fields = execute(&mut admin, INVITE).await.expect("invite");
    let landing = value(&fields, "landing-url").to_owned();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artefacts");
    std::fs::create_dir_all(&dir).expect("artefacts dir");
    let shot = dir.join("invite.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().expect("profile dir");
    let run = tokio::process::Command::new(CHROMIUM)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors", "--window-size=800,900"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&landing)
        .kill_on_drop(true)
        .output()
        .await
        .expect("chromium runs");
    assert!(run.status.success(), "chromium: {}", String::from_utf8_lossy(&run.stderr));
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());
}

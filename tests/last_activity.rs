//! XEP-0012 Last Activity over real sockets: a subscribed contact learns how long ago
//! an account logged out and its last status (0 while it is online), others are
//! refused, the server answers with its uptime, the logout survives a restart and goes
//! with the account.

mod common;

use common::{Client, HOST, TestServer};
use diesel::RunQueryDsl;
use minidom::Element;

const NS_LAST: &str = "jabber:iq:last";
const ROSTER: &str = "jabber:iq:roster";

async fn server() -> TestServer {
    let server = TestServer::start().await;
    for user in ["alice", "bob", "carol"] {
        server.add_user(user, "pw").await;
    }
    server
}

/// Waits for a stanza matching `wanted`, skipping others.
async fn expect(client: &mut Client, wanted: impl Fn(&Element) -> bool) -> Element {
    loop {
        let stanza = client.recv().await;
        if wanted(&stanza) {
            return stanza;
        }
    }
}

async fn last(client: &mut Client, to: &str) -> Element {
    let (reply, _) = client.iq(&format!("<iq type='get' id='{{id}}' to='{to}'><query xmlns='{NS_LAST}'/></iq>")).await;
    reply
}

/// (seconds, status) of a result.
fn seconds_and_status(reply: &Element) -> (u64, String) {
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let query = reply.get_child("query", NS_LAST).expect("query");
    (query.attr("seconds").and_then(|s| s.parse().ok()).expect("seconds"), query.text())
}

fn error_condition(reply: &Element) -> String {
    let error = reply.get_child("error", "jabber:client").unwrap_or_else(|| panic!("not an error: {reply:?}"));
    error.children().map(|c| c.name().to_owned()).find(|n| n != "text").unwrap_or_default()
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn rows_of(server: &TestServer, user: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) AS n FROM last_activity WHERE username = '{user}'");
    let db = server.server.as_ref().expect("running").context.db().clone();
    db.run(move |c| diesel::sql_query(sql).get_result::<Count>(c)).await.expect("count").n
}

#[tokio::test]
async fn subscribed_contacts_see_the_last_logout_and_others_are_refused() {
    let mut server = server().await;
    let mut bob = server.login("bob", "phone").await;
    // A resource that asked for the roster gets roster pushes (RFC 6121 §2.1.6).
    bob.iq(&format!("<iq type='get' id='{{id}}'><query xmlns='{ROSTER}'/></iq>")).await;
    bob.presence(0).await;
    let mut alice = server.login("alice", "laptop").await;
    let mut carol = server.login("carol", "desk").await;

    // Alice subscribes to Bob; Bob approves: his roster has her with 'from'.
    alice.send("<presence to='bob@localhost' type='subscribe'/>").await;
    expect(&mut bob, |s| s.name() == "presence" && s.attr("type") == Some("subscribe")).await;
    bob.send("<presence to='alice@localhost' type='subscribed'/>").await;
    expect(&mut bob, |s| {
        s.get_child("query", ROSTER)
            .and_then(|q| q.get_child("item", ROSTER))
            .is_some_and(|i| i.attr("subscription") == Some("from"))
    })
    .await;

    assert_eq!(seconds_and_status(&last(&mut alice, "bob@localhost").await), (0, String::new()), "online");
    assert_eq!(error_condition(&last(&mut carol, "bob@localhost").await), "forbidden");
    assert_eq!(error_condition(&last(&mut bob, "alice@localhost").await), "forbidden", "Alice did not approve Bob");

    bob.send("<presence type='unavailable'><status>Heading Home</status></presence>").await;
    bob.send("</stream:stream>").await;
    assert_eq!(bob.conn.stream_error().await, None, "a clean close");
    let (seconds, status) = seconds_and_status(&last(&mut alice, "bob@localhost").await);
    assert!(seconds < 3600, "{seconds}");
    assert_eq!(status, "Heading Home");
    assert_eq!(error_condition(&last(&mut carol, "bob@localhost").await), "forbidden");

    drop((alice, carol));
    server.restart().await;
    let mut alice = server.login("alice", "laptop").await;
    let (_, status) = seconds_and_status(&last(&mut alice, "bob@localhost").await);
    assert_eq!(status, "Heading Home", "stored across restarts");
    assert!(rows_of(&server, "bob").await > 0);

    let jid = starling::auth::account_jid("bob@localhost", &server.config.server.hosts).expect("jid");
    server.server.as_ref().expect("running").context.accounts().delete(&jid).await.expect("deleted");
    assert_eq!(rows_of(&server, "bob").await, 0, "the logout goes with the account");
}

#[tokio::test]
async fn the_server_answers_with_its_uptime() {
    let server = server().await;
    let mut alice = server.login("alice", "laptop").await;
    let (seconds, status) = seconds_and_status(&last(&mut alice, HOST).await);
    assert!(seconds < 3600, "{seconds}");
    assert_eq!(status, "");
    assert!(alice.server_features().await.iter().any(|f| f == NS_LAST));
}

#[tokio::test]
async fn an_account_that_never_logged_out_has_no_last_activity() {
    let server = server().await;
    let mut alice = server.login("alice", "laptop").await;
    assert_eq!(error_condition(&last(&mut alice, "alice@localhost").await), "item-not-found", "not available yet");
    alice.presence(0).await;
    assert_eq!(seconds_and_status(&last(&mut alice, "alice@localhost").await).0, 0, "online");
}

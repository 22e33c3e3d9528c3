//! What one user may not do to another's data (issue: reliability, security checks),
//! over real sockets, and how credentials rest in the database. Other checks live
//! with their features: unauthenticated stanzas (c2s_auth), `from` stamping
//! (c2s_routing) and S2S spoofing (s2s_bad_peers), archives (mam), PEP access models
//! (pep), members-only rooms (muc), admin commands (adhoc), the admin socket (cli),
//! upload signatures (upload).

mod common;

use std::collections::HashSet;

use common::{Client, TestServer};
use diesel::RunQueryDsl;
use minidom::Element;

const ROSTER: &str = "jabber:iq:roster";
const PRIVATE: &str = "jabber:iq:private";
const VCARD: &str = "vcard-temp";

fn is_error(reply: &Element) -> bool {
    reply.attr("type") == Some("error")
}

async fn two_users() -> (TestServer, Client, Client) {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let alice = server.login("alice", "a").await;
    let bob = server.login("bob", "b").await;
    (server, alice, bob)
}

#[tokio::test]
async fn another_accounts_roster_private_storage_and_vcard_are_out_of_reach() {
    let (_server, mut alice, mut bob) = two_users().await;
    let (stored, _) = bob
        .iq(&format!("<iq type='set' id='{{id}}'><query xmlns='{ROSTER}'><item jid='carol@example.net' name='Carol'/></query></iq>"))
        .await;
    assert!(!is_error(&stored));
    let (stored, _) = bob
        .iq(&format!("<iq type='set' id='{{id}}'><query xmlns='{PRIVATE}'><notes xmlns='urn:example:notes'>secret</notes></query></iq>"))
        .await;
    assert!(!is_error(&stored));
    let (stored, _) =
        bob.iq(&format!("<iq type='set' id='{{id}}'><vCard xmlns='{VCARD}'><FN>Bob</FN></vCard></iq>")).await;
    assert!(!is_error(&stored));

    // Alice aims each request at Bob's account.
    for request in [
        format!("<iq type='get' id='{{id}}' to='bob@localhost'><query xmlns='{ROSTER}'/></iq>"),
        format!(
            "<iq type='set' id='{{id}}' to='bob@localhost'><query xmlns='{ROSTER}'><item jid='mallory@example.net'/></query></iq>"
        ),
        format!(
            "<iq type='get' id='{{id}}' to='bob@localhost'><query xmlns='{PRIVATE}'><notes xmlns='urn:example:notes'/></query></iq>"
        ),
        format!(
            "<iq type='set' id='{{id}}' to='bob@localhost'><query xmlns='{PRIVATE}'><notes xmlns='urn:example:notes'>mine now</notes></query></iq>"
        ),
        format!("<iq type='set' id='{{id}}' to='bob@localhost'><vCard xmlns='{VCARD}'><FN>Not Bob</FN></vCard></iq>"),
    ] {
        let (reply, _) = alice.iq(&request).await;
        assert!(is_error(&reply), "{request} was answered {reply:?}");
    }

    // Bob's data is as he left it.
    let (roster, _) = bob.iq(&format!("<iq type='get' id='{{id}}'><query xmlns='{ROSTER}'/></iq>")).await;
    let jids: Vec<&str> =
        roster.get_child("query", ROSTER).expect("roster").children().filter_map(|i| i.attr("jid")).collect();
    assert_eq!(jids, ["carol@example.net"]);
    let (notes, _) = bob
        .iq(&format!(
            "<iq type='get' id='{{id}}'><query xmlns='{PRIVATE}'><notes xmlns='urn:example:notes'/></query></iq>"
        ))
        .await;
    let text =
        notes.get_child("query", PRIVATE).and_then(|q| q.get_child("notes", "urn:example:notes")).map(|n| n.text());
    assert_eq!(text.as_deref(), Some("secret"));
    let (card, _) =
        alice.iq(&format!("<iq type='get' id='{{id}}' to='bob@localhost'><vCard xmlns='{VCARD}'/></iq>")).await;
    let name = card.get_child("vCard", VCARD).and_then(|v| v.get_child("FN", VCARD)).map(|f| f.text());
    assert_eq!(name.as_deref(), Some("Bob"), "vCards are public to read, and only Bob writes his");
}

#[derive(diesel::QueryableByName)]
struct Credential {
    #[diesel(sql_type = diesel::sql_types::Text)]
    username: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    mechanism: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    salt: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    iterations: i32,
    #[diesel(sql_type = diesel::sql_types::Text)]
    stored_key: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    server_key: String,
}

#[tokio::test]
async fn credentials_are_salted_iterated_and_never_the_password() {
    let server = TestServer::start().await;
    let password = "correct horse battery staple";
    server.add_user("alice", password).await;
    server.add_user("bob", password).await;
    let db = server.db().clone();
    let rows: Vec<Credential> = db
        .run(|c| {
            diesel::sql_query(
                "SELECT username, mechanism, salt, iterations, stored_key, server_key FROM account_credentials",
            )
            .load(c)
        })
        .await
        .expect("credentials");
    assert!(rows.len() >= 4, "a SCRAM credential per hash for both accounts: {}", rows.len());
    let mut salts = HashSet::new();
    for row in &rows {
        assert!(row.iterations >= 4096, "{} {}: {} iterations", row.username, row.mechanism, row.iterations);
        for column in [&row.salt, &row.stored_key, &row.server_key] {
            assert!(!column.contains(password) && !column.contains("horse"), "the password is stored");
        }
        assert!(salts.insert(row.salt.clone()), "a salt is shared: the same password looks the same twice");
    }
    let keys: HashSet<&str> = rows.iter().map(|r| r.stored_key.as_str()).collect();
    assert_eq!(keys.len(), rows.len(), "one password gives different keys per account and hash");
}

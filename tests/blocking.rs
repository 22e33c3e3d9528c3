//! Blocking Command (XEP-0191) over real sockets.

mod common;

use common::TestServer;

const BLOCKING: &str = "urn:xmpp:blocking";

fn condition(stanza: &minidom::Element) -> Option<String> {
    let error = stanza.get_child("error", "jabber:client")?;
    error.children().find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas").map(|c| c.name().to_owned())
}

#[tokio::test]
async fn blocking_works_both_ways_and_survives_a_restart() {
    let mut server = TestServer::start().await;
    for user in ["alice", "bob", "carol"] {
        server.add_user(user, "pw").await;
    }
    let mut alice = server.login("alice", "a").await;
    let mut other = server.login("alice", "other").await;
    let mut bob = server.login("bob", "b").await;
    let (list, _) = other.iq(&format!("<iq type='get' id='{{id}}'><blocklist xmlns='{BLOCKING}'/></iq>")).await;
    assert_eq!(list.get_child("blocklist", BLOCKING).map(|l| l.children().count()), Some(0));

    let (reply, _) = alice
        .iq(&format!("<iq type='set' id='{{id}}'><block xmlns='{BLOCKING}'><item jid='bob@localhost'/></block></iq>"))
        .await;
    assert_eq!(reply.attr("type"), Some("result"));
    // The other resource that asked for the list gets a push.
    let push = other.recv().await;
    let item = push.get_child("block", BLOCKING).and_then(|b| b.children().next().cloned()).expect("push item");
    assert_eq!(item.attr("jid"), Some("bob@localhost"));

    // Bob's message is dropped; his IQ is answered service-unavailable.
    bob.send("<message to='alice@localhost/a' type='chat'><body>hello?</body></message>").await;
    let (iq, _) = bob.iq("<iq type='get' id='{id}' to='alice@localhost/a'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(condition(&iq).as_deref(), Some("service-unavailable"));
    assert!(
        alice.sync().await.iter().all(|s| s.attr("from") != Some("bob@localhost/b")),
        "alice got a stanza from bob"
    );

    // Alice's messages to Bob are refused with <blocked/>.
    alice.send("<message to='bob@localhost/b' type='chat' id='x'><body>hi</body></message>").await;
    let refusal = alice.recv_message().await;
    assert_eq!(condition(&refusal).as_deref(), Some("not-acceptable"));
    assert!(
        refusal.get_child("error", "jabber:client").is_some_and(|e| e.has_child("blocked", "urn:xmpp:blocking:errors"))
    );

    // Persisted: after a restart the block still holds.
    drop((alice, other, bob));
    server.restart().await;
    let mut alice = server.login("alice", "a").await;
    let mut bob = server.login("bob", "b").await;
    let mut carol = server.login("carol", "c").await;
    let (list, _) = alice.iq(&format!("<iq type='get' id='{{id}}'><blocklist xmlns='{BLOCKING}'/></iq>")).await;
    let items: Vec<_> = list
        .get_child("blocklist", BLOCKING)
        .expect("list")
        .children()
        .filter_map(|i| i.attr("jid").map(str::to_owned))
        .collect();
    assert_eq!(items, ["bob@localhost"]);
    bob.send("<message to='alice@localhost/a' type='chat'><body>again</body></message>").await;
    carol.send("<message to='alice@localhost/a' type='chat'><body>from carol</body></message>").await;
    let message = alice.recv_message().await;
    assert_eq!(message.attr("from"), Some("carol@localhost/c"), "only carol gets through");

    // Unblock everyone: Bob gets through again.
    let (reply, _) = alice.iq(&format!("<iq type='set' id='{{id}}'><unblock xmlns='{BLOCKING}'/></iq>")).await;
    assert_eq!(reply.attr("type"), Some("result"));
    bob.send("<message to='alice@localhost/a' type='chat'><body>finally</body></message>").await;
    assert_eq!(alice.recv_message().await.attr("from"), Some("bob@localhost/b"));
}

#[tokio::test]
async fn domains_can_be_blocked() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let mut alice = server.login("alice", "a").await;
    let mut bob = server.login("bob", "b").await;
    alice
        .iq(&format!("<iq type='set' id='{{id}}'><block xmlns='{BLOCKING}'><item jid='localhost'/></block></iq>"))
        .await;
    bob.send("<message to='alice@localhost/a' type='chat'><body>x</body></message>").await;
    bob.sync().await;
    assert!(alice.sync().await.iter().all(|s| s.name() != "message"));
}

/// XEP-0377: a report rides on a block; the block works as without it, the report is
/// kept for the administrators, and the feature is advertised.
#[tokio::test]
async fn a_spam_report_blocks_and_is_kept_for_the_admins() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("spammer", "pw").await;
    let mut alice = server.login("alice", "a").await;
    assert!(alice.server_features().await.iter().any(|f| f == "urn:xmpp:reporting:1"));
    let (reply, _) = alice
        .iq(&format!(
            "<iq type='set' id='{{id}}'><block xmlns='{BLOCKING}'><item jid='spammer@localhost'>\
             <report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='m-1'/>\
             <text xml:lang='en'>cheap watches</text></report></item></block></iq>"
        ))
        .await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let mut spammer = server.login("spammer", "s").await;
    spammer.send("<message to='alice@localhost/a' type='chat'><body>buy now</body></message>").await;
    assert!(alice.sync().await.iter().all(|s| s.name() != "message"), "the report also blocks");

    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        username: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        reported: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        reason: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        report_text: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        stanza_ids: String,
    }
    let rows: Vec<Row> = server
        .db()
        .run(|c| {
            use diesel::RunQueryDsl;
            diesel::sql_query("SELECT username, reported, reason, report_text, stanza_ids FROM blocking_reports")
                .load(c)
        })
        .await
        .expect("rows");
    assert_eq!(
        rows,
        [Row {
            username: "alice".into(),
            reported: "spammer@localhost".into(),
            reason: "urn:xmpp:reporting:spam".into(),
            report_text: "cheap watches".into(),
            stanza_ids: "alice@localhost m-1".into(),
        }]
    );

    // A report without a known reason is a bad request, and nothing is blocked.
    let (reply, _) = alice
        .iq(&format!(
            "<iq type='set' id='{{id}}'><block xmlns='{BLOCKING}'><item jid='other@localhost'>\
             <report xmlns='urn:xmpp:reporting:1' reason='because'/></item></block></iq>"
        ))
        .await;
    assert_eq!(condition(&reply).as_deref(), Some("bad-request"));
}

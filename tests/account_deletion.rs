//! Deleting an account deletes every row any module keeps for it (issue: "account
//! deletion leaves no rows", checked in the database).

mod common;

use common::TestServer;
use diesel::RunQueryDsl;

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
async fn deleting_an_account_leaves_no_rows() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let mut bob = server.login("bob", "b").await;
    bob.send("<iq type='set' id='r'><query xmlns='jabber:iq:roster'><item jid='alice@localhost'/></query></iq>").await;
    bob.send("<iq type='set' id='v'><vCard xmlns='vcard-temp'><FN>Bob</FN></vCard></iq>").await;
    bob.send("<iq type='set' id='bl'><block xmlns='urn:xmpp:blocking'><item jid='spam@example.net'/></block></iq>")
        .await;
    bob.sync().await;
    drop(bob);
    let mut alice = server.login("alice", "a").await;
    alice.send("<message to='bob@localhost' type='chat'><body>for later</body></message>").await;
    alice.sync().await;
    for table in
        ["accounts", "account_credentials", "roster_items", "roster_versions", "offline_messages", "vcard_store"]
    {
        assert!(rows_of(&server, table, "bob").await > 0, "{table} has bob's rows before");
    }

    let jid = starling::auth::account_jid("bob@localhost", &server.config.server.hosts).expect("jid");
    let modules: Vec<_> = server.config.modules.enabled.iter().filter_map(|m| starling::modules::find(m)).collect();
    starling::auth::delete_account(server.server.as_ref().expect("running").context.db(), &jid, &modules)
        .await
        .expect("deleted");

    for table in
        ["accounts", "account_credentials", "roster_items", "roster_groups", "roster_versions", "offline_messages"]
    {
        assert_eq!(rows_of(&server, table, "bob").await, 0, "{table} still has bob's rows");
    }
    assert!(rows_of(&server, "accounts", "alice").await > 0, "alice is untouched");
}

#[test]
fn every_module_with_tables_can_forget_a_user() {
    for module in starling::modules::ALL {
        assert_eq!(
            module.migrations.is_some(),
            module.forget_user.is_some(),
            "module {} has tables but no forget_user",
            module.name
        );
    }
}

//! PostgreSQL going away under a running server (issue: reliability), through a proxy
//! the test cuts: online messages keep flowing meanwhile, what needs the database
//! answers with a clear error (a `wait` stanza error, `temporary-auth-failure` for a
//! login), and once the database is back the server reconnects by itself and the
//! archive holds every message routed during the outage.

mod common;

use std::time::Duration;

use common::client::Event;
use common::mam::mam;
use common::tcp_proxy::TcpProxy;
use common::{Client, Conn, HOST, TestServer};
use starling::storage::test_db::TestDb;

const DURING: usize = 6000;

/// The next stanza, waiting longer than the usual ten seconds: a request during the
/// outage waits for the pool's connection timeout before it fails.
async fn recv_slowly(conn: &mut Conn) -> minidom::Element {
    match conn.next_within(Duration::from_secs(40)).await {
        Some(Event::Stanza(stanza)) => stanza,
        other => panic!("expected a stanza, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_keeps_routing_and_recovers_with_nothing_lost() {
    let Some(pg) = TestDb::postgres() else { return };
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().expect("addr")).await;
    let url = pg.url.replace("127.0.0.1:5432", &proxy.addr.to_string());
    assert_ne!(url, pg.url, "the test database is on 127.0.0.1:5432");
    let server = TestServer::start_with(|c| c.storage.url = url.clone()).await;
    for user in ["alice", "bob", "carol"] {
        server.add_user(user, "pw").await;
    }
    let mut alice = server.login("alice", "desk").await;
    let mut bob = server.login("bob", "phone").await;
    bob.presence(0).await;
    bob.sync().await;

    proxy.cut();
    for batch in (0..DURING).collect::<Vec<_>>().chunks(100) {
        let messages: String = batch
            .iter()
            .map(|i| format!("<message to='bob@{HOST}/phone' type='chat' id='o{i}'><body>o{i}</body></message>"))
            .collect();
        alice.send(&messages).await;
        for i in batch {
            let message = bob.recv_message().await;
            assert_eq!(
                message.attr("id"),
                Some(format!("o{i}").as_str()),
                "routed in order while the database is away"
            );
        }
    }

    // A roster change needs the database: it fails, and says to wait.
    alice
        .send("<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='carol@localhost'/></query></iq>")
        .await;
    let failed = recv_slowly(&mut alice.conn).await;
    assert_eq!(failed.attr("type"), Some("error"), "{failed:?}");
    assert_eq!(failed.get_child("error", "jabber:client").and_then(|e| e.attr("type")), Some("wait"));

    // A login needs the credentials: temporary-auth-failure, not not-authorized.
    let mut late = Conn::tcp(server.addr()).await;
    late.open().await;
    late.starttls().await;
    late.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGNhcm9sAHB3</auth>").await;
    let refused = recv_slowly(&mut late).await;
    assert_eq!(refused.name(), "failure", "{refused:?}");
    assert!(refused.has_child("temporary-auth-failure", "urn:ietf:params:xml:ns:xmpp-sasl"), "{refused:?}");

    proxy.restore();
    let mut carol = Client::login(server.addr(), "carol", "pw", Some("back")).await;
    carol.sync().await;
    let (added, _) = alice
        .iq("<iq type='set' id='{id}'><query xmlns='jabber:iq:roster'><item jid='carol@localhost'/></query></iq>")
        .await;
    assert_eq!(added.attr("type"), Some("result"), "{added:?}");
    let last = mam(&mut bob, "", "", "<max>250</max><before/>", "").await.expect("archive");
    assert_eq!(last.rsm("count"), Some(DURING.to_string()), "the archive caught up with the outage");
    let expected: Vec<String> = (DURING - 250..DURING).map(|i| format!("o{i}")).collect();
    assert!(last.bodies == expected, "the newest page holds the last messages, in order");
    drop(pg);
}

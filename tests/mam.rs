//! Message Archive Management (XEP-0313) over real sockets: both copies archived with
//! server-made XEP-0359 stanza ids, RSM paging both ways, filters, XEP-0431 full-text
//! search in English and Chinese, preferences, only one's own archive, spoofed ids
//! stripped, offline delivery archived once, the retention sweep.

mod common;

use common::{Client, HOST, TestServer};

use common::mam::{NS_MAM, field, mam};

async fn users(server: &TestServer, names: &[&str]) {
    for name in names {
        server.add_user(name, "pw").await;
    }
}

async fn chat(client: &mut Client, to: &str, body: &str) {
    client.send(&format!("<message to='{to}@{HOST}' type='chat'><body>{body}</body></message>")).await;
}

#[tokio::test]
async fn paging_forward_and_backward_through_250_messages() {
    let server = TestServer::start().await;
    users(&server, &["alice", "bob"]).await;
    let mut bob = server.login("bob", "b").await;
    bob.presence(0).await;
    bob.sync().await;
    let mut alice = server.login("alice", "a").await;
    for i in 0..250 {
        chat(&mut alice, "bob", &format!("m{i:03}")).await;
    }
    let expected: Vec<String> = (0..250).map(|i| format!("m{i:03}")).collect();

    // Forward, 50 a page, following <last/>.
    let (mut bodies, mut ids, mut after) = (Vec::new(), Vec::new(), String::new());
    loop {
        let set =
            if after.is_empty() { "<max>50</max>".to_owned() } else { format!("<max>50</max><after>{after}</after>") };
        let page = mam(&mut alice, "", &field("with", "bob@localhost"), &set, "").await.expect("page");
        assert_eq!(page.rsm("count").as_deref(), Some("250"));
        bodies.extend(page.bodies.clone());
        ids.extend(page.ids.clone());
        if page.complete() {
            assert_eq!(page.bodies.len(), 50, "the last page is full: 250 = 5 × 50");
            break;
        }
        after = page.rsm("last").expect("last");
        assert!(bodies.len() < 250, "a page past the end was not marked complete");
    }
    assert_eq!(bodies, expected);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 250, "no duplicate ids");

    // Backward from the end: <before/>, then <before>first</before>.
    let (mut back, mut before) = (Vec::new(), String::new());
    loop {
        let set = format!("<max>60</max><before>{before}</before>");
        let page = mam(&mut alice, "", "", &set, "").await.expect("page");
        let mut chunk = page.bodies.clone();
        chunk.extend(back);
        back = chunk;
        if page.complete() {
            break;
        }
        before = page.rsm("first").expect("first");
    }
    assert_eq!(back, expected, "backward paging sees every message once");

    // flip-page: the last page, newest first.
    let flipped = mam(&mut alice, "", "", "<max>3</max><before/>", "<flip-page/>").await.expect("flipped");
    assert_eq!(flipped.bodies, ["m249", "m248", "m247"]);
    assert!(!flipped.complete());

    // Bob's copies are in his archive too, with the ids stamped on what he received.
    let mut stamped = Vec::new();
    while stamped.len() < 250 {
        let message = bob.recv_message().await;
        let sid = message.get_child("stanza-id", "urn:xmpp:sid:0").expect("stanza-id");
        assert_eq!(sid.attr("by"), Some("bob@localhost"));
        stamped.push(sid.attr("id").expect("id").to_owned());
    }
    let page = mam(&mut bob, "", "", "<max>250</max>", "").await.expect("bob's archive");
    assert_eq!(page.bodies, expected);
    assert_eq!(page.ids, stamped, "the delivered stanza ids are the archive ids");
    assert!(page.complete());
}

#[tokio::test]
async fn queries_by_with_start_end_and_ids() {
    let server = TestServer::start().await;
    users(&server, &["alice", "bob", "carol"]).await;
    let mut alice = server.login("alice", "a").await;
    for i in 0..4 {
        chat(&mut alice, "bob", &format!("to bob {i}")).await;
        chat(&mut alice, "carol", &format!("to carol {i}")).await;
    }
    let all = mam(&mut alice, "", "", "", "").await.expect("all");
    assert_eq!(all.bodies.len(), 8);
    assert!(all.complete());

    let carol = mam(&mut alice, "", &field("with", "carol@localhost"), "", "").await.expect("with");
    assert_eq!(carol.bodies, ["to carol 0", "to carol 1", "to carol 2", "to carol 3"]);
    let full = mam(&mut alice, "", &field("with", "carol@localhost/nowhere"), "", "").await.expect("with full");
    assert!(full.bodies.is_empty(), "a full JID matches that resource only");

    // start/end are inclusive and use the archive's timestamps.
    let window = format!("{}{}", field("start", &all.stamps[2]), field("end", &all.stamps[5]));
    let between = mam(&mut alice, "", &window, "", "").await.expect("start/end");
    assert_eq!(between.bodies, all.bodies[2..=5]);
    let since = mam(&mut alice, "", &field("start", &all.stamps[6]), "", "").await.expect("start");
    assert_eq!(since.bodies, all.bodies[6..]);

    let ids = format!("<field var='ids'><value>{}</value><value>{}</value></field>", all.ids[1], all.ids[7]);
    let by_ids = mam(&mut alice, "", &ids, "", "").await.expect("ids");
    assert_eq!(by_ids.bodies, [all.bodies[1].clone(), all.bodies[7].clone()]);

    let after = mam(&mut alice, "", &field("after-id", &all.ids[5]), "", "").await.expect("after-id");
    assert_eq!(after.bodies, all.bodies[6..]);
    let before = mam(&mut alice, "", &field("before-id", &all.ids[2]), "", "").await.expect("before-id");
    assert_eq!(before.bodies, all.bodies[..2]);

    let unknown = mam(&mut alice, "", &field("after-id", "no-such-id"), "", "").await.err().expect("an error");
    assert!(
        unknown
            .get_child("error", "jabber:client")
            .is_some_and(|e| e.has_child("item-not-found", "urn:ietf:params:xml:ns:xmpp-stanzas"))
    );
    let bad = mam(&mut alice, "", &field("colour", "red"), "", "").await.err().expect("an error");
    assert!(
        bad.get_child("error", "jabber:client")
            .is_some_and(|e| e.has_child("bad-request", "urn:ietf:params:xml:ns:xmpp-stanzas"))
    );
}

#[tokio::test]
async fn fulltext_search_finds_english_and_chinese_words_in_ones_own_archive_only() {
    let server = TestServer::start().await;
    users(&server, &["alice", "bob", "carol"]).await;
    let mut alice = server.login("alice", "a").await;
    chat(&mut alice, "bob", "The quick brown fox jumps").await;
    chat(&mut alice, "bob", "我们明天去北京开会").await;
    chat(&mut alice, "bob", "A category of its own").await;
    let mut carol = server.login("carol", "c").await;
    chat(&mut carol, "alice", "carol's fox is elsewhere, 北京 too").await;
    carol.sync().await;

    let mut bob = server.login("bob", "b").await;
    let search = |q: &str| field("{urn:xmpp:fulltext:0}fulltext", q);
    let fox = mam(&mut bob, "", &search("FOX"), "", "").await.expect("fox");
    assert_eq!(fox.bodies, ["The quick brown fox jumps"], "case-insensitive; not carol's message to alice");
    let beijing = mam(&mut bob, "", &search("北京"), "", "").await.expect("北京");
    assert_eq!(beijing.bodies, ["我们明天去北京开会"]);
    let phrase = mam(&mut bob, "", &search("去北京开"), "", "").await.expect("phrase");
    assert_eq!(phrase.bodies.len(), 1);
    let one_char = mam(&mut bob, "", &search("京"), "", "").await.expect("one character");
    assert_eq!(one_char.bodies.len(), 1);
    let not_adjacent = mam(&mut bob, "", &search("北开"), "", "").await.expect("not adjacent");
    assert!(not_adjacent.bodies.is_empty(), "CJK words match as written, not as scattered characters");
    let cat = mam(&mut bob, "", &search("cat"), "", "").await.expect("cat");
    assert!(cat.bodies.is_empty(), "word boundaries: 'cat' is not 'category'");
    let both = mam(&mut bob, "", &search("quick jumps"), "", "").await.expect("two words");
    assert_eq!(both.bodies.len(), 1);

    // Alice's own archive has carol's message (and her own).
    let hers = mam(&mut alice, "", &search("北京"), "", "").await.expect("alice");
    assert_eq!(hers.bodies.len(), 2);
}

#[tokio::test]
async fn a_user_can_never_read_another_users_archive() {
    let server = TestServer::start().await;
    users(&server, &["alice", "bob", "mallory"]).await;
    let mut alice = server.login("alice", "a").await;
    chat(&mut alice, "bob", "secret").await;
    let mut mallory = server.login("mallory", "m").await;
    for target in ["bob@localhost", "alice@localhost"] {
        let refused = mam(&mut mallory, target, "", "", "").await.err().expect("refused");
        assert!(
            refused
                .get_child("error", "jabber:client")
                .is_some_and(|e| e.has_child("forbidden", "urn:ietf:params:xml:ns:xmpp-stanzas")),
            "{refused:?}"
        );
    }
    // with= another account shows only mallory's own exchanges with it: none.
    let own = mam(&mut mallory, "", &field("with", "bob@localhost"), "", "").await.expect("own");
    assert!(own.bodies.is_empty());
    // Preferences and metadata are per account too.
    let (reply, _) =
        mallory.iq("<iq type='get' id='{id}' to='alice@localhost'><prefs xmlns='urn:xmpp:mam:2'/></iq>").await;
    assert_eq!(reply.attr("type"), Some("error"));
}

#[tokio::test]
async fn spoofed_stanza_ids_are_stripped() {
    let server = TestServer::start().await;
    users(&server, &["alice", "bob"]).await;
    let mut bob = server.login("bob", "b").await;
    bob.presence(0).await;
    let mut alice = server.login("alice", "a").await;
    alice
        .send(
            "<message to='bob@localhost' type='chat' id='s1'><body>trust me</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='fake-1'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='localhost' id='fake-2'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='elsewhere.example' id='theirs'/></message>",
        )
        .await;
    let got = bob.recv_message().await;
    let ids: Vec<(Option<&str>, Option<&str>)> =
        got.children().filter(|c| c.is("stanza-id", "urn:xmpp:sid:0")).map(|c| (c.attr("by"), c.attr("id"))).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&(Some("elsewhere.example"), Some("theirs"))), "another entity's id is not ours to judge");
    let ours: Vec<_> = ids.iter().filter(|(by, _)| *by == Some("bob@localhost")).collect();
    assert_eq!(ours.len(), 1);
    assert_ne!(ours[0].1, Some("fake-1"));
    let page = mam(&mut bob, "", "", "", "").await.expect("archive");
    assert_eq!(page.ids, [ours[0].1.expect("id").to_owned()]);
    // Alice's archived copy does not keep ids claiming our accounts either.
    let hers = mam(&mut alice, "", "<field var='ids'><value>fake-1</value></field>", "", "").await.expect("alice");
    assert!(hers.ids.is_empty());
}

#[tokio::test]
async fn offline_messages_are_archived_once_and_delivered_with_their_ids() {
    let server = TestServer::start().await;
    users(&server, &["alice", "bob"]).await;
    let mut alice = server.login("alice", "a").await;
    for i in 0..50 {
        chat(&mut alice, "bob", &format!("while you were out {i}")).await;
    }
    let mut bob = server.login("bob", "b").await;
    bob.presence(0).await;
    let mut ids = Vec::new();
    while ids.len() < 50 {
        let message = bob.recv_message().await;
        ids.push(message.get_child("stanza-id", "urn:xmpp:sid:0").and_then(|s| s.attr("id")).expect("id").to_owned());
    }
    let page = mam(&mut bob, "", "", "", "").await.expect("archive");
    assert_eq!(page.ids, ids, "stored offline, redelivered, archived once, same ids");
    assert_eq!(mam(&mut alice, "", "", "", "").await.expect("alice").bodies.len(), 50);
}

#[tokio::test]
async fn preferences_never_and_always_are_honoured() {
    let server = TestServer::start().await;
    users(&server, &["alice", "bob"]).await;
    let mut bob = server.login("bob", "b").await;
    bob.presence(0).await;
    let (reply, _) = bob
        .iq("<iq type='set' id='{id}'><prefs xmlns='urn:xmpp:mam:2' default='never'><always/><never/></prefs></iq>")
        .await;
    assert_eq!(reply.attr("type"), Some("result"));
    let (reply, _) = bob.iq("<iq type='get' id='{id}'><prefs xmlns='urn:xmpp:mam:2'/></iq>").await;
    assert_eq!(reply.get_child("prefs", NS_MAM).and_then(|p| p.attr("default")), Some("never"));
    let mut alice = server.login("alice", "a").await;
    chat(&mut alice, "bob", "not for the record").await;
    let got = bob.recv_message().await;
    assert!(got.get_child("stanza-id", "urn:xmpp:sid:0").is_none(), "not archived, so no id");
    assert!(mam(&mut bob, "", "", "", "").await.expect("bob").bodies.is_empty());
    assert_eq!(mam(&mut alice, "", "", "", "").await.expect("alice").bodies.len(), 1, "alice archives hers");
}

#[tokio::test]
async fn the_retention_sweep_deletes_old_messages_and_caps_archives() {
    let server = TestServer::start().await;
    users(&server, &["alice", "bob"]).await;
    let mut alice = server.login("alice", "a").await;
    for i in 0..5 {
        chat(&mut alice, "bob", &format!("old {i}")).await;
    }
    assert_eq!(mam(&mut alice, "", "", "", "").await.expect("before").bodies.len(), 5);
    let db = server.server.as_ref().expect("running").context.db().clone();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_micros() as i64;
    // A cap of 3 keeps each archive's newest three.
    let trimmed = db.run(move |c| starling_mod_mam::sweep(c, now, 0, 3)).await.expect("sweep");
    assert_eq!(trimmed, 4, "two from alice's archive, two from bob's");
    assert_eq!(mam(&mut alice, "", "", "", "").await.expect("capped").bodies, ["old 2", "old 3", "old 4"]);
    // Two days later, a one-day retention deletes everything.
    let later = now + 2 * 86_400_000_000;
    let deleted = db.run(move |c| starling_mod_mam::sweep(c, later, 1, 0)).await.expect("sweep");
    assert_eq!(deleted, 6);
    assert!(mam(&mut alice, "", "", "", "").await.expect("after").bodies.is_empty());
}

#[tokio::test]
async fn the_account_advertises_mam_and_answers_form_and_metadata() {
    let server = TestServer::start().await;
    users(&server, &["alice", "bob"]).await;
    let mut alice = server.login("alice", "a").await;
    let (info, _) = alice
        .iq("<iq type='get' id='{id}' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    let features: Vec<String> = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .expect("info")
        .children()
        .filter_map(|f| f.attr("var").map(str::to_owned))
        .collect();
    for feature in ["urn:xmpp:mam:2", "urn:xmpp:mam:2#extended", "urn:xmpp:sid:0", "urn:xmpp:fulltext:0"] {
        assert!(features.iter().any(|f| f == feature), "{feature} in {features:?}");
    }
    let (form, _) = alice.iq("<iq type='get' id='{id}'><query xmlns='urn:xmpp:mam:2'/></iq>").await;
    let x = form.get_child("query", NS_MAM).and_then(|q| q.get_child("x", "jabber:x:data")).expect("form");
    assert!(x.children().any(|f| f.attr("var") == Some("{urn:xmpp:fulltext:0}fulltext")));
    chat(&mut alice, "bob", "one").await;
    chat(&mut alice, "bob", "two").await;
    let all = mam(&mut alice, "", "", "", "").await.expect("all");
    let (meta, _) = alice.iq("<iq type='get' id='{id}'><metadata xmlns='urn:xmpp:mam:2'/></iq>").await;
    let meta = meta.get_child("metadata", NS_MAM).expect("metadata");
    assert_eq!(meta.get_child("start", NS_MAM).and_then(|s| s.attr("id")), Some(all.ids[0].as_str()));
    assert_eq!(meta.get_child("end", NS_MAM).and_then(|s| s.attr("id")), Some(all.ids[1].as_str()));
}

#[tokio::test]
async fn a_writer_far_behind_the_senders_loses_nothing() {
    // A queue of four: every burst overflows it, which used to leave messages unarchived.
    let server = TestServer::start_with(|config| {
        let settings = toml::from_str("write_queue = 4\nwrite_batch = 2").expect("settings");
        config.modules.settings.insert("mam".into(), settings);
    })
    .await;
    users(&server, &["alice", "bob"]).await;
    let mut bob = server.login("bob", "b").await;
    bob.presence(0).await;
    bob.sync().await;
    let mut alice = server.login("alice", "a").await;
    let burst: String =
        (0..300).map(|i| format!("<message to='bob@{HOST}' type='chat'><body>b{i:03}</body></message>")).collect();
    alice.send(&burst).await;
    let expected: Vec<String> = (0..300).map(|i| format!("b{i:03}")).collect();
    for owner in [&mut alice, &mut bob] {
        let page = mam(owner, "", "", "<max>250</max><before/>", "").await.expect("archive");
        assert_eq!(page.rsm("count").as_deref(), Some("300"), "every message is archived once");
        assert_eq!(page.bodies, expected[50..], "in the order they were sent");
    }
}

/// An archive stored before row ids became stanza ids (migration
/// 20261210120001_mam_lean_writes): its ids still answer `after-id` and `ids`, its
/// words are still found, and new messages follow it in order.
#[tokio::test]
async fn an_archive_from_before_server_set_row_ids_survives_the_upgrade() {
    use diesel::connection::SimpleConnection;
    use starling_api::DbConn;

    let mut server = TestServer::start().await;
    users(&server, &["alice", "bob"]).await;
    let mut alice = server.login("alice", "a").await;
    for i in 1..=3 {
        chat(&mut alice, "bob", &format!("teapot {i}")).await;
    }
    assert_eq!(mam(&mut alice, "", "", "", "").await.expect("archived").bodies.len(), 3);
    drop(alice);
    server.stop().await;

    // Back to the earlier schema, with ids and index text of the form it had then.
    let db = starling_api::Db::open(&server.config.storage.url, 1).expect("database");
    db.run_blocking(|conn| {
        let down = match conn {
            DbConn::Sqlite(_) => {
                include_str!("../modules/mam/migrations/sqlite/20261210120001_mam_lean_writes/down.sql")
            }
            DbConn::Postgresql(_) => {
                include_str!("../modules/mam/migrations/postgres/20261210120001_mam_lean_writes/down.sql")
            }
        };
        conn.batch_execute(down)?;
        conn.batch_execute(
            "DELETE FROM __diesel_schema_migrations WHERE version = '20261210120001';
             UPDATE mam_messages SET stanza_id = 'legacy-' || id, search_text = 'teapot';",
        )
    })
    .expect("downgraded");
    drop(db);

    server.restart().await;
    let mut alice = server.login("alice", "a").await;
    let all = mam(&mut alice, "", "", "", "").await.expect("all");
    assert_eq!(all.bodies, ["teapot 1", "teapot 2", "teapot 3"]);
    assert!(all.ids.iter().all(|id| id.starts_with("legacy-")), "the ids clients hold: {:?}", all.ids);
    let after = mam(&mut alice, "", &field("after-id", &all.ids[0]), "", "").await.expect("after-id");
    assert_eq!(after.bodies, ["teapot 2", "teapot 3"]);
    let ids = format!("<field var='ids'><value>{}</value></field>", all.ids[1]);
    assert_eq!(mam(&mut alice, "", &ids, "", "").await.expect("ids").bodies, ["teapot 2"]);
    let found = mam(&mut alice, "", &field("{urn:xmpp:fulltext:0}fulltext", "teapot"), "", "").await.expect("search");
    assert_eq!(found.bodies.len(), 3);

    chat(&mut alice, "bob", "kettle").await;
    let newer = mam(&mut alice, "", &field("after-id", &all.ids[2]), "", "").await.expect("after the last old one");
    assert_eq!(newer.bodies, ["kettle"]);
    assert!(!newer.ids[0].starts_with("legacy-"));
    let both = mam(&mut alice, "", &field("{urn:xmpp:fulltext:0}fulltext", "kettle"), "", "").await.expect("search");
    assert_eq!(both.bodies, ["kettle"]);
}

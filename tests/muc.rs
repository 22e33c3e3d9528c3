//! Multi-User Chat (XEP-0045) over real sockets, several clients per room: creation,
//! configuration and destruction, joins (conflicts, codes, order), history, broadcast,
//! private messages, nick changes, multi-session nicknames, kicks and bans,
//! members-only rooms and invitations, moderated rooms and channels, persistence
//! across a restart, room MAM with paging, self-ping, occupant ids, moderation.

mod common;

use common::{Client, TestServer};
use minidom::Element;

const MUC: &str = "http://jabber.org/protocol/muc";
const USER: &str = "http://jabber.org/protocol/muc#user";
const ADMIN: &str = "http://jabber.org/protocol/muc#admin";
const OWNER: &str = "http://jabber.org/protocol/muc#owner";
const DATA: &str = "jabber:x:data";
const CLIENT: &str = "jabber:client";
const SID: &str = "urn:xmpp:sid:0";
const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
const MAM: &str = "urn:xmpp:mam:2";
const RSM: &str = "http://jabber.org/protocol/rsm";
const SERVICE: &str = "conference.localhost";

fn room(name: &str) -> String {
    format!("{name}@{SERVICE}")
}

fn condition(stanza: &Element) -> Option<String> {
    let error = stanza.get_child("error", CLIENT)?;
    error.children().find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas").map(|c| c.name().to_owned())
}

fn codes(presence: &Element) -> Vec<String> {
    presence
        .get_child("x", USER)
        .map(|x| {
            x.children().filter(|c| c.is("status", USER)).filter_map(|c| c.attr("code").map(str::to_owned)).collect()
        })
        .unwrap_or_default()
}

fn item(presence: &Element) -> Element {
    presence.get_child("x", USER).and_then(|x| x.get_child("item", USER)).cloned().expect("muc#user item")
}

fn occupant_id(stanza: &Element) -> Option<String> {
    stanza.get_child("occupant-id", OCCUPANT_ID).and_then(|o| o.attr("id")).map(str::to_owned)
}

fn body(message: &Element) -> Option<String> {
    message.get_child("body", CLIENT).map(|b| b.text())
}

/// Receives until `pred` matches; returns the match and what came before.
async fn recv_until(client: &mut Client, pred: impl Fn(&Element) -> bool) -> (Element, Vec<Element>) {
    let mut before = Vec::new();
    loop {
        let stanza = client.recv().await;
        if pred(&stanza) {
            return (stanza, before);
        }
        before.push(stanza);
    }
}

fn is_subject(stanza: &Element) -> bool {
    stanza.name() == "message" && stanza.has_child("subject", CLIENT) && !stanza.has_child("body", CLIENT)
}

/// Joins `room` as `nick` (with `extra` inside `<x xmlns=muc>`) and collects the join
/// up to the subject: `Ok(stanzas)` or `Err(error presence)`.
async fn try_join(client: &mut Client, room: &str, nick: &str, extra: &str) -> Result<Vec<Element>, Element> {
    client.send(&format!("<presence to='{room}/{nick}'><x xmlns='{MUC}'>{extra}</x></presence>")).await;
    let mut received = Vec::new();
    loop {
        let stanza = client.recv().await;
        if stanza.name() == "presence" && stanza.attr("type") == Some("error") {
            return Err(stanza);
        }
        let done = is_subject(&stanza) && stanza.attr("from").is_some_and(|f| f.starts_with(room));
        received.push(stanza);
        if done {
            return Ok(received);
        }
    }
}

async fn join(client: &mut Client, room: &str, nick: &str) -> Vec<Element> {
    try_join(client, room, nick, "").await.expect("join succeeds")
}

/// The self-presence (status 110) among a join's stanzas.
fn self_presence(stanzas: &[Element]) -> Element {
    stanzas
        .iter()
        .find(|s| s.name() == "presence" && codes(s).contains(&"110".to_owned()))
        .cloned()
        .expect("self-presence")
}

/// Submits the configuration form with `fields` (var, value).
async fn configure(client: &mut Client, room: &str, fields: &[(&str, &str)]) -> Element {
    let fields: String =
        fields.iter().map(|(var, value)| format!("<field var='{var}'><value>{value}</value></field>")).collect();
    let (reply, _) = client
        .iq(&format!(
            "<iq type='set' id='{{id}}' to='{room}'><query xmlns='{OWNER}'><x xmlns='{DATA}' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>{fields}</x></query></iq>"
        ))
        .await;
    reply
}

/// Creates `room` with `owner` as `nick` and configures it with `fields`.
async fn create(owner: &mut Client, room: &str, nick: &str, fields: &[(&str, &str)]) {
    let joined = join(owner, room, nick).await;
    let own = self_presence(&joined);
    assert!(codes(&own).contains(&"201".to_owned()), "new room: {own:?}");
    assert_eq!(item(&own).attr("affiliation"), Some("owner"));
    let reply = configure(owner, room, fields).await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
}

async fn admin(client: &mut Client, room: &str, items: &str) -> Element {
    let (reply, _) =
        client.iq(&format!("<iq type='set' id='{{id}}' to='{room}'><query xmlns='{ADMIN}'>{items}</query></iq>")).await;
    reply
}

async fn users(server: &TestServer, names: &[&str]) -> Vec<Client> {
    let mut clients = Vec::new();
    for name in names {
        server.add_user(name, "pw").await;
        clients.push(server.login(name, "r").await);
    }
    clients
}

/// Sends a groupchat message and returns it as `receiver` gets it.
async fn say(sender: &mut Client, room: &str, text: &str) {
    sender.send(&format!("<message to='{room}' type='groupchat' id='m-{text}'><body>{text}</body></message>")).await;
}

/// The next groupchat message with a body from `room`.
async fn recv_groupchat(client: &mut Client, room: &str) -> Element {
    let from_room = |s: &Element| s.attr("from").is_some_and(|f| f.split('/').next() == Some(room));
    recv_until(client, |s| {
        s.name() == "message" && s.attr("type") == Some("groupchat") && s.has_child("body", CLIENT) && from_room(s)
    })
    .await
    .0
}

#[tokio::test]
async fn rooms_are_created_joined_and_talked_in() {
    let server = TestServer::start().await;
    let mut clients = users(&server, &["alice", "bob", "carol"]).await;
    let [alice, bob, carol] = clients.as_mut_slice() else { unreachable!() };
    let lounge = room("lounge");

    // The service: its own identity.
    let (info, _) = alice
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='{SERVICE}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ))
        .await;
    let query = info.get_child("query", "http://jabber.org/protocol/disco#info").expect("disco#info");
    assert!(
        query.children().any(|c| c.name() == "identity"
            && c.attr("category") == Some("conference")
            && c.attr("type") == Some("text"))
    );
    assert!(query.children().any(|c| c.attr("var") == Some(MUC)));

    // Creation: the room stays locked until its owner configures it.
    let joined = join(alice, &lounge, "Alice").await;
    assert!(codes(&self_presence(&joined)).contains(&"201".to_owned()));
    let refused = try_join(bob, &lounge, "Bob", "").await.expect_err("locked room");
    assert_eq!(condition(&refused).as_deref(), Some("item-not-found"));
    let (form, _) = alice.iq(&format!("<iq type='get' id='{{id}}' to='{lounge}'><query xmlns='{OWNER}'/></iq>")).await;
    let x = form.get_child("query", OWNER).and_then(|q| q.get_child("x", DATA)).expect("config form");
    assert!(x.children().any(|f| f.attr("var") == Some("muc#roomconfig_moderatedroom")));
    let (reply, _) = alice
        .iq(&format!("<iq type='set' id='{{id}}' to='{lounge}'><query xmlns='{OWNER}'><x xmlns='{DATA}' type='submit'/></query></iq>"))
        .await;
    assert_eq!(reply.attr("type"), Some("result"), "instant room: {reply:?}");

    // Bob joins: Alice's presence first, his own last (110), then the subject.
    let joined = join(bob, &lounge, "Bob").await;
    let presences: Vec<&Element> = joined.iter().filter(|s| s.name() == "presence").collect();
    assert_eq!(presences.first().and_then(|p| p.attr("from")), Some(format!("{lounge}/Alice").as_str()));
    let own = presences.last().expect("own presence");
    assert_eq!(own.attr("from"), Some(format!("{lounge}/Bob").as_str()));
    assert!(codes(own).contains(&"110".to_owned()));
    assert_eq!(item(own).attr("role"), Some("participant"));
    let bob_id = occupant_id(own).expect("occupant-id");
    let (seen, _) =
        recv_until(alice, |s| s.name() == "presence" && s.attr("from") == Some(&format!("{lounge}/Bob"))).await;
    assert_eq!(item(&seen).attr("jid"), Some(bob.jid.as_str()), "moderators see real JIDs");
    assert_eq!(occupant_id(&seen), Some(bob_id.clone()));

    // A nickname in use by someone else.
    let refused = try_join(carol, &lounge, "Bob", "").await.expect_err("conflict");
    assert_eq!(condition(&refused).as_deref(), Some("conflict"));

    // Messages reach every occupant, sender included, with stanza and occupant ids.
    for text in ["one", "two", "three"] {
        say(bob, &lounge, text).await;
    }
    for client in [&mut *alice, &mut *bob] {
        for text in ["one", "two", "three"] {
            let message = recv_groupchat(client, &lounge).await;
            assert_eq!(message.attr("from"), Some(format!("{lounge}/Bob").as_str()));
            assert_eq!(body(&message).as_deref(), Some(text));
            assert_eq!(message.attr("id"), Some(format!("m-{text}").as_str()));
            let sid = message.get_child("stanza-id", SID).expect("stanza-id");
            assert_eq!(sid.attr("by"), Some(lounge.as_str()));
            assert_eq!(occupant_id(&message), Some(bob_id.clone()));
        }
    }

    // History on join: the last two, delayed, before the subject.
    let joined = try_join(carol, &lounge, "Carol", "<history maxstanzas='2'/>").await.expect("carol joins");
    let history: Vec<&Element> =
        joined.iter().filter(|s| s.name() == "message" && s.has_child("body", CLIENT)).collect();
    assert_eq!(history.iter().filter_map(|m| body(m)).collect::<Vec<_>>(), ["two", "three"]);
    assert!(
        history
            .iter()
            .all(|m| m.get_child("delay", "urn:xmpp:delay").and_then(|d| d.attr("from")) == Some(lounge.as_str()))
    );
    let carol_item = item(&self_presence(&joined));
    assert!(carol_item.attr("jid").is_some(), "own JID in own presence");
    let (seen, _) =
        recv_until(bob, |s| s.name() == "presence" && s.attr("from") == Some(&format!("{lounge}/Carol"))).await;
    assert_eq!(item(&seen).attr("jid"), None, "semi-anonymous: participants do not see real JIDs");

    // Private messages, between occupants, through the room.
    carol.send(&format!("<message to='{lounge}/Bob' type='chat'><body>psst</body></message>")).await;
    let (pm, _) = recv_until(bob, |s| s.name() == "message" && s.attr("type") == Some("chat")).await;
    assert_eq!(pm.attr("from"), Some(format!("{lounge}/Carol").as_str()));
    assert_eq!(body(&pm).as_deref(), Some("psst"));
    assert!(pm.has_child("x", USER));
    carol.send(&format!("<message to='{lounge}/Nobody' type='chat' id='pm2'><body>?</body></message>")).await;
    let (error, _) = recv_until(carol, |s| s.name() == "message" && s.attr("type") == Some("error")).await;
    assert_eq!(condition(&error).as_deref(), Some("item-not-found"));
    // Only occupants may speak.
    let mut outsider = {
        server.add_user("dave", "pw").await;
        server.login("dave", "r").await
    };
    say(&mut outsider, &lounge, "hi").await;
    let (error, _) = recv_until(&mut outsider, |s| s.name() == "message").await;
    assert_eq!(condition(&error).as_deref(), Some("not-acceptable"));

    // Self-ping (XEP-0410): answered for a joined nick, refused otherwise.
    let (pong, _) =
        carol.iq(&format!("<iq type='get' id='{{id}}' to='{lounge}/Carol'><ping xmlns='urn:xmpp:ping'/></iq>")).await;
    assert_eq!(pong.attr("type"), Some("result"));
    let (pong, _) = outsider
        .iq(&format!("<iq type='get' id='{{id}}' to='{lounge}/Carol'><ping xmlns='urn:xmpp:ping'/></iq>"))
        .await;
    assert_eq!(condition(&pong).as_deref(), Some("not-acceptable"));

    // Nick change: 303 under the old nick, then the new one; the occupant id stays.
    bob.send(&format!("<presence to='{lounge}/Robert'/>")).await;
    let (gone, _) =
        recv_until(carol, |s| s.name() == "presence" && s.attr("from") == Some(&format!("{lounge}/Bob"))).await;
    assert_eq!(gone.attr("type"), Some("unavailable"));
    assert!(codes(&gone).contains(&"303".to_owned()));
    assert_eq!(item(&gone).attr("nick"), Some("Robert"));
    let (back, _) =
        recv_until(carol, |s| s.name() == "presence" && s.attr("from") == Some(&format!("{lounge}/Robert"))).await;
    assert_eq!(occupant_id(&back), Some(bob_id.clone()));

    // Leaving, with a status text; then the occupant id is the same on rejoining.
    bob.send(&format!("<presence to='{lounge}/Robert' type='unavailable'><status>bye</status></presence>")).await;
    let (left, _) =
        recv_until(carol, |s| s.name() == "presence" && s.attr("from") == Some(&format!("{lounge}/Robert"))).await;
    assert_eq!(left.attr("type"), Some("unavailable"));
    assert_eq!(item(&left).attr("role"), Some("none"));
    assert_eq!(left.get_child("status", CLIENT).map(|s| s.text()).as_deref(), Some("bye"));
    let (own_leave, _) = recv_until(bob, |s| {
        s.name() == "presence"
            && s.attr("type") == Some("unavailable")
            && s.attr("from") == Some(&format!("{lounge}/Robert"))
    })
    .await;
    assert!(codes(&own_leave).contains(&"110".to_owned()));
    let joined = join(bob, &lounge, "Bobby").await;
    assert_eq!(occupant_id(&self_presence(&joined)), Some(bob_id));

    // The room is listed by the service.
    let (items, _) = carol
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='{SERVICE}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
        ))
        .await;
    let listed: Vec<String> = items
        .get_child("query", "http://jabber.org/protocol/disco#items")
        .expect("items")
        .children()
        .filter_map(|i| i.attr("jid").map(str::to_owned))
        .collect();
    assert_eq!(listed, [lounge]);
}

#[tokio::test]
async fn one_nickname_can_have_several_sessions() {
    let server = TestServer::start().await;
    let mut clients = users(&server, &["alice", "bob"]).await;
    let [alice, bob] = clients.as_mut_slice() else { unreachable!() };
    let mut phone = server.login("bob", "phone").await;
    let lounge = room("devices");
    create(alice, &lounge, "Alice", &[]).await;
    let first = join(bob, &lounge, "Bob").await;
    let joined = join(&mut phone, &lounge, "Bob").await;
    assert!(codes(&self_presence(&joined)).contains(&"110".to_owned()), "second session joins the same nick");
    assert_eq!(
        occupant_id(&self_presence(&joined)),
        occupant_id(&self_presence(&first)),
        "one occupant id per real JID"
    );
    let refused = try_join(alice, &lounge, "Bob", "").await.expect_err("a nick change to a nick another JID holds");
    assert_eq!(condition(&refused).as_deref(), Some("conflict"));
    say(alice, &lounge, "both").await;
    assert_eq!(body(&recv_groupchat(bob, &lounge).await).as_deref(), Some("both"));
    assert_eq!(body(&recv_groupchat(&mut phone, &lounge).await).as_deref(), Some("both"));
    alice.send(&format!("<message to='{lounge}/Bob' type='chat'><body>pm</body></message>")).await;
    for session in [&mut *bob, &mut phone] {
        let (pm, _) = recv_until(session, |s| s.name() == "message" && s.attr("type") == Some("chat")).await;
        assert_eq!(body(&pm).as_deref(), Some("pm"));
    }
    // One device leaving leaves the nick in the room.
    phone.send(&format!("<presence to='{lounge}/Bob' type='unavailable'/>")).await;
    recv_until(&mut phone, |s| s.name() == "presence" && s.attr("type") == Some("unavailable")).await;
    say(alice, &lounge, "still").await;
    assert_eq!(body(&recv_groupchat(bob, &lounge).await).as_deref(), Some("still"));
    let others = alice.sync().await;
    assert!(
        !others.iter().any(|s| s.name() == "presence" && s.attr("type") == Some("unavailable")),
        "others saw Bob leave: {others:?}"
    );
}

#[tokio::test]
async fn kicked_and_banned_occupants_and_members_only_rooms() {
    let server = TestServer::start().await;
    let mut clients = users(&server, &["alice", "bob", "carol", "dave"]).await;
    let [alice, bob, carol, dave] = clients.as_mut_slice() else { unreachable!() };
    let lounge = room("strict");
    create(alice, &lounge, "Alice", &[]).await;
    join(bob, &lounge, "Bob").await;
    join(carol, &lounge, "Carol").await;

    // A participant cannot kick; a moderator can (307).
    let reply = admin(carol, &lounge, "<item nick='Bob' role='none'/>").await;
    assert_eq!(condition(&reply).as_deref(), Some("not-allowed"));
    let reply = admin(alice, &lounge, "<item nick='Bob' role='none'><reason>spam</reason></item>").await;
    assert_eq!(reply.attr("type"), Some("result"));
    let (kicked, _) = recv_until(bob, |s| s.name() == "presence" && s.attr("type") == Some("unavailable")).await;
    let kicked_codes = codes(&kicked);
    assert!(kicked_codes.contains(&"307".to_owned()) && kicked_codes.contains(&"110".to_owned()), "{kicked:?}");
    assert_eq!(item(&kicked).get_child("reason", USER).map(|r| r.text()).as_deref(), Some("spam"));
    let (seen, _) =
        recv_until(carol, |s| s.name() == "presence" && s.attr("from") == Some(&format!("{lounge}/Bob"))).await;
    assert!(codes(&seen).contains(&"307".to_owned()));
    // A kicked occupant may come back; a banned one may not (301).
    join(bob, &lounge, "Bob").await;
    let reply = admin(alice, &lounge, "<item jid='bob@localhost' affiliation='outcast'/>").await;
    assert_eq!(reply.attr("type"), Some("result"));
    let (banned, _) = recv_until(bob, |s| s.name() == "presence" && s.attr("type") == Some("unavailable")).await;
    assert!(codes(&banned).contains(&"301".to_owned()));
    let refused = try_join(bob, &lounge, "Bob", "").await.expect_err("banned");
    assert_eq!(condition(&refused).as_deref(), Some("forbidden"));
    let (list, _) = alice
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='{lounge}'><query xmlns='{ADMIN}'><item affiliation='outcast'/></query></iq>"
        ))
        .await;
    let outcasts: Vec<_> = list
        .get_child("query", ADMIN)
        .expect("list")
        .children()
        .filter_map(|i| i.attr("jid").map(str::to_owned))
        .collect();
    assert_eq!(outcasts, ["bob@localhost"]);

    // Members-only: non-members are removed (322) and refused; an invitee becomes a member.
    let reply = configure(alice, &lounge, &[("muc#roomconfig_membersonly", "1")]).await;
    assert_eq!(reply.attr("type"), Some("result"));
    let (removed, _) = recv_until(carol, |s| {
        s.name() == "presence"
            && s.attr("type") == Some("unavailable")
            && s.attr("from") == Some(&format!("{lounge}/Carol"))
    })
    .await;
    assert!(codes(&removed).contains(&"322".to_owned()), "{removed:?}");
    let refused = try_join(dave, &lounge, "Dave", "").await.expect_err("members only");
    assert_eq!(condition(&refused).as_deref(), Some("registration-required"));
    // Available, so that a message to the bare JID is delivered, not stored offline.
    dave.presence(0).await;
    dave.sync().await;
    alice
        .send(&format!("<message to='{lounge}'><x xmlns='{USER}'><invite to='dave@localhost'><reason>join us</reason></invite></x></message>"))
        .await;
    let (invitation, _) = recv_until(dave, |s| s.name() == "message" && s.has_child("x", USER)).await;
    assert_eq!(invitation.attr("from"), Some(lounge.as_str()));
    let invite = invitation.get_child("x", USER).and_then(|x| x.get_child("invite", USER)).expect("invite");
    assert_eq!(invite.attr("from"), Some("alice@localhost"));
    let joined = join(dave, &lounge, "Dave").await;
    assert_eq!(item(&self_presence(&joined)).attr("affiliation"), Some("member"));
    // A decline reaches the inviter through the room.
    carol
        .send(&format!("<message to='{lounge}'><x xmlns='{USER}'><decline to='alice@localhost/r'/></x></message>"))
        .await;
    let (declined, _) = recv_until(alice, |s| {
        s.name() == "message" && s.get_child("x", USER).is_some_and(|x| x.has_child("decline", USER))
    })
    .await;
    let decline = declined.get_child("x", USER).and_then(|x| x.get_child("decline", USER)).expect("decline");
    assert_eq!(decline.attr("from"), Some("carol@localhost"));
}

#[tokio::test]
async fn moderated_rooms_and_channels() {
    let server = TestServer::start().await;
    let mut clients = users(&server, &["alice", "bob", "carol"]).await;
    let [alice, bob, carol] = clients.as_mut_slice() else { unreachable!() };
    let lounge = room("stage");
    create(alice, &lounge, "Alice", &[("muc#roomconfig_moderatedroom", "1")]).await;
    let joined = join(bob, &lounge, "Bob").await;
    assert_eq!(item(&self_presence(&joined)).attr("role"), Some("visitor"));
    say(bob, &lounge, "can I?").await;
    let (error, _) = recv_until(bob, |s| s.name() == "message" && s.attr("type") == Some("error")).await;
    assert_eq!(condition(&error).as_deref(), Some("forbidden"));
    // Voice granted: Bob speaks.
    let reply = admin(alice, &lounge, "<item nick='Bob' role='participant'/>").await;
    assert_eq!(reply.attr("type"), Some("result"));
    let (voiced, _) =
        recv_until(bob, |s| s.name() == "presence" && s.attr("from") == Some(&format!("{lounge}/Bob"))).await;
    assert_eq!(item(&voiced).attr("role"), Some("participant"));
    say(bob, &lounge, "now I can").await;
    assert_eq!(body(&recv_groupchat(alice, &lounge).await).as_deref(), Some("now I can"));
    // Voice revoked.
    admin(alice, &lounge, "<item nick='Bob' role='visitor'/>").await;
    say(bob, &lounge, "again?").await;
    let (error, _) = recv_until(bob, |s| s.name() == "message" && s.attr("type") == Some("error")).await;
    assert_eq!(condition(&error).as_deref(), Some("forbidden"));
    // A voice request reaches the moderator as a form; approving it gives voice.
    let request = |extra: &str| {
        format!(
            "<message to='{lounge}'><x xmlns='{DATA}' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>\
             <field var='muc#role'><value>participant</value></field>{extra}</x></message>"
        )
    };
    bob.send(&request("")).await;
    let (form, _) = recv_until(alice, |s| s.name() == "message" && s.has_child("x", DATA)).await;
    let fields = form.get_child("x", DATA).expect("form");
    let nick = fields
        .children()
        .find(|f| f.attr("var") == Some("muc#roomnick"))
        .and_then(|f| f.get_child("value", DATA))
        .map(|v| v.text());
    assert_eq!(nick.as_deref(), Some("Bob"));
    alice
        .send(&request("<field var='muc#roomnick'><value>Bob</value></field><field var='muc#request_allow'><value>true</value></field>"))
        .await;
    let (voiced, _) =
        recv_until(bob, |s| s.name() == "presence" && s.attr("from") == Some(&format!("{lounge}/Bob"))).await;
    assert_eq!(item(&voiced).attr("role"), Some("participant"));

    // A channel: public, moderated, persistent; only owners and admins post.
    let news = room("news");
    create(
        alice,
        &news,
        "Editor",
        &[
            ("muc#roomconfig_persistentroom", "1"),
            ("muc#roomconfig_publicroom", "1"),
            ("muc#roomconfig_moderatedroom", "1"),
        ],
    )
    .await;
    admin(alice, &news, "<item jid='carol@localhost' affiliation='admin'/>").await;
    join(bob, &news, "Reader").await;
    let joined = join(carol, &news, "Carol").await;
    assert_eq!(item(&self_presence(&joined)).attr("role"), Some("moderator"));
    say(carol, &news, "headline").await;
    assert_eq!(body(&recv_groupchat(bob, &news).await).as_deref(), Some("headline"));
    say(bob, &news, "comment").await;
    let (error, _) = recv_until(bob, |s| s.name() == "message" && s.attr("type") == Some("error")).await;
    assert_eq!(condition(&error).as_deref(), Some("forbidden"));
}

/// A room MAM query: the bodies and the `<fin/>`.
async fn room_archive(client: &mut Client, room: &str, set: &str) -> (Vec<String>, Element) {
    let (reply, others) = client
        .iq(&format!("<iq type='set' id='{{id}}' to='{room}'><query xmlns='{MAM}' queryid='q'><set xmlns='{RSM}'>{set}</set></query></iq>"))
        .await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let bodies = others
        .iter()
        .filter_map(|m| m.get_child("result", MAM))
        .filter_map(|r| r.get_child("forwarded", "urn:xmpp:forward:0"))
        .filter_map(|f| f.get_child("message", CLIENT))
        .filter_map(body)
        .collect();
    (bodies, reply.get_child("fin", MAM).cloned().expect("fin"))
}

#[tokio::test]
async fn persistent_rooms_survive_a_restart_with_their_archive() {
    let mut server = TestServer::start().await;
    let mut clients = users(&server, &["alice", "bob", "carol"]).await;
    {
        let [alice, ..] = clients.as_mut_slice() else { unreachable!() };
        let club = room("club");
        create(
            alice,
            &club,
            "Alice",
            &[("muc#roomconfig_persistentroom", "1"), ("muc#roomconfig_roomname", "The Club")],
        )
        .await;
        admin(
            alice,
            &club,
            "<item jid='bob@localhost' affiliation='member'/><item jid='carol@localhost' affiliation='outcast'/>",
        )
        .await;
        alice.send(&format!("<message to='{club}' type='groupchat'><subject>Rules</subject></message>")).await;
        recv_until(alice, is_subject).await;
        for text in ["a", "b", "c", "d", "e"] {
            say(alice, &club, text).await;
            recv_groupchat(alice, &club).await;
        }
        // The archive, page by page (RSM max 2).
        let (page, fin) = room_archive(alice, &club, "<max>2</max>").await;
        assert_eq!(page, ["a", "b"]);
        let last = fin.get_child("set", RSM).and_then(|s| s.get_child("last", RSM)).map(|l| l.text()).expect("last");
        let (page, _) = room_archive(alice, &club, &format!("<max>2</max><after>{last}</after>")).await;
        assert_eq!(page, ["c", "d"]);
        let (page, fin) = room_archive(alice, &club, "<max>2</max><before/>").await;
        assert_eq!(page, ["d", "e"]);
        assert_ne!(fin.attr("complete"), Some("true"));
        alice.send(&format!("<presence to='{club}/Alice' type='unavailable'/>")).await;
        recv_until(alice, |s| s.name() == "presence" && s.attr("type") == Some("unavailable")).await;
    }
    drop(clients);
    server.restart().await;
    let mut alice = server.login("alice", "r").await;
    let mut bob = server.login("bob", "r").await;
    let mut carol = server.login("carol", "r").await;
    let club = room("club");
    // Configuration, affiliations and subject survived.
    let joined = join(&mut bob, &club, "Bob").await;
    assert_eq!(item(&self_presence(&joined)).attr("affiliation"), Some("member"));
    let subject = joined.iter().find(|s| is_subject(s)).expect("subject");
    assert_eq!(subject.get_child("subject", CLIENT).map(|s| s.text()).as_deref(), Some("Rules"));
    let refused = try_join(&mut carol, &club, "Carol", "").await.expect_err("still banned");
    assert_eq!(condition(&refused).as_deref(), Some("forbidden"));
    let joined = join(&mut alice, &club, "Alice").await;
    assert_eq!(item(&self_presence(&joined)).attr("affiliation"), Some("owner"));
    let (info, _) = bob
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='{club}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ))
        .await;
    let query = info.get_child("query", "http://jabber.org/protocol/disco#info").expect("info");
    assert!(query.children().any(|c| c.attr("name") == Some("The Club")));
    assert!(query.children().any(|c| c.attr("var") == Some("muc_persistent")));
    // And the archive: the outcast may not read it.
    let (page, _) = room_archive(&mut bob, &club, "<max>10</max>").await;
    assert_eq!(page, ["a", "b", "c", "d", "e"]);
    let (reply, _) = carol.iq(&format!("<iq type='set' id='{{id}}' to='{club}'><query xmlns='{MAM}'/></iq>")).await;
    assert_eq!(condition(&reply).as_deref(), Some("forbidden"));

    // Destroyed: occupants are told, the room is gone, also after a restart.
    let (reply, _) = alice
        .iq(&format!("<iq type='set' id='{{id}}' to='{club}'><query xmlns='{OWNER}'><destroy jid='{}'><reason>moved</reason></destroy></query></iq>", room("club2")))
        .await;
    assert_eq!(reply.attr("type"), Some("result"));
    let (gone, _) = recv_until(&mut bob, |s| s.name() == "presence" && s.attr("type") == Some("unavailable")).await;
    let destroy = gone.get_child("x", USER).and_then(|x| x.get_child("destroy", USER)).expect("destroy");
    assert_eq!(destroy.attr("jid"), Some(room("club2").as_str()));
    drop((alice, bob, carol));
    server.restart().await;
    let mut carol = server.login("carol", "r").await;
    let (info, _) = carol
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='{club}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ))
        .await;
    assert_eq!(condition(&info).as_deref(), Some("item-not-found"));
}

#[tokio::test]
async fn moderators_retract_messages() {
    let server = TestServer::start().await;
    let mut clients = users(&server, &["alice", "bob"]).await;
    let [alice, bob] = clients.as_mut_slice() else { unreachable!() };
    let lounge = room("moderated");
    create(alice, &lounge, "Alice", &[]).await;
    join(bob, &lounge, "Bob").await;
    say(bob, &lounge, "spam").await;
    let message = recv_groupchat(alice, &lounge).await;
    let id = message.get_child("stanza-id", SID).and_then(|s| s.attr("id")).expect("stanza id").to_owned();
    let request = format!(
        "<iq type='set' id='{{id}}' to='{lounge}'><moderate xmlns='urn:xmpp:message-moderate:1' id='{id}'>\
         <retract xmlns='urn:xmpp:message-retract:1'/><reason>spam</reason></moderate></iq>"
    );
    let (reply, _) = bob.iq(&request).await;
    assert_eq!(condition(&reply).as_deref(), Some("forbidden"), "only moderators");
    let (reply, _) = alice.iq(&request).await;
    assert_eq!(reply.attr("type"), Some("result"));
    let (retraction, _) =
        recv_until(bob, |s| s.name() == "message" && s.has_child("retract", "urn:xmpp:message-retract:1")).await;
    let retract = retraction.get_child("retract", "urn:xmpp:message-retract:1").expect("retract");
    assert_eq!(retract.attr("id"), Some(id.as_str()));
    assert!(retract.has_child("moderated", "urn:xmpp:message-moderate:1"));
    // Gone from the history new occupants get.
    server.add_user("carol", "pw").await;
    let mut carol = server.login("carol", "r").await;
    // (A period beyond the clock's past is everything, not a crash.)
    let joined =
        try_join(&mut carol, &lounge, "Carol", "<history seconds='18446744073709551615'/>").await.expect("joins");
    assert!(!joined.iter().any(|s| body(s).as_deref() == Some("spam")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occupants_on_other_servers_join_and_talk() {
    use common::dns::TestDns;
    use common::federation::{Publish, instance};
    common::init_logging();
    let dns = TestDns::start().await;
    let a = instance("a.test", &dns, None, Publish::StartTls, |_| {}).await;
    let b = instance("b.test", &dns, None, Publish::StartTls, |_| {}).await;
    // The service domain is published like any server domain (dialback verifies it).
    dns.server("conference.a.test", a.s2s_addr().port(), None);
    a.add_user_at("alice", "a.test", "pw").await;
    b.add_user_at("bob", "b.test", "pw").await;
    let mut alice = Client::login_at(a.addr(), "alice", "a.test", "pw", Some("r")).await;
    let mut bob = Client::login_at(b.addr(), "bob", "b.test", "pw", Some("r")).await;
    let hall = "hall@conference.a.test";
    create(&mut alice, hall, "Alice", &[]).await;
    let joined = join(&mut bob, hall, "Bob").await;
    assert!(joined.iter().any(|s| s.name() == "presence" && s.attr("from") == Some("hall@conference.a.test/Alice")));
    let (seen, _) =
        recv_until(&mut alice, |s| s.name() == "presence" && s.attr("from") == Some("hall@conference.a.test/Bob"))
            .await;
    assert_eq!(item(&seen).attr("jid"), Some("bob@b.test/r"));
    say(&mut bob, hall, "from afar").await;
    assert_eq!(body(&recv_groupchat(&mut alice, hall).await).as_deref(), Some("from afar"));
    assert_eq!(body(&recv_groupchat(&mut bob, hall).await).as_deref(), Some("from afar"));
    alice.send(&format!("<message to='{hall}/Bob' type='chat'><body>hi bob</body></message>")).await;
    let (pm, _) = recv_until(&mut bob, |s| s.name() == "message" && s.attr("type") == Some("chat")).await;
    assert_eq!(pm.attr("from"), Some("hall@conference.a.test/Alice"));
    let (pong, _) =
        bob.iq(&format!("<iq type='get' id='{{id}}' to='{hall}/Bob'><ping xmlns='urn:xmpp:ping'/></iq>")).await;
    assert_eq!(pong.attr("type"), Some("result"), "self-ping across servers");
}

#[tokio::test]
async fn registered_nicknames_are_reserved() {
    const REGISTER: &str = "jabber:iq:register";
    let mut server = TestServer::start().await;
    let mut clients = users(&server, &["alice", "bob", "carol"]).await;
    let [alice, bob, carol] = clients.as_mut_slice() else { unreachable!() };
    let guild = room("guild");
    create(alice, &guild, "Alice", &[("muc#roomconfig_persistentroom", "1")]).await;
    let (form, _) = bob.iq(&format!("<iq type='get' id='{{id}}' to='{guild}'><query xmlns='{REGISTER}'/></iq>")).await;
    let x = form.get_child("query", REGISTER).and_then(|q| q.get_child("x", DATA)).expect("registration form");
    assert!(x.children().any(|f| f.attr("var") == Some("muc#register_roomnick")));
    let submit = |nick: &str| {
        format!(
            "<iq type='set' id='{{id}}' to='{guild}'><query xmlns='{REGISTER}'><x xmlns='{DATA}' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value></field>\
             <field var='muc#register_roomnick'><value>{nick}</value></field></x></query></iq>"
        )
    };
    let (reply, _) = bob.iq(&submit("Robin")).await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let (reply, _) = carol.iq(&submit("Robin")).await;
    assert_eq!(condition(&reply).as_deref(), Some("conflict"));

    // The room's avatar (XEP-0486): set by the owner, announced to occupants.
    let vcard = "<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>aGVsbG8=</BINVAL></PHOTO></vCard>";
    let (reply, _) = carol.iq(&format!("<iq type='set' id='{{id}}' to='{guild}'>{vcard}</iq>")).await;
    assert_eq!(condition(&reply).as_deref(), Some("forbidden"), "only owners");
    let (reply, before) = alice.iq(&format!("<iq type='set' id='{{id}}' to='{guild}'>{vcard}</iq>")).await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let update = before
        .iter()
        .find(|s| s.name() == "presence" && s.attr("from") == Some(guild.as_str()))
        .expect("room presence");
    let hash = update.get_child("x", "vcard-temp:x:update").and_then(|x| x.get_child("photo", "vcard-temp:x:update"));
    // SHA-1 of "hello".
    assert_eq!(hash.map(|h| h.text()).as_deref(), Some("aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"));
    drop(clients);
    server.restart().await;
    let mut bob = server.login("bob", "r").await;
    let mut carol = server.login("carol", "r").await;
    // Survives a restart: Bob is a member; nobody else may take his nickname.
    let refused = try_join(&mut carol, &guild, "Robin", "").await.expect_err("reserved");
    assert_eq!(condition(&refused).as_deref(), Some("conflict"));
    let (info, _) = bob
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='{guild}'><query xmlns='http://jabber.org/protocol/disco#info' node='x-roomuser-item'/></iq>"
        ))
        .await;
    let identity = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .and_then(|q| q.get_child("identity", "http://jabber.org/protocol/disco#info"));
    assert_eq!(identity.and_then(|i| i.attr("name")), Some("Robin"));
    let joined = join(&mut bob, &guild, "Robin").await;
    assert_eq!(item(&self_presence(&joined)).attr("affiliation"), Some("member"));
    let (card, _) = bob.iq(&format!("<iq type='get' id='{{id}}' to='{guild}'><vCard xmlns='vcard-temp'/></iq>")).await;
    let binval = card
        .get_child("vCard", "vcard-temp")
        .and_then(|v| v.get_child("PHOTO", "vcard-temp"))
        .and_then(|p| p.get_child("BINVAL", "vcard-temp"));
    assert_eq!(binval.map(|b| b.text()).as_deref(), Some("aGVsbG8="), "the vCard survived the restart");
    // Unregistering frees the nickname.
    let (reply, _) = bob
        .iq(&format!("<iq type='set' id='{{id}}' to='{guild}'><query xmlns='{REGISTER}'><remove/></query></iq>"))
        .await;
    assert_eq!(reply.attr("type"), Some("result"));
    let (reply, _) = carol.iq(&submit("Robin")).await;
    assert_eq!(condition(&reply).as_deref(), Some("conflict"), "Bob still uses it in the room");
}

const RETRACT: &str = "urn:xmpp:message-retract:1";
const MODERATE: &str = "urn:xmpp:message-moderate:1";

/// The room's archived messages (result id, forwarded message) matching the MAM
/// form `fields`.
async fn archived(client: &mut Client, room: &str, fields: &str) -> Vec<(String, Element)> {
    let (reply, others) = client
        .iq(&format!(
            "<iq type='set' id='{{id}}' to='{room}'><query xmlns='{MAM}'><x xmlns='{DATA}' type='submit'>\
             <field var='FORM_TYPE'><value>{MAM}</value></field>{fields}</x></query></iq>"
        ))
        .await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    others
        .iter()
        .filter_map(|m| m.get_child("result", MAM))
        .filter_map(|r| {
            let forwarded = r.get_child("forwarded", "urn:xmpp:forward:0")?;
            Some((r.attr("id")?.to_owned(), forwarded.get_child("message", CLIENT)?.clone()))
        })
        .collect()
}

fn search(word: &str) -> String {
    format!("<field var='{{urn:xmpp:fulltext:0}}fulltext'><value>{word}</value></field>")
}

fn stanza_id(message: &Element) -> String {
    message.get_child("stanza-id", SID).and_then(|s| s.attr("id")).expect("stanza id").to_owned()
}

#[tokio::test]
async fn senders_retract_their_messages_and_the_archive_keeps_tombstones() {
    let server = TestServer::start().await;
    let mut clients = users(&server, &["alice", "bob", "carol"]).await;
    let [alice, bob, carol] = clients.as_mut_slice() else { unreachable!() };
    let lounge = room("retractions");
    create(alice, &lounge, "Alice", &[("muc#roomconfig_persistentroom", "1")]).await;
    join(bob, &lounge, "Bob").await;
    join(carol, &lounge, "Carol").await;
    say(bob, &lounge, "oopsword").await;
    let id = stanza_id(&recv_groupchat(carol, &lounge).await);
    recv_groupchat(alice, &lounge).await;
    recv_groupchat(bob, &lounge).await;
    let retraction = |id: &str| {
        format!(
            "<message to='{lounge}' type='groupchat' id='r-{id}'><retract xmlns='{RETRACT}' id='{id}'/>\
             <fallback xmlns='urn:xmpp:fallback:0' for='{RETRACT}'/><body>retracted</body></message>"
        )
    };

    // Carol did not send it: refused, and nobody hears of it.
    carol.send(&retraction(&id)).await;
    let (error, _) = recv_until(carol, |s| s.name() == "message" && s.attr("type") == Some("error")).await;
    assert_eq!(condition(&error).as_deref(), Some("forbidden"));
    // Bob did.
    bob.send(&retraction(&id)).await;
    let (seen, skipped) = recv_until(alice, |s| s.name() == "message" && s.has_child("retract", RETRACT)).await;
    assert!(!skipped.iter().any(|s| s.attr("from") == Some(format!("{lounge}/Carol").as_str())));
    assert_eq!(seen.attr("from"), Some(format!("{lounge}/Bob").as_str()));
    assert_eq!(seen.get_child("retract", RETRACT).and_then(|r| r.attr("id")), Some(id.as_str()));
    recv_until(carol, |s| s.name() == "message" && s.has_child("retract", RETRACT)).await;

    // The archive holds a tombstone in the original's place; search no longer finds it.
    let all = archived(alice, &lounge, "").await;
    let (_, tombstone) = all.iter().find(|(result, _)| *result == id).expect("still archived");
    assert!(tombstone.has_child("retracted", RETRACT), "{tombstone:?}");
    assert_eq!(body(tombstone), None);
    assert_eq!(tombstone.attr("from"), Some(format!("{lounge}/Bob").as_str()));
    assert!(occupant_id(tombstone).is_some());
    assert!(!all.iter().any(|(_, m)| body(m).as_deref() == Some("oopsword")));
    assert!(archived(alice, &lounge, &search("oopsword")).await.is_empty());

    // Moderation leaves a tombstone naming the moderator.
    say(bob, &lounge, "spamword").await;
    let id = stanza_id(&recv_groupchat(alice, &lounge).await);
    assert_eq!(archived(alice, &lounge, &search("spamword")).await.len(), 1);
    let (reply, _) = alice
        .iq(&format!(
            "<iq type='set' id='{{id}}' to='{lounge}'><moderate xmlns='{MODERATE}' id='{id}'>\
             <retract xmlns='{RETRACT}'/><reason>spam</reason></moderate></iq>"
        ))
        .await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let all = archived(alice, &lounge, "").await;
    let (_, tombstone) = all.iter().find(|(result, _)| *result == id).expect("still archived");
    let retracted = tombstone.get_child("retracted", RETRACT).expect("tombstone");
    assert!(retracted.attr("stamp").is_some());
    let moderated = retracted.get_child("moderated", MODERATE).expect("moderated");
    assert_eq!(moderated.attr("by"), Some(format!("{lounge}/Alice").as_str()));
    assert_eq!(retracted.get_child("reason", RETRACT).map(|r| r.text()).as_deref(), Some("spam"));
    assert_eq!(body(tombstone), None);
    assert!(archived(alice, &lounge, &search("spamword")).await.is_empty());
}

/// The service's room list with RSM `set`: the room JIDs and the result `<set/>`.
async fn room_list(client: &mut Client, set: &str) -> (Vec<String>, Element) {
    let (reply, _) = client
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='{SERVICE}'><query xmlns='http://jabber.org/protocol/disco#items'>\
             <set xmlns='{RSM}'>{set}</set></query></iq>"
        ))
        .await;
    let query = reply.get_child("query", "http://jabber.org/protocol/disco#items").expect("items");
    let jids =
        query.children().filter(|c| c.name() == "item").filter_map(|c| c.attr("jid")).map(str::to_owned).collect();
    (jids, query.get_child("set", RSM).cloned().expect("rsm set"))
}

fn rsm_text(set: &Element, name: &str) -> Option<String> {
    set.get_child(name, RSM).map(|e| e.text())
}

#[tokio::test]
async fn the_room_list_pages_with_rsm() {
    let server = TestServer::start().await;
    let mut clients = users(&server, &["alice", "bob"]).await;
    let [alice, bob] = clients.as_mut_slice() else { unreachable!() };
    let names = ["r1", "r2", "r3", "r4", "r5"];
    for name in names {
        create(alice, &room(name), "Alice", &[]).await;
    }
    let all: Vec<String> = names.iter().map(|n| room(n)).collect();
    let (count_only, set) = room_list(bob, "<max>0</max>").await;
    assert!(count_only.is_empty());
    assert_eq!(rsm_text(&set, "count").as_deref(), Some("5"));
    let (page, set) = room_list(bob, "<max>2</max>").await;
    assert_eq!(page, all[..2]);
    assert_eq!(rsm_text(&set, "first").as_deref(), Some(all[0].as_str()));
    assert_eq!(set.get_child("first", RSM).and_then(|f| f.attr("index")), Some("0"));
    let last = rsm_text(&set, "last").expect("last");
    let (page, set) = room_list(bob, &format!("<max>2</max><after>{last}</after>")).await;
    assert_eq!(page, all[2..4]);
    let last = rsm_text(&set, "last").expect("last");
    let (page, _) = room_list(bob, &format!("<max>2</max><after>{last}</after>")).await;
    assert_eq!(page, all[4..]);
    let (page, set) = room_list(bob, "<max>2</max><before/>").await;
    assert_eq!(page, all[3..]);
    let first = rsm_text(&set, "first").expect("first");
    let (page, _) = room_list(bob, &format!("<max>2</max><before>{first}</before>")).await;
    assert_eq!(page, all[1..3]);
    let (reply, _) = bob
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='{SERVICE}'><query xmlns='http://jabber.org/protocol/disco#items'>\
             <set xmlns='{RSM}'><max>2</max><after>nowhere@{SERVICE}</after></set></query></iq>"
        ))
        .await;
    assert_eq!(condition(&reply).as_deref(), Some("item-not-found"));
}

const HATS: &str = "urn:xmpp:hats:0";
const COMMANDS: &str = "http://jabber.org/protocol/commands";

/// The hats (uri, title) in an occupant presence.
fn hats(presence: &Element) -> Vec<(String, String)> {
    presence
        .get_child("hats", HATS)
        .map(|h| {
            h.children()
                .filter(|c| c.is("hat", HATS))
                .map(|c| (c.attr("uri").unwrap_or_default().to_owned(), c.attr("title").unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn presence_of<'a>(stanzas: &'a [Element], from: &str) -> &'a Element {
    stanzas.iter().find(|s| s.name() == "presence" && s.attr("from") == Some(from)).expect("presence")
}

#[tokio::test]
async fn hats_are_assigned_by_admins_worn_in_presence_and_kept() {
    let mut server = TestServer::start().await;
    let mut clients = users(&server, &["alice", "bob", "carol"]).await;
    let hall = room("hall");
    let hat = "http://example.org/hats#host";
    let submit = format!(
        "<x xmlns='{DATA}' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:hats:commands</value></field>\
         <field var='accountjid'><value>bob@localhost</value></field><field var='hat'><value>{hat}</value></field>\
         <field var='title'><value>Host</value></field></x>"
    );
    {
        let [alice, bob, carol] = clients.as_mut_slice() else { unreachable!() };
        create(alice, &hall, "Alice", &[("muc#roomconfig_persistentroom", "1")]).await;
        join(carol, &hall, "Carol").await;
        let (refused, _) = carol
            .iq(&format!(
                "<iq type='set' id='{{id}}' to='{hall}'><command xmlns='{COMMANDS}' node='urn:xmpp:hats:commands:don'>{submit}</command></iq>"
            ))
            .await;
        assert_eq!(condition(&refused).as_deref(), Some("forbidden"), "only owners and admins");
        // The XEP's flow: execute, get the form, submit it in the same session.
        let (form, _) = alice
            .iq(&format!(
                "<iq type='set' id='{{id}}' to='{hall}'><command xmlns='{COMMANDS}' node='urn:xmpp:hats:commands:don' action='execute'/></iq>"
            ))
            .await;
        let command = form.get_child("command", COMMANDS).expect("command");
        assert_eq!(command.attr("status"), Some("executing"));
        assert!(
            command.get_child("x", DATA).is_some_and(|x| x.children().any(|f| f.attr("var") == Some("accountjid")))
        );
        let session = command.attr("sessionid").expect("session id");
        let (done, _) = alice
            .iq(&format!(
                "<iq type='set' id='{{id}}' to='{hall}'><command xmlns='{COMMANDS}' node='urn:xmpp:hats:commands:don' sessionid='{session}'>{submit}</command></iq>"
            ))
            .await;
        assert_eq!(done.get_child("command", COMMANDS).and_then(|c| c.attr("status")), Some("completed"), "{done:?}");
        // Bob joins wearing it; a hat Bob claims himself is not worn.
        bob.send(&format!(
            "<presence to='{hall}/Bob'><x xmlns='{MUC}'/><hats xmlns='{HATS}'><hat uri='urn:fake' title='Fake'/></hats></presence>"
        ))
        .await;
        let (seen, _) =
            recv_until(carol, |s| s.name() == "presence" && s.attr("from") == Some(format!("{hall}/Bob").as_str()))
                .await;
        assert_eq!(hats(&seen), [(hat.to_owned(), "Host".to_owned())]);
        let (seen, _) =
            recv_until(alice, |s| s.name() == "presence" && s.attr("from") == Some(format!("{hall}/Bob").as_str()))
                .await;
        assert_eq!(hats(&seen), [(hat.to_owned(), "Host".to_owned())]);
    }
    drop(clients);
    server.restart().await;
    let mut bob = server.login("bob", "r").await;
    let mut carol = server.login("carol", "r").await;
    join(&mut bob, &hall, "Bob").await;
    let joined = join(&mut carol, &hall, "Carol").await;
    assert_eq!(hats(presence_of(&joined, &format!("{hall}/Bob"))), [(hat.to_owned(), "Host".to_owned())]);
    assert!(hats(presence_of(&joined, &format!("{hall}/Carol"))).is_empty());
}

const PUSH: &str = "urn:xmpp:push:0";

/// The next push notification `client` gets from `room`: the message count, after
/// answering the publish with `answer` ("result", or an error's XML).
async fn room_push(client: &mut Client, room: &str, answer: &str) -> String {
    let (publish, _) = recv_until(client, |s| {
        s.name() == "iq"
            && s.attr("from") == Some(room)
            && s.get_child("pubsub", "http://jabber.org/protocol/pubsub").is_some()
    })
    .await;
    let id = publish.attr("id").expect("id");
    let reply = match answer {
        "result" => format!("<iq type='result' id='{id}' to='{room}'/>"),
        error => format!("<iq type='error' id='{id}' to='{room}'>{error}</iq>"),
    };
    client.send(&reply).await;
    let form = publish
        .get_child("pubsub", "http://jabber.org/protocol/pubsub")
        .and_then(|p| p.get_child("publish", "http://jabber.org/protocol/pubsub"))
        .and_then(|p| p.get_child("item", "http://jabber.org/protocol/pubsub"))
        .and_then(|i| i.get_child("notification", PUSH))
        .and_then(|n| n.get_child("x", DATA))
        .expect("summary form");
    let count =
        form.children().find(|f| f.attr("var") == Some("message-count")).and_then(|f| f.get_child("value", DATA));
    assert!(
        form.children().all(|f| f.attr("var") != Some("last-message-body")),
        "the room tells nothing of the message"
    );
    count.map(|v| v.text()).expect("message-count")
}

/// Rooms accept push registrations from members (XEP-0357 with the room as the user's
/// server, as Conversations uses it with its own full JID): a member out of the room
/// is told of new messages, an outsider may not register, a refusal ends the
/// registration, and registrations of persistent rooms survive a restart.
#[tokio::test]
async fn members_out_of_the_room_get_push_notifications() {
    let mut server = TestServer::start().await;
    let mut clients = users(&server, &["alice", "bob", "carol"]).await;
    let hall = room("hall");
    {
        let [alice, bob, carol] = clients.as_mut_slice() else { unreachable!() };
        create(alice, &hall, "Alice", &[("muc#roomconfig_persistentroom", "1")]).await;
        let (info, _) = bob
            .iq(&format!(
                "<iq type='get' id='{{id}}' to='{hall}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
            ))
            .await;
        assert!(info.children().flat_map(|q| q.children()).any(|f| f.attr("var") == Some(PUSH)), "{info:?}");
        let enable = |jid: &str| {
            format!("<iq type='set' id='{{id}}' to='{hall}'><enable xmlns='{PUSH}' jid='{jid}' node='hall-node'/></iq>")
        };
        let (refused, _) = carol.iq(&enable("carol@localhost/r")).await;
        assert_eq!(condition(&refused).as_deref(), Some("forbidden"), "not an occupant, not a member");
        join(bob, &hall, "Bob").await;
        let (enabled, _) = bob.iq(&enable("bob@localhost/r")).await;
        assert_eq!(enabled.attr("type"), Some("result"), "{enabled:?}");
        // While bob is in the room, nothing is pushed.
        say(alice, &hall, "hello").await;
        recv_groupchat(bob, &hall).await;
        bob.send(&format!("<presence to='{hall}/Bob' type='unavailable'/>")).await;
        recv_until(bob, |s| s.name() == "presence" && s.attr("type") == Some("unavailable")).await;
        say(alice, &hall, "one").await;
        assert_eq!(room_push(bob, &hall, "result").await, "1");
        say(alice, &hall, "two").await;
        assert_eq!(room_push(bob, &hall, "result").await, "2");
    }
    drop(clients);
    server.restart().await;
    let mut alice = server.login("alice", "r").await;
    let mut bob = server.login("bob", "r").await;
    join(&mut alice, &hall, "Alice").await;
    say(&mut alice, &hall, "after the restart").await;
    let gone = "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>";
    assert_eq!(room_push(&mut bob, &hall, gone).await, "1", "the registration survived the restart");
    // Refused for good: the registration goes (from memory first, then from the table,
    // which is what can be watched here), and no more notifications come.
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let rows: Vec<Count> = server
            .db()
            .run(|c| {
                use diesel::RunQueryDsl;
                diesel::sql_query("SELECT COUNT(*) AS n FROM muc_push").load(c)
            })
            .await
            .expect("count");
        if rows.first().is_some_and(|r| r.n == 0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the refused registration was not removed");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    say(&mut alice, &hall, "anyone?").await;
    recv_groupchat(&mut alice, &hall).await;
    let extra = bob.sync().await;
    assert!(extra.iter().all(|s| s.attr("from") != Some(hall.as_str())), "no push after a refusal: {extra:?}");
}

/// A client joining and leaving a room 300 times as fast as it can: the room sees each
/// join and leave in order, ends with the occupants it should have, and goes on
/// carrying messages; the other occupant is served throughout.
#[tokio::test]
async fn a_join_and_leave_flood_leaves_the_room_consistent() {
    let server = TestServer::start().await;
    let mut clients = users(&server, &["alice", "bob", "carol"]).await;
    let [alice, bob, carol] = clients.as_mut_slice() else { unreachable!() };
    let hall = room("hall");
    create(alice, &hall, "Alice", &[]).await;
    let flood: String = (0..300)
        .map(|_| {
            format!(
                "<presence to='{hall}/Bob'><x xmlns='{MUC}'/></presence><presence to='{hall}/Bob' type='unavailable'/>"
            )
        })
        .collect();
    bob.send(&flood).await;
    // Alice sees three hundred joins and leaves, alternating.
    let from_bob = format!("{hall}/Bob");
    let mut seen = Vec::new();
    while seen.len() < 600 {
        let stanza = alice.recv().await;
        if stanza.name() == "presence" && stanza.attr("from") == Some(from_bob.as_str()) {
            seen.push(stanza.attr("type") == Some("unavailable"));
        }
    }
    assert!(seen.iter().enumerate().all(|(i, left)| *left == (i % 2 == 1)), "joins and leaves alternate");
    // A newcomer finds only Alice, and the room still carries messages.
    let joined = join(carol, &hall, "Carol").await;
    let others: Vec<&str> = joined
        .iter()
        .filter(|s| s.name() == "presence" && s.attr("type").is_none())
        .filter_map(|s| s.attr("from"))
        .filter(|from| *from != format!("{hall}/Carol"))
        .collect();
    assert_eq!(others, [format!("{hall}/Alice").as_str()]);
    carol.send(&format!("<message to='{hall}' type='groupchat'><body>still here</body></message>")).await;
    let (message, _) = recv_until(alice, |s| s.name() == "message" && body(s).is_some()).await;
    assert_eq!(body(&message).as_deref(), Some("still here"));
}

//! Ad-hoc commands (XEP-0050) and the service administration commands (XEP-0133) over
//! real sockets: discovery per requester, multi-step sessions, the session errors of
//! XEP-0050 §4.6, and commands refused to non-administrators.

mod common;

use common::{HOST, TestServer};
use minidom::Element;

const COMMANDS: &str = "http://jabber.org/protocol/commands";
const ONLINE_NUM: &str = "http://jabber.org/protocol/admin#get-online-users-num";
const ONLINE_LIST: &str = "http://jabber.org/protocol/admin#get-online-users-list";
const ANNOUNCE: &str = "http://jabber.org/protocol/admin#announce";

async fn server() -> TestServer {
    let server = TestServer::start_with(|c| c.server.admins = vec!["admin@localhost".into()]).await;
    server.add_user("admin", "pw").await;
    server.add_user("bob", "pw").await;
    server
}

fn command_of(iq: &Element) -> &Element {
    iq.get_child("command", COMMANDS).unwrap_or_else(|| panic!("no command in {iq:?}"))
}

fn field_values(x: &Element, var: &str) -> Vec<String> {
    x.children()
        .filter(|f| f.name() == "field" && f.attr("var") == Some(var))
        .flat_map(|f| f.children().filter(|v| v.name() == "value").map(|v| v.text()))
        .collect()
}

fn error_conditions(iq: &Element) -> Vec<String> {
    let error = iq.get_child("error", "jabber:client").unwrap_or_else(|| panic!("no error in {iq:?}"));
    error.children().map(|c| c.name().to_owned()).collect()
}

async fn execute(client: &mut common::Client, node: &str, extra: &str) -> Element {
    let (reply, _) = client
        .iq(&format!("<iq type='set' id='{{id}}' to='{HOST}'><command xmlns='{COMMANDS}' node='{node}' {extra}/></iq>"))
        .await;
    reply
}

async fn listed_commands(client: &mut common::Client) -> Vec<String> {
    let (reply, _) = client
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='{HOST}'><query xmlns='http://jabber.org/protocol/disco#items' node='{COMMANDS}'/></iq>"
        ))
        .await;
    let query = reply.get_child("query", "http://jabber.org/protocol/disco#items").expect("items");
    assert_eq!(query.attr("node"), Some(COMMANDS));
    query.children().filter_map(|i| i.attr("node").map(str::to_owned)).collect()
}

#[tokio::test]
async fn administrators_see_and_run_commands_others_are_refused() {
    let server = server().await;
    let mut admin = server.login("admin", "laptop").await;
    let mut bob = server.login("bob", "phone").await;
    assert!(admin.server_features().await.iter().any(|f| f == COMMANDS));

    let commands = listed_commands(&mut admin).await;
    for node in [ONLINE_NUM, ONLINE_LIST, ANNOUNCE] {
        assert!(commands.iter().any(|c| c == node), "{node} missing from {commands:?}");
    }
    assert!(listed_commands(&mut bob).await.is_empty(), "a user sees no admin commands");

    let refused = execute(&mut bob, ONLINE_NUM, "action='execute'").await;
    assert_eq!(refused.attr("type"), Some("error"));
    assert!(error_conditions(&refused).contains(&"forbidden".to_owned()));

    let done = execute(&mut admin, ONLINE_NUM, "action='execute'").await;
    let command = command_of(&done);
    assert_eq!(command.attr("status"), Some("completed"));
    let x = command.get_child("x", "jabber:x:data").expect("result form");
    assert_eq!(x.attr("type"), Some("result"));
    assert_eq!(field_values(x, "onlineusersnum"), ["2"]);
}

#[tokio::test]
async fn command_nodes_answer_disco_info_only_to_those_who_may_run_them() {
    let server = server().await;
    let mut admin = server.login("admin", "laptop").await;
    let mut bob = server.login("bob", "phone").await;
    let query = format!(
        "<iq type='get' id='{{id}}' to='{HOST}'><query xmlns='http://jabber.org/protocol/disco#info' node='{ANNOUNCE}'/></iq>"
    );
    let (info, _) = admin.iq(&query).await;
    let identity = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .and_then(|q| q.get_child("identity", "http://jabber.org/protocol/disco#info"))
        .expect("identity");
    assert_eq!((identity.attr("category"), identity.attr("type")), (Some("automation"), Some("command-node")));
    let (hidden, _) = bob.iq(&query).await;
    assert!(error_conditions(&hidden).contains(&"item-not-found".to_owned()));
}

#[tokio::test]
async fn a_two_step_command_keeps_its_session() {
    let server = server().await;
    let mut admin = server.login("admin", "laptop").await;
    let _bob = server.login("bob", "phone").await;
    let first = execute(&mut admin, ONLINE_LIST, "action='execute'").await;
    let command = command_of(&first);
    assert_eq!(command.attr("status"), Some("executing"));
    let session = command.attr("sessionid").expect("a session").to_owned();
    let actions = command.get_child("actions", COMMANDS).expect("actions");
    assert_eq!(actions.attr("execute"), Some("complete"));
    let form = command.get_child("x", "jabber:x:data").expect("form");
    assert_eq!(form.attr("type"), Some("form"));

    let (done, _) = admin
        .iq(&format!(
            "<iq type='set' id='{{id}}' to='{HOST}'><command xmlns='{COMMANDS}' node='{ONLINE_LIST}' sessionid='{session}' action='complete'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/admin</value></field><field var='max_items'><value>25</value></field></x></command></iq>"
        ))
        .await;
    let command = command_of(&done);
    assert_eq!(command.attr("status"), Some("completed"));
    assert_eq!(command.attr("sessionid"), Some(session.as_str()));
    let x = command.get_child("x", "jabber:x:data").expect("result");
    assert_eq!(field_values(x, "onlineuserjids"), ["admin@localhost", "bob@localhost"]);

    // The session ended with the command: it cannot be used again.
    let again = execute(&mut admin, ONLINE_LIST, &format!("sessionid='{session}' action='complete'")).await;
    assert!(error_conditions(&again).contains(&"bad-sessionid".to_owned()), "{again:?}");
}

#[tokio::test]
async fn session_errors_follow_xep_0050() {
    let server = server().await;
    let mut admin = server.login("admin", "laptop").await;
    let unknown = execute(&mut admin, ONLINE_LIST, "sessionid='nope' action='next'").await;
    let conditions = error_conditions(&unknown);
    assert!(conditions.contains(&"bad-request".to_owned()) && conditions.contains(&"bad-sessionid".to_owned()));

    let malformed = execute(&mut admin, ONLINE_LIST, "action='jump'").await;
    assert!(error_conditions(&malformed).contains(&"malformed-action".to_owned()));

    let first = execute(&mut admin, ONLINE_LIST, "action='execute'").await;
    let session = command_of(&first).attr("sessionid").expect("session").to_owned();
    let prev = execute(&mut admin, ONLINE_LIST, &format!("sessionid='{session}' action='prev'")).await;
    assert!(error_conditions(&prev).contains(&"bad-action".to_owned()), "no earlier stage: {prev:?}");
    let next = execute(&mut admin, ONLINE_LIST, &format!("sessionid='{session}' action='next'")).await;
    assert!(error_conditions(&next).contains(&"bad-action".to_owned()), "only complete was offered: {next:?}");
    let cancel = execute(&mut admin, ONLINE_LIST, &format!("sessionid='{session}' action='cancel'")).await;
    assert_eq!(command_of(&cancel).attr("status"), Some("canceled"));
    let gone = execute(&mut admin, ONLINE_LIST, &format!("sessionid='{session}' action='complete'")).await;
    assert!(error_conditions(&gone).contains(&"bad-sessionid".to_owned()));

    // A user cannot drive an administrator's session either.
    let first = execute(&mut admin, ONLINE_LIST, "action='execute'").await;
    let session = command_of(&first).attr("sessionid").expect("session").to_owned();
    let mut other = server.login("admin", "desktop").await;
    let stolen = execute(&mut other, ONLINE_LIST, &format!("sessionid='{session}' action='complete'")).await;
    assert!(error_conditions(&stolen).contains(&"bad-sessionid".to_owned()), "sessions belong to one full JID");
}

#[tokio::test]
async fn an_announcement_reaches_every_online_session() {
    let server = server().await;
    let mut admin = server.login("admin", "laptop").await;
    let mut bob = server.login("bob", "phone").await;
    let first = execute(&mut admin, ANNOUNCE, "action='execute'").await;
    let session = command_of(&first).attr("sessionid").expect("session").to_owned();
    let (done, _) = admin
        .iq(&format!(
            "<iq type='set' id='{{id}}' to='{HOST}'><command xmlns='{COMMANDS}' node='{ANNOUNCE}' sessionid='{session}'><x xmlns='jabber:x:data' type='submit'><field var='subject'><value>Maintenance</value></field><field var='announcement'><value>Down at 10 &lt;UTC&gt;</value><value>for an hour</value></field></x></command></iq>"
        ))
        .await;
    assert_eq!(command_of(&done).attr("status"), Some("completed"));
    let headline = bob.recv_message().await;
    assert_eq!((headline.attr("type"), headline.attr("from")), (Some("headline"), Some(HOST)));
    assert_eq!(headline.get_child("subject", "jabber:client").map(|s| s.text()).as_deref(), Some("Maintenance"));
    assert_eq!(
        headline.get_child("body", "jabber:client").map(|s| s.text()).as_deref(),
        Some("Down at 10 <UTC>\nfor an hour")
    );
}

const ADMIN_FORM: &str = "http://jabber.org/protocol/admin";

fn admin_node(command: &str) -> String {
    format!("{ADMIN_FORM}#{command}")
}

/// Runs a command: `execute` (which must answer with a form), then `complete` with
/// `fields`; returns the final `<command/>`'s reply.
async fn run(client: &mut common::Client, command: &str, fields: &[(&str, &[&str])]) -> Element {
    let node = admin_node(command);
    let first = execute(client, &node, "action='execute'").await;
    let asked = command_of(&first);
    assert_eq!(asked.attr("status"), Some("executing"), "{first:?}");
    assert_eq!(asked.get_child("x", "jabber:x:data").and_then(|x| x.attr("type")), Some("form"));
    let session = asked.attr("sessionid").expect("session").to_owned();
    let fields: String = fields
        .iter()
        .map(|(var, values)| {
            let values: String = values.iter().map(|v| format!("<value>{v}</value>")).collect();
            format!("<field var='{var}'>{values}</field>")
        })
        .collect();
    let (done, _) = client
        .iq(&format!(
            "<iq type='set' id='{{id}}' to='{HOST}'><command xmlns='{COMMANDS}' node='{node}' sessionid='{session}' action='complete'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>{ADMIN_FORM}</value></field>{fields}</x></command></iq>"
        ))
        .await;
    assert_eq!(command_of(&done).attr("status"), Some("completed"), "{done:?}");
    done
}

/// The notes of a completed command, as (type, text).
fn notes(reply: &Element) -> Vec<(String, String)> {
    command_of(reply)
        .children()
        .filter(|c| c.name() == "note")
        .map(|n| (n.attr("type").unwrap_or("info").to_owned(), n.text()))
        .collect()
}

fn failed(reply: &Element) -> bool {
    notes(reply).iter().any(|(type_, _)| type_ == "error")
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn rows_of(server: &TestServer, table: &str, user: &str) -> i64 {
    use diesel::RunQueryDsl;
    let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE username = '{user}'");
    let db = server.server.as_ref().expect("running").context.db().clone();
    db.run(move |c| diesel::sql_query(sql).get_result::<Count>(c)).await.expect("count").n
}

const ACCOUNT_COMMANDS: [&str; 12] = [
    "add-user",
    "delete-user",
    "disable-user",
    "reenable-user",
    "change-user-password",
    "get-user-roster",
    "end-user-session",
    "get-registered-users-num",
    "get-registered-users-list",
    "set-motd",
    "edit-motd",
    "delete-motd",
];

#[tokio::test]
async fn account_commands_are_listed_for_admins_and_forbidden_to_others() {
    let server = server().await;
    let mut admin = server.login("admin", "laptop").await;
    let mut bob = server.login("bob", "phone").await;
    let listed = listed_commands(&mut admin).await;
    for command in ACCOUNT_COMMANDS {
        let node = admin_node(command);
        assert!(listed.contains(&node), "{node} missing from {listed:?}");
        let refused = execute(&mut bob, &node, "action='execute'").await;
        assert!(error_conditions(&refused).contains(&"forbidden".to_owned()), "{command}: {refused:?}");
    }
    assert!(server.can_log_in("bob", "pw").await, "nothing was done on bob's behalf");
}

#[tokio::test]
async fn add_user_and_change_user_password() {
    let server = server().await;
    let mut admin = server.login("admin", "laptop").await;
    let added = run(
        &mut admin,
        "add-user",
        &[("accountjid", &["Carol@localhost"]), ("password", &["s3cret"]), ("password-verify", &["s3cret"])],
    )
    .await;
    assert!(!failed(&added), "{added:?}");
    assert!(server.can_log_in("carol", "s3cret").await);

    let again = run(
        &mut admin,
        "add-user",
        &[("accountjid", &["carol@localhost"]), ("password", &["x"]), ("password-verify", &["x"])],
    )
    .await;
    assert!(failed(&again), "a duplicate is refused");
    let mismatch = run(
        &mut admin,
        "add-user",
        &[("accountjid", &["dave@localhost"]), ("password", &["a"]), ("password-verify", &["b"])],
    )
    .await;
    assert!(failed(&mismatch));
    let elsewhere = run(
        &mut admin,
        "add-user",
        &[("accountjid", &["erin@elsewhere.example"]), ("password", &["a"]), ("password-verify", &["a"])],
    )
    .await;
    assert!(failed(&elsewhere), "only accounts of the addressed host");
    assert!(!server.can_log_in("dave", "a").await);

    let changed =
        run(&mut admin, "change-user-password", &[("accountjid", &["carol@localhost"]), ("password", &["n3w"])]).await;
    assert!(!failed(&changed), "{changed:?}");
    assert!(!server.can_log_in("carol", "s3cret").await);
    assert!(server.can_log_in("carol", "n3w").await);
    let nobody =
        run(&mut admin, "change-user-password", &[("accountjid", &["nobody@localhost"]), ("password", &["n3w"])]).await;
    assert!(failed(&nobody));
}

#[tokio::test]
async fn disable_ends_sessions_and_reenable_lets_the_user_back() {
    let server = server().await;
    let mut admin = server.login("admin", "laptop").await;
    let mut bob = server.login("bob", "phone").await;
    let disabled = run(&mut admin, "disable-user", &[("accountjids", &["bob@localhost"])]).await;
    assert!(!failed(&disabled), "{disabled:?}");
    assert_eq!(bob.conn.stream_error().await.as_deref(), Some("not-authorized"));
    assert!(!server.can_log_in("bob", "pw").await);
    let enabled = run(&mut admin, "reenable-user", &[("accountjids", &["bob@localhost"])]).await;
    assert!(!failed(&enabled), "{enabled:?}");
    assert!(server.can_log_in("bob", "pw").await);
    let unknown = run(&mut admin, "disable-user", &[("accountjids", &["nobody@localhost"])]).await;
    assert!(failed(&unknown));
}

#[tokio::test]
async fn delete_user_removes_every_row_and_ends_sessions() {
    let server = server().await;
    let mut admin = server.login("admin", "laptop").await;
    let mut bob = server.login("bob", "phone").await;
    bob.iq("<iq type='set' id='{id}'><query xmlns='jabber:iq:roster'><item jid='admin@localhost'/></query></iq>").await;
    assert!(rows_of(&server, "roster_items", "bob").await > 0);
    let deleted = run(&mut admin, "delete-user", &[("accountjids", &["bob@localhost"])]).await;
    assert!(!failed(&deleted), "{deleted:?}");
    assert_eq!(bob.conn.stream_error().await.as_deref(), Some("not-authorized"));
    for table in ["accounts", "account_credentials", "roster_items", "roster_versions"] {
        assert_eq!(rows_of(&server, table, "bob").await, 0, "{table} still has bob's rows");
    }
    assert!(!server.can_log_in("bob", "pw").await);
}

#[tokio::test]
async fn get_user_roster_and_registered_users() {
    let server = server().await;
    let mut admin = server.login("admin", "laptop").await;
    let mut bob = server.login("bob", "phone").await;
    bob.iq("<iq type='set' id='{id}'><query xmlns='jabber:iq:roster'><item jid='carol@example.net'><group>Friends</group></item></query></iq>").await;
    let roster = run(&mut admin, "get-user-roster", &[("accountjid", &["bob@localhost"])]).await;
    let x = command_of(&roster).get_child("x", "jabber:x:data").expect("result");
    assert_eq!(field_values(x, "accountjid"), ["bob@localhost"]);
    assert_eq!(field_values(x, "contactjids"), ["carol@example.net"]);
    assert_eq!(field_values(x, "contacts"), ["carol@example.net subscription=none [Friends]"]);

    let num = execute(&mut admin, &admin_node("get-registered-users-num"), "action='execute'").await;
    let x = command_of(&num).get_child("x", "jabber:x:data").expect("result");
    assert_eq!(field_values(x, "registeredusersnum"), ["2"]);
    let list = run(&mut admin, "get-registered-users-list", &[("max_items", &["25"])]).await;
    let x = command_of(&list).get_child("x", "jabber:x:data").expect("result");
    assert_eq!(field_values(x, "registereduserjids"), ["admin@localhost", "bob@localhost"]);
}

#[tokio::test]
async fn end_user_session_ends_only_the_named_session() {
    let server = server().await;
    let mut admin = server.login("admin", "laptop").await;
    let mut phone = server.login("bob", "phone").await;
    let mut tablet = server.login("bob", "tablet").await;
    let ended = run(&mut admin, "end-user-session", &[("accountjids", &["bob@localhost/phone"])]).await;
    assert!(!failed(&ended), "{ended:?}");
    assert_eq!(phone.conn.stream_error().await.as_deref(), Some("policy-violation"));
    tablet.sync().await;
    let none = run(&mut admin, "end-user-session", &[("accountjids", &["bob@localhost/phone"])]).await;
    assert!(failed(&none), "no such session any more");
    let all = run(&mut admin, "end-user-session", &[("accountjids", &["bob@localhost"])]).await;
    assert!(!failed(&all));
    assert_eq!(tablet.conn.stream_error().await.as_deref(), Some("policy-violation"));
}

fn motd_of(stanzas: &[Element]) -> Option<String> {
    stanzas
        .iter()
        .find(|s| s.name() == "message" && s.attr("from") == Some(HOST))
        .and_then(|m| m.get_child("body", "jabber:client"))
        .map(|b| b.text())
}

#[tokio::test]
async fn the_message_of_the_day_is_set_edited_sent_on_login_and_deleted() {
    let mut server = server().await;
    let mut admin = server.login("admin", "laptop").await;
    assert_eq!(motd_of(&server.login("bob", "a").await.sync().await), None);
    run(&mut admin, "set-motd", &[("motd", &["Welcome &amp; behave", "second line"])]).await;
    assert_eq!(motd_of(&server.login("bob", "b").await.sync().await).as_deref(), Some("Welcome & behave\nsecond line"));

    let edit = execute(&mut admin, &admin_node("edit-motd"), "action='execute'").await;
    let form = command_of(&edit).get_child("x", "jabber:x:data").expect("form");
    assert_eq!(field_values(form, "motd"), ["Welcome & behave", "second line"], "the form shows the current text");
    run(&mut admin, "edit-motd", &[("motd", &["Edited"])]).await;
    server.restart().await;
    let mut admin = server.login("admin", "laptop").await;
    let seen = admin.sync().await;
    assert_eq!(motd_of(&seen).as_deref(), Some("Edited"), "stored across restarts");

    let deleted = execute(&mut admin, &admin_node("delete-motd"), "action='execute'").await;
    assert_eq!(command_of(&deleted).attr("status"), Some("completed"));
    assert_eq!(motd_of(&server.login("bob", "c").await.sync().await), None);
}

#[tokio::test]
async fn reload_configuration_reports_what_it_applied_and_what_needs_a_restart() {
    let files = tempfile::tempdir().expect("dir");
    let path = files.path().join("starling.toml");
    let mut server = TestServer::start_with(|c| c.server.admins = vec!["admin@localhost".into()]).await;
    server.add_user("admin", "pw").await;
    let mut admin = server.login("admin", "laptop").await;
    let node = "urn:starling:admin#reload-config";
    // The running configuration's file is gone: an error, and nothing changes.
    let failed_reload = execute(&mut admin, node, "action='execute'").await;
    assert_eq!(command_of(&failed_reload).attr("status"), Some("completed"));
    assert!(failed(&failed_reload), "{failed_reload:?}");

    // The same settings from a file, with more failed logins allowed and without the
    // admin list: the limits apply, [server] waits for a restart.
    let text = common::test_config_text(server.dir.path());
    std::fs::write(&path, format!("{text}\n[limits]\nauth_failures = 7\n")).expect("written");
    let with_modules = |extra: &str| format!("{text}\n[limits]\nauth_failures = 7\n{extra}");
    server.stop().await;
    server.config.path = path.clone();
    server.restart().await;
    let mut admin = server.login("admin", "laptop").await;
    let reloaded = execute(&mut admin, node, "action='execute'").await;
    assert!(!failed(&reloaded), "{reloaded:?}");
    let text: Vec<String> = notes(&reloaded).into_iter().map(|(_, t)| t).collect();
    let report = text.first().cloned().unwrap_or_default();
    // (On PostgreSQL the file's [storage] differs from the running one too.)
    assert!(report.starts_with("reloaded: certificates, [limits]\nchanged, needs a restart: [server]"), "{report}");

    // Module settings: registration opens live (the register module takes new
    // settings); the offline module's need a restart.
    let register = |server: &TestServer| {
        let addr = server.addr();
        async move {
            let mut conn = common::Conn::tcp(addr).await;
            conn.open().await;
            conn.starttls().await;
            conn.send("<iq type='set' id='r'><query xmlns='jabber:iq:register'><username>newbie</username><password>long enough</password></query></iq>").await;
            conn.recv().await.attr("type").map(str::to_owned)
        }
    };
    assert_eq!(register(&server).await.as_deref(), Some("error"), "closed by default");
    let modules = "[modules.register]\nmode = \"open\"\n[modules.push]\ninclude_body = true\n[modules.offline]\nmax_per_user = 7\n";
    std::fs::write(&path, with_modules(modules)).expect("written");
    let reloaded = execute(&mut admin, node, "action='execute'").await;
    let report = notes(&reloaded).into_iter().map(|(_, t)| t).next().unwrap_or_default();
    assert!(report.starts_with("reloaded: certificates, [modules.register], [modules.push]\n"), "{report}");
    assert!(report.contains("[modules.offline]"), "{report}");
    assert_eq!(register(&server).await.as_deref(), Some("result"), "open after the reload");
    // A refused setting keeps the old ones and says why.
    std::fs::write(&path, with_modules("[modules.register]\nmode = \"open\"\nusers_may_invite = true\n"))
        .expect("written");
    let reloaded = execute(&mut admin, node, "action='execute'").await;
    let report = notes(&reloaded).into_iter().map(|(_, t)| t).next().unwrap_or_default();
    assert!(report.contains("[modules.register] (users_may_invite needs a restart)"), "{report}");
    server.add_user("bob", "pw").await;
    let mut bob = server.login("bob", "desk").await;
    let refused = execute(&mut bob, node, "action='execute'").await;
    assert_eq!(error_conditions(&refused), ["forbidden"]);
}

#[tokio::test]
async fn shutdown_announces_then_stops_the_server() {
    let server = server().await;
    let mut admin = server.login("admin", "laptop").await;
    let mut bob = server.login("bob", "phone").await;
    let refused = execute(&mut bob, &admin_node("shutdown"), "action='execute'").await;
    assert_eq!(error_conditions(&refused), ["forbidden"]);
    let first = execute(&mut admin, &admin_node("shutdown"), "action='execute'").await;
    let form = command_of(&first).get_child("x", "jabber:x:data").expect("form");
    assert_eq!(field_values(form, "delay"), ["30"]);
    let done = run(&mut admin, "shutdown", &[("delay", &["0"]), ("announcement", &["Back in five minutes"])]).await;
    assert!(!failed(&done), "{done:?}");
    let notice = bob.recv_message().await;
    assert_eq!(notice.attr("type"), Some("headline"));
    assert_eq!(notice.get_child("body", "jabber:client").map(|b| b.text()).as_deref(), Some("Back in five minutes"));
    assert_eq!(bob.conn.stream_error().await.as_deref(), Some("system-shutdown"));
    assert_eq!(admin.conn.stream_error().await.as_deref(), Some("system-shutdown"));
}

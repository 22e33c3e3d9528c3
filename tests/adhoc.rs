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

//! Entity capabilities of the server (XEP-0115 §6.3): the hash in the stream features
//! matches what disco#info on `node#ver` returns.

mod common;

use common::{Conn, HOST, TestServer};

/// The `<c/>` element of alice's post-authentication stream features.
async fn announced_caps(server: &TestServer) -> minidom::Element {
    let mut conn = Conn::tcp(server.addr()).await;
    conn.open().await;
    conn.starttls().await;
    conn.auth("alice", "pw").await.expect("auth");
    let features = conn.open().await;
    features.get_child("c", "http://jabber.org/protocol/caps").expect("caps in stream features").clone()
}

#[tokio::test]
async fn stream_feature_hash_matches_disco() {
    let server = TestServer::start().await;
    server.add_user("alice", "pw").await;
    let caps = announced_caps(&server).await;
    assert_eq!(caps.attr("hash"), Some("sha-1"));
    let node = format!("{}#{}", caps.attr("node").expect("node"), caps.attr("ver").expect("ver"));

    let mut alice = server.login("alice", "a").await;
    let (info, _) = alice.iq(&format!("<iq type='get' id='{{id}}' to='{HOST}'><query xmlns='http://jabber.org/protocol/disco#info' node='{node}'/></iq>")).await;
    let query = info.get_child("query", "http://jabber.org/protocol/disco#info").expect("answered");
    assert_eq!(query.attr("node"), Some(node.as_str()));
    assert!(query.children().any(|f| f.attr("var") == Some("http://jabber.org/protocol/caps")));
    let (wrong, _) = alice.iq(&format!("<iq type='get' id='{{id}}' to='{HOST}'><query xmlns='http://jabber.org/protocol/disco#info' node='urn:starling:server#bogus'/></iq>")).await;
    assert_eq!(wrong.attr("type"), Some("error"));
}

/// XEP-0115 §5.1, computed here from a disco#info answer, forms included.
fn ver_of(query: &minidom::Element) -> String {
    use base64::Engine;
    use sha1::Digest;
    const DISCO: &str = "http://jabber.org/protocol/disco#info";
    const DATA: &str = "jabber:x:data";
    let mut identities: Vec<String> = query
        .children()
        .filter(|c| c.is("identity", DISCO))
        .map(|i| {
            let attr = |name: &str| i.attr(name).unwrap_or_default().to_owned();
            format!("{}/{}/{}/{}<", attr("category"), attr("type"), attr("xml:lang"), attr("name"))
        })
        .collect();
    identities.sort();
    let mut features: Vec<String> = query
        .children()
        .filter(|c| c.is("feature", DISCO))
        .filter_map(|f| f.attr("var"))
        .map(|v| format!("{v}<"))
        .collect();
    features.sort();
    let value_of = |field: &minidom::Element| -> Vec<String> {
        let mut values: Vec<String> = field.children().filter(|v| v.is("value", DATA)).map(|v| v.text()).collect();
        values.sort();
        values
    };
    let mut forms: Vec<(String, String)> = query
        .children()
        .filter(|c| c.is("x", DATA))
        .map(|form| {
            let fields: Vec<&minidom::Element> = form.children().filter(|f| f.is("field", DATA)).collect();
            let form_type = fields
                .iter()
                .find(|f| f.attr("var") == Some("FORM_TYPE"))
                .map(|f| value_of(f).concat())
                .unwrap_or_default();
            let mut rest: Vec<(&str, Vec<String>)> = fields
                .iter()
                .filter_map(|f| f.attr("var").filter(|v| *v != "FORM_TYPE").map(|v| (v, value_of(f))))
                .collect();
            rest.sort();
            let mut text = format!("{form_type}<");
            for (var, values) in rest {
                text.push_str(&format!("{var}<"));
                for value in values {
                    text.push_str(&format!("{value}<"));
                }
            }
            (form_type, text)
        })
        .collect();
    forms.sort();
    let input = identities.concat() + &features.concat() + &forms.into_iter().map(|(_, t)| t).collect::<String>();
    base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(input.as_bytes()))
}

#[tokio::test]
async fn contact_addresses_are_in_disco_and_in_the_hash() {
    let server = TestServer::start_with(|config| {
        let table = "abuse = [\"mailto:abuse@localhost\", \"xmpp:abuse@localhost\"]\nsecurity = [\"https://localhost/security\"]\n";
        config.modules.settings.insert("contact_info".into(), toml::from_str(table).expect("table"));
    })
    .await;
    server.add_user("alice", "pw").await;
    let announced = announced_caps(&server).await.attr("ver").expect("caps ver").to_owned();

    let mut alice = server.login("alice", "a").await;
    let (info, _) = alice
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='{HOST}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ))
        .await;
    let query = info.get_child("query", "http://jabber.org/protocol/disco#info").expect("answered");
    let form = query
        .children()
        .find(|x| {
            x.is("x", "jabber:x:data")
                && x.children().any(|f| {
                    f.attr("var") == Some("FORM_TYPE")
                        && f.children().any(|v| v.text() == "http://jabber.org/network/serverinfo")
                })
        })
        .expect("the XEP-0157 form");
    assert_eq!(form.attr("type"), Some("result"));
    let abuse: Vec<String> = form
        .children()
        .find(|f| f.attr("var") == Some("abuse-addresses"))
        .map(|f| f.children().map(|v| v.text()).collect())
        .unwrap_or_default();
    assert_eq!(abuse, ["mailto:abuse@localhost", "xmpp:abuse@localhost"]);
    assert_eq!(ver_of(query), announced, "the announced hash covers the form");
}

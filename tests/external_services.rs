//! XEP-0215 external service discovery over a real socket: STUN and TURN servers from
//! the config, TURN credentials in the TURN REST scheme (checked here with the shared
//! secret, as coturn does), the `type` filter, credentials for one service, errors.

mod common;

use base64::Engine;
use common::{HOST, TestServer};
use hmac::{Hmac, Mac};
use minidom::Element;

const NS: &str = "urn:xmpp:extdisco:2";
const SECRET: &str = "turn-shared-secret";

async fn server() -> TestServer {
    let server = TestServer::start_with(|config| {
        let table = format!(
            "secret = \"{SECRET}\"\nttl_seconds = 3600\n\
             [[services]]\ntype = \"stun\"\nhost = \"turn.localhost\"\nport = 3478\ntransport = \"udp\"\n\
             [[services]]\ntype = \"turn\"\nhost = \"turn.localhost\"\nport = 3478\ntransport = \"udp\"\n\
             [[services]]\ntype = \"turns\"\nhost = \"turn.localhost\"\nport = 5349\ntransport = \"tcp\"\n"
        );
        config.modules.settings.insert("external_services".into(), toml::from_str(&table).expect("table"));
    })
    .await;
    server.add_user("alice", "pw").await;
    server
}

fn services(answer: &Element, root: &str) -> Vec<Element> {
    answer.get_child(root, NS).map(|s| s.children().cloned().collect()).unwrap_or_default()
}

/// Checks a restricted service's credentials as a TURN server with the secret would.
fn assert_valid_credentials(service: &Element) {
    let username = service.attr("username").expect("username");
    let password = service.attr("password").expect("password");
    let (expiry, user) = username.split_once(':').expect("expiry:user");
    assert_eq!(user, "alice@localhost");
    let expiry: i64 = expiry.parse().expect("Unix time");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    assert!((now + 3500..=now + 3700).contains(&expiry), "valid for the configured hour: {expiry} vs {now}");
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(password, expected);
    assert_eq!(service.attr("restricted"), Some("1"));
    let expires = chrono::DateTime::parse_from_rfc3339(service.attr("expires").expect("expires")).expect("ISO 8601");
    assert_eq!(expires.timestamp(), expiry);
}

#[tokio::test]
async fn turn_and_stun_servers_with_credentials() {
    let server = server().await;
    let mut alice = server.login("alice", "phone").await;

    let (info, _) = alice
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='{HOST}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ))
        .await;
    assert!(format!("{info:?}").contains(NS), "advertised: {info:?}");

    let (answer, _) = alice.iq(&format!("<iq type='get' id='{{id}}' to='{HOST}'><services xmlns='{NS}'/></iq>")).await;
    assert_eq!(answer.attr("type"), Some("result"), "{answer:?}");
    let all = services(&answer, "services");
    let kinds: Vec<_> = all.iter().filter_map(|s| s.attr("type")).collect();
    assert_eq!(kinds, ["stun", "turn", "turns"]);
    let stun = &all[0];
    assert_eq!((stun.attr("host"), stun.attr("port")), (Some("turn.localhost"), Some("3478")));
    assert!(stun.attr("username").is_none(), "STUN needs no credentials");
    assert_valid_credentials(&all[1]);
    assert_valid_credentials(&all[2]);

    let (turn_only, _) =
        alice.iq(&format!("<iq type='get' id='{{id}}' to='{HOST}'><services xmlns='{NS}' type='turn'/></iq>")).await;
    let turn = services(&turn_only, "services");
    assert_eq!(turn.iter().filter_map(|s| s.attr("type")).collect::<Vec<_>>(), ["turn"]);

    let (fresh, _) = alice
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='{HOST}'><credentials xmlns='{NS}'><service type='turns' host='turn.localhost'/></credentials></iq>"
        ))
        .await;
    let one = services(&fresh, "credentials");
    assert_eq!(one.len(), 1, "{fresh:?}");
    assert_eq!(one[0].attr("port"), Some("5349"));
    assert_valid_credentials(&one[0]);

    let (unknown, _) = alice
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='{HOST}'><credentials xmlns='{NS}'><service type='turn' host='elsewhere'/></credentials></iq>"
        ))
        .await;
    assert_eq!(unknown.attr("type"), Some("error"));
    assert!(format!("{unknown:?}").contains("item-not-found"), "{unknown:?}");
}

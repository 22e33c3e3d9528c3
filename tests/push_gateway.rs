//! The built-in app server (`push_gateway`) end to end: devices register with the
//! ad-hoc command Conversations' app server uses, accounts enable push towards it
//! (XEP-0357), and a message for an inactive account reaches a stand-in for FCM HTTP
//! v1 (after an OAuth token grant with a JWT the stand-in verifies with the service
//! account's public key) or for APNs over HTTP/2 (with an ES256 provider token the
//! stand-in verifies). A device the platform no longer knows is forgotten; a wrong
//! secret is refused.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use common::{Client, HOST, TestServer};
use ring::signature::{self, KeyPair};
use tokio::sync::mpsc;

const GATEWAY: &str = "push.localhost";
const ACCESS_TOKEN: &str = "ya29.stand-in";

/// What the stand-in provider saw.
#[derive(Debug)]
enum Seen {
    Fcm { token: String, message_count: String },
    Apns { device: String, topic: String },
}

#[derive(Clone)]
struct Provider {
    rsa_public: Arc<Vec<u8>>,
    ec_public: Arc<Vec<u8>>,
    seen: mpsc::UnboundedSender<Seen>,
    token_grants: Arc<Mutex<u32>>,
}

/// Checks a compact JWS with `algorithm` and returns its claims.
fn verified_claims(
    jwt: &str,
    algorithm: &'static dyn signature::VerificationAlgorithm,
    key: &[u8],
) -> Option<serde_json::Value> {
    let (input, signature) = jwt.rsplit_once('.')?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    signature::UnparsedPublicKey::new(algorithm, key).verify(input.as_bytes(), &signature).ok()?;
    let claims = input.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()
}

async fn token_endpoint(State(p): State<Provider>, body: String) -> (StatusCode, String) {
    let assertion = body.split('&').find_map(|pair| pair.strip_prefix("assertion=")).unwrap_or_default();
    let grant = body.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer");
    match verified_claims(assertion, &signature::RSA_PKCS1_2048_8192_SHA256, &p.rsa_public) {
        Some(claims)
            if grant
                && claims["iss"] == "push@demo.iam.gserviceaccount.com"
                && claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging" =>
        {
            *p.token_grants.lock().expect("lock") += 1;
            (StatusCode::OK, format!("{{\"access_token\":\"{ACCESS_TOKEN}\",\"expires_in\":3600}}"))
        }
        _ => (StatusCode::BAD_REQUEST, "{\"error\":\"invalid_grant\"}".into()),
    }
}

async fn fcm_send(State(p): State<Provider>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {ACCESS_TOKEN}")) {
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else { return StatusCode::BAD_REQUEST };
    let token = json["message"]["token"].as_str().unwrap_or_default().to_owned();
    if token == "gone-fcm" {
        return StatusCode::NOT_FOUND;
    }
    let message_count = json["message"]["data"]["message-count"].as_str().unwrap_or_default().to_owned();
    let _ = p.seen.send(Seen::Fcm { token, message_count });
    StatusCode::OK
}

async fn apns_send(State(p): State<Provider>, UrlPath(device): UrlPath<String>, headers: HeaderMap) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let jwt = header("authorization").strip_prefix("bearer ").unwrap_or_default().to_owned();
    let claims = verified_claims(&jwt, &signature::ECDSA_P256_SHA256_FIXED, &p.ec_public);
    if claims.is_none_or(|c| c["iss"] != "TEAM42") {
        return StatusCode::FORBIDDEN;
    }
    if device == "gone-apns" {
        return StatusCode::GONE;
    }
    let _ = p.seen.send(Seen::Apns { device, topic: header("apns-topic") });
    StatusCode::OK
}

/// Serves the stand-in over HTTP/1.1 and HTTP/2 without TLS (APNs' h2 by prior knowledge).
async fn serve_provider(provider: Provider) -> SocketAddr {
    let app = Router::new()
        .route("/token", post(token_endpoint))
        .route("/v1/projects/demo/messages:send", post(fcm_send))
        .route("/3/device/{device}", post(apns_send))
        .with_state(provider);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(tcp), service).await;
            });
        }
    });
    addr
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = B64.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// An RSA key made by openssl: the service account's private key (PEM) and the
/// PKCS#1 public key the stand-in verifies with.
fn rsa_key(dir: &Path) -> (String, Vec<u8>) {
    let key = dir.join("rsa.pem");
    let public = dir.join("rsa.pub.der");
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl").args(args).status().expect("openssl runs");
        assert!(status.success(), "openssl {args:?}");
    };
    run(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key.to_str().expect("path")]);
    run(&[
        "rsa",
        "-in",
        key.to_str().expect("path"),
        "-RSAPublicKey_out",
        "-outform",
        "DER",
        "-out",
        public.to_str().expect("path"),
    ]);
    (std::fs::read_to_string(&key).expect("key"), std::fs::read(&public).expect("public key"))
}

async fn register_device(
    client: &mut Client,
    command: &str,
    token: &str,
    device_field: &str,
    device: &str,
) -> (String, String) {
    let (reply, _) = client
        .iq(&format!(
            "<iq type='set' id='{{id}}' to='{GATEWAY}'><command xmlns='http://jabber.org/protocol/commands' node='{command}' action='execute'>\
             <x xmlns='jabber:x:data' type='submit'><field var='token'><value>{token}</value></field>\
             <field var='{device_field}'><value>{device}</value></field></x></command></iq>"
        ))
        .await;
    let form = reply
        .get_child("command", "http://jabber.org/protocol/commands")
        .and_then(|c| c.get_child("x", "jabber:x:data"))
        .unwrap_or_else(|| panic!("no result form: {reply:?}"));
    let value = |var: &str| {
        form.children()
            .find(|f| f.attr("var") == Some(var))
            .and_then(|f| f.get_child("value", "jabber:x:data"))
            .map(|v| v.text())
            .expect("field")
    };
    (value("node"), value("secret"))
}

/// Enables push towards the gateway and goes inactive (CSI), so messages wake the device.
async fn enable_and_sleep(client: &mut Client, node: &str, secret: &str) {
    let (reply, _) = client
        .iq(&format!(
            "<iq type='set' id='{{id}}'><enable xmlns='urn:xmpp:push:0' jid='{GATEWAY}' node='{node}'>\
             <x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             <field var='secret'><value>{secret}</value></field></x></enable></iq>"
        ))
        .await;
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    client.send("<inactive xmlns='urn:xmpp:csi:0'/>").await;
    client.sync().await;
}

async fn next_seen(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(10), seen.recv()).await.expect("the provider was called").expect("open")
}

#[tokio::test]
async fn notifications_reach_fcm_and_apns_through_the_built_in_app_server() {
    let keys = tempfile::tempdir().expect("dir");
    let (rsa_pem, rsa_public) = rsa_key(keys.path());
    let rng = ring::rand::SystemRandom::new();
    let ec_pkcs8 =
        signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("EC key");
    let ec_key =
        signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, ec_pkcs8.as_ref(), &rng)
            .expect("EC key");
    let (tx, mut seen) = mpsc::unbounded_channel();
    let grants = Arc::new(Mutex::new(0));
    let provider = Provider {
        rsa_public: Arc::new(rsa_public),
        ec_public: Arc::new(ec_key.public_key().as_ref().to_vec()),
        seen: tx,
        token_grants: grants.clone(),
    };
    let addr = serve_provider(provider).await;
    let account = serde_json::json!({
        "client_email": "push@demo.iam.gserviceaccount.com",
        "private_key": rsa_pem,
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    std::fs::write(keys.path().join("service-account.json"), account.to_string()).expect("written");
    std::fs::write(keys.path().join("AuthKey.p8"), pem("PRIVATE KEY", ec_pkcs8.as_ref())).expect("written");
    let settings: toml::Value = toml::from_str(&format!(
        r#"
[fcm]
project_id = "demo"
service_account_file = "{dir}/service-account.json"
endpoint = "http://{addr}"
token_uri = "http://{addr}/token"
[apns]
key_file = "{dir}/AuthKey.p8"
key_id = "KEY123"
team_id = "TEAM42"
topic = "org.example.app"
endpoint = "http://{addr}"
"#,
        dir = keys.path().display()
    ))
    .expect("settings");
    let server = TestServer::start_with(move |c| {
        c.modules.settings.insert("push_gateway".into(), settings);
    })
    .await;
    for user in ["alice", "bob", "carol", "dave"] {
        server.add_user(user, "pw").await;
    }
    let mut bob = server.login("bob", "desk").await;
    let say = |to: &str, id: &str| format!("<message to='{to}@{HOST}' type='chat' id='{id}'><body>hi</body></message>");

    // FCM: register, enable, go inactive; a message wakes the phone through FCM.
    let mut alice = server.login("alice", "phone").await;
    let (node, secret) = register_device(&mut alice, "register-push-fcm", "fcm-token-1", "android-id", "pixel").await;
    enable_and_sleep(&mut alice, &node, &secret).await;
    bob.send(&say("alice", "m1")).await;
    match next_seen(&mut seen).await {
        Seen::Fcm { token, message_count } => {
            assert_eq!((token.as_str(), message_count.as_str()), ("fcm-token-1", "1"))
        }
        other => panic!("expected FCM, got {other:?}"),
    }
    bob.send(&say("alice", "m2")).await;
    assert!(matches!(next_seen(&mut seen).await, Seen::Fcm { .. }));
    assert_eq!(*grants.lock().expect("lock"), 1, "the access token is cached");

    // APNs over HTTP/2.
    let mut carol = server.login("carol", "iphone").await;
    let (node, secret) =
        register_device(&mut carol, "register-push-apns", "apns-token-1", "device-id", "iphone-1").await;
    enable_and_sleep(&mut carol, &node, &secret).await;
    bob.send(&say("carol", "m3")).await;
    match next_seen(&mut seen).await {
        Seen::Apns { device, topic } => {
            assert_eq!((device.as_str(), topic.as_str()), ("apns-token-1", "org.example.app"))
        }
        other => panic!("expected APNs, got {other:?}"),
    }

    // A publish with a wrong secret is refused and reaches no provider.
    let (refused, _) = bob
        .iq(&format!(
            "<iq type='set' id='{{id}}' to='{GATEWAY}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <publish node='{node}'><item><notification xmlns='urn:xmpp:push:0'/></item></publish>\
             <publish-options><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             <field var='secret'><value>guess</value></field></x></publish-options></pubsub></iq>"
        ))
        .await;
    assert_eq!(refused.attr("type"), Some("error"), "{refused:?}");

    // A device the platform no longer knows is forgotten.
    let mut dave = server.login("dave", "old").await;
    let (gone_node, secret) = register_device(&mut dave, "register-push-fcm", "gone-fcm", "android-id", "old").await;
    enable_and_sleep(&mut dave, &gone_node, &secret).await;
    bob.send(&say("dave", "m4")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let node = gone_node.clone();
        let rows: Vec<Count> = server
            .db()
            .run(move |c| {
                use diesel::RunQueryDsl;
                diesel::sql_query(format!("SELECT COUNT(*) AS n FROM push_gateway_devices WHERE node = '{node}'"))
                    .load(c)
            })
            .await
            .expect("count");
        if rows.first().is_some_and(|r| r.n == 0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the unregistered device was not forgotten");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen.try_recv().is_err(), "nothing else reached the providers");
}

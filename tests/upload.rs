//! XEP-0363 HTTP File Upload: slots, signed PUT/GET URLs, limits, Range, CORS, disco.

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use hyper::Request;
use minidom::Element;
use sha2::{Digest, Sha256};

use common::{Client, TestServer, http};

const NS_UPLOAD: &str = "urn:xmpp:http:upload:0";
const SECRET: &str = "test-secret-for-upload-signatures";
const MAX: u64 = 25 * 1024 * 1024;
const QUOTA: u64 = 30 * 1024 * 1024;

async fn server() -> TestServer {
    let server = TestServer::start_with(|config| {
        config.http.listen = vec!["127.0.0.1:0".parse().expect("addr")];
        // test_config puts the files in the server's temporary directory.
        let table = config.modules.settings.get_mut("upload").and_then(|t| t.as_table_mut()).expect("[modules.upload]");
        table.insert("secret".into(), toml::Value::String(SECRET.into()));
        table.insert("max_file_size".into(), toml::Value::Integer(MAX as i64));
        table.insert("quota_per_user".into(), toml::Value::Integer(QUOTA as i64));
    })
    .await;
    server.add_user("alice", "pw").await;
    server
}

/// A slot request; the reply IQ.
async fn request_slot(client: &mut Client, filename: &str, size: u64, content_type: &str) -> Element {
    let (reply, _) = client
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='upload.localhost'><request xmlns='{NS_UPLOAD}' filename='{filename}' size='{size}' content-type='{content_type}'/></iq>"
        ))
        .await;
    reply
}

/// The PUT and GET URLs of a granted slot.
async fn slot(client: &mut Client, filename: &str, size: u64, content_type: &str) -> (String, String) {
    let reply = request_slot(client, filename, size, content_type).await;
    assert_eq!(reply.attr("type"), Some("result"), "{}", String::from(&reply));
    let slot = reply.get_child("slot", NS_UPLOAD).expect("slot");
    let url = |name: &str| slot.get_child(name, NS_UPLOAD).and_then(|e| e.attr("url")).expect("url").to_owned();
    (url("put"), url("get"))
}

/// The path and query of an absolute URL on the test server.
fn path_of(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("http URL");
    rest[rest.find('/').expect("path")..].to_owned()
}

async fn put(addr: SocketAddr, url: &str, body: Vec<u8>, content_type: &str) -> http::Reply {
    let request = Request::put(path_of(url))
        .header("host", "localhost")
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(Body::from(body))
        .expect("request");
    http::request(addr, request).await
}

fn error_condition(reply: &Element) -> Option<String> {
    let error = reply.get_child("error", "jabber:client")?;
    error.children().find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas").map(|c| c.name().to_owned())
}

#[tokio::test]
async fn upload_and_download_a_file_with_the_right_headers() {
    let server = server().await;
    let addr = server.http_addr();
    let mut alice = server.login("alice", "a").await;
    let (put_url, get_url) = slot(&mut alice, "cat picture.png", 11, "image/png").await;
    assert!(get_url.starts_with(&format!("http://localhost:{}/upload/", addr.port())), "{get_url}");
    assert!(get_url.ends_with("/cat%20picture.png"), "{get_url}");

    let stored = put(addr, &put_url, b"hello world".to_vec(), "image/png").await;
    assert_eq!(stored.status, 201, "{}", stored.text());
    assert_eq!(stored.header("access-control-allow-origin"), "*");

    let got = http::get(addr, &path_of(&get_url), &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(&got.body[..], b"hello world");
    assert_eq!(got.header("content-type"), "image/png");
    assert_eq!(got.header("content-disposition"), "inline; filename*=UTF-8''cat%20picture.png");
    assert_eq!(got.header("access-control-allow-origin"), "*");
    assert_eq!(got.header("accept-ranges"), "bytes");

    // A PUT URL works once.
    assert_eq!(put(addr, &put_url, b"HELLO WORLD".to_vec(), "image/png").await.status, 409);
    assert_eq!(&http::get(addr, &path_of(&get_url), &[]).await.body[..], b"hello world");
}

#[tokio::test]
async fn range_requests_return_the_right_bytes() {
    let server = server().await;
    let addr = server.http_addr();
    let mut alice = server.login("alice", "a").await;
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let (put_url, get_url) = slot(&mut alice, "data.bin", data.len() as u64, "application/octet-stream").await;
    assert_eq!(put(addr, &put_url, data.clone(), "application/octet-stream").await.status, 201);
    let path = path_of(&get_url);

    let part = http::get(addr, &path, &[("range", "bytes=100-199")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(&part.body[..], &data[100..200]);
    assert_eq!(part.header("content-range"), "bytes 100-199/1000");
    let tail = http::get(addr, &path, &[("range", "bytes=900-")]).await;
    assert_eq!((tail.status.as_u16(), &tail.body[..]), (206, &data[900..]));
    let suffix = http::get(addr, &path, &[("range", "bytes=-10")]).await;
    assert_eq!((suffix.status.as_u16(), &suffix.body[..]), (206, &data[990..]));
    let beyond = http::get(addr, &path, &[("range", "bytes=1000-")]).await;
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), "bytes */1000");
    // Non-media types are downloads, never rendered on the server's origin.
    let (reply, _) = alice
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='upload.localhost'><request xmlns='{NS_UPLOAD}' filename='x' size='3'/></iq>"
        ))
        .await;
    assert_eq!(reply.attr("type"), Some("result"), "content-type is optional: {}", String::from(&reply));
    let whole = http::get(addr, &path, &[]).await;
    assert!(whole.header("content-disposition").starts_with("attachment;"), "{}", whole.header("content-disposition"));
}

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).expect("kB") * 1024
}

/// A deterministic 64 KiB chunk `i` of the big test file.
fn chunk(i: u64) -> Bytes {
    Bytes::from((0..65536u64).map(|j| ((i * 31 + j * 7) % 256) as u8).collect::<Vec<u8>>())
}

#[tokio::test]
async fn a_20_mb_file_streams_both_ways_without_growing_memory() {
    let server = server().await;
    let addr = server.http_addr();
    let mut alice = server.login("alice", "a").await;
    const CHUNKS: u64 = 320; // 20 MiB
    let size = CHUNKS * 65536;
    let (put_url, get_url) = slot(&mut alice, "big.bin", size, "application/octet-stream").await;
    let before = rss();

    let mut sent = Sha256::new();
    for i in 0..CHUNKS {
        sent.update(chunk(i));
    }
    let body = Body::from_stream(futures::stream::iter((0..CHUNKS).map(|i| Ok::<_, std::io::Error>(chunk(i)))));
    let request = Request::put(path_of(&put_url))
        .header("host", "localhost")
        .header("content-type", "application/octet-stream")
        .header("content-length", size)
        .body(body)
        .expect("request");
    let stored = http::request(addr, request).await;
    assert_eq!(stored.status, 201, "{}", stored.text());
    let after_put = rss();

    let request = Request::get(path_of(&get_url)).header("host", "localhost").body(Body::empty()).expect("request");
    let response = http::send(addr, request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("content-length").and_then(|v| v.to_str().ok()), Some(size.to_string().as_str()));
    let mut body = Body::new(response.into_body()).into_data_stream();
    let mut received = Sha256::new();
    let mut length = 0u64;
    while let Some(part) = body.next().await {
        let part = part.expect("body");
        length += part.len() as u64;
        received.update(&part);
    }
    assert_eq!(length, size);
    assert_eq!(received.finalize(), sent.finalize(), "the file comes back identical");
    let after_get = rss();
    // Buffering the file anywhere would add 20 MiB; streaming stays within a few.
    let growth = after_put.max(after_get).saturating_sub(before);
    assert!(growth < 12 * 1024 * 1024, "RSS grew by {growth} bytes");
}

#[tokio::test]
async fn too_large_files_are_refused_with_the_limit() {
    let server = server().await;
    let mut alice = server.login("alice", "a").await;
    let reply = request_slot(&mut alice, "huge.iso", MAX + 1, "application/octet-stream").await;
    assert_eq!(reply.attr("type"), Some("error"));
    assert_eq!(error_condition(&reply).as_deref(), Some("not-acceptable"));
    let limit = reply
        .get_child("error", "jabber:client")
        .and_then(|e| e.get_child("file-too-large", NS_UPLOAD))
        .and_then(|f| f.get_child("max-file-size", NS_UPLOAD))
        .map(|m| m.text());
    assert_eq!(limit, Some(MAX.to_string()));
}

#[tokio::test]
async fn bodies_must_match_the_slot() {
    let server = server().await;
    let addr = server.http_addr();
    let mut alice = server.login("alice", "a").await;
    let (put_url, get_url) = slot(&mut alice, "a.txt", 5, "text/plain").await;
    assert_eq!(put(addr, &put_url, b"too long!".to_vec(), "text/plain").await.status, 413);
    assert_eq!(put(addr, &put_url, b"abc".to_vec(), "text/plain").await.status, 400);
    assert_eq!(put(addr, &put_url, b"abcde".to_vec(), "image/png").await.status, 400);
    assert_eq!(http::get(addr, &path_of(&get_url), &[]).await.status, 404, "nothing stored yet");
    // Refused attempts do not use the slot up.
    assert_eq!(put(addr, &put_url, b"abcde".to_vec(), "text/plain").await.status, 201);
}

fn hmac_hex(parts: &[&str]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    for part in parts {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()[..32].to_owned()
}

#[tokio::test]
async fn forged_and_expired_signatures_are_refused() {
    let server = server().await;
    let addr = server.http_addr();
    let mut alice = server.login("alice", "a").await;
    let (put_url, get_url) = slot(&mut alice, "a.txt", 5, "text/plain").await;
    let (base, query) = put_url.split_once('?').expect("query");
    let signature = query.split("signature=").nth(1).expect("signature");

    // Another signature, no signature, a changed expiry with the old signature.
    let forged = put_url.replace(signature, &"0".repeat(signature.len()));
    assert_eq!(put(addr, &forged, b"abcde".to_vec(), "text/plain").await.status, 403);
    assert_eq!(put(addr, base, b"abcde".to_vec(), "text/plain").await.status, 403);
    let extended = format!("{base}?expires=99999999999&signature={signature}");
    assert_eq!(put(addr, &extended, b"abcde".to_vec(), "text/plain").await.status, 403);
    // A correctly signed URL whose time is up.
    let path = path_of(base);
    let segments: Vec<&str> = path.split('/').collect();
    let id = segments[2];
    let expired = hmac_hex(&["put", id, "a.txt", "5", "text/plain", "1000"]);
    let expired_url = format!("{base}?expires=1000&signature={expired}");
    assert_eq!(put(addr, &expired_url, b"abcde".to_vec(), "text/plain").await.status, 403);
    // A GET URL with a wrong MAC does not exist.
    let wrong_get = get_url.replace(segments[3], &"f".repeat(32));
    assert_eq!(http::get(addr, &path_of(&wrong_get), &[]).await.status, 404);
    // The genuine URL still works.
    assert_eq!(put(addr, &put_url, b"abcde".to_vec(), "text/plain").await.status, 201);
}

#[tokio::test]
async fn the_quota_is_enforced() {
    let server = server().await;
    let mut alice = server.login("alice", "a").await;
    slot(&mut alice, "one.bin", 20 * 1024 * 1024, "application/octet-stream").await;
    let reply = request_slot(&mut alice, "two.bin", 20 * 1024 * 1024, "application/octet-stream").await;
    assert_eq!(reply.attr("type"), Some("error"));
    assert_eq!(error_condition(&reply).as_deref(), Some("resource-constraint"));
    // What still fits is granted.
    slot(&mut alice, "three.bin", 5 * 1024 * 1024, "application/octet-stream").await;
}

#[tokio::test]
async fn cors_preflight_on_the_put_url() {
    let server = server().await;
    let addr = server.http_addr();
    let mut alice = server.login("alice", "a").await;
    let (put_url, _) = slot(&mut alice, "a.txt", 5, "text/plain").await;
    let request = Request::options(path_of(&put_url))
        .header("host", "localhost")
        .header("origin", "https://web.example")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "content-type")
        .body(Body::empty())
        .expect("request");
    let reply = http::request(addr, request).await;
    assert!(reply.status.is_success(), "{}", reply.status);
    assert_eq!(reply.header("access-control-allow-origin"), "*");
    assert!(
        reply.header("access-control-allow-methods").contains("PUT"),
        "{}",
        reply.header("access-control-allow-methods")
    );
    assert!(reply.header("access-control-allow-headers").to_ascii_lowercase().contains("content-type"));
}

#[tokio::test]
async fn disco_advertises_the_service_and_its_limit() {
    let server = server().await;
    let mut alice = server.login("alice", "a").await;
    let (reply, _) = alice
        .iq("<iq type='get' id='{id}' to='upload.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    let query = reply.get_child("query", "http://jabber.org/protocol/disco#info").expect("query");
    assert!(query.children().any(|c| c.name() == "feature" && c.attr("var") == Some(NS_UPLOAD)));
    assert!(query.children().any(|c| c.name() == "identity" && c.attr("category") == Some("store")));
    let form = query.get_child("x", "jabber:x:data").expect("form");
    let max = form
        .children()
        .find(|f| f.attr("var") == Some("max-file-size"))
        .and_then(|f| f.get_child("value", "jabber:x:data"))
        .map(|v| v.text());
    assert_eq!(max, Some(MAX.to_string()));
}

/// A file system of its own for the upload directory, 1 MiB small, unmounted when
/// dropped. Needs root (as CI has); `None` elsewhere.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &std::path::Path) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).expect("mount point");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| SmallDisk(at.to_owned()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_disk_fails_the_upload_cleanly_and_nothing_else() {
    let dir = tempfile::tempdir().expect("dir");
    let files = dir.path().join("files");
    let Some(_disk) = SmallDisk::mount(&files) else {
        eprintln!("cannot mount a tmpfs (not root?): the full-disk case is not checked here");
        return;
    };
    let server = TestServer::start_with(|config| {
        config.http.listen = vec!["127.0.0.1:0".parse().expect("addr")];
        let table = config.modules.settings.get_mut("upload").and_then(|t| t.as_table_mut()).expect("[modules.upload]");
        table.insert("secret".into(), toml::Value::String(SECRET.into()));
        table.insert("storage_dir".into(), toml::Value::String(files.display().to_string()));
    })
    .await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    let addr = server.http_addr();
    let mut alice = server.login("alice", "a").await;
    let mut bob = server.login("bob", "b").await;

    let (put_url, get_url) = slot(&mut alice, "big.bin", 2 << 20, "application/octet-stream").await;
    let reply = put(addr, &put_url, vec![7u8; 2 << 20], "application/octet-stream").await;
    assert_eq!(reply.status, 507, "{}", reply.text());
    assert_eq!(http::get(addr, &path_of(&get_url), &[]).await.status, 404, "nothing half-written is served");
    let left: Vec<_> = std::fs::read_dir(&files).expect("dir").filter_map(Result::ok).map(|e| e.file_name()).collect();
    assert!(left.iter().all(|name| name == "secret"), "the partial file is removed: {left:?}");

    // The rest goes on: a file that fits, and chat.
    let (small_put, small_get) = slot(&mut alice, "small.txt", 5, "text/plain").await;
    assert_eq!(put(addr, &small_put, b"hello".to_vec(), "text/plain").await.status, 201);
    assert_eq!(http::get(addr, &path_of(&small_get), &[]).await.status, 200);
    alice.send("<message to='bob@localhost/b' type='chat'><body>after the full disk</body></message>").await;
    assert_eq!(
        bob.recv_message().await.get_child("body", "jabber:client").map(|b| b.text()).as_deref(),
        Some("after the full disk")
    );
}

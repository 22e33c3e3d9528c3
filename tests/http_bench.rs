//! Figures for the HTTP services (not run by default; nothing is asserted):
//! `cargo test --release --test http_bench -- --ignored --nocapture --test-threads 1`.
//! - a 100 MB upload through XEP-0363 (throughput of the PUT and of the GET, and the
//!   process's peak RSS above its level before the upload, server and client included);
//! - message latency from a WebSocket client and from a TCP client to a TCP client.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;
use hyper::Request;

use common::websocket::WsConn;
use common::{Client, TestServer, http};

const NS_UPLOAD: &str = "urn:xmpp:http:upload:0";

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with(field)).expect("field");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("kB")
}

async fn server() -> TestServer {
    let server = TestServer::start_with(|config| {
        config.http.listen = vec!["127.0.0.1:0".parse().expect("addr")];
        config.http.plain_is_behind_tls_proxy = true;
        let table = config.modules.settings.get_mut("upload").and_then(|t| t.as_table_mut()).expect("upload");
        table.insert("max_file_size".into(), toml::Value::Integer(200 << 20));
    })
    .await;
    server.add_user("alice", "pw").await;
    server.add_user("bob", "pw").await;
    server
}

fn path_of(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("http URL");
    rest[rest.find('/').expect("path")..].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn upload_100_mb() {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 1600; // 100 MiB
    let size = (CHUNK * CHUNKS) as u64;
    let server = server().await;
    let addr = server.http_addr();
    let mut alice = server.login("alice", "a").await;
    let (reply, _) = alice
        .iq(&format!(
            "<iq type='get' id='{{id}}' to='upload.localhost'><request xmlns='{NS_UPLOAD}' filename='big.bin' size='{size}'/></iq>"
        ))
        .await;
    let slot = reply.get_child("slot", NS_UPLOAD).unwrap_or_else(|| panic!("no slot: {}", String::from(&reply)));
    let url = |name: &str| slot.get_child(name, NS_UPLOAD).and_then(|e| e.attr("url")).expect("url").to_owned();
    let (put_url, get_url) = (url("put"), url("get"));
    let chunk = Bytes::from(vec![0x5a; CHUNK]);
    let baseline = status_kb("VmRSS:");
    let peak_before = status_kb("VmHWM:");

    let start = Instant::now();
    let body =
        Body::from_stream(futures::stream::iter((0..CHUNKS).map(move |_| Ok::<_, std::io::Error>(chunk.clone()))));
    let request = Request::put(path_of(&put_url))
        .header("host", "localhost")
        .header("content-length", size)
        .header("content-type", "application/octet-stream")
        .body(body)
        .expect("request");
    let stored = http::request(addr, request).await;
    assert_eq!(stored.status, 201);
    let put_time = start.elapsed();

    let start = Instant::now();
    let request = Request::get(path_of(&get_url)).header("host", "localhost").body(Body::empty()).expect("request");
    let mut body = Body::new(http::send(addr, request).await.into_body()).into_data_stream();
    let mut received = 0u64;
    while let Some(part) = body.next().await {
        received += part.expect("body").len() as u64;
    }
    assert_eq!(received, size);
    let get_time = start.elapsed();
    let peak = status_kb("VmHWM:");
    let mb = size as f64 / 1e6;
    println!(
        "upload 100 MiB: PUT {:.0} MB/s ({:.2} s), GET {:.0} MB/s ({:.2} s); RSS before {} MiB, peak {} MiB (peak before {} MiB)",
        mb / put_time.as_secs_f64(),
        put_time.as_secs_f64(),
        mb / get_time.as_secs_f64(),
        get_time.as_secs_f64(),
        baseline / 1024,
        peak / 1024,
        peak_before / 1024,
    );
}

const MESSAGES: usize = 2000;

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{label}: median {:.0} µs, p99 {:.0} µs over {} messages",
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        samples.len()
    );
}

async fn await_message(bob: &mut Client) {
    loop {
        if bob.recv().await.name() == "message" {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn websocket_latency_vs_tcp() {
    let server = server().await;
    let mut bob = server.login("bob", "b").await;
    let message = "<message xmlns='jabber:client' to='bob@localhost/b' type='chat'><body>ping</body></message>";

    let mut tcp = server.login("alice", "tcp").await;
    let mut samples = Vec::with_capacity(MESSAGES);
    for _ in 0..MESSAGES {
        let start = Instant::now();
        tcp.send(message).await;
        await_message(&mut bob).await;
        samples.push(start.elapsed());
    }
    report("TCP → TCP", samples);

    let mut ws = WsConn::connect(server.http_addr(), false).await;
    ws.login("alice", "pw", "ws").await;
    let mut samples = Vec::with_capacity(MESSAGES);
    for _ in 0..MESSAGES {
        let start = Instant::now();
        ws.send(message).await;
        await_message(&mut bob).await;
        samples.push(start.elapsed());
    }
    report("WebSocket → TCP", samples);

    let mut samples = Vec::with_capacity(MESSAGES);
    let back = "<message to='alice@localhost/ws' type='chat'><body>pong</body></message>";
    for _ in 0..MESSAGES {
        let start = Instant::now();
        bob.send(back).await;
        ws.recv_message().await;
        samples.push(start.elapsed());
    }
    report("TCP → WebSocket", samples);
}

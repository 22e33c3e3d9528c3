//! 10,000 half-open TLS handshakes (issue: reliability) against `starling serve` in a
//! child process, from a hundred loopback addresses: each holds a connection slot only
//! until `[c2s] negotiation_timeout`, no more than `[limits] connections_per_ip` come
//! from one address, and real clients log in and chat while they hang. A child process
//! has its own file-descriptor limit, so the 10,000 sockets on each side fit.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::child::{spawn_server_with_listeners, starling, write_config_with_modules};
use common::{Client, HOST};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const SOURCES: u8 = 100;
const PER_SOURCE: usize = 100;

/// A TLS record header announcing a 512-byte handshake message that never comes.
const PARTIAL_HELLO: [u8; 5] = [0x16, 0x03, 0x01, 0x02, 0x00];

async fn half_open(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((from, 0))).expect("bind a loopback source address");
    let mut stream = socket.connect(to).await.expect("connect");
    stream.write_all(&PARTIAL_HELLO).await.expect("write");
    stream
}

/// Whether the server closes `stream` within `wait` (reading whatever it sends first).
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_half_open_tls_handshakes_time_out_while_real_clients_get_in() {
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config_with_modules(
        dir.path(),
        &["disco", "ping", "roster"],
        "[limits]\nmax_connections = 10100\nconnections_per_ip = 100\nconnections_per_ip_exempt = []\n\
         [c2s]\nnegotiation_timeout = 20\n",
    );
    for user in ["alice", "bob"] {
        assert!(starling(&config, &["user", "add", &format!("{user}@{HOST}")], Some("pw\n")).status.success());
    }
    let (server, listeners, _) = spawn_server_with_listeners(&config);
    let idle_rss = rss_kib(server.id());
    let idle_files = open_files(server.id());

    let started = std::time::Instant::now();
    // One connection after another: a debug build accepts about a thousand a second,
    // and a burst beyond the listen backlog would only measure SYN retransmits.
    let mut hanging = Vec::with_capacity(usize::from(SOURCES) * PER_SOURCE);
    for source in 1..=SOURCES {
        for _ in 0..PER_SOURCE {
            hanging.push(half_open(Ipv4Addr::new(127, 0, 1, source), listeners.direct_tls).await);
        }
    }
    // Connecting only queues in the kernel; wait until the server holds them all.
    let accepted = async {
        while open_files(server.id()) < idle_files + hanging.len() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), accepted).await.expect("the server accepts all of them");
    let filled = started.elapsed();
    let loaded_rss = rss_kib(server.id());
    eprintln!(
        "{} half-open TLS connections: server RSS {idle_rss} KiB idle, {loaded_rss} KiB with them ({:.1} KiB each)",
        hanging.len(),
        (loaded_rss.saturating_sub(idle_rss)) as f64 / hanging.len() as f64
    );

    // One more from a full address is turned away at once.
    let mut over = half_open(Ipv4Addr::new(127, 0, 1, 1), listeners.direct_tls).await;
    assert!(closed_within(&mut over, Duration::from_secs(2)).await, "the per-address limit holds");

    // Real clients are served meanwhile.
    let mut alice = Client::login(listeners.starttls, "alice", "pw", Some("desk")).await;
    let mut bob = Client::login(listeners.starttls, "bob", "pw", Some("phone")).await;
    alice.send(&format!("<message to='bob@{HOST}/phone' type='chat'><body>through</body></message>")).await;
    let message = bob.recv_message().await;
    assert_eq!(message.get_child("body", "jabber:client").map(|b| b.text()).as_deref(), Some("through"));

    // Every half-open connection is dropped once its negotiation time is up.
    for (i, stream) in hanging.iter_mut().enumerate() {
        assert!(closed_within(stream, Duration::from_secs(30)).await, "half-open connection {i} still open");
    }
    eprintln!("filled in {filled:?}, all dropped after {:?}", started.elapsed());
    let mut carol_slot = Client::login(listeners.starttls, "alice", "pw", Some("again")).await;
    carol_slot.sync().await;
    alice.sync().await;
}

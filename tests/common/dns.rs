//! A tiny authoritative DNS server on a loopback UDP port, so federation tests run the
//! real SRV and address lookups (there is no DNS on the test machines). Answers the
//! SRV and A records it was given, NODATA for other types of known names (and their
//! ancestors) and NXDOMAIN for the rest. Prosody (libunbound `forward`) and ejabberd (`inetrc` nameserver) use
//! it too.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

type Records = Arc<Mutex<HashMap<String, Vec<RData>>>>;

/// The running server; records can be added while it runs.
pub struct TestDns {
    pub addr: SocketAddr,
    records: Records,
    task: tokio::task::JoinHandle<()>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl TestDns {
    pub async fn start() -> TestDns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind DNS");
        let addr = socket.local_addr().expect("addr");
        let records: Records = Arc::default();
        let table = records.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else { return };
                let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
                let reply = answer(&query, &table);
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        TestDns { addr, records, task }
    }

    /// `name` has address 127.0.0.1.
    pub fn a(&self, name: &str) {
        self.add(name, RData::A(A(Ipv4Addr::LOCALHOST)));
    }

    /// `_service._tcp.domain` SRV → target:port.
    pub fn srv(&self, service: &str, domain: &str, priority: u16, weight: u16, port: u16, target: &str) {
        let target = Name::from_ascii(format!("{}.", key(target))).expect("target name");
        self.add(&format!("{service}._tcp.{domain}"), RData::SRV(SRV::new(priority, weight, port, target)));
    }

    /// Federation records for a server of `domain` on loopback: SRV records for its
    /// STARTTLS and (when given) direct TLS ports, and an A record for the domain.
    /// The SRV target is `localhost`, which `/etc/hosts` resolves: ejabberd resolves
    /// SRV targets with the system's getaddrinfo, which must not reach for real DNS.
    pub fn server(&self, domain: &str, starttls: u16, direct_tls: Option<u16>) {
        self.a(domain);
        if !self.records.lock().expect("records").contains_key("localhost") {
            self.a("localhost");
        }
        self.srv("_xmpp-server", domain, 10, 0, starttls, "localhost");
        if let Some(port) = direct_tls {
            self.srv("_xmpps-server", domain, 10, 0, port, "localhost");
        }
    }

    fn add(&self, name: &str, data: RData) {
        self.records.lock().expect("records").entry(key(name)).or_default().push(data);
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(query: &Message, table: &Records) -> Message {
    let mut reply = Message::new(query.metadata.id, MessageType::Response, query.metadata.op_code);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    let table = table.lock().expect("records");
    let mut known = false;
    for question in &query.queries {
        reply.add_query(question.clone());
        let name = key(&question.name().to_ascii());
        // Ancestors of known names exist (empty non-terminals): resolvers that
        // minimise query names (libunbound) ask for `test.` and `_tcp.a.test.` first.
        let suffix = format!(".{name}");
        if name.is_empty() || table.keys().any(|k| k.ends_with(&suffix)) {
            known = true;
        }
        let Some(data) = table.get(&name) else { continue };
        known = true;
        for rdata in data {
            let matches = matches!(
                (question.query_type(), rdata),
                (RecordType::A, RData::A(_)) | (RecordType::SRV, RData::SRV(_))
            );
            if matches {
                reply.add_answer(Record::from_rdata(question.name().clone(), 60, rdata.clone()));
            }
        }
    }
    if !known {
        reply.metadata.response_code = ResponseCode::NXDomain;
    }
    reply
}

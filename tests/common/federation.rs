//! Federation test set-ups: Starling instances for `*.test` domains on loopback, found
//! through the test DNS server, with CA-signed certificates (SASL EXTERNAL) or
//! self-signed ones (dialback only).

use std::path::{Path, PathBuf};

use starling::config::Config;

use super::TestServer;
use super::dns::TestDns;

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, PEM, as written to `path`.
    pub path: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Starling test CA");
        let cert = params.self_signed(&key).expect("CA certificate");
        let path = dir.join("ca.pem");
        std::fs::write(&path, cert.pem()).expect("write CA");
        TestCa { issuer: rcgen::Issuer::new(params, key), path }
    }

    /// A certificate for `names`, signed by this CA: (certificate PEM, key PEM).
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }

    /// Writes a certificate for `domain` (and `*.domain`) as `dir/domain.crt` + `.key`.
    pub fn issue_into(&self, dir: &Path, domain: &str) {
        std::fs::create_dir_all(dir).expect("cert dir");
        let (cert, key) = self.issue(&[domain, &format!("*.{domain}")]);
        std::fs::write(dir.join(format!("{domain}.crt")), cert).expect("write cert");
        std::fs::write(dir.join(format!("{domain}.key")), key).expect("write key");
    }
}

/// How an instance authenticates to its peers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// CA-signed certificates, dialback switched off: SASL EXTERNAL or nothing.
    Certificates,
    /// Self-signed certificates: dialback.
    Dialback,
}

/// Where an instance is published in DNS.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// `_xmpp-server` (STARTTLS) only.
    StartTls,
    /// `_xmpps-server` (direct TLS, preferred) and `_xmpp-server`.
    DirectTls,
    /// Not at all (an impostor).
    Hidden,
}

/// Starts a Starling instance serving `domain`, federating through `dns`; with a CA,
/// it has a certificate from it and accepts only valid certificates (no dialback).
pub async fn instance(
    domain: &str,
    dns: &TestDns,
    ca: Option<&TestCa>,
    publish: Publish,
    adjust: impl FnOnce(&mut Config),
) -> TestServer {
    let domain = domain.to_owned();
    let nameserver = dns.addr;
    let ca_path = ca.map(|ca| ca.path.clone());
    let server = TestServer::start_with(|config| {
        config.server.hosts = vec![domain.clone()];
        if let Some(ca) = ca {
            ca.issue_into(&config.tls.cert_dir, &domain);
        }
        config.s2s.enabled = true;
        config.s2s.listen = vec!["127.0.0.1:0".parse().expect("addr")];
        config.s2s.listen_direct_tls = vec!["127.0.0.1:0".parse().expect("addr")];
        config.s2s.nameservers = vec![nameserver];
        config.s2s.system_roots = false;
        config.s2s.negotiation_timeout = 20;
        if let Some(path) = ca_path {
            config.s2s.extra_ca_files = vec![path];
            config.s2s.allow_dialback = false;
            config.s2s.require_valid_certificate = true;
        }
        adjust(config);
    })
    .await;
    match publish {
        Publish::StartTls => dns.server(&domain, server.s2s_addr().port(), None),
        Publish::DirectTls => dns.server(&domain, server.s2s_addr().port(), Some(server.s2s_tls_addr().port())),
        Publish::Hidden => {}
    }
    server
}

/// Reads from `client` until a stanza satisfies `wanted`, which it returns.
pub async fn recv_until(client: &mut super::Client, wanted: impl Fn(&minidom::Element) -> bool) -> minidom::Element {
    loop {
        let stanza = client.recv().await;
        if wanted(&stanza) {
            return stanza;
        }
    }
}

/// Reads from `client` until every predicate in `wanted` was satisfied by some stanza,
/// in any order (a roster push and a presence travel on different tasks).
pub async fn recv_all(client: &mut super::Client, wanted: &[&dyn Fn(&minidom::Element) -> bool]) {
    let mut seen = vec![false; wanted.len()];
    while seen.iter().any(|s| !s) {
        let stanza = client.recv().await;
        for (i, want) in wanted.iter().enumerate() {
            seen[i] |= want(&stanza);
        }
    }
}

/// Whether `stanza` is a roster push (RFC 6121 §2.1.6) setting `jid` to `subscription`.
pub fn roster_push(stanza: &minidom::Element, jid: &str, subscription: &str) -> bool {
    stanza.name() == "iq"
        && stanza.attr("type") == Some("set")
        && stanza.get_child("query", "jabber:iq:roster").is_some_and(|q| {
            q.children().any(|i| i.attr("jid") == Some(jid) && i.attr("subscription") == Some(subscription))
        })
}

//! Test harness: a server started in-process on loopback with its own temporary
//! directory, and a small XMPP client that speaks real XML over real TCP/TLS.
#![allow(dead_code, unused_imports)]

pub mod child;
pub mod client;
pub mod component;
pub mod dns;
pub mod federation;
pub mod http;
pub mod mam;
pub mod peers;
pub mod sasl2;
pub mod scram;
pub mod tcp_proxy;
pub mod websocket;

use std::path::Path;
use std::sync::Arc;

use starling::config::Config;
use starling::{Server, auth};

pub use client::{Client, Conn};

/// A server for one test.
pub struct TestServer {
    pub server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub config: Config,
    /// The PostgreSQL database when `STARLING_TEST_STORAGE=postgres` (dropped last).
    _postgres: Option<starling::storage::test_db::TestDb>,
}

/// The host every test server serves.
pub const HOST: &str = "localhost";

impl TestServer {
    /// Starts a server with the default test configuration.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `adjust` has changed the test configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        // `STARLING_TEST_STORAGE=postgres` runs the same tests on a fresh PostgreSQL
        // database (.ci/run does, for the tests that touch storage).
        let postgres = match std::env::var("STARLING_TEST_STORAGE").as_deref() {
            Ok("postgres") => starling::storage::test_db::TestDb::postgres(),
            _ => None,
        };
        if let Some(db) = &postgres {
            config.storage.url = db.url.clone();
        }
        adjust(&mut config);
        let server = Server::start(config.clone()).await.expect("server starts");
        TestServer { server: Some(server), dir, config, _postgres: postgres }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("server running")
    }

    /// The STARTTLS listener.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server().c2s_addrs[0]
    }

    /// The direct TLS listener.
    pub fn tls_addr(&self) -> std::net::SocketAddr {
        self.server().c2s_direct_tls_addrs[0]
    }

    /// The first plain HTTP listener (`[http] listen`).
    pub fn http_addr(&self) -> std::net::SocketAddr {
        self.server().http_addrs[0]
    }

    /// The first HTTPS listener (`[http] listen_tls`).
    pub fn https_addr(&self) -> std::net::SocketAddr {
        self.server().http_tls_addrs[0]
    }

    /// The server's database.
    pub fn db(&self) -> &starling_api::Db {
        self.server().context.db()
    }

    /// Creates `user@localhost` with `password`.
    pub async fn add_user(&self, user: &str, password: &str) {
        self.add_user_at(user, HOST, password).await;
    }

    /// Creates `user@domain` (one of the server's hosts) with `password`.
    pub async fn add_user_at(&self, user: &str, domain: &str, password: &str) {
        let jid = auth::account_jid(&format!("{user}@{domain}"), &self.config.server.hosts).expect("jid");
        auth::create_account(self.server().context.db(), &jid, password).await.expect("account created");
    }

    /// The STARTTLS server-to-server listener.
    pub fn s2s_addr(&self) -> std::net::SocketAddr {
        self.server().s2s_addrs[0]
    }

    /// The direct TLS server-to-server listener (XEP-0368).
    pub fn s2s_tls_addr(&self) -> std::net::SocketAddr {
        self.server().s2s_direct_tls_addrs[0]
    }

    /// Whether `user` can log in with `password` (SCRAM-SHA-256 over STARTTLS).
    pub async fn can_log_in(&self, user: &str, password: &str) -> bool {
        let mut conn = Conn::tcp(self.addr()).await;
        conn.open().await;
        conn.starttls().await;
        conn.auth(user, password).await.is_ok()
    }

    /// Connects and logs in `user` (password "pw") with SCRAM-SHA-256 over STARTTLS,
    /// binding `resource`.
    pub async fn login(&self, user: &str, resource: &str) -> Client {
        Client::login(self.addr(), user, "pw", Some(resource)).await
    }

    /// Stops the server and starts it again on the same database and certificates
    /// (new ports).
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut config = self.config.clone();
        config.listen = self.config.listen.clone();
        self.server = Some(Server::start(config).await.expect("server restarts"));
    }

    /// Stops the server gracefully.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// The configuration tests start from: loopback, port 0, a temporary SQLite file,
/// a generated certificate, every compiled-in module enabled.
pub fn test_config(dir: &Path) -> Config {
    Config::parse(&test_config_text(dir), std::path::Path::new("test.toml")).expect("test config parses")
}

/// The text of [`test_config`], for tests that need it in a file (reloads).
pub fn test_config_text(dir: &Path) -> String {
    let enabled: Vec<String> = starling::modules::names().iter().map(|n| format!("{n:?}")).collect();
    format!(
        r#"
[server]
hosts = ["{HOST}"]
admin_socket = "{socket}"
[listen]
c2s = ["127.0.0.1:0"]
c2s_direct_tls = ["127.0.0.1:0"]
[c2s]
fast_key_file = "{fast_key}"
[tls]
cert_dir = "{certs}"
generate_self_signed = true
[storage]
url = "sqlite://{db}"
pool_size = 4
[s2s]
enabled = false
[log]
level = "warn"
[modules]
enabled = [{enabled}]
[modules.upload]
storage_dir = "{uploads}"
[modules.proxy65]
listen = "127.0.0.1:0"
"#,
        certs = dir.join("certs").display(),
        fast_key = dir.join("fast.key").display(),
        socket = dir.join("admin.sock").display(),
        db = dir.join("test.sqlite").display(),
        uploads = dir.join("upload").display(),
        enabled = enabled.join(", "),
    )
}

/// Logs at `warn` to the test output when `TEST_LOG` is set.
pub fn init_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(std::env::var("TEST_LOG").unwrap_or_default()))
            .with_test_writer()
            .try_init();
    }
}

/// A rustls client config that accepts any certificate: these tests check the XMPP
/// server, not certificate validation (the server's certificate is self-signed).
pub fn insecure_tls(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    insecure_tls_with_cert(alpn, None)
}

/// [`insecure_tls`], presenting a client certificate (chain, key) when given.
pub fn insecure_tls_with_cert(
    alpn: &[&[u8]],
    client_cert: Option<(Vec<rustls_pki_types::CertificateDer<'static>>, rustls_pki_types::PrivateKeyDer<'static>)>,
) -> Arc<rustls::ClientConfig> {
    #[derive(Debug)]
    struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &[rustls_pki_types::CertificateDer<'_>],
            _: &rustls_pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls_pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)));
    let mut config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).expect("client certificate"),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

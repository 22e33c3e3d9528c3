//! TLS for client and server streams: certificates per host, chosen by SNI; ALPN for
//! direct TLS (XEP-0368); the channel-binding data SCRAM-PLUS needs (RFC 9266, RFC 5929).
//!
//! Server-to-server TLS authenticates in both directions: incoming streams ask for a
//! client certificate (optional), outgoing streams present ours. The handshake only
//! proves possession of the key; whether a certificate names the peer's domain is
//! decided afterwards (`s2s::certificate`), because an unverified peer may still
//! authenticate with dialback where the policy allows it.
//!
//! Certificates come from the configured directory (`certs/` by default). A host
//! without one gets a generated self-signed certificate when the admin allows it —
//! for development, with a loud warning.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// No certificate for a host and generation is off.
    #[error("no certificate for {domain}; looked for {tried}")]
    Missing {
        /// The host.
        domain: String,
        /// The paths tried.
        tried: String,
    },
    /// A file could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The key does not belong to the certificate, or is of an unsupported type.
    #[error("certificate for {domain}: {message}")]
    Key {
        /// The host.
        domain: String,
        /// What went wrong.
        message: String,
    },
    /// Generating a self-signed certificate failed.
    #[error("cannot generate a certificate for {domain}: {message}")]
    Generate {
        /// The host.
        domain: String,
        /// What went wrong.
        message: String,
    },
}

#[derive(Debug, Clone)]
struct HostCert {
    domain: String,
    key: Arc<CertifiedKey>,
    end_point: Vec<u8>,
}

/// The certificates of all hosts. [`CertStore::reload`] swaps in renewed ones: the
/// rustls configurations resolve through the store on every handshake, so new
/// connections get them at once.
#[derive(Debug)]
pub struct CertStore {
    hosts: std::sync::RwLock<Arc<Vec<HostCert>>>,
}

/// The one crypto provider (ring) everything here uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl CertStore {
    /// Loads a certificate for every domain (see the module docs for the file layouts),
    /// generating a self-signed one where missing if `generate_self_signed`.
    pub fn load(dir: &Path, domains: &[String], generate_self_signed: bool) -> Result<Self, TlsError> {
        let provider = provider();
        let mut hosts = Vec::new();
        for domain in domains {
            let (certs, key) = match find_files(dir, domain)? {
                Some(found) => found,
                None if generate_self_signed => generate(dir, domain)?,
                None => {
                    let tried = candidates(dir, domain)
                        .iter()
                        .map(|(c, _)| c.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(TlsError::Missing { domain: domain.clone(), tried });
                }
            };
            let end_point = end_point_hash(&certs[0]);
            let key = CertifiedKey::from_der(certs, key, &provider)
                .map_err(|e| TlsError::Key { domain: domain.clone(), message: e.to_string() })?;
            hosts.push(HostCert { domain: domain.clone(), key: Arc::new(key), end_point });
        }
        Ok(CertStore { hosts: std::sync::RwLock::new(Arc::new(hosts)) })
    }

    /// Loads the certificates again (renewed files) and uses them from now on; on
    /// error the old ones stay.
    pub fn reload(&self, dir: &Path, domains: &[String], generate_self_signed: bool) -> Result<(), TlsError> {
        let fresh = Self::load(dir, domains, generate_self_signed)?;
        let hosts = fresh.hosts();
        *self.hosts.write().unwrap_or_else(|e| e.into_inner()) = hosts;
        Ok(())
    }

    fn hosts(&self) -> Arc<Vec<HostCert>> {
        self.hosts.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The domains with a certificate.
    pub fn domains(&self) -> Vec<String> {
        self.hosts().iter().map(|h| h.domain.clone()).collect()
    }

    fn select(&self, sni: Option<&str>) -> Option<HostCert> {
        let hosts = self.hosts();
        let sni = sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase());
        let exact = sni.as_deref().and_then(|name| hosts.iter().find(|h| h.domain == name));
        // A subdomain (conference.example.org) is served by its parent's certificate,
        // which the generator and most admins issue with a `*.` name.
        let parent = || {
            let name = sni.as_deref()?;
            let (_, parent) = name.split_once('.')?;
            hosts.iter().find(|h| h.domain == parent)
        };
        exact.or_else(parent).or_else(|| hosts.first()).cloned()
    }

    /// A rustls configuration choosing the certificate by SNI, with these ALPN ids.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"));
        let mut config = builder.with_no_client_auth().with_cert_resolver(Arc::new(SniResolver(self.clone())));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A rustls configuration for incoming server-to-server streams: like
    /// [`CertStore::server_config`], and asking the peer for its certificate.
    pub fn s2s_server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"));
        let mut config = builder
            .with_client_cert_verifier(Arc::new(PeerCertificate(provider())))
            .with_cert_resolver(Arc::new(SniResolver(self.clone())));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A rustls configuration for an outgoing server-to-server stream from `local`:
    /// our certificate for `local` as the client certificate, the peer's certificate
    /// accepted for checking after the handshake.
    pub fn s2s_client_config(&self, local: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PeerCertificate(provider())));
        let key = self.select_for(local).map(|h| h.key.clone());
        let mut config = builder.with_client_cert_resolver(Arc::new(ClientCert(key)));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// The certificate for `domain` or its parent domain, never another host's.
    fn select_for(&self, domain: &str) -> Option<HostCert> {
        let hosts = self.hosts();
        let exact = hosts.iter().find(|h| h.domain == domain);
        exact
            .or_else(|| {
                let (_, parent) = domain.split_once('.')?;
                hosts.iter().find(|h| h.domain == parent)
            })
            .cloned()
    }

    /// RFC 5929 `tls-server-end-point` data for the certificate served to `sni`.
    pub fn end_point_hash(&self, sni: Option<&str>) -> Option<Vec<u8>> {
        self.select(sni).map(|h| h.end_point)
    }
}

#[derive(Debug)]
struct SniResolver(Arc<CertStore>);

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.select(hello.server_name()).map(|h| h.key)
    }
}

/// Accepts any certificate chain during the handshake while verifying the handshake
/// signatures, so the peer proves it holds the key; the chain and the name are
/// checked later against the trust roots by `s2s::certificate`.
#[derive(Debug)]
struct PeerCertificate(Arc<CryptoProvider>);

impl PeerCertificate {
    fn tls12(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn tls13(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
}

impl ServerCertVerifier for PeerCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PeerCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Our certificate for the local domain of an outgoing stream.
#[derive(Debug)]
struct ClientCert(Option<Arc<CertifiedKey>>);

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.clone()
    }

    fn has_certs(&self) -> bool {
        self.0.is_some()
    }
}

/// RFC 9266 `tls-exporter` (TLS 1.3 only: on 1.2 it is only safe with extended master
/// secret, which we cannot confirm) and RFC 5929 `tls-server-end-point` data.
pub fn channel_binding(conn: &rustls::ServerConnection, certs: &CertStore) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let exporter = if conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
        let mut out = vec![0u8; 32];
        match conn.export_keying_material(&mut out, b"EXPORTER-Channel-Binding", None) {
            Ok(_) => Some(out),
            Err(_) => None,
        }
    } else {
        None
    };
    (exporter, certs.end_point_hash(conn.server_name()))
}

fn candidates(dir: &Path, domain: &str) -> Vec<(PathBuf, PathBuf)> {
    vec![
        (dir.join(domain).join("fullchain.pem"), dir.join(domain).join("privkey.pem")),
        (dir.join(format!("{domain}.crt")), dir.join(format!("{domain}.key"))),
        (dir.join(format!("{domain}.pem")), dir.join(format!("{domain}.pem"))),
    ]
}

type Loaded = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn find_files(dir: &Path, domain: &str) -> Result<Option<Loaded>, TlsError> {
    for (cert_path, key_path) in candidates(dir, domain) {
        if cert_path.exists() && key_path.exists() {
            return load_files(&cert_path, &key_path).map(Some);
        }
    }
    Ok(None)
}

fn load_files(cert_path: &Path, key_path: &Path) -> Result<Loaded, TlsError> {
    let file_error = |path: &Path, message: String| TlsError::File { path: path.to_owned(), message };
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| file_error(cert_path, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_error(cert_path, "no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| file_error(key_path, e.to_string()))?;
    Ok((certs, key))
}

fn generate(dir: &Path, domain: &str) -> Result<Loaded, TlsError> {
    let generate_error = |message: String| TlsError::Generate { domain: domain.to_owned(), message };
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec![domain.to_owned(), format!("*.{domain}")])
            .map_err(|e| generate_error(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| generate_error(format!("{}: {e}", dir.display())))?;
    let cert_path = dir.join(format!("{domain}.crt"));
    let key_path = dir.join(format!("{domain}.key"));
    write_private(&key_path, signing_key.serialize_pem().as_bytes())
        .map_err(|e| generate_error(format!("{}: {e}", key_path.display())))?;
    std::fs::write(&cert_path, cert.pem()).map_err(|e| generate_error(format!("{}: {e}", cert_path.display())))?;
    tracing::warn!(
        %domain,
        cert = %cert_path.display(),
        "generated a SELF-SIGNED certificate: for development only, clients will not trust it; \
         put a real certificate in the certificate directory for production"
    );
    load_files(&cert_path, &key_path)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(bytes)
}

/// The hash for `tls-server-end-point` follows the certificate's signature algorithm:
/// SHA-384/512 for those, SHA-256 for everything else (RFC 5929 §4.1 maps MD5 and
/// SHA-1 to SHA-256 too).
fn end_point_hash(cert: &CertificateDer<'_>) -> Vec<u8> {
    const SHA384_OIDS: [&[u8]; 2] = [
        &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x03],
        &[0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0C],
    ];
    const SHA512_OIDS: [&[u8]; 2] = [
        &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x04],
        &[0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0D],
    ];
    let der = cert.as_ref();
    let contains = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    if SHA512_OIDS.iter().any(|o| contains(o)) {
        Sha512::digest(der).to_vec()
    } else if SHA384_OIDS.iter().any(|o| contains(o)) {
        Sha384::digest(der).to_vec()
    } else {
        Sha256::digest(der).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, domains: &[&str]) -> Result<CertStore, TlsError> {
        CertStore::load(dir, &domains.iter().map(|d| d.to_string()).collect::<Vec<_>>(), true)
    }

    #[test]
    fn missing_certificate_without_generation_names_the_paths() {
        let dir = tempfile::tempdir().expect("dir");
        let err = CertStore::load(dir.path(), &["a.test".into()], false).expect_err("missing");
        let message = err.to_string();
        assert!(message.contains("a.test.crt") && message.contains("fullchain.pem"), "{message}");
    }

    #[test]
    fn generated_certificates_are_written_once_and_reused() {
        let dir = tempfile::tempdir().expect("dir");
        let first = store(dir.path(), &["a.test"]).expect("generated");
        let key_path = dir.path().join("a.test.key");
        let mode = std::fs::metadata(&key_path)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
            .expect("key");
        assert_eq!(mode & 0o777, 0o600);
        let again = store(dir.path(), &["a.test"]).expect("loaded");
        assert_eq!(first.end_point_hash(None), again.end_point_hash(None), "no regeneration");
    }

    #[test]
    fn certbot_layout_and_combined_pem_load_and_mismatched_keys_fail() {
        let dir = tempfile::tempdir().expect("dir");
        let a = rcgen::generate_simple_self_signed(vec!["a.test".into()]).expect("cert");
        std::fs::create_dir_all(dir.path().join("a.test")).expect("dir");
        std::fs::write(dir.path().join("a.test/fullchain.pem"), a.cert.pem()).expect("write");
        std::fs::write(dir.path().join("a.test/privkey.pem"), a.signing_key.serialize_pem()).expect("write");
        let b = rcgen::generate_simple_self_signed(vec!["b.test".into()]).expect("cert");
        std::fs::write(dir.path().join("b.test.pem"), format!("{}{}", b.cert.pem(), b.signing_key.serialize_pem()))
            .expect("write");
        let loaded = CertStore::load(dir.path(), &["a.test".into(), "b.test".into()], false).expect("loads");
        assert_eq!(loaded.domains(), ["a.test", "b.test"]);
        std::fs::write(dir.path().join("c.test.crt"), a.cert.pem()).expect("write");
        std::fs::write(dir.path().join("c.test.key"), b.signing_key.serialize_pem()).expect("write");
        assert!(matches!(CertStore::load(dir.path(), &["c.test".into()], false), Err(TlsError::Key { .. })));
    }

    #[tokio::test]
    async fn sni_selects_the_certificate_and_binding_data_matches_the_client() {
        let dir = tempfile::tempdir().expect("dir");
        let certs = Arc::new(store(dir.path(), &["a.test", "b.test"]).expect("certs"));
        let server_config = certs.server_config(&[b"xmpp-client"]);
        for name in ["a.test", "b.test", "conference.b.test"] {
            let (client_io, server_io) = tokio::io::duplex(64 * 1024);
            let acceptor = tokio_rustls::TlsAcceptor::from(server_config.clone());
            let server = tokio::spawn(async move { acceptor.accept(server_io).await });
            let connector = tokio_rustls::TlsConnector::from(insecure_client(&[b"xmpp-client"]));
            let server_name = rustls_pki_types::ServerName::try_from(name.to_owned()).expect("name");
            let client = connector.connect(server_name, client_io).await.expect("client handshake");
            let server = server.await.expect("join").expect("server handshake");
            let (_, client_conn) = client.get_ref();
            let (_, server_conn) = server.get_ref();
            assert_eq!(client_conn.alpn_protocol(), Some(&b"xmpp-client"[..]));
            let (exporter, end_point) = channel_binding(server_conn, &certs);
            let mut expected = vec![0u8; 32];
            client_conn.export_keying_material(&mut expected, b"EXPORTER-Channel-Binding", None).expect("exporter");
            assert_eq!(exporter, Some(expected));
            let leaf = &client_conn.peer_certificates().expect("certs")[0];
            assert_eq!(end_point, Some(Sha256::digest(leaf.as_ref()).to_vec()));
            let expected_domain = if name == "a.test" { "a.test" } else { "b.test" };
            assert_eq!(certs.end_point_hash(Some(expected_domain)), end_point, "{name}");
        }
    }

    fn insecure_client(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        #[derive(Debug)]
        struct AcceptAny;
        impl rustls::client::danger::ServerCertVerifier for AcceptAny {
            fn verify_server_cert(
                &self,
                _: &CertificateDer<'_>,
                _: &[CertificateDer<'_>],
                _: &rustls_pki_types::ServerName<'_>,
                _: &[u8],
                _: rustls_pki_types::UnixTime,
            ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            fn verify_tls12_signature(
                &self,
                _: &[u8],
                _: &CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn verify_tls13_signature(
                &self,
                _: &[u8],
                _: &CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
                provider().signature_verification_algorithms.supported_schemes()
            }
        }
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny))
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

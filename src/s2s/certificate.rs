//! Peer certificate verification for server-to-server streams (RFC 6120 §13.7.2,
//! RFC 6125 §6): the chain must lead to a trusted root (the system's roots plus the
//! configured extra CAs) and the end-entity certificate must name the peer's domain.
//!
//! Names are DNS-IDs (subjectAltName dNSName, `*.` wildcards in the left-most label
//! as RFC 6125 §6.4.3 allows), checked by rustls-webpki. XmppAddr and SRV-ID
//! identifiers (RFC 6120 §13.7.1.2) are not consulted; every public CA issues DNS-IDs.
//! Both directions use the `serverAuth` usage: the certificate a peer presents as a
//! TLS client is its server certificate.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Why the trust roots could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TrustError {
    /// The CA file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// The roots peer certificates are checked against.
pub struct Trust {
    verifier: Option<Arc<WebPkiServerVerifier>>,
}

impl Trust {
    /// System roots (when `system`) plus every certificate in the `extra` PEM files.
    pub fn load(system: bool, extra: &[PathBuf]) -> Result<Trust, TrustError> {
        let mut roots = RootCertStore::empty();
        if system {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "could not read some system root certificates");
            }
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system root certificates");
        }
        for path in extra {
            let error = |message: String| TrustError { path: path.clone(), message };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| error(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| error(e.to_string()))?;
            if certs.is_empty() {
                return Err(error("no certificate in the file".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| error(e.to_string()))?;
            }
        }
        if roots.is_empty() {
            tracing::warn!("no trusted root certificates: peers can only authenticate with dialback");
            return Ok(Trust { verifier: None });
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider())
            .build()
            .map_err(|e| TrustError { path: PathBuf::from("(roots)"), message: e.to_string() })?;
        Ok(Trust { verifier: Some(verifier) })
    }

    /// Whether `chain` (end-entity first) is a valid certificate for `domain` now;
    /// `Err` says why not, for the log.
    pub fn verify(&self, chain: Option<&[CertificateDer<'static>]>, domain: &str) -> Result<(), String> {
        let Some(verifier) = &self.verifier else { return Err("no trusted roots".into()) };
        let Some((end_entity, intermediates)) = chain.and_then(|c| c.split_first()) else {
            return Err("no certificate presented".into());
        };
        let name = ServerName::try_from(domain.to_owned()).map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(end_entity, intermediates, &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (rcgen::Issuer<'static, rcgen::KeyPair>, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("ca");
        (rcgen::Issuer::new(params, key), cert.pem())
    }

    fn leaf(issuer: &rcgen::Issuer<'static, rcgen::KeyPair>, names: &[&str]) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        params.signed_by(&key, issuer).expect("signed").der().clone()
    }

    #[test]
    fn names_and_roots_are_checked() {
        let dir = tempfile::tempdir().expect("dir");
        let (issuer, pem) = ca();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, pem).expect("write");
        let trust = Trust::load(false, &[ca_path]).expect("roots");
        let good = [leaf(&issuer, &["a.test", "*.a.test"])];
        assert_eq!(trust.verify(Some(&good), "a.test"), Ok(()));
        assert_eq!(trust.verify(Some(&good), "conference.a.test"), Ok(()));
        assert!(trust.verify(Some(&good), "b.test").is_err(), "wrong name");
        assert!(trust.verify(Some(&good), "x.conference.a.test").is_err(), "wildcards cover one label");
        let (other, _) = ca();
        let untrusted = [leaf(&other, &["a.test"])];
        assert!(trust.verify(Some(&untrusted), "a.test").is_err(), "unknown issuer");
        assert!(trust.verify(None, "a.test").is_err());
        assert!(Trust::load(false, &[]).expect("empty").verify(Some(&good), "a.test").is_err());
    }
}

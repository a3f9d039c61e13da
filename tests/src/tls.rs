//! A throwaway certificate authority, so TLS tests need no system trust store changes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

/// A CA whose certificate sits in `ca.pem` in a temporary directory (removed on drop).
/// Trust that file and every certificate it issues verifies.
pub struct TestCa {
    dir: TempDir,
    cert: rcgen::Certificate,
    key: KeyPair,
    ca_pem_path: PathBuf,
    issued: AtomicUsize,
}

impl TestCa {
    /// Generates a fresh P-256 CA.
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("mirror-test-ca")
            .tempdir()?;
        let key = KeyPair::generate().context("generating CA key")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "mirror test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).context("self-signing CA")?;
        let ca_pem_path = dir.path().join("ca.pem");
        std::fs::write(&ca_pem_path, cert.pem())?;
        Ok(Self {
            dir,
            cert,
            key,
            ca_pem_path,
            issued: AtomicUsize::new(0),
        })
    }

    /// Path of the CA certificate (PEM), to hand to clients as their trust root.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    /// The CA certificate as PEM text.
    pub fn ca_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA certificate for a `reqwest` client (`add_root_certificate`).
    pub fn reqwest_certificate(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.cert.pem().as_bytes())
            .expect("rcgen produced a valid PEM certificate")
    }

    /// Issues a server certificate for `names` (DNS names or IP addresses, e.g.
    /// `["127.0.0.1", "localhost"]`) and writes it and its key as PEM files.
    /// Returns `(cert_pem_path, key_pem_path)`; both live as long as the CA.
    pub fn issue_server_cert(&self, names: &[&str]) -> anyhow::Result<(PathBuf, PathBuf)> {
        let key = KeyPair::generate().context("generating server key")?;
        let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).context("server certificate names")?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("mirror test server"),
        );
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .context("signing server certificate")?;
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let cert_path = self.dir.path().join(format!("server-{n}.pem"));
        let key_path = self.dir.path().join(format!("server-{n}-key.pem"));
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;
        Ok((cert_path, key_path))
    }

    /// A TLS acceptor with a certificate from this CA for the loopback
    /// names, for purpose-built TLS servers.
    pub fn acceptor(&self) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
        let (cert, key) = self.issue_server_cert(&["127.0.0.1", "localhost", "::1"])?;
        let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(cert)?))
            .collect::<Result<Vec<_>, _>>()?;
        let key =
            rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(key)?))?
                .context("no private key in the issued PEM")?;
        let config = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
    }
}

//! Certificates and TLS configuration.
//!
//! `emporium certs` and `emporium up` create a development certificate
//! authority and one certificate per service under a directory:
//! `ca.pem`, `ca-key.pem`, `<service>.pem`, `<service>-key.pem`. Production
//! deployments mount their own files at the same settings.
//!
//! Both sides pin the aws-lc-rs provider explicitly, so nothing depends on a
//! process-wide default having been installed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Paths of the development certificates in one directory.
#[derive(Debug, Clone)]
pub struct CertDir(pub PathBuf);

impl CertDir {
    pub fn ca(&self) -> PathBuf {
        self.0.join("ca.pem")
    }
    fn ca_key(&self) -> PathBuf {
        self.0.join("ca-key.pem")
    }
    pub fn cert(&self, service: &str) -> PathBuf {
        self.0.join(format!("{service}.pem"))
    }
    pub fn key(&self, service: &str) -> PathBuf {
        self.0.join(format!("{service}-key.pem"))
    }

    /// Creates the CA (once) and a certificate for every listed service that
    /// lacks one, valid for `localhost`, `127.0.0.1`, `::1`, the service name and
    /// `extra_names`. Existing files are kept, so restarts keep their trust.
    pub fn ensure(&self, services: &[&str], extra_names: &[String]) -> anyhow::Result<()> {
        fs::create_dir_all(&self.0)
            .with_context(|| format!("cannot create {}", self.0.display()))?;
        let ca_key = if self.ca().exists() && self.ca_key().exists() {
            KeyPair::from_pem(&fs::read_to_string(self.ca_key())?)
                .context("the CA key is not a valid PEM key")?
        } else {
            let key = KeyPair::generate()?;
            let cert = ca_params().self_signed(&key)?;
            write_private(&self.ca_key(), key.serialize_pem().as_bytes())?;
            fs::write(self.ca(), cert.pem())?;
            tracing::info!(path = %self.ca().display(), "Development certificate authority created.");
            key
        };
        let issuer = Issuer::new(ca_params(), ca_key);
        for service in services {
            if self.cert(service).exists() && self.key(service).exists() {
                continue;
            }
            let mut names = vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
                (*service).to_owned(),
            ];
            names.extend(extra_names.iter().cloned());
            let mut params = CertificateParams::new(names)?;
            params
                .distinguished_name
                .push(DnType::CommonName, format!("emporium {service}"));
            params.use_authority_key_identifier_extension = true;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &issuer)?;
            write_private(&self.key(service), key.serialize_pem().as_bytes())?;
            fs::write(self.cert(service), cert.pem())?;
        }
        Ok(())
    }
}

/// The CA's parameters; rebuilt identically to sign later certificates.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Emporium development");
    dn.push(DnType::CommonName, "Emporium development CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

/// A rustls server configuration from PEM files, offering HTTP/2 and HTTP/1.1.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad certificate PEM in {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read private key {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A rustls client configuration trusting exactly the CA in `ca_pem`.
pub fn client_config(ca_pem: &[u8]) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.context("bad CA certificate PEM")?)?;
    }
    anyhow::ensure!(!roots.is_empty(), "the CA file holds no certificate");
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The largest CA file read: a bundle of a few hundred certificates.
const MAX_CA_FILE_BYTES: u64 = 1 << 20;

/// Reads the CA file `path`: a regular file of at most 1 MiB (not a device
/// or a pipe that never ends).
pub fn read_ca_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read CA {}", path.display()))?;
    anyhow::ensure!(
        meta.is_file(),
        "the CA {} is not a regular file",
        path.display()
    );
    anyhow::ensure!(
        meta.len() <= MAX_CA_FILE_BYTES,
        "the CA {} is larger than {MAX_CA_FILE_BYTES} bytes",
        path.display()
    );
    fs::read(path).with_context(|| format!("cannot read CA {}", path.display()))
}

/// The settings of [`client`], to add to before building (a health probe's
/// connect timeout).
pub fn client_builder(
    ca_pem_path: Option<&Path>,
    timeout: Duration,
) -> anyhow::Result<reqwest::ClientBuilder> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca_pem_path {
        let pem = read_ca_file(path)?;
        let config = client_config(&pem).with_context(|| format!("the CA {}", path.display()))?;
        builder = builder.use_preconfigured_tls(config);
    }
    Ok(builder)
}

/// The pooled HTTPS client for calls between services. Build one per process
/// part and clone it; connections and TLS sessions are reused.
pub fn client(ca_pem_path: Option<&Path>, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(client_builder(ca_pem_path, timeout)?.build()?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_ca_file_is_a_regular_file_of_at_most_a_mebibyte() {
        let dir = std::env::temp_dir().join(format!("ca-files-{}", uuid::Uuid::now_v7()));
        fs::create_dir_all(&dir).unwrap();
        let large = dir.join("large.pem");
        fs::write(&large, vec![b'A'; (1 << 20) + 1]).unwrap();
        let fine = dir.join("fine.pem");
        fs::write(&fine, b"pem").unwrap();
        assert_eq!(read_ca_file(&fine).unwrap(), b"pem");
        for (path, says) in [
            (Path::new("/dev/zero"), "is not a regular file"),
            (dir.as_path(), "is not a regular file"),
            (large.as_path(), "is larger than"),
            (&dir.join("missing.pem"), "cannot read CA"),
        ] {
            let error = format!("{:#}", read_ca_file(path).unwrap_err());
            assert!(
                error.contains(says) && error.contains(&path.display().to_string()),
                "{error}"
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn ensure_creates_a_ca_and_keeps_it() {
        let dir = std::env::temp_dir().join(format!("certs-{}", uuid::Uuid::now_v7()));
        let certs = CertDir(dir.clone());
        certs.ensure(&["accounts"], &[]).unwrap();
        let ca = fs::read(certs.ca()).unwrap();
        certs.ensure(&["accounts", "gateway"], &[]).unwrap();
        assert_eq!(
            fs::read(certs.ca()).unwrap(),
            ca,
            "the CA survives a second run"
        );
        server_config(&certs.cert("gateway"), &certs.key("gateway")).unwrap();
        client_config(&ca).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(certs.key("accounts"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "private keys are not readable by others");
        }
        fs::remove_dir_all(dir).unwrap();
    }
}

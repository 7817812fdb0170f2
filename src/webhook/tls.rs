//! The webhook's serving certificate: loading it from PEM files and reloading it when they change.
//!
//! The chart mounts the certificate from a Secret that cert-manager (or the chart itself) renews;
//! the kubelet swaps the mounted files in place. [`CertReloader`] reads both files every
//! [`TlsConfigPaths::poll_interval`] and, when their content changed, builds a new rustls
//! configuration and swaps it in for new connections. A file that cannot be read or used is logged
//! and the previous certificate stays in service.
//!
//! Keys may be RSA PKCS#1 (`BEGIN RSA PRIVATE KEY`, what Helm's `genSignedCert` writes), PKCS#8
//! (`BEGIN PRIVATE KEY`) or EC SEC1 (`BEGIN EC PRIVATE KEY`, cert-manager's default).

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::time::MissedTickBehavior;

use super::WebhookError;

/// How often the certificate files are checked for changes unless told otherwise.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// ALPN protocols offered to clients: the API server speaks HTTP/2 when it can.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Where the serving certificate and its key are, and how often to look for a new pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfigPaths {
    /// PEM file with the certificate chain, leaf first (`tls.crt` of a `kubernetes.io/tls` Secret).
    pub cert: PathBuf,
    /// PEM file with the private key (`tls.key`).
    pub key: PathBuf,
    /// How often both files are re-read to see whether they changed.
    pub poll_interval: Duration,
}

impl TlsConfigPaths {
    /// The pair at `cert` and `key`, checked every [`DEFAULT_POLL_INTERVAL`].
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }

    /// The same pair, checked every `interval` instead.
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }
}

/// Builds the rustls server configuration from the PEM contents of the certificate and key files
/// (`paths` only name the files in errors). Uses the ring provider whatever the process default.
pub fn server_config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    paths: &TlsConfigPaths,
) -> Result<ServerConfig, WebhookError> {
    let chain = certificates(cert_pem, &paths.cert)?;
    let key = private_key(key_pem, &paths.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Loading the key on its own tells an unusable key apart from a key that does not match.
    provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| WebhookError::UnsupportedKey {
            path: paths.key.clone(),
            reason: e.to_string(),
        })?;
    let unusable = |reason: rustls::Error| match reason {
        rustls::Error::InconsistentKeys(_) => WebhookError::KeyMismatch {
            cert: paths.cert.clone(),
            key: paths.key.clone(),
        },
        reason => WebhookError::UnusableCertificate {
            cert: paths.cert.clone(),
            key: paths.key.clone(),
            reason: reason.to_string(),
        },
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(unusable)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(unusable)?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, WebhookError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| WebhookError::BadPem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(WebhookError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

fn private_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, WebhookError> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(match other_private_key_label(pem) {
            Some(label) => WebhookError::UnsupportedKey {
                path: path.to_path_buf(),
                reason: format!("a {label:?} PEM block is not a supported key format"),
            },
            None => WebhookError::NoKey {
                path: path.to_path_buf(),
            },
        }),
        Err(e) => Err(WebhookError::BadPem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// The label of a private key block the PEM reader skips (`ENCRYPTED PRIVATE KEY`, `OPENSSH
/// PRIVATE KEY`, `DSA PRIVATE KEY`), so that the error says what was found instead of "no key".
fn other_private_key_label(pem: &[u8]) -> Option<String> {
    String::from_utf8_lossy(pem).lines().find_map(|line| {
        let label = line
            .trim()
            .strip_prefix("-----BEGIN ")?
            .strip_suffix("-----")?;
        label.contains("PRIVATE KEY").then(|| label.to_string())
    })
}

/// What a [`CertReloader::poll`] found.
#[derive(Debug)]
pub enum Reload {
    /// Both files hold what was seen last time.
    Unchanged,
    /// The files changed and the new pair is in service.
    Reloaded,
    /// The files cannot be read, or changed to something unusable; the previous pair stays in
    /// service.
    Failed(WebhookError),
}

/// The serving configuration and the files it came from.
#[derive(Debug)]
pub struct CertReloader {
    paths: TlsConfigPaths,
    config: RustlsConfig,
    // The bytes of the files as last read, whether or not they could be used: a pair that failed
    // is not retried (nor logged again) until one of the files changes.
    seen: (Vec<u8>, Vec<u8>),
}

impl CertReloader {
    /// Reads and checks the pair at `paths`.
    pub async fn load(paths: TlsConfigPaths) -> Result<Self, WebhookError> {
        let seen = read_pair(&paths).await?;
        let config = server_config_from_pem(&seen.0, &seen.1, &paths)?;
        Ok(Self {
            paths,
            config: RustlsConfig::from_config(Arc::new(config)),
            seen,
        })
    }

    /// The configuration the server accepts connections with; reloads show through it.
    pub fn config(&self) -> RustlsConfig {
        self.config.clone()
    }

    /// The files this reloader watches.
    pub fn paths(&self) -> &TlsConfigPaths {
        &self.paths
    }

    /// Reads both files once and swaps in the new pair if they changed and can be used.
    pub async fn poll(&mut self) -> Reload {
        let pair = match read_pair(&self.paths).await {
            Ok(pair) => pair,
            Err(e) => return Reload::Failed(e),
        };
        if pair == self.seen {
            return Reload::Unchanged;
        }
        let built = server_config_from_pem(&pair.0, &pair.1, &self.paths);
        self.seen = pair;
        match built {
            Ok(config) => {
                self.config.reload_from_config(Arc::new(config));
                Reload::Reloaded
            }
            Err(e) => Reload::Failed(e),
        }
    }

    /// Polls every [`TlsConfigPaths::poll_interval`] forever, logging reloads and failures (each
    /// failure once, until something changes). Never returns; drop the future to stop it.
    pub async fn watch(mut self) -> Infallible {
        let mut ticker = tokio::time::interval(self.paths.poll_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick completes at once; the pair was just loaded.
        ticker.tick().await;
        let mut last_error: Option<String> = None;
        loop {
            ticker.tick().await;
            match self.poll().await {
                Reload::Unchanged => last_error = None,
                Reload::Reloaded => {
                    last_error = None;
                    tracing::info!(
                        cert = %self.paths.cert.display(),
                        key = %self.paths.key.display(),
                        "reloaded the webhook's TLS certificate"
                    );
                }
                Reload::Failed(e) => {
                    let message = e.to_string();
                    if last_error.as_deref() != Some(message.as_str()) {
                        tracing::error!(
                            error = %message,
                            "cannot reload the webhook's TLS certificate; still serving the previous one"
                        );
                        last_error = Some(message);
                    }
                }
            }
        }
    }
}

async fn read_pair(paths: &TlsConfigPaths) -> Result<(Vec<u8>, Vec<u8>), WebhookError> {
    let read = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        async move {
            tokio::fs::read(&path)
                .await
                .map_err(|source| WebhookError::ReadFile { what, path, source })
        }
    };
    let cert = read("certificate", &paths.cert).await?;
    let key = read("key", &paths.key).await?;
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> TlsConfigPaths {
        TlsConfigPaths::new("/tls/tls.crt", "/tls/tls.key")
    }

    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("key: {e}"));
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .and_then(|p| p.self_signed(&key))
            .unwrap_or_else(|e| panic!("cert: {e}"));
        (cert.pem(), key.serialize_pem())
    }

    fn error(cert: &str, key: &str) -> String {
        match server_config_from_pem(cert.as_bytes(), key.as_bytes(), &paths()) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_matching_pkcs8_pair_loads_with_alpn() {
        let (cert, key) = pair();
        let config = server_config_from_pem(cert.as_bytes(), key.as_bytes(), &paths())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn a_certificate_file_without_a_certificate_is_named() {
        let (_, key) = pair();
        assert_eq!(
            error(&key, &key),
            "TLS certificate file /tls/tls.crt holds no certificate; expected PEM blocks \
             -----BEGIN CERTIFICATE-----"
        );
    }

    #[test]
    fn a_key_file_without_a_key_is_named() {
        let (cert, _) = pair();
        assert_eq!(
            error(&cert, &cert),
            "TLS key file /tls/tls.key holds no private key; expected a PEM RSA (PKCS#1), EC \
             (SEC1) or PKCS#8 private key"
        );
    }

    #[test]
    fn an_encrypted_key_is_unsupported_and_says_what_it_is() {
        let (cert, _) = pair();
        let key = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBAA==\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(
            error(&cert, key),
            "TLS key file /tls/tls.key: unsupported private key: a \"ENCRYPTED PRIVATE KEY\" PEM \
             block is not a supported key format; expected an unencrypted RSA (PKCS#1), EC (SEC1) \
             or PKCS#8 private key"
        );
    }

    #[test]
    fn a_key_that_ring_cannot_use_is_unsupported() {
        let (cert, _) = pair();
        // A PKCS#8 block whose content is not a key.
        let key = "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n";
        let message = error(&cert, key);
        assert!(
            message.starts_with("TLS key file /tls/tls.key: unsupported private key: "),
            "{message}"
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_a_mismatch() {
        let (cert, _) = pair();
        let (_, other_key) = pair();
        assert_eq!(
            error(&cert, &other_key),
            "the private key in /tls/tls.key does not belong to the certificate in /tls/tls.crt"
        );
    }

    #[test]
    fn broken_pem_is_reported_with_the_file() {
        let (_, key) = pair();
        let cert = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        let message = error(cert, &key);
        assert!(
            message.starts_with("TLS file /tls/tls.crt is not valid PEM: "),
            "{message}"
        );
    }
}

//! HTTPS (`--tls-cert`, `--tls-key`): rustls through tokio-rustls, ALPN
//! offering h2 and http/1.1. The certificate and key are read again when
//! either file changes (cert-manager renewals, Kubernetes secret volumes'
//! `..data` swap); a pair that does not load keeps the one being served.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use notify_debouncer_full::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};

/// Why the certificate and key cannot be served.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct TlsError {
    /// The file at fault.
    pub file: PathBuf,
    /// What is wrong, and what to do.
    pub message: String,
}

/// The PEM files given on the command line.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// `--tls-cert`: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// `--tls-key`: the leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads and checks both files: the chain parses, the key parses, and
    /// the key is the certificate's.
    pub fn load(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let error = |file: &Path, message: String| TlsError {
            file: file.to_owned(),
            message,
        };
        let cert_pem = std::fs::read(&self.cert)
            .map_err(|e| error(&self.cert, format!("cannot read --tls-cert: {e}")))?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error(&self.cert, format!("not a PEM certificate chain: {e}")))?;
        if chain.is_empty() {
            return Err(error(
                &self.cert,
                "holds no certificate (no `-----BEGIN CERTIFICATE-----`); pass the PEM \
                 certificate chain as --tls-cert"
                    .into(),
            ));
        }
        let key_pem = std::fs::read(&self.key)
            .map_err(|e| error(&self.key, format!("cannot read --tls-key: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            error(
                &self.key,
                format!("no PEM private key ({e}); pass the certificate's key as --tls-key"),
            )
        })?;
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| error(&self.key, format!("unusable private key: {e}")))?;
        let certified = CertifiedKey::new(chain, signing_key);
        certified.keys_match().map_err(|e| {
            error(
                &self.key,
                format!(
                    "is not the key of the certificate in {} ({e}); pass the matching pair",
                    self.cert.display()
                ),
            )
        })?;
        Ok(certified)
    }
}

/// Serves the pair loaded last; swapped when the files change.
pub struct Certificate {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl Certificate {
    /// Loads `files`; an error names the file and what to do.
    pub fn load(files: TlsFiles) -> Result<Arc<Certificate>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = files.load(&provider)?;
        Ok(Arc::new(Certificate {
            files,
            provider,
            current: ArcSwap::from_pointee(current),
        }))
    }

    /// Reads the files again; keeps serving the old pair if they fail.
    pub fn reload(&self) {
        match self.files.load(&self.provider) {
            Ok(certified) => {
                let changed = certified.cert != self.current.load().cert;
                self.current.store(Arc::new(certified));
                if changed {
                    tracing::info!(
                        cert = %self.files.cert.display(),
                        "TLS certificate reloaded"
                    );
                }
            }
            Err(error) => {
                tracing::error!("{error}; still serving the previous TLS certificate");
            }
        }
    }

    /// A TLS acceptor offering h2 and http/1.1, serving this certificate.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, rustls::Error> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Watches the folders of both files and reloads on any change in
    /// them (a secret volume swaps a `..data` symlink, not the files),
    /// until the returned watch is dropped.
    pub fn watch(self: &Arc<Self>) -> notify_debouncer_full::notify::Result<CertificateWatch> {
        let certificate = self.clone();
        let mut debouncer = new_debouncer(
            Duration::from_millis(200),
            None,
            move |events: DebounceEventResult| {
                let relevant = match events {
                    Ok(events) => events
                        .iter()
                        .any(|event| !crate::reload::is_a_read(&event.kind)),
                    Err(_) => true,
                };
                if relevant {
                    certificate.reload();
                }
            },
        )?;
        let mut folders = Vec::new();
        for file in [&self.files.cert, &self.files.key] {
            let folder = match file.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
                _ => PathBuf::from("."),
            };
            if !folders.contains(&folder) {
                debouncer.watch(&folder, RecursiveMode::NonRecursive)?;
                folders.push(folder);
            }
        }
        Ok(CertificateWatch {
            _debouncer: debouncer,
        })
    }
}

/// Reloads the certificate while alive.
pub struct CertificateWatch {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
}

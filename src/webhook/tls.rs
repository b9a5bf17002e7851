//! Optional TLS for the webhook receiver, and mutual TLS: with a client CA, only git hosts
//! presenting a certificate from that CA may even send a request.
//!
//! The files are re-read periodically ([`keep_current`]): cert-manager and mounted Secrets
//! rotate them in place, and a receiver that kept serving the expired certificate until a
//! restart would fail every delivery.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum_server::tls_rustls::RustlsConfig;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};

/// The receiver's certificate and, for mutual TLS, the CA its clients must present.
#[derive(Clone, Debug)]
pub struct WebhookTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// Re-reading files more often than this costs more than a rotation is worth waiting for.
pub const MIN_RELOAD_INTERVAL: Duration = Duration::from_millis(100);

/// Why the TLS files cannot be used; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// A server configuration from PEM files; `client_ca` turns on client certificate checks.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert, e))?;
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_file_iter(ca).map_err(|e| file_error(ca, e))? {
                roots
                    .add(certificate.map_err(|e| file_error(ca, e))?)
                    .map_err(|e| file_error(ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| file_error(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, private_key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    // HTTP/1.1 only: the receiver serves no HTTP/2 (see `webhook::connections`).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Re-reads the TLS files every `interval` and, once their contents changed, serves the new
/// configuration to new connections. A file that cannot be read or used keeps the
/// configuration in use (and is logged), so a rotation caught half-written is retried at the
/// next tick instead of taking the receiver down.
pub async fn keep_current(files: WebhookTls, serving: RustlsConfig, interval: Duration) {
    let mut seen = fingerprint(&files).ok();
    let mut ticks = tokio::time::interval(interval.max(MIN_RELOAD_INTERVAL));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Ok(current) = fingerprint(&files) else {
            continue;
        };
        if seen.as_ref() == Some(&current) {
            continue;
        }
        // Remembered either way: unusable contents are reported once, not at every tick.
        seen = Some(current);
        match server_config(&files.cert, &files.key, files.client_ca.as_deref()) {
            Ok(config) => {
                serving.reload_from_config(config);
                info!(cert = %files.cert.display(), "webhook TLS configuration reloaded");
            }
            Err(error) => {
                warn!(%error, "could not reload the webhook TLS files; serving the previous ones")
            }
        }
    }
}

/// A digest of every TLS file's bytes, to notice a change without rebuilding the config.
fn fingerprint(files: &WebhookTls) -> std::io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    for path in [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        let bytes = std::fs::read(path)?;
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    }
    Ok(hasher.finalize().into())
}

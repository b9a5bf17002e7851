//! Verifying an HTTPS server's certificate against the CA from the Secret's `ca.crt`, for one
//! repository only (libgit2's own CA setting is process-wide, which would leak one tenant's
//! trust into every other's).

use std::sync::Arc;

use rustls::{
    RootCertStore,
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};

/// Checks that the DER `leaf` certificate is valid for `host` and chains to a certificate in
/// `ca_pem`. libgit2 hands over only the leaf, so intermediates belong in `ca.crt` as well.
pub fn verify_server_certificate(leaf: &[u8], host: &str, ca_pem: &[u8]) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem) {
        let certificate = certificate.map_err(|e| format!("ca.crt is not valid PEM: {e}"))?;
        roots
            .add(certificate)
            .map_err(|e| format!("ca.crt holds an unusable certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("ca.crt holds no certificate".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("cannot use ca.crt: {e}"))?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("host {host:?}: {e}"))?;
    verifier
        .verify_server_cert(
            &CertificateDer::from(leaf.to_vec()),
            &[],
            &name,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| format!("server certificate for {host} is not trusted by ca.crt: {e}"))
}

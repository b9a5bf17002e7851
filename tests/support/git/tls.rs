//! A throwaway certificate authority and the server certificate it signs.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Names the server certificate is valid for: what tests put in URLs.
const SERVER_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// A fresh CA plus a server certificate for [`SERVER_NAMES`] signed by it.
pub struct TestTls {
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
    server_cert: CertificateDer<'static>,
    server_key: PrivatePkcs8KeyDer<'static>,
    server_cert_pem: String,
    server_key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestTls {
    pub fn generate() -> Self {
        let (ca_cert, ca_issuer) = generate_ca();
        let server_key = KeyPair::generate().expect("generate server key");
        let server_cert = server_params()
            .signed_by(&server_key, &ca_issuer)
            .expect("sign server certificate");
        Self {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().to_vec(),
            server_cert: server_cert.der().clone(),
            server_key: PrivatePkcs8KeyDer::from(server_key.serialize_der()),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            issuer: ca_issuer,
        }
    }

    /// The server certificate and its key as PEM, for servers that read files.
    pub fn server_pem(&self) -> (&str, &str) {
        (&self.server_cert_pem, &self.server_key_pem)
    }

    /// A client certificate (PEM certificate, PEM key) signed by this CA, for mutual TLS.
    pub fn client_certificate(&self, name: &str) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names to parse");
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("generate client key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign client certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A rustls server config presenting the server certificate.
    ///
    /// The crypto provider is named explicitly because the dependency graph enables both of
    /// rustls' providers, and then rustls refuses to pick a process default by itself.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![self.server_cert.clone()],
                PrivateKeyDer::Pkcs8(self.server_key.clone_key()),
            )
            .expect("server certificate matches its key");
        Arc::new(config)
    }
}

fn generate_ca() -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names to parse");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "driftless test CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("generate CA key");
    let cert = params.self_signed(&key).expect("self-sign CA certificate");
    (cert, Issuer::new(params, key))
}

fn server_params() -> CertificateParams {
    let names = SERVER_NAMES.map(String::from).to_vec();
    let mut params = CertificateParams::new(names).expect("server names are valid");
    params
        .distinguished_name
        .push(DnType::CommonName, SERVER_NAMES[0]);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params
}

//! The test CA made at start-up and the server certificate it signs (for `127.0.0.1` and
//! `localhost`), as a node with its own CA has.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

fn tls_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("making the test certificates: {e}"))
}

/// Makes a CA and a server certificate it signs, writes the CA certificate (PEM) to `ca_file`
/// and returns the acceptor serving the server certificate.
pub fn make_acceptor(ca_file: &Path) -> io::Result<TlsAcceptor> {
    let ca_key = KeyPair::generate().map_err(tls_error)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "esdb-sim test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls_error)?;

    let key = KeyPair::generate().map_err(tls_error)?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
        .map_err(tls_error)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "esdb-sim node");
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).map_err(tls_error)?;
    fs::write(ca_file, ca_cert.pem())?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(tls_error)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

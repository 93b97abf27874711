//! The rustls configuration of a `mqtts://` connection: which CAs to trust
//! and, when the broker asks, the board's own certificate. Built once from
//! the files, so a bad file is an error at start-up, naming it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::settings::TlsSettings;

/// The client configuration `tls` describes, on the ring provider.
///
/// # Errors
/// A file is unreadable or holds no certificate (or key); no system
/// certificates when no CA file is given. The message names the key.
pub fn client_config(tls: &TlsSettings) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            for cert in certificates(path).context("mqtt.ca_file")? {
                roots.add(cert).with_context(|| format!("mqtt.ca_file {}: a certificate rustls cannot use", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // The system's store may hold certificates rustls cannot use; the rest still serve.
                let _ = roots.add(cert);
            }
            ensure!(!roots.is_empty(), "mqtt: no system CA certificates found; set mqtt.ca_file");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let config = match &tls.client_identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates(cert).context("mqtt.client_cert")?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("mqtt.client_key {}: no PEM private key", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("mqtt.client_cert and mqtt.client_key do not make a client identity")?
        }
    };
    Ok(Arc::new(config))
}

/// Every PEM certificate in `path`, at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not PEM certificates", path.display()))?;
    ensure!(!certs.is_empty(), "{}: no PEM certificate in it", path.display());
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_named() {
        let path = std::env::temp_dir().join(format!("maskd-tls-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let tls = TlsSettings { ca_file: Some(path.clone()), client_identity: None };
        let err = format!("{:#}", client_config(&tls).unwrap_err());
        assert!(err.contains("mqtt.ca_file") && err.contains(&path.display().to_string()), "{err}");
        let missing = TlsSettings { ca_file: Some("/nonexistent/ca.pem".into()), client_identity: None };
        assert!(format!("{:#}", client_config(&missing).unwrap_err()).contains("/nonexistent/ca.pem"));
        std::fs::remove_file(path).unwrap();
    }
}

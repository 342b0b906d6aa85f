//! The client side of TLS (rustls): which roots an `https://` endpoint is checked against,
//! the client certificate (mTLS), ALPN for the HTTP version, and why a handshake failed in
//! words a user can act on.
//!
//! Invariants: one `ClientConfig` per target, shared by every connection, so its session
//! cache lets a reconnect after a fault resume instead of paying a full handshake; a
//! certificate is never accepted unchecked unless the scenario says `insecure = true`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::scenario::{HttpVersion, TlsSpec};
use crate::sut::server::tls::{self as server_tls, ALPN_H2, ALPN_HTTP1, TlsError};

/// What a connection to one endpoint needs for TLS: the shared config and the name to check.
#[derive(Clone)]
pub struct ClientTls {
    pub connector: tokio_rustls::TlsConnector,
    pub server_name: ServerName<'static>,
}

/// ALPN protocols offered for `http`.
fn alpn(http: HttpVersion) -> Vec<Vec<u8>> {
    match http {
        HttpVersion::Http1 => vec![ALPN_HTTP1.to_vec()],
        HttpVersion::Http2 => vec![ALPN_H2.to_vec()],
        HttpVersion::Auto => vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()],
    }
}

/// The system's roots: the platform store, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set.
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(format!(
            "no trusted roots found on this machine{why}; install ca-certificates, set SSL_CERT_FILE, or give target.tls.ca_file"
        ));
    }
    Ok(store)
}

/// The client config for a target: roots from `ca_file` (else the system's, else `extra_root`
/// alone for in-process servers), a client certificate when given, ALPN for `http`.
/// Errors name the field and the file.
pub fn client_config(
    spec: Option<&TlsSpec>,
    http: HttpVersion,
    in_process_root: Option<CertificateDer<'static>>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let field = |key: &str, e: TlsError| format!("target.tls.{key}: {e}");
    let builder = rustls::ClientConfig::builder_with_provider(server_tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let insecure = spec.is_some_and(|s| s.insecure);
    let builder = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(server_tls::provider())))
    } else {
        let roots = match (spec.and_then(|s| s.ca_file.as_deref()), in_process_root) {
            (_, Some(root)) => {
                let mut store = RootCertStore::empty();
                store.add(root).map_err(|e| e.to_string())?;
                store
            }
            (Some(path), None) => server_tls::read_certs(path)
                .and_then(|certs| server_tls::roots(path, certs))
                .map_err(|e| field("ca_file", e))?,
            (None, None) => system_roots()?,
        };
        builder.with_root_certificates(roots)
    };
    let mut config = match spec.and_then(|s| s.client_cert.as_deref().zip(s.client_key.as_deref()))
    {
        Some((cert, key)) => {
            let chain = server_tls::read_certs(cert).map_err(|e| field("client_cert", e))?;
            let key = server_tls::read_key(key).map_err(|e| field("client_key", e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("target.tls.client_key: does not go with client_cert: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn(http);
    Ok(Arc::new(config))
}

impl ClientTls {
    /// TLS to `host` (or the scenario's `server_name`) with `config`.
    pub fn new(
        config: Arc<rustls::ClientConfig>,
        host: &str,
        spec: Option<&TlsSpec>,
    ) -> Result<ClientTls, String> {
        let name = spec
            .and_then(|s| s.server_name.clone())
            .unwrap_or_else(|| host.to_string());
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| format!("`{name}` is not a DNS name or an IP address"))?;
        Ok(ClientTls {
            connector: tokio_rustls::TlsConnector::from(config),
            server_name,
        })
    }
}

/// `insecure = true`: every certificate passes; handshake signatures are still checked (a
/// man in the middle is not detected, a broken handshake is).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls error somewhere in `error`'s chain (io errors wrap it without a source).
fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(inner);
        }
        next = e.source();
    }
    None
}

/// Alerts a server sends when it refuses a client, as rustls words them.
const CLIENT_ALERTS: [rustls::AlertDescription; 6] = [
    rustls::AlertDescription::CertificateRequired,
    rustls::AlertDescription::BadCertificate,
    rustls::AlertDescription::UnknownCA,
    rustls::AlertDescription::CertificateUnknown,
    rustls::AlertDescription::AccessDenied,
    rustls::AlertDescription::NoApplicationProtocol,
];

/// An alert named in the text of `error`'s chain: HTTP/2 keeps an I/O error's text, not
/// its type, so a TLS alert read on an HTTP/2 connection arrives only as words.
fn alert_in_text(error: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if let Some(alert) = CLIENT_ALERTS
            .iter()
            .map(|a| rustls::Error::AlertReceived(*a))
            .find(|a| text.contains(&a.to_string()))
        {
            return Some(alert);
        }
        next = e.source();
    }
    None
}

/// `error` and its causes, `: `-separated.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

/// Why a connection failed, in words naming what to change; `None` when it was not TLS.
pub fn explain(error: &(dyn std::error::Error + 'static), server_name: &str) -> Option<String> {
    use rustls::AlertDescription as A;
    let e = match rustls_error(error) {
        Some(e) => e.clone(),
        None => alert_in_text(error)?,
    };
    Some(match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (or this machine's clock is wrong)"
                    .into()
            }
            CertificateError::UnknownIssuer => "the server's certificate is signed by an unknown issuer: it does not chain to a trusted root (target.tls.ca_file, or the system's roots)".into(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
                "name mismatch: the server's certificate is not valid for `{server_name}` (the URL's host, or target.tls.server_name)"
            ),
            CertificateError::Revoked => "the server's certificate is revoked".into(),
            other => format!("the server's certificate was refused: {other:?}"),
        },
        rustls::Error::AlertReceived(A::CertificateRequired) => {
            "the server requires a client certificate (target.tls.client_cert and client_key)"
                .into()
        }
        rustls::Error::AlertReceived(
            alert @ (A::BadCertificate | A::UnknownCA | A::CertificateUnknown | A::AccessDenied),
        ) => format!("the server refused the client certificate (TLS alert {alert:?})"),
        rustls::Error::NoApplicationProtocol
        | rustls::Error::AlertReceived(A::NoApplicationProtocol) => {
            "the server speaks none of the HTTP versions offered (target.http)".into()
        }
        other => format!("TLS: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_follows_the_http_setting() {
        assert_eq!(
            alpn(HttpVersion::Auto),
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert_eq!(alpn(HttpVersion::Http2), vec![b"h2".to_vec()]);
        assert_eq!(alpn(HttpVersion::Http1), vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn tls_failures_are_explained_through_io_wrappers() {
        let wrapped = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let text = explain(&wrapped, "x").unwrap();
        assert!(text.contains("unknown issuer"), "{text}");
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert!(explain(&expired, "x").unwrap().contains("expired"));
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert!(
            explain(&name, "shop.example")
                .unwrap()
                .contains("`shop.example`")
        );
        let plain = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(explain(&plain, "x").is_none());
        // An alert known only by its words (HTTP/2 keeps the text of an I/O error).
        let words = std::io::Error::other(format!(
            "connection error: {}",
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired)
        ));
        let text = explain(&words, "x").unwrap();
        assert!(text.contains("requires a client certificate"), "{text}");
    }

    #[test]
    fn missing_files_are_named_with_their_field() {
        let spec = TlsSpec {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsSpec::default()
        };
        let e = client_config(Some(&spec), HttpVersion::Auto, None)
            .err()
            .unwrap();
        assert!(
            e.starts_with("target.tls.ca_file: /nonexistent/ca.pem"),
            "{e}"
        );
    }
}

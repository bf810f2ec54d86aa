//! Outbound delivery over https to a real TLS receiver on 127.0.0.1, with a
//! certificate made for the test.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use webhook_armor::Verifier;
use webhook_armor::deliver::{DeliveryClient, SigningStyle, SsrfPolicy, signature_headers};
use webhook_armor::verify::StandardWebhooks;

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What the receiver saw of one request.
type Seen = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// An https receiver on 127.0.0.1 answering 200 with a certificate for
/// 127.0.0.1; returns its URL, the certificate and what it received.
async fn tls_receiver() -> (String, CertificateDer<'static>, Seen) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let certificate = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/hooks", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                // A client that rejects our certificate ends the handshake.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let record = record.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await?.to_bytes();
                        record.lock().unwrap().push((parts.headers, body));
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, certificate, seen)
}

fn trusting(certificate: CertificateDer<'static>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate).unwrap();
    rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn loopback() -> SsrfPolicy {
    SsrfPolicy::default().allow("127.0.0.1/32").unwrap()
}

#[tokio::test]
async fn a_signed_delivery_arrives_over_https_and_verifies() {
    let (url, certificate, seen) = tls_receiver().await;
    let client = DeliveryClient::new(loopback()).with_tls_config(trusting(certificate));
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = Bytes::from_static(br#"{"type":"invoice.paid"}"#);
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let headers = signature_headers(
        SigningStyle::StandardWebhooks,
        &[secret],
        "msg_tls",
        "invoice.paid",
        now,
        &body,
    )
    .unwrap();

    let outcome = client.post(&url, headers, body.clone()).await;

    assert_eq!(outcome.status, Some(StatusCode::OK), "{outcome:?}");
    assert_eq!(outcome.snippet, "ok");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (headers, received) = &seen[0];
    assert_eq!(received, &body);
    let verifier = StandardWebhooks::new([secret]).unwrap();
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.headers = headers.clone();
    verifier
        .verify(&parts, received)
        .expect("the receiver verifies what came over TLS");
}

#[tokio::test]
async fn a_certificate_the_client_does_not_trust_fails_the_attempt() {
    let (url, _certificate, seen) = tls_receiver().await;
    // The default roots are Mozilla's; a self-signed certificate is not among them.
    let client = DeliveryClient::new(loopback());

    let outcome = client
        .post(&url, HeaderMap::new(), Bytes::from_static(b"{}"))
        .await;

    assert_eq!(outcome.status, None);
    assert!(!outcome.blocked, "a TLS failure is not an SSRF refusal");
    let error = outcome.error.unwrap();
    assert!(error.contains("certificate"), "{error}");
    assert!(seen.lock().unwrap().is_empty(), "no request got through");
}

#[tokio::test]
async fn the_ssrf_guard_applies_to_https_before_the_handshake() {
    let (url, certificate, seen) = tls_receiver().await;
    // No allow-list: loopback is refused, whatever the scheme.
    let client = DeliveryClient::new(SsrfPolicy::default()).with_tls_config(trusting(certificate));

    let outcome = client
        .post(&url, HeaderMap::new(), Bytes::from_static(b"{}"))
        .await;

    assert_eq!(outcome.status, None);
    assert!(outcome.blocked, "{outcome:?}");
    assert!(seen.lock().unwrap().is_empty());
}

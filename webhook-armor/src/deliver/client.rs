//! The HTTP client of outbound delivery: hyper, guarded, bounded.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http::{HeaderMap, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::guard::SsrfPolicy;
use crate::BoxError;

/// A connection refused by the [`SsrfPolicy`] before any packet was sent.
#[derive(Debug, thiserror::Error)]
#[error("refused to connect to {host} ({address}): not a public address")]
pub struct BlockedAddress {
    /// The host of the URL.
    pub host: String,
    /// The address it resolved to.
    pub address: IpAddr,
}

/// A `tower::Service<Uri>` connector that resolves the host itself, checks
/// every resolved address against the [`SsrfPolicy`] and dials only a checked
/// address, with a connect timeout.
#[derive(Debug, Clone)]
pub struct GuardedConnector {
    policy: Arc<SsrfPolicy>,
    connect_timeout: Duration,
}

impl GuardedConnector {
    /// A connector enforcing `policy`.
    pub fn new(policy: SsrfPolicy, connect_timeout: Duration) -> Self {
        Self {
            policy: Arc::new(policy),
            connect_timeout,
        }
    }
}

impl tower::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let policy = self.policy.clone();
        let timeout = self.connect_timeout;
        Box::pin(async move {
            // TLS, for https, is layered on top of this connection by the
            // client; the guard sees the same address either way.
            let default_port = match uri.scheme_str() {
                Some("http") => 80,
                Some("https") => 443,
                _ => return Err(format!("unsupported scheme in {uri} (use http or https)").into()),
            };
            let host = uri.host().ok_or("URL without host")?.to_owned();
            let port = uri.port_u16().unwrap_or(default_port);
            let literal = host.trim_start_matches('[').trim_end_matches(']');
            let addresses: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => {
                    tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)))
                        .await
                        .map_err(|_| "DNS lookup timed out")??
                        .collect()
                }
            };
            // One forbidden answer refuses the host: a name that resolves to
            // both a public and an internal address is an attack, not a fallback.
            if let Some(blocked) = addresses.iter().find(|a| !policy.permits(a.ip())) {
                return Err(Box::new(BlockedAddress {
                    host,
                    address: blocked.ip(),
                }) as BoxError);
            }
            let address = *addresses.first().ok_or("host resolved to no address")?;
            let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
                .await
                .map_err(|_| format!("connect to {address} timed out"))??;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// What one POST came to.
#[derive(Debug, Clone)]
pub struct HttpOutcome {
    /// The status, if a response arrived.
    pub status: Option<StatusCode>,
    /// The response's `Retry-After`, if it had a usable one.
    pub retry_after: Option<Duration>,
    /// The start of the response body, at most the client's cap, lossy UTF-8.
    pub snippet: String,
    /// From send to outcome.
    pub latency: Duration,
    /// Why no response arrived (timeout, refused, blocked).
    pub error: Option<String>,
    /// The connection was refused by the SSRF guard.
    pub blocked: bool,
}

/// POSTs deliveries over http or https: no redirects followed, connect and
/// total timeouts, the response body read up to a cap and then dropped.
///
/// https uses rustls with Mozilla's root certificates built in (no system
/// CA bundle needed); [`with_tls_config`](Self::with_tls_config) sets your own,
/// such as a private CA's roots.
#[derive(Clone)]
pub struct DeliveryClient {
    client: Client<HttpsConnector<GuardedConnector>, Full<Bytes>>,
    connector: GuardedConnector,
    total_timeout: Duration,
    max_response_bytes: usize,
}

impl std::fmt::Debug for DeliveryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryClient")
            .field("connector", &self.connector)
            .field("total_timeout", &self.total_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish_non_exhaustive()
    }
}

/// rustls on ring with Mozilla's roots: what an https endpoint on the public
/// internet is checked against by default.
fn default_tls_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_webpki_roots()
        .with_no_client_auth()
}

fn pooled_client(
    connector: GuardedConnector,
    tls: rustls::ClientConfig,
) -> Client<HttpsConnector<GuardedConnector>, Full<Bytes>> {
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https)
}

impl DeliveryClient {
    /// A client refusing what `policy` refuses; 5 s to connect, 15 s in all,
    /// 64 KiB of response kept.
    pub fn new(policy: SsrfPolicy) -> Self {
        Self::with_limits(
            policy,
            Duration::from_secs(5),
            Duration::from_secs(15),
            64 * 1024,
        )
    }

    /// A client with explicit limits.
    pub fn with_limits(
        policy: SsrfPolicy,
        connect_timeout: Duration,
        total_timeout: Duration,
        max_response_bytes: usize,
    ) -> Self {
        let connector = GuardedConnector::new(policy, connect_timeout);
        Self {
            client: pooled_client(connector.clone(), default_tls_config()),
            connector,
            total_timeout,
            max_response_bytes,
        }
    }

    /// Verifies https endpoints with `config` instead of Mozilla's roots
    /// (its ALPN protocols are replaced by HTTP/1.1).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use webhook_armor::deliver::{DeliveryClient, SsrfPolicy};
    ///
    /// // Trust only a private CA (its certificates added to `roots`).
    /// let roots = rustls::RootCertStore::empty();
    /// let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
    ///     rustls::crypto::ring::default_provider(),
    /// ))
    /// .with_safe_default_protocol_versions()
    /// .unwrap()
    /// .with_root_certificates(roots)
    /// .with_no_client_auth();
    /// let client = DeliveryClient::new(SsrfPolicy::default()).with_tls_config(tls);
    /// # let _ = client;
    /// ```
    #[must_use]
    pub fn with_tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.client = pooled_client(self.connector.clone(), config);
        self
    }

    /// POSTs `body` with `headers` to `url`.
    pub async fn post(&self, url: &str, headers: HeaderMap, body: Bytes) -> HttpOutcome {
        let started = Instant::now();
        let mut outcome = HttpOutcome {
            status: None,
            retry_after: None,
            snippet: String::new(),
            latency: Duration::ZERO,
            error: None,
            blocked: false,
        };
        let request = match build_request(url, headers, body) {
            Ok(request) => request,
            Err(error) => {
                outcome.error = Some(error);
                return outcome;
            }
        };
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, mut body) = response.into_parts();
            outcome.status = Some(parts.status);
            outcome.retry_after = parse_retry_after(&parts.headers);
            let mut kept = BytesMut::new();
            // Read no more than the cap, then drop the body: an endless or
            // huge response costs a bounded amount of memory and time.
            while kept.len() < self.max_response_bytes {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            let room = self.max_response_bytes - kept.len();
                            kept.extend_from_slice(&data[..data.len().min(room)]);
                        }
                    }
                    Some(Err(_)) | None => break,
                }
            }
            outcome.snippet = String::from_utf8_lossy(&kept).into_owned();
            Ok::<(), hyper_util::client::legacy::Error>(())
        };
        match tokio::time::timeout(self.total_timeout, exchange).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                outcome.blocked = error_chain_has::<BlockedAddress>(&error);
                outcome.error = Some(describe(&error));
            }
            Err(_) if outcome.status.is_some() => {} // the head arrived; the body was too slow
            Err(_) => outcome.error = Some(format!("timed out after {:?}", self.total_timeout)),
        }
        outcome.latency = started.elapsed();
        outcome
    }
}

fn build_request(
    url: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad URL {url:?}: {e}"))?;
    let mut request = Request::post(uri)
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    *request.headers_mut() = headers;
    request
        .headers_mut()
        .entry(header::CONTENT_TYPE)
        .or_insert(header::HeaderValue::from_static("application/json"));
    request.headers_mut().insert(
        header::USER_AGENT,
        header::HeaderValue::from_static("webhook-armor"),
    );
    Ok(request)
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

fn error_chain_has<E: std::error::Error + 'static>(
    error: &(dyn std::error::Error + 'static),
) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<E>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// The error and its causes on one line.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(2)));
        let later =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        headers.insert(header::RETRY_AFTER, later.parse().unwrap());
        let parsed = parse_retry_after(&headers).unwrap();
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120));
        headers.insert(header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&headers), None);
    }
}

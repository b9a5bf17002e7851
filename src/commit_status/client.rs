//! Sends a [`PostRequest`]: HTTPS (the system's roots) or HTTP, a deadline per attempt, and
//! bounded retries with backoff on what may pass (connection errors, 5xx, 429), honouring the
//! host's `Retry-After`.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, body::Bytes, header};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::Value;

use super::request::PostRequest;

/// How hard to try.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The wait after the first failed attempt; doubled after each further one.
    pub first_backoff: Duration,
    /// The longest wait between attempts, `Retry-After` included.
    pub max_backoff: Duration,
    /// The deadline of one attempt.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a status was not posted; never contains the token.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("the host answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("the host answered {status} {attempts} times: {body}")]
    Unavailable {
        status: u16,
        attempts: u32,
        body: String,
    },
    #[error("no answer after {attempts} attempts: {message}")]
    Unreachable { attempts: u32, message: String },
    #[error("{0} is not a URL a status can be posted to")]
    BadUrl(String),
}

/// An HTTP(S) client for statuses; cheap to clone.
#[derive(Clone)]
pub struct StatusClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    policy: RetryPolicy,
}

/// What the client names itself as (GitHub refuses requests without a User-Agent).
const USER_AGENT: &str = concat!("driftless/", env!("CARGO_PKG_VERSION"));
/// The most of an error answer kept for the message.
const MAX_ERROR_BODY: usize = 512;

impl StatusClient {
    /// Trusts the system's roots; without any (a minimal image), https posts fail and say so
    /// in each status's Event, and the controller runs on.
    pub fn new(policy: RetryPolicy) -> Self {
        let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
            Ok(builder) => builder,
            Err(error) => {
                tracing::warn!(%error, "no system CA roots: commit statuses over https will fail");
                let config = rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Self { client, policy }
    }

    /// Posts `request`, retrying what may pass; returns once it was accepted or given up.
    pub async fn post(&self, request: &PostRequest) -> Result<(), PostError> {
        self.send(Method::POST, request).await.map(|_| ())
    }

    /// Sends `request` with `method` (a `GET` sends no body), retrying what may pass; returns
    /// the host's JSON answer (`null` when it sent none).
    pub async fn send(&self, method: Method, request: &PostRequest) -> Result<Value, PostError> {
        let policy = self.policy;
        let mut backoff = policy.first_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.attempt(&method, request).await?;
            let retry_after = match outcome {
                Attempt::Done(answer) => return Ok(answer),
                Attempt::Again { retry_after, .. } => retry_after,
            };
            if attempt >= policy.attempts {
                return Err(match outcome {
                    Attempt::Again {
                        status: Some(status),
                        body,
                        ..
                    } => PostError::Unavailable {
                        status,
                        attempts: attempt,
                        body,
                    },
                    Attempt::Again { body, .. } => PostError::Unreachable {
                        attempts: attempt,
                        message: body,
                    },
                    Attempt::Done(_) => unreachable!("returned above"),
                });
            }
            let wait = retry_after.unwrap_or(backoff).min(policy.max_backoff);
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(policy.max_backoff);
        }
    }

    async fn attempt(&self, method: &Method, request: &PostRequest) -> Result<Attempt, PostError> {
        let body = match method {
            &Method::GET => Vec::new(),
            _ => serde_json::to_vec(&request.body).expect("a JSON value serializes"),
        };
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(&request.url)
            .header(header::USER_AGENT, USER_AGENT);
        if method != Method::GET
            && !request
                .headers
                .iter()
                .any(|(name, _)| *name == "content-type")
        {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        let http_request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| PostError::BadUrl(request.url.clone()))?;
        let sent = tokio::time::timeout(self.policy.timeout, async {
            let response = self.client.request(http_request).await?;
            let status = response.status();
            let retry_after = retry_after(response.headers());
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, retry_after, body))
        })
        .await;
        let (status, retry_after, body) = match sent {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => return Ok(Attempt::again(None, None, error.to_string())),
            Err(_) => {
                let message = format!("no answer within {:?}", self.policy.timeout);
                return Ok(Attempt::again(None, None, message));
            }
        };
        if status.is_success() {
            return Ok(Attempt::Done(
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            ));
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY)]).into_owned();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Ok(Attempt::again(Some(status.as_u16()), retry_after, text))
        } else {
            Err(PostError::Refused {
                status: status.as_u16(),
                body: text,
            })
        }
    }
}

enum Attempt {
    Done(Value),
    Again {
        status: Option<u16>,
        retry_after: Option<Duration>,
        body: String,
    },
}

impl Attempt {
    fn again(status: Option<u16>, retry_after: Option<Duration>, body: String) -> Self {
        Attempt::Again {
            status,
            retry_after,
            body,
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is read as "the usual backoff").
fn retry_after(headers: &hyper::HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

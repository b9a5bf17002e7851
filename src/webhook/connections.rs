//! Serving the receiver on a listener, over plain HTTP or TLS, with deadlines against slow
//! clients: a connection that trickles its request head, or never sends one, is closed after
//! the header deadline; a request body that takes longer than the body deadline gets 408 (in
//! [`super::server`]).
//!
//! Connections speak HTTP/1.1 only, served by hyper's HTTP/1 connection directly. The
//! automatic HTTP/1-or-2 builder that `axum::serve` and `axum_server` use first reads the
//! HTTP/2 preface with no deadline at all, so a client that sends nothing (or one byte) held
//! its connection forever; and HTTP/2 has no request-head deadline in hyper. Git hosts deliver
//! webhooks over HTTP/1.1, so nothing is lost.

use std::time::Duration;

use axum::Router;
use axum_server::accept::Accept as _;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tracing::{debug, warn};

/// How long a client may take to send a request head (and, with TLS, to finish the
/// handshake) before its connection is closed. Git hosts send the whole request at once.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request body once its head arrived; slower ones get
/// 408. Generous for a 3 MiB body on a slow link, short next to a connection held forever.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `app` on every connection `listener` accepts, until the process ends. With `tls`,
/// each connection first completes a TLS handshake (mutual when the configuration verifies
/// clients) within `header_timeout`. `tls` is a reloadable handle: each handshake uses the
/// configuration it holds at that moment, so a rotated certificate is served to new
/// connections without a restart.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    tls: Option<RustlsConfig>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let tls = tls.map(|config| RustlsAcceptor::new(config).handshake_timeout(header_timeout));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "webhook receiver could not accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let (http, app, tls) = (http.clone(), app.clone(), tls.clone());
        tokio::spawn(async move {
            let served = match tls {
                Some(acceptor) => match acceptor.accept(stream, ()).await {
                    Ok((stream, ())) => serve_connection(&http, stream, app).await,
                    Err(error) => {
                        debug!(%error, %peer, "webhook TLS handshake failed");
                        return;
                    }
                },
                None => serve_connection(&http, stream, app).await,
            };
            if let Err(error) = served {
                debug!(%error, %peer, "webhook connection closed");
            }
        });
    }
}

async fn serve_connection<S>(http: &http1::Builder, stream: S, app: Router) -> hyper::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
        .await
}

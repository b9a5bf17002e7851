//! Smart HTTP(S) git server: axum in front of `git http-backend`, on its own thread.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_server::Handle;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::RustlsConfig;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::TestRepo;
use super::cgi::run_http_backend;
use super::tls::TestTls;

/// What the HTTP server demands of clients.
#[derive(Clone, Debug, Default)]
pub struct HttpOptions {
    basic_auth: Option<(String, String)>,
    tls: bool,
    address: Option<std::net::IpAddr>,
}

impl HttpOptions {
    /// Requires HTTP basic auth with exactly this username and password.
    pub fn basic_auth(mut self, username: &str, password: &str) -> Self {
        self.basic_auth = Some((username.to_owned(), password.to_owned()));
        self
    }

    /// Serves HTTPS with a certificate for `127.0.0.1` and `localhost` signed by a CA
    /// generated for this server; see [`HttpGitServer::ca_pem`].
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Listens on `address` instead of 127.0.0.1, e.g. the real node's gateway, which the
    /// node's pods reach (they have a loopback of their own).
    pub fn listen_on(mut self, address: std::net::IpAddr) -> Self {
        self.address = Some(address);
        self
    }
}

/// A running smart HTTP(S) server for every repository under a directory. It runs on a
/// thread with its own tokio runtime, so sync tests and `#[tokio::test]`s can both use it;
/// dropping it stops the server.
pub struct HttpGitServer {
    base_url: String,
    tls: Option<TestTls>,
    state: Arc<ServerState>,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

struct ServerState {
    project_root: PathBuf,
    basic_auth: Option<(String, String)>,
    rejected_credentials: AtomicUsize,
    requests: AtomicUsize,
    advertisements: AtomicUsize,
}

impl HttpGitServer {
    /// Serves `project_root` (e.g. [`GitRepos::root`](super::GitRepos::root)) on an
    /// ephemeral port of 127.0.0.1 (or [`HttpOptions::listen_on`]). Ready when this returns:
    /// the socket is already listening, so early connections wait in its backlog.
    pub fn start(project_root: &Path, options: HttpOptions) -> Self {
        let ip = options
            .address
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let listener = TcpListener::bind((ip, 0)).expect("bind an ephemeral port");
        listener
            .set_nonblocking(true)
            .expect("tokio needs a non-blocking listener");
        let address = listener.local_addr().expect("listener has an address");
        let tls = options.tls.then(TestTls::generate);
        let state = Arc::new(ServerState {
            project_root: project_root.to_owned(),
            basic_auth: options.basic_auth,
            rejected_credentials: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            advertisements: AtomicUsize::new(0),
        });
        let handle = Handle::new();
        let rustls = tls
            .as_ref()
            .map(|tls| RustlsConfig::from_config(tls.server_config()));
        let app = Router::new()
            .fallback(serve_git)
            .with_state(Arc::clone(&state));
        let thread = spawn_server_thread(listener, rustls, app, handle.clone());
        Self {
            base_url: base_url(address, tls.is_some()),
            tls,
            state,
            handle,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The URL to fetch `repo` from.
    pub fn url_for(&self, repo: &TestRepo) -> String {
        format!("{}/{}.git", self.base_url, repo.name())
    }

    /// PEM of the CA that signed the server certificate, when serving HTTPS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|tls| tls.ca_pem.as_str())
    }

    /// DER of the CA that signed the server certificate, when serving HTTPS.
    pub fn ca_der(&self) -> Option<&[u8]> {
        self.tls.as_ref().map(|tls| tls.ca_der.as_slice())
    }

    /// How many HTTP requests the server has received (ref advertisements and pack rounds).
    // The benchmarks compare the git traffic of driftless and Flux; no test reads it.
    #[allow(dead_code)]
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// How many of those requests asked for the ref advertisement (`GET .../info/refs`).
    pub fn advertisements(&self) -> usize {
        self.state.advertisements.load(Ordering::SeqCst)
    }

    /// How many requests carried basic-auth credentials that were wrong.
    pub fn rejected_credentials(&self) -> usize {
        self.state.rejected_credentials.load(Ordering::SeqCst)
    }
}

impl Drop for HttpGitServer {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            // A panic on the server thread was already printed; don't panic inside drop.
            let _ = thread.join();
        }
    }
}

fn base_url(address: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{address}")
}

fn spawn_server_thread(
    listener: TcpListener,
    rustls: Option<RustlsConfig>,
    app: Router,
    handle: Handle,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("build the git HTTP server's runtime");
        let service = app.into_make_service();
        // TCP_NODELAY, as git hosts (and nginx or any proxy in front of them) answer: without
        // it the small last write of a response (the end of a chunked body) waits for the
        // client's delayed ACK, and every request after the first on a kept-alive connection
        // stalls for 40 ms, which would be measured as the client's latency.
        let served = runtime.block_on(async move {
            match rustls {
                Some(config) => {
                    let server = axum_server::from_tcp_rustls(listener, config)
                        .map(|tls| tls.acceptor(NoDelayAcceptor));
                    server.handle(handle).serve(service).await
                }
                None => {
                    let server = axum_server::from_tcp(listener).acceptor(NoDelayAcceptor);
                    server.handle(handle).serve(service).await
                }
            }
        });
        served.expect("git HTTP server failed");
    })
}

async fn serve_git(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if request.uri().path().ends_with("/info/refs") {
        state.advertisements.fetch_add(1, Ordering::SeqCst);
    }
    let remote_user = match state.authenticate(request.headers()) {
        Ok(user) => user,
        Err(challenge) => return challenge.into_response(),
    };
    let root = &state.project_root;
    match run_http_backend(root, remote_user.as_deref(), request).await {
        Ok(response) => response,
        Err(err) => {
            let message = format!("git http-backend bridge: {err}");
            eprintln!("{message}");
            (StatusCode::BAD_GATEWAY, message).into_response()
        }
    }
}

impl ServerState {
    /// The authenticated user (`None` when no auth is required), or the challenge to send.
    fn authenticate(&self, headers: &HeaderMap) -> Result<Option<String>, BasicAuthChallenge> {
        let Some((username, password)) = &self.basic_auth else {
            return Ok(None);
        };
        let presented = basic_credentials(headers);
        if presented.as_ref() == Some(&(username.clone(), password.clone())) {
            return Ok(Some(username.clone()));
        }
        if presented.is_some() {
            self.rejected_credentials.fetch_add(1, Ordering::SeqCst);
        }
        Err(BasicAuthChallenge)
    }
}

/// A 401 whose `WWW-Authenticate` header is what makes git and libgit2 ask for
/// credentials and retry.
struct BasicAuthChallenge;

impl IntoResponse for BasicAuthChallenge {
    fn into_response(self) -> Response {
        let challenge = "Basic realm=\"driftless test git\"";
        let headers = [(header::WWW_AUTHENTICATE, challenge)];
        (StatusCode::UNAUTHORIZED, headers).into_response()
    }
}

/// `Authorization: Basic base64(user:password)` → `(user, password)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (username, password) = decoded.split_once(':')?;
    Some((username.to_owned(), password.to_owned()))
}

//! A minimal CGI/1.1 bridge from an HTTP request to `git http-backend`.
//!
//! Git's own program speaks the smart HTTP protocol (v0, v1 and v2, shallow, filters), so
//! the tests exercise a real server instead of a reimplementation of the protocol.

use std::io;
use std::path::Path;
use std::process::Stdio;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_util::io::ReaderStream;

/// Runs one `git http-backend` process for `request` and streams its output back.
///
/// `remote_user` is the authenticated user, if any, passed on as `REMOTE_USER`.
pub(super) async fn run_http_backend(
    project_root: &Path,
    remote_user: Option<&str>,
    request: Request,
) -> io::Result<Response> {
    let (parts, body) = request.into_parts();
    let mut child = cgi_command(project_root, remote_user, &parts.method, &parts.uri)
        .envs(cgi_header_env(&parts.headers))
        .spawn()?;
    let pid = child.id().unwrap_or_default();
    eprintln!(
        "git http-backend pid {pid}: {} {}{}",
        parts.method,
        parts.uri,
        timing_suffix()
    );

    // The request body goes in while the response comes out, so neither pipe can fill up
    // and stall the other side.
    tokio::spawn(copy_body_to_stdin(body, take(&mut child.stdin)));
    tokio::spawn(log_lines(take(&mut child.stderr), pid));
    let mut stdout = BufReader::new(take(&mut child.stdout));
    let (status, headers) = read_cgi_headers(&mut stdout).await?;
    tokio::spawn(reap(child, pid));

    let mut response = Response::new(Body::from_stream(ReaderStream::new(stdout)));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

fn cgi_command(
    project_root: &Path,
    remote_user: Option<&str>,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
) -> Command {
    let mut command = Command::new("git");
    command
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A client that hangs up mid-response must not leave the process behind.
        .kill_on_drop(true);
    if let Some(user) = remote_user {
        command.env("REMOTE_USER", user);
    }
    command
}

/// The CGI variables taken from request headers. `CONTENT_LENGTH` is only set when the
/// client sent one: without it http-backend reads the (chunked) body up to EOF.
/// `HTTP_GIT_PROTOCOL` is what turns on protocol v2.
fn cgi_header_env(headers: &HeaderMap) -> Vec<(&'static str, String)> {
    let forwarded = [
        (header::CONTENT_TYPE.as_str(), "CONTENT_TYPE"),
        (header::CONTENT_LENGTH.as_str(), "CONTENT_LENGTH"),
        (header::CONTENT_ENCODING.as_str(), "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "HTTP_GIT_PROTOCOL"),
    ];
    forwarded
        .into_iter()
        .filter_map(|(name, variable)| {
            let value = headers.get(name)?.to_str().ok()?;
            Some((variable, value.to_owned()))
        })
        .collect()
}

fn take<T>(pipe: &mut Option<T>) -> T {
    pipe.take().expect("pipe was requested with Stdio::piped")
}

async fn copy_body_to_stdin(mut body: Body, mut stdin: ChildStdin) {
    while let Some(Ok(frame)) = body.frame().await {
        let Some(data) = frame.data_ref() else {
            continue;
        };
        // http-backend may exit before reading everything (e.g. on a bad request); its
        // answer on stdout says why, so a broken pipe here is not worth reporting.
        if stdin.write_all(data).await.is_err() {
            return;
        }
    }
    // Dropping stdin closes the pipe: that EOF ends a body sent without Content-Length.
}

/// Parses the CGI header block: header lines up to a blank line, where the pseudo-header
/// `Status:` carries the HTTP status (200 when absent).
async fn read_cgi_headers(
    stdout: &mut BufReader<ChildStdout>,
) -> io::Result<(StatusCode, HeaderMap)> {
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).await? == 0 {
            return Err(invalid("git http-backend ended before its CGI headers did"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Ok((status, headers));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("malformed CGI header line {line:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            status = parse_status(value)?;
        } else {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).map_err(invalid)?,
                HeaderValue::from_str(value).map_err(invalid)?,
            );
        }
    }
}

/// `Status: 404 Not Found` → 404.
fn parse_status(value: &str) -> io::Result<StatusCode> {
    let code = value.split_whitespace().next().unwrap_or_default();
    StatusCode::from_bytes(code.as_bytes()).map_err(invalid)
}

fn invalid(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

async fn log_lines(stderr: impl AsyncRead + Unpin, pid: u32) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("git http-backend pid {pid} stderr: {line}");
    }
}

async fn reap(mut child: Child, pid: u32) {
    match child.wait().await {
        Ok(status) if status.success() => {
            if timing() {
                eprintln!("git http-backend pid {pid}: exited{}", timing_suffix());
            }
        }
        Ok(status) => eprintln!("git http-backend pid {pid} exited with {status}"),
        Err(err) => eprintln!("git http-backend pid {pid}: cannot wait for it: {err}"),
    }
}

/// `DRIFTLESS_TEST_GIT_TIMING` set: each request's start and end are logged with the wall
/// clock, to line them up with a controller's log when profiling.
fn timing() -> bool {
    std::env::var_os("DRIFTLESS_TEST_GIT_TIMING").is_some()
}

fn timing_suffix() -> String {
    if timing() {
        format!(" at {}", jiff::Timestamp::now())
    } else {
        String::new()
    }
}

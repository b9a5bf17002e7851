//! Webhook deliveries as Git hosts send them: HMAC signatures and plain HTTP/1.1 requests to
//! the receiver, and the shared secrets as the Helm chart mounts them.

use std::{
    io::{Read, Write},
    path::Path,
    time::Duration,
};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Lowercase hex of HMAC-SHA256(`key`, `body`).
pub fn hmac_sha256_hex(key: &[u8], body: &[u8]) -> String {
    hmac_sha256(key, body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// HMAC-SHA256(`key`, `body`).
pub fn hmac_sha256(key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The `X-Hub-Signature-256` value of `body` signed with `secret`.
pub fn github_signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hmac_sha256_hex(secret, body))
}

/// Delivers `body` as a GitHub push event signed with `key`.
pub fn github_push(
    port: u16,
    path: &str,
    key: &[u8],
    delivery: &str,
    body: &[u8],
) -> (u16, String) {
    let address = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
    github_push_to(address, path, key, delivery, body)
        .unwrap_or_else(|error| panic!("the receiver on port {port} does not listen: {error}"))
}

/// POSTs `body` with `headers` to the receiver; returns the status code and the response.
pub fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    request(port, "POST", path, headers, body)
}

/// Sends one HTTP/1.1 request on a fresh connection; returns the status code (0 when no status
/// line came back) and the raw response. A server may answer before reading the whole body
/// (413) and close: write errors are then ignored, and whatever was read before an error is
/// returned.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let address = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
    request_to(address, method, path, headers, body)
        .unwrap_or_else(|error| panic!("the receiver on port {port} does not listen: {error}"))
}

/// Delivers `body` as a GitHub push event signed with `key` to a receiver at `address` (a
/// pod's IP); a connection refused or reset is an error, for callers that retry.
pub fn github_push_to(
    address: std::net::SocketAddr,
    path: &str,
    key: &[u8],
    delivery: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let signature = github_signature(key, body);
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", delivery),
        ("X-Hub-Signature-256", signature.as_str()),
        ("Content-Type", "application/json"),
    ];
    request_to(address, "POST", path, &headers, body)
}

/// [`request`] to any address; the connection failing is an error, not a panic.
pub fn request_to(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(10))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let mut buffer = [0; 8192];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => response.extend_from_slice(&buffer[..read]),
        }
    }
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok((status, response))
}

/// Writes a shared webhook secret as the Helm chart mounts it: one file per provider, with
/// the trailing newline `kubectl create secret --from-file` keeps.
pub fn write_secret(dir: &Path, provider: &str, secret: &str) {
    std::fs::write(dir.join(provider), format!("{secret}\n")).unwrap();
}

//! Repository URLs as users write them in `spec.url`, normalized so that every spelling of one
//! repository (https, ssh, scp-like, with or without `.git`) maps to one cache key.
//!
//! The webhook receiver matches the `clone_url`, `ssh_url` and `html_url` of push payloads
//! against specs with [`RepositoryUrl::cache_key`], so all of those must agree too. The fetch
//! cache is keyed more narrowly, by [`RepositoryUrl::identity_key`] plus the credentials, since
//! `http://` and `https://`, or two SSH users, may see different content.
//! Credentials embedded in a URL are kept out of everything that may be printed or used as a
//! key: [`RepositoryUrl::redacted`], `Display`, `Debug`, [`RepositoryUrl::cache_key`] and
//! [`RepositoryUrl::identity_key`]; [`redact_unparsed`] does the same for text that is not a
//! URL at all.

use std::fmt;
use std::str::FromStr;

/// Why a `spec.url` was rejected. Messages never echo the URL, since it may hold a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Nothing but whitespace was given.
    #[error("repository URL is empty")]
    Empty,
    /// A scheme other than https, http or ssh (e.g. `ftp://` or `file://`).
    #[error("unsupported URL scheme `{scheme}`; use https://, http://, ssh:// or user@host:path")]
    UnsupportedScheme {
        /// The scheme as written, lowercased.
        scheme: String,
    },
    /// A local path or something else that names no remote host.
    #[error("repository URL names no remote host; use https://, http://, ssh:// or user@host:path")]
    NotRemote,
    /// `https:///path` and the like.
    #[error("repository URL has an empty host")]
    EmptyHost,
    /// `https://github.com/` and the like: a host but no repository.
    #[error("repository URL has no repository path after the host")]
    EmptyPath,
    /// A port that is not a number from 1 to 65535. The text is not kept: a password with an
    /// unescaped `/` is mistaken for a port, and it must not end up in a message.
    #[error(
        "repository URL has an invalid port (expected a number from 1 to 65535; scp-like `user@host:path` URLs are written without ssh://)"
    )]
    InvalidPort,
    /// An `@` after the host: what git would read as a host and a path is most likely user
    /// info whose token holds a `/`, so the token would be sent as a host name.
    #[error(
        "repository URL has `@` after the host; percent-encode `/` (%2F) and `@` (%40) in a user name or token, or better, put credentials in the Secret named by spec.secretRef"
    )]
    AtSignInPath,
}

/// How the URL was spelled; decides default ports and how it is handed to libgit2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Https,
    Http,
    /// `ssh://`, also spelled `git+ssh://` or `ssh+git://`.
    Ssh,
    /// `[user@]host:path`, which has no scheme, port or password.
    Scp,
}

impl Scheme {
    fn from_name(name: &str) -> Result<Scheme, UrlError> {
        match name.to_ascii_lowercase().as_str() {
            "https" => Ok(Scheme::Https),
            "http" => Ok(Scheme::Http),
            "ssh" | "git+ssh" | "ssh+git" => Ok(Scheme::Ssh),
            other => Err(UrlError::UnsupportedScheme {
                scheme: other.to_string(),
            }),
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Https => 443,
            Scheme::Http => 80,
            Scheme::Ssh | Scheme::Scp => 22,
        }
    }

    fn is_http(self) -> bool {
        matches!(self, Scheme::Https | Scheme::Http)
    }
}

/// A parsed remote repository URL.
///
/// `Debug` and `Display` both show the redacted form, so a `RepositoryUrl` can be logged freely.
#[derive(Clone, PartialEq, Eq)]
pub struct RepositoryUrl {
    /// The trimmed input, kept so that messages show the URL the way the user wrote it.
    original: String,
    scheme: Scheme,
    /// User name as written (percent-encoded), e.g. `git` or a token used as user name.
    user: Option<String>,
    /// Password or token as written (percent-encoded); never printed.
    password: Option<String>,
    /// Lowercased, without the brackets of an IPv6 literal.
    host: String,
    port: Option<u16>,
    /// Everything after the host (and port), as written, e.g. `/Org/Repo.git` or `Org/Repo`.
    path: String,
}

impl RepositoryUrl {
    /// Parses what a user may write in `spec.url`: `https://`, `http://`, `ssh://` URLs and
    /// scp-like `user@host:path`. Local paths and other schemes are rejected because the
    /// controller must only ever fetch over the network.
    pub fn parse(input: &str) -> Result<RepositoryUrl, UrlError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(UrlError::Empty);
        }
        match trimmed.split_once("://") {
            Some((scheme, rest)) if is_scheme_name(scheme) => {
                parse_hierarchical(trimmed, Scheme::from_name(scheme)?, rest)
            }
            _ => parse_scp_like(trimmed),
        }
    }

    /// A key identical for every spelling of the same repository: scheme, user, password,
    /// default port, trailing `/` and `.git` are dropped and the host is lowercased, so that
    /// `https://GitHub.com/Org/Repo.git` and `git@github.com:Org/Repo` share a cache entry.
    /// Path case is kept because many servers treat paths case-sensitively.
    pub fn cache_key(&self) -> String {
        format!(
            "{}/{}",
            self.authority_for_key(),
            normalized_path(&self.path)
        )
    }

    /// Who the server sees and what it serves: the scheme (`http` and `https` are different
    /// servers as far as trust goes; `ssh://` and scp-like are one), the SSH user (a different
    /// account may see different repositories), the host, a non-default port and the
    /// normalized path. Credentials embedded in http(s) URLs are not part of it: they are
    /// credential material, see [`Self::embedded_credentials`].
    pub fn identity_key(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Https => "https",
            Scheme::Http => "http",
            Scheme::Ssh | Scheme::Scp => "ssh",
        };
        let user = match self.scheme {
            // The user libgit2 falls back to when the URL names none.
            Scheme::Ssh | Scheme::Scp => format!("{}@", self.user.as_deref().unwrap_or("git")),
            Scheme::Https | Scheme::Http => String::new(),
        };
        format!("{scheme}://{user}{}", self.cache_key())
    }

    /// Replaces every copy of the user info as written (`user:token`, or what an scp-like URL
    /// has before its `@`) in `text` by `***`: libgit2 may quote the URL it was given.
    pub fn scrub(&self, text: &str) -> String {
        match secret_span(&self.original) {
            Some(span) if !span.is_empty() => text.replace(span, "***"),
            _ => text.to_owned(),
        }
    }

    /// The URL as the user wrote it, with any password or token replaced by `***`, for error
    /// messages and logs.
    pub fn redacted(&self) -> String {
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => {
                let secret = format!("{user}:{password}@");
                self.original.replacen(&secret, &format!("{user}:***@"), 1)
            }
            // A lone user name in an http(s) URL is how tokens are usually embedded.
            (Some(user), None) if self.scheme.is_http() => {
                self.original.replacen(&format!("{user}@"), "***@", 1)
            }
            _ => self.original.clone(),
        }
    }

    /// The URL to hand to libgit2. Embedded http(s) credentials are stripped because they are
    /// supplied through the credentials callback instead (see [`Self::embedded_credentials`]),
    /// which keeps them out of libgit2's error messages. scp-like URLs are passed as given,
    /// since libgit2 understands them and rewriting would turn a home-relative path absolute.
    pub fn for_libgit2(&self) -> String {
        match self.scheme {
            Scheme::Scp => self.original.clone(),
            Scheme::Https => self.hierarchical_without_password("https", false),
            Scheme::Http => self.hierarchical_without_password("http", false),
            Scheme::Ssh => self.hierarchical_without_password("ssh", true),
        }
    }

    /// User name and password embedded in an http(s) URL, percent-decoded, for the credentials
    /// callback. A lone user name (commonly a token) comes back with an empty password.
    /// SSH URLs yield `None`: their user name is part of [`Self::for_libgit2`].
    pub fn embedded_credentials(&self) -> Option<(String, String)> {
        if !self.scheme.is_http() {
            return None;
        }
        let user = self.user.as_deref()?;
        let password = self.password.as_deref().unwrap_or("");
        Some((percent_decode(user), percent_decode(password)))
    }

    /// The user name as written in the URL (e.g. `git` in `git@host:path`), which SSH
    /// authentication needs. For http(s) URLs this may be a token: never log it.
    pub fn username(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether the repository is reached over SSH (`ssh://` or scp-like), which decides
    /// whether host-key checking and SSH keys apply.
    pub fn is_ssh(&self) -> bool {
        matches!(self.scheme, Scheme::Ssh | Scheme::Scp)
    }

    /// The host, lowercased, without the brackets of an IPv6 literal (the form known_hosts
    /// lookups need).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port exactly as written in the URL, `None` when the scheme's default applies.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `host` or `host:port` for the cache key, with default ports dropped.
    fn authority_for_key(&self) -> String {
        let host = bracketed_host(&self.host);
        match self.port {
            Some(port) if port != self.scheme.default_port() => format!("{host}:{port}"),
            _ => host,
        }
    }

    fn hierarchical_without_password(&self, scheme: &str, keep_user: bool) -> String {
        let user = match &self.user {
            Some(user) if keep_user => format!("{user}@"),
            _ => String::new(),
        };
        let port = self.port.map(|port| format!(":{port}")).unwrap_or_default();
        let host = bracketed_host(&self.host);
        format!("{scheme}://{user}{host}{port}{}", self.path)
    }
}

impl FromStr for RepositoryUrl {
    type Err = UrlError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        RepositoryUrl::parse(input)
    }
}

impl fmt::Display for RepositoryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for RepositoryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RepositoryUrl")
            .field(&self.redacted())
            .finish()
    }
}

/// `spec.url` text that did not parse, for messages: everything between the scheme (if any)
/// and the last `@` becomes `***`. A token with a `/` or `@` in it breaks URL syntax, so where
/// the user info ends cannot be known; hiding too much of a broken URL costs nothing, hiding
/// too little leaks the token into statuses, Events and logs.
pub fn redact_unparsed(input: &str) -> String {
    let trimmed = input.trim();
    match secret_span(trimmed) {
        Some(span) => trimmed.replacen(span, "***", 1),
        None => trimmed.to_owned(),
    }
}

/// The part of `text` where credentials may be: after `scheme://` (or from the start) up to the
/// last `@`; `None` without an `@`.
fn secret_span(text: &str) -> Option<&str> {
    let start = text.find("://").map(|index| index + 3).unwrap_or(0);
    let rest = &text[start..];
    let end = rest.rfind('@')?;
    Some(&rest[..end])
}

/// RFC 3986 scheme syntax; anything else before `://` means the input is not a URL at all.
fn is_scheme_name(candidate: &str) -> bool {
    let mut chars = candidate.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Parses the part after `scheme://`: `[user[:password]@]host[:port][/path]`.
fn parse_hierarchical(
    original: &str,
    scheme: Scheme,
    rest: &str,
) -> Result<RepositoryUrl, UrlError> {
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    // The last `@` ends the user info: passwords may contain `@`, host names may not.
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    // Before the port: a token's `/` makes its first half look like `host:port`.
    if path.contains('@') {
        return Err(UrlError::AtSignInPath);
    }
    let (user, password) = split_userinfo(userinfo);
    let (host, port) = split_host_port(host_port)?;
    require_path(path)?;
    Ok(RepositoryUrl {
        original: original.to_string(),
        scheme,
        user,
        password,
        host,
        port,
        path: path.to_string(),
    })
}

/// Parses scp-like `[user@]host:path`, following git's rule that it is only scp-like when a
/// `:` comes before any `/`; otherwise it is a local path, which is not allowed.
fn parse_scp_like(original: &str) -> Result<RepositoryUrl, UrlError> {
    let (user, rest) = match original.split_once('@') {
        Some((user, rest)) if !user.contains([':', '/']) => (Some(user), rest),
        _ => (None, original),
    };
    let (host, path) = split_scp_host(rest)?;
    if host.contains('/') {
        return Err(UrlError::NotRemote);
    }
    if host.is_empty() {
        return Err(UrlError::EmptyHost);
    }
    require_path(path)?;
    Ok(RepositoryUrl {
        original: original.to_string(),
        scheme: Scheme::Scp,
        user: user.filter(|user| !user.is_empty()).map(str::to_string),
        password: None,
        host: host.to_ascii_lowercase(),
        port: None,
        path: path.to_string(),
    })
}

/// Splits `host:path` or `[ipv6]:path` at the colon that ends the host.
fn split_scp_host(rest: &str) -> Result<(&str, &str), UrlError> {
    if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or(UrlError::NotRemote)?;
        let path = after.strip_prefix(':').ok_or(UrlError::NotRemote)?;
        return Ok((host, path));
    }
    rest.split_once(':').ok_or(UrlError::NotRemote)
}

fn split_userinfo(userinfo: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(userinfo) = userinfo else {
        return (None, None);
    };
    match userinfo.split_once(':') {
        Some((user, password)) => (Some(user.to_string()), Some(password.to_string())),
        None => (Some(userinfo.to_string()), None),
    }
}

/// Splits `host`, `host:port`, `[ipv6]` or `[ipv6]:port`; the host comes back lowercased.
fn split_host_port(host_port: &str) -> Result<(String, Option<u16>), UrlError> {
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or(UrlError::EmptyHost)?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::EmptyHost);
    }
    Ok((host.to_ascii_lowercase(), port.map(parse_port).transpose()?))
}

fn parse_port(port: &str) -> Result<u16, UrlError> {
    port.parse::<u16>()
        .ok()
        .filter(|&port| port != 0)
        .ok_or(UrlError::InvalidPort)
}

fn require_path(path: &str) -> Result<(), UrlError> {
    if normalized_path(path).is_empty() {
        Err(UrlError::EmptyPath)
    } else if path.contains('@') {
        Err(UrlError::AtSignInPath)
    } else {
        Ok(())
    }
}

/// The path as it appears in cache keys: no leading or trailing `/`, no trailing `.git`.
fn normalized_path(path: &str) -> &str {
    let path = path.trim_matches('/');
    path.strip_suffix(".git")
        .unwrap_or(path)
        .trim_end_matches('/')
}

/// IPv6 literals need their brackets back wherever a port may follow.
fn bracketed_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Decodes `%XX` escapes, which is how user names and tokens with reserved characters are
/// written into URLs. Invalid escapes are kept literally rather than rejected.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match decode_escape(&bytes[index..]) {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn decode_escape(bytes: &[u8]) -> Option<u8> {
    match bytes {
        [b'%', high, low, ..] => {
            let hex = [*high, *low];
            u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> RepositoryUrl {
        RepositoryUrl::parse(input).unwrap_or_else(|err| panic!("{input}: {err}"))
    }

    fn key(input: &str) -> String {
        parse(input).cache_key()
    }

    #[test]
    fn parse_accepts_every_supported_spelling() {
        for input in [
            "https://github.com/org/repo.git",
            "http://git.example.com:8080/org/repo",
            "ssh://git@github.com/org/repo.git",
            "ssh://github.com:2222/org/repo",
            "git+ssh://git@github.com/org/repo",
            "git@github.com:org/repo.git",
            "git@github.com:/srv/git/repo.git",
            "github.com:org/repo",
            "  https://github.com/org/repo  ",
        ] {
            parse(input);
        }
    }

    #[test]
    fn parse_rejects_other_schemes() {
        for (input, scheme) in [
            ("ftp://example.com/repo", "ftp"),
            ("file:///srv/repo", "file"),
            ("FILE:///srv/repo", "file"),
            ("git://example.com/repo", "git"),
        ] {
            assert_eq!(
                RepositoryUrl::parse(input),
                Err(UrlError::UnsupportedScheme {
                    scheme: scheme.to_string()
                }),
                "{input}"
            );
        }
    }

    #[test]
    fn parse_rejects_local_paths() {
        for input in ["/srv/git/repo.git", "./repo", "repo", "some/dir:with-colon"] {
            assert_eq!(
                RepositoryUrl::parse(input),
                Err(UrlError::NotRemote),
                "{input}"
            );
        }
    }

    #[test]
    fn parse_rejects_empty_input_host_and_path() {
        assert_eq!(RepositoryUrl::parse("  "), Err(UrlError::Empty));
        assert_eq!(
            RepositoryUrl::parse("https:///org/repo"),
            Err(UrlError::EmptyHost)
        );
        assert_eq!(
            RepositoryUrl::parse("https://user@:443/org/repo"),
            Err(UrlError::EmptyHost)
        );
        assert_eq!(
            RepositoryUrl::parse("git@:org/repo"),
            Err(UrlError::EmptyHost)
        );
        for input in [
            "https://github.com",
            "https://github.com/",
            "https://github.com/.git",
            "git@github.com:",
        ] {
            assert_eq!(
                RepositoryUrl::parse(input),
                Err(UrlError::EmptyPath),
                "{input}"
            );
        }
    }

    #[test]
    fn parse_rejects_invalid_ports() {
        for port in ["", "0", "65536", "http"] {
            let input = format!("ssh://git@host:{port}/repo");
            assert_eq!(
                RepositoryUrl::parse(&input),
                Err(UrlError::InvalidPort),
                "{input}"
            );
        }
    }

    #[test]
    fn parse_explains_scp_like_paths_written_after_ssh_scheme() {
        let err = RepositoryUrl::parse("ssh://git@github.com:org/repo.git").unwrap_err();
        assert_eq!(err, UrlError::InvalidPort);
        assert!(err.to_string().contains("without ssh://"), "{err}");
    }

    #[test]
    fn parse_error_messages_never_echo_credentials() {
        let err = RepositoryUrl::parse("https//user:s3cret@host/repo").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let err = RepositoryUrl::parse("https://user:s3cret@/repo").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let err = RepositoryUrl::parse("https://user:s3/cret@host/repo").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("s3"), "{err:?}");
    }

    #[test]
    fn from_str_matches_parse() {
        let url: RepositoryUrl = "git@github.com:org/repo".parse().unwrap();
        assert_eq!(url, parse("git@github.com:org/repo"));
        assert_eq!(
            "ftp://x/y".parse::<RepositoryUrl>(),
            Err(UrlError::UnsupportedScheme {
                scheme: "ftp".into()
            })
        );
    }

    #[test]
    fn cache_key_is_shared_by_every_spelling_of_one_repository() {
        for input in [
            "https://GitHub.com/Org/Repo.git",
            "https://github.com/Org/Repo",
            "https://github.com/Org/Repo/",
            "https://github.com:443/Org/Repo.git",
            "http://github.com/Org/Repo",
            "http://github.com:80/Org/Repo",
            "https://user:token@github.com/Org/Repo.git",
            "git@github.com:Org/Repo",
            "git@github.com:Org/Repo.git",
            "git@github.com:/Org/Repo.git",
            "ssh://git@github.com/Org/Repo.git",
            "ssh://git@github.com:22/Org/Repo.git/",
            "git+ssh://git@GITHUB.COM/Org/Repo",
        ] {
            assert_eq!(key(input), "github.com/Org/Repo", "{input}");
        }
    }

    #[test]
    fn cache_key_matches_webhook_payload_urls() {
        let spec = key("git@github.com:org/repo.git");
        for payload in [
            "https://github.com/org/repo.git",
            "git@github.com:org/repo.git",
            "ssh://git@github.com/org/repo.git",
            "https://github.com/org/repo",
        ] {
            assert_eq!(key(payload), spec, "{payload}");
        }
    }

    #[test]
    fn cache_key_keeps_non_default_ports_and_path_case() {
        assert_eq!(
            key("ssh://git@host:2222/org/repo.git"),
            "host:2222/org/repo"
        );
        assert_eq!(key("https://host:8443/org/repo"), "host:8443/org/repo");
        assert_eq!(key("https://host:22/org/repo"), "host:22/org/repo");
        assert_ne!(key("https://host/Org/Repo"), key("https://host/org/repo"));
    }

    #[test]
    fn cache_key_brackets_ipv6_hosts() {
        assert_eq!(key("ssh://git@[::1]:2222/repo.git"), "[::1]:2222/repo");
        assert_eq!(key("git@[::1]:repo.git"), "[::1]/repo");
        assert_eq!(key("https://[::1]/repo"), "[::1]/repo");
    }

    #[test]
    fn cache_key_keeps_nested_paths() {
        assert_eq!(
            key("https://gitlab.com/group/sub/repo.git"),
            "gitlab.com/group/sub/repo"
        );
        assert_eq!(key("https://host/repo.git/"), "host/repo");
    }

    #[test]
    fn redacted_hides_passwords_and_tokens() {
        assert_eq!(
            parse("https://user:s3cret@github.com/org/repo").redacted(),
            "https://user:***@github.com/org/repo"
        );
        assert_eq!(
            parse("https://ghp_token@github.com/org/repo").redacted(),
            "https://***@github.com/org/repo"
        );
        assert_eq!(
            parse("ssh://git:pw@host/repo").redacted(),
            "ssh://git:***@host/repo"
        );
    }

    #[test]
    fn identity_key_separates_schemes_and_ssh_users() {
        let identity = |input: &str| parse(input).identity_key();
        assert_ne!(
            identity("http://git.example.com/org/repo"),
            identity("https://git.example.com/org/repo")
        );
        assert_ne!(
            identity("ssh://alice@git.example.com/org/repo"),
            identity("ssh://bob@git.example.com/org/repo")
        );
        assert_ne!(
            identity("ssh://git@git.example.com:2222/org/repo"),
            identity("ssh://git@git.example.com/org/repo")
        );
        // One server and account, spelled differently.
        assert_eq!(
            identity("git@git.example.com:org/repo.git"),
            identity("ssh://git@git.example.com:22/org/repo")
        );
        assert_eq!(
            identity("git.example.com:org/repo"),
            identity("ssh://git@git.example.com/org/repo/")
        );
        assert_eq!(
            identity("https://GIT.example.com:443/org/repo.git"),
            identity("https://git.example.com/org/repo")
        );
        // The webhook key still joins them all.
        assert_eq!(
            key("http://git.example.com/org/repo"),
            key("ssh://bob@git.example.com/org/repo")
        );
    }

    #[test]
    fn identity_key_never_holds_embedded_credentials() {
        let identity = parse("https://user:hunter2@git.example.com/org/repo").identity_key();
        assert_eq!(identity, "https://git.example.com/org/repo");
        let token = parse("https://ghp_token@git.example.com/org/repo").identity_key();
        assert!(!token.contains("ghp_token"), "{token}");
    }

    #[test]
    fn redact_unparsed_hides_everything_before_the_last_at() {
        assert_eq!(
            redact_unparsed("https://user:to/ken@host:1/repo.git"),
            "https://***@host:1/repo.git"
        );
        assert_eq!(redact_unparsed(" user:tok@en@host:repo\n"), "***@host:repo");
        assert_eq!(
            redact_unparsed("https://host/repo.git"),
            "https://host/repo.git"
        );
    }

    #[test]
    fn parse_rejects_at_signs_after_the_host() {
        // A token with a `/` turns the rest of the user info into a path, and the token
        // into a host name.
        for input in [
            "https://ghp_s3cret/part@host/org/repo.git",
            "https://user:s3cret/part@host/org/repo.git",
            "ssh://git@host/org/repo@v1",
            "user:s3cret@host:repo.git",
            "user:s3/cret@host:repo.git",
        ] {
            let error = RepositoryUrl::parse(input).unwrap_err();
            assert_eq!(error, UrlError::AtSignInPath, "{input}");
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
        assert_eq!(
            RepositoryUrl::parse("https://ghp_s3cret/part@host/org/repo.git"),
            Err(UrlError::AtSignInPath)
        );
    }

    #[test]
    fn scrub_removes_the_user_info_from_quoted_text() {
        let url = parse("ssh://git:s3cret@host/repo.git");
        assert_eq!(
            url.scrub("cannot connect to 'ssh://git:s3cret@host/repo.git'"),
            "cannot connect to 'ssh://***@host/repo.git'"
        );
        let plain = parse("https://host/repo.git");
        assert_eq!(plain.scrub("text"), "text");
    }

    #[test]
    fn redacted_hides_passwords_containing_at_signs() {
        let url = parse("https://user:p@ss@github.com/org/repo");
        assert_eq!(url.redacted(), "https://user:***@github.com/org/repo");
        assert_eq!(url.host(), "github.com");
    }

    #[test]
    fn redacted_keeps_urls_without_secrets_as_written() {
        for input in [
            "https://GitHub.com/Org/Repo.git",
            "git@github.com:org/repo",
            "ssh://git@host:2222/repo",
        ] {
            assert_eq!(parse(input).redacted(), input);
        }
    }

    #[test]
    fn display_and_debug_are_redacted() {
        let url = parse("https://user:s3cret@github.com/org/repo");
        assert_eq!(url.to_string(), "https://user:***@github.com/org/repo");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(!format!("{url:#?}").contains("s3cret"));
    }

    #[test]
    fn for_libgit2_strips_http_credentials() {
        assert_eq!(
            parse("https://user:s3cret@github.com/org/repo.git").for_libgit2(),
            "https://github.com/org/repo.git"
        );
        assert_eq!(
            parse("HTTP://token@host:8080/repo").for_libgit2(),
            "http://host:8080/repo"
        );
    }

    #[test]
    fn for_libgit2_keeps_ssh_user_but_not_password() {
        assert_eq!(
            parse("ssh://git:pw@host:2222/repo.git").for_libgit2(),
            "ssh://git@host:2222/repo.git"
        );
        assert_eq!(
            parse("git+ssh://git@host/repo").for_libgit2(),
            "ssh://git@host/repo"
        );
        assert_eq!(
            parse("ssh://git@[::1]:2222/repo").for_libgit2(),
            "ssh://git@[::1]:2222/repo"
        );
    }

    #[test]
    fn for_libgit2_keeps_scp_like_urls_as_given() {
        for input in ["git@github.com:org/repo.git", "git@host:/srv/repo.git"] {
            assert_eq!(parse(input).for_libgit2(), input);
        }
    }

    #[test]
    fn embedded_credentials_are_decoded_for_http_only() {
        assert_eq!(
            parse("https://us%40er:p%3Ass@host/repo").embedded_credentials(),
            Some(("us@er".to_string(), "p:ss".to_string()))
        );
        assert_eq!(
            parse("https://token@host/repo").embedded_credentials(),
            Some(("token".to_string(), String::new()))
        );
        assert_eq!(parse("https://host/repo").embedded_credentials(), None);
        assert_eq!(parse("ssh://git:pw@host/repo").embedded_credentials(), None);
    }

    #[test]
    fn username_is_reported_for_every_scheme() {
        assert_eq!(parse("git@host:repo").username(), Some("git"));
        assert_eq!(
            parse("ssh://deploy:pw@host/repo").username(),
            Some("deploy")
        );
        assert_eq!(parse("https://token@host/repo").username(), Some("token"));
        assert_eq!(parse("https://host/repo").username(), None);
        assert_eq!(parse("host:repo").username(), None);
    }

    #[test]
    fn is_ssh_covers_ssh_and_scp_like() {
        assert!(parse("ssh://git@host/repo").is_ssh());
        assert!(parse("git@host:repo").is_ssh());
        assert!(!parse("https://host/repo").is_ssh());
        assert!(!parse("http://host/repo").is_ssh());
    }

    #[test]
    fn host_is_lowercased_without_brackets() {
        assert_eq!(parse("https://GitHub.COM/org/repo").host(), "github.com");
        assert_eq!(parse("ssh://git@[::1]:2222/repo").host(), "::1");
        assert_eq!(parse("git@[FE80::1]:repo").host(), "fe80::1");
    }

    #[test]
    fn port_is_what_was_written() {
        assert_eq!(parse("ssh://git@host:2222/repo").port(), Some(2222));
        assert_eq!(parse("ssh://git@host:22/repo").port(), Some(22));
        assert_eq!(parse("ssh://git@host/repo").port(), None);
        assert_eq!(parse("git@host:repo").port(), None);
        assert_eq!(parse("https://[::1]:8443/repo").port(), Some(8443));
    }

    #[test]
    fn percent_decode_keeps_invalid_escapes() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}

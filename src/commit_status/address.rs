//! Where a repository's statuses go: the API address derived from `spec.url` (or the spec's
//! `address`), the repository's path on the host, and the rule that keeps a tenant's token on
//! the repository's own host.

use crate::api::CommitStatusProvider;

/// Why no status can be posted for a spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddressError {
    #[error("spec.url {0:?} names no host and path a commit status could be posted for")]
    UnreadableUrl(String),
    #[error("spec.commitStatus.address {0:?} is not an http:// or https:// URL with a host")]
    UnreadableAddress(String),
    #[error(
        "spec.commitStatus.address {address:?} is on host {found}, not on the repository's host \
         {expected}: the token is only sent to the repository's own host unless the controller \
         allows {found} (--commit-status-allowed-hosts)"
    )]
    ForeignHost {
        address: String,
        found: String,
        expected: String,
    },
}

/// A web address split into what the host check and the request need.
#[derive(Clone, Debug, PartialEq, Eq)]
struct WebAddress {
    https: bool,
    /// Lowercased.
    host: String,
    port: Option<u16>,
    /// Without a trailing `/`; empty for the root.
    path: String,
}

impl WebAddress {
    fn parse(text: &str) -> Option<WebAddress> {
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else {
            (false, text.strip_prefix("http://")?)
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, ""),
        };
        // Credentials in the address would be sent to whoever the host is: refused.
        if authority.contains('@') || authority.is_empty() {
            return None;
        }
        let (host, port) = split_port(authority)?;
        Some(WebAddress {
            https,
            host: host.to_ascii_lowercase(),
            port,
            path: path.trim_end_matches('/').to_owned(),
        })
    }

    fn effective_port(&self) -> u16 {
        self.port.unwrap_or(if self.https { 443 } else { 80 })
    }

    /// `host` or `host:port`, as written.
    fn authority(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }

    fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.authority())
    }
}

fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

/// The repository as `spec.url` names it: its web address (an SSH URL's host over https) and
/// its path.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Repository {
    web: WebAddress,
    /// Whether the URL was SSH: its port says nothing about the web port then.
    ssh: bool,
    /// `org/app` or `group/sub/app`, without `.git`.
    path: String,
}

fn repository_of(url: &str) -> Option<Repository> {
    let url = url.trim();
    let (web, ssh) = if url.starts_with("https://") || url.starts_with("http://") {
        (WebAddress::parse(url)?, false)
    } else if let Some(rest) = url.strip_prefix("ssh://") {
        let (authority, path) = rest.split_once('/')?;
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, _) = split_port(host_port)?;
        let web = WebAddress {
            https: true,
            host: host.to_ascii_lowercase(),
            port: None,
            path: format!("/{path}").trim_end_matches('/').to_owned(),
        };
        (web, true)
    } else {
        // scp-like: user@host:path
        let (user_host, path) = url.split_once(':')?;
        let host = user_host.rsplit_once('@').map_or(user_host, |(_, h)| h);
        let web = WebAddress {
            https: true,
            host: host.to_ascii_lowercase(),
            port: None,
            path: format!("/{}", path.trim_start_matches('/')),
        };
        (web, true)
    };
    let path = web
        .path
        .trim_matches('/')
        .trim_end_matches(".git")
        .to_owned();
    if web.host.is_empty() || path.is_empty() {
        return None;
    }
    Some(Repository { web, ssh, path })
}

/// The API of the public hosts, whose API is on another host than their repositories.
fn public_api(provider: CommitStatusProvider, host: &str) -> Option<&'static str> {
    match (provider, host) {
        (CommitStatusProvider::Github, "github.com") => Some("https://api.github.com"),
        (CommitStatusProvider::Gitlab, "gitlab.com") => Some("https://gitlab.com"),
        (CommitStatusProvider::Bitbucket, "bitbucket.org") => Some("https://api.bitbucket.org"),
        _ => None,
    }
}

/// The API address and repository path statuses of `url` go to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub api: String,
    pub repository: String,
}

/// Where the statuses of the repository at `url` go, with `address` when the spec sets one.
/// An address on another host (or another port of an http(s) repository's host) than the
/// repository's is refused unless `allowed_hosts` names its host: a tenant must not make the
/// controller send its token, or any token, to a server of its choosing.
pub fn resolve(
    provider: CommitStatusProvider,
    url: &str,
    address: Option<&str>,
    allowed_hosts: &[String],
) -> Result<Resolved, AddressError> {
    let repository =
        repository_of(url).ok_or_else(|| AddressError::UnreadableUrl(url.to_owned()))?;
    let public = public_api(provider, &repository.web.host);
    let Some(address) = address else {
        let api = match public {
            Some(api) => api.to_owned(),
            None => default_api(provider, &repository.web),
        };
        return Ok(Resolved {
            api,
            repository: repository.path,
        });
    };
    let web = WebAddress::parse(address)
        .ok_or_else(|| AddressError::UnreadableAddress(address.to_owned()))?;
    let same_host = web.host == repository.web.host
        && (repository.ssh || web.effective_port() == repository.web.effective_port());
    let public_host = public.is_some_and(|api| WebAddress::parse(api).is_some_and(|p| p == web));
    let allowed = allowed_hosts
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(&web.host));
    if !(same_host || public_host || allowed) {
        return Err(AddressError::ForeignHost {
            address: address.to_owned(),
            found: web.authority(),
            expected: repository.web.authority(),
        });
    }
    // A host served under a sub-path (https://example.com/gitea) has that prefix in the
    // repository's path as well; the API wants the path without it.
    let prefix = format!("{}/", web.path.trim_start_matches('/'));
    let path = match repository.path.strip_prefix(&prefix) {
        Some(rest) if !web.path.is_empty() => rest.to_owned(),
        _ => repository.path,
    };
    Ok(Resolved {
        api: format!("{}{}", web.origin(), web.path),
        repository: path,
    })
}

/// The API of a self-hosted server, from its repository's web address.
fn default_api(provider: CommitStatusProvider, web: &WebAddress) -> String {
    match provider {
        // GitHub Enterprise Server serves its REST API under /api/v3.
        CommitStatusProvider::Github => format!("{}/api/v3", web.origin()),
        _ => web.origin(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CommitStatusProvider::*;

    fn resolved(api: &str, repository: &str) -> Resolved {
        Resolved {
            api: api.into(),
            repository: repository.into(),
        }
    }

    #[test]
    fn the_api_is_derived_from_the_repository_url() {
        let cases = [
            (
                Github,
                "https://github.com/org/app.git",
                resolved("https://api.github.com", "org/app"),
            ),
            (
                Github,
                "git@github.com:org/app.git",
                resolved("https://api.github.com", "org/app"),
            ),
            (
                Github,
                "https://ghe.example.com/org/app",
                resolved("https://ghe.example.com/api/v3", "org/app"),
            ),
            (
                Gitlab,
                "https://gitlab.com/group/sub/app.git",
                resolved("https://gitlab.com", "group/sub/app"),
            ),
            (
                Gitea,
                "http://127.0.0.1:3000/owner/app.git",
                resolved("http://127.0.0.1:3000", "owner/app"),
            ),
            (
                Forgejo,
                "ssh://git@code.example.com:2222/owner/app.git",
                resolved("https://code.example.com", "owner/app"),
            ),
            (
                Bitbucket,
                "https://bitbucket.org/team/app.git",
                resolved("https://api.bitbucket.org", "team/app"),
            ),
        ];
        for (provider, url, expected) in cases {
            assert_eq!(resolve(provider, url, None, &[]), Ok(expected), "{url}");
        }
    }

    #[test]
    fn an_address_on_the_repository_host_is_used_as_written() {
        let found = resolve(
            Gitea,
            "https://example.com/gitea/owner/app.git",
            Some("https://example.com/gitea/"),
            &[],
        );
        assert_eq!(
            found,
            Ok(resolved("https://example.com/gitea", "owner/app"))
        );
        let ghe = resolve(
            Github,
            "git@ghe.example.com:org/app.git",
            Some("https://ghe.example.com/api/v3"),
            &[],
        );
        assert_eq!(
            ghe,
            Ok(resolved("https://ghe.example.com/api/v3", "org/app"))
        );
        let public = resolve(
            Github,
            "https://github.com/org/app",
            Some("https://api.github.com"),
            &[],
        );
        assert_eq!(public, Ok(resolved("https://api.github.com", "org/app")));
    }

    #[test]
    fn a_tenant_cannot_aim_its_token_at_another_server() {
        for address in [
            "https://attacker.example.net",
            "http://127.0.0.1:9999",
            "https://example.com.attacker.net",
            "https://user@attacker.net",
            "https://example.com@attacker.net",
        ] {
            let refused = resolve(
                Gitea,
                "http://127.0.0.1:3000/owner/app.git",
                Some(address),
                &[],
            );
            assert!(
                matches!(
                    refused,
                    Err(AddressError::ForeignHost { .. } | AddressError::UnreadableAddress(_))
                ),
                "{address}: {refused:?}"
            );
        }
        let other_port = resolve(
            Gitea,
            "https://example.com/o/a.git",
            Some("https://example.com:8443"),
            &[],
        );
        assert!(
            matches!(other_port, Err(AddressError::ForeignHost { .. })),
            "{other_port:?}"
        );
        let allowed = resolve(
            Gitea,
            "https://example.com/o/a.git",
            Some("https://api.example.net"),
            &["API.example.net".to_owned()],
        );
        assert_eq!(allowed, Ok(resolved("https://api.example.net", "o/a")));
    }
}

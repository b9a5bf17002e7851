//! The Git hosts the shared receiver understands, named by the last segment of
//! `POST /hooks/{provider}`.

use std::fmt;

use axum::http::HeaderMap;

/// A Git host family. Each decides which headers carry the signature, the event kind and the
/// delivery id, and how the push payload is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// GitHub and GitHub Enterprise.
    GitHub,
    /// GitLab, with either the plain `X-Gitlab-Token` or Standard Webhooks signatures.
    GitLab,
    /// Gitea and Gogs.
    Gitea,
    /// Forgejo: Gitea's payloads and signatures under its own header names.
    Forgejo,
    /// Bitbucket Cloud and Bitbucket Server / Data Center.
    Bitbucket,
    /// Any other sender that signs with `X-Signature: sha256=<hex>`.
    Generic,
}

impl Provider {
    /// Every provider, for iteration in tests and documentation.
    pub const ALL: [Provider; 6] = [
        Provider::GitHub,
        Provider::GitLab,
        Provider::Gitea,
        Provider::Forgejo,
        Provider::Bitbucket,
        Provider::Generic,
    ];

    /// The provider named by a path segment, `None` for anything else (which the router answers
    /// with 404 unless it is a per-object hook id).
    pub fn from_path_segment(segment: &str) -> Option<Provider> {
        Provider::ALL
            .into_iter()
            .find(|provider| provider.path_segment() == segment)
    }

    /// The path segment under `/hooks/` that selects this provider.
    pub fn path_segment(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Gitea => "gitea",
            Provider::Forgejo => "forgejo",
            Provider::Bitbucket => "bitbucket",
            Provider::Generic => "generic",
        }
    }

    /// Guesses the sender from its headers, for per-object hooks whose path names no provider.
    /// Gitea and Forgejo are checked before GitHub because they also send `X-GitHub-Event`.
    pub fn detect(headers: &HeaderMap) -> Provider {
        if headers.contains_key("x-forgejo-event") {
            Provider::Forgejo
        } else if headers.contains_key("x-gitea-event") || headers.contains_key("x-gogs-event") {
            Provider::Gitea
        } else if headers.contains_key("x-github-event") {
            Provider::GitHub
        } else if headers.contains_key("x-gitlab-event") {
            Provider::GitLab
        } else if headers.contains_key("x-event-key") {
            Provider::Bitbucket
        } else {
            Provider::Generic
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path_segment())
    }
}

/// The value of a header as text, `None` when absent or not visible ASCII.
pub(crate) fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

/// The first of several alternative headers that is present.
pub(crate) fn first_header<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|name| header_text(headers, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_round_trip() {
        for provider in Provider::ALL {
            assert_eq!(
                Provider::from_path_segment(provider.path_segment()),
                Some(provider)
            );
        }
        assert_eq!(Provider::from_path_segment("GitHub"), None);
        assert_eq!(Provider::from_path_segment("svn"), None);
    }

    #[test]
    fn detection_prefers_gitea_over_its_github_compatible_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-github-event", "push".parse().unwrap());
        assert_eq!(Provider::detect(&headers), Provider::GitHub);
        headers.insert("x-gitea-event", "push".parse().unwrap());
        assert_eq!(Provider::detect(&headers), Provider::Gitea);
        headers.insert("x-forgejo-event", "push".parse().unwrap());
        assert_eq!(Provider::detect(&headers), Provider::Forgejo);
        assert_eq!(Provider::detect(&HeaderMap::new()), Provider::Generic);
    }
}

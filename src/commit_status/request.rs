//! What each Git host expects: the request that posts one commit status, built without any I/O
//! so that every provider's format is checked field by field in tests.

use serde_json::{Value, json};

use crate::api::CommitStatusProvider;

/// The outcome of a commit, in driftless's words; each host spells it its own way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// A new commit was fetched and its apply started.
    Pending,
    /// The commit is applied and, with `spec.wait`, healthy.
    Success,
    /// The commit could not be applied or did not become healthy.
    Failure,
    /// The commit's failure was superseded by a newer commit before it was fixed.
    Error,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Success => "success",
            State::Failure => "failure",
            State::Error => "error",
        }
    }
}

/// Where a status goes: the host's API, the repository on it, and the token that may write.
#[derive(Clone, PartialEq, Eq)]
pub struct Destination {
    pub provider: CommitStatusProvider,
    /// The API's base URL without a trailing slash, e.g. `https://api.github.com`.
    pub api: String,
    /// The repository's path on the host, e.g. `org/app` (GitLab: `group/sub/app`).
    pub repository: String,
    pub credentials: Credentials,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("provider", &self.provider)
            .field("api", &self.api)
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

/// The token of a Secret; never printed (its `Debug` says only that it is there).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// With a user name, HTTP basic auth (a Bitbucket app password); else the host's token
    /// header.
    pub username: Option<String>,
    pub token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// One status of one commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The full 40-hex commit SHA.
    pub commit: String,
    pub state: State,
    /// The name the host shows and keys the status by (GitHub's context).
    pub context: String,
    pub description: String,
    pub target_url: Option<String>,
}

/// An HTTP request ready to send.
#[derive(Clone, PartialEq, Eq)]
pub struct PostRequest {
    pub url: String,
    /// Besides `User-Agent`, and `Content-Type: application/json` unless named here.
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

impl std::fmt::Debug for PostRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| *name).collect();
        f.debug_struct("PostRequest")
            .field("url", &self.url)
            .field("headers", &names)
            .field("body", &self.body)
            .finish()
    }
}

/// The longest description each host keeps; longer ones are cut (with an ellipsis).
pub fn description_limit(provider: CommitStatusProvider) -> usize {
    match provider {
        // GitHub refuses more than 140 characters.
        CommitStatusProvider::Github => 140,
        // GitLab stores 255.
        CommitStatusProvider::Gitlab => 255,
        // Gitea and Forgejo store any length; a status line longer than this helps nobody.
        CommitStatusProvider::Gitea | CommitStatusProvider::Forgejo => 1000,
        CommitStatusProvider::Bitbucket | CommitStatusProvider::Bitbucketserver => 255,
    }
}

/// Bitbucket Cloud keys a status by at most 40 characters.
const BITBUCKET_KEY_LIMIT: usize = 40;

/// The request that posts `status` to `destination`.
pub fn post_request(destination: &Destination, status: &Status) -> PostRequest {
    let provider = destination.provider;
    let api = destination.api.trim_end_matches('/');
    let description = truncate(&status.description, description_limit(provider));
    let commit = &status.commit;
    let (url, body) = match provider {
        // https://docs.github.com/en/rest/commits/statuses#create-a-commit-status
        CommitStatusProvider::Github => (
            format!("{api}/repos/{}/statuses/{commit}", destination.repository),
            json!({
                "state": github_state(status.state),
                "target_url": status.target_url,
                "description": description,
                "context": status.context,
            }),
        ),
        // Gitea's API is GitHub's under /api/v1: /repos/{owner}/{repo}/statuses/{sha}.
        CommitStatusProvider::Gitea | CommitStatusProvider::Forgejo => (
            format!(
                "{api}/api/v1/repos/{}/statuses/{commit}",
                destination.repository
            ),
            json!({
                "state": github_state(status.state),
                "target_url": status.target_url.clone().unwrap_or_default(),
                "description": description,
                "context": status.context,
            }),
        ),
        // https://docs.gitlab.com/api/commits/#set-the-pipeline-status-of-a-commit
        CommitStatusProvider::Gitlab => (
            format!(
                "{api}/api/v4/projects/{}/statuses/{commit}",
                encode_path_segment(&destination.repository)
            ),
            json!({
                "state": gitlab_state(status.state),
                "name": status.context,
                "target_url": status.target_url,
                "description": description,
            }),
        ),
        // https://developer.atlassian.com/cloud/bitbucket/rest/api-group-commit-statuses/
        CommitStatusProvider::Bitbucket => (
            format!(
                "{api}/2.0/repositories/{}/commit/{commit}/statuses/build",
                destination.repository
            ),
            json!({
                "key": bitbucket_key(&status.context),
                "state": bitbucket_state(status.state),
                "url": bitbucket_url(destination, status),
                "name": status.context,
                "description": description,
            }),
        ),
        // https://developer.atlassian.com/server/bitbucket/how-tos/updating-build-status-for-commits/
        CommitStatusProvider::Bitbucketserver => (
            format!("{api}/rest/build-status/1.0/commits/{commit}"),
            json!({
                "state": bitbucket_state(status.state),
                "key": status.context,
                "name": status.context,
                "url": bitbucket_url(destination, status),
                "description": description,
            }),
        ),
    };
    PostRequest {
        url,
        headers: authorization(destination),
        body,
    }
}

pub fn authorization(destination: &Destination) -> Vec<(&'static str, String)> {
    use base64::Engine as _;
    let credentials = &destination.credentials;
    if let Some(username) = &credentials.username {
        let pair = format!("{username}:{}", credentials.token);
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        return vec![("authorization", format!("Basic {encoded}"))];
    }
    let token = &credentials.token;
    match destination.provider {
        CommitStatusProvider::Github => vec![
            ("authorization", format!("Bearer {token}")),
            ("accept", "application/vnd.github+json".to_owned()),
            ("x-github-api-version", "2022-11-28".to_owned()),
        ],
        CommitStatusProvider::Gitea | CommitStatusProvider::Forgejo => {
            vec![("authorization", format!("token {token}"))]
        }
        CommitStatusProvider::Gitlab => vec![("private-token", token.clone())],
        CommitStatusProvider::Bitbucket | CommitStatusProvider::Bitbucketserver => {
            vec![("authorization", format!("Bearer {token}"))]
        }
    }
}

fn github_state(state: State) -> &'static str {
    state.name()
}

fn gitlab_state(state: State) -> &'static str {
    match state {
        // The apply runs: GitLab shows `running` as in progress.
        State::Pending => "running",
        State::Success => "success",
        State::Failure => "failed",
        State::Error => "canceled",
    }
}

fn bitbucket_state(state: State) -> &'static str {
    match state {
        State::Pending => "INPROGRESS",
        State::Success => "SUCCESSFUL",
        State::Failure | State::Error => "FAILED",
    }
}

/// Bitbucket requires a link: the spec's, else the repository's page.
fn bitbucket_url(destination: &Destination, status: &Status) -> String {
    status
        .target_url
        .clone()
        .unwrap_or_else(|| match destination.provider {
            CommitStatusProvider::Bitbucket => {
                format!("https://bitbucket.org/{}", destination.repository)
            }
            _ => destination.api.clone(),
        })
}

/// The context when it fits Bitbucket Cloud's key, else a digest of it that does.
fn bitbucket_key(context: &str) -> String {
    use sha2::Digest as _;
    if context.chars().count() <= BITBUCKET_KEY_LIMIT {
        return context.to_owned();
    }
    let digest = sha2::Sha256::digest(context.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    hex[..BITBUCKET_KEY_LIMIT].to_owned()
}

/// `text` cut to `limit` characters, the last one an ellipsis when anything was cut.
pub fn truncate(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// GitLab names a project by its path with every `/` (and anything not unreserved) escaped.
fn encode_path_segment(path: &str) -> String {
    let mut encoded = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

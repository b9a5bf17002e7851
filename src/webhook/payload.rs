//! Turns a verified delivery into the few facts matching needs: which repository, which ref,
//! which commit. Only called after [`super::verify`] accepted the raw body.
//!
//! Payloads are read through JSON pointers rather than full typed models: providers add and
//! rename fields freely, and a missing optional field must not turn a push into an error.

use axum::http::HeaderMap;
use serde_json::Value;

use super::provider::{Provider, first_header, header_text};

/// One updated ref in one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Push {
    /// Every URL form the payload names (clone, ssh, web); matching normalizes them with
    /// [`crate::source::url::RepositoryUrl::cache_key`], so spelling differences do not matter.
    pub repository_urls: Vec<String>,
    /// The full ref name, e.g. `refs/heads/main` or `refs/tags/v1`; `None` when the sender did
    /// not say (matching then triggers every target of the repository but pinned commits).
    pub git_ref: Option<String>,
    /// The commit the ref now points to, when the payload gives it.
    pub commit: Option<String>,
    /// The sender's delivery id, used to drop redeliveries.
    pub delivery_id: Option<String>,
    /// The repository's default branch when the payload states it (GitHub, Gitea, GitLab), so
    /// that targets without a ref are triggered only by pushes to that branch.
    pub default_branch: Option<String>,
}

/// A pull request (GitLab: merge request) opened, reopened or pushed to: what a preview of it
/// needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullRequest {
    /// Every URL form of the target repository the payload names.
    pub repository_urls: Vec<String>,
    /// The number on the host (GitLab: the merge request's `iid`).
    pub number: u64,
    /// The branch it would merge into, without `refs/heads/`.
    pub target_branch: String,
    /// The ref of the target repository that holds its head: `refs/pull/N/head` (GitHub,
    /// Gitea, Forgejo), `refs/merge-requests/N/head` (GitLab), `refs/pull-requests/N/from`
    /// (Bitbucket Server), or the source branch (Bitbucket Cloud, which has no pull refs).
    pub head_ref: String,
    /// The head commit, when the payload gives its full SHA (Bitbucket Cloud gives 12 hex).
    pub head_commit: Option<String>,
    /// Whether its head comes from another repository (a fork).
    pub from_fork: bool,
    /// The sender's delivery id, used to drop redeliveries.
    pub delivery_id: Option<String>,
}

/// What a delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Refs were updated. Bitbucket may report several in one delivery; the others one.
    Push(Vec<Push>),
    /// A pull request's head may have changed: preview it.
    PullRequest(PullRequest),
    /// A connectivity test sent when the hook is created or tested.
    Ping,
    /// Anything that cannot move a ref we follow (issues, merge requests, branch deletion…),
    /// named for logs and the response.
    Ignored(String),
}

/// Why a verified body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The body is not JSON. The parser's message is not kept since it may quote the body.
    #[error("request body is not valid JSON (line {line}, column {column})")]
    InvalidJson {
        /// Where parsing stopped.
        line: usize,
        /// Where parsing stopped.
        column: usize,
    },
    /// A push names no repository URL, so it cannot be matched to anything.
    #[error("push event names no repository URL")]
    NoRepositoryUrl,
}

/// The all-zero object id that providers send as `after` when a ref was deleted.
const DELETED_SHA: &str = "0000000000000000000000000000000000000000";

/// Reads the event kind from the headers and, for pushes, the payload.
pub fn parse_event(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Event, PayloadError> {
    match provider {
        Provider::GitHub => parse_github_like(headers, body, &["x-github-event"], GITHUB_DELIVERY),
        Provider::Gitea | Provider::Forgejo => {
            parse_github_like(headers, body, GITEA_EVENT, GITEA_DELIVERY)
        }
        Provider::GitLab => parse_gitlab(headers, body),
        Provider::Bitbucket => parse_bitbucket(headers, body),
        Provider::Generic => parse_generic(headers, body),
    }
}

const GITHUB_DELIVERY: &[&str] = &["x-github-delivery"];
const GITEA_EVENT: &[&str] = &[
    "x-forgejo-event",
    "x-gitea-event",
    "x-gogs-event",
    "x-github-event",
];
const GITEA_DELIVERY: &[&str] = &[
    "x-forgejo-delivery",
    "x-gitea-delivery",
    "x-gogs-delivery",
    "x-github-delivery",
];
const GITHUB_LIKE_URLS: &[&str] = &[
    "/repository/clone_url",
    "/repository/ssh_url",
    "/repository/html_url",
    "/repository/git_url",
    "/repository/url",
];

/// GitHub, Gitea, Gogs and Forgejo share the push payload shape.
fn parse_github_like(
    headers: &HeaderMap,
    body: &[u8],
    event_headers: &[&str],
    delivery_headers: &[&str],
) -> Result<Event, PayloadError> {
    let kind = first_header(headers, event_headers).unwrap_or("unknown");
    match kind {
        "ping" => Ok(Event::Ping),
        "push" => {
            let json = parse_json(body)?;
            if is_deletion(&json) {
                return Ok(ignored_deletion());
            }
            let push = Push {
                repository_urls: strings_at(&json, GITHUB_LIKE_URLS),
                git_ref: string_at(&json, "/ref"),
                // `head_commit.id` first: for an annotated tag `after` is the tag object.
                commit: string_at(&json, "/head_commit/id").or_else(|| string_at(&json, "/after")),
                delivery_id: first_header(headers, delivery_headers).map(str::to_string),
                default_branch: string_at(&json, "/repository/default_branch")
                    .or_else(|| string_at(&json, "/repository/master_branch")),
            };
            single_push(push)
        }
        "pull_request" | "pull_request_sync" => {
            let json = parse_json(body)?;
            // GitHub says `synchronize`, Gitea and Forgejo `synchronized`.
            let action = string_at(&json, "/action").unwrap_or_default();
            if !["opened", "reopened", "synchronize", "synchronized"].contains(&action.as_str()) {
                let named = format!("pull_request {action}");
                return Ok(Event::Ignored(named.trim_end().to_owned()));
            }
            let number = json.pointer("/number").and_then(Value::as_u64).unwrap_or(0);
            let head_repo = json.pointer("/pull_request/head/repo/id");
            let base_repo = json.pointer("/pull_request/base/repo/id");
            pull_request(PullRequest {
                repository_urls: strings_at(&json, GITHUB_LIKE_URLS),
                number,
                target_branch: string_at(&json, "/pull_request/base/ref").unwrap_or_default(),
                head_ref: format!("refs/pull/{number}/head"),
                head_commit: string_at(&json, "/pull_request/head/sha"),
                from_fork: head_repo.is_none() || head_repo != base_repo,
                delivery_id: first_header(headers, delivery_headers).map(str::to_string),
            })
        }
        other => Ok(Event::Ignored(other.to_string())),
    }
}

/// A pull request needs a repository, a number, a target branch and a full head SHA when one
/// is named; anything less is ignored rather than previewed wrongly.
fn pull_request(request: PullRequest) -> Result<Event, PayloadError> {
    if request.repository_urls.is_empty() {
        return Err(PayloadError::NoRepositoryUrl);
    }
    let commit_ok = request
        .head_commit
        .as_deref()
        .is_none_or(|commit| commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()));
    if request.number == 0 || request.target_branch.is_empty() || !commit_ok {
        return Ok(Event::Ignored(
            "pull request without number, target or head".into(),
        ));
    }
    Ok(Event::PullRequest(request))
}

fn is_deletion(json: &Value) -> bool {
    json.pointer("/deleted").and_then(Value::as_bool) == Some(true)
        || string_at(json, "/after").as_deref() == Some(DELETED_SHA)
}

const GITLAB_URLS: &[&str] = &[
    "/project/git_http_url",
    "/project/git_ssh_url",
    "/project/web_url",
    "/repository/git_http_url",
    "/repository/git_ssh_url",
    "/repository/homepage",
];

/// GitLab: `object_kind` decides; `checkout_sha` is null when the ref was deleted and is the
/// peeled commit for tag pushes (where `after` may be the tag object).
fn parse_gitlab(headers: &HeaderMap, body: &[u8]) -> Result<Event, PayloadError> {
    let json = parse_json(body)?;
    let kind = string_at(&json, "/object_kind")
        .or_else(|| header_text(headers, "x-gitlab-event").map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string());
    if kind == "merge_request" {
        return gitlab_merge_request(headers, &json);
    }
    if kind != "push" && kind != "tag_push" {
        return Ok(Event::Ignored(kind));
    }
    let commit = string_at(&json, "/checkout_sha");
    if commit.is_none() || string_at(&json, "/after").as_deref() == Some(DELETED_SHA) {
        return Ok(ignored_deletion());
    }
    single_push(Push {
        repository_urls: strings_at(&json, GITLAB_URLS),
        git_ref: string_at(&json, "/ref"),
        commit,
        // `webhook-id` first: under Standard Webhooks it is signed, the others never are, so an
        // attacker who replays a signed delivery cannot dodge de-duplication with a fresh
        // `idempotency-key`.
        delivery_id: first_header(
            headers,
            &["webhook-id", "idempotency-key", "x-gitlab-event-uuid"],
        )
        .map(str::to_string),
        default_branch: string_at(&json, "/project/default_branch"),
    })
}

/// GitLab's merge request hook: `open`, `reopen`, and `update` when it carries `oldrev` (new
/// commits; other updates are edits of the title, labels and such).
fn gitlab_merge_request(headers: &HeaderMap, json: &Value) -> Result<Event, PayloadError> {
    let action = string_at(json, "/object_attributes/action").unwrap_or_default();
    let pushed = action == "update" && json.pointer("/object_attributes/oldrev").is_some();
    if !(action == "open" || action == "reopen" || pushed) {
        let named = format!("merge_request {action}");
        return Ok(Event::Ignored(named.trim_end().to_owned()));
    }
    let number = json
        .pointer("/object_attributes/iid")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let source = json.pointer("/object_attributes/source_project_id");
    let target = json.pointer("/object_attributes/target_project_id");
    pull_request(PullRequest {
        repository_urls: strings_at(json, GITLAB_URLS),
        number,
        target_branch: string_at(json, "/object_attributes/target_branch").unwrap_or_default(),
        head_ref: format!("refs/merge-requests/{number}/head"),
        head_commit: string_at(json, "/object_attributes/last_commit/id"),
        from_fork: source.is_none() || source != target,
        delivery_id: first_header(
            headers,
            &["webhook-id", "idempotency-key", "x-gitlab-event-uuid"],
        )
        .map(str::to_string),
    })
}

/// Bitbucket Cloud (`pullrequest:created|updated`) and Server (`pr:opened`,
/// `pr:from_ref_updated`).
fn bitbucket_pull_request(
    kind: &str,
    json: &Value,
    delivery_id: Option<String>,
) -> Result<Event, PayloadError> {
    if kind.starts_with("pullrequest:") {
        let number = json
            .pointer("/pullrequest/id")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let source = string_at(json, "/pullrequest/source/repository/full_name");
        let target = string_at(json, "/pullrequest/destination/repository/full_name");
        let branch = string_at(json, "/pullrequest/source/branch/name").unwrap_or_default();
        return pull_request(PullRequest {
            repository_urls: strings_at(
                json,
                &[
                    "/repository/links/html/href",
                    "/pullrequest/destination/repository/links/html/href",
                ],
            ),
            number,
            target_branch: string_at(json, "/pullrequest/destination/branch/name")
                .unwrap_or_default(),
            head_ref: format!("refs/heads/{branch}"),
            // Cloud names the head by 12 hex only: the source branch's tip is previewed.
            head_commit: string_at(json, "/pullrequest/source/commit/hash")
                .filter(|hash| hash.len() == 40),
            from_fork: source.is_none() || source != target,
            delivery_id,
        });
    }
    let number = json
        .pointer("/pullRequest/id")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let source = json.pointer("/pullRequest/fromRef/repository/id");
    let target = json.pointer("/pullRequest/toRef/repository/id");
    let urls = array_at(json, "/pullRequest/toRef/repository/links/clone")
        .iter()
        .filter_map(|link| string_at(link, "/href"))
        .collect();
    pull_request(PullRequest {
        repository_urls: urls,
        number,
        target_branch: string_at(json, "/pullRequest/toRef/displayId").unwrap_or_default(),
        head_ref: format!("refs/pull-requests/{number}/from"),
        head_commit: string_at(json, "/pullRequest/fromRef/latestCommit"),
        from_fork: source.is_none() || source != target,
        delivery_id,
    })
}

/// Bitbucket Cloud (`repo:push`, changes under `push.changes`) and Server
/// (`repo:refs_changed`, changes at the top level) share the event header.
fn parse_bitbucket(headers: &HeaderMap, body: &[u8]) -> Result<Event, PayloadError> {
    let kind = header_text(headers, "x-event-key").unwrap_or("unknown");
    match kind {
        "diagnostics:ping" => Ok(Event::Ping),
        "repo:push" | "repo:refs_changed" => {
            let json = parse_json(body)?;
            let delivery_id =
                first_header(headers, &["x-request-uuid", "x-request-id"]).map(str::to_string);
            let pushes = if json.pointer("/push/changes").is_some() {
                bitbucket_cloud_pushes(&json, delivery_id)
            } else {
                bitbucket_server_pushes(&json, delivery_id)
            };
            pushes_or_deletion(pushes)
        }
        "pullrequest:created" | "pullrequest:updated" | "pr:opened" | "pr:from_ref_updated" => {
            let json = parse_json(body)?;
            let delivery_id =
                first_header(headers, &["x-request-uuid", "x-request-id"]).map(str::to_string);
            bitbucket_pull_request(kind, &json, delivery_id)
        }
        other => Ok(Event::Ignored(other.to_string())),
    }
}

/// Cloud payloads carry no clone URL; the web link is the https clone URL without `.git`.
fn bitbucket_cloud_pushes(json: &Value, delivery_id: Option<String>) -> Vec<Push> {
    let urls = strings_at(json, &["/repository/links/html/href"]);
    array_at(json, "/push/changes")
        .iter()
        .filter_map(|change| change.get("new").filter(|new| !new.is_null()))
        .filter_map(|new| {
            let ref_prefix = match new.get("type")?.as_str()? {
                "branch" => "refs/heads/",
                "tag" => "refs/tags/",
                _ => return None,
            };
            Some(Push {
                repository_urls: urls.clone(),
                git_ref: Some(format!("{ref_prefix}{}", new.get("name")?.as_str()?)),
                commit: string_at(new, "/target/hash"),
                delivery_id: delivery_id.clone(),
                default_branch: None,
            })
        })
        .collect()
}

fn bitbucket_server_pushes(json: &Value, delivery_id: Option<String>) -> Vec<Push> {
    let urls: Vec<String> = array_at(json, "/repository/links/clone")
        .iter()
        .filter_map(|link| string_at(link, "/href"))
        .collect();
    array_at(json, "/changes")
        .iter()
        .filter(|change| string_at(change, "/type").as_deref() != Some("DELETE"))
        .map(|change| Push {
            repository_urls: urls.clone(),
            git_ref: string_at(change, "/ref/id").or_else(|| string_at(change, "/refId")),
            commit: string_at(change, "/toHash"),
            delivery_id: delivery_id.clone(),
            default_branch: None,
        })
        .collect()
}

/// The generic receiver takes a minimal `{"url", "ref", "commit"}` document, or a GitHub-like
/// push payload for senders that imitate GitHub. Every delivery is treated as a push.
fn parse_generic(headers: &HeaderMap, body: &[u8]) -> Result<Event, PayloadError> {
    let json = parse_json(body)?;
    if is_deletion(&json) {
        return Ok(ignored_deletion());
    }
    let mut repository_urls = strings_at(&json, &["/url", "/repository_url"]);
    if let Some(url) = json.get("repository").and_then(Value::as_str) {
        repository_urls.push(url.to_string());
    }
    repository_urls.extend(strings_at(&json, GITHUB_LIKE_URLS));
    single_push(Push {
        repository_urls,
        git_ref: string_at(&json, "/ref"),
        commit: string_at(&json, "/commit").or_else(|| string_at(&json, "/after")),
        delivery_id: first_header(headers, &["x-delivery-id", "x-request-id", "webhook-id"])
            .map(str::to_string),
        default_branch: string_at(&json, "/default_branch")
            .or_else(|| string_at(&json, "/repository/default_branch")),
    })
}

fn single_push(push: Push) -> Result<Event, PayloadError> {
    if push.repository_urls.is_empty() {
        return Err(PayloadError::NoRepositoryUrl);
    }
    Ok(Event::Push(vec![push]))
}

/// A Bitbucket delivery whose every change is a deletion triggers nothing.
fn pushes_or_deletion(pushes: Vec<Push>) -> Result<Event, PayloadError> {
    if pushes.is_empty() {
        return Ok(ignored_deletion());
    }
    if pushes.iter().any(|push| push.repository_urls.is_empty()) {
        return Err(PayloadError::NoRepositoryUrl);
    }
    Ok(Event::Push(pushes))
}

fn ignored_deletion() -> Event {
    Event::Ignored("ref deletion".to_string())
}

fn parse_json(body: &[u8]) -> Result<Value, PayloadError> {
    serde_json::from_slice(body).map_err(|error| PayloadError::InvalidJson {
        line: error.line(),
        column: error.column(),
    })
}

/// A non-empty string at a JSON pointer.
fn string_at(json: &Value, pointer: &str) -> Option<String> {
    json.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_string)
}

/// Every non-empty string found at the given pointers, duplicates removed, in pointer order.
fn strings_at(json: &Value, pointers: &[&str]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for value in pointers
        .iter()
        .filter_map(|pointer| string_at(json, pointer))
    {
        if !found.contains(&value) {
            found.push(value);
        }
    }
    found
}

fn array_at<'a>(json: &'a Value, pointer: &str) -> &'a [Value] {
    json.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn parse(provider: Provider, pairs: &[(&'static str, &str)], body: &Value) -> Event {
        parse_event(provider, &headers(pairs), body.to_string().as_bytes()).unwrap()
    }

    fn only_push(event: Event) -> Push {
        match event {
            Event::Push(mut pushes) if pushes.len() == 1 => pushes.remove(0),
            other => panic!("expected one push, got {other:?}"),
        }
    }

    fn github_push() -> Value {
        json!({
            "ref": "refs/heads/main",
            "before": SHA,
            "after": SHA,
            "deleted": false,
            "head_commit": {"id": SHA},
            "repository": {
                "full_name": "org/repo",
                "clone_url": "https://github.com/org/repo.git",
                "ssh_url": "git@github.com:org/repo.git",
                "html_url": "https://github.com/org/repo",
                "default_branch": "main"
            }
        })
    }

    #[test]
    fn github_push_yields_urls_ref_commit_delivery_and_default_branch() {
        let push = only_push(parse(
            Provider::GitHub,
            &[("x-github-event", "push"), ("x-github-delivery", "d-1")],
            &github_push(),
        ));
        assert_eq!(
            push,
            Push {
                repository_urls: vec![
                    "https://github.com/org/repo.git".to_string(),
                    "git@github.com:org/repo.git".to_string(),
                    "https://github.com/org/repo".to_string(),
                ],
                git_ref: Some("refs/heads/main".to_string()),
                commit: Some(SHA.to_string()),
                delivery_id: Some("d-1".to_string()),
                default_branch: Some("main".to_string()),
            }
        );
    }

    #[test]
    fn github_ping_other_events_and_deletions() {
        let ping = parse(Provider::GitHub, &[("x-github-event", "ping")], &json!({}));
        assert_eq!(ping, Event::Ping);
        let issue = parse(
            Provider::GitHub,
            &[("x-github-event", "issues")],
            &json!({}),
        );
        assert_eq!(issue, Event::Ignored("issues".to_string()));
        let mut deleted = github_push();
        deleted["after"] = json!(DELETED_SHA);
        deleted["deleted"] = json!(true);
        let event = parse(Provider::GitHub, &[("x-github-event", "push")], &deleted);
        assert_eq!(event, Event::Ignored("ref deletion".to_string()));
    }

    #[test]
    fn github_annotated_tag_push_reports_the_commit_not_the_tag_object() {
        let mut body = github_push();
        body["ref"] = json!("refs/tags/v1.0.0");
        body["after"] = json!("fedcba9876543210fedcba9876543210fedcba98");
        let push = only_push(parse(
            Provider::GitHub,
            &[("x-github-event", "push")],
            &body,
        ));
        assert_eq!(push.commit.as_deref(), Some(SHA));
        assert_eq!(push.git_ref.as_deref(), Some("refs/tags/v1.0.0"));
    }

    #[test]
    fn invalid_json_is_an_error_without_body_text() {
        let error = parse_event(
            Provider::GitHub,
            &headers(&[("x-github-event", "push")]),
            b"{\"ref\": secret-looking",
        )
        .unwrap_err();
        assert!(matches!(error, PayloadError::InvalidJson { .. }));
        assert!(!error.to_string().contains("secret"));
    }

    #[test]
    fn push_without_repository_is_an_error() {
        let error = parse_event(
            Provider::GitHub,
            &headers(&[("x-github-event", "push")]),
            br#"{"ref": "refs/heads/main"}"#,
        )
        .unwrap_err();
        assert_eq!(error, PayloadError::NoRepositoryUrl);
    }

    #[test]
    fn gitea_and_forgejo_use_their_own_event_and_delivery_headers() {
        let forgejo = only_push(parse(
            Provider::Forgejo,
            &[
                ("x-forgejo-event", "push"),
                ("x-forgejo-delivery", "f-1"),
                ("x-github-event", "push"),
                ("x-github-delivery", "gh-1"),
            ],
            &github_push(),
        ));
        assert_eq!(forgejo.delivery_id.as_deref(), Some("f-1"));
        let gitea = parse(Provider::Gitea, &[("x-gitea-event", "create")], &json!({}));
        assert_eq!(gitea, Event::Ignored("create".to_string()));
    }

    fn gitlab_push(kind: &str, reference: &str) -> Value {
        json!({
            "object_kind": kind,
            "ref": reference,
            "before": SHA,
            "after": "fedcba9876543210fedcba9876543210fedcba98",
            "checkout_sha": SHA,
            "project": {
                "git_http_url": "https://gitlab.example.com/group/repo.git",
                "git_ssh_url": "git@gitlab.example.com:group/repo.git",
                "web_url": "https://gitlab.example.com/group/repo",
                "default_branch": "main"
            }
        })
    }

    #[test]
    fn gitlab_signed_webhook_id_wins_over_an_unsigned_idempotency_key() {
        let push = only_push(parse(
            Provider::GitLab,
            &[
                ("x-gitlab-event", "Push Hook"),
                ("idempotency-key", "unsigned-1"),
                ("webhook-id", "msg_signed"),
            ],
            &gitlab_push("push", "refs/heads/main"),
        ));
        assert_eq!(push.delivery_id.as_deref(), Some("msg_signed"));
    }

    #[test]
    fn gitlab_tag_push_uses_checkout_sha_and_idempotency_key() {
        let push = only_push(parse(
            Provider::GitLab,
            &[
                ("x-gitlab-event", "Tag Push Hook"),
                ("idempotency-key", "idem-1"),
                ("x-gitlab-event-uuid", "uuid-1"),
            ],
            &gitlab_push("tag_push", "refs/tags/v1.2.0"),
        ));
        assert_eq!(push.git_ref.as_deref(), Some("refs/tags/v1.2.0"));
        assert_eq!(push.commit.as_deref(), Some(SHA));
        assert_eq!(push.delivery_id.as_deref(), Some("idem-1"));
        assert_eq!(push.repository_urls.len(), 3);
        assert_eq!(push.default_branch.as_deref(), Some("main"));
    }

    #[test]
    fn gitlab_deletion_and_other_kinds_are_ignored() {
        let mut deleted = gitlab_push("push", "refs/heads/old");
        deleted["checkout_sha"] = Value::Null;
        let event = parse(
            Provider::GitLab,
            &[("x-gitlab-event", "Push Hook")],
            &deleted,
        );
        assert_eq!(event, Event::Ignored("ref deletion".to_string()));
        let merge = parse(
            Provider::GitLab,
            &[("x-gitlab-event", "Merge Request Hook")],
            &json!({"object_kind": "merge_request"}),
        );
        assert_eq!(merge, Event::Ignored("merge_request".to_string()));
    }

    #[test]
    fn bitbucket_cloud_derives_url_from_html_link_and_skips_deleted_refs() {
        let body = json!({
            "repository": {
                "full_name": "team/repo",
                "links": {"html": {"href": "https://bitbucket.org/team/repo"}}
            },
            "push": {"changes": [
                {"new": {"type": "branch", "name": "main", "target": {"hash": SHA}}},
                {"new": {"type": "tag", "name": "v2", "target": {"hash": SHA}}},
                {"new": null, "old": {"type": "branch", "name": "gone"}}
            ]}
        });
        let event = parse(
            Provider::Bitbucket,
            &[("x-event-key", "repo:push"), ("x-request-uuid", "b-1")],
            &body,
        );
        let Event::Push(pushes) = event else {
            panic!("expected pushes, got {event:?}")
        };
        let refs: Vec<_> = pushes.iter().map(|p| p.git_ref.as_deref()).collect();
        assert_eq!(refs, [Some("refs/heads/main"), Some("refs/tags/v2")]);
        assert_eq!(
            pushes[0].repository_urls,
            ["https://bitbucket.org/team/repo"]
        );
        assert_eq!(pushes[1].commit.as_deref(), Some(SHA));
        assert_eq!(pushes[1].delivery_id.as_deref(), Some("b-1"));
    }

    #[test]
    fn bitbucket_server_reads_clone_links_and_change_refs() {
        let body = json!({
            "repository": {"links": {"clone": [
                {"href": "ssh://git@bitbucket.example.com:7999/proj/repo.git", "name": "ssh"},
                {"href": "https://bitbucket.example.com/scm/proj/repo.git", "name": "http"}
            ]}},
            "changes": [
                {"ref": {"id": "refs/heads/main"}, "toHash": SHA, "type": "UPDATE"},
                {"ref": {"id": "refs/heads/old"}, "toHash": DELETED_SHA, "type": "DELETE"}
            ]
        });
        let push = only_push(parse(
            Provider::Bitbucket,
            &[
                ("x-event-key", "repo:refs_changed"),
                ("x-request-id", "s-1"),
            ],
            &body,
        ));
        assert_eq!(push.repository_urls.len(), 2);
        assert_eq!(push.git_ref.as_deref(), Some("refs/heads/main"));
        assert_eq!(push.commit.as_deref(), Some(SHA));
        assert_eq!(push.delivery_id.as_deref(), Some("s-1"));
    }

    #[test]
    fn bitbucket_ping_and_other_events() {
        let ping = parse(
            Provider::Bitbucket,
            &[("x-event-key", "diagnostics:ping")],
            &json!({}),
        );
        assert_eq!(ping, Event::Ping);
        let pr = parse(
            Provider::Bitbucket,
            &[("x-event-key", "pullrequest:fulfilled")],
            &json!({}),
        );
        assert_eq!(pr, Event::Ignored("pullrequest:fulfilled".to_string()));
    }

    fn pull_request_of(event: Event) -> PullRequest {
        match event {
            Event::PullRequest(pull) => pull,
            other => panic!("expected a pull request, got {other:?}"),
        }
    }

    /// https://docs.github.com/en/webhooks/webhook-events-and-payloads#pull_request (Gitea
    /// sends the same shape with `synchronized`).
    fn github_pull_request(action: &str, head_repo: u64) -> Value {
        json!({
            "action": action,
            "number": 7,
            "pull_request": {
                "head": { "sha": SHA, "ref": "feature", "repo": { "id": head_repo } },
                "base": { "ref": "main", "repo": { "id": 1 } }
            },
            "repository": { "clone_url": "https://github.com/org/app.git", "id": 1 }
        })
    }

    #[test]
    fn github_and_gitea_pull_requests_name_their_pull_ref_head_and_target() {
        for (provider, header, action) in [
            (Provider::GitHub, "x-github-event", "synchronize"),
            (Provider::Gitea, "x-gitea-event", "synchronized"),
            (Provider::Gitea, "x-gitea-event", "opened"),
        ] {
            let body = github_pull_request(action, 1);
            let pull = pull_request_of(parse(provider, &[(header, "pull_request")], &body));
            assert_eq!(pull.number, 7);
            assert_eq!(pull.target_branch, "main");
            assert_eq!(pull.head_ref, "refs/pull/7/head");
            assert_eq!(pull.head_commit.as_deref(), Some(SHA));
            assert!(!pull.from_fork);
            assert_eq!(pull.repository_urls, ["https://github.com/org/app.git"]);
        }
        let fork = github_pull_request("opened", 99);
        let pull = parse(
            Provider::GitHub,
            &[("x-github-event", "pull_request")],
            &fork,
        );
        assert!(pull_request_of(pull).from_fork);
        let closed = github_pull_request("closed", 1);
        let event = parse(
            Provider::GitHub,
            &[("x-github-event", "pull_request")],
            &closed,
        );
        assert_eq!(event, Event::Ignored("pull_request closed".to_string()));
    }

    /// https://docs.gitlab.com/user/project/integrations/webhook_events/#merge-request-events
    #[test]
    fn gitlab_merge_requests_are_previewed_on_open_and_on_new_commits_only() {
        let body = |action: &str, oldrev: bool| {
            let mut body = json!({
                "object_kind": "merge_request",
                "project": { "git_http_url": "https://gitlab.com/group/app.git" },
                "object_attributes": {
                    "iid": 3, "action": action, "target_branch": "main",
                    "source_project_id": 5, "target_project_id": 5,
                    "last_commit": { "id": SHA }
                }
            });
            if oldrev {
                body["object_attributes"]["oldrev"] = json!(SHA);
            }
            body
        };
        let headers = [("x-gitlab-event", "Merge Request Hook")];
        let pull = pull_request_of(parse(Provider::GitLab, &headers, &body("update", true)));
        assert_eq!(pull.head_ref, "refs/merge-requests/3/head");
        assert_eq!(pull.number, 3);
        assert_eq!(pull.head_commit.as_deref(), Some(SHA));
        assert!(!pull.from_fork);
        assert_eq!(
            parse(Provider::GitLab, &headers, &body("update", false)),
            Event::Ignored("merge_request update".to_string())
        );
        assert!(matches!(
            parse(Provider::GitLab, &headers, &body("open", false)),
            Event::PullRequest(_)
        ));
    }

    /// https://support.atlassian.com/bitbucket-cloud/docs/event-payloads/#Pull-request-events
    /// and https://confluence.atlassian.com/bitbucketserver/event-payload-938025882.html
    #[test]
    fn bitbucket_pull_requests_of_cloud_and_server() {
        let cloud = json!({
            "repository": { "links": { "html": { "href": "https://bitbucket.org/team/app" } } },
            "pullrequest": {
                "id": 4,
                "source": { "branch": { "name": "feature" }, "commit": { "hash": "0123456789ab" },
                            "repository": { "full_name": "team/app" } },
                "destination": { "branch": { "name": "main" },
                                 "repository": { "full_name": "team/app" } }
            }
        });
        let event = parse(
            Provider::Bitbucket,
            &[("x-event-key", "pullrequest:updated")],
            &cloud,
        );
        let pull = pull_request_of(event);
        assert_eq!(pull.head_ref, "refs/heads/feature");
        assert_eq!(pull.head_commit, None, "a short hash is no pin");
        assert_eq!(pull.target_branch, "main");
        assert!(!pull.from_fork);
        let server = json!({
            "pullRequest": {
                "id": 9,
                "fromRef": { "latestCommit": SHA, "repository": { "id": 2 } },
                "toRef": { "displayId": "main", "repository": { "id": 1,
                    "links": { "clone": [ { "href": "https://bb.example.com/scm/prj/app.git" } ] } } }
            }
        });
        let event = parse(
            Provider::Bitbucket,
            &[("x-event-key", "pr:from_ref_updated")],
            &server,
        );
        let pull = pull_request_of(event);
        assert_eq!(pull.head_ref, "refs/pull-requests/9/from");
        assert_eq!(pull.head_commit.as_deref(), Some(SHA));
        assert!(pull.from_fork);
    }

    #[test]
    fn generic_accepts_minimal_document() {
        let push = only_push(parse(
            Provider::Generic,
            &[("x-delivery-id", "g-1")],
            &json!({"url": "https://git.example.com/a/b.git", "ref": "refs/heads/dev", "commit": SHA}),
        ));
        assert_eq!(push.repository_urls, ["https://git.example.com/a/b.git"]);
        assert_eq!(push.git_ref.as_deref(), Some("refs/heads/dev"));
        assert_eq!(push.commit.as_deref(), Some(SHA));
        assert_eq!(push.delivery_id.as_deref(), Some("g-1"));
    }
}

//! The hosts' pull request comment APIs: list the comments (to find the marked one), create
//! one, edit one in place. Built without I/O so that each host's format is checked field by
//! field in tests; sent with [`crate::commit_status::StatusClient::send`].

use hyper::Method;
use serde_json::{Value, json};

use crate::{
    api::CommitStatusProvider,
    commit_status::{Destination, PostRequest, authorization},
};

/// A comment already on the pull request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    pub id: String,
    /// Bitbucket Server edits only the version it was shown.
    pub version: Option<i64>,
}

/// One request to send.
#[derive(Debug, PartialEq, Eq)]
pub struct CommentRequest {
    pub method: Method,
    pub request: PostRequest,
}

/// The longest comment each host takes, in characters.
pub fn comment_limit(provider: CommitStatusProvider) -> usize {
    match provider {
        // GitHub refuses bodies over 65,536 characters.
        CommitStatusProvider::Github => 65_536,
        // Gitea and Forgejo store a TEXT column; kept at GitHub's size to stay readable.
        CommitStatusProvider::Gitea | CommitStatusProvider::Forgejo => 65_536,
        // GitLab notes take up to 1,000,000 characters.
        CommitStatusProvider::Gitlab => 1_000_000,
        // Bitbucket's limits are not documented; 32,768 is what its UI accepts.
        CommitStatusProvider::Bitbucket | CommitStatusProvider::Bitbucketserver => 32_768,
    }
}

/// The request that lists the pull request's comments (the first 100; the marked comment is
/// created at the first push, so it is among the first).
pub fn list_comments(destination: &Destination, number: u64) -> CommentRequest {
    let url = match destination.provider {
        // https://docs.github.com/en/rest/issues/comments#list-issue-comments
        CommitStatusProvider::Github => {
            format!("{}?per_page=100", issue_comments(destination, number))
        }
        // Gitea: GET /repos/{owner}/{repo}/issues/{index}/comments
        CommitStatusProvider::Gitea | CommitStatusProvider::Forgejo => {
            issue_comments(destination, number)
        }
        // https://docs.gitlab.com/api/notes/#list-all-merge-request-notes
        CommitStatusProvider::Gitlab => format!(
            "{}?per_page=100&sort=asc",
            gitlab_notes(destination, number)
        ),
        // https://developer.atlassian.com/cloud/bitbucket/rest/api-group-pullrequests/#api-repositories-workspace-repo-slug-pullrequests-pull-request-id-comments-get
        CommitStatusProvider::Bitbucket => {
            format!("{}?pagelen=100", bitbucket_comments(destination, number))
        }
        // Bitbucket Server lists comments as activities of the pull request.
        CommitStatusProvider::Bitbucketserver => format!(
            "{}/activities?limit=100",
            bitbucket_server_pull_request(destination, number)
        ),
    };
    CommentRequest {
        method: Method::GET,
        request: PostRequest {
            url,
            headers: authorization(destination),
            body: Value::Null,
        },
    }
}

/// The comment of the listing whose text holds `marker`.
pub fn find_marked(
    provider: CommitStatusProvider,
    listing: &Value,
    marker: &str,
) -> Option<Comment> {
    let id_of = |value: &Value| match value {
        Value::Number(number) => Some(number.to_string()),
        Value::String(text) => Some(text.clone()),
        _ => None,
    };
    let (items, text_at, comment_at): (&[Value], &str, &str) = match provider {
        CommitStatusProvider::Github
        | CommitStatusProvider::Gitea
        | CommitStatusProvider::Forgejo
        | CommitStatusProvider::Gitlab => (listing.as_array()?.as_slice(), "/body", ""),
        CommitStatusProvider::Bitbucket => (
            listing.get("values")?.as_array()?.as_slice(),
            "/content/raw",
            "",
        ),
        CommitStatusProvider::Bitbucketserver => (
            listing.get("values")?.as_array()?.as_slice(),
            "/comment/text",
            "/comment",
        ),
    };
    items.iter().find_map(|item| {
        let text = item.pointer(text_at)?.as_str()?;
        if !text.contains(marker) {
            return None;
        }
        let comment = if comment_at.is_empty() {
            item
        } else {
            item.pointer(comment_at)?
        };
        Some(Comment {
            id: id_of(comment.get("id")?)?,
            version: comment.get("version").and_then(Value::as_i64),
        })
    })
}

/// The request that creates a comment with `body`.
pub fn create_comment(destination: &Destination, number: u64, body: &str) -> CommentRequest {
    let (url, payload) = match destination.provider {
        // https://docs.github.com/en/rest/issues/comments#create-an-issue-comment
        CommitStatusProvider::Github
        | CommitStatusProvider::Gitea
        | CommitStatusProvider::Forgejo => {
            (issue_comments(destination, number), json!({ "body": body }))
        }
        // https://docs.gitlab.com/api/notes/#create-new-merge-request-note
        CommitStatusProvider::Gitlab => {
            (gitlab_notes(destination, number), json!({ "body": body }))
        }
        // https://developer.atlassian.com/cloud/bitbucket/rest/api-group-pullrequests/#api-repositories-workspace-repo-slug-pullrequests-pull-request-id-comments-post
        CommitStatusProvider::Bitbucket => (
            bitbucket_comments(destination, number),
            json!({ "content": { "raw": body } }),
        ),
        // https://developer.atlassian.com/server/bitbucket/rest/v819/api-group-pull-requests/#api-api-latest-projects-projectkey-repos-repositoryslug-pull-requests-pullrequestid-comments-post
        CommitStatusProvider::Bitbucketserver => (
            format!(
                "{}/comments",
                bitbucket_server_pull_request(destination, number)
            ),
            json!({ "text": body }),
        ),
    };
    CommentRequest {
        method: Method::POST,
        request: PostRequest {
            url,
            headers: authorization(destination),
            body: payload,
        },
    }
}

/// The request that replaces the text of `comment` with `body`.
pub fn update_comment(
    destination: &Destination,
    number: u64,
    comment: &Comment,
    body: &str,
) -> CommentRequest {
    let api = destination.api.trim_end_matches('/');
    let repository = &destination.repository;
    let id = &comment.id;
    let (method, url, payload) = match destination.provider {
        // https://docs.github.com/en/rest/issues/comments#update-an-issue-comment
        CommitStatusProvider::Github => (
            Method::PATCH,
            format!("{api}/repos/{repository}/issues/comments/{id}"),
            json!({ "body": body }),
        ),
        // Gitea: PATCH /repos/{owner}/{repo}/issues/comments/{id}
        CommitStatusProvider::Gitea | CommitStatusProvider::Forgejo => (
            Method::PATCH,
            format!("{api}/api/v1/repos/{repository}/issues/comments/{id}"),
            json!({ "body": body }),
        ),
        // https://docs.gitlab.com/api/notes/#modify-existing-merge-request-note
        CommitStatusProvider::Gitlab => (
            Method::PUT,
            format!("{}/{id}", gitlab_notes(destination, number)),
            json!({ "body": body }),
        ),
        CommitStatusProvider::Bitbucket => (
            Method::PUT,
            format!("{}/{id}", bitbucket_comments(destination, number)),
            json!({ "content": { "raw": body } }),
        ),
        CommitStatusProvider::Bitbucketserver => (
            Method::PUT,
            format!(
                "{}/comments/{id}",
                bitbucket_server_pull_request(destination, number)
            ),
            json!({ "text": body, "version": comment.version.unwrap_or(0) }),
        ),
    };
    CommentRequest {
        method,
        request: PostRequest {
            url,
            headers: authorization(destination),
            body: payload,
        },
    }
}

fn issue_comments(destination: &Destination, number: u64) -> String {
    let api = destination.api.trim_end_matches('/');
    let prefix = match destination.provider {
        CommitStatusProvider::Github => "",
        _ => "/api/v1",
    };
    format!(
        "{api}{prefix}/repos/{}/issues/{number}/comments",
        destination.repository
    )
}

fn gitlab_notes(destination: &Destination, number: u64) -> String {
    let api = destination.api.trim_end_matches('/');
    let project = destination.repository.replace('/', "%2F");
    format!("{api}/api/v4/projects/{project}/merge_requests/{number}/notes")
}

fn bitbucket_comments(destination: &Destination, number: u64) -> String {
    let api = destination.api.trim_end_matches('/');
    format!(
        "{api}/2.0/repositories/{}/pullrequests/{number}/comments",
        destination.repository
    )
}

/// Bitbucket Server names a repository `PROJECT/slug` (its clone path `scm/PROJECT/slug`).
fn bitbucket_server_pull_request(destination: &Destination, number: u64) -> String {
    let api = destination.api.trim_end_matches('/');
    let path = destination.repository.trim_start_matches("scm/");
    let (project, slug) = path.rsplit_once('/').unwrap_or(("", path));
    format!("{api}/rest/api/1.0/projects/{project}/repos/{slug}/pull-requests/{number}")
}

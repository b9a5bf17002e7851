//! Commit statuses on the Git host. Against a real Gitea (built like the control plane, see
//! tests/support/gitea.rs): a push through Gitea reaches the controller by Gitea's own webhook
//! delivery and is applied without polling, and its commit gets `pending` then `success`, read
//! back from Gitea's API; a broken commit gets `failure` with the reason; a resync posts
//! nothing; a token the host refuses leaves an Event and the object Ready. Against a recording
//! server: the request of every other provider, field by field, as each host documents it; the
//! retries; and the rule that keeps a tenant's token on its repository's host.

use crate::support;

use std::time::Duration;

use driftless::{
    api::{CommitStatusProvider, GitRepository},
    commit_status::{
        Credentials, Destination, RetryPolicy, State, Status, StatusClient, post_request,
    },
};
use serde_json::{Value, json};
use support::{
    cluster::{TestNamespace, install_crds},
    gitea::{Gitea, GiteaReceiver},
    objects::*,
    recorder::{Answer, Recorder},
    replica::*,
    waiting::*,
};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const HOOK_SECRET: &str = "gitea push hook secret";
/// Long enough that only a webhook brings a new commit in during a test.
const HOURLY: &str = "1h";
const WEBHOOK_DEADLINE: Duration = Duration::from_secs(30);

fn destination(provider: CommitStatusProvider, api: &str, repository: &str) -> Destination {
    Destination {
        provider,
        api: api.to_owned(),
        repository: repository.to_owned(),
        credentials: Credentials {
            username: None,
            token: "the-token".to_owned(),
        },
    }
}

fn status(state: State, description: &str) -> Status {
    Status {
        commit: SHA.to_owned(),
        state,
        context: "driftless/team-a/app".to_owned(),
        description: description.to_owned(),
        target_url: Some("https://dash.example.com/app".to_owned()),
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        first_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
    }
}

/// Sends `status` to a fresh recording server as `provider` and returns what it received.
async fn recorded(
    provider: CommitStatusProvider,
    repository: &str,
    status: &Status,
) -> support::recorder::Recorded {
    let recorder = Recorder::start();
    let target = destination(provider, &recorder.url(), repository);
    StatusClient::new(fast_retries())
        .post(&post_request(&target, status))
        .await
        .expect("the recording server takes the status");
    recorder.requests().remove(0)
}

// https://docs.github.com/en/rest/commits/statuses#create-a-commit-status
// POST /repos/{owner}/{repo}/statuses/{sha}; state error|failure|pending|success, target_url,
// description (GitHub refuses more than 140 characters), context; a token as Bearer.
#[tokio::test]
async fn github_gets_its_documented_request() {
    let long = "x".repeat(300);
    let got = recorded(
        CommitStatusProvider::Github,
        "org/app",
        &status(State::Failure, &long),
    )
    .await;
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, format!("/repos/org/app/statuses/{SHA}"));
    assert_eq!(got.header("authorization"), Some("Bearer the-token"));
    assert_eq!(got.header("accept"), Some("application/vnd.github+json"));
    assert!(
        got.header("user-agent")
            .is_some_and(|a| a.starts_with("driftless/"))
    );
    let body = got.json();
    assert_eq!(body["state"], "failure");
    assert_eq!(body["context"], "driftless/team-a/app");
    assert_eq!(body["target_url"], "https://dash.example.com/app");
    let description = body["description"].as_str().unwrap();
    assert_eq!(description.chars().count(), 140, "{description}");
    assert!(description.ends_with('…'));
    assert_eq!(
        object_keys(&body),
        ["context", "description", "state", "target_url"]
    );
    for (state, expected) in [
        (State::Pending, "pending"),
        (State::Success, "success"),
        (State::Error, "error"),
    ] {
        let got = recorded(CommitStatusProvider::Github, "org/app", &status(state, "d")).await;
        assert_eq!(got.json()["state"], expected);
    }
}

// https://docs.gitlab.com/api/commits/#set-the-pipeline-status-of-a-commit
// POST /projects/:id/statuses/:sha with the project's URL-encoded path as :id; state
// pending|running|success|failed|canceled, name, target_url, description; PRIVATE-TOKEN.
#[tokio::test]
async fn gitlab_gets_its_documented_request() {
    let got = recorded(
        CommitStatusProvider::Gitlab,
        "group/sub/app",
        &status(State::Pending, "applying"),
    )
    .await;
    assert_eq!(got.method, "POST");
    assert_eq!(
        got.path,
        format!("/api/v4/projects/group%2Fsub%2Fapp/statuses/{SHA}")
    );
    assert_eq!(got.header("private-token"), Some("the-token"));
    assert_eq!(got.header("authorization"), None);
    let body = got.json();
    assert_eq!(body["state"], "running");
    assert_eq!(body["name"], "driftless/team-a/app");
    assert_eq!(body["target_url"], "https://dash.example.com/app");
    assert_eq!(body["description"], "applying");
    assert_eq!(
        object_keys(&body),
        ["description", "name", "state", "target_url"]
    );
    for (state, expected) in [
        (State::Success, "success"),
        (State::Failure, "failed"),
        (State::Error, "canceled"),
    ] {
        let got = recorded(CommitStatusProvider::Gitlab, "g/a", &status(state, "d")).await;
        assert_eq!(got.json()["state"], expected);
    }
    let long = recorded(
        CommitStatusProvider::Gitlab,
        "g/a",
        &status(State::Failure, &"y".repeat(400)),
    )
    .await;
    assert_eq!(
        long.json()["description"].as_str().unwrap().chars().count(),
        255
    );
}

// https://developer.atlassian.com/cloud/bitbucket/rest/api-group-commit-statuses/
// POST /2.0/repositories/{workspace}/{repo_slug}/commit/{commit}/statuses/build; key, state
// INPROGRESS|SUCCESSFUL|FAILED|STOPPED, url (required), name, description.
#[tokio::test]
async fn bitbucket_cloud_gets_its_documented_request() {
    let got = recorded(
        CommitStatusProvider::Bitbucket,
        "team/app",
        &status(State::Success, "applied"),
    )
    .await;
    assert_eq!(got.method, "POST");
    assert_eq!(
        got.path,
        format!("/2.0/repositories/team/app/commit/{SHA}/statuses/build")
    );
    assert_eq!(got.header("authorization"), Some("Bearer the-token"));
    let body = got.json();
    assert_eq!(body["state"], "SUCCESSFUL");
    assert_eq!(body["key"], "driftless/team-a/app");
    assert_eq!(body["name"], "driftless/team-a/app");
    assert_eq!(body["url"], "https://dash.example.com/app");
    assert_eq!(body["description"], "applied");
    assert_eq!(
        object_keys(&body),
        ["description", "key", "name", "state", "url"]
    );
    // The url is required: the repository's page when the spec sets no link.
    let mut unlinked = status(State::Pending, "applying");
    unlinked.target_url = None;
    unlinked.context = "driftless/a-namespace-with-a-long-name/and-a-long-object-name".into();
    let got = recorded(CommitStatusProvider::Bitbucket, "team/app", &unlinked).await;
    let body = got.json();
    assert_eq!(body["state"], "INPROGRESS");
    assert_eq!(body["url"], "https://bitbucket.org/team/app");
    // Keys are at most 40 characters: a long context is keyed by its digest.
    assert_eq!(body["key"].as_str().unwrap().len(), 40);
    assert_eq!(body["name"], unlinked.context.as_str());
    // An app password goes as basic auth.
    let recorder = Recorder::start();
    let mut target = destination(CommitStatusProvider::Bitbucket, &recorder.url(), "team/app");
    target.credentials.username = Some("jdoe".into());
    StatusClient::new(fast_retries())
        .post(&post_request(&target, &status(State::Failure, "broken")))
        .await
        .unwrap();
    let got = recorder.requests().remove(0);
    assert_eq!(
        got.header("authorization"),
        Some("Basic amRvZTp0aGUtdG9rZW4=")
    );
    assert_eq!(got.json()["state"], "FAILED");
}

// https://developer.atlassian.com/server/bitbucket/how-tos/updating-build-status-for-commits/
// POST /rest/build-status/1.0/commits/{commitId}; state INPROGRESS|SUCCESSFUL|FAILED, key and
// url required, name and description optional; an HTTP access token as Bearer.
#[tokio::test]
async fn bitbucket_server_gets_its_documented_request() {
    let got = recorded(
        CommitStatusProvider::Bitbucketserver,
        "scm/proj/app",
        &status(State::Failure, "broken"),
    )
    .await;
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, format!("/rest/build-status/1.0/commits/{SHA}"));
    assert_eq!(got.header("authorization"), Some("Bearer the-token"));
    assert_eq!(got.header("content-type"), Some("application/json"));
    let body = got.json();
    assert_eq!(body["state"], "FAILED");
    assert_eq!(body["key"], "driftless/team-a/app");
    assert_eq!(body["name"], "driftless/team-a/app");
    assert_eq!(body["url"], "https://dash.example.com/app");
    assert_eq!(body["description"], "broken");
    assert_eq!(
        object_keys(&body),
        ["description", "key", "name", "state", "url"]
    );
}

// Gitea's API (https://gitea.com/api/swagger#/repository/repoCreateStatus): GitHub's body under
// /api/v1, a token as `token <token>`. Forgejo serves the same.
#[tokio::test]
async fn gitea_and_forgejo_get_their_documented_request() {
    for provider in [CommitStatusProvider::Gitea, CommitStatusProvider::Forgejo] {
        let got = recorded(provider, "owner/app", &status(State::Pending, "applying")).await;
        assert_eq!(got.path, format!("/api/v1/repos/owner/app/statuses/{SHA}"));
        assert_eq!(got.header("authorization"), Some("token the-token"));
        let body = got.json();
        assert_eq!(body["state"], "pending");
        assert_eq!(body["context"], "driftless/team-a/app");
        assert_eq!(body["description"], "applying");
        assert_eq!(body["target_url"], "https://dash.example.com/app");
    }
}

fn object_keys(body: &Value) -> Vec<String> {
    let mut keys: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

/// 5xx and 429 are retried, honouring Retry-After; another 4xx is not; retries are bounded.
#[tokio::test]
async fn retries_are_bounded_and_honour_retry_after() {
    let recorder = Recorder::answering(vec![
        Answer {
            status: 429,
            headers: vec![("Retry-After", "1".to_owned())],
        },
        Answer::status(502),
        Answer::status(201),
    ]);
    let target = destination(CommitStatusProvider::Github, &recorder.url(), "org/app");
    let started = std::time::Instant::now();
    StatusClient::new(fast_retries())
        .post(&post_request(&target, &status(State::Success, "ok")))
        .await
        .expect("the third attempt passes");
    assert_eq!(recorder.requests().len(), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured"
    );

    let down = Recorder::answering(vec![Answer::status(503)]);
    let target = destination(CommitStatusProvider::Github, &down.url(), "org/app");
    let error = StatusClient::new(fast_retries())
        .post(&post_request(&target, &status(State::Success, "ok")))
        .await
        .unwrap_err();
    assert_eq!(down.requests().len(), 3, "{error}");

    let refused = Recorder::answering(vec![Answer::status(401)]);
    let target = destination(CommitStatusProvider::Github, &refused.url(), "org/app");
    let error = StatusClient::new(fast_retries())
        .post(&post_request(&target, &status(State::Success, "ok")))
        .await
        .unwrap_err();
    assert_eq!(refused.requests().len(), 1, "{error}");
    assert!(!error.to_string().contains("the-token"), "{error}");
}

/// The commit statuses of GitRepository `name`'s repository on `gitea` for `commit`, as
/// (state, description), oldest first.
fn states(
    gitea: &Gitea,
    repository: &support::gitea::GiteaRepository,
    commit: &str,
) -> Vec<(String, String)> {
    let mut listed: Vec<(i64, String, String)> = gitea
        .statuses(repository, commit)
        .into_iter()
        .map(|s| {
            (
                s["id"].as_i64().unwrap_or_default(),
                s["status"]
                    .as_str()
                    .or(s["state"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
                s["description"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    listed.sort();
    listed.into_iter().map(|(_, state, d)| (state, d)).collect()
}

/// Waits until the statuses of `commit` satisfy `check`.
async fn wait_states(
    gitea: &Gitea,
    repository: &support::gitea::GiteaRepository,
    commit: &str,
    what: &str,
    check: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let found = states(gitea, repository, commit);
        if check(&found) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the statuses of {commit} are {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn configmap_files(value: &str) -> Vec<(&'static str, String)> {
    vec![("deploy/app.yaml", manifest(value))]
}

fn push(
    repository: &support::gitea::GiteaRepository,
    files: &[(&'static str, String)],
    message: &str,
) -> String {
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    repository.push(&files, message)
}

#[tokio::test]
async fn a_push_through_gitea_is_applied_by_its_webhook_and_its_outcome_posted_back() {
    install_crds().await;
    let gitea = tokio::task::spawn_blocking(Gitea::start).await.unwrap();
    let repository = gitea.create_repository("app");
    let first = push(&repository, &configmap_files("one"), "one");
    let namespace = TestNamespace::create("commit-status").await;
    namespace
        .create_secret("gitea-token", &[("token", gitea.token.as_bytes())])
        .await;
    let receiver = GiteaReceiver::new(HOOK_SECRET);
    let (port, flags) = (receiver.port, receiver.flags());
    let replica = start_replica(&namespace, &flags);
    namespace
        .create_git_repository(
            "app",
            json!({ "url": gitea.clone_url(&repository.full_name), "path": "deploy",
                    "interval": HOURLY, "wait": true,
                    "commitStatus": { "provider": "gitea", "secretRef": { "name": "gitea-token" } } }),
        )
        .await;
    assert_kept(&namespace, "commitStatus").await;
    wait_applied(&namespace, &first, Duration::from_secs(60)).await;
    let context = format!("driftless/{}/app", namespace.name);
    let found = wait_states(&gitea, &repository, &first, "pending then success", |s| {
        s.iter().any(|(state, _)| state == "success")
    })
    .await;
    assert_eq!(
        found.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        ["pending", "success"]
    );
    let listed = gitea.statuses(&repository, &first);
    assert!(
        listed.iter().all(|s| s["context"] == context.as_str()),
        "{listed:?}"
    );

    // Gitea's own delivery (X-Gitea-Signature and the GitHub-compatible headers) brings the
    // next commit in long before the hourly poll.
    wait_for_port(port).await;
    gitea.add_push_hook(&repository, &receiver.hook_url(), HOOK_SECRET);
    let second = push(&repository, &configmap_files("two"), "two");
    wait_applied(&namespace, &second, WEBHOOK_DEADLINE).await;
    assert!(
        replica.counter(QUEUED_PUSHES) >= 1,
        "the apply was not started by the webhook"
    );
    assert_eq!(
        configmap_value(&namespace, "app").await.as_deref(),
        Some("two")
    );
    let found = wait_states(
        &gitea,
        &repository,
        &second,
        "success after the push",
        |s| s.iter().any(|(state, _)| state == "success"),
    )
    .await;
    assert_eq!(
        found.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        ["pending", "success"]
    );

    // A resync of the same commit posts nothing.
    support::waiting::resync(&namespace, "resync-1").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        states(&gitea, &repository, &second).len(),
        2,
        "a resync posted a status"
    );

    // Nor does the first resync of a restarted controller, whose table starts empty: the
    // object's status shows the commit applied and Ready.
    drop(replica);
    let replica = start_replica(&namespace, &flags);
    support::waiting::resync(&namespace, "after-restart").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        states(&gitea, &repository, &second).len(),
        2,
        "a restarted controller posted again"
    );
    wait_for_port(port).await;

    // A pushed commit that changes no object (a file outside `path`) ends before any apply,
    // and is `success` at once: the cluster already holds exactly its objects.
    let docs_only = push(
        &repository,
        &[("README.md", "docs\n".to_owned())],
        "docs only",
    );
    let found = wait_states(
        &gitea,
        &repository,
        &docs_only,
        "success of a docs-only commit",
        |s| s.iter().any(|(state, _)| state == "success"),
    )
    .await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].1.contains("same objects"), "{found:?}");

    // A broken commit: `failure` with the reason.
    let broken = push(
        &repository,
        &[(
            "deploy/app.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: [unclosed\n".to_owned(),
        )],
        "broken",
    );
    let found = wait_states(&gitea, &repository, &broken, "failure", |s| {
        s.iter().any(|(state, _)| state == "failure")
    })
    .await;
    let (_, description) = found.iter().find(|(s, _)| s == "failure").unwrap();
    assert!(description.contains("app.yaml"), "{description}");

    // The fix: `success` on it, and the broken commit's failure marked as superseded.
    let fixed = push(&repository, &configmap_files("three"), "fixed");
    wait_applied(&namespace, &fixed, WEBHOOK_DEADLINE).await;
    wait_states(&gitea, &repository, &fixed, "success after the fix", |s| {
        s.iter().any(|(state, _)| state == "success")
    })
    .await;
    let found = wait_states(
        &gitea,
        &repository,
        &broken,
        "the superseded failure",
        |s| s.iter().any(|(state, _)| state == "error"),
    )
    .await;
    assert!(found.last().unwrap().1.contains("superseded"), "{found:?}");
    drop(replica);
    drop(gitea);
}

#[tokio::test]
async fn a_token_gitea_refuses_leaves_an_event_and_the_object_ready() {
    install_crds().await;
    let gitea = tokio::task::spawn_blocking(Gitea::start).await.unwrap();
    let repository = gitea.create_repository("app");
    let commit = push(&repository, &configmap_files("one"), "one");
    let outsider = gitea.token_without_access();
    let namespace = TestNamespace::create("commit-status-token").await;
    namespace
        .create_secret("gitea-token", &[("token", outsider.as_bytes())])
        .await;
    let _replica = start_replica(&namespace, &["--disable-webhook"]);
    namespace
        .create_git_repository(
            "app",
            json!({ "url": gitea.clone_url(&repository.full_name), "path": "deploy",
                    "interval": HOURLY,
                    "commitStatus": { "provider": "gitea", "secretRef": { "name": "gitea-token" } } }),
        )
        .await;
    assert_kept(&namespace, "commitStatus").await;
    wait_applied(&namespace, &commit, Duration::from_secs(60)).await;
    let note = support::waiting::wait_for_warning(
        &namespace,
        "app",
        "CommitStatusFailed",
        Duration::from_secs(60),
    )
    .await;
    assert!(note.contains(&commit), "{note}");
    assert!(
        !note.contains(&outsider),
        "the token is in the event: {note}"
    );
    let repository_object = namespace.api::<GitRepository>().get("app").await.unwrap();
    assert_eq!(
        condition(&repository_object, "Ready")
            .map(|(status, _, _)| status)
            .as_deref(),
        Some("True")
    );
    assert!(states(&gitea, &repository, &commit).is_empty());
}

/// A tenant naming another server as the address: the controller sends nothing there (the
/// recording server would receive the token) and says why in an Event. Fails without the
/// same-host rule in commit_status::address.
#[tokio::test]
async fn a_tenant_cannot_send_its_token_to_another_server() {
    install_crds().await;
    let repos = support::git::GitRepos::new();
    let repo = repos.create("app");
    let commit = commit(&repo, "one");
    let server =
        support::git::HttpGitServer::start(repos.root(), support::git::HttpOptions::default());
    let elsewhere = Recorder::start();
    let namespace = TestNamespace::create("commit-status-host").await;
    namespace
        .create_secret("git-token", &[("token", b"a-tenant-token")])
        .await;
    let _replica = start_replica(&namespace, &["--disable-webhook"]);
    namespace
        .create_git_repository(
            "app",
            json!({ "url": server.url_for(&repo), "path": "deploy", "interval": HOURLY,
                    "commitStatus": { "provider": "gitea", "address": elsewhere.url(),
                                      "secretRef": { "name": "git-token" } } }),
        )
        .await;
    assert_kept(&namespace, "commitStatus").await;
    wait_applied(&namespace, &commit, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        elsewhere.requests().is_empty(),
        "the token went to another server: {:?}",
        elsewhere.requests()
    );
    let note = support::waiting::wait_for_warning(
        &namespace,
        "app",
        "CommitStatusRefused",
        Duration::from_secs(60),
    )
    .await;
    assert!(note.contains("--commit-status-allowed-hosts"), "{note}");
}

/// Panics unless GitRepository `app` kept `spec.<field>`: the apiserver prunes fields its CRD
/// does not know, which happens when another checkout installs an older CRD on the shared test
/// cluster while this test runs.
pub(crate) async fn assert_kept(namespace: &TestNamespace, field: &str) {
    let stored = namespace.api::<GitRepository>().get("app").await.unwrap();
    let spec = serde_json::to_value(&stored.spec).unwrap();
    assert!(
        spec.get(field).is_some_and(|v| !v.is_null()),
        "the cluster's GitRepository CRD dropped spec.{field}: another checkout installed an \
         older CRD on the shared test cluster; run again"
    );
}

//! Pull request previews against a real Gitea (tests/support/gitea.rs): Gitea's own
//! `pull_request` deliveries reach the receiver; the plan is posted as one comment, edited in
//! place at the next push, with a commit status on each head commit; a head that does not
//! render gets `failure` naming the file; the plan never writes to the cluster; a Secret's
//! values never appear. The other hosts' comment requests against a recording server, each
//! checked against the host's documentation.

use crate::support;

use std::time::Duration;

use driftless::{
    api::CommitStatusProvider,
    commit_status::{Credentials, Destination, RetryPolicy, StatusClient},
    preview::{Comment, create_comment, find_marked, list_comments, update_comment},
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::{Value, json};
use support::{
    cluster::{TestNamespace, install_crds},
    gitea::{Gitea, GiteaReceiver, GiteaRepository},
    objects::*,
    recorder::Recorder,
    replica::*,
    waiting::*,
};

const HOOK_SECRET: &str = "gitea pull request hook secret";
const HOURLY: &str = "1h";
const PREVIEW_DEADLINE: Duration = Duration::from_secs(60);
const MARKER: &str = "<!-- driftless-plan ";

fn secret_manifest(password: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: \"{password}\"\n"
    )
}

/// The comments carrying the plan marker, waited for until `done` holds.
async fn wait_plan_comments(
    gitea: &Gitea,
    repository: &GiteaRepository,
    number: u64,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + PREVIEW_DEADLINE;
    loop {
        let found: Vec<String> = gitea
            .comments(repository, number)
            .iter()
            .filter_map(|c| c["body"].as_str().map(str::to_owned))
            .filter(|body| body.contains(MARKER))
            .collect();
        if done(&found) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the plan comments are {found:?}\n{}",
            gitea.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The state and description of the status `context` on `commit`, waited for until final.
async fn wait_final_status(
    gitea: &Gitea,
    repository: &GiteaRepository,
    commit: &str,
    context: &str,
) -> (String, String) {
    let deadline = tokio::time::Instant::now() + PREVIEW_DEADLINE;
    loop {
        let listed = gitea.statuses(repository, commit);
        let newest = listed
            .iter()
            .filter(|s| s["context"] == context)
            .max_by_key(|s| s["id"].as_u64());
        if let Some(status) = newest {
            let state = status["status"].as_str().unwrap_or_default().to_owned();
            if state != "pending" {
                let description = status["description"].as_str().unwrap_or_default();
                return (state, description.to_owned());
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no final status {context} on {commit}: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn resource_versions(namespace: &TestNamespace) -> (String, String) {
    let configmap = namespace.api::<ConfigMap>().get("app").await.unwrap();
    let secret = namespace.api::<Secret>().get("db").await.unwrap();
    (
        configmap.metadata.resource_version.unwrap(),
        secret.metadata.resource_version.unwrap(),
    )
}

#[tokio::test]
async fn a_gitea_pull_request_gets_its_plan_comment_and_status_without_touching_the_cluster() {
    let gitea = tokio::task::spawn_blocking(Gitea::start).await.unwrap();
    let repository = gitea.create_repository("app");
    let main = repository.push(
        &[
            ("deploy/app.yaml", &manifest("one")),
            ("deploy/db.yaml", &secret_manifest("hunter2-before")),
        ],
        "one",
    );
    install_crds().await;
    let namespace = TestNamespace::create("preview").await;
    namespace
        .create_secret("gitea-token", &[("token", gitea.token.as_bytes())])
        .await;
    let receiver = GiteaReceiver::new(HOOK_SECRET);
    let (port, flags) = (receiver.port, receiver.flags());
    let _replica = start_replica(&namespace, &flags);
    namespace
        .create_git_repository(
            "app",
            json!({ "url": gitea.clone_url(&repository.full_name), "path": "deploy",
                    "ref": { "branch": "main" }, "interval": HOURLY,
                    "preview": { "enabled": true, "provider": "gitea",
                                 "secretRef": { "name": "gitea-token" } } }),
        )
        .await;
    crate::commit_status::assert_kept(&namespace, "preview").await;
    wait_applied(&namespace, &main, Duration::from_secs(60)).await;
    let before = resource_versions(&namespace).await;
    wait_for_port(port).await;
    gitea.add_pull_request_hook(&repository, &receiver.hook_url(), HOOK_SECRET);

    // Opened: the plan names the change, masks the Secret, and the head gets `success`.
    let head = repository.push_to(
        "change",
        &[
            ("deploy/app.yaml", &manifest("two")),
            ("deploy/db.yaml", &secret_manifest("hunter2-after")),
        ],
        "two",
    );
    let number = gitea.open_pull_request(&repository, "change", "main");
    let short: String = head.chars().take(12).collect();
    let comments = wait_plan_comments(&gitea, &repository, number, "the first plan", |c| {
        c.iter().any(|body| body.contains(&short))
    })
    .await;
    assert_eq!(comments.len(), 1, "{comments:?}");
    let plan = &comments[0];
    assert!(
        plan.contains("0 to create, 2 to change, 0 to prune, 0 unchanged"),
        "{plan}"
    );
    assert!(plan.contains("value: two"), "{plan}");
    assert!(plan.contains("*** (after)"), "{plan}");
    for secret in ["hunter2", "aHVudGVyMi1iZWZvcmU=", "aHVudGVyMi1hZnRlcg=="] {
        assert!(!plan.contains(secret), "{secret} is in the comment: {plan}");
    }
    let context = format!("driftless/plan/{}/app", namespace.name);
    let (state, description) = wait_final_status(&gitea, &repository, &head, &context).await;
    assert_eq!(state, "success", "{description}");
    assert!(description.contains("2 to change"), "{description}");

    // A plan never writes: the live objects are as main left them.
    assert_eq!(resource_versions(&namespace).await, before);
    assert_eq!(
        configmap_value(&namespace, "app").await.as_deref(),
        Some("one")
    );

    // A push that breaks the render: `failure` naming the file, the same comment edited.
    let broken = repository.push_to(
        "change",
        &[(
            "deploy/broken.yaml",
            "kind: ConfigMap\nmetadata: [unclosed\n",
        )],
        "broken",
    );
    let (state, description) = wait_final_status(&gitea, &repository, &broken, &context).await;
    assert_eq!(state, "failure", "{description}");
    assert!(description.contains("broken.yaml"), "{description}");
    let short: String = broken.chars().take(12).collect();
    let comments = wait_plan_comments(&gitea, &repository, number, "the edited plan", |c| {
        c.iter().any(|body| body.contains(&short))
    })
    .await;
    assert_eq!(
        comments.len(),
        1,
        "the comment was not edited in place: {comments:?}"
    );
    assert!(comments[0].contains("The plan failed"), "{}", comments[0]);
    assert!(comments[0].contains("broken.yaml"), "{}", comments[0]);
    assert_eq!(resource_versions(&namespace).await, before);

    // A pull request from a fork is not previewed (allowForks is off): no status on its head,
    // no comment, while the same repository's own pull requests were previewed within a second.
    let fork = gitea.fork(&repository, "forkers");
    let forked = fork.push_to(
        "from-fork",
        &[("deploy/app.yaml", &manifest("fork"))],
        "fork",
    );
    let number = gitea.open_pull_request(&repository, "forkers:from-fork", "main");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let statuses = gitea.statuses(&repository, &forked);
    assert!(statuses.is_empty(), "a fork was previewed: {statuses:?}");
    let comments = gitea.comments(&repository, number);
    assert!(
        comments
            .iter()
            .all(|c| !c["body"].as_str().unwrap_or_default().contains(MARKER)),
        "a fork was previewed: {comments:?}"
    );
}

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

/// Sends the create and the update of `provider` to a recording server; returns both as
/// received, with the listing's request.
async fn recorded(
    provider: CommitStatusProvider,
    repository: &str,
) -> Vec<support::recorder::Recorded> {
    let recorder = Recorder::start();
    let target = destination(provider, &recorder.url(), repository);
    let client = StatusClient::new(RetryPolicy {
        attempts: 1,
        ..RetryPolicy::default()
    });
    let existing = Comment {
        id: "42".into(),
        version: Some(3),
    };
    for request in [
        list_comments(&target, 7),
        create_comment(&target, 7, "the plan"),
        update_comment(&target, 7, &existing, "the new plan"),
    ] {
        client
            .send(request.method, &request.request)
            .await
            .expect("the recording server answers");
    }
    recorder.requests()
}

fn method_and_path(request: &support::recorder::Recorded) -> (String, String) {
    (request.method.clone(), request.path.clone())
}

/// https://docs.github.com/en/rest/issues/comments (list, create, update an issue comment;
/// a pull request is an issue): `body`, a bearer token and the API version header.
#[tokio::test]
async fn github_comment_requests_follow_its_documentation() {
    let sent = recorded(CommitStatusProvider::Github, "org/app").await;
    assert_eq!(
        sent.iter().map(method_and_path).collect::<Vec<_>>(),
        [
            (
                "GET".into(),
                "/repos/org/app/issues/7/comments?per_page=100".into()
            ),
            ("POST".into(), "/repos/org/app/issues/7/comments".into()),
            ("PATCH".into(), "/repos/org/app/issues/comments/42".into()),
        ]
    );
    assert_eq!(sent[1].json(), json!({ "body": "the plan" }));
    assert_eq!(sent[2].json(), json!({ "body": "the new plan" }));
    assert_eq!(sent[1].header("authorization"), Some("Bearer the-token"));
    assert_eq!(sent[1].header("x-github-api-version"), Some("2022-11-28"));
    let listing = json!([{ "id": 41, "body": "hello" }, { "id": 42, "body": "<!-- driftless-plan a/b -->\nplan" }]);
    assert_eq!(
        find_marked(
            CommitStatusProvider::Github,
            &listing,
            "<!-- driftless-plan a/b -->"
        ),
        Some(Comment {
            id: "42".into(),
            version: None
        })
    );
}

/// https://docs.gitlab.com/api/notes/#merge-requests: notes of a merge request by `iid`,
/// the project path URL-encoded, `PRIVATE-TOKEN`, `PUT` to edit.
#[tokio::test]
async fn gitlab_note_requests_follow_its_documentation() {
    let sent = recorded(CommitStatusProvider::Gitlab, "group/sub/app").await;
    assert_eq!(
        sent.iter().map(method_and_path).collect::<Vec<_>>(),
        [
            (
                "GET".into(),
                "/api/v4/projects/group%2Fsub%2Fapp/merge_requests/7/notes?per_page=100&sort=asc"
                    .into()
            ),
            (
                "POST".into(),
                "/api/v4/projects/group%2Fsub%2Fapp/merge_requests/7/notes".into()
            ),
            (
                "PUT".into(),
                "/api/v4/projects/group%2Fsub%2Fapp/merge_requests/7/notes/42".into()
            ),
        ]
    );
    assert_eq!(sent[1].json(), json!({ "body": "the plan" }));
    assert_eq!(sent[2].json(), json!({ "body": "the new plan" }));
    assert_eq!(sent[1].header("private-token"), Some("the-token"));
}

/// https://developer.atlassian.com/cloud/bitbucket/rest/api-group-pullrequests/ (comments of
/// a pull request: `content.raw`, paged `values`) and, for Server,
/// https://developer.atlassian.com/server/bitbucket/rest/ (pull request comments: `text`, an
/// edit names the `version` it replaces; listed as activities).
#[tokio::test]
async fn bitbucket_comment_requests_follow_its_documentation() {
    let sent = recorded(CommitStatusProvider::Bitbucket, "team/app").await;
    assert_eq!(
        sent.iter().map(method_and_path).collect::<Vec<_>>(),
        [
            (
                "GET".into(),
                "/2.0/repositories/team/app/pullrequests/7/comments?pagelen=100".into()
            ),
            (
                "POST".into(),
                "/2.0/repositories/team/app/pullrequests/7/comments".into()
            ),
            (
                "PUT".into(),
                "/2.0/repositories/team/app/pullrequests/7/comments/42".into()
            ),
        ]
    );
    assert_eq!(sent[1].json(), json!({ "content": { "raw": "the plan" } }));
    let listing =
        json!({ "values": [{ "id": 42, "content": { "raw": "x <!-- driftless-plan a/b -->" } }] });
    assert_eq!(
        find_marked(
            CommitStatusProvider::Bitbucket,
            &listing,
            "<!-- driftless-plan a/b -->"
        ),
        Some(Comment {
            id: "42".into(),
            version: None
        })
    );

    let sent = recorded(CommitStatusProvider::Bitbucketserver, "scm/PRJ/app").await;
    assert_eq!(
        sent.iter().map(method_and_path).collect::<Vec<_>>(),
        [
            (
                "GET".into(),
                "/rest/api/1.0/projects/PRJ/repos/app/pull-requests/7/activities?limit=100".into()
            ),
            (
                "POST".into(),
                "/rest/api/1.0/projects/PRJ/repos/app/pull-requests/7/comments".into()
            ),
            (
                "PUT".into(),
                "/rest/api/1.0/projects/PRJ/repos/app/pull-requests/7/comments/42".into()
            ),
        ]
    );
    assert_eq!(sent[1].json(), json!({ "text": "the plan" }));
    assert_eq!(
        sent[2].json(),
        json!({ "text": "the new plan", "version": 3 })
    );
    let listing: Value = json!({ "values": [{ "action": "COMMENTED",
        "comment": { "id": 42, "version": 3, "text": "<!-- driftless-plan a/b -->" } }] });
    assert_eq!(
        find_marked(
            CommitStatusProvider::Bitbucketserver,
            &listing,
            "<!-- driftless-plan a/b -->"
        ),
        Some(Comment {
            id: "42".into(),
            version: Some(3)
        })
    );
}

//! Push webhooks end to end, through the real `driftless controller` binary, the test
//! cluster and a real git server: a signed push of every provider converges the cluster long
//! before the polling interval; bad deliveries get their status code and trigger nothing; a
//! delivery to a replica that does not lead still triggers the leader; polling converges when
//! no webhook ever arrives.

use crate::support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use driftless::{api::GitRepository, controller::RECONCILE_REQUESTED_AT};
use serde_json::{Value, json};
use support::{
    cluster::{TestNamespace, install_crds},
    git::{GitRepos, HttpGitServer, HttpOptions, TestRepo},
    objects::*,
    replica::*,
    waiting::*,
    webhook::*,
};

/// Polling interval of the objects whose next commit only a webhook may bring in quickly.
const HOURLY: &str = "1h";

/// How long a webhook-triggered apply may take on a loaded 2-core machine: generous, and still
/// 180 times shorter than the hourly poll.
const WEBHOOK_DEADLINE: Duration = Duration::from_secs(20);

pub(crate) const GITHUB_SECRET: &str = "github shared secret";
/// A Standard Webhooks key (`whsec_<base64>`). GitLab sends the configured secret token as is
/// in `X-Gitlab-Token`, or signs with it as a Standard Webhooks key; one `gitlab` file serves
/// both, so the token GitLab is configured with is this same string.
const GITLAB_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const GITEA_SECRET: &str = "gitea and forgejo shared secret";
const BITBUCKET_SECRET: &str = "bitbucket shared secret";
const GENERIC_SECRET: &str = "generic shared secret";

/// Writes every provider's shared secret, as the Helm chart mounts them.
fn shared_secrets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (provider, secret) in [
        ("github", GITHUB_SECRET),
        ("gitlab", GITLAB_SECRET),
        ("gitea", GITEA_SECRET),
        ("bitbucket", BITBUCKET_SECRET),
        ("generic", GENERIC_SECRET),
    ] {
        write_secret(dir.path(), provider, secret);
    }
    dir
}

/// Flags serving webhooks on `port` with the secrets in `secrets`.
pub(crate) fn webhook_flags(port: u16, secrets: &tempfile::TempDir) -> [String; 4] {
    [
        "--webhook-bind-address".to_owned(),
        format!("127.0.0.1:{port}"),
        "--webhook-secrets-dir".to_owned(),
        secrets.path().to_str().unwrap().to_owned(),
    ]
}

pub(crate) fn strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// The ways a Git host delivers a push, each with its own headers and payload shape.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Delivery {
    GitHub,
    GitLabToken,
    GitLabSigned,
    Gitea,
    Forgejo,
    BitbucketCloud,
    BitbucketServer,
    Generic,
}

impl Delivery {
    const ALL: [Delivery; 8] = [
        Delivery::GitHub,
        Delivery::GitLabToken,
        Delivery::GitLabSigned,
        Delivery::Gitea,
        Delivery::Forgejo,
        Delivery::BitbucketCloud,
        Delivery::BitbucketServer,
        Delivery::Generic,
    ];

    /// Names the repository, the GitRepository and its ConfigMap.
    fn name(self) -> &'static str {
        match self {
            Delivery::GitHub => "github",
            Delivery::GitLabToken => "gitlab-token",
            Delivery::GitLabSigned => "gitlab-signed",
            Delivery::Gitea => "gitea",
            Delivery::Forgejo => "forgejo",
            Delivery::BitbucketCloud => "bitbucket-cloud",
            Delivery::BitbucketServer => "bitbucket-server",
            Delivery::Generic => "generic",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Delivery::GitHub => "/hooks/github",
            Delivery::GitLabToken | Delivery::GitLabSigned => "/hooks/gitlab",
            Delivery::Gitea => "/hooks/gitea",
            Delivery::Forgejo => "/hooks/forgejo",
            Delivery::BitbucketCloud | Delivery::BitbucketServer => "/hooks/bitbucket",
            Delivery::Generic => "/hooks/generic",
        }
    }

    /// The push payload the provider sends when `repo` (cloned from `url`) moved `main` from
    /// `before` to `after`, in the provider's documented shape.
    fn payload(self, repo: &TestRepo, url: &str, before: &str, after: &str) -> Value {
        let name = repo.name();
        let web = url.trim_end_matches(".git");
        let ssh = format!("ssh://git@127.0.0.1:7999/test/{name}.git");
        match self {
            Delivery::GitHub | Delivery::Gitea | Delivery::Forgejo => json!({
                "ref": "refs/heads/main",
                "before": before,
                "after": after,
                "created": false,
                "deleted": false,
                "forced": false,
                "compare_url": format!("{web}/compare/{before}...{after}"),
                "commits": [{ "id": after, "message": "two\n", "url": format!("{web}/commit/{after}") }],
                "head_commit": { "id": after, "message": "two\n", "url": format!("{web}/commit/{after}") },
                "repository": {
                    "id": 42,
                    "name": name,
                    "full_name": format!("test/{name}"),
                    "private": false,
                    "html_url": web,
                    "clone_url": url,
                    "ssh_url": format!("git@127.0.0.1:test/{name}.git"),
                    "default_branch": "main",
                },
                "pusher": { "name": "driftless-test", "email": "test@example.com" },
                "sender": { "login": "driftless-test", "id": 1 },
            }),
            Delivery::GitLabToken | Delivery::GitLabSigned => json!({
                "object_kind": "push",
                "event_name": "push",
                "before": before,
                "after": after,
                "ref": "refs/heads/main",
                "ref_protected": true,
                "checkout_sha": after,
                "user_username": "driftless-test",
                "project_id": 15,
                "project": {
                    "id": 15,
                    "name": name,
                    "web_url": web,
                    "git_ssh_url": format!("git@127.0.0.1:test/{name}.git"),
                    "git_http_url": url,
                    "namespace": "test",
                    "path_with_namespace": format!("test/{name}"),
                    "default_branch": "main",
                },
                "commits": [{ "id": after, "message": "two\n" }],
                "total_commits_count": 1,
                "repository": {
                    "name": name,
                    "url": format!("git@127.0.0.1:test/{name}.git"),
                    "homepage": web,
                    "git_http_url": url,
                    "git_ssh_url": format!("git@127.0.0.1:test/{name}.git"),
                },
            }),
            // No clone URL in Cloud payloads: the receiver derives it from the web link.
            Delivery::BitbucketCloud => json!({
                "actor": { "display_name": "driftless test", "type": "user" },
                "repository": {
                    "type": "repository",
                    "name": name,
                    "full_name": format!("test/{name}"),
                    "links": { "html": { "href": web } },
                },
                "push": { "changes": [{
                    "old": { "type": "branch", "name": "main", "target": { "type": "commit", "hash": before } },
                    "new": { "type": "branch", "name": "main", "target": { "type": "commit", "hash": after } },
                    "created": false, "closed": false, "forced": false,
                }] },
            }),
            Delivery::BitbucketServer => json!({
                "eventKey": "repo:refs_changed",
                "date": "2026-01-01T00:00:00+0000",
                "actor": { "name": "driftless-test", "type": "NORMAL" },
                "repository": {
                    "slug": name,
                    "name": name,
                    "project": { "key": "TEST" },
                    "links": {
                        "clone": [
                            { "href": ssh, "name": "ssh" },
                            { "href": url, "name": "http" },
                        ],
                        "self": [{ "href": format!("{web}/browse") }],
                    },
                },
                "changes": [{
                    "ref": { "id": "refs/heads/main", "displayId": "main", "type": "BRANCH" },
                    "refId": "refs/heads/main",
                    "fromHash": before,
                    "toHash": after,
                    "type": "UPDATE",
                }],
            }),
            Delivery::Generic => json!({ "url": url, "ref": "refs/heads/main", "commit": after }),
        }
    }

    /// The headers the provider sends with `body`, signed with the configured secret.
    fn headers(self, delivery_id: &str, body: &[u8]) -> Vec<(String, String)> {
        let hex = |secret: &str| hmac_sha256_hex(secret.as_bytes(), body);
        let pairs: Vec<(&str, String)> = match self {
            Delivery::GitHub => vec![
                ("X-GitHub-Event", "push".into()),
                ("X-GitHub-Delivery", delivery_id.into()),
                ("X-GitHub-Hook-ID", "4711".into()),
                (
                    "X-Hub-Signature-256",
                    github_signature(GITHUB_SECRET.as_bytes(), body),
                ),
            ],
            Delivery::GitLabToken => vec![
                ("X-Gitlab-Event", "Push Hook".into()),
                ("X-Gitlab-Token", GITLAB_SECRET.into()),
                ("X-Gitlab-Instance", "https://gitlab.example.com".into()),
                ("X-Gitlab-Webhook-UUID", "8f0c7d3e-hook".into()),
                ("X-Gitlab-Event-UUID", delivery_id.into()),
                ("Idempotency-Key", delivery_id.into()),
            ],
            Delivery::GitLabSigned => {
                let timestamp = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    .to_string();
                let key = BASE64
                    .decode(GITLAB_SECRET.trim_start_matches("whsec_"))
                    .unwrap();
                let signed = [
                    delivery_id.as_bytes(),
                    b".",
                    timestamp.as_bytes(),
                    b".",
                    body,
                ];
                let signature = BASE64.encode(hmac_sha256(&key, &signed.concat()));
                vec![
                    ("X-Gitlab-Event", "Push Hook".into()),
                    ("X-Gitlab-Instance", "https://gitlab.example.com".into()),
                    ("webhook-id", delivery_id.into()),
                    ("webhook-timestamp", timestamp),
                    ("webhook-signature", format!("v1,{signature}")),
                ]
            }
            Delivery::Gitea => vec![
                ("X-Gitea-Event", "push".into()),
                ("X-Gitea-Event-Type", "push".into()),
                ("X-Gitea-Delivery", delivery_id.into()),
                ("X-Gitea-Signature", hex(GITEA_SECRET)),
                ("X-Gogs-Event", "push".into()),
                ("X-Gogs-Delivery", delivery_id.into()),
                ("X-Gogs-Signature", hex(GITEA_SECRET)),
                ("X-GitHub-Event", "push".into()),
                ("X-GitHub-Delivery", delivery_id.into()),
                (
                    "X-Hub-Signature-256",
                    format!("sha256={}", hex(GITEA_SECRET)),
                ),
            ],
            Delivery::Forgejo => vec![
                ("X-Forgejo-Event", "push".into()),
                ("X-Forgejo-Delivery", delivery_id.into()),
                ("X-Forgejo-Signature", hex(GITEA_SECRET)),
                ("X-Gitea-Event", "push".into()),
                ("X-Gitea-Delivery", delivery_id.into()),
                ("X-Gitea-Signature", hex(GITEA_SECRET)),
                ("X-GitHub-Event", "push".into()),
                ("X-GitHub-Delivery", delivery_id.into()),
                (
                    "X-Hub-Signature-256",
                    format!("sha256={}", hex(GITEA_SECRET)),
                ),
            ],
            Delivery::BitbucketCloud => vec![
                ("X-Event-Key", "repo:push".into()),
                ("X-Request-UUID", delivery_id.into()),
                ("X-Hook-UUID", "{5b3e1c5e-hook}".into()),
                (
                    "X-Hub-Signature",
                    format!("sha256={}", hex(BITBUCKET_SECRET)),
                ),
            ],
            Delivery::BitbucketServer => vec![
                ("X-Event-Key", "repo:refs_changed".into()),
                ("X-Request-Id", delivery_id.into()),
                (
                    "X-Hub-Signature",
                    format!("sha256={}", hex(BITBUCKET_SECRET)),
                ),
            ],
            Delivery::Generic => vec![
                ("X-Delivery-Id", delivery_id.into()),
                ("X-Signature", format!("sha256={}", hex(GENERIC_SECRET))),
            ],
        };
        let mut headers: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        headers.push(("Content-Type".into(), "application/json".into()));
        headers
    }

    /// Delivers the push of `after` to the receiver on `port`.
    pub(crate) fn deliver(
        self,
        port: u16,
        repo: &TestRepo,
        url: &str,
        before: &str,
        after: &str,
        delivery_id: &str,
    ) -> (u16, String) {
        let body = serde_json::to_vec(&self.payload(repo, url, before, after)).unwrap();
        let headers = self.headers(delivery_id, &body);
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        post(port, self.path(), &headers, &body)
    }
}

/// The JSON body of a response from [`post`].
fn response_json(response: &str) -> Value {
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|error| panic!("{error}: {response}"))
}

/// The `triggered` count of a receiver's answer (it never names the objects).
fn triggered(response: &str) -> u64 {
    let json = response_json(response);
    json["triggered"]
        .as_u64()
        .unwrap_or_else(|| panic!("no `triggered` count: {response}"))
}

/// The `driftless.dev/reconcile-requested-at` annotation of GitRepository `name`.
async fn requested_at(namespace: &TestNamespace, name: &str) -> Option<String> {
    let repository = namespace.api::<GitRepository>().get(name).await.unwrap();
    repository
        .metadata
        .annotations?
        .remove(RECONCILE_REQUESTED_AT)
}

#[tokio::test]
async fn a_signed_push_of_every_provider_converges_long_before_the_interval() {
    install_crds().await;
    let namespace = TestNamespace::create("webhook-providers").await;
    let repos = GitRepos::new();
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let secrets = shared_secrets();
    let port = free_port();
    let _replica = start_replica(&namespace, &strs(&webhook_flags(port, &secrets)));

    // One repository, one GitRepository and one ConfigMap per delivery format, so that each
    // delivery can only be what brought its own object to the new commit.
    let mut cases = Vec::new();
    for delivery in Delivery::ALL {
        let name = delivery.name();
        let repo = repos.create(name);
        let first = commit_configmap(&repo, name, "one");
        let url = server.url_for(&repo);
        create_repository_named(&namespace, name, &url, HOURLY).await;
        cases.push((delivery, repo, url, first));
    }
    for (delivery, _, _, first) in &cases {
        wait_applied_named(&namespace, delivery.name(), first, Duration::from_secs(120)).await;
    }
    wait_for_port(port).await;

    let mut timings = Vec::new();
    for (delivery, repo, url, first) in &cases {
        let name = delivery.name();
        let pushed = tokio::time::Instant::now();
        let second = commit_configmap(repo, name, "two");
        let delivery_id = format!("{name}-delivery-1");
        let (status, response) = delivery.deliver(port, repo, url, first, &second, &delivery_id);
        assert_eq!(status, 202, "{delivery:?}: {response}");
        assert_eq!(
            triggered(&response),
            1,
            "{delivery:?} triggers exactly its own GitRepository"
        );
        assert!(
            !response.contains(&namespace.name),
            "{delivery:?}: the answer names no object: {response}"
        );
        wait_applied_named(&namespace, name, &second, Duration::from_secs(60)).await;
        let took = pushed.elapsed();
        assert!(
            took < WEBHOOK_DEADLINE,
            "{delivery:?}: {took:?} from push to applied; the webhook, not the {HOURLY} poll, must apply it"
        );
        assert_eq!(
            configmap_value(&namespace, name).await.as_deref(),
            Some("two"),
            "{delivery:?}: the cluster has the pushed content"
        );
        timings.push(format!("{delivery:?} {took:?}"));
    }
    eprintln!(
        "push to applied per delivery format: {}",
        timings.join(", ")
    );
}

/// GitHub push headers, signed with `signature` when it is given.
fn github_headers<'a>(delivery: &'a str, signature: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", delivery),
        ("Content-Type", "application/json"),
    ];
    headers.extend(signature.map(|value| ("X-Hub-Signature-256", value)));
    headers
}

/// A bad delivery and the answer it must get.
struct BadCase<'a> {
    case: &'a str,
    method: &'a str,
    path: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
    status: u16,
}

#[tokio::test]
async fn bad_deliveries_get_their_status_and_trigger_nothing() {
    const BODY_LIMIT: usize = 4096;
    install_crds().await;
    let namespace = TestNamespace::create("webhook-bad-input").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let first = commit(&repo, "one");
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let url = server.url_for(&repo);
    let secrets = tempfile::tempdir().unwrap();
    write_secret(secrets.path(), "github", GITHUB_SECRET);
    write_secret(secrets.path(), "generic", GENERIC_SECRET);
    let port = free_port();
    let mut flags = webhook_flags(port, &secrets).to_vec();
    flags.extend(["--webhook-max-body-bytes".into(), BODY_LIMIT.to_string()]);
    let replica = start_replica(&namespace, &strs(&flags));
    create_repository(&namespace, &url, HOURLY).await;
    wait_applied(&namespace, &first, Duration::from_secs(60)).await;
    wait_for_port(port).await;
    // Let the reconciles that may follow the first apply finish before the next commit exists,
    // so that from here on only a trigger could bring a commit in.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let second = commit(&repo, "two");
    let sign = |body: &[u8]| github_signature(GITHUB_SECRET.as_bytes(), body);
    let body = serde_json::to_vec(&Delivery::GitHub.payload(&repo, &url, &first, &second)).unwrap();
    let signature = sign(&body);
    let forged = github_signature(b"not the secret", &body);
    let oversized = {
        let mut payload = Delivery::GitHub.payload(&repo, &url, &first, &second);
        payload["padding"] = json!("x".repeat(2 * BODY_LIMIT));
        serde_json::to_vec(&payload).unwrap()
    };
    let oversized_signature = sign(&oversized);
    let malformed = br#"{"ref": "refs/heads/main", "after": "#.to_vec();
    let malformed_signature = sign(&malformed);
    let without_repository = serde_json::to_vec(&json!({
        "ref": "refs/heads/main", "after": second, "head_commit": { "id": second },
    }))
    .unwrap();
    let without_repository_signature = sign(&without_repository);
    let unknown_hook = format!("/hooks/{}", "ab".repeat(32));
    let signed = |delivery| github_headers(delivery, Some(signature.as_str()));
    let cases = [
        BadCase {
            case: "missing signature",
            method: "POST",
            path: "/hooks/github",
            headers: github_headers("bad-1", None),
            body: &body,
            status: 401,
        },
        BadCase {
            case: "wrong signature",
            method: "POST",
            path: "/hooks/github",
            headers: github_headers("bad-2", Some(&forged)),
            body: &body,
            status: 401,
        },
        BadCase {
            case: "unknown provider",
            method: "POST",
            path: "/hooks/svn",
            headers: signed("bad-3"),
            body: &body,
            status: 404,
        },
        BadCase {
            case: "provider without a configured secret",
            method: "POST",
            path: "/hooks/gitlab",
            headers: signed("bad-4"),
            body: &body,
            status: 404,
        },
        BadCase {
            case: "unknown per-object hook id",
            method: "POST",
            path: &unknown_hook,
            headers: signed("bad-5"),
            body: &body,
            status: 404,
        },
        BadCase {
            case: "path outside /hooks/",
            method: "POST",
            path: "/github",
            headers: signed("bad-6"),
            body: &body,
            status: 404,
        },
        BadCase {
            case: "body over the limit",
            method: "POST",
            path: "/hooks/github",
            headers: github_headers("bad-7", Some(&oversized_signature)),
            body: &oversized,
            status: 413,
        },
        BadCase {
            case: "malformed JSON after a valid signature",
            method: "POST",
            path: "/hooks/github",
            headers: github_headers("bad-8", Some(&malformed_signature)),
            body: &malformed,
            status: 400,
        },
        BadCase {
            case: "push naming no repository after a valid signature",
            method: "POST",
            path: "/hooks/github",
            headers: github_headers("bad-9", Some(&without_repository_signature)),
            body: &without_repository,
            status: 400,
        },
        BadCase {
            case: "GET instead of POST",
            method: "GET",
            path: "/hooks/github",
            headers: signed("bad-10"),
            body: &body,
            status: 405,
        },
    ];
    for case in &cases {
        let (status, response) = request(port, case.method, case.path, &case.headers, case.body);
        assert_eq!(status, case.status, "{}: {response}", case.case);
        eprintln!("{}: {status}", case.case);
    }
    let ping = serde_json::to_vec(&json!({ "zen": "Keep it logically awesome.", "hook_id": 4711 }))
        .unwrap();
    let ping_signature = sign(&ping);
    let ping_headers = [
        ("X-GitHub-Event", "ping"),
        ("X-GitHub-Delivery", "ping-1"),
        ("X-Hub-Signature-256", ping_signature.as_str()),
    ];
    let (status, response) = post(port, "/hooks/github", &ping_headers, &ping);
    assert_eq!(status, 200, "a signed ping: {response}");
    assert!(
        triggered(&response) == 0,
        "a ping triggers nothing: {response}"
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        replica.counter(QUEUED_PUSHES),
        0,
        "no bad delivery asked for a reconcile"
    );
    assert_eq!(requested_at(&namespace, "app").await, None);
    assert!(
        applied_revision(&namespace, "app").await.ends_with(&first),
        "no bad delivery brought {second} in"
    );

    // The same push, correctly signed, triggers once (queued in the leading replica, with no
    // API write)...
    let (status, response) = request(port, "POST", "/hooks/github", &signed("good-1"), &body);
    assert_eq!(status, 202, "{response}");
    assert_eq!(triggered(&response), 1, "{response}");
    wait_applied(&namespace, &second, WEBHOOK_DEADLINE).await;
    assert_eq!(replica.counter(QUEUED_PUSHES), 1, "one reconcile queued");
    assert_eq!(requested_at(&namespace, "app").await, None, "no annotation");
    // ...and its redelivery is answered as a duplicate and triggers nothing.
    let (status, response) = request(port, "POST", "/hooks/github", &signed("good-1"), &body);
    assert_eq!(status, 200, "{response}");
    assert_eq!(
        response_json(&response)["duplicate"],
        json!(true),
        "{response}"
    );
    assert_eq!(replica.counter(QUEUED_PUSHES), 1);

    // A delivery without a commit always triggers (nothing says it is applied already), so
    // its redelivery shows that the replay cache, not the applied-commit check, drops it.
    let generic = serde_json::to_vec(&json!({ "url": url, "ref": "refs/heads/main" })).unwrap();
    let generic_signature = format!(
        "sha256={}",
        hmac_sha256_hex(GENERIC_SECRET.as_bytes(), &generic)
    );
    let generic_headers = [
        ("X-Delivery-Id", "generic-1"),
        ("X-Signature", generic_signature.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (status, response) = post(port, "/hooks/generic", &generic_headers, &generic);
    assert_eq!(status, 202, "{response}");
    assert_eq!(triggered(&response), 1, "{response}");
    assert_eq!(
        replica.counter(QUEUED_PUSHES),
        2,
        "a commit-less delivery requests a reconcile"
    );
    let (status, response) = post(port, "/hooks/generic", &generic_headers, &generic);
    assert_eq!(status, 200, "{response}");
    assert_eq!(
        response_json(&response)["duplicate"],
        json!(true),
        "{response}"
    );
    assert_eq!(
        replica.counter(QUEUED_PUSHES),
        2,
        "a redelivery requests nothing"
    );
}

#[tokio::test]
async fn a_push_delivered_to_a_replica_that_does_not_lead_is_applied_by_the_leader() {
    install_crds().await;
    let namespace = TestNamespace::create("webhook-non-leader").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let first = commit(&repo, "one");
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let url = server.url_for(&repo);
    let secrets = tempfile::tempdir().unwrap();
    write_secret(secrets.path(), "github", GITHUB_SECRET);
    // A long Lease with frequent renewal: leadership must not move during the test, even on a
    // loaded machine.
    let election = [
        "--leader-elect",
        "--leader-election-lease-duration",
        "30s",
        "--leader-election-renew-period",
        "1s",
    ];
    let ports = [free_port(), free_port()];
    let replicas: Vec<Replica> = ports
        .iter()
        .map(|port| {
            let mut flags: Vec<&str> = election.to_vec();
            let webhook = webhook_flags(*port, &secrets);
            flags.extend(strs(&webhook));
            start_replica(&namespace, &flags)
        })
        .collect();
    create_repository(&namespace, &url, HOURLY).await;
    wait_applied(&namespace, &first, Duration::from_secs(60)).await;
    let leader = lease_holder(&namespace)
        .await
        .expect("one replica holds the Lease");
    assert!(
        replicas.iter().any(|replica| replica.holds(&leader)),
        "the Lease holder {leader} is one of the replicas"
    );
    let follower = replicas
        .iter()
        .position(|replica| !replica.holds(&leader))
        .unwrap_or_else(|| panic!("only one replica can hold the Lease ({leader})"));
    let port = ports[follower];
    wait_for_port(port).await;
    eprintln!(
        "leader {leader}; delivering to {} on {port}",
        replicas[follower].host
    );

    let pushed = tokio::time::Instant::now();
    let second = commit(&repo, "two");
    let (status, response) =
        Delivery::GitHub.deliver(port, &repo, &url, &first, &second, "to-the-follower");
    assert_eq!(status, 202, "{response}");
    assert_eq!(triggered(&response), 1, "{response}");
    wait_applied(&namespace, &second, Duration::from_secs(60)).await;
    let took = pushed.elapsed();
    assert!(
        took < WEBHOOK_DEADLINE,
        "{took:?} from push to applied; the webhook, not the {HOURLY} poll, must apply it"
    );
    assert_eq!(
        lease_holder(&namespace).await.as_deref(),
        Some(leader.as_str()),
        "the leader, not the replica that received the push, applied it"
    );
    assert_eq!(
        configmap_value(&namespace, "app").await.as_deref(),
        Some("two")
    );
    let follower = &replicas[follower];
    let annotated = r#"driftless_webhook_triggers_total{route="annotation"}"#;
    assert_eq!(follower.counter(annotated), 1, "asked through the API");
    assert_eq!(follower.counter(QUEUED_PUSHES), 0, "nothing queued");
    eprintln!("push to applied through a replica that does not lead: {took:?}");
}

#[tokio::test]
async fn polling_converges_when_no_webhook_arrives() {
    const INTERVAL: Duration = Duration::from_secs(5);
    install_crds().await;
    let namespace = TestNamespace::create("webhook-polling").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let first = commit(&repo, "one");
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let _replica = start_replica(&namespace, &["--disable-webhook"]);
    create_repository(&namespace, &server.url_for(&repo), "5s").await;
    wait_applied(&namespace, &first, Duration::from_secs(60)).await;

    let pushed = tokio::time::Instant::now();
    let second = commit(&repo, "two");
    // At most one interval (+10 % jitter) until the next poll, plus the reconcile itself; four
    // intervals leave room for a loaded machine.
    wait_applied(&namespace, &second, 4 * INTERVAL).await;
    let took = pushed.elapsed();
    assert_eq!(
        configmap_value(&namespace, "app").await.as_deref(),
        Some("two")
    );
    assert_eq!(
        requested_at(&namespace, "app").await,
        None,
        "nothing but the poll asked for this reconcile"
    );
    eprintln!("push to applied by polling every {INTERVAL:?}: {took:?}");
}

/// A signed GitHub ping to `path`: 200 when the receiver knows `secret` there, 401 when it
/// verifies with another one, 404 when the path names no receiver. A ping triggers nothing,
/// so probing with it never starts the reconcile that would re-register a hook by itself.
fn ping(port: u16, path: &str, secret: &str) -> (u16, String) {
    let body = br#"{"zen": "Design for failure.", "hook_id": 7}"#;
    let signature = github_signature(secret.as_bytes(), body);
    let headers = [
        ("X-GitHub-Event", "ping"),
        ("X-GitHub-Delivery", "rotation-ping"),
        ("X-Hub-Signature-256", signature.as_str()),
    ];
    post(port, path, &headers, body)
}

/// Pings until the answer is `status`; panics with the last answer after `within`.
async fn ping_until(port: u16, path: &str, secret: &str, status: u16, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (got, response) = ping(port, path, secret);
        if got == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never answered {status} within {within:?}: {response}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn rotated_webhook_secrets_are_honoured_without_a_restart() {
    use k8s_openapi::{ByteString, api::core::v1::Secret};
    const OLD_TOKEN: &str = "per-object token before rotation";
    const NEW_TOKEN: &str = "per-object token after rotation";
    const NEW_SHARED: &str = "github shared secret after rotation";
    // Far below the hourly poll and the 10 s default reload: only the watch and the re-read
    // can make these rotations show so soon.
    const ROTATION_DEADLINE: Duration = Duration::from_secs(10);
    install_crds().await;
    let namespace = TestNamespace::create("webhook-rotation").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let first = commit(&repo, "one");
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let url = server.url_for(&repo);
    let secrets = tempfile::tempdir().unwrap();
    write_secret(secrets.path(), "github", GITHUB_SECRET);
    let port = free_port();
    let mut flags = webhook_flags(port, &secrets).to_vec();
    flags.extend(["--webhook-reload-interval".into(), "1s".into()]);
    let _replica = start_replica(&namespace, &strs(&flags));
    namespace
        .create_secret("hook-token", &[("token", OLD_TOKEN.as_bytes())])
        .await;
    namespace
        .create_git_repository(
            "app",
            json!({ "url": url, "path": "deploy", "interval": HOURLY,
                    "webhook": { "secretRef": { "name": "hook-token" } } }),
        )
        .await;
    wait_applied(&namespace, &first, Duration::from_secs(60)).await;
    wait_for_port(port).await;
    let old_path =
        driftless::webhook::object_hook_path(OLD_TOKEN.as_bytes(), &namespace.name, "app");
    let new_path =
        driftless::webhook::object_hook_path(NEW_TOKEN.as_bytes(), &namespace.name, "app");
    ping_until(port, &old_path, OLD_TOKEN, 200, Duration::from_secs(30)).await;
    assert_eq!(ping(port, "/hooks/github", GITHUB_SECRET).0, 200);
    // Let the reconciles that follow the first apply finish, so that none of them can be
    // what re-registers the hook below.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let rotated = tokio::time::Instant::now();
    let token = Secret {
        data: Some(
            [(
                "token".to_owned(),
                ByteString(NEW_TOKEN.as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Secret::default()
    };
    namespace
        .api::<Secret>()
        .patch(
            "hook-token",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&token),
        )
        .await
        .unwrap();
    write_secret(secrets.path(), "github", NEW_SHARED);

    ping_until(port, &new_path, NEW_TOKEN, 200, ROTATION_DEADLINE).await;
    let (status, response) = ping(port, &old_path, OLD_TOKEN);
    assert_eq!(
        status, 404,
        "the rotated-away token's hook is gone: {response}"
    );
    eprintln!(
        "per-object token rotation took effect after {:?}",
        rotated.elapsed()
    );

    ping_until(port, "/hooks/github", NEW_SHARED, 200, ROTATION_DEADLINE).await;
    let (status, response) = ping(port, "/hooks/github", GITHUB_SECRET);
    assert_eq!(
        status, 401,
        "the old shared secret no longer verifies: {response}"
    );
    eprintln!(
        "shared secret file rotation took effect after {:?}",
        rotated.elapsed()
    );

    // The controller reconciles on the token Secret's change, so the status names the new
    // path long before the hourly poll.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let repository = namespace.api::<GitRepository>().get("app").await.unwrap();
        let shown = repository.status.and_then(|status| status.webhook_path);
        if shown.as_deref() == Some(new_path.as_str()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status.webhookPath is still {shown:?}, not {new_path}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A self-signed certificate for `localhost` and its key, as PEM.
fn self_signed() -> (String, String, rustls::pki_types::CertificateDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (
        certified.cert.pem(),
        certified.signing_key.serialize_pem(),
        certified.cert.der().clone(),
    )
}

/// Whether a TLS handshake with the receiver on `port` succeeds when only `trusted` is trusted.
fn handshake_trusting(port: u16, trusted: &rustls::pki_types::CertificateDer<'static>) -> bool {
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let request = b"GET /hooks/github HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if tls.write_all(request).and_then(|()| tls.flush()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 405")
}

#[tokio::test]
async fn a_rotated_tls_certificate_is_served_without_a_restart() {
    install_crds().await;
    let namespace = TestNamespace::create("webhook-tls-rotation").await;
    let files = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (files.path().join("tls.crt"), files.path().join("tls.key"));
    let (old_cert, old_key, old_der) = self_signed();
    std::fs::write(&cert_path, old_cert).unwrap();
    std::fs::write(&key_path, old_key).unwrap();
    let port = free_port();
    let flags = [
        "--webhook-bind-address".to_owned(),
        format!("127.0.0.1:{port}"),
        "--webhook-tls-cert".to_owned(),
        cert_path.to_str().unwrap().to_owned(),
        "--webhook-tls-key".to_owned(),
        key_path.to_str().unwrap().to_owned(),
        "--webhook-reload-interval".to_owned(),
        "1s".to_owned(),
    ];
    let replica = start_replica(&namespace, &strs(&flags));
    wait_for_port(port).await;
    assert!(
        handshake_trusting(port, &old_der),
        "the first certificate is served"
    );

    let (new_cert, new_key, new_der) = self_signed();
    // Key first, then certificate: the pair is mismatched in between, which the reload must
    // survive by keeping the old pair until both fit. The check below only means something
    // once the reload has seen (and refused) the mismatched pair: wait for that, not a while.
    let logged = replica.log_lines();
    std::fs::write(&key_path, new_key).unwrap();
    replica
        .wait_for_log(
            logged,
            "could not reload the webhook TLS files",
            Duration::from_secs(30),
        )
        .await;
    assert!(
        handshake_trusting(port, &old_der),
        "a half-rotated pair keeps the old one"
    );
    std::fs::write(&cert_path, new_cert).unwrap();
    let rotated = tokio::time::Instant::now();
    while !handshake_trusting(port, &new_der) {
        assert!(
            rotated.elapsed() < Duration::from_secs(10),
            "the rotated certificate is never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !handshake_trusting(port, &old_der),
        "the old certificate is no longer served"
    );
    eprintln!("rotated certificate served after {:?}", rotated.elapsed());
}

#[tokio::test]
async fn huge_or_missing_delivery_ids_cost_bounded_writes() {
    install_crds().await;
    let namespace = TestNamespace::create("webhook-delivery-ids").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let first = commit(&repo, "one");
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let url = server.url_for(&repo);
    let secrets = tempfile::tempdir().unwrap();
    write_secret(secrets.path(), "github", GITHUB_SECRET);
    write_secret(secrets.path(), "generic", GENERIC_SECRET);
    let port = free_port();
    let replica = start_replica(&namespace, &strs(&webhook_flags(port, &secrets)));
    create_repository(&namespace, &url, HOURLY).await;
    wait_applied(&namespace, &first, Duration::from_secs(60)).await;
    wait_for_port(port).await;

    // An unsigned header of 64 KiB: recorded in the status as a digest, not copied.
    let huge_id = "h".repeat(64 * 1024);
    let second = commit(&repo, "two");
    let (status, response) = Delivery::GitHub.deliver(port, &repo, &url, &first, &second, &huge_id);
    assert_eq!(status, 202, "{}", &response[..response.len().min(300)]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let recorded = loop {
        let repository = namespace.api::<GitRepository>().get("app").await.unwrap();
        let recorded = repository
            .status
            .and_then(|status| status.last_webhook)
            .and_then(|webhook| webhook.delivery_id);
        if let Some(recorded) = recorded {
            break recorded;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no status.lastWebhook recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        recorded.len() <= 128 && recorded.starts_with("sha256:"),
        "status.lastWebhook.deliveryId is {} bytes: {}",
        recorded.len(),
        &recorded[..recorded.len().min(80)]
    );
    wait_applied(&namespace, &second, WEBHOOK_DEADLINE).await;

    // Without any delivery id, the same body again is a redelivery: no second write.
    let generic = serde_json::to_vec(&json!({ "url": url, "ref": "refs/heads/main" })).unwrap();
    let signature = format!(
        "sha256={}",
        hmac_sha256_hex(GENERIC_SECRET.as_bytes(), &generic)
    );
    let headers = [
        ("X-Signature", signature.as_str()),
        ("Content-Type", "application/json"),
    ];
    let before = replica.counter(QUEUED_PUSHES);
    let (status, response) = post(port, "/hooks/generic", &headers, &generic);
    assert_eq!(status, 202, "{response}");
    assert_eq!(triggered(&response), 1, "{response}");
    let requested = replica.counter(QUEUED_PUSHES);
    assert_eq!(requested, before + 1, "the first one requests a reconcile");
    let (status, response) = post(port, "/hooks/generic", &headers, &generic);
    assert_eq!(status, 200, "{response}");
    assert_eq!(
        response_json(&response)["duplicate"],
        json!(true),
        "{response}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        replica.counter(QUEUED_PUSHES),
        requested,
        "an id-less redelivery requests nothing"
    );
}

/// The files of a monorepo: two plain paths and an overlay of a base outside its path, each
/// ConfigMap's value given.
fn monorepo_files(a: &str, b: &str, base: &str) -> Vec<(String, String)> {
    vec![
        ("apps/a/app.yaml".into(), manifest_named("a", a)),
        ("apps/b/app.yaml".into(), manifest_named("b", b)),
        (
            "base/kustomization.yaml".into(),
            "resources:\n- app.yaml\n".into(),
        ),
        ("base/app.yaml".into(), manifest_named("base", base)),
        (
            "apps/c/kustomization.yaml".into(),
            "resources:\n- ../../base\nnamePrefix: c-\n".into(),
        ),
    ]
}

fn commit_monorepo(repo: &TestRepo, message: &str, files: &[(String, String)]) -> String {
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(path, contents)| (path.as_str(), contents.as_str()))
        .collect();
    repo.commit(message, &files)
}

#[tokio::test]
async fn a_push_costs_the_paths_whose_objects_it_did_not_change_no_write() {
    install_crds().await;
    let namespace = TestNamespace::create("webhook-monorepo").await;
    let repos = GitRepos::new();
    let repo = repos.create("mono");
    let first = commit_monorepo(&repo, "one", &monorepo_files("1", "1", "1"));
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let url = server.url_for(&repo);
    let secrets = tempfile::tempdir().unwrap();
    write_secret(secrets.path(), "github", GITHUB_SECRET);
    let port = free_port();
    let kustomize = support::cluster::binaries_dir().join("kustomize");
    let mut flags = webhook_flags(port, &secrets).to_vec();
    flags.extend(["--kustomize-binary".into(), kustomize.display().to_string()]);
    let replica = start_replica(&namespace, &strs(&flags));
    for name in ["a", "b", "c"] {
        let spec = json!({ "url": url, "path": format!("apps/{name}"), "interval": HOURLY });
        namespace.create_git_repository(name, spec).await;
    }
    for name in ["a", "b", "c"] {
        wait_applied_named(&namespace, name, &first, Duration::from_secs(60)).await;
    }
    wait_for_port(port).await;
    let api = namespace.api::<GitRepository>();
    let versions = || async {
        let mut versions = Vec::new();
        for name in ["a", "b", "c"] {
            versions.push(api.get(name).await.unwrap().metadata.resource_version);
        }
        versions
    };
    let unchanged = r#"driftless_reconcile_duration_seconds_count{result="unchanged"}"#;

    // A commit to path a only: b and c apply the same objects and write nothing.
    let before = versions().await;
    let second = commit_monorepo(&repo, "two", &monorepo_files("2", "1", "1"));
    let (status, response) = Delivery::GitHub.deliver(port, &repo, &url, &first, &second, "m-1");
    assert_eq!(status, 202, "{response}");
    assert_eq!(triggered(&response), 3, "{response}");
    wait_applied_named(&namespace, "a", &second, WEBHOOK_DEADLINE).await;
    assert_eq!(configmap_value(&namespace, "a").await.as_deref(), Some("2"));
    wait_until(|| replica.counter(unchanged) == 2, "b and c end early").await;
    let ordered = r#"driftless_reconcile_stage_duration_seconds_count{stage="push_order"}"#;
    assert!(
        replica.counter(ordered) >= 1,
        "the three queued together were ordered by changed path"
    );
    let after = versions().await;
    assert_ne!(after[0], before[0], "a recorded its new revision");
    assert_eq!(after[1..], before[1..], "b and c were not written to");
    assert!(applied_revision(&namespace, "b").await.ends_with(&first));

    // A commit to the base outside c's path changes c's objects: c applies it.
    let third = commit_monorepo(&repo, "three", &monorepo_files("2", "1", "3"));
    let (status, response) = Delivery::GitHub.deliver(port, &repo, &url, &second, &third, "m-2");
    assert_eq!(status, 202, "{response}");
    wait_applied_named(&namespace, "c", &third, WEBHOOK_DEADLINE).await;
    assert_eq!(
        configmap_value(&namespace, "c-base").await.as_deref(),
        Some("3")
    );
    wait_until(|| replica.counter(unchanged) == 4, "a and b end early").await;
    let last = versions().await;
    assert_eq!(last[..2], after[..2], "a and b were not written to");
    let recorded = api.get("c").await.unwrap().status.unwrap().last_webhook;
    assert_eq!(
        recorded.and_then(|webhook| webhook.delivery_id).as_deref(),
        Some("m-2"),
        "the reconcile that applied records its delivery"
    );
}

/// Polls `check` every 100 ms for up to 20 s; fails naming `what`.
async fn wait_until(check: impl Fn() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_webhook_secret_the_service_account_may_not_read_gets_no_hook() {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    const TOKEN: &str = "a per-object token only some accounts may read";
    install_crds().await;
    let namespace = TestNamespace::create("webhook-tenant-secret").await;
    // Both accounts may apply ConfigMaps; only `reader` may read Secrets.
    namespace
        .grant_service_account("deployer", &["configmaps"], &["*"])
        .await;
    namespace
        .grant_service_account("reader", &["configmaps", "secrets"], &["*"])
        .await;
    namespace
        .create_secret("hook-token", &[("token", TOKEN.as_bytes())])
        .await;
    let repos = GitRepos::new();
    let denied_repo = repos.create("denied");
    let denied_commit = commit_configmap(&denied_repo, "denied", "one");
    let allowed_repo = repos.create("allowed");
    let allowed_commit = commit_configmap(&allowed_repo, "allowed", "one");
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let secrets = shared_secrets();
    let port = free_port();
    // Restricted mode: every object acts as its ServiceAccount. The controller itself (the
    // test's admin) could read the Secret.
    let mut flags = webhook_flags(port, &secrets).to_vec();
    flags.push("--require-service-account".into());
    let _replica = start_replica(&namespace, &strs(&flags));
    // `denied` first: the receiver registers hooks one at a time in order, so once `allowed`
    // answers, `denied`'s registration has run too.
    for (name, repo, account) in [
        ("denied", &denied_repo, "deployer"),
        ("allowed", &allowed_repo, "reader"),
    ] {
        namespace
            .create_git_repository(
                name,
                json!({ "url": server.url_for(repo), "path": "deploy", "interval": HOURLY,
                        "serviceAccountName": account,
                        "webhook": { "secretRef": { "name": "hook-token" } } }),
            )
            .await;
    }
    wait_applied_named(
        &namespace,
        "denied",
        &denied_commit,
        Duration::from_secs(60),
    )
    .await;
    wait_applied_named(
        &namespace,
        "allowed",
        &allowed_commit,
        Duration::from_secs(60),
    )
    .await;
    wait_for_port(port).await;
    let path_of =
        |name: &str| driftless::webhook::object_hook_path(TOKEN.as_bytes(), &namespace.name, name);

    // The account that may read the Secret gets its hook, published and served.
    let allowed_path = path_of("allowed");
    wait_for_named(
        &namespace,
        "allowed",
        "the allowed object's webhook path",
        Duration::from_secs(30),
        |r| r.status.as_ref().and_then(|s| s.webhook_path.as_deref()) == Some(&allowed_path),
    )
    .await;
    ping_until(port, &allowed_path, TOKEN, 200, Duration::from_secs(30)).await;

    // The one that may not: no path, no hook, and a Warning saying why.
    let note = support::waiting::wait_for_warning(
        &namespace,
        "denied",
        "WebhookSecretUnreadable",
        Duration::from_secs(30),
    )
    .await;
    eprintln!("WebhookSecretUnreadable: {note}");
    for expected in [
        "deployer",
        "hook-token",
        "spec.webhook.secretRef",
        "forbidden",
    ] {
        assert!(note.contains(expected), "{expected} missing in: {note}");
    }
    let denied = namespace
        .api::<GitRepository>()
        .get("denied")
        .await
        .unwrap();
    assert_eq!(
        denied.status.as_ref().and_then(|s| s.webhook_path.clone()),
        None,
        "a webhook path keyed by a Secret the tenant may not read was published"
    );
    let denied_path = path_of("denied");
    let (status, response) = ping(port, &denied_path, TOKEN);
    assert_eq!(
        status, 404,
        "a hook keyed by a Secret the tenant may not read is served: {response}"
    );

    // Once the account may read it, the next reconcile publishes the path and the receiver
    // serves the hook.
    let post = kube::api::PostParams::default();
    let role: Role = serde_json::from_value(json!({
        "metadata": { "name": "read-hook-token" },
        "rules": [{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                    "resourceNames": ["hook-token"] }],
    }))
    .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "read-hook-token" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "read-hook-token" },
        "subjects": [{ "kind": "ServiceAccount", "name": "deployer",
                       "namespace": namespace.name }],
    }))
    .unwrap();
    namespace.api::<Role>().create(&post, &role).await.unwrap();
    namespace
        .api::<RoleBinding>()
        .create(&post, &binding)
        .await
        .unwrap();
    // RBAC takes a moment to see a new binding: ask again until the path is published.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = jiff::Timestamp::now().to_string();
        let patch = json!({ "metadata": { "annotations": { RECONCILE_REQUESTED_AT: now } } });
        namespace
            .api::<GitRepository>()
            .patch(
                "denied",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let denied = namespace
            .api::<GitRepository>()
            .get("denied")
            .await
            .unwrap();
        if denied.status.and_then(|s| s.webhook_path).as_deref() == Some(denied_path.as_str()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the path was not published after the account was allowed to read the Secret"
        );
    }
    ping_until(port, &denied_path, TOKEN, 200, Duration::from_secs(30)).await;
}

fn rollout(name: &str, node_selector: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      {node_selector}
      containers:
      - name: app
        image: example.invalid/app:1
"
    )
}

/// A broken rollout waits for health with a long timeout; the fix pushed meanwhile ends the
/// wait and is applied (and healthy) at once, not after the old revision's ten minutes.
#[tokio::test]
async fn a_push_during_a_long_health_wait_is_applied_without_waiting_for_the_timeout() {
    install_crds().await;
    let namespace = TestNamespace::create("webhook-health-wait").await;
    let repos = GitRepos::new();
    let repo = repos.create("rollout");
    let broken = rollout("web", "nodeSelector: {no-such-node: \"true\"}");
    let first = repo.commit("unschedulable", &[("deploy/web.yaml", broken.as_str())]);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let url = server.url_for(&repo);
    let secrets = shared_secrets();
    let port = free_port();
    let _replica = start_replica(&namespace, &strs(&webhook_flags(port, &secrets)));
    namespace
        .create_git_repository(
            "app",
            json!({ "url": url, "path": "deploy", "interval": HOURLY, "wait": true,
                    "timeout": "10m" }),
        )
        .await;
    wait_for(&namespace, "the broken rollout to wait for health", |r| {
        condition(r, "Reconciling").is_some_and(|(status, _, message)| {
            status == "True" && message.contains("waiting") && message.contains(&first)
        })
    })
    .await;
    wait_for_port(port).await;

    let fixed = rollout("web", "");
    let second = repo.commit("schedulable", &[("deploy/web.yaml", fixed.as_str())]);
    let pushed = tokio::time::Instant::now();
    let (status, response) = Delivery::GitHub.deliver(port, &repo, &url, &first, &second, "w-1");
    assert_eq!(status, 202, "{response}");
    wait_applied_named(&namespace, "app", &second, WEBHOOK_DEADLINE).await;
    eprintln!(
        "the fix pushed during a 10 min health wait was applied and healthy in {:?}",
        pushed.elapsed()
    );
}

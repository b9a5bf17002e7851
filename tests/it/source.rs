//! The source engine against real git servers on loopback: every ref kind over smart HTTP
//! (basic auth + TLS) and SSH, the shared cache, the no-change path, and each failure.

use crate::support;

use std::{sync::atomic::Ordering, time::Duration};

use driftless::{
    api::GitReference,
    source::{
        Artifact, ArtifactRequest, CacheLimits, Credentials, Limits, SourceEngine, SourceError,
        SourceErrorKind,
    },
};
use support::git::{ClientKey, GitRepos, HttpGitServer, HttpOptions, SshGitServer, TestRepo};

const USER: &str = "deployer";
const PASSWORD: &str = "s3cret-pa55";

fn engine() -> (tempfile::TempDir, SourceEngine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = SourceEngine::new(dir.path(), Limits::default(), Duration::from_secs(5));
    (dir, engine)
}

fn request(
    url: &str,
    reference: Option<GitReference>,
    credentials: Option<Credentials>,
) -> ArtifactRequest {
    ArtifactRequest {
        owner: "team-a/app".into(),
        url: url.into(),
        reference,
        path: "deploy".into(),
        ignore: vec![],
        credentials,
        timeout: Duration::from_secs(20),
        listed_after: None,
    }
}

fn branch(name: &str) -> Option<GitReference> {
    Some(GitReference {
        branch: Some(name.into()),
        ..Default::default()
    })
}

fn basic_auth(ca_pem: Option<&str>) -> Credentials {
    Credentials {
        basic: Some((USER.into(), PASSWORD.into())),
        ca_pem: ca_pem.map(|pem| pem.as_bytes().to_vec()),
        ..Default::default()
    }
}

fn ssh_credentials(sshd: &SshGitServer, key: ClientKey, known_hosts: &str) -> Credentials {
    Credentials {
        ssh: Some(driftless::source::credentials::SshCredentials {
            identity: sshd.private_key(key),
            passphrase: None,
            known_hosts: known_hosts.into(),
        }),
        ..Default::default()
    }
}

/// A repository with a history of releases: main, a `stable` branch, tags v1.0.0 (annotated),
/// v1.1.0, v2.0.0 and a non-semver tag.
struct Releases {
    repo: TestRepo,
    v1_0: String,
    v1_1: String,
    v2_0: String,
    stable: String,
}

fn releases(repos: &GitRepos) -> Releases {
    let repo = repos.create("app");
    let files = |version: &str| {
        vec![
            (
                "deploy/config.yaml",
                format!("kind: ConfigMap\nversion: {version}\n"),
            ),
            ("deploy/README.md", "not a manifest".to_owned()),
            ("other/x.yaml", "kind: Secret\n".to_owned()),
        ]
    };
    let commit = |message: &str, version: &str| {
        let owned = files(version);
        let borrowed: Vec<(&str, &str)> = owned.iter().map(|(p, c)| (*p, c.as_str())).collect();
        repo.commit(message, &borrowed)
    };
    let v1_0 = commit("one", "1.0.0");
    repo.annotated_tag("v1.0.0", &v1_0, "release 1.0.0");
    let v1_1 = commit("one-one", "1.1.0");
    repo.tag("v1.1.0", &v1_1);
    repo.branch("stable", &v1_1);
    let v2_0 = commit("two", "2.0.0");
    repo.tag("v2.0.0", &v2_0);
    repo.tag("latest", &v2_0);
    Releases {
        repo,
        v1_0,
        v1_1: v1_1.clone(),
        v2_0,
        stable: v1_1,
    }
}

fn config_version(artifact: &Artifact) -> String {
    let paths: Vec<&str> = artifact.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        ["deploy/config.yaml"],
        "only manifests under the path are read"
    );
    String::from_utf8(artifact.files[0].contents.clone()).unwrap()
}

async fn every_ref_kind(
    engine: &SourceEngine,
    url: &str,
    releases: &Releases,
    credentials: Credentials,
) {
    let fetch = |reference: Option<GitReference>| {
        let request = request(url, reference, Some(credentials.clone()));
        async move {
            engine
                .artifact(&request)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let head = fetch(None).await;
    assert_eq!(head.revision, format!("main@sha1:{}", releases.v2_0));
    assert!(config_version(&head).contains("2.0.0"));

    let stable = fetch(branch("stable")).await;
    assert_eq!(stable.revision, format!("stable@sha1:{}", releases.stable));

    let tag = fetch(Some(GitReference {
        tag: Some("v1.0.0".into()),
        ..Default::default()
    }))
    .await;
    assert_eq!(
        tag.revision,
        format!("v1.0.0@sha1:{}", releases.v1_0),
        "annotated tags peel to the commit"
    );
    assert!(config_version(&tag).contains("1.0.0"));

    let semver = fetch(Some(GitReference {
        semver: Some(">=1.0.0 <2.0.0".into()),
        ..Default::default()
    }))
    .await;
    assert_eq!(
        semver.revision,
        format!("v1.1.0@sha1:{}", releases.v1_1),
        "highest match wins"
    );

    let commit = fetch(Some(GitReference {
        commit: Some(releases.v1_0.clone()),
        ..Default::default()
    }))
    .await;
    assert_eq!(commit.revision, format!("sha1:{}", releases.v1_0));

    let pinned = fetch(Some(GitReference {
        branch: Some("main".into()),
        commit: Some(releases.v1_1.clone()),
        ..Default::default()
    }))
    .await;
    assert_eq!(pinned.revision, format!("main@sha1:{}", releases.v1_1));
    assert!(config_version(&pinned).contains("1.1.0"));
}

#[tokio::test]
async fn every_ref_kind_over_smart_http_with_basic_auth_and_tls() {
    let repos = GitRepos::new();
    let releases = releases(&repos);
    let server = HttpGitServer::start(
        repos.root(),
        HttpOptions::default().basic_auth(USER, PASSWORD).tls(),
    );
    eprintln!("git http-backend behind {}", server.base_url());
    let (_dir, engine) = engine();
    let credentials = basic_auth(server.ca_pem());
    every_ref_kind(
        &engine,
        &server.url_for(&releases.repo),
        &releases,
        credentials,
    )
    .await;
}

#[tokio::test]
async fn every_ref_kind_over_ssh_with_strict_host_key_checking() {
    let repos = GitRepos::new();
    let releases = releases(&repos);
    let sshd = SshGitServer::start();
    eprintln!("sshd pid {} on 127.0.0.1:{}", sshd.pid(), sshd.port());
    let (_dir, engine) = engine();
    let credentials = ssh_credentials(&sshd, ClientKey::Ed25519OpenSsh, sshd.known_hosts_line());
    every_ref_kind(
        &engine,
        &sshd.url_for(&releases.repo),
        &releases,
        credentials,
    )
    .await;
}

#[tokio::test]
async fn unchanged_ref_costs_one_advertisement_and_no_fetch() {
    let repos = GitRepos::new();
    let releases = releases(&repos);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let (_dir, engine) = engine();
    let url = server.url_for(&releases.repo);

    let first = engine.artifact(&request(&url, None, None)).await.unwrap();
    let second = engine.artifact(&request(&url, None, None)).await.unwrap();
    assert!(
        first.fetched && !second.fetched,
        "the second check finds the commit cached"
    );
    assert_eq!(engine.stats().fetches.load(Ordering::Relaxed), 1);
    assert_eq!(engine.stats().advertisements.load(Ordering::Relaxed), 2);
    assert_eq!(
        server.advertisements(),
        2,
        "one ref advertisement per check"
    );

    let next = releases.repo.commit(
        "three",
        &[("deploy/config.yaml", "kind: ConfigMap\nversion: 3\n")],
    );
    let third = engine.artifact(&request(&url, None, None)).await.unwrap();
    assert!(third.fetched);
    assert_eq!(third.commit, next);
    assert_eq!(
        server.advertisements(),
        3,
        "the fetch of a moved ref uses the listing's connection, not a second advertisement"
    );
}

#[tokio::test]
async fn requests_after_a_push_share_the_listing_made_after_it() {
    let repos = GitRepos::new();
    let releases = releases(&repos);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let (_dir, engine) = engine();
    let url = server.url_for(&releases.repo);
    engine.artifact(&request(&url, None, None)).await.unwrap();

    let next = releases.repo.commit(
        "three",
        &[("deploy/config.yaml", "kind: ConfigMap\nversion: 3\n")],
    );
    let pushed_at = std::time::Instant::now();
    let after_push = ArtifactRequest {
        listed_after: Some(pushed_at),
        ..request(&url, None, None)
    };
    let listings = || engine.stats().advertisements.load(Ordering::Relaxed);
    assert_eq!(engine.artifact(&after_push).await.unwrap().commit, next);
    assert_eq!(listings(), 2);
    // One request after another, as a reconcile queue runs them: the listing made after the
    // push answers the later ones, which see the pushed commit without listing again.
    for _ in 0..3 {
        assert_eq!(engine.artifact(&after_push).await.unwrap().commit, next);
    }
    assert_eq!(listings(), 2, "one listing after the push");
    engine.artifact(&request(&url, None, None)).await.unwrap();
    assert_eq!(listings(), 3, "a poll lists again");
}

#[tokio::test]
async fn fifty_requests_on_one_url_share_one_fetch() {
    let repos = GitRepos::new();
    let releases = releases(&repos);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let (_dir, engine) = engine();
    let url = server.url_for(&releases.repo);
    // The same repository spelled three ways shares one cache entry.
    let spellings = [
        url.clone(),
        url.trim_end_matches(".git").to_owned(),
        format!("{url}/"),
    ];

    let requests: Vec<ArtifactRequest> = (0..50)
        .map(|i| request(&spellings[i % 3], None, None))
        .collect();
    let results = futures::future::join_all(requests.iter().map(|r| engine.artifact(r))).await;
    for result in results {
        assert_eq!(result.unwrap().commit, releases.v2_0);
    }
    assert_eq!(
        engine.stats().fetches.load(Ordering::Relaxed),
        1,
        "one fetch for 50 requests"
    );
    assert_eq!(
        engine.stats().advertisements.load(Ordering::Relaxed),
        1,
        "one ref listing too"
    );
}

async fn failure(engine: &SourceEngine, request: ArtifactRequest) -> SourceError {
    let error = engine
        .artifact(&request)
        .await
        .expect_err("this request must fail");
    let message = error.to_string();
    assert!(
        message.contains("GitRepository team-a/app"),
        "names the object: {message}"
    );
    assert!(
        !message.contains(PASSWORD),
        "never prints credentials: {message}"
    );
    eprintln!("error as the user reads it: {message}");
    error
}

/// driftless's own check of `ca.crt` (not libgit2's, not a test callback): a server whose
/// certificate comes from another CA is refused with a message naming ca.crt, and the same
/// server is fetched once its own CA is configured.
#[tokio::test]
async fn a_custom_ca_refuses_a_server_certificate_from_another_ca() {
    let repos = GitRepos::new();
    let releases = releases(&repos);
    let options = || HttpOptions::default().basic_auth(USER, PASSWORD).tls();
    let server = HttpGitServer::start(repos.root(), options());
    // Only its CA is used: a valid CA, just not the one that signed `server`'s certificate.
    let other = HttpGitServer::start(repos.root(), options());
    let (_dir, engine) = engine();
    let url = server.url_for(&releases.repo);

    let other_ca = other.ca_pem().expect("a TLS server has a CA");
    assert_ne!(Some(other_ca), server.ca_pem());
    let wrong = request(&url, None, Some(basic_auth(Some(other_ca))));
    let error = failure(&engine, wrong).await;
    let SourceErrorKind::Certificate(reason) = &error.kind else {
        panic!("refused for another reason than the certificate: {error}");
    };
    assert!(
        reason.contains("not trusted by ca.crt"),
        "the refusal is driftless's ca.crt check, not libgit2's own: {reason}"
    );

    let right = request(&url, None, Some(basic_auth(server.ca_pem())));
    let artifact = engine
        .artifact(&right)
        .await
        .expect("the server's own CA is trusted");
    assert!(
        artifact.revision.ends_with(&releases.v2_0),
        "{}",
        artifact.revision
    );
}

#[tokio::test]
async fn bad_credentials_and_hosts_fail_with_clear_errors() {
    let repos = GitRepos::new();
    let releases = releases(&repos);
    let server = HttpGitServer::start(
        repos.root(),
        HttpOptions::default().basic_auth(USER, PASSWORD),
    );
    let sshd = SshGitServer::start();
    let (_dir, engine) = engine();
    let http_url = server.url_for(&releases.repo);
    let ssh_url = sshd.url_for(&releases.repo);

    let wrong = Credentials {
        basic: Some((USER.into(), "wrong".into())),
        ..Default::default()
    };
    let error = failure(&engine, request(&http_url, None, Some(wrong))).await;
    assert!(
        matches!(error.kind, SourceErrorKind::AuthenticationFailed),
        "{error}"
    );
    assert!(
        server.rejected_credentials() <= 1,
        "the rejected password is not retried in a loop"
    );

    let error = failure(&engine, request(&http_url, None, None)).await;
    assert!(
        matches!(error.kind, SourceErrorKind::CredentialsRequired),
        "{error}"
    );

    let error = failure(&engine, request(&ssh_url, None, None)).await;
    assert!(
        matches!(error.kind, SourceErrorKind::KnownHostsRequired),
        "{error}"
    );

    let other_key = sshd.public_key(ClientKey::Ed25519OpenSsh);
    let changed = format!("[127.0.0.1]:{} {other_key}", sshd.port());
    let credentials = ssh_credentials(&sshd, ClientKey::Ed25519OpenSsh, &changed);
    let error = failure(&engine, request(&ssh_url, None, Some(credentials))).await;
    assert!(matches!(error.kind, SourceErrorKind::HostKey(_)), "{error}");

    let unknown = format!("[example.invalid]:22 {other_key}");
    let credentials = ssh_credentials(&sshd, ClientKey::Ed25519OpenSsh, &unknown);
    let error = failure(&engine, request(&ssh_url, None, Some(credentials))).await;
    assert!(matches!(error.kind, SourceErrorKind::HostKey(_)), "{error}");

    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = failure(
        &engine,
        request(
            &format!("http://127.0.0.1:{closed_port}/app.git"),
            None,
            None,
        ),
    )
    .await;
    assert!(matches!(error.kind, SourceErrorKind::Git(_)), "{error}");
}

#[tokio::test]
async fn missing_refs_paths_and_empty_repositories_fail_with_clear_errors() {
    let repos = GitRepos::new();
    let releases = releases(&repos);
    let empty = repos.create("empty");
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let (_dir, engine) = engine();
    let url = server.url_for(&releases.repo);

    let cases = [
        (branch("nope"), "nope"),
        (
            Some(GitReference {
                tag: Some("v9.9.9".into()),
                ..Default::default()
            }),
            "v9.9.9",
        ),
        (
            Some(GitReference {
                semver: Some(">=5.0.0".into()),
                ..Default::default()
            }),
            ">=5.0.0",
        ),
        (
            Some(GitReference {
                commit: Some("0".repeat(40)),
                ..Default::default()
            }),
            &"0".repeat(40),
        ),
    ];
    for (reference, named) in cases {
        let error = failure(&engine, request(&url, reference, None)).await;
        assert!(error.to_string().contains(named), "{error}");
    }

    let mut missing_path = request(&url, None, None);
    missing_path.path = "does/not/exist".into();
    let error = failure(&engine, missing_path).await;
    assert!(error.to_string().contains("does/not/exist"), "{error}");

    let error = failure(&engine, request(&server.url_for(&empty), None, None)).await;
    assert!(
        matches!(error.kind, SourceErrorKind::EmptyRepository),
        "{error}"
    );
}

#[tokio::test]
async fn files_over_the_size_limit_are_refused_unread() {
    let repos = GitRepos::new();
    let repo = repos.create("big");
    let big = "x".repeat(64 * 1024);
    repo.commit("big", &[("deploy/big.yaml", big.as_str())]);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let mut limits = Limits::default();
    limits.tree.max_file_bytes = 1024;
    let engine = SourceEngine::new(dir.path(), limits, Duration::from_secs(5));

    let error = failure(&engine, request(&server.url_for(&repo), None, None)).await;
    let message = error.to_string();
    assert!(
        message.contains("deploy/big.yaml") && message.contains("1024"),
        "{message}"
    );
}

#[tokio::test]
async fn a_server_that_stalls_hits_the_timeout() {
    // Accepts connections and never answers: the request must fail on time, not hang.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stalled = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let (_dir, engine) = engine();
    let mut stalling = request(&format!("http://127.0.0.1:{port}/app.git"), None, None);
    stalling.timeout = Duration::from_secs(2);

    let started = std::time::Instant::now();
    let error = failure(&engine, stalling).await;
    assert!(matches!(error.kind, SourceErrorKind::TimedOut), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "gave up after {:?}",
        started.elapsed()
    );
    stalled.abort();
}

#[tokio::test]
async fn ignore_rules_from_the_spec_and_the_repository_leave_files_out() {
    let repos = GitRepos::new();
    let repo = repos.create("ignored");
    repo.commit(
        "layout",
        &[
            (
                ".driftlessignore",
                "# repository's own rules\ndeploy/drafts/\n",
            ),
            ("deploy/app.yaml", "kind: ConfigMap\n"),
            ("deploy/drafts/wip.yaml", "kind: ConfigMap\n"),
            ("deploy/values.json", "{}"),
            ("deploy/nested/svc.yml", "kind: Service\n"),
        ],
    );
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let (_dir, engine) = engine();
    let mut with_ignore = request(&server.url_for(&repo), None, None);
    with_ignore.ignore = vec!["*.json".into()];

    let artifact = engine.artifact(&with_ignore).await.unwrap();
    let paths: Vec<&str> = artifact.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["deploy/app.yaml", "deploy/nested/svc.yml"]);
}

#[tokio::test]
async fn incremental_fetch_transfers_the_change_not_the_tree() {
    let repos = GitRepos::new();
    let repo = repos.create("wide");
    // 200 files of incompressible-ish content make a tree far larger than one change.
    let contents: Vec<(String, String)> = (0..200)
        .map(|i| {
            let body: String = (0..64)
                .map(|j| format!("{:016x}", (i * 7919 + j) * 2654435761u64))
                .collect();
            (
                format!("deploy/cm-{i}.yaml"),
                format!("kind: ConfigMap\ndata: {body}\n"),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = contents
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    repo.commit("wide", &files);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let (_dir, engine) = engine();
    let url = server.url_for(&repo);

    engine.artifact(&request(&url, None, None)).await.unwrap();
    let first = engine.stats().bytes_received.load(Ordering::Relaxed);
    let mut changed = files.clone();
    changed[0].1 = "kind: ConfigMap\ndata: changed\n";
    repo.commit("one change", &changed);
    engine.artifact(&request(&url, None, None)).await.unwrap();
    let incremental = engine.stats().bytes_received.load(Ordering::Relaxed) - first;

    eprintln!("first shallow fetch: {first} bytes; after one changed file: {incremental} bytes");
    assert!(
        incremental * 10 < first,
        "incremental {incremental} vs first {first}"
    );
}

/// Writes a commit whose `deploy/` holds a manifest and a symlink pointing out of the tree.
fn commit_with_symlink(repo: &TestRepo) -> String {
    let bare = git2::Repository::open_bare(repo.path()).unwrap();
    let manifest = bare.blob(b"kind: ConfigMap\n").unwrap();
    let link_target = bare.blob(b"../../../etc/passwd").unwrap();
    let mut deploy = bare.treebuilder(None).unwrap();
    deploy.insert("app.yaml", manifest, 0o100644).unwrap();
    deploy.insert("escape.yaml", link_target, 0o120000).unwrap();
    let deploy = deploy.write().unwrap();
    let mut root = bare.treebuilder(None).unwrap();
    root.insert("deploy", deploy, 0o040000).unwrap();
    let tree = bare.find_tree(root.write().unwrap()).unwrap();
    let who = git2::Signature::now("test", "test@example.com").unwrap();
    let oid = bare
        .commit(Some("refs/heads/main"), &who, &who, "symlink", &tree, &[])
        .unwrap();
    oid.to_string()
}

#[tokio::test]
async fn symlinks_are_reported_and_never_followed() {
    let repos = GitRepos::new();
    let repo = repos.create("links");
    commit_with_symlink(&repo);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let (_dir, engine) = engine();

    let artifact = engine
        .artifact(&request(&server.url_for(&repo), None, None))
        .await
        .unwrap();
    let paths: Vec<&str> = artifact.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["deploy/app.yaml"]);
    assert_eq!(artifact.skipped, ["deploy/escape.yaml"]);
}

/// Content fetched with credentials is served only to requests that proved access with the same
/// credentials: a request without them, or with a wrong password, that runs next to an
/// authenticated one on the same URL is never handed its ref listing or its cached commits,
/// whichever of them asks first.
#[tokio::test]
async fn private_content_is_never_shared_with_other_credentials_on_one_url() {
    let repos = GitRepos::new();
    let releases = releases(&repos);
    let server = HttpGitServer::start(
        repos.root(),
        HttpOptions::default().basic_auth(USER, PASSWORD),
    );
    let url = server.url_for(&releases.repo);
    let wrong = Credentials {
        basic: Some((USER.into(), "wrong-password".into())),
        ..Default::default()
    };
    // One engine lives through every round, so later rounds find the commit cached; each round
    // also gets a cold engine of its own.
    let (_warm_dir, warm) = engine();
    for round in 0..20 {
        let (_cold_dir, cold) = engine();
        for engine in [&cold, &warm] {
            let authenticated = request(&url, None, Some(basic_auth(None)));
            let anonymous = request(&url, None, None);
            let wrong_password = request(&url, None, Some(wrong.clone()));
            // `join!` polls in order: the first one listed takes the URL first.
            let (authenticated, anonymous, wrong_password) = if round % 2 == 0 {
                tokio::join!(
                    engine.artifact(&authenticated),
                    engine.artifact(&anonymous),
                    engine.artifact(&wrong_password)
                )
            } else {
                let (anonymous, wrong_password, authenticated) = tokio::join!(
                    engine.artifact(&anonymous),
                    engine.artifact(&wrong_password),
                    engine.artifact(&authenticated)
                );
                (authenticated, anonymous, wrong_password)
            };
            assert_eq!(
                authenticated.unwrap().commit,
                releases.v2_0,
                "round {round}"
            );
            match anonymous {
                Err(error) => assert!(
                    matches!(error.kind, SourceErrorKind::CredentialsRequired),
                    "round {round}: {error}"
                ),
                Ok(artifact) => panic!(
                    "round {round}: a request without credentials got the private commit {}",
                    artifact.commit
                ),
            }
            match wrong_password {
                Err(error) => assert!(
                    matches!(error.kind, SourceErrorKind::AuthenticationFailed),
                    "round {round}: {error}"
                ),
                Ok(artifact) => panic!(
                    "round {round}: a request with a wrong password got the private commit {}",
                    artifact.commit
                ),
            }
        }
    }
}

/// Tokens pasted into `spec.url`, including ones with `/` or `@` that break the URL's syntax,
/// never appear in an error, whichever path the error takes.
#[tokio::test]
async fn credentials_in_urls_never_appear_in_errors() {
    let (_dir, engine) = engine();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    const TOKEN: &str = "ghp_Sup3rS3cr3t/T0k3n@Part";
    let urls = [
        // A `/` in the token ends the authority early: the rest reads as a port, or a path.
        format!("https://deployer:{TOKEN}@127.0.0.1:{closed_port}/app.git"),
        format!("https://{TOKEN}@127.0.0.1:{closed_port}/app.git"),
        format!("http://deployer:{TOKEN}@127.0.0.1:{closed_port}/app.git"),
        format!("ssh://git:{TOKEN}@127.0.0.1:{closed_port}/app.git"),
        // Parses, then fails on the network.
        format!("https://deployer:ghp_Sup3rS3cr3t@127.0.0.1:{closed_port}/app.git"),
        format!("https://ghp_Sup3rS3cr3t@127.0.0.1:{closed_port}/app.git"),
        format!("http://deployer:ghp_Sup3rS3cr3t%2FT0k3n@127.0.0.1:{closed_port}/app.git"),
        format!("ssh://git:ghp_Sup3rS3cr3t@127.0.0.1:{closed_port}/app.git"),
        // Odd ports, hosts and paths.
        "https://deployer:ghp_Sup3rS3cr3t@127.0.0.1:0/app.git".to_owned(),
        "https://deployer:ghp_Sup3rS3cr3t@127.0.0.1:99999/app.git".to_owned(),
        "https://deployer:ghp_Sup3rS3cr3t@127.0.0.1:port/app.git".to_owned(),
        "https://deployer:ghp_Sup3rS3cr3t@:8080/app.git".to_owned(),
        "https://deployer:ghp_Sup3rS3cr3t@[::1/app.git".to_owned(),
        "https://deployer:ghp_Sup3rS3cr3t@127.0.0.1".to_owned(),
        "https://deployer:ghp_Sup3rS3cr3t@127.0.0.1/".to_owned(),
        // Other invalid forms.
        "ftp://deployer:ghp_Sup3rS3cr3t@127.0.0.1/app.git".to_owned(),
        "file://deployer:ghp_Sup3rS3cr3t@127.0.0.1/app.git".to_owned(),
        "deployer:ghp_Sup3rS3cr3t@/srv/app.git".to_owned(),
        "deployer:ghp_Sup3rS3cr3t@127.0.0.1:app.git".to_owned(),
        format!("  https://deployer:{TOKEN}@127.0.0.1/app.git\n"),
        "https://deployer:ghp_Sup3rS3cr3t@@127.0.0.1/app.git".to_owned(),
    ];
    for url in &urls {
        let mut request = request(url, None, None);
        request.timeout = Duration::from_secs(5);
        let error = engine
            .artifact(&request)
            .await
            .expect_err("no server answers these");
        for printed in [error.to_string(), format!("{error:?}")] {
            for secret in ["ghp_Sup3rS3cr3t", "T0k3n", "Sup3rS3cr3t"] {
                assert!(
                    !printed.contains(secret),
                    "{url:?} leaked into the error: {printed}"
                );
            }
        }
        eprintln!("{url:?} -> {error}");
    }
}

/// The cache entries of one engine's cache directory, by name.
fn cache_entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// Makes an entry look unused for `age`.
fn age_entry(dir: &std::path::Path, entry: &str, age: Duration) {
    std::fs::File::options()
        .write(true)
        .open(dir.join(entry).join("driftless-last-used"))
        .expect("every used entry records its use")
        .set_modified(std::time::SystemTime::now() - age)
        .unwrap();
}

fn engine_with_cache_limits(
    dir: &std::path::Path,
    max_age: Duration,
    max_bytes: u64,
) -> SourceEngine {
    let limits = Limits {
        cache: CacheLimits { max_age, max_bytes },
        ..Limits::default()
    };
    SourceEngine::new(dir, limits, Duration::from_secs(5))
}

#[tokio::test]
async fn listings_are_dropped_once_no_request_needs_them() {
    let repos = GitRepos::new();
    let releases = releases(&repos);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let (_dir, engine) = engine();
    let url = server.url_for(&releases.repo);
    let requests: Vec<ArtifactRequest> = (0..20).map(|_| request(&url, None, None)).collect();
    let results = futures::future::join_all(requests.iter().map(|r| engine.artifact(r))).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(
        engine.entries_in_use(),
        0,
        "no listing outlives its requests"
    );
    let missing = request(&url, branch("no-such-branch"), None);
    engine.artifact(&missing).await.unwrap_err();
    let unreachable = request("http://127.0.0.1:1/app.git", None, None);
    engine.artifact(&unreachable).await.unwrap_err();
    assert_eq!(engine.entries_in_use(), 0, "failures keep nothing either");
}

#[tokio::test]
async fn entries_unused_for_longer_than_the_maximum_age_are_evicted() {
    let repos = GitRepos::new();
    let releases = releases(&repos);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_cache_limits(dir.path(), Duration::from_secs(3600), 0);
    let url = server.url_for(&releases.repo);
    assert!(
        engine
            .artifact(&request(&url, None, None))
            .await
            .unwrap()
            .fetched
    );
    let entries = cache_entries(dir.path());
    assert_eq!(entries.len(), 1, "{entries:?}");

    let report = engine.evict_unused().await;
    assert!(report.evicted.is_empty(), "a fresh entry stays: {report:?}");
    age_entry(dir.path(), &entries[0], Duration::from_secs(2 * 3600));
    let report = engine.evict_unused().await;
    assert_eq!(report.evicted, entries);
    assert!(report.bytes_freed > 0, "{report:?}");
    assert!(cache_entries(dir.path()).is_empty());

    let again = engine.artifact(&request(&url, None, None)).await.unwrap();
    assert!(again.fetched, "an evicted entry is fetched again");
    assert_eq!(again.commit, releases.v2_0);
}

#[tokio::test]
async fn the_least_recently_used_entries_go_first_when_over_the_size_bound() {
    let repos = GitRepos::new();
    let first = repos.create("first");
    first.commit("one", &[("deploy/a.yaml", "kind: ConfigMap\n")]);
    let second = repos.create("second");
    second.commit("one", &[("deploy/b.yaml", "kind: ConfigMap\n")]);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let unbounded = engine_with_cache_limits(dir.path(), Duration::ZERO, 0);
    unbounded
        .artifact(&request(&server.url_for(&first), None, None))
        .await
        .unwrap();
    let older = cache_entries(dir.path());
    unbounded
        .artifact(&request(&server.url_for(&second), None, None))
        .await
        .unwrap();
    age_entry(dir.path(), &older[0], Duration::from_secs(60));
    let total = unbounded.evict_unused().await.bytes_left;
    assert_eq!(
        cache_entries(dir.path()).len(),
        2,
        "no bound, nothing evicted"
    );

    let bounded = engine_with_cache_limits(dir.path(), Duration::ZERO, total - 1);
    let report = bounded.evict_unused().await;
    assert_eq!(
        report.evicted, older,
        "the older entry goes first: {report:?}"
    );
    assert_eq!(cache_entries(dir.path()).len(), 1);
    assert!(report.bytes_left < total, "{report:?}");
}

#[tokio::test]
async fn an_entry_in_use_is_never_evicted() {
    // Accepts connections and never answers, so the request holds its entry.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stalled = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with_cache_limits(dir.path(), Duration::ZERO, 1);
    let mut stalling = request(&format!("http://127.0.0.1:{port}/app.git"), None, None);
    stalling.timeout = Duration::from_secs(2);

    let (fetched, report) = tokio::join!(engine.artifact(&stalling), async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        engine.evict_unused().await
    });
    fetched.unwrap_err();
    assert!(report.evicted.is_empty(), "{report:?}");
    assert_eq!(report.kept_in_use.len(), 1, "{report:?}");
    assert_eq!(cache_entries(dir.path()), report.kept_in_use);

    // The request timed out, but its git work runs until the stall timeout ends it, and holds
    // the entry until then.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while engine.entries_in_use() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the git work never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = engine.evict_unused().await;
    assert_eq!(report.evicted.len(), 1, "{report:?}");
    assert!(cache_entries(dir.path()).is_empty());
    stalled.abort();
}
